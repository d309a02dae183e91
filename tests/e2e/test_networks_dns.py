"""Name resolution with the docker CLI: the embedded DNS address 127.0.0.11
on user networks (names, aliases, short IDs; other names forwarded to the
resolvers of the daemon's resolv.conf, here name servers this module starts
on loopback), rename, connect and disconnect, a daemon restart; the default
bridge's legacy links. Traffic goes only to loopback and to containers on
bridges these tests made."""

import os
import random
import secrets
import subprocess
import sys
import time

import pytest

from .test_containers import busybox_rootfs_tar

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="networks need root"),
    pytest.mark.skipif(not any(os.path.exists(p) for p in ("/usr/lib/podman/netavark",
                                                           "/usr/libexec/podman/netavark")),
                       reason="netavark is not installed"),
]

TAG = secrets.token_hex(3)
BRIDGE = "tdd" + TAG


def subnet(n: int) -> str:
    return "10.%d.%d.0/24" % (220 + n, int(TAG[:2], 16))


class NameServer:
    """A twisted.names server on a loopback address's port 53 answering
    from a hosts file (the embedded server forwards to port 53)."""

    def __init__(self, directory, names: dict) -> None:
        self.address = "127.0.%d.%d" % (random.randint(100, 250), random.randint(2, 250))
        hosts = directory / ("hosts-" + self.address)
        hosts.write_text("".join("%s %s\n" % (ip, name) for name, ip in names.items()))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twisted", "dns", "--interface", self.address, "--port", "53",
             "--hosts-file", str(hosts)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            found = subprocess.run(["ss", "-uln", "src", self.address], capture_output=True, text=True).stdout
            if ":53 " in found:
                break
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dns")
    host = NameServer(directory, {"up%s.test" % TAG: "192.0.2.55"})
    own = NameServer(directory, {"own%s.test" % TAG: "192.0.2.66"})
    resolv = directory / "resolv.conf"
    resolv.write_text("nameserver %s\n" % host.address)
    yield str(resolv), host, own
    host.stop()
    own.stop()


@pytest.fixture(scope="module")
def daemon(module_daemons, tmp_path_factory, upstream):
    # The daemon's resolvers: the module's name server, not the host's.
    previous = os.environ.get("TWISTEDOCK_RESOLV_CONF")
    os.environ["TWISTEDOCK_RESOLV_CONF"] = upstream[0]
    try:
        d = module_daemons.start("--bridge=" + BRIDGE)
        tar = busybox_rootfs_tar(tmp_path_factory.mktemp("img"))
        with open(tar, "rb") as f:
            result = subprocess.run(["docker", "import", "-c", "EXPOSE 80/tcp 53/udp", "-c", "ENV FOO=bar", "-",
                                     "busybox:latest"], stdin=f, env=d.cli_env(), capture_output=True, text=True,
                                    timeout=60)
        assert result.returncode == 0, result.stderr
        yield d
        d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)
    finally:
        if previous is None:
            os.environ.pop("TWISTEDOCK_RESOLV_CONF", None)
        else:
            os.environ["TWISTEDOCK_RESOLV_CONF"] = previous


def host_state() -> str:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return links + rules


def lookup(daemon, network: str, name: str, *args: str) -> str:
    """The address busybox's nslookup gets for C{name} ("" if none)."""
    result = daemon.docker("run", "--rm", "--network", network, *args, "busybox", "nslookup", name, check=False)
    answers = result.stdout.split("Name:", 1)[1:] if "Name:" in result.stdout else []
    for line in "".join(answers).splitlines():
        if line.startswith("Address"):
            return line.split()[-1]
    return ""


def test_names_aliases_ids_and_upstream_names(daemon, upstream):
    name = "n" + TAG
    ident = daemon.docker("network", "create", "--subnet", subnet(0), name).stdout.strip()
    try:
        daemon.docker("run", "-d", "--name", "web" + TAG, "--network", name, "--network-alias", "www" + TAG,
                      "busybox", "sh", "-c", "echo served > /tmp/index.html; httpd -f -p 80 -h /tmp")
        ident = daemon.docker("inspect", "--format", "{{.Id}}", "web" + TAG).stdout.strip()
        ip = subnet(0).replace(".0/24", ".2")
        out = daemon.docker("run", "--rm", "--network", name, "busybox", "cat", "/etc/resolv.conf").stdout
        assert out == "nameserver 127.0.0.11\noptions ndots:0\n"
        for each in ("web" + TAG, "www" + TAG, ident[:12], "web%s.%s" % (TAG, name), "www%s.%s" % (TAG, name)):
            assert lookup(daemon, name, each) == ip, each
        script = "ping -c1 -W2 www%s && wget -qO- http://web%s/" % (TAG, TAG)
        result = daemon.docker("run", "--rm", "--network", name, "busybox", "sh", "-c", script, check=False)
        assert "1 packets received" in result.stdout and result.stdout.endswith("served\n"), result.stderr
        # Other names: the daemon's resolvers; with --dns, those.
        assert lookup(daemon, name, "up%s.test" % TAG) == "192.0.2.55"
        own = upstream[2].address
        assert lookup(daemon, name, "own%s.test" % TAG, "--dns", own) == "192.0.2.66"
        assert lookup(daemon, name, "up%s.test" % TAG, "--dns", own) == ""
        out = daemon.docker("run", "--rm", "--network", name, "--dns", own, "--dns-search", "example.org",
                            "--dns-option", "ndots:2", "busybox", "cat", "/etc/resolv.conf").stdout
        assert out == "search example.org\nnameserver 127.0.0.11\noptions ndots:2\n"
        # A rename: the old name no longer resolves, the new one does.
        daemon.docker("rename", "web" + TAG, "front" + TAG)
        assert lookup(daemon, name, "front" + TAG) == ip
        assert lookup(daemon, name, "front%s.%s" % (TAG, name)) == ip
        assert lookup(daemon, name, "web" + TAG) == ""
    finally:
        daemon.docker("rm", "-f", "web" + TAG, "front" + TAG, check=False)
        daemon.docker("network", "rm", name, check=False)
    # Nothing left: the bridge (and the veths on it), the rules, the
    # namespaces, aardvark-dns. (Other daemons may share the host: only
    # what this network made is looked for.)
    after = host_state()
    assert subnet(0) not in after and ("br-" + ident[:12]) not in after
    assert not os.listdir(os.path.join(daemon.exec_root, "netns"))
    assert not subprocess.run(["pgrep", "-f", "aardvark-dns --config " + daemon.exec_root],
                              capture_output=True).stdout


def test_connect_and_disconnect_with_an_alias(daemon):
    name = "c" + TAG
    daemon.docker("network", "create", "--subnet", subnet(1), name)
    try:
        daemon.docker("run", "-d", "--name", "r" + TAG, "busybox", "sleep", "120")
        # On the default bridge: no embedded server.
        out = daemon.docker("exec", "r" + TAG, "cat", "/etc/resolv.conf").stdout
        assert "127.0.0.11" not in out
        daemon.docker("network", "connect", "--alias", "joined" + TAG, name, "r" + TAG)
        assert lookup(daemon, name, "joined" + TAG) == subnet(1).replace(".0/24", ".2")
        # The container now resolves through the embedded server, as dockerd.
        out = daemon.docker("exec", "r" + TAG, "cat", "/etc/resolv.conf").stdout
        assert out.startswith("nameserver 127.0.0.11\n")
        daemon.docker("run", "-d", "--name", "p" + TAG, "--network", name, "busybox", "sleep", "120")
        out = daemon.docker("exec", "r" + TAG, "nslookup", "p" + TAG).stdout
        assert subnet(1).replace(".0/24", ".3") in out
        daemon.docker("network", "disconnect", name, "r" + TAG)
        assert lookup(daemon, name, "joined" + TAG) == ""
    finally:
        daemon.docker("rm", "-f", "r" + TAG, "p" + TAG, check=False)
        daemon.docker("network", "rm", name, check=False)


def test_resolution_after_a_daemon_restart(daemon):
    name = "k" + TAG
    daemon.docker("network", "create", "--subnet", subnet(2), name)
    try:
        daemon.docker("run", "-d", "--name", "s" + TAG, "--network", name, "--network-alias", "svc" + TAG,
                      "busybox", "sh", "-c", "trap 'exit 0' TERM; sleep 120 & wait")
        daemon.stop()
        daemon.start()
        daemon.docker("start", "s" + TAG)
        ip = daemon.docker("inspect", "--format", "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % name,
                           "s" + TAG).stdout.strip()
        assert ip and lookup(daemon, name, "svc" + TAG) == ip
        assert lookup(daemon, name, "up%s.test" % TAG) == "192.0.2.55"
    finally:
        daemon.docker("rm", "-f", "s" + TAG, check=False)
        daemon.docker("network", "rm", name, check=False)
    assert subnet(2) not in host_state()


def test_the_default_bridge_has_links_not_names(daemon):
    daemon.docker("run", "-d", "--name", "db" + TAG, "-e", "SECRET=x", "busybox", "sleep", "120")
    try:
        ip = daemon.docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "db" + TAG).stdout.strip()
        gateway = daemon.docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}",
                                "bridge").stdout.strip()
        # (Queries go to the bridge's gateway, where nothing answers.)
        out = daemon.docker("run", "--rm", "--dns", gateway, "busybox", "cat", "/etc/resolv.conf").stdout
        assert out == "nameserver %s\n" % gateway
        result = daemon.docker("run", "--rm", "--dns", gateway, "busybox", "nslookup", "-timeout=1", "db" + TAG,
                               check=False)
        assert ip not in result.stdout
        out = daemon.docker("run", "--rm", "--name", "app" + TAG, "--link", "db%s:db" % TAG, "busybox",
                            "sh", "-c", "env; for i in 1 2 3; do ping -c1 -W2 db && break; done").stdout
        assert "1 packets received" in out
        env = sorted(l for l in out.splitlines() if l.startswith("DB_"))
        assert env == sorted([
            "DB_ENV_FOO=bar", "DB_ENV_SECRET=x", "DB_NAME=/app%s/db" % TAG,
            "DB_PORT=udp://%s:53" % ip,
            "DB_PORT_53_UDP=udp://%s:53" % ip, "DB_PORT_53_UDP_ADDR=" + ip, "DB_PORT_53_UDP_PORT=53",
            "DB_PORT_53_UDP_PROTO=udp",
            "DB_PORT_80_TCP=tcp://%s:80" % ip, "DB_PORT_80_TCP_ADDR=" + ip, "DB_PORT_80_TCP_PORT=80",
            "DB_PORT_80_TCP_PROTO=tcp",
        ])
        # A link removed (docker rm --link), as dockerd.
        daemon.docker("create", "--name", "par" + TAG, "--link", "db%s:db" % TAG, "busybox", "true")
        assert daemon.docker("inspect", "--format", "{{json .HostConfig.Links}}", "par" + TAG).stdout == (
            '["/db%s:/par%s/db"]\n' % (TAG, TAG))
        result = daemon.docker("rm", "--link", "par" + TAG, check=False)
        assert result.stderr == ("Error response from daemon: Conflict, cannot remove the default link name "
                                 "of the container\n")
        daemon.docker("rm", "--link", "par%s/db" % TAG)
        assert daemon.docker("inspect", "--format", "{{json .HostConfig.Links}}", "par" + TAG).stdout == "null\n"
        result = daemon.docker("rm", "--link", "par%s/db" % TAG, check=False)
        assert result.stderr == "Error response from daemon: No such container: par%s/db\n" % TAG
    finally:
        daemon.docker("rm", "-f", "db" + TAG, "par" + TAG, check=False)


def test_a_dual_stack_user_network(daemon):
    name, v6 = "six" + TAG, "fd42:%x::/64" % int(TAG[:4], 16)
    result = daemon.docker("network", "create", "--ipv6", name + "x", check=False)
    assert result.stderr == ("Error response from daemon: could not find an available, non-overlapping IPv6 "
                             "address pool among the defaults to assign to the network\n")
    daemon.docker("network", "create", "--ipv6", "--subnet", subnet(3), "--subnet", v6, name)
    try:
        daemon.docker("run", "-d", "--name", "w6" + TAG, "--network", name, "busybox", "sleep", "120")
        ep = daemon.docker_json("inspect", "w6" + TAG, format="{{json .NetworkSettings.Networks}}")[name]
        prefix = v6.split("::")[0]
        assert (ep["GlobalIPv6Address"], ep["GlobalIPv6PrefixLen"], ep["IPv6Gateway"]) == (
            prefix + "::2", 64, prefix + "::1")
        out = daemon.docker("exec", "w6" + TAG, "ip", "-o", "-6", "addr", "show", "eth0").stdout
        assert prefix + "::2/64" in out
        result = daemon.docker("run", "--rm", "--network", name, "busybox", "ping", "-6", "-c1", "-W2",
                               prefix + "::2", check=False)
        assert "1 packets received" in result.stdout, result.stdout + result.stderr
    finally:
        daemon.docker("rm", "-f", "w6" + TAG, check=False)
        daemon.docker("network", "rm", name, check=False)
    assert v6.split("::")[0] not in subprocess.run(["ip", "-6", "route"], capture_output=True, text=True).stdout
    assert v6.split("::")[0] not in subprocess.run(["ip6tables-save"], capture_output=True, text=True).stdout
