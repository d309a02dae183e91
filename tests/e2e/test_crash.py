"""
Crash safety end to end: a churn of container operations against a real
daemon, SIGKILLed at a random moment, started again, then the invariants:
every record parses; no acknowledged operation is lost or undone; no
container is duplicated; what runs and what is mounted agrees with what the
daemon says (running containers re-adopted under --live-restore, shown
exited without it); no temporary file survives; every container can be
removed with rm -f, and after that nothing of it is left on the host.  Plus
the disk filling up under the daemon (a small tmpfs data root).

Seeded (TWISTEDOCK_CRASH_SEED) and bounded: TWISTEDOCK_CRASH_CYCLES cycles
(a few by default; hundreds for a long run).
"""

import collections
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time

import pytest

from .conftest import START_TIMEOUT, unix_request
from .test_checkpoint import _criu_problem, configured_criu
from .test_containers import import_busybox

CYCLES = int(os.environ.get("TWISTEDOCK_CRASH_CYCLES") or 12)
SEED = int(os.environ.get("TWISTEDOCK_CRASH_SEED") or 11)
WORKERS = 4
#: One line a cycle (TWISTEDOCK_CRASH_PROGRESS=1), for long runs.
PROGRESS = bool(os.environ.get("TWISTEDOCK_CRASH_PROGRESS"))
RUNC = shutil.which("runc") or "runc"
FULL_ID = re.compile(r"^[0-9a-f]{64}$")
TEMP = re.compile(r"^(\.tmp-.*|.*\.tmp)$")


def call(daemon, method, target, body=None, timeout=10.0):
    """(status, decoded body); status 0 when the daemon did not answer."""
    data, headers = None, {}
    if isinstance(body, (dict, list)):
        data, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
    elif isinstance(body, bytes):
        data, headers = body, {"Content-Type": "application/x-tar"}
    try:
        resp = unix_request(daemon.sock, method, target, data, headers, timeout)
    except Exception:
        return 0, None
    try:
        return resp.status, resp.json() if resp.body else None
    except ValueError:
        return resp.status, resp.body


def small_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("copied")
        payload = b"crash test\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return out.getvalue()


class Model:
    """What the daemon acknowledged, per container; one operation at a time
    per container, so an operation the kill interrupted is the only doubt."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.containers = {}  # id -> {"names": {acceptable}, "removed": bool|None, "auto": bool}
        self.busy = set()
        self.pending = {}  # id -> (operation, argument) in flight
        #: Images acknowledged by a commit: reference -> image ID.
        self.images = {}

    def pick(self, rng):
        with self.lock:
            free = [i for i, c in self.containers.items() if i not in self.busy and c["removed"] is False]
            if not free:
                return None
            ident = rng.choice(sorted(free))
            self.busy.add(ident)
            return ident

    def begin(self, ident, operation, argument=None):
        with self.lock:
            self.pending[ident] = (operation, argument)
            if operation == "rename":
                self.containers[ident]["names"].add(argument)
            if operation == "rm":
                self.containers[ident]["removed"] = None  # in doubt until answered

    def end(self, ident, operation, argument, status, answer=None):
        """C{status} 0: no answer (the daemon died): the outcome in doubt."""
        acknowledged = 200 <= status < 300
        with self.lock:
            if operation == "commit" and acknowledged:
                self.images[argument] = answer["Id"]
            self.pending.pop(ident, None)
            self.busy.discard(ident)
            c = self.containers[ident]
            if status == 0:
                return
            if operation == "rename":
                c["names"] = {argument} if acknowledged else c["names"] - {argument}
            if operation == "rm":
                c["removed"] = True if acknowledged else False
            if operation == "checkpoint" and acknowledged:
                c["checkpoints"].add(argument)


def worker(daemon, model, rng, stop, counter):
    image_cmd = ["sleep", "300"]
    while not stop.is_set():
        roll = rng.random()
        if roll < 0.2 or not model.containers:
            name = "c%08x" % rng.getrandbits(32)
            auto = rng.random() < 0.2
            body = {"Image": "busybox", "Cmd": image_cmd if not auto else ["sleep", "0.2"],
                    "HostConfig": {"AutoRemove": auto, "NetworkMode": "none"}}
            status, answer = call(daemon, "POST", "/containers/create?name=" + name, body)
            if status == 201:
                ident = answer["Id"]
                with model.lock:
                    model.containers[ident] = {
                        "names": {"/" + name}, "removed": False, "auto": auto, "checkpoints": set(),
                    }
                    model.busy.add(ident)
                counter.append("create")
                if auto or rng.random() < 0.7:
                    model.begin(ident, "start")
                    status, _ = call(daemon, "POST", "/containers/%s/start" % ident)
                    model.end(ident, "start", None, status)
                    if status == 204:
                        counter.append("start")
                else:
                    model.end(ident, "create", None, 201)
                if status == 0:
                    return
            elif status == 0:
                return
            continue
        ident = model.pick(rng)
        if ident is None:
            continue
        operations = ["start", "stop", "kill", "pause", "unpause", "rm", "rename", "exec", "cp", "rm", "commit"]
        if daemon.criu:
            operations.append("checkpoint")
        operation = rng.choice(operations)
        argument = None
        if operation == "rename":
            argument = "/r%08x" % rng.getrandbits(32)
        if operation == "checkpoint":
            argument = "k%08x" % rng.getrandbits(32)
        if operation == "commit":
            argument = "crash-commit:%08x" % rng.getrandbits(32)
        answer = None
        model.begin(ident, operation, argument)
        if operation == "start":
            status, _ = call(daemon, "POST", "/containers/%s/start" % ident)
        elif operation == "stop":
            status, _ = call(daemon, "POST", "/containers/%s/stop?t=1" % ident)
        elif operation == "kill":
            status, _ = call(daemon, "POST", "/containers/%s/kill" % ident)
        elif operation == "pause":
            status, _ = call(daemon, "POST", "/containers/%s/pause" % ident)
        elif operation == "unpause":
            status, _ = call(daemon, "POST", "/containers/%s/unpause" % ident)
        elif operation == "rm":
            status, _ = call(daemon, "DELETE", "/containers/%s?force=1" % ident, timeout=30)
        elif operation == "rename":
            status, _ = call(daemon, "POST", "/containers/%s/rename?name=%s" % (ident, argument[1:]))
        elif operation == "exec":
            status, answer = call(daemon, "POST", "/containers/%s/exec" % ident, {"Cmd": ["true"]})
            if status == 201:
                status, _ = call(daemon, "POST", "/exec/%s/start" % answer["Id"], {"Detach": True})
        elif operation == "checkpoint":
            status, _ = call(daemon, "POST", "/containers/%s/checkpoints" % ident,
                             {"CheckpointID": argument, "Exit": False}, timeout=60)
        elif operation == "commit":
            repo, tag = argument.split(":")
            status, answer = call(daemon, "POST", "/commit?container=%s&repo=%s&tag=%s" % (ident, repo, tag),
                                  {}, timeout=60)
        else:
            status, _ = call(daemon, "PUT", "/containers/%s/archive?path=/tmp" % ident, small_tar())
        model.end(ident, operation, argument, status, answer)
        if 200 <= status < 300:
            counter.append(operation)
        if status == 0:
            return


def runc(daemon, *args):
    result = subprocess.run([RUNC, "--root", os.path.join(daemon.exec_root, "runc")] + list(args),
                            capture_output=True, text=True, timeout=30)
    return result


def runc_list(daemon):
    result = runc(daemon, "list", "--format", "json")
    assert result.returncode == 0, result.stderr
    return {c["id"]: c for c in (json.loads(result.stdout or "null") or [])}


def mounts_under(path):
    prefix = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def processes_of(exec_root, ids=(), exclude=()):
    """Pids whose command line names the exec root (conmon, runc) or whose
    cgroup is one of containers C{ids} (their processes)."""
    found = []
    needle = exec_root.encode() + b"/"
    ids = [i.encode() for i in ids]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    continue  # dead, not yet reaped by its parent
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                mine = needle in f.read()
            if not mine and ids:
                with open("/proc/%s/cgroup" % entry, "rb") as f:
                    cgroup = f.read()
                mine = any(i in cgroup for i in ids)
        except OSError:
            continue
        if mine:
            found.append(int(entry))
    return found


def check_invariants(daemon, model, live_restore):
    """After a restart: the violations found (empty: none)."""
    violations = []
    containers_dir = os.path.join(daemon.data_root, "containers")
    for entry in os.listdir(containers_dir):
        path = os.path.join(containers_dir, entry)
        if TEMP.match(entry) or entry.startswith(".removed-"):
            violations.append("leftover %s" % path)
            continue
        for name in os.listdir(path):
            if TEMP.match(name):
                violations.append("temporary file survived: %s" % os.path.join(path, name))
        try:
            with open(os.path.join(path, "container.json")) as f:
                json.load(f)
        except (OSError, ValueError) as e:
            violations.append("record of %s: %s" % (entry, e))
    status, listed = call(daemon, "GET", "/containers/json?all=1")
    assert status == 200, listed
    ids = [c["Id"] for c in listed]
    names = [n for c in listed for n in c["Names"]]
    if len(ids) != len(set(ids)) or len(names) != len(set(names)):
        violations.append("duplicates: %r %r" % (ids, names))
    by_id = {c["Id"]: c for c in listed}
    for ident, c in model.containers.items():
        present = ident in by_id
        if c["removed"] is True and present:
            violations.append("acknowledged rm -f undone: %s" % ident)
        if c["removed"] is False and not c["auto"] and not present:
            violations.append("acknowledged create lost: %s" % ident)
        if present and by_id[ident]["Names"][0] not in c["names"]:
            violations.append("name of %s is %s, acknowledged %r" % (ident, by_id[ident]["Names"][0], c["names"]))
        if present and daemon.criu:
            status, listing = call(daemon, "GET", "/containers/%s/checkpoints" % ident)
            names = {k["Name"] for k in listing or []} if status == 200 else set()
            if not c["checkpoints"] <= names:
                violations.append("checkpoints of %s lost: %r" % (ident, c["checkpoints"] - names))
            base = os.path.join(containers_dir, ident, "checkpoints")
            for name in names:
                if not os.path.exists(os.path.join(base, name, "checkpoint.json")):
                    violations.append("partial checkpoint %s of %s listed" % (name, ident))
            if os.path.isdir(base) and [n for n in os.listdir(base) if n.startswith(".")]:
                violations.append("dump leftovers in %s: %r" % (base, os.listdir(base)))
    for reference, image_id in sorted(model.images.items()):
        status, image = call(daemon, "GET", "/images/%s/json" % reference)
        if status != 200 or image.get("Id") != image_id:
            violations.append("acknowledged commit %s (%s) lost: %s %r" % (reference, image_id, status, image))
    runc_known = runc_list(daemon)
    mounted = mounts_under(os.path.join(daemon.data_root, "overlay2"))
    for ident, c in by_id.items():
        state = c["State"]
        merged = os.path.join(os.path.realpath(daemon.data_root), "overlay2", ident, "merged")
        if state in ("running", "paused"):
            if not live_restore:
                violations.append("%s %s after a restart without --live-restore" % (ident, state))
            known = runc_known.get(ident)
            if known is None or known["status"] != state:
                violations.append("%s shown %s, runc says %r" % (ident, state, known and known["status"]))
        else:
            if ident in runc_known:
                violations.append("%s shown %s, runc has it %s" % (ident, state, runc_known[ident]["status"]))
            if merged in mounted:
                violations.append("%s shown %s, its overlay mounted" % (ident, state))
    for ident in runc_known:
        if ident not in by_id:
            violations.append("runc container %s the daemon does not list" % ident)
    return violations


def remove_all_and_check(daemon, known=()):
    violations = []
    status, listed = call(daemon, "GET", "/containers/json?all=1")
    assert status == 200
    known = set(known) | {c["Id"] for c in listed}
    for c in listed:
        status, body = call(daemon, "DELETE", "/containers/%s?force=1" % c["Id"], timeout=30)
        if status not in (204, 404):
            violations.append("rm -f %s: %s %r" % (c["Id"], status, body))
    # (--rm containers still being removed by the daemon itself.)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and call(daemon, "GET", "/containers/json?all=1")[1]:
        time.sleep(0.1)
    if runc_list(daemon):
        violations.append("runc containers after removing all: %r" % sorted(runc_list(daemon)))
    if mounts_under(os.path.join(daemon.data_root, "overlay2")):
        violations.append("mounts after removing all: %r" % mounts_under(daemon.data_root))
    for directory in (os.path.join(daemon.data_root, "overlay2"), os.path.join(daemon.data_root, "containers")):
        left = [n for n in os.listdir(directory) if FULL_ID.match(n) or n.startswith(".")]
        if left:
            violations.append("left in %s: %r" % (directory, left))
    left = [n for n in os.listdir(daemon.exec_root) if FULL_ID.match(n)]
    if left:
        violations.append("bundles left: %r" % left)
    # conmon's links to the bundles and its exit files.
    for sub, names in (("s", {i[:12] for i in known}), ("exits", known)):
        directory = os.path.join(daemon.exec_root, sub)
        left = [n for n in os.listdir(directory) if n in names] if os.path.isdir(directory) else []
        if left:
            violations.append("left in %s: %r" % (directory, left))
    time.sleep(0.2)
    alive = processes_of(os.path.realpath(daemon.exec_root), known, exclude={daemon.proc.pid, os.getpid()})
    if alive:
        violations.append("processes left: %r" % [(pid, _cmdline(pid)) for pid in alive])
    return violations


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")[:200]
    except OSError:
        return "?"


def kill_everything(daemon):
    """Teardown: whatever the test left (the daemon dead) killed and unmounted."""
    for ident in runc_list(daemon) if os.path.isdir(os.path.join(daemon.exec_root, "runc")) else {}:
        runc(daemon, "delete", "--force", ident)
    exclude = {os.getpid()} | ({daemon.proc.pid} if daemon.running else set())
    for pid in processes_of(os.path.realpath(daemon.exec_root), exclude=exclude):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    # (The exec root holds mounts too: network namespaces, the empty
    # tmpfs restores bind on masked directories.)
    for target in sorted(mounts_under(daemon.data_root) + mounts_under(daemon.exec_root), reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


@pytest.fixture
def crash_daemon(daemons, tmp_path):
    # Checkpoints join the churn where CRIU works (as test_checkpoint needs).
    criu = None if _criu_problem() else configured_criu()[0]
    base = ["--experimental", "--criu-path", criu] if criu else []
    daemon = daemons.make(*base)
    daemon.base_args = base
    daemon.criu = criu
    daemon.start(timeout=START_TIMEOUT * 4)
    import_busybox(daemon, tmp_path)
    yield daemon
    if daemon.running:
        daemon.proc.kill()
        daemon.wait_exit()
    kill_everything(daemon)


def test_crash_cycles(crash_daemon):
    daemon = crash_daemon
    rng = random.Random(SEED)
    violations = []
    acknowledged = collections.Counter()
    images = {}  # every commit acknowledged so far: its image must stay
    restarts = []
    for cycle in range(CYCLES):
        live_restore = cycle % 2 == 1
        model = Model()
        model.images = images
        stop = threading.Event()
        counter = []
        threads = [
            threading.Thread(target=worker, args=(daemon, model, random.Random(rng.random()), stop, counter))
            for _ in range(WORKERS)
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 2.0))
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.wait_exit()
        stop.set()
        for t in threads:
            t.join(30)
        acknowledged.update(counter)
        daemon.args = daemon.base_args + (["--live-restore"] if live_restore else [])
        # (Generous: a loaded machine starves the daemon; a start that never
        # ends is what the full-disk case checks.)
        started = time.monotonic()
        daemon.start(timeout=START_TIMEOUT * 4)
        restarts.append(time.monotonic() - started)
        found = check_invariants(daemon, model, live_restore)
        found += remove_all_and_check(daemon, model.containers)
        violations += ["cycle %d: %s" % (cycle, v) for v in found]
        if PROGRESS:
            print("cycle %d (live restore %s): %d acknowledged, restart %.1f s, %d violations" % (
                cycle, live_restore, len(counter), restarts[-1], len(found)), flush=True)
        assert not found, "cycle %d (seed %d, live restore %s):\n%s\n%s" % (
            cycle, SEED, live_restore, "\n".join(found), daemon.log_text()[-3000:]
        )
    print("%d cycles (seed %d), %d acknowledged operations (%s), %d violations; restart median %.1f s, max %.1f s" % (
        CYCLES, SEED, sum(acknowledged.values()), dict(acknowledged), len(violations),
        sorted(restarts)[len(restarts) // 2], max(restarts)))


# -- a runtime call that fails -----------------------------------------------


def test_a_start_runc_refuses_leaves_nothing_on_the_host(crash_daemon):
    """A real runc failure (an entrypoint that does not exist): the start
    answers dockerd's error, and nothing of the run is left: no runc
    container, no conmon, no overlay mount, no bundle, no link to it."""
    daemon = crash_daemon
    status, answer = call(daemon, "POST", "/containers/create?name=broken",
                          {"Image": "busybox", "Cmd": ["/no/such/binary"], "HostConfig": {"NetworkMode": "none"}})
    assert status == 201, answer
    ident = answer["Id"]
    for _ in range(2):  # (a second start finds nothing in its way either)
        status, answer = call(daemon, "POST", "/containers/broken/start")
        assert status == 400 and "no such file or directory" in answer["message"], answer
        state = call(daemon, "GET", "/containers/broken/json")[1]["State"]
        assert (state["Status"], state["ExitCode"]) == ("created", 127), state
        assert ident not in runc_list(daemon)
        merged = os.path.join(os.path.realpath(daemon.data_root), "overlay2", ident, "merged")
        assert merged not in mounts_under(os.path.join(daemon.data_root, "overlay2"))
        assert not os.path.exists(os.path.join(daemon.exec_root, ident))
        assert not os.path.lexists(os.path.join(daemon.exec_root, "s", ident[:12]))
        assert processes_of(os.path.realpath(daemon.exec_root), [ident],
                            exclude={daemon.proc.pid, os.getpid()}) == []
        assert [n for n in os.listdir(os.path.join(daemon.data_root, "containers", ident)) if TEMP.match(n)] == []
    assert remove_all_and_check(daemon) == []


# -- the disk full ----------------------------------------------------------


@pytest.fixture
def small_root(daemons, tmp_path):
    """A daemon whose data root is a 24 MiB tmpfs."""
    daemon = daemons.make()
    daemon.criu = None
    os.makedirs(daemon.data_root)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", daemon.data_root], check=True)
    try:
        daemon.start()
        import_busybox(daemon, tmp_path)
        yield daemon
    finally:
        if daemon.running:
            daemon.proc.kill()
            daemon.wait_exit()
        kill_everything(daemon)
        subprocess.run(["umount", "-l", daemon.data_root], check=False)


def fill(path):
    """Fill the filesystem of C{path} (a file named filler); return it."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = b"\0" * (1 << 16)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError:
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
    return filler


def refused_for_space(answer) -> bool:
    return bool(answer) and "no space left on device" in answer.get("message", "")


def test_a_full_disk_refuses_writes_and_never_wedges_a_restart(small_root):
    daemon = small_root
    status, answer = call(daemon, "POST", "/containers/create?name=web",
                          {"Image": "busybox", "Cmd": ["sleep", "300"]})
    assert status == 201, answer
    ident = answer["Id"]
    assert call(daemon, "POST", "/containers/web/start")[0] == 204
    filler = fill(daemon.data_root)
    try:
        # Reads answer; writes are refused with a clear message, and
        # change nothing.
        assert call(daemon, "GET", "/_ping")[0] == 200
        assert call(daemon, "GET", "/containers/json?all=1")[0] == 200
        assert call(daemon, "GET", "/images/json")[0] == 200
        status, answer = call(daemon, "POST", "/containers/web/rename?name=other")
        assert status == 500 and refused_for_space(answer), answer
        assert call(daemon, "GET", "/containers/web/json")[1]["Name"] == "/web"
        status, answer = call(daemon, "POST", "/containers/web/pause")
        assert status == 500 and refused_for_space(answer), answer
        assert call(daemon, "GET", "/containers/web/json")[1]["State"]["Status"] == "running"
        assert runc_list(daemon)[ident]["status"] == "running"
        status, answer = call(daemon, "POST", "/containers/create?name=new",
                              {"Image": "busybox", "Cmd": ["true"]})
        assert status == 500 and refused_for_space(answer), answer
        assert call(daemon, "GET", "/containers/new/json")[0] == 404
    finally:
        os.unlink(filler)
    # Space back, the same daemon (no restart): writes work again.
    pid = daemon.proc.pid
    assert call(daemon, "POST", "/containers/web/rename?name=other")[0] == 204
    assert call(daemon, "POST", "/containers/other/pause")[0] == 204
    assert call(daemon, "POST", "/containers/other/unpause")[0] == 204
    status, answer = call(daemon, "POST", "/containers/create?name=new",
                          {"Image": "busybox", "Cmd": ["sleep", "300"]})
    assert status == 201, answer
    assert call(daemon, "POST", "/containers/new/start")[0] == 204
    assert daemon.proc.pid == pid and daemon.running
    # Full again, then killed and started again on the full disk: its
    # start is bounded (it does not wait for what cannot come) and it
    # answers, the running containers recorded exited.
    filler = fill(daemon.data_root)
    try:
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.wait_exit()
        started = time.monotonic()
        daemon.start()
        assert time.monotonic() - started < START_TIMEOUT
        for name, its_id in (("other", ident), ("new", None)):
            state = call(daemon, "GET", "/containers/%s/json" % name)[1]
            assert (state["Name"], state["State"]["Status"]) == ("/" + name, "exited"), state
            assert state["Id"] not in runc_list(daemon)
        status, answer = call(daemon, "POST", "/containers/other/rename?name=third")
        assert status == 500 and refused_for_space(answer), answer
    finally:
        os.unlink(filler)
    # Space back: everything works again, with nothing left over.
    assert call(daemon, "POST", "/containers/other/start")[0] == 204
    assert call(daemon, "POST", "/containers/other/rename?name=third")[0] == 204
    assert remove_all_and_check(daemon) == []
    assert [n for root, _, files in os.walk(daemon.data_root) for n in files if TEMP.match(n)] == []
