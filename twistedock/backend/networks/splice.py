"""
The TCP side of the userland proxy (L{proxy.Proxy}): connections accepted
on the host port, each joined to one made to the container, the bytes of
each direction moved by splice(2) through a pipe of its own, so they are
never copied into Python; a side that cannot take more stops the reading
of the other (a direction holds at most its pipe, L{PIPE_SIZE}); a side's
end passed on as a half-close; a reset or a failure on either side closes
both. Sockets are watched by the reactor (C{addReader}/C{addWriter}).
"""

import errno
import fcntl
import os
import socket
from typing import Optional

from twisted.internet.interfaces import IReadDescriptor, IReadWriteDescriptor
from zope.interface import implementer

from ...logs import Logger

log = Logger()

#: Bytes a direction holds between its two sockets (the pipe's size).
PIPE_SIZE = 1 << 18
SPLICE = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)


class _Pump:
    """One direction of a proxied connection: bytes moved from C{source}
    to C{sink} by splice(2) through a pipe, without copying them through
    the daemon. While the sink cannot take more, the source is not read
    (backpressure: what waits is at most the pipe's content); the source's
    end is passed on as a half-close once everything was written."""

    def __init__(self, connection: "Connection", source: "_Socket", sink: "_Socket") -> None:
        self.connection = connection
        self.source = source
        self.sink = sink
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        self.pending = 0
        self.ended = False
        self.done = False

    def run(self) -> None:
        """Move what can be moved now; wait for the sockets otherwise."""
        while not self.done:
            if self.pending:
                try:
                    n = os.splice(self.read_fd, self.sink.fileno(), self.pending, flags=SPLICE)
                except OSError as e:
                    if e.errno in _AGAIN:
                        self.source.want_read(False)
                        self.sink.want_write(True)
                        return
                    raise
                self.pending -= n
                continue
            self.sink.want_write(False)
            if self.ended:
                self.done = True
                self.sink.shutdown_write()
                self.connection.direction_done()
                return
            try:
                n = os.splice(self.source.fileno(), self.write_fd, PIPE_SIZE, flags=SPLICE)
            except OSError as e:
                if e.errno in _AGAIN:
                    self.source.want_read(True)
                    return
                raise
            if n == 0:
                self.ended = True
                self.source.want_read(False)
            self.pending += n

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


@implementer(IReadWriteDescriptor)
class _Socket:
    """A connected socket in the reactor: readable, it runs the pump that
    reads it; writable, the pump that writes to it."""

    def __init__(self, connection: "Connection", sock: socket.socket) -> None:
        self.connection = connection
        self.socket = sock
        self.reads: Optional[_Pump] = None
        self.writes: Optional[_Pump] = None
        self.reading = self.writing = False

    def fileno(self) -> int:
        return self.socket.fileno()

    def logPrefix(self) -> str:
        return "proxy"

    def want_read(self, on: bool) -> None:
        if on != self.reading:
            self.reading = on
            (self.connection.reactor.addReader if on else self.connection.reactor.removeReader)(self)

    def want_write(self, on: bool) -> None:
        if on != self.writing:
            self.writing = on
            (self.connection.reactor.addWriter if on else self.connection.reactor.removeWriter)(self)

    def shutdown_write(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def doRead(self):
        return self.connection.run(self.reads)

    def doWrite(self):
        if self.connection.connecting:
            return self.connection.connected()
        return self.connection.run(self.writes)

    def connectionLost(self, reason) -> None:
        self.connection.close()

    def stop(self) -> None:
        self.want_read(False)
        self.want_write(False)
        self.socket.close()


class Connection:
    """A connection accepted on the host port, joined to one made to the
    container: two pumps, closed when both directions ended or either
    side failed."""

    def __init__(self, proxy, client: socket.socket) -> None:
        self.reactor = proxy.reactor
        self.proxy = proxy
        self.client = _Socket(self, client)
        family = socket.AF_INET6 if ":" in proxy.target[0] else socket.AF_INET
        self.container = _Socket(self, socket.socket(family, socket.SOCK_STREAM))
        self.pumps = []
        self.ends = 0
        self.closed = False
        self.connecting = True
        proxy.connections.add(self)
        self.container.socket.setblocking(False)
        code = self.container.socket.connect_ex(proxy.target)
        if code not in (0, errno.EINPROGRESS):
            log.debug("proxy to the container failed: {e}", e=os.strerror(code))
            self.close()
            return
        self.container.want_write(True)

    def connected(self) -> None:
        code = self.container.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            log.debug("proxy to the container failed: {e}", e=os.strerror(code))
            self.close()
            return
        self.connecting = False
        self.container.want_write(False)
        upstream = _Pump(self, self.client, self.container)
        downstream = _Pump(self, self.container, self.client)
        self.pumps = [upstream, downstream]
        self.client.reads, self.container.writes = upstream, upstream
        self.container.reads, self.client.writes = downstream, downstream
        self.run(upstream)
        self.run(downstream)

    def run(self, pump: Optional[_Pump]) -> None:
        if pump is None or self.closed:
            return
        try:
            pump.run()
        except OSError as e:
            # A reset or a broken pipe on either side ends both.
            log.debug("proxied connection ended: {e}", e=e)
            self.close()

    def direction_done(self) -> None:
        self.ends += 1
        if self.ends == 2:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.connections.discard(self)
        for side in (self.client, self.container):
            side.stop()
        for pump in self.pumps:
            pump.close()


@implementer(IReadDescriptor)
class Listener:
    """The host port's listening socket: connections accepted, and closed
    at once until the container's address is known."""

    def __init__(self, proxy, sock: socket.socket) -> None:
        self.proxy = proxy
        self.socket = sock

    def fileno(self) -> int:
        return self.socket.fileno()

    def logPrefix(self) -> str:
        return "proxy"

    def doRead(self) -> None:
        for _ in range(64):
            try:
                client, _ = self.socket.accept()
            except OSError as e:
                if e.errno in _AGAIN:
                    return
                log.warn("accepting on a published port: {e}", e=e)
                return
            if self.proxy.target is None:
                client.close()
                continue
            client.setblocking(False)
            Connection(self.proxy, client)

    def connectionLost(self, reason) -> None:
        pass
