"""
docker's timetypes: the times the CLI passes as C{--since}, C{--until} and
C{until} filters (a duration before now, a Unix time, an RFC 3339-like time
in the daemon's zone), for the container and image backends alike.
"""

import calendar
import re
import time
from typing import Optional

from . import golang
from .errors import InternalError


def get_timestamp(value: str, now_ns: int) -> int:
    """timetypes.GetTimestamp + ParseTimestamps: a duration before now, a
    Unix time or an RFC 3339-like time, as nanoseconds since the epoch."""
    if value != "0":
        try:
            return now_ns - golang.parse_duration(value)
        except ValueError:
            pass
    parsed = _parse_time_value(value)
    if parsed is not None:
        return parsed
    if "-" in value:
        raise InternalError('parsing time "%s": cannot parse "%s" as a time' % (value, value))
    match = re.match(r"^(\d+)(?:\.(\d{1,9}))?$", value)
    if match is None:
        raise InternalError('failed to parse value as time or duration: "%s"' % (value,))
    seconds = int(match.group(1))
    nanos = int((match.group(2) or "").ljust(9, "0")) if match.group(2) else 0
    return seconds * 1_000_000_000 + nanos


_LOCAL_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S.%f", True),
    ("%Y-%m-%dT%H:%M:%S", False),
    ("%Y-%m-%dT%H:%M", False),
    ("%Y-%m-%dT%H", False),
    ("%Y-%m-%d", False),
)


def _parse_time_value(value: str) -> Optional[int]:
    exact = golang.parse_rfc3339(value)
    if exact is not None:
        return exact
    if any(c in value for c in "zZ+") or value.count("-") == 3:
        match = re.match(r"^(.*?)([Zz]|[+-]\d{2}:\d{2})$", value)
        if match is None:
            return None
        local = _parse_local(match.group(1))
        if local is None:
            return None
        zone = match.group(2)
        if zone in ("Z", "z"):
            return local
        sign = 1 if zone[0] == "+" else -1
        return local - sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * 1_000_000_000
    local = _parse_local(value)
    if local is None:
        return None
    # Go parses these in the daemon's local zone.
    offset = -time.altzone if time.localtime().tm_isdst > 0 else -time.timezone
    return local - offset * 1_000_000_000


def _parse_local(text: str) -> Optional[int]:
    """A zone-less time as if in UTC, in nanoseconds."""
    for fmt, fractional in _LOCAL_FORMATS:
        candidate = text
        nanos = 0
        if fractional:
            head, dot, fraction = text.partition(".")
            if not dot or not fraction.isdigit():
                continue
            nanos = int((fraction + "000000000")[:9])
            candidate = head
            fmt = fmt[: -len(".%f")]
        try:
            parsed = time.strptime(candidate, fmt)
        except ValueError:
            continue
        return calendar.timegm(parsed) * 1_000_000_000 + nanos
    return None
