"""
The probe runner: healthcheck probes run outside the daemon's process.

One runner per daemon, a child the daemon starts, supervises and stops
(L{twistedock.backend.containers.probes}).  The daemon tells it once per
run of a container what to probe; the runner keeps the timers, runs each
probe as C{runc exec} into the container (as dockerd's probe is an exec),
kills a probe at its timeout, and tells the daemon one short line per
step, so that a probe costs the daemon the parsing of two lines and the
update of C{State.Health} in memory (lines are gathered for up to
L{FLUSH_DELAY}, so that the daemon wakes up for several at once).

It imports only the standard library and L{healthstate}: it starts in a
few milliseconds, and its CPU time is its own, not the daemon's.

What the daemon writes on the runner's stdin, one line each::

    W {"key": 7, "container": ID, "process": {OCI process}, "interval": NS,
       "timeout": NS, "start_period": NS, "start_interval": NS,
       "retries": N, "started_at": NS, "status": "starting", "streak": 0}
    U 7

C{W} watches a run (its key chosen by the daemon, a new one per watch),
C{U} stops watching it (a probe under way is killed).  The end of stdin
stops the runner: every probe under way is killed first.

What the runner writes on its stdout (times in nanoseconds since the
epoch; the last field, JSON text, may hold spaces)::

    S key start                        a probe started (exec_create, exec_start)
    E key start end code "output"      it ended (its result, exec_die)
    T key start end                    it passed its timeout and was killed
    X key code                         a killed probe ended (exec_die)
    F key start end "runc's output"    it could not be started

Each probe's OCI process is written to C{DIR/KEY.json} once per watch,
runc writes the probe's pid to C{DIR/KEY.pid}, removed when it ended: a
runner that starts finds the pid files of probes a previous runner left
running and kills them.
"""

import collections
import heapq
import itertools
import json
import os
import selectors
import signal
import sys
import time
from typing import Callable, Deque, Dict, List, Optional

from .healthstate import STARTING, apply_result, status_of, LimitedOutput

_NS = 1_000_000_000


# -- the schedule ------------------------------------------------------------------


class _Watch:
    """One run's probing: the timer to its next probe, or the probe under
    way and its deadline, and the status the probes lead to."""

    __slots__ = ("plan", "key", "health", "timer", "probe", "deadline", "start", "stopped")

    def __init__(self, plan: dict) -> None:
        self.plan = plan
        self.key = plan["key"]
        self.health = {"Status": plan.get("status") or STARTING, "FailingStreak": plan.get("streak") or 0}
        self.timer = None
        self.probe = None
        self.deadline = None
        self.start = 0
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True
        for call in (self.timer, self.deadline):
            if call is not None and call.active():
                call.cancel()
        self.timer = self.deadline = None
        probe, self.probe = self.probe, None
        if probe is not None:
            probe.kill()


class _Attempt:
    """A probe under way: its process once spawned, whether it passed its
    timeout, whether it ended."""

    __slots__ = ("process", "timed_out", "ended")

    def __init__(self) -> None:
        self.process = None
        self.timed_out = False
        self.ended = False

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()


class Prober:
    """The probes of every watched run, on a C{clock} (C{now()} in
    nanoseconds since the epoch, C{call_later(seconds, f, *args)} giving
    a call with C{active()} and C{cancel()}: a Twisted reactor's
    C{callLater} fits), run by C{spawn(plan, on_end)} (a probe with
    C{kill()}; C{on_end(code, output, ran)} once it ended, C{ran} False
    when it could not start, C{output} then saying why), told to
    C{report} (C{started}, C{ended}, C{timed_out}, C{exited}, C{failed},
    as the lines above).

    As dockerd: the first probe comes an interval after the watch
    begins, each next one an interval after the previous one ended (the
    start interval instead while the run is starting within its start
    period); a probe past its timeout is killed and its result is a
    failure at once, and the next one waits until it is gone."""

    def __init__(self, clock, spawn: Callable, report) -> None:
        self.clock = clock
        self.spawn = spawn
        self.report = report
        self._watches: Dict[int, _Watch] = {}

    def watching(self) -> int:
        return len(self._watches)

    def watch(self, plan: dict) -> None:
        self.unwatch(plan["key"])
        watch = self._watches[plan["key"]] = _Watch(plan)
        self._schedule(watch)

    def unwatch(self, key: int) -> None:
        watch = self._watches.pop(key, None)
        if watch is not None:
            watch.stop()

    def stop(self) -> None:
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            watch.stop()

    def processes(self) -> list:
        """The probes under way (what L{spawn} gave)."""
        return [w.probe.process for w in self._watches.values() if w.probe is not None and w.probe.process is not None]

    def _interval(self, watch: _Watch) -> int:
        plan = watch.plan
        start_interval = plan.get("start_interval") or 0
        if start_interval and status_of(watch.health) == STARTING:
            if self.clock.now() - plan.get("started_at", 0) < (plan.get("start_period") or 0):
                return start_interval
        return plan["interval"]

    def _schedule(self, watch: _Watch) -> None:
        watch.timer = self.clock.call_later(self._interval(watch) / _NS, self._probe, watch)

    def _probe(self, watch: _Watch) -> None:
        watch.timer = None
        if watch.stopped:
            return
        start = watch.start = self.clock.now()
        self.report.started(watch.key, start)
        attempt = watch.probe = _Attempt()
        try:
            process = self.spawn(watch.plan, lambda *end: self._ended(watch, attempt, *end))
        except Exception as e:
            watch.probe = None
            self.report.failed(watch.key, start, self.clock.now(), str(e))
            self._note(watch, -1, start)
            self._schedule(watch)
            return
        if attempt.ended:
            return
        attempt.process = process
        watch.deadline = self.clock.call_later(watch.plan["timeout"] / _NS, self._timed_out, watch, attempt)

    def _timed_out(self, watch: _Watch, attempt: "_Attempt") -> None:
        watch.deadline = None
        if watch.stopped or watch.probe is not attempt:
            return
        attempt.timed_out = True
        attempt.kill()
        self.report.timed_out(watch.key, watch.start, self.clock.now())
        self._note(watch, -1, watch.start)

    def _ended(self, watch: _Watch, attempt: "_Attempt", code: int, output: str, ran: bool) -> None:
        attempt.ended = True
        if watch.stopped or watch.probe is not attempt:
            return
        watch.probe = None
        if watch.deadline is not None:
            watch.deadline.cancel()
            watch.deadline = None
        if attempt.timed_out:
            if ran:
                self.report.exited(watch.key, code)
        elif ran:
            self.report.ended(watch.key, watch.start, self.clock.now(), code, output)
            self._note(watch, code, watch.start)
        else:
            self.report.failed(watch.key, watch.start, self.clock.now(), output)
            self._note(watch, -1, watch.start)
        self._schedule(watch)

    def _note(self, watch: _Watch, code: int, start: int) -> None:
        plan = watch.plan
        apply_result(
            watch.health,
            {"ExitCode": code},
            retries=plan.get("retries") or 0,
            start_period=plan.get("start_period") or 0,
            started_at=plan.get("started_at", 0),
            start=start,
        )
        watch.health["Log"] = []


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


class LineReport:
    """The reports as lines, given to C{write} (bytes)."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write

    def started(self, key: int, start: int) -> None:
        self.write(b"S %d %d\n" % (key, start))

    def ended(self, key: int, start: int, end: int, code: int, output: str) -> None:
        self.write(b"E %d %d %d %d %s\n" % (key, start, end, code, _text(output).encode("utf-8")))

    def timed_out(self, key: int, start: int, end: int) -> None:
        self.write(b"T %d %d %d\n" % (key, start, end))

    def exited(self, key: int, code: int) -> None:
        self.write(b"X %d %d\n" % (key, code))

    def failed(self, key: int, start: int, end: int, message: str) -> None:
        self.write(b"F %d %d %d %s\n" % (key, start, end, _text(message).encode("utf-8")))


def parse_report(line: bytes, report) -> None:
    """One line of L{LineReport} told to C{report} (the daemon's side);
    ValueError for a line that is none."""
    kind, _, rest = line.partition(b" ")
    if kind == b"S":
        key, start = rest.split()
        report.started(int(key), int(start))
    elif kind == b"E":
        key, start, end, code, output = rest.split(b" ", 4)
        report.ended(int(key), int(start), int(end), int(code), json.loads(output))
    elif kind == b"T":
        key, start, end = rest.split()
        report.timed_out(int(key), int(start), int(end))
    elif kind == b"X":
        key, code = rest.split()
        report.exited(int(key), int(code))
    elif kind == b"F":
        key, start, end, message = rest.split(b" ", 3)
        report.failed(int(key), int(start), int(end), json.loads(message))
    else:
        raise ValueError("not a probe report: %r" % (line[:80],))


# -- the process -------------------------------------------------------------------


class _Call:
    __slots__ = ("when", "function", "args", "cancelled")

    def __init__(self, when: float, function, args) -> None:
        self.when = when
        self.function = function
        self.args = args
        self.cancelled = False

    def active(self) -> bool:
        return not self.cancelled

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """The smallest event loop: timers on a heap, readers on a selector."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._timers: list = []
        self._seq = itertools.count()
        self.running = True

    def now(self) -> int:
        return time.time_ns()

    def call_later(self, seconds: float, function, *args) -> _Call:
        call = _Call(time.monotonic() + max(0.0, seconds), function, args)
        heapq.heappush(self._timers, (call.when, next(self._seq), call))
        return call

    def add_reader(self, fd: int, callback) -> None:
        self.selector.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def run(self) -> None:
        timers = self._timers
        while self.running:
            while timers and timers[0][2].cancelled:
                heapq.heappop(timers)
            timeout = None
            if timers:
                timeout = max(0.0, timers[0][0] - time.monotonic())
            for key, _ in self.selector.select(timeout):
                key.data()
                if not self.running:
                    return
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                _, _, call = heapq.heappop(timers)
                if not call.cancelled:
                    call.cancelled = True
                    call.function(*call.args)


class RuncProbe:
    """One probe: C{runc exec -d} of the plan's process in its container,
    as containerd's shim and conmon run an exec: runc ends once the
    process runs, and the process, orphaned, becomes the runner's child
    (the runner is a child subreaper), whose end is seen through a pidfd.
    Its stdout and stderr come through one pipe (the first
    L{MAX_OUTPUT} bytes kept)."""

    def __init__(self, loop: Loop, gate: "StartGate", runc: List[str], directory: str, plan: dict, on_end) -> None:
        self.loop = loop
        self.gate = gate
        self.on_end = on_end
        self.output = LimitedOutput()
        self.pid: Optional[int] = None
        self.process_pid: Optional[int] = None
        self.pipe: Optional[int] = None
        self.pidfd: Optional[int] = None
        self.killed = False
        key = plan["key"]
        self.pid_file = os.path.join(directory, "%d.pid" % key)
        process_file = os.path.join(directory, "%d.json" % key)
        self.argv = runc + ["exec", "-d", "--process", process_file, "--pid-file", self.pid_file, plan["container"]]
        gate.enter(self._start)

    def _start(self) -> None:
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass
        try:
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            try:
                actions = [
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, write_end, 1),
                    (os.POSIX_SPAWN_DUP2, write_end, 2),
                ]
                self.pid = os.posix_spawn(self.argv[0], self.argv, _ENVIRONMENT, file_actions=actions)
            except BaseException:
                os.close(read_end)
                raise
            finally:
                os.close(write_end)
        except OSError as e:
            self.gate.leave()
            self.loop.call_later(0, self.on_end, 255, "%s: %s" % (self.argv[0], e.strerror or e), False)
            return
        self.pipe = read_end
        os.set_blocking(read_end, False)
        self.pidfd = os.pidfd_open(self.pid)
        self.loop.add_reader(read_end, self._drain)
        self.loop.add_reader(self.pidfd, self._runc_exited)

    def _drain(self) -> None:
        while self.pipe is not None:
            try:
                data = os.read(self.pipe, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_pipe()
                return
            self.output.add(data)

    def _close_pipe(self) -> None:
        if self.pipe is not None:
            self.loop.remove_reader(self.pipe)
            os.close(self.pipe)
            self.pipe = None

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None

    def kill(self) -> None:
        """As dockerd: the probe's process is killed; runc when it has not
        started it yet (then the process, once known, too); a probe still
        waiting for its turn ends without running."""
        if self.killed:
            return
        self.killed = True
        if self.pid is None:
            if self.gate.withdraw(self._start):
                self.loop.call_later(0, self.on_end, 137, "", False)
            return
        try:
            os.kill(self.process_pid or self.pid, signal.SIGKILL)
        except OSError:
            pass

    def _runc_exited(self) -> None:
        self._close_pidfd()
        _, status = os.waitpid(self.pid, 0)
        self.gate.leave()
        code = _exit_code(status)
        pid = None
        if code == 0:
            try:
                with open(self.pid_file) as f:
                    pid = int(f.read().strip() or 0) or None
            except (OSError, ValueError):
                pid = None
        if pid is None:
            # runc could not start it: what runc said is in the pipe.
            self._drain()
            self._close_pipe()
            self._forget()
            self.on_end(code or 255, self.output.text(), False)
            return
        self.process_pid = pid
        try:
            self.pidfd = os.pidfd_open(pid)
        except OSError:
            self._ended(None)
            return
        self.loop.add_reader(self.pidfd, self._process_exited)
        if self.killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def _process_exited(self) -> None:
        self._close_pidfd()
        try:
            _, status = os.waitpid(self.process_pid, 0)
        except ChildProcessError:
            status = None
        self._ended(status)

    def _ended(self, status) -> None:
        # What it wrote is in the pipe now; a process it left behind may
        # hold the pipe open: its end is not awaited.
        self._drain()
        self._close_pipe()
        self._forget()
        self.on_end(255 if status is None else _exit_code(status), self.output.text(), True)

    def _forget(self) -> None:
        try:
            os.unlink(self.pid_file)
        except OSError:
            pass

    def wait(self) -> None:
        """Block until the probe's processes ended (the runner's last act)."""
        for pid in (self.pid, self.process_pid):
            if pid:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass


class StartGate:
    """At most C{limit} C{runc exec} starting at once, the others waiting
    their turn in order: a burst of probes (many containers started
    together, with one interval) does not start dozens of runc at once.
    The limit is high enough not to slow a steady rate down (a runc exec
    takes 50-500 ms to start on a loaded machine)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self.waiting: Deque[Callable[[], None]] = collections.deque()

    def enter(self, start: Callable[[], None]) -> None:
        if self.busy < self.limit:
            self.busy += 1
            start()
        else:
            self.waiting.append(start)

    def leave(self) -> None:
        self.busy -= 1
        while self.waiting and self.busy < self.limit:
            self.busy += 1
            self.waiting.popleft()()

    def withdraw(self, start: Callable[[], None]) -> bool:
        """Take a waiting start back (False: it is no longer waiting)."""
        try:
            self.waiting.remove(start)
        except ValueError:
            return False
        return True


#: How many runc exec may start at once.
START_LIMIT = max(16, 4 * (os.cpu_count() or 1))


def _exit_code(status: int) -> int:
    """As runc and conmon report an end: 128 + the signal of a killed one."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def become_subreaper() -> None:
    """Orphaned descendants (a probe once runc exec -d ended) become the
    runner's children, so that it learns how they ended."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


#: How long a report may wait for others to go with it to the daemon.
FLUSH_DELAY = 0.1

_ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def kill_leftovers(directory: str) -> None:
    """A previous runner's files: the probes it left running are killed."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith(".pid"):
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
                if pid > 1:
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
        try:
            os.unlink(path)
        except OSError:
            pass


class Runner:
    """The runner process: commands from C{stdin}, reports to C{stdout}."""

    def __init__(self, runc: List[str], directory: str, stdin: int = 0, stdout: int = 1) -> None:
        self.loop = Loop()
        self.runc = runc
        self.directory = directory
        self.stdin = stdin
        self.stdout = stdout
        self._buffer = b""
        self.gate = StartGate(START_LIMIT)
        self._pending: List[bytes] = []
        self._flush_call = None
        self.prober = Prober(self.loop, self._spawn, LineReport(self._write))

    def _write(self, data: bytes) -> None:
        """Lines are gathered for L{FLUSH_DELAY}: at 50 probes a second the
        daemon wakes up a few times a second for them, not a hundred."""
        self._pending.append(data)
        if self._flush_call is None:
            self._flush_call = self.loop.call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        self._flush_call = None
        data = b"".join(self._pending)
        self._pending = []
        try:
            while data:
                data = data[os.write(self.stdout, data):]
        except OSError:
            # The daemon is gone.
            self.loop.running = False

    def _spawn(self, plan: dict, on_end) -> RuncProbe:
        if plan.get("error"):
            # The daemon could not make the probe's process: each probe
            # fails with its reason.
            raise RuntimeError(plan["error"])
        return RuncProbe(self.loop, self.gate, self.runc, self.directory, plan, on_end)

    def _command(self, line: bytes) -> None:
        kind, _, rest = line.partition(b" ")
        if kind == b"W":
            plan = json.loads(rest)
            process = plan.pop("process", None)
            if process is not None:
                path = os.path.join(self.directory, "%d.json" % plan["key"])
                with open(path + ".tmp", "w") as f:
                    json.dump(process, f)
                os.rename(path + ".tmp", path)
            self.prober.watch(plan)
        elif kind == b"U":
            key = int(rest)
            self.prober.unwatch(key)
            try:
                os.unlink(os.path.join(self.directory, "%d.json" % key))
            except OSError:
                pass
        elif line.strip():
            print("probe runner: unknown command %r" % (line[:80],), file=sys.stderr, flush=True)

    def _readable(self) -> None:
        try:
            data = os.read(self.stdin, 65536)
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self.stdin)
            self.loop.running = False
            return
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            try:
                self._command(line)
            except Exception as e:
                print("probe runner: %r: %s" % (line[:80], e), file=sys.stderr, flush=True)

    def run(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        become_subreaper()
        kill_leftovers(self.directory)
        self.loop.add_reader(self.stdin, self._readable)
        self.loop.run()
        self.finish()

    def finish(self, wait: float = 5.0) -> None:
        """Every probe under way killed and awaited (a few seconds at most)."""
        self.flush()
        probes = self.prober.processes()
        self.prober.stop()
        deadline = time.monotonic() + wait
        for probe in probes:
            if time.monotonic() < deadline:
                probe.wait()
        kill_leftovers(self.directory)


def main(argv: Optional[List[str]] = None) -> int:
    """C{python -m twistedock.backend.proberunner DIR RUNC [RUNC's global
    options...]}."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2:
        print("usage: proberunner DIR RUNC [OPTION...]", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Runner(argv[1:], argv[0]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
