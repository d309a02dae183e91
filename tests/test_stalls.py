"""The reactor stall monitor: a late heartbeat is a stall, logged with the
reactor thread's stack sampled meanwhile."""

import threading

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from twistedock.backend.stalls import StallMonitor


class Time:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_late_heartbeat_is_a_stall_with_what_ran():
    reactor, now = Clock(), Time()
    monitor = StallMonitor(reactor, threshold=0.010, interval=0.005, clock=now)
    monitor._reactor_thread = threading.get_ident()
    monitor._heartbeat.start(monitor.interval, now=False)
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        now.now += 0.005
        reactor.advance(0.005)  # on time
        assert monitor.stalls == 0
        now.now += 0.050  # the reactor busy: the watchdog samples this thread
        monitor.take_sample()
        monitor.take_sample()
        reactor.advance(0.050)
    finally:
        globalLogPublisher.removeObserver(events.append)
        monitor._heartbeat.stop()
    assert monitor.stalls == 1
    assert abs(monitor.longest - 0.045) < 1e-9
    stall = [e for e in events if "stall_ms" in e]
    assert len(stall) == 1 and abs(stall[0]["stall_ms"] - 45) < 1e-6
    assert stall[0]["count"] == 2  # (two lines of this test: two stacks)
    assert "test_a_late_heartbeat_is_a_stall_with_what_ran" in stall[0]["where"]
    assert monitor.figures()["stalls"] == 1


def test_no_sample_while_the_heartbeat_is_on_time():
    reactor, now = Clock(), Time()
    monitor = StallMonitor(reactor, clock=now)
    monitor._reactor_thread = threading.get_ident()
    monitor._beat = now.now
    now.now += 0.012
    monitor.take_sample()
    assert not monitor._samples


def test_the_watchdog_starts_and_stops():
    reactor = Clock()
    monitor = StallMonitor(reactor, sample=0.001)
    monitor.start()
    assert monitor._watchdog.is_alive()
    watchdog = monitor._watchdog
    monitor.stop()
    assert not watchdog.is_alive() and not monitor._heartbeat.running
