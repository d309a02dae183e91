"""
The UDP side of the userland proxy (L{proxy.Proxy}): datagrams arriving on
the host port relayed to the container from a socket per client, whose
answers go back to that client from the host port; a client's flow
forgotten after L{UDP_IDLE} seconds of silence, as docker-proxy's
conntrack.
"""

from typing import Dict, Tuple

from twisted.internet import protocol

#: Seconds a UDP client's flow lives without traffic (docker-proxy's 90 s).
UDP_IDLE = 90.0



class UDPFlow(protocol.DatagramProtocol):
    """One client's flow: a socket connected to the container, its answers
    sent back to the client from the host port."""

    noisy = False

    def __init__(self, relay: "UDPRelay", client: Tuple[str, int]) -> None:
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


class UDPRelay(protocol.DatagramProtocol):
    """The datagrams arriving on the host port, relayed per client."""

    noisy = False

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.flows: Dict[Tuple[str, int], Tuple[UDPFlow, object]] = {}

    def datagramReceived(self, data: bytes, addr) -> None:
        target = self.proxy.target
        if target is None:
            return
        entry = self.flows.get(addr)
        if entry is None:
            flow = UDPFlow(self, addr)
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
