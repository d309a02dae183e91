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

import json
import os
import shutil
import signal
from typing import List, Optional, Sequence

from twisted.internet.threads import deferToThreadPool

from ...atomic import write_atomic
from ...errors import InternalError
from ..runtime.processes import Collect

NSENTER = "/usr/bin/nsenter"
EMBEDDED_DNS = "127.0.0.11"

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
                 aardvark: Optional[str] = None) -> None:
        self.reactor = reactor
        self.config_dir = config_dir
        self.netavark = netavark or find_binary("netavark", NETAVARK_PATHS)
        self.aardvark = aardvark or find_binary("aardvark-dns", AARDVARK_PATHS)

    async def _run(self, argv: List[str], stdin: Optional[bytes] = None):
        proto = Collect(stdin)
        self.reactor.spawnProcess(proto, argv[0], argv, env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")})
        out, err, status = await proto.done
        return out, err, status

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
        os.makedirs(self.config_dir, exist_ok=True)
        out, err, status = await self._run(self._argv("setup", netns), json.dumps(options).encode())
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
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a"):
            pass
        out, err, status = await self._run(["/usr/bin/unshare", "--net=" + path, "true"])
        if status != 0:
            _remove(path)
            raise InternalError("cannot create a network namespace: %s" % _message(out, err))

    async def remove_netns(self, path: str) -> None:
        if not os.path.exists(path):
            return
        await self._run(["/bin/umount", path])
        _remove(path)


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

