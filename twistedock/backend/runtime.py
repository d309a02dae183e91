"""
The OCI runtime driver: containers run from OCI bundles by runc, each
supervised by its own conmon, everything asynchronous on the reactor.

What conmon 2.1.6 does, as verified on this host (Debian 12, runc 1.1.5):

- C{conmon --api-version 1 ...} double-forks: the process we spawn writes the
  daemon's pid to C{--conmon-pidfile} and exits at once (we reap it); the
  daemonized conmon runs C{runc create} and reports on the I{sync pipe} (the
  file descriptor named by C{_OCI_SYNCPIPE}) one JSON line: C{{"data": PID}}
  once the container exists in runc state I{created}, or
  C{{"data": -1, "message": RUNC_STDERR}} when runc failed.  A conmon that
  dies before reporting closes the pipe without writing.
- C{-t}: conmon makes its own console socket (C{$TMPDIR/conmon-term.XXXXXX})
  and passes C{--console-socket} to runc; the OCI spec must then say
  C{process.terminal: true} (and must not say it without C{-t}).  All output
  of a terminal comes as stdout.
- C{-i}: the container's stdin is a pipe held by conmon, fed from the attach
  socket.  When an attach client disconnects (or half-closes), conmon closes
  the container's stdin, unless C{--leave-stdin-open}.
- Attach socket: C{SOCKET_DIR/<-u value>/attach}, C{SOCKET_DIR/<-u value>}
  being a symbolic link to the bundle; C{AF_UNIX SOCK_SEQPACKET}.  Each
  packet conmon sends is one byte naming the pipe (2 stdout, 3 stderr:
  conmon's own numbering, 1 being stdin) followed by at most 8192 bytes of
  output.  Each packet we send goes to the container's stdin; conmon reads at
  most 32767 bytes of a packet (the rest of a longer one is lost), so writes
  are cut to that size.  The socket disappears when the container exits.
- Control fifo C{BUNDLE/ctl}: lines C{"TYPE H W\\n"}; type 1 resizes the
  terminal to H rows and W columns, type 2 reopens the log files.
- On exit conmon writes the exit code as text to C{EXIT_DIR/<-c value>}
  (atomically: a temporary file renamed into place) and, with
  C{--persist-dir}, to C{PERSIST_DIR/exit}: the status for a normal exit,
  128 + the signal for a killed process (137 for SIGKILL and for the OOM
  killer).  A container's process 1 ignores signals it has no handler for
  (SIGTERM to a bare C{sleep}), SIGKILL excepted.
- OOM: on a memory cgroup OOM event conmon creates an empty file C{oom} in
  its working directory (we start it in the bundle) and in C{--persist-dir}.
- Logs in the C{k8s-file} format, one line per piece of output:
  C{2026-11-30T10:34:29.369866874+00:00 stdout F text}, C{F} for a full
  line, C{P} for a piece without its newline yet (continued by the next line
  of the same stream).
"""

import calendar
import errno
import json
import os
import re
import shutil
import signal as signals
import socket
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from twisted.internet import inotify
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from ..errors import Conflict, DockerError, InternalError, NotFound
from ..logs import Logger
from .. import golang

log = Logger()

#: Streams as the Engine API numbers them (and as L{AttachProtocol} gets them).
STDOUT, STDERR = 1, 2

#: conmon's pipe numbers in the first byte of an attach packet.
CONMON_STDIN, CONMON_STDOUT, CONMON_STDERR = 1, 2, 3
_FROM_CONMON = {CONMON_STDOUT: STDOUT, CONMON_STDERR: STDERR}

#: The largest packet conmon reads whole from the attach socket.
ATTACH_WRITE_LIMIT = 32768 - 1

#: Messages on conmon's control fifo.
CTL_RESIZE, CTL_REOPEN_LOGS = 1, 2

#: How long conmon may take to report the container created.
CREATE_TIMEOUT = 120.0

#: sockaddr_un's path limit, terminating NUL included.
_SUN_PATH_MAX = 108

#: The file descriptor conmon gets its sync pipe on.
_SYNC_FD = 3


# -- runc's messages --------------------------------------------------------

_LOGRUS_LINE = re.compile(r'level=(\w+)\s+msg="((?:[^"\\]|\\.)*)"')


def runc_message(output: Union[bytes, str, None]) -> str:
    """runc's error text without logrus' C{time=... level=error msg="..."}
    dressing: the C{msg} of every error line (or of every line when none
    says error), else the text as it is, stripped."""
    if output is None:
        return ""
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    found = [(m.group(1), golang.unquote_body(m.group(2))) for m in _LOGRUS_LINE.finditer(output)]
    errors = [msg for level, msg in found if level in ("error", "fatal", "panic")]
    chosen = errors or [msg for _, msg in found]
    if chosen:
        return "; ".join(chosen)
    return output.strip()


_CONFLICT_PATTERNS = (
    "not running",
    "not paused",
    "is paused",
    "is not stopped",
    "that is not stopped",
    "has stopped",
    "already running",
    "already paused",
    "id exists",
    "already exists",
    "cannot start",
)


def runc_error(message: str) -> DockerError:
    """The typed error for one of runc's failure messages."""
    lowered = message.lower()
    if "does not exist" in lowered:
        return NotFound(message)
    if any(pattern in lowered for pattern in _CONFLICT_PATTERNS):
        return Conflict(message)
    return InternalError(message)


# -- child processes --------------------------------------------------------


class _Collect(ProcessProtocol):
    """Feed a child some input, collect its output and its exit status."""

    def __init__(self, stdin: Optional[bytes]) -> None:
        self.stdin = stdin
        self.out: List[bytes] = []
        self.err: List[bytes] = []
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        self.done.callback((b"".join(self.out), b"".join(self.err), _status(reason)))


def _status(reason: Failure) -> int:
    """A child's exit status as a shell shows it (128 + signal when killed)."""
    value = reason.value
    code = getattr(value, "exitCode", None)
    if code is not None:
        return code
    sig = getattr(value, "signal", None)
    return 128 + sig if sig else 255


class _ConmonProtocol(ProcessProtocol):
    """The conmon we spawn: its report on the sync pipe, its exit.

    C{report} fires with the decoded report, or with C{None} when the pipe
    closed without one.  C{exited} fires once the process we spawned (the
    one that forks the daemon and exits) has been reaped; C{ended} once its
    output pipes are closed too.
    """

    OUTPUT_LIMIT = 64 * 1024

    def __init__(self) -> None:
        self.report: Deferred = Deferred()
        self.exited: Deferred = Deferred()
        self.ended: Deferred = Deferred()
        self.status: Optional[int] = None
        self._sync = b""
        self._output: List[bytes] = []
        self._output_size = 0

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == _SYNC_FD:
            if self.report.called:
                return
            self._sync += data
            line, newline, _ = self._sync.partition(b"\n")
            if newline:
                self._reported(line)
            return
        if self._output_size < self.OUTPUT_LIMIT:
            self._output.append(data)
            self._output_size += len(data)

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == _SYNC_FD and not self.report.called:
            if self._sync.strip():
                self._reported(self._sync)
            else:
                self.report.callback(None)

    def _reported(self, line: bytes) -> None:
        try:
            report = json.loads(line.decode("utf-8", "replace"))
            if not isinstance(report, dict):
                raise ValueError(line)
        except ValueError:
            report = {"data": -1, "message": "unreadable report from conmon: %r" % (line,)}
        self.report.callback(report)
        # conmon writes nothing more there for a container it created.
        try:
            self.transport.closeChildFD(_SYNC_FD)
        except Exception:
            pass

    def processExited(self, reason: Failure) -> None:
        self.status = _status(reason)
        self.exited.callback(self.status)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(self.status)

    def output(self) -> str:
        """What conmon printed, its debug lines left out."""
        text = b"".join(self._output).decode("utf-8", "replace")
        lines = []
        for line in text.splitlines():
            if line.startswith("[conmon:d]") or not line.strip():
                continue
            lines.append(_CONMON_PREFIX.sub("", line).strip())
        return "\n".join(lines)


_CONMON_PREFIX = re.compile(r"^\[conmon:\w\]:\s*")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path, "rb") as f:
            text = f.read(64)
    except OSError:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _resolve(binary: str) -> str:
    if os.path.sep in binary:
        return os.path.abspath(binary)
    return shutil.which(binary) or binary


# -- the runtime ------------------------------------------------------------


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
    ) -> None:
        self.reactor = reactor
        self.runc = _resolve(runc)
        self.conmon = _resolve(conmon)
        self.state_root = os.path.abspath(state_root)
        self.create_timeout = create_timeout

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
        terminal: bool = False,
        stdin: bool = False,
        leave_stdin_open: bool = False,
        restore_from: Optional[str] = None,
        restore_options: Sequence[str] = (),
        socket_name: Optional[str] = None,
        name: Optional[str] = None,
        log_size_max: Optional[int] = None,
        runtime_args: Sequence[str] = (),
    ) -> List[str]:
        """conmon's command line (argv[0] included) for L{create}."""
        bundle = os.path.abspath(bundle)
        args = [
            self.conmon,
            "--api-version", "1",
            "-c", container_id,
            "-u", socket_name or container_id,
            "-n", name or container_id,
            "-r", self.runc,
            "-b", bundle,
            "-p", os.path.join(bundle, "pidfile"),
            "--conmon-pidfile", os.path.join(bundle, "conmon.pid"),
            "-l", "k8s-file:" + os.path.abspath(log_path),
            "--exit-dir", os.path.abspath(exit_dir),
            "--socket-dir-path", os.path.abspath(socket_dir),
            "--runtime-arg", "--root=" + self.state_root,
        ]  # fmt: skip
        # runc's global options (e.g. --criu=PATH for a restore).
        for arg in runtime_args:
            args += ["--runtime-arg", arg]
        if persist_dir:
            args += ["--persist-dir", os.path.abspath(persist_dir)]
        if terminal:
            args.append("-t")
        if stdin:
            args.append("-i")
            if leave_stdin_open:
                args.append("--leave-stdin-open")
        if log_size_max:
            args += ["--log-size-max", str(int(log_size_max))]
        if restore_from:
            args += ["--restore", os.path.abspath(restore_from)]
            args += ["--runtime-opt=" + option for option in restore_options]
        return args

    async def create(
        self,
        container_id: str,
        bundle: str,
        *,
        log_path: str,
        exit_dir: str,
        socket_dir: str,
        persist_dir: Optional[str] = None,
        terminal: bool = False,
        stdin: bool = False,
        leave_stdin_open: bool = False,
        restore_from: Optional[str] = None,
        restore_options: Sequence[str] = (),
        socket_name: Optional[str] = None,
        name: Optional[str] = None,
        log_size_max: Optional[int] = None,
        runtime_args: Sequence[str] = (),
    ) -> int:
        """Create the container under a new conmon; its pid once runc made it.

        The container is then in runc state I{created} (I{running} after a
        restore).  The attach socket is C{socket_dir/(socket_name or
        container_id)/attach}.  Raises L{InternalError} with runc's message
        when runc fails, or conmon's when conmon does.
        """
        bundle = os.path.abspath(bundle)
        args = self.conmon_args(
            container_id,
            bundle,
            log_path=log_path,
            exit_dir=exit_dir,
            socket_dir=socket_dir,
            persist_dir=persist_dir,
            terminal=terminal,
            stdin=stdin,
            leave_stdin_open=leave_stdin_open,
            restore_from=restore_from,
            restore_options=restore_options,
            socket_name=socket_name,
            name=name,
            log_size_max=log_size_max,
            runtime_args=runtime_args,
        )
        for directory in (exit_dir, socket_dir, self.state_root):
            os.makedirs(directory, mode=0o711, exist_ok=True)
        # What a previous run left behind would be taken for this run's.
        for leftover in ("pidfile", "conmon.pid", "oom"):
            _unlink(os.path.join(bundle, leftover))
        if persist_dir:
            os.makedirs(persist_dir, mode=0o700, exist_ok=True)
            for leftover in ("exit", "oom"):
                _unlink(os.path.join(persist_dir, leftover))

        env = dict(os.environ)
        env["_OCI_SYNCPIPE"] = str(_SYNC_FD)
        env.pop("_OCI_STARTPIPE", None)
        env.pop("_OCI_ATTACHPIPE", None)
        conmon = _ConmonProtocol()
        try:
            self.reactor.spawnProcess(
                conmon,
                self.conmon,
                args,
                env=env,
                path=bundle,
                childFDs={0: "w", 1: "r", 2: "r", _SYNC_FD: "r"},
            )
        except OSError as e:
            raise InternalError("cannot run %s: %s" % (self.conmon, e.strerror or e))

        def too_long() -> None:
            if not conmon.report.called:
                log.error("conmon for {id} did not report in time", id=container_id)
                pid = self.conmon_pid(bundle)
                if pid:
                    try:
                        os.kill(pid, signals.SIGKILL)
                    except OSError:
                        pass
                conmon.report.callback({"data": -1, "message": "conmon did not report in time"})

        timer = self.reactor.callLater(self.create_timeout, too_long)
        try:
            report = await conmon.report
        finally:
            if timer.active():
                timer.cancel()
        if report is None:
            await conmon.ended
            text = conmon.output() or "conmon exited with status %s" % (conmon.status,)
            raise InternalError(text)
        pid = report.get("data")
        if not isinstance(pid, int) or pid <= 0:
            message = runc_message(report.get("message")) or conmon.output()
            raise InternalError(message or "conmon failed to create the container")
        # The process we spawned wrote conmon.pid before it exited: reaped
        # here, it is neither a zombie nor a pid file still being written.
        await conmon.exited
        log.debug("created {id} (pid {pid})", id=container_id, pid=pid)
        return pid

    @staticmethod
    def conmon_pid(bundle: str) -> Optional[int]:
        """The pid of the conmon supervising the container of C{bundle}."""
        return _read_int(os.path.join(bundle, "conmon.pid"))

    @staticmethod
    def container_pid(bundle: str) -> Optional[int]:
        """The pid runc wrote for the container's process 1."""
        return _read_int(os.path.join(bundle, "pidfile"))

    @staticmethod
    def exit_code(exit_dir: str, container_id: str) -> Optional[int]:
        """The exit code conmon wrote for the container, or None yet."""
        return _read_int(os.path.join(exit_dir, container_id))

    @staticmethod
    def oom_killed(bundle: str, container_id: Optional[str] = None, persist_dir: Optional[str] = None) -> bool:
        """Whether conmon saw the container's memory cgroup OOM during this run
        (its C{oom} file, in the bundle or in the persist dir)."""
        places = [bundle] + ([persist_dir] if persist_dir else [])
        return any(os.path.exists(os.path.join(place, "oom")) for place in places)

    # -- runc ----------------------------------------------------------

    async def exec_runc(self, args: Sequence[str], stdin: Optional[bytes] = None) -> Tuple[bytes, bytes, int]:
        """Run C{runc --root STATE_ROOT ARGS...}: (stdout, stderr, status)."""
        collect = _Collect(stdin)
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
    ) -> "AttachConnection":
        """L{attach} with callbacks: C{output(stream, data)} for each piece
        of output (L{STDOUT} or L{STDERR}), C{ended()} when conmon closes."""
        return await attach(self.reactor, socket_path, _CallbackAttach(output, ended))

    async def resize(self, bundle: str, height: int, width: int) -> None:
        """Resize the container's terminal (only meaningful with C{-t})."""
        _write_ctl(bundle, "%d %d %d\n" % (CTL_RESIZE, int(height), int(width)))

    async def reopen_logs(self, bundle: str) -> None:
        """Make conmon reopen its log files (after they were moved away)."""
        _write_ctl(bundle, "%d 0 0\n" % (CTL_REOPEN_LOGS,))


def _write_ctl(bundle: str, message: str) -> None:
    path = os.path.join(bundle, "ctl")
    try:
        # conmon keeps both ends open; without a reader (conmon gone) a
        # non-blocking open fails with ENXIO instead of blocking forever.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            raise Conflict("container is not running (no conmon control fifo)")
        raise InternalError("cannot open %s: %s" % (path, e.strerror))
    try:
        os.write(fd, message.encode())
    except OSError as e:
        raise InternalError("cannot write to %s: %s" % (path, e.strerror))
    finally:
        os.close(fd)


# -- exits ------------------------------------------------------------------


class ExitWatcher:
    """Exit codes as conmon writes them to C{EXIT_DIR/ID}, through inotify.

    L{wait} fires with the code at once when the file is already there,
    else as soon as conmon writes it.
    """

    MASK = inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO

    def __init__(self, reactor, exit_dir: str) -> None:
        self.reactor = reactor
        self.exit_dir = os.path.abspath(exit_dir)
        self._notifier: Optional[inotify.INotify] = None
        self._waiters: Dict[str, List[Deferred]] = {}

    @property
    def running(self) -> bool:
        return self._notifier is not None

    def start(self) -> None:
        if self._notifier is not None:
            return
        os.makedirs(self.exit_dir, mode=0o711, exist_ok=True)
        notifier = inotify.INotify(reactor=self.reactor)
        notifier.startReading()
        notifier.watch(FilePath(self.exit_dir), mask=self.MASK, callbacks=[self._changed])
        self._notifier = notifier
        # Whatever was written while nobody watched.
        self.rescan()

    def stop(self) -> None:
        """Stop watching; pending waiters fail with L{CancelledError}."""
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.loseConnection()
        waiters, self._waiters = self._waiters, {}
        for ds in waiters.values():
            for d in ds:
                if not d.called:
                    d.errback(Failure(CancelledError("exit watcher stopped")))

    def wait(self, container_id: str) -> Deferred:
        """A Deferred firing with the container's exit code.  Cancelling it
        only forgets this waiter."""
        if self._notifier is None:
            self.start()
        code = Runtime.exit_code(self.exit_dir, container_id)
        if code is not None:
            return succeed(code)

        def cancel(d: Deferred) -> None:
            waiters = self._waiters.get(container_id, [])
            if d in waiters:
                waiters.remove(d)
            if not waiters:
                self._waiters.pop(container_id, None)

        d = Deferred(cancel)
        self._waiters.setdefault(container_id, []).append(d)
        return d

    def waiting(self, container_id: str) -> int:
        """How many waiters the container has."""
        return len(self._waiters.get(container_id, ()))

    def rescan(self) -> None:
        """Fire the waiters whose exit file exists (inotify loses events
        only when its queue overflows; call this then, or after a pause)."""
        for container_id in list(self._waiters):
            self._check(container_id)

    def _changed(self, _watch, path: FilePath, mask: int) -> None:
        name = path.basename()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "surrogateescape")
        if name in self._waiters:
            self._check(name)

    def _check(self, container_id: str) -> None:
        code = Runtime.exit_code(self.exit_dir, container_id)
        if code is None:
            return
        for d in self._waiters.pop(container_id, []):
            if not d.called:
                d.callback(code)


# -- attach -----------------------------------------------------------------


class AttachProtocol:
    """What L{attach} delivers to: override what you need."""

    def attachMade(self, connection: "AttachConnection") -> None:
        pass

    def outputReceived(self, stream: int, data: bytes) -> None:
        """A piece of output: C{stream} is L{STDOUT} or L{STDERR}."""

    def attachLost(self, reason: Failure) -> None:
        """conmon closed the socket (the container exited), or we did."""


class _CallbackAttach(AttachProtocol):
    def __init__(self, output: Callable[[int, bytes], None], ended: Optional[Callable[[], None]]) -> None:
        self.output = output
        self.ended = ended

    def outputReceived(self, stream: int, data: bytes) -> None:
        self.output(stream, data)

    def attachLost(self, reason: Failure) -> None:
        if self.ended is not None:
            self.ended()


class _AttachWire(Protocol):
    """The Twisted protocol on the adopted SOCK_SEQPACKET socket: each
    C{recv} gives one whole packet, so each C{dataReceived} is one packet."""

    def __init__(self, connection: "AttachConnection") -> None:
        self.connection = connection

    def connectionMade(self) -> None:
        # One send is one packet: keep packets within what conmon reads.
        self.transport.SEND_LIMIT = ATTACH_WRITE_LIMIT
        self.connection._made(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if not data:
            return
        stream = _FROM_CONMON.get(data[0])
        if stream is None:
            log.warn("attach packet for unknown pipe {pipe}", pipe=data[0])
            return
        self.connection.protocol.outputReceived(stream, data[1:])

    def connectionLost(self, reason: Failure) -> None:
        self.connection._lost(reason)


class AttachConnection:
    """One connection to conmon's attach socket."""

    def __init__(self, protocol: AttachProtocol) -> None:
        self.protocol = protocol
        self.transport = None
        #: Fires (with None) when the connection is over.
        self.closed: Deferred = Deferred()
        self._stdin_closed = False

    def _made(self, transport) -> None:
        self.transport = transport
        self.protocol.attachMade(self)

    def _lost(self, reason: Failure) -> None:
        self.transport = None
        try:
            self.protocol.attachLost(reason)
        finally:
            if not self.closed.called:
                self.closed.callback(None)

    @property
    def connected(self) -> bool:
        return self.transport is not None

    def write(self, data: bytes) -> None:
        """Feed the container's stdin (conmon started with C{-i})."""
        if data and self.transport is not None and not self._stdin_closed:
            self.transport.write(data)

    def close_stdin(self) -> None:
        """Half-close: once what was written is sent, conmon sees the end of
        this client's input and closes the container's stdin (unless it runs
        with C{--leave-stdin-open}).  Output keeps coming."""
        if self.transport is not None and not self._stdin_closed:
            self._stdin_closed = True
            self.transport.loseWriteConnection()

    def close(self) -> None:
        """Detach.  conmon treats it as the end of input too (see
        L{close_stdin})."""
        if self.transport is not None:
            self.transport.loseConnection()


def _connect_seqpacket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    directory_fd = None
    try:
        target = path
        if len(os.fsencode(path)) >= _SUN_PATH_MAX:
            # Too long for sockaddr_un: go through the directory's descriptor.
            directory_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
            target = "/proc/self/fd/%d/%s" % (directory_fd, os.path.basename(path))
        sock.connect(target)
    except BaseException:
        sock.close()
        raise
    finally:
        if directory_fd is not None:
            os.close(directory_fd)
    return sock


async def attach(reactor, socket_path: str, protocol: AttachProtocol) -> AttachConnection:
    """Connect to conmon's attach socket; C{protocol} gets the output.

    Raises L{Conflict} when there is no conmon listening (the container is
    not running).
    """
    connection = AttachConnection(protocol)
    try:
        sock = _connect_seqpacket(socket_path)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
        raise Conflict("cannot attach: nothing listens on %s (%s)" % (socket_path, e.strerror))
    except OSError as e:
        raise InternalError("cannot attach to %s: %s" % (socket_path, e.strerror or e))
    try:
        factory = Factory.forProtocol(lambda: _AttachWire(connection))
        reactor.adoptStreamConnection(sock.fileno(), socket.AF_UNIX, factory)
    finally:
        # Twisted works on its own duplicate of the descriptor.
        sock.close()
    return connection


# -- logs -------------------------------------------------------------------

_TIMESTAMP = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):?(\d\d))$"
)


def parse_timestamp(text: Union[bytes, str]) -> int:
    """An RFC 3339 timestamp (with nanoseconds) as nanoseconds since the epoch."""
    if isinstance(text, str):
        text = text.encode()
    match = _TIMESTAMP.match(text)
    if match is None:
        raise ValueError("not a timestamp: %r" % (text,))
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if not match.group(8) and match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == b"+" else -offset
    fraction = match.group(7) or b""
    return seconds * 1_000_000_000 + int((fraction + b"000000000")[:9])


class LogEntry(tuple):
    """One log entry: C{(timestamp_ns, stream, data)}, C{stream} being
    C{"stdout"} or C{"stderr"} and C{data} ending with a newline unless the
    container never wrote one.  C{offset} is where the log file goes on
    after the entry."""

    def __new__(cls, timestamp: int, stream: str, data: bytes, offset: int = 0) -> "LogEntry":
        self = tuple.__new__(cls, (timestamp, stream, data))
        self.offset = offset
        return self

    @property
    def timestamp(self) -> int:
        return self[0]

    @property
    def stream(self) -> str:
        return self[1]

    @property
    def data(self) -> bytes:
        return self[2]


def parse_line(line: bytes) -> Optional[Tuple[int, str, bool, bytes]]:
    """One k8s-file line (without its newline): (timestamp, stream, partial,
    text), or None for a line that is not one."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        timestamp = parse_timestamp(parts[0])
    except ValueError:
        return None
    tags = parts[2].split(b":")
    text = parts[3] if len(parts) > 3 else b""
    return timestamp, parts[1].decode("ascii", "replace"), b"P" in tags, text


class _Assembler:
    """Lines in, entries out: pieces of a partial line are joined with the
    rest of the line (the next pieces of the same stream)."""

    def __init__(self) -> None:
        self.pending: Dict[str, Tuple[int, List[bytes]]] = {}

    def feed(self, line: bytes, end: int) -> Optional[LogEntry]:
        parsed = parse_line(line)
        if parsed is None:
            return None
        timestamp, stream, partial, text = parsed
        if partial:
            first, pieces = self.pending.setdefault(stream, (timestamp, []))
            pieces.append(text)
            return None
        if stream in self.pending:
            first, pieces = self.pending.pop(stream)
            return LogEntry(first, stream, b"".join(pieces) + text + b"\n", end)
        return LogEntry(timestamp, stream, text + b"\n", end)

    def flush(self, end: int) -> List[LogEntry]:
        """The partial lines still waiting, as they are, oldest first."""
        entries = [LogEntry(first, stream, b"".join(pieces), end) for stream, (first, pieces) in self.pending.items()]
        self.pending.clear()
        return sorted(entries, key=lambda e: e.timestamp)


_READ_BLOCK = 256 * 1024


def _line_is_partial(line: bytes) -> bool:
    parts = line.split(b" ", 3)
    return len(parts) >= 3 and b"P" in parts[2].split(b":")


def _tail_start(f, end: int, count: int) -> int:
    """Where the last C{count} entries of the log begin, the log being read
    up to C{end} (just after a newline).  Going back from the end, C{count}
    full lines are taken, then the partial pieces before the earliest of
    them.  (A piece of the other stream interleaved just there is missed.)"""
    full = 0
    position = end  # the file offset of buffer's first byte
    buffer = b""  # bytes [position, lines_start), ending with a newline
    lines_start = end  # where the earliest line taken so far begins
    while True:
        while buffer:
            cut = buffer.rfind(b"\n", 0, len(buffer) - 1)
            if cut < 0 and position > 0:
                break  # this line begins in a block not read yet
            line = buffer[cut + 1 : -1]
            partial = _line_is_partial(line)
            if full >= count and not partial:
                return lines_start
            if not partial:
                full += 1
            lines_start = position + cut + 1
            buffer = buffer[: cut + 1]
        if position == 0:
            return lines_start
        size = min(_READ_BLOCK, position)
        position -= size
        f.seek(position)
        buffer = f.read(size) + buffer


def _whole_lines_end(f, size: int) -> int:
    """The offset just after the last newline of the file (its first C{size}
    bytes): conmon may be writing the line after it right now."""
    position = size
    while position > 0:
        block = min(_READ_BLOCK, position)
        position -= block
        f.seek(position)
        cut = f.read(block).rfind(b"\n")
        if cut >= 0:
            return position + cut + 1
    return 0


def _read_log(path: str, since: Optional[int], until: Optional[int], tail: Optional[int]) -> Tuple[List[LogEntry], int]:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return [], 0
    with f:
        end = _whole_lines_end(f, os.fstat(f.fileno()).st_size)
        if tail is not None and tail <= 0:
            return [], end
        start = _tail_start(f, end, tail) if tail is not None else 0
        f.seek(start)
        assembler = _Assembler()
        entries: List[LogEntry] = []
        position = start
        remainder = b""
        while position < end:
            chunk = f.read(min(_READ_BLOCK, end - position))
            if not chunk:
                break
            position += len(chunk)
            data = remainder + chunk
            lines = data.split(b"\n")
            remainder = lines.pop()
            cursor = position - len(data)
            for line in lines:
                cursor += len(line) + 1
                entry = assembler.feed(line, cursor)
                if entry is not None:
                    entries.append(entry)
        entries.extend(assembler.flush(end))
    if tail is not None:
        entries = entries[-tail:]
    if since is not None:
        entries = [e for e in entries if e.timestamp >= since]
    if until is not None:
        entries = [e for e in entries if e.timestamp <= until]
    return entries, end


class LogChunks:
    """A log read piece by piece from an offset, for streaming it at the
    client's pace: each L{read} (run it in a thread) returns the entries of
    the next block and whether the end of the complete lines was reached."""

    def __init__(self, path: str, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._assembler = _Assembler()
        self._remainder = b""

    def read(self, limit: int = _READ_BLOCK) -> Tuple[List[LogEntry], bool]:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return [], True
        with f:
            end = _whole_lines_end(f, os.fstat(f.fileno()).st_size)
            start = self.offset + len(self._remainder)
            if start >= end:
                return [], True
            f.seek(start)
            chunk = f.read(min(limit, end - start))
        data = self._remainder + chunk
        lines = data.split(b"\n")
        self._remainder = lines.pop()
        entries = []
        for line in lines:
            self.offset += len(line) + 1
            entry = self._assembler.feed(line, self.offset)
            if entry is not None:
                entries.append(entry)
        return entries, start + len(chunk) >= end

    def partial(self) -> List[LogEntry]:
        """Partial lines held back at the end (the container has stopped)."""
        return self._assembler.flush(self.offset)


class LogReader:
    """A container's C{k8s-file} log: read in a thread, followed through
    inotify."""

    def __init__(self, reactor, path: str) -> None:
        self.reactor = reactor
        self.path = path
        #: Where the last L{read} stopped (the end of its last whole line).
        self.position: Optional[int] = None

    def read(self, since: Optional[int] = None, until: Optional[int] = None, tail: Optional[int] = None) -> Deferred:
        """The entries (a list of L{LogEntry}): the last C{tail} ones (all
        when None), then those from C{since} to C{until} (nanoseconds)."""
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _read_log, self.path, since, until, tail)

        def done(result):
            entries, end = result
            self.position = end
            return entries

        return d.addCallback(done)

    def follow(
        self,
        callback: Callable[[LogEntry], None],
        start_after: Optional[LogEntry] = None,
        *,
        offset: Optional[int] = None,
        since: Optional[int] = None,
        until: Optional[int] = None,
    ) -> "LogFollower":
        """Deliver each new entry to C{callback} as conmon appends it, from
        C{offset}, else from where the last L{read} stopped, else after
        C{start_after}, else from the start.  Call C{stop()} on the result
        when the container stopped."""
        if offset is None:
            if self.position is not None:
                offset = self.position
            elif start_after is not None:
                offset = getattr(start_after, "offset", 0)
            else:
                offset = 0
        follower = LogFollower(self.reactor, self.path, callback, offset, since=since, until=until)
        follower.start()
        return follower


class LogFollower:
    """Reads what is appended to a log file when inotify says it grew."""

    MASK = inotify.IN_MODIFY | inotify.IN_CLOSE_WRITE | inotify.IN_CREATE | inotify.IN_MOVED_TO

    def __init__(
        self,
        reactor,
        path: str,
        callback: Callable[[LogEntry], None],
        offset: int = 0,
        *,
        since: Optional[int] = None,
        until: Optional[int] = None,
    ) -> None:
        self.reactor = reactor
        self.path = os.path.abspath(path)
        self.callback = callback
        self.offset = offset
        self.since = since
        self.until = until
        #: Fires (with None) once following is over (L{stop}, L{cancel}, or
        #: an entry past C{until}).
        self.done: Deferred = Deferred()
        self._name = os.path.basename(self.path)
        self._file = None
        self._inode = None
        self._buffer = b""
        self._assembler = _Assembler()
        self._notifier: Optional[inotify.INotify] = None
        self._scheduled = None
        self._finished = False

    def start(self) -> None:
        notifier = inotify.INotify(reactor=self.reactor)
        notifier.startReading()
        notifier.watch(FilePath(os.path.dirname(self.path)), mask=self.MASK, callbacks=[self._changed])
        self._notifier = notifier
        self._schedule()

    def _changed(self, _watch, path: FilePath, mask: int) -> None:
        name = path.basename()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "surrogateescape")
        if name != self._name or self._finished:
            return
        if mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO):
            self._read_available(reopen=True)
        self._schedule()

    _paused = False

    def pause(self) -> None:
        """The reader of the entries is behind: read no more until L{resume}."""
        self._paused = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None

    def resume(self) -> None:
        self._paused = False
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled is None and not self._finished and not self._paused:
            self._scheduled = self.reactor.callLater(0, self._run)

    def _run(self) -> None:
        self._scheduled = None
        if self._finished:
            return
        if self._read_available(limit=_READ_BLOCK * 4):
            # More is there: let the reactor breathe, then go on.
            self._schedule()

    def _open(self) -> bool:
        if self._file is not None:
            return True
        try:
            self._file = open(self.path, "rb")
        except FileNotFoundError:
            return False
        st = os.fstat(self._file.fileno())
        self._inode = (st.st_dev, st.st_ino)
        if st.st_size < self.offset:
            self.offset = 0
        return True

    def _read_available(self, limit: Optional[int] = None, reopen: bool = False) -> bool:
        """Deliver what was appended; True if C{limit} stopped the read."""
        if reopen and self._file is not None:
            try:
                st = os.stat(self.path)
                same = (st.st_dev, st.st_ino) == self._inode
            except FileNotFoundError:
                same = True
            if not same:
                # Rotated: finish the old file, then start the new one.
                self._read_available()
                self._file.close()
                self._file = None
                self._buffer = b""
                self.offset = 0
        if not self._open():
            return False
        f = self._file
        if os.fstat(f.fileno()).st_size < self.offset + len(self._buffer):
            # Truncated under us.
            self.offset = 0
            self._buffer = b""
        f.seek(self.offset + len(self._buffer))
        read = 0
        while not self._finished:
            chunk = f.read(_READ_BLOCK)
            if not chunk:
                return False
            read += len(chunk)
            data = self._buffer + chunk
            lines = data.split(b"\n")
            self._buffer = lines.pop()
            for line in lines:
                self.offset += len(line) + 1
                entry = self._assembler.feed(line, self.offset)
                if entry is not None:
                    self._deliver(entry)
            if limit is not None and read >= limit:
                return True
        return False

    def _deliver(self, entry: LogEntry) -> None:
        if self._finished:
            return
        if self.since is not None and entry.timestamp < self.since:
            return
        if self.until is not None and entry.timestamp > self.until:
            self._finish()
            return
        try:
            self.callback(entry)
        except Exception:
            log.failure("log follower callback")

    def stop(self) -> Deferred:
        """The container stopped: deliver what is left (partial lines
        included), then end."""
        if not self._finished:
            self._read_available()
            for entry in self._assembler.flush(self.offset):
                self._deliver(entry)
            self._finish()
        return self.done

    def cancel(self) -> None:
        """End at once; what was not delivered yet is not."""
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self.done.callback(None)
