"""Signal names and numbers as dockerd parses them (StopSignal, kill)."""

from ...errors import InvalidParameter
from ... import golang

_SIGNALS = {
    "ABRT": 6, "ALRM": 14, "BUS": 7, "CHLD": 17, "CLD": 17, "CONT": 18, "FPE": 8,
    "HUP": 1, "ILL": 4, "INT": 2, "IO": 29, "IOT": 6, "KILL": 9, "PIPE": 13,
    "POLL": 29, "PROF": 27, "PWR": 30, "QUIT": 3, "SEGV": 11, "STKFLT": 16,
    "STOP": 19, "SYS": 31, "TERM": 15, "TRAP": 5, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "USR1": 10, "USR2": 12, "VTALRM": 26, "WINCH": 28,
    "XCPU": 24, "XFSZ": 25, "RTMIN": 34, "RTMAX": 64, "UNUSED": 31,
}
_SIGNALS.update({"RTMIN+%d" % i: 34 + i for i in range(1, 16)})
_SIGNALS.update({"RTMAX-%d" % i: 64 - i for i in range(1, 15)})


def parse_signal(raw) -> int:
    """A signal number from a number, C{KILL} or C{SIGKILL} (dockerd's ParseSignal)."""
    raw = str(raw)
    number = golang.atoi(raw)
    if number is not None:
        if number == 0:
            raise InvalidParameter("Invalid signal: %s" % raw)
        return number
    name = raw.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name not in _SIGNALS:
        raise InvalidParameter("Invalid signal: %s" % raw)
    return _SIGNALS[name]
