"""
conmon's attach socket (C{AF_UNIX SOCK_SEQPACKET}): each packet conmon
sends is one byte naming the pipe (2 stdout, 3 stderr: conmon's own
numbering, 1 being stdin) followed by at most 8192 bytes of output; each
packet we send goes to the container's stdin, conmon reading at most 32767
bytes of one.
"""

import os
import socket
from typing import Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from ...errors import Conflict, InternalError
from ...logs import Logger
from ...streams import STDERR, STDOUT

log = Logger()

#: conmon's pipe numbers in the first byte of an attach packet.
CONMON_STDIN, CONMON_STDOUT, CONMON_STDERR = 1, 2, 3
_FROM_CONMON = {CONMON_STDOUT: STDOUT, CONMON_STDERR: STDERR}

#: The largest packet conmon reads whole from the attach socket.
ATTACH_WRITE_LIMIT = 32768 - 1

#: sockaddr_un's path limit, terminating NUL included.
_SUN_PATH_MAX = 108


def socket_dir(exec_root: str) -> str:
    """Where conmon makes the attach sockets of containers and execs
    (C{--socket-dir-path}): short, for sockaddr_un is small."""
    return os.path.join(exec_root, "s")


class AttachProtocol:
    """What L{attach} delivers to: override what you need."""

    def attachMade(self, connection: "AttachConnection") -> None:
        pass

    def outputReceived(self, stream: int, data: bytes) -> None:
        """A piece of output: C{stream} is L{STDOUT} or L{STDERR}."""

    def attachLost(self, reason: Failure) -> None:
        """conmon closed the socket (the container exited), or we did."""


class CallbackAttach(AttachProtocol):
    def __init__(self, output: Callable[[int, bytes], None], ended: Optional[Callable[[], None]]) -> None:
        self.output = output
        self.ended = ended

    def outputReceived(self, stream: int, data: bytes) -> None:
        self.output(stream, data)

    def attachLost(self, reason: Failure) -> None:
        if self.ended is not None:
            self.ended()


class _AttachWire(Protocol):
    """The Twisted protocol on the adopted SOCK_SEQPACKET socket: each
    C{recv} gives one whole packet, so each C{dataReceived} is one packet."""

    def __init__(self, connection: "AttachConnection") -> None:
        self.connection = connection

    def connectionMade(self) -> None:
        # One send is one packet: keep packets within what conmon reads.
        self.transport.SEND_LIMIT = ATTACH_WRITE_LIMIT
        self.connection._made(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if not data:
            return
        stream = _FROM_CONMON.get(data[0])
        if stream is None:
            log.warn("attach packet for unknown pipe {pipe}", pipe=data[0])
            return
        self.connection.protocol.outputReceived(stream, data[1:])

    def connectionLost(self, reason: Failure) -> None:
        self.connection._lost(reason)


class AttachConnection:
    """One connection to conmon's attach socket."""

    def __init__(self, protocol: AttachProtocol) -> None:
        self.protocol = protocol
        self.transport = None
        #: Fires (with None) when the connection is over.
        self.closed: Deferred = Deferred()
        self._stdin_closed = False

    def _made(self, transport) -> None:
        self.transport = transport
        self.protocol.attachMade(self)

    def _lost(self, reason: Failure) -> None:
        self.transport = None
        try:
            self.protocol.attachLost(reason)
        finally:
            if not self.closed.called:
                self.closed.callback(None)

    @property
    def connected(self) -> bool:
        return self.transport is not None

    def write(self, data: bytes) -> None:
        """Feed the container's stdin (conmon started with C{-i})."""
        if data and self.transport is not None and not self._stdin_closed:
            self.transport.write(data)

    def close_stdin(self) -> None:
        """Half-close: once what was written is sent, conmon sees the end of
        this client's input and closes the container's stdin (unless it runs
        with C{--leave-stdin-open}).  Output keeps coming."""
        if self.transport is not None and not self._stdin_closed:
            self._stdin_closed = True
            self.transport.loseWriteConnection()

    def close(self) -> None:
        """Detach.  conmon treats it as the end of input too (see
        L{close_stdin})."""
        if self.transport is not None:
            self.transport.loseConnection()


def _connect_seqpacket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    directory_fd = None
    try:
        target = path
        if len(os.fsencode(path)) >= _SUN_PATH_MAX:
            # Too long for sockaddr_un: go through the directory's descriptor.
            directory_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
            target = "/proc/self/fd/%d/%s" % (directory_fd, os.path.basename(path))
        sock.connect(target)
    except BaseException:
        sock.close()
        raise
    finally:
        if directory_fd is not None:
            os.close(directory_fd)
    return sock


async def attach(reactor, socket_path: str, protocol: AttachProtocol) -> AttachConnection:
    """Connect to conmon's attach socket; C{protocol} gets the output.

    Raises L{Conflict} when there is no conmon listening (the container is
    not running).
    """
    connection = AttachConnection(protocol)
    try:
        sock = _connect_seqpacket(socket_path)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
        raise Conflict("cannot attach: nothing listens on %s (%s)" % (socket_path, e.strerror))
    except OSError as e:
        raise InternalError("cannot attach to %s: %s" % (socket_path, e.strerror or e))
    try:
        factory = Factory.forProtocol(lambda: _AttachWire(connection))
        reactor.adoptStreamConnection(sock.fileno(), socket.AF_UNIX, factory)
    finally:
        # Twisted works on its own duplicate of the descriptor.
        sock.close()
    return connection
