"""
Recovery when the daemon starts, in process: the records on disk read
again, the containers that were running settled from what runc and conmon
say (gone, exited meanwhile, still running: re-adopted with live restore,
stopped without), then the restart policies applied.
"""

import json
import os

import pytest

from twistedock.backend.containers import CHECKPOINTED_MARK

from .fake_runtime import World, run


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def policy(name):
    return {"RestartPolicy": {"Name": name, "MaximumRetryCount": 0}}


def test_records_are_read_again(world):
    created = world.create("created", Labels={"a": "b"})
    exited = world.started("exited")
    world.runtime.exit(exited, 4)
    again = world.restarted()
    assert again.backend.get("created").id == created
    assert again.backend.get("created").config["Labels"] == {"a": "b"}
    assert again.state("created")["Status"] == "created"
    state = again.state("exited")
    assert (state["Status"], state["ExitCode"]) == ("exited", 4)
    assert state["FinishedAt"] == world.state("exited")["FinishedAt"]
    # The image store learns from the same container store.
    assert sorted(again.store.image_users(world.image_id)) == sorted([(created, False), (exited, False)])
    assert again.runtime.watcher.running


def test_a_running_container_whose_process_is_gone_is_exited(world):
    ident = world.started("web")
    merged = world.backend.overlay(world.backend.get("web"))["MergedDir"]
    world.crash()
    world.runtime.vanish(ident)
    world.clock.advance(30)
    again = world.restarted()
    state = again.state("web")
    assert (state["Status"], state["Running"], state["Pid"], state["ExitCode"]) == ("exited", False, 0, 255)
    assert state["FinishedAt"] == "2023-11-14T22:13:50Z"
    assert again.actions(ident) == ["die:255"]
    assert ("unmount", merged) in again.mounts.calls
    # Saved: a third start of the daemon sees the same.
    assert again.restarted().state("web")["ExitCode"] == 255


def test_an_exit_while_the_daemon_was_down_is_recorded(world):
    ident = world.started("web")
    world.crash()
    world.runtime.exit(ident, 3, oom=True)
    assert world.backend.get("web").state.running
    again = world.restarted()
    state = again.state("web")
    assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 3, True)
    assert ident not in again.runtime.processes


def test_live_restore_re_adopts_a_running_container(world):
    ident = world.started("web")
    paused = world.started("frozen")
    run(world.backend.pause("frozen"))
    pid = world.state("web")["Pid"]
    again = world.restarted(live_restore=True)
    state = again.state("web")
    assert (state["Status"], state["Pid"]) == ("running", pid)
    assert again.state("frozen")["Status"] == "paused"
    assert again.runtime.called("kill") == [] and again.runtime.status(ident) == "running"
    # Its exit is seen by the new daemon.
    again.runtime.exit(ident, 9)
    state = again.state("web")
    assert (state["Status"], state["ExitCode"]) == ("exited", 9)
    assert again.actions(ident)[-1] == "die:9"
    assert again.state("frozen")["Status"] == "paused" and again.runtime.status(paused) == "paused"


def test_without_live_restore_a_running_container_is_stopped(world):
    ident = world.started("web")
    kept = world.started("kept", host_config=policy("always"))
    again = world.restarted()
    assert (ident, 9) in again.runtime.called("kill")
    state = again.state("web")
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    # Its policy decides whether it runs again, as after any exit.
    assert again.state("kept")["Restarting"]
    again.clock.advance(0.1)
    assert again.state("kept")["Status"] == "running"
    assert again.runtime.status(kept) == "running"


def test_restart_policies_at_start_up(world):
    always = world.started("always", host_config=policy("always"))
    unless = world.started("unless", host_config=policy("unless-stopped"))
    on_failure = world.started("failed", host_config=policy("on-failure"))
    no = world.started("no")
    checkpointed = world.started("checkpointed", host_config=policy("always"))
    stopped_always = world.started("stopped-always", host_config=policy("always"))
    stopped_unless = world.started("stopped-unless", host_config=policy("unless-stopped"))
    for name in ("stopped-always", "stopped-unless"):
        d = run_stop(world, name)
        assert d.called
    world.crash()
    for ident in (always, unless, no, checkpointed):
        world.runtime.vanish(ident)
    world.runtime.exit(on_failure, 1)
    with open(world.backend.get("checkpointed").path_of(CHECKPOINTED_MARK), "w"):
        pass
    again = world.restarted()
    running = {name for name in again.backend.names if again.state(name)["Running"]}
    # always (even stopped by hand), unless-stopped unless stopped by hand,
    # on-failure after a failure; not a checkpointed one.
    assert running == {"/always", "/unless", "/failed", "/stopped-always"}
    # Started at once (no back-off at start-up), after their exit was recorded.
    assert again.actions(always) == ["die:255", "start"]
    assert again.actions(on_failure) == ["die:1", "start"]
    assert again.state("no")["ExitCode"] == 255
    assert again.state("checkpointed")["Status"] == "exited"
    assert again.state("stopped-unless")["Status"] == "exited"
    assert stopped_always in again.runtime.processes and stopped_unless not in again.runtime.processes


def run_stop(world, name):
    from twisted.internet.defer import ensureDeferred

    d = ensureDeferred(world.backend.stop(name, None, 0))
    world.settle()
    return d


def test_a_container_restarting_when_the_daemon_died(world):
    ident = world.started("web", host_config=policy("always"))
    world.runtime.exit(ident, 1)
    assert world.state("web")["Restarting"]
    again = world.restarted()
    state = again.state("web")
    assert (state["Status"], state["Restarting"]) == ("running", False)
    assert len(again.runtime.called("create")) == 2


def test_leftovers_of_a_create_are_removed_and_bad_records_skipped(world):
    good = world.create("good")
    root = os.path.dirname(world.backend.get("good").directory)
    half = os.path.join(root, "a" * 64)
    os.makedirs(half)
    bad = os.path.join(root, "b" * 64)
    os.makedirs(bad)
    with open(os.path.join(bad, "container.json"), "w") as f:
        json.dump({"Id": "b" * 64}, f)
    again = world.restarted()
    assert list(again.backend.containers) == [good]
    assert not os.path.exists(half)
    assert os.path.exists(bad)


def test_a_removal_in_progress_is_forgotten(world):
    world.create("web")
    c = world.backend.get("web")
    c.state.removing = True
    c.save()
    again = world.restarted()
    assert again.state("web")["Status"] == "created"


def test_a_prepared_import_never_restored_is_removed(world):
    """A migration's target made the container before the source froze
    (marked import-pending); the daemon starts again: a marked container
    that does not run is removed (its migration died before the restore;
    even a restart policy does not keep it), one that runs (restored, the
    daemon gone before it unmarked it) is kept and unmarked."""
    from twistedock.backend.containers.defaults import IMPORT_PENDING_MARK

    waiting = world.create("waiting", host_config=policy("always"))
    restored = world.started("restored")
    for name in ("waiting", "restored"):
        with open(world.backend.get(name).path_of(IMPORT_PENDING_MARK), "w"):
            pass
    again = world.restarted(live_restore=True)
    assert "/waiting" not in again.backend.names and waiting not in again.backend.containers
    assert again.state("restored")["Status"] == "running"
    assert again.backend.get("restored").id == restored
    assert not os.path.exists(again.backend.get("restored").path_of(IMPORT_PENDING_MARK))
    assert sorted(again.restarted(live_restore=True).backend.names) == ["/restored"]
