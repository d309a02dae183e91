"""Hijacked connections, as attach and exec start use them: the request is
written by hand with C{Connection: Upgrade} and C{Upgrade: tcp}; after the
daemon's C{101 UPGRADED} (or C{200 OK}) the socket carries stdin one way and
the output the other.  Closing stdin half-closes the connection; the output
ends when the daemon closes its side."""

import io
import json
from typing import Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from .errors import DockerClientError, StreamInterrupted, error_for
from .streams import ChunkQueue, Frames, body_producer

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


def no_delay(transport) -> None:
    """TCP_NODELAY on C{transport} (or the TCP connection under its TLS),
    if it is TCP: a page request is 24 bytes, and Nagle would hold one
    back while the previous is unacknowledged."""
    for _ in range(3):
        if transport is None:
            return
        set_no_delay = getattr(type(transport), "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(transport, True)
            except Exception:
                pass
            return
        transport = getattr(transport, "transport", None)


def request_bytes(method: str, target: str, body: Optional[dict]) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [
        "%s %s HTTP/1.1" % (method, target),
        "Host: docker",
        "User-Agent: twistedock-client",
        "Content-Type: application/json",
        "Content-Length: %d" % (len(payload),),
        "Connection: Upgrade",
        "Upgrade: tcp",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@implementer(IHalfCloseableProtocol)
class HijackProtocol(Protocol):
    """Writes the request, reads the answer's head, then hands the bytes
    that follow to a L{ChunkQueue}.  C{ready} fires with the head's
    (status, headers) or fails with the daemon's error."""

    def __init__(self, request: bytes, call_later=None) -> None:
        self.request = request
        self.ready = Deferred(self._cancel)
        self.queue = ChunkQueue(call_later=call_later)
        self.status = 0
        self.headers = {}
        self._head = b""
        self._error_body: Optional[bytes] = None
        self._error_length = -1

    def _cancel(self, d) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionMade(self) -> None:
        self.queue.producer = self.transport
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        if self._error_body is not None:
            self._error_body += data
            self._check_error_complete()
            return
        if self.ready.called:
            self.queue.put(data)
            return
        self._head += data
        head, separator, rest = self._head.partition(b"\r\n\r\n")
        if not separator:
            return
        lines = head.decode("latin-1").split("\r\n")
        try:
            self.status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self.transport.loseConnection()
            self.ready.errback(DockerClientError("not an HTTP answer: %r" % (lines[0][:80],)))
            return
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.status in (101, 200):
            self.ready.callback(self)
            if rest:
                self.queue.put(rest)
            return
        self._error_body = rest
        self._error_length = int(self.headers.get("content-length", "-1") or -1)
        self._check_error_complete()

    def _check_error_complete(self, lost: bool = False) -> None:
        if self.ready.called:
            return
        if lost or (0 <= self._error_length <= len(self._error_body)):
            body = self._error_body if self._error_length < 0 else self._error_body[:self._error_length]
            self.transport.loseConnection()
            self.ready.errback(error_for(self.status, body))

    def readConnectionLost(self) -> None:
        self.queue.end()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason) -> None:
        if not self.ready.called:
            if self._error_body is not None:
                self._check_error_complete(lost=True)
            else:
                self.ready.errback(reason)
            return
        # The daemon closing the connection ends the output; a cut one is
        # an error (after a half-close from the daemon the output had ended).
        if reason.check(ConnectionDone):
            self.queue.end()
        else:
            self.queue.end(StreamInterrupted("the session's output", reason))


class HijackedSession(Frames):
    """An attached stream: C{write} or C{send} stdin, C{close_stdin}
    (half-close), iterate the output as C{(stream, bytes)}, C{close}.

    C{write} is unbuffered and not flow-controlled: the bytes go to the
    transport's buffer at once, however slowly the process reads (fine for
    a line typed, not for a file).  C{send} is the flow-controlled one: it
    writes no faster than the connection takes the bytes."""

    def __init__(self, protocol: HijackProtocol, multiplexed: bool) -> None:
        from .streams import BodyStream

        body = BodyStream(None, protocol.queue)
        super().__init__(body, multiplexed)
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        """C{data} to stdin now, unbuffered and not paced (see L{send})."""
        self.protocol.transport.write(data)

    async def send(self, body, close_stdin: bool = True) -> None:
        """Send C{body} (bytes, a binary file, a path, an async iterator of
        bytes) as stdin, no faster than the daemon takes it; then close
        stdin unless told not to."""
        if isinstance(body, bytes):
            # Paced as a file is: a large buffer is not queued whole.
            body = io.BytesIO(body)
        producer = body_producer(body)
        if producer is not None:
            transport = self.protocol.transport
            transport.registerProducer(producer, True)
            try:
                await producer.startProducing(transport)
            finally:
                transport.unregisterProducer()
        if close_stdin:
            self.close_stdin()

    def close_stdin(self) -> None:
        """Send the end of stdin (the process sees EOF); output goes on."""
        self.protocol.transport.loseWriteConnection()

    def close(self) -> None:
        super().close()
        self.protocol.transport.loseConnection()


async def hijack(endpoint, method: str, target: str, body: Optional[dict], multiplexed,
                 call_later=None) -> HijackedSession:
    """Connect, send the request, and once the daemon upgraded the
    connection, the session.  C{multiplexed} None: as the answer's
    Content-Type says."""
    protocol = HijackProtocol(request_bytes(method, target, body), call_later)
    await endpoint.connect(Factory.forProtocol(lambda: protocol))
    await protocol.ready
    if multiplexed is None:
        multiplexed = protocol.headers.get("content-type", "") == MULTIPLEXED
    return HijackedSession(protocol, multiplexed)
