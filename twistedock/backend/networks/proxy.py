"""
The userland proxy of published ports, as dockerd's docker-proxy but on the
daemon's reactor: a listener on the host address and port of each mapping,
each accepted TCP connection joined to a connection to the container's
address, the bytes moved by splice(2) through a pipe per direction (never
copied through Python), with backpressure both ways (a side that cannot
take more stops the reading of the other; each direction holds at most
its pipe's L{PIPE_SIZE}), half-closes passed on; UDP datagrams relayed per
client, each client's flow forgotten after L{UDP_IDLE} seconds of silence,
as docker-proxy's conntrack.

With C{--userland-proxy=false} the kernel's NAT rules (netavark's) carry
the traffic and the listener only holds the port (L{PortHold}), as
dockerd's dummy proxy, so that another program cannot take it.

The listeners are bound before the container's network is set up (the
port's owner known at once, dockerd's error if it is taken); they accept
once L{Proxy.forward_to} names the container's address.
"""

import errno
import fcntl
import os
import socket
from typing import Callable, Dict, List, Optional, Tuple

from twisted.internet import error, protocol
from twisted.internet.interfaces import IReadDescriptor, IReadWriteDescriptor
from zope.interface import implementer

from ...logs import Logger

log = Logger()

#: Seconds a UDP client's flow lives without traffic (docker-proxy's 90 s).
UDP_IDLE = 90.0


class BindError(Exception):
    """The host address and port cannot be bound; C{errno} says why."""

    def __init__(self, errno: int, strerror: str) -> None:
        super().__init__(strerror)
        self.errno = errno
        self.strerror = strerror


def _bind_error(e: error.CannotListenError) -> BindError:
    inner = e.socketError
    return BindError(getattr(inner, "errno", 0) or 0, getattr(inner, "strerror", None) or str(inner))


# -- TCP ----------------------------------------------------------------------

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

    def __init__(self, connection: "_Connection", source: "_Socket", sink: "_Socket") -> None:
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

    def __init__(self, connection: "_Connection", sock: socket.socket) -> None:
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


class _Connection:
    """A connection accepted on the host port, joined to one made to the
    container: two pumps, closed when both directions ended or either
    side failed."""

    def __init__(self, proxy: "Proxy", client: socket.socket) -> None:
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
class _Listener:
    """The host port's listening socket: connections accepted, and closed
    at once until the container's address is known."""

    def __init__(self, proxy: "Proxy", sock: socket.socket) -> None:
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
            _Connection(self.proxy, client)

    def connectionLost(self, reason) -> None:
        pass


# -- UDP ----------------------------------------------------------------------


class _UDPFlow(protocol.DatagramProtocol):
    """One client's flow: a socket connected to the container, its answers
    sent back to the client from the host port."""

    noisy = False

    def __init__(self, relay: "_UDPRelay", client: Tuple[str, int]) -> None:
        self.relay = relay
        self.client = client
        self.timer = None

    def datagramReceived(self, data: bytes, addr) -> None:
        self.relay.transport.write(data, self.client)
        self.touch()

    def touch(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.reset(UDP_IDLE)
        else:
            self.timer = self.relay.proxy.reactor.callLater(UDP_IDLE, self.relay.forget, self.client)

    def connectionRefused(self) -> None:
        pass


class _UDPRelay(protocol.DatagramProtocol):
    """The datagrams arriving on the host port, relayed per client."""

    noisy = False

    def __init__(self, proxy: "Proxy") -> None:
        self.proxy = proxy
        self.flows: Dict[Tuple[str, int], Tuple[_UDPFlow, object]] = {}

    def datagramReceived(self, data: bytes, addr) -> None:
        target = self.proxy.target
        if target is None:
            return
        entry = self.flows.get(addr)
        if entry is None:
            flow = _UDPFlow(self, addr)
            port = self.proxy.reactor.listenUDP(0, flow)
            try:
                flow.transport.connect(target[0], target[1])
            except Exception:
                port.stopListening()
                return
            entry = self.flows[addr] = (flow, port)
        flow, _ = entry
        try:
            flow.transport.write(data)
        except OSError:
            pass
        flow.touch()

    def forget(self, addr) -> None:
        entry = self.flows.pop(addr, None)
        if entry is not None:
            flow, port = entry
            if flow.timer is not None and flow.timer.active():
                flow.timer.cancel()
            port.stopListening()

    def close(self) -> None:
        for addr in list(self.flows):
            self.forget(addr)


# -- the listeners --------------------------------------------------------------


class Proxy:
    """The userland proxy of one mapping (host address and port, protocol)."""

    def __init__(self, reactor, host_ip: str, host_port: int, protocol_name: str) -> None:
        self.reactor = reactor
        self.host_ip = host_ip or "0.0.0.0"
        self.protocol = protocol_name
        self.target: Optional[Tuple[str, int]] = None
        self.connections = set()
        self._udp: Optional[_UDPRelay] = None
        self._listener: Optional[_Listener] = None
        if protocol_name == "udp":
            self._udp = _UDPRelay(self)
            try:
                self.port = reactor.listenUDP(host_port, self._udp, interface=self.host_ip)
            except error.CannotListenError as e:
                raise _bind_error(e)
            self.host_port = self.port.getHost().port
            return
        sock = _bound(self.host_ip, host_port, socket.SOCK_STREAM)
        sock.listen(128)
        sock.setblocking(False)
        self._listener = _Listener(self, sock)
        self.host_port = sock.getsockname()[1]
        reactor.addReader(self._listener)

    def forward_to(self, address: str, port: int) -> None:
        self.target = (address, port)

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self.port.stopListening()
        if self._listener is not None:
            self.reactor.removeReader(self._listener)
            self._listener.socket.close()
            self._listener = None
        for connection in list(self.connections):
            connection.close()


def _bound(host_ip: str, host_port: int, kind: int) -> socket.socket:
    """A socket bound to the address (L{BindError} if it cannot be)."""
    family = socket.AF_INET6 if ":" in (host_ip or "") else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            # As Go's listeners (dockerd's proxies): TCP only.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), host_port))
    except OSError as e:
        sock.close()
        raise BindError(e.errno or 0, e.strerror or str(e))
    return sock


class PortHold:
    """The port held without serving it (C{--userland-proxy=false}: the
    kernel's NAT carries the traffic), as dockerd's dummy proxy."""

    def __init__(self, reactor, host_ip: str, host_port: int, protocol_name: str) -> None:
        kind = socket.SOCK_DGRAM if protocol_name == "udp" else socket.SOCK_STREAM
        self.socket = _bound(host_ip, host_port, kind)
        if kind == socket.SOCK_STREAM:
            self.socket.listen(1)
        self.host_port = self.socket.getsockname()[1]

    def forward_to(self, address: str, port: int) -> None:
        pass

    def close(self) -> None:
        self.socket.close()


class PortProxies:
    """The listeners of each container's published ports, by container ID.
    C{userland}: proxies (dockerd's default), else port holds;
    C{port_range}: the host ports given for an empty HostPort."""

    def __init__(self, reactor, userland: bool = True, port_range: Tuple[int, int] = (49153, 65535),
                 listener: Optional[Callable] = None) -> None:
        self.reactor = reactor
        self.userland = userland
        self.port_range = port_range
        self._make = listener or (Proxy if userland else PortHold)
        self.listeners: Dict[str, List[object]] = {}
        #: The last ephemeral port given, per protocol.
        self.last_port: Dict[str, int] = {}

    def ephemeral_candidates(self, protocol_name: str):
        """The range's ports, from the one after the last given (dockerd's
        allocator goes round the range, not back to its start)."""
        first, last = self.port_range
        after = self.last_port.get(protocol_name, last)
        start = after + 1 if first <= after < last else first
        yield from range(start, last + 1)
        yield from range(first, start)

    def bind(self, container_id: str, host_ip: str, host_port: int, protocol_name: str):
        """One listener bound (L{BindError} if it cannot be) and kept for
        the container; the listener (its C{host_port} the port bound)."""
        listener = self._make(self.reactor, host_ip, host_port, protocol_name)
        self.listeners.setdefault(container_id, []).append(listener)
        return listener

    def forward(self, container_id: str, mappings: List[dict], address: str, last_only: bool = False) -> None:
        """The container's listeners told its address (in C{mappings}' order;
        C{last_only}: the one mapping given is the last listener bound)."""
        listeners = self.listeners.get(container_id, [])
        if last_only:
            listeners = listeners[-1:]
        for listener, m in zip(listeners, mappings):
            listener.forward_to(address, m["container_port"])

    def close(self, container_id: str) -> None:
        for listener in self.listeners.pop(container_id, ()):
            try:
                listener.close()
            except Exception as e:
                log.warn("closing a published port: {e}", e=e)

    def close_all(self) -> None:
        for container_id in list(self.listeners):
            self.close(container_id)
