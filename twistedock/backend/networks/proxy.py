"""
The userland proxy of published ports, as dockerd's docker-proxy but on the
daemon's reactor: a listener on the host address and port of each mapping,
each accepted TCP connection joined to a connection to the container's
address, with backpressure both ways (each transport is the other's
streaming producer: a side whose write buffer fills pauses the reading of
the other); UDP datagrams relayed per client, each client's flow forgotten
after L{UDP_IDLE} seconds of silence, as docker-proxy's conntrack.

With C{--userland-proxy=false} the kernel's NAT rules (netavark's) carry
the traffic and the listener only holds the port (L{PortHold}), as
dockerd's dummy proxy, so that another program cannot take it.

The listeners are bound before the container's network is set up (the
port's owner known at once, dockerd's error if it is taken); they accept
once L{Proxy.forward_to} names the container's address.
"""

import socket
from typing import Callable, Dict, List, Optional, Tuple

from twisted.internet import error, protocol
from twisted.internet.interfaces import IHalfCloseableProtocol
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


@implementer(IHalfCloseableProtocol)
class _Side(protocol.Protocol):
    """One side of a proxied TCP connection: bytes read here are written to
    the peer; a half-close passed on; either end closing closes both."""

    peer: Optional["_Side"] = None

    def join(self, peer: "_Side") -> None:
        self.peer = peer
        # Each transport is the producer of the other's consumer: a full
        # buffer on one side pauses reading on the other.
        self.transport.registerProducer(peer.transport, True)

    def dataReceived(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.transport.write(data)

    def readConnectionLost(self) -> None:
        if self.peer is not None:
            self.peer.transport.loseWriteConnection()

    def writeConnectionLost(self) -> None:
        # The peer half-closed earlier and we have written everything: if
        # our reading ended too, the connection closes itself.
        pass

    def connectionLost(self, reason=None) -> None:
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            # This transport no longer produces for the peer's; what the
            # peer still buffers is written before it closes.
            peer.transport.unregisterProducer()
            peer.transport.loseConnection()


class _Inbound(_Side):
    """A connection accepted on the host port: it stops reading until the
    connection to the container is made, and ends if that fails."""

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        proxy = self.factory.proxy
        target = proxy.target
        if target is None:
            self.transport.loseConnection()
            return
        outbound = protocol.ClientCreator(proxy.reactor, _Side).connectTCP(target[0], target[1], timeout=30)
        outbound.addCallbacks(self._connected, self._failed)

    def _connected(self, other: _Side) -> None:
        if not self.transport.connected:
            other.transport.loseConnection()
            return
        self.join(other)
        other.join(self)
        self.transport.resumeProducing()

    def _failed(self, reason) -> None:
        log.debug("proxy to the container failed: {e}", e=reason.value)
        self.transport.loseConnection()


class _InboundFactory(protocol.Factory):
    protocol = _Inbound
    noisy = False

    def __init__(self, proxy: "Proxy") -> None:
        self.proxy = proxy


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
        self._udp: Optional[_UDPRelay] = None
        try:
            if protocol_name == "udp":
                self._udp = _UDPRelay(self)
                self.port = reactor.listenUDP(host_port, self._udp, interface=self.host_ip)
            else:
                self.port = reactor.listenTCP(host_port, _InboundFactory(self), backlog=128,
                                              interface=self.host_ip)
        except error.CannotListenError as e:
            raise _bind_error(e)
        self.host_port = self.port.getHost().port

    def forward_to(self, address: str, port: int) -> None:
        self.target = (address, port)

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        self.port.stopListening()


class PortHold:
    """The port held without serving it (C{--userland-proxy=false}: the
    kernel's NAT carries the traffic), as dockerd's dummy proxy."""

    def __init__(self, reactor, host_ip: str, host_port: int, protocol_name: str) -> None:
        family = socket.AF_INET6 if ":" in (host_ip or "") else socket.AF_INET
        kind = socket.SOCK_DGRAM if protocol_name == "udp" else socket.SOCK_STREAM
        self.socket = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                # As Go's listeners (dockerd's dummy proxy): TCP only.
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), host_port))
            if kind == socket.SOCK_STREAM:
                self.socket.listen(1)
        except OSError as e:
            self.socket.close()
            raise BindError(e.errno or 0, e.strerror or str(e))
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
