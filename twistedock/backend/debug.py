"""Profiling the running daemon: figures, CPU profiles, heap snapshots, stacks."""

import cProfile
import gc
import io
import marshal
import os
import pstats
import resource
import sys
import threading
import time
import traceback
import tracemalloc

from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ..errors import Conflict
from ..routers.debug import IDebugBackend

TOP_LINES = 60

#: What a snapshot leaves out: tracemalloc's own bookkeeping and imports.
_SNAPSHOT_FILTERS = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
)


def _snapshot():
    return tracemalloc.take_snapshot().filter_traces(_SNAPSHOT_FILTERS)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@implementer(IDebugBackend)
class DebugBackend:
    def __init__(self, reactor, started: float = None, stalls=None) -> None:
        self.reactor = reactor
        #: The L{stalls.StallMonitor}, if one runs: its figures in /debug/vars.
        self.stalls = stalls
        self.started = time.time() if started is None else started
        self._profiling = False
        #: The last heap profile's snapshot: what C{diff} compares with.
        self._last_snapshot = None

    def _thread(self, function, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    def variables(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "cmdline": list(sys.argv),
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.started, 3),
            "python": sys.version.split()[0],
            "memstats": {
                "rss_bytes": _rss_bytes(),
                "max_rss_bytes": usage.ru_maxrss * 1024,
                "gc_counts": list(gc.get_count()),
                "gc_objects": len(gc.get_objects()),
                "tracemalloc": tracemalloc.is_tracing(),
                "traced_bytes": tracemalloc.get_traced_memory()[0],
            },
            "cpu": {"user_seconds": usage.ru_utime, "system_seconds": usage.ru_stime},
            "threads": threading.active_count(),
            "open_fds": len(os.listdir("/proc/self/fd")),
            "reactor": {
                "type": type(self.reactor).__name__,
                "delayed_calls": len(self.reactor.getDelayedCalls()),
                "readers": len(self.reactor.getReaders()),
                "writers": len(self.reactor.getWriters()),
                **(self.stalls.figures() if self.stalls is not None else {}),
            },
        }

    def cmdline(self):
        return list(sys.argv)

    async def cpu_profile(self, seconds: int, binary: bool):
        if self._profiling:
            raise Conflict("a CPU profile is already being taken")
        self._profiling = True
        profile = cProfile.Profile()
        # The profile follows the reactor thread: where the daemon's work is.
        profile.enable()
        try:
            await deferLater(self.reactor, seconds, lambda: None)
        finally:
            profile.disable()
            self._profiling = False
        return await self._thread(_format_profile, profile, seconds, binary)

    async def heap_profile(self, seconds: int, diff: bool = False) -> str:
        # Tracing started by a request stays on, so that the next snapshot
        # shows what was allocated since.
        started_here = not tracemalloc.is_tracing()
        if started_here:
            tracemalloc.start()
        previous = self._last_snapshot
        first = await self._thread(_snapshot)
        self._last_snapshot = first
        if diff and previous is not None and not started_here:
            return await self._thread(_format_growth, previous, first, None)
        if seconds:
            await deferLater(self.reactor, seconds, lambda: None)
            second = await self._thread(_snapshot)
            self._last_snapshot = second
            return await self._thread(_format_growth, first, second, seconds)
        return await self._thread(_format_snapshot, first, started_here)

    def stacks(self) -> str:
        names = {t.ident: t.name for t in threading.enumerate()}
        out = []
        for ident, frame in sys._current_frames().items():
            out.append("thread %s (%s):" % (ident, names.get(ident, "?")))
            out.extend(line.rstrip("\n") for line in traceback.format_stack(frame))
            out.append("")
        out.append("reactor delayed calls: %d" % (len(self.reactor.getDelayedCalls()),))
        return "\n".join(out) + "\n"


def _format_profile(profile: cProfile.Profile, seconds: int, binary: bool):
    profile.create_stats()
    if binary:
        return marshal.dumps(profile.stats)
    stream = io.StringIO()
    stream.write("CPU profile of the reactor thread over %d s\n" % (seconds,))
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("cumulative").print_stats(TOP_LINES)
    return stream.getvalue()


def _format_snapshot(snapshot, started_here: bool) -> str:
    lines = []
    if started_here:
        lines.append(
            "tracemalloc was off and has been started: this shows only what was "
            "allocated since; ask again later for more"
        )
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    lines.append("live: %d bytes in %d blocks" % (total, sum(s.count for s in stats)))
    for stat in stats[:TOP_LINES]:
        lines.append(str(stat))
    return "\n".join(lines) + "\n"


def _format_growth(first, second, seconds) -> str:
    """The top growth lines from C{first} to C{second} (C{seconds} apart,
    or None: since the previous heap profile)."""
    total = sum(s.size_diff for s in second.compare_to(first, "filename"))
    if seconds is None:
        lines = ["growth since the previous heap profile: %+d bytes" % (total,)]
    else:
        lines = ["growth over %d s:" % (seconds,)]
    for stat in second.compare_to(first, "lineno")[:TOP_LINES]:
        lines.append(str(stat))
    return "\n".join(lines) + "\n"
