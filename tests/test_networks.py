"""The network router over the network store with a driver that changes
nothing (tests/memory.py): answers as dockerd's."""

import json

import pytest
from zope.interface.verify import verifyObject

from twistedock.routers.network import INetworkBackend

from .memory import API


def create(api, body):
    return api.request("POST", "/networks/create", json_body=body)


def test_the_store_provides_the_interface():
    assert verifyObject(INetworkBackend, API().networks)


@pytest.mark.route("GET", "/networks")
def test_the_predefined_networks_are_listed():
    answer = API().request("GET", "/networks")
    assert answer.code == 200
    networks = {n["Name"]: n for n in answer.json()}
    assert set(networks) == {"bridge", "host", "none"}
    assert networks["none"]["Driver"] == "null"
    assert networks["host"]["IPAM"] == {"Driver": "default", "Options": None, "Config": []}
    bridge = networks["bridge"]
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.name"] == "twistedock0"
    assert len(bridge["Id"]) == 64 and bridge["Containers"] == {}


@pytest.mark.route("GET", "/networks/")
def test_the_list_with_a_slash():
    assert len(API().request("GET", "/networks/").json()) == 3


@pytest.mark.route("POST", "/networks/create")
def test_create_and_inspect():
    api = API()
    answer = create(api, {"Name": "web", "CheckDuplicate": True, "Labels": {"a": "b"},
                          "IPAM": {"Config": [{"Subnet": "10.214.0.0/24"}]}})
    assert answer.code == 201
    ident = answer.json()["Id"]
    assert answer.json() == {"Id": ident, "Warning": ""}
    doc = api.request("GET", "/networks/web").json()
    assert doc["Id"] == ident
    assert doc["Driver"] == "bridge" and doc["Scope"] == "local"
    assert doc["IPAM"] == {"Driver": "default", "Options": None, "Config": [{"Subnet": "10.214.0.0/24"}]}
    assert doc["Labels"] == {"a": "b"} and doc["Options"] == {}
    assert api.request("GET", "/networks/" + ident[:5]).json()["Name"] == "web"
    # No subnet: the next free default pool.
    other = create(api, {"Name": "other"}).json()["Id"]
    assert api.request("GET", "/networks/" + other).json()["IPAM"]["Config"] == [
        {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]


@pytest.mark.route("GET", "/networks/{id:.+}")
def test_an_unknown_network_is_not_found():
    api = API()
    for version in ("/v1.41", "/v1.51", ""):
        answer = api.request("GET", version + "/networks/nope")
        assert (answer.code, answer.json()) == (404, {"message": "network nope not found"})


def test_create_errors_as_dockerd():
    api = API()
    assert create(api, {"Name": "web", "IPAM": {"Config": [{"Subnet": "10.214.0.0/24"}]}}).code == 201
    cases = [
        ({"Name": "web", "CheckDuplicate": True}, 409, "network with name web already exists"),
        ({"Name": "web2", "IPAM": {"Config": [{"Subnet": "10.214.0.0/25"}]}}, 403,
         "Pool overlaps with other one on this address space"),
        ({"Name": "host"}, 403, "operation is not permitted on predefined host network "),
        ({"Name": "x", "Driver": "foo"}, 404, 'plugin "foo" not found'),
        ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.215.0.0/24", "Gateway": "10.216.0.1"}]}}, 403,
         "failed to allocate gateway (10.216.0.1): Requested address is out of range"),
        ({"Name": "x", "IPAM": {"Config": [{"Subnet": "bad"}]}}, 400,
         "Invalid subnet bad : invalid CIDR address: bad"),
        ({"Name": ""}, 400, "invalid name: "),
        # (dockerd 20.10 answers 404: no default IPv6 pool.)
        ({"Name": "x", "EnableIPv6": True}, 404,
         "could not find an available, non-overlapping IPv6 address pool among the defaults "
         "to assign to the network"),
    ]
    for body, status, message in cases:
        answer = create(api, body)
        assert (answer.code, answer.json()) == (status, {"message": message}), body
    # Without CheckDuplicate dockerd 20.10 makes a second one, with a
    # warning; from API 1.44 names are unique.
    body = {"Name": "web", "IPAM": {"Config": [{"Subnet": "10.217.0.0/24"}]}}
    assert api.request("POST", "/v1.44/networks/create", json_body=body).code == 409
    answer = api.request("POST", "/v1.41/networks/create", json_body=body)
    assert answer.code == 201
    assert answer.json()["Warning"].startswith("Network with name web (id : ")
    assert api.request("GET", "/networks/web").code == 400


def test_a_bridge_name_option():
    api = API()
    ident = create(api, {"Name": "n", "Options": {"com.docker.network.bridge.name": "tdx0"}}).json()["Id"]
    assert api.networks.resolve(ident)["Interface"] == "tdx0"
    answer = create(api, {"Name": "m", "Options": {"com.docker.network.bridge.name": "tdx0"}})
    assert answer.code == 403
    default = api.networks.resolve(create(api, {"Name": "k"}).json()["Id"])
    assert default["Interface"] == "br-" + default["Id"][:12]


@pytest.mark.route("GET", "/networks")
def test_list_filters():
    api = API()
    create(api, {"Name": "front", "Labels": {"tier": "web"}})
    create(api, {"Name": "back"})

    def names(filters):
        answer = api.request("GET", "/networks?filters=" + json.dumps(filters))
        assert answer.code == 200, answer.body
        return sorted(n["Name"] for n in answer.json())

    assert names({"name": ["ront"]}) == ["front"]
    assert names({"driver": ["bridge"]}) == ["back", "bridge", "front"]
    assert names({"driver": ["null"]}) == ["none"]
    assert names({"type": ["custom"]}) == ["back", "front"]
    assert names({"type": ["builtin"]}) == ["bridge", "host", "none"]
    assert names({"label": ["tier=web"]}) == ["front"]
    assert names({"dangling": ["true"]}) == ["back", "front"]
    ident = api.networks.resolve("back")["Id"]
    assert names({"id": [ident[:6]]}) == ["back"]
    answer = api.request("GET", "/networks?filters=" + json.dumps({"type": ["x"]}))
    assert (answer.code, answer.json()) == (400, {"message": "invalid filter: 'type'='x'"})
    answer = api.request("GET", "/networks?filters=" + json.dumps({"nope": ["x"]}))
    assert answer.code == 400


@pytest.mark.route("DELETE", "/networks/{id:.*}")
def test_delete():
    api = API()
    create(api, {"Name": "gone"})
    assert api.request("DELETE", "/networks/gone").code == 204
    assert api.request("GET", "/networks/gone").code == 404
    answer = api.request("DELETE", "/networks/gone")
    assert (answer.code, answer.json()) == (404, {"message": "network gone not found"})
    for name in ("bridge", "host", "none"):
        answer = api.request("DELETE", "/networks/" + name)
        assert (answer.code, answer.json()) == (
            403, {"message": "%s is a pre-defined network and cannot be removed" % name})


@pytest.mark.route("POST", "/networks/{id:.*}/connect")
@pytest.mark.route("POST", "/networks/{id:.*}/disconnect")
def test_connect_inspect_in_use_disconnect():
    api = API()
    ident = create(api, {"Name": "app", "IPAM": {"Config": [{"Subnet": "10.218.0.0/24"}]}}).json()["Id"]
    api.request("POST", "/containers/create?name=web", json_body={"Image": "busybox"})
    answer = api.request("POST", "/networks/app/connect",
                         json_body={"Container": "web", "EndpointConfig": {"Aliases": ["www"]}})
    assert answer.code == 200, answer.body
    doc = api.request("GET", "/networks/app").json()
    (cid, ep), = doc["Containers"].items()
    assert ep["Name"] == "web" and ep["IPv4Address"] == "10.218.0.2/24"
    # dockerd's MAC address, made of the IPv4 address, given to netavark.
    assert ep["MacAddress"] == "02:42:0a:da:00:02" and len(ep["EndpointID"]) == 64
    setup = [c for c in api.networks.driver.calls if c[0] == "setup"][-1]
    options = setup[2]
    assert options["networks"][ident[:12]]["static_ips"] == ["10.218.0.2"]
    assert options["networks"][ident[:12]]["static_mac"] == "02:42:0a:da:00:02"
    # The bridge kept when its last container leaves; released with the network.
    assert ("anchor", "br-" + ident[:12]) in api.networks.driver.calls
    assert options["network_info"][ident[:12]]["dns_enabled"] is True
    assert "www" in options["networks"][ident[:12]]["aliases"]
    answer = api.request("DELETE", "/networks/app")
    assert (answer.code, answer.json()) == (
        403, {"message": "error while removing network: network app id %s has active endpoints" % ident})
    assert api.request("POST", "/networks/app/disconnect", json_body={"Container": "web"}).code == 200
    assert api.request("GET", "/networks/app").json()["Containers"] == {}
    assert [c[0] for c in api.networks.driver.calls][-1] == "teardown"
    answer = api.request("POST", "/networks/app/disconnect", json_body={"Container": "web"})
    assert answer.code == 403
    answer = api.request("POST", "/networks/nope/connect", json_body={"Container": "web"})
    assert (answer.code, answer.json()) == (404, {"message": "network nope not found"})
    assert api.request("DELETE", "/networks/app").code == 204


def test_addresses_are_released_and_reused():
    api = API()
    create(api, {"Name": "app", "IPAM": {"Config": [{"Subnet": "10.218.0.0/24"}]}})
    for name in ("a", "b"):
        api.request("POST", "/containers/create?name=" + name, json_body={"Image": "busybox"})
        api.request("POST", "/networks/app/connect", json_body={"Container": name})
    addresses = sorted(e["IPv4Address"] for e in api.request("GET", "/networks/app").json()["Containers"].values())
    assert addresses == ["10.218.0.2/24", "10.218.0.3/24"]
    api.request("POST", "/networks/app/disconnect", json_body={"Container": "a"})
    api.request("POST", "/containers/create?name=c", json_body={"Image": "busybox"})
    answer = api.request("POST", "/networks/app/connect", json_body={
        "Container": "c", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.218.0.3"}}})
    assert (answer.code, answer.json()) == (403, {"message": "Address already in use"})
    answer = api.request("POST", "/networks/app/connect", json_body={
        "Container": "c", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.218.0.2"}}})
    assert answer.code == 200
    answer = api.request("POST", "/networks/app/connect", json_body={"Container": "c"})
    assert answer.code == 403


@pytest.mark.route("POST", "/networks/prune")
def test_prune():
    api = API()
    create(api, {"Name": "keep", "Labels": {"keep": "1"}})
    create(api, {"Name": "drop"})
    answer = api.request("POST", "/networks/prune?filters=" + json.dumps({"label!": ["keep"]}))
    assert (answer.code, answer.json()) == (200, {"NetworksDeleted": ["drop"]})
    answer = api.request("POST", "/networks/prune")
    assert answer.json() == {"NetworksDeleted": ["keep"]}
    assert api.request("POST", "/networks/prune").json() == {"NetworksDeleted": None}
    assert api.request("POST", "/v1.24/networks/prune").code == 400


def test_the_default_bridge_avoids_routed_subnets():
    import ipaddress

    from twistedock.backend.events import EventLog

    from .memory import MemoryNetworks

    routed = MemoryNetworks(EventLog(), routes=lambda: [ipaddress.ip_network("172.17.0.0/16")])
    assert routed.resolve("bridge")["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
    chosen = MemoryNetworks(EventLog(), bip="10.9.0.1/24", bridge="br9")
    bridge = chosen.resolve("bridge")
    assert bridge["IPAM"]["Config"] == [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]
    assert bridge["Interface"] == "br9"
    disabled = MemoryNetworks(EventLog(), bridge="none")
    assert sorted(r["Name"] for r in disabled.networks.values()) == ["host", "none"]
    assert not disabled.default_bridge_enabled


def test_the_daemon_flags(tmp_path):
    from twistedock.tap import Options

    config = str(tmp_path / "daemon.json")
    with open(config, "w") as f:
        f.write("{}")
    options = Options()
    options.parseOptions(["--config-file", config])
    assert (options.config.bridge, options.config.bip, options.config.ip_forward) == ("twistedock0", "", True)
    options = Options()
    options.parseOptions(["--config-file", config, "-b", "br9", "--bip", "10.9.0.1/24", "--ip-forward=false"])
    assert (options.config.bridge, options.config.bip, options.config.ip_forward) == ("br9", "10.9.0.1/24", False)
    with open(config, "w") as f:
        f.write('{"bridge": "none", "ip-forward": false, "mtu": 1400}')
    options = Options()
    options.parseOptions(["--config-file", config])
    assert (options.config.bridge, options.config.ip_forward, options.config.mtu) == ("none", False, 1400)
    options = Options()
    with pytest.raises(Exception) as e:
        options.parseOptions(["--config-file", "/dev/null", "--mtu", "10"])
    assert str(e.value) == "invalid MTU: 10 (at least 68)"


def test_ip_forwarding_is_turned_on(tmp_path):
    from twistedock.daemon import enable_ip_forward

    flag = tmp_path / "ip_forward"
    flag.write_text("0\n")
    enable_ip_forward(str(flag))
    assert flag.read_text() == "1\n"


def test_a_host_interface_that_is_not_a_bridge(tmp_path):
    from twistedock.backend.networks.store import _not_a_bridge

    (tmp_path / "eth0").mkdir()
    (tmp_path / "br0" / "bridge").mkdir(parents=True)
    assert _not_a_bridge("eth0", str(tmp_path))
    assert not _not_a_bridge("br0", str(tmp_path))
    assert not _not_a_bridge("new0", str(tmp_path))


def test_the_mtu_reaches_netavark():
    from twistedock.backend.events import EventLog

    from twisted.internet.defer import ensureDeferred

    from .memory import MemoryNetworks, result_of

    def run_sync(coroutine):
        return result_of(ensureDeferred(coroutine))

    store = MemoryNetworks(EventLog(), mtu=1400)
    bridge = store.resolve("bridge")
    assert bridge["Options"]["com.docker.network.driver.mtu"] == "1400"
    assert store._network_info(bridge)["options"] == {"mtu": "1400"}
    ident = run_sync(store.create({"Name": "n", "Options": {"com.docker.network.driver.mtu": "1300"}}))["Id"]
    assert store._network_info(store.resolve(ident))["options"] == {"mtu": "1300"}
    plain = run_sync(store.create({"Name": "p"}))["Id"]
    assert store._network_info(store.resolve(plain))["options"] == {}


def test_the_default_bridge_follows_the_flags_over_restarts(tmp_path):
    from twistedock.backend.events import EventLog
    from twistedock.backend.networks.store import NetworkStore

    first = NetworkStore(None, str(tmp_path), EventLog(), None, routes=lambda: [])
    first.load()
    ident = first.resolve("bridge")["Id"]
    again = NetworkStore(None, str(tmp_path), EventLog(), None, routes=lambda: [], bridge="br7",
                         bip="10.7.0.1/24", mtu=1400)
    again.load()
    bridge = again.resolve("bridge")
    assert bridge["Id"] == ident and bridge["Interface"] == "br7"
    assert bridge["IPAM"]["Config"] == [{"Subnet": "10.7.0.0/24", "Gateway": "10.7.0.1"}]
    assert bridge["Options"]["com.docker.network.driver.mtu"] == "1400"
    third = NetworkStore(None, str(tmp_path), EventLog(), None, routes=lambda: [], bridge="br7",
                         bip="10.7.0.1/24", mtu=1400)
    third.load()
    assert third.resolve("bridge") == bridge


def test_the_network_flags_and_daemon_json(tmp_path):
    from twistedock.tap import Options

    config = str(tmp_path / "daemon.json")
    with open(config, "w") as f:
        f.write("{}")
    options = Options()
    options.parseOptions(["--config-file", config])
    c = options.config
    assert (c.userland_proxy, c.iptables, c.icc, c.fixed_cidr, c.default_address_pools) == (True, True, True, "", [])
    options = Options()
    options.parseOptions(["--config-file", config, "--userland-proxy=false", "--iptables=false", "--icc=false",
                          "--bip", "10.9.0.1/16", "--fixed-cidr", "10.9.5.0/24",
                          "--default-address-pool", "base=10.10.0.0/16,size=24",
                          "--default-address-pool", "base=10.11.0.0/16,size=26"])
    c = options.config
    assert (c.userland_proxy, c.iptables, c.icc, c.fixed_cidr) == (False, False, False, "10.9.5.0/24")
    assert c.default_address_pools == [{"base": "10.10.0.0/16", "size": 24}, {"base": "10.11.0.0/16", "size": 26}]
    with open(config, "w") as f:
        f.write('{"userland-proxy": false, "iptables": false, "icc": false, "fixed-cidr": "172.30.1.0/24",'
                ' "default-address-pools": [{"base": "10.12.0.0/16", "size": 24}]}')
    options = Options()
    options.parseOptions(["--config-file", config])
    c = options.config
    assert (c.userland_proxy, c.iptables, c.icc, c.fixed_cidr) == (False, False, False, "172.30.1.0/24")
    assert c.default_address_pools == [{"base": "10.12.0.0/16", "size": 24}]
    for bad, message in ((["--default-address-pool", "base=10.10.0.0/16"], "it needs a base CIDR and a size"),
                         (["--default-address-pool", "base=nope,size=24"], "invalid CIDR address: nope"),
                         (["--bip", "10.9.0.1/24", "--fixed-cidr", "10.8.0.0/24"],
                          "fixed-cidr 10.8.0.0/24 is not within the bridge's subnet 10.9.0.0/24")):
        with pytest.raises(Exception) as e:
            Options().parseOptions(["--config-file", "/dev/null"] + bad)
        assert message in str(e.value)


def test_fixed_cidr_pools_and_icc_shape_the_networks():
    from twisted.internet.defer import ensureDeferred

    from twistedock.backend.events import EventLog

    from .memory import MemoryNetworks, result_of

    fixed = MemoryNetworks(EventLog(), bip="10.9.0.1/16", fixed_cidr="10.9.5.0/24", icc=False)
    bridge = fixed.resolve("bridge")
    # libnetwork's IPAM config of the default bridge with --fixed-cidr.
    assert bridge["IPAM"]["Config"] == [{"Subnet": "10.9.0.0/16", "IPRange": "10.9.5.0/24", "Gateway": "10.9.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    alone = MemoryNetworks(EventLog(), fixed_cidr="10.8.3.0/24")
    assert alone.resolve("bridge")["IPAM"]["Config"] == [
        {"Subnet": "10.8.3.0/24", "IPRange": "10.8.3.0/24", "Gateway": "10.8.3.1"}]
    pooled = MemoryNetworks(EventLog(), pools=[{"base": "10.10.0.0/16", "size": 24}])
    assert pooled.resolve("bridge")["IPAM"]["Config"] == [{"Subnet": "10.10.0.0/24", "Gateway": "10.10.0.1"}]
    ident = result_of(ensureDeferred(pooled.create({"Name": "n"})))["Id"]
    assert pooled.resolve(ident)["IPAM"]["Config"] == [{"Subnet": "10.10.1.0/24", "Gateway": "10.10.1.1"}]


def test_without_iptables_netavark_finds_a_firewall_that_changes_nothing(tmp_path):
    import subprocess

    from twistedock.backend.networks.driver import Netavark

    driver = Netavark(None, str(tmp_path / "netavark"), iptables=False, ip_forward=False,
                      ip_forward_path=str(tmp_path / "ip_forward"))
    (tmp_path / "ip_forward").write_text("0\n")
    driver.prepare()
    env = driver._env()
    assert env["PATH"].split(":")[0] == driver.no_firewall_dir
    version = subprocess.run(["iptables", "--version"], env=env, capture_output=True, text=True)
    assert version.stdout.startswith("iptables v1.8.9") and version.returncode == 0
    check = subprocess.run(["iptables", "-t", "nat", "-C", "POSTROUTING", "-j", "X", "--wait"], env=env,
                           capture_output=True, text=True)
    assert (check.returncode, check.stdout) == (0, "")
    # netavark's setup turns IPv4 forwarding on; --ip-forward=false puts it back.
    (tmp_path / "ip_forward").write_text("1\n")
    driver._put_back_ip_forward()
    assert (tmp_path / "ip_forward").read_text() == "0\n"
