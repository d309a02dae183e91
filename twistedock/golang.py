"""
Go's formats, once: the answers dockerd gives are written by Go's standard
library, so wherever a client sees a time, a duration, a path, a quoted name,
a file mode or an architecture, it is formatted here and nowhere else.
"""

import calendar
import json
import platform
import posixpath
import re
import stat
import time
from decimal import Decimal
from typing import Any, Optional, Tuple

# -- times -------------------------------------------------------------------

#: Go's zero time.Time as JSON carries it.
ZERO_TIME = "0001-01-01T00:00:00Z"

_NS = 1_000_000_000


def rfc3339_nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    seconds, nanos = divmod(ns, _NS)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos:
        text += ("." + "%09d" % nanos).rstrip("0")
    return text + "Z"


def rfc3339_nano_fixed(ns: int) -> str:
    """moby's RFC3339NanoFixed in UTC: always nine digits of fraction."""
    seconds, nanos = divmod(ns, _NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%09dZ" % nanos


def json_time(ns: Optional[int]) -> str:
    """A time.Time in JSON: unset (None or 0) is Go's zero time."""
    return rfc3339_nano(ns) if ns else ZERO_TIME


def seconds_to_ns(seconds: float) -> int:
    """A float of seconds since the epoch as whole nanoseconds."""
    whole = int(seconds)
    return whole * _NS + int(round((seconds - whole) * 1e9))


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str) -> Optional[int]:
    """Nanoseconds since the epoch of an RFC 3339 time; None if it is not one."""
    match = _RFC3339.match(text or "")
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    fraction = match.group(7) or ""
    nanos = int((fraction + "000000000")[:9]) if fraction else 0
    zone = match.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * _NS + nanos


# -- durations ---------------------------------------------------------------

_DURATION_UNITS = {
    "ns": Decimal(1),
    "us": Decimal(1_000),
    "\u00b5s": Decimal(1_000),
    "\u03bcs": Decimal(1_000),
    "ms": Decimal(1_000_000),
    "s": Decimal(1_000_000_000),
    "m": Decimal(60_000_000_000),
    "h": Decimal(3_600_000_000_000),
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds; ValueError if it is not one."""
    body = text
    sign = 1
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        raise ValueError('time: invalid duration "%s"' % (text,))
    total = Decimal(0)
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            if re.match(r"(\d+(?:\.\d*)?|\.\d+)$", body[pos:]):
                raise ValueError('time: missing unit in duration "%s"' % (text,))
            raise ValueError('time: invalid duration "%s"' % (text,))
        total += Decimal(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * int(total)


def format_duration(ns: int) -> str:
    """Go's time.Duration.String: C{1.5s}, C{1m30s}, C{1h0m0s}, C{250ms}."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)

    def fraction(value: int, digits: int) -> str:
        whole, part = divmod(value, 10**digits)
        text = ("%0*d" % (digits, part)).rstrip("0")
        return str(whole) + ("." + text if text else "")

    if u < _NS:
        if u < 1_000:
            return sign + "%dns" % u
        if u < 1_000_000:
            return sign + fraction(u, 3) + "\u00b5s"
        return sign + fraction(u, 6) + "ms"
    seconds, nanos = divmod(u, _NS)
    text = fraction((seconds % 60) * _NS + nanos, 9) + "s"
    minutes = seconds // 60
    if minutes:
        text = "%dm" % (minutes % 60) + text
        if minutes >= 60:
            text = "%dh" % (minutes // 60) + text
    return sign + text


def human_duration(seconds: float) -> str:
    """docker/go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return "%d seconds" % s
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return "%d minutes" % minutes
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return "%d hours" % hours
    if hours < 24 * 7 * 2:
        return "%d days" % (hours // 24)
    if hours < 24 * 30 * 2:
        return "%d weeks" % (hours // 24 // 7)
    if hours < 24 * 365 * 2:
        return "%d months" % (hours // 24 // 30)
    return "%d years" % (int(seconds / 3600) // 24 // 365)


# -- paths -------------------------------------------------------------------


def clean(path: str) -> str:
    """Go's path.Clean (and filepath.Clean on Linux)."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        # posixpath keeps a leading "//", Go does not.
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def base(path: str) -> str:
    """Go's filepath.Base."""
    if not path:
        return "."
    path = path.rstrip("/")
    if not path:
        return "/"
    return path.rsplit("/", 1)[-1]


def split(path: str) -> Tuple[str, str]:
    """Go's filepath.Split: everything up to the last slash, and the rest."""
    i = path.rfind("/")
    return path[: i + 1], path[i + 1 :]


class BadPattern(Exception):
    """path.ErrBadPattern: "syntax error in pattern"."""

    def __init__(self) -> None:
        super().__init__("syntax error in pattern")


def path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: shell globs whose C{*} and C{?} stop at C{/};
    raises L{BadPattern} for a malformed pattern."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            return "/" not in name
        rest, ok = _match_chunk(chunk, name)
        if ok and (rest == "" or pattern):
            name = rest
            continue
        if star:
            found = False
            i = 0
            while i < len(name) and name[i] != "/":
                rest, ok = _match_chunk(chunk, name[i + 1 :])
                if ok:
                    if not pattern and rest:
                        i += 1
                        continue
                    name = rest
                    found = True
                    break
                i += 1
            if found:
                continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return name == ""


def _scan_chunk(pattern: str) -> Tuple[bool, str, str]:
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            in_range = True
        elif c == "]":
            in_range = False
        elif c == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _match_chunk(chunk: str, s: str) -> Tuple[str, bool]:
    """Go's matchChunk: (the rest of C{s}, matched); once the match failed
    the chunk is still read through, to check its syntax."""
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = False
            if chunk.startswith("^"):
                negated = True
                chunk = chunk[1:]
            matched = False
            ranges = 0
            while True:
                if chunk.startswith("]") and ranges > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if r and lo <= r <= hi:
                    matched = True
                ranges += 1
            if matched == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPattern()
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def _get_esc(chunk: str) -> Tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise BadPattern()
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPattern()
    rest = chunk[1:]
    if not rest:
        raise BadPattern()
    return chunk[0], rest


# -- quoting -----------------------------------------------------------------

_SIMPLE_QUOTES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
    "\\": "\\\\", '"': '\\"',
}


def quote(text: str) -> str:
    """Go's strconv.Quote (and fmt's %q): printable characters as they are,
    the rest escaped."""
    out = ['"']
    for c in text:
        simple = _SIMPLE_QUOTES.get(c)
        if simple is not None:
            out.append(simple)
        elif c.isprintable() or (c == " "):
            out.append(c)
        elif 0xDC80 <= ord(c) <= 0xDCFF:
            # A byte that was not UTF-8 (surrogateescape): Go shows it as \xNN.
            out.append("\\x%02x" % (ord(c) - 0xDC00))
        elif ord(c) < 0x80:
            out.append("\\x%02x" % ord(c))
        elif ord(c) < 0x10000:
            out.append("\\u%04x" % ord(c))
        else:
            out.append("\\U%08x" % ord(c))
    out.append('"')
    return "".join(out)


_GO_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)', re.S)
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def unquote_body(text: str) -> str:
    """Undo Go's C{strconv.Quote} escaping of a string's inside (what logrus
    applies to C{msg}), without the surrounding quotes."""

    def one(match) -> str:
        code = match.group(1)
        if code[0] in "xuU" and len(code) > 1:
            return chr(int(code[1:], 16))
        if len(code) == 3 and code.isdigit():
            return chr(int(code, 8))
        return _SIMPLE_ESCAPES.get(code, code)

    return _GO_ESCAPE.sub(one, text)


# -- numbers -----------------------------------------------------------------

_ATOI = re.compile(r"^[+-]?[0-9]+$")


def atoi(text: str) -> Optional[int]:
    """Go's strconv.Atoi on 64 bits; None where Go returns an error."""
    if not _ATOI.match(text):
        return None
    value = int(text)
    if not -(2**63) <= value < 2**63:
        return None
    return value


# -- JSON --------------------------------------------------------------------


def json_marshal(obj: Any) -> bytes:
    """Go's json.Marshal: compact, HTML characters escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return text.encode("utf-8")


# -- files -------------------------------------------------------------------

MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20


def file_mode(st_mode: int) -> int:
    """Go's os.FileMode of a stat's mode, as JSON carries it."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    if kind == stat.S_IFDIR:
        mode |= MODE_DIR
    elif kind == stat.S_IFLNK:
        mode |= MODE_SYMLINK
    elif kind == stat.S_IFBLK:
        mode |= MODE_DEVICE
    elif kind == stat.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif kind == stat.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif kind == stat.S_IFSOCK:
        mode |= MODE_SOCKET
    if st_mode & stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


# -- the platform ------------------------------------------------------------

#: uname's machine names as Go's GOARCH names them.
GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64",
    "mips64el": "mips64le",
}


def goarch(machine: Optional[str] = None) -> str:
    """runtime.GOARCH of this machine (or of uname's C{machine})."""
    if machine is None:
        machine = platform.machine()
    return GOARCH.get(machine, machine)


def int64(value: int) -> int:
    """C{value} as Go's int64 arithmetic leaves it: wrapped on overflow
    (dockerd's default swap, twice the memory, wraps for huge limits)."""
    return (value + 2**63) % 2**64 - 2**63
