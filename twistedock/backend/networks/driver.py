"""
The host side of networks, by well-kept tools: network namespaces made
persistent with util-linux's C{unshare --net=FILE} (a bind mount of the
namespace, so it outlives its processes and is torn down after them), and
bridges, veth pairs, addresses, firewall rules and aardvark-dns by Podman's
C{netavark} (C{netavark setup|teardown NETNS}, the network description as
JSON on stdin). Inside a container's namespace, the embedded DNS address
127.0.0.11:53 is redirected to aardvark-dns on a gateway by NAT rules
(C{iptables-restore} under C{nsenter}), as dockerd redirects it to its own
server. Every command runs through spawnProcess.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
from typing import List, Optional, Sequence

from twisted.internet.threads import deferToThreadPool

from ...atomic import write_atomic
from ...errors import InternalError
from ...logs import Logger
from ..runtime.processes import Collect
from ..runtime.rootfs import detach
from ..spawn import Spawner

NSENTER = "/usr/bin/nsenter"
EMBEDDED_DNS = "127.0.0.11"

log = Logger()

IP = shutil.which("ip") or "/usr/sbin/ip"

#: iptables and ip6tables as netavark's firewall finds them with
#: --iptables=false: a version to parse, every rule "already there", every
#: change done, nothing written (netavark 1.4 has no firewall driver "none").
NO_FIREWALL = """#!/bin/sh
# twistedock --iptables=false: netavark's firewall changes nothing.
for arg in "$@"; do
  if [ "$arg" = "--version" ] || [ "$arg" = "-V" ]; then echo "iptables v1.8.9 (none)"; fi
done
exit 0
"""
NETAVARK_PATHS = ("/usr/libexec/podman/netavark", "/usr/lib/podman/netavark")
AARDVARK_PATHS = ("/usr/libexec/podman/aardvark-dns", "/usr/lib/podman/aardvark-dns")


def find_binary(name: str, candidates: Sequence[str]) -> Optional[str]:
    found = shutil.which(name)
    if found:
        return found
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return None


class Netavark:
    """netavark and the namespaces it configures."""

    def __init__(self, reactor, config_dir: str, netavark: Optional[str] = None,
                 aardvark: Optional[str] = None, netns_dir: Optional[str] = None,
                 sysfs: str = "/sys/class/net", iptables: bool = True, ip_forward: bool = True,
                 ip_forward_path: str = "/proc/sys/net/ipv4/ip_forward") -> None:
        self.reactor = reactor
        self.spawner = Spawner(reactor)
        self.config_dir = config_dir
        #: False (--iptables=false): netavark's firewall commands are
        #: answered by L{NO_FIREWALL} and change nothing.
        self.iptables = iptables
        self.no_firewall_dir = os.path.join(os.path.dirname(config_dir), "no-firewall")
        #: False (--ip-forward=false): the forwarding netavark turns on at
        #: each setup is put back as the host had it.
        self.ip_forward = ip_forward
        self.ip_forward_path = ip_forward_path
        self.host_ip_forward: Optional[str] = None
        #: Where scratch namespaces are made (beside the containers').
        self.netns_dir = netns_dir or os.path.join(os.path.dirname(config_dir), "netns")
        self.sysfs = sysfs
        self.netavark = netavark or find_binary("netavark", NETAVARK_PATHS)
        self.aardvark = aardvark or find_binary("aardvark-dns", AARDVARK_PATHS)

    def prepare(self) -> None:
        """Before the first call (blocking: at start-up): the configuration
        directory; with --iptables=false the commands netavark's firewall
        runs; with --ip-forward=false the host's forwarding noted."""
        os.makedirs(self.config_dir, exist_ok=True)
        if not self.iptables:
            os.makedirs(self.no_firewall_dir, exist_ok=True)
            for name in ("iptables", "ip6tables"):
                write_atomic(os.path.join(self.no_firewall_dir, name), NO_FIREWALL.encode(), mode=0o755)
        if not self.ip_forward:
            try:
                with open(self.ip_forward_path) as f:
                    self.host_ip_forward = f.read().strip()
            except OSError:
                self.host_ip_forward = None

    def _env(self) -> dict:
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        if not self.iptables:
            path = self.no_firewall_dir + os.pathsep + path
        return {"PATH": path}

    async def _run(self, argv: List[str], stdin: Optional[bytes] = None):
        proto = Collect(stdin)
        # (From a thread: the reactor neither waits nor holds the GIL.)
        await self.spawner.spawn_process(proto, argv[0], argv, self._env())
        out, err, status = await proto.done
        return out, err, status

    def _put_back_ip_forward(self) -> None:
        # netavark turns IPv4 forwarding on at every setup; dockerd leaves
        # it alone with --ip-forward=false.
        if self.ip_forward or self.host_ip_forward != "0":
            return
        try:
            with open(self.ip_forward_path, "w") as f:
                f.write("0\n")
        except OSError as e:
            log.warn("cannot put IPv4 forwarding back: {e}", e=e)

    def _argv(self, verb: str, netns: str) -> List[str]:
        if not self.netavark:
            raise InternalError("netavark is not installed: networks need it (apt install netavark)")
        argv = [self.netavark, "--config", self.config_dir]
        if self.aardvark:
            argv += ["--aardvark-binary", self.aardvark]
        return argv + [verb, netns]

    async def setup(self, netns: str, options: dict) -> dict:
        """Configure C{netns} for C{options} (netavark's NetworkOptions);
        netavark's StatusBlock per network."""
        out, err, status = await self._run(self._argv("setup", netns), json.dumps(options).encode())
        self._put_back_ip_forward()
        if status != 0:
            raise InternalError("netavark setup: %s" % _message(out, err))
        try:
            return json.loads(out or b"{}")
        except ValueError:
            raise InternalError("netavark setup: unexpected answer %r" % out[:200])

    async def teardown(self, netns: str, options: dict) -> None:
        out, err, status = await self._run(self._argv("teardown", netns), json.dumps(options).encode())
        if status != 0:
            raise InternalError("netavark teardown: %s" % _message(out, err))

    async def redirect_dns(self, netns: str, gateway: Optional[str]) -> None:
        """In C{netns}, queries to 127.0.0.11:53 (udp, tcp) sent to
        aardvark-dns on C{gateway} (None: no redirection). Loopback sources
        may then leave by the container's interface (route_localnet), where
        they take its address."""
        script = "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && exec iptables-restore"
        argv = [NSENTER, "--net=" + netns, "/bin/sh", "-c", script]
        out, err, status = await self._run(argv, dns_rules(gateway).encode())
        if status != 0:
            raise InternalError("cannot redirect the embedded DNS server: %s" % _message(out, err))

    async def rename_dns(self, network: str, container_id: str, old: str, new: str) -> None:
        """The container's name in aardvark-dns's entries for C{network}
        changed from C{old} to C{new}, and aardvark-dns told (SIGHUP), as
        netavark tells it of a new entry. Call with netavark's calls held."""
        await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), rename_entry,
                                os.path.join(self.config_dir, "aardvark-dns"), network, container_id, old, new)

    async def create_netns(self, path: str) -> None:
        """A new network namespace bound at C{path}."""
        # (The mount point made in a thread: a busy disk stalls it.)
        await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _mount_point, path)
        out, err, status = await self._run(["/usr/bin/unshare", "--net=" + path, "true"])
        if status != 0:
            _remove(path)
            raise InternalError("cannot create a network namespace: %s" % _message(out, err))

    async def loopback_up(self, path: str) -> None:
        """The loopback interface of the namespace bound at C{path} up (runc
        does it in a namespace it makes; netavark on networks)."""
        out, err, status = await self._run([NSENTER, "--net=" + path, IP, "link", "set", "lo", "up"])
        if status != 0:
            raise InternalError("cannot bring loopback up: %s" % _message(out, err))

    async def remove_netns(self, path: str) -> None:
        """The namespace bound at C{path} let go: its bind mount detached,
        as C{ip netns delete} does, and the file removed (in a thread, no
        process: a checkpointed container's exit is recorded while its
        migration's target imports and restores)."""
        await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _unbind_netns, path)

    async def isolate(self, netns: str, interface: str, bridge: str) -> None:
        """The host end of the container's C{interface} made an isolated
        port of C{bridge}: no traffic with the bridge's other isolated
        ports (the other containers), the gateway still reached
        (--icc=false, or com.docker.network.bridge.enable_icc=false)."""
        out, err, status = await self._run(["/usr/bin/nsenter", "--net=" + netns, IP, "-o", "link", "show",
                                            interface])
        peer = re.search(rb"@if(\d+):", out)
        if status != 0 or peer is None:
            raise InternalError("cannot find the veth of %s: %s" % (interface, _message(out, err)))
        out, err, _ = await self._run([IP, "-o", "link", "show", "master", bridge])
        for line in out.decode("utf-8", "replace").splitlines():
            index, _, rest = line.partition(":")
            if index.strip() == peer.group(1).decode():
                name = rest.split(":")[0].strip().split("@")[0]
                out, err, status = await self._run([IP, "link", "set", "dev", name, "type", "bridge_slave",
                                                    "isolated", "on"])
                if status != 0:
                    raise InternalError("cannot isolate %s: %s" % (name, _message(out, err)))
                return
        raise InternalError("the veth of %s is not on %s" % (interface, bridge))

    # -- a bridge kept while its network is in use ----------------------

    def bridge_exists(self, bridge: str) -> bool:
        return os.path.exists(os.path.join(self.sysfs, bridge))

    async def anchor(self, bridge: str) -> None:
        """Keep C{bridge} (and the network's firewall rules) when its last
        container leaves, as dockerd keeps its bridges: netavark removes a
        bridge with no port left, so a port that carries nothing (one end
        of a veth pair, down) stays on it. Setting up and tearing down a
        container is then a veth pair and its rules, not the network."""
        port, peer = anchor_names(bridge)
        if os.path.exists(os.path.join(self.sysfs, port)) or not self.bridge_exists(bridge):
            return
        out, err, status = await self._run([IP, "link", "add", port, "master", bridge, "type", "veth",
                                            "peer", "name", peer])
        if status != 0:
            raise InternalError("cannot keep the bridge %s: %s" % (bridge, _message(out, err)))

    async def release(self, bridge: str, options: dict, interface: str = "eth0") -> None:
        """The network of C{bridge} taken down completely (the bridge, its
        firewall rules, its anchor) when no container uses it: netavark
        does that when the last port of a bridge is a container's that it
        tears down, so the anchor's other end is made that container's
        (C{options}: netavark's options of a container with C{interface}
        on the network) in a namespace of its own."""
        if not self.bridge_exists(bridge):
            return
        port, peer = anchor_names(bridge)
        scratch = os.path.join(self.netns_dir, ".release-" + secrets.token_hex(6))
        await self.create_netns(scratch)
        try:
            if os.path.exists(os.path.join(self.sysfs, peer)):
                argv = [IP, "link", "set", peer, "netns", scratch, "name", interface]
            else:
                argv = ["/usr/bin/nsenter", "--net=" + scratch, IP, "link", "add", interface, "type", "veth",
                        "peer", "name", interface + "p"]
            out, err, status = await self._run(argv)
            if status != 0:
                raise InternalError("cannot release the bridge %s: %s" % (bridge, _message(out, err)))
            await self.teardown(scratch, options)
        finally:
            await self.remove_netns(scratch)


def anchor_names(bridge: str):
    """The anchor's two ends for C{bridge} (15 characters at most)."""
    digest = hashlib.sha256(bridge.encode()).hexdigest()[:10]
    return "tdka" + digest, "tdkp" + digest


def rename_entry(directory: str, network: str, container_id: str, old: str, new: str) -> None:
    """Blocking: aardvark-dns's file for C{network} (a gateway line, then
    "ID IPV4S IPV6S NAMES[ DNS]" a container) rewritten with C{new} in
    place of C{old} in the container's names (NAME.NETWORK too), then
    aardvark-dns reloaded."""
    path = os.path.join(directory, network)
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return
    changed = False
    for index, line in enumerate(lines):
        fields = line.split(" ")
        if index == 0 or len(fields) < 4 or fields[0] != container_id:
            continue
        names = [new + name[len(old):] if name == old or name.startswith(old + ".") else name
                 for name in fields[3].split(",")]
        fields[3] = ",".join(dict.fromkeys(names))
        lines[index] = " ".join(fields)
        changed = True
    if not changed:
        return
    write_atomic(path, "\n".join(lines).encode(), mode=0o644)
    try:
        with open(os.path.join(directory, "aardvark.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGHUP)
    except (OSError, ValueError):
        pass


def dns_rules(gateway: Optional[str]) -> str:
    """iptables-restore's input for the nat table of a container's
    namespace: the embedded DNS address redirected to C{gateway}."""
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]"]
    if gateway:
        for proto in ("udp", "tcp"):
            lines.append("-A OUTPUT -d %s/32 -p %s -m %s --dport 53 -j DNAT --to-destination %s:53"
                         % (EMBEDDED_DNS, proto, proto, gateway))
        lines.append("-A POSTROUTING -s 127.0.0.0/8 -d %s/32 -j MASQUERADE" % gateway)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _mount_point(path: str) -> None:
    """An empty file to bind a namespace on (blocking)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a"):
        pass


def _unbind_netns(path: str) -> None:
    """(Blocking.)  L{Netavark.remove_netns}'s work."""
    if not os.path.exists(path):
        return
    try:
        detach(path)
    except OSError as e:
        log.warn("network namespace {path}: {e}", path=path, e=e)
    _remove(path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _message(out: bytes, err: bytes) -> str:
    text = (err or out).decode("utf-8", "replace").strip()
    try:
        return json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        return text

