"""
The OCI runtime driver: containers run from OCI bundles by runc, each
supervised by its own conmon (see L{conmon} for what conmon does),
everything asynchronous on the reactor.
"""

import json
import os
import signal as signals
from typing import Callable, List, Optional, Sequence, Tuple, Union

from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ...errors import InternalError, NotFound
from ...logs import Logger
from .attach import AttachConnection, CallbackAttach, attach
from .conmon import (
    ATTACH_FD,
    CTL_REOPEN_LOGS,
    CTL_RESIZE,
    START_FD,
    SYNC_FD,
    ConmonProcess,
    conmon_argv,
    write_ctl,
)
from .interfaces import IRuntime
from .processes import Collect, read_int, resolve_binary, unlink
from .runc import runc_error, runc_message, shim_task_message

log = Logger()

#: How long conmon may take to report the container created.
CREATE_TIMEOUT = 120.0


@implementer(IRuntime)
class Runtime:
    """runc (under conmon) driven through child processes on the reactor.

    C{state_root} is runc's C{--root}.  Every runc call goes through
    L{exec_runc}; failures become L{NotFound} ("container does not exist"),
    L{Conflict} (a container in the wrong state) or L{InternalError}, with
    runc's message.
    """

    def __init__(
        self,
        reactor,
        *,
        runc: str = "runc",
        conmon: str = "conmon",
        state_root: str,
        create_timeout: float = CREATE_TIMEOUT,
        systemd_cgroup: bool = False,
    ) -> None:
        self.reactor = reactor
        #: runc's --systemd-cgroup at create (cgroupsPath "slice:prefix:name").
        self.systemd_cgroup = systemd_cgroup
        self.runc = resolve_binary(runc)
        self.conmon = resolve_binary(conmon)
        self.state_root = os.path.abspath(state_root)
        self.create_timeout = create_timeout
        # conmon's environment: the daemon's, copied once (a copy of
        # os.environ costs more than the rest of a spawn).
        self._environment = {
            k: v for k, v in os.environ.items() if k not in ("_OCI_STARTPIPE", "_OCI_ATTACHPIPE")
        }

    # -- conmon --------------------------------------------------------

    def conmon_args(
        self,
        container_id: str,
        bundle: str,
        *,
        log_path: str,
        exit_dir: str,
        socket_dir: str,
        persist_dir: Optional[str] = None,
        restore_from: Optional[str] = None,
        **options,
    ) -> List[str]:
        """conmon's command line (argv[0] included) for L{create}; the
        C{options} are L{conmon_argv}'s."""
        if self.systemd_cgroup:
            options["runtime_args"] = ["--systemd-cgroup"] + list(options.get("runtime_args") or ())
        return conmon_argv(
            self,
            container_id,
            os.path.abspath(bundle),
            log="k8s-file:" + os.path.abspath(log_path),
            exit_dir=os.path.abspath(exit_dir),
            socket_dir=os.path.abspath(socket_dir),
            persist_dir=os.path.abspath(persist_dir) if persist_dir else None,
            restore_from=os.path.abspath(restore_from) if restore_from else None,
            **options,
        )

    def spawn_conmon(
        self, protocol: ConmonProcess, args: Sequence[str], bundle: str, attach_pipe: bool = False,
        extra_fds: Optional[dict] = None, extra_env: Optional[dict] = None,
    ) -> None:
        """Run conmon (C{args} from L{conmon_argv}) in C{bundle} with its
        sync pipe, and in exec mode its start pipe (and attach pipe); with
        C{extra_fds} (conmon's fd -> ours) and C{extra_env} for what conmon
        hands down to its runtime."""
        env = dict(self._environment)
        env.update(extra_env or {})
        env["_OCI_SYNCPIPE"] = str(SYNC_FD)
        child_fds = {0: "w", 1: "r", 2: "r", SYNC_FD: "r"}
        child_fds.update(extra_fds or {})
        if protocol.exec_mode:
            env["_OCI_STARTPIPE"] = str(START_FD)
            child_fds[START_FD] = "w"
            child_fds[ATTACH_FD] = "r"
            if attach_pipe:
                env["_OCI_ATTACHPIPE"] = str(ATTACH_FD)
        # An exec's conmon needs no working directory (its paths are
        # absolute): without one Twisted spawns it with posix_spawn instead
        # of forking the daemon, which costs milliseconds a probe.
        path = None if protocol.exec_mode else bundle
        try:
            self.reactor.spawnProcess(protocol, self.conmon, list(args), env=env, path=path, childFDs=child_fds)
        except OSError as e:
            raise InternalError("cannot run %s: %s" % (self.conmon, e.strerror or e))

    def time_limit(self, protocol: ConmonProcess, bundle: str, what: str):
        """A timer giving up on a conmon that does not report its start in
        time (and killing it); cancel it once it reported."""

        def too_long() -> None:
            if protocol.started.called:
                return
            log.error("conmon for {what} did not report in time", what=what)
            self.kill_conmon(bundle)
            protocol.give_up("conmon did not report in time")

        return self.reactor.callLater(self.create_timeout, too_long)

    def kill_conmon(self, bundle: str) -> None:
        """SIGKILL the conmon supervising C{bundle}, if it still runs (a pid
        reused by another process is left alone)."""
        if not self.conmon_alive(bundle):
            return
        try:
            os.kill(self.conmon_pid(bundle), signals.SIGKILL)
        except (OSError, TypeError):
            pass

    @classmethod
    def conmon_alive(cls, bundle: str) -> Optional[bool]:
        """Whether the conmon of C{bundle} (its C{conmon.pid}) still runs;
        None when no pid file says which conmon that was."""
        pid = cls.conmon_pid(bundle)
        if not pid or pid <= 0:
            return None
        try:
            with open("/proc/%d/comm" % pid) as f:
                return f.read().strip().startswith("conmon")
        except OSError:
            return False

    async def create(
        self, container_id: str, bundle: str, *, exit_dir: str, socket_dir: str, persist_dir: Optional[str] = None, **options
    ) -> int:
        """Create the container under a new conmon; its pid once runc made it.

        The container is then in runc state I{created} (I{running} after a
        restore).  The attach socket is C{socket_dir/(socket_name or
        container_id)/attach}; C{options} are L{conmon_args}'s (C{log_path}
        among them).  Raises
        L{InternalError} with runc's message when runc fails, or conmon's
        when conmon does.
        """
        bundle = os.path.abspath(bundle)
        extra_fds = options.pop("extra_fds", None)
        extra_env = options.pop("extra_env", None)
        # Told once conmon was spawned (it holds extra_fds then).
        on_spawned = options.pop("on_spawned", None)
        args = self.conmon_args(
            container_id, bundle, exit_dir=exit_dir, socket_dir=socket_dir, persist_dir=persist_dir, **options
        )

        def prepare() -> None:
            for directory in (exit_dir, socket_dir, self.state_root):
                os.makedirs(directory, mode=0o711, exist_ok=True)
            # What a previous run left behind would be taken for this run's.
            for leftover in ("pidfile", "conmon.pid", "oom"):
                unlink(os.path.join(bundle, leftover))
            if persist_dir:
                os.makedirs(persist_dir, mode=0o700, exist_ok=True)
                for leftover in ("exit", "oom"):
                    unlink(os.path.join(persist_dir, leftover))

        # (File work off the reactor thread: a busy disk stalls it.)
        await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), prepare)
        conmon = ConmonProcess()
        self.spawn_conmon(conmon, args, bundle, extra_fds=extra_fds, extra_env=extra_env)
        if on_spawned is not None:
            on_spawned()
        timer = self.time_limit(conmon, bundle, container_id)
        try:
            report = await conmon.started
        finally:
            if timer.active():
                timer.cancel()
        if not conmon.reported:
            await conmon.ended
            raise InternalError(conmon.output() or "conmon exited with status %s" % (conmon.status,))
        pid = report.get("data")
        if not isinstance(pid, int) or pid <= 0:
            message = runc_message(report.get("message"))
            if message and not options.get("restore_from"):
                message = shim_task_message(message)
            message = message or conmon.output()
            raise InternalError(message or "conmon failed to create the container")
        # The process we spawned wrote conmon.pid before it exited: reaped
        # here, it is neither a zombie nor a pid file still being written.
        await conmon.reaped
        log.debug("created {id} (pid {pid})", id=container_id, pid=pid)
        return pid

    @staticmethod
    def conmon_pid(bundle: str) -> Optional[int]:
        """The pid of the conmon supervising the container of C{bundle}."""
        return read_int(os.path.join(bundle, "conmon.pid"))

    @staticmethod
    def container_pid(bundle: str) -> Optional[int]:
        """The pid runc wrote for the container's process 1."""
        return read_int(os.path.join(bundle, "pidfile"))

    @staticmethod
    def exit_code(exit_dir: str, container_id: str) -> Optional[int]:
        """The exit code conmon wrote for the container, or None yet."""
        return read_int(os.path.join(exit_dir, container_id))

    @staticmethod
    def oom_killed(bundle: str, container_id: Optional[str] = None, persist_dir: Optional[str] = None) -> bool:
        """Whether conmon saw the container's memory cgroup OOM during this run
        (its C{oom} file, in the bundle or in the persist dir)."""
        places = [bundle] + ([persist_dir] if persist_dir else [])
        return any(os.path.exists(os.path.join(place, "oom")) for place in places)

    # -- runc ----------------------------------------------------------

    async def exec_runc(self, args: Sequence[str], stdin: Optional[bytes] = None) -> Tuple[bytes, bytes, int]:
        """Run C{runc --root STATE_ROOT ARGS...}: (stdout, stderr, status)."""
        collect = Collect(stdin)
        argv = [self.runc, "--root", self.state_root] + [str(a) for a in args]
        try:
            self.reactor.spawnProcess(collect, self.runc, argv, env=dict(os.environ))
        except OSError as e:
            raise InternalError("cannot run %s: %s" % (self.runc, e.strerror or e))
        return await collect.done

    async def _runc(self, args: Sequence[str], stdin: Optional[bytes] = None) -> bytes:
        out, err, code = await self.exec_runc(args, stdin)
        if code != 0:
            message = runc_message(err) or runc_message(out) or "runc %s failed with status %d" % (args[0], code)
            raise runc_error(message)
        return out

    async def start(self, container_id: str) -> None:
        await self._runc(["start", container_id])

    async def kill(self, container_id: str, signal: Union[int, str] = signals.SIGTERM, all: bool = False) -> None:
        """Send C{signal} (a number or a name, with or without SIG) to the
        container's process 1, or with C{all} to all its processes."""
        args = ["kill"] + (["--all"] if all else []) + [container_id, str(int(signal)) if isinstance(signal, int) else signal]
        await self._runc(args)

    async def pause(self, container_id: str) -> None:
        await self._runc(["pause", container_id])

    async def resume(self, container_id: str) -> None:
        await self._runc(["resume", container_id])

    async def delete(self, container_id: str, force: bool = False) -> None:
        await self._runc(["delete"] + (["--force"] if force else []) + [container_id])

    async def state(self, container_id: str) -> Optional[dict]:
        """runc's state of the container (C{status}: created, running,
        paused, stopped), or None when runc does not know it."""
        try:
            out = await self._runc(["state", container_id])
        except NotFound:
            return None
        return json.loads(out.decode("utf-8", "replace"))

    async def list_containers(self) -> List[dict]:
        """Every container runc knows under this root."""
        out = await self._runc(["list", "--format", "json"])
        return json.loads(out.decode("utf-8", "replace") or "null") or []

    async def ps(self, container_id: str) -> List[int]:
        """The host pids of the container's processes."""
        out = await self._runc(["ps", "--format", "json", container_id])
        return [int(pid) for pid in (json.loads(out.decode("utf-8", "replace") or "null") or [])]

    async def update(self, container_id: str, resources: dict) -> None:
        """Apply OCI C{LinuxResources} to the running container."""
        await self._runc(["update", "--resources", "-", container_id], stdin=json.dumps(resources).encode())

    # -- stdio ---------------------------------------------------------

    async def attach(
        self,
        socket_path: str,
        output: Callable[[int, bytes], None],
        ended: Optional[Callable[[], None]] = None,
    ) -> AttachConnection:
        """L{attach} with callbacks: C{output(stream, data)} for each piece
        of output (L{STDOUT} or L{STDERR}), C{ended()} when conmon closes."""
        return await attach(self.reactor, socket_path, CallbackAttach(output, ended))

    async def resize(self, bundle: str, height: int, width: int) -> None:
        """Resize the container's terminal (only meaningful with C{-t})."""
        write_ctl(bundle, "%d %d %d\n" % (CTL_RESIZE, int(height), int(width)))

    async def reopen_logs(self, bundle: str) -> None:
        """Make conmon reopen its log files (after they were moved away)."""
        write_ctl(bundle, "%d 0 0\n" % (CTL_REOPEN_LOGS,))

