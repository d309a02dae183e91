"""
A container's cgroups found and read, as containerd's cgroups package reads
them for dockerd's stats: v1 (one hierarchy per controller; a hybrid host,
v1 controllers beside an empty unified hierarchy, counts as v1, as it does
for dockerd) and v2 (the unified hierarchy alone).

Everything here blocks on small kernel files: call it from a thread.  A
sample reads each file it needs once.
"""

import os
from typing import Dict, List, Optional, Tuple

import attr

CGROUP_ROOT = "/sys/fs/cgroup"

#: USER_HZ: cpuacct.stat counts in these ticks (a constant on Linux).
CLOCK_TICKS = 100
_NS = 1_000_000_000

#: The v1 controllers a sample reads.
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")

#: blkio's CFQ files (kernels with the CFQ scheduler), in containerd's order,
#: and the throttle files read instead when those are missing or empty.
_BLKIO_CFQ = (
    "sectors_recursive",
    "io_service_bytes_recursive",
    "io_serviced_recursive",
    "io_queued_recursive",
    "io_service_time_recursive",
    "io_wait_time_recursive",
    "io_merged_recursive",
    "time_recursive",
)
_BLKIO_THROTTLE = (
    ("throttle.io_serviced", "io_serviced_recursive"),
    ("throttle.io_service_bytes", "io_service_bytes_recursive"),
)

#: One blkio line: (major, minor, op, value).
BlkioEntry = Tuple[int, int, str, int]


@attr.s(frozen=True, auto_attribs=True)
class CgroupMounts:
    """Where the hierarchies are mounted: C{unified} for a v2-only host
    (C{root} the unified mount), else C{controllers}: each v1 controller's
    mount point and the cgroup its mount shows as its root."""

    unified: bool
    root: str = CGROUP_ROOT
    controllers: Dict[str, Tuple[str, str]] = attr.Factory(dict)


@attr.s(frozen=True, auto_attribs=True)
class Cgroup:
    """One container's cgroup directories: per controller (v1), or the one
    directory of the unified hierarchy (v2, under the key C{""})."""

    version: int
    paths: Dict[str, str]


@attr.s(auto_attribs=True)
class CgroupStats:
    """One sample of a cgroup, in the units the kernel files give once
    converted as containerd converts them (nanoseconds, bytes).  Fields a
    cgroup version lacks stay None."""

    version: int
    cpu_total: int = 0
    cpu_percpu: Optional[List[int]] = None
    cpu_user: int = 0
    cpu_kernel: int = 0
    periods: int = 0
    throttled_periods: int = 0
    throttled_time: int = 0
    #: memory.stat as the file gives it (None: no memory controller).
    memory_stat: Optional[Dict[str, int]] = None
    memory_usage: int = 0
    memory_max_usage: int = 0
    memory_limit: int = 0
    memory_failcnt: int = 0
    #: v2's memory.events (None when absent).
    memory_events: Optional[Dict[str, int]] = None
    pids_current: int = 0
    pids_limit: int = 0
    has_pids: bool = False
    #: blkio (v1): each file's entries, by containerd's field name; v2: io.stat.
    blkio: Optional[Dict[str, List[BlkioEntry]]] = None
    io: Optional[List[Tuple[int, int, Dict[str, int]]]] = None


# -- finding the cgroups ------------------------------------------------------


def read_mounts(mountinfo: str = "/proc/self/mountinfo", root: str = CGROUP_ROOT) -> CgroupMounts:
    """The cgroup hierarchies this process sees, from its mountinfo."""
    controllers: Dict[str, Tuple[str, str]] = {}
    unified_at = None
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3:
            continue
        fstype, options = after[0], after[2].split(",")
        mount_root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup2":
            if mount_point == root or unified_at is None:
                unified_at = mount_point
        elif fstype == "cgroup":
            for option in options:
                if option in V1_CONTROLLERS and option not in controllers:
                    controllers[option] = (mount_point, mount_root)
    if unified_at == root or (unified_at is not None and not controllers):
        return CgroupMounts(unified=True, root=unified_at)
    return CgroupMounts(unified=False, root=root, controllers=controllers)


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    if "\\" not in text:
        return text
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def _below(mount: Tuple[str, str], path: str) -> str:
    mount_point, mount_root = mount
    if mount_root not in ("", "/") and (path == mount_root or path.startswith(mount_root + "/")):
        path = path[len(mount_root):]
    return os.path.join(mount_point, path.lstrip("/"))


def find_cgroup(mounts: CgroupMounts, cgroups_path: str, pid: int = 0) -> Optional[Cgroup]:
    """The container's cgroup: from the OCI spec's C{cgroupsPath} when it is
    an absolute path (runc's cgroupfs driver joins it to each hierarchy's
    mount), else from C{/proc/PID/cgroup} of its init process (systemd's
    "slice:prefix:name" form, relative paths).  None when neither says."""
    if cgroups_path.startswith("/") and ":" not in cgroups_path:
        if mounts.unified:
            return Cgroup(2, {"": os.path.join(mounts.root, cgroups_path.lstrip("/"))})
        return Cgroup(1, {
            name: os.path.join(mount[0], cgroups_path.lstrip("/"))
            for name, mount in mounts.controllers.items()
        })
    if pid <= 0:
        return None
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    paths: Dict[str, str] = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, names, path = parts
        if mounts.unified:
            if names == "":
                return Cgroup(2, {"": os.path.join(mounts.root, path.lstrip("/"))})
            continue
        for name in names.split(","):
            if name in mounts.controllers:
                paths[name] = _below(mounts.controllers[name], path)
    return Cgroup(1, paths) if paths else None


# -- reading them -------------------------------------------------------------


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _uint(text: Optional[str], max_value: int = 0) -> int:
    """A number file's value; "max" is C{max_value}; a negative or
    unreadable value 0 (containerd's parseUint)."""
    if text is None:
        return 0
    text = text.strip()
    if text == "max":
        return max_value
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


def _key_values(text: Optional[str]) -> Dict[str, int]:
    values: Dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError:
            continue
    return values


def read_cgroup(cgroup: Cgroup) -> CgroupStats:
    """One sample of the container's cgroup (files missing read as zero,
    as when a controller is not mounted)."""
    if cgroup.version == 2:
        return _read_v2(cgroup.paths[""])
    return _read_v1(cgroup.paths)


def _read_v1(paths: Dict[str, str]) -> CgroupStats:
    stats = CgroupStats(version=1)
    cpuacct = paths.get("cpuacct")
    if cpuacct:
        stats.cpu_total = _uint(_read(os.path.join(cpuacct, "cpuacct.usage")))
        percpu = _read(os.path.join(cpuacct, "cpuacct.usage_percpu"))
        if percpu is not None:
            stats.cpu_percpu = [int(v) for v in percpu.split() if v.isdigit()]
        ticks = _key_values(_read(os.path.join(cpuacct, "cpuacct.stat")))
        stats.cpu_user = ticks.get("user", 0) * _NS // CLOCK_TICKS
        stats.cpu_kernel = ticks.get("system", 0) * _NS // CLOCK_TICKS
    cpu = paths.get("cpu")
    if cpu:
        throttling = _key_values(_read(os.path.join(cpu, "cpu.stat")))
        stats.periods = throttling.get("nr_periods", 0)
        stats.throttled_periods = throttling.get("nr_throttled", 0)
        stats.throttled_time = throttling.get("throttled_time", 0)
    memory = paths.get("memory")
    if memory:
        text = _read(os.path.join(memory, "memory.stat"))
        if text is not None:
            stats.memory_stat = _key_values(text)
            stats.memory_usage = _uint(_read(os.path.join(memory, "memory.usage_in_bytes")))
            stats.memory_max_usage = _uint(_read(os.path.join(memory, "memory.max_usage_in_bytes")))
            stats.memory_limit = _uint(_read(os.path.join(memory, "memory.limit_in_bytes")))
            stats.memory_failcnt = _uint(_read(os.path.join(memory, "memory.failcnt")))
    pids = paths.get("pids")
    if pids:
        current = _read(os.path.join(pids, "pids.current"))
        if current is not None:
            stats.has_pids = True
            stats.pids_current = _uint(current)
            stats.pids_limit = _uint(_read(os.path.join(pids, "pids.max")))
    blkio = paths.get("blkio")
    if blkio:
        stats.blkio = _read_blkio(blkio)
    return stats


def _read_blkio(directory: str) -> Dict[str, List[BlkioEntry]]:
    """containerd's blkio Stat: the CFQ files when the kernel has them and
    they say anything, else the throttle files (which are not recursive,
    but land in the same fields)."""
    found: Dict[str, List[BlkioEntry]] = {}
    if os.path.lexists(os.path.join(directory, "blkio.io_serviced_recursive")):
        for name in _BLKIO_CFQ:
            found[name] = _blkio_entries(_read(os.path.join(directory, "blkio." + name)))
        if any(found.values()):
            return found
        found = {}
    for name, field in _BLKIO_THROTTLE:
        found[field] = _blkio_entries(_read(os.path.join(directory, "blkio." + name)))
    return found


def _blkio_entries(text: Optional[str]) -> List[BlkioEntry]:
    entries: List[BlkioEntry] = []
    for line in (text or "").splitlines():
        fields = line.replace(":", " ").split()
        if len(fields) < 3:
            continue  # "Total N"
        try:
            major, minor = int(fields[0]), int(fields[1])
            if len(fields) == 4:
                entries.append((major, minor, fields[2], int(fields[3])))
            else:
                entries.append((major, minor, "", int(fields[2])))
        except ValueError:
            continue
    return entries


def _read_v2(directory: str) -> CgroupStats:
    stats = CgroupStats(version=2)
    cpu = _key_values(_read(os.path.join(directory, "cpu.stat")))
    stats.cpu_total = cpu.get("usage_usec", 0) * 1000
    stats.cpu_user = cpu.get("user_usec", 0) * 1000
    stats.cpu_kernel = cpu.get("system_usec", 0) * 1000
    stats.periods = cpu.get("nr_periods", 0)
    stats.throttled_periods = cpu.get("nr_throttled", 0)
    stats.throttled_time = cpu.get("throttled_usec", 0) * 1000
    stats.memory_stat = _key_values(_read(os.path.join(directory, "memory.stat")))
    stats.memory_usage = _uint(_read(os.path.join(directory, "memory.current")))
    stats.memory_limit = _uint(_read(os.path.join(directory, "memory.max")), 2**64 - 1)
    events = _read(os.path.join(directory, "memory.events"))
    if events is not None:
        stats.memory_events = _key_values(events)
    stats.has_pids = True
    stats.pids_current = _uint(_read(os.path.join(directory, "pids.current")))
    stats.pids_limit = _uint(_read(os.path.join(directory, "pids.max")))
    stats.io = []
    for line in (_read(os.path.join(directory, "io.stat")) or "").splitlines():
        parts = line.split(" ")
        device = parts[0].split(":")
        if len(parts) < 2 or len(device) != 2:
            continue
        try:
            major, minor = int(device[0]), int(device[1])
        except ValueError:
            break
        values = {}
        for part in parts[1:]:
            key, _, value = part.partition("=")
            if value.isdigit():
                values[key] = int(value)
        stats.io.append((major, minor, values))
    return stats


# -- the host's side ----------------------------------------------------------


def system_cpu_usage(proc_stat: str = "/proc/stat") -> int:
    """The host's CPU time in nanoseconds: the first seven fields of the
    "cpu" line of /proc/stat, as dockerd's collector sums them."""
    with open(proc_stat) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "cpu":
                if len(parts) < 8:
                    raise ValueError("invalid number of cpu fields")
                return sum(int(v) for v in parts[1:8]) * _NS // CLOCK_TICKS
    raise ValueError("invalid stat format. Error trying to parse the '/proc/stat' file")
