"""
The daemon as a service tree: backends, the composed API resource, and one
listener per -H address, under one MultiService that twistd runs.
"""

import fcntl
import os
import shutil
import signal
import tracemalloc
import uuid
from typing import List, Optional

import attr
from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.web.server import Site

from . import __version__, systemd
from .atomic import write_atomic
from .backend import host
from .backend.copies import CopyBackend
from .backend.checkpoints import CheckpointBackend, CheckpointStore
from .backend.build import Builder
from .backend.containers import ContainerBackend, ContainerStore
from .backend.containers.defaults import LOG_DRIVERS
from .backend.containers.health import HealthMonitor
from .backend.containers.logrotation import LogRotator
from .backend.containers.probes import ProbeRunnerProcess
from .backend import spec
from .backend.debug import DebugBackend
from .backend.stalls import StallMonitor
from .backend.events import EventLog
from .backend.execs import ExecBackend, ExecStore
from .backend.distribution import RegistryService
from .backend.images import ImageStore
from .backend.runtime import ExitWatcher, LogReader, Runtime
from .backend.lazypages import sysctl as pipe_sysctl
from .backend.runtime.criu import Criu
from .backend.runtime.criudriver import CriuDriver
from .backend.runtime import perfhooks
from .backend.runtime.rootfs import OverlayMounts
from .backend.swarm import InactiveCluster
from .backend.system import SystemBackend, SystemSettings
from .backend.volumes import VolumeStore
from .backend.networks.driver import Netavark
from .backend.networks.ports import local_port_range
from .backend.networks.proxy import PortProxies
from .backend.networks.store import NetworkStore
from .config import ConfigError, DaemonConfig, read_config_file
from .errors import DockerError
from .listeners import ListenerService, check_addresses, exit_failed
from .logs import Logger, set_debug
from .routers.build import BuildRouter
from .routers.checkpoint import CheckpointRouter
from .routers.container import ContainerRouter
from .routers.debug import DebugRouter
from .routers.distribution import DistributionRouter
from .routers.image import ImageRouter
from .routers.network import NetworkRouter
from .routers.plugin import PluginRouter
from .routers.session import SessionRouter
from .routers.swarm import SwarmRouter
from .routers.system import SystemRouter
from .routers.volume import VolumeRouter
from .server.middleware import APIConfig
from .server.root import APIResource, compose

log = Logger()

RUNC = shutil.which("runc") or "runc"
CONMON = shutil.which("conmon") or "conmon"


def build_routers(
    reactor, system, cluster, debug=None, containers=None, images=None,
    execs=None, copies=None, checkpoints=None, volumes=None, registry=None, networks=None,
    builder=None,
) -> list:
    """Every router, in dockerd's registration order: the first match wins,
    so checkpoint comes before container."""
    routers = [
        CheckpointRouter(checkpoints),
        ContainerRouter(containers, execs=execs, copies=copies),
        ImageRouter(images),
        SystemRouter(system, reactor),
        VolumeRouter(volumes),
        BuildRouter(builder),
        SessionRouter(),
        SwarmRouter(cluster),
        PluginRouter(),
        DistributionRouter(registry),
        NetworkRouter(networks, containers),
    ]
    if debug is not None:
        routers.append(DebugRouter(debug))
    return routers


def _default_log_config(config: DaemonConfig) -> dict:
    """The daemon's --log-driver and --log-opt as a LogConfig, checked as
    dockerd checks them before it starts."""
    if config.log_driver not in LOG_DRIVERS:
        raise ConfigError(
            'failed to set log opts: error looking up logging plugin %s: plugin "%s" not found'
            % (config.log_driver, config.log_driver)
        )
    try:
        spec.validate_log_options(config.log_driver, config.log_opts)
        spec.log_rotation(config.log_driver, config.log_opts)
    except (DockerError, spec.LogDriverError) as e:
        raise ConfigError("failed to set log opts: %s" % (getattr(e, "message", None) or e,))
    return {"Type": config.log_driver, "Config": dict(config.log_opts)}


def enable_ip_forward(path: str = "/proc/sys/net/ipv4/ip_forward") -> None:
    try:
        with open(path, "r+") as f:
            if f.read().strip() != "1":
                f.seek(0)
                f.write("1\n")
    except OSError as e:
        log.warn("cannot turn on IPv4 forwarding: {e}", e=e)


class APISite(Site):
    """The HTTP server for the API; request logging is the debug middleware's."""

    displayTracebacks = False

    def log(self, request) -> None:
        pass


def daemon_id(data_root: str) -> str:
    """The engine ID, made once and kept in the data root."""
    path = os.path.join(data_root, "engine-id")
    try:
        with open(path) as f:
            value = f.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = str(uuid.uuid4())
    write_atomic(path, value.encode("ascii") + b"\n", mode=0o600)
    return value


def lock_data_root(data_root: str):
    """Hold the data root for this daemon's life: two daemons on one data
    root would each think the containers are theirs."""
    path = os.path.join(data_root, "twistedock.lock")
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise ConfigError(
            "the data root %s is in use by another daemon (pid %s)" % (data_root, holder)
        )
    f.seek(0)
    f.truncate()
    f.write("%d\n" % os.getpid())
    f.flush()
    return f


class Daemon(MultiService):
    def __init__(self, reactor, config: DaemonConfig) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        set_debug(config.debug)
        addresses = check_addresses(config)
        if config.cgroup_driver == "systemd" and not systemd.booted():
            # What runc would answer at every start: refused once, now.
            raise ConfigError("systemd cgroup flag passed, but systemd support for managing cgroups is not available")
        for directory in (config.data_root, config.exec_root):
            os.makedirs(directory, mode=0o711, exist_ok=True)
        self._lock = lock_data_root(config.data_root)
        self.id = daemon_id(config.data_root)
        self.events = EventLog()
        # CRIU: --criu-path, else scripts/install's wrapper, else PATH.
        self.criu = Criu(reactor, config.criu_path)
        self.settings = SystemSettings(
            daemon_id=self.id,
            data_root=os.path.abspath(config.data_root),
            exec_root=os.path.abspath(config.exec_root),
            experimental=config.experimental,
            debug=config.debug,
            live_restore=config.live_restore,
            labels=tuple(config.labels),
            criu=self.criu.path,
            min_api_version=config.min_api_version,
            cgroup_driver=config.cgroup_driver,
            logging_driver=config.log_driver,
        )
        # The containers in memory, made first as moby's container store:
        # the image store asks it which containers use an image, the
        # container backend keeps it.
        self.container_store = ContainerStore()
        try:
            self.registry = RegistryService(
                reactor, config.insecure_registries, config.registry_mirrors
            )
        except DockerError as e:
            raise ConfigError(str(e))
        self.images = ImageStore(
            reactor, config.data_root, self.events, containers=self.container_store,
            registry=self.registry,
        )
        self.volumes = VolumeStore(reactor, config.data_root, self.events)
        netavark = Netavark(reactor, os.path.join(config.exec_root, "netavark"),
                            iptables=config.iptables, ip_forward=config.ip_forward)
        bridge = config.bridge
        if netavark.netavark is None and bridge != "none":
            # Without netavark, containers of the default mode keep loopback only.
            log.warn("netavark not found: no default bridge network (install netavark)")
            bridge = "none"
        self.networks = NetworkStore(
            reactor, config.data_root, self.events, netavark,
            bridge=bridge, bip=config.bip, mtu=config.mtu, containers=self.container_store,
            resolv_conf=os.environ.get("TWISTEDOCK_RESOLV_CONF") or "/etc/resolv.conf",
            proxies=PortProxies(reactor, userland=config.userland_proxy, port_range=local_port_range()),
            fixed_cidr=config.fixed_cidr, pools=config.default_address_pools, icc=config.icc,
        )
        self._build_container_backends(reactor, config)
        #: With --debug: reactor iterations over 10 ms logged with what ran.
        self.stalls = StallMonitor(reactor) if config.debug else None
        self.copies = CopyBackend(reactor, self.containers, self.images, volumes=self.volumes)
        self.system = SystemBackend(
            reactor,
            self.settings,
            self.events,
            inventories=[self.containers, self.images, self.volumes],
            criu=self.criu,
            registry=self.registry,
        )
        routers = build_routers(
            reactor,
            self.system,
            InactiveCluster(),
            DebugBackend(reactor, stalls=self.stalls) if config.debug else None,
            containers=self.containers,
            images=self.images,
            execs=self.execs,
            copies=self.copies,
            checkpoints=self.checkpoints,
            volumes=self.volumes,
            registry=self.registry,
            networks=self.networks,
            builder=Builder(reactor, self.containers, self.images, os.path.join(config.data_root, "tmp", "build")),
        )
        api = APIConfig(
            experimental=config.experimental,
            debug=config.debug,
            min_version=config.min_api_version,
        )
        self.resource = APIResource(compose(routers, api))
        self.site = APISite(self.resource)
        self.listeners: List[ListenerService] = []
        for address in addresses:
            listener = ListenerService(reactor, address, config, self.site)
            listener.setServiceParent(self)
            self.listeners.append(listener)
        self._previous_sighup = None

    def _build_container_backends(self, reactor, config: DaemonConfig) -> None:
        """The runtime and the container, checkpoint and exec backends, each
        given its collaborators when it is made."""
        runtime_root = os.path.join(config.exec_root, "runc")
        self.runtime = Runtime(reactor, runc=RUNC, conmon=CONMON, state_root=runtime_root,
                               systemd_cgroup=config.cgroup_driver == "systemd")
        # Shared by two backends each, so made first: the execs (run by the
        # exec backend, listed and awaited by the container backend) and the
        # checkpoints on disk (taken by the checkpoint backend, restored by a
        # start; restoring is experimental too).
        exec_store = ExecStore(reactor)
        in_thread = lambda f, *args: deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)  # noqa: E731
        # Checkpoints over CRIU's RPC unless --criu-rpc=false (or it is
        # unavailable here): runc checkpoint otherwise.
        self.criu_rpc = CriuDriver(reactor, self.criu, runtime_root, in_thread, enabled=config.criu_rpc)
        checkpoint_store = CheckpointStore(self.criu, in_thread, rpc=self.criu_rpc)
        self.containers = ContainerBackend(
            reactor,
            data_root=config.data_root,
            exec_root=config.exec_root,
            store=self.container_store,
            images=self.images,
            events=self.events,
            runtime=self.runtime,
            exit_watcher=ExitWatcher(reactor, os.path.join(config.exec_root, "exits")),
            mounts=OverlayMounts(),
            log_reader_factory=lambda path: LogReader(reactor, path),
            live_restore=config.live_restore,
            init_path=shutil.which("tini-static") or shutil.which("tini"),
            execs=exec_store,
            checkpoints=checkpoint_store if config.experimental else None,
            volumes=self.volumes,
            networks=self.networks,
            cgroup_parent=config.cgroup_parent,
            cgroup_driver=config.cgroup_driver,
            default_log_config=_default_log_config(config),
        )
        # Log files rotated as the json-file driver does, told of each run.
        self.log_rotator = LogRotator(
            reactor,
            self.containers,
            reopen=lambda c: ensureDeferred(self.runtime.reopen_logs(self.containers.bundle(c))),
            run_in_thread=self.containers.run_in_thread,
        )
        self.checkpoints = CheckpointBackend(reactor, self.containers, checkpoint_store, self.runtime, self.images)
        self.execs = ExecBackend(reactor, self.containers, exec_store, self.runtime, exec_root=config.exec_root)
        # Healthchecks: told of each run by the container backend, probing
        # in a runner process of their own (each probe an exec by runc).
        self.probe_runner = ProbeRunnerProcess(
            reactor,
            self.execs,
            # benchmarks/health.py --synthetic measures the daemon at the full
            # probe rate with a stand-in for runc (see benchmarks/README.md).
            runc=os.environ.get("TWISTEDOCK_PROBE_RUNC") or self.runtime.runc,
            state_root=runtime_root,
            directory=os.path.join(config.exec_root, "health"),
        )
        self.health = HealthMonitor(reactor, self.containers, self.probe_runner)

    def startService(self) -> None:
        # The listeners start once the stores are loaded: no request sees a
        # daemon that has not yet found its containers.
        Service.startService(self)
        # `criu check`, once, in the background: /info and checkpoints wait
        # for its verdict.
        self.criu.status().addErrback(lambda f: log.failure("criu check", f))
        self._loading = ensureDeferred(self._load())
        if self.config.debug and os.environ.get("TWISTEDOCK_TRACEMALLOC", "1") != "0":
            # Heap profiles (/debug/pprof/heap) see what was allocated since
            # (with TWISTEDOCK_TRACEMALLOC=0, since the first one: tracing
            # slows every allocation, which a latency benchmark must not see).
            tracemalloc.start()
        if self.stalls is not None:
            self.reactor.callWhenRunning(self.stalls.start)
        self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        self.reactor.callWhenRunning(self._handle_stop_signals)
        log.info(
            "twistedock {version} started: data root {root}, experimental {experimental}",
            version=__version__,
            root=self.config.data_root,
            experimental=self.config.experimental,
        )

    async def _load(self) -> None:
        try:
            await self.images.load()
            await self.volumes.load()
            await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._load_networks)
            # The tmpfs sources of restores a crash interrupted, unmounted;
            # the restores' conmon runtime written.
            await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.criu_rpc.ready)
            await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.runtime.ready)
            if self.config.experimental:
                # A process's first checkpoint does not wait, frozen, for
                # the kernel's scheduler hooks (perfhooks).
                await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), perfhooks.hold)
            await self.containers.load()
        except CancelledError:
            return
        except Exception:
            log.failure("cannot load the daemon's state from {root}", root=self.config.data_root)
            self.reactor.addSystemEventTrigger("after", "shutdown", exit_failed)
            self.reactor.callWhenRunning(self.reactor.stop)
            return
        for child in self:
            child.startService()

    def _load_networks(self) -> None:
        """The networks read (the predefined ones made), and IPv4 forwarding
        turned on as dockerd does unless --ip-forward=false."""
        self.networks.load()
        if self.config.ip_forward:
            enable_ip_forward()
        if self.config.experimental and self.config.lazy_pages_sysctl:
            log.info("{what}", what=pipe_sysctl.raise_limit())

    def stopService(self):
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        log.info("twistedock stopping")
        if self.stalls is not None:
            self.stalls.stop()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self._loading.cancel()
        await MultiService.stopService(self)
        await self.containers.shutdown()
        await self.health.stop()
        # The bridges kept for networks in use given back when the daemon
        # goes (those of containers left running, --live-restore, stay).
        try:
            await self.networks.release_unused()
        except Exception:
            log.failure("releasing the networks' bridges")
        await self.registry.close()
        # The empty tmpfs restores bind on masked directories, and the
        # sources of tmpfs mounts (restored containers keep their own binds).
        await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.criu_rpc.release)
        self.events.close()

    def _handle_stop_signals(self) -> None:
        # The reactor's own handlers make twistd end by re-raising the
        # signal; dockerd exits 0 after a clean shutdown on SIGTERM.
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._stop_signal)

    def _stop_signal(self, signum, frame) -> None:
        log.info("received signal {signal}: shutting down", signal=signal.Signals(signum).name)
        self.reactor.callFromThread(self.reactor.stop)

    def _sighup(self, signum, frame) -> None:
        self.reactor.callFromThread(self.reload)

    def reload(self) -> Optional[dict]:
        """Re-read the configuration file's reloadable directives (labels), as
        dockerd does on SIGHUP, and log a daemon reload event."""
        path = self.config.config_file
        try:
            values = read_config_file(path) if os.path.exists(path) else {}
        except ConfigError as e:
            log.error("configuration not reloaded: {error}", error=str(e))
            return None
        labels = values.get("labels", list(self.config.labels))
        if isinstance(labels, list):
            self.config.labels = labels
            self.settings = self.system.settings = attr.evolve(self.settings, labels=tuple(labels))
        attributes = {
            "debug": "true" if self.config.debug else "false",
            "labels": "[" + " ".join(self.config.labels) + "]",
            "live-restore": "true" if self.config.live_restore else "false",
            "name": host.hostname(),
        }
        self.events.log("daemon", "reload", self.id, attributes)
        log.info("configuration reloaded from {path}", path=path)
        return attributes


