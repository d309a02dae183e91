"""
A hijacked API connection (a L{HijackedStream}) joined to a loopback TCP
connection with CRIU: the bytes pass both ways unchanged, each side paused
while the other falls behind.  The remote side's bytes can be watched
(C{watch}); how the joint ends is told through C{remote_ended} (the API
connection ended or was cut) and C{ended} (the loopback connection
closed).
"""

from typing import Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from ...client.hijack import no_delay


@implementer(IHalfCloseableProtocol)
class Joint(Protocol):
    """The daemon's end of the loopback connection with CRIU."""

    def __init__(self, stream, watch: Optional[Callable[[bytes], None]] = None) -> None:
        self.stream = stream
        self.watch = watch
        #: Fires (with None) when the API connection's input ends or is cut.
        self.remote_ended: Deferred = Deferred()
        #: Fires (with None) when the loopback connection is closed.
        self.ended: Deferred = Deferred()
        self._closed = False

    def connectionMade(self) -> None:
        transport = self.transport
        no_delay(transport)
        no_delay(getattr(self.stream, "transport", None))
        if self._closed:
            # Closed before CRIU connected: CRIU sees its peer gone at once.
            transport.loseConnection()
            return
        self.stream.add_source(transport.pauseProducing, transport.resumeProducing)
        self.stream.read_input(self._from_remote, self._remote_end)
        self.stream.closed.addCallback(lambda _: self._remote_end())

    def _from_remote(self, data: bytes) -> None:
        if self.watch is not None:
            self.watch(data)
        if not self._closed:
            self.transport.write(data)

    def _remote_end(self) -> None:
        if not self.remote_ended.called:
            self.remote_ended.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.stream.write_raw(data)

    def readConnectionLost(self) -> None:
        # CRIU is done talking: the API connection is ended once what is
        # queued for it is written.
        self.stream.close()

    def writeConnectionLost(self) -> None:
        pass

    def half_close(self) -> None:
        """No more bytes to CRIU (it sees the end of its client)."""
        if not self._closed:
            self.transport.loseWriteConnection()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        self._closed = True
        self.stream.close()
        if not self.ended.called:
            self.ended.callback(None)



def joint_factory(joint: Joint) -> Factory:
    return Factory.forProtocol(lambda: joint)
