"""
Container output on the wire: dockerd's stdcopy framing for streams without a
TTY (an 8-byte header per write: stream id, three zero bytes, big-endian
length), raw bytes for streams with one.
"""

import struct
from typing import Callable

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def unframe(data: bytes):
    """Split a multiplexed byte string into (stream, payload) pairs."""
    out = []
    while data:
        stream, size = struct.unpack(">BxxxL", data[:8])
        out.append((stream, data[8 : 8 + size]))
        data = data[8 + size :]
    return out


class StdWriter:
    """Write container output to C{sink}, framed unless the container has a
    TTY; C{flow} (an L{httputils.Flow}) paces the writer to the client."""

    def __init__(self, sink: Callable[[bytes], None], framed: bool, flow=None) -> None:
        self.sink = sink
        self.framed = framed
        self.flow = flow

    def write(self, stream: int, data: bytes) -> None:
        self.sink(frame(stream, data) if self.framed else data)
