"""
The JSON progress lines of a streamed answer (pull, push, load, import), as
dockerd's streamformatter writes them: one C{JSONMessage} (C{stream},
C{status}, C{progressDetail}, C{progress}, C{id}, C{errorDetail},
C{error}; empty ones left out) as Go's json.Marshal, CRLF after each, and
the text bar of C{JSONProgress.String} for clients that print C{progress}.
Used by backends and routers alike.
"""

from typing import Optional

from . import golang

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float) -> str:
    """go-units HumanSize: decimal units, four significant digits."""
    i = 0
    while size >= 1000.0 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    return "%.4g%s" % (size, _UNITS[i])


def bar(current: int, total: int) -> str:
    """JSONProgress.String for a wide terminal (no time left): dockerd
    renders it 200 columns wide, so with the bar."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return "%8s" % (human_size(current),)
    percentage = min(int(current / total * 100) // 2, 50)
    box = "[%s>%s] " % ("=" * percentage, " " * max(50 - percentage, 0))
    if current > total:
        return box + "%8s" % (human_size(current),)
    return box + "%8s/%s" % (human_size(current), human_size(total))


def message(status: str, id: str = "", current: Optional[int] = None, total: Optional[int] = None,
            detail: bool = True) -> dict:
    """One JSONMessage: C{detail} adds C{progressDetail} (empty without
    C{current}) and its bar, as progress.Update does for a layer."""
    doc: dict = {"status": status}
    if detail:
        progress: dict = {}
        if current:
            progress["current"] = current
        if total:
            progress["total"] = total
        doc["progressDetail"] = progress
        text = bar(current or 0, total or 0)
        if text:
            doc["progress"] = text
    if id:
        doc["id"] = id
    return doc


def stream_message(text: str) -> dict:
    """A line of output text (C{stream})."""
    return {"stream": text}


def error_message(text: str) -> dict:
    return {"errorDetail": {"message": text}, "error": text}


def encode(doc: dict) -> bytes:
    """A JSON message as a line of the stream (Go's json.Marshal, CRLF)."""
    return golang.json_marshal(doc) + b"\r\n"


def short(digest: str) -> str:
    """The 12 hex digits a layer shows as its id."""
    return digest.split(":", 1)[-1][:12]


class Pace:
    """When a transfer's next progress line is due: every C{step} bytes,
    at the end, and once C{interval} seconds passed with bytes moved, so
    that a slow transfer still reports (cri-dockerd cancels a pull that
    says nothing for a minute).  C{clock} is a function giving seconds."""

    def __init__(self, clock, total: int, step: int, interval: float) -> None:
        self.clock = clock
        self.total = total
        self.step = step
        self.interval = interval
        self.shown = -step
        self.at = clock()

    def due(self, current: int) -> bool:
        """Whether a line for C{current} bytes is due (then it counts as shown)."""
        if current == self.shown:
            return False
        now = self.clock()
        if current - self.shown >= self.step or current == self.total or now - self.at >= self.interval:
            self.shown = current
            self.at = now
            return True
        return False
