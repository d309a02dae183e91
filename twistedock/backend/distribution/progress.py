"""
The JSON progress lines of a pull, as dockerd's streamformatter writes them
(C{status}, C{progressDetail}, C{progress}, C{id}; CRLF after each), and
the text bar of C{JSONProgress.String} for clients that print C{progress}.
"""

from typing import Optional

from ... import golang

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float) -> str:
    """go-units HumanSize: decimal units, four significant digits."""
    i = 0
    while size >= 1000.0 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    return "%.4g%s" % (size, _UNITS[i])


def bar(current: int, total: int) -> str:
    """JSONProgress.String for a wide terminal (no time left)."""
    if total <= 0:
        return "%8s" % (human_size(current),)
    percentage = min(int(current / total * 100) // 2, 50)
    spaces = 50 - percentage
    box = "[%s>%s] " % ("=" * percentage, " " * spaces)
    return box + "%8s/%s" % (human_size(current), human_size(total))


def message(status: str, id: str = "", current: Optional[int] = None, total: Optional[int] = None,
            detail: bool = True) -> dict:
    """One JSONMessage: C{detail} adds C{progressDetail} (empty without
    C{current}), as progress.Update does for a layer."""
    doc: dict = {"status": status}
    if detail:
        if current is not None:
            progress: dict = {"current": current}
            if total:
                progress["total"] = total
            doc["progressDetail"] = progress
            doc["progress"] = bar(current, total or 0)
        else:
            doc["progressDetail"] = {}
    if id:
        doc["id"] = id
    return doc


def error_message(text: str) -> dict:
    return {"errorDetail": {"message": text}, "error": text}


def encode(doc: dict) -> bytes:
    """A JSON message as a line of the stream (Go's json.Marshal, CRLF)."""
    return golang.json_marshal(doc) + b"\r\n"


def short(digest: str) -> str:
    """The 12 hex digits a layer shows as its id."""
    return digest.split(":", 1)[-1][:12]
