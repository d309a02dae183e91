"""
Mounts as dockerd's volume/mounts linux parser sees them: HostConfig.Binds
and HostConfig.Mounts validated and turned into mount points by destination,
tmpfs options, and bind propagation (ensureShared / ensureSharedOrSlave).
The host is read only by L{stat_error}, L{source_mount} and
L{missing_bind_sources}; everything else is pure.
"""

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...errors import InternalError, InvalidParameter
from ..host import read_text
from ... import golang
from .fields import as_int, as_str, strerror

#: What a Mounts bind source's stat failed with (None: it exists).
StatError = Callable[[str], Optional[OSError]]


_PROPAGATION_MODES = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
_RW_MODES = ("rw", "ro")
_LABEL_MODES = ("z", "Z")
_CONSISTENCY_MODES = ("consistent", "cached", "delegated")
DEFAULT_PROPAGATION = "rprivate"


def _mount_error(mount_type: str, message: str) -> InvalidParameter:
    return InvalidParameter(
        "invalid mount config for type %s: %s" % (golang.quote(mount_type), message)
    )


def not_root_error(p: str) -> Optional[str]:
    if golang.clean(p.replace("\\", "/")) == "/":
        return "invalid specification: destination can't be '/'"
    return None


def absolute_error(p: str) -> Optional[str]:
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


def _is_local(path: str) -> bool:
    """Go's filepath.IsLocal: relative, not empty, never above its base."""
    if not path or path.startswith("/"):
        return False
    cleaned = golang.clean(path)
    return cleaned != ".." and not cleaned.startswith("../")


def tmpfs_options_from_mount(tmpfs_options: Optional[dict], read_only: bool) -> str:
    """ConvertTmpfsOptions: a Mounts entry's TmpfsOptions as mount data."""
    raw = []
    if read_only:
        raw.append("ro")
    opts = tmpfs_options or {}
    if as_int(opts.get("Mode")):
        raw.append("mode=%o" % as_int(opts.get("Mode")))
    size = as_int(opts.get("SizeBytes"))
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


def stat_error(path: str) -> Optional[OSError]:
    """What stat(2) of a bind source fails with, None if it exists."""
    try:
        os.stat(path)
    except OSError as e:
        return e
    return None


def validate_mount(mount: dict, stat_error: Optional[StatError] = stat_error) -> None:
    """ValidateMountConfig for one HostConfig.Mounts entry; C{stat_error}
    None: a bind source is not looked for."""
    mtype = as_str(mount.get("Type"))
    target = as_str(mount.get("Target"))
    source = as_str(mount.get("Source"))
    if not target:
        raise _mount_error(mtype, "field Target must not be empty")
    for check in (not_root_error, absolute_error):
        problem = check(target)
        if problem:
            raise _mount_error(mtype, problem)
    if mtype == "bind":
        if not source:
            raise _mount_error(mtype, "field Source must not be empty")
        propagation = as_str((mount.get("BindOptions") or {}).get("Propagation"))
        if propagation and propagation not in _PROPAGATION_MODES:
            raise _mount_error(mtype, "invalid propagation mode: %s" % propagation)
        if mount.get("VolumeOptions") is not None:
            raise _mount_error(mtype, "field VolumeOptions must not be specified")
        problem = absolute_error(source)
        if problem:
            raise _mount_error(mtype, problem)
        error = stat_error(source) if stat_error else None
        if isinstance(error, FileNotFoundError):
            if not (mount.get("BindOptions") or {}).get("CreateMountpoint"):
                raise _mount_error(mtype, "bind source path does not exist: %s" % source)
        elif error is not None:
            raise _mount_error(mtype, "stat %s: %s" % (source, strerror(error)))
    elif mtype == "volume":
        if mount.get("BindOptions") is not None:
            raise _mount_error(mtype, "field BindOptions must not be specified")
        if not source and mount.get("ReadOnly"):
            raise _mount_error(mtype, "must not set ReadOnly mode when using anonymous volumes")
        subpath = as_str((mount.get("VolumeOptions") or {}).get("Subpath"))
        if subpath:
            if not source:
                raise _mount_error(mtype, "must not set Subpath when using anonymous volumes")
            if not _is_local(subpath):
                raise _mount_error(mtype, "subpath must be a relative path within the volume")
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
    mtype = as_str(mount.get("Type"))
    point = {
        "Type": mtype,
        "Destination": golang.clean(as_str(mount.get("Target"))),
        "RW": not mount.get("ReadOnly"),
        "Source": "",
        "Name": "",
        "Propagation": "",
        "NonRecursive": False,
        "Data": "",
    }
    bind_options = mount.get("BindOptions") or {}
    if mtype == "volume":
        point["Name"] = as_str(mount.get("Source"))
    elif mtype == "bind":
        point["Source"] = golang.clean(as_str(mount.get("Source")))
        point["Propagation"] = as_str(bind_options.get("Propagation")) or DEFAULT_PROPAGATION
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
        validate_mount(spec, stat_error=None)
    except InvalidParameter as e:
        raise InvalidParameter("invalid volume specification: '%s': %s" % (raw, e.message))
    point = _mount_point_from_spec(spec)
    point["Mode"] = mode
    return point


def mount_points(host_config: dict, stat_error: StatError = stat_error) -> Dict[str, dict]:
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
        validate_mount(mount, stat_error)
        point = _mount_point_from_spec(mount)
        if point["Destination"] in seen:
            raise InvalidParameter("Duplicate mount point: %s" % as_str(mount.get("Target")))
        seen.add(point["Destination"])
        points[point["Destination"]] = point
    return points


def missing_bind_sources(host_config: dict) -> List[str]:
    """Bind sources absent on the host that dockerd creates (mkdir -p) at
    start: those of Binds, and those of Mounts asking for it with
    C{BindOptions.CreateMountpoint}."""
    missing = []
    for raw in host_config.get("Binds") or ():
        try:
            point = parse_bind(raw)
        except InvalidParameter:
            continue
        if point["Type"] == "bind" and not os.path.lexists(point["Source"]):
            missing.append(point["Source"])
    for mount in host_config.get("Mounts") or ():
        if not isinstance(mount, dict) or as_str(mount.get("Type")) != "bind":
            continue
        if not (mount.get("BindOptions") or {}).get("CreateMountpoint"):
            continue
        source = golang.clean(as_str(mount.get("Source")))
        if source.startswith("/") and not os.path.lexists(source):
            missing.append(source)
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


# -- bind propagation (dockerd's ensureShared / ensureSharedOrSlave) ----------


def source_mount(path: str) -> Tuple[str, str]:
    """The mount point holding C{path} and its mountinfo optional fields."""
    real = os.path.realpath(path)
    best, optional = "", ""
    for line in (read_text("/proc/self/mountinfo") or "").splitlines():
        fields = line.split(" ")
        if len(fields) < 7:
            continue
        mountpoint = fields[4].replace("\\040", " ")
        inside = real == mountpoint or real.startswith(mountpoint.rstrip("/") + "/")
        if inside and len(mountpoint) >= len(best):
            best = mountpoint
            optional = " ".join(fields[6 : fields.index("-")] if "-" in fields else fields[6:7])
    return best, optional


def needs_shared_source(propagation: str) -> bool:
    """Whether a bind with C{propagation} needs its source's mount checked."""
    return propagation in ("shared", "rshared", "slave", "rslave")


def check_propagation(source: str, propagation: str, mount: Tuple[str, str]) -> None:
    """Refuse a shared or slave bind whose source's C{mount} (from
    L{source_mount}) does not propagate that way, as dockerd does."""
    mountpoint, optional = mount
    if propagation in ("shared", "rshared"):
        if not any(o.startswith("shared:") for o in optional.split()):
            raise InternalError(
                "path %s is mounted on %s but it is not a shared mount" % (source, mountpoint)
            )
    elif propagation in ("slave", "rslave"):
        if not any(o.startswith(("shared:", "master:")) for o in optional.split()):
            raise InternalError(
                "path %s is mounted on %s but it is not a shared or slave mount"
                % (source, mountpoint)
            )


def depth(destination: str) -> int:
    """How deep a mount destination is (mounts are sorted by it)."""
    return len(golang.clean(destination).split("/"))
