"""
twistedock-migrate's page relay: the two hijacked sessions (the source's
pages, the target's page source) joined by L{migrate._pump}.  A lazy
migration restores only while both are open, and looks right before the
restore, without waiting: a connection whose end was already read must
stop its pump as it starts.
"""

from twisted.internet import defer

from twistedock import migrate
from twistedock.client.streams import BodyStream, ChunkQueue


class Session:
    """A hijacked session's side the pump uses: its output, write, close."""

    def __init__(self) -> None:
        self.body = BodyStream(None, ChunkQueue())
        self.written = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True
        self.body.close()


def pumps(source: Session, target: Session):
    stopped, counted = [], [0, 0]
    relay = defer.gatherResults([
        defer.ensureDeferred(migrate._pump(source, target, counted, 0, stopped)),
        defer.ensureDeferred(migrate._pump(target, source, counted, 1, stopped)),
    ], consumeErrors=True)
    return relay, stopped, counted


def test_a_page_connection_already_ended_stops_the_relay_as_it_starts():
    source, target = Session(), Session()
    source.body.queue.put(b"pages")
    source.body.queue.end()
    relay, stopped, counted = pumps(source, target)
    assert stopped and relay.called
    assert target.written == [b"pages"] and counted == [5, 0]
    assert source.closed and target.closed


def test_open_page_connections_relay_until_one_ends():
    source, target = Session(), Session()
    relay, stopped, counted = pumps(source, target)
    assert not stopped and not relay.called
    target.body.queue.put(b"ask")
    source.body.queue.put(b"answer")
    assert source.written == [b"ask"] and target.written == [b"answer"]
    target.body.queue.end()
    assert stopped == [1, 0] and relay.called
    assert counted == [6, 3]


def test_the_downtime_the_daemons_measured_and_the_tool_s_span():
    """From the checkpoint's request (10.0) to the restore's answer (10.5):
    the span; less what the daemons say was before the freeze and after
    the resume, when both say; kept inside the span whatever they say."""
    assert migrate._downtime(10.0, 10.2, None, 10.5, 0.01) == {"Downtime": 0.5, "Span": 0.5, "Measured": False}
    assert migrate._downtime(10.0, 10.2, 0.15, 10.5, None)["Measured"] is False
    figures = migrate._downtime(10.0, 10.2, 0.15, 10.5, 0.05)
    assert figures["Measured"] and abs(figures["Downtime"] - 0.4) < 1e-9 and figures["Span"] == 0.5
    # (A daemon's figures beyond the tool's own times are cut to them.)
    assert migrate._downtime(10.0, 10.2, 9.0, 10.5, 9.0) == {"Downtime": 0.0, "Span": 0.5, "Measured": True}
    assert migrate._downtime(10.0, 10.2, 9.0, 10.5, 0.0)["Downtime"] == 0.5
    assert "as the daemons measured it" in migrate._downtime_text(figures)
    assert migrate._downtime_text(migrate._downtime(10.0, 10.2, None, 10.5, None)).startswith("downtime: 500 ms from")
