"""Published ports with the docker CLI, through the daemon's userland proxy
(dockerd's default) and through kernel NAT alone (--userland-proxy=false):
a busybox httpd answers on the host's loopback through an ephemeral and a
fixed port, a port taken is refused as dockerd refuses it, ports are free
once the container stops, and nothing is left on the host afterwards.
Traffic goes only to 127.0.0.1 and to containers on the test's bridge."""

import os
import re
import secrets
import shutil
import socket
import subprocess
import urllib.request

import pytest

from .conftest import unix_request
from .test_containers import import_busybox
from .test_networks import wait_for_text

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="networks need root"),
    pytest.mark.skipif(not any(os.path.exists(p) for p in ("/usr/lib/podman/netavark",
                                                           "/usr/libexec/podman/netavark")),
                       reason="netavark is not installed"),
]

TAG = secrets.token_hex(3)
HTTPD = ["busybox", "sh", "-c", "echo hello > /tmp/index.html; httpd -f -p 80 -h /tmp"]


def leftovers(exec_root: str, marks) -> list:
    """Links, addresses and firewall rules (iptables-save, and nft's ruleset
    when nft is there) naming any of C{marks} (the bridge, its subnet, the
    ports), and the daemon's namespaces. Other daemons on the host may
    change other rules meanwhile."""
    text = [subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout,
            subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout,
            subprocess.run(["iptables-save"], capture_output=True, text=True).stdout]
    if shutil.which("nft"):
        text.append(subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout)
    out = [line for block in text for line in block.splitlines() if any(m in line for m in marks)]
    netns = os.path.join(exec_root, "netns")
    return out + (sorted(os.listdir(netns)) if os.path.isdir(netns) else [])


def _get(port: int) -> str:
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as answer:
        return answer.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def _listeners(port: int) -> str:
    return subprocess.run(["ss", "-Hltnp", "sport = :%d" % port], capture_output=True, text=True).stdout


@pytest.mark.parametrize("mode", ["proxy", "nat"])
def test_a_published_httpd_answers_on_loopback(mode, daemons, tmp_path):
    n = 0 if mode == "proxy" else 1
    bridge, prefix = "tdp%s%d" % (TAG, n), "10.%d.%d." % (220 + n, int(TAG[:2], 16))
    args = ["--bridge=" + bridge, "--bip=%s1/24" % prefix]
    if mode == "nat":
        args.append("--userland-proxy=false")
    d = daemons.start(*args)
    import_busybox(d, tmp_path)
    name = "p" + TAG
    fixed = _free_port()
    try:
        d.docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", *HTTPD)
        (binding,) = d.docker_json("inspect", name, format="{{json .NetworkSettings.Ports}}")["80/tcp"]
        assert binding["HostIp"] == "127.0.0.1"
        port = int(binding["HostPort"])
        assert d.docker("port", name).stdout == "80/tcp -> 127.0.0.1:%d\n" % port
        assert "127.0.0.1:%d->80/tcp" % port in d.docker("ps", "--filter", "name=" + name).stdout
        assert wait_for_text(lambda: _get(port)) == "hello\n"
        # The port is the daemon's: its proxy, or (NAT) a hold of the port
        # as dockerd's dummy proxy; the NAT rule only without the proxy.
        assert "pid=%d," % d.proc.pid in _listeners(port)
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        assert (("--dport %d " % port) in rules) == (mode == "nat")

        d.docker("run", "-d", "--name", name + "f", "-p", "127.0.0.1:%d:80" % fixed, *HTTPD)
        assert wait_for_text(lambda: _get(fixed)) == "hello\n"

        # Published by another container: dockerd's 500 and message.
        d.docker("create", "--name", name + "g", "-p", "127.0.0.1:%d:80" % fixed, *HTTPD)
        answer = unix_request(d.sock, "POST", "/v1.41/containers/%s/start" % (name + "g"))
        assert answer.status == 500
        assert re.fullmatch(r"driver failed programming external connectivity on endpoint %sg \([0-9a-f]{64}\): "
                            r"Bind for 127\.0\.0\.1:%d failed: port is already allocated" % (name, fixed),
                            answer.json()["message"]), answer.json()
        # Bound on the host by another program: dockerd's message.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            taken = s.getsockname()[1]
            result = d.docker("run", "-d", "--name", name + "h", "-p", "127.0.0.1:%d:80" % taken, *HTTPD,
                              check=False)
        assert result.returncode == 125
        assert re.search(r"Error response from daemon: driver failed programming external connectivity on "
                         r"endpoint %sh \([0-9a-f]{64}\): Error starting userland proxy: listen tcp4 "
                         r"127\.0\.0\.1:%d: bind: address already in use" % (name, taken), result.stderr)

        # Stopped: the port is free, and shown no more.
        d.docker("stop", "-t", "0", name + "f")
        assert _bindable(fixed)
        assert d.docker("port", name + "f").stdout == ""
        # As dockerd: no ports shown for a container that does not run.
        assert d.docker_json("inspect", name + "f", format="{{json .NetworkSettings.Ports}}") == {}
        d.docker("start", name + "g")
        assert wait_for_text(lambda: _get(fixed)) == "hello\n"
    finally:
        d.docker("rm", "-f", name, name + "f", name + "g", name + "h", check=False)
    assert _bindable(fixed) and _bindable(port)
    # While the daemon runs its bridge stays (as dockerd's docker0), with
    # no container's veth on it; stopped, the daemon takes it down.
    ports_of_bridge = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True,
                                     text=True).stdout
    assert [line.split(":")[1].strip()[:4] for line in ports_of_bridge.splitlines()] == ["tdka"]
    assert os.listdir(os.path.join(d.exec_root, "netns")) == []
    d.stop()
    marks = [bridge, prefix, "dport %d " % port, "dport %d " % fixed, "dpt:%d " % port, "dpt:%d " % fixed]
    assert leftovers(d.exec_root, marks) == []


def test_without_iptables_and_icc(daemons, tmp_path):
    """--iptables=false writes no rule (the proxy still serves published
    ports: it reaches containers through the bridge's route); --icc=false
    keeps the default bridge's containers from each other, not from the
    gateway."""
    bridge, prefix = "tdi" + TAG, "10.%d.%d." % (222, int(TAG[:2], 16))
    d = daemons.start("--bridge=" + bridge, "--bip=%s1/24" % prefix, "--iptables=false", "--icc=false")
    import_busybox(d, tmp_path)
    name = "i" + TAG
    try:
        d.docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", *HTTPD)
        port = int(d.docker("port", name).stdout.strip().rsplit(":", 1)[1])
        assert wait_for_text(lambda: _get(port)) == "hello\n"
        ip = d.docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()
        assert ip.startswith(prefix)
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        assert [line for line in rules.splitlines() if prefix in line or bridge in line] == []
        options = d.docker_json("network", "inspect", "bridge", format="{{json .Options}}")
        assert options["com.docker.network.bridge.enable_icc"] == "false"
        result = d.docker("run", "--rm", "busybox", "sh", "-c",
                          "ping -c1 -W1 %s1 >/dev/null && echo gateway; ping -c1 -W1 %s >/dev/null && echo peer"
                          % (prefix, ip), check=False)
        assert result.stdout == "gateway\n", result.stdout + result.stderr
    finally:
        d.docker("rm", "-f", name, check=False)
    d.stop()
    assert leftovers(d.exec_root, [bridge, prefix]) == []
