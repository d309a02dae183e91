"""Kill, stop, remove, pause and restart of paused and restarting
containers, as the reference dockerd answers them: the container backend
over a fake runc that behaves as runc does (a SIGKILL thaws a frozen
container and its process dies; a resume then finds it not paused)."""

import os
import signal as signals

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from twistedock.backend.containers import Container, ContainerBackend, State
from twistedock.backend.containers import Run
from twistedock.backend.containers.store import ContainerStore
from twistedock.backend.events import EventLog
from twistedock.errors import Conflict, InternalError

from .fake_runtime import FakeMounts

CID = "c" * 64


class _Images:
    def set_usage(self, function):
        pass


class FakeRunc:
    """runc's answers for one container: its process exits on SIGKILL, and
    on SIGTERM once thawed; C{exited(code)} reports the exit to the backend."""

    def __init__(self):
        self.calls = []
        self.frozen = False
        self.alive = True
        self.exited = None

    def _die(self, code):
        self.alive = False
        self.frozen = False
        if self.exited is not None:
            self.exited(code)

    async def kill(self, container_id, signal, all=False):
        self.calls.append(("kill", int(signal)))
        if not self.alive:
            raise Conflict("container not running")
        if signal == signals.SIGKILL:
            # runc thaws a frozen cgroup for a SIGKILL.
            self._die(137)
        elif signal == signals.SIGTERM and not self.frozen:
            self._die(143)
        elif signal == signals.SIGTERM:
            self.pending = 143

    async def resume(self, container_id):
        self.calls.append(("resume",))
        if not self.frozen:
            raise Conflict("container not paused")
        self.frozen = False
        if getattr(self, "pending", None):
            self._die(self.pending)

    async def pause(self, container_id):
        self.calls.append(("pause",))
        if not self.alive:
            raise Conflict("container not running")
        self.frozen = True

    def oom_killed(self, bundle, container_id):
        return False

    async def delete(self, container_id, force=False):
        self.calls.append(("delete",))


class _Exits:
    def wait(self, container_id):
        from twisted.internet.defer import Deferred

        return Deferred()


def backend_with(tmp_path, state, policy="no", stop_signal=None):
    from twisted.internet import reactor

    runc = FakeRunc()
    backend = ContainerBackend(
        reactor,
        data_root=str(tmp_path / "root"),
        exec_root=str(tmp_path / "exec"),
        images=_Images(),
        events=EventLog(),
        runtime=runc,
        exit_watcher=_Exits(),
        log_reader_factory=lambda path: None,
        store=ContainerStore(),
        mounts=FakeMounts(),
    )
    directory = str(tmp_path / "root" / "containers" / CID)
    os.makedirs(directory)
    config = {"Image": "busybox"}
    if stop_signal:
        config["StopSignal"] = stop_signal
    c = Container(
        id=CID, name="/web", created=1, image_id="sha256:img", config=config,
        host_config={"RestartPolicy": {"Name": policy, "MaximumRetryCount": 0}}, path="sleep", args=["1000"],
        directory=directory, state=state,
    )
    backend.containers[c.id] = c
    backend.names[c.name] = c.id
    backend._runs[c.id] = Run()
    runc.frozen = state.paused
    runc.alive = state.running and not state.restarting
    runc.exited = lambda code: ensureDeferred(backend._exited(c, code))
    return backend, runc, c


def actions(backend):
    return [(e.action, e.actor.attributes.get("signal")) for e in backend.events._history]


def paused():
    return State(running=True, paused=True, pid=42, started_at=1)


def restarting():
    return State(running=True, restarting=True, exit_code=3, started_at=1, finished_at=2)


@pytest_twisted.ensureDeferred
async def test_force_remove_of_a_paused_container(tmp_path):
    backend, runc, c = backend_with(tmp_path, paused())
    with pytest.raises(Conflict) as e:
        await backend.remove("web", force=False, volumes=False)
    assert str(e.value) == (
        "You cannot remove a paused container %s. Unpause and then stop the container before "
        "attempting removal or force remove" % CID
    )
    # dockerd: 204 and it is gone (the resume after the SIGKILL fails, and
    # that is no error).
    await backend.remove("web", force=True, volumes=False)
    assert backend.containers == {} and backend.names == {}
    assert runc.calls[0] == ("kill", 9) and ("resume",) in runc.calls
    assert actions(backend) == [("kill", "9"), ("die", None), ("destroy", None)]


@pytest_twisted.ensureDeferred
async def test_kill_of_a_paused_container(tmp_path):
    backend, runc, c = backend_with(tmp_path, paused())
    await backend.kill("web", None)
    assert (c.state.status, c.state.exit_code, c.state.paused) == ("exited", 137, False)
    assert actions(backend) == [("kill", "9"), ("die", None)]


@pytest_twisted.ensureDeferred
async def test_a_signal_meant_to_end_a_paused_container_thaws_it(tmp_path):
    # No stop signal: any signal thaws (dockerd's killWithSignal).
    backend, runc, c = backend_with(tmp_path, paused())
    await backend.kill("web", "USR1")
    assert runc.calls == [("kill", 10), ("resume",)]
    assert (c.state.status, c.state.paused) == ("running", False)
    assert actions(backend) == [("kill", "10"), ("unpause", None)]
    # A stop signal of its own: only that one (or SIGKILL) thaws.
    backend, runc, c = backend_with(tmp_path / "2", paused(), stop_signal="SIGUSR2")
    await backend.kill("web", "USR1")
    assert runc.calls == [("kill", 10)]
    assert (c.state.status, c.state.paused) == ("paused", True)
    await backend.kill("web", "USR2")
    assert (c.state.status, c.state.paused) == ("running", False)
    assert actions(backend) == [("kill", "10"), ("kill", "12"), ("unpause", None)]


@pytest_twisted.ensureDeferred
async def test_stop_and_restart_of_a_paused_container(tmp_path):
    backend, runc, c = backend_with(tmp_path, paused())
    await backend.stop("web", None, 1)
    assert (c.state.status, c.state.exit_code) == ("exited", 143)
    assert actions(backend) == [("kill", "15"), ("unpause", None), ("die", None), ("stop", None)]

    backend, runc, c = backend_with(tmp_path / "2", paused())
    c.restart_count = 3
    runs = []

    async def run(container, restore=None):
        runs.append(container.id)
        container.state = State(running=True, pid=43, started_at=5)
        backend.log_event(container, "start")

    backend._run = run
    await backend.restart("web", None, 1)
    assert runs == [CID] and c.state.status == "running"
    # dockerd's restart resets the count, and says "stop" before "start".
    assert c.restart_count == 0
    assert actions(backend) == [
        ("kill", "15"), ("unpause", None), ("die", None), ("stop", None), ("start", None), ("restart", None)
    ]


@pytest_twisted.ensureDeferred
async def test_remove_of_a_restarting_container(tmp_path):
    backend, runc, c = backend_with(tmp_path, restarting(), policy="always")
    with pytest.raises(Conflict) as e:
        await backend.remove("web", force=False, volumes=False)
    assert str(e.value) == (
        "You cannot remove a restarting container %s. Stop the container before attempting "
        "removal or force remove" % CID
    )
    assert CID in backend.containers
    await backend.remove("web", force=True, volumes=False)
    assert backend.containers == {}
    assert runc.calls == [("delete",)]
    assert actions(backend) == [("destroy", None)]


@pytest_twisted.ensureDeferred
async def test_force_remove_of_a_container_whose_process_just_exited(tmp_path):
    """rm -f of an --restart always container that keeps exiting: the kill
    finds the process gone before its exit was handled."""
    backend, runc, c = backend_with(tmp_path, State(running=True, pid=42, started_at=1), policy="always")
    runc.alive = False
    reported = runc.exited
    runc.exited = None

    async def kill(container_id, signal, all=False):
        runc.calls.append(("kill", int(signal)))
        reported(0)
        raise Conflict("container not running")

    runc.kill = kill
    await backend.remove("web", force=True, volumes=False)
    assert backend.containers == {} and backend._restart_timers == {}
    assert actions(backend) == [("kill", "9"), ("die", None), ("destroy", None)]


@pytest_twisted.ensureDeferred
async def test_kill_of_a_restarting_container(tmp_path):
    backend, runc, c = backend_with(tmp_path, restarting(), policy="always")
    backend._restart_timers[CID] = timer = backend.reactor.callLater(60, lambda: None)
    await backend.kill("web", None)
    # dockerd: 204, the restart cancelled, no signal sent nor kill logged.
    assert (c.state.status, c.state.exit_code) == ("exited", 3)
    assert not timer.active() and runc.calls == [] and actions(backend) == []
    # A signal that is not meant to end it leaves it restarting.
    backend, runc, c = backend_with(tmp_path / "2", restarting(), policy="always", stop_signal="SIGUSR2")
    await backend.kill("web", "USR1")
    assert c.state.status == "restarting"


@pytest_twisted.ensureDeferred
async def test_pause_and_unpause_as_dockerd_refuses_them(tmp_path):
    backend, runc, c = backend_with(tmp_path, restarting(), policy="always")
    with pytest.raises(Conflict) as e:
        await backend.pause("web")
    assert str(e.value) == "Container %s is restarting, wait until the container is running" % CID
    # Unpause of a container that is not paused is dockerd's plain error: 500.
    with pytest.raises(InternalError) as e:
        await backend.unpause("web")
    assert str(e.value) == "Container %s is not paused" % CID
    backend, runc, c = backend_with(tmp_path / "2", paused())
    with pytest.raises(Conflict, match="^Container %s is already paused$" % CID):
        await backend.pause("web")
