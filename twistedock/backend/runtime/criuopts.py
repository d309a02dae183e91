"""
The CRIU options of a container's dump, as runc 1.1's C{Checkpoint}
(libcontainer/container_linux.go) gives them, made from what runc keeps
of the container (its C{state.json}: the libcontainer config, the init's
pid, cgroup paths and standard descriptors), so that a dump taken over
CRIU's RPC by the daemon is the dump C{runc checkpoint} would take, and
C{runc restore} restores it.

Where this departs from runc, on purpose (issue 16's measurements):
the network lock is nftables (C{NFTABLES}), or none when the
container's network namespace holds no TCP connection to preserve,
instead of four C{iptables-restore} runs; cgroups are not dumped
(C{manage_cgroups_mode IGNORE}): the restore places the process in its
container's cgroups, as runc's restore does for CRIU's own process;
the empty read-only tmpfs runc mounts on each masked directory
(/proc/acpi, /sys/firmware...) is an external mount (C{MASKED_DIR_KEY}),
not a tmpfs CRIU tars at the dump and untars at the restore (~5 ms each
way each): the restore binds the daemon's own empty read-only tmpfs
there (L{rootfs.mount_empty_readonly}), which the container sees as
runc's (tmpfs, ro, root 1777, empty); the other tmpfs mounts, when a
listing can make them again, likewise (L{tmpfsmounts}, chosen by the
driver: L{restore_options} maps them).

Blocking (reads state.json and /proc): call it in a thread.
"""

import json
import os
import stat
from typing import Dict, List, Optional

from . import tmpfsmounts

#: What runc names the descriptors file in a checkpoint's images.
DESCRIPTORS = "descriptors.json"

#: runc's default CRIU configuration file (when no org.criu.config).
RUNC_CONFIG_FILE = "/etc/criu/runc.conf"

#: CRIU's key for an external namespace (runc's criuNsToKey).
EXTERNAL_NS_KEYS = {"NEWNET": ("net", "extRootNetNS"), "NEWPID": ("pid", "extRootPidNS")}

#: A marker beside the images of a dump CRIU made from inside the
#: container's network namespace (a joined one, runc's C{path}): CRIU
#: shares it then and leaves it out of the images, instead of naming it
#: external and dumping it anyway: its sysfs mounted, its conntrack table
#: listed twice (CRIU 4.1 asks for the connections where it means the
#: expectations), each a walk of the host-wide hash table, 10-12 ms here
#: with 262144 buckets: about 23 ms with the process frozen, for images a
#: restore into an external namespace ignores.  The restore joins the
#: container's namespace instead (C{join_ns}, L{restore_options}; under
#: runc, CRIU started inside it, C{restoreplan.CRIU_IN_NETNS}).
NET_LEFT_OUT = "net-left-out"

#: The external mount key of a masked directory's empty read-only tmpfs
#: (its source at the restore: an empty read-only tmpfs of the daemon's).
MASKED_DIR_KEY = "twistedock-masked-dir"


def read_state(state_root: str, container_id: str) -> dict:
    """runc's C{state.json} of the container."""
    with open(os.path.join(state_root, container_id, "state.json"), "rb") as f:
        return json.loads(f.read())


def annotations(labels: List[str]) -> Dict[str, str]:
    """runc's utils.Annotations: the config's labels but C{bundle}."""
    found = {}
    for label in labels or []:
        key, sep, value = label.partition("=")
        if sep and key != "bundle":
            found[key] = value
    return found


def config_file(config: dict) -> Optional[str]:
    """runc's handleCriuConfigurationFile: the annotation
    C{org.criu.config} (empty: none), else runc's default file."""
    notes = annotations(config.get("labels") or [])
    if "org.criu.config" in notes:
        return notes["org.criu.config"] or None
    return RUNC_CONFIG_FILE


def unified_cgroups() -> bool:
    """Whether the host is in cgroup v2 unified mode."""
    found = ""
    try:
        for fields in tmpfsmounts.read_mountinfo("/proc/self/mountinfo"):
            if fields["mountpoint"] == "/sys/fs/cgroup":
                found = fields["fstype"]
    except OSError:
        return False
    return found == "cgroup2"


def _relative_destination(rootfs: str, destination: str) -> str:
    """runc's mountDest: the destination inside the root (a path as the
    container sees it, rootfs prefix taken away)."""
    if destination.startswith(rootfs):
        destination = destination[len(rootfs):] or "/"
    return "/" + os.path.normpath(destination).lstrip("/")


def cgroup_binds(pid: int, destination: str) -> List[str]:
    """The cgroup v1 mounts runc bind-mounted below C{destination} (its
    getCgroupMounts), as the container's own mount table shows them."""
    found = []
    prefix = destination.rstrip("/") + "/"
    try:
        for fields in tmpfsmounts.mountinfo(pid):
            if fields["fstype"] in ("cgroup", "cgroup2") and fields["mountpoint"].startswith(prefix):
                found.append(fields["mountpoint"])
    except OSError:
        pass
    return found


def tmpfs_mounts(pid: int) -> set:
    """The mount points of the tmpfs mounts C{pid} sees (in its root)."""
    try:
        return {f["mountpoint"] for f in tmpfsmounts.mountinfo(pid) if f["fstype"] == "tmpfs"}
    except OSError:
        return set()


def masks_externally(config: dict) -> bool:
    """Whether a dump may name the masked directories external: the
    restores know their source (runc's through the configuration file
    the daemon writes, unless the container names one of its own)."""
    return "org.criu.config" not in annotations(config.get("labels") or [])


def has_tcp_connections(pid: int, proc: str = "/proc") -> bool:
    """Whether the network namespace of C{pid} has a TCP socket other
    than a listening one (state 0A), whose connection a lock protects.

    The namespace's socket counters first (C{sockstat}: per namespace,
    read in microseconds): none in use and none in TIME_WAIT, no
    connection.  Else its tables, which the kernel prints by walking
    the host-wide hash of established sockets (4 ms a table here, 10-30
    ms on a loaded machine, before the freeze)."""
    if _no_tcp_sockets(pid, proc):
        return False
    for name in ("tcp", "tcp6"):
        try:
            with open("%s/%d/net/%s" % (proc, pid, name), "r") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] != "0A":
                        return True
        except OSError:
            # Unreadable: lock, to be safe.
            return True
    return False


def _no_tcp_sockets(pid: int, proc: str) -> bool:
    """Whether C{pid}'s network namespace counts no TCP socket in use
    (listening or not, IPv4 or IPv6) and none in TIME_WAIT, by its
    C{sockstat} and C{sockstat6} ("TCP: inuse 0 orphan 0 tw 0 ...",
    "TCP6: inuse 0"); False when unsure (a file unreadable, a count
    missing)."""
    counts = {}
    for name in ("sockstat", "sockstat6"):
        try:
            with open("%s/%d/net/%s" % (proc, pid, name), "r") as f:
                for line in f:
                    label, _, rest = line.partition(":")
                    if label in ("TCP", "TCP6"):
                        fields = rest.split()
                        for key, value in zip(fields[::2], fields[1::2]):
                            counts["%s %s" % (label, key)] = value
        except OSError:
            return False
    wanted = ("TCP inuse", "TCP tw", "TCP6 inuse")
    return all(counts.get(key) == "0" for key in wanted)


def joined_netns(state: dict) -> Optional[str]:
    """The path of the network namespace runc joined for the container
    (C{config.namespaces}), or None (its own, or the host's)."""
    for ns in state["config"].get("namespaces") or []:
        if ns.get("type") == "NEWNET" and ns.get("path"):
            return ns["path"]
    return None


def dump_options(state: dict, *, leave_running: bool, tcp_established: bool, file_locks: bool,
                 images_dir_fd: int, work_dir_fd: int, unified: Optional[bool] = None,
                 network_lock: str = "NFTABLES", masked_dirs: bool = False, net_left_out: bool = False) -> dict:
    """C{criu_opts} fields (see L{criurpc.set_options}) for the dump of
    the container runc described in C{state}; C{network_lock} is the name
    of the lock method (C{NFTABLES}, C{IPTABLES}, C{SKIP}), turned into its
    number by the caller's messages; C{masked_dirs}: the masked
    directories' tmpfs mounts external (L{MASKED_DIR_KEY}); C{net_left_out}:
    CRIU runs in the container's network namespace (L{NET_LEFT_OUT}), which
    is then not named external."""
    config = state["config"]
    rootfs = config["rootfs"]
    pid = int(state["init_process_pid"])
    options = {
        "images_dir_fd": images_dir_fd,
        "work_dir_fd": work_dir_fd,
        "log_level": 4,
        "log_file": "dump.log",
        "root": rootfs,
        "manage_cgroups": True,
        "notify_scripts": True,
        "pid": pid,
        "shell_job": False,
        "leave_running": leave_running,
        "tcp_established": tcp_established,
        "ext_unix_sk": False,
        "file_locks": file_locks,
        "empty_ns": 0,
        "orphan_pts_master": True,
        "auto_dedup": False,
        "lazy_pages": False,
    }
    chosen = config_file(config)
    if chosen:
        options["config_file"] = chosen
    external = []
    namespaces = {ns.get("type"): ns.get("path") or "" for ns in config.get("namespaces") or []}
    for kind, (name, key) in EXTERNAL_NS_KEYS.items():
        path = namespaces.get(kind)
        if path and not (kind == "NEWNET" and net_left_out):
            external.append("%s[%d]:%s" % (name, os.stat(path).st_ino, key))
    if external:
        options["external"] = external
    freezer = (state.get("cgroup_paths") or {}).get("freezer")
    if freezer:
        options["freeze_cgroup"] = freezer
    if unified is None:
        unified = unified_cgroups()
    ext_mnt = []

    def external_mount(destination: str) -> None:
        path = _relative_destination(rootfs, destination)
        ext_mnt.append({"key": path, "val": path})

    for m in config.get("mounts") or []:
        if m.get("device") == "bind":
            external_mount(m["destination"])
        elif m.get("device") == "cgroup" and not unified and "NEWCGROUP" not in namespaces:
            for bind in cgroup_binds(pid, m["destination"]):
                external_mount(bind)
    masked_tmpfs = tmpfs_mounts(pid) if masked_dirs and masks_externally(config) else set()
    for path in config.get("mask_paths") or []:
        try:
            st = os.stat("/proc/%d/root/%s" % (pid, path.lstrip("/")))
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            ext_mnt.append({"key": path, "val": "/dev/null"})
        elif path in masked_tmpfs:
            ext_mnt.append({"key": path, "val": MASKED_DIR_KEY})
    for device in config.get("devices") or []:
        if device.get("path"):
            external_mount(device["path"])
    options["ext_mnt"] = ext_mnt
    return options


def write_descriptors(state: dict, images_dir: str) -> None:
    """runc's C{descriptors.json}: the init's standard descriptors as runc
    recorded them at create (the restore maps their pipes back)."""
    path = os.path.join(images_dir, DESCRIPTORS)
    with open(path, "w") as f:
        json.dump(list(state.get("external_descriptors") or []), f)
    os.chmod(path, 0o600)


def own_cgroup(controller: str, proc_cgroup: str = "/proc/self/cgroup") -> str:
    """This process's cgroup in a v1 hierarchy (C{controller} as its
    mount's base name shows it: "cpu,cpuacct" lists two)."""
    wanted = set(controller.split(","))
    try:
        with open(proc_cgroup) as f:
            for line in f:
                _, names, path = line.rstrip("\n").split(":", 2)
                listed = set(n for n in names.split(",") if n)
                if listed and (wanted <= listed or listed <= wanted):
                    return path
    except OSError:
        pass
    return "/"


def restore_options(state: dict, cgroup_mounts: List[str], *, images_dir_fd: int, work_dir_fd: int,
                    root: str, netns_fd: Optional[int], tcp_established: bool, file_locks: bool,
                    masked_source: Optional[str] = None, lazy_pages: bool = False,
                    net_left_out: bool = False, tmpfs_sources: Optional[Dict[str, str]] = None) -> dict:
    """C{criu_opts} fields for restoring the container runc described in
    C{state} (runc 1.1's C{Restore}): its bind mounts back from their
    sources, the cgroup v1 mounts from this host's hierarchies, the masked
    paths' /dev/null, the masked directories from C{masked_source} (when
    the dump named them external), its devices; its network namespace joined through
    the inherited C{netns_fd}; its pipes (descriptors.json) inherited
    from CRIU's own stdio; the restored tree a sibling of CRIU (so a child
    of conmon, which runs CRIU).  C{lazy_pages}: the pages left out of the
    images come from C{criu lazy-pages}, which CRIU finds by its socket
    (C{lazy-pages.socket}) in the work directory (C{work_dir_fd}), as
    runc's restore with C{--lazy-pages} asks (no page server options:
    the lazy-pages daemon has them).  C{net_left_out}: the images hold no
    network namespace (L{NET_LEFT_OUT}): the restored tree joins the
    container's by its path.  C{tmpfs_sources}: the daemon's tmpfs for
    each tmpfs the dump named external, by key (L{tmpfsmounts})."""
    config = state["config"]
    rootfs = config["rootfs"]
    ext_mnt = []
    for m in config.get("mounts") or []:
        if m.get("device") == "bind":
            ext_mnt.append({"key": _relative_destination(rootfs, m["destination"]), "val": m["source"]})
    for place in cgroup_mounts:
        base = os.path.basename(place)
        ext_mnt.append({"key": place, "val": os.path.join("/sys/fs/cgroup", base) + own_cgroup(base).rstrip("/")})
    if config.get("mask_paths"):
        ext_mnt.append({"key": "/dev/null", "val": "/dev/null"})
        if masked_source:
            ext_mnt.append({"key": MASKED_DIR_KEY, "val": masked_source})
    for device in config.get("devices") or []:
        if device.get("path"):
            path = _relative_destination(rootfs, device["path"])
            ext_mnt.append({"key": path, "val": device["path"]})
    ext_mnt += tmpfsmounts.restore_mounts(tmpfs_sources)
    options = {
        "images_dir_fd": images_dir_fd,
        "work_dir_fd": work_dir_fd,
        "evasive_devices": True,
        "log_level": 4,
        "log_file": "restore.log",
        "rst_sibling": True,
        "root": root,
        "manage_cgroups": True,
        "notify_scripts": True,
        "shell_job": False,
        "ext_unix_sk": False,
        "tcp_established": tcp_established,
        "file_locks": file_locks,
        "empty_ns": 0,
        "orphan_pts_master": True,
        "auto_dedup": False,
        "lazy_pages": lazy_pages,
        "ext_mnt": ext_mnt,
    }
    chosen = config_file(config)
    if chosen:
        options["config_file"] = chosen
    inherit = []
    join = []
    for ns in config.get("namespaces") or []:
        kind, path = ns.get("type"), ns.get("path") or ""
        if kind == "NEWNET" and net_left_out and not path:
            raise ValueError("the checkpoint holds no network namespace, and the container has none to join")
        if not path:
            continue
        if kind == "NEWNET" and net_left_out:
            join.append({"ns": "net", "ns_file": path})
        elif kind == "NEWNET":
            if netns_fd is not None:
                inherit.append({"key": EXTERNAL_NS_KEYS[kind][1], "fd": netns_fd})
        elif kind == "NEWPID":
            raise ValueError("a joined pid namespace is restored through runc")
        elif kind != "NEWCGROUP":
            join.append({"ns": NAMESPACE_NAMES.get(kind, kind), "ns_file": path})
    for index, descriptor in enumerate(state.get("external_descriptors") or []):
        if "pipe:" in descriptor:
            inherit.append({"key": descriptor, "fd": index})
    if inherit:
        options["inherit_fd"] = inherit
    if join:
        options["join_ns"] = join
    return options


#: runc's configs.NsName.
NAMESPACE_NAMES = {"NEWNS": "mnt", "NEWUTS": "uts", "NEWIPC": "ipc", "NEWUSER": "user", "NEWNET": "net",
                   "NEWPID": "pid", "NEWCGROUP": "cgroup"}


def start_time(pid: int) -> int:
    """A process's start time in clock ticks (/proc/PID/stat field 22), as
    runc records it to know its init again."""
    with open("/proc/%d/stat" % (pid,), "rb") as f:
        text = f.read().decode("ascii", "replace")
    return int(text[text.rindex(")") + 2:].split()[19])


def restored_state(state: dict, pid: int, created: str) -> dict:
    """runc's state of the container once its process is restored as
    C{pid}: what runc's restore would record (runc knows the container
    again: state, exec, kill, delete)."""
    fresh = dict(state)
    fresh["init_process_pid"] = pid
    fresh["init_process_start"] = start_time(pid)
    fresh["created"] = created
    paths = {}
    for kind, name in NAMESPACE_NAMES.items():
        if os.path.exists("/proc/%d/ns/%s" % (pid, name)):
            paths[kind] = "/proc/%d/ns/%s" % (pid, name)
    fresh["namespace_paths"] = paths
    # What the restored process's stdio are now (conmon's pipes, not the
    # dumped run's): what its next dump's descriptors file must name, as
    # runc's restore records them (getPipeFds).
    descriptors = list(state.get("external_descriptors") or ["", "", ""])
    for fd in range(3):
        try:
            descriptors[fd] = os.readlink("/proc/%d/fd/%d" % (pid, fd))
        except (OSError, IndexError):
            pass
    fresh["external_descriptors"] = descriptors
    return fresh
