"""The C{detachKeys} sequence of attach and exec, parsed as the docker CLI
and dockerd parse it: comma-separated C{a}-C{z} letters, C{ctrl-X} keys."""

from typing import List

from ..errors import InvalidParameter

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(keys: str) -> List[int]:
    """The bytes of C{keys}; dockerd's 400 when they do not parse."""
    out = []
    for key in keys.split(","):
        name = key.lower()
        if len(key) == 1:
            out.append(ord(key))
        elif name.startswith("ctrl-") and len(name) == 6 and "a" <= name[5] <= "z":
            out.append(ord(name[5]) - ord("a") + 1)
        elif name.startswith("ctrl-") and len(name) == 6 and name[5] in "@[\\]^_":
            out.append(ord(name[5]) - ord("@"))
        else:
            raise InvalidParameter("Invalid detach keys (%s) provided" % (keys,))
    return out
