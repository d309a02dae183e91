"""
The health state machine of moby's daemon/health.go, pure and on the
standard library only: the daemon applies probe results to
C{State.Health} with it, and the probe runner (L{proberunner}, a process
of its own that imports nothing else of twistedock) follows the same
status to choose between the start interval and the interval.
"""

from typing import List, Optional, Tuple

_NS = 1_000_000_000

#: dockerd's defaults (daemon/health.go).
DEFAULT_INTERVAL = 30 * _NS
DEFAULT_TIMEOUT = 30 * _NS
DEFAULT_START_PERIOD = 0
DEFAULT_RETRIES = 3
#: The longest output kept of one probe; more is dropped, "..." marks it.
MAX_OUTPUT = 4096
#: How many results State.Health.Log keeps.
MAX_LOG = 5

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
#: The C{health} filter's value for a container without health state.
NO_HEALTHCHECK = "none"
FILTER_VALUES = (STARTING, HEALTHY, UNHEALTHY, NO_HEALTHCHECK)


def new_health() -> dict:
    """State.Health as inspect shows it (and as the record keeps it)."""
    return {"Status": STARTING, "FailingStreak": 0, "Log": []}


def status_of(health: Optional[dict]) -> str:
    """dockerd's Health.Status(): none without health state; an unset
    status is unhealthy."""
    if health is None:
        return NO_HEALTHCHECK
    return health.get("Status") or UNHEALTHY


def apply_result(
    health: dict, result: dict, *, retries: int, start_period: int, started_at: int, start: int
) -> Tuple[str, str]:
    """dockerd's handleProbeResult on C{health} (changed in place):
    C{result} joins the log (five kept); a success is healthy, a failure
    adds to the streak (unless it began within the start period of a
    container never yet healthy) and C{retries} of them are unhealthy.
    The status before and after."""
    old = status_of(health)
    entries = list(health.get("Log") or ())
    entries.append(result)
    health["Log"] = entries[-MAX_LOG:]
    if result["ExitCode"] == 0:
        health["FailingStreak"] = 0
        health["Status"] = HEALTHY
    else:
        counts = True
        if old == STARTING and start - started_at < start_period:
            counts = False
        if counts:
            health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
            if health["FailingStreak"] >= (retries if retries > 0 else DEFAULT_RETRIES):
                health["Status"] = UNHEALTHY
    return old, status_of(health)


class LimitedOutput:
    """A probe's stdout and stderr together, up to L{MAX_OUTPUT} bytes."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        self.limit = limit
        self.chunks: List[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, data: bytes) -> None:
        keep = min(self.limit - self.size, len(data))
        if keep > 0:
            self.chunks.append(data[:keep])
            self.size += keep
        if keep < len(data):
            self.truncated = True

    def text(self) -> str:
        # Go's JSON encoder replaces invalid UTF-8.
        out = b"".join(self.chunks).decode("utf-8", "replace")
        return out + "..." if self.truncated else out
