"""Request fields as Go decodes them: null as zero, StrSlice, "container:" modes."""

import os
from typing import Any, List, Optional


def strslice(value: Any) -> Optional[List[str]]:
    """strslice.StrSlice: null stays None, a string becomes a one-item list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def as_int(value: Any) -> int:
    return int(value or 0)


def as_str(value: Any) -> str:
    return str(value or "")


def is_container_mode(mode: str) -> bool:
    parts = mode.split(":", 1)
    return len(parts) > 1 and parts[0] == "container"


def strerror(e: OSError) -> str:
    text = os.strerror(e.errno) if e.errno else str(e)
    return text[:1].lower() + text[1:]


