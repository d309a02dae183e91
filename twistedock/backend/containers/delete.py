"""Remove a container, as moby's daemon/delete.go."""

import os
import shutil
import signal as signals


from ...errors import Conflict
from .record import Container


class DeleteMixin:
    """The delete part of L{ContainerBackend}."""

    async def remove(self, ref, force, volumes) -> None:
        c = self.get(ref)
        if force:
            await self._settled(c)
        if c.state.running and not c.state.restarting:
            if not force:
                if c.state.paused:
                    raise Conflict(
                        "You cannot remove a paused container %s. Unpause and then stop the "
                        "container before attempting removal or force remove" % (c.id,)
                    )
                raise Conflict(
                    "You cannot remove a running container %s. Stop the container before "
                    "attempting removal or force remove" % (c.id,)
                )
            exited = self._next_exit(c)
            c.manually_stopped = True
            await self._signal(c, signals.SIGKILL)
            self.log_event(c, "kill", signal=int(signals.SIGKILL))
            await exited
        if c.id not in self.containers:
            return
        await self._remove(c)

    async def _remove(self, c: Container) -> None:
        self._cancel_restart(c)
        c.state.removing = True
        c.state.running = c.state.restarting = False
        self.containers.pop(c.id, None)
        self.names.pop(c.name, None)
        if self._runs.pop(c.id, None) is not None:
            # A run not yet wound up by _finish_run (which deletes it itself).
            try:
                await self.runtime.delete(c.id, force=True)
            except Exception:
                pass
        saving = self._save_locks.pop(c.id, None)
        if saving is not None:
            # Let a record write in flight land before its directory goes.
            await saving.acquire()
            saving.release()
        paths = self.overlay(c)
        await self.run_in_thread(self.mounts.unmount, paths["MergedDir"])
        for directory in (c.directory, os.path.dirname(paths["UpperDir"]), self.bundle(c)):
            await self.run_in_thread(shutil.rmtree, directory, True)
        self._locks.pop(c.id, None)
        self._restart_delay.pop(c.id, None)
        self.log_event(c, "destroy")
        self._notify(self._exit_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})
        self._notify(self._removed_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})
