"""Files written so that a crash leaves the old content or the new, never half."""

import os
import tempfile


def write_atomic(path: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write C{data} to a temporary file beside C{path}, fsync, rename over it.
    C{durable} false: no fsync (a crash of the daemon still leaves the old
    content or the new; a power loss may leave neither), for the exec
    root's files (bundles, runc's state), which describe processes a power
    loss ends anyway; runc writes its state so."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if durable:
                os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    """Make a rename or unlink in C{directory} durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
