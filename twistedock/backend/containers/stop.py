"""
Stop, kill and restart: signals to a container's process, as moby's
daemon/stop.go, kill.go and restart.go.
"""

import signal as signals

from twisted.internet.defer import CancelledError

from ...deferreds import cancel_quietly
from ...errors import Conflict, DockerError, InternalError, NotFound, NotModified
from ...logs import Logger
from .. import spec
from .defaults import DEFAULT_STOP_TIMEOUT
from .record import Container

log = Logger()

#: How long the exit a SIGKILL causes is awaited before runc is asked what
#: became of the container (dockerd waits as long, then answers an error).
KILL_EXIT_TIMEOUT = 10.0


class StopMixin:
    """The stop part of L{ContainerBackend}."""

    async def _signal(self, c: Container, number: int, announce: bool = True) -> None:
        """Send signal C{number} to the container's process 1 and log the
        kill, as dockerd's killWithSignal: a process already gone (its exit
        not yet handled) is no error, and a paused container is thawed when
        the signal is meant to end it (a frozen process only acts on it once
        thawed); a thaw that fails because the process is gone (runc thaws
        for a SIGKILL itself) is no error either.  C{announce}: log the
        kill (and the thaw) as events."""
        unpause = c.state.paused and self._ends(c, number)
        try:
            await self.runtime.kill(c.id, number, all=False)
        except DockerError as e:
            # A process gone whose end nobody will report is recorded
            # exited here (the waiters of its exit told).
            await self.reconcile_one(c, "kill")
            if not isinstance(e, (Conflict, NotFound)):
                raise
            log.debug("signal {n} to {id}: {e}", n=number, id=c.short_id, e=e)
            unpause = False
        resumed = False
        if unpause:
            try:
                await self.runtime.resume(c.id)
                resumed = True
            except DockerError as e:
                log.warn("Cannot unpause container {id}: {e}", id=c.id, e=e)
        if announce:
            self.log_event(c, "kill", signal=number)
        if resumed and c.state.paused and c.state.running:
            c.state.paused = False
            self._tell("run_resumed", c)
            await self.save(c)
            if announce:
                self.log_event(c, "unpause")

    @staticmethod
    def _ends(c: Container, number: int) -> bool:
        """Whether signal C{number} is meant to end the container: SIGKILL,
        its stop signal, or any signal when it has none (dockerd's rule)."""
        stop_signal = c.config.get("StopSignal")
        return number == signals.SIGKILL or not stop_signal or spec.parse_signal(stop_signal) == number

    async def _killed(self, c: Container, exited) -> None:
        """Await C{exited}, the end of the run a SIGKILL was sent to, for at
        most L{KILL_EXIT_TIMEOUT}: a process gone whose end nobody reports
        (its conmon died) is then found and recorded by L{reconcile_one};
        one that still runs is dockerd's error."""
        if await self._exited_within(exited, KILL_EXIT_TIMEOUT):
            return
        log.warn("no exit reported for {id} after SIGKILL: asking runc", id=c.short_id)
        await self.reconcile_one(c, "kill", code=137)
        if c.state.running and not c.state.restarting and self.by_id(c.id) is c:
            raise InternalError("tried to kill container, but did not receive an exit event")

    async def _exited_within(self, exited, seconds: float) -> bool:
        """Whether C{exited} fired within C{seconds} (cancelled if not)."""
        timer = self.reactor.callLater(seconds, exited.cancel)
        try:
            await exited
            return True
        except CancelledError:
            return False
        finally:
            if timer.active():
                timer.cancel()

    async def _end_restarting(self, c: Container) -> None:
        """A restarting container (its process gone, its restart pending)
        is stopped where it is: the restart cancelled, its state exited."""
        self._cancel_restart(c)
        c.state.running = c.state.restarting = False
        await self.save(c)
        self._notify(self._exit_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})

    async def _settled(self, c: Container) -> None:
        """Wait until no operation holds the container (a start, a
        checkpoint): a signal must not reach a process being dumped."""
        lock = self.lock(c)
        if lock.locked:
            await lock.acquire()
            lock.release()

    async def stop(self, ref, signal, timeout) -> None:
        c = self.get(ref)
        await self._settled(c)
        if not c.state.running:
            raise NotModified("Container already stopped")
        await self._stop(c, signal, timeout, manual=True)
        self.log_event(c, "stop")

    async def _stop(self, c: Container, signal, timeout, manual: bool) -> None:
        if manual:
            c.manually_stopped = True
        if c.state.restarting:
            await self._end_restarting(c)
            return
        if manual:
            await self.save(c)
        number = spec.parse_signal(signal or c.config.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            if timeout is None:
                timeout = DEFAULT_STOP_TIMEOUT
        exited = self._next_exit(c)
        try:
            await self._signal(c, number)
        except DockerError as e:
            log.warn("stop signal to {id}: {e}", id=c.short_id, e=e)
        if timeout >= 0:
            if await self._exited_within(exited, timeout):
                return
            exited = self._next_exit(c)
            try:
                await self._signal(c, signals.SIGKILL)
            except DockerError as e:
                log.warn("SIGKILL to {id}: {e}", id=c.short_id, e=e)
            await self._killed(c, exited)
            return
        await exited

    async def kill(self, ref, signal) -> None:
        try:
            c = self.get(ref)
        except NotFound as e:
            raise NotFound("Cannot kill container: %s: %s" % (ref, e))
        await self._settled(c)
        number = spec.parse_signal(signal) if signal else int(signals.SIGKILL)
        if not c.state.running:
            raise Conflict(
                "Cannot kill container: %s: Container %s is not running" % (ref, c.id)
            )
        c.manually_stopped = True
        if c.state.restarting:
            # As dockerd: no signal to send; one meant to end the container
            # cancels its restart.
            if self._ends(c, number):
                await self._end_restarting(c)
            else:
                await self.save(c)
            return
        await self.save(c)
        exited = self._next_exit(c) if number == signals.SIGKILL else None
        try:
            await self._signal(c, number)
        except DockerError:
            if exited is not None:
                cancel_quietly(exited)
            raise
        if exited is not None:
            # dockerd returns once a SIGKILLed container is gone.
            await self._killed(c, exited)

    async def restart(self, ref, signal, timeout) -> None:
        c = self.get(ref)
        await self._settled(c)
        if c.state.running:
            await self._stop(c, signal, timeout, manual=True)
            self.log_event(c, "stop")
        async with self.lock(c):
            c.manually_stopped = False
            # As dockerd's start with its restart manager reset.
            c.restart_count = 0
            self._cancel_restart(c)
            c.state.restarting = False
            c.state.running = False
            await self._run(c)
        self.log_event(c, "restart")
