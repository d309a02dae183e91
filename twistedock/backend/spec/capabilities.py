"""dockerd's capability lists: what a host knows, what "ALL" grants, CapAdd/CapDrop."""

from typing import Iterable, List, Optional

from ...errors import InvalidParameter
from ... import golang
from .defaults import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from .sysinfo import SysInfo, current_sysinfo


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

