"""The userland proxy of published ports, on the real reactor over loopback:
bytes both ways, half-close, backpressure, UDP, the ports held."""

import hashlib
import socket

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor, task
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from twistedock.backend.networks.proxy import PIPE_SIZE, BindError, PortHold, PortProxies, Proxy


@implementer(IHalfCloseableProtocol)
class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)

    def readConnectionLost(self):
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass


class Sink(protocol.Protocol):
    """Counts and hashes what it reads; starts paused when told to."""

    def connectionMade(self):
        self.factory.sinks.append(self)
        self.digest = hashlib.sha256()
        self.count = 0
        if self.factory.paused:
            self.transport.pauseProducing()

    def dataReceived(self, data):
        self.digest.update(data)
        self.count += len(data)


def _sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


def _listen(proto, **attributes):
    factory = protocol.Factory.forProtocol(proto)
    factory.noisy = False
    for k, v in attributes.items():
        setattr(factory, k, v)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return factory, port


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _round_trip(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


@pytest_twisted.ensureDeferred
async def test_tcp_both_ways_with_half_close():
    _, backend = _listen(Echo)
    proxy = Proxy(reactor, "127.0.0.1", 0, "tcp")
    try:
        proxy.forward_to("127.0.0.1", backend.getHost().port)
        payload = bytes(range(256)) * 4096
        assert await deferToThread(_round_trip, proxy.host_port, payload) == payload
    finally:
        proxy.close()
        await backend.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_slow_container_pauses_the_client_side():
    factory, backend = _listen(Sink, sinks=[], paused=True)
    proxy = Proxy(reactor, "127.0.0.1", 0, "tcp")
    total = 48 << 20
    block = b"x" * (1 << 20)

    def send():
        with socket.create_connection(("127.0.0.1", proxy.host_port), timeout=60) as s:
            for _ in range(total // len(block)):
                s.sendall(block)

    try:
        proxy.forward_to("127.0.0.1", backend.getHost().port)
        sending = deferToThread(send)
        for _ in range(100):
            await _sleep(0.05)
            if factory.sinks:
                break
        await _sleep(1.0)
        (sink,) = factory.sinks
        # The sink reads nothing, so the proxy stopped reading the client:
        # what it holds is one pipe's worth, not the 48 MB.
        (connection,) = proxy.connections
        assert connection.client not in reactor.getReaders()
        assert connection.container in reactor.getWriters()
        assert connection.pumps[0].pending <= PIPE_SIZE
        assert not sending.called
        sink.transport.resumeProducing()
        await sending
        for _ in range(200):
            if sink.count == total:
                break
            await _sleep(0.05)
        assert sink.count == total
        assert sink.digest.hexdigest() == hashlib.sha256(block * (total // len(block))).hexdigest()
    finally:
        proxy.close()
        await backend.stopListening()


@pytest_twisted.ensureDeferred
async def test_no_container_address_yet_closes_the_connection():
    proxy = Proxy(reactor, "127.0.0.1", 0, "tcp")

    def read():
        with socket.create_connection(("127.0.0.1", proxy.host_port), timeout=10) as s:
            try:
                return s.recv(10)
            except ConnectionResetError:
                return b""

    try:
        assert await deferToThread(read) == b""
        # A container that does not answer: the client's connection ends.
        proxy.forward_to("127.0.0.1", _closed_port())
        assert await deferToThread(read) == b""
        for _ in range(50):
            if not proxy.connections:
                break
            await _sleep(0.02)
        assert proxy.connections == set()
    finally:
        proxy.close()


class UDPEcho(protocol.DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.transport.write(b"echo:" + data, addr)


@pytest_twisted.ensureDeferred
async def test_udp_datagrams_are_relayed_per_client():
    backend = reactor.listenUDP(0, UDPEcho(), interface="127.0.0.1")
    proxy = Proxy(reactor, "127.0.0.1", 0, "udp")

    def ask(message):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(message, ("127.0.0.1", proxy.host_port))
            return s.recvfrom(2048)

    try:
        proxy.forward_to("127.0.0.1", backend.getHost().port)
        data, addr = await deferToThread(ask, b"one")
        assert data == b"echo:one" and addr == ("127.0.0.1", proxy.host_port)
        data, _ = await deferToThread(ask, b"two")
        assert data == b"echo:two"
        assert len(proxy._udp.flows) == 2
    finally:
        proxy.close()
        await backend.stopListening()
    assert proxy._udp.flows == {}


def test_a_taken_port_is_a_bind_error_and_holds_are_released():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(BindError) as e:
            Proxy(reactor, "127.0.0.1", s.getsockname()[1], "tcp")
        assert e.value.strerror == "Address already in use"
    proxies = PortProxies(reactor, userland=False)
    hold = proxies.bind("c", "127.0.0.1", 0, "udp")
    assert isinstance(hold, PortHold)
    with pytest.raises(BindError):
        PortHold(None, "127.0.0.1", hold.host_port, "udp")
    proxies.close("c")
    PortHold(None, "127.0.0.1", hold.host_port, "udp").close()
