"""
HostConfig.LogConfig's options as dockerd checks them at create
(logger.ValidateLogOpts): the delivery mode, then the driver's own keys
(those every driver takes, the mode and the log cache's, set aside).
"""

from typing import Mapping, Optional

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
