"""HostConfig.SecurityOpt as dockerd parses it, and which AppArmor profile applies."""

from typing import AbstractSet, Iterable, Optional, Tuple

import attr

from ...errors import InvalidParameter
from ... import golang


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




def apparmor_profile_loaded(name: str, loaded: AbstractSet[str]) -> bool:
    """Whether runc can apply C{name}, given the kernel's C{loaded} profiles."""
    return name == "unconfined" or name in loaded
