"""
Lazy-pages checkpoints in process: the page-server requests watched for the
client's final flush, the fs.pipe-max-size sysctl, the create body's
LazyPages, a restore plan with a page source, and the guard process that
holds CRIU's connection (run for real against a stand-in page server and a
stand-in CRIU it must kill, or spare).
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
import pytest_twisted

from twistedock.backend.checkpoints import RestorePlan
from twistedock.backend.lazypages import guard, sysctl
from twistedock.backend.lazypages.dump import GUARD_COMMAND, LazyDump, child_pids
from twistedock.backend.lazypages.protocol import IOV, PS_IOV_FLUSH, PS_IOV_GET, RequestWatcher
from twistedock.backend.runtime.criudriver import in_netns
from twistedock.routers.checkpoint import decode_create_options

from .test_criurpc import namespace  # noqa: F401  (the fixture)


def request(command, pages=1, address=0x1000):
    return IOV.pack(command, pages, address, 1)


# -- the protocol ---------------------------------------------------------------


def test_watcher_sees_the_flush_in_any_pieces():
    watcher = RequestWatcher()
    stream = request(PS_IOV_GET) * 3 + request(PS_IOV_FLUSH, 0, 0)
    for i in range(0, len(stream), 7):
        watcher.feed(stream[i:i + 7])
        if i + 7 < len(stream):
            assert not watcher.complete
    assert watcher.complete and watcher.requests == 3


def test_watcher_without_flush_is_incomplete():
    watcher = RequestWatcher()
    watcher.feed(request(PS_IOV_GET) + request(PS_IOV_FLUSH)[:10])
    assert not watcher.complete and watcher.requests == 1


# -- the sysctl -----------------------------------------------------------------


def test_pipe_max_size_raised_only_when_low(tmp_path):
    path = tmp_path / "pipe-max-size"
    path.write_text("1048576\n")
    assert "lazy-pages checkpoints need 4194304" in sysctl.problem(str(path))
    assert sysctl.raise_limit(str(path)) == "fs.pipe-max-size raised from 1048576 to 4194304"
    assert int(path.read_text()) == sysctl.NEEDED and sysctl.problem(str(path)) == ""
    path.write_text("8388608\n")
    assert sysctl.raise_limit(str(path)) == "fs.pipe-max-size is 8388608"
    assert int(path.read_text()) == 8388608


def test_pipe_max_size_unwritable(tmp_path):
    missing = str(tmp_path / "nope" / "pipe-max-size")
    assert sysctl.raise_limit(missing).startswith("cannot raise fs.pipe-max-size")
    assert sysctl.problem(missing) == ""


# -- the API ----------------------------------------------------------------------


def test_create_body_lazy_pages():
    assert decode_create_options(b'{"CheckpointID":"a","Exit":true,"LazyPages":true}') == {
        "CheckpointID": "a", "CheckpointDir": "", "Exit": True, "LazyPages": True,
    }
    assert "LazyPages" not in decode_create_options(b'{"CheckpointID":"a"}')


def test_restore_plan_with_a_page_source_restores_lazily():
    class Pages:
        pass

    plan = RestorePlan("/cp", "/criu", ["--tcp-established"], {"LazyPages": True}, pages=Pages())
    assert plan.create_arguments()["restore_options"] == ["--tcp-established", "--lazy-pages"]
    assert RestorePlan("/cp", "/criu", ["--file-locks"]).create_arguments()["restore_options"] == ["--file-locks"]


@pytest_twisted.ensureDeferred
async def test_page_fetch_spawns_criu_lazy_pages_with_no_working_directory(tmp_path):
    """C{criu lazy-pages} goes into its --work-dir itself: spawned through
    the daemon's spawner (a child given a working directory would be a
    fork of the whole daemon), ready once it writes its status fd, killed
    by an abort."""
    from twisted.internet import reactor

    from twistedock.backend.lazypages.restore import STATUS_FD, PageFetch

    class Stream:
        lost = False

        def __init__(self):
            from twisted.internet.defer import Deferred

            self.closed = Deferred()

        def close(self):
            if not self.closed.called:
                self.closed.callback(None)

    class Transport:
        pid = None
        signals = []

        def closeStdin(self):
            pass

        def signalProcess(self, name):
            self.signals.append(name)

    spawned = []

    async def spawn_process(protocol, executable, argv, env, child_fds):
        spawned.append((executable, argv, child_fds))
        protocol.makeConnection(Transport())
        reactor.callLater(0, protocol.childDataReceived, STATUS_FD, b"\0")

    work = tmp_path / "bundle"
    work.mkdir()
    (work / "lazy-pages.socket").write_bytes(b"")
    fetch = PageFetch(reactor, Stream(), None, spawn_process)
    await fetch.start("/opt/criu", str(tmp_path), str(work))
    try:
        [(executable, argv, child_fds)] = spawned
        assert executable == "/opt/criu" and argv[:2] == ["/opt/criu", "lazy-pages"]
        assert argv[argv.index("--work-dir") + 1] == str(work)
        assert argv[argv.index("--images-dir") + 1] == str(tmp_path)
        assert child_fds == {0: "w", 1: "r", 2: "r", STATUS_FD: "r"}
        # (A socket left by an earlier restore would be CRIU's to trip on.)
        assert not (work / "lazy-pages.socket").exists()
    finally:
        fetch.abort()
    assert Transport.signals == [signal.SIGKILL]


def test_lazy_dump_argv():
    argv = LazyDump.argv("runc", "/state", "/criu", "ID", "/img", "/work", 4321, ["--file-locks"])
    assert argv == ["runc", "--root", "/state", "--criu", "/criu", "checkpoint", "--image-path", "/img",
                    "--work-path", "/work", "--lazy-pages", "--page-server", "127.0.0.1:4321", "--status-fd",
                    "3", "--file-locks", "ID"]


# -- the guard ----------------------------------------------------------------------


class StandIn:
    """A stand-in runc (a sleeping parent) whose child, a stand-in CRIU, is
    what the guard kills; and a page server on loopback that answers each
    request with a page."""

    def __init__(self, netns=None):
        self.runc = subprocess.Popen([sys.executable, "-c",
                                      "import subprocess,sys,time; p=subprocess.Popen(['sleep','60']); "
                                      "time.sleep(60)"])
        deadline = time.monotonic() + 10
        while not child_pids(self.runc.pid):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        self.criu = child_pids(self.runc.pid)[0]
        # (With C{netns}: on that namespace's loopback, as CRIU's page
        # server dumping from inside a container's.)
        self.server = in_netns(netns, self._listener) if netns else self._listener()
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _listener():
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        return server

    def _serve(self):
        connection, _ = self.server.accept()
        buffered = b""
        while True:
            data = connection.recv(4096)
            if not data:
                break
            buffered += data
            while len(buffered) >= IOV.size:
                command = struct.unpack_from("<I", buffered)[0]
                buffered = buffered[IOV.size:]
                if command == PS_IOV_GET:
                    connection.sendall(b"P" * 4096)
        connection.close()

    def criu_alive(self):
        try:
            with open("/proc/%d/stat" % (self.criu,)) as f:
                return f.read().split()[2] != "Z"
        except OSError:
            return False

    def close(self):
        try:
            os.kill(self.criu, signal.SIGKILL)
        except OSError:
            pass
        self.runc.kill()
        self.runc.wait()
        self.server.close()


def run_guard(tmp_path, stand_in, timeout=30, itself=False, netns=None, wait=True):
    """The guard; C{itself}: told CRIU's own pid (a dump over the RPC);
    C{netns}: the network namespace where CRIU's page server listens."""
    path = str(tmp_path / "g" / "guard.sock")
    os.makedirs(os.path.dirname(path))
    pid = stand_in.criu if itself else stand_in.runc.pid
    proc = subprocess.Popen(list(GUARD_COMMAND) + [path, str(stand_in.port), str(pid), str(timeout)]
                            + (["criu"] if itself else []) + (["--net=" + netns] if netns else []),
                            stdout=subprocess.PIPE)
    if wait:
        # It says when it listens (the daemon waits for that to connect).
        assert proc.stdout.readline() == b"listening\n"
        assert os.path.exists(path)
    return proc, path


def fetch_all(path):
    """A client that gets a page, then says it has them all."""
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    client.sendall(request(PS_IOV_GET))
    assert len(client.recv(8192)) > 0
    client.sendall(request(PS_IOV_FLUSH, 0, 0))
    time.sleep(0.2)
    client.close()


def test_guard_spares_criu_after_the_flush(tmp_path):
    stand_in = StandIn()
    try:
        proc, path = run_guard(tmp_path, stand_in)
        fetch_all(path)
        assert proc.wait(10) == 0
        assert stand_in.criu_alive()
        assert not os.path.exists(os.path.dirname(path))
    finally:
        stand_in.close()


def _wait_killed(stand_in) -> None:
    """Until the stand-in CRIU is dead (5 s at most)."""
    deadline = time.monotonic() + 5
    while stand_in.criu_alive():
        assert time.monotonic() < deadline, "CRIU was not killed"
        time.sleep(0.02)


@pytest.mark.parametrize("itself", [False, True])
def test_guard_kills_criu_when_the_client_goes_early(tmp_path, itself):
    # itself: over CRIU's RPC, the dump runs in the criu swrk process (that
    # pid, not a child of runc's).
    stand_in = StandIn()
    try:
        proc, path = run_guard(tmp_path, stand_in, itself=itself)
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.sendall(request(PS_IOV_GET))
        client.recv(8192)
        client.close()
        assert proc.wait(10) == 1
        _wait_killed(stand_in)
        if itself:
            assert stand_in.runc.poll() is None
    finally:
        stand_in.close()


def test_guard_kills_criu_when_no_client_comes(tmp_path):
    stand_in = StandIn()
    try:
        proc, path = run_guard(tmp_path, stand_in, timeout=0.5)
        assert proc.wait(10) == 1
        _wait_killed(stand_in)
    finally:
        stand_in.close()


def test_guard_reaches_the_page_server_in_the_container_s_namespace(tmp_path, namespace):  # noqa: F811
    """CRIU dumped from inside the container's network namespace: its page
    server listens on that loopback, which the guard joins to connect."""
    path, lo_up = namespace
    lo_up()
    stand_in = StandIn(netns=path)
    try:
        proc, socket_path = run_guard(tmp_path, stand_in, itself=True, netns=path)
        fetch_all(socket_path)
        assert proc.wait(10) == 0
        assert stand_in.criu_alive()
    finally:
        stand_in.close()


def test_guard_kills_criu_when_it_cannot_join_the_namespace(tmp_path):
    stand_in = StandIn()
    try:
        proc, _ = run_guard(tmp_path, stand_in, itself=True, netns=str(tmp_path / "no-such-netns"), wait=False)
        assert proc.wait(10) == 1
        _wait_killed(stand_in)
    finally:
        stand_in.close()


def test_guard_module_constants_match_the_protocol():
    assert guard.IOV_SIZE == IOV.size
    assert PS_IOV_FLUSH in guard.FLUSH_COMMANDS
