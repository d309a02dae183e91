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

import socket
from typing import Callable, Dict, List, Optional, Tuple

from twisted.internet import error

from ...logs import Logger
from .splice import PIPE_SIZE, Listener
from .udprelay import UDP_IDLE, UDPRelay

log = Logger()

__all__ = ["BindError", "PIPE_SIZE", "PortHold", "PortProxies", "Proxy", "UDP_IDLE"]


class BindError(Exception):
    """The host address and port cannot be bound; C{errno} says why."""

    def __init__(self, code: int, strerror: str) -> None:
        super().__init__(strerror)
        self.errno = code
        self.strerror = strerror


def _bind_error(e: error.CannotListenError) -> BindError:
    inner = e.socketError
    return BindError(getattr(inner, "errno", 0) or 0, getattr(inner, "strerror", None) or str(inner))



class Proxy:
    """The userland proxy of one mapping (host address and port, protocol)."""

    def __init__(self, reactor, host_ip: str, host_port: int, protocol_name: str) -> None:
        self.reactor = reactor
        self.host_ip = host_ip or "0.0.0.0"
        self.protocol = protocol_name
        self.target: Optional[Tuple[str, int]] = None
        self.connections = set()
        self._udp: Optional[UDPRelay] = None
        self._listener: Optional[Listener] = None
        if protocol_name == "udp":
            self._udp = UDPRelay(self)
            try:
                self.port = reactor.listenUDP(host_port, self._udp, interface=self.host_ip)
            except error.CannotListenError as e:
                raise _bind_error(e)
            self.host_port = self.port.getHost().port
            return
        sock = _bound(self.host_ip, host_port, socket.SOCK_STREAM)
        sock.listen(128)
        sock.setblocking(False)
        self._listener = Listener(self, sock)
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
