"""
Healthchecks in process: the health state machine (L{apply_result}), the
probe commands, and the L{HealthMonitor} over the container backend with a
fake runtime, a L{Clock} and a fake probe runner, so that every probe's
start, end and timeout happens when the test says.
"""

import gc
import json

import pytest
from twisted.internet.defer import ensureDeferred, succeed
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twistedock import golang
from twistedock.backend.containers import health as hc
from twistedock.backend.containers.health import (
    HealthMonitor,
    IProbeReports,
    IProbeRunner,
    LimitedOutput,
    apply_result,
    probe_command,
)
from twistedock.backend.events import HISTORY_LIMIT
from twistedock.backend.proberunner import Prober
from twistedock.backend.spec.config import merge
from twistedock.backend.spec.validate import _validate_container_config
from twistedock.errors import InvalidParameter
from twistedock.filters import Filters

from .fake_runtime import START, FakeExitWatcher, World, failure_of, run
from .memory import result_of

S = 1_000_000_000


class FakeProbe:
    """A probe the test ends."""

    def __init__(self, command, on_end) -> None:
        self.command = command
        self.on_end = on_end
        self.killed = False

    def kill(self) -> None:
        self.killed = True

    def succeed(self, output: str = "") -> None:
        self.on_end(0, output, True)

    def fail(self, code: int = 1, output: str = "") -> None:
        self.on_end(code, output, True)

    def cannot_start(self, message: str) -> None:
        self.on_end(-1, message, False)


class ClockTime:
    """The runner's clock on the test's L{Clock}."""

    def __init__(self, clock) -> None:
        self.clock = clock

    def now(self) -> int:
        return int(self.clock.seconds() * S)

    def call_later(self, seconds, function, *args):
        return self.clock.callLater(seconds, function, *args)


@implementer(IProbeRunner)
class InProcessRunner:
    """The probe runner's schedule (L{Prober}) on the test's clock, its
    probes ended by the test: C{probes} lists every one started."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.probes = []
        self.commands = {}
        self.plans = {}
        self.prober = None
        self.spawn_error = None

    def report_to(self, reports) -> None:
        self.prober = Prober(ClockTime(self.clock), self._spawn, reports)

    def watch(self, key, c, command, plan) -> None:
        self.commands[key] = command
        self.plans[key] = plan
        self.prober.watch(dict(plan, key=key, container=c.id))

    def unwatch(self, key) -> None:
        self.prober.unwatch(key)

    def stop(self):
        self.prober.stop()
        return succeed(None)

    def _spawn(self, plan, on_end):
        if self.spawn_error is not None:
            raise self.spawn_error
        probe = FakeProbe(self.commands[plan["key"]], on_end)
        self.probes.append(probe)
        return probe

    @property
    def last(self) -> FakeProbe:
        return self.probes[-1]


class HealthWorld:
    """A L{World} with its health monitor."""

    def __init__(self, world: World, runner=None) -> None:
        self.world = world
        self.runner = runner or InProcessRunner(world.clock)
        self.monitor = HealthMonitor(world.clock, world.backend, self.runner)

    def __getattr__(self, name):
        return getattr(self.world, name)

    def health(self, ref: str):
        return self.world.state(ref).get("Health")

    def advance(self, seconds: float) -> None:
        self.world.clock.advance(seconds)

    def health_events(self, ident: str):
        return [a for a in self.world.actions(ident) if a.startswith("health_status")]

    def probe_timers(self):
        return [
            call for call in self.world.clock.getDelayedCalls() if getattr(call.func, "__self__", None) is self.runner.prober
        ]


@pytest.fixture
def world(tmp_path):
    return HealthWorld(World(tmp_path))


def check(test="exit 0", **settings):
    doc = {"Test": ["CMD-SHELL", test]}
    for key, value in settings.items():
        doc[key] = value
    return doc


def started(world, name, healthcheck, **config):
    """A running container with C{healthcheck}, created at the newest API."""
    config.update(Image="busybox", Healthcheck=healthcheck)
    config.setdefault("Cmd", ["sleep", "1000"])
    ident = run(world.world.backend.create(name, config, {}, None, "1.51"))["Id"]
    run(world.world.backend.start(ident))
    return ident


# -- the configuration -----------------------------------------------------------------


def test_probe_commands_as_dockerd_makes_them():
    assert probe_command({}) is None
    assert probe_command({"Healthcheck": {"Test": ["NONE"]}}) is None
    assert probe_command({"Healthcheck": {"Test": []}}) is None
    assert probe_command({"Healthcheck": {"Test": ["CMD"]}}) is None
    assert probe_command({"Healthcheck": {"Test": ["WHAT", "x"]}}) is None
    assert probe_command({"Healthcheck": {"Test": ["CMD", "curl", "-f", "x"]}}) == ["curl", "-f", "x"]
    assert probe_command({"Healthcheck": {"Test": ["CMD-SHELL", "a && b"]}}) == ["/bin/sh", "-c", "a && b"]
    shell = {"Shell": ["/bin/bash", "-ec"], "Healthcheck": {"Test": ["CMD-SHELL", "a"]}}
    assert probe_command(shell) == ["/bin/bash", "-ec", "a"]


def test_start_interval_exists_from_api_1_44():
    config = {"Image": "x", "Healthcheck": {"Test": ["CMD", "true"], "StartInterval": 10}}
    assert hc.for_api(config, "1.41")["Healthcheck"] == {"Test": ["CMD", "true"]}
    assert hc.for_api(config, "1.44") is config
    assert hc.for_api({"Image": "x"}, "1.41") == {"Image": "x"}


@pytest.mark.parametrize(
    "health, message",
    [
        ({"Interval": -1}, "Interval in Healthcheck cannot be less than 1ms"),
        ({"Timeout": 999_999}, "Timeout in Healthcheck cannot be less than 1ms"),
        ({"Retries": -2}, "Retries in Healthcheck cannot be negative"),
        ({"StartPeriod": -S}, "StartPeriod in Healthcheck cannot be less than 1ms"),
        ({"StartInterval": 5}, "StartInterval in Healthcheck cannot be less than 1ms"),
    ],
)
def test_durations_are_checked_as_dockerd_checks_them(health, message):
    with pytest.raises(InvalidParameter) as raised:
        _validate_container_config({"Healthcheck": dict(health, Test=["CMD", "true"])})
    assert str(raised.value) == message
    _validate_container_config({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000, "Retries": 0}})


def test_the_create_completes_the_image_healthcheck():
    image = {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 5 * S, "StartInterval": S, "Retries": 2}}
    merged = merge({"Healthcheck": {"Test": ["CMD-SHELL", "x"], "Retries": 7}}, image)
    assert merged["Healthcheck"] == {
        "Test": ["CMD-SHELL", "x"], "Interval": 5 * S, "Timeout": None, "StartPeriod": None,
        "StartInterval": S, "Retries": 7,
    }  # fmt: skip
    assert merge({"Healthcheck": {"Test": ["NONE"]}}, image)["Healthcheck"]["Test"] == ["NONE"]
    assert merge({}, image)["Healthcheck"] == image["Healthcheck"]


# -- the state machine -----------------------------------------------------------------


def result(code: int, output: str = "") -> dict:
    return {"Start": "s", "End": "e", "ExitCode": code, "Output": output}


def test_a_success_is_healthy_and_retries_failures_unhealthy():
    health = hc.new_health()
    assert apply_result(health, result(1), retries=2, start_period=0, started_at=0, start=1) == ("starting", "starting")
    assert health["FailingStreak"] == 1
    assert apply_result(health, result(1), retries=2, start_period=0, started_at=0, start=2) == ("starting", "unhealthy")
    assert apply_result(health, result(0), retries=2, start_period=0, started_at=0, start=3) == ("unhealthy", "healthy")
    assert health["FailingStreak"] == 0
    # Retries unset (0) are dockerd's three.
    for n in range(2):
        assert apply_result(health, result(2), retries=0, start_period=0, started_at=0, start=4)[1] == "healthy"
    assert apply_result(health, result(2), retries=0, start_period=0, started_at=0, start=5)[1] == "unhealthy"
    # Only the last five results are kept, oldest first.
    assert [e["ExitCode"] for e in health["Log"]] == [1, 0, 2, 2, 2]


def test_failures_within_the_start_period_do_not_count_until_healthy():
    health = hc.new_health()
    for start in (1, 5, 9):
        apply_result(health, result(1), retries=1, start_period=10, started_at=0, start=start)
    assert health["Status"] == "starting" and health["FailingStreak"] == 0
    # Past the start period they count.
    apply_result(health, result(1), retries=1, start_period=10, started_at=0, start=10)
    assert health["Status"] == "unhealthy"
    # Once healthy, the start period no longer spares a failure.
    health = hc.new_health()
    apply_result(health, result(0), retries=1, start_period=10, started_at=0, start=1)
    apply_result(health, result(1), retries=1, start_period=10, started_at=0, start=2)
    assert health["Status"] == "unhealthy" and health["FailingStreak"] == 1


def test_output_is_kept_up_to_4096_bytes():
    out = LimitedOutput()
    out.add(b"a" * 4000)
    out.add(b"b" * 100)
    out.add(b"c")
    text = out.text()
    assert text == "a" * 4000 + "b" * 96 + "..."
    small = LimitedOutput()
    small.add(b"ok\n\xff")
    assert small.text() == "ok\n\ufffd"


def test_go_durations():
    assert golang.format_duration(30 * S) == "30s"
    assert golang.format_duration(1_500_000_000) == "1.5s"
    assert golang.format_duration(90 * S) == "1m30s"
    assert golang.format_duration(3600 * S) == "1h0m0s"
    assert golang.format_duration(2_500_000) == "2.5ms"
    assert golang.format_duration(0) == "0s"


# -- the monitor ----------------------------------------------------------------------


def test_the_runners_and_the_monitor_provide_their_interfaces(world):
    assert verifyObject(IProbeRunner, world.runner)
    assert verifyObject(IProbeReports, world.monitor)


def test_a_container_is_probed_every_interval_and_becomes_healthy(world):
    ident = started(world, "web", check("echo ok", Interval=2 * S))
    h = world.health("web")
    assert h == {"Status": "starting", "FailingStreak": 0, "Log": []}
    assert world.world.backend.get("web").state.describe(world.now()).endswith(" (health: starting)")
    world.advance(1.9)
    assert world.runner.probes == []
    world.advance(0.1)
    probe = world.runner.last
    assert probe.command == ["/bin/sh", "-c", "echo ok"]
    world.advance(0.25)
    probe.succeed("ok\n")
    h = world.health("web")
    assert h["Status"] == "healthy" and h["FailingStreak"] == 0
    assert h["Log"] == [
        {"Start": golang.rfc3339_nano((START + 2) * S), "End": golang.rfc3339_nano(int((START + 2.25) * S)),
         "ExitCode": 0, "Output": "ok\n"}
    ]  # fmt: skip
    assert world.health_events(ident) == ["health_status: healthy"]
    # The status is in the record, as dockerd keeps it.
    with open(world.world.backend.get("web").record_path) as f:
        assert json.load(f)["State"]["health"]["Status"] == "healthy"
    # The next probe comes an interval after the end of this one.
    world.advance(1.9)
    assert len(world.runner.probes) == 1
    world.advance(0.1)
    assert len(world.runner.probes) == 2
    world.runner.last.succeed()
    assert world.health_events(ident) == ["health_status: healthy"]
    summary = run(world.world.backend.list(False, 0, False, Filters(), "1.41"))[0]
    assert summary["Status"].endswith(" (healthy)")


def test_defaults_are_thirty_seconds(world):
    started(world, "web", check())
    world.advance(29.9)
    assert world.runner.probes == []
    world.advance(0.1)
    probe = world.runner.last
    world.advance(29.9)
    assert not probe.killed
    world.advance(0.1)
    assert probe.killed
    assert world.health("web")["Log"][0]["Output"] == "Health check exceeded timeout (30s)"


def test_failures_make_it_unhealthy_after_the_retries(world):
    ident = started(world, "web", check("exit 1", Interval=S, Retries=3))
    for n in range(3):
        world.advance(1)
        world.runner.last.fail(1, "no\n")
        if n < 2:
            assert world.health("web")["Status"] == "starting"
    h = world.health("web")
    assert h["Status"] == "unhealthy" and h["FailingStreak"] == 3
    assert world.health_events(ident) == ["health_status: unhealthy"]
    world.advance(1)
    world.runner.last.succeed()
    world.advance(1)
    world.runner.last.fail()
    assert world.health_events(ident) == ["health_status: unhealthy", "health_status: healthy"]
    assert world.health("web")["FailingStreak"] == 1


def test_a_probe_that_cannot_run_is_a_failure(world):
    started(world, "web", check(Interval=S, Retries=1))
    world.advance(1)
    world.runner.last.cannot_start("Container x is not running")
    h = world.health("web")
    assert h["Status"] == "unhealthy"
    assert h["Log"][0]["ExitCode"] == -1 and h["Log"][0]["Output"] == "Container x is not running"
    world.advance(1)
    assert len(world.runner.probes) == 2


def test_a_runner_that_raises_is_a_failure_and_probing_goes_on(world):
    started(world, "web", check(Interval=S, Retries=1))
    world.runner.spawn_error = ZeroDivisionError("division by zero")
    world.advance(1)
    h = world.health("web")
    assert h["Status"] == "unhealthy" and h["Log"][0]["ExitCode"] == -1
    assert "division by zero" in h["Log"][0]["Output"]
    world.advance(1)
    assert len(world.health("web")["Log"]) == 2
    assert len(world.probe_timers()) == 1


def test_the_start_period_spares_failures_and_a_success_ends_it(world):
    started(world, "web", check(Interval=S, Retries=1, StartPeriod=3 * S))
    world.advance(1)
    world.runner.last.fail()
    world.advance(1)
    world.runner.last.fail()
    assert world.health("web")["Status"] == "starting"
    assert world.health("web")["FailingStreak"] == 0
    world.advance(1)
    # This one began at 3s: past the start period.
    world.runner.last.fail()
    assert world.health("web")["Status"] == "unhealthy"


def test_the_start_interval_applies_while_starting_within_the_start_period(world):
    started(world, "web", check(Interval=10 * S, StartInterval=S, StartPeriod=5 * S))
    world.advance(1)
    assert len(world.runner.probes) == 1
    world.runner.last.fail()
    world.advance(1)
    assert len(world.runner.probes) == 2
    world.runner.last.succeed()
    # Healthy: the interval again.
    world.advance(9.9)
    assert len(world.runner.probes) == 2
    world.advance(0.1)
    assert len(world.runner.probes) == 3


def test_a_probe_past_its_timeout_is_killed_and_fails(world):
    started(world, "web", check(Interval=S, Timeout=1_500_000_000, Retries=1))
    world.advance(1)
    probe = world.runner.last
    world.advance(1.5)
    assert probe.killed
    h = world.health("web")
    assert h["Status"] == "unhealthy"
    assert h["Log"][0]["ExitCode"] == -1
    assert h["Log"][0]["Output"] == "Health check exceeded timeout (1.5s)"
    # No new probe while the killed one has not ended; its end is no result.
    world.advance(5)
    assert len(world.runner.probes) == 1
    probe.fail(137)
    assert len(world.health("web")["Log"]) == 1
    world.advance(1)
    assert len(world.runner.probes) == 2


def test_no_probe_while_paused_and_none_after_the_exit(world):
    ident = started(world, "web", check(Interval=S))
    world.advance(1)
    world.runner.last.succeed()
    run(world.world.backend.pause("web"))
    # dockerd: no longer probed is unhealthy (without an event).
    assert world.health("web")["Status"] == "unhealthy"
    assert world.probe_timers() == []
    world.advance(10)
    assert len(world.runner.probes) == 1
    run(world.world.backend.unpause("web"))
    world.advance(1)
    assert len(world.runner.probes) == 2
    in_flight = world.runner.last
    world.world.runtime.exit(ident, 0)
    world.world.settle()
    assert in_flight.killed
    assert world.world.state("web")["Status"] == "exited"
    assert world.health("web")["Status"] == "unhealthy"
    assert world.probe_timers() == []
    in_flight.succeed()
    world.advance(10)
    assert len(world.runner.probes) == 2
    assert world.health("web")["Status"] == "unhealthy"
    assert world.health_events(ident) == ["health_status: healthy"]
    assert world.monitor.probing() == 0


def test_a_new_run_starts_again_keeping_the_log(world):
    ident = started(world, "web", check(Interval=S))
    world.advance(1)
    world.runner.last.succeed("first")
    world.world.runtime.exit(ident, 0)
    world.world.settle()
    run(world.world.backend.start("web"))
    h = world.health("web")
    assert h["Status"] == "starting" and [e["Output"] for e in h["Log"]] == ["first"]
    world.advance(1)
    world.runner.last.succeed()
    assert world.health_events(ident) == ["health_status: healthy", "health_status: healthy"]


def test_no_health_state_without_a_healthcheck(world):
    started(world, "plain", None)
    started(world, "none", {"Test": ["NONE"]})
    world.advance(60)
    assert world.runner.probes == []
    assert world.health("plain") is None and world.health("none") is None
    assert world.world.backend.get("none").state.describe(world.now()) == "Up About a minute"


def test_the_health_filter(world):
    started(world, "plain", None)
    started(world, "ok", check(Interval=S))
    started(world, "bad", check(Interval=S, Retries=1))
    started(world, "slow", check(Interval=100 * S))
    world.advance(1)
    world.runner.probes[0].succeed()
    world.runner.probes[1].fail()

    def names(*values):
        listed = run(world.world.backend.list(True, 0, False, Filters({"health": list(values)}), "1.41"))
        return sorted(s["Names"][0].lstrip("/") for s in listed)

    assert names("healthy") == ["ok"]
    assert names("unhealthy") == ["bad"]
    assert names("starting") == ["slow"]
    assert names("none") == ["plain"]
    assert names("none", "healthy") == ["ok", "plain"]
    error = failure_of(world.world.backend.list(False, 0, False, Filters({"health": ["ill"]}), "1.41"))
    assert str(error) == "Unrecognised filter value for health: ill"


def test_a_live_restored_container_is_probed_again(tmp_path):
    first = HealthWorld(World(tmp_path, live_restore=True))
    started(first, "web", check(Interval=S))
    first.advance(1)
    first.runner.last.succeed()
    run(first.world.backend.shutdown())
    assert first.probe_timers() == []
    first.world.crash()
    first.world.runtime.watcher = FakeExitWatcher(first.world.runtime)
    again = HealthWorld(World(first.root, runtime=first.world.runtime, live_restore=True, clock=first.world.clock))
    loaded = ensureDeferred(again.world.backend.load())
    again.world.settle()
    result_of(loaded)
    h = again.health("web")
    assert h["Status"] == "starting" and len(h["Log"]) == 1
    again.advance(1)
    again.runner.last.succeed()
    assert again.health("web")["Status"] == "healthy"


def test_thousands_of_probes_leave_nothing_behind(world):
    started(world, "web", check(Interval=S, Timeout=S // 2))

    def probes(count: int) -> None:
        for n in range(count):
            world.advance(1)
            probe = world.runner.last
            if n % 3 == 2:
                world.advance(0.5)  # timed out
                probe.fail(137)
            else:
                probe.succeed("x" * 100)
            world.runner.probes.clear()

    # Enough for the event history (three exec events a probe) to be full.
    probes(HISTORY_LIMIT)
    gc.collect()
    baseline = len(gc.get_objects())
    probes(3000)
    gc.collect()
    assert len(world.probe_timers()) == 1
    assert len(world.health("web")["Log"]) == 5
    assert len(world.world.clock.getDelayedCalls()) == 1
    assert len(gc.get_objects()) - baseline < 500


# -- the exec events -------------------------------------------------------------------


def test_each_probe_is_an_exec_in_the_events(world):
    ident = started(world, "web", check("exit 2", Interval=S, Timeout=S // 2, Retries=1))
    world.advance(1)
    world.runner.last.fail(2, "no")
    world.advance(1)
    hanging = world.runner.last
    world.advance(0.5)
    assert hanging.killed
    hanging.fail(137)
    actions = [a for a in world.world.actions(ident) if a.startswith("exec_") or a.startswith("health")]
    command = "/bin/sh -c exit 2"
    # As dockerd: the exec's end, then the status; a probe past its timeout
    # is a result at once, its exec's end comes once it is gone.
    assert actions == [
        "exec_create: " + command, "exec_start: " + command, "exec_die:2", "health_status: unhealthy",
        "exec_create: " + command, "exec_start: " + command, "exec_die:137",
    ]  # fmt: skip
    execs = [e for e in world.world.events._history if e.action.startswith("exec_")]
    assert len({e.actor.attributes["execID"] for e in execs}) == 2


def test_the_runner_is_told_the_run_and_its_health(world):
    started(world, "web", check(Interval=2 * S, Timeout=3 * S, StartPeriod=4 * S, StartInterval=S, Retries=5))
    (plan,) = world.runner.plans.values()
    c = world.world.backend.get("web")
    assert plan == {
        "interval": 2 * S, "timeout": 3 * S, "start_period": 4 * S, "start_interval": S, "retries": 5,
        "started_at": c.state.started_at, "status": "starting", "streak": 0,
    }  # fmt: skip
    run(world.world.backend.pause("web"))
    run(world.world.backend.unpause("web"))
    # Watched again after the pause, from the health it has now.
    assert list(world.runner.plans.values())[-1]["status"] == "unhealthy"
    assert world.monitor.probing() == 1
