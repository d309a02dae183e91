"""Containers and networks in process: the container backend over a fake
runtime and the network store with a driver that changes nothing."""

import json
import os

import pytest

from twistedock.backend.events import EventLog
from twistedock.errors import Forbidden, InvalidParameter, NotFound

from .fake_runtime import World, failure_of, run
from .memory import MemoryNetworks


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path, networks=MemoryNetworks(EventLog()))
    w.backend.networks.containers = w.store  # (the daemon gives it the store it shares)
    return w


def calls(world):
    return [c[0] for c in world.backend.networks.driver.calls]


def settings(world, ref, version="1.51"):
    return run(world.backend.inspect(ref, False, version))["NetworkSettings"]


def test_a_default_container_joins_the_bridge_in_a_namespace_of_its_own(world):
    ident = world.started("web")
    netns = world.backend.netns_path(world.backend.get(ident))
    assert calls(world) == ["remove_netns", "create_netns", "setup", "anchor"]
    options = world.backend.networks.driver.calls[-2][2]
    assert options["networks"]["bridge"]["static_ips"] == ["172.17.0.2"]
    assert options["network_info"]["bridge"]["network_interface"] == "twistedock0"
    with open(os.path.join(world.backend.bundle(world.backend.get(ident)), "config.json")) as f:
        spec = json.load(f)
    assert {"type": "network", "path": netns} in spec["linux"]["namespaces"]
    doc = settings(world, "web")
    assert (doc["IPAddress"], doc["Gateway"], doc["IPPrefixLen"]) == ("172.17.0.2", "172.17.0.1", 16)
    assert doc["Bridge"] == "twistedock0" and doc["SandboxKey"] == netns
    bridge = doc["Networks"]["bridge"]
    assert bridge["IPAddress"] == "172.17.0.2" and bridge["MacAddress"] == "02:42:ac:11:00:02"
    assert bridge["NetworkID"] == world.backend.networks.resolve("bridge")["Id"]
    with open(world.backend.get(ident).path_of("hosts")) as f:
        assert "172.17.0.2\t%s\n" % ident[:12] in f.read()
    # The run ends: the endpoint goes, the namespace too.
    world.runtime.exit(ident, 0)
    world.settle()
    assert calls(world)[-2:] == ["teardown", "remove_netns"]
    assert world.backend.networks.resolve("bridge")["Endpoints"] == {}
    assert settings(world, "web")["IPAddress"] == ""


def test_none_and_host_make_no_endpoint(world):
    for mode in ("none", "host"):
        world.started(mode, {"NetworkMode": mode})
        assert "setup" not in calls(world)
        assert list(settings(world, mode)["Networks"]) == [mode]


def test_a_prepared_restore_keeps_the_namespace_it_made(world, monkeypatch):
    """A run off the bridges whose namespace L{prepare_restore} made (its
    loopback up) takes it as it is; one on a bridge, or whose namespace is
    gone (a sweep after a daemon restart), gets its namespace made."""
    quiet = world.backend.get(world.create("quiet", {"NetworkMode": "none"}))
    web = world.backend.get(world.create("web"))
    mounted = []
    monkeypatch.setattr(os.path, "ismount", lambda path: path in mounted)
    netns = world.backend.netns_path(quiet)
    mounted.append(netns)
    mounted.append(world.backend.netns_path(web))
    assert run(world.backend.network_up(quiet, prepared=True)) == []
    assert world.backend.networks.driver.calls == []
    run(world.backend.network_up(web, prepared=True))
    assert calls(world)[:2] == ["remove_netns", "create_netns"]
    del world.backend.networks.driver.calls[:]
    mounted.remove(netns)
    run(world.backend.network_up(quiet, prepared=True))
    assert world.backend.networks.driver.calls == [
        ("remove_netns", netns), ("create_netns", netns), ("loopback_up", netns)]


def test_none_runs_in_a_namespace_of_the_daemons_with_loopback_up(world):
    """As dockerd's sandbox: runc joins it (CRIU then leaves it out of a
    checkpoint, as external), inspect names it, the run's end removes it."""
    ident = world.started("quiet", {"NetworkMode": "none"})
    netns = world.backend.netns_path(world.backend.get(ident))
    assert world.backend.networks.driver.calls == [
        ("remove_netns", netns), ("create_netns", netns), ("loopback_up", netns)]
    with open(os.path.join(world.backend.bundle(world.backend.get(ident)), "config.json")) as f:
        spec = json.load(f)
    assert {"type": "network", "path": netns} in spec["linux"]["namespaces"]
    assert settings(world, "quiet")["SandboxKey"] == netns
    world.runtime.exit(ident, 0)
    world.settle()
    assert world.backend.networks.driver.calls[-1] == ("remove_netns", netns)
    # Host: none of the daemon's.
    before = len(world.backend.networks.driver.calls)
    world.started("host", {"NetworkMode": "host"})
    assert world.backend.networks.driver.calls[before:] == []


def test_dns_names_from_api_1_44(world):
    ident = world.backend.networks.resolve(run(world.backend.networks.create({"Name": "app"}))["Id"])["Id"]
    world.started("web", {"NetworkMode": "app"})
    ep = settings(world, "web")["Networks"]["app"]
    assert ep["NetworkID"] == ident
    assert ep["DNSNames"] == ["web", world.backend.get("web").id[:12]]
    assert "DNSNames" not in settings(world, "web", "1.41")["Networks"]["app"]
    # It resolves through the embedded address, redirected in its
    # namespace to aardvark-dns on the network's gateway.
    with open(world.backend.get("web").path_of("resolv.conf")) as f:
        assert f.read() == "nameserver 127.0.0.11\noptions ndots:0\n"
    netns = world.backend.netns_path(world.backend.get("web"))
    assert world.backend.networks.driver.calls[-1] == ("redirect_dns", netns, "172.18.0.1")


def test_an_unknown_network_fails_the_start(world):
    world.create("lost", {"NetworkMode": "nope"})
    error = failure_of(world.backend.start("lost"))
    assert isinstance(error, NotFound) and str(error) == "network nope not found"


def test_connect_before_start_joins_both_at_start(world):
    run(world.backend.networks.create({"Name": "app"}))
    world.create("web")
    run(world.backend.connect_network("app", "web", {"Aliases": ["www"]}))
    doc = settings(world, "web")
    assert sorted(doc["Networks"]) == ["app", "bridge"]
    assert doc["Networks"]["app"]["Aliases"] == ["www"] and doc["Networks"]["app"]["NetworkID"] == ""
    run(world.backend.start("web"))
    setup = [c for c in world.backend.networks.driver.calls if c[0] == "setup"][-1][2]
    assert sorted(n["interface_name"] for n in setup["networks"].values()) == ["eth0", "eth1"]
    doc = settings(world, "web")
    assert doc["Networks"]["app"]["IPAddress"] == "172.18.0.2"


def test_connect_and_disconnect_messages_as_dockerd(world):
    run(world.backend.networks.create({"Name": "app"}))
    world.create("private", {"NetworkMode": "none"})
    error = failure_of(world.backend.connect_network("app", "private", {}))
    assert isinstance(error, InvalidParameter)
    assert str(error) == ("container cannot be connected to multiple networks with one of the networks "
                          "in private (none) mode")
    world.create("web")
    error = failure_of(world.backend.connect_network("host", "web", {}))
    assert str(error) == "container cannot be disconnected from host network or connected to host network"
    error = failure_of(world.backend.disconnect_network("app", "web", False))
    assert isinstance(error, Forbidden)
    assert str(error) == "container %s is not connected to the network app" % world.backend.get("web").id


def test_a_running_container_is_connected_and_disconnected(world):
    run(world.backend.networks.create({"Name": "app"}))
    world.started("web")
    c = world.backend.get("web")
    with open(c.path_of("resolv.conf")) as f:
        assert "127.0.0.11" not in f.read()
    run(world.backend.connect_network("app", "web", {}))
    app = world.backend.networks.resolve("app")
    assert list(app["Endpoints"]) == [world.backend.get("web").id]
    # Its first user network: the embedded DNS server from now on, as dockerd.
    redirect = world.backend.networks.driver.calls[-1]
    assert (redirect[0], redirect[2]) == ("redirect_dns", "172.18.0.1")
    with open(c.path_of("resolv.conf")) as f:
        assert f.read() == "nameserver 127.0.0.11\noptions ndots:0\n"
    error = failure_of(world.backend.connect_network("app", "web", {}))
    assert isinstance(error, Forbidden)
    error = failure_of(world.backend.networks.remove("app"))
    assert isinstance(error, Forbidden)
    run(world.backend.disconnect_network("app", "web", False))
    assert app["Endpoints"] == {}
    assert calls(world)[-2:] == ["teardown", "redirect_dns"]
    assert world.backend.networks.driver.calls[-1][2] is None
    run(world.backend.networks.remove("app"))


def test_the_network_of_the_mode_left_and_joined_again(world):
    run(world.backend.networks.create({"Name": "app"}))
    ident = world.started("web", {"NetworkMode": "app"})
    run(world.backend.disconnect_network("app", "web", False))
    assert settings(world, "web")["Networks"] == {}
    assert world.backend.get("web").host_config["NetworkMode"] == "app"
    world.runtime.exit(ident, 0)
    world.settle()
    run(world.backend.start("web"))  # no network: loopback only, in runc's namespace
    assert world.backend.networks.endpoints_of(ident) == []
    world.runtime.exit(ident, 0)
    world.settle()
    run(world.backend.connect_network("app", "web", {}))
    run(world.backend.start("web"))
    assert settings(world, "web")["Networks"]["app"]["IPAddress"] == "172.18.0.2"


def test_the_mode_network_left_and_joined_again_before_start_takes_the_new_settings(world):
    # Compose 1.29 creates with the aliases, disconnects, and connects again
    # with the aliases and the short id before the start.
    run(world.backend.networks.create({"Name": "app"}))
    ident = run(world.backend.create("web", {"Image": "busybox"}, {"NetworkMode": "app"},
                                     {"EndpointsConfig": {"app": {"Aliases": ["web"]}}}, "1.41"))["Id"]
    run(world.backend.disconnect_network("app", "web", False))
    assert settings(world, "web")["Networks"] == {}
    run(world.backend.connect_network("app", "web", {"Aliases": ["web", ident[:12]]}))
    assert settings(world, "web")["Networks"]["app"]["Aliases"] == ["web", ident[:12]]
    run(world.backend.start("web"))
    endpoint = settings(world, "web")["Networks"]["app"]
    assert endpoint["Aliases"] == ["web", ident[:12]] and "web" in endpoint["DNSNames"]


def test_a_renamed_container_is_shown_by_its_new_name(world):
    run(world.backend.networks.create({"Name": "app"}))
    ident = world.started("web", {"NetworkMode": "app"})
    run(world.backend.rename("web", "front"))
    doc = run(world.backend.networks.inspect("app"))
    assert doc["Containers"][ident]["Name"] == "front"
