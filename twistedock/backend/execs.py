"""
Exec: processes started in a running container (C{docker exec}), each under
a conmon of its own in exec mode, so that its output, its stdin, its
terminal and its exit code are handled as a container's are.

How conmon's exec mode works is told in L{runtime.conmon}.
"""

import base64
import json
import os
import shutil
import signal as signals
from typing import Dict, List, Optional, Tuple

import attr
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ..atomic import write_atomic
from ..deferreds import cancel_quietly
from ..errors import Conflict, DockerError, InternalError, InvalidParameter, NotFound
from ..logs import Logger
from ..routers.container import ExecOptions, ExecStartConfig, IExecBackend
from ..streams import STDERR, STDOUT
from . import spec
from .detachkeys import DEFAULT_DETACH_KEYS, EscapeKeys, parse_detach_keys
from .runtime import runc_message
from .runtime.attach import socket_dir
from .runtime.conmon import ConmonProcess, conmon_argv

log = Logger()

#: How long C{POST /exec/{id}/resize} waits for the exec to start, as dockerd.
RESIZE_WAIT = 10.0
#: dockerd's exec garbage collection: ended execs are forgotten after one
#: to two periods.
GC_INTERVAL = 300.0
#: When a container stops, how long its execs may take to report their end
#: before they are killed, then how long after that.
STOP_GRACE = 2.0
STOP_KILL_WAIT = 5.0

_FAILED_TO_START = 126  # dockerd's exitEaccess: an exec that could not start


@attr.s(auto_attribs=True, eq=False)
class Exec:
    """One exec instance, as dockerd's ExecConfig."""

    id: str
    container_id: str
    entrypoint: str
    args: List[str]
    env: List[str]
    user: str
    working_dir: str
    tty: bool = False
    privileged: bool = False
    open_stdin: bool = False
    open_stdout: bool = False
    open_stderr: bool = False
    detach_keys: bytes = b""
    console_size: Optional[Tuple[int, int]] = None
    running: bool = False
    exit_code: Optional[int] = None
    pid: int = 0
    can_remove: bool = False
    #: Created or running: listed in the container's ExecIDs.
    live: bool = True
    bundle: str = ""
    conmon: Optional[ConmonProcess] = None
    #: Fire once a start was tried (for resize), once the process ended.
    _started: List[Deferred] = attr.Factory(list)
    _ended: List[Deferred] = attr.Factory(list)
    start_tried: bool = False

    def command(self) -> str:
        """The command as exec events show it (a trailing space without args)."""
        return self.entrypoint + " " + " ".join(self.args)

    def wait_started(self) -> Deferred:
        if self.start_tried:
            return succeed(self.pid)
        d = Deferred(lambda d: d in self._started and self._started.remove(d))
        self._started.append(d)
        return d

    def wait_ended(self) -> Deferred:
        if self.exit_code is not None:
            return succeed(self.exit_code)
        d = Deferred(lambda d: d in self._ended and self._ended.remove(d))
        self._ended.append(d)
        return d

    def _fire(self, waiters: List[Deferred], value) -> None:
        pending, waiters[:] = list(waiters), []
        for d in pending:
            if not d.called:
                d.callback(value)

    def inspect(self) -> dict:
        process = {
            "tty": self.tty,
            "entrypoint": self.entrypoint,
            "arguments": list(self.args),
            "privileged": self.privileged,
        }
        if self.user:
            process["user"] = self.user
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": process,
            "OpenStdin": self.open_stdin,
            "OpenStderr": self.open_stderr,
            "OpenStdout": self.open_stdout,
            "CanRemove": self.can_remove,
            "ContainerID": self.container_id,
            # Go's []byte: base64.
            "DetachKeys": base64.b64encode(self.detach_keys).decode("ascii"),
            "Pid": self.pid,
        }


def exec_process(
    container_process: dict, e: Exec, rootfs: str, group_add=(), console_size=None, sysinfo=None
) -> dict:
    """The OCI process of exec C{e}: the container's process (rlimits,
    no-new-privileges, AppArmor profile, user and capabilities) with the
    exec's command, environment, working directory, terminal, user
    (resolved in C{rootfs}) and privileges, as dockerd's ContainerExecStart."""
    process = {
        k: v
        for k, v in (container_process or {}).items()
        if k not in ("args", "env", "cwd", "terminal", "consoleSize", "user", "capabilities")
    }
    process["terminal"] = e.tty
    if e.tty and console_size and len(console_size) == 2 and all(console_size):
        process["consoleSize"] = {"height": int(console_size[0]), "width": int(console_size[1])}
    if e.user:
        user = spec.resolve_user(rootfs, e.user, group_add)
    else:
        user = dict((container_process or {}).get("user") or {"uid": 0, "gid": 0})
    process["user"] = user
    process["args"] = [e.entrypoint] + list(e.args)
    process["env"] = list(e.env)
    process["cwd"] = e.working_dir or "/"
    if e.privileged:
        caps = spec.grantable_capabilities(sysinfo)
    else:
        caps = list(((container_process or {}).get("capabilities") or {}).get("bounding") or ())
    # As for the container's own process: a process of root gets its
    # capabilities, any other user only the bounding set (the kernel drops
    # the rest when runc changes user).
    if user.get("uid", 0) == 0:
        process["capabilities"] = {"bounding": caps, "effective": list(caps), "permitted": list(caps)}
    else:
        process["capabilities"] = {"bounding": caps}
    return process


def daemon_environment(config: dict, tty: bool) -> List[str]:
    """dockerd's CreateDaemonEnvironment: PATH, HOSTNAME, TERM for a
    terminal, then the container's Env."""
    defaults = ["PATH=" + spec.DEFAULT_PATH_ENV, "HOSTNAME=" + (config.get("Hostname") or "")]
    if tty:
        defaults.append("TERM=xterm")
    return spec.replace_or_append_env(defaults, config.get("Env") or ())


def start_error(message: str, entrypoint: str):
    """(exit code, error) for an exec runc could not start, as dockerd 20.10
    translates the runtime's error: always exit code 126; 400 for a command
    not found or that cannot be run, 500 otherwise."""
    text = "OCI runtime exec failed: %s: unknown" % (message,)
    lowered = text.lower()
    error = InternalError(text)
    if any(s in lowered for s in ("executable file not found", "no such file or directory", "permission denied")):
        error = InvalidParameter(text)
    if "not a directory" in lowered:
        text += (
            ": Are you trying to mount a directory onto a file (or vice-versa)? "
            "Check if the specified host path exists and is the expected type"
        )
        error = InvalidParameter(text)
    return _FAILED_TO_START, error


@implementer(IPushProducer)
class _ClientPacer:
    """Registered with the exec's attach connection: when conmon falls
    behind with stdin, stop reading from the client (never closes it)."""

    def __init__(self, transport) -> None:
        self.transport = transport

    def pauseProducing(self) -> None:
        pause = getattr(self.transport, "pauseProducing", None)
        if pause is not None:
            pause()

    def resumeProducing(self) -> None:
        resume = getattr(self.transport, "resumeProducing", None)
        if resume is not None:
            resume()

    def stopProducing(self) -> None:
        pass


class ExecStore:
    """The execs of every container, shared by the exec backend (which
    creates and runs them) and the container backend (which lists them in
    inspect's ExecIDs and, when a run ends, waits for them to end first)."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.execs: Dict[str, Exec] = {}

    def exec_ids(self, container_id: str) -> Optional[List[str]]:
        """The container's execs that were created or run (inspect's ExecIDs)."""
        ids = [e.id for e in self.execs.values() if e.container_id == container_id and e.live]
        return ids or None

    async def container_stopped(self, c) -> None:
        """The container's run ended: execs never started are forgotten, the
        running ones (killed with the container's processes) are awaited,
        so that their exec_die comes before the container's die."""
        try:
            for e in list(self.execs.values()):
                if e.container_id == c.id and not e.running and e.exit_code is None:
                    del self.execs[e.id]
            running = [e for e in self.execs.values() if e.container_id == c.id and e.running]
            if not running:
                return
            if not await self._all_ended(running, STOP_GRACE):
                for e in running:
                    if e.running and e.pid:
                        try:
                            os.kill(e.pid, signals.SIGKILL)
                        except OSError:
                            pass
                if not await self._all_ended(running, STOP_KILL_WAIT):
                    log.warn("execs of {id} did not report their end", id=c.short_id)
        except Exception:
            log.failure("ending the execs of {id}", id=c.short_id)

    async def _all_ended(self, execs: List[Exec], timeout: float) -> bool:
        waits = [e.wait_ended() for e in execs if e.running]
        if not waits:
            return True
        done = DeferredList(waits, consumeErrors=True)
        timer = self.reactor.callLater(timeout, done.cancel)
        try:
            await done
        except Exception:
            pass
        finally:
            if timer.active():
                timer.cancel()
        for d in waits:
            if not d.called:
                d.cancel()
        return not any(e.running for e in execs)


@implementer(IExecBackend)
class ExecBackend:
    """dockerd's exec life cycle, over the container backend: the execs
    live in the L{ExecStore} the container backend was given too."""

    def __init__(self, reactor, containers, store: ExecStore, runtime, *, exec_root: str) -> None:
        self.reactor = reactor
        self.containers = containers
        self.store = store
        self.runtime = runtime
        self.exec_dir = os.path.join(exec_root, "execs")
        self.socket_dir = socket_dir(exec_root)
        self._gc_call = None
        self._clean_leftovers()

    @property
    def execs(self) -> Dict[str, Exec]:
        return self.store.execs

    def exec_ids(self, container_id: str) -> Optional[List[str]]:
        return self.store.exec_ids(container_id)

    async def container_stopped(self, c) -> None:
        await self.store.container_stopped(c)

    # -- helpers --------------------------------------------------------

    def _thread(self, function, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    def _clean_leftovers(self) -> None:
        """What execs of a previous daemon left: their directories and links."""
        if os.path.isdir(self.socket_dir):
            for name in os.listdir(self.socket_dir):
                path = os.path.join(self.socket_dir, name)
                if name.startswith("x") and os.path.islink(path):
                    if os.readlink(path).startswith(self.exec_dir + os.sep):
                        os.unlink(path)
        shutil.rmtree(self.exec_dir, ignore_errors=True)
        os.makedirs(self.exec_dir, mode=0o700, exist_ok=True)

    def _socket_name(self, e: Exec) -> str:
        # As short as a container's (its ID's first 12): sockaddr_un is small.
        # "x" is no hexadecimal digit, so no container's name.
        return "x" + e.id[:11]

    def _active(self, exec_id: str):
        """dockerd's getExecConfig: the exec, its container running."""
        e = self.execs.get(exec_id)
        if e is None:
            raise NotFound("No such exec instance: %s" % (exec_id,))
        c = self.containers.by_id(e.container_id)
        if c is None:
            raise NotFound("No such container: %s" % (exec_id,))
        self._check_running(c, c.id)
        return e, c

    def _event(self, c, action: str, **attributes) -> None:
        self.containers.log_event(c, action, **attributes)

    def _schedule_gc(self) -> None:
        if self._gc_call is None or not self._gc_call.active():
            self._gc_call = self.reactor.callLater(GC_INTERVAL, self._gc)

    def _gc(self) -> None:
        """dockerd's execCommandGC: an exec no longer live is marked
        removable, and forgotten at the next pass."""
        self._gc_call = None
        for e in list(self.execs.values()):
            if self.containers.by_id(e.container_id) is None:
                del self.execs[e.id]
            elif e.can_remove:
                del self.execs[e.id]
            elif not e.live:
                e.can_remove = True
        if self.execs:
            self._schedule_gc()

    # -- create, inspect --------------------------------------------------

    async def create_exec(self, name: str, config: ExecOptions) -> str:
        c = self.containers.get(name)
        self._check_running(c, name)
        cmd = list(config.cmd)
        # An unknown user is the start's error, as dockerd's (exit code 126).
        user = config.user
        keys = b""
        if config.detach_keys:
            try:
                keys = bytes(parse_detach_keys(config.detach_keys))
            except InvalidParameter:
                raise InternalError("Invalid escape keys (%s) provided" % (config.detach_keys,))
        tty = config.tty
        e = Exec(
            id=os.urandom(32).hex(),
            container_id=c.id,
            entrypoint=cmd[0],
            args=cmd[1:],
            env=spec.replace_or_append_env(daemon_environment(c.config, tty), config.env),
            user=user or c.config.get("User") or "",
            working_dir=config.working_dir or c.config.get("WorkingDir") or "",
            tty=tty,
            privileged=config.privileged,
            open_stdin=config.attach_stdin,
            open_stdout=config.attach_stdout,
            open_stderr=config.attach_stderr,
            detach_keys=keys,
            console_size=config.console_size,
        )
        self.execs[e.id] = e
        self._schedule_gc()
        self._event(c, "exec_create: " + e.command(), execID=e.id)
        return e.id

    def _check_running(self, c, name: str) -> None:
        """dockerd's getActiveContainer (the paused message names the
        container as it was asked for)."""
        if not c.state.running:
            raise Conflict("Container %s is not running" % (c.id,))
        if c.state.paused:
            raise Conflict("Container %s is paused, unpause the container before exec" % (name,))
        if c.state.restarting:
            raise Conflict("Container %s is restarting, wait until the container is running" % (c.id,))

    def _container_spec(self, c) -> dict:
        with open(os.path.join(self.containers.bundle(c), "config.json"), "rb") as f:
            return json.loads(f.read())

    def _rootfs(self, c, oci: Optional[dict] = None) -> str:
        root = ((oci or {}).get("root") or {}).get("path")
        if root:
            return root if os.path.isabs(root) else os.path.join(self.containers.bundle(c), root)
        return self.containers.overlay(c)["MergedDir"]

    def probe_process(self, c, command: List[str]) -> dict:
        """The OCI process of a healthcheck probe of C{c} running
        C{command}, as dockerd's probe exec: the container's environment,
        user and working directory, no terminal (reads the container's
        files: call it in a thread)."""
        e = Exec(
            id="",
            container_id=c.id,
            entrypoint=command[0],
            args=list(command[1:]),
            env=daemon_environment(c.config, False),
            user=c.config.get("User") or "",
            working_dir=c.config.get("WorkingDir") or "",
        )
        oci = self._container_spec(c)
        return exec_process(oci.get("process") or {}, e, self._rootfs(c, oci), c.host_config.get("GroupAdd") or ())

    def inspect_exec(self, exec_id: str) -> dict:
        e = self.execs.get(exec_id)
        if e is None or self.containers.by_id(e.container_id) is None:
            raise NotFound("No such exec instance: %s" % (exec_id,))
        return e.inspect()

    def check_exec(self, exec_id: str) -> None:
        self._active(exec_id)

    # -- start --------------------------------------------------------------

    async def start_exec(self, exec_id: str, config: ExecStartConfig) -> None:
        e, c = self._active(exec_id)
        if e.exit_code is not None:
            raise Conflict("Error: Exec command %s has already run" % (e.id,))
        if e.running:
            raise Conflict("Error: Exec command %s is already running" % (e.id,))
        e.running = True
        self._event(c, "exec_start: " + e.command(), execID=e.id)
        stream = config.stream
        console_size = config.console_size
        if console_size is None:
            console_size = e.console_size
        output = _Output(e, stream)
        try:
            connection = await self._launch(c, e, stream, console_size, output)
        except DockerError as error:
            self._start_failed(e, error)
            if not isinstance(error, InvalidParameter):
                # Not the command's fault: the container's own process may
                # be gone with nobody to say so.
                await self._reconcile(c)
            raise
        except OSError as error:
            failure = InternalError(str(error))
            self._start_failed(e, failure)
            await self._reconcile(c)
            raise failure
        if stream is None:
            return
        await self._serve(c, e, stream, connection, output)

    async def _reconcile(self, c) -> None:
        """After conmon or runc failed to run an exec: the container's
        record and runc's view of it made to agree (under its lock)."""
        async with self.containers.lock(c):
            await self.containers.reconcile_one(c, "exec")

    def _prepare(self, c, e: Exec, bundle: str, console_size) -> str:
        """Write the exec's process file (in a thread); its path."""
        oci = self._container_spec(c)
        process = exec_process(
            oci.get("process") or {},
            e,
            self._rootfs(c, oci),
            c.host_config.get("GroupAdd") or (),
            console_size,
        )
        os.makedirs(os.path.join(bundle, "exits"), mode=0o700, exist_ok=True)
        path = os.path.join(bundle, "process.json")
        write_atomic(path, json.dumps(process).encode("utf-8"), mode=0o600)
        return path

    def conmon_args(self, c, e: Exec, bundle: str, process_file: str, attached: bool) -> List[str]:
        """conmon's command line (argv[0] included) for one exec."""
        return conmon_argv(
            self.runtime,
            c.id,
            bundle,
            socket_name=self._socket_name(e),
            name=c.name.lstrip("/") or c.id,
            log="none",
            exit_dir=os.path.join(bundle, "exits"),
            socket_dir=self.socket_dir,
            exec_process_spec=process_file,
            exec_attach=attached,
            terminal=e.tty,
            stdin=attached and e.open_stdin,
            # dockerd keeps a terminal's stdin open when its client leaves.
            leave_stdin_open=e.tty,
        )

    async def _launch(self, c, e: Exec, stream, console_size, output: "_Output"):
        """Run the exec's conmon; its attach connection (None if detached)
        once the process runs."""
        bundle = os.path.join(self.exec_dir, e.id)
        e.bundle = bundle
        process_file = await self._thread(self._prepare, c, e, bundle, console_size)
        attached = stream is not None
        conmon = ConmonProcess(exec_mode=True)
        await self.runtime.spawn_conmon(
            conmon, self.conmon_args(c, e, bundle, process_file, attached), bundle, attach_pipe=attached
        )
        e.conmon = conmon
        conmon.exited.addCallback(lambda code: self._exited(e, code))
        conmon.exited.addErrback(lambda f: log.failure("exit of exec {id}", f, id=e.id))
        timer = self.runtime.time_limit(conmon, bundle, "exec " + e.id)
        connection = None
        try:
            if attached and await conmon.attach_ready:
                connection = await self._attach(e, output)
            conmon.go(attached)
            report = await conmon.started
        finally:
            if timer.active():
                timer.cancel()
        pid = report.get("data")
        if not isinstance(pid, int) or pid <= 0:
            if connection is not None:
                connection.close()
            message = runc_message(report.get("message")) or "conmon failed to run the exec"
            code, error = start_error(message, e.entrypoint)
            error.exit_code = code
            raise error
        e.pid = pid
        e.start_tried = True
        e._fire(e._started, pid)
        if connection is None:
            output.drained()
        return connection

    async def _attach(self, e: Exec, output: "_Output"):
        """Join the exec's attach socket (None when that fails)."""
        try:
            return await self.runtime.attach(
                os.path.join(self.socket_dir, self._socket_name(e), "attach"),
                output.write,
                output.drained,
            )
        except DockerError as error:
            log.warn("attach to exec {id}: {e}", id=e.id, e=error)
            return None

    def _start_failed(self, e: Exec, error: DockerError) -> None:
        """As dockerd: no exec_die, exit code 126 (127 for a command not
        found), no longer listed in the container's ExecIDs."""
        e.running = False
        e.live = False
        e.exit_code = getattr(error, "exit_code", _FAILED_TO_START)
        e.conmon = None
        e.start_tried = True
        e._fire(e._started, 0)
        e._fire(e._ended, e.exit_code)
        self._schedule_cleanup(e)

    def _exited(self, e: Exec, code: Optional[int]) -> None:
        """conmon reported the end of a process that ran."""
        if e.exit_code is not None:
            return
        if e.pid <= 0:
            return  # it never ran: the start reports the failure
        if code is None:
            code = self.runtime.exit_code(os.path.join(e.bundle, "exits"), e.container_id)
            if code is None:
                log.warn("conmon of exec {id} went away without its exit code", id=e.id)
                code = 255
        e.exit_code = code
        e.running = False
        e.live = False
        e.conmon = None
        c = self.containers.by_id(e.container_id)
        if c is not None:
            self._event(c, "exec_die", execID=e.id, exitCode=code)
        e._fire(e._ended, code)
        self._schedule_cleanup(e)

    def _schedule_cleanup(self, e: Exec) -> None:
        if not e.bundle:
            return
        link = os.path.join(self.socket_dir, self._socket_name(e))
        bundle = e.bundle

        def clean() -> None:
            try:
                os.unlink(link)
            except OSError:
                pass
            shutil.rmtree(bundle, ignore_errors=True)

        d = self._thread(clean)
        d.addErrback(lambda f: log.failure("cleaning exec {id}", f, id=e.id))

    async def _serve(self, c, e: Exec, stream, connection, output: "_Output") -> None:
        """Join the client to the running exec until it ended and its output
        was drained, or until the client left or detached."""
        finished = Deferred()

        def finish(why: str) -> None:
            if not finished.called:
                finished.callback(why)

        stdin = connection is not None and e.open_stdin
        escape = None
        if e.tty and stdin:
            escape = EscapeKeys(list(e.detach_keys or bytes(parse_detach_keys(DEFAULT_DETACH_KEYS))))

        def on_input(data: bytes) -> None:
            if not stdin:
                return
            detach = False
            if escape is not None:
                data, detach = escape.feed(data)
            if data:
                connection.write(data)
            if detach:
                finish("detached")

        pacer = None

        def on_input_closed() -> None:
            if not stdin:
                return
            if pacer is not None and connection.transport is not None:
                # A transport whose producer is paused when its buffer drains
                # resumes the producer and forgets a pending half-close.
                # (Nothing more comes from the client: it needs no pacing.)
                if connection.transport.producer is pacer:
                    connection.transport.unregisterProducer()
            connection.close_stdin()

        if connection is not None and connection.transport is not None:
            transport = connection.transport
            stream.add_source(transport.pauseProducing, transport.resumeProducing)
            client = getattr(stream, "transport", None)
            if stdin and client is not None:
                try:
                    transport.registerProducer(_ClientPacer(client), True)
                    pacer = transport.producer
                except RuntimeError:
                    pass
        stream.read_input(on_input, on_input_closed)
        stream.closed.addCallback(lambda _: finish("gone"))
        ended = e.wait_ended()

        def check(_=None) -> None:
            if ended.called and output.done.called:
                finish("ended")

        ended.addCallback(check)
        output.done.addCallback(check)
        check()
        try:
            why = await finished
        finally:
            cancel_quietly(ended)
        if why != "ended" and connection is not None:
            # The exec goes on; conmon closes its stdin unless it has a terminal.
            connection.close()
        if why == "detached":
            self._event(c, "exec_detach", execID=e.id)
        stream.close()

    # -- resize ---------------------------------------------------------------

    async def resize_exec(self, exec_id: str, height: int, width: int) -> None:
        e, c = self._active(exec_id)
        started = e.wait_started()
        timer = self.reactor.callLater(RESIZE_WAIT, started.cancel)
        try:
            await started
        except Exception:
            raise InternalError("timeout waiting for exec session ready")
        finally:
            if timer.active():
                timer.cancel()
        if e.pid <= 0:
            raise InvalidParameter("exec process is not started")
        if not e.tty or not e.running:
            return
        try:
            await self.runtime.resize(e.bundle, height, width)
        except DockerError as error:
            # The process may just have ended.
            log.debug("resize of exec {id}: {e}", id=e.id, e=error)


class _Output:
    """An attached exec's output on its way to the client: only the
    streams it asked for; C{done} fires once conmon closed the socket."""

    def __init__(self, e: Exec, stream) -> None:
        self.exec = e
        self.stream = stream
        self.done: Deferred = Deferred()

    def write(self, stream_id: int, data: bytes) -> None:
        if self.stream is None:
            return
        if stream_id == STDOUT and not self.exec.open_stdout:
            return
        if stream_id == STDERR and not self.exec.open_stderr:
            return
        self.stream.write(stream_id, data)

    def drained(self) -> None:
        if not self.done.called:
            self.done.callback(None)
