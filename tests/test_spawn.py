"""Children started from a thread (twistedock.backend.spawn): what they get
is what Twisted's spawnProcess gives them (their pipes, no other inherited
file, signals at their defaults, nothing blocked), over the real reactor."""

import os
import signal

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.testing import MemoryReactor

from twistedock.backend.runtime.processes import Collect
from twistedock.backend.spawn import Spawner

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


@pytest.fixture
def spawner():
    s = Spawner(reactor)
    assert s.usable
    yield s
    s.stop()


async def run(spawner, argv, stdin=None):
    collect = Collect(stdin)
    transport = await spawner.spawn_process(collect, argv[0], argv, ENV)
    # (None when the child had ended already: reaped as it was registered.)
    assert transport.pid is None or transport.pid > 0
    return await collect.done


@pytest_twisted.ensureDeferred
async def test_output_input_and_status(spawner):
    assert await run(spawner, ["sh", "-c", "cat; echo err >&2; exit 3"], b"in\n") == (b"in\n", b"err\n", 3)


@pytest_twisted.ensureDeferred
async def test_a_missing_executable_fails_and_leaves_no_fd(spawner):
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError) as caught:
        await spawner.spawn_process(Collect(None), "no-such-binary-here", ["no-such-binary-here"], ENV)
    assert caught.value.errno == 2
    assert set(os.listdir("/proc/self/fd")) <= before


@pytest_twisted.ensureDeferred
async def test_only_the_pipes_are_inherited(spawner):
    r, w = os.pipe()
    os.set_inheritable(w, True)  # (Twisted closes even inheritable ones)
    try:
        out, _, status = await run(spawner, ["sh", "-c", "ls /proc/$$/fd"])
    finally:
        os.close(r)
        os.close(w)
    assert status == 0
    # the shell's 0, 1, 2 (and the fd ls reads with, 3)
    assert sorted(int(fd) for fd in out.split()) in ([0, 1, 2], [0, 1, 2, 3])


@pytest_twisted.ensureDeferred
async def test_signals_as_twisteds_children_get_them(spawner):
    """Ignored and blocked signals as with reactor.spawnProcess: none but
    the two glibc keeps for itself (32 and 33), even when the daemon
    ignores one."""
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    argv = ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]
    try:
        ours, _, _ = await run(spawner, argv)
        collect = Collect(None)
        reactor.spawnProcess(collect, argv[0], argv, env=ENV)
        twisteds, _, _ = await collect.done
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert ours == twisteds
    fields = dict(line.split(":\t") for line in ours.decode().splitlines())
    assert int(fields["SigIgn"], 16) & ~0x180000000 == 0 and int(fields["SigBlk"], 16) == 0


@pytest_twisted.ensureDeferred
async def test_a_quick_child_is_reaped(spawner):
    results = [await run(spawner, ["true"]) for _ in range(20)]
    assert results == [(b"", b"", 0)] * 20


@pytest_twisted.ensureDeferred
async def test_a_cancelled_spawn_still_wires_and_reaps_its_child(spawner):
    """The caller gone (its Deferred cancelled) while the child starts: the
    child is still connected to its protocol and reaped."""
    from twisted.internet.defer import CancelledError

    collect = Collect(None)
    d = spawner.spawn_process(collect, "echo", ["echo", "still"], ENV)
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    assert await collect.done == (b"still\n", b"", 0)


@pytest_twisted.ensureDeferred
async def test_conmons_fds_pipes_and_an_inherited_socket(spawner):
    """conmon's shape: its stdin, a pipe it writes on fd 3 (its sync pipe),
    one it reads on fd 4 (its start pipe), and a socket of ours (non
    inheritable here, as the RPC restore's CRIU end) as its fd 5, and as an
    fd of the same number: nothing else inherited."""
    import socket

    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import ProcessProtocol

    class Proto(ProcessProtocol):
        def __init__(self):
            self.out, self.sync, self.done = b"", b"", Deferred()

        def connectionMade(self):
            self.transport.writeToChild(4, b"go")
            self.transport.closeChildFD(4)

        def childDataReceived(self, fd, data):
            if fd == 1:
                self.out += data
            elif fd == 3:
                self.sync += data

        def processEnded(self, reason):
            self.done.callback(reason.value.exitCode)

    ours, theirs = socket.socketpair()
    try:
        assert not theirs.get_inheritable()
        script = "read -r go <&4; echo \"$go\" >&3; echo hello >&5; ls /proc/$$/fd"
        for target in (5, theirs.fileno()):
            proto = Proto()
            fds = {0: "w", 1: "r", 2: "r", 3: "r", 4: "w", target: theirs.fileno()}
            line = script.replace("&5", "&%d" % target)
            # (bash: dash redirects single-digit fds only)
            await spawner.spawn_process(proto, "bash", ["bash", "-c", line], ENV, fds)
            assert await proto.done == 0
            assert proto.sync == b"go\n" and ours.recv(100) == b"hello\n"
            listed = {int(fd) for fd in proto.out.split()}
            # (and the fd ls reads with, if the shell exec'd it)
            assert {0, 1, 2, 3, 4, target} <= listed and len(listed - {0, 1, 2, 3, 4, target}) <= 1
    finally:
        ours.close()
        theirs.close()


def test_another_reactor_gets_its_own_spawnprocess():
    class Reactor(MemoryReactor):
        def spawnProcess(self, proto, executable, args, env, childFDs=None):
            self.spawned = (executable, args, env, childFDs)
            return "transport"

    memory = Reactor()
    s = Spawner(memory)
    assert not s.usable
    d = s.spawn_process(Collect(None), "true", ["true"], ENV)
    assert d.result == "transport" and memory.spawned == ("true", ["true"], ENV, None)


@pytest_twisted.ensureDeferred
async def test_a_child_started_in_a_working_directory(spawner, tmp_path):
    """(conmon runs in its bundle: posix_spawn's addchdir, no env -C.)"""
    if not spawner.can_chdir:
        pytest.skip("this libc has no posix_spawn_file_actions_addchdir_np")
    collect = Collect(None)
    await spawner.spawn_process(collect, "pwd", ["pwd"], ENV, path=str(tmp_path))
    out, err, code = await collect.done
    assert (out, code) == (str(tmp_path).encode() + b"\n", 0)
    # The daemon's own working directory is left as it was.
    assert os.getcwd() != str(tmp_path)


@pytest_twisted.ensureDeferred
async def test_a_missing_working_directory_is_an_error(spawner, tmp_path):
    if not spawner.can_chdir:
        pytest.skip("this libc has no posix_spawn_file_actions_addchdir_np")
    with pytest.raises(OSError):
        await spawner.spawn_process(Collect(None), "pwd", ["pwd"], ENV, path=str(tmp_path / "gone"))
