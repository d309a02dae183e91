"""
The OCI runtime: runc under conmon (L{driver}, L{conmon}), exit codes
(L{exits}), the attach socket (L{attach}), log files (L{logfiles}), CRIU
(L{criu}) and containers' root filesystems (L{rootfs}).
"""

from ...streams import STDERR, STDOUT
from .attach import ATTACH_WRITE_LIMIT, AttachConnection, AttachProtocol, attach
from .conmon import CTL_REOPEN_LOGS, CTL_RESIZE, ConmonProcess, conmon_argv
from .driver import CREATE_TIMEOUT, Runtime
from .exits import ExitWatcher
from .logfiles import (
    LogChunks,
    LogEntry,
    LogFollower,
    LogReader,
    compress_log,
    parse_line,
    parse_timestamp,
    rotate_log,
    rotated_logs,
)
from .processes import Collect, exit_status
from .runc import runc_error, runc_message

__all__ = [
    "ATTACH_WRITE_LIMIT",
    "CREATE_TIMEOUT",
    "CTL_REOPEN_LOGS",
    "CTL_RESIZE",
    "STDERR",
    "STDOUT",
    "AttachConnection",
    "AttachProtocol",
    "Collect",
    "ConmonProcess",
    "ExitWatcher",
    "LogChunks",
    "LogEntry",
    "LogFollower",
    "LogReader",
    "Runtime",
    "attach",
    "compress_log",
    "conmon_argv",
    "exit_status",
    "parse_line",
    "parse_timestamp",
    "rotate_log",
    "rotated_logs",
    "runc_error",
    "runc_message",
]
