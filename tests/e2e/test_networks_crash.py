"""A daemon SIGKILLed while it sets networks up and tears them down (runs
with published ports through kernel NAT, on the default bridge and on a
user network with DNS, started and removed from threads): at its next start
nothing that no running container owns is left (container veths, the
namespaces under <exec-root>/netns, DNAT rules, aardvark-dns entries), and
after the containers, the network and the daemon are gone, nothing at all.
Seeded (TWISTEDOCK_NETCRASH_SEED); TWISTEDOCK_NETCRASH_CYCLES kills."""

import os
import random
import secrets
import subprocess
import threading

import pytest

from .test_crash import call, import_busybox
from .test_networks_ports import leftovers

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="networks need root"),
    pytest.mark.skipif(not any(os.path.exists(p) for p in ("/usr/lib/podman/netavark",
                                                           "/usr/libexec/podman/netavark")),
                       reason="netavark is not installed"),
]

CYCLES = int(os.environ.get("TWISTEDOCK_NETCRASH_CYCLES") or 3)
SEED = int(os.environ.get("TWISTEDOCK_NETCRASH_SEED") or 13)
TAG = secrets.token_hex(3)


def container_ports(bridge: str):
    """The interfaces on C{bridge} but its anchor (the container veths)."""
    out = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if not line.split(":")[1].strip().startswith("tdka")]


def aardvark_entries(exec_root: str):
    """The container lines of aardvark-dns's configuration files."""
    directory = os.path.join(exec_root, "netavark", "aardvark-dns")
    out = []
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            with open(os.path.join(directory, name)) as f:
                out += [line for line in f.read().splitlines()[1:] if line.strip()]
    return out


def churn(d, network: str, rng: random.Random, stop: threading.Event):
    """Runs started and removed until C{stop} (or the daemon dies)."""
    while not stop.is_set():
        mode = rng.choice(["bridge", network])
        body = {"Image": "busybox", "Cmd": ["sleep", "30"], "ExposedPorts": {"80/tcp": {}},
                "HostConfig": {"NetworkMode": mode,
                               "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}}
        status, doc = call(d, "POST", "/containers/create", body)
        if status != 201:
            return
        status, _ = call(d, "POST", "/containers/%s/start" % doc["Id"])
        if status == 0:
            return
        if rng.random() < 0.6:
            if call(d, "DELETE", "/containers/%s?force=1" % doc["Id"])[0] == 0:
                return


def test_a_kill_during_network_setup_and_teardown_leaves_nothing(daemons, tmp_path):
    rng = random.Random(SEED)
    bridge, prefix = "tdc" + TAG, "10.%d.%d." % (230, int(TAG[:2], 16))
    d = daemons.start("--bridge=" + bridge, "--bip=%s1/24" % prefix, "--userland-proxy=false")
    import_busybox(d, tmp_path)
    network, subnet = "n" + TAG, "10.%d.%d.0/24" % (231, int(TAG[:2], 16))
    ident = d.docker("network", "create", "--subnet", subnet, network).stdout.strip()
    user_bridge = "br-" + ident[:12]
    try:
        for _ in range(CYCLES):
            stop = threading.Event()
            workers = [threading.Thread(target=churn, args=(d, network, random.Random(rng.random()), stop))
                       for _ in range(3)]
            for w in workers:
                w.start()
            stop.wait(rng.uniform(1.0, 3.0))
            d.proc.kill()
            d.wait_exit()
            stop.set()
            for w in workers:
                w.join(30)
            d.start()
            # Nothing runs any more (no --live-restore): nothing of a run is left.
            assert d.docker("ps", "-q").stdout == ""
            assert container_ports(bridge) == [] and container_ports(user_bridge) == []
            assert os.listdir(os.path.join(d.exec_root, "netns")) == []
            rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
            assert [line for line in rules.splitlines() if "--to-destination %s" % prefix in line
                    or "--to-destination %s" % subnet[:-4] in line] == []
            assert aardvark_entries(d.exec_root) == []
            # And the daemon still serves its networks.
            out = d.docker("run", "--rm", "--network", network, "busybox", "ip", "-o", "-4", "addr").stdout
            assert subnet[:-4] in out
    finally:
        if d.running:
            d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)
            d.docker("network", "rm", network, check=False)
            d.stop()
    if os.environ.get("TWISTEDOCK_NETCRASH_LOG"):
        import shutil

        shutil.copy(d.log_path, os.environ["TWISTEDOCK_NETCRASH_LOG"])
    assert leftovers(d.exec_root, [bridge, user_bridge, prefix, subnet[:-4]]) == []
