"""
L{ContainerBackend}: the verbs of the modules beside it joined in one
object, with what they share (the containers and their names, the
per-container lock, records saved, events, paths) and the public surface the
checkpoint, copy and exec backends use.
"""

import os
from typing import Callable, Dict, List, Optional

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ...atomic import write_atomic
from ...errors import InvalidParameter, NotFound
from ...logs import Logger
from ...routers.container import IContainerBackend
from ..events import EventLog
from ..runtime.attach import socket_dir
from ..runtime.interfaces import IExitWatcher, IOverlayMounts, IRuntime
from ..system import IInventory
from .attach import Attachment, AttachMixin
from .create import CreateMixin
from .defaults import DEFAULT_LOG_DRIVER
from .delete import DeleteMixin
from .inspect import InspectMixin
from .list import ListMixin
from .logs import LogsMixin
from .monitor import MonitorMixin, Run
from .namespaces import NamespacesMixin
from .links import LinksMixin
from .networking import NetworkingMixin
from .pause import PauseMixin
from .prune import PruneMixin
from .rename import RenameMixin
from .reconcile import ReconcileMixin, save_error
from .restore import RestoreMixin
from .start import StartMixin
from .stats import StatsCollector, StatsMixin
from .stop import StopMixin
from .top import TopMixin
from .update import UpdateMixin
from .usage import UsageMixin
from .volumes import VolumesMixin
from .record import Container
from .store import ContainerStore
from .wait import WaitMixin

log = Logger()


@implementer(IContainerBackend, IInventory)
class ContainerBackend(
    RestoreMixin,
    ReconcileMixin,
    CreateMixin,
    StartMixin,
    MonitorMixin,
    StopMixin,
    PauseMixin,
    WaitMixin,
    DeleteMixin,
    RenameMixin,
    UpdateMixin,
    TopMixin,
    InspectMixin,
    ListMixin,
    PruneMixin,
    UsageMixin,
    LogsMixin,
    StatsMixin,
    AttachMixin,
    VolumesMixin,
    NetworkingMixin,
    NamespacesMixin,
    LinksMixin,
):
    """Containers created, run under conmon + runc, stopped, restarted by
    their policy, and re-found after the daemon restarts.

    Every state change is saved atomically in the container's record before
    it is announced (events, waiters), so a daemon killed at any moment comes
    back with each container's true state.  Work on one container is
    serialised by a lock of its own; exits arrive from conmon's exit files
    through inotify.
    """

    def __init__(
        self,
        reactor,
        *,
        data_root: str,
        exec_root: str,
        store: ContainerStore,
        images,
        events: EventLog,
        runtime: IRuntime,
        exit_watcher: IExitWatcher,
        mounts: IOverlayMounts,
        log_reader_factory: Callable,
        live_restore: bool = False,
        init_path: Optional[str] = None,
        execs=None,
        checkpoints=None,
        volumes=None,
        networks=None,
        default_log_config: Optional[dict] = None,
        cgroup_parent: str = "",
        cgroup_driver: str = "cgroupfs",
    ) -> None:
        """C{store} is the L{ContainerStore} shared with the image store
        (which asks it which containers use an image); C{mounts} mounts and
        unmounts the containers' root filesystems; C{execs} is the
        L{ExecStore} shared with the exec backend (inspect lists its
        ExecIDs, and a run's end waits for its execs' ends); C{checkpoints}
        the L{CheckpointStore} that a start with a checkpoint restores from
        (--experimental only: None otherwise); C{volumes} the L{VolumeStore}
        (None: a container with volumes cannot start); C{cgroup_parent}
        dockerd's --cgroup-parent ("": its default for C{cgroup_driver},
        cgroupfs or systemd); C{default_log_config} the daemon's
        C{--log-driver} and C{--log-opt} as a LogConfig (json-file without
        options when None)."""
        self.reactor = reactor
        self.images = images
        self.events = events
        self.runtime = runtime
        self.exits = exit_watcher
        self.mounts = mounts
        self.log_reader_factory = log_reader_factory
        self.live_restore = live_restore
        self.init_path = init_path
        self.checkpoints = checkpoints
        self.execs = execs
        self.volumes = volumes
        self.networks = networks
        self.default_log_config = default_log_config or {"Type": DEFAULT_LOG_DRIVER, "Config": {}}
        self.cgroup_driver = cgroup_driver
        self.cgroup_parent = cgroup_parent or ("system.slice" if cgroup_driver == "systemd" else "/docker")
        #: netavark's setups of starting runs, by container ID (networking.py).
        self._network_setups: Dict[str, Deferred] = {}
        #: Containers whose checkpointed run left its root filesystem mounted
        #: (L{MonitorMixin.finish_run}).
        self._kept_rootfs = set()
        self.containers_dir = os.path.join(data_root, "containers")
        self.layers_dir = os.path.join(data_root, "overlay2")
        self.exec_root = exec_root
        self.exit_dir = os.path.join(exec_root, "exits")
        self.socket_dir = socket_dir(exec_root)
        for directory in (self.containers_dir, self.layers_dir, self.exit_dir, self.socket_dir):
            os.makedirs(directory, mode=0o711, exist_ok=True)
        self.store = store
        # The store's own tables, read and changed here.
        self.containers: Dict[str, Container] = store.by_id
        self.names: Dict[str, str] = store.names
        self._locks: Dict[str, DeferredLock] = {}
        self._save_locks: Dict[str, DeferredLock] = {}
        self._runs: Dict[str, Run] = {}
        self._exit_waiters: Dict[str, List[Deferred]] = {}
        self._removed_waiters: Dict[str, List[Deferred]] = {}
        self._pending_attach: Dict[str, List[Attachment]] = {}
        self._restart_timers: Dict[str, object] = {}
        self._restart_delay: Dict[str, float] = {}
        self.shutting_down = False
        self.stats_collector = StatsCollector(
            reactor, self.run_in_thread, present=lambda c: self.by_id(c.id) is c, bundle=self.bundle
        )
        self._run_watchers: list = []

    # -- the surface other backends use (checkpoint, copy, exec) ---------------

    def now(self) -> int:
        return int(self.reactor.seconds() * 1_000_000_000)

    def run_in_thread(self, function, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    def lock(self, c: Container) -> DeferredLock:
        return self._locks.setdefault(c.id, DeferredLock())

    async def save(self, c: Container) -> None:
        """Write the record (atomically, fsynced) off the reactor thread.
        Writes of one container keep their order; the record is taken when
        its turn comes (so a write never puts back an older state)."""
        lock = self._save_locks.setdefault(c.id, DeferredLock())
        await lock.acquire()
        try:
            await self.run_in_thread(write_atomic, c.record_path, c.record_bytes(), 0o600)
        except OSError as e:
            # The disk full (ENOSPC), EIO: a clear message, not a traceback.
            raise save_error(c, e)
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

    def by_id(self, container_id: str) -> Optional[Container]:
        """The container of that full ID, or None (removed)."""
        return self.containers.get(container_id)

    def mark_checkpointed(self, c: Container, checkpointed: bool, keep_runtime: bool = False) -> None:
        """Say whether the current run ends because it was checkpointed (not
        a crash): no restart policy then applies to its exit.  With
        C{keep_runtime}, runc's state of the run and its cgroups stay after
        the exit (a restore over CRIU's RPC goes back into them; the next
        start or the removal deletes them)."""
        run = self._runs.get(c.id)
        if run is not None:
            run.checkpointed = checkpointed
            run.keep_runtime = checkpointed and keep_runtime

    def wait_exit_code(self, c: Container) -> Deferred:
        """A Deferred firing with the exit code conmon writes for the
        current run; cancelling it forgets it."""
        return self.exits.wait(c.id)

    def watch_runs(self, watcher) -> None:
        """Have C{watcher} told of every run's changes, as moby's daemon
        tells its health monitor: C{run_started(c)} once a run (or a
        re-adopted one) runs, C{run_paused(c)}, C{run_resumed(c)},
        C{run_ended(c)} when its process exited (each before the record is
        saved), and C{shutdown()} when the daemon stops and leaves its
        containers running (--live-restore)."""
        self._run_watchers.append(watcher)

    def _tell(self, what: str, *args) -> None:
        for watcher in self._run_watchers:
            try:
                getattr(watcher, what)(*args)
            except Exception:
                log.failure("{what} of a run watcher", what=what)

    def log_event(self, c: Container, action: str, **extra) -> None:
        attributes = dict(c.config.get("Labels") or {})
        attributes["image"] = c.config.get("Image", "")
        attributes["name"] = c.name.lstrip("/")
        attributes.update({k: str(v) for k, v in extra.items()})
        self.events.log("container", action, c.id, attributes)

    def overlay(self, c: Container) -> Dict[str, str]:
        base = os.path.join(self.layers_dir, c.id)
        return {
            "UpperDir": os.path.join(base, "diff"),
            "WorkDir": os.path.join(base, "work"),
            "MergedDir": os.path.join(base, "merged"),
        }

    def init_layer(self, c: Container) -> str:
        """The container's init layer (dockerd's "<id>-init"), inside its
        layer directory so that it goes with it."""
        return os.path.join(self.layers_dir, c.id, "init")

    def layer_dirs(self, c: Container) -> List[str]:
        """The layers below the container's own, lowest first: the image's,
        then its init layer (what diff, commit and export compare with)."""
        return list(self.images.get_layer_dirs(c.image_id)) + [self.init_layer(c)]

    def staging_dir(self, name: str) -> str:
        """A path for work to be renamed into a container's layer later
        (the same filesystem as the layers)."""
        return os.path.join(self.layers_dir, name)

    def bundle(self, c: Container) -> str:
        return os.path.join(self.exec_root, c.id)

    def attach_socket(self, c: Container) -> str:
        return os.path.join(self.socket_dir, c.id[:12], "attach")
