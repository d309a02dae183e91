"""Name resolution in process: resolv.conf as dockerd 20.10 writes it, the
embedded DNS address's redirection rules, aardvark-dns's entries renamed,
the upstream servers given to it."""

import json
import os

import pytest

from twistedock.backend.events import EventLog
from twistedock.backend.containers import links
from twistedock.backend.networks import driver, resolvconf
from twistedock.errors import InternalError, NotFound

from .fake_runtime import World, failure_of, run
from .memory import MemoryNetworks


def test_the_host_file_filtered_as_dockerd():
    host = "# made by hand\nnameserver 10.0.0.2\nnameserver 127.0.0.53\nsearch example.org\noptions edns0\n"
    assert resolvconf.container_file(host) == "# made by hand\nnameserver 10.0.0.2\nsearch example.org\noptions edns0\n"
    # Only loopback resolvers: Google's, as dockerd.
    assert resolvconf.container_file("nameserver 127.0.0.53\n") == "\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert resolvconf.container_file("nameserver 10.0.0.2\nnameserver fd00::1\n") == "nameserver 10.0.0.2\n"


def test_a_file_built_from_the_options_as_dockerd():
    host = "nameserver 10.0.0.2\nsearch example.org\noptions edns0\n"
    assert resolvconf.container_file(host, ["1.2.3.4"], ["foo.com"], ["ndots:2"]) == (
        "search foo.com\nnameserver 1.2.3.4\noptions ndots:2\n")
    # What is not given comes from the host's file; "." searches nothing.
    assert resolvconf.container_file(host, (), ["."], ()) == "nameserver 10.0.0.2\noptions edns0\n"
    assert resolvconf.container_file(host, ["1.2.3.4"]) == "search example.org\nnameserver 1.2.3.4\noptions edns0\n"


def test_the_embedded_server_in_resolv_conf_as_dockerd():
    # (dockerd 20.10 on a user network, --dns 1.2.3.4 --dns-search foo.com.)
    text = resolvconf.container_file("nameserver 10.0.0.2\n", ["1.2.3.4"], ["foo.com"])
    assert resolvconf.embedded_file(text) == "search foo.com\nnameserver 127.0.0.11\noptions ndots:0\n"
    text = resolvconf.container_file("nameserver 10.0.0.2\n", (), ["."], ["ndots:2", "rotate"])
    assert resolvconf.embedded_file(text) == "nameserver 127.0.0.11\noptions ndots:2 rotate\n"


def test_the_upstream_servers():
    host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fd00::1\n"
    # The embedded server forwards from the host's namespace: its loopback
    # resolvers answer there.
    assert resolvconf.external_servers(host) == ["127.0.0.53", "10.0.0.2"]
    assert resolvconf.external_servers(host, ["9.9.9.9"]) == ["9.9.9.9"]


def test_the_redirection_rules():
    rules = driver.dns_rules("172.18.0.1")
    assert "-A OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 172.18.0.1:53" in rules
    assert "-A OUTPUT -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 172.18.0.1:53" in rules
    assert "-A POSTROUTING -s 127.0.0.0/8 -d 172.18.0.1/32 -j MASQUERADE" in rules
    assert rules.startswith("*nat\n") and rules.endswith("COMMIT\n")
    # None: the table emptied.
    assert "-A " not in driver.dns_rules(None)


def test_an_aardvark_entry_renamed(tmp_path):
    ident = "a" * 64
    path = tmp_path / "net1"
    path.write_text("10.1.0.1\n%s 10.1.0.2  web,%s,www,web.app 10.0.0.2\n%s 10.1.0.3  other\n"
                    % (ident, ident[:12], "b" * 64))
    driver.rename_entry(str(tmp_path), "net1", ident, "web", "front")
    assert path.read_text() == ("10.1.0.1\n%s 10.1.0.2  front,%s,www,front.app 10.0.0.2\n%s 10.1.0.3  other\n"
                                % (ident, ident[:12], "b" * 64))
    driver.rename_entry(str(tmp_path), "gone", ident, "web", "front")  # (no file: nothing to do)


@pytest.fixture
def world(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.77\nsearch example.org\n")
    w = World(tmp_path, networks=MemoryNetworks(EventLog(), resolv_conf=str(resolv)))
    w.backend.networks.containers = w.store
    return w


def test_upstream_servers_given_to_netavark(world):
    run(world.backend.networks.create({"Name": "app"}))
    world.started("web", {"NetworkMode": "app"})
    setup = [c for c in world.backend.networks.driver.calls if c[0] == "setup"][-1][2]
    assert setup["dns_servers"] == ["127.0.0.77"]
    short = world.backend.get("web").id[:12]
    (options,) = setup["networks"].values()
    assert options["aliases"] == [short, "web.app", short + ".app"]
    with open(world.backend.get("web").path_of("resolv.conf")) as f:
        assert f.read() == "search example.org\nnameserver 127.0.0.11\noptions ndots:0\n"
    world.started("own", {"NetworkMode": "app", "Dns": ["10.9.9.9"], "DnsSearch": ["a.b"]})
    setup = [c for c in world.backend.networks.driver.calls if c[0] == "setup"][-1][2]
    assert setup["dns_servers"] == ["10.9.9.9"]
    with open(world.backend.get("own").path_of("resolv.conf")) as f:
        assert f.read() == "search a.b\nnameserver 127.0.0.11\noptions ndots:0\n"


def test_the_default_bridge_has_no_embedded_server(world):
    world.started("web")
    with open(world.backend.get("web").path_of("resolv.conf")) as f:
        # (The host's only resolver is on loopback: dockerd's fallback.)
        assert f.read() == "search example.org\n\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert "redirect_dns" not in [c[0] for c in world.backend.networks.driver.calls]


def test_a_rename_renames_the_dns_entries(world):
    run(world.backend.networks.create({"Name": "app"}))
    ident = world.started("web", {"NetworkMode": "app"})
    run(world.backend.rename("web", "front"))
    app = world.backend.networks.resolve("app")
    assert world.backend.networks.driver.calls[-1] == ("rename_dns", app["Id"][:12], ident, "web", "front")
    ep = app["Endpoints"][ident]
    assert ep["Name"] == "front" and ep["DNSNames"] == ["front", ident[:12]]
    doc = run(world.backend.inspect("front", False, "1.51"))["NetworkSettings"]["Networks"]["app"]
    assert doc["DNSNames"] == ["front", ident[:12]]
    # The teardown at the run's end names the container by its new name.
    world.runtime.exit(ident, 0)
    world.settle()
    teardown = [c for c in world.backend.networks.driver.calls if c[0] == "teardown"][-1][2]
    assert teardown["container_name"] == "front"
    assert not os.path.exists(world.backend.netns_path(world.backend.get(ident)))


def test_link_variables_as_dockerd():
    env = links.link_env("/app/db", "172.17.0.2", ["80/tcp", "53/udp"], ["FOO=bar", "PATH=/bin", "HOME=/", "X"])
    assert env == [
        "DB_PORT=udp://172.17.0.2:53",
        "DB_PORT_53_UDP=udp://172.17.0.2:53", "DB_PORT_53_UDP_ADDR=172.17.0.2", "DB_PORT_53_UDP_PORT=53",
        "DB_PORT_53_UDP_PROTO=udp",
        "DB_PORT_80_TCP=tcp://172.17.0.2:80", "DB_PORT_80_TCP_ADDR=172.17.0.2", "DB_PORT_80_TCP_PORT=80",
        "DB_PORT_80_TCP_PROTO=tcp",
        "DB_NAME=/app/db", "DB_ENV_FOO=bar",
    ]
    # Contiguous ports: a range's START and END as well.
    env = links.link_env("/app/my-db", "10.0.0.2", ["8000/tcp", "8001/tcp", "8002/tcp"], [])
    assert env[:7] == [
        "MY_DB_PORT=tcp://10.0.0.2:8000",
        "MY_DB_PORT_8000_TCP_START=tcp://10.0.0.2:8000", "MY_DB_PORT_8000_TCP_ADDR=10.0.0.2",
        "MY_DB_PORT_8000_TCP_PROTO=tcp", "MY_DB_PORT_8000_TCP_PORT_START=8000",
        "MY_DB_PORT_8000_TCP_END=tcp://10.0.0.2:8002", "MY_DB_PORT_8000_TCP_PORT_END=8002",
    ]
    assert env[-1] == "MY_DB_NAME=/app/my-db" and len(env) == 7 + 12 + 1


def test_links_give_variables_and_are_removed_as_dockerd(world):
    db = world.started("db", {}, Env=["SECRET=x"], ExposedPorts={"80/tcp": {}})
    app = world.started("app", {"Links": ["db:data"]})
    with open(os.path.join(world.backend.bundle(world.backend.get(app)), "config.json")) as f:
        env = json.load(f)["process"]["env"]
    assert "DATA_PORT_80_TCP=tcp://172.17.0.2:80" in env and "DATA_ENV_SECRET=x" in env
    # After PATH and HOSTNAME, before the container's own, as dockerd.
    assert env[0].startswith("PATH=") and env[1].startswith("HOSTNAME=") and env[2].startswith("DATA_PORT=")
    assert "DATA_NAME=/app/data" in env
    doc = run(world.backend.inspect("app", False, "1.41"))
    assert doc["HostConfig"]["Links"] == ["/db:/app/data"]
    for ref, kind, message in (
        ("app", InternalError, "Conflict, cannot remove the default link name of the container"),
        ("app/nope", NotFound, "No such container: app/nope"),
    ):
        error = failure_of(world.backend.remove(ref, False, False, link=True))
        assert isinstance(error, kind) and str(error) == message
    run(world.backend.remove("app/data", False, False, link=True))
    assert run(world.backend.inspect("app", False, "1.41"))["HostConfig"]["Links"] is None
    error = failure_of(world.backend.remove("app/data", False, False, link=True))
    assert isinstance(error, NotFound) and str(error) == "No such container: app/data"
    assert world.backend.get(db).state.running


def test_dual_stack_user_networks(world):
    networks = world.backend.networks
    ident = run(networks.create({"Name": "v6", "EnableIPv6": True,
                                 "IPAM": {"Config": [{"Subnet": "fd42:1:2::/64"}]}}))["Id"]
    record = networks.resolve(ident)
    # An IPv4 subnet chosen first, as dockerd; the IPv6 one as given.
    assert record["EnableIPv6"] is True
    assert record["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"},
                                        {"Subnet": "fd42:1:2::/64"}]
    cid = world.started("web", {"NetworkMode": "v6"})
    setup = [c for c in networks.driver.calls if c[0] == "setup"][-1][2]
    assert setup["networks"][ident[:12]]["static_ips"] == ["172.18.0.2", "fd42:1:2::2"]
    info = setup["network_info"][ident[:12]]
    assert info["ipv6_enabled"] is True
    assert info["subnets"][1] == {"subnet": "fd42:1:2::/64", "gateway": "fd42:1:2::1"}
    ep = settings(world, "web")["Networks"]["v6"]
    assert (ep["GlobalIPv6Address"], ep["GlobalIPv6PrefixLen"], ep["IPv6Gateway"]) == ("fd42:1:2::2", 64,
                                                                                        "fd42:1:2::1")
    doc = run(networks.inspect("v6"))
    assert doc["Containers"][cid]["IPv6Address"] == "fd42:1:2::2/64"
    with open(world.backend.get(cid).path_of("hosts")) as f:
        assert "fd42:1:2::2\t%s\n" % cid[:12] in f.read()
    # A static IPv6 address.
    world.create("fixed")
    run(world.backend.connect_network("v6", "fixed", {"IPAMConfig": {"IPv6Address": "fd42:1:2::99"}}))
    run(world.backend.start("fixed"))
    assert settings(world, "fixed")["Networks"]["v6"]["GlobalIPv6Address"] == "fd42:1:2::99"
    error = failure_of(networks.create({"Name": "v4only", "EnableIPv6": True,
                                        "IPAM": {"Config": [{"Subnet": "10.77.0.0/24"}]}}))
    assert isinstance(error, NotFound)
    # An IPv6 subnet without EnableIPv6: kept, not used (as dockerd).
    run(networks.create({"Name": "off", "IPAM": {"Config": [{"Subnet": "fd42:9::/64"}]}}))
    world.started("plain", {"NetworkMode": "off"})
    assert settings(world, "plain")["Networks"]["off"]["GlobalIPv6Address"] == ""


def settings(world, ref):
    return run(world.backend.inspect(ref, False, "1.51"))["NetworkSettings"]


def test_a_container_mode_container_resolves_as_the_other(world):
    run(world.backend.networks.create({"Name": "app"}))
    web = world.started("web", {"NetworkMode": "app"})
    side = world.started("side", {"NetworkMode": "container:" + web})
    # The joiner reads the other's own file (dockerd binds it).
    path = run(world.backend.inspect(side, False, "1.51"))["ResolvConfPath"]
    assert path == world.backend.get(web).path_of("resolv.conf")
    with open(path) as f:
        assert f.read() == "search example.org\nnameserver 127.0.0.11\noptions ndots:0\n"
