"""Published ports: the mappings asked, host ports chosen and refused, the Ports views."""

import socket

import pytest

from twistedock.backend.networks import ports
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


def test_an_ephemeral_port_is_chosen_on_loopback():
    (m,) = ports.allocate([{"container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1",
                            "host_port": 0, "range": 1}], [], "web")
    assert m["host_port"] > 0


def test_ports_taken_are_refused_as_dockerd():
    mapping = {"container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 0, "range": 1}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(InternalError) as e:
            ports.allocate([dict(mapping, host_port=port)], [], "web")
        assert str(e.value) == ("driver failed programming external connectivity on endpoint web: Error "
                                "starting userland proxy: listen tcp4 127.0.0.1:%d: bind: address already "
                                "in use" % port)
    published = [dict(mapping, host_port=port, host_ip="")]
    with pytest.raises(InternalError) as e:
        ports.allocate([dict(mapping, host_port=port)], published, "web")
    assert str(e.value) == ("driver failed programming external connectivity on endpoint web: "
                            "Bind for 127.0.0.1:%d failed: port is already allocated" % port)


def test_the_views():
    mappings = [{"container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 32768, "range": 1}]
    exposed = {"80/tcp": {}, "9000/tcp": {}}
    assert ports.inspect_ports(mappings, exposed) == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}], "9000/tcp": None}
    assert ports.summary_ports(mappings, exposed) == [
        {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 32768, "Type": "tcp"},
        {"PrivatePort": 9000, "Type": "tcp"}]
