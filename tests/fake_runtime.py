"""
A container backend over a fake runtime, for in-process tests: no process,
no mount.  L{FakeRuntime} keeps runc's table of containers and conmon's exit
files; the test says when a process exits (L{FakeRuntime.exit}), is OOM
killed, or vanishes with the host; signals that kill (SIGKILL, or those the
test names) end the process on the next reactor turn, as an exit reported
by conmon arrives after runc's C{kill} returned.  L{World} joins it with a
real L{ImageStore} holding one image, a real L{EventLog} and a
L{SyncReactor} (a L{Clock} that runs thread work at once): every step is
synchronous, and time moves only when the test advances the clock.
"""

import io
import os
import signal as signals
from typing import Dict, List, Optional

import attr
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from twistedock.backend.containers import ContainerBackend, ContainerStore
from twistedock.backend.events import EventLog
from twistedock.backend.images import ImageStore
from twistedock.backend.runtime import LogReader
from twistedock.backend.runtime.interfaces import IExitWatcher, IOverlayMounts, IRuntime
from twistedock.backend.runtime.runc import runc_error

from .memory import result_of
from .test_images import ROOTFS, SyncReactor

#: When the tests' clock starts (2023-11-14T22:13:20Z).
START = 1_700_000_000


@attr.s(auto_attribs=True)
class FakeProcess:
    """One container as runc knows it."""

    pid: int
    bundle: str
    options: dict
    status: str = "created"  # created, running, paused, stopped
    oom: bool = False
    #: The exit code a signal gave a paused process: it dies once thawed.
    pending_exit: Optional[int] = None
    #: Whether its conmon still runs (it exits once it wrote the exit file).
    conmon: bool = True


@implementer(IRuntime)
class FakeRuntime:
    """runc under conmon, as a table.  C{calls} lists every call as
    C{(seconds, name, container_id, ...)}; C{failures} maps a call's name to
    the error its next call raises."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.calls: List[tuple] = []
        self.processes: Dict[str, FakeProcess] = {}
        #: conmon's exit files: written at an exit, removed by a create.
        self.exit_codes: Dict[str, int] = {}
        #: Signals that end the process, and its exit code then.
        self.deadly = {int(signals.SIGKILL): 137}
        self.failures: Dict[str, Exception] = {}
        #: The bundles a conmon was run for.
        self.bundles = set()
        self.watcher = FakeExitWatcher(self)
        self._next_pid = 4000

    def _call(self, name: str, *args) -> None:
        self.calls.append((self.reactor.seconds(), name) + args)
        failure = self.failures.pop(name, None)
        if failure is not None:
            raise failure

    def called(self, name: str) -> List[tuple]:
        """The arguments of every call of C{name} (after the container ID's)."""
        return [call[2:] for call in self.calls if call[1] == name]

    def _process(self, container_id: str) -> FakeProcess:
        process = self.processes.get(container_id)
        if process is None:
            raise runc_error("container does not exist")
        return process

    # -- IRuntime ---------------------------------------------------------

    async def create(self, container_id, bundle, *, exit_dir, socket_dir, persist_dir=None, **options):
        self._call("create", container_id, dict(options, exit_dir=exit_dir, socket_dir=socket_dir))
        if container_id in self.processes:
            raise runc_error("container with id exists: %s" % (container_id,))
        self.exit_codes.pop(container_id, None)
        self._next_pid += 1
        self.processes[container_id] = FakeProcess(self._next_pid, bundle, options)
        self.bundles.add(bundle)
        return self._next_pid

    async def start(self, container_id):
        self._call("start", container_id)
        process = self._process(container_id)
        if process.status != "created":
            raise runc_error("cannot start a container that has stopped")
        process.status = "running"

    async def kill(self, container_id, signal=signals.SIGTERM, all=False):
        self._call("kill", container_id, int(signal))
        process = self._process(container_id)
        if process.status not in ("running", "paused"):
            raise runc_error("container not running")
        code = self.deadly.get(int(signal))
        if code is None:
            return
        if process.status == "paused":
            process.pending_exit = code
        else:
            self.reactor.callLater(0, self.exit, container_id, code)

    async def pause(self, container_id):
        self._call("pause", container_id)
        process = self._process(container_id)
        if process.status != "running":
            raise runc_error("container not running")
        process.status = "paused"

    async def resume(self, container_id):
        self._call("resume", container_id)
        process = self._process(container_id)
        if process.status != "paused":
            raise runc_error("container not paused")
        process.status = "running"
        if process.pending_exit is not None:
            self.reactor.callLater(0, self.exit, container_id, process.pending_exit)

    async def delete(self, container_id, force=False):
        self._call("delete", container_id, force)
        process = self._process(container_id)
        if process.status != "stopped" and not force:
            raise runc_error("cannot delete container that is not stopped")
        del self.processes[container_id]

    async def state(self, container_id):
        self._call("state", container_id)
        process = self.processes.get(container_id)
        return None if process is None else {"id": container_id, "status": process.status, "pid": process.pid}

    async def list_containers(self):
        self._call("list")
        return [{"id": i, "status": p.status, "pid": p.pid} for i, p in sorted(self.processes.items())]

    async def ps(self, container_id):
        self._call("ps", container_id)
        process = self._process(container_id)
        return [process.pid] if process.status in ("running", "paused") else []

    async def update(self, container_id, resources):
        self._call("update", container_id, resources)
        self._process(container_id)

    async def attach(self, socket_path, output, ended=None):
        self._call("attach", socket_path)
        return FakeAttachConnection(output, ended)

    async def resize(self, bundle, height, width):
        self._call("resize", bundle, height, width)

    def oom_killed(self, bundle, container_id=None, persist_dir=None):
        process = self.processes.get(container_id)
        return process is not None and process.oom

    def exit_code(self, exit_dir, container_id):
        return self.exit_codes.get(container_id)

    def conmon_alive(self, bundle):
        for process in self.processes.values():
            if process.bundle == bundle:
                return process.conmon
        # Its conmon.pid names a conmon that has exited (or none was run).
        return False if bundle in self.bundles else None

    def kill_conmon(self, bundle):
        self.calls.append((self.reactor.seconds(), "kill_conmon", bundle))
        for process in self.processes.values():
            if process.bundle == bundle:
                process.conmon = False

    # -- the world: what the test makes happen -----------------------------

    def exit(self, container_id: str, code: int, oom: bool = False) -> None:
        """The container's process exits with C{code} now (OOM killed with
        C{oom}); conmon writes the exit file."""
        process = self._process(container_id)
        if process.status == "stopped":
            return
        process.status = "stopped"
        process.oom = oom
        process.pending_exit = None
        if not process.conmon:
            return  # nobody writes the exit file
        self.exit_codes[container_id] = code
        process.conmon = False
        self.watcher.exited(container_id, code)

    def lose_conmon(self, container_id: str) -> None:
        """The container's conmon dies (SIGKILLed): its process goes on,
        and nobody will write its exit file."""
        self._process(container_id).conmon = False

    def die_unreported(self, container_id: str) -> None:
        """The container's process and its conmon are gone, runc knows it
        stopped, and no exit file was written (an OOM of the host, a
        SIGKILL of both)."""
        process = self._process(container_id)
        process.conmon = False
        process.status = "stopped"

    def vanish(self, container_id: str) -> None:
        """The container and its conmon are gone without a trace (the host
        rebooted): runc does not know it, no exit file was written."""
        self.processes.pop(container_id, None)
        self.exit_codes.pop(container_id, None)

    def status(self, container_id: str) -> Optional[str]:
        process = self.processes.get(container_id)
        return None if process is None else process.status


class FakeAttachConnection:
    def __init__(self, output, ended) -> None:
        self.output = output
        self.ended = ended
        self.transport = None
        self.written: List[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close_stdin(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@implementer(IExitWatcher)
class FakeExitWatcher:
    """The exit files of L{FakeRuntime}, awaited as L{ExitWatcher} awaits
    conmon's."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self.running = False
        self.waiters: Dict[str, List[Deferred]] = {}

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False
        waiters, self.waiters = self.waiters, {}
        for ds in waiters.values():
            for d in ds:
                if not d.called:
                    d.errback(Failure(CancelledError("exit watcher stopped")))

    def wait(self, container_id: str) -> Deferred:
        self.running = True
        code = self.runtime.exit_codes.get(container_id)
        if code is not None:
            return succeed(code)

        def cancel(d: Deferred) -> None:
            waiters = self.waiters.get(container_id, [])
            if d in waiters:
                waiters.remove(d)

        d = Deferred(cancel)
        self.waiters.setdefault(container_id, []).append(d)
        return d

    def exited(self, container_id: str, code: int) -> None:
        for d in self.waiters.pop(container_id, []):
            if not d.called:
                d.callback(code)


@implementer(IOverlayMounts)
class FakeMounts:
    """Overlay mounts as a set of targets (the directories are made, as the
    real mount makes them)."""

    def __init__(self) -> None:
        self.mounted = set()
        self.calls: List[tuple] = []

    def mount(self, lower_dirs, upper, work, target) -> None:
        self.calls.append(("mount", list(lower_dirs), upper, work, target))
        for directory in (upper, work, target):
            os.makedirs(directory, exist_ok=True)
        self.mounted.add(target)

    def unmount(self, target) -> None:
        self.calls.append(("unmount", target))
        self.mounted.discard(target)

    def mount_shm(self, target, size) -> None:
        self.calls.append(("mount_shm", target, size))
        os.makedirs(target, exist_ok=True)
        self.mounted.add(target)

    def mounted_under(self, prefix) -> List[str]:
        return sorted(t for t in self.mounted if t.startswith(prefix.rstrip("/") + "/"))


def run(coroutine):
    """The result of a coroutine that completes without the clock moving."""
    return result_of(ensureDeferred(coroutine))


def failure_of(coroutine) -> BaseException:
    """The exception a coroutine that completes at once raised."""
    results = []
    ensureDeferred(coroutine).addBoth(results.append)
    assert results, "the coroutine has not completed"
    assert isinstance(results[0], Failure), results[0]
    return results[0].value


class World:
    """A daemon's container backend on C{root}, over C{runtime} (a new
    L{FakeRuntime} unless given: pass the previous world's to restart the
    daemon on the same host)."""

    def __init__(
        self, root, runtime: Optional[FakeRuntime] = None, live_restore: bool = False, clock=None, mounts=None,
        networks=None,
    ):
        self.root = str(root)
        if clock is None:
            clock = SyncReactor()
            clock.advance(START)
        self.clock = clock
        self.events = EventLog(now=self.now)
        self.store = ContainerStore()
        data_root = os.path.join(self.root, "data")
        self.images = ImageStore(clock, data_root, self.events, now=self.now, containers=self.store)
        run(self.images.load())
        try:
            self.image_id = self.images.get("busybox").id
        except Exception:
            self.image_id = run(
                self.images.import_image(io.BytesIO(ROOTFS), repo="busybox", tag="latest", changes=['CMD ["sh"]'])
            )
        self.runtime = runtime if runtime is not None else FakeRuntime(clock)
        self.mounts = mounts if mounts is not None else FakeMounts()
        self.backend = ContainerBackend(
            clock,
            data_root=data_root,
            exec_root=os.path.join(self.root, "exec"),
            store=self.store,
            images=self.images,
            events=self.events,
            runtime=self.runtime,
            exit_watcher=self.runtime.watcher,
            mounts=self.mounts,
            log_reader_factory=lambda path: LogReader(clock, path),
            live_restore=live_restore,
            networks=networks,
        )

    def now(self) -> int:
        return int(round(self.clock.seconds() * 1e9))

    def crash(self) -> None:
        """The daemon dies: from now on it sees no exit (its containers'
        processes go on)."""
        self.runtime.watcher.stop()

    def restarted(self, live_restore: bool = False) -> "World":
        """The daemon started again on the same data root and host (after
        L{crash}, or after a clean stop), its containers loaded."""
        self.crash()
        self.runtime.watcher = FakeExitWatcher(self.runtime)
        # The host's mounts outlive the daemon (their calls start anew).
        self.mounts.calls = []
        world = World(self.root, runtime=self.runtime, live_restore=live_restore, clock=self.clock, mounts=self.mounts)
        loaded = ensureDeferred(world.backend.load())
        world.settle()
        result_of(loaded)
        return world

    def settle(self) -> None:
        """Run what is due now (exits that signals caused)."""
        self.clock.advance(0)

    # -- shortcuts ---------------------------------------------------------

    def create(self, name: str = "", host_config=None, **config) -> str:
        config.setdefault("Image", "busybox")
        answer = run(self.backend.create(name, config, host_config or {}, None, "1.41"))
        return answer["Id"]

    def started(self, name: str = "", host_config=None, **config) -> str:
        ident = self.create(name, host_config, **config)
        run(self.backend.start(ident))
        return ident

    def state(self, ref: str) -> dict:
        return run(self.backend.inspect(ref, False, "1.41"))["State"]

    def actions(self, container_id: str) -> List[str]:
        """The container's events, as C{action} or C{action:signal} /
        C{action:exitCode}."""
        out = []
        for event in self.events._history:
            if event.type != "container" or event.actor.id != container_id:
                continue
            attributes = event.actor.attributes
            extra = attributes.get("signal") or attributes.get("exitCode")
            out.append(event.action + (":" + extra if extra else ""))
        return out
