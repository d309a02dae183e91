"""
Taking over an HTTP connection, as dockerd's attach and exec do: the status
line and headers are written by hand (101 UPGRADED when the client asked for
an upgrade, 200 otherwise) and the socket then carries raw bytes both ways.
This is the one place that knows how twisted.web's connection is taken over
(autobahn's WebSocketResource does the same); attach and exec share it.
"""

from typing import Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import implementer

from ..streams import RAW, frame
from .httputils import APIRequest

_REASONS = {400: "Bad Request", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error",
            501: "Not Implemented", 503: "Service Unavailable"}


@implementer(IHalfCloseableProtocol)
class HijackedStream(Protocol):
    """A taken-over connection: client bytes in (stdin), container output out."""

    def __init__(self) -> None:
        #: Frame output with the stdcopy header (containers without a TTY).
        self.framed = False
        self.on_input: Optional[Callable[[bytes], None]] = None
        self.on_input_closed: Optional[Callable[[], None]] = None
        self.closed = Deferred()
        self._buffered = []
        self._input_ended = False
        self._lost = False

    # -- from the client ------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.on_input is None:
            self._buffered.append(data)
        else:
            self.on_input(data)

    def readConnectionLost(self) -> None:
        self._input_ended = True
        if self.on_input_closed is not None:
            self.on_input_closed()

    def writeConnectionLost(self) -> None:
        self.connectionLost(Failure(ConnectionError("write side closed")))

    def connectionLost(self, reason=None) -> None:
        if self._lost:
            return
        self._lost = True
        if not self._input_ended:
            self._input_ended = True
            if self.on_input_closed is not None:
                self.on_input_closed()
        self.closed.callback(None)

    def read_input(self, on_input, on_input_closed) -> None:
        """Deliver client bytes to C{on_input}, and their end to C{on_input_closed}."""
        self.on_input = on_input
        self.on_input_closed = on_input_closed
        buffered, self._buffered = self._buffered, []
        for data in buffered:
            on_input(data)
        if self._input_ended:
            on_input_closed()

    # -- to the client --------------------------------------------------

    @property
    def lost(self) -> bool:
        return self._lost

    def write(self, stream: int, data: bytes) -> None:
        if self._lost:
            return
        self.transport.write(frame(stream, data) if self.framed else data)

    def write_raw(self, data: bytes) -> None:
        if not self._lost:
            self.transport.write(data)

    def close(self) -> None:
        if not self._lost:
            self.transport.loseConnection()


def _take_over(req: APIRequest, protocol: Protocol):
    request = req.request
    req.hijacked = True
    channel = request.channel
    transport = channel.transport
    channel.setTimeout(None)
    # The HTTP channel stops reading while it handles a request, and may be
    # the transport's producer: undo both, then hand the transport over.
    channel.transport = None
    try:
        transport.unregisterProducer()
    except Exception:
        pass
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    transport.resumeProducing()
    return transport


def hijack(req: APIRequest, content_type: str) -> HijackedStream:
    """Take over C{req}'s connection and write the header block."""
    request = req.request
    upgrade = request.requestHeaders.hasHeader(b"upgrade")
    if upgrade:
        lines = [
            b"HTTP/1.1 101 UPGRADED",
            b"Content-Type: " + content_type.encode("ascii"),
            b"Connection: Upgrade",
            b"Upgrade: tcp",
        ]
    else:
        lines = [b"HTTP/1.1 200 OK", b"Content-Type: " + RAW.encode("ascii")]
    # The headers the middleware set (Api-Version, Server, ...), as dockerd copies them.
    for name, values in request.responseHeaders.getAllRawHeaders():
        if name.lower() in (b"content-type", b"content-length", b"transfer-encoding", b"date"):
            continue
        for value in values:
            lines.append(name + b": " + value)
    stream = HijackedStream()
    transport = _take_over(req, stream)
    transport.write(b"\r\n".join(lines) + b"\r\n\r\n")
    return stream


def hijack_error(req: APIRequest, status: int, message: str) -> None:
    """Answer an attach that failed before streaming, as dockerd does: a bare
    status line, the raw-stream type, the message, and the connection closed."""
    stream = HijackedStream()
    transport = _take_over(req, stream)
    transport.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n\r\n%s\r\n"
        % (status, _REASONS.get(status, "Error").encode(), RAW.encode(), message.encode("utf-8"))
    )
    transport.loseConnection()
