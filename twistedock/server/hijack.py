"""
Taking over an HTTP connection, as dockerd's attach and exec do: the status
line and headers are written by hand (101 UPGRADED when the client asked for
an upgrade, 200 otherwise) and the socket then carries raw bytes both ways.
This is the one place that knows how twisted.web's connection is taken over
(autobahn's WebSocketResource does the same); attach and exec share it.

A hijacking handler returns a L{Takeover} resource (L{hijacked}, L{refused},
L{websocket_attached}): Klein finishes a request when its handler returns,
but renders a returned resource instead, and that takes the connection over.
"""

from typing import Awaitable, Callable, Optional

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from ..errors import DockerError
from ..logs import Logger
from ..streams import RAW, frame
from .httputils import APIRequest

log = Logger()

_REASONS = {400: "Bad Request", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error",
            501: "Not Implemented", 503: "Service Unavailable"}


@implementer(IHalfCloseableProtocol, IPushProducer)
class HijackedStream(Protocol):
    """A taken-over connection: client bytes in (stdin), container output out.

    It is its transport's producer: when the client falls behind, the
    sources of the output (see L{add_source}) are paused until it catches up,
    so a fast container and a slow client cannot fill the daemon's memory."""

    def __init__(self) -> None:
        self._sources = []
        self.paused = False
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

    # -- backpressure ---------------------------------------------------

    def add_source(self, pause, resume) -> None:
        """Pause and resume what produces this stream's output."""
        self._sources.append((pause, resume))
        if self.paused:
            pause()

    def pauseProducing(self) -> None:
        self.paused = True
        for pause, _ in list(self._sources):
            pause()

    def resumeProducing(self) -> None:
        self.paused = False
        for _, resume in list(self._sources):
            resume()

    def stopProducing(self) -> None:
        self.close()

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
            # A TLS transport shuts down only once its producer (this
            # stream) is gone: unregistered first, or the close never comes.
            try:
                self.transport.unregisterProducer()
            except Exception:
                pass
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
    elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
        transport.protocol.wrappedProtocol = protocol  # TLS wrapping the socket
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    if IPushProducer.providedBy(protocol):
        transport.registerProducer(protocol, True)
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


class WebSocketStream:
    """The websocket side of C{GET /containers/{id}/attach/ws}: what the
    attach code writes to a L{HijackedStream} goes out as websocket messages
    (binary from API 1.28, text before; never multiplexed), and messages in
    are the container's stdin.  autobahn's WebSocketResource takes the
    connection over from twisted.web."""

    framed = False

    def __init__(self, binary: bool) -> None:
        self.binary = binary
        self.protocol = None
        self.closed = Deferred()
        self.opened = Deferred()
        self.on_input = None
        self.on_input_closed = None
        self._buffered = []
        self._lost = False

    @property
    def lost(self) -> bool:
        return self._lost

    def write(self, stream: int, data: bytes) -> None:
        if self.protocol is not None and not self._lost and data:
            self.protocol.sendMessage(data, isBinary=self.binary)

    def write_raw(self, data: bytes) -> None:
        self.write(1, data)

    def read_input(self, on_input, on_input_closed) -> None:
        self.on_input, self.on_input_closed = on_input, on_input_closed
        buffered, self._buffered = self._buffered, []
        for data in buffered:
            on_input(data)
        if self._lost:
            on_input_closed()

    def add_source(self, pause, resume) -> None:
        if self.protocol is not None:
            self.protocol.pausing.append((pause, resume))

    def close(self) -> None:
        if self.protocol is not None and not self._lost:
            self.protocol.sendClose()

    # from the protocol
    def _message(self, payload: bytes) -> None:
        if self.on_input is None:
            self._buffered.append(payload)
        else:
            self.on_input(payload)

    def _gone(self) -> None:
        if self._lost:
            return
        self._lost = True
        if self.on_input_closed is not None:
            self.on_input_closed()
        self.closed.callback(None)


def websocket(req: APIRequest, binary: bool) -> WebSocketStream:
    """Take C{req}'s connection over as a websocket (autobahn does the handshake)."""
    from autobahn.twisted.resource import WebSocketResource
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    stream = WebSocketStream(binary)

    class AttachProtocol(WebSocketServerProtocol):
        def __init__(self):
            super().__init__()
            self.pausing = []

        def onOpen(self):
            stream.protocol = self
            if not stream.opened.called:
                stream.opened.callback(stream)

        def onMessage(self, payload, isBinary):
            stream._message(payload)

        def onClose(self, wasClean, code, reason):
            stream._gone()
            if not stream.opened.called:
                stream.opened.callback(stream)

        def pauseProducing(self):
            super().pauseProducing()
            for pause, _ in self.pausing:
                pause()

        def resumeProducing(self):
            super().resumeProducing()
            for _, resume in self.pausing:
                resume()

    factory = WebSocketServerFactory()
    factory.protocol = AttachProtocol
    req.hijacked = True
    WebSocketResource(factory).render(req.request)
    return stream


class Takeover(Resource):
    """What a hijacking handler returns.  Rendered, it takes the connection
    over (C{take_over()} gives the stream) and runs C{serve(stream)}, which
    owns the stream from then on; the request is never finished."""

    isLeaf = True

    def __init__(self, req: APIRequest, take_over: Callable[[], object],
                 serve: Optional[Callable[[object], Awaitable[None]]] = None) -> None:
        super().__init__()
        self.req = req
        self.take_over = take_over
        self.serve = serve

    def render(self, request):
        stream = self.take_over()
        if self.serve is not None:
            ensureDeferred(self.serve(stream)).addErrback(self._failed)
        return NOT_DONE_YET

    def _failed(self, failure: Failure) -> None:
        # Too late for an HTTP answer: the stream just ends.
        if not failure.check(DockerError):
            req = self.req
            log.failure(
                "Unexpected error in {router} handler for {method} {uri}",
                failure,
                router=req.router,
                method=req.method,
                uri=req.uri,
            )


def hijacked(req: APIRequest, content_type: str, framed: bool,
             serve: Callable[[HijackedStream], Awaitable[None]]) -> Takeover:
    """Take the connection over as a raw stream (L{hijack}), framed with the
    stdcopy header or not, and C{serve} it."""

    def take_over() -> HijackedStream:
        stream = hijack(req, content_type)
        stream.framed = framed
        return stream

    return Takeover(req, take_over, serve)


def refused(req: APIRequest, status: int, message: str) -> Takeover:
    """Answer a refused attach on the taken-over connection (L{hijack_error})."""
    return Takeover(req, lambda: hijack_error(req, status, message))


def websocket_attached(req: APIRequest, binary: bool,
                       serve: Callable[[WebSocketStream], Awaitable[None]]) -> Takeover:
    """Take the connection over as a websocket (L{websocket}) and C{serve} it."""
    return Takeover(req, lambda: websocket(req, binary), serve)
