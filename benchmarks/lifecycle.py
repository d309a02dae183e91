#!/usr/bin/env python3
"""
Container life-cycle benchmarks for twistedock, beside a bare ``runc run`` and,
optionally, another Engine-API daemon (``--peer``, e.g. the reference dockerd).

    python benchmarks/lifecycle.py --quick
    python benchmarks/lifecycle.py --peer unix:///tmp/reference-dockerd/docker.sock

What is measured (benchmarks/README.md explains each figure):

1. life cycle of ``busybox true`` through the Engine API (create, start, wait,
   remove), median and p90, next to a bare ``runc run`` of an equivalent OCI
   bundle, rounds interleaved (bare runc, twistedock, peer, rotating);
2. ``GET /containers/json?all=1`` with 100 containers present: requests per
   second, one client and ``--list-clients`` concurrent clients;
3. ``--concurrent`` containers (``sleep 30``) created and started at once from
   threads: wall time until all are running;
4. the daemon's memory (PSS), with its helper processes, idle, with the
   concurrent containers running, and with 100 stopped containers.

The script starts its own twistedock (this checkout, temporary directories
under /tmp), imports a busybox image built from the host's /bin/busybox, and
removes everything it made at the end, on the peer too (only the containers it
labelled).  It needs root, runc, conmon and /bin/busybox (busybox-static).
Only the standard library is used; every timed call is raw HTTP/1.1 over the
unix socket (http.client, one keep-alive connection per client thread), so
both daemons see identical clients.
"""

import argparse
import ctypes
import ctypes.util
import http.client
import io
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API = "/v1.41"  # the highest version dockerd 20.10 serves; twistedock serves it too
BUSYBOX = "/bin/busybox"
IMAGE = "busybox:latest"
LABEL = "twistedock.benchmark"


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print("  . " + message, file=sys.stderr, flush=True)


# -- HTTP over a unix socket ------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Client:
    """One keep-alive HTTP/1.1 connection to a daemon (use one per thread)."""

    def __init__(self, sock_path: str, timeout: float = 120.0) -> None:
        self.sock_path = sock_path
        self.timeout = timeout
        self.conn: Optional[UnixHTTPConnection] = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body=None, headers=None) -> Tuple[int, bytes]:
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = UnixHTTPConnection(self.sock_path, self.timeout)
            try:
                self.conn.request(method, API + path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest,
                    http.client.BadStatusLine):
                # The server closed an idle keep-alive connection: reconnect once.
                self.close()
                if attempt or not (body is None or isinstance(body, bytes)):
                    raise
                continue
            if resp.will_close:
                self.close()
            return resp.status, data
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, body=None, expect=(200,), headers=None) -> bytes:
        status, data = self.request(method, path, body, headers)
        if status not in expect:
            raise BenchError("%s %s: %d %s" % (method, path, status, data[:300].decode("utf-8", "replace")))
        return data

    def json(self, method: str, path: str, body=None, expect=(200,)):
        return json.loads(self.call(method, path, body, expect) or b"null")


def query(**params) -> str:
    return urllib.parse.urlencode({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in params.items()})


# -- /proc helpers -------------------------------------------------------------------


def cmdline(pid: int) -> List[str]:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def comm(pid: int) -> str:
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def _ppid(pid: int) -> Optional[int]:
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
        return int(text[text.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def all_pids() -> List[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of C{pids} so far (threads included; one gone
    counts nothing)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / TICKS


def cpu_split(pid: int) -> Tuple[float, float]:
    """(the process's own CPU seconds, those of its children it reaped):
    utime + stime, cutime + cstime; (0, 0) when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = [int(v) for v in f.read().rsplit(")", 1)[1].split()[11:15]]
    except (OSError, ValueError):
        return 0.0, 0.0
    return (fields[0] + fields[1]) / TICKS, (fields[2] + fields[3]) / TICKS


def cpu_ns(pid: int) -> int:
    """The process's own CPU time in nanoseconds, exactly: the sum of its
    threads' /proc/PID/task/TID/schedstat (utime and stime come in clock
    ticks, sampled); 0 when it is gone."""
    total = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def rss_kib(pid: int) -> int:
    """The process's resident set size (kB), 0 when it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> Optional[int]:
    """The process's proportional set size (kB), from /proc/PID/smaps_rollup."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def descendants(root: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for pid in all_pids():
        parent = _ppid(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, ()):
            out.append(child)
            todo.append(child)
    return out


def pids_mentioning(path: str) -> List[int]:
    """Processes with an argument that is C{path} or lies under it."""
    path = path.rstrip("/")
    me = os.getpid()
    found = []
    for pid in all_pids():
        if pid == me:
            continue
        for arg in cmdline(pid):
            if path in arg and (arg.endswith(path) or (path + "/") in arg):
                found.append(pid)
                break
    return found


def pid_serving(sock_path: str) -> Optional[int]:
    """The process holding the listening unix socket C{sock_path}."""
    sock_path = os.path.realpath(sock_path)
    inodes = set()
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 8 and parts[7] == sock_path and int(parts[3], 16) & 0x10000:
                    inodes.add("socket:[%s]" % parts[6])
    except OSError:
        return None
    holders = []
    for pid in all_pids():
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in inodes:
                    holders.append(pid)
                    break
            except OSError:
                continue
    holders = [p for p in holders if p != 1] or holders
    return min(holders) if holders else None


def option_value(argv: Sequence[str], name: str) -> Optional[str]:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


class MemoryProbe:
    """Which processes make up a daemon: the daemon, its descendants, and every
    process whose command line names a path under its exec root (conmon for
    twistedock; containerd and containerd-shim for dockerd)."""

    def __init__(self, pid: int, exec_root: Optional[str], ours: Optional[Callable[[], Sequence[str]]] = None) -> None:
        self.pid = pid
        self.exec_root = exec_root
        #: The ids of the containers made here: a containerd shim (-id ID)
        #: serving another user's container is left out.
        self.ours = ours
        self.excluded = 0

    def processes(self) -> List[int]:
        pids = {self.pid}
        pids.update(descendants(self.pid))
        if self.exec_root:
            pids.update(pids_mentioning(self.exec_root))
        if self.ours is not None:
            ours = set(self.ours())
            kept = set()
            for pid in pids:
                shim_id = option_value(cmdline(pid), "-id") if comm(pid).startswith("containerd-shim") else None
                if shim_id is not None and shim_id not in ours:
                    continue
                kept.add(pid)
            self.excluded = len(pids) - len(kept)
            pids = kept
        return sorted(pids)

    def measure(self) -> Tuple[float, Dict[str, Tuple[int, float]]]:
        """(total PSS in MiB, {command: (processes, MiB)})."""
        total = 0
        groups: Dict[str, List[int]] = {}
        for pid in self.processes():
            kib = pss_kib(pid)
            if kib is None:  # gone, or a zombie
                continue
            name = "daemon" if pid == self.pid else comm(pid)
            total += kib
            entry = groups.setdefault(name, [0, 0])
            entry[0] += 1
            entry[1] += kib
        out = {k: (v[0], v[1] / 1024.0) for k, v in groups.items()}
        if self.excluded:
            out["(other users' shims left out)"] = (self.excluded, 0.0)
        return total / 1024.0, out


# -- the busybox image and the bare runc bundle ------------------------------------


def busybox_tar() -> bytes:
    """The image tests/e2e uses: the static busybox, its applet links, /etc files."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in ("bin", "etc", "tmp", "root", "home", "proc", "sys", "dev"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo("bin/" + applet)
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def random_layer(index: int, mib: int) -> bytes:
    """An image layer tar of one file, layer<index>/data: C{mib} MiB of random bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = os.urandom(mib * 1024 * 1024)
        info = tarfile.TarInfo("layer%d/data" % index)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_config(diff_ids: Sequence[str]) -> bytes:
    """The image config (linux/amd64, Cmd /bin/sh) of layers C{diff_ids}."""
    return json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": "2026-01-01T00:00:00Z"} for _ in diff_ids],
    }).encode()


def start_targets(own: "OwnDaemon", peer: Optional[str], targets: Dict[str, str]) -> None:
    """Start C{own} and name the sockets to measure in C{targets}: twistedock's,
    and the C{peer}'s (a unix:// address or a path) when given."""
    own.start()
    targets["twistedock"] = own.sock
    if peer:
        targets["peer"] = peer[len("unix://"):] if peer.startswith("unix://") else peer


def serving_pid(own: "OwnDaemon", name: str, sock: str) -> int:
    """The process serving target C{name} at C{sock}."""
    pid = own.proc.pid if name == "twistedock" else pid_serving(sock)
    if pid is None:
        raise BenchError("no process serves %s" % sock)
    return pid


class NeedsRoot(BenchError):
    """Containers need root."""


def begin_run(prefix: str = "tdb-") -> Tuple[str, str]:
    """A token of this run's own and a new directory under /tmp (no root:
    L{NeedsRoot})."""
    if os.geteuid() != 0:
        raise NeedsRoot("containers need root")
    return os.urandom(6).hex(), tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def end_run(workdir: str, keep: bool, problems: Sequence[str]) -> None:
    """Keep the run's directory (C{--keep}) or remove it; tell the problems."""
    if keep:
        log("kept %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    for problem in problems:
        print("WARNING: " + problem, file=sys.stderr)


def run_main(main: Callable[[], int]) -> None:
    """Exit with what C{main()} returns; a L{BenchError} is said, and
    exits 1 (2 without root)."""
    try:
        sys.exit(main())
    except NeedsRoot as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    except BenchError as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(1)


def import_busybox(client: "Client", tar_bytes: bytes, repo: str = "busybox", tag: str = "latest") -> None:
    """Import the busybox tar (L{busybox_tar}) as C{repo:tag}."""
    client.call("POST", "/images/create?" + query(fromSrc="-", repo=repo, tag=tag),
                tar_bytes, headers={"Content-Type": "application/x-tar"})


def remove_busybox(client: "Client", problems: List[str]) -> None:
    """Remove what L{ensure_busybox} imported (a failure is a problem told
    at the end)."""
    try:
        client.call("DELETE", "/images/" + IMAGE)
    except Exception as e:  # noqa: B902
        problems.append("removing the image imported into the peer: %s" % e)


def ensure_busybox(client: "Client", tar_bytes: bytes) -> bool:
    """Import busybox:latest into a peer that lacks it: whether it did (so
    that it is removed at the end)."""
    if client.json("GET", "/images/json?" + query(filters={"reference": [IMAGE]})):
        return False
    log("importing busybox into the peer")
    import_busybox(client, tar_bytes)
    return True


def daemon_name(client: "Client") -> str:
    """A peer as it calls itself (C{dockerd 20.10.24})."""
    return "dockerd %s" % client.json("GET", "/version").get("Version", "?").split("+")[0]


def _extract_rootfs(bundle: str, tar_bytes: bytes) -> str:
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        if hasattr(tarfile, "fully_trusted_filter"):
            tar.extractall(rootfs, filter="fully_trusted")
        else:
            tar.extractall(rootfs)
    return rootfs


def _clamp_rlimits(process: dict) -> None:
    """Root here may lack CAP_SYS_RESOURCE: no rlimit above our hard limits."""
    for rlimit in process.get("rlimits", []):
        number = getattr(resource, rlimit["type"], None)
        if number is None:
            continue
        _, hard = resource.getrlimit(number)
        if hard != resource.RLIM_INFINITY:
            rlimit["hard"] = min(rlimit["hard"], hard)
            rlimit["soft"] = min(rlimit["soft"], rlimit["hard"])


def make_bundle(runc: str, bundle: str, tar_bytes: bytes) -> None:
    """``runc spec``, adjusted: the busybox rootfs (writable, as an overlay is),
    ``true``, no terminal, dockerd's namespaces, rlimits within ours."""
    rootfs = _extract_rootfs(bundle, tar_bytes)
    subprocess.run([runc, "spec", "--bundle", bundle], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        spec = json.load(f)
    process = spec["process"]
    process["terminal"] = False
    process["args"] = ["true"]
    process["env"] = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    _clamp_rlimits(process)
    spec["root"] = {"path": rootfs, "readonly": False}
    # dockerd's set: mount, network, uts, pid, ipc, plus cgroup on cgroup v2.
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        namespaces.append({"type": "cgroup"})
    spec["linux"]["namespaces"] = namespaces
    with open(path, "w") as f:
        json.dump(spec, f, indent=1)


def make_daemon_spec_bundle(spec: dict, bundle: str, tar_bytes: bytes, token: str) -> None:
    """The OCI spec twistedock wrote for a `busybox true` container (see
    L{capture_spec}), made to run by itself: a plain copy of the busybox
    rootfs instead of the overlay, a cgroup of its own beside the daemon's.
    Seccomp, masked paths, device rules, sysctls, the /etc bind mounts and
    the rest are kept as they are."""
    rootfs = _extract_rootfs(bundle, tar_bytes)
    spec = json.loads(json.dumps(spec))
    spec["root"] = {"path": rootfs, "readonly": bool(spec.get("root", {}).get("readonly"))}
    process = spec["process"]
    process["terminal"] = False
    process["args"] = ["true"]
    _clamp_rlimits(process)
    linux = spec.setdefault("linux", {})
    if linux.get("cgroupsPath"):
        linux["cgroupsPath"] = os.path.join(os.path.dirname(linux["cgroupsPath"]), "bench-" + token)
    spec.pop("annotations", None)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f, indent=1)


def capture_spec(target: "Target", exec_root: str, roots: Sequence[str], files: str) -> Optional[dict]:
    """Run a `busybox true` container and read the OCI spec twistedock wrote
    for it (config.json in a bundle directory named after the container);
    the files it bind-mounts from under C{roots} (/etc/hosts, ...) are
    copied to C{files} before the container goes, and the spec points there."""
    roots = [os.path.realpath(r).rstrip("/") + "/" for r in roots]
    with closing(target.client()) as c:
        cid = target.create(c, ["true"], "spec")
        try:
            target.start(c, cid)
            target.wait(c, cid)
            spec = None
            for directory, _dirs, names in os.walk(exec_root):
                if "config.json" in names and cid in directory:
                    with open(os.path.join(directory, "config.json")) as f:
                        spec = json.load(f)
                    break
            if spec is None:
                return None
            os.makedirs(files, exist_ok=True)
            for i, mount in enumerate(spec.get("mounts", [])):
                source = mount.get("source") or ""
                if mount.get("type") == "bind" and any((os.path.realpath(source) + "/").startswith(r) for r in roots):
                    copy = os.path.join(files, "%d-%s" % (i, os.path.basename(source)))
                    if os.path.isdir(source):
                        shutil.copytree(source, copy, symlinks=True)
                    else:
                        shutil.copy2(source, copy)
                    mount["source"] = copy
            return spec
        finally:
            target.remove(c, cid, force=True)


class BareRunc:
    def __init__(self, name: str, runc: str, bundle: str, state_root: str) -> None:
        self.name = name
        self.runc = runc
        self.bundle = bundle
        self.state_root = state_root
        self.count = 0

    def once(self) -> float:
        self.count += 1
        cid = "bench-%d-%d" % (os.getpid(), self.count)
        t0 = time.perf_counter()
        result = subprocess.run(
            [self.runc, "--root", self.state_root, "run", "--bundle", self.bundle, cid],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        elapsed = time.perf_counter() - t0
        if result.returncode != 0:
            raise BenchError("runc run failed (%d): %s" % (result.returncode, result.stderr.decode(errors="replace")))
        return elapsed

    def cleanup(self) -> List[str]:
        leftovers = []
        if not os.path.isdir(self.state_root):
            return leftovers
        out = subprocess.run([self.runc, "--root", self.state_root, "list", "-q"], capture_output=True, text=True)
        for cid in out.stdout.split():
            leftovers.append("runc container %s" % cid)
            subprocess.run([self.runc, "--root", self.state_root, "delete", "--force", cid], capture_output=True)
        return leftovers


# -- daemons ---------------------------------------------------------------------


class Target:
    """A daemon reached over a unix socket, with the containers made here labelled."""

    def __init__(self, name: str, sock: str, token: str) -> None:
        self.name = name
        self.sock = sock
        self.token = token
        self.memory: Optional[MemoryProbe] = None
        self.memory_note = ""
        self.created_ids: List[str] = []
        self._lock = threading.Lock()

    def client(self) -> Client:
        return Client(self.sock)

    def labels(self, group: str) -> Dict[str, str]:
        return {LABEL: self.token, LABEL + ".group": group}

    def create(self, client: Client, cmd: Sequence[str], group: str) -> str:
        body = {"Image": IMAGE, "Cmd": list(cmd), "Labels": self.labels(group), "HostConfig": {}}
        cid = client.json("POST", "/containers/create", body, expect=(201,))["Id"]
        with self._lock:
            self.created_ids.append(cid)
        return cid

    def start(self, client: Client, cid: str) -> None:
        client.call("POST", "/containers/%s/start" % cid, expect=(204,))

    def wait(self, client: Client, cid: str) -> int:
        return client.json("POST", "/containers/%s/wait" % cid)["StatusCode"]

    def remove(self, client: Client, cid: str, force: bool = False) -> None:
        client.call("DELETE", "/containers/%s%s" % (cid, "?force=1" if force else ""), expect=(204,))

    def mine(self, client: Client, group: Optional[str] = None, status: Optional[str] = None) -> List[dict]:
        label = ["%s=%s" % (LABEL, self.token)]
        if group:
            label.append("%s.group=%s" % (LABEL, group))
        filters = {"label": label}
        if status:
            filters["status"] = [status]
        return client.json("GET", "/containers/json?" + query(all=1, filters=filters))

    def remove_mine(self, group: Optional[str] = None, threads: int = 4) -> int:
        with closing(self.client()) as client:
            ids = [c["Id"] for c in self.mine(client, group)]
        parallel(threads, ids, lambda c, cid: self.remove(c, cid, force=True), self)
        return len(ids)

    def lifecycle_once(self, client: Client) -> Tuple[float, List[float]]:
        """create + start + wait + remove of `busybox true`: (total, [phases])."""
        t0 = time.perf_counter()
        cid = self.create(client, ["true"], "lifecycle")
        t1 = time.perf_counter()
        self.start(client, cid)
        t2 = time.perf_counter()
        code = self.wait(client, cid)
        t3 = time.perf_counter()
        self.remove(client, cid)
        t4 = time.perf_counter()
        if code != 0:
            raise BenchError("%s: `true` exited %s" % (self.name, code))
        return t4 - t0, [t1 - t0, t2 - t1, t3 - t2, t4 - t3]


@contextmanager
def closing(client: Client):
    try:
        yield client
    finally:
        client.close()


def parallel(threads: int, items: Sequence, work: Callable, target: Target) -> list:
    """Run C{work(client, item)} over C{items} on C{threads} threads, each with
    its own connection; results in order; the first error is raised."""
    results: list = [None] * len(items)
    errors: List[BaseException] = []
    position = [0]
    lock = threading.Lock()

    def worker():
        with closing(target.client()) as client:
            while True:
                with lock:
                    if errors or position[0] >= len(items):
                        return
                    i = position[0]
                    position[0] += 1
                try:
                    results[i] = work(client, items[i])
                except BaseException as e:  # noqa: B902 - reported below
                    errors.append(e)
                    return

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(threads, len(items))))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return results


class OwnDaemon:
    """A twistedock daemon (this checkout) in temporary directories."""

    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        self.sock = os.path.join(workdir, "d.sock")
        self.data_root = os.path.join(workdir, "root")
        self.exec_root = os.path.join(workdir, "exec")
        self.log_path = os.path.join(workdir, "daemon.log")
        self.proc: Optional[subprocess.Popen] = None

    def command(self) -> List[str]:
        beside = os.path.join(os.path.dirname(sys.executable), "twistd")
        twistd = [beside] if os.access(beside, os.X_OK) else (
            [shutil.which("twistd")] if shutil.which("twistd")
            else [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"])
        return twistd + ["-n", "--pidfile=", "dockerd", "-H", "unix://" + self.sock,
                         "--data-root", self.data_root, "--exec-root", self.exec_root,
                         "--config-file", "/dev/null"]

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ)
        for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_API_VERSION", "LISTEN_PID", "LISTEN_FDS"):
            env.pop(name, None)
        env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.command(), cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError("twistedock exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                with closing(Client(self.sock, 2)) as c:
                    if c.request("GET", "/_ping")[0] == 200:
                        return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise BenchError("twistedock did not answer /_ping:\n" + self.log_tail())
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> Optional[str]:
        """SIGTERM and wait; a complaint when it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return "twistedock ignored SIGTERM for %.0f s and was killed" % timeout
        if self.proc.returncode != 0:
            return "twistedock exited %d after SIGTERM" % self.proc.returncode
        return None

    def remove_all_and_stop(self) -> None:
        """(At a benchmark's end.)  Its containers removed (rm -f) if it still
        runs, then stopped; a complaint printed."""
        if self.proc is not None and self.proc.poll() is None:
            with closing(Client(self.sock)) as client:
                try:
                    for item in client.json("GET", "/containers/json?all=1"):
                        client.request("DELETE", "/containers/%s?force=1" % item["Id"])
                except Exception:
                    pass
        complaint = self.stop()
        if complaint:
            print(complaint, file=sys.stderr)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mounts_under(path: str) -> List[str]:
    path = os.path.realpath(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if (point + "/").startswith(path):
                found.append(point)
    return found


def scrub(workdir: str, ids: Sequence[str], extra_cgroup: Optional[str] = None) -> List[str]:
    """Remove what a stopped twistedock left behind under C{workdir}; say what it was."""
    leftovers = []
    for pid in pids_mentioning(workdir):
        leftovers.append("process %d %s: %s" % (pid, comm(pid), " ".join(cmdline(pid))[:160]))
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for point in sorted(mounts_under(workdir), key=len, reverse=True):
        leftovers.append("mount %s" % point)
        _libc.umount2(point.encode(), 2)  # MNT_DETACH
    cgroups = ["twistedock/" + cid for cid in ids] + ([extra_cgroup.strip("/")] if extra_cgroup else [])
    for relative in cgroups:
        for controller in ("", "memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "devices", "freezer",
                           "systemd", "unified"):
            path = os.path.join("/sys/fs/cgroup", controller, relative)
            if os.path.isdir(path):
                leftovers.append("cgroup %s" % path)
                try:
                    os.rmdir(path)
                except OSError:
                    pass
    return leftovers


# -- statistics and printing ---------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return "%.2fx" % (a / b)


def fmt(value: Optional[float], spec: str = "%.1f") -> str:
    return "-" if value is None else spec % value


def heading(text: str) -> None:
    print()
    print(text)
    print("=" * len(text))


def table(rows: List[List[str]], header: List[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


# -- the benchmarks ------------------------------------------------------------------


def bench_lifecycle(targets: List[Target], bare: List[BareRunc], rounds: int, warmup: int):
    """Rounds interleaved: in each, every runner once, the order rotating."""
    runners: List = bare + targets
    clients = {t.name: t.client() for t in targets}
    totals: Dict[str, List[float]] = {r.name: [] for r in runners}
    phases: Dict[str, List[List[float]]] = {t.name: [] for t in targets}
    try:
        for i in range(warmup + rounds):
            order = runners[i % len(runners):] + runners[: i % len(runners)]
            for r in order:
                if isinstance(r, BareRunc):
                    elapsed, parts = r.once(), None
                else:
                    elapsed, parts = r.lifecycle_once(clients[r.name])
                if i >= warmup:
                    totals[r.name].append(elapsed)
                    if parts is not None:
                        phases[r.name].append(parts)
    finally:
        for c in clients.values():
            c.close()
    return totals, phases


def list_load(target: Target, clients: int, seconds: float) -> Tuple[int, float]:
    """C{clients} threads, each GETting /containers/json?all=1 in a loop
    on its own connection for C{seconds}: (requests done, elapsed)."""
    counts = [0] * clients
    errors: List[BaseException] = []
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        with closing(target.client()) as c:
            c.call("GET", "/containers/json?all=1")  # connect outside the timed part
            barrier.wait()
            try:
                while time.perf_counter() < stop_at[0]:
                    status, _ = c.request("GET", "/containers/json?all=1")
                    if status != 200:
                        raise BenchError("%s: GET /containers/json: %d" % (target.name, status))
                    counts[i] += 1
            except BaseException as e:  # noqa: B902
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    barrier.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts), elapsed


def bench_list(targets: List[Target], clients: int, seconds: float, slices: int):
    """Requests per second for 1 and C{clients} clients, in C{slices} interleaved slices."""
    out: Dict[Tuple[str, int], float] = {}
    for n in (1, clients):
        done = {t.name: [0, 0.0] for t in targets}
        for s in range(slices):
            order = targets if s % 2 == 0 else list(reversed(targets))
            for t in order:
                count, elapsed = list_load(t, n, seconds / slices)
                done[t.name][0] += count
                done[t.name][1] += elapsed
        for t in targets:
            out[(t.name, n)] = done[t.name][0] / done[t.name][1]
    return out


def concurrent_start(target: Target, n: int, group: str) -> float:
    """n threads each create and start a `sleep 30`, released together:
    seconds until the last start answered (then all must be running)."""
    barrier = threading.Barrier(n + 1)
    errors: List[BaseException] = []
    ends = [0.0] * n

    def worker(i: int) -> None:
        with closing(target.client()) as c:
            c.call("GET", "/_ping")  # connect outside the timed part
            barrier.wait()
            try:
                cid = target.create(c, ["sleep", "30"], group)
                target.start(c, cid)
                ends[i] = time.perf_counter()
            except BaseException as e:  # noqa: B902
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    wall = max(ends) - t0
    with closing(target.client()) as c:
        running = len(target.mine(c, group, status="running"))
    if running != n:
        raise BenchError("%s: %d of %d containers running after their start returned" % (target.name, running, n))
    return wall


def measure_memory(target: Target) -> Optional[Tuple[float, Dict[str, Tuple[int, float]]]]:
    if target.memory is None:
        return None
    time.sleep(0.5)  # let short-lived helpers (runc) finish
    return target.memory.measure()


def describe_memory(groups: Dict[str, Tuple[int, float]]) -> str:
    parts = []
    for name, (count, mib) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        if name.startswith("("):
            parts.append("%d %s" % (count, name.strip("()")))
        elif count > 1:
            parts.append("%s %.1f (%d processes)" % (name, mib, count))
        else:
            parts.append("%s %.1f" % (name, mib))
    return ", ".join(parts)


# -- main ------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer", help="another daemon to measure side by side, e.g. unix:///tmp/reference-dockerd/docker.sock")
    p.add_argument("--peer-name", help="its name in the tables (default: from /version)")
    p.add_argument("--peer-exec-root", help="the peer's exec root, for its helper processes "
                                              "(default: its --exec-root flag, else /var/run/docker)")
    p.add_argument("--rounds", type=int, default=30, help="life-cycle rounds (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed life-cycle rounds first (default 3)")
    p.add_argument("--list-containers", type=int, default=100, help="containers present for the list figure (100)")
    p.add_argument("--list-seconds", type=float, default=3.0, help="seconds of listing per daemon and client count (3)")
    p.add_argument("--list-clients", type=int, default=4, help="concurrent list clients (4)")
    p.add_argument("--concurrent", type=int, default=20, help="containers started at once (20)")
    p.add_argument("--start-trials", type=int, default=3, help="repetitions of the concurrent start (3)")
    p.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    p.add_argument("--no-spec-baseline", action="store_true",
                   help="leave out the second bare runc row (runc run of the OCI spec twistedock writes)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (daemon log) at the end")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    p.add_argument("--quick", action="store_true",
                   help="a short run: 5 rounds, 1 s of listing, 1 start trial")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.list_seconds, args.start_trials = 5, 1, 1.0, 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    token, workdir = begin_run()
    own = OwnDaemon(workdir)
    td = Target("twistedock", own.sock, token)
    peer: Optional[Target] = None
    runc: Optional[BareRunc] = None
    results: dict = {"rounds": args.rounds, "loadavg_before": os.getloadavg()[0]}
    problems: List[str] = []
    started = time.monotonic()
    try:
        # -- set-up --
        log("building the busybox image from %s" % BUSYBOX)
        tar_bytes = busybox_tar()
        log("starting twistedock in %s" % workdir)
        own.start()
        td.memory = MemoryProbe(own.proc.pid, own.exec_root)
        td.memory_note = "twistd process + conmon processes naming its exec root"
        with closing(td.client()) as c:
            import_busybox(c, tar_bytes)
        state_root = os.path.join(workdir, "runc-root")
        runc = BareRunc("bare runc", args.runc, os.path.join(workdir, "bundle"), state_root)
        make_bundle(args.runc, runc.bundle, tar_bytes)
        bare = [runc]
        if not args.no_spec_baseline:
            spec = capture_spec(td, own.exec_root, [own.data_root, own.exec_root],
                                os.path.join(workdir, "bundle-spec-files"))
            if spec is None:
                log("could not find the OCI spec twistedock wrote: no `bare runc, twistedock's spec` row")
            else:
                runc_spec = BareRunc("bare runc, twistedock's spec", args.runc,
                                     os.path.join(workdir, "bundle-spec"), state_root)
                make_daemon_spec_bundle(spec, runc_spec.bundle, tar_bytes, token)
                runc_spec.once()  # fail here, not in the middle, if it cannot run
                bare.append(runc_spec)
                spec_cgroup = spec.get("linux", {}).get("cgroupsPath")
                if spec_cgroup:
                    results["spec_cgroup"] = os.path.join(os.path.dirname(spec_cgroup), "bench-" + token)
        targets = [td]
        if args.peer:
            if not args.peer.startswith("unix://"):
                raise BenchError("--peer must be a unix:// address")
            peer = Target(args.peer_name or "peer", args.peer[len("unix://"):], token)
            with closing(peer.client()) as c:
                version_name = daemon_name(c)
                if not args.peer_name:
                    peer.name = version_name
                if ensure_busybox(c, tar_bytes):
                    results["peer_image_imported"] = True
            pid = pid_serving(peer.sock)
            if pid is None:
                log("cannot find the process serving %s: no memory figures for the peer" % peer.sock)
            else:
                argv_ = cmdline(pid)
                exec_root = args.peer_exec_root or option_value(argv_, "--exec-root") or "/var/run/docker"
                peer.memory = MemoryProbe(pid, exec_root, ours=lambda peer=peer: list(peer.created_ids))
                peer.memory_note = ("%s (pid %d) + its descendants + processes naming %s (containerd, and "
                                    "the containerd-shim-runc-v2 of our containers)" % (comm(pid), pid, exec_root))
            targets.append(peer)
        names = [t.name for t in targets]

        # -- 4a. idle memory --
        memory: Dict[str, Dict[str, tuple]] = {t.name: {} for t in targets}
        for t in targets:
            memory[t.name]["idle"] = measure_memory(t)

        # -- 1. life cycle --
        log("life cycle: %d rounds (+%d warm-up), interleaved: %s" % (
            args.rounds, args.warmup, ", ".join([b.name for b in bare] + names)))
        totals, phases = bench_lifecycle(targets, bare, args.rounds, args.warmup)

        # -- 3. concurrent starts (and 4b. memory with them running) --
        log("%d concurrent create+start, %d trial(s)" % (args.concurrent, args.start_trials))
        walls: Dict[str, List[float]] = {t.name: [] for t in targets}
        for trial in range(args.start_trials):
            order = targets if trial % 2 == 0 else list(reversed(targets))
            for t in order:
                group = "concurrent-%d" % trial
                try:
                    walls[t.name].append(concurrent_start(t, args.concurrent, group))
                    if trial == 0:
                        memory[t.name]["running"] = measure_memory(t)
                finally:
                    t.remove_mine(group, threads=4)

        # -- 2. list --
        n = args.list_containers
        log("creating %d containers on each daemon" % n)
        for t in targets:
            parallel(4, range(n), lambda c, _i, t=t: t.create(c, ["true"], "list"), t)
        listed: Dict[str, int] = {}
        if peer is not None:
            # Other users' containers on the peer are listed too: pad twistedock
            # with as many, so that both lists hold the same number.
            with closing(peer.client()) as c:
                foreign = len(c.json("GET", "/containers/json?all=1")) - n
            if foreign > 0:
                log("the peer holds %d other containers: padding twistedock with as many" % foreign)
                parallel(4, range(foreign), lambda c, _i: td.create(c, ["true"], "padding"), td)
        for t in targets:
            with closing(t.client()) as c:
                listed[t.name] = len(c.json("GET", "/containers/json?all=1"))
        log("listing for %.1f s per daemon and client count (%s containers)" % (
            args.list_seconds, " / ".join(str(listed[x]) for x in names)))
        rps = bench_list(targets, args.list_clients, args.list_seconds, slices=3 if not args.quick else 1)
        if peer is not None:
            td.remove_mine("padding")

        # -- 4c. memory with n stopped containers --
        log("starting the %d listed containers (`true`) and waiting for them to exit" % n)
        for t in targets:
            with closing(t.client()) as c:
                ids = [x["Id"] for x in t.mine(c, "list")]

            def run(c, cid, t=t):
                t.start(c, cid)
                return t.wait(c, cid)

            codes = parallel(4, ids, run, t)
            if any(codes):
                raise BenchError("%s: some `true` containers exited non-zero: %s" % (t.name, sorted(set(codes))))
        for t in targets:
            memory[t.name]["stopped"] = measure_memory(t)
        for t in targets:
            t.remove_mine("list")
        for t in targets:
            memory[t.name]["idle after"] = measure_memory(t)
        elapsed = time.monotonic() - started

        # -- the report --
        report(args, targets, bare, totals, phases, rps, listed, walls, memory, elapsed, results)
        return 0
    finally:
        for t in ([peer] if peer is not None else []):
            try:
                left = t.remove_mine()
                if left:
                    log("removed %d leftover containers from the peer" % left)
            except Exception as e:  # noqa: B902
                problems.append("cleaning the peer: %s" % e)
            if results.get("peer_image_imported"):
                with closing(t.client()) as c:
                    remove_busybox(c, problems)
        complaint = own.stop()
        if complaint:
            problems.append(complaint)
        if runc is not None:
            problems.extend(runc.cleanup())
        leftovers = scrub(workdir, td.created_ids, results.get("spec_cgroup"))
        if leftovers:
            problems.append("left behind by twistedock after SIGTERM (now removed): " + "; ".join(leftovers))
        end_run(workdir, args.keep, problems)
        if problems and not args.keep:
            print("daemon log tail:\n" + own.log_tail(), file=sys.stderr)


def report(args, targets, bare, totals, phases, rps, listed, walls, memory, elapsed, results) -> None:
    td, peer = targets[0], (targets[1] if len(targets) > 1 else None)
    runc = bare[0]
    ms = 1000.0

    def med(name):
        return statistics.median(totals[name]) * ms

    def p90(name):
        return percentile(totals[name], 90) * ms

    heading("1. Life cycle of `busybox true`: create + start + wait + remove (%d rounds, interleaved)" % args.rounds)
    rows = []
    for name in [b.name for b in bare] + [t.name for t in targets]:
        v = totals[name]
        rows.append([name, fmt(med(name)), fmt(p90(name)), fmt(min(v) * ms), fmt(max(v) * ms),
                     ratio(med(name), med(runc.name)), ratio(p90(name), p90(runc.name))])
    table(rows, ["", "median ms", "p90 ms", "min ms", "max ms", "median / runc", "p90 / runc"])
    print()
    print("Phases (median ms):")
    rows = []
    for t in targets:
        cols = list(zip(*phases[t.name]))
        rows.append([t.name] + [fmt(statistics.median(c) * ms) for c in cols])
    table(rows, ["", "create", "start", "wait", "remove"])

    heading("2. GET /containers/json?all=1 (%s containers listed), requests per second" %
            " / ".join("%d" % listed[t.name] for t in targets))
    rows = []
    for n in (1, args.list_clients):
        row = ["%d client%s" % (n, "s" if n > 1 else "")] + [fmt(rps[(t.name, n)]) for t in targets]
        if peer:
            row.append(ratio(rps[(td.name, n)], rps[(peer.name, n)]))
        rows.append(row)
    table(rows, ["", *[t.name + " req/s" for t in targets]] + (["twistedock / peer"] if peer else []))

    heading("3. %d containers (`sleep 30`) created and started at once from %d threads (%d trial%s)" % (
        args.concurrent, args.concurrent, args.start_trials, "s" if args.start_trials > 1 else ""))
    rows = []
    for t in targets:
        w = walls[t.name]
        rows.append([t.name, fmt(statistics.median(w) * ms, "%.0f"), fmt(min(w) * ms, "%.0f"), fmt(max(w) * ms, "%.0f")])
    table(rows, ["", "median ms", "min ms", "max ms"])
    if peer:
        print("ratio twistedock / peer (median): %s" % ratio(statistics.median(walls[td.name]),
                                                          statistics.median(walls[peer.name])))

    heading("4. Memory: PSS of the daemon and its helper processes, MiB")
    phases_ = [("idle", "idle (no containers of ours)"), ("running", "%d running" % args.concurrent),
               ("stopped", "%d stopped" % args.list_containers), ("idle after", "idle again, at the end")]
    rows = []
    for key, label in phases_:
        values = [memory[t.name].get(key) for t in targets]
        row = [label] + [fmt(v[0]) if v else "-" for v in values]
        if peer:
            row.append(ratio(values[0][0] if values[0] else None, values[1][0] if values[1] else None))
        rows.append(row)
    table(rows, ["", *[t.name for t in targets]] + (["twistedock / peer"] if peer else []))
    print()
    for t in targets:
        print("%s counted: %s" % (t.name, t.memory_note or "nothing (daemon process not found)"))
        for key, label in phases_:
            v = memory[t.name].get(key)
            if v:
                print("  %-24s %s" % (label + ":", describe_memory(v[1])))

    # -- summary against the targets --
    heading("Summary against the targets")
    rows = []
    td_med, runc_med = med(td.name), med(runc.name)
    rows.append(["life cycle median vs bare runc", "%.1f / %.1f ms" % (td_med, runc_med),
                 ratio(td_med, runc_med), "<= 2x", "met" if td_med <= 2 * runc_med else "MISSED"])
    if len(bare) > 1:
        sm = med(bare[1].name)
        rows.append(["life cycle median vs %s" % bare[1].name, "%.1f / %.1f ms" % (td_med, sm),
                     ratio(td_med, sm), "(for information)", ""])
    if peer:
        pm = med(peer.name)
        rows.append(["life cycle median vs %s" % peer.name, "%.1f / %.1f ms" % (td_med, pm), ratio(td_med, pm),
                     "(%s: %s of runc)" % (peer.name, ratio(pm, runc_med)), ""])
        for n in (1, args.list_clients):
            a, b = rps[(td.name, n)], rps[(peer.name, n)]
            rows.append(["list req/s, %d client%s" % (n, "s" if n > 1 else ""), "%.0f / %.0f" % (a, b),
                         ratio(a, b), ">= 2x", "met" if a >= 2 * b else "MISSED"])
        a, b = statistics.median(walls[td.name]) * ms, statistics.median(walls[peer.name]) * ms
        rows.append(["%d concurrent starts" % args.concurrent, "%.0f / %.0f ms" % (a, b), ratio(a, b),
                     "< 1x", "met" if a < b else "MISSED"])
        mi, pi = memory[td.name].get("idle"), memory[peer.name].get("idle")
        if mi and pi:
            rows.append(["idle PSS", "%.1f / %.1f MiB" % (mi[0], pi[0]), ratio(mi[0], pi[0]),
                         "< 1x", "met" if mi[0] < pi[0] else "MISSED"])
    else:
        mi = memory[td.name].get("idle")
        if mi:
            rows.append(["idle PSS", "%.1f MiB" % mi[0], "-", "< dockerd's (~100 MiB)",
                         "met" if mi[0] < 100 else "MISSED"])
    table(rows, ["figure", "twistedock / peer" if peer else "twistedock / runc", "ratio", "target", ""])
    print()
    print("Whole run: %.0f s on %d CPUs; 1-minute load average %.2f before, %.2f after (other work on the "
          "machine skews every figure; the interleaving spreads it over all columns)."
          % (elapsed, os.cpu_count() or 0, results["loadavg_before"], os.getloadavg()[0]))

    if args.json:
        results.update({
            "lifecycle_ms": {k: {"median": statistics.median(v) * ms, "p90": percentile(v, 90) * ms,
                                 "samples": [x * ms for x in v]} for k, v in totals.items()},
            "lifecycle_phases_ms": {k: [statistics.median(c) * ms for c in zip(*v)] for k, v in phases.items()},
            "list_rps": {"%s/%d" % k: v for k, v in rps.items()},
            "listed": listed,
            "concurrent_start_ms": {k: [x * ms for x in v] for k, v in walls.items()},
            "pss_mib": {k: {p: (v[0] if v else None) for p, v in d.items()} for k, d in memory.items()},
        })
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    run_main(main)
