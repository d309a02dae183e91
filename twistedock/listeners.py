"""
Where the API is served: dockerd's -H addresses (unix://, tcp://, fd://)
turned into Twisted endpoints, with the unix socket's checks (a live daemon
already there, a stale file left behind) and TLS with client verification.
"""

import errno
import grp
import ipaddress
import os
import socket
import sys
from typing import Dict, List, Optional

import attr
from twisted.application.service import Service
from twisted.internet import ssl
from twisted.internet.defer import Deferred, FirstError, fail, gatherResults, maybeDeferred
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from .logs import Logger

from .config import DEFAULT_UNIX_SOCKET, ConfigError, DaemonConfig

log = Logger()

DEFAULT_TCP_PORT = 2375
DEFAULT_TLS_PORT = 2376


@attr.s(frozen=True, auto_attribs=True)
class Address:
    proto: str  # unix, tcp or fd
    path: str = ""  # unix
    host: str = ""  # tcp
    port: int = 0  # tcp
    fd: Optional[int] = None  # fd; None: every socket passed in

    def __str__(self) -> str:
        if self.proto == "unix":
            return "unix://" + self.path
        if self.proto == "tcp":
            host = "[%s]" % self.host if ":" in self.host else self.host
            return "tcp://%s:%d" % (host, self.port)
        return "fd://" + ("" if self.fd is None else str(self.fd))


def parse_host(value: str, tls: bool = False) -> Address:
    """One -H value, parsed as dockerd's ParseDaemonHost parses it."""
    proto, sep, rest = value.strip().partition("://")
    if not sep:
        proto, rest = "tcp", value.strip()
    if proto == "unix":
        return Address("unix", path=rest or DEFAULT_UNIX_SOCKET)
    if proto == "fd":
        if rest == "":
            return Address("fd")
        if not rest.isdigit():
            raise ConfigError("Invalid bind address format: %s" % (value,))
        return Address("fd", fd=int(rest))
    if proto == "tcp":
        default_port = DEFAULT_TLS_PORT if tls else DEFAULT_TCP_PORT
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]")
            port = port[1:] if port.startswith(":") else ""
        else:
            host, _, port = rest.partition(":")
        if "/" in port or (port and not port.isdigit()):
            raise ConfigError("Invalid bind address format: %s" % (value,))
        if rest == "":
            host = "127.0.0.1"
        return Address("tcp", host=host, port=int(port) if port else default_port)
    raise ConfigError("Invalid bind address format: %s" % (value,))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def socket_alive(path: str) -> bool:
    """Whether a daemon answers on the unix socket at C{path}."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def check_addresses(config: DaemonConfig) -> List[Address]:
    """Parse and check every address before anything is started."""
    addresses = [parse_host(h, config.use_tls) for h in (config.hosts or ["unix://"])]
    for address in addresses:
        if address.proto == "unix" and os.path.exists(address.path) and socket_alive(address.path):
            raise ConfigError(
                "another daemon is already serving %s: stop it first, or give -H "
                "another address" % (address,)
            )
        if address.proto == "tcp" and not config.use_tls and not is_loopback(address.host):
            if config.tls is not False:
                raise ConfigError(
                    "refusing to serve the API on %s without TLS: anyone who reaches it can "
                    "run anything as root on this host. Use --tlsverify with certificates, "
                    "or say --tls=false to serve it in the clear anyway" % (address,)
                )
            log.warn("Serving the API on {address} without TLS", address=str(address))
        if address.proto == "tcp" and config.use_tls:
            for name in ("tlscert", "tlskey") + (("tlscacert",) if config.tlsverify else ()):
                path = getattr(config, name)
                if not os.access(path, os.R_OK):
                    raise ConfigError("could not read --%s %s" % (name, path))
    return addresses


def tls_context(config: DaemonConfig):
    """Server TLS options: the daemon's certificate; with --tlsverify, clients
    must present a certificate signed by the CA."""
    with open(config.tlscert, "rb") as f:
        cert_pem = f.read()
    with open(config.tlskey, "rb") as f:
        key_pem = f.read()
    server = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    kwargs = dict(
        privateKey=server.privateKey.original,
        certificate=server.original,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
    if config.tlsverify:
        with open(config.tlscacert, "rb") as f:
            ca = ssl.Certificate.loadPEM(f.read())
        kwargs.update(verify=True, requireCertificate=True, caCerts=[ca.original])
    return ssl.CertificateOptions(**kwargs)


def _activation_variables() -> Dict[str, str]:
    """LISTEN_PID and LISTEN_FDS as systemd passed them.  Importing Twisted's
    endpoints module removes them from os.environ (twisted.python.systemd
    reads them once, for its own C{systemd:} endpoints), so they are read
    from the environment this process started with."""
    if "LISTEN_FDS" in os.environ:
        return {name: os.environ.get(name, "") for name in ("LISTEN_PID", "LISTEN_FDS")}
    try:
        with open("/proc/self/environ", "rb") as f:
            initial = f.read()
    except OSError:
        return {}
    variables = {}
    for item in initial.split(b"\0"):
        name, _, value = item.partition(b"=")
        if name in (b"LISTEN_PID", b"LISTEN_FDS"):
            variables[name.decode("ascii")] = value.decode("ascii", "replace")
    return variables


def _systemd_fds() -> List[int]:
    """The sockets systemd passed in (sd_listen_fds): 3, 4, ..."""
    variables = _activation_variables()
    if variables.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = variables.get("LISTEN_FDS", "")
    return list(range(3, 3 + int(count))) if count.isdigit() else []


def listen_backlog() -> int:
    """The accept queue's length, as Go's net.Listen takes it: the host's
    somaxconn (Twisted's default, 50, refuses a burst of clients with
    EAGAIN)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(int(f.read().strip()), 50)
    except (OSError, ValueError):
        return socket.SOMAXCONN


def endpoints_for(reactor, address: Address, config: DaemonConfig) -> list:
    backlog = listen_backlog()
    if address.proto == "unix":
        return [UNIXServerEndpoint(reactor, address.path, backlog=backlog, mode=0o660, wantPID=False)]
    if address.proto == "tcp":
        host = address.host or "0.0.0.0"
        if config.use_tls:
            return [SSL4ServerEndpoint(reactor, address.port, tls_context(config), backlog=backlog, interface=host)]
        if ":" in host:
            return [TCP6ServerEndpoint(reactor, address.port, backlog=backlog, interface=host)]
        return [TCP4ServerEndpoint(reactor, address.port, backlog=backlog, interface=host)]
    fds = _systemd_fds()
    if address.fd is not None:
        if address.fd not in fds:
            raise ConfigError("too few sockets passed in for %s" % (address,))
        fds = [address.fd]
    if not fds:
        raise ConfigError("no sockets found via socket activation: make sure the service was started by systemd")
    endpoints = []
    for fd in fds:
        family = socket.socket(fileno=os.dup(fd))
        try:
            endpoints.append(AdoptedStreamServerEndpoint(reactor, fd, family.family))
        finally:
            family.close()
    return endpoints


def exit_failed() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


class ListenerService(Service):
    """Serve C{factory} on one address; prepare and tidy its socket file."""

    def __init__(self, reactor, address: Address, config: DaemonConfig, factory) -> None:
        self.reactor = reactor
        self.address = address
        self.config = config
        self.factory = factory
        self.ports: list = []
        self.name = str(address)
        #: Fires once every socket of this address listens (from
        #: startService on); never, if one could not: the daemon then stops.
        self.listening: Deferred = Deferred()

    def startService(self) -> None:
        Service.startService(self)
        if self.address.proto == "unix":
            directory = os.path.dirname(self.address.path)
            os.makedirs(directory, exist_ok=True)
            if os.path.exists(self.address.path):
                # Checked before start: nothing answers there, it is stale.
                os.unlink(self.address.path)
        try:
            endpoints = endpoints_for(self.reactor, self.address, self.config)
        except Exception:
            self.listening = fail()
        else:
            listens = [e.listen(self.factory).addCallback(self._listening) for e in endpoints]
            self.listening = gatherResults(listens, consumeErrors=True)
        self.listening.addErrback(self._failed)

    def _listening(self, port) -> None:
        self.ports.append(port)
        if self.address.proto == "unix":
            self._set_group()
        log.info("API listen on {address}", address=str(self.address))

    def _failed(self, failure) -> Deferred:
        if failure.check(FirstError):
            failure = failure.value.subFailure
        log.critical(
            "cannot serve the API on {address}: {error}",
            address=str(self.address),
            error=failure.getErrorMessage(),
        )
        # The daemon cannot do its job: stop, and say so with the exit status.
        self.reactor.addSystemEventTrigger("after", "shutdown", exit_failed)
        self.reactor.callWhenRunning(self.reactor.stop)
        # Whatever waits on `listening` (the readiness notification) waits
        # for ever: this Deferred never fires.
        return Deferred()

    def _set_group(self) -> None:
        try:
            gid = grp.getgrnam(self.config.group).gr_gid
        except KeyError:
            if self.config.group.isdigit():
                gid = int(self.config.group)
            else:
                log.warn(
                    "could not change group {path} to {group}: group {group} not found",
                    path=self.address.path,
                    group=self.config.group,
                )
                return
        try:
            os.chown(self.address.path, -1, gid)
        except OSError as e:
            if e.errno != errno.EPERM:
                raise
            log.warn("could not change group of {path}: {error}", path=self.address.path, error=e)

    def stopService(self):
        Service.stopService(self)
        ports, self.ports = self.ports, []
        return gatherResults([maybeDeferred(p.stopListening) for p in ports])
