"""
The user a container's process runs as: Config.User and HostConfig.GroupAdd
resolved against the image's /etc/passwd and /etc/group as runc's
libcontainer/user does (dockerd's getUser).  L{resolve_user} reads the
files (run it off the reactor); L{user_from_entries} is the pure part.
"""

import os
from typing import Iterable, List, Optional, Sequence, Tuple

from ...errors import InternalError
from ... import golang
from .fields import strerror

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
        raise InternalError("open %s: %s" % (path, strerror(e)))
    return [line.strip().split(":") for line in text.splitlines() if line.strip()]


def _field(fields: List[str], i: int) -> str:
    return fields[i] if i < len(fields) else ""


def _id_field(fields: List[str], i: int) -> int:
    v = golang.atoi(_field(fields, i))
    return v if v is not None else 0


def _checked_id(number: int) -> int:
    if number < 0 or number > _MAX_ID:
        raise InternalError("uids and gids must be in range 0-%d" % _MAX_ID)
    return number


def resolve_user(rootfs: str, user: str = "", group_add: Iterable[str] = ()) -> dict:
    """
    The OCI process.user for Config.User ("name", "uid", "name:group",
    "uid:gid") against the rootfs's /etc/passwd and /etc/group, plus
    HostConfig.GroupAdd, as dockerd's getUser.
    """
    passwd = _read_lines(rootfs, "/etc/passwd")
    groups = _read_lines(rootfs, "/etc/group")
    return user_from_entries(passwd or (), groups or (), user, group_add)


def user_from_entries(
    passwd: Sequence[List[str]], groups: Sequence[List[str]], user: str, group_add: Iterable[str]
) -> dict:
    """L{resolve_user} over the files' entries (lists of fields)."""
    user_arg, _, rest = (user or "").partition(":")
    group_arg = rest.split(":", 1)[0]
    uid, gid, matched_name = _find_user(passwd, user_arg)
    if group_arg != "" or matched_name != "":
        gid, sgids = _find_groups(groups, group_arg, matched_name, gid)
    else:
        sgids = []
    added = _added_groups(groups, group_add)
    return {"uid": uid, "gid": gid, "additionalGids": [gid] + sgids + added}


def _find_user(passwd: Sequence[List[str]], user_arg: str) -> Tuple[int, int, str]:
    """uid, gid and name of the first passwd entry matching C{user_arg}."""
    uid_arg = golang.atoi(user_arg)
    entries = []
    for fields in passwd:
        entry_uid = _id_field(fields, 2)
        if user_arg == "":
            match = entry_uid == 0
        elif uid_arg is not None:
            match = entry_uid == uid_arg
        else:
            match = _field(fields, 0) == user_arg
        if match:
            entries.append(fields)
    if entries:
        return _id_field(entries[0], 2), _id_field(entries[0], 3), _field(entries[0], 0)
    if user_arg != "":
        if uid_arg is None:
            raise InternalError(
                "unable to find user %s: no matching entries in passwd file" % user_arg
            )
        return _checked_id(uid_arg), 0, ""
    return 0, 0, ""


def _find_groups(
    groups: Sequence[List[str]], group_arg: str, matched_name: str, gid: int
) -> Tuple[int, List[int]]:
    """The primary gid (C{group_arg}'s, else C{gid}) and the user's supplementary gids."""
    gid_arg = golang.atoi(group_arg)
    found = []
    for fields in groups:
        if group_arg == "":
            match = matched_name in _field(fields, 3).split(",")
        elif gid_arg is not None:
            match = _id_field(fields, 2) == gid_arg
        else:
            match = _field(fields, 0) == group_arg
        if match:
            found.append(fields)
    if group_arg == "":
        return gid, [_id_field(f, 2) for f in found]
    if found:
        return _id_field(found[0], 2), []
    if gid_arg is None:
        raise InternalError(
            "unable to find group %s: no matching entries in group file" % group_arg
        )
    return _checked_id(gid_arg), []


def _added_groups(groups: Sequence[List[str]], group_add: Iterable[str]) -> List[int]:
    """HostConfig.GroupAdd's gids, by name or number, each once."""
    added: List[int] = []
    for wanted in group_add or ():
        match = next(
            (f for f in groups if _field(f, 0) == wanted or str(_id_field(f, 2)) == wanted),
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
            _checked_id(number)
        if number not in added:
            added.append(number)
    return added
