"""
Pause and unpause (the cgroup freezer through runc), as moby's
daemon/pause.go and unpause.go.
"""

from ...errors import Conflict, InternalError


class PauseMixin:
    """The pause part of L{ContainerBackend}."""

    async def pause(self, ref) -> None:
        c = self.get(ref)
        async with self.lock(c):
            if not c.state.running:
                raise Conflict("Container %s is not running" % (c.id,))
            if c.state.paused:
                raise Conflict("Container %s is already paused" % (c.id,))
            if c.state.restarting:
                raise Conflict("Container %s is restarting, wait until the container is running" % (c.id,))
            await self.runtime.pause(c.id)
            c.state.paused = True
            self._tell("run_paused", c)
            await self.save(c)
        self.log_event(c, "pause")

    async def unpause(self, ref) -> None:
        c = self.get(ref)
        async with self.lock(c):
            if not c.state.paused:
                # dockerd's plain error: a 500.
                raise InternalError("Container %s is not paused" % (c.id,))
            await self.runtime.resume(c.id)
            c.state.paused = False
            self._tell("run_resumed", c)
            await self.save(c)
        self.log_event(c, "unpause")
