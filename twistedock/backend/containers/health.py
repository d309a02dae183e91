"""
Healthchecks, as moby's daemon/health.go: a container whose Config has a
C{Healthcheck} is probed while it runs (not while it is paused) by an exec
of the check's command; C{State.Health} keeps the status (starting,
healthy, unhealthy), the failing streak and the last five results, and a
change of status is a C{health_status: ...} event.

The L{HealthMonitor} is told of each run's changes by the container backend
(L{ContainerBackend.watch_runs}) and tells an L{IProbeRunner} once per run
what to probe; the runner keeps the timers and runs the probes, and tells
the monitor of each one (L{IProbeReports}): the monitor logs the exec
events a probe is in dockerd (exec_create, exec_start, exec_die) and
applies its result.  The daemon's runner is L{probes.ProbeRunnerProcess},
a process of its own (L{twistedock.backend.proberunner}): a probe costs
the daemon two short lines, not an exec.
"""

import copy
import os
from typing import Dict, List, Optional

from twisted.internet.defer import ensureDeferred, succeed
from zope.interface import Interface, implementer

from ... import golang, versions
from ...logs import Logger
from ..healthstate import (  # noqa: F401  (the names of health.go, here too)
    DEFAULT_INTERVAL,
    DEFAULT_RETRIES,
    DEFAULT_START_PERIOD,
    DEFAULT_TIMEOUT,
    FILTER_VALUES,
    HEALTHY,
    MAX_LOG,
    MAX_OUTPUT,
    NO_HEALTHCHECK,
    STARTING,
    UNHEALTHY,
    LimitedOutput,
    apply_result,
    new_health,
    status_of,
)

log = Logger()

_NS = 1_000_000_000


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


# -- the runner ------------------------------------------------------------------


class IProbeReports(Interface):
    """What a probe runner tells the monitor, for the run it was given as
    C{key} (times in nanoseconds since the epoch)."""

    def started(key, start):
        """A probe began (dockerd's exec_create and exec_start)."""

    def ended(key, start, end, code, output):
        """It ended with exit C{code} and C{output} (at most
        L{MAX_OUTPUT} bytes, "..." after a longer one): its result."""

    def timed_out(key, start, end):
        """It passed its timeout: it was killed, its result is a failure."""

    def exited(key, code):
        """A probe killed at its timeout ended (dockerd's exec_die)."""

    def failed(key, start, end, message):
        """It could not be run (C{message} says why): a failure."""


class IProbeRunner(Interface):
    """Runs the probes of the runs it is told of, on its own timers: the
    first an interval after the watch began, each next an interval after
    the previous one ended (the start interval while the run is
    starting within its start period), each killed at its timeout."""

    def report_to(reports):
        """Tell L{IProbeReports} C{reports} of every probe."""

    def watch(key, c, command, plan):
        """Probe container C{c}'s run, known as C{key}, with C{command}
        (an argv) as L{HealthMonitor.plan} says."""

    def unwatch(key):
        """No more probes of C{key} (one under way is killed)."""

    def stop():
        """No more probes at all (a Deferred: the runner is gone)."""


# -- the monitor -----------------------------------------------------------------


class _Probed:
    """One run being probed: its container, command and the exec ID of
    the probe under way."""

    __slots__ = ("c", "key", "command", "exec_id")

    def __init__(self, c, key: int, command: List[str]) -> None:
        self.c = c
        self.key = key
        self.command = " ".join(command[:1]) + " " + " ".join(command[1:])
        self.exec_id = ""


@implementer(IProbeReports)
class HealthMonitor:
    """The probes of every running container that has a healthcheck.

    C{containers} is the container backend: it tells this monitor of each
    run's start, pause, resume and end (L{ContainerBackend.watch_runs}),
    saves records and logs events; C{runner} runs the probes."""

    def __init__(self, reactor, containers, runner) -> None:
        self.reactor = reactor
        self.containers = containers
        self.runner = runner
        self._by_container: Dict[str, _Probed] = {}
        self._by_key: Dict[int, _Probed] = {}
        self._keys = 0
        runner.report_to(self)
        containers.watch_runs(self)

    def now(self) -> int:
        return int(self.reactor.seconds() * _NS)

    def probing(self) -> int:
        """How many containers are being probed."""
        return len(self._by_container)

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
        command = probe_command(c.config) if wanted else None
        if command is not None:
            if c.id not in self._by_container:
                self._keys += 1
                probed = _Probed(c, self._keys, command)
                self._by_container[c.id] = self._by_key[probed.key] = probed
                self.runner.watch(probed.key, c, command, self.plan(c))
        else:
            self._close(c)

    run_paused = update
    run_resumed = update

    def run_ended(self, c) -> None:
        """dockerd's stopHealthchecks, when the run's process exited."""
        self._close(c)

    def shutdown(self) -> None:
        """The daemon stops: no more probes (what runs on keeps its health
        state for the next daemon)."""
        probed, self._by_container = self._by_container, {}
        self._by_key = {}
        for p in probed.values():
            self.runner.unwatch(p.key)

    def stop(self):
        """L{shutdown}, and the runner stopped (a Deferred)."""
        self.shutdown()
        return self.runner.stop()

    def plan(self, c) -> dict:
        """What the runner needs to probe C{c}'s run: its settings, when it
        started, and its health so far."""
        config = c.config
        return {
            "interval": _setting(config, "Interval", DEFAULT_INTERVAL),
            "timeout": _setting(config, "Timeout", DEFAULT_TIMEOUT),
            "start_period": _setting(config, "StartPeriod", DEFAULT_START_PERIOD),
            "start_interval": _setting(config, "StartInterval", 0),
            "retries": _setting(config, "Retries", DEFAULT_RETRIES),
            "started_at": c.state.started_at,
            "status": status_of(c.state.health),
            "streak": int((c.state.health or {}).get("FailingStreak") or 0),
        }

    def _close(self, c) -> None:
        probed = self._by_container.pop(c.id, None)
        if probed is None:
            return
        self._by_key.pop(probed.key, None)
        self.runner.unwatch(probed.key)
        if c.state.health is not None:
            # As dockerd: no longer probed is unhealthy (no event).
            c.state.health["Status"] = UNHEALTHY

    # -- what the runner tells (IProbeReports) ----------------------------------

    def started(self, key: int, start: int) -> None:
        probed = self._by_key.get(key)
        if probed is None:
            return
        probed.exec_id = os.urandom(32).hex()
        c = probed.c
        self.containers.log_event(c, "exec_create: " + probed.command, execID=probed.exec_id)
        self.containers.log_event(c, "exec_start: " + probed.command, execID=probed.exec_id)

    def ended(self, key: int, start: int, end: int, code: int, output: str) -> None:
        probed = self._by_key.get(key)
        if probed is None:
            return
        self.containers.log_event(probed.c, "exec_die", execID=probed.exec_id, exitCode=code)
        self._record(probed.c, start, _result(start, end, code, output))

    def timed_out(self, key: int, start: int, end: int) -> None:
        probed = self._by_key.get(key)
        if probed is None:
            return
        log.debug("Health check for container {id} taking too long", id=probed.c.short_id)
        timeout = _setting(probed.c.config, "Timeout", DEFAULT_TIMEOUT)
        message = "Health check exceeded timeout (%s)" % (golang.format_duration(timeout),)
        self._record(probed.c, start, _result(start, end, -1, message))

    def exited(self, key: int, code: int) -> None:
        probed = self._by_key.get(key)
        if probed is not None:
            self.containers.log_event(probed.c, "exec_die", execID=probed.exec_id, exitCode=code)

    def failed(self, key: int, start: int, end: int, message: str) -> None:
        probed = self._by_key.get(key)
        if probed is None:
            return
        log.warn("Health check for container {id} error: {e}", id=probed.c.short_id, e=message)
        self._record(probed.c, start, _result(start, end, -1, message))

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
        # dockerd writes the record after every probe; here only a change
        # of status is written (the log goes with the next write).
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
