"""
Pause and unpause (the cgroup freezer through runc), as moby's
daemon/pause.go and unpause.go.
"""

from ...errors import Conflict, InternalError
from ...logs import Logger

log = Logger()


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
            try:
                await self.runtime.pause(c.id)
            except BaseException:
                await self.reconcile_one(c, "pause")
                raise
            try:
                await self.save_changed(c, lambda r: setattr(r.state, "paused", True))
            except BaseException:
                # Not recorded: not paused either.
                await self._undo_quietly(self.runtime.resume, c)
                raise
            self._tell("run_paused", c)
        self.log_event(c, "pause")

    async def unpause(self, ref) -> None:
        c = self.get(ref)
        async with self.lock(c):
            if not c.state.paused:
                # dockerd's plain error: a 500.
                raise InternalError("Container %s is not paused" % (c.id,))
            try:
                await self.runtime.resume(c.id)
            except BaseException:
                await self.reconcile_one(c, "resume")
                raise
            try:
                await self.save_changed(c, lambda r: setattr(r.state, "paused", False))
            except BaseException:
                await self._undo_quietly(self.runtime.pause, c)
                raise
            self._tell("run_resumed", c)
        self.log_event(c, "unpause")

    async def _undo_quietly(self, action, c) -> None:
        try:
            await action(c.id)
        except Exception as e:
            log.warn("undoing a change of {id}: {e}", id=c.short_id, e=e)
