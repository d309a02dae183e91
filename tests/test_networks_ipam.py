"""IPAM: pools chosen as dockerd's, configurations checked, addresses taken."""

import ipaddress

import pytest

from twistedock.backend.networks import ipam
from twistedock.errors import Forbidden, InvalidParameter, Unavailable


def net(text):
    return ipaddress.ip_network(text)


def test_the_first_default_pool_is_172_17():
    assert ipam.choose_subnet([]) == net("172.17.0.0/16")


def test_routed_and_used_subnets_are_skipped():
    taken = [net("172.17.0.0/16"), net("172.18.5.0/24")]
    assert ipam.choose_subnet(taken) == net("172.19.0.0/16")


def test_after_172_31_come_the_192_168_slash_20s():
    taken = [net("172.16.0.0/12"), net("192.168.0.0/20")]
    assert ipam.choose_subnet(taken) == net("192.168.16.0/20")


def test_no_pool_left():
    with pytest.raises(Unavailable):
        ipam.choose_subnet([net("0.0.0.0/0")])


def test_host_routes_are_read_from_proc(tmp_path):
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "br0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    )
    assert ipam.host_routes(str(table)) == [net("192.0.2.0/24"), net("172.17.0.0/16")]


def test_a_config_is_checked():
    assert ipam.check_config({"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.254"}, []) == {
        "Subnet": "10.1.0.0/24", "Gateway": "10.1.0.254"}
    with pytest.raises(InvalidParameter) as e:
        ipam.check_config({"Subnet": "bad"}, [])
    assert str(e.value) == "Invalid subnet bad : invalid CIDR address: bad"
    with pytest.raises(Forbidden) as e:
        ipam.check_config({"Subnet": "10.1.0.0/25"}, [net("10.1.0.0/24")])
    assert str(e.value) == "Pool overlaps with other one on this address space"
    with pytest.raises(Forbidden) as e:
        ipam.check_config({"Subnet": "10.1.0.0/24", "Gateway": "10.2.0.1"}, [])
    assert str(e.value) == "failed to allocate gateway (10.2.0.1): Requested address is out of range"
    with pytest.raises(InvalidParameter):
        ipam.check_config({"Subnet": "10.1.0.0/24", "IPRange": "10.2.0.0/28"}, [])


def test_addresses_skip_the_gateway_the_used_and_the_auxiliary():
    entry = {"Subnet": "10.1.0.0/24", "AuxiliaryAddresses": {"x": "10.1.0.3"}}
    assert ipam.gateway_of(entry) == "10.1.0.1"
    assert ipam.allocate(entry, set()) == "10.1.0.2"
    assert ipam.allocate(entry, {"10.1.0.2"}) == "10.1.0.4"


def test_an_ip_range_bounds_the_addresses():
    entry = {"Subnet": "10.1.0.0/24", "IPRange": "10.1.0.128/30"}
    assert ipam.allocate(entry, set()) == "10.1.0.128"
    assert ipam.allocate(entry, {"10.1.0.128", "10.1.0.129"}) == "10.1.0.130"
    with pytest.raises(Unavailable):
        ipam.allocate(entry, {"10.1.0.128", "10.1.0.129", "10.1.0.130", "10.1.0.131"})


def test_a_wanted_address():
    entry = {"Subnet": "10.1.0.0/24"}
    assert ipam.allocate(entry, set(), "10.1.0.9") == "10.1.0.9"
    with pytest.raises(Forbidden):
        ipam.allocate(entry, {"10.1.0.9"}, "10.1.0.9")
    with pytest.raises(InvalidParameter):
        ipam.allocate(entry, set(), "10.9.0.9")
