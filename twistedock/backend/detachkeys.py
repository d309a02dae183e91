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


class EscapeKeys:
    """Spots the detach sequence in what a client types, as dockerd's
    escape proxy does: keys count only when they arrive one read at a time
    (typed), and keys held back are passed on when the sequence breaks."""

    def __init__(self, keys: List[int]) -> None:
        self.keys = bytes(keys)
        self.position = 0

    def feed(self, data: bytes):
        """(bytes to pass on, whether the client detached)."""
        if not self.keys:
            return data, False
        held = self.keys[: self.position]
        if len(data) != 1:
            self.position = 0
            return held + data, False
        if data[0] != self.keys[self.position]:
            self.position = 0
            return held + data, False
        if self.position == len(self.keys) - 1:
            self.position = 0
            return b"", True
        self.position += 1
        return b"", False
