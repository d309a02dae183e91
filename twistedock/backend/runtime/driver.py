"""
The OCI runtime driver: containers run from OCI bundles by runc, each
supervised by its own conmon (see L{conmon} for what conmon does),
everything asynchronous on the reactor.
"""

import functools
import json
import os
import shutil
import signal as signals
import subprocess
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
from ..spawn import Spawner
from .processes import Collect, read_int, resolve_binary, unlink
from .runc import runc_error, runc_message, shim_task_message


@functools.lru_cache(maxsize=None)
def chdir_launcher() -> Tuple[str, ...]:
    """C{env -C}, if this host's env has it (GNU coreutils 8.28 on): how a
    child is started in a working directory of its own without Twisted
    forking the daemon (blocking, once)."""
    env = shutil.which("env")
    if env is None:
        return ()
    try:
        subprocess.run([env, "-C", "/", "true"], check=True, timeout=10,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (env, "-C")

log = Logger()

#: How long conmon may take to report the container created.
CREATE_TIMEOUT = 120.0
#: How long a killed C{runc init} may take to die (L{Runtime.create_stopped}).
STOP_TIMEOUT = 10.0
#: runc create's pid file and log in the bundle (L{Runtime.create_stopped}).
PREPARE_PID, PREPARE_LOG = "prepare.pid", "prepare.log"


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
        #: runc's environment: the daemon's, copied once too.
        self._runc_environment = dict(os.environ)
        #: runc started from a thread (the reactor neither waits nor holds the GIL).
        self.spawner = Spawner(reactor)

    def ready(self) -> None:
        """(Blocking, as the daemon starts.)  How conmon will be started in
        a bundle found now, not by the first container's start on the
        reactor: env -C's check, where the spawner cannot chdir."""
        if not self.spawner.can_chdir:
            chdir_launcher()

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

    async def spawn_conmon(
        self, protocol: ConmonProcess, args: Sequence[str], bundle: str, attach_pipe: bool = False,
        extra_fds: Optional[dict] = None, extra_env: Optional[dict] = None,
    ) -> None:
        """Run conmon (C{args} from L{conmon_argv}) in C{bundle} with its
        sync pipe, and in exec mode its start pipe (and attach pipe); with
        C{extra_fds} (conmon's fd -> ours, kept open by the caller until
        this returns) and C{extra_env} for what conmon hands down to its
        runtime. Spawned from L{Spawner}'s thread, as runc is: on the
        reactor, posix_spawn would hold the GIL while the child starts (a
        few ms a container under load, during which nothing of the daemon
        runs); returns once conmon was started (the protocol connected)."""
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
        # A container's conmon runs in its bundle (it writes the "oom" file
        # there); an exec's needs no working directory. With a working
        # directory Twisted forks the daemon (its page tables copied on the
        # reactor thread: ~10 ms a start on a 80 MB daemon), without one it
        # uses posix_spawn: so the bundle becomes conmon's working directory
        # through the spawner's posix_spawn (glibc's addchdir), or else
        # through env -C, which then execs conmon (the same process: an
        # exec more, about 1 ms).
        executable, argv, path, spawned_in = self.conmon, list(args), None, None
        if not protocol.exec_mode:
            if self.spawner.can_chdir:
                spawned_in = bundle
            else:
                launcher = chdir_launcher()
                if launcher:
                    executable, argv = launcher[0], list(launcher) + [bundle, "--"] + argv
                else:
                    path = bundle
        try:
            if path is None:
                await self.spawner.spawn_process(protocol, executable, argv, env, child_fds, path=spawned_in)
            else:
                self.reactor.spawnProcess(protocol, executable, argv, env=env, path=path, childFDs=child_fds)
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
        await self.spawn_conmon(conmon, args, bundle, extra_fds=extra_fds, extra_env=extra_env)
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
            await self.spawner.spawn_process(collect, self.runc, argv, self._runc_environment)
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

    async def create_stopped(self, container_id: str, bundle: str, timeout: float = STOP_TIMEOUT) -> None:
        """runc's state of a container of C{bundle} that never ran: C{runc
        create} (no conmon, stdio /dev/null, no terminal), which makes its
        cgroups (limits and device rules set), then its C{runc init}
        killed before it was ever started, waited for, and its exec fifo
        removed.  runc then knows a stopped container whose cgroups stay
        until C{runc delete}: what a restore over CRIU's RPC goes back into
        (L{criudriver.restorable_state}).  On failure, what was made is
        deleted and L{InternalError} raised with runc's message."""
        bundle = os.path.abspath(bundle)
        pid_file = os.path.join(bundle, PREPARE_PID)
        log_file = os.path.join(bundle, PREPARE_LOG)

        def prepare() -> int:
            os.makedirs(self.state_root, mode=0o711, exist_ok=True)
            for leftover in (pid_file, log_file):
                unlink(leftover)
            return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)

        devnull = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), prepare)
        argv = [self.runc, "--root", self.state_root, "--log", log_file, "--log-format", "json"]
        if self.systemd_cgroup:
            argv.append("--systemd-cgroup")
        argv += ["create", "--bundle", bundle, "--pid-file", pid_file, container_id]
        # runc init keeps runc create's stdio: no pipe of ours, which would
        # stay open until it dies.
        collect = Collect(None)
        try:
            await self.spawner.spawn_process(collect, self.runc, argv, self._runc_environment,
                                             child_fds={0: devnull, 1: devnull, 2: devnull})
        except OSError as e:
            raise InternalError("cannot run %s: %s" % (self.runc, e.strerror or e))
        finally:
            os.close(devnull)
        _, _, code = await collect.done
        pid = read_int(pid_file)
        try:
            if pid:
                os.kill(pid, signals.SIGKILL)
            if code != 0:
                message = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _runc_log_error,
                                                  log_file)
                raise InternalError(message or "runc create failed with status %d" % (code,))
            if not pid:
                raise InternalError("runc create wrote no pid file")
            await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _wait_dead, pid, timeout)
            await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), unlink,
                                    os.path.join(self.state_root, container_id, "exec.fifo"))
        except BaseException:
            try:
                await self.delete(container_id, force=True)
            except Exception as e:
                log.debug("runc delete {id}: {e}", id=container_id, e=e)
            raise
        finally:
            for leftover in (pid_file, log_file):
                unlink(leftover)

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



def _runc_log_error(path: str) -> str:
    """The last error runc wrote to its C{--log} file (JSON lines)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {"msg": line}
        if isinstance(entry, dict) and entry.get("level", "error") in ("error", "fatal") and entry.get("msg"):
            return runc_message(str(entry["msg"]))
    return ""


def process_dead(pid: int) -> bool:
    """Whether C{pid} is gone or a zombie (runc takes a zombie init for
    stopped; an orphaned one is reaped by whoever inherits it)."""
    try:
        with open("/proc/%d/stat" % (pid,), "rb") as f:
            text = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return True
    return text[text.rindex(")") + 2:].split()[0] in ("Z", "X", "x")


def _wait_dead(pid: int, timeout: float) -> None:
    """(Blocking: in a thread.)  Until C{pid} is dead, looking every
    millisecond; InternalError after C{timeout} seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not process_dead(pid):
        if time.monotonic() > deadline:
            raise InternalError("runc init %d still alive %.0f s after SIGKILL" % (pid, timeout))
        time.sleep(0.001)
