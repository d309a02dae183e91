"""
conmon, the one way this daemon runs processes under runc: its command
line (one builder for containers and execs) and its sync-pipe protocol (one
reader for both).

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

What conmon 2.1.6's exec mode does, as verified on this host (runc 1.1.5):

- C{conmon --api-version 1 -c CONTAINER -u NAME -b DIR ... -e
  --exec-process-spec FILE} runs C{runc exec -d --pid-file ... --process
  FILE CONTAINER} (C{--console-socket} too with C{-t}).  FILE is an OCI
  process (args, env, cwd, user, capabilities, terminal, consoleSize...);
  C{-b DIR} is a directory of the exec's own: conmon makes its control fifo
  (C{DIR/ctl}: resize as for a container), its attach socket and its pid
  file there.  The attach socket is C{SOCKET_DIR/NAME/attach}, C{SOCKET_DIR/NAME}
  a symbolic link to DIR that conmon leaves behind.
- The sync pipe (C{_OCI_SYNCPIPE}) carries two JSON lines:
  C{{"data": PID}} once the process runs, then C{{"data": EXIT_CODE}} once
  it ended and its output was drained (128 + signal when killed); or one
  line C{{"data": -1, "message": RUNC_STDERR}} when runc exec failed.  Both
  lines can come in one read.  The pipe then closes.
- The exit code also goes to C{EXIT_DIR/CONTAINER} (named by C{-c}, not by
  C{-u}): an exec must have an exit directory of its own, or it would
  write its exit code where the container's is awaited.
- C{--exec-attach} with C{_OCI_STARTPIPE} and C{_OCI_ATTACHPIPE}: conmon
  reads the start pipe once before anything (podman moves it to a cgroup
  then), says C{{"data": 0}} on the attach pipe once its attach socket
  listens, and runs runc only after a second write to the start pipe, so a
  client attached in between misses no output.
- C{-i}: stdin is a pipe fed from the attach socket; when the client
  half-closes, conmon closes it (unless C{--leave-stdin-open}).  With
  C{-t} all output comes as stdout.
- C{-l none}: no log (output only goes to the attach socket).
"""

import errno
import json
import os
import re
from typing import List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from ...errors import Conflict, InternalError
from .processes import exit_status

#: The file descriptors conmon gets its pipes on: the sync pipe (its
#: reports), the start pipe (exec mode: when to go on) and the attach pipe
#: (exec mode: its attach socket listens).
SYNC_FD, START_FD, ATTACH_FD = 3, 4, 5

#: Messages on conmon's control fifo.
CTL_RESIZE, CTL_REOPEN_LOGS = 1, 2

#: How much of conmon's own output is kept for error messages.
OUTPUT_LIMIT = 64 * 1024

_CONMON_PREFIX = re.compile(r"^\[conmon:\w\]:\s*")


def conmon_argv(
    runtime,
    container_id: str,
    bundle: str,
    *,
    log: str,
    exit_dir: str,
    socket_dir: str,
    socket_name: Optional[str] = None,
    name: Optional[str] = None,
    persist_dir: Optional[str] = None,
    terminal: bool = False,
    stdin: bool = False,
    leave_stdin_open: bool = False,
    restore_from: Optional[str] = None,
    restore_options: Sequence[str] = (),
    log_size_max: Optional[int] = None,
    runtime_args: Sequence[str] = (),
    exec_process_spec: Optional[str] = None,
    exec_attach: bool = False,
    runtime_path: Optional[str] = None,
) -> List[str]:
    """conmon's command line (argv[0] included), for a container or, with
    C{exec_process_spec}, for an exec in it.  C{runtime} names the binaries
    (C{conmon}, C{runc}) and runc's C{state_root}; C{log} is conmon's C{-l}
    value (C{k8s-file:PATH} or C{none})."""
    args = [
        runtime.conmon,
        "--api-version", "1",
        "-c", container_id,
        "-u", socket_name or container_id,
        "-n", name or container_id,
        "-r", runtime_path or runtime.runc,
        "-b", bundle,
        "-p", os.path.join(bundle, "pidfile"),
        "--conmon-pidfile", os.path.join(bundle, "conmon.pid"),
        "-l", log,
        "--exit-dir", exit_dir,
        "--socket-dir-path", socket_dir,
        "--runtime-arg", "--root=" + runtime.state_root,
    ]  # fmt: skip
    # runc's global options (e.g. --criu=PATH for a restore).
    for arg in runtime_args:
        args += ["--runtime-arg", arg]
    if persist_dir:
        args += ["--persist-dir", persist_dir]
    if exec_process_spec:
        args += ["-e", "--exec-process-spec", exec_process_spec]
        if exec_attach:
            args.append("--exec-attach")
    if terminal:
        args.append("-t")
    if stdin:
        args.append("-i")
        if leave_stdin_open:
            args.append("--leave-stdin-open")
    if log_size_max:
        args += ["--log-size-max", str(int(log_size_max))]
    if restore_from:
        args += ["--restore", restore_from]
        args += ["--runtime-opt=" + option for option in restore_options]
    return args


def failed_report(message: str) -> dict:
    """A report saying that nothing was started, as conmon words it."""
    return {"data": -1, "message": message}


class ConmonProcess(ProcessProtocol):
    """The conmon we spawn, from our side of its pipes.

    C{started} fires with conmon's first report on the sync pipe (C{{"data":
    PID}}, or C{{"data": -1, "message": ...}}); when the pipe closes without
    one, with a failed report carrying conmon's output, C{reported} staying
    False.  In C{exec_mode} (an exec: conmon reports the end of the process
    too, and waits on its start pipe) C{exited} fires with the exit code of
    the second report (None when conmon vanished without saying), and
    C{attach_ready} with True once the attach socket listens (False if
    conmon went away first).  C{reaped} fires with the status of the
    process we spawned once it exited (in container mode it forks the
    supervising conmon and exits at once); C{ended} once its output pipes
    are closed too.
    """

    def __init__(self, exec_mode: bool = False) -> None:
        self.exec_mode = exec_mode
        self.started: Deferred = Deferred()
        self.exited: Deferred = Deferred()
        self.attach_ready: Deferred = Deferred()
        self.reaped: Deferred = Deferred()
        self.ended: Deferred = Deferred()
        self.reported = False
        self.status: Optional[int] = None
        self._sync = b""
        self._output: List[bytes] = []
        self._output_size = 0

    def connectionMade(self) -> None:
        self.transport.closeStdin()
        if self.exec_mode:
            # conmon's first read of the start pipe, before it forks.
            self.transport.writeToChild(START_FD, b"0")

    def go(self, attached: bool = True) -> None:
        """Exec mode: let conmon run the process (the second write of the
        start pipe when attached: conmon reads it no more otherwise)."""
        try:
            if attached:
                self.transport.writeToChild(START_FD, b"1")
            self.transport.closeChildFD(START_FD)
        except Exception:
            pass

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == SYNC_FD:
            self._sync += data
            while b"\n" in self._sync and not self.exited.called:
                line, _, self._sync = self._sync.partition(b"\n")
                if line.strip():
                    self._report(line)
        elif childFD == ATTACH_FD:
            self._attach_ready(True)
        elif self._output_size < OUTPUT_LIMIT:
            self._output.append(data)
            self._output_size += len(data)

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == SYNC_FD:
            if self._sync.strip() and not self.exited.called:
                line, self._sync = self._sync, b""
                self._report(line)
            self._closed()
        elif childFD == ATTACH_FD:
            self._attach_ready(False)

    def _report(self, line: bytes) -> None:
        try:
            report = json.loads(line.decode("utf-8", "replace"))
            if not isinstance(report, dict):
                raise ValueError(line)
        except ValueError:
            report = failed_report("unreadable report from conmon: %r" % (line,))
        if not self.started.called:
            self.reported = True
            self.started.callback(report)
            data = report.get("data")
            if not self.exec_mode or not isinstance(data, int) or data <= 0:
                self._exit(None)
            if not self.exec_mode:
                # conmon writes nothing more there for a container it created.
                try:
                    self.transport.closeChildFD(SYNC_FD)
                except Exception:
                    pass
        else:
            code = report.get("data")
            self._exit(code if isinstance(code, int) and code >= 0 else None)

    def _exit(self, code: Optional[int]) -> None:
        if not self.exited.called:
            self.exited.callback(code)

    def _attach_ready(self, ready: bool) -> None:
        if not self.attach_ready.called:
            self.attach_ready.callback(ready)

    def _closed(self) -> None:
        """conmon is gone or will say no more: what was not said, was not."""
        self._attach_ready(False)
        if not self.started.called:
            self.started.callback(failed_report(self.output() or "conmon exited"))
        self._exit(None)

    def give_up(self, message: str) -> None:
        """Stop waiting for conmon: a start not reported failed with C{message}."""
        self._attach_ready(False)
        if not self.started.called:
            self.reported = True
            self.started.callback(failed_report(message))
        self._exit(None)

    def processExited(self, reason: Failure) -> None:
        self.status = exit_status(reason)
        self.reaped.callback(self.status)

    def processEnded(self, reason: Failure) -> None:
        self._closed()
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


def write_ctl(bundle: str, message: str) -> None:
    """One message on conmon's control fifo (blocking, but never for long:
    the fifo is opened non-blocking)."""
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

