"""Published ports: the mappings asked, host ports chosen and refused, the Ports views."""

import socket

import pytest

from twistedock.backend.networks import ports
from twistedock.backend.networks.proxy import BindError, PortHold, PortProxies
from twistedock.errors import InternalError


def test_bindings_and_publish_all():
    hc = {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                           "53/udp": [{"HostIp": "", "HostPort": "5353"}]},
          "PublishAllPorts": True}
    asked = ports.wanted(hc, {"80/tcp": {}, "443/tcp": {}})
    assert asked == [
        {"container_port": 443, "protocol": "tcp", "host_ip": "", "host_port": 0, "range": 1},
        {"container_port": 53, "protocol": "udp", "host_ip": "", "host_port": 5353, "range": 1},
        {"container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 0, "range": 1},
    ]


def test_a_range_of_host_ports():
    hc = {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000-8010"}]}}
    assert ports.wanted(hc, None) == [{"container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1",
                                       "host_port": 8000, "range": 1, "host_port_end": 8010}]


def _free_range(size: int = 40):
    """A run of free loopback ports (probed), for a PortProxies' range."""
    for start in range(41000, 60000, 500):
        try:
            holds = [PortHold(None, "127.0.0.1", p, "tcp") for p in range(start, start + size)]
        except BindError:
            continue
        for h in holds:
            h.close()
        return start, start + size - 1
    pytest.skip("no free run of ports")


def test_ephemeral_ports_go_round_the_range_and_are_held():
    first, last = _free_range()
    proxies = PortProxies(None, userland=False, port_range=(first, last))
    mapping = {"container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 0, "range": 1}
    try:
        (a,) = ports.publish(proxies, "c1", [mapping], [], "web (e1)")
        (b,) = ports.publish(proxies, "c2", [mapping], [a], "web2 (e2)")
        assert (a["host_port"], b["host_port"]) == (first, first + 1)
        assert "host_port_end" not in a
        # Held: the host cannot take it.
        with pytest.raises(BindError):
            PortHold(None, "127.0.0.1", a["host_port"], "tcp")
        proxies.close("c1")
        (c,) = ports.publish(proxies, "c3", [mapping], [b], "web3 (e3)")
        assert c["host_port"] == first + 2  # not back to the start, as dockerd
        # A range: its first free port.
        ranged = dict(mapping, host_port=first + 1, host_port_end=first + 5)
        (d,) = ports.publish(proxies, "c4", [ranged], [b, c], "web4 (e4)")
        assert d["host_port"] == first + 3
    finally:
        proxies.close_all()
    assert proxies.listeners == {}


def test_ports_taken_are_refused_as_dockerd():
    proxies = PortProxies(None, userland=False)
    mapping = {"container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 0, "range": 1}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(InternalError) as e:
            ports.publish(proxies, "c1", [dict(mapping, host_port=port)], [], "web (e1)")
        assert str(e.value) == ("driver failed programming external connectivity on endpoint web (e1): Error "
                                "starting userland proxy: listen tcp4 127.0.0.1:%d: bind: address already "
                                "in use" % port)
    published = [dict(mapping, host_port=port, host_ip="")]
    free = dict(mapping, host_port=_free_range(1)[0])
    with pytest.raises(InternalError) as e:
        ports.publish(proxies, "c1", [free, dict(mapping, host_port=port)], published, "web (e1)")
    assert str(e.value) == ("driver failed programming external connectivity on endpoint web (e1): "
                            "Bind for 127.0.0.1:%d failed: port is already allocated" % port)
    # What was bound before the refusal is released.
    assert proxies.listeners == {}
    PortHold(None, "127.0.0.1", free["host_port"], "tcp").close()


def test_the_views():
    mappings = [{"container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 32768, "range": 1}]
    exposed = {"80/tcp": {}, "9000/tcp": {}}
    assert ports.inspect_ports(mappings, exposed) == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}], "9000/tcp": None}
    assert ports.summary_ports(mappings, exposed) == [
        {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 32768, "Type": "tcp"},
        {"PrivatePort": 9000, "Type": "tcp"}]
