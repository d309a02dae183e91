"""
The probe runner process (L{twistedock.backend.proberunner}) with a fake
runc (a script that runs the process file's argv itself, after writing its
pid file as runc does), driven through its stdin and stdout; and the
daemon's side of it (L{ProbeRunnerProcess}) on the real reactor: started
on demand, restarted when it dies, stopped.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import task
from zope.interface import implementer
from zope.interface.verify import verifyObject

import twistedock
from twistedock.backend.containers.health import IProbeReports, IProbeRunner
from twistedock.backend.containers.probes import ProbeRunnerProcess
from twistedock.backend.proberunner import START_LIMIT, LineReport, StartGate, parse_report

S = 1_000_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(twistedock.__file__)))

#: runc exec -d: the process started, its pid written, runc gone.
FAKE_RUNC = """#!%s
import json, os, sys
args = sys.argv[1:]
options = args[args.index("exec") + 1:]
with open(options[options.index("--process") + 1]) as f:
    argv = json.load(f)["args"]
if argv[0] == "nosuch":
    sys.stderr.write('time="2026-01-01T00:00:00Z" level=error msg="exec failed: unable to start container '
                     'process: exec: \\\\"nosuch\\\\": executable file not found in $PATH"\\n')
    sys.exit(1)
assert "-d" in options
pid = os.fork()
if pid == 0:
    os.execvp(argv[0], argv)
with open(options[options.index("--pid-file") + 1], "w") as f:
    f.write(str(pid))
"""


@pytest.fixture
def fake_runc(tmp_path):
    path = tmp_path / "runc"
    path.write_text(FAKE_RUNC % (sys.executable,))
    path.chmod(0o755)
    return str(path)


def environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = ROOT
    return env


def running(marker: str):
    """The pids of processes whose command line holds C{marker}."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/stat" % name) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in argv and state != "Z":
            found.append(int(name))
    return found


def wait_until(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("not within %s s" % seconds)


class Runner:
    """The runner process, its stdin and stdout."""

    def __init__(self, directory: str, runc: str) -> None:
        self.directory = directory
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "twistedock.backend.proberunner", directory, runc, "--root", "/nowhere"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment(),
        )
        self.buffer = b""

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def watch(self, key: int, argv, **plan) -> None:
        doc = {
            "key": key, "container": "c%d" % key, "process": {"args": list(argv)},
            "interval": S // 10, "timeout": 5 * S, "start_period": 0, "start_interval": 0,
            "retries": 3, "started_at": time.time_ns(), "status": "starting", "streak": 0,
        }  # fmt: skip
        doc.update(plan)
        self.send("W " + json.dumps(doc))

    def line(self, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise AssertionError("no line from the runner within %s s" % timeout)
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                raise AssertionError("the runner ended")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        recorder = Recorder()
        parse_report(line, recorder)
        return recorder.calls[0]

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode


@implementer(IProbeReports)
class Recorder:
    def __init__(self) -> None:
        self.calls = []

    def started(self, key, start):
        self.calls.append(["started", key, start])

    def ended(self, key, start, end, code, output):
        self.calls.append(["ended", key, start, end, code, output])

    def timed_out(self, key, start, end):
        self.calls.append(["timed_out", key, start, end])

    def exited(self, key, code):
        self.calls.append(["exited", key, code])

    def failed(self, key, start, end, message):
        self.calls.append(["failed", key, start, end, message])


@pytest.fixture
def runner(tmp_path, fake_runc):
    r = Runner(str(tmp_path / "probes"), fake_runc)
    yield r
    r.close()


def test_reports_as_lines_and_back():
    lines = []
    report = LineReport(lines.append)
    report.started(3, 10)
    report.ended(3, 10, 20, 1, 'a "b"\nc\u00e9')
    report.timed_out(3, 10, 20)
    report.exited(3, 137)
    report.failed(3, 10, 20, "no such thing")
    recorder = Recorder()
    for line in b"".join(lines).splitlines():
        parse_report(line, recorder)
    assert recorder.calls == [
        ["started", 3, 10], ["ended", 3, 10, 20, 1, 'a "b"\nc\u00e9'], ["timed_out", 3, 10, 20],
        ["exited", 3, 137], ["failed", 3, 10, 20, "no such thing"],
    ]  # fmt: skip
    assert verifyObject(IProbeReports, recorder)
    with pytest.raises(ValueError):
        parse_report(b"Q 1", recorder)


def test_runc_starts_wait_their_turn():
    gate = StartGate(2)
    started = []
    starts = [lambda n=n: started.append(n) for n in range(4)]
    for start in starts:
        gate.enter(start)
    assert started == [0, 1] and gate.busy == 2
    assert gate.withdraw(starts[2]) and not gate.withdraw(starts[2])
    gate.leave()
    assert started == [0, 1, 3]
    gate.leave()
    gate.leave()
    assert gate.busy == 0 and not gate.waiting


def test_many_probes_at_once(runner):
    # More than START_LIMIT at once: each runs, in turn.
    count = START_LIMIT + 3
    for key in range(1, count + 1):
        runner.watch(key, ["echo", str(key)], interval=S // 50)
    ended = {}
    while len(ended) < count:
        line = runner.line()
        if line[0] == "ended":
            ended[line[1]] = line[5]
    assert ended == {key: "%d\n" % key for key in range(1, count + 1)}


def test_a_probe_runs_each_interval_with_its_output(runner):
    runner.watch(1, ["sh", "-c", "echo ok; echo err >&2; exit 3"])
    started = runner.line()
    assert started[:2] == ["started", 1]
    ended = runner.line()
    assert ended[:2] == ["ended", 1] and ended[2] == started[2]
    assert ended[4:] == [3, "ok\nerr\n"]
    assert ended[3] >= ended[2]
    # The next one an interval after this one ended.
    again = runner.line()
    assert again[0] == "started" and again[2] - ended[3] >= S // 10


def test_output_is_cut_at_4096_bytes(runner):
    runner.watch(1, ["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"])
    runner.line()
    ended = runner.line()
    assert ended[0] == "ended" and ended[5] == "a" * 4096 + "..."


def test_a_hanging_probe_is_killed_at_its_timeout(runner):
    # (Long enough for the fake runc, a Python script, to start on a
    # loaded machine.)
    runner.watch(1, ["sleep", "61.25"], timeout=S * 3 // 2, interval=S)
    started = runner.line()
    timed_out = runner.line()
    assert timed_out[:2] == ["timed_out", 1]
    assert timed_out[2] == started[2] and timed_out[3] - timed_out[2] >= S * 3 // 2
    # The probe's process was killed: its end is the exec's end.
    assert runner.line() == ["exited", 1, 137]
    assert running("61.25") == []
    assert os.listdir(runner.directory) == ["1.json"]


def test_a_probe_that_cannot_start_fails_with_runcs_words(runner):
    runner.watch(1, ["nosuch"])
    runner.line()
    failed = runner.line()
    assert failed[:2] == ["failed", 1]
    assert 'executable file not found in $PATH' in failed[4]


def test_unwatched_and_ended_runners_leave_no_probe(runner):
    runner.watch(1, ["sleep", "61.5"], interval=S // 20)
    runner.watch(2, ["sleep", "61.75"], interval=S // 20)
    assert {runner.line()[1], runner.line()[1]} == {1, 2}
    wait_until(lambda: running("61.5") and running("61.75"))
    runner.send("U 1")
    wait_until(lambda: not running("61.5"))
    assert sorted(os.listdir(runner.directory)) == ["2.json", "2.pid"]
    # The daemon gone (its end of the pipe closed): the runner kills what
    # runs and ends.
    assert runner.close() == 0
    assert running("61.75") == []
    assert os.listdir(runner.directory) == []


def test_a_new_runner_kills_what_a_dead_one_left(tmp_path, fake_runc):
    directory = tmp_path / "probes"
    directory.mkdir()
    left = subprocess.Popen(["sleep", "62.5"])
    try:
        (directory / "4.pid").write_text(str(left.pid))
        (directory / "4.json").write_text("{}")
        r = Runner(str(directory), fake_runc)
        try:
            assert left.wait(10) == -signal.SIGKILL
            wait_until(lambda: os.listdir(directory) == [])
        finally:
            r.close()
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()


# -- the daemon's side ------------------------------------------------------------------


def reactor():
    from twisted.internet import reactor

    return reactor


class FakeExecs:
    def probe_process(self, c, command):
        return {"args": list(command)}


class FakeContainer:
    def __init__(self, ident: str) -> None:
        self.id = ident


async def until(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("not within %s s" % seconds)
        await task.deferLater(reactor(), 0.02, lambda: None)


@pytest_twisted.ensureDeferred
async def test_the_daemon_starts_the_runner_on_demand_and_survives_its_death(tmp_path, fake_runc):
    runner = ProbeRunnerProcess(
        reactor(), FakeExecs(), runc=fake_runc, state_root="/nowhere", directory=str(tmp_path / "probes"),
        restart_delay=0.1,
    )  # fmt: skip
    assert verifyObject(IProbeRunner, runner)
    recorder = Recorder()
    runner.report_to(recorder)
    try:
        assert runner.pid() is None
        plan = {
            "interval": S // 10, "timeout": 5 * S, "start_period": 0, "start_interval": 0, "retries": 3,
            "started_at": time.time_ns(), "status": "starting", "streak": 0,
        }  # fmt: skip
        runner.watch(7, FakeContainer("c7"), ["echo", "hello"], plan)
        runner.watch(8, FakeContainer("c8"), ["nosuch"], plan)
        await until(lambda: any(c[0] == "ended" for c in recorder.calls))
        first = runner.pid()
        assert first is not None and runner.starts == 1
        ended = [c for c in recorder.calls if c[0] == "ended"][0]
        assert ended[1] == 7 and ended[4:] == [0, "hello\n"]
        await until(lambda: any(c[0] == "failed" for c in recorder.calls))
        failed = [c for c in recorder.calls if c[0] == "failed"][0]
        # runc's words as dockerd gives them for an exec that cannot start.
        assert failed[1] == 8
        assert failed[4] == (
            'OCI runtime exec failed: exec failed: unable to start container process: exec: "nosuch": '
            "executable file not found in $PATH: unknown"
        )
        # The runner dies: another one is started and probes on.
        os.kill(first, signal.SIGKILL)
        await until(lambda: runner.starts == 2 and runner.pid() not in (None, first))
        count = len([c for c in recorder.calls if c[0] == "ended"])
        await until(lambda: len([c for c in recorder.calls if c[0] == "ended"]) > count)
        runner.unwatch(8)
        second = runner.pid()
    finally:
        await runner.stop()
    assert runner.pid() is None
    await until(lambda: not os.path.exists("/proc/%d" % second) or open("/proc/%d/stat" % second).read().split()[2] == "Z")
    # Stopped: nothing restarts it.
    runner.watch(9, FakeContainer("c9"), ["true"], plan)
    await task.deferLater(reactor(), 0.3, lambda: None)
    assert runner.pid() is None and runner.starts == 2
