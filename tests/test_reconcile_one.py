"""
The records and the host made to agree after a runtime call fails (runc
create, start, kill, delete, pause, resume, update, a checkpoint's dump, an
exec's conmon), in process over the fake runtime: whatever the call left
(a runc container, a conmon, a mount, a bundle, a frozen or vanished
process) is brought into line with the record, and the record with what
runs.
"""

import os

import pytest
from twisted.internet.defer import ensureDeferred

from twistedock.backend.containers import stop as stop_module
from twistedock.backend.containers.reconcile import STARTING_MARK
from twistedock.backend.runtime.runc import runc_error
from twistedock.errors import Conflict, InternalError

from .fake_runtime import FakeProcess, World, failure_of, run
from .memory import result_of


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def leftovers(world, ident):
    """What a container that does not run must not keep on the host."""
    c = world.backend.by_id(ident)
    found = []
    if world.runtime.status(ident) is not None:
        found.append("runc container (%s)" % world.runtime.status(ident))
    if world.backend.overlay(c)["MergedDir"] in world.mounts.mounted:
        found.append("overlay mount")
    if os.path.exists(world.backend.bundle(c)):
        found.append("bundle")
    if os.path.exists(c.path_of(STARTING_MARK)):
        found.append("starting mark")
    return found


# -- a start that fails --------------------------------------------------------


def test_a_failed_runc_start_leaves_no_runc_container_mount_or_bundle(world):
    ident = world.create("web")
    world.runtime.failures["start"] = runc_error("exec: permission denied")

    # ... and the delete after it fails too: runc keeps the created
    # container (a runc init waiting) until the reconcile deletes it.
    real_delete = world.runtime.delete
    attempts = []

    async def delete(container_id, force=False):
        attempts.append(container_id)
        if len(attempts) == 1:
            world.runtime.calls.append((world.clock.seconds(), "delete", container_id, force))
            raise runc_error("unable to signal init: resource temporarily unavailable")
        return await real_delete(container_id, force)

    world.runtime.delete = delete
    error = failure_of(world.backend.start("web"))
    assert "permission denied" in error.message
    assert leftovers(world, ident) == []
    assert len(attempts) == 2
    # Its conmon was killed before runc was asked again.
    bundle = world.backend.bundle(world.backend.get("web"))
    assert any(call[1:] == ("kill_conmon", bundle) for call in world.runtime.calls)
    assert world.state("web")["Status"] == "created"
    # It starts as any container once the runtime works.
    del world.runtime.delete
    run(world.backend.start("web"))
    assert world.state("web")["Status"] == "running"


def test_a_failed_runc_create_leaves_nothing(world):
    ident = world.create("web")
    world.runtime.failures["create"] = runc_error("error during container init: hook failed")
    failure_of(world.backend.start("web"))
    assert leftovers(world, ident) == []
    assert world.state("web")["ExitCode"] == 128


# -- a signal that fails ---------------------------------------------------------


def test_a_failed_kill_of_a_process_gone_unreported_marks_it_exited(world):
    ident = world.started("web")
    world.runtime.die_unreported(ident)  # runc: stopped; no conmon, no exit file
    run(world.backend.kill("web", "SIGKILL"))
    state = world.state("web")
    assert (state["Status"], state["ExitCode"], state["Pid"]) == ("exited", 255, 0)
    assert world.runtime.status(ident) is None
    assert world.mounts.mounted == set()
    assert world.actions(ident)[-2:] == ["die:255", "kill:9"]
    # Recorded: a restart of the daemon agrees.
    assert world.restarted().state("web")["Status"] == "exited"


def test_a_stop_of_a_process_gone_unreported_does_not_wait_for_ever(world):
    ident = world.started("web")
    world.runtime.die_unreported(ident)
    run(world.backend.stop("web", None, 10))
    assert world.state("web")["Status"] == "exited"


def test_a_kill_whose_exit_nobody_reports_is_settled_after_a_while(world):
    """runc kill works but the container's conmon is gone: no exit file
    will come; the SIGKILL's end is found after KILL_EXIT_TIMEOUT."""
    ident = world.started("web")
    world.runtime.lose_conmon(ident)
    killed = ensureDeferred(world.backend.kill("web", "SIGKILL"))
    world.settle()
    assert not killed.called
    world.clock.advance(stop_module.KILL_EXIT_TIMEOUT)
    result_of(killed)
    state = world.state("web")
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    assert world.runtime.status(ident) is None


def test_rm_f_of_a_container_whose_conmon_died_removes_it(world):
    ident = world.started("web")
    world.runtime.lose_conmon(ident)
    removed = ensureDeferred(world.backend.remove("web", True, False))
    world.settle()
    world.clock.advance(stop_module.KILL_EXIT_TIMEOUT)
    result_of(removed)
    assert world.runtime.status(ident) is None
    assert ident not in world.backend.containers


def test_a_kill_that_does_not_kill_is_an_error(world):
    """dockerd's answer when no exit follows a SIGKILL; the container is
    still running, and says so."""
    ident = world.started("web")
    world.runtime.deadly = {}  # (a process in D state)
    killed = ensureDeferred(world.backend.kill("web", "SIGKILL"))
    world.clock.advance(stop_module.KILL_EXIT_TIMEOUT)
    error = failure_of(killed)
    assert isinstance(error, InternalError)
    assert error.message == "tried to kill container, but did not receive an exit event"
    assert world.state("web")["Status"] == "running"
    assert world.runtime.status(ident) == "running"


def test_a_runaway_process_whose_conmon_died_is_ended_when_a_kill_fails(world):
    """runc kill fails (not for a missing process) while the container runs
    with its conmon gone: nobody would report its end; it is ended here."""
    ident = world.started("web")
    world.runtime.lose_conmon(ident)
    world.runtime.failures["kill"] = runc_error("signal: operation not permitted")
    error = failure_of(world.backend.kill("web", "SIGTERM"))
    assert "operation not permitted" in error.message
    state = world.state("web")
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    assert world.runtime.status(ident) is None


# -- pause and unpause that fail -------------------------------------------------


def freeze_then_fail(world, name, status):
    """C{runc NAME} does its work, then reports a failure."""

    async def act(container_id):
        world.runtime.calls.append((world.clock.seconds(), name, container_id))
        world.runtime.processes[container_id].status = status
        raise runc_error("failed to %s: cgroup: device or resource busy" % (name,))

    setattr(world.runtime, name, act)


def test_a_failed_pause_that_froze_the_process_thaws_it(world):
    ident = world.started("web")
    freeze_then_fail(world, "pause", "paused")
    error = failure_of(world.backend.pause("web"))
    assert "resource busy" in error.message
    assert world.state("web")["Status"] == "running"
    assert world.runtime.status(ident) == "running"
    assert world.runtime.called("resume") == [(ident,)]


def test_a_failed_unpause_that_thawed_the_process_freezes_it_again(world):
    ident = world.started("web")
    run(world.backend.pause("web"))
    freeze_then_fail(world, "resume", "running")
    failure_of(world.backend.unpause("web"))
    assert world.state("web")["Status"] == "paused"
    assert world.runtime.status(ident) == "paused"


def test_when_the_undo_fails_too_the_record_takes_runcs_view(world):
    ident = world.started("web")
    freeze_then_fail(world, "pause", "paused")
    world.runtime.failures["resume"] = runc_error("failed to thaw")
    failure_of(world.backend.pause("web"))
    assert world.runtime.status(ident) == "paused"
    assert world.state("web")["Status"] == "paused"
    assert world.restarted(live_restore=True).state("web")["Status"] == "paused"


def test_a_failed_pause_of_a_process_gone_unreported_marks_it_exited(world):
    ident = world.started("web")
    world.runtime.die_unreported(ident)
    error = failure_of(world.backend.pause("web"))
    assert isinstance(error, Conflict)
    assert world.state("web")["Status"] == "exited"
    assert world.runtime.status(ident) is None


def test_a_failed_update_of_a_process_gone_unreported_marks_it_exited(world):
    ident = world.started("web")
    world.runtime.vanish(ident)  # runc forgot it; no exit file
    world.runtime.failures["update"] = runc_error("container does not exist")
    failure_of(world.backend.update("web", {"CpuShares": 512}))
    assert world.state("web")["Status"] == "exited"
    assert world.backend.get("web").host_config.get("CpuShares") in (None, 0)


# -- deletes that fail -----------------------------------------------------------


def test_a_run_whose_runc_delete_failed_is_deleted_again(world):
    ident = world.started("web")
    world.runtime.failures["delete"] = runc_error("unable to destroy container: device or resource busy")
    world.runtime.exit(ident, 3)
    world.settle()
    assert world.state("web")["ExitCode"] == 3
    assert world.runtime.status(ident) is None
    assert [call for call in world.runtime.called("delete")] == [(ident, True), (ident, True)]


def test_rm_f_that_cannot_delete_leaves_runc_and_the_record_agreeing(world):
    ident = world.started("web")
    world.runtime.exit(ident, 0)
    world.settle()
    # What a run's end left (its runc delete failed then), stopped.
    c = world.backend.get("web")
    world.runtime.processes[ident] = FakeProcess(1, world.backend.bundle(c), {}, "stopped", conmon=False)
    world.runtime.failures["delete"] = runc_error("permission denied")
    error = failure_of(world.backend.remove("web", True, False))
    assert "cannot remove" in error.message
    # The answer is the error; runc was asked again meanwhile, so the
    # container is exited and runc no longer has it: a second rm -f works.
    assert world.state("web")["Status"] == "exited"
    assert world.runtime.status(ident) is None
    run(world.backend.remove("web", True, False))
    assert ident not in world.backend.containers


def test_only_a_failed_freeze_or_thaw_sets_the_freezer_right(world):
    """runc thaws a paused container to let a SIGKILL end it: a kill that
    failed then must not freeze the dying process again."""
    ident = world.started("web")
    run(world.backend.pause("web"))
    c = world.backend.get("web")
    world.runtime.processes[ident].status = "running"  # thawed by runc
    run(world.backend.reconcile_one(c, "kill"))
    assert world.runtime.called("pause") == [(ident,)]
    assert world.runtime.status(ident) == "running"
    run(world.backend.reconcile_one(c, "resume"))
    assert world.runtime.called("pause") == [(ident,), (ident,)]
    assert world.runtime.status(ident) == "paused"
