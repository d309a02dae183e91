"""
The runtime driver: conmon + runc on the real reactor with busybox bundles
(root, runc and conmon needed), and its exit watcher and log reader (no
container needed).
"""

import copy
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import pytest_twisted
from twisted.internet import defer, task

from twistedock.backend.runtime import (
    STDERR,
    STDOUT,
    AttachProtocol,
    ExitWatcher,
    LogEntry,
    LogReader,
    Runtime,
    parse_timestamp,
    runc_error,
    runc_message,
)
from twistedock.backend.runtime.conmon import SYNC_FD, ConmonProcess, conmon_argv
from twistedock.errors import Conflict, InternalError, NotFound

BUSYBOX = "/bin/busybox"
RUNC = shutil.which("runc")
CONMON = shutil.which("conmon")

needs_runtime = pytest.mark.skipif(
    os.geteuid() != 0 or not RUNC or not CONMON or not os.path.exists(BUSYBOX),
    reason="needs root, runc, conmon and a static busybox",
)

APPLETS = ("sh", "cat", "echo", "sleep", "head", "tr", "stty", "true", "false", "ls")

#: Every conmon these tests started, to check at the end that all are gone.
CONMON_PIDS = []
#: The directories of this run's containers (another run's are not ours to check).
ROOTS = []

TIMEOUT = 15


def reactor():
    from twisted.internet import reactor

    return reactor


def within(d, seconds=TIMEOUT):
    """C{d}, failing if it takes longer than C{seconds}."""
    return d.addTimeout(seconds, reactor())


def sleep(seconds):
    return task.deferLater(reactor(), seconds, lambda: None)


def proc_state(pid):
    """(state letter, parent pid, command) of a process, or None."""
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), comm


def zombie_children(name="conmon"):
    """Zombies of ours: conmons we spawned and did not reap."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_state(int(entry))
            if st and st[0] == "Z" and st[1] == os.getpid() and st[2] == name:
                found.append(int(entry))
    return found


async def conmon_gone(bundle):
    pid = Runtime.conmon_pid(bundle)
    deadline = time.monotonic() + 10
    while pid and (proc_state(pid) or ("Z",))[0] != "Z":
        assert time.monotonic() < deadline, "conmon %d still running" % (pid,)
        await sleep(0.02)


@pytest.fixture(scope="module")
def spec_template():
    if not RUNC:
        pytest.skip("no runc")
    directory = tempfile.mkdtemp(dir="/tmp", prefix="rt-spec-")
    try:
        subprocess.run([RUNC, "spec"], cwd=directory, check=True)
        with open(os.path.join(directory, "config.json")) as f:
            return json.load(f)
    finally:
        shutil.rmtree(directory)


@pytest.fixture(scope="module", autouse=True)
def no_conmon_left():
    """After the module: every conmon started here has exited and been
    reaped (those that daemonized by their new parent, PID 1, which does so
    within a couple of seconds here), no runc is left, nothing is mounted."""
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(proc_state(pid) for pid in CONMON_PIDS):
        time.sleep(0.1)
    assert [pid for pid in CONMON_PIDS if proc_state(pid)] == []
    def ours(line):
        return any(root + "/" in line for root in ROOTS)

    ps = subprocess.run(["ps", "-eo", "pid,stat,comm,args"], capture_output=True, text=True).stdout
    assert [l for l in ps.splitlines() if ours(l)] == []
    with open("/proc/self/mounts") as f:
        assert [l for l in f if ours(l)] == []


class Env:
    """Directories, a runtime and an exit watcher for one test."""

    def __init__(self, template):
        self.template = template
        self.root = tempfile.mkdtemp(dir="/tmp", prefix="rt-")
        ROOTS.append(self.root)
        self.exits = os.path.join(self.root, "e")
        self.sockets = os.path.join(self.root, "s")
        self.persist = os.path.join(self.root, "p")
        self.runtime = Runtime(reactor(), runc=RUNC, conmon=CONMON, state_root=os.path.join(self.root, "r"))
        self.watcher = ExitWatcher(reactor(), self.exits)
        self.watcher.start()
        self.ids = []

    def bundle(self, cid):
        return os.path.join(self.root, cid)

    def log_path(self, cid):
        return os.path.join(self.root, cid + ".log")

    def attach_socket(self, cid):
        return os.path.join(self.sockets, cid, "attach")

    def make_bundle(self, cid, args, terminal=False, memory=None, pid_namespace=True):
        bundle = self.bundle(cid)
        bin_dir = os.path.join(bundle, "rootfs", "bin")
        os.makedirs(bin_dir)
        try:
            os.link(BUSYBOX, os.path.join(bin_dir, "busybox"))
        except OSError:
            shutil.copy(BUSYBOX, os.path.join(bin_dir, "busybox"))
        for applet in APPLETS:
            os.symlink("busybox", os.path.join(bin_dir, applet))
        spec = copy.deepcopy(self.template)
        spec["process"]["args"] = args
        spec["process"]["terminal"] = terminal
        spec["root"]["readonly"] = False
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        for rlimit in spec["process"].get("rlimits", []):
            if rlimit["type"] == "RLIMIT_NOFILE" and hard != resource.RLIM_INFINITY:
                rlimit["hard"] = min(rlimit["hard"], hard)
                rlimit["soft"] = min(rlimit["soft"], rlimit["hard"])
        if memory:
            spec["linux"].setdefault("resources", {})["memory"] = {"limit": memory}
        if not pid_namespace:
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        return bundle

    async def create(self, cid, args, terminal=False, memory=None, pid_namespace=True, **options):
        bundle = self.make_bundle(cid, args, terminal=terminal, memory=memory, pid_namespace=pid_namespace)
        self.ids.append(cid)
        try:
            pid = await within(
                defer.ensureDeferred(
                    self.runtime.create(
                        cid,
                        bundle,
                        log_path=self.log_path(cid),
                        exit_dir=self.exits,
                        socket_dir=self.sockets,
                        terminal=terminal,
                        **options
                    )
                )
            )
        finally:
            conmon = Runtime.conmon_pid(bundle)
            if conmon:
                CONMON_PIDS.append(conmon)
        return pid

    async def cleanup(self):
        for cid in self.ids:
            try:
                await self.runtime.kill(cid, signal.SIGKILL, all=True)
            except (Conflict, NotFound):
                pass
            try:
                await self.runtime.delete(cid, force=True)
            except NotFound:
                pass
            assert await self.runtime.state(cid) is None
        self.watcher.stop()
        # Every conmon of this test ends: its container is gone.
        for cid in self.ids:
            await conmon_gone(self.bundle(cid))
        assert zombie_children() == []
        shutil.rmtree(self.root)


@pytest_twisted.async_yield_fixture
async def env(spec_template):
    e = Env(spec_template)
    yield e
    await e.cleanup()


class Recorder(AttachProtocol):
    def __init__(self):
        self.connection = None
        self.received = []
        self.lost = defer.Deferred()
        self._want = None

    def attachMade(self, connection):
        self.connection = connection

    def outputReceived(self, stream, data):
        self.received.append((stream, data))
        if self._want is not None:
            want, d = self._want
            if want(self):
                self._want = None
                d.callback(None)

    def attachLost(self, reason):
        self.lost.callback(None)

    def text(self, stream=None):
        return b"".join(data for s, data in self.received if stream is None or s == stream)

    def until(self, condition):
        if condition(self):
            return defer.succeed(None)
        d = defer.Deferred()
        self._want = (condition, d)
        return within(d)


# -- runc's messages -----------------------------------------------------------


def test_runc_message_keeps_only_the_message():
    stderr = (
        b'time="2026-11-30T11:46:35Z" level=warning msg="a warning"\n'
        b'time="2026-11-30T11:46:35Z" level=error msg="runc create failed: unable to start container process: '
        b'exec: \\"nope\\": executable file not found in $PATH"\n'
    )
    assert runc_message(stderr) == (
        'runc create failed: unable to start container process: exec: "nope": executable file not found in $PATH'
    )
    assert runc_message(b'time="x" level=error msg="container does not exist"\n') == "container does not exist"
    assert runc_message(b"plain text\n") == "plain text"
    # The last error only, as containerd's getLastRuntimeError gives dockerd
    # (OomScoreAdj -1000 without the right to lower it, side by side).
    assert runc_message(
        b'level=error msg="nsexec[27566]: failed to update /proc/self/oom_score_adj: Permission denied"\n'
        b'level=error msg="runc create failed: unable to start container process: can\'t get final child\'s PID from pipe: EOF"\n'
    ) == "runc create failed: unable to start container process: can't get final child's PID from pipe: EOF"
    assert runc_message('level=error msg="tab\\there \\u00e9"') == "tab\there \u00e9"


def test_runc_errors_are_typed():
    assert isinstance(runc_error("container does not exist"), NotFound)
    assert isinstance(runc_error("container not running"), Conflict)
    assert isinstance(runc_error("cannot delete container c that is not stopped: running"), Conflict)
    assert isinstance(runc_error("cannot start a container that has stopped"), Conflict)
    assert isinstance(runc_error("container with id exists: c"), Conflict)
    assert isinstance(runc_error("something broke"), InternalError)
    assert str(runc_error("container not running")) == "container not running"


def test_conmon_command_line():
    runtime = Runtime(None, runc="/usr/sbin/runc", conmon="/usr/bin/conmon", state_root="/run/x/runc")
    args = runtime.conmon_args(
        "abc",
        "/run/x/abc",
        log_path="/var/lib/x/abc.log",
        exit_dir="/run/x/exits",
        socket_dir="/run/x/s",
        persist_dir="/run/x/p/abc",
        terminal=True,
        stdin=True,
        leave_stdin_open=True,
        restore_from="/var/lib/x/cp",
        restore_options=("--tcp-established",),
        socket_name="abc12",
    )
    assert args[0] == "/usr/bin/conmon"
    joined = " ".join(args)
    for part in (
        "--api-version 1",
        "-c abc",
        "-u abc12",
        "-n abc",
        "-r /usr/sbin/runc",
        "-b /run/x/abc",
        "-p /run/x/abc/pidfile",
        "--conmon-pidfile /run/x/abc/conmon.pid",
        "-l k8s-file:/var/lib/x/abc.log",
        "--exit-dir /run/x/exits",
        "--socket-dir-path /run/x/s",
        "--runtime-arg --root=/run/x/runc",
        "--persist-dir /run/x/p/abc",
        "--restore /var/lib/x/cp",
        "--runtime-opt=--tcp-established",
    ):
        assert part in joined
    assert {"-t", "-i", "--leave-stdin-open"} <= set(args)
    plain = runtime.conmon_args("abc", "/b", log_path="/l", exit_dir="/e", socket_dir="/s")
    assert not {"-t", "-i", "--leave-stdin-open", "--restore", "--persist-dir"} & set(plain)


def test_conmon_command_line_with_the_systemd_cgroup_driver():
    runtime = Runtime(None, runc="/usr/sbin/runc", conmon="/usr/bin/conmon", state_root="/run/x/runc",
                      systemd_cgroup=True)
    args = runtime.conmon_args("abc", "/b", log_path="/l", exit_dir="/e", socket_dir="/s",
                               runtime_args=["--criu=/c"])
    joined = " ".join(args)
    # runc's global options, before its command: the systemd driver first.
    assert "--runtime-arg --root=/run/x/runc --runtime-arg --systemd-cgroup --runtime-arg --criu=/c" in joined
    plain = Runtime(None, runc="/usr/sbin/runc", conmon="/usr/bin/conmon", state_root="/run/x/runc")
    assert "--systemd-cgroup" not in plain.conmon_args("abc", "/b", log_path="/l", exit_dir="/e", socket_dir="/s")


def test_one_command_line_builder_for_containers_and_execs():
    class Names:
        conmon, runc, state_root = "/usr/bin/conmon", "/usr/sbin/runc", "/run/x/runc"

    common = dict(exit_dir="/e", socket_dir="/s", terminal=True, stdin=True, leave_stdin_open=True)
    container = conmon_argv(Names, "abc", "/b", log="k8s-file:/l", **common)
    an_exec = conmon_argv(Names, "abc", "/x", log="none", exec_process_spec="/x/p.json", exec_attach=True, **common)
    assert container[:12] == an_exec[:12] == [
        "/usr/bin/conmon", "--api-version", "1", "-c", "abc", "-u", "abc", "-n", "abc", "-r", "/usr/sbin/runc", "-b",
    ]
    assert container[-3:] == an_exec[-3:] == ["-t", "-i", "--leave-stdin-open"]
    assert "-e" not in container
    assert an_exec[an_exec.index("-e") :] == [
        "-e", "--exec-process-spec", "/x/p.json", "--exec-attach", "-t", "-i", "--leave-stdin-open",
    ]


class _ConmonTransport:
    def __init__(self):
        self.written = []
        self.closed = []

    def closeStdin(self):
        self.closed.append(0)

    def writeToChild(self, fd, data):
        self.written.append((fd, data))

    def closeChildFD(self, fd):
        self.closed.append(fd)


def test_conmon_of_a_container_reports_once():
    protocol = ConmonProcess()
    protocol.makeConnection(_ConmonTransport())
    assert protocol.transport.written == []  # no start pipe
    protocol.childDataReceived(SYNC_FD, b'{"data": 42}\n{"data": 7}\n')
    assert protocol.reported and protocol.started.result == {"data": 42}
    assert SYNC_FD in protocol.transport.closed


def test_conmon_that_says_nothing():
    protocol = ConmonProcess()
    protocol.makeConnection(_ConmonTransport())
    protocol.childDataReceived(2, b"[conmon:d]: debug\n[conmon:e]: runtime failed\n")
    protocol.childConnectionLost(SYNC_FD)
    assert not protocol.reported
    assert protocol.started.result == {"data": -1, "message": "runtime failed"}
    timed_out = ConmonProcess()
    timed_out.makeConnection(_ConmonTransport())
    timed_out.give_up("conmon did not report in time")
    assert timed_out.reported and timed_out.started.result["message"] == "conmon did not report in time"


# -- the exit watcher ----------------------------------------------------------


def write_exit(directory, cid, code):
    """As conmon does (g_file_set_contents): a temporary file renamed."""
    temporary = os.path.join(directory, cid + ".XYZ123")
    with open(temporary, "w") as f:
        f.write(str(code))
    os.rename(temporary, os.path.join(directory, cid))


@pytest_twisted.ensureDeferred
async def test_exit_watcher():
    directory = tempfile.mkdtemp(prefix="rt-exits-")
    watcher = ExitWatcher(reactor(), directory)
    watcher.start()
    try:
        first, second = watcher.wait("c1"), watcher.wait("c1")
        cancelled = watcher.wait("c1")
        other = watcher.wait("c2")
        assert watcher.waiting("c1") == 3
        cancelled.cancel()
        cancelled.addErrback(lambda f: f.trap(defer.CancelledError))
        assert watcher.waiting("c1") == 2
        assert not first.called
        write_exit(directory, "c1", 7)
        assert await within(first) == 7
        assert await within(second) == 7
        assert watcher.waiting("c1") == 0
        assert not other.called
        # Written in place (IN_CLOSE_WRITE), not renamed.
        with open(os.path.join(directory, "c2"), "w") as f:
            f.write("137")
        assert await within(other) == 137
        # Already there: at once.
        already = watcher.wait("c1")
        assert already.called and already.result == 7
        pending = watcher.wait("c3")
    finally:
        watcher.stop()
        shutil.rmtree(directory)
    with pytest.raises(defer.CancelledError):
        await pending


@pytest_twisted.ensureDeferred
async def test_exit_watcher_sees_files_written_before_start():
    directory = tempfile.mkdtemp(prefix="rt-exits-")
    watcher = ExitWatcher(reactor(), directory)
    try:
        write_exit(directory, "c1", 0)
        assert await within(watcher.wait("c1")) == 0  # starts the watcher
        assert watcher.running
    finally:
        watcher.stop()
        shutil.rmtree(directory)


# -- the log reader --------------------------------------------------------------

T0 = "2026-11-30T10:34:29.000000001+00:00"
T0_NS = 1_796_034_869_000_000_001


def line(seconds, stream, tag, text):
    return ("2026-11-30T10:34:%02d.000000001+00:00 %s %s %s\n" % (seconds, stream, tag, text)).encode()


def test_parse_timestamp():
    assert parse_timestamp(T0) == T0_NS
    assert parse_timestamp("2026-11-30T10:34:29.000000001Z") == T0_NS
    assert parse_timestamp("2026-11-30T12:34:29.000000001+02:00") == T0_NS
    assert parse_timestamp("2026-11-30T10:34:29.5+00:00") == T0_NS - 1 + 500_000_000
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


@pytest_twisted.ensureDeferred
async def test_log_reader_joins_partial_lines_and_filters():
    directory = tempfile.mkdtemp(prefix="rt-log-")
    path = os.path.join(directory, "log")
    with open(path, "wb") as f:
        f.write(line(29, "stdout", "F", "one"))
        f.write(line(30, "stdout", "P", "tw"))
        f.write(line(31, "stderr", "F", "err"))
        f.write(line(32, "stdout", "F", "o"))
        f.write(line(33, "stdout", "F", ""))
        f.write(line(34, "stdout", "P", "no newline yet"))
        f.write(b"2026-11-30T10:34:35.000000001+00:00 stdout F being writ")  # not whole yet
    try:
        reader = LogReader(reactor(), path)
        entries = await within(reader.read())
        assert [tuple(e) for e in entries] == [
            (T0_NS, "stdout", b"one\n"),
            (T0_NS + 2 * 10**9, "stderr", b"err\n"),
            (T0_NS + 10**9, "stdout", b"two\n"),  # stamped when the line began
            (T0_NS + 4 * 10**9, "stdout", b"\n"),
            (T0_NS + 5 * 10**9, "stdout", b"no newline yet"),
        ]
        whole = os.path.getsize(path) - len(b"2026-11-30T10:34:35.000000001+00:00 stdout F being writ")
        assert reader.position == whole
        ts, stream, data = entries[0]
        assert isinstance(entries[0], LogEntry) and entries[0].stream == "stdout"
        # tail counts entries; the pieces of a partial line come along.
        assert [e.data for e in await reader.read(tail=3)] == [b"two\n", b"\n", b"no newline yet"]
        assert [e.data for e in await reader.read(tail=4)] == [b"err\n", b"two\n", b"\n", b"no newline yet"]
        assert [e.data for e in await reader.read(tail=2)] == [b"\n", b"no newline yet"]
        assert [e.data for e in await reader.read(tail=1)] == [b"no newline yet"]
        assert await reader.read(tail=0) == []
        assert len(await reader.read(tail=100)) == 5
        since = await reader.read(since=T0_NS + 2 * 10**9, until=T0_NS + 4 * 10**9)
        assert [e.data for e in since] == [b"err\n", b"\n"]
        assert await LogReader(reactor(), os.path.join(directory, "none")).read() == []
    finally:
        shutil.rmtree(directory)


@pytest_twisted.ensureDeferred
async def test_log_follow_delivers_appended_entries():
    directory = tempfile.mkdtemp(prefix="rt-log-")
    path = os.path.join(directory, "log")
    with open(path, "wb") as f:
        f.write(line(29, "stdout", "F", "old"))
    got = []
    waiting = []

    def received(entry):
        got.append(entry)
        while waiting and len(got) >= waiting[0][0]:
            waiting.pop(0)[1].callback(None)

    def until_count(n):
        d = defer.Deferred()
        if len(got) >= n:
            d.callback(None)
        else:
            waiting.append((n, d))
        return within(d)

    try:
        reader = LogReader(reactor(), path)
        assert [e.data for e in await reader.read()] == [b"old\n"]
        follower = reader.follow(received)
        with open(path, "ab") as f:
            f.write(line(30, "stdout", "F", "new"))
            f.flush()
            await until_count(1)
            f.write(line(31, "stderr", "P", "hal"))
            f.write(line(32, "stderr", "F", "ves"))
            f.write(b"2026-11-30T10:34:33.000000001+00:00 stdout P unfin")
            f.flush()
            await until_count(2)
            f.write(b"ished\n")
        await within(follower.stop())
        assert [(e.stream, e.data) for e in got] == [
            ("stdout", b"new\n"),
            ("stderr", b"halves\n"),
            ("stdout", b"unfinished"),
        ]
        assert follower.done.called
    finally:
        shutil.rmtree(directory)


# -- containers -----------------------------------------------------------------


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_exit_code_and_log(env):
    pid = await env.create("exit7", ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert pid > 0
    state = await env.runtime.state("exit7")
    assert state["status"] == "created" and state["pid"] == pid
    assert Runtime.container_pid(env.bundle("exit7")) == pid
    conmon = Runtime.conmon_pid(env.bundle("exit7"))
    assert conmon and proc_state(conmon)[2] == "conmon"
    exited = env.watcher.wait("exit7")
    await env.runtime.start("exit7")
    assert await within(exited) == 7
    assert Runtime.exit_code(env.exits, "exit7") == 7
    assert (await env.runtime.state("exit7"))["status"] == "stopped"
    assert not Runtime.oom_killed(env.bundle("exit7"))
    with open(env.log_path("exit7"), "rb") as f:
        raw = f.read().splitlines()
    assert sorted(l.split(b" ", 1)[1] for l in raw) == [b"stderr F err", b"stdout F out"]
    entries = await LogReader(reactor(), env.log_path("exit7")).read()
    assert sorted((e.stream, e.data) for e in entries) == [("stderr", b"err\n"), ("stdout", b"out\n")]
    await env.runtime.delete("exit7")
    assert await env.runtime.state("exit7") is None


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_states_pause_resume_ps_kill(env):
    pid = await env.create("sleeper", ["sleep", "1000"])
    await env.runtime.start("sleeper")
    state = await env.runtime.state("sleeper")
    assert state["status"] == "running" and state["pid"] == pid
    assert await env.runtime.ps("sleeper") == [pid]
    await env.runtime.pause("sleeper")
    assert (await env.runtime.state("sleeper"))["status"] == "paused"
    with pytest.raises(Conflict):
        await env.runtime.pause("sleeper")
    await env.runtime.resume("sleeper")
    assert (await env.runtime.state("sleeper"))["status"] == "running"
    with pytest.raises(Conflict):
        await env.runtime.resume("sleeper")
    with pytest.raises(Conflict):
        await env.runtime.delete("sleeper")  # running, not forced
    exited = env.watcher.wait("sleeper")
    await env.runtime.kill("sleeper", "KILL")
    assert await within(exited) == 137
    assert (await env.runtime.state("sleeper"))["status"] == "stopped"
    with pytest.raises(Conflict):
        await env.runtime.kill("sleeper", signal.SIGKILL)
    await env.runtime.delete("sleeper")
    assert await env.runtime.state("sleeper") is None
    with pytest.raises(NotFound):
        await env.runtime.start("sleeper")
    with pytest.raises(NotFound):
        await env.runtime.delete("sleeper")


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_sigterm(env):
    # Process 1 of a PID namespace ignores SIGTERM without a handler (a bare
    # sleep), so the signal is shown on a container sharing the host's.
    await env.create("term", ["sleep", "1000"], pid_namespace=False)
    exited = env.watcher.wait("term")
    await env.runtime.start("term")
    await env.runtime.kill("term", signal.SIGTERM)
    assert await within(exited) == 143
    # A handler makes process 1 of a namespace take it.
    await env.create("trap", ["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.05; done"])
    exited = env.watcher.wait("trap")
    await env.runtime.start("trap")
    await sleep(0.2)  # the shell sets its trap
    await env.runtime.kill("trap", "SIGTERM", all=False)
    assert await within(exited) == 3


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_attach_output_streams_and_stdin(env):
    await env.create("cat", ["sh", "-c", "echo hello; echo oops >&2; cat; echo done"], stdin=True)
    recorder = Recorder()
    connection = await env.runtime.attach(env.attach_socket("cat"), recorder.outputReceived)
    assert connection.connected
    exited = env.watcher.wait("cat")
    await env.runtime.start("cat")
    await recorder.until(lambda r: b"hello\n" in r.text(STDOUT) and b"oops\n" in r.text(STDERR))
    assert (STDOUT, b"hello\n") in recorder.received
    assert (STDERR, b"oops\n") in recorder.received
    connection.write(b"abc\n")
    await recorder.until(lambda r: b"abc\n" in r.text(STDOUT))
    big = b"x" * 100000 + b"\n"
    connection.write(big)
    await recorder.until(lambda r: r.text(STDOUT).count(b"x") >= len(big) - 1)
    assert not exited.called
    connection.close_stdin()  # cat sees the end of its input
    assert await within(exited) == 0
    await within(connection.closed)
    assert recorder.text(STDOUT) == b"hello\nabc\n" + big + b"done\n"
    assert recorder.text(STDERR) == b"oops\n"
    assert not connection.connected


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_attach_protocol_and_missing_socket(env):
    with pytest.raises(Conflict):
        await env.runtime.attach(env.attach_socket("nothing"), lambda s, d: None)
    from twistedock.backend.runtime import attach

    await env.create("echo", ["sh", "-c", "echo a; echo b >&2"])
    recorder = Recorder()
    connection = await attach(reactor(), env.attach_socket("echo"), recorder)
    assert recorder.connection is connection
    await env.runtime.start("echo")
    await within(recorder.lost)
    assert recorder.text(STDOUT) == b"a\n" and recorder.text(STDERR) == b"b\n"
    assert await within(env.watcher.wait("echo")) == 0


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_terminal_and_resize(env):
    await env.create("tty", ["sh", "-c", "read x; stty size; echo err >&2; echo got $x; exit 4"], terminal=True, stdin=True)
    recorder = Recorder()
    connection = await env.runtime.attach(env.attach_socket("tty"), recorder.outputReceived)
    await env.runtime.resize(env.bundle("tty"), 33, 77)
    exited = env.watcher.wait("tty")
    await env.runtime.start("tty")
    connection.write(b"hi\n")
    assert await within(exited) == 4
    await within(connection.closed)
    output = recorder.text()
    assert b"33 77\r\n" in output and b"got hi\r\n" in output and b"err\r\n" in output
    assert {stream for stream, _ in recorder.received} == {STDOUT}  # a terminal has one stream
    entries = await LogReader(reactor(), env.log_path("tty")).read()
    assert {e.stream for e in entries} == {"stdout"}
    assert b"33 77\r\n" in [e.data for e in entries]
    # conmon writes the exit file, then closes the fifo and exits.
    await conmon_gone(env.bundle("tty"))
    with pytest.raises(Conflict):
        await env.runtime.resize(env.bundle("tty"), 10, 10)


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_oom_killed(env):
    os.makedirs(env.persist)
    await env.create(
        "oom",
        ["sh", "-c", 'x=$(head -c 64000000 /dev/zero | tr "\\0" a); echo ${#x}'],
        memory=16 * 1024 * 1024,
        persist_dir=env.persist,
    )
    exited = env.watcher.wait("oom")
    await env.runtime.start("oom")
    assert await within(exited) == 137
    assert Runtime.oom_killed(env.bundle("oom"))
    assert Runtime.oom_killed("/nonexistent", persist_dir=env.persist)
    with open(os.path.join(env.persist, "exit")) as f:
        assert f.read() == "137"


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_bad_spec_fails_with_runcs_message(env):
    with pytest.raises(InternalError) as caught:
        await env.create("bad", ["no-such-binary"])
    message = str(caught.value)
    assert "executable file not found" in message and "no-such-binary" in message
    assert "level=" not in message and "time=" not in message
    # dockerd's words, through containerd's shim (scripts grep for them).
    assert message == (
        "failed to create shim task: OCI runtime create failed: runc create failed: unable to start "
        'container process: exec: "no-such-binary": executable file not found in $PATH: unknown'
    )
    assert await env.runtime.state("bad") is None


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_update_resources(env):
    pid = await env.create("upd", ["sleep", "1000"])
    await env.runtime.start("upd")
    await env.runtime.update("upd", {"pids": {"limit": 42}})
    # The container's own cgroup: cgroup v1's pids hierarchy, or v2's
    # unified one (the "0::" line).
    with open("/proc/%d/cgroup" % (pid,)) as f:
        paths = dict((l.split(":")[1], l.split(":")[2].strip()) for l in f if l.count(":") >= 2)
    candidates = []
    if "pids" in paths:
        candidates.append("/sys/fs/cgroup/pids%s/pids.max" % (paths["pids"],))
    if "" in paths:
        candidates.append("/sys/fs/cgroup%s/pids.max" % (paths[""],))
    found = [path for path in candidates if os.path.exists(path)]
    assert found, "no pids.max for the container's cgroup (%s)" % (paths,)
    with open(found[0]) as f:
        assert f.read().strip() == "42"


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_delete_created_container(env):
    await env.create("created", ["sleep", "1000"])
    exited = env.watcher.wait("created")
    await env.runtime.delete("created")
    assert await env.runtime.state("created") is None
    # conmon sees its container die and writes the code.
    assert await within(exited) == 137
    assert [c["id"] for c in await env.runtime.list_containers()] == []


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_conmon_failure_and_missing_binaries(env):
    bundle = env.make_bundle("nort", ["true"])
    broken = Runtime(reactor(), runc="/nonexistent/runc", conmon=CONMON, state_root=env.runtime.state_root)
    with pytest.raises(InternalError) as caught:
        await broken.create("nort", bundle, log_path=env.log_path("nort"), exit_dir=env.exits, socket_dir=env.sockets)
    assert str(caught.value) == "Runtime path /nonexistent/runc is not valid No such file or directory"
    assert zombie_children() == []
    with pytest.raises(InternalError):
        await broken.state("nort")
    no_conmon = Runtime(reactor(), runc=RUNC, conmon="/nonexistent/conmon", state_root=env.runtime.state_root)
    with pytest.raises(InternalError):
        await no_conmon.create("nort", bundle, log_path=env.log_path("nort"), exit_dir=env.exits, socket_dir=env.sockets)


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_stdin_left_open_between_attaches(env):
    await env.create("keep", ["sh", "-c", "cat; echo done"], stdin=True, leave_stdin_open=True)
    first = Recorder()
    connection = await env.runtime.attach(env.attach_socket("keep"), first.outputReceived)
    exited = env.watcher.wait("keep")
    await env.runtime.start("keep")
    connection.write(b"one\n")
    await first.until(lambda r: r.text() == b"one\n")
    connection.close()  # detach: with --leave-stdin-open, cat goes on
    await within(connection.closed)
    second = Recorder()
    connection = await env.runtime.attach(env.attach_socket("keep"), second.outputReceived)
    connection.write(b"two\n")
    await second.until(lambda r: r.text() == b"two\n")
    assert not exited.called
    await env.runtime.kill("keep", signal.SIGKILL)
    assert await within(exited) == 137


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_follow_a_running_container_and_log_kept_across_runs(env):
    args = ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.05; done; printf end"]
    await env.create("follow", args)
    reader = LogReader(reactor(), env.log_path("follow"))
    assert await reader.read() == []
    got = []
    follower = reader.follow(got.append)
    exited = env.watcher.wait("follow")
    await env.runtime.start("follow")
    assert await within(exited) == 0
    await within(follower.stop())
    assert [(e.stream, e.data) for e in got] == [
        ("stdout", b"1\n"),
        ("stdout", b"2\n"),
        ("stdout", b"3\n"),
        ("stdout", b"end"),  # conmon's P line, never completed
    ]
    # A second run under a new conmon appends to the same log.
    await env.runtime.delete("follow")
    os.unlink(os.path.join(env.exits, "follow"))
    await within(
        defer.ensureDeferred(
            env.runtime.create(
                "follow",
                env.bundle("follow"),
                log_path=env.log_path("follow"),
                exit_dir=env.exits,
                socket_dir=env.sockets,
            )
        )
    )
    CONMON_PIDS.append(Runtime.conmon_pid(env.bundle("follow")))
    exited = env.watcher.wait("follow")
    await env.runtime.start("follow")
    assert await within(exited) == 0
    entries = await LogReader(reactor(), env.log_path("follow")).read()
    assert b"".join(e.data for e in entries) == b"1\n2\n3\nend1\n2\n3\nend"


@pytest_twisted.ensureDeferred
async def test_follow_goes_on_in_the_file_read_first_across_a_rotation(tmp_path):
    """A log read to its end by LogChunks, then rotated (moved to .1, conmon
    writing its last lines there before it reopens a new file) before the
    follower watches: the follower, handed the open file, reads the rest of
    the old one, then the new one; nothing is lost or read twice."""
    from twistedock.backend.runtime import LogChunks, LogFollower

    path = str(tmp_path / "c-json.log")

    def line(n):
        return b"2026-12-06T10:00:%02d.000000000+00:00 stdout F line-%d\n" % (n, n)

    with open(path, "wb") as f:
        f.write(line(0) + line(1))
    chunks = LogChunks(path)
    entries, at_end = chunks.read()
    assert [e.data for e in entries] == [b"line-0\n", b"line-1\n"] and at_end
    os.rename(path, path + ".1")
    with open(path + ".1", "ab") as f:
        f.write(line(2))
    with open(path, "wb") as f:
        f.write(line(3))
    got = []
    follower = LogFollower(reactor(), path, got.append, chunks.offset, file=chunks.detach())
    follower.start()
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        await sleep(0.05)
    with open(path, "ab") as f:
        f.write(line(4))
    while len(got) < 3 and time.monotonic() < deadline:
        await sleep(0.05)
    await within(follower.stop())
    assert [e.data for e in got] == [b"line-2\n", b"line-3\n", b"line-4\n"]
    # Read from the start, the rotated file first, once.
    again = LogChunks(path)
    data = []
    while True:
        entries, at_end = again.read()
        data += [e.data for e in entries]
        if at_end:
            break
    again.close()
    assert data == [b"line-%d\n" % n for n in range(5)]


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_create_stopped_leaves_a_stopped_container_with_its_cgroups(env):
    """Ahead of a restore over CRIU's RPC: runc's state of a container that
    never ran, its cgroups (limits set) kept, its init killed and gone."""
    from twistedock.backend.runtime.criudriver import restorable_state

    bundle = env.make_bundle("prepared", ["sleep", "1000"], memory=32 * 1024 * 1024)
    env.ids.append("prepared")
    await within(defer.ensureDeferred(env.runtime.create_stopped("prepared", bundle)))
    assert (await env.runtime.state("prepared"))["status"] == "stopped"
    kept = restorable_state(env.runtime.state_root, "prepared")
    assert kept is not None and kept["config"]["rootfs"] == os.path.join(bundle, "rootfs")
    assert not os.path.exists(os.path.join(env.runtime.state_root, "prepared", "exec.fifo"))
    assert (proc_state(kept["init_process_pid"]) or ("Z",))[0] == "Z"
    memory = kept["cgroup_paths"].get("memory")
    if memory and os.path.exists(os.path.join(memory, "memory.limit_in_bytes")):
        with open(os.path.join(memory, "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 32 * 1024 * 1024
    assert all(os.path.isdir(path) for path in kept["cgroup_paths"].values() if path)
    assert sorted(os.listdir(bundle)) == ["config.json", "rootfs"]
    # Again: runc refuses (the ID is taken) and what was there stays.
    with pytest.raises(InternalError):
        await within(defer.ensureDeferred(env.runtime.create_stopped("prepared", bundle)))
    # runc delete takes the cgroups with it.
    await env.runtime.delete("prepared", force=True)
    assert await env.runtime.state("prepared") is None
    assert not any(os.path.exists(path) for path in kept["cgroup_paths"].values() if path)


@needs_runtime
@pytest_twisted.ensureDeferred
async def test_create_stopped_that_fails_leaves_nothing(env):
    bundle = env.make_bundle("unpreparable", ["sleep", "1000"])
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["mounts"].append({"destination": "/x", "type": "bind", "source": "/nonexistent/x", "options": ["bind"]})
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    with pytest.raises(InternalError, match="nonexistent"):
        await within(defer.ensureDeferred(env.runtime.create_stopped("unpreparable", bundle)))
    assert await env.runtime.state("unpreparable") is None
    assert sorted(os.listdir(bundle)) == ["config.json", "rootfs"]
