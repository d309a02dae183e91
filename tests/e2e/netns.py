"""
Two hosts on one machine: two network namespaces joined by a veth pair,
with addresses from a private /30 picked by the test, and daemons started in
them (entered with nsenter, the network namespace only: the mount namespace
stays the host's, cgroups and overlay mounts with it) serving their API
over TLS with client certificates made by openssl in the test's directory.

Used by the cross-host migration tests and benchmarks/migrate.py.  Traffic
only ever goes between these two namespaces.
"""

import ipaddress
import os
import random
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from .conftest import DockerDaemon

#: Where the /30s are picked from.
POOL = ipaddress.ip_network("10.200.0.0/13")
PORT = 2376


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=30)


def _host_networks() -> List[ipaddress.IPv4Network]:
    out = _run("ip", "-4", "-o", "addr", "show", check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            found.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    out = _run("ip", "-4", "route", "show", check=False).stdout
    for line in out.splitlines():
        first = line.split()[0] if line.split() else ""
        try:
            found.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            pass
    return found


def pick_subnet(rng: Optional[random.Random] = None) -> ipaddress.IPv4Network:
    """A /30 of L{POOL} overlapping nothing the host has."""
    rng = rng or random.Random()
    taken = _host_networks()
    subnets = POOL.num_addresses // 4
    for _ in range(100):
        candidate = ipaddress.ip_network((int(POOL.network_address) + 4 * rng.randrange(subnets), 30))
        if not any(candidate.overlaps(n) for n in taken):
            return candidate
    raise RuntimeError("no free /30 in %s" % (POOL,))


class NamespacePair:
    """Two network namespaces and the veth pair between them."""

    def __init__(self) -> None:
        tag = "%x%04x" % (os.getpid() & 0xFFFF, random.randrange(0x10000))
        self.names = ["tdk%s-a" % tag, "tdk%s-b" % tag]
        self.links = ["tdk%sa" % tag, "tdk%sb" % tag]
        self.subnet = pick_subnet()
        hosts = list(self.subnet.hosts())
        self.addresses = [str(hosts[0]), str(hosts[1])]
        self.made: List[str] = []

    def create(self) -> "NamespacePair":
        try:
            for name in self.names:
                _run("ip", "netns", "add", name)
                self.made.append(name)
            _run("ip", "link", "add", self.links[0], "type", "veth", "peer", "name", self.links[1])
            for name, link, address in zip(self.names, self.links, self.addresses):
                _run("ip", "link", "set", link, "netns", name)
                self.ip(name, "addr", "add", "%s/30" % (address,), "dev", link)
                self.ip(name, "link", "set", link, "up")
                self.ip(name, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def ip(self, name: str, *args: str) -> None:
        _run(*self.enter(name), "ip", *args)

    @staticmethod
    def enter(name: str) -> List[str]:
        """The prefix running a command in namespace C{name}'s network."""
        return ["nsenter", "--net=/run/netns/%s" % (name,)]

    def remove(self) -> None:
        # Deleting a namespace deletes its end of the veth, and so the pair.
        for name in reversed(self.made):
            _run("ip", "netns", "del", name, check=False)
        self.made.clear()


def make_certificates(directory: Path, addresses: List[str]) -> Dict[str, str]:
    """With openssl: a CA, one server certificate valid for every address,
    and a client certificate; PEM paths by name."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: str(directory / name) for name in (
        "ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem", "cert.pem", "key.pem")}
    ssl = ["openssl"]

    def run(*args: str) -> None:
        _run(*ssl, *args)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=twistedock migration test CA", "-keyout", files["ca-key.pem"], "-out", files["ca.pem"])
    for role, cn, usage, sans in (
        ("server", "twistedock", "serverAuth", ",".join("IP:%s" % a for a in addresses + ["127.0.0.1"])),
        ("client", "migrate", "clientAuth", ""),
    ):
        key = files["server-key.pem" if role == "server" else "key.pem"]
        cert = files["server-cert.pem" if role == "server" else "cert.pem"]
        csr = str(directory / ("%s.csr" % role))
        ext = directory / ("%s.ext" % role)
        ext.write_text("extendedKeyUsage=%s\n%s" % (usage, "subjectAltName=%s\n" % sans if sans else ""))
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=%s" % cn, "-keyout", key, "-out", csr)
        run("x509", "-req", "-in", csr, "-CA", files["ca.pem"], "-CAkey", files["ca-key.pem"],
            "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", cert)
    for path in files.values():
        os.chmod(path, 0o600)
    return files


class NamespacedDaemon(DockerDaemon):
    """A daemon whose network is a namespace's: its unix socket (in the
    host's file system) for the test's own CLI calls, and
    C{tcp://ADDRESS:2376} over TLS, reachable from the namespaces only."""

    def __init__(self, workdir, cli_config, namespace: str, address: str, certs: Dict[str, str],
                 args=(), config=None) -> None:
        self.namespace = namespace
        self.address = address
        self.tcp = "tcp://%s:%d" % (address, PORT)
        tls = ["-H", self.tcp, "--tlsverify", "--tlscacert", certs["ca.pem"],
               "--tlscert", certs["server-cert.pem"], "--tlskey", certs["server-key.pem"]]
        super().__init__(workdir, cli_config, list(args) + tls, config)

    def command(self) -> List[str]:
        return NamespacePair.enter(self.namespace) + super().command()


def tls_arguments(certs: Dict[str, str]) -> List[str]:
    """twistedock-migrate's (and docker's) client TLS flags."""
    return ["--tlscacert", certs["ca.pem"], "--tlscert", certs["cert.pem"], "--tlskey", certs["key.pem"]]
