"""
Device nodes and cgroup device rules: HostConfig.Devices and
DeviceCgroupRules as dockerd turns them into OCI devices and rules.  The
readers (L{host_devices}, L{devices_from_path}, L{device_numbers}) look at
/dev and stat device nodes: run them off the reactor.
"""

import os
import re
import stat
from typing import Iterable, List, Optional, Tuple

from ...errors import InternalError
from ... import golang
from .fields import strerror


def device_requests(host_config: dict) -> List[Tuple[str, str, str]]:
    """HostConfig.Devices as (path on host, path in container, cgroup
    permissions); a privileged container gets every host device already, so
    only those it maps elsewhere."""
    requests = []
    for mapping in host_config.get("Devices") or ():
        on_host = mapping.get("PathOnHost") or ""
        in_container = mapping.get("PathInContainer") or on_host
        if host_config.get("Privileged"):
            if on_host != in_container:
                requests.append((on_host, in_container, "rwm"))
        else:
            requests.append((on_host, in_container, mapping.get("CgroupPermissions") or "rwm"))
    return requests


#: runc's devices.ErrNotADevice, in the message of a path that is not one.
NOT_A_DEVICE = "not a device node"


def _device_from_path(path: str, permissions: str) -> Optional[dict]:
    device, _ = _device_or_error(path, permissions)
    return device


def _device_or_error(path: str, permissions: str) -> Tuple[Optional[dict], str]:
    """runc's devices.DeviceFromPath: the device at C{path}, or why not (the
    lstat error as Go words it, or L{NOT_A_DEVICE})."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return None, strerror(e)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None, NOT_A_DEVICE
    return {
        "path": path,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "_access": permissions,
    }, ""


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


def devices_from_path(on_host: str, in_container: str, permissions: str) -> Tuple[list, list]:
    """The device nodes at C{on_host} (a node or a directory of them) as
    OCI devices under C{in_container}, and the cgroup rules allowing them."""
    resolved = on_host
    if os.path.islink(on_host):
        resolved = os.path.realpath(on_host)
    devices, rules = [], []
    device, problem = _device_or_error(resolved, permissions)
    candidates = [(resolved, device)] if device else []
    if problem == NOT_A_DEVICE and os.path.isdir(resolved):
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
            "error gathering device information while adding custom device %s: %s"
            % (golang.quote(on_host), problem or NOT_A_DEVICE)
        )
    return devices, rules


_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def cgroup_rules(rules: Iterable[str]) -> List[dict]:
    """HostConfig.DeviceCgroupRules ("c 1:3 rwm") as OCI cgroup device rules."""
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


def device_numbers(path: str) -> Tuple[int, int]:
    """The (major, minor) of the block device at C{path} (for Blkio* limits)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise InternalError("stat %s: %s" % (path, strerror(e)))
    return os.major(st.st_rdev), os.minor(st.st_rdev)

