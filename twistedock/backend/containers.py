"""
The container backend: containers created, run under conmon + runc,
stopped, restarted by their policy, and re-found after the daemon restarts.

Every state change is saved atomically in the container's record before it
is announced (events, waiters), so a daemon killed at any moment comes back
with each container's true state.  Work on one container is serialised by a
lock of its own; exits arrive from conmon's exit files through inotify.
"""

import json
import os
import shutil
import signal as signals
import time
from typing import Callable, Dict, List, Optional

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredLock,
    ensureDeferred,
    gatherResults,
    succeed,
)
from twisted.internet.threads import deferToThreadPool
from twisted.internet.utils import getProcessOutputAndValue
from zope.interface import implementer

from ..atomic import write_atomic
from ..errors import (
    Conflict,
    DockerError,
    InternalError,
    InvalidParameter,
    NotFound,
    NotModified,
)
from ..filters import Filters
from ..logs import Logger
from ..routers.container import IContainerBackend
from ..versions import MAX_API_VERSION
from ..streams import STDERR, STDOUT
from ..timetypes import get_timestamp
from . import rootfs, spec
from .container import Container, State
from .detachkeys import DEFAULT_DETACH_KEYS, EscapeKeys, parse_detach_keys
from .events import EventLog
from .images.config import empty_container_config
from .runtime import LogChunks, LogFollower
from .system import IInventory
from .. import golang

log = Logger()

DEFAULT_STOP_TIMEOUT = 10
#: dockerd's restart manager: the first delay, its growth, its ceiling, and
#: how long a run must last for the delay to start again from the first.
RESTART_DELAY = 0.1
RESTART_DELAY_MAX = 60.0
RESTART_RESET_AFTER = 10.0

#: Log drivers a container may ask for.  conmon writes every log (but
#: "none") in its k8s-file format, which `docker logs` reads; the default is
#: named json-file, the name clients (docker-py, compose) take to mean "a
#: local log that docker logs can read".
DEFAULT_LOG_DRIVER = "json-file"
LOG_DRIVERS = ("json-file", "k8s-file", "local", "none")
#: Until networks are served: a container joins none, the host's, or its own
#: namespace with loopback only ("bridge").
NETWORK_MODES = ("default", "bridge", "none", "host")

LIST_FILTERS = (
    "ancestor",
    "before",
    "exited",
    "expose",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
)
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


#: An empty Config as dockerd shows it for a container (labels an empty map).
CONFIG_DEFAULTS = dict(empty_container_config(), Labels={})

HOST_CONFIG_DEFAULTS = {
    "Binds": None,
    "ContainerIDFile": "",
    "LogConfig": {"Type": DEFAULT_LOG_DRIVER, "Config": {}},
    "NetworkMode": "default",
    "PortBindings": {},
    "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False,
    "VolumeDriver": "",
    "VolumesFrom": None,
    "ConsoleSize": [0, 0],
    "CapAdd": None,
    "CapDrop": None,
    "CgroupnsMode": "",
    "Dns": [],
    "DnsOptions": [],
    "DnsSearch": [],
    "ExtraHosts": None,
    "GroupAdd": None,
    "IpcMode": "private",
    "Cgroup": "",
    "Links": None,
    "OomScoreAdj": 0,
    "PidMode": "",
    "Privileged": False,
    "PublishAllPorts": False,
    "ReadonlyRootfs": False,
    "SecurityOpt": None,
    "UTSMode": "",
    "UsernsMode": "",
    "ShmSize": 67108864,
    "Runtime": "runc",
    "Isolation": "",
    "CpuShares": 0,
    "Memory": 0,
    "NanoCpus": 0,
    "CgroupParent": "",
    "BlkioWeight": 0,
    "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": [],
    "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [],
    "BlkioDeviceWriteIOps": [],
    "CpuPeriod": 0,
    "CpuQuota": 0,
    "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0,
    "CpusetCpus": "",
    "CpusetMems": "",
    "Devices": [],
    "DeviceCgroupRules": None,
    "DeviceRequests": None,
    "MemoryReservation": 0,
    "MemorySwap": 0,
    "MemorySwappiness": None,
    "OomKillDisable": False,
    "PidsLimit": None,
    "Ulimits": [],
    "CpuCount": 0,
    "CpuPercent": 0,
    "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0,
    "MaskedPaths": None,
    "ReadonlyPaths": None,
}

#: What `docker update` may change, and the HostConfig keys it lands in.
UPDATABLE = (
    "BlkioWeight",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpuShares",
    "CpusetCpus",
    "CpusetMems",
    "Memory",
    "MemoryReservation",
    "MemorySwap",
    "NanoCpus",
    "PidsLimit",
)


#: A file in the container's directory saying that its last run ended in a
#: checkpoint (docker checkpoint create without --leave-running): no restart
#: policy revives it, not even "always" when the daemon starts; a start
#: removes it.
CHECKPOINTED_MARK = "checkpointed"


class _Run:
    """What belongs to one run of a container (from start to exit)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.exit_watch: Optional[Deferred] = None
        self.attached: List["_Attachment"] = []
        #: The run ends because it was checkpointed (not a crash): no
        #: restart policy applies to its exit.
        self.checkpointed = False


class _Attachment:
    """A hijacked client joined to a container's stdio through conmon."""

    def __init__(self, backend, container: Container, options: dict, stream) -> None:
        self.backend = backend
        self.container = container
        self.options = options
        self.stream = stream
        self.connection = None
        self.done = Deferred()
        self.escape = EscapeKeys(parse_detach_keys(options.get("detach_keys") or DEFAULT_DETACH_KEYS))

    def output(self, stream_id: int, data: bytes) -> None:
        if stream_id == STDOUT and not self.options["stdout"]:
            return
        if stream_id == STDERR and not self.options["stderr"]:
            return
        self.stream.write(stream_id, data)

    async def connect(self) -> None:
        c = self.container
        self.connection = await self.backend.runtime.attach(
            self.backend.attach_socket(c), self.output, self._ended
        )
        transport = self.connection.transport
        if transport is not None:
            self.stream.add_source(transport.pauseProducing, transport.resumeProducing)
        if self.options["stdin"] and c.config.get("OpenStdin"):
            self.stream.read_input(self._input, self._stdin_ended)
        self.stream.closed.addCallback(lambda _: self.connection.close())

    def _input(self, data: bytes) -> None:
        passed, detach = self.escape.feed(data)
        if passed:
            self.connection.write(passed)
        if detach:
            # The client leaves; the container goes on (stdin stays open).
            log.info("attach to {id}: detach keys read", id=self.container.short_id)
            self.stream.close()

    def _stdin_ended(self) -> None:
        if _closes_stdin(self.container) and self.connection is not None:
            self.connection.close_stdin()

    def _ended(self) -> None:
        self.stream.close()
        if not self.done.called:
            self.done.callback(None)


@implementer(IContainerBackend, IInventory)
class ContainerBackend:
    def __init__(
        self,
        reactor,
        *,
        data_root: str,
        exec_root: str,
        images,
        events: EventLog,
        runtime,
        exit_watcher,
        log_reader_factory: Callable,
        live_restore: bool = False,
        init_path: Optional[str] = None,
    ) -> None:
        self.reactor = reactor
        self.images = images
        self.events = events
        self.runtime = runtime
        self.exits = exit_watcher
        self.log_reader_factory = log_reader_factory
        self.live_restore = live_restore
        self.init_path = init_path
        #: The checkpoint backend (--experimental only): start restores.
        self.checkpoints = None
        self.containers_dir = os.path.join(data_root, "containers")
        self.layers_dir = os.path.join(data_root, "overlay2")
        self.exec_root = exec_root
        self.exit_dir = os.path.join(exec_root, "exits")
        self.socket_dir = os.path.join(exec_root, "s")
        for directory in (self.containers_dir, self.layers_dir, self.exit_dir, self.socket_dir):
            os.makedirs(directory, mode=0o711, exist_ok=True)
        self.containers: Dict[str, Container] = {}
        self.names: Dict[str, str] = {}
        self._locks: Dict[str, DeferredLock] = {}
        self._save_locks: Dict[str, DeferredLock] = {}
        self._runs: Dict[str, _Run] = {}
        self._exit_waiters: Dict[str, List[Deferred]] = {}
        self._removed_waiters: Dict[str, List[Deferred]] = {}
        self._pending_attach: Dict[str, List[_Attachment]] = {}
        self._restart_timers: Dict[str, object] = {}
        self._restart_delay: Dict[str, float] = {}
        self.shutting_down = False
        #: The exec backend, once there is one (it sets itself here): inspect
        #: lists its ExecIDs, and a run's end waits for its execs' ends.
        self.execs = None
        images.set_usage(self.image_usage)

    # -- helpers --------------------------------------------------------

    def now(self) -> int:
        return int(self.reactor.seconds() * 1_000_000_000)

    def run_in_thread(self, function, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    def lock(self, c: Container) -> DeferredLock:
        return self._locks.setdefault(c.id, DeferredLock())

    async def _save(self, c: Container) -> None:
        """Write the record (atomically, fsynced) off the reactor thread.
        The record is taken now and writes of one container keep their order."""
        data = c.record_bytes()
        lock = self._save_locks.setdefault(c.id, DeferredLock())
        await lock.acquire()
        try:
            await self.run_in_thread(write_atomic, c.record_path, data, 0o600)
        finally:
            lock.release()

    def get(self, ref: str) -> Container:
        if ref in self.containers:
            return self.containers[ref]
        name = ref if ref.startswith("/") else "/" + ref
        if name in self.names:
            return self.containers[self.names[name]]
        if ref:
            found = [c for i, c in self.containers.items() if i.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidParameter("multiple IDs found with provided prefix: %s" % (ref,))
        raise NotFound("No such container: %s" % (ref,))

    def log_event(self, c: Container, action: str, **extra) -> None:
        attributes = dict(c.config.get("Labels") or {})
        attributes["image"] = c.config.get("Image", "")
        attributes["name"] = c.name.lstrip("/")
        attributes.update({k: str(v) for k, v in extra.items()})
        self.events.log("container", action, c.id, attributes)

    def image_usage(self, image_id: str):
        return [(c.id, c.state.running) for c in self.containers.values() if c.image_id == image_id]

    def overlay(self, c: Container) -> Dict[str, str]:
        base = os.path.join(self.layers_dir, c.id)
        return {
            "UpperDir": os.path.join(base, "diff"),
            "WorkDir": os.path.join(base, "work"),
            "MergedDir": os.path.join(base, "merged"),
        }

    def bundle(self, c: Container) -> str:
        return os.path.join(self.exec_root, c.id)

    def attach_socket(self, c: Container) -> str:
        return os.path.join(self.socket_dir, c.id[:12], "attach")

    # -- start-up and shut-down ----------------------------------------

    async def load(self) -> None:
        """Read every container's record; re-adopt or settle the running ones."""
        self.exits.start()
        for entry in sorted(os.listdir(self.containers_dir)):
            directory = os.path.join(self.containers_dir, entry)
            try:
                from .container import load

                c = load(directory)
            except (ValueError, KeyError) as e:
                log.error("unreadable container record in {dir}: {e}", dir=directory, e=e)
                continue
            if c is None:
                # Created but never recorded: the daemon died inside create.
                await self.run_in_thread(shutil.rmtree, directory, True)
                continue
            self.containers[c.id] = c
            self.names[c.name] = c.id
        for c in list(self.containers.values()):
            try:
                await self._recover(c)
            except Exception:
                log.failure("recovering container {id}", id=c.id)
        for c in list(self.containers.values()):
            if c.state.running or os.path.exists(c.path_of(CHECKPOINTED_MARK)):
                continue
            if self._should_restart(c, boot=True):
                ensureDeferred(self._start_logged(c))

    async def _recover(self, c: Container) -> None:
        c.state.removing = False
        if not c.state.running:
            return
        code = self.runtime.exit_code(self.exit_dir, c.id)
        state = await self.runtime.state(c.id)
        alive = state is not None and state.get("status") in ("running", "paused") and code is None
        if alive and self.live_restore:
            log.info("re-adopting running container {id}", id=c.short_id)
            c.state.paused = state.get("status") == "paused"
            c.state.restarting = False
            self._runs[c.id] = _Run()
            self._watch(c)
            await self._save(c)
            return
        if alive:
            # Without live restore the daemon does not keep what it did not
            # stop: stop it now; its policy decides whether it runs again.
            log.info("stopping container {id} left running", id=c.short_id)
            self._runs[c.id] = _Run()
            d = self._next_exit(c)
            self._watch(c)
            await self._signal(c, signals.SIGKILL)
            await d
            return
        if c.state.restarting:
            c.state.running = c.state.restarting = False
            await self._save(c)
            return
        await self.finish_run(c, code if code is not None else 255, boot=True)

    async def shutdown(self) -> None:
        """Stop what runs (unless live restore keeps it), as dockerd does."""
        self.shutting_down = True
        for timer in self._restart_timers.values():
            if timer.active():
                timer.cancel()
        self._restart_timers.clear()
        if self.live_restore:
            self.exits.stop()
            return
        running = [c for c in self.containers.values() if c.state.running]
        await gatherResults(
            [ensureDeferred(self._stop(c, None, None, manual=False)) for c in running],
            consumeErrors=True,
        ).addErrback(lambda f: log.failure("stopping containers", f))
        self.exits.stop()

    # -- create ---------------------------------------------------------

    async def create(self, name, config, host_config, networking_config, api_version):
        if name:
            spec.validate_name(name)
            name = "/" + name.lstrip("/")
            if name in self.names:
                raise Conflict(
                    'Conflict. The container name "%s" is already in use by container "%s". '
                    "You have to remove (or rename) that container to be able to reuse that name."
                    % (name, self.names[name])
                )
        image_ref = config.get("Image") or ""
        if not image_ref:
            raise InvalidParameter("No image was specified")
        warnings = spec.validate_create(config, host_config, api_version) or []
        image = self.images.get(image_ref)
        host_config = self._host_config(host_config, api_version)
        config = spec.merge_config(
            dict(CONFIG_DEFAULTS, **config), (image.config or {}).get("config") or {}
        )
        path, args = spec.entrypoint_and_args(config)
        ident = os.urandom(32).hex()
        if not name:
            name = "/" + self._generate_name()
        if not config.get("Hostname"):
            if host_config["NetworkMode"] == "host":
                from . import host

                config["Hostname"] = host.hostname()
            else:
                config["Hostname"] = ident[:12]
        directory = os.path.join(self.containers_dir, ident)
        os.makedirs(directory, mode=0o710)
        c = Container(
            id=ident,
            name=name,
            created=self.now(),
            image_id=image.id,
            config=config,
            host_config=host_config,
            networking_config=networking_config or {},
            path=path,
            args=args,
            directory=directory,
        )
        c.graph = dict(self.overlay(c), LowerDir=":".join(reversed(image.layer_dirs)))
        await self._save(c)
        self.containers[ident] = c
        self.names[name] = ident
        self.log_event(c, "create")
        return {"Id": ident, "Warnings": warnings}

    def _host_config(self, requested: Optional[dict], api_version: str) -> dict:
        """The HostConfig kept and shown: dockerd's defaults filled in."""
        hc = spec.adapt_host_config(dict(HOST_CONFIG_DEFAULTS, **(requested or {})), api_version)
        mode = hc.get("NetworkMode") or "default"
        if mode not in NETWORK_MODES and not mode.startswith("container:"):
            raise NotFound("network %s not found" % (mode,))
        if not hc.get("RestartPolicy") or not hc["RestartPolicy"].get("Name"):
            hc["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
        log_config = hc.get("LogConfig") or {}
        if not log_config.get("Type"):
            hc["LogConfig"] = {"Type": DEFAULT_LOG_DRIVER, "Config": log_config.get("Config") or {}}
        elif log_config["Type"] not in LOG_DRIVERS:
            raise InvalidParameter(
                "logger: no log driver named '%s' is registered" % (log_config["Type"],)
            )
        if not hc.get("Runtime"):
            hc["Runtime"] = "runc"
        return hc

    def _generate_name(self) -> str:
        from .names import random_name

        for _ in range(10):
            candidate = random_name()
            if "/" + candidate not in self.names:
                return candidate
        return random_name() + os.urandom(3).hex()

    # -- start ----------------------------------------------------------

    async def start(self, ref, checkpoint: str = "", checkpoint_dir: str = "") -> None:
        if checkpoint and self.checkpoints is None:
            raise InvalidParameter("checkpoint is only supported in experimental mode")
        c = self.get(ref)
        async with self.lock(c):
            if c.state.paused:
                raise Conflict("cannot start a paused container, try unpause instead")
            if c.state.running and not c.state.restarting:
                raise NotModified("Container already started")
            if c.state.removing:
                raise Conflict("container is marked for removal and cannot be started")
            restore = None
            if checkpoint:
                restore = await self.checkpoints.restore_plan(c, checkpoint, checkpoint_dir)
            self._cancel_restart(c)
            c.manually_stopped = False
            try:
                os.unlink(c.path_of(CHECKPOINTED_MARK))
            except FileNotFoundError:
                pass
            c.state.restarting = False
            self._restart_delay.pop(c.id, None)
            try:
                await self._run(c, restore=restore)
            except Exception:
                # As dockerd: a --rm container that cannot start is removed
                # (docker run waits for that).
                if c.host_config.get("AutoRemove"):
                    await self._remove(c)
                raise

    async def _start_logged(self, c: Container) -> None:
        try:
            async with self.lock(c):
                if c.id not in self.containers or (c.state.running and not c.state.restarting):
                    return
                await self._run(c)
        except Exception as e:
            log.error("cannot restart container {id}: {e}", id=c.short_id, e=e)

    async def _run(self, c: Container, restore=None) -> None:
        """Set up and start one run; on failure leave the container exited.
        With C{restore} (a L{checkpoints.RestorePlan}) conmon restores the
        checkpoint instead of creating the container afresh."""
        image = self.images.get(c.image_id)
        paths = self.overlay(c)
        bundle = self.bundle(c)
        try:
            await self.run_in_thread(
                rootfs.mount_overlay, image.layer_dirs, paths["UpperDir"], paths["WorkDir"], paths["MergedDir"]
            )
            hc = c.host_config
            await self.run_in_thread(
                rootfs.write_etc_files,
                c.directory,
                c.config.get("Hostname", ""),
                c.config.get("Domainname", ""),
                hc.get("NetworkMode", "default"),
                hc.get("ExtraHosts"),
                hc.get("Dns"),
                hc.get("DnsSearch"),
                hc.get("DnsOptions"),
            )
            inputs = await self.run_in_thread(spec.gather_inputs, c.config, hc, {}, paths["MergedDir"])
            oci = spec.build_spec(
                container_id=c.id,
                config=c.config,
                host_config=hc,
                image_config={},
                rootfs=paths["MergedDir"],
                hostname_path=c.path_of("hostname"),
                hosts_path=c.path_of("hosts"),
                resolv_conf_path=c.path_of("resolv.conf"),
                netns_path=None,
                inputs=inputs,
                init_path=self.init_path,
            )
            await self.run_in_thread(_write_bundle, bundle, oci)
            try:
                os.unlink(os.path.join(self.exit_dir, c.id))
            except FileNotFoundError:
                pass
            run = _Run()
            self._runs[c.id] = run
            log_path = c.log_path if (hc.get("LogConfig") or {}).get("Type") != "none" else "/dev/null"
            pid = await self.runtime.create(
                c.id,
                bundle,
                log_path=log_path,
                exit_dir=self.exit_dir,
                socket_dir=self.socket_dir,
                terminal=c.tty,
                stdin=bool(c.config.get("OpenStdin")),
                leave_stdin_open=bool(c.config.get("OpenStdin")) and not _closes_stdin(c),
                socket_name=c.id[:12],
                **(restore.create_arguments() if restore is not None else {}),
            )
            for attachment in self._pending_attach.pop(c.id, []):
                try:
                    await attachment.connect()
                    run.attached.append(attachment)
                except Exception as e:
                    log.warn("attach to {id} failed: {e}", id=c.short_id, e=e)
                    attachment.stream.close()
            if restore is None:
                await self.runtime.start(c.id)
        except DockerError as e:
            if restore is not None:
                e = restore.failed(e, bundle)
            await self._failed_start(c, e)
            raise e
        except OSError as e:
            await self._failed_start(c, e)
            raise InternalError(str(e))
        c.state = State(
            running=True,
            pid=pid,
            started_at=self.now(),
            finished_at=c.state.finished_at,
        )
        await self._save(c)
        self.log_event(c, "start")
        self._watch(c)

    async def _failed_start(self, c: Container, error) -> None:
        message = str(error)
        code = 128
        if "executable file not found" in message or "no such file or directory" in message:
            code = 127
        elif "permission denied" in message:
            code = 126
        self._runs.pop(c.id, None)
        try:
            await self.runtime.delete(c.id, force=True)
        except Exception:
            pass
        await self.run_in_thread(rootfs.unmount, self.overlay(c)["MergedDir"])
        c.state.running = False
        c.state.restarting = False
        c.state.pid = 0
        c.state.exit_code = code
        c.state.error = message
        if c.id in self.containers:
            await self._save(c)
        for attachment in self._pending_attach.pop(c.id, []):
            attachment.stream.close()
        if isinstance(error, DockerError) and error.status == 500 and code in (126, 127):
            error.status = 400

    def _watch(self, c: Container) -> None:
        run = self._runs.get(c.id)
        d = self.exits.wait(c.id)
        if run is not None:
            run.exit_watch = d

        def exited(code):
            return ensureDeferred(self._exited(c, code))

        d.addCallback(exited)
        d.addErrback(lambda f: None if f.check(CancelledError) else log.failure("exit of {id}", f, id=c.short_id))

    async def _exited(self, c: Container, code: int) -> None:
        async with self.lock(c):
            if c.id not in self.containers or not c.state.running or c.state.restarting:
                return
            await self.finish_run(c, code)

    async def finish_run(self, c: Container, code: int, boot: bool = False) -> None:
        """The run is over: record how it ended, then apply the restart policy."""
        run = self._runs.pop(c.id, None)
        oom = False
        try:
            oom = bool(self.runtime.oom_killed(self.bundle(c), c.id))
        except Exception:
            pass
        try:
            await self.runtime.delete(c.id, force=True)
        except Exception as e:
            log.warn("runc delete {id}: {e}", id=c.short_id, e=e)
        try:
            await self.run_in_thread(rootfs.unmount, self.overlay(c)["MergedDir"])
        except OSError as e:
            log.warn("unmount {id}: {e}", id=c.short_id, e=e)
        c.state.running = False
        c.state.paused = False
        c.state.pid = 0
        c.state.exit_code = code
        c.state.oom_killed = oom
        c.state.finished_at = self.now()
        restart = not boot and not (run is not None and run.checkpointed) and self._should_restart(c)
        if restart:
            c.state.running = True
            c.state.restarting = True
        await self._save(c)
        if self.execs is not None:
            await self.execs.container_stopped(c)
        if oom:
            self.log_event(c, "oom")
        self.log_event(c, "die", exitCode=code)
        self._notify(self._exit_waiters, c, {"StatusCode": code, "Error": None})
        if run is not None:
            for attachment in run.attached:
                if not attachment.done.called:
                    attachment.done.callback(None)
        if restart:
            self._schedule_restart(c, run)
        elif c.host_config.get("AutoRemove") and not boot:
            await self._remove(c)

    def _notify(self, table, c: Container, result) -> None:
        for waiter in table.pop(c.id, []):
            if not waiter.called:
                waiter.callback(dict(result))

    def _next_exit(self, c: Container) -> Deferred:
        waiters = self._exit_waiters.setdefault(c.id, [])

        def cancel(d):
            if d in waiters:
                waiters.remove(d)

        d = Deferred(cancel)
        waiters.append(d)
        return d

    # -- restart policy -------------------------------------------------

    def _should_restart(self, c: Container, boot: bool = False) -> bool:
        if self.shutting_down:
            return False
        policy = c.restart_policy
        name = policy["Name"]
        if name in ("always", "unless-stopped"):
            if boot and name == "unless-stopped" and c.manually_stopped:
                return False
            return not c.manually_stopped or (boot and name == "always")
        if name == "on-failure":
            if c.manually_stopped or c.state.exit_code == 0:
                return False
            maximum = policy["MaximumRetryCount"]
            return maximum == 0 or c.restart_count < maximum
        return False

    def _schedule_restart(self, c: Container, run: Optional[_Run]) -> None:
        lasted = time.monotonic() - run.started if run is not None else 0
        delay = self._restart_delay.get(c.id, 0)
        if lasted >= RESTART_RESET_AFTER or not delay:
            delay = RESTART_DELAY
        else:
            delay = min(delay * 2, RESTART_DELAY_MAX)
        self._restart_delay[c.id] = delay
        c.restart_count += 1
        ensureDeferred(self._save(c))

        def restart():
            self._restart_timers.pop(c.id, None)
            ensureDeferred(self._start_logged(c))

        self._restart_timers[c.id] = self.reactor.callLater(delay, restart)

    def _cancel_restart(self, c: Container) -> None:
        timer = self._restart_timers.pop(c.id, None)
        if timer is not None and timer.active():
            timer.cancel()

    # -- stop, kill, restart, pause -------------------------------------

    async def _signal(self, c: Container, number: int) -> None:
        await self.runtime.kill(c.id, number, all=False)
        if c.state.paused and number in (signals.SIGKILL, signals.SIGTERM):
            # A frozen process only acts on the signal once thawed.
            await self.runtime.resume(c.id)

    async def _settled(self, c: Container) -> None:
        """Wait until no operation holds the container (a start, a
        checkpoint): a signal must not reach a process being dumped."""
        lock = self.lock(c)
        if lock.locked:
            await lock.acquire()
            lock.release()

    async def stop(self, ref, signal, timeout) -> None:
        c = self.get(ref)
        await self._settled(c)
        if not c.state.running:
            raise NotModified("Container already stopped")
        await self._stop(c, signal, timeout, manual=True)
        self.log_event(c, "stop")

    async def _stop(self, c: Container, signal, timeout, manual: bool) -> None:
        if manual:
            c.manually_stopped = True
        if c.state.restarting:
            self._cancel_restart(c)
            c.state.running = c.state.restarting = False
            await self._save(c)
            self._notify(self._exit_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})
            return
        if manual:
            await self._save(c)
        number = spec.parse_signal(signal or c.config.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            if timeout is None:
                timeout = DEFAULT_STOP_TIMEOUT
        exited = self._next_exit(c)
        try:
            await self._signal(c, number)
            self.log_event(c, "kill", signal=number)
        except DockerError as e:
            log.warn("stop signal to {id}: {e}", id=c.short_id, e=e)
        if timeout >= 0:
            timer = self.reactor.callLater(timeout, exited.cancel)
            try:
                await exited
                return
            except CancelledError:
                pass
            finally:
                if timer.active():
                    timer.cancel()
            exited = self._next_exit(c)
            try:
                await self._signal(c, signals.SIGKILL)
                self.log_event(c, "kill", signal=int(signals.SIGKILL))
            except DockerError:
                pass
        await exited

    async def kill(self, ref, signal) -> None:
        c = self.get(ref)
        await self._settled(c)
        number = spec.parse_signal(signal) if signal else int(signals.SIGKILL)
        if not c.state.running or c.state.restarting:
            raise Conflict(
                "Cannot kill container: %s: Container %s is not running" % (ref, c.id)
            )
        c.manually_stopped = True
        await self._save(c)
        exited = self._next_exit(c) if number == signals.SIGKILL else None
        await self._signal(c, number)
        self.log_event(c, "kill", signal=number)
        if exited is not None:
            # dockerd returns once a SIGKILLed container is gone.
            await exited

    async def restart(self, ref, signal, timeout) -> None:
        c = self.get(ref)
        await self._settled(c)
        if c.state.running:
            await self._stop(c, signal, timeout, manual=True)
        async with self.lock(c):
            c.manually_stopped = False
            self._cancel_restart(c)
            c.state.restarting = False
            c.state.running = False
            await self._run(c)
        self.log_event(c, "restart")

    async def pause(self, ref) -> None:
        c = self.get(ref)
        async with self.lock(c):
            if not c.state.running or c.state.restarting:
                raise Conflict("Container %s is not running" % (c.id,))
            if c.state.paused:
                raise Conflict("Container %s is already paused" % (c.id,))
            await self.runtime.pause(c.id)
            c.state.paused = True
            await self._save(c)
        self.log_event(c, "pause")

    async def unpause(self, ref) -> None:
        c = self.get(ref)
        async with self.lock(c):
            if not c.state.paused:
                raise Conflict("Container %s is not paused" % (c.id,))
            await self.runtime.resume(c.id)
            c.state.paused = False
            await self._save(c)
        self.log_event(c, "unpause")

    # -- wait, remove, rename, update ------------------------------------

    def wait(self, ref, condition) -> Deferred:
        c = self.get(ref)
        if condition == "not-running" and not c.state.running:
            return succeed({"StatusCode": c.state.exit_code, "Error": None})
        table = self._removed_waiters if condition == "removed" else self._exit_waiters
        waiters = table.setdefault(c.id, [])

        def cancel(d):
            if d in waiters:
                waiters.remove(d)

        d = Deferred(cancel)
        waiters.append(d)
        return d

    async def remove(self, ref, force, volumes) -> None:
        c = self.get(ref)
        if force:
            await self._settled(c)
        if c.state.running and not c.state.restarting:
            if not force:
                if c.state.paused:
                    raise Conflict(
                        "You cannot remove a paused container %s. Unpause and then stop the "
                        "container before attempting removal or force remove" % (c.id,)
                    )
                raise Conflict(
                    "You cannot remove a running container %s. Stop the container before "
                    "attempting removal or force remove" % (c.id,)
                )
            exited = self._next_exit(c)
            c.manually_stopped = True
            await self._signal(c, signals.SIGKILL)
            self.log_event(c, "kill", signal=int(signals.SIGKILL))
            await exited
        if c.id not in self.containers:
            return
        await self._remove(c)

    async def _remove(self, c: Container) -> None:
        self._cancel_restart(c)
        c.state.removing = True
        c.state.running = c.state.restarting = False
        self.containers.pop(c.id, None)
        self.names.pop(c.name, None)
        if self._runs.pop(c.id, None) is not None:
            # A run not yet wound up by _finish_run (which deletes it itself).
            try:
                await self.runtime.delete(c.id, force=True)
            except Exception:
                pass
        saving = self._save_locks.pop(c.id, None)
        if saving is not None:
            # Let a record write in flight land before its directory goes.
            await saving.acquire()
            saving.release()
        paths = self.overlay(c)
        await self.run_in_thread(rootfs.unmount, paths["MergedDir"])
        for directory in (c.directory, os.path.dirname(paths["UpperDir"]), self.bundle(c)):
            await self.run_in_thread(shutil.rmtree, directory, True)
        self._locks.pop(c.id, None)
        self._restart_delay.pop(c.id, None)
        self.log_event(c, "destroy")
        self._notify(self._exit_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})
        self._notify(self._removed_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})

    async def rename(self, ref, new_name) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        spec.validate_name(new_name)
        name = "/" + new_name.lstrip("/")
        if name == c.name:
            raise InvalidParameter("Renaming a container with the same name as its current name")
        if name in self.names:
            raise Conflict(
                'Conflict. The container name "%s" is already in use by container "%s". '
                "You have to remove (or rename) that container to be able to reuse that name."
                % (name, self.names[name])
            )
        old = c.name
        self.names.pop(old, None)
        c.name = name
        self.names[name] = c.id
        await self._save(c)
        self.log_event(c, "rename", oldName=old)

    async def update(self, ref, update) -> dict:
        c = self.get(ref)
        policy = update.get("RestartPolicy")
        if policy and policy.get("Name") not in (None, "", "no") and c.host_config.get("AutoRemove"):
            raise InvalidParameter(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        changes = {k: update[k] for k in UPDATABLE if k in update and update[k] not in (None,)}
        host_config = dict(c.host_config, **changes)
        if policy and policy.get("Name") is not None:
            host_config["RestartPolicy"] = {
                "Name": policy.get("Name") or "no",
                "MaximumRetryCount": int(policy.get("MaximumRetryCount") or 0),
            }
        spec.validate_create(c.config, host_config, MAX_API_VERSION)
        if c.state.running and not c.state.restarting and changes:
            resources = await self.run_in_thread(spec.read_linux_resources, host_config)
            await self.runtime.update(c.id, resources)
        c.host_config = host_config
        await self._save(c)
        self.log_event(c, "update")
        return {"Warnings": []}

    # -- views ----------------------------------------------------------

    async def top(self, ref, ps_args) -> dict:
        c = self.get(ref)
        if not c.state.running or c.state.restarting:
            raise Conflict("Container %s is not running" % (c.id,))
        pids = set(await self.runtime.ps(c.id))
        out, err, code = await getProcessOutputAndValue(
            "ps", ps_args.split(), env=dict(os.environ), reactor=self.reactor
        )
        if code != 0:
            raise InvalidParameter(
                "Error running ps: %s" % ((err or out).decode("utf-8", "replace").strip(),)
            )
        lines = out.decode("utf-8", "replace").splitlines()
        if not lines:
            raise InternalError("Error running ps: no output")
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidParameter("Couldn't find PID field in ps output")
        index = titles.index("PID")
        processes = []
        for line in lines[1:]:
            fields = line.split()
            if len(fields) <= index or not fields[index].isdigit():
                continue
            if int(fields[index]) not in pids:
                continue
            row = fields[: len(titles) - 1] + [" ".join(fields[len(titles) - 1 :])]
            processes.append(row)
        return {"Titles": titles, "Processes": processes}

    def _image_name(self, c: Container) -> str:
        return c.config.get("Image") or c.image_id

    async def _sizes(self, c: Container) -> Dict[str, int]:
        upper = self.overlay(c)["UpperDir"]
        rw = await self.run_in_thread(rootfs.directory_size, upper) if os.path.isdir(upper) else 0
        try:
            image_size = self.images.get(c.image_id).size
        except DockerError:
            image_size = 0
        return {"rw": rw, "rootfs": rw + image_size}

    async def inspect(self, ref, size, api_version) -> dict:
        c = self.get(ref)
        sizes = await self._sizes(c) if size else None
        doc = c.inspect(sizes)
        if self.execs is not None:
            doc["ExecIDs"] = self.execs.exec_ids(c.id)
        if c.state.running:
            doc["NetworkSettings"]["SandboxKey"] = (
                "/proc/%d/ns/net" % c.state.pid if c.state.pid else ""
            )
        return doc

    async def list(self, all, limit, size, filters: Filters, api_version) -> list:
        filters.validate(LIST_FILTERS)
        for status in filters.get("status"):
            if status not in STATUSES:
                raise InvalidParameter("Invalid filter 'status=%s'" % (status,))
        exited_codes = set()
        for value in filters.get("exited"):
            try:
                exited_codes.add(int(value))
            except ValueError:
                raise InvalidParameter("invalid filter 'exited=%s'" % (value,))
        for value in filters.get("health"):
            if value not in ("starting", "healthy", "unhealthy", "none"):
                raise InvalidParameter("Unrecognised filter value for health: %s" % (value,))
        before = self._bound(filters, "before")
        since = self._bound(filters, "since")
        ancestors = self._ancestors(filters)
        containers = sorted(self.containers.values(), key=lambda c: c.created, reverse=True)
        if limit and limit > 0:
            all = True
        out = []
        now = self.now()
        for c in containers:
            status = c.state.status
            if not all and not c.state.running and not filters.contains("status") and not filters.contains("exited"):
                continue
            if before is not None and c.created >= before:
                continue
            if since is not None and c.created <= since:
                continue
            if filters.get("status") and status not in filters.get("status"):
                continue
            if exited_codes and (status != "exited" or c.state.exit_code not in exited_codes):
                continue
            if not _regex_match(filters, "name", [c.name, c.name.lstrip("/")]):
                continue
            if not _regex_match(filters, "id", [c.id]):
                continue
            if not filters.match_kv_list("label", c.config.get("Labels") or {}):
                continue
            if ancestors is not None and c.image_id not in ancestors:
                continue
            if filters.get("health") and "none" not in filters.get("health"):
                continue
            if filters.get("network"):
                mode = c.network_mode()
                if ("bridge" if mode == "default" else mode) not in filters.get("network"):
                    continue
            if filters.get("volume") or filters.get("publish") or filters.get("expose"):
                continue
            if filters.get("is-task") and "true" in filters.get("is-task"):
                continue
            sizes = await self._sizes(c) if size else None
            out.append(c.summary(self._image_name(c), now, sizes))
            if limit and limit > 0 and len(out) >= limit:
                break
        return out

    def _bound(self, filters: Filters, key: str) -> Optional[int]:
        values = filters.get(key)
        if not values:
            return None
        return self.get(sorted(values)[0]).created

    def _ancestors(self, filters: Filters):
        values = filters.get("ancestor")
        if not values:
            return None
        found = set()
        for value in values:
            try:
                found.add(self.images.get(value).id)
            except DockerError:
                continue
        return found

    async def prune(self, filters: Filters) -> dict:
        filters.validate(("until", "label", "label!"))
        until = None
        for value in filters.get("until"):
            try:
                until = get_timestamp(value, self.now())
            except DockerError:
                raise InvalidParameter("invalid filter 'until=%s'" % (value,))
        deleted, reclaimed = [], 0
        for c in list(self.containers.values()):
            if c.state.running:
                continue
            if until is not None and c.created >= until:
                continue
            if not filters.match_kv_list("label", c.config.get("Labels") or {}):
                continue
            if filters.get("label!") and Filters({"label": filters.get("label!")}).match_kv_list(
                "label", c.config.get("Labels") or {}
            ):
                continue
            sizes = await self._sizes(c)
            await self._remove(c)
            deleted.append(c.id)
            reclaimed += sizes["rw"]
        if deleted:
            self.events.log("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # -- system views -----------------------------------------------------

    def counts(self) -> dict:
        running = sum(1 for c in self.containers.values() if c.state.running and not c.state.paused)
        paused = sum(1 for c in self.containers.values() if c.state.paused)
        return {
            "Containers": len(self.containers),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": len(self.containers) - running - paused,
        }

    async def disk_usage(self, types) -> dict:
        if "container" not in types:
            return {}
        now = self.now()
        listed = []
        for c in sorted(self.containers.values(), key=lambda c: c.created, reverse=True):
            listed.append(c.summary(self._image_name(c), now, await self._sizes(c)))
        return {"Containers": listed}

    # -- logs and attach --------------------------------------------------

    def tty(self, ref) -> bool:
        return self.get(ref).tty

    async def logs(self, ref, options, writer) -> None:
        """Stream the log at the client's pace: read a block, write it, wait
        until the client has taken it, read the next; then, with follow,
        what conmon appends until the run ends."""
        c = self.get(ref)
        since = _log_time(options.get("since"))
        until = _log_time(options.get("until"))
        tail = options.get("tail", "all")
        tail_n = None
        if tail not in ("", "all"):
            try:
                tail_n = max(int(tail), 0)
            except ValueError:
                tail_n = None
        streams = set()
        if options.get("stdout"):
            streams.add("stdout")
        if options.get("stderr"):
            streams.add("stderr")
        flow = getattr(writer, "flow", None)

        def emit(entry) -> None:
            ts, stream, data = entry
            if stream not in streams:
                return
            if since is not None and ts < since:
                return
            if until is not None and ts > until:
                return
            if options.get("timestamps"):
                data = golang.rfc3339_nano_fixed(ts).encode() + b" " + data
            writer.write(STDOUT if stream == "stdout" else STDERR, data)

        follow = bool(options.get("follow")) and (until is None or until > self.now())
        ended = self._next_exit(c) if follow and c.state.running else None
        try:
            if tail_n is not None:
                reader = self.log_reader_factory(c.log_path)
                for entry in await reader.read(tail=tail_n):
                    emit(entry)
                offset = reader.position or 0
            else:
                chunks = LogChunks(c.log_path)
                while True:
                    entries, at_end = await self.run_in_thread(chunks.read)
                    for entry in entries:
                        emit(entry)
                    if at_end:
                        break
                    if flow is not None:
                        await flow.writable()
                        if flow.stopped:
                            return
                offset = chunks.offset
                if ended is None:
                    for entry in chunks.partial():
                        emit(entry)
            if ended is None:
                return
            follower = LogFollower(self.reactor, c.log_path, emit, offset, since=since, until=until)
            follower.start()
            pacing = (follower.pause, follower.resume)
            if flow is not None:
                flow.listeners.append(pacing)
                if flow.paused:
                    follower.pause()
            try:
                await ended
            finally:
                if flow is not None and pacing in flow.listeners:
                    flow.listeners.remove(pacing)
                follower.resume()
                await follower.stop()
        finally:
            if ended is not None and not ended.called:
                ended.cancel()

    def check_attach(self, ref, options) -> None:
        c = self.get(ref)
        if c.state.paused:
            raise Conflict("container %s is paused, unpause the container before attach" % (c.id,))
        if c.state.restarting:
            raise Conflict("container is restarting, wait until the container is running")
        keys = options.get("detach_keys") or ""
        if keys:
            parse_detach_keys(keys)

    async def attach(self, ref, options, stream) -> None:
        c = self.get(ref)
        stream.framed = not c.tty
        if options.get("logs"):
            reader = self.log_reader_factory(c.log_path)
            for ts, name, data in await reader.read(tail=None):
                if (name == "stdout" and options["stdout"]) or (name == "stderr" and options["stderr"]):
                    stream.write(STDOUT if name == "stdout" else STDERR, data)
        if not options.get("stream"):
            stream.close()
            return
        attachment = _Attachment(self, c, options, stream)
        run = self._runs.get(c.id)
        if c.state.running and run is not None:
            await attachment.connect()
            run.attached.append(attachment)
        else:
            pending = self._pending_attach.setdefault(c.id, [])
            pending.append(attachment)
            stream.closed.addCallback(lambda _: attachment in pending and pending.remove(attachment))
        await stream.closed

    async def resize(self, ref, height, width) -> None:
        c = self.get(ref)
        if not c.state.running:
            raise Conflict("Container %s is not running" % (c.id,))
        if c.tty:
            await self.runtime.resize(self.bundle(c), height, width)


def _closes_stdin(c: Container) -> bool:
    """dockerd closes a container's stdin when its attached client leaves
    only for StdinOnce containers without a TTY (docker run -i, not -it)."""
    return bool(c.config.get("StdinOnce")) and not c.tty


def _write_bundle(bundle: str, oci: dict) -> None:
    from ..atomic import write_atomic

    os.makedirs(bundle, mode=0o700, exist_ok=True)
    write_atomic(os.path.join(bundle, "config.json"), json.dumps(oci, indent=1).encode(), mode=0o600)


def _regex_match(filters: Filters, key: str, sources: List[str]) -> bool:
    import re

    values = filters.get(key)
    if not values:
        return True
    for value in values:
        for source in sources:
            if value == source:
                return True
            try:
                if re.search(value, source):
                    return True
            except re.error:
                continue
    return False


def _log_time(value) -> Optional[int]:
    if not value:
        return None
    seconds, _, fraction = str(value).partition(".")
    try:
        whole = int(seconds)
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
    except ValueError:
        raise InvalidParameter("invalid value for time: %s" % (value,))
    if whole == 0 and nanos == 0:
        return None
    return whole * 1_000_000_000 + nanos
