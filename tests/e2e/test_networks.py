"""Networks with the docker CLI: user networks made and removed as dockerd
does, containers on them reaching each other, the default bridge, the
network modes; nothing left on the host afterwards. Traffic goes only to
the addresses of containers on bridges these tests made."""

import os
import secrets
import subprocess

import pytest

from .test_containers import import_busybox

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="networks need root"),
    pytest.mark.skipif(not any(os.path.exists(p) for p in ("/usr/lib/podman/netavark",
                                                           "/usr/libexec/podman/netavark")),
                       reason="netavark is not installed"),
]

TAG = secrets.token_hex(3)
BRIDGE = "tdb" + TAG


def host_state() -> str:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return links + rules


@pytest.fixture(scope="module")
def daemon(module_daemons, tmp_path_factory):
    d = module_daemons.start("--bridge=" + BRIDGE)
    import_busybox(d, tmp_path_factory.mktemp("img"))
    yield d
    d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)


def subnet(n: int) -> str:
    # A test-only subnet, different per run so that parallel runs do not meet.
    return "10.%d.%d.0/24" % (200 + n, int(TAG[:2], 16))


def test_network_create_ls_inspect_rm(daemon):
    name = "n" + TAG
    ident = daemon.docker("network", "create", "--subnet", subnet(0), "--label", "k=v", name).stdout.strip()
    assert len(ident) == 64
    doc = daemon.docker_json("network", "inspect", name, format="{{json .}}")
    assert doc["IPAM"]["Config"] == [{"Subnet": subnet(0)}]
    assert doc["Labels"] == {"k": "v"} and doc["Driver"] == "bridge"
    listed = daemon.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.split("\n")
    assert "%s bridge" % name in listed and "bridge bridge" in listed and "none null" in listed
    result = daemon.docker("network", "create", name, check=False)
    assert result.returncode == 1
    assert result.stderr == "Error response from daemon: network with name %s already exists\n" % name
    result = daemon.docker("network", "create", "--subnet", subnet(0), name + "x", check=False)
    assert result.stderr == "Error response from daemon: Pool overlaps with other one on this address space\n"
    result = daemon.docker("network", "create", "-o", "com.docker.network.bridge.name=lo", name + "lo", check=False)
    assert result.stderr == "Error response from daemon: the host's interface lo is not a bridge\n"
    result = daemon.docker("network", "rm", "bridge", check=False)
    assert result.stderr.startswith(
        "Error response from daemon: bridge is a pre-defined network and cannot be removed\n")
    assert daemon.docker("network", "rm", name).stdout == name + "\n"
    result = daemon.docker("network", "rm", name, check=False)
    assert result.stderr.startswith("Error response from daemon: network %s not found\n" % name)


def test_two_containers_on_a_user_network(daemon):
    name, before = "app" + TAG, host_state()
    daemon.docker("network", "create", "--subnet", subnet(1), name)
    try:
        daemon.docker("run", "-d", "--name", "web" + TAG, "--network", name, "--network-alias", "www",
                      "busybox", "sleep", "60")
        settings = daemon.docker_json("inspect", "web" + TAG, format="{{json .NetworkSettings.Networks}}")
        ep = settings[name]
        prefix = subnet(1).rsplit(".", 1)[0]
        assert ep["IPAddress"] == prefix + ".2" and ep["Gateway"] == prefix + ".1"
        assert ep["IPPrefixLen"] == 24 and len(ep["MacAddress"]) == 17
        assert "www" in ep["Aliases"]
        result = daemon.docker("run", "--rm", "--network", name, "busybox", "ping", "-c1", "-W2", ep["IPAddress"])
        assert "1 packets received" in result.stdout
        result = daemon.docker("network", "rm", name, check=False)
        assert result.stderr.startswith("Error response from daemon: error while removing network: "
                                        "network %s id " % name)
        out = daemon.docker("run", "--rm", "--network", name, "busybox", "cat", "/etc/hosts").stdout
        assert prefix + ".3\t" in out
    finally:
        daemon.docker("rm", "-f", "web" + TAG, check=False)
        daemon.docker("network", "rm", name, check=False)
    after = host_state()
    assert name not in after
    assert subnet(1) not in after
    # No container's veth left on this daemon's bridges (other daemons on
    # the host come and go meanwhile).
    mine = [l for l in after.splitlines() if "veth" in l and ("master %s " % BRIDGE in l or "master br-" in l
                                                                 and name in l)]
    assert mine == [l for l in before.splitlines() if "veth" in l and "master %s " % BRIDGE in l]


def test_the_default_bridge_and_none(daemon):
    bridge = daemon.docker_json("network", "inspect", "bridge", format="{{json .}}")
    assert bridge["Options"]["com.docker.network.bridge.name"] == BRIDGE
    out = daemon.docker("run", "--rm", "busybox", "ip", "-o", "-4", "addr").stdout
    assert " eth0 " in out
    out = daemon.docker("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    out = daemon.docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link").stdout
    # The host's own interfaces (veths of other daemons come and go).
    names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    assert {line.split(":")[1].strip().split("@")[0] for line in host_links.splitlines()
            if "veth" not in line} <= names
    result = daemon.docker("run", "--rm", "--network", "nope" + TAG, "busybox", "true", check=False)
    assert result.returncode == 125
    assert "Error response from daemon: network nope%s not found" % TAG in result.stderr
    # The bridge stays while the daemon runs, as dockerd's docker0, with no
    # container's veth left on it (only the port that keeps it).
    ports = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True).stdout
    assert [line.split(":")[1].strip().split("@")[0][:4] for line in ports.splitlines()] == ["tdka"]


def test_container_mode_shares_the_namespace(daemon):
    daemon.docker("run", "-d", "--name", "ns" + TAG, "busybox", "sleep", "60")
    try:
        mine = daemon.docker("run", "--rm", "busybox", "true")  # (a run that came and went)
        assert mine.returncode == 0
        ip = daemon.docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "ns" + TAG).stdout.strip()
        out = daemon.docker("run", "--rm", "--network", "container:ns" + TAG, "busybox",
                            "ip", "-o", "-4", "addr").stdout
        assert ip and (ip + "/") in out
    finally:
        daemon.docker("rm", "-f", "ns" + TAG, check=False)


def test_connect_and_disconnect_a_running_container(daemon):
    name = "c" + TAG
    daemon.docker("network", "create", "--subnet", subnet(2), name)
    try:
        daemon.docker("run", "-d", "--name", "r" + TAG, "--network", "none", "busybox", "sleep", "60")
        result = daemon.docker("network", "connect", name, "r" + TAG, check=False)
        assert result.returncode == 1  # none mode cannot join another network, as dockerd
        daemon.docker("rm", "-f", "r" + TAG)
        daemon.docker("run", "-d", "--name", "r" + TAG, "busybox", "sleep", "60")
        daemon.docker("network", "connect", name, "r" + TAG)
        out = daemon.docker("exec", "r" + TAG, "ip", "-o", "-4", "addr").stdout
        assert subnet(2).rsplit(".", 1)[0] + ".2/24" in out
        daemon.docker("network", "disconnect", name, "r" + TAG)
        out = daemon.docker("exec", "r" + TAG, "ip", "-o", "-4", "addr").stdout
        assert subnet(2).rsplit(".", 1)[0] not in out
        prefix = subnet(2).rsplit(".", 1)[0]
        out = daemon.docker("run", "--rm", "--network", name, "--ip", prefix + ".77", "--mac-address",
                            "02:42:0a:0b:0c:0d", "busybox", "sh", "-c",
                            "ip -o -4 addr show eth0; cat /sys/class/net/eth0/address").stdout
        assert prefix + ".77/24" in out and "02:42:0a:0b:0c:0d" in out
        # A container created, connected, then started joins both networks.
        daemon.docker("create", "--name", "s" + TAG, "busybox", "sleep", "60")
        daemon.docker("network", "connect", "--alias", "second", name, "s" + TAG)
        daemon.docker("start", "s" + TAG)
        networks = daemon.docker_json("inspect", "s" + TAG, format="{{json .NetworkSettings.Networks}}")
        assert sorted(networks) == ["bridge", name]
        assert networks[name]["IPAddress"].startswith(subnet(2).rsplit(".", 1)[0] + ".")
        assert networks[name]["Aliases"] == ["second"]
        out = daemon.docker("exec", "s" + TAG, "ip", "-o", "-4", "addr").stdout
        assert " eth0 " in out and " eth1 " in out
    finally:
        daemon.docker("rm", "-f", "r" + TAG, "s" + TAG, check=False)
        daemon.docker("network", "rm", name, check=False)


def test_names_resolve_on_a_user_network(daemon):
    name = "d" + TAG
    daemon.docker("network", "create", "--subnet", subnet(3), name)
    try:
        daemon.docker("run", "-d", "--name", "srv" + TAG, "--network", name, "--network-alias", "alias" + TAG,
                      "busybox", "sh", "-c", "echo served > /tmp/index.html; httpd -f -p 80 -h /tmp")
        short = daemon.docker("inspect", "--format", "{{.Id}}", "srv" + TAG).stdout[:12]
        script = ("ping -c1 -W2 srv%s && ping -c1 -W2 %s && wget -qO- http://alias%s/"
                  % (TAG, short, TAG))
        result = daemon.docker("run", "--rm", "--network", name, "busybox", "sh", "-c", script, check=False)
        assert result.stdout.count("1 packets received") == 2, result.stdout + result.stderr
        assert result.stdout.endswith("served\n")
    finally:
        daemon.docker("rm", "-f", "srv" + TAG, check=False)
        daemon.docker("network", "rm", name, check=False)
    # aardvark-dns (started by netavark for the network) is gone with it.
    assert not subprocess.run(["pgrep", "-f", "aardvark-dns --config " + daemon.exec_root],
                              capture_output=True).stdout


def test_networks_outlive_a_daemon_restart(daemon):
    name = "k" + TAG
    ident = daemon.docker("network", "create", "--subnet", subnet(4), name).stdout.strip()
    bridge = daemon.docker_json("network", "inspect", "bridge", format="{{json .}}")
    try:
        daemon.stop()
        daemon.start()
        assert daemon.docker("network", "inspect", "--format", "{{.Id}}", name).stdout.strip() == ident
        again = daemon.docker_json("network", "inspect", "bridge", format="{{json .}}")
        assert (again["Id"], again["IPAM"]) == (bridge["Id"], bridge["IPAM"])
        out = daemon.docker("run", "--rm", "--network", name, "busybox", "ip", "-o", "-4", "addr").stdout
        assert subnet(4).rsplit(".", 1)[0] + ".2/24" in out
    finally:
        daemon.docker("network", "rm", name, check=False)


def test_a_daemon_kill_leaves_nothing_behind(daemon):
    import signal

    name = "q" + TAG
    daemon.docker("network", "create", "--subnet", subnet(5), name)
    try:
        daemon.docker("run", "-d", "--name", name, "--network", name, "busybox", "sleep", "60")
        ip = daemon.docker("inspect", "--format", "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % name,
                           name).stdout.strip()
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.wait_exit()
        daemon.start()
        # Without --live-restore the daemon stops what it finds running, and
        # tears its network down.
        assert daemon.docker("inspect", "--format", "{{.State.Running}}", name).stdout == "false\n"
        assert daemon.docker_json("network", "inspect", name, format="{{json .Containers}}") == {}
        assert subnet(5) not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
        daemon.docker("start", name)
        doc = daemon.docker_json("network", "inspect", name, format="{{json .Containers}}")
        assert [e["IPv4Address"] for e in doc.values()] == [ip + "/24"]
        result = daemon.docker("run", "--rm", "--network", name, "busybox", "ping", "-c1", "-W2", name)
        assert "1 packets received" in result.stdout
    finally:
        daemon.docker("rm", "-f", name, check=False)
        daemon.docker("network", "rm", name, check=False)
    assert subnet(5) not in host_state()


def test_with_live_restore_a_running_container_keeps_its_network(daemons, tmp_path):
    import signal

    d = daemons.start("--bridge=tdl" + TAG, "--live-restore")
    import_busybox(d, tmp_path)
    name = "v" + TAG
    d.docker("network", "create", "--subnet", subnet(6), name)
    try:
        d.docker("run", "-d", "--name", name, "--network", name, "-p", "127.0.0.1::80", "busybox", "sh", "-c",
                 "echo hello > /tmp/index.html; httpd -f -p 80 -h /tmp")
        port = int(d.docker("port", name).stdout.strip().rsplit(":", 1)[1])
        d.proc.send_signal(signal.SIGKILL)
        d.wait_exit()
        d.start()
        assert d.docker("inspect", "--format", "{{.State.Running}}", name).stdout == "true\n"
        result = d.docker("run", "--rm", "--network", name, "busybox", "ping", "-c1", "-W2", name)
        assert "1 packets received" in result.stdout
        # The published port is served again by the new daemon.
        assert wait_for_text(lambda: _get(port)) == "hello\n"
    finally:
        d.docker("rm", "-f", name, check=False)
        d.docker("network", "rm", name, check=False)
    assert subnet(6) not in host_state()


def _get(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as answer:
        return answer.read().decode()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_published_ports(daemon):
    name = "p" + TAG
    before = host_state()
    cmd = ["busybox", "sh", "-c", "echo hello > /tmp/index.html; httpd -f -p 80 -h /tmp"]
    daemon.docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", *cmd)
    fixed = _free_port()
    try:
        ports = daemon.docker_json("inspect", name, format="{{json .NetworkSettings.Ports}}")
        (binding,) = ports["80/tcp"]
        assert binding["HostIp"] == "127.0.0.1"
        port = int(binding["HostPort"])
        assert daemon.docker("port", name).stdout == "80/tcp -> 127.0.0.1:%d\n" % port
        assert "127.0.0.1:%d->80/tcp" % port in daemon.docker("ps", "--filter", "name=" + name).stdout
        assert wait_for_text(lambda: _get(port)) == "hello\n"
        daemon.docker("run", "-d", "--name", name + "f", "-p", "127.0.0.1:%d:80" % fixed, *cmd)
        assert wait_for_text(lambda: _get(fixed)) == "hello\n"
        result = daemon.docker("run", "-d", "--name", name + "g", "-p", "127.0.0.1:%d:80" % fixed, *cmd,
                               check=False)
        assert result.returncode != 0
        assert "Bind for 127.0.0.1:%d failed: port is already allocated" % fixed in result.stderr
        daemon.docker("stop", "-t", "0", name + "f")
        assert ("%d" % fixed) not in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    finally:
        daemon.docker("rm", "-f", name, name + "f", name + "g", check=False)
    assert host_state().count("DNAT") == before.count("DNAT")


def wait_for_text(fetch, attempts: int = 50) -> str:
    import time

    for _ in range(attempts):
        try:
            return fetch()
        except OSError:
            time.sleep(0.1)
    return fetch()


def test_links_and_host_gateway_on_the_default_bridge(daemon):
    daemon.docker("run", "-d", "--name", "l" + TAG, "busybox", "sleep", "60")
    try:
        ip = daemon.docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "l" + TAG).stdout.strip()
        gateway = daemon.docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}",
                                "bridge").stdout.strip()
        hosts = daemon.docker("run", "--rm", "--link", "l%s:db" % TAG, "--add-host", "gw:host-gateway",
                              "busybox", "cat", "/etc/hosts").stdout
        assert "%s\tdb " % ip in hosts and ("l" + TAG) in hosts
        assert "%s\tgw\n" % gateway in hosts
        result = daemon.docker("run", "--rm", "--link", "l%s:db" % TAG, "busybox", "ping", "-c1", "-W2", "db")
        assert "1 packets received" in result.stdout
    finally:
        daemon.docker("rm", "-f", "l" + TAG, check=False)


def test_docker_py_networks(daemon):
    import docker

    client = docker.DockerClient(base_url=daemon.host, timeout=30)
    name = "py" + TAG
    pool = docker.types.IPAMPool(subnet=subnet(7), iprange=subnet(7).replace(".0/24", ".128/25"))
    net = client.networks.create(name, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                                 labels={"app": "py"})
    try:
        assert client.networks.get(name).attrs["Labels"] == {"app": "py"}
        assert [n.name for n in client.networks.list(names=[name])] == [name]
        container = client.containers.run("busybox", ["sleep", "60"], name=name, network=name, detach=True)
        net.reload()
        assert [c.name for c in net.containers] == [name]
        address = net.attrs["Containers"][container.id]["IPv4Address"]
        assert address.startswith(subnet(7).replace(".0/24", ".128"))
        with pytest.raises(docker.errors.APIError) as e:
            net.remove()
        assert e.value.status_code == 403
        net.disconnect(container)
        container.reload()
        assert name not in container.attrs["NetworkSettings"]["Networks"]
        net.connect(container, aliases=["again"], ipv4_address=subnet(7).replace(".0/24", ".200"))
        container.reload()
        assert container.attrs["NetworkSettings"]["Networks"][name]["IPAddress"] == subnet(7).replace(".0/24", ".200")
        container.remove(force=True)
        assert client.networks.prune(filters={"label": "app=py"})["NetworksDeleted"] == [name]
    finally:
        try:
            client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        try:
            client.networks.get(name).remove()
        except docker.errors.NotFound:
            pass
        client.close()
