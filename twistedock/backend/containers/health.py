"""
Healthchecks, as moby's daemon/health.go: a container whose Config has a
C{Healthcheck} is probed while it runs (not while it is paused) by an exec
of the check's command; C{State.Health} keeps the status (starting,
healthy, unhealthy), the failing streak and the last five results, and a
change of status is a C{health_status: ...} event.

The L{HealthMonitor} is told of each run's changes by the container backend
(L{ContainerBackend.watch_runs}); it keeps one timer per probed container
on the reactor it was given and runs the probes through an
L{IProbeRunner} (L{ExecProbeRunner}: the exec backend, so that a probe is
an exec as any other, with its exec_create, exec_start and exec_die).
"""

import copy
import os
import signal as signals
from typing import Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from zope.interface import Attribute, Interface, implementer

from ... import golang, versions
from ...errors import DockerError, NotFound
from ...logs import Logger
from ...routers.container import ExecOptions, ExecStartConfig

log = Logger()

_NS = 1_000_000_000

#: dockerd's defaults (daemon/health.go).
DEFAULT_INTERVAL = 30 * _NS
DEFAULT_TIMEOUT = 30 * _NS
DEFAULT_START_PERIOD = 0
DEFAULT_RETRIES = 3
#: The longest output kept of one probe; more is dropped, "..." marks it.
MAX_OUTPUT = 4096
#: How many results State.Health.Log keeps.
MAX_LOG = 5

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
#: The C{health} filter's value for a container without health state.
NO_HEALTHCHECK = "none"
FILTER_VALUES = (STARTING, HEALTHY, UNHEALTHY, NO_HEALTHCHECK)


# -- the configuration ---------------------------------------------------------


def for_api(config: dict, api_version: str) -> dict:
    """A create request's Config as dockerd's router leaves it: before API
    1.44 there is no C{StartInterval}."""
    health = config.get("Healthcheck")
    if isinstance(health, dict) and "StartInterval" in health and versions.less_than(api_version, "1.44"):
        config = dict(config, Healthcheck={k: v for k, v in health.items() if k != "StartInterval"})
    return config


def probe_command(config: dict) -> Optional[List[str]]:
    """The argv a probe runs (dockerd's getProbe and getShell), None when
    the container has no healthcheck, C{NONE}, or a type dockerd ignores."""
    health = config.get("Healthcheck") or {}
    test = list(health.get("Test") or ())
    if not test:
        return None
    kind, command = test[0], test[1:]
    if kind == "CMD":
        return command or None
    if kind == "CMD-SHELL":
        if not command:
            return None
        shell = list(config.get("Shell") or ()) or ["/bin/sh", "-c"]
        return shell + command
    if kind != "NONE":
        log.warn("Unknown healthcheck type '{kind}' (expected 'CMD')", kind=kind)
    return None


def _setting(config: dict, key: str, default: int) -> int:
    value = (config.get("Healthcheck") or {}).get(key)
    return int(value) if value else default


def new_health() -> dict:
    """State.Health as inspect shows it (and as the record keeps it)."""
    return {"Status": STARTING, "FailingStreak": 0, "Log": []}


def status_of(health: Optional[dict]) -> str:
    """dockerd's Health.Status(): none without health state; an unset
    status is unhealthy."""
    if health is None:
        return NO_HEALTHCHECK
    return health.get("Status") or UNHEALTHY


def status_text(health: dict) -> str:
    """What docker ps shows in brackets after C{Up ...}."""
    status = status_of(health)
    return "health: starting" if status == STARTING else status


def health_json(health: Optional[dict]) -> Optional[dict]:
    if health is None:
        return None
    doc = copy.deepcopy(health)
    doc["Status"] = status_of(health)
    return doc


def apply_result(
    health: dict, result: dict, *, retries: int, start_period: int, started_at: int, start: int
) -> Tuple[str, str]:
    """dockerd's handleProbeResult on C{health} (changed in place):
    C{result} joins the log (five kept); a success is healthy, a failure
    adds to the streak (unless it began within the start period of a
    container never yet healthy) and C{retries} of them are unhealthy.
    The status before and after."""
    old = status_of(health)
    entries = list(health.get("Log") or ())
    entries.append(result)
    health["Log"] = entries[-MAX_LOG:]
    if result["ExitCode"] == 0:
        health["FailingStreak"] = 0
        health["Status"] = HEALTHY
    else:
        counts = True
        if old == STARTING and start - started_at < start_period:
            counts = False
        if counts:
            health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
            if health["FailingStreak"] >= (retries if retries > 0 else DEFAULT_RETRIES):
                health["Status"] = UNHEALTHY
    return old, status_of(health)


class LimitedOutput:
    """A probe's stdout and stderr together, up to L{MAX_OUTPUT} bytes."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        self.limit = limit
        self.chunks: List[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, data: bytes) -> None:
        keep = min(self.limit - self.size, len(data))
        if keep > 0:
            self.chunks.append(data[:keep])
            self.size += keep
        if keep < len(data):
            self.truncated = True

    def text(self) -> str:
        # Go's JSON encoder replaces invalid UTF-8.
        out = b"".join(self.chunks).decode("utf-8", "replace")
        return out + "..." if self.truncated else out


# -- running probes --------------------------------------------------------------


class IProbe(Interface):
    """One probe under way."""

    result = Attribute("A Deferred: (exit code, output text), or the failure to run")

    def kill():
        """Kill the probe's process (its result still comes, later)."""


class IProbeRunner(Interface):
    def start(c, command):
        """Run C{command} (an argv) in container C{c}: an L{IProbe}."""


class _ProbeStream:
    """What L{ExecBackend.start_exec} takes for a client's connection:
    keeps the exec's output, has no input, and tells the probe when the
    exec runs (the start reads its input then)."""

    transport = None

    def __init__(self, output: LimitedOutput, on_running) -> None:
        self.output = output
        self.on_running = on_running
        self.closed: Deferred = Deferred()

    def write(self, stream: int, data: bytes) -> None:
        self.output.add(data)

    def add_source(self, pause, resume) -> None:
        pass

    def read_input(self, on_input, on_input_closed) -> None:
        self.on_running()

    def close(self) -> None:
        pass


@implementer(IProbe)
class _ExecProbe:
    def __init__(self, execs, exec_store, c, command: List[str]) -> None:
        self.execs = execs
        self.exec_store = exec_store
        self.exec_id: Optional[str] = None
        self.killed = False
        self.running = False
        self.output = LimitedOutput()
        self.result = ensureDeferred(self._run(c, command))

    async def _run(self, c, command: List[str]):
        options = ExecOptions(cmd=command, attach_stdout=True, attach_stderr=True)
        self.exec_id = await self.execs.create_exec(c.id, options)
        try:
            stream = _ProbeStream(self.output, self._running)
            await self.execs.start_exec(self.exec_id, ExecStartConfig(stream=stream))
            self.running = False
            code = self.execs.inspect_exec(self.exec_id)["ExitCode"]
        finally:
            # Probes are many: their execs are forgotten once they ended,
            # so that memory stays flat whatever the probes' rate.
            if self.exec_store is not None:
                self.exec_store.execs.pop(self.exec_id, None)
        if code is None:
            raise DockerError("healthcheck for container %s has no exit code" % (c.id,))
        return code, self.output.text()

    def _running(self) -> None:
        self.running = True
        if self.killed:
            self.kill()

    def kill(self) -> None:
        self.killed = True
        if not self.running or self.exec_id is None:
            return
        try:
            pid = self.execs.inspect_exec(self.exec_id)["Pid"]
        except NotFound:
            return
        if pid > 0:
            try:
                os.kill(pid, signals.SIGKILL)
            except OSError:
                pass


@implementer(IProbeRunner)
class ExecProbeRunner:
    """Probes as execs of the exec backend C{execs}; C{exec_store} is the
    L{ExecStore} they are kept in while they run."""

    def __init__(self, execs, exec_store=None) -> None:
        self.execs = execs
        self.exec_store = exec_store

    def start(self, c, command: List[str]) -> IProbe:
        return _ExecProbe(self.execs, self.exec_store, c, command)


# -- the monitor -----------------------------------------------------------------


class _Watch:
    """One container's probing: the timer to its next probe, or the probe
    under way and its deadline."""

    __slots__ = ("timer", "probe", "deadline", "stopped")

    def __init__(self) -> None:
        self.timer = None
        self.probe = None
        self.deadline = None
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True
        for call in (self.timer, self.deadline):
            if call is not None and call.active():
                call.cancel()
        self.timer = self.deadline = None
        probe, self.probe = self.probe, None
        if probe is not None:
            probe.kill()


class HealthMonitor:
    """The probes of every running container that has a healthcheck.

    C{containers} is the container backend: it tells this monitor of each
    run's start, pause, resume and end (L{ContainerBackend.watch_runs}),
    saves records and logs events; C{runner} runs the probes."""

    def __init__(self, reactor, containers, runner: IProbeRunner) -> None:
        self.reactor = reactor
        self.containers = containers
        self.runner = runner
        self._watches: Dict[str, _Watch] = {}
        containers.watch_runs(self)

    def now(self) -> int:
        return int(self.reactor.seconds() * _NS)

    def probing(self) -> int:
        """How many containers are being probed."""
        return len(self._watches)

    # -- what the container backend tells -------------------------------------

    def run_started(self, c) -> None:
        """dockerd's initHealthMonitor: a new run (a start, a restart, a
        container re-adopted) begins as starting, its log kept."""
        if probe_command(c.config) is None:
            return
        self._close(c)
        health = c.state.health if c.state.health is not None else new_health()
        health["Status"] = STARTING
        health["FailingStreak"] = 0
        c.state.health = health
        self.update(c)

    def update(self, c) -> None:
        """dockerd's updateHealthMonitor: probe while the container runs
        and is not paused; stopping the probes leaves it unhealthy."""
        if c.state.health is None:
            return
        state = c.state
        wanted = state.running and not state.paused and not state.restarting
        if wanted and probe_command(c.config) is not None:
            if c.id not in self._watches:
                watch = self._watches[c.id] = _Watch()
                self._schedule(c, watch)
        else:
            self._close(c)

    run_paused = update
    run_resumed = update

    def run_ended(self, c) -> None:
        """dockerd's stopHealthchecks, when the run's process exited."""
        self._close(c)

    def shutdown(self) -> None:
        """The daemon stops: every timer cancelled (what runs on keeps its
        health state for the next daemon)."""
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            watch.stop()

    # -- probing -------------------------------------------------------------

    def _close(self, c) -> None:
        watch = self._watches.pop(c.id, None)
        if watch is None:
            return
        watch.stop()
        if c.state.health is not None:
            # As dockerd: no longer probed is unhealthy (no event).
            c.state.health["Status"] = UNHEALTHY

    def _interval(self, c) -> int:
        """The wait before the next probe: C{StartInterval} while the
        container starts within its start period (when one is set), the
        interval otherwise."""
        interval = _setting(c.config, "Interval", DEFAULT_INTERVAL)
        start_interval = _setting(c.config, "StartInterval", 0)
        if start_interval and status_of(c.state.health) == STARTING:
            start_period = _setting(c.config, "StartPeriod", DEFAULT_START_PERIOD)
            if self.now() - c.state.started_at < start_period:
                return start_interval
        return interval

    def _schedule(self, c, watch: _Watch) -> None:
        watch.timer = self.reactor.callLater(self._interval(c) / _NS, self._probe, c, watch)

    def _probe(self, c, watch: _Watch) -> None:
        watch.timer = None
        if watch.stopped:
            return
        start = self.now()
        try:
            probe = self.runner.start(c, probe_command(c.config))
        except Exception as e:
            log.failure("health check of {id}", id=c.short_id)
            self._record(c, start, _result(start, self.now(), -1, str(e)))
            self._schedule(c, watch)
            return
        watch.probe = probe
        timeout = _setting(c.config, "Timeout", DEFAULT_TIMEOUT)
        watch.deadline = self.reactor.callLater(timeout / _NS, self._timed_out, c, watch, probe, start, timeout)
        probe.result.addBoth(self._probed, c, watch, probe, start)

    def _timed_out(self, c, watch: _Watch, probe, start: int, timeout: int) -> None:
        """dockerd 20.10: the probe is killed and its result is a failure
        now; the next one waits until it is gone."""
        watch.deadline = None
        if watch.stopped or watch.probe is not probe:
            return
        log.debug("Health check for container {id} taking too long", id=c.short_id)
        probe.kill()
        message = "Health check exceeded timeout (%s)" % (golang.format_duration(timeout),)
        self._record(c, start, _result(start, self.now(), -1, message))

    def _probed(self, outcome, c, watch: _Watch, probe, start: int) -> None:
        if watch.stopped or watch.probe is not probe:
            return None
        watch.probe = None
        if watch.deadline is not None:
            watch.deadline.cancel()
            watch.deadline = None
            if isinstance(outcome, tuple):
                code, output = outcome
                self._record(c, start, _result(start, self.now(), code, output))
            else:
                error = outcome.value
                log.warn("Health check for container {id} error: {e}", id=c.short_id, e=error)
                self._record(c, start, _result(start, self.now(), -1, str(error)))
        self._schedule(c, watch)
        return None

    def _record(self, c, start: int, result: dict) -> None:
        """Apply a probe's result (a failure here is logged: the probing
        goes on)."""
        try:
            self._apply(c, start, result)
        except Exception:
            log.failure("health result of {id}", id=c.short_id)

    def _apply(self, c, start: int, result: dict) -> None:
        health = c.state.health
        if health is None:
            return
        old, new = apply_result(
            health,
            result,
            retries=_setting(c.config, "Retries", DEFAULT_RETRIES),
            start_period=_setting(c.config, "StartPeriod", DEFAULT_START_PERIOD),
            started_at=c.state.started_at,
            start=start,
        )
        if old == new:
            return
        # Only a change of status is written: probes do not cost a write each.
        d = ensureDeferred(self.containers.save(c)) if self.containers.by_id(c.id) is c else succeed(None)
        d.addErrback(lambda f: log.failure("saving the health of {id}", f, id=c.short_id))
        d.addCallback(lambda _: self.containers.log_event(c, "health_status: " + new))


def _result(start: int, end: int, code: int, output: str) -> dict:
    """One entry of State.Health.Log."""
    return {
        "Start": golang.rfc3339_nano(start),
        "End": golang.rfc3339_nano(end),
        "ExitCode": code,
        "Output": output,
    }
