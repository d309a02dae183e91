"""
A container's OCI runtime spec, built from an Engine API create request the
way dockerd builds it, and dockerd's checks of that request.

Pure functions over the request's dicts (PascalCase, as the API sends them).
The files read are the image root filesystem's /etc/passwd and /etc/group,
the seccomp profile, and small kernel facts: cgroup controller files, a bind
source's existence, device nodes a request names.  L{probe_sysinfo} gathers
the host facts once; every function takes a L{SysInfo} so tests can pass
their own.

Messages are dockerd 20.10's (the reference daemon) word for word; where
20.10 answered a client's mistake with a 500 this module raises
L{InvalidParameter} (400), as later dockerd does.
"""

import copy
import json
import os
import platform
import posixpath
import re
import resource
import socket
import stat
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import attr

from ..errors import InternalError, InvalidParameter, NotImplementedYet
from ..versions import less_than
from .. import golang

# -- dockerd's constants ----------------------------------------------------

DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: 6 MiB: dockerd's floor for Memory, MemoryReservation and KernelMemory.
LINUX_MIN_MEMORY = 6291456

#: HostConfig.ShmSize when the request leaves it 0.
DEFAULT_SHM_SIZE = 64 * 1024 * 1024

#: What a dockerd container gets for RLIMIT_NOFILE (containerd's own limit,
#: inherited); capped here to what the daemon itself may grant.
DEFAULT_NOFILE = 1048576

#: Where dockerd puts the init binary inside the container.
IN_CONTAINER_INIT_PATH = "/sbin/docker-init"

#: The runtimes a create request may name.
DEFAULT_RUNTIMES = ("runc", "io.containerd.runc.v2", "io.containerd.runtime.v1.linux")

DEFAULT_SECCOMP_PROFILE = "/usr/share/containers/seccomp.json"

#: Linux capabilities by number (capability.h); a host knows 0..cap_last_cap.
ALL_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: dockerd 20.10's defaults, shown by inspect as HostConfig.MaskedPaths.
DEFAULT_MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)

DEFAULT_READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def _default_mounts() -> List[dict]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777"]},
    ]


def _default_device_rules() -> List[dict]:
    rules: List[dict] = [{"allow": False, "access": "rwm"}]
    for major, minor in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)):
        rules.append({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"})
    rules.append({"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
    return rules


# -- host facts -------------------------------------------------------------


@attr.s(frozen=True, auto_attribs=True)
class SysInfo:
    """What the kernel offers, as dockerd's pkg/sysinfo sees it."""

    ncpu: int = 1
    cpus: str = "0"
    mems: str = "0"
    cgroup_version: str = "1"
    memory: bool = True
    swap: bool = True
    memory_reservation: bool = True
    memory_swappiness: bool = True
    kernel_memory: bool = True
    kernel_memory_tcp: bool = True
    oom_kill_disable: bool = True
    pids: bool = True
    cpu_shares: bool = True
    cpu_cfs: bool = True
    cpu_realtime: bool = True
    cpuset: bool = True
    blkio_weight: bool = True
    blkio_weight_device: bool = True
    blkio_read_bps: bool = True
    blkio_write_bps: bool = True
    blkio_read_iops: bool = True
    blkio_write_iops: bool = True
    cgroup_namespaces: bool = True
    ipv4_forwarding: bool = True
    seccomp: bool = True
    apparmor: bool = False
    last_cap: int = 40
    #: The daemon's bounding set (CapBnd) as a bit mask; None: not known.
    own_capabilities: Optional[int] = None
    kernel: str = "5.10.0"
    machine: str = "x86_64"


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _own_capabilities() -> Optional[int]:
    match = re.search(r"^CapBnd:\s*([0-9a-fA-F]+)", _read("/proc/self/status") or "", re.M)
    return int(match.group(1), 16) if match else None


def probe_sysinfo(cgroup_root: str = "/sys/fs/cgroup") -> SysInfo:
    """Read this host's facts (cgroup v1, hybrid or v2)."""
    try:
        ncpu = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        ncpu = os.cpu_count() or 1
    online_cpus = (_read("/sys/devices/system/cpu/online") or "0").strip()
    online_mems = (_read("/sys/devices/system/node/online") or "0").strip()
    common = dict(
        ncpu=ncpu,
        cgroup_namespaces=os.path.exists("/proc/self/ns/cgroup"),
        ipv4_forwarding=(_read("/proc/sys/net/ipv4/ip_forward") or "1").strip() == "1",
        seccomp=re.search(r"^Seccomp:", _read("/proc/self/status") or "", re.M) is not None,
        apparmor=os.path.isdir("/sys/kernel/security/apparmor")
        and (_read("/sys/module/apparmor/parameters/enabled") or "").startswith("Y"),
        last_cap=int((_read("/proc/sys/kernel/cap_last_cap") or "40").strip() or 40),
        own_capabilities=_own_capabilities(),
        kernel=platform.release(),
        machine=platform.machine(),
    )
    controllers = _read(os.path.join(cgroup_root, "cgroup.controllers"))
    if controllers is not None:
        names = set(controllers.split())
        own = "/"
        for line in (_read("/proc/self/cgroup") or "").splitlines():
            if line.startswith("0::"):
                own = line[3:].strip() or "/"
        swap = "memory" in names and any(
            os.path.exists(os.path.join(cgroup_root, sub.lstrip("/"), "memory.swap.max"))
            for sub in (own, "init.scope", "system.slice")
        )
        io = "io" in names
        return SysInfo(
            cpus=(_read(os.path.join(cgroup_root, "cpuset.cpus.effective")) or online_cpus).strip(),
            mems=(_read(os.path.join(cgroup_root, "cpuset.mems.effective")) or online_mems).strip(),
            cgroup_version="2",
            memory="memory" in names,
            swap=swap,
            memory_reservation="memory" in names,
            memory_swappiness=False,
            kernel_memory=False,
            kernel_memory_tcp=False,
            oom_kill_disable=False,
            pids="pids" in names,
            cpu_shares="cpu" in names,
            cpu_cfs="cpu" in names,
            cpu_realtime=False,
            cpuset="cpuset" in names,
            blkio_weight=io,
            blkio_weight_device=io,
            blkio_read_bps=io,
            blkio_write_bps=io,
            blkio_read_iops=io,
            blkio_write_iops=io,
            **common,
        )

    def has(*parts: str) -> bool:
        return os.path.exists(os.path.join(cgroup_root, *parts))

    return SysInfo(
        cpus=(_read(os.path.join(cgroup_root, "cpuset", "cpuset.cpus")) or online_cpus).strip(),
        mems=(_read(os.path.join(cgroup_root, "cpuset", "cpuset.mems")) or online_mems).strip(),
        cgroup_version="1",
        memory=has("memory", "memory.limit_in_bytes"),
        swap=has("memory", "memory.memsw.limit_in_bytes"),
        memory_reservation=has("memory", "memory.soft_limit_in_bytes"),
        memory_swappiness=has("memory", "memory.swappiness"),
        kernel_memory=has("memory", "memory.kmem.limit_in_bytes"),
        kernel_memory_tcp=has("memory", "memory.kmem.tcp.limit_in_bytes"),
        oom_kill_disable=has("memory", "memory.oom_control"),
        pids=has("pids", "pids.max") or has("pids", "cgroup.procs"),
        cpu_shares=has("cpu", "cpu.shares"),
        cpu_cfs=has("cpu", "cpu.cfs_quota_us") and has("cpu", "cpu.cfs_period_us"),
        cpu_realtime=has("cpu", "cpu.rt_period_us") and has("cpu", "cpu.rt_runtime_us"),
        cpuset=has("cpuset", "cpuset.cpus"),
        blkio_weight=has("blkio", "blkio.weight") or has("blkio", "blkio.bfq.weight"),
        blkio_weight_device=has("blkio", "blkio.weight_device")
        or has("blkio", "blkio.bfq.weight_device"),
        blkio_read_bps=has("blkio", "blkio.throttle.read_bps_device"),
        blkio_write_bps=has("blkio", "blkio.throttle.write_bps_device"),
        blkio_read_iops=has("blkio", "blkio.throttle.read_iops_device"),
        blkio_write_iops=has("blkio", "blkio.throttle.write_iops_device"),
        **common,
    )


_sysinfo: Optional[SysInfo] = None


def current_sysinfo() -> SysInfo:
    """This host's L{SysInfo}, probed once."""
    global _sysinfo
    if _sysinfo is None:
        _sysinfo = probe_sysinfo()
    return _sysinfo


# -- small Go-compatible helpers ---------------------------------------------




def _strslice(value: Any) -> Optional[List[str]]:
    """strslice.StrSlice: null stays None, a string becomes a one-item list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _int(value: Any) -> int:
    return int(value or 0)


def _mode(value: Any) -> str:
    return str(value or "")


def _is_container_mode(mode: str) -> bool:
    parts = mode.split(":", 1)
    return len(parts) > 1 and parts[0] == "container"


def _strerror(e: OSError) -> str:
    text = os.strerror(e.errno) if e.errno else str(e)
    return text[:1].lower() + text[1:]


# -- signals ------------------------------------------------------------------

_SIGNALS = {
    "ABRT": 6, "ALRM": 14, "BUS": 7, "CHLD": 17, "CLD": 17, "CONT": 18, "FPE": 8,
    "HUP": 1, "ILL": 4, "INT": 2, "IO": 29, "IOT": 6, "KILL": 9, "PIPE": 13,
    "POLL": 29, "PROF": 27, "PWR": 30, "QUIT": 3, "SEGV": 11, "STKFLT": 16,
    "STOP": 19, "SYS": 31, "TERM": 15, "TRAP": 5, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "USR1": 10, "USR2": 12, "VTALRM": 26, "WINCH": 28,
    "XCPU": 24, "XFSZ": 25, "RTMIN": 34, "RTMAX": 64, "UNUSED": 31,
}
_SIGNALS.update({"RTMIN+%d" % i: 34 + i for i in range(1, 16)})
_SIGNALS.update({"RTMAX-%d" % i: 64 - i for i in range(1, 15)})


def parse_signal(raw) -> int:
    """A signal number from a number, C{KILL} or C{SIGKILL} (dockerd's ParseSignal)."""
    raw = str(raw)
    number = golang.atoi(raw)
    if number is not None:
        if number == 0:
            raise InvalidParameter("Invalid signal: %s" % raw)
        return number
    name = raw.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name not in _SIGNALS:
        raise InvalidParameter("Invalid signal: %s" % raw)
    return _SIGNALS[name]


# -- names --------------------------------------------------------------------

_VALID_NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_VALID_NAME = re.compile(r"/?" + _VALID_NAME_CHARS + r"+")


def validate_name(name: str) -> None:
    """dockerd's rule for a container name (a leading '/' is allowed)."""
    if not _VALID_NAME.fullmatch(name):
        raise InvalidParameter(
            "Invalid container name (%s), only %s are allowed" % (name, _VALID_NAME_CHARS)
        )


# -- cpusets ------------------------------------------------------------------


def _parse_uint_list(val: str, maximum: int = 0) -> set:
    if val == "":
        return set()
    invalid = InvalidParameter("invalid format: %s" % val)
    found = set()
    for r in val.split(","):
        if "-" not in r:
            v = golang.atoi(r)
            if v is None:
                raise invalid
            if maximum and v > maximum:
                raise InvalidParameter("value of out range, maximum is %d" % maximum)
            found.add(v)
        else:
            lo_s, hi_s = r.split("-", 1)
            lo, hi = golang.atoi(lo_s), golang.atoi(hi_s)
            if lo is None or hi is None or hi < lo:
                raise invalid
            if maximum and hi > maximum:
                raise InvalidParameter("value of out range, maximum is %d" % maximum)
            found.update(range(lo, hi + 1))
    return found


def _cpuset_available(provided: str, available: str) -> bool:
    parsed_available = _parse_uint_list(available)
    maximum = max([8192] + list(parsed_available))
    return _parse_uint_list(provided, maximum) <= parsed_available


# -- capabilities -------------------------------------------------------------


def known_capabilities(sysinfo: Optional[SysInfo] = None) -> List[str]:
    """Every capability this host's kernel knows, in kernel order."""
    si = sysinfo or current_sysinfo()
    return list(ALL_CAPABILITIES[: max(0, min(si.last_cap, len(ALL_CAPABILITIES) - 1)) + 1])


def grantable_capabilities(sysinfo: Optional[SysInfo] = None) -> List[str]:
    """
    The capabilities "all" means (Privileged, CapAdd ALL): those the kernel
    knows and the daemon itself holds.  dockerd asks for every known one and
    runc then fails ("unable to apply caps") where the daemon lacks some, as
    root without CAP_SYS_RESOURCE does on some hosts.
    """
    si = sysinfo or current_sysinfo()
    known = known_capabilities(si)
    if si.own_capabilities is None:
        return known
    return [c for i, c in enumerate(known) if si.own_capabilities >> i & 1]


def normalize_capabilities(
    caps: Optional[Iterable[str]], sysinfo: Optional[SysInfo] = None
) -> List[str]:
    """Upper-case, add CAP_, keep "ALL"; an unknown name is refused."""
    valid = known_capabilities(sysinfo)
    normalized = []
    for c in caps or ():
        c = c.upper()
        if c == "ALL":
            normalized.append(c)
            continue
        if not c.startswith("CAP_"):
            c = "CAP_" + c
        if c not in valid:
            raise InvalidParameter("unknown capability: %s" % golang.quote(c))
        normalized.append(c)
    return normalized


def tweak_capabilities(
    cap_add: Optional[Iterable[str]],
    cap_drop: Optional[Iterable[str]],
    privileged: bool = False,
    sysinfo: Optional[SysInfo] = None,
) -> List[str]:
    """dockerd's TweakCapabilities over the default set."""
    if privileged:
        return grantable_capabilities(sysinfo)
    adds = list(cap_add or ())
    drops = list(cap_drop or ())
    if not adds and not drops:
        return list(DEFAULT_CAPABILITIES)
    drop = normalize_capabilities(drops, sysinfo)
    add = normalize_capabilities(adds, sysinfo)
    if "ALL" in add:
        caps = [c for c in grantable_capabilities(sysinfo) if c not in drop]
    elif "ALL" in drop:
        caps = [c for c in add if c != "ALL"]
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drop] + add
    unique: List[str] = []
    for c in caps:
        if c not in unique:
            unique.append(c)
    return unique


# -- security options ---------------------------------------------------------


@attr.s(frozen=True, auto_attribs=True)
class SecurityOptions:
    no_new_privileges: bool = False
    seccomp_profile: str = ""
    apparmor_profile: str = ""
    label_opts: Tuple[str, ...] = ()


_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_security_opt(security_opt: Optional[Iterable[str]]) -> SecurityOptions:
    """dockerd's parseSecurityOpt."""
    nnp, seccomp, apparmor, labels = False, "", "", []
    for opt in security_opt or ():
        if opt == "no-new-privileges":
            nnp = True
            continue
        if opt == "disable":
            labels.append("disable")
            continue
        if "=" in opt:
            key, value = opt.split("=", 1)
        elif ":" in opt:
            key, value = opt.split(":", 1)
        else:
            raise InvalidParameter("invalid --security-opt 1: %s" % golang.quote(opt))
        if key == "label":
            labels.append(value)
        elif key == "apparmor":
            apparmor = value
        elif key == "seccomp":
            seccomp = value
        elif key == "no-new-privileges":
            if value in _GO_TRUE:
                nnp = True
            elif value in _GO_FALSE:
                nnp = False
            else:
                raise InvalidParameter("invalid --security-opt 2: %s" % golang.quote(opt))
        else:
            raise InvalidParameter("invalid --security-opt 2: %s" % golang.quote(opt))
    return SecurityOptions(nnp, seccomp, apparmor, tuple(labels))


# -- mounts: dockerd's volume/mounts linux parser -----------------------------

_PROPAGATION_MODES = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
_RW_MODES = ("rw", "ro")
_LABEL_MODES = ("z", "Z")
_CONSISTENCY_MODES = ("consistent", "cached", "delegated")
_DEFAULT_PROPAGATION = "rprivate"


def _mount_error(mount_type: str, message: str) -> InvalidParameter:
    return InvalidParameter(
        "invalid mount config for type %s: %s" % (golang.quote(mount_type), message)
    )


def _not_root_error(p: str) -> Optional[str]:
    if golang.clean(p.replace("\\", "/")) == "/":
        return "invalid specification: destination can't be '/'"
    return None


def _absolute_error(p: str) -> Optional[str]:
    p = p.replace("\\", "/")
    if p.startswith("/"):
        return None
    return "invalid mount path: '%s' mount path must be absolute" % p


def _valid_mount_mode(mode: str) -> bool:
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "propagation": 0, "copy": 0, "consistency": 0}
    for o in mode.split(","):
        if o in _RW_MODES:
            counts["rw"] += 1
        elif o in _LABEL_MODES:
            counts["label"] += 1
        elif o in _PROPAGATION_MODES:
            counts["propagation"] += 1
        elif o == "nocopy":
            counts["copy"] += 1
        elif o in _CONSISTENCY_MODES:
            counts["consistency"] += 1
        else:
            return False
    return all(n <= 1 for n in counts.values())


def tmpfs_options_from_mount(tmpfs_options: Optional[dict], read_only: bool) -> str:
    """ConvertTmpfsOptions: a Mounts entry's TmpfsOptions as mount data."""
    raw = []
    if read_only:
        raw.append("ro")
    opts = tmpfs_options or {}
    if _int(opts.get("Mode")):
        raw.append("mode=%o" % _int(opts.get("Mode")))
    size = _int(opts.get("SizeBytes"))
    if size:
        suffix = ""
        for s, divisor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if abs(size) % divisor == 0:
                size, suffix = size // divisor, s
                break
        raw.append("size=%d%s" % (size, suffix))
    for opt in opts.get("Options") or ():
        if not 1 <= len(opt) <= 2:
            raise InvalidParameter("invalid option array length")
        if opt[0] not in ("exec", "noexec"):
            raise InvalidParameter("invalid option: " + opt[0])
        raw.append(opt[0] if len(opt) == 1 else "%s=%s" % (opt[0], opt[1]))
    return ",".join(raw)


def validate_mount(mount: dict, check_bind_source: bool = True) -> None:
    """ValidateMountConfig for one HostConfig.Mounts entry."""
    mtype = _mode(mount.get("Type"))
    target = _mode(mount.get("Target"))
    source = _mode(mount.get("Source"))
    if not target:
        raise _mount_error(mtype, "field Target must not be empty")
    for check in (_not_root_error, _absolute_error):
        problem = check(target)
        if problem:
            raise _mount_error(mtype, problem)
    if mtype == "bind":
        if not source:
            raise _mount_error(mtype, "field Source must not be empty")
        propagation = _mode((mount.get("BindOptions") or {}).get("Propagation"))
        if propagation and propagation not in _PROPAGATION_MODES:
            raise _mount_error(mtype, "invalid propagation mode: %s" % propagation)
        if mount.get("VolumeOptions") is not None:
            raise _mount_error(mtype, "field VolumeOptions must not be specified")
        problem = _absolute_error(source)
        if problem:
            raise _mount_error(mtype, problem)
        if check_bind_source:
            try:
                os.stat(source)
            except FileNotFoundError:
                if not (mount.get("BindOptions") or {}).get("CreateMountpoint"):
                    raise _mount_error(mtype, "bind source path does not exist: %s" % source)
            except OSError as e:
                raise _mount_error(mtype, "stat %s: %s" % (source, _strerror(e)))
    elif mtype == "volume":
        if mount.get("BindOptions") is not None:
            raise _mount_error(mtype, "field BindOptions must not be specified")
        if not source and mount.get("ReadOnly"):
            raise _mount_error(mtype, "must not set ReadOnly mode when using anonymous volumes")
    elif mtype == "tmpfs":
        if mount.get("BindOptions") is not None:
            raise _mount_error(mtype, "field BindOptions must not be specified")
        if source:
            raise _mount_error(mtype, "field Source must not be specified")
        try:
            tmpfs_options_from_mount(mount.get("TmpfsOptions"), bool(mount.get("ReadOnly")))
        except InvalidParameter as e:
            raise _mount_error(mtype, e.message)
    else:
        raise _mount_error(mtype, "mount type unknown")


def _mount_point_from_spec(mount: dict) -> dict:
    mtype = _mode(mount.get("Type"))
    point = {
        "Type": mtype,
        "Destination": golang.clean(_mode(mount.get("Target"))),
        "RW": not mount.get("ReadOnly"),
        "Source": "",
        "Name": "",
        "Propagation": "",
        "NonRecursive": False,
        "Data": "",
    }
    bind_options = mount.get("BindOptions") or {}
    if mtype == "volume":
        point["Name"] = _mode(mount.get("Source"))
    elif mtype == "bind":
        point["Source"] = golang.clean(_mode(mount.get("Source")))
        point["Propagation"] = _mode(bind_options.get("Propagation")) or _DEFAULT_PROPAGATION
        point["NonRecursive"] = bool(bind_options.get("NonRecursive"))
    elif mtype == "tmpfs":
        point["Data"] = tmpfs_options_from_mount(
            mount.get("TmpfsOptions"), bool(mount.get("ReadOnly"))
        )
    return point


def parse_bind(raw: str) -> dict:
    """ParseMountRaw: one HostConfig.Binds entry as a mount point."""
    invalid = InvalidParameter("invalid volume specification: '%s'" % raw)
    arr = raw.split(":", 3)
    if arr[0] == "":
        raise invalid
    mode = ""
    if len(arr) == 1:
        source, target = "", arr[0]
    elif len(arr) == 2:
        if _valid_mount_mode(arr[1]):
            raise invalid
        source, target = arr
    elif len(arr) == 3:
        source, target, mode = arr
    else:
        raise invalid
    if not _valid_mount_mode(mode):
        raise InvalidParameter("invalid mode: %s" % mode)
    spec: Dict[str, Any] = {"Source": source, "Target": target}
    spec["Type"] = "bind" if source.startswith("/") else "volume"
    options = mode.split(",") if mode else []
    spec["ReadOnly"] = "ro" in options
    if "nocopy" in options:
        spec["VolumeOptions"] = {"NoCopy": True}
    propagation = [o for o in options if o in _PROPAGATION_MODES]
    if propagation:
        spec["BindOptions"] = {"Propagation": propagation[0]}
    try:
        validate_mount(spec, check_bind_source=False)
    except InvalidParameter as e:
        raise InvalidParameter("invalid volume specification: '%s': %s" % (raw, e.message))
    point = _mount_point_from_spec(spec)
    point["Mode"] = mode
    return point


def mount_points(host_config: dict) -> Dict[str, dict]:
    """registerMountPoints: Binds and Mounts by destination, duplicates refused."""
    tmpfs = host_config.get("Tmpfs") or {}
    points: Dict[str, dict] = {}
    seen = set()
    for raw in host_config.get("Binds") or ():
        point = parse_bind(raw)
        if point["Destination"] in seen or point["Destination"] in tmpfs:
            raise InvalidParameter("Duplicate mount point: %s" % point["Destination"])
        seen.add(point["Destination"])
        points[point["Destination"]] = point
    for mount in host_config.get("Mounts") or ():
        validate_mount(mount)
        point = _mount_point_from_spec(mount)
        if point["Destination"] in seen:
            raise InvalidParameter("Duplicate mount point: %s" % _mode(mount.get("Target")))
        seen.add(point["Destination"])
        points[point["Destination"]] = point
    return points


def missing_bind_sources(host_config: dict) -> List[str]:
    """Binds sources absent on the host: dockerd creates them (mkdir -p) at start."""
    missing = []
    for raw in host_config.get("Binds") or ():
        try:
            point = parse_bind(raw)
        except InvalidParameter:
            continue
        if point["Type"] == "bind" and not os.path.lexists(point["Source"]):
            missing.append(point["Source"])
    return missing


# -- tmpfs option merging (moby/sys/mount MergeTmpfsOptions) ------------------

_FLAG_GROUPS = {
    "ro": "rdonly", "rw": "rdonly", "suid": "nosuid", "nosuid": "nosuid",
    "dev": "nodev", "nodev": "nodev", "exec": "noexec", "noexec": "noexec",
    "sync": "sync", "async": "sync", "dirsync": "dirsync", "remount": "remount",
    "mand": "mand", "nomand": "mand", "atime": "noatime", "noatime": "noatime",
    "diratime": "nodiratime", "nodiratime": "nodiratime", "bind": "bind",
    "rbind": "rbind", "unbindable": "propagation", "runbindable": "propagation",
    "private": "propagation", "rprivate": "propagation", "shared": "propagation",
    "rshared": "propagation", "slave": "propagation", "rslave": "propagation",
    "relatime": "relatime", "norelatime": "relatime", "strictatime": "strictatime",
    "nostrictatime": "strictatime",
}
_TMPFS_DATA = ("", "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")


def merge_tmpfs_options(options: Sequence[str]) -> List[str]:
    """Later options win; an unknown one is refused as dockerd refuses it."""
    merged: List[str] = []
    flags, data = set(), set()
    for option in reversed(list(options)):
        if option == "defaults":
            continue
        group = _FLAG_GROUPS.get(option)
        if group is not None:
            if group not in flags:
                merged.insert(0, option)
                flags.add(group)
            continue
        parts = option.split("=", 1)
        if len(parts) != 2 or parts[0] not in _TMPFS_DATA:
            raise InternalError(
                "invalid tmpfs option [%s]" % " ".join(golang.quote(p) for p in parts)
            )
        if parts[0] not in data:
            merged.insert(0, option)
            data.add(parts[0])
    return merged


# -- create-time validation ---------------------------------------------------


def _validate_net_mode(config: dict, hc: dict) -> None:
    mode = _mode(hc.get("NetworkMode"))
    parts = mode.split(":")
    if parts[0] == "container" and (len(parts) < 2 or parts[1] == ""):
        raise InvalidParameter(
            "Invalid network mode: invalid container format container:<name|id>"
        )
    container = _is_container_mode(mode)
    if container:
        if config.get("Hostname"):
            raise InvalidParameter("conflicting options: hostname and the network mode")
        if hc.get("Links"):
            raise InvalidParameter(
                "conflicting options: container type network can't be used with links. "
                "This would result in undefined behavior"
            )
        if hc.get("Dns"):
            raise InvalidParameter("conflicting options: dns and the network mode")
        if hc.get("ExtraHosts"):
            raise InvalidParameter(
                "conflicting options: custom host-to-IP mapping and the network mode"
            )
    if (container or mode == "host") and config.get("MacAddress"):
        raise InvalidParameter("conflicting options: mac-address and the network mode")
    if container and (hc.get("PortBindings") or hc.get("PublishAllPorts")):
        raise InvalidParameter(
            "conflicting options: port publishing and the container type network mode"
        )
    if container and config.get("ExposedPorts"):
        raise InvalidParameter(
            "conflicting options: port exposing and the container type network mode"
        )
    if _mode(hc.get("UTSMode")) == "host" and config.get("Hostname"):
        raise InvalidParameter("conflicting options: hostname and the UTS mode")
    if mode == "host" and hc.get("Links"):
        raise InvalidParameter(
            "conflicting options: host type networking can't be used with links. "
            "This would result in undefined behavior"
        )


def _validate_decoded(config: dict, hc: dict, si: SysInfo) -> None:
    """What dockerd's request decoder refuses before anything else."""
    _validate_net_mode(config, hc)
    isolation = _mode(hc.get("Isolation"))
    if isolation and isolation.lower() != "default":
        raise InvalidParameter(
            "Invalid isolation: %s - linux only supports 'default'" % golang.quote(isolation)
        )
    if _int(hc.get("IOMaximumBandwidth")):
        raise InvalidParameter(
            "Invalid QoS settings: linux does not support configuration of maximum bandwidth"
        )
    if _int(hc.get("IOMaximumIOps")):
        raise InvalidParameter(
            "Invalid QoS settings: linux does not support configuration of maximum IOPs"
        )
    rt_period, rt_runtime = _int(hc.get("CpuRealtimePeriod")), _int(hc.get("CpuRealtimeRuntime"))
    if rt_period > 0 and not si.cpu_realtime:
        raise InvalidParameter("Your kernel does not support cgroup cpu real-time period")
    if rt_runtime > 0 and not si.cpu_realtime:
        raise InvalidParameter("Your kernel does not support cgroup cpu real-time runtime")
    if rt_period and rt_runtime and rt_runtime > rt_period:
        raise InvalidParameter("cpu real-time runtime cannot be higher than cpu real-time period")


def _validate_container_config(config: dict) -> None:
    working_dir = _mode(config.get("WorkingDir"))
    if working_dir and not working_dir.startswith("/"):
        raise InvalidParameter(
            "the working directory '%s' is invalid, it needs to be an absolute path" % working_dir
        )
    if config.get("StopSignal"):
        parse_signal(str(config["StopSignal"]))
    for env in config.get("Env") or ():
        if env.split("=", 1)[0] == "":
            raise InvalidParameter("invalid environment variable: %s" % env)
    health = config.get("Healthcheck")
    if health:
        for field in ("Interval", "Timeout"):
            value = _int(health.get(field))
            if value and value < 1000000:
                raise InvalidParameter("%s in Healthcheck cannot be less than 1ms" % field)
        if _int(health.get("Retries")) < 0:
            raise InvalidParameter("Retries in Healthcheck cannot be negative")
        value = _int(health.get("StartPeriod"))
        if value and value < 1000000:
            raise InvalidParameter("StartPeriod in Healthcheck cannot be less than 1ms")


def _split_proto_port(raw: str) -> Tuple[str, str]:
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1:
        return "tcp", raw
    if not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _parse_port16(s: str) -> Optional[int]:
    if not re.match(r"^[0-9]+$", s):
        return None
    v = int(s)
    return v if v <= 65535 else None


def _host_port_valid(raw: str) -> bool:
    _, port = _split_proto_port(raw)
    if port == "":
        return True
    if "-" not in port:
        return _parse_port16(port) is not None
    pieces = port.split("-")
    lo, hi = _parse_port16(pieces[0]), _parse_port16(pieces[1])
    return lo is not None and hi is not None and hi >= lo


def _validate_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value.strip())
        return True
    except ValueError:
        return False


def _validate_host_config(hc: dict, si: SysInfo) -> None:
    restart = hc.get("RestartPolicy") or {}
    policy = _mode(restart.get("Name"))
    if hc.get("AutoRemove") and policy not in ("", "no"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    for mount in hc.get("Mounts") or ():
        validate_mount(mount)
    for extra in hc.get("ExtraHosts") or ():
        parts = extra.split(":", 1)
        if len(parts) != 2 or not parts[0]:
            raise InvalidParameter("bad format for add-host: %s" % golang.quote(extra))
        if parts[1] != "host-gateway" and not _validate_ip(parts[1]):
            raise InvalidParameter("invalid IP address in add-host: %s" % golang.quote(parts[1]))
    for port, bindings in (hc.get("PortBindings") or {}).items():
        _, port_str = _split_proto_port(port)
        if port_str and _parse_port16(port_str) is None:
            raise InvalidParameter("invalid port specification: %s" % golang.quote(port_str))
        for binding in bindings or ():
            host_port = _mode((binding or {}).get("HostPort"))
            if not _host_port_valid(host_port):
                raise InvalidParameter("invalid port specification: %s" % golang.quote(host_port))
    retries = _int(restart.get("MaximumRetryCount"))
    if policy in ("always", "unless-stopped", "no"):
        if retries != 0:
            raise InvalidParameter(
                "maximum retry count cannot be used with restart policy '%s'" % policy
            )
    elif policy == "on-failure":
        if retries < 0:
            raise InvalidParameter("maximum retry count cannot be negative")
    elif policy != "":
        raise InvalidParameter("invalid restart policy '%s'" % policy)
    for field in ("CapAdd", "CapDrop"):
        try:
            normalize_capabilities(hc.get(field), si)
        except InvalidParameter as e:
            raise InvalidParameter("invalid %s: %s" % (field, e.message))


def check_resources(hc: dict, sysinfo: Optional[SysInfo] = None) -> Tuple[List[str], dict]:
    """verifyPlatformContainerResources: warnings, and the resources with what
    the kernel cannot do discarded (as dockerd stores them)."""
    si = sysinfo or current_sysinfo()
    r = dict(hc)
    warnings: List[str] = []
    if r.get("MemorySwappiness") is not None and _int(r["MemorySwappiness"]) == -1:
        r["MemorySwappiness"] = None
    memory, swap = _int(r.get("Memory")), _int(r.get("MemorySwap"))
    if memory != 0 and memory < LINUX_MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if memory > 0 and not si.memory:
        warnings.append(
            "Your kernel does not support memory limit capabilities or the cgroup is not mounted. "
            "Limitation discarded."
        )
        memory, swap = 0, -1
    if memory > 0 and swap != -1 and not si.swap:
        warnings.append(
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
            "Memory limited without swap."
        )
        swap = -1
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidParameter(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if memory == 0 and swap > 0:
        raise InvalidParameter(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    r["Memory"], r["MemorySwap"] = memory, swap
    if r.get("MemorySwappiness") is not None and not si.memory_swappiness:
        warnings.append(
            "Your kernel does not support memory swappiness capabilities or the cgroup is not "
            "mounted. Memory swappiness discarded."
        )
        r["MemorySwappiness"] = None
    if r.get("MemorySwappiness") is not None:
        swappiness = _int(r["MemorySwappiness"])
        if swappiness < 0 or swappiness > 100:
            raise InvalidParameter(
                "Invalid value: %d, valid memory swappiness range is 0-100" % swappiness
            )
    reservation = _int(r.get("MemoryReservation"))
    if reservation > 0 and not si.memory_reservation:
        warnings.append(
            "Your kernel does not support memory soft limit capabilities or the cgroup is not "
            "mounted. Limitation discarded."
        )
        reservation = 0
    if 0 < reservation < LINUX_MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidParameter(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    r["MemoryReservation"] = reservation
    kernel_memory = _int(r.get("KernelMemory"))
    if kernel_memory > 0:
        warnings.append(
            "Specifying a kernel memory limit is deprecated and will be removed in a future "
            "release."
        )
    if kernel_memory > 0 and not si.kernel_memory:
        warnings.append(
            "Your kernel does not support kernel memory limit capabilities or the cgroup is not "
            "mounted. Limitation discarded."
        )
        kernel_memory = 0
    if 0 < kernel_memory < LINUX_MIN_MEMORY:
        raise InvalidParameter("Minimum kernel memory limit allowed is 6MB")
    r["KernelMemory"] = kernel_memory
    if _int(r.get("KernelMemoryTCP")) > 0 and not si.kernel_memory_tcp:
        warnings.append(
            "Your kernel does not support kernel memory TCP limit capabilities or the cgroup is "
            "not mounted. Limitation discarded."
        )
        r["KernelMemoryTCP"] = 0
    if r.get("OomKillDisable") is not None and not si.oom_kill_disable:
        if r["OomKillDisable"]:
            warnings.append(
                "Your kernel does not support OomKillDisable. OomKillDisable discarded."
            )
        r["OomKillDisable"] = None
    if r.get("OomKillDisable") and memory == 0:
        warnings.append(
            "OOM killer is disabled for the container, but no memory limit is set, this can "
            "result in the system running out of resources."
        )
    if r.get("PidsLimit") is not None and not si.pids:
        if _int(r["PidsLimit"]) > 0:
            warnings.append(
                "Your kernel does not support PIDs limit capabilities or the cgroup is not "
                "mounted. PIDs limit discarded."
            )
        r["PidsLimit"] = None

    nano, period, quota = _int(r.get("NanoCpus")), _int(r.get("CpuPeriod")), _int(r.get("CpuQuota"))
    if nano > 0 and period > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano > 0 and not si.cpu_cfs:
        raise InvalidParameter(
            "NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the "
            "cgroup is not mounted"
        )
    if nano < 0 or nano > si.ncpu * 1000000000:
        raise InvalidParameter(
            "Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available"
            % (si.ncpu, si.ncpu)
        )
    if _int(r.get("CpuShares")) > 0 and not si.cpu_shares:
        warnings.append(
            "Your kernel does not support CPU shares or the cgroup is not mounted. "
            "Shares discarded."
        )
        r["CpuShares"] = 0
    if (period or quota) and not si.cpu_cfs:
        warnings.append(
            "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded."
        )
        period = quota = 0
    if period and (period < 1000 or period > 1000000):
        raise InvalidParameter(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    r["CpuPeriod"], r["CpuQuota"] = period, quota
    if _int(r.get("CpuPercent")) > 0:
        warnings.append("linux does not support CPU percent. Percent discarded.")
        r["CpuPercent"] = 0

    cpus, mems = _mode(r.get("CpusetCpus")), _mode(r.get("CpusetMems"))
    if (cpus or mems) and not si.cpuset:
        warnings.append(
            "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."
        )
        cpus = mems = ""
    try:
        available = _cpuset_available(cpus, si.cpus)
    except InvalidParameter as e:
        raise InvalidParameter("Invalid value %s for cpuset cpus: %s" % (cpus, e.message))
    if not available:
        raise InvalidParameter(
            "Requested CPUs are not available - requested %s, available: %s" % (cpus, si.cpus)
        )
    try:
        available = _cpuset_available(mems, si.mems)
    except InvalidParameter as e:
        raise InvalidParameter("Invalid value %s for cpuset mems: %s" % (mems, e.message))
    if not available:
        raise InvalidParameter(
            "Requested memory nodes are not available - requested %s, available: %s"
            % (mems, si.mems)
        )
    r["CpusetCpus"], r["CpusetMems"] = cpus, mems

    weight = _int(r.get("BlkioWeight"))
    if weight > 0 and not si.blkio_weight:
        warnings.append(
            "Your kernel does not support Block I/O weight or the cgroup is not mounted. "
            "Weight discarded."
        )
        weight = 0
    if weight > 0 and (weight < 10 or weight > 1000):
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    r["BlkioWeight"] = weight
    for field, supported, text in (
        ("BlkioWeightDevice", si.blkio_weight_device,
         "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. "
         "Weight-device discarded."),
        ("BlkioDeviceReadBps", si.blkio_read_bps,
         "Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. "
         "Block I/O BPS read limit discarded."),
        ("BlkioDeviceWriteBps", si.blkio_write_bps,
         "Your kernel does not support BPS Block I/O write limit or the cgroup is not mounted. "
         "Block I/O BPS write limit discarded."),
        ("BlkioDeviceReadIOps", si.blkio_read_iops,
         "Your kernel does not support IOPS Block read limit or the cgroup is not mounted. "
         "Block I/O IOPS read limit discarded."),
        ("BlkioDeviceWriteIOps", si.blkio_write_iops,
         "Your kernel does not support IOPS Block write limit or the cgroup is not mounted. "
         "Block I/O IOPS write limit discarded."),
    ):
        if r.get(field) and not supported:
            warnings.append(text)
            r[field] = []
    return warnings, r


def validate_create(
    config: Optional[dict],
    host_config: Optional[dict],
    api_version: str,
    *,
    sysinfo: Optional[SysInfo] = None,
    runtimes: Sequence[str] = DEFAULT_RUNTIMES,
) -> List[str]:
    """
    dockerd's checks of a create request that need no image, in dockerd's
    order; returns its warnings or raises L{InvalidParameter}.

    dockerd looks the image up, merges its config ("No command specified",
    see L{merge_config}) and checks the name (L{validate_name}) between the
    settings checks and the last two (SecurityOpt, then Binds and duplicate
    mount points), which this function also makes.
    """
    config = config or {}
    hc = dict(host_config or {})
    si = sysinfo or current_sysinfo()
    if less_than(api_version, "1.25"):
        hc["AutoRemove"] = False
    if less_than(api_version, "1.40"):
        hc["Mounts"] = [
            dict(m, BindOptions=dict(m["BindOptions"], NonRecursive=False))
            if m.get("BindOptions")
            else m
            for m in hc.get("Mounts") or ()
        ]
    _validate_decoded(config, hc, si)
    _validate_container_config(config)
    _validate_host_config(hc, si)

    warnings, hc = check_resources(hc, si)
    if _int(hc.get("ShmSize")) < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    oom_score_adj = _int(hc.get("OomScoreAdj"))
    if oom_score_adj < -1000 or oom_score_adj > 1000:
        raise InvalidParameter(
            "Invalid value %d, range for oom score adj is [-1000, 1000]" % oom_score_adj
        )
    network_mode = _mode(hc.get("NetworkMode"))
    if not si.ipv4_forwarding and network_mode not in ("host", "none"):
        warnings.append("IPv4 forwarding is disabled. Networking will not work.")
    if network_mode == "host" and hc.get("PortBindings"):
        warnings.append("Published ports are discarded when using host network mode")
    runtime = _mode(hc.get("Runtime"))
    if runtime and runtime not in runtimes:
        raise InvalidParameter("Unknown runtime specified %s" % runtime)
    for destination in hc.get("Tmpfs") or {}:
        problem = _not_root_error(destination) or _absolute_error(destination)
        if problem:
            raise InvalidParameter(problem)
    cgroupns = _mode(hc.get("CgroupnsMode"))
    if cgroupns not in ("", "host", "private"):
        raise InvalidParameter("invalid cgroup namespace mode: %s" % cgroupns)
    if cgroupns == "private" and not si.cgroup_namespaces:
        warnings.append(
            "Your kernel does not support cgroup namespaces.  Cgroup namespace setting discarded."
        )

    parse_security_opt(hc.get("SecurityOpt"))
    mount_points(hc)
    return warnings


def adapt_host_config(
    host_config: Optional[dict], api_version: str, *, sysinfo: Optional[SysInfo] = None
) -> dict:
    """
    The HostConfig dockerd stores at create (and inspect shows): its defaults
    filled in and what the kernel cannot do discarded.  Call after
    L{validate_create} succeeded.
    """
    si = sysinfo or current_sysinfo()
    hc = copy.deepcopy(host_config or {})
    if less_than(api_version, "1.25"):
        hc["AutoRemove"] = False
    if less_than(api_version, "1.40"):
        for m in hc.get("Mounts") or ():
            if m.get("BindOptions"):
                m["BindOptions"]["NonRecursive"] = False
        hc["KernelMemoryTCP"] = 0
        if not hc.get("IpcMode"):
            hc["IpcMode"] = "shareable"
    if less_than(api_version, "1.41") and si.cgroup_version != "2" and not hc.get("CgroupnsMode"):
        hc["CgroupnsMode"] = "host"
    _, resources = check_resources(hc, si)
    hc.update(resources)
    if _int(hc.get("Memory")) > 0 and _int(hc.get("MemorySwap")) == 0:
        hc["MemorySwap"] = _int(hc["Memory"]) * 2
    if not _int(hc.get("ShmSize")):
        hc["ShmSize"] = DEFAULT_SHM_SIZE
    if not hc.get("IpcMode"):
        hc["IpcMode"] = "private"
    if not hc.get("CgroupnsMode"):
        hc["CgroupnsMode"] = "private" if si.cgroup_version == "2" else "host"
    security = list(hc.get("SecurityOpt") or ())
    if not any(opt.split("=")[0] == "label" for opt in security):
        if hc.get("IpcMode") == "host" or hc.get("PidMode") == "host" or hc.get("Privileged"):
            security.append("label=disable")
    hc["SecurityOpt"] = security or None
    if hc.get("OomKillDisable") is None and si.oom_kill_disable:
        hc["OomKillDisable"] = False
    if not hc.get("NetworkMode"):
        hc["NetworkMode"] = "default"
    if not hc.get("Privileged"):
        if hc.get("MaskedPaths") is None:
            hc["MaskedPaths"] = list(DEFAULT_MASKED_PATHS)
        if hc.get("ReadonlyPaths") is None:
            hc["ReadonlyPaths"] = list(DEFAULT_READONLY_PATHS)
    return hc


# -- config merge -------------------------------------------------------------


def merge_config(config: Optional[dict], image_config: Optional[dict]) -> dict:
    """
    dockerd's merge of the request's Config with the image's: a new dict.
    Raises L{InvalidParameter} "No command specified" as dockerd does.
    """
    user = copy.deepcopy(config or {})
    image = image_config or {}
    for key in ("Cmd", "Entrypoint"):
        if key in user:
            user[key] = _strslice(user[key])
    if not user.get("User"):
        user["User"] = image.get("User") or ""
    if not user.get("ExposedPorts"):
        user["ExposedPorts"] = copy.deepcopy(image.get("ExposedPorts"))
    elif image.get("ExposedPorts"):
        for port, value in image["ExposedPorts"].items():
            user["ExposedPorts"].setdefault(port, value)
    if not user.get("Env"):
        user["Env"] = list(image.get("Env") or ())
    else:
        keys = {e.split("=", 1)[0] for e in user["Env"]}
        user["Env"] = list(user["Env"]) + [
            e for e in image.get("Env") or () if e.split("=", 1)[0] not in keys
        ]
    labels = dict(user.get("Labels") or {})
    for key, value in (image.get("Labels") or {}).items():
        labels.setdefault(key, value)
    user["Labels"] = labels
    if not user.get("Entrypoint"):
        if not user.get("Cmd"):
            user["Cmd"] = _strslice(image.get("Cmd"))
            if "ArgsEscaped" in image:
                user["ArgsEscaped"] = image["ArgsEscaped"]
        if user.get("Entrypoint") is None:
            user["Entrypoint"] = _strslice(image.get("Entrypoint"))
    if image.get("Healthcheck"):
        if not user.get("Healthcheck"):
            user["Healthcheck"] = copy.deepcopy(image["Healthcheck"])
        else:
            health = dict(user["Healthcheck"])
            for key in ("Test", "Interval", "Timeout", "StartPeriod", "Retries"):
                if not health.get(key):
                    health[key] = image["Healthcheck"].get(key)
            user["Healthcheck"] = health
    if not user.get("WorkingDir"):
        user["WorkingDir"] = image.get("WorkingDir") or ""
    if not user.get("Volumes"):
        user["Volumes"] = copy.deepcopy(image.get("Volumes"))
    else:
        user["Volumes"] = dict(user["Volumes"], **(image.get("Volumes") or {}))
    if not user.get("StopSignal"):
        user["StopSignal"] = image.get("StopSignal") or ""
    if user.get("Entrypoint") == [""]:
        user["Entrypoint"] = None
    if not user.get("Entrypoint") and not user.get("Cmd"):
        raise InvalidParameter("No command specified")
    return user


def entrypoint_and_args(config: dict) -> Tuple[str, List[str]]:
    """A merged config's Path and Args (as inspect shows them)."""
    entrypoint = _strslice(config.get("Entrypoint")) or []
    cmd = _strslice(config.get("Cmd")) or []
    if entrypoint:
        return entrypoint[0], entrypoint[1:] + cmd
    if not cmd:
        raise InvalidParameter("No command specified")
    return cmd[0], cmd[1:]


def replace_or_append_env(defaults: List[str], overrides: Iterable[str]) -> List[str]:
    """dockerd's ReplaceOrAppendEnvValues ("KEY" alone unsets KEY)."""
    env = list(defaults)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for value in overrides:
        if "=" not in value:
            if value in index:
                env[index[value]] = ""
            continue
        key = value.split("=", 1)[0]
        if key in index:
            env[index[key]] = value
        else:
            env.append(value)
    return [e for e in env if e != ""]


# -- users (runc's libcontainer/user) -----------------------------------------

_MAX_ID = 2147483647


def _in_root(rootfs: str, path: str) -> str:
    """C{path} inside C{rootfs}, symlinks resolved without leaving it."""
    parts = [p for p in path.split("/") if p]
    resolved: List[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(rootfs, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 255:
                raise InternalError("too many levels of symbolic links: %s" % path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return os.path.join(rootfs, *resolved)


def _read_lines(rootfs: str, path: str) -> Optional[List[List[str]]]:
    try:
        with open(_in_root(rootfs, path), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as e:
        raise InternalError("open %s: %s" % (path, _strerror(e)))
    return [line.strip().split(":") for line in text.splitlines() if line.strip()]


def _field(fields: List[str], i: int) -> str:
    return fields[i] if i < len(fields) else ""


def _id_field(fields: List[str], i: int) -> int:
    v = golang.atoi(_field(fields, i))
    return v if v is not None else 0


def resolve_user(rootfs: str, user: str = "", group_add: Iterable[str] = ()) -> dict:
    """
    The OCI process.user for Config.User ("name", "uid", "name:group",
    "uid:gid") against the rootfs's /etc/passwd and /etc/group, plus
    HostConfig.GroupAdd, as dockerd's getUser.
    """
    passwd = _read_lines(rootfs, "/etc/passwd")
    groups = _read_lines(rootfs, "/etc/group")
    user_arg, _, rest = (user or "").partition(":")
    group_arg = rest.split(":", 1)[0]
    uid_arg, gid_arg = golang.atoi(user_arg), golang.atoi(group_arg)

    uid, gid, sgids = 0, 0, []
    matched_name = ""
    entries = []
    for fields in passwd or ():
        entry_uid = _id_field(fields, 2)
        if user_arg == "":
            match = entry_uid == uid
        elif uid_arg is not None:
            match = entry_uid == uid_arg
        else:
            match = _field(fields, 0) == user_arg
        if match:
            entries.append(fields)
    if entries:
        matched_name = _field(entries[0], 0)
        uid, gid = _id_field(entries[0], 2), _id_field(entries[0], 3)
    elif user_arg != "":
        if uid_arg is None:
            raise InternalError(
                "unable to find user %s: no matching entries in passwd file" % user_arg
            )
        uid = uid_arg
        if uid < 0 or uid > _MAX_ID:
            raise InternalError("uids and gids must be in range 0-%d" % _MAX_ID)

    if group_arg != "" or matched_name != "":
        found = []
        for fields in groups or ():
            if group_arg == "":
                match = matched_name in _field(fields, 3).split(",")
            elif gid_arg is not None:
                match = _id_field(fields, 2) == gid_arg
            else:
                match = _field(fields, 0) == group_arg
            if match:
                found.append(fields)
        if group_arg != "":
            if found:
                gid = _id_field(found[0], 2)
            else:
                if gid_arg is None:
                    raise InternalError(
                        "unable to find group %s: no matching entries in group file" % group_arg
                    )
                gid = gid_arg
                if gid < 0 or gid > _MAX_ID:
                    raise InternalError("uids and gids must be in range 0-%d" % _MAX_ID)
        else:
            sgids = [_id_field(f, 2) for f in found]

    added: List[int] = []
    for wanted in group_add or ():
        match = next(
            (f for f in groups or () if _field(f, 0) == wanted or str(_id_field(f, 2)) == wanted),
            None,
        )
        if match is not None:
            number = _id_field(match, 2)
        else:
            number = golang.atoi(wanted)
            if number is None:
                raise InternalError(
                    "Unable to find group %s: no matching entries in group file" % wanted
                )
            if number < 0 or number > _MAX_ID:
                raise InternalError("uids and gids must be in range 0-%d" % _MAX_ID)
        if number not in added:
            added.append(number)
    return {"uid": uid, "gid": gid, "additionalGids": [gid] + sgids + added}


# -- seccomp (moby's profiles/seccomp setupSeccomp) ---------------------------

_ARCHES = {
    # platform.machine(): (GOARCH as profiles' "arches" name it, libseccomp arch)
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "amd64": ("amd64", "SCMP_ARCH_X86_64"),
    "i386": ("386", "SCMP_ARCH_X86"),
    "i686": ("386", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "arm64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "ppc64": ("ppc64", "SCMP_ARCH_PPC64"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "mips64el": ("mips64le", "SCMP_ARCH_MIPSEL64"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}


def _kernel_at_least(kernel: str, wanted: str) -> bool:
    def numbers(v: str) -> Tuple[int, int]:
        m = re.match(r"^(\d+)\.(\d+)", v.strip())
        if not m:
            raise InternalError("invalid kernel version: %s" % v)
        return int(m.group(1)), int(m.group(2))

    return numbers(kernel) >= numbers(wanted)


def seccomp_from_profile(
    profile: Mapping[str, Any],
    capabilities: Sequence[str],
    *,
    machine: Optional[str] = None,
    kernel: Optional[str] = None,
) -> Optional[dict]:
    """
    A docker/containers seccomp profile as the OCI linux.seccomp for this
    architecture and these (bounding) capabilities: a rule is kept only if
    its includes match and its excludes do not.
    """
    machine = machine or platform.machine()
    kernel = kernel or platform.release()
    default_action = profile.get("defaultAction") or ""
    syscalls = profile.get("syscalls") or []
    if not default_action and not syscalls:
        return None
    architectures = list(profile.get("architectures") or ())
    arch_map = profile.get("archMap") or []
    if architectures and arch_map:
        raise InternalError(
            "'architectures' and 'archMap' were specified in the seccomp profile, use either "
            "'architectures' or 'archMap'"
        )
    goarch, native = _ARCHES.get(machine, (machine, ""))
    for entry in arch_map:
        if entry.get("architecture") == native:
            architectures.append(native)
            architectures.extend(entry.get("subArchitectures") or ())
    result: Dict[str, Any] = {"defaultAction": default_action}
    if profile.get("defaultErrnoRet") is not None:
        result["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if architectures:
        result["architectures"] = architectures
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            result[key] = profile[key]
    rules = []
    for call in syscalls:
        names = list(call.get("names") or ())
        if call.get("name"):
            if names:
                raise InternalError(
                    "'name' and 'names' were specified in the seccomp profile, use either "
                    "'name' or 'names'"
                )
            names = [call["name"]]
        excludes = call.get("excludes") or {}
        includes = call.get("includes") or {}
        if goarch in (excludes.get("arches") or ()):
            continue
        if any(c in capabilities for c in excludes.get("caps") or ()):
            continue
        if excludes.get("minKernel") and _kernel_at_least(kernel, excludes["minKernel"]):
            continue
        if includes.get("arches") and goarch not in includes["arches"]:
            continue
        if any(c not in capabilities for c in includes.get("caps") or ()):
            continue
        if includes.get("minKernel") and not _kernel_at_least(kernel, includes["minKernel"]):
            continue
        rule: Dict[str, Any] = {"names": names, "action": call.get("action")}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        args = []
        for arg in call.get("args") or ():
            item = {"index": arg.get("index", 0), "value": arg.get("value", 0), "op": arg.get("op")}
            if arg.get("valueTwo"):
                item["valueTwo"] = arg["valueTwo"]
            args.append(item)
        if args:
            rule["args"] = args
        rules.append(rule)
    result["syscalls"] = rules
    return result


def load_seccomp_profile(value: str) -> dict:
    """A seccomp= value: the profile's JSON (what docker CLI sends), or a path to it."""
    text = value
    if not value.lstrip().startswith("{") and value.startswith("/") and os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            text = f.read()
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise InternalError("Decoding seccomp profile failed: %s" % e)
    if not isinstance(profile, dict):
        raise InternalError("Decoding seccomp profile failed: not a JSON object")
    return profile


# -- apparmor -----------------------------------------------------------------


def _apparmor_profile_loaded(name: str) -> bool:
    if name == "unconfined":
        return True
    text = _read("/sys/kernel/security/apparmor/profiles") or ""
    return any(line.split(" (")[0] == name for line in text.splitlines())


# -- devices ------------------------------------------------------------------


def _device_from_path(path: str, permissions: str) -> Optional[dict]:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return {
        "path": path,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "_access": permissions,
    }


def host_devices(root: str = "/dev") -> List[dict]:
    """Every device node under /dev, as runc's HostDevices (for Privileged)."""
    found = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return found
    for name in names:
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            if name in ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"):
                continue
            found.extend(host_devices(path))
            continue
        if name == "console":
            continue
        device = _device_from_path(path, "rwm")
        if device:
            device.pop("_access")
            found.append(device)
    return found


def _devices_from_path(on_host: str, in_container: str, permissions: str) -> Tuple[list, list]:
    resolved = on_host
    if os.path.islink(on_host):
        resolved = os.path.realpath(on_host)
    devices, rules = [], []
    device = _device_from_path(resolved, permissions)
    candidates = [(resolved, device)] if device else []
    if not device and os.path.isdir(resolved):
        for directory, _, files in os.walk(resolved):
            for name in files:
                child = os.path.join(directory, name)
                candidates.append((child, _device_from_path(child, permissions)))
    for path, device in candidates:
        if not device:
            continue
        device["path"] = path.replace(resolved, in_container, 1)
        access = device.pop("_access")
        devices.append(device)
        rules.append({"allow": True, "type": device["type"], "major": device["major"],
                      "minor": device["minor"], "access": access})
    if not devices:
        raise InternalError(
            "error gathering device information while adding custom device %s: not a device node"
            % golang.quote(on_host)
        )
    return devices, rules


_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def _cgroup_rules(rules: Iterable[str]) -> List[dict]:
    parsed = []
    for rule in rules or ():
        m = _CGROUP_RULE.match(rule)
        if not m:
            raise InternalError("invalid device cgroup rule format: '%s'" % rule)
        parsed.append({
            "allow": True,
            "type": m.group(1),
            "major": -1 if m.group(2) == "*" else int(m.group(2)),
            "minor": -1 if m.group(3) == "*" else int(m.group(3)),
            "access": m.group(4),
        })
    return parsed


def _device_numbers(path: str) -> Tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InternalError("stat %s: %s" % (path, _strerror(e)))
    return os.major(st.st_rdev), os.minor(st.st_rdev)


# -- rlimits ------------------------------------------------------------------

_UNLIMITED = 2**64 - 1


def _rlimit(name: str, soft: int, hard: int) -> dict:
    kind = "RLIMIT_" + name.upper()
    number = getattr(resource, kind, None)
    if number is None:
        raise InternalError("wrong rlimit value: %s" % kind)
    soft = _UNLIMITED if soft < 0 else soft
    hard = _UNLIMITED if hard < 0 else hard
    if soft > hard:
        raise InvalidParameter(
            "ulimit soft limit must be less than or equal to hard limit: %d > %d" % (soft, hard)
        )
    # Without CAP_SYS_RESOURCE nobody may raise a hard limit: runc would fail.
    own_hard = resource.getrlimit(number)[1]
    if own_hard != resource.RLIM_INFINITY:
        hard = min(hard, own_hard)
        soft = min(soft, hard)
    return {"type": kind, "hard": hard, "soft": soft}


# -- mounts propagation (dockerd's ensureShared / ensureSharedOrSlave) --------


def _source_mount(path: str) -> Tuple[str, str]:
    real = os.path.realpath(path)
    best, optional = "", ""
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        fields = line.split(" ")
        if len(fields) < 7:
            continue
        mountpoint = fields[4].replace("\\040", " ")
        inside = real == mountpoint or real.startswith(mountpoint.rstrip("/") + "/")
        if inside and len(mountpoint) >= len(best):
            best = mountpoint
            optional = " ".join(fields[6 : fields.index("-")] if "-" in fields else fields[6:7])
    return best, optional


def _check_propagation(source: str, propagation: str) -> None:
    if propagation in ("shared", "rshared"):
        mountpoint, optional = _source_mount(source)
        if not any(o.startswith("shared:") for o in optional.split()):
            raise InternalError(
                "path %s is mounted on %s but it is not a shared mount" % (source, mountpoint)
            )
    elif propagation in ("slave", "rslave"):
        mountpoint, optional = _source_mount(source)
        if not any(o.startswith(("shared:", "master:")) for o in optional.split()):
            raise InternalError(
                "path %s is mounted on %s but it is not a shared or slave mount"
                % (source, mountpoint)
            )


def _depth(destination: str) -> int:
    return len(golang.clean(destination).split("/"))


# -- the spec -----------------------------------------------------------------


def linux_resources(host_config: dict, sysinfo: Optional[SysInfo] = None) -> Dict[str, Any]:
    """The OCI C{linux.resources} (less devices) for C{host_config}: what
    C{runc update} takes for C{docker update}."""
    si = sysinfo or current_sysinfo()
    hc = dict(host_config or {})
    _, resources = check_resources(hc, si)
    hc.update(resources)
    res: Dict[str, Any] = {}
    memory: Dict[str, Any] = {}
    limit, swap = _int(hc.get("Memory")), _int(hc.get("MemorySwap"))
    if limit > 0 and swap == 0 and si.swap:
        swap = limit * 2
    if limit > 0:
        memory["limit"] = limit
    if _int(hc.get("MemoryReservation")) > 0:
        memory["reservation"] = _int(hc["MemoryReservation"])
    if swap > 0:
        memory["swap"] = swap
    if hc.get("MemorySwappiness") is not None:
        memory["swappiness"] = _int(hc["MemorySwappiness"])
    if si.oom_kill_disable:
        memory["disableOOMKiller"] = bool(hc.get("OomKillDisable"))
    if memory:
        res["memory"] = memory
    cpu: Dict[str, Any] = {}
    shares = _int(hc.get("CpuShares"))
    if shares < 0:
        raise InternalError("shares: invalid argument")
    if shares:
        cpu["shares"] = shares
    nano = _int(hc.get("NanoCpus"))
    if nano > 0:
        cpu["period"] = 100000
        cpu["quota"] = nano * 100000 // 1000000000
    if _int(hc.get("CpuPeriod")):
        cpu["period"] = _int(hc["CpuPeriod"])
    if _int(hc.get("CpuQuota")):
        cpu["quota"] = _int(hc["CpuQuota"])
    if _int(hc.get("CpuRealtimePeriod")):
        cpu["realtimePeriod"] = _int(hc["CpuRealtimePeriod"])
    if _int(hc.get("CpuRealtimeRuntime")):
        cpu["realtimeRuntime"] = _int(hc["CpuRealtimeRuntime"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    if hc.get("PidsLimit") is not None:
        pids = _int(hc["PidsLimit"])
        res["pids"] = {"limit": pids if pids > 0 else -1}
    block_io: Dict[str, Any] = {}
    if _int(hc.get("BlkioWeight")):
        block_io["weight"] = _int(hc["BlkioWeight"])
    weight_devices = []
    for device in hc.get("BlkioWeightDevice") or ():
        major, minor = _device_numbers(device["Path"])
        weight_devices.append(
            {"major": major, "minor": minor, "weight": _int(device.get("Weight"))}
        )
    if weight_devices:
        block_io["weightDevice"] = weight_devices
    for field, key in (
        ("BlkioDeviceReadBps", "throttleReadBpsDevice"),
        ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
        ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
        ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice"),
    ):
        throttles = []
        for device in hc.get(field) or ():
            major, minor = _device_numbers(device["Path"])
            throttles.append({"major": major, "minor": minor, "rate": _int(device.get("Rate"))})
        if throttles:
            block_io[key] = throttles
    if block_io:
        res["blockIO"] = block_io

    return res


def build_spec(
    *,
    container_id: str,
    config: dict,
    host_config: dict,
    image_config: dict,
    rootfs: str,
    hostname_path: str,
    hosts_path: str,
    resolv_conf_path: str,
    netns_path: Optional[str],
    cgroup_parent: str = "/twistedock",
    seccomp_profile_path: str = DEFAULT_SECCOMP_PROFILE,
    init_path: Optional[str] = None,
    volumes: Optional[Mapping[str, str]] = None,
    namespace_paths: Optional[Mapping[str, str]] = None,
    sysinfo: Optional[SysInfo] = None,
) -> dict:
    """
    The OCI runtime spec (1.0.2, for runc 1.1) dockerd's createSpec makes.

    C{config} is the request's Config as received (it is merged with
    C{image_config} here; pass C{image_config={}} for an already merged one).
    C{volumes} maps the destination of each volume mount (named or anonymous)
    to its host directory; C{namespace_paths} maps "pid"/"ipc" to the path
    of the namespace a "container:" mode joins ("network" uses netns_path).
    Errors are dockerd's start-time errors (500, L{InternalError}) except
    Init without C{init_path} (L{InvalidParameter}).
    """
    si = sysinfo or current_sysinfo()
    cfg = merge_config(config, image_config)
    hc = dict(host_config or {})
    _, resources = check_resources(hc, si)
    hc.update(resources)
    volumes = volumes or {}
    namespace_paths = namespace_paths or {}
    privileged = bool(hc.get("Privileged"))
    network_mode = _mode(hc.get("NetworkMode")) or "default"
    pid_mode, ipc_mode = _mode(hc.get("PidMode")), _mode(hc.get("IpcMode"))
    uts_mode = _mode(hc.get("UTSMode"))
    security = parse_security_opt(hc.get("SecurityOpt"))

    # process
    path, args = entrypoint_and_args(cfg)
    process_args = [path] + args
    hostname = cfg.get("Hostname") or (
        socket.gethostname() if network_mode == "host" else container_id[:12]
    )
    tty = bool(cfg.get("Tty"))
    defaults = ["PATH=" + DEFAULT_PATH_ENV, "HOSTNAME=" + hostname]
    if tty:
        defaults.append("TERM=xterm")
    process: Dict[str, Any] = {
        "terminal": tty,
        "user": resolve_user(rootfs, cfg.get("User") or "", hc.get("GroupAdd") or ()),
        "args": process_args,
        "env": replace_or_append_env(defaults, cfg.get("Env") or ()),
        "cwd": cfg.get("WorkingDir") or "/",
    }
    pid_private = pid_mode != "host" and not _is_container_mode(pid_mode)
    mounts = _default_mounts()
    if hc.get("Init") and pid_private:
        if not init_path:
            raise InvalidParameter(
                "Init was requested (HostConfig.Init) but no init binary is configured "
                "on this daemon"
            )
        process["args"] = [IN_CONTAINER_INIT_PATH, "--"] + process_args
        mounts.append({"destination": IN_CONTAINER_INIT_PATH, "type": "bind",
                       "source": init_path, "options": ["bind", "ro"]})

    caps = tweak_capabilities(hc.get("CapAdd"), hc.get("CapDrop"), privileged, si)
    if process["user"]["uid"] == 0:
        process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    else:
        process["capabilities"] = {"bounding": list(caps)}

    rlimits, named = [], set()
    for ulimit in hc.get("Ulimits") or ():
        rlimit = _rlimit(
            _mode(ulimit.get("Name")), _int(ulimit.get("Soft")), _int(ulimit.get("Hard"))
        )
        rlimits.append(rlimit)
        named.add(rlimit["type"])
    if "RLIMIT_NOFILE" not in named:
        rlimits.append(_rlimit("nofile", DEFAULT_NOFILE, DEFAULT_NOFILE))
    process["rlimits"] = rlimits
    if security.no_new_privileges:
        process["noNewPrivileges"] = True
    if _int(hc.get("OomScoreAdj")):
        process["oomScoreAdj"] = _int(hc["OomScoreAdj"])
    if si.apparmor:
        profile = security.apparmor_profile or ("unconfined" if privileged else "docker-default")
        if _apparmor_profile_loaded(profile):
            process["apparmorProfile"] = profile

    linux: Dict[str, Any] = {}

    # sysctls
    sysctl: Dict[str, str] = {}
    if cfg.get("Domainname"):
        sysctl["kernel.domainname"] = cfg["Domainname"]
    if network_mode != "host" and not _is_container_mode(network_mode):
        if os.path.exists("/proc/sys/net/ipv4/ping_group_range"):
            sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
        if os.path.exists("/proc/sys/net/ipv4/ip_unprivileged_port_start"):
            sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
    sysctl.update({k: str(v) for k, v in (hc.get("Sysctls") or {}).items()})
    if sysctl:
        linux["sysctl"] = sysctl

    # resources
    res = linux_resources(hc, si)

    # devices
    devices: List[dict] = []
    if privileged:
        devices = host_devices()
        rules = [{"allow": True, "access": "rwm"}]
        for mapping in hc.get("Devices") or ():
            on_host = mapping.get("PathOnHost") or ""
            in_container = mapping.get("PathInContainer") or on_host
            if on_host != in_container:
                devices.extend(_devices_from_path(on_host, in_container, "rwm")[0])
    else:
        rules = _default_device_rules()
        for mapping in hc.get("Devices") or ():
            on_host = mapping.get("PathOnHost") or ""
            found, allowed = _devices_from_path(
                on_host, mapping.get("PathInContainer") or on_host,
                mapping.get("CgroupPermissions") or "rwm",
            )
            devices.extend(found)
            rules.extend(allowed)
        rules.extend(_cgroup_rules(hc.get("DeviceCgroupRules") or ()))
    res["devices"] = rules
    linux["resources"] = res
    if devices:
        linux["devices"] = devices
    parent = hc.get("CgroupParent") or cgroup_parent
    linux["cgroupsPath"] = golang.clean(posixpath.join(parent, container_id))

    # namespaces
    namespaces: List[dict] = [{"type": "mount"}]
    if network_mode != "host":
        if _is_container_mode(network_mode) and not netns_path:
            raise InternalError(
                "cannot join the network namespace of %s: no path given" % network_mode
            )
        namespaces.append({"type": "network", "path": netns_path} if netns_path
                          else {"type": "network"})
    if uts_mode != "host":
        namespaces.append({"type": "uts"})
    if pid_mode != "host":
        if _is_container_mode(pid_mode):
            if "pid" not in namespace_paths:
                raise InternalError("cannot join the PID namespace of %s: no path given" % pid_mode)
            namespaces.append({"type": "pid", "path": namespace_paths["pid"]})
        else:
            namespaces.append({"type": "pid"})
    known_ipc = ("", "private", "shareable", "none", "host")
    if ipc_mode not in known_ipc and not _is_container_mode(ipc_mode):
        raise InternalError("Invalid IPC mode: %s" % ipc_mode)
    if ipc_mode != "host":
        if _is_container_mode(ipc_mode):
            if "ipc" not in namespace_paths:
                raise InternalError("cannot join the IPC namespace of %s: no path given" % ipc_mode)
            namespaces.append({"type": "ipc", "path": namespace_paths["ipc"]})
        else:
            namespaces.append({"type": "ipc"})
    cgroupns = _mode(hc.get("CgroupnsMode"))
    if not cgroupns:
        cgroupns = "private" if si.cgroup_version == "2" else "host"
    if cgroupns == "private" and si.cgroup_namespaces:
        namespaces.append({"type": "cgroup"})
    linux["namespaces"] = namespaces

    # mounts: the request's, the network files, tmpfs; then dockerd's defaults
    points = mount_points(hc)
    tmpfs_map = hc.get("Tmpfs") or {}
    readonly_rootfs = bool(hc.get("ReadonlyRootfs"))
    user_mounts: List[dict] = []
    network_files = {"/etc/resolv.conf": resolv_conf_path, "/etc/hostname": hostname_path,
                     "/etc/hosts": hosts_path}
    network_writable = {k: not readonly_rootfs for k in network_files}
    tmpfs_mounts: List[dict] = [
        {"Source": "tmpfs", "Destination": dest, "Data": data or ""}
        for dest, data in tmpfs_map.items()
    ]
    for dest, point in points.items():
        if dest in tmpfs_map:
            continue
        if point["Type"] == "tmpfs":
            tmpfs_mounts.append({"Source": "tmpfs", "Destination": dest, "Data": point["Data"]})
            continue
        if point["Type"] == "volume":
            if dest not in volumes:
                raise NotImplementedYet("volume mounts are not implemented yet (%s)" % dest)
            source, propagation = volumes[dest], ""
        else:
            source, propagation = point["Source"], point["Propagation"]
        if dest in network_files:
            network_files[dest] = source
            network_writable[dest] = point["RW"]
            continue
        user_mounts.append({"Source": source, "Destination": dest, "Writable": point["RW"],
                            "Propagation": propagation, "NonRecursive": point["NonRecursive"]})
    user_mounts.sort(key=lambda m: _depth(m["Destination"]))
    for dest in ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts"):
        if network_files[dest]:
            user_mounts.append({"Source": network_files[dest], "Destination": dest,
                                "Writable": network_writable[dest],
                                "Propagation": _DEFAULT_PROPAGATION, "NonRecursive": False})
    all_mounts = user_mounts + tmpfs_mounts
    all_mounts.sort(key=lambda m: _depth(m["Destination"]))
    destinations = {m["Destination"] for m in all_mounts}

    spec_mounts = []
    for m in mounts:
        if m["destination"] in destinations:
            continue
        if "/dev" in destinations and m["destination"].startswith("/dev/"):
            continue
        if m["destination"] == "/dev/shm":
            if ipc_mode == "none":
                continue
            m["options"].append("size=%d" % (_int(hc.get("ShmSize")) or DEFAULT_SHM_SIZE))
        spec_mounts.append(m)
    rootfs_propagation = ""
    for m in all_mounts:
        if m["Source"] == "tmpfs":
            options = ["noexec", "nosuid", "nodev", _DEFAULT_PROPAGATION]
            if m["Data"]:
                options.extend(m["Data"].split(","))
            spec_mounts.append({"destination": m["Destination"], "type": "tmpfs",
                                "source": "tmpfs", "options": merge_tmpfs_options(options)})
            continue
        propagation = m["Propagation"]
        _check_propagation(m["Source"], propagation)
        if propagation in ("shared", "rshared"):
            if rootfs_propagation not in ("shared", "rshared"):
                rootfs_propagation = "shared"
        elif propagation in ("slave", "rslave"):
            if rootfs_propagation not in ("shared", "rshared", "slave", "rslave"):
                rootfs_propagation = "rslave"
        options = ["bind" if m["NonRecursive"] else "rbind"]
        if not m["Writable"]:
            options.append("ro")
        if propagation:
            options.append(propagation)
        spec_mounts.append({"destination": m["Destination"], "type": "bind",
                            "source": m["Source"], "options": options})
    if readonly_rootfs:
        for m in spec_mounts:
            if m["destination"] in ("/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"):
                continue
            if m["destination"] not in destinations and "ro" not in m["options"]:
                m["options"].append("ro")
    if privileged:
        for m in spec_mounts:
            if m["destination"] == "/sys" or m["type"] == "cgroup":
                m["options"] = [o for o in m["options"] if o != "ro"]
    if rootfs_propagation:
        linux["rootfsPropagation"] = rootfs_propagation

    # seccomp
    if security.seccomp_profile != "unconfined" and not privileged:
        if not si.seccomp:
            if security.seccomp_profile:
                raise InternalError(
                    "seccomp is not enabled in your kernel, cannot run a custom seccomp profile"
                )
        else:
            if security.seccomp_profile and security.seccomp_profile != "builtin":
                profile = load_seccomp_profile(security.seccomp_profile)
            else:
                profile = load_seccomp_profile(seccomp_profile_path)
            seccomp = seccomp_from_profile(profile, caps, machine=si.machine, kernel=si.kernel)
            if seccomp:
                linux["seccomp"] = seccomp

    if not privileged:
        masked = hc.get("MaskedPaths")
        readonly = hc.get("ReadonlyPaths")
        linux["maskedPaths"] = list(DEFAULT_MASKED_PATHS if masked is None else masked)
        linux["readonlyPaths"] = list(DEFAULT_READONLY_PATHS if readonly is None else readonly)
    elif hc.get("MaskedPaths") or hc.get("ReadonlyPaths"):
        linux["maskedPaths"] = list(hc.get("MaskedPaths") or ())
        linux["readonlyPaths"] = list(hc.get("ReadonlyPaths") or ())

    spec: Dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": readonly_rootfs},
        "mounts": spec_mounts,
        "linux": linux,
    }
    if uts_mode != "host":
        spec["hostname"] = hostname
    if hc.get("Annotations"):
        spec["annotations"] = dict(hc["Annotations"])
    return spec
