"""runc's error messages: logrus' dressing taken off, typed as the
Engine API answers them."""

import re

from typing import Union

from ...errors import Conflict, DockerError, InternalError, NotFound
from ... import golang

_LOGRUS_LINE = re.compile(r'level=(\w+)\s+msg="((?:[^"\\]|\\.)*)"')


def runc_message(output: Union[bytes, str, None]) -> str:
    """runc's error text without logrus' C{time=... level=error msg="..."}
    dressing: the C{msg} of the last error line, as containerd's
    getLastRuntimeError gives dockerd (runc's own error after what its
    nsexec logged before it), or of every line when none says error, else
    the text as it is, stripped."""
    if output is None:
        return ""
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    found = [(m.group(1), golang.unquote_body(m.group(2))) for m in _LOGRUS_LINE.finditer(output)]
    errors = [msg for level, msg in found if level in ("error", "fatal", "panic")]
    if errors:
        return errors[-1].strip()
    chosen = [msg for _, msg in found]
    if chosen:
        return "; ".join(chosen)
    return output.strip()


def shim_task_message(message: str) -> str:
    """runc's create error as dockerd reports it through containerd's shim
    (scripts grep for these words)."""
    return "failed to create shim task: OCI runtime create failed: %s: unknown" % (message,)


_CONFLICT_PATTERNS = (
    "not running",
    "not paused",
    "is paused",
    "is not stopped",
    "that is not stopped",
    "has stopped",
    "already running",
    "already paused",
    "id exists",
    "already exists",
    "cannot start",
)


def runc_error(message: str) -> DockerError:
    """The typed error for one of runc's failure messages."""
    lowered = message.lower()
    if "does not exist" in lowered:
        return NotFound(message)
    if any(pattern in lowered for pattern in _CONFLICT_PATTERNS):
        return Conflict(message)
    return InternalError(message)

