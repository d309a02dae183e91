"""
Restart policies in process, over a fake runtime on a Clock: which exits
restart (no, always, unless-stopped, on-failure:N with its retry count) and
when (dockerd's restart manager: 100 ms doubling to a minute, back to
100 ms after a run of 10 s).
"""

import pytest
from twisted.internet.defer import ensureDeferred

from twistedock.errors import Conflict, NotModified

from .fake_runtime import World, failure_of, run


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


#: A margin for the float clock (seconds since the epoch).
EPS = 1e-5


def policy(name, retries=0):
    return {"RestartPolicy": {"Name": name, "MaximumRetryCount": retries}}


def starts(world):
    """When each run was created, in seconds after the first."""
    times = [call[0] for call in world.runtime.calls if call[1] == "create"]
    return [round(t - times[0], 3) for t in times]


def restarts_after(world, delay, ref="web"):
    """The container restarts C{delay} seconds from now, not before."""
    world.clock.advance(delay - EPS)
    assert world.state(ref)["Restarting"], delay
    world.clock.advance(2 * EPS)
    assert world.state(ref)["Status"] == "running", delay


def restart_count(world, ref="web"):
    return run(world.backend.inspect(ref, False, "1.41"))["RestartCount"]


def test_no_policy_no_restart(world):
    ident = world.started("web")
    world.runtime.exit(ident, 1)
    world.clock.advance(120)
    assert starts(world) == [0] and world.state("web")["Status"] == "exited"


def test_always_restarts_with_a_doubling_delay(world):
    ident = world.started("web", host_config=policy("always"))
    for expected in (0.1, 0.2, 0.4, 0.8, 1.6):
        world.runtime.exit(ident, 0)
        state = world.state("web")
        assert (state["Status"], state["Running"], state["Restarting"]) == ("restarting", True, True)
        restarts_after(world, expected)
    assert starts(world) == [0, 0.1, 0.3, 0.7, 1.5, 3.1]
    assert restart_count(world) == 5
    assert world.actions(ident) == ["create", "start"] + ["die:0", "start"] * 5


def test_the_delay_stops_growing_at_a_minute(world):
    ident = world.started("web", host_config=policy("always"))
    delay = 0.1
    for _ in range(12):
        world.runtime.exit(ident, 1)
        restarts_after(world, delay)
        delay = min(delay * 2, 60.0)
    assert delay == 60.0
    world.runtime.exit(ident, 1)
    restarts_after(world, 60)


def test_the_delay_starts_again_after_ten_seconds_of_running(world):
    ident = world.started("web", host_config=policy("always"))
    for delay in (0.1, 0.2, 0.4):
        world.runtime.exit(ident, 1)
        restarts_after(world, delay)
    # This run lasts 10 s: the next delay is the first again.
    world.clock.advance(10)
    world.runtime.exit(ident, 1)
    restarts_after(world, 0.1)
    # A short run again: the delay doubles from there.
    world.runtime.exit(ident, 1)
    restarts_after(world, 0.2)
    # 9.9 s of running is not enough.
    world.clock.advance(9.9)
    world.runtime.exit(ident, 1)
    restarts_after(world, 0.4)


def test_on_failure_counts_its_retries(world):
    ident = world.started("web", host_config=policy("on-failure", 2))
    world.runtime.exit(ident, 1)
    restarts_after(world, 0.1)
    assert restart_count(world) == 1
    world.runtime.exit(ident, 2)
    restarts_after(world, 0.2)
    assert restart_count(world) == 2 and world.state("web")["Running"]
    world.runtime.exit(ident, 3)
    world.clock.advance(60)
    state = world.state("web")
    assert (state["Status"], state["ExitCode"], state["Restarting"]) == ("exited", 3, False)
    assert restart_count(world) == 2 and len(starts(world)) == 3


def test_on_failure_without_a_maximum_and_a_success(world):
    ident = world.started("web", host_config=policy("on-failure"))
    for delay in (0.1, 0.2, 0.4, 0.8):
        world.runtime.exit(ident, 1)
        restarts_after(world, delay)
    assert restart_count(world) == 4 and world.state("web")["Running"]
    # A clean exit is not a failure.
    world.runtime.exit(ident, 0)
    world.clock.advance(60)
    assert world.state("web")["Status"] == "exited" and len(starts(world)) == 5


def test_unless_stopped_and_always_do_not_restart_after_a_stop(world):
    for name in ("unless-stopped", "always"):
        ident = world.started(name, host_config=policy(name))
        world.runtime.exit(ident, 0)
        restarts_after(world, 0.1, name)
        d = ensureDeferred(world.backend.stop(name, None, 1))
        world.runtime.exit(ident, 0)
        assert d.called
        world.clock.advance(60)
        assert world.state(name)["Status"] == "exited"
        assert world.backend.get(name).manually_stopped


def test_on_failure_does_not_restart_a_kill(world):
    ident = world.started("web", host_config=policy("on-failure"))
    d = ensureDeferred(world.backend.kill("web", None))
    world.settle()
    assert d.called
    world.clock.advance(60)
    assert world.state("web")["ExitCode"] == 137 and world.state("web")["Status"] == "exited"
    assert ident not in world.runtime.processes


def test_a_restarting_container_stopped_stays_stopped(world):
    ident = world.started("web", host_config=policy("always"))
    world.runtime.exit(ident, 1)
    assert world.state("web")["Restarting"]
    error = failure_of(world.backend.pause("web"))
    assert isinstance(error, Conflict)
    waiter = world.backend.wait("web", "next-exit")
    run(world.backend.stop("web", None, 10))
    assert waiter.result == {"StatusCode": 1, "Error": None}
    world.clock.advance(60)
    state = world.state("web")
    assert (state["Status"], state["Running"], state["Restarting"]) == ("exited", False, False)
    assert len(starts(world)) == 1


def test_a_restarting_container_killed_stays_stopped(world):
    # dockerd: the kill is accepted (204) and ends the pending restart.
    ident = world.started("web", host_config=policy("always"))
    world.runtime.exit(ident, 1)
    run(world.backend.kill("web", None))
    world.clock.advance(60)
    state = world.state("web")
    assert (state["Status"], state["Running"], state["Restarting"]) == ("exited", False, False)
    assert len(starts(world)) == 1


def test_a_start_while_restarting_is_not_modified(world):
    # dockerd 20.10: a restarting container is Running, so its start is 304
    # and the pending restart goes on, counted.
    ident = world.started("web", host_config=policy("always"))
    world.runtime.exit(ident, 1)
    error = failure_of(world.backend.start("web"))
    assert isinstance(error, NotModified) and str(error) == "Container is already started"
    assert world.state("web")["Restarting"] and restart_count(world) == 1
    restarts_after(world, 0.1)
    assert len(starts(world)) == 2 and restart_count(world) == 1


def test_a_manual_start_counts_restarts_afresh(world):
    # dockerd's ResetRestartManager: on-failure:2 used up, then docker start:
    # RestartCount 0, and two more retries.
    ident = world.started("web", host_config=policy("on-failure", 2))
    for delay in (0.1, 0.2):
        world.runtime.exit(ident, 1)
        restarts_after(world, delay)
    world.runtime.exit(ident, 1)
    world.clock.advance(60)
    assert world.state("web")["Status"] == "exited" and restart_count(world) == 2
    run(world.backend.start("web"))
    assert restart_count(world) == 0 and world.state("web")["Status"] == "running"
    world.runtime.exit(ident, 1)
    restarts_after(world, 0.1)
    assert restart_count(world) == 1


def test_removing_a_restarting_container_cancels_its_restart(world):
    ident = world.started("web", host_config=policy("always"))
    world.runtime.exit(ident, 1)
    error = failure_of(world.backend.remove("web", False, False))
    assert isinstance(error, Conflict) and str(error) == (
        "You cannot remove a restarting container %s. Stop the container before attempting "
        "removal or force remove" % (ident,)
    )
    run(world.backend.remove("web", True, False))
    world.clock.advance(60)
    assert len(starts(world)) == 1 and world.backend.by_id(ident) is None


def test_a_restart_that_fails_leaves_it_exited(world):
    from twistedock.errors import InternalError

    ident = world.started("web", host_config=policy("always"))
    world.runtime.exit(ident, 1)
    world.runtime.failures["create"] = InternalError("no space left on device")
    world.clock.advance(0.1)
    state = world.state("web")
    assert (state["Status"], state["Running"], state["Error"]) == ("exited", False, "no space left on device")


def test_shutdown_stops_what_runs_and_restarts_nothing(world):
    ident = world.started("web", host_config=policy("always"))
    other = world.started("db", host_config=policy("always"))
    world.runtime.exit(other, 1)
    d = ensureDeferred(world.backend.shutdown())
    world.clock.advance(10)
    assert d.called
    world.clock.advance(60)
    assert world.state("web")["Status"] == "exited" and world.state("db")["Status"] == "exited"
    assert world.runtime.called("kill") == [(ident, 15), (ident, 9)]
    assert not world.runtime.watcher.running
    # Not a manual stop: the policy revives them when the daemon starts.
    assert not world.backend.get("web").manually_stopped


def test_shutdown_with_live_restore_leaves_them_running(tmp_path):
    world = World(tmp_path, live_restore=True)
    ident = world.started("web")
    run(world.backend.shutdown())
    assert world.runtime.status(ident) == "running" and world.runtime.called("kill") == []
