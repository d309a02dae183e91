"""
Everything a container's OCI spec needs from disk and the host, read at once
by L{gather_inputs} in a thread so that L{build.build_spec} stays pure: the
image's /etc/passwd and /etc/group for the user, the seccomp profile, /dev
and the device nodes a request names, bind sources and their mounts
(mountinfo), the daemon's own limits, sysctls and AppArmor profiles.

A read that fails keeps its error (L{outcomes.attempt}) for the builder to
raise where dockerd's createSpec would meet it.
"""

import os
import resource
import socket
from typing import Any, FrozenSet, Mapping, Optional, Tuple

import attr

from ..host import read_text
from .config import merge_config
from .defaults import DEFAULT_SECCOMP_PROFILE
from .devices import device_numbers, device_requests, devices_from_path, host_devices
from .fields import as_str
from .mounts import mount_points, needs_shared_source, source_mount, stat_error
from .outcomes import attempt, result
from .resources import blkio_device_paths, linux_resources
from .seccomp import load_seccomp_profile
from .security import parse_security_opt
from .sysinfo import SysInfo, current_sysinfo
from .user import resolve_user

#: The network-namespaced sysctls dockerd sets when this kernel has them.
NAMESPACED_SYSCTLS = ("net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start")


@attr.s(frozen=True, auto_attribs=True)
class SpecInputs:
    """What L{build.build_spec} reads from the host, gathered beforehand.
    Values that may fail to read hold the value or its error."""

    sysinfo: SysInfo
    #: The OCI process.user (or its error).
    user: Any
    #: This host's name (a container on the host network shows it).
    hostname: str
    #: The daemon's own hard limit by RLIMIT_ name (no container gets more).
    rlimit_ceilings: Mapping[str, int]
    #: Which of L{NAMESPACED_SYSCTLS} this kernel has.
    sysctls: FrozenSet[str] = frozenset()
    #: The AppArmor profiles the kernel has loaded.
    apparmor_profiles: FrozenSet[str] = frozenset()
    #: Every device node under /dev (a privileged container gets them all).
    host_devices: Tuple[dict, ...] = ()
    #: (devices, rules) (or the error) per L{devices.device_requests} entry.
    devices: Mapping[Tuple[str, str, str], Any] = attr.Factory(dict)
    #: (major, minor) (or the error) per L{resources.blkio_device_paths} entry.
    device_numbers: Mapping[str, Any] = attr.Factory(dict)
    #: What stat(2) of each HostConfig.Mounts bind source failed with, or None.
    bind_source_errors: Mapping[str, Optional[OSError]] = attr.Factory(dict)
    #: L{mounts.source_mount} of each bind source with shared or slave propagation.
    source_mounts: Mapping[str, Tuple[str, str]] = attr.Factory(dict)
    #: The seccomp profile that applies (or its error); None: none applies.
    seccomp_profile: Any = None


def gather_inputs(
    config: dict,
    host_config: dict,
    image_config: dict,
    rootfs: str,
    seccomp_profile_path: str = DEFAULT_SECCOMP_PROFILE,
    sysinfo: Optional[SysInfo] = None,
) -> SpecInputs:
    """Read what L{build.build_spec} needs for this request (blocking: run it
    in a thread).  The arguments are L{build.build_spec}'s of the same names."""
    si = sysinfo or current_sysinfo()
    hc = host_config or {}
    bind_source_errors = {
        as_str(m.get("Source")): stat_error(as_str(m.get("Source")))
        for m in hc.get("Mounts") or ()
        if as_str(m.get("Type")) == "bind"
    }
    return SpecInputs(
        sysinfo=si,
        user=_user(config, image_config, hc, rootfs),
        hostname=socket.gethostname(),
        rlimit_ceilings=_rlimit_ceilings(),
        sysctls=frozenset(
            name for name in NAMESPACED_SYSCTLS
            if os.path.exists("/proc/sys/" + name.replace(".", "/"))
        ),
        apparmor_profiles=_apparmor_profiles() if si.apparmor else frozenset(),
        host_devices=tuple(host_devices()) if hc.get("Privileged") else (),
        devices={r: attempt(devices_from_path, *r) for r in device_requests(hc)},
        device_numbers={p: attempt(device_numbers, p) for p in blkio_device_paths(hc)},
        bind_source_errors=bind_source_errors,
        source_mounts=_source_mounts(hc, bind_source_errors),
        seccomp_profile=_seccomp_profile(hc, si, seccomp_profile_path),
    )


def read_linux_resources(host_config: dict) -> dict:
    """L{resources.linux_resources} for C{docker update}, reading the block
    devices it names (blocking: run it in a thread)."""
    numbers = {p: attempt(device_numbers, p) for p in blkio_device_paths(host_config)}
    return linux_resources(host_config, current_sysinfo(), numbers, update=True)


def _user(config: dict, image_config: dict, hc: dict, rootfs: str) -> Any:
    merged = attempt(merge_config, config, image_config)
    return attempt(
        lambda: resolve_user(rootfs, result(merged).get("User") or "", hc.get("GroupAdd") or ())
    )


def _rlimit_ceilings() -> Mapping[str, int]:
    return {
        name: resource.getrlimit(getattr(resource, name))[1]
        for name in dir(resource)
        if name.startswith("RLIMIT_")
    }


def _apparmor_profiles() -> FrozenSet[str]:
    text = read_text("/sys/kernel/security/apparmor/profiles") or ""
    return frozenset(line.split(" (")[0] for line in text.splitlines())


def _source_mounts(
    hc: dict, bind_source_errors: Mapping[str, Optional[OSError]]
) -> Mapping[str, Tuple[str, str]]:
    points = attempt(mount_points, hc, bind_source_errors.get)
    if not isinstance(points, dict):
        return {}  # the builder raises the same error first
    return {
        p["Source"]: source_mount(p["Source"])
        for p in points.values()
        if p["Type"] == "bind" and needs_shared_source(p["Propagation"])
    }


def _seccomp_profile(hc: dict, si: SysInfo, default_path: str) -> Any:
    security = attempt(parse_security_opt, hc.get("SecurityOpt"))
    if not hasattr(security, "seccomp_profile") or hc.get("Privileged") or not si.seccomp:
        return None  # none applies (or the builder raises the same error first)
    chosen = security.seccomp_profile
    if chosen == "unconfined":
        return None
    return attempt(load_seccomp_profile, chosen if chosen and chosen != "builtin" else default_path)
