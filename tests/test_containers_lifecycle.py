"""
The container backend's lifecycle in process, over a fake runtime (see
L{tests.fake_runtime}): create, start, exit, stop with its escalation to
SIGKILL, kill, restart, pause, wait, remove, rename, update.
"""

import os
import signal

import pytest
from twisted.internet.defer import ensureDeferred
from zope.interface.verify import verifyObject

from twistedock.backend.containers import ContainerBackend
from twistedock.backend.images.store import IContainerStore
from twistedock.backend.runtime import ExitWatcher, Runtime
from twistedock.backend.runtime.interfaces import IExitWatcher, IOverlayMounts, IRuntime
from twistedock.backend.runtime.rootfs import OverlayMounts
from twistedock.backend.system import IInventory
from twistedock.errors import Conflict, InternalError, InvalidParameter, NotFound, NotModified
from twistedock.routers.container import IContainerBackend

from .fake_runtime import START, FakeMounts, FakeRuntime, World, failure_of, run


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_the_fakes_provide_what_the_real_ones_do(tmp_path, world):
    assert verifyObject(IRuntime, world.runtime)
    assert verifyObject(IRuntime, Runtime(world.clock, runc="/bin/true", conmon="/bin/true", state_root=str(tmp_path)))
    assert verifyObject(IExitWatcher, world.runtime.watcher)
    assert verifyObject(IExitWatcher, ExitWatcher(world.clock, str(tmp_path)))
    assert verifyObject(IOverlayMounts, FakeMounts())
    assert verifyObject(IOverlayMounts, OverlayMounts())
    assert verifyObject(IContainerStore, world.store)
    assert isinstance(world.backend, ContainerBackend)
    assert verifyObject(IContainerBackend, world.backend)
    assert verifyObject(IInventory, world.backend)


# -- create, start, exit ---------------------------------------------------------------


def test_create_records_the_container_and_its_image(world):
    ident = world.create("web", Cmd=["echo", "hi"], Labels={"tier": "front"})
    c = world.backend.get("web")
    assert c.id == ident and world.backend.get(ident[:6]) is c
    doc = run(world.backend.inspect("web", False, "1.41"))
    assert doc["Name"] == "/web" and doc["Image"] == world.image_id
    assert (doc["Path"], doc["Args"]) == ("echo", ["hi"])
    assert doc["State"]["Status"] == "created"
    assert doc["State"]["StartedAt"] == "0001-01-01T00:00:00Z"
    assert doc["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert doc["Config"]["Hostname"] == ident[:12]
    # The record is on disk, and the image store knows the image is used.
    assert os.path.exists(c.record_path)
    assert world.store.image_users(world.image_id) == [(ident, False)]
    assert world.actions(ident) == ["create"]
    # The image's CMD when none is given.
    world.create("plain")
    assert world.backend.get("plain").path == "sh"


def test_create_refuses_a_taken_name_and_an_unknown_image(world):
    ident = world.create("web")
    error = failure_of(world.backend.create("web", {"Image": "busybox"}, {}, None, "1.41"))
    assert isinstance(error, Conflict)
    assert str(error) == (
        'Conflict. The container name "/web" is already in use by container "%s". '
        "You have to remove (or rename) that container to be able to reuse that name." % (ident,)
    )
    error = failure_of(world.backend.create("", {"Image": "nothere"}, {}, None, "1.41"))
    assert isinstance(error, NotFound) and str(error) == "No such image: nothere:latest"
    error = failure_of(world.backend.create("", {}, {}, None, "1.41"))
    assert isinstance(error, InvalidParameter) and str(error) == "No image was specified"


def test_start_mounts_creates_and_starts_then_an_exit_is_recorded(world):
    ident = world.create("web", Cmd=["true"])
    world.clock.advance(5)
    run(world.backend.start("web"))
    c = world.backend.get("web")
    merged = world.backend.overlay(c)["MergedDir"]
    assert merged in world.mounts.mounted
    # The init layer (dockerd's /.dockerenv, /etc/mtab…) above the image's layers.
    assert world.mounts.calls[0][1] == world.images.get("busybox").layer_dirs + [world.backend.init_layer(c)]
    assert os.path.islink(os.path.join(world.backend.init_layer(c), "etc", "mtab"))
    assert [call[1] for call in world.runtime.calls] == ["create", "start"]
    options = world.runtime.called("create")[0][1]
    assert options["log_path"] == c.log_path and options["socket_name"] == ident[:12]
    assert os.path.exists(os.path.join(world.backend.bundle(c), "config.json"))
    state = world.state("web")
    assert state["Status"] == "running" and state["Running"] and state["Pid"] == world.runtime.processes[ident].pid
    assert state["StartedAt"] == "2023-11-14T22:13:25Z"
    assert world.store.image_users(world.image_id) == [(ident, True)]
    # Starting again: 304.
    assert isinstance(failure_of(world.backend.start("web")), NotModified)

    world.clock.advance(2.5)
    world.runtime.exit(ident, 3)
    state = world.state("web")
    assert (state["Status"], state["Running"], state["Pid"], state["ExitCode"]) == ("exited", False, 0, 3)
    assert not state["OOMKilled"]
    assert state["StartedAt"] == "2023-11-14T22:13:25Z"
    assert state["FinishedAt"] == "2023-11-14T22:13:27.5Z"
    # Wound up: runc forgot it, the rootfs is unmounted.
    assert ident not in world.runtime.processes and merged not in world.mounts.mounted
    assert world.actions(ident) == ["create", "start", "die:3"]


def test_an_oom_kill_is_reported(world):
    ident = world.started("web")
    world.runtime.exit(ident, 137, oom=True)
    state = world.state("web")
    assert state["OOMKilled"] and state["ExitCode"] == 137
    assert world.actions(ident)[-2:] == ["oom", "die:137"]
    # The next run starts clean.
    run(world.backend.start("web"))
    world.runtime.exit(ident, 0)
    assert not world.state("web")["OOMKilled"]


def test_a_start_that_fails_leaves_the_container_exited(world):
    from twistedock.errors import InternalError

    ident = world.create("web")
    world.runtime.failures["create"] = InternalError(
        'exec: "nope": executable file not found in $PATH'
    )
    error = failure_of(world.backend.start("web"))
    assert error.status == 400
    state = world.state("web")
    assert (state["Status"], state["ExitCode"]) == ("created", 127)
    assert state["Error"] == 'exec: "nope": executable file not found in $PATH'
    assert not world.mounts.mounted
    assert world.actions(ident) == ["create"]


def test_a_failed_start_of_an_autoremove_container_removes_it(world):
    from twistedock.errors import InternalError

    ident = world.create("web", host_config={"AutoRemove": True})
    world.runtime.failures["start"] = InternalError("permission denied")
    assert failure_of(world.backend.start("web")).status == 400
    assert world.backend.by_id(ident) is None
    assert world.actions(ident) == ["create", "destroy"]


def test_autoremove_removes_after_the_exit(world):
    ident = world.started("web", host_config={"AutoRemove": True})
    c = world.backend.get("web")
    world.runtime.exit(ident, 0)
    assert world.backend.by_id(ident) is None and not os.path.exists(c.directory)
    assert world.actions(ident) == ["create", "start", "die:0", "destroy"]


def test_the_image_store_sees_the_containers_through_the_store(world):
    ident = world.started("web")
    error = failure_of(world.images.delete(world.image_id, False, False))
    assert isinstance(error, Conflict)
    assert str(error) == (
        "conflict: unable to delete %s (cannot be forced) - image is being used by running container %s"
        % (world.image_id[7:19], ident[:12])
    )
    world.runtime.exit(ident, 0)
    error = failure_of(world.images.delete("busybox", False, False))
    assert isinstance(error, Conflict)
    assert str(error) == (
        'conflict: unable to remove repository reference "busybox" (must force) - container %s is using '
        "its referenced image %s" % (ident[:12], world.image_id[7:19])
    )
    run(world.backend.remove("web", False, False))
    assert run(world.images.delete("busybox", False, False))[0].untagged == "busybox:latest"


# -- stop, kill, restart ---------------------------------------------------------------


def test_stop_waits_for_the_timeout_then_kills(world):
    ident = world.started("web")
    d = ensureDeferred(world.backend.stop("web", None, 3))
    assert world.runtime.called("kill") == [(ident, signal.SIGTERM)]
    world.clock.advance(2.9)
    assert not d.called
    world.clock.advance(0.1)
    # SIGKILL once the timeout is over; the exit follows (on the same turn
    # of the clock).
    assert world.runtime.called("kill")[-1] == (ident, signal.SIGKILL)
    assert d.called and d.result is None
    state = world.state("web")
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    assert world.actions(ident) == ["create", "start", "kill:15", "kill:9", "die:137", "stop"]
    assert isinstance(failure_of(world.backend.stop("web", None, 3)), NotModified)


def test_stop_returns_when_the_process_obeys(world):
    ident = world.started("web", StopSignal="SIGUSR1", StopTimeout=30)
    d = ensureDeferred(world.backend.stop("web", None, None))
    assert world.runtime.called("kill") == [(ident, signal.SIGUSR1)]
    world.clock.advance(29)
    world.runtime.exit(ident, 0)
    assert d.called
    world.clock.advance(10)
    assert len(world.runtime.called("kill")) == 1
    assert world.actions(ident)[-3:] == ["kill:10", "die:0", "stop"]
    assert world.backend.get("web").manually_stopped


def test_stop_with_the_default_timeout_of_ten_seconds(world):
    ident = world.started("web")
    d = ensureDeferred(world.backend.stop("web", None, None))
    world.clock.advance(9.99)
    assert world.runtime.called("kill") == [(ident, signal.SIGTERM)]
    world.clock.advance(0.01)
    world.settle()
    assert d.called and world.state("web")["ExitCode"] == 137
    assert world.runtime.called("kill") == [(ident, signal.SIGTERM), (ident, signal.SIGKILL)]


def test_stop_with_a_negative_timeout_waits_for_ever(world):
    ident = world.started("web")
    d = ensureDeferred(world.backend.stop("web", "SIGINT", -1))
    world.clock.advance(3600)
    assert world.runtime.called("kill") == [(ident, signal.SIGINT)] and not d.called
    world.runtime.exit(ident, 130)
    assert d.called and world.state("web")["ExitCode"] == 130


def test_kill(world):
    ident = world.started("web")
    world.runtime.deadly[int(signal.SIGTERM)] = 143
    run(world.backend.kill("web", "SIGHUP"))
    assert world.state("web")["Running"]
    d = ensureDeferred(world.backend.kill("web", None))
    # A SIGKILL returns once the container is gone.
    assert not d.called
    world.settle()
    assert d.called and world.state("web")["ExitCode"] == 137
    assert world.actions(ident) == ["create", "start", "kill:1", "kill:9", "die:137"]
    error = failure_of(world.backend.kill("web", None))
    assert isinstance(error, Conflict)
    assert str(error) == "Cannot kill container: web: Container %s is not running" % (ident,)


def test_restart_stops_then_starts(world):
    ident = world.started("web")
    first_pid = world.state("web")["Pid"]
    world.clock.advance(60)
    d = ensureDeferred(world.backend.restart("web", None, 5))
    world.clock.advance(5)
    world.settle()
    assert d.called
    state = world.state("web")
    assert state["Running"] and state["Pid"] != first_pid
    assert state["StartedAt"] == "2023-11-14T22:14:25Z"
    assert world.actions(ident) == [
        "create", "start", "kill:15", "kill:9", "die:137", "stop", "start", "restart",
    ]
    assert not world.backend.get("web").manually_stopped
    # A stopped container is just started.
    world.runtime.exit(ident, 0)
    run(world.backend.restart("web", None, 5))
    assert world.state("web")["Running"] and world.actions(ident)[-2:] == ["start", "restart"]


# -- pause -----------------------------------------------------------------------------


def test_pause_and_unpause(world):
    ident = world.started("web")
    run(world.backend.pause("web"))
    assert world.runtime.status(ident) == "paused"
    state = world.state("web")
    assert (state["Status"], state["Running"], state["Paused"]) == ("paused", True, True)
    assert world.backend.counts() == {
        "Containers": 1, "ContainersRunning": 0, "ContainersPaused": 1, "ContainersStopped": 0,
    }
    error = failure_of(world.backend.pause("web"))
    assert isinstance(error, Conflict) and str(error) == "Container %s is already paused" % (ident,)
    error = failure_of(world.backend.start("web"))
    assert isinstance(error, Conflict) and str(error) == "cannot start a paused container, try unpause instead"
    run(world.backend.unpause("web"))
    assert world.runtime.status(ident) == "running" and world.state("web")["Status"] == "running"
    error = failure_of(world.backend.unpause("web"))
    # dockerd answers 500 here (the runtime's error, not a conflict).
    assert isinstance(error, InternalError) and str(error) == "Container %s is not paused" % (ident,)
    assert world.actions(ident) == ["create", "start", "pause", "unpause"]
    world.runtime.exit(ident, 0)
    error = failure_of(world.backend.pause("web"))
    assert isinstance(error, Conflict) and str(error) == "Container %s is not running" % (ident,)


def test_stopping_a_paused_container_thaws_it(world):
    ident = world.started("web")
    run(world.backend.pause("web"))
    d = ensureDeferred(world.backend.stop("web", None, 1))
    # The frozen process gets SIGTERM and is thawed to act on it.
    assert [call[1:] for call in world.runtime.calls[-2:]] == [("kill", ident, signal.SIGTERM), ("resume", ident)]
    world.clock.advance(1)
    world.settle()
    assert d.called
    state = world.state("web")
    assert (state["Status"], state["Paused"], state["ExitCode"]) == ("exited", False, 137)


# -- wait ------------------------------------------------------------------------------


def test_wait_conditions(world):
    ident = world.create("web")
    # not-running: a created container is not running.
    assert run(world.backend.wait("web", "not-running")) == {"StatusCode": 0, "Error": None}
    next_exit = world.backend.wait("web", "next-exit")
    removed = world.backend.wait("web", "removed")
    run(world.backend.start("web"))
    not_running = world.backend.wait("web", "not-running")
    assert not (next_exit.called or removed.called or not_running.called)
    world.runtime.exit(ident, 7)
    assert next_exit.result == {"StatusCode": 7, "Error": None}
    assert not_running.result == {"StatusCode": 7, "Error": None}
    assert not removed.called
    run(world.backend.remove("web", False, False))
    assert removed.result == {"StatusCode": 7, "Error": None}


def test_a_cancelled_wait_is_forgotten(world):
    ident = world.started("web")
    d = world.backend.wait("web", "next-exit")
    d.cancel()
    d.addErrback(lambda f: None)
    assert world.backend._exit_waiters.get(ident) == []
    world.runtime.exit(ident, 0)


# -- remove, rename, update ------------------------------------------------------------


def test_remove(world):
    ident = world.started("web")
    c = world.backend.get("web")
    error = failure_of(world.backend.remove("web", False, False))
    assert isinstance(error, Conflict)
    assert str(error) == (
        "You cannot remove a running container %s. Stop the container before attempting removal "
        "or force remove" % (ident,)
    )
    run(world.backend.pause("web"))
    error = failure_of(world.backend.remove("web", False, False))
    assert str(error) == (
        "You cannot remove a paused container %s. Unpause and then stop the container before "
        "attempting removal or force remove" % (ident,)
    )
    # Forced: SIGKILLed (and thawed), then removed.
    d = ensureDeferred(world.backend.remove("web", True, False))
    assert not d.called
    world.settle()
    assert d.called
    assert world.backend.by_id(ident) is None and "/web" not in world.backend.names
    assert not os.path.exists(c.directory) and not os.path.exists(world.backend.bundle(c))
    assert world.store.image_users(world.image_id) == []
    # dockerd thaws the container it SIGKILLs: kill, then unpause.
    assert world.actions(ident)[-4:] == ["kill:9", "unpause", "die:137", "destroy"]
    assert isinstance(failure_of(world.backend.remove("web", False, False)), NotFound)
    # The name is free again.
    world.create("web")


def test_rename(world):
    ident = world.create("web")
    other = world.create("db")
    error = failure_of(world.backend.rename("web", "db"))
    assert isinstance(error, Conflict)
    assert str(error).startswith(
        'Error when allocating new name: Conflict. The container name "/db" is already in use by container "%s".'
        % (other,)
    )
    error = failure_of(world.backend.rename("web", "web"))
    assert isinstance(error, InvalidParameter)
    assert str(error) == "Renaming a container with the same name as its current name"
    assert isinstance(failure_of(world.backend.rename("web", "")), InvalidParameter)
    run(world.backend.rename("web", "front"))
    assert world.backend.get("front").id == ident
    assert isinstance(failure_of(world.backend.inspect("web", False, "1.41")), NotFound)
    assert world.events._history[-1].actor.attributes["oldName"] == "/web"
    assert world.events._history[-1].actor.attributes["name"] == "front"
    # Kept across a restart of the daemon.
    again = world.restarted()
    assert again.backend.get("front").id == ident and "/web" not in again.backend.names


def test_update_applies_resources_to_a_running_container(world):
    ident = world.create("web")
    run(world.backend.update("web", {"CpuShares": 512, "RestartPolicy": {"Name": "always"}}))
    c = world.backend.get("web")
    assert c.host_config["CpuShares"] == 512
    assert c.host_config["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert world.runtime.called("update") == []
    run(world.backend.start("web"))
    # (dockerd refuses a memory limit above the swap already set (0) unless the swap comes too.)
    run(world.backend.update("web", {"Memory": 64 * 1024 * 1024, "MemorySwap": 128 * 1024 * 1024}))
    ((container_id, resources),) = world.runtime.called("update")
    assert container_id == ident and resources["memory"]["limit"] == 64 * 1024 * 1024
    assert world.actions(ident).count("update") == 2


def test_update_refuses_a_restart_policy_with_autoremove(world):
    world.create("web", host_config={"AutoRemove": True})
    ident = world.backend.get("web").id
    error = failure_of(world.backend.update("web", {"RestartPolicy": {"Name": "always"}}))
    # dockerd's conflictingUpdateOptions: a 409 naming the container.
    assert isinstance(error, Conflict)
    assert str(error) == (
        "Cannot update container %s: Restart policy cannot be updated because AutoRemove is "
        "enabled for the container" % (ident,)
    )


def test_now_is_the_reactor_clock(world):
    assert world.backend.now() == START * 1_000_000_000


def test_fake_runtime_refuses_what_runc_refuses(world):
    runtime = FakeRuntime(world.clock)
    assert isinstance(failure_of(runtime.kill("x", 9)), NotFound)
    run(runtime.create("x", "/b", exit_dir="/e", socket_dir="/s"))
    assert isinstance(failure_of(runtime.kill("x", 9)), Conflict)
    assert isinstance(failure_of(runtime.delete("x")), Conflict)
