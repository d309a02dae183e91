"""
Stop, kill and restart: signals to a container's process, as moby's
daemon/stop.go, kill.go and restart.go.
"""

import signal as signals

from twisted.internet.defer import CancelledError

from ...errors import Conflict, DockerError, NotFound, NotModified
from ...logs import Logger
from .. import spec
from .defaults import DEFAULT_STOP_TIMEOUT
from .record import Container

log = Logger()


class StopMixin:
    """The stop part of L{ContainerBackend}."""

    async def _signal(self, c: Container, number: int) -> None:
        await self.runtime.kill(c.id, number, all=False)
        if c.state.paused and number in (signals.SIGKILL, signals.SIGTERM):
            # A frozen process only acts on the signal once thawed.
            await self.runtime.resume(c.id)

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
            self._cancel_restart(c)
            c.state.running = c.state.restarting = False
            await self.save(c)
            self._notify(self._exit_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})
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
            self.log_event(c, "kill", signal=number)
        except DockerError as e:
            log.warn("stop signal to {id}: {e}", id=c.short_id, e=e)
        if timeout >= 0:
            timer = self.reactor.callLater(timeout, exited.cancel)
            try:
                await exited
                return
            except CancelledError:
                pass
            finally:
                if timer.active():
                    timer.cancel()
            exited = self._next_exit(c)
            try:
                await self._signal(c, signals.SIGKILL)
                self.log_event(c, "kill", signal=int(signals.SIGKILL))
            except DockerError:
                pass
        await exited

    async def kill(self, ref, signal) -> None:
        try:
            c = self.get(ref)
        except NotFound as e:
            raise NotFound("Cannot kill container: %s: %s" % (ref, e))
        await self._settled(c)
        number = spec.parse_signal(signal) if signal else int(signals.SIGKILL)
        if not c.state.running or c.state.restarting:
            raise Conflict(
                "Cannot kill container: %s: Container %s is not running" % (ref, c.id)
            )
        c.manually_stopped = True
        await self.save(c)
        exited = self._next_exit(c) if number == signals.SIGKILL else None
        await self._signal(c, number)
        self.log_event(c, "kill", signal=number)
        if exited is not None:
            # dockerd returns once a SIGKILLed container is gone.
            await exited

    async def restart(self, ref, signal, timeout) -> None:
        c = self.get(ref)
        await self._settled(c)
        if c.state.running:
            await self._stop(c, signal, timeout, manual=True)
        async with self.lock(c):
            c.manually_stopped = False
            self._cancel_restart(c)
            c.state.restarting = False
            c.state.running = False
            await self._run(c)
        self.log_event(c, "restart")
