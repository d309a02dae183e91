"""
L{StallMonitor} (with --debug): reactor iterations that kept every other
request waiting, and what the reactor thread was running meanwhile.

A heartbeat on the reactor (every C{interval}) records when it last ran; a
watchdog thread wakes every C{sample} seconds, and while the heartbeat is
late by more than C{threshold} it samples the reactor thread's stack. When
the heartbeat runs again, the stall is logged with its length and the stack
seen most often during it (what held the reactor, or the GIL, longest).
Samples need the GIL: code holding it without a pause (a C call such as
C{posix_spawn}) shows as the stack seen just after it. The other threads'
innermost frames are counted too, those not waiting for work: a reactor
found in its poll was waiting for the GIL one of them held.
"""

import collections
import sys
import threading
import time
import traceback
from typing import Callable, Optional

from twisted.internet.task import LoopingCall

from ..logs import Logger

log = Logger()

#: Frames of a stall's stack kept in the log (the innermost ones).
FRAMES = 8


def _stack(frame) -> tuple:
    # (Without the source lines: linecache would keep every file sampled.)
    frames = traceback.StackSummary.extract(traceback.walk_stack(frame), limit=FRAMES, lookup_lines=False)
    return tuple("%s:%d %s" % (f.filename, f.lineno, f.name) for f in reversed(frames))


#: Functions in which a thread waits (for work, a lock or a timeout).
_WAITING = frozenset(("wait", "get", "_wait_for_tstate_lock", "select", "poll", "accept", "recv", "sleep"))


def _busy_site(frame) -> Optional[str]:
    """The innermost frame of a thread that is not waiting, else None."""
    if frame.f_code.co_name in _WAITING:
        return None
    return "%s:%d %s" % (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


class StallMonitor:
    def __init__(self, reactor, threshold: float = 0.010, interval: float = 0.005, sample: float = 0.002,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reactor = reactor
        self.threshold = threshold
        self.interval = interval
        self.sample = sample
        self.clock = clock
        #: Stalls seen, the longest (seconds), their total (seconds).
        self.stalls = 0
        self.longest = 0.0
        self.total = 0.0
        self._beat = clock()
        self._samples: collections.Counter = collections.Counter()
        self._others: collections.Counter = collections.Counter()
        self._reactor_thread: Optional[int] = None
        self._stop = threading.Event()
        self._watchdog: Optional[threading.Thread] = None
        self._heartbeat = LoopingCall(self.beat)
        self._heartbeat.clock = reactor

    def start(self) -> None:
        """Start on the reactor thread (its identity is what is sampled)."""
        self._reactor_thread = threading.get_ident()
        self._beat = self.clock()
        self._heartbeat.start(self.interval, now=False)
        self._stop.clear()
        self._watchdog = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        if self._heartbeat.running:
            self._heartbeat.stop()
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(1)
            self._watchdog = None

    def beat(self) -> None:
        now = self.clock()
        late = now - self._beat - self.interval
        self._beat = now
        if late > self.threshold:
            self._report(late)

    def _report(self, late: float) -> None:
        samples, self._samples = self._samples, collections.Counter()
        others, self._others = self._others, collections.Counter()
        self.stalls += 1
        self.total += late
        self.longest = max(self.longest, late)
        if samples:
            stack, seen = samples.most_common(1)[0]
            where = "\n    ".join(stack)
        else:
            seen, where = 0, "(not sampled: the GIL was held throughout)"
        busy = "; ".join("%s (%d)" % (site, n) for site, n in others.most_common(3)) or "none"
        log.warn("reactor stalled {ms:.1f} ms ({seen} of {count} samples at):\n    {where}\n"
                 "  other threads busy at: {busy}",
                 ms=late * 1000, seen=seen, count=sum(samples.values()), where=where, busy=busy,
                 stall_ms=late * 1000)

    def take_sample(self) -> None:
        """Called by the watchdog: the reactor's stack when its heartbeat is late."""
        if self.clock() - self._beat - self.interval <= self.threshold:
            return
        frames = sys._current_frames()
        frame = frames.pop(self._reactor_thread, None)
        if frame is not None:
            self._samples[_stack(frame)] += 1
        frames.pop(threading.get_ident(), None)
        for other in frames.values():
            site = _busy_site(other)
            if site is not None:
                self._others[site] += 1

    def _watch(self) -> None:
        while not self._stop.wait(self.sample):
            self.take_sample()

    def figures(self) -> dict:
        return {"stalls": self.stalls, "stall_longest_ms": round(self.longest * 1000, 1),
                "stall_total_ms": round(self.total * 1000, 1), "stall_threshold_ms": self.threshold * 1000}
