"""
The daemon's loggers: twisted.logger's, with debug events emitted only when
the daemon runs with --debug (twistd's observers print every level).
"""

from twisted.logger import Logger as _Logger

_debug = False


def set_debug(enabled: bool) -> None:
    global _debug
    _debug = bool(enabled)


def debug_enabled() -> bool:
    return _debug


class Logger(_Logger):
    def debug(self, format=None, **kwargs) -> None:
        if _debug:
            super().debug(format, **kwargs)
