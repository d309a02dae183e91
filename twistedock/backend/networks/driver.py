"""
The host side of networks, by well-kept tools: network namespaces made
persistent with util-linux's C{unshare --net=FILE} (a bind mount of the
namespace, so it outlives its processes and is torn down after them), and
bridges, veth pairs, addresses, firewall rules and aardvark-dns by Podman's
C{netavark} (C{netavark setup|teardown NETNS}, the network description as
JSON on stdin). Every command runs through spawnProcess.
"""

import hashlib
import json
import os
import secrets
import shutil
from typing import List, Optional, Sequence

from ...errors import InternalError
from ..runtime.processes import Collect

IP = shutil.which("ip") or "/usr/sbin/ip"
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
                 sysfs: str = "/sys/class/net") -> None:
        self.reactor = reactor
        self.config_dir = config_dir
        #: Where scratch namespaces are made (beside the containers').
        self.netns_dir = netns_dir or os.path.join(os.path.dirname(config_dir), "netns")
        self.sysfs = sysfs
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

