"""
HostConfig.LogConfig's options as dockerd checks them at create
(logger.ValidateLogOpts): the delivery mode, then the driver's own keys
(those every driver takes, the mode and the log cache's, set aside); the
daemon's default log config merged in; the rotation they ask for, checked
at start as the json-file driver checks it.
"""

import re
from typing import Mapping, Optional

import attr

from ...errors import InvalidParameter

#: Options every driver takes (logger's builtInLogOpts, with the cache's).
BUILTIN_OPTIONS = frozenset((
    "mode", "max-buffer-size", "cache-disabled", "cache-max-size", "cache-max-file", "cache-compress",
))  # fmt: skip

#: The keys each driver's validator knows, and its words for another.
DRIVER_OPTIONS = {
    "json-file": (
        frozenset(("max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag")),
        "unknown log opt '%s' for json-file log driver",
    ),
    "local": (frozenset(("max-file", "max-size", "compress")), "unknown log opt '%s' for log driver local"),
}


def validate_log_options(driver: str, options: Optional[Mapping[str, str]]) -> None:
    """Raise dockerd's L{InvalidParameter} for options the driver refuses."""
    if driver == "none":
        return
    options = options or {}
    mode = options.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise InvalidParameter("logger: logging mode not supported: %s" % (mode,))
    if "max-buffer-size" in options and mode != "non-blocking":
        raise InvalidParameter("logger: max-buffer-size option is only supported with 'mode=non-blocking'")
    known = DRIVER_OPTIONS.get(driver)
    if known is None:
        return
    keys, message = known
    # (Go's map order picks one of several; the first by name here.)
    for key in sorted(options):
        if key not in BUILTIN_OPTIONS and key not in keys:
            raise InvalidParameter(message % (key,))


@attr.s(frozen=True, auto_attribs=True)
class Rotation:
    """How a container's log file is rotated, as dockerd's json-file
    driver does it (loggerutils.LogFile): once the file reaches C{max_size}
    bytes it becomes C{.1} (C{.1} becoming C{.2}, up to C{max_files - 1},
    gzipped with C{compress}); with one file it is emptied instead."""

    max_size: int
    max_files: int = 1
    compress: bool = False


class LogDriverError(ValueError):
    """A log option the driver cannot start with (dockerd says it at start,
    as C{failed to initialize logging driver: ...})."""


_HUMAN_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def from_human_size(text: str) -> int:
    """go-units FromHumanSize: C{10m} is 10,000,000 bytes."""
    match = _HUMAN_SIZE.match(text)
    if match is None:
        raise LogDriverError("invalid size: '%s'" % (text,))
    try:
        number = float(match.group(1))
    except ValueError:
        raise LogDriverError("invalid size: '%s'" % (text,))
    return int(number * _DECIMAL[(match.group(2) or "").lower()])


def _atoi(text: str) -> int:
    if not re.match(r"^[+-]?\d+$", text):
        raise LogDriverError('strconv.Atoi: parsing "%s": invalid syntax' % (text,))
    return int(text)


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise LogDriverError('strconv.ParseBool: parsing "%s": invalid syntax' % (text,))


#: The local driver's rotation when its options do not say (20 MiB, 5
#: files, compressed).
LOCAL_DEFAULTS = {"max-size": "20971520", "max-file": "5", "compress": "true"}


def log_rotation(driver: str, options: Optional[Mapping[str, str]]) -> Optional[Rotation]:
    """The rotation C{max-size}, C{max-file} and C{compress} ask for (None:
    the file grows without bound), checked as jsonfilelog.New checks them;
    L{LogDriverError} with dockerd's words otherwise."""
    if driver == "none":
        return None
    options = dict(options or {})
    if driver == "local":
        options = dict(LOCAL_DEFAULTS, **options)
    max_size = -1
    if "max-size" in options:
        max_size = from_human_size(options["max-size"])
        if max_size <= 0:
            raise LogDriverError("max-size must be a positive number")
    max_files = 1
    if "max-file" in options:
        max_files = _atoi(options["max-file"])
        if max_files < 1:
            raise LogDriverError("max-file cannot be less than 1")
    compress = False
    if "compress" in options:
        compress = _parse_bool(options["compress"])
        if compress and (max_files == 1 or max_size == -1):
            raise LogDriverError("compress cannot be true when max-file is less than 2 or max-size is not set")
    if max_size == -1:
        return None
    return Rotation(max_size, max_files, compress)


def merge_log_config(log_config: Optional[dict], default: Mapping) -> dict:
    """dockerd's mergeAndVerifyLogConfig: a container naming no driver gets
    the daemon's; one naming the daemon's driver gets the daemon's options
    it does not set itself.  C{default} is C{{"Type": ..., "Config": ...}}."""
    log_config = log_config or {}
    driver = log_config.get("Type") or default["Type"]
    options = dict(log_config.get("Config") or {})
    if driver == default["Type"]:
        for key, value in (default.get("Config") or {}).items():
            options.setdefault(key, value)
    return {"Type": driver, "Config": options}
