"""
The daemon's probe runner: L{twistedock.backend.proberunner} run as a
child process, started when a first run is to be probed, restarted when
it dies, stopped with the daemon.

Per run of a probed container it is sent one C{W} line (the probe's OCI
process made once, in a thread, by the exec backend); per probe it sends
back two short lines, parsed here and told to the L{HealthMonitor}.
"""

import json
import os
import sys
from typing import Dict, List, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

import twistedock

from ...logs import Logger
from ..execs import start_error
from ..proberunner import parse_report
from ..runtime import runc_message
from .health import IProbeRunner

log = Logger()

#: How long a runner that died waits before it is started again.
RESTART_DELAY = 1.0
#: How long a runner told to stop may take before it is killed.
STOP_TIMEOUT = 10.0


class _RunnerProtocol(ProcessProtocol):
    def __init__(self, owner: "ProbeRunnerProcess") -> None:
        self.owner = owner
        self.buffer = b""
        self.errors = b""
        self.ended: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.owner._connected(self)

    def outReceived(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        reports = self.owner.reports
        for line in lines:
            try:
                parse_report(line, reports)
            except Exception:
                log.failure("probe report {line!r}", line=line[:200])

    def errReceived(self, data: bytes) -> None:
        lines = (self.errors + data).split(b"\n")
        self.errors = lines.pop()[-4096:]
        for line in lines:
            if line.strip():
                log.warn("{line}", line=line.decode("utf-8", "replace"))

    def processEnded(self, reason) -> None:
        self.owner._ended(self, reason)
        self.ended.callback(None)


class _Reports:
    """The runner's reports on their way to the monitor: a probe runc could
    not start fails with dockerd's message for such an exec."""

    def __init__(self, owner: "ProbeRunnerProcess") -> None:
        self.owner = owner
        self.monitor = None

    def __getattr__(self, name):
        return getattr(self.monitor, name)

    def failed(self, key: int, start: int, end: int, message: str) -> None:
        entrypoint = self.owner._entrypoints.get(key)
        if entrypoint is not None:
            message = str(start_error(runc_message(message), entrypoint)[1])
        self.monitor.failed(key, start, end, message)


@implementer(IProbeRunner)
class ProbeRunnerProcess:
    """The probe runner beside the daemon.

    C{execs} is the exec backend (it makes a probe's OCI process);
    C{runc} and C{state_root} are runc's binary and C{--root};
    C{directory} is the runner's own (the probes' process and pid files)."""

    def __init__(
        self,
        reactor,
        execs,
        *,
        runc: str,
        state_root: str,
        directory: str,
        python: str = sys.executable,
        restart_delay: float = RESTART_DELAY,
    ) -> None:
        self.reactor = reactor
        self.execs = execs
        self.runc = runc
        self.state_root = state_root
        self.directory = directory
        self.python = python
        self.restart_delay = restart_delay
        self.reports = _Reports(self)
        #: Each watched run's W line, None while its process is being made.
        self._plans: Dict[int, Optional[bytes]] = {}
        #: The entrypoint of each run whose probes runc starts (none for a
        #: run whose process could not be made: its error is the message).
        self._entrypoints: Dict[int, str] = {}
        self._protocol: Optional[_RunnerProtocol] = None
        self._running = False
        self._restart = None
        self._stopping = False
        self.starts = 0

    def report_to(self, reports) -> None:
        self.reports.monitor = reports

    # -- the process ----------------------------------------------------------

    def argv(self) -> List[str]:
        return [
            self.python, "-S", "-m", "twistedock.backend.proberunner",
            self.directory, self.runc, "--root", self.state_root,
        ]  # fmt: skip

    def pid(self) -> Optional[int]:
        """The runner's pid while it runs."""
        if self._protocol is None or self._protocol.transport is None:
            return None
        return self._protocol.transport.pid

    def _start(self) -> None:
        if self._protocol is not None or self._stopping:
            return
        root = os.path.dirname(os.path.dirname(os.path.abspath(twistedock.__file__)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = root
        protocol = self._protocol = _RunnerProtocol(self)
        self.starts += 1
        try:
            self.reactor.spawnProcess(protocol, self.python, self.argv(), env=env, childFDs={0: "w", 1: "r", 2: "r"})
        except OSError as e:
            log.error("cannot start the probe runner: {e}", e=e)
            self._protocol = None
            self._schedule_restart()

    def _connected(self, protocol: _RunnerProtocol) -> None:
        self._running = True
        lines = [line for line in self._plans.values() if line is not None]
        if lines:
            protocol.transport.write(b"".join(lines))

    def _ended(self, protocol: _RunnerProtocol, reason) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        self._running = False
        if self._stopping:
            return
        log.warn("the probe runner ended ({why}); starting it again", why=reason.getErrorMessage())
        self._schedule_restart()

    def _schedule_restart(self) -> None:
        if self._restart is None or not self._restart.active():
            self._restart = self.reactor.callLater(self.restart_delay, self._restarted)

    def _restarted(self) -> None:
        self._restart = None
        if self._plans:
            self._start()

    def _send(self, line: bytes) -> None:
        if self._running and self._protocol is not None:
            self._protocol.transport.write(line)
        else:
            self._start()

    # -- IProbeRunner -----------------------------------------------------------

    def watch(self, key: int, c, command: List[str], plan: dict) -> None:
        self._plans[key] = None
        plan = dict(plan, key=key, container=c.id)
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.execs.probe_process, c, command)

        def made(process) -> None:
            if key in self._plans:
                self._entrypoints[key] = command[0]
                self._ready(key, dict(plan, process=process))

        def not_made(failure) -> None:
            # As an exec whose process cannot be made: each probe fails so.
            if key in self._plans:
                message = failure.getErrorMessage()
                self._ready(key, dict(plan, process=None, error=message))

        d.addCallbacks(made, not_made)
        d.addErrback(lambda f: log.failure("probes of {id}", f, id=c.id[:12]))

    def _ready(self, key: int, plan: dict) -> None:
        line = b"W " + json.dumps(plan, separators=(",", ":")).encode("utf-8") + b"\n"
        self._plans[key] = line
        self._send(line)

    def unwatch(self, key: int) -> None:
        line = self._plans.pop(key, None)
        self._entrypoints.pop(key, None)
        if line is not None and self._running:
            self._protocol.transport.write(b"U %d\n" % key)

    def stop(self) -> Deferred:
        """Close the runner's stdin (it kills what it runs and ends); kill
        it if it takes too long."""
        self._stopping = True
        self._plans.clear()
        self._entrypoints.clear()
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        protocol = self._protocol
        if protocol is None:
            return succeed(None)
        protocol.transport.closeStdin()
        timer = self.reactor.callLater(STOP_TIMEOUT, self._kill, protocol)

        def ended(_):
            if timer.active():
                timer.cancel()

        return protocol.ended.addCallback(ended)

    def _kill(self, protocol: _RunnerProtocol) -> None:
        try:
            protocol.transport.signalProcess("KILL")
        except Exception:
            pass
