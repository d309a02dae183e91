"""
Healthchecks in process: the health state machine (L{apply_result}), the
probe commands, and the L{HealthMonitor} over the container backend with a
fake runtime, a L{Clock} and a fake probe runner, so that every probe's
start, end and timeout happens when the test says.
"""

import gc
import json

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twistedock import golang
from twistedock.backend.containers import health as hc
from twistedock.backend.containers.health import (
    ExecProbeRunner,
    HealthMonitor,
    IProbe,
    IProbeRunner,
    LimitedOutput,
    apply_result,
    probe_command,
)
from twistedock.backend.spec.config import merge
from twistedock.backend.spec.validate import _validate_container_config
from twistedock.errors import Conflict, InvalidParameter
from twistedock.filters import Filters

from .fake_runtime import START, FakeExitWatcher, World, failure_of, run
from .memory import result_of

S = 1_000_000_000


@implementer(IProbe)
class FakeProbe:
    def __init__(self, command) -> None:
        self.command = command
        self.result = Deferred()
        self.killed = False

    def kill(self) -> None:
        self.killed = True

    def succeed(self, output: str = "") -> None:
        self.result.callback((0, output))

    def fail(self, code: int = 1, output: str = "") -> None:
        self.result.callback((code, output))


@implementer(IProbeRunner)
class FakeProbeRunner:
    """Probes the test ends: C{probes} lists every one started."""

    def __init__(self) -> None:
        self.probes = []

    def start(self, c, command):
        probe = FakeProbe(command)
        self.probes.append(probe)
        return probe

    @property
    def last(self) -> FakeProbe:
        return self.probes[-1]


class HealthWorld:
    """A L{World} with its health monitor."""

    def __init__(self, world: World, runner=None) -> None:
        self.world = world
        self.runner = runner or FakeProbeRunner()
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
        return [call for call in self.world.clock.getDelayedCalls() if call.func.__self__ is self.monitor]


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


def test_the_fake_runner_is_a_runner(world):
    assert verifyObject(IProbeRunner, world.runner)
    assert verifyObject(IProbeRunner, ExecProbeRunner(None))
    assert verifyObject(IProbe, FakeProbe(["true"]))


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
    world.runner.last.result.errback(Conflict("Container x is not running"))
    h = world.health("web")
    assert h["Status"] == "unhealthy"
    assert h["Log"][0]["ExitCode"] == -1 and h["Log"][0]["Output"] == "Container x is not running"
    world.advance(1)
    assert len(world.runner.probes) == 2


def test_a_runner_that_raises_is_a_failure_and_probing_goes_on(world):
    started(world, "web", check(Interval=S, Retries=1))
    world.runner.start = lambda c, command: 1 / 0
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
    world.advance(1)
    world.runner.last.succeed()
    gc.collect()
    baseline = len(gc.get_objects())
    for n in range(3000):
        world.advance(1)
        probe = world.runner.last
        if n % 3 == 2:
            world.advance(0.5)  # timed out
            probe.fail(137)
        else:
            probe.succeed("x" * 100)
        world.runner.probes.clear()
    gc.collect()
    assert len(world.probe_timers()) == 1
    assert len(world.health("web")["Log"]) == 5
    assert len(world.world.clock.getDelayedCalls()) == 1
    assert len(gc.get_objects()) - baseline < 500


# -- probes as execs ------------------------------------------------------------------


class FakeExecs:
    """The exec backend's surface a probe uses."""

    def __init__(self, output=(b"hello\n",), code=0) -> None:
        self.execs = {}
        self.output = output
        self.code = code
        self.started = Deferred()

    async def create_exec(self, name, options):
        self.execs["e1"] = {"options": options, "ExitCode": None, "Pid": 0}
        return "e1"

    async def start_exec(self, exec_id, config):
        stream = config.stream
        self.execs[exec_id]["Pid"] = 4321
        stream.read_input(None, None)
        for data in self.output:
            stream.write(1, data)
        await self.started
        self.execs[exec_id]["ExitCode"] = self.code
        stream.close()

    def inspect_exec(self, exec_id):
        return self.execs[exec_id]


class FakeStore:
    def __init__(self, execs) -> None:
        self.execs = execs


def test_an_exec_probe_keeps_the_output_and_forgets_the_exec(world, monkeypatch):
    killed = []
    monkeypatch.setattr(hc.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    execs = FakeExecs(output=(b"a" * 3000, b"b" * 3000), code=3)
    runner = ExecProbeRunner(execs, FakeStore(execs.execs))
    c = world.world.backend.get(started(world, "web", None))
    probe = runner.start(c, ["/bin/sh", "-c", "x"])
    options = execs.execs["e1"]["options"]
    assert options.cmd == ("/bin/sh", "-c", "x")
    assert options.attach_stdout and options.attach_stderr and not options.attach_stdin and not options.tty
    probe.kill()
    assert killed == [(4321, 9)]
    execs.started.callback(None)
    code, output = result_of(probe.result)
    assert code == 3 and output == "a" * 3000 + "b" * 1096 + "..."
    assert execs.execs == {}
