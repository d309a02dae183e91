"""Child processes on the reactor (their output collected, their status as
a shell shows it) and the small file reads the runtime makes of what
conmon and runc leave behind."""

import os
import shutil
from typing import List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure


class Collect(ProcessProtocol):
    """Feed a child some input, collect its output and its exit status."""

    def __init__(self, stdin: Optional[bytes]) -> None:
        self.stdin = stdin
        self.out: List[bytes] = []
        self.err: List[bytes] = []
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        self.done.callback((b"".join(self.out), b"".join(self.err), exit_status(reason)))


def exit_status(reason: Failure) -> int:
    """A child's exit status as a shell shows it (128 + signal when killed)."""
    value = reason.value
    code = getattr(value, "exitCode", None)
    if code is not None:
        return code
    sig = getattr(value, "signal", None)
    return 128 + sig if sig else 255


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_int(path: str) -> Optional[int]:
    try:
        with open(path, "rb") as f:
            text = f.read(64)
    except OSError:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def resolve_binary(binary: str) -> str:
    if os.path.sep in binary:
        return os.path.abspath(binary)
    return shutil.which(binary) or binary
