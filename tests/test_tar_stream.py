"""Tars made in a thread and written to a request at the client's pace
(twistedock.tar.stream)."""


import os
import threading
import time

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError
from twisted.internet.task import deferLater

from twistedock.tar.stream import TarStream
from twistedock.server.httputils import Flow

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="device nodes, owners and trusted xattrs need root")

MTIME_NS = 1_700_000_000_500_000_000



# -- streaming with backpressure -----------------------------------------------------


class Consumer:
    def __init__(self) -> None:
        self.data = []
        self.aborted = False
        outer = self

        class Transport:
            def abortConnection(self):
                outer.aborted = True

        class Channel:
            transport = Transport()

        self.channel = Channel()

    def write(self, data) -> None:
        self.data.append(data)


async def wait_until(predicate, timeout=5.0):
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await deferLater(reactor, 0.01, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_paused_client_holds_the_producer_back():
    from twisted.internet import reactor

    produced = []
    cleaned = []

    def produce(write):
        for i in range(50):
            write(bytes([i]) * 1000)
            produced.append(i)

    flow = Flow()
    flow.pauseProducing()
    consumer = Consumer()
    stream = TarStream(reactor, produce, lambda: cleaned.append(True), chunk_size=1000, window=3)
    d = stream.write_to(consumer, flow)
    await deferLater(reactor, 0.3, lambda: None)
    # At most the window waits (plus the chunk being offered): memory stays bounded.
    assert len(produced) <= 4
    assert consumer.data == []
    flow.resumeProducing()
    await d
    assert b"".join(consumer.data) == b"".join(bytes([i]) * 1000 for i in range(50))
    assert cleaned == [True]
    assert flow.listeners == []


@pytest_twisted.ensureDeferred
async def test_a_client_going_away_stops_the_thread():
    from twisted.internet import reactor

    cleaned = []
    ended = threading.Event()

    def produce(write):
        try:
            while True:
                write(b"x" * 1000)
        finally:
            ended.set()

    for leave in ("cancel", "stop"):
        cleaned.clear()
        ended.clear()
        flow = Flow()
        flow.pauseProducing()
        stream = TarStream(reactor, produce, lambda: cleaned.append(True), chunk_size=1000, window=2)
        d = stream.write_to(Consumer(), flow)
        await deferLater(reactor, 0.1, lambda: None)
        if leave == "cancel":
            d.cancel()
        else:
            flow.stopProducing()
        with pytest.raises(CancelledError):
            await d
        await wait_until(lambda: bool(cleaned))
        assert ended.is_set()


@pytest_twisted.ensureDeferred
async def test_a_failing_producer_cuts_the_connection():
    from twisted.internet import reactor

    def produce(write):
        write(b"x" * 10)
        raise OSError(5, "Input/output error")

    consumer = Consumer()
    cleaned = []
    stream = TarStream(reactor, produce, lambda: cleaned.append(True), chunk_size=4)
    with pytest.raises(OSError):
        await stream.write_to(consumer, Flow())
    assert consumer.aborted
    assert cleaned == [True]
    # A stream never written still releases what it holds.
    unused = TarStream(reactor, produce, lambda: cleaned.append("unused"))
    unused.close()
    assert cleaned == [True, "unused"]
