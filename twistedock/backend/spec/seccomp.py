"""
A docker/containers seccomp profile as the OCI C{linux.seccomp} for this
architecture, kernel and capability set (moby's profiles/seccomp
setupSeccomp).  L{load_seccomp_profile} may read a file (run it off the
reactor); the rest is pure.
"""

import json
import os
import platform
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ...errors import InternalError
from ... import golang
from .defaults import SECCOMP_ARCHITECTURES


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
    goarch = golang.goarch(machine)
    architectures = _architectures(profile, SECCOMP_ARCHITECTURES.get(goarch, ""))
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
        names = _names(call)
        if _applies(call, goarch, capabilities, kernel):
            rules.append(_rule(call, names))
    result["syscalls"] = rules
    return result


def _architectures(profile: Mapping[str, Any], native: str) -> List[str]:
    architectures = list(profile.get("architectures") or ())
    arch_map = profile.get("archMap") or []
    if architectures and arch_map:
        raise InternalError(
            "'architectures' and 'archMap' were specified in the seccomp profile, use either "
            "'architectures' or 'archMap'"
        )
    for entry in arch_map:
        if entry.get("architecture") == native:
            architectures.append(native)
            architectures.extend(entry.get("subArchitectures") or ())
    return architectures


def _names(call: Mapping[str, Any]) -> List[str]:
    names = list(call.get("names") or ())
    if call.get("name"):
        if names:
            raise InternalError(
                "'name' and 'names' were specified in the seccomp profile, use either "
                "'name' or 'names'"
            )
        names = [call["name"]]
    return names


def _applies(
    call: Mapping[str, Any], goarch: str, capabilities: Sequence[str], kernel: str
) -> bool:
    """Whether a profile's syscall rule's includes match and its excludes do not."""
    excludes = call.get("excludes") or {}
    includes = call.get("includes") or {}
    if goarch in (excludes.get("arches") or ()):
        return False
    if any(c in capabilities for c in excludes.get("caps") or ()):
        return False
    if excludes.get("minKernel") and _kernel_at_least(kernel, excludes["minKernel"]):
        return False
    if includes.get("arches") and goarch not in includes["arches"]:
        return False
    if any(c not in capabilities for c in includes.get("caps") or ()):
        return False
    if includes.get("minKernel") and not _kernel_at_least(kernel, includes["minKernel"]):
        return False
    return True


def _rule(call: Mapping[str, Any], names: List[str]) -> dict:
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
    return rule


def load_seccomp_profile(value: str) -> dict:
    """A seccomp= value: the profile's JSON (what docker CLI sends), or a path to it."""
    text = value
    if not value.lstrip().startswith("{") and value.startswith("/") and os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            text = f.read()
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise InternalError("Decoding seccomp profile failed: %s" % _unmarshal_error(text, e))
    if not isinstance(profile, dict):
        raise InternalError("Decoding seccomp profile failed: not a JSON object")
    return profile


def _unmarshal_error(text: str, error: ValueError) -> str:
    """Go's json.Unmarshal words for the commonest syntax errors (a
    document that is not JSON at all, or cut short); Python's otherwise."""
    if not isinstance(error, json.JSONDecodeError):
        return str(error)
    rest = text[error.pos:]
    if not rest.strip():
        return "unexpected end of JSON input"
    if error.msg == "Expecting value":
        char = rest[0]
        quoted = "'\\''" if char == "'" else "'\"'" if char == '"' else "'%s'" % (char,)
        return "invalid character %s looking for beginning of value" % (quoted,)
    return str(error)
