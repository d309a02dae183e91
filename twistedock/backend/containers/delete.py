"""Remove a container, as moby's daemon/delete.go."""

import os
import shutil
import signal as signals

from ...deferreds import cancel_quietly
from ...errors import Conflict, DockerError
from .record import Container


class DeleteMixin:
    """The delete part of L{ContainerBackend}."""

    async def remove(self, ref, force, volumes) -> None:
        c = self.get(ref)
        if force:
            await self._settled(c)
        if c.state.running:
            if not force:
                procedure = "Stop the container before attempting removal or force remove"
                if c.state.paused:
                    procedure = "Unpause and then " + procedure[0].lower() + procedure[1:]
                raise Conflict(
                    "You cannot remove a %s container %s. %s" % (c.state.status, c.id, procedure)
                )
            c.manually_stopped = True
            if c.state.restarting:
                await self._end_restarting(c)
            else:
                exited = self._next_exit(c)
                try:
                    await self._signal(c, signals.SIGKILL)
                except DockerError:
                    cancel_quietly(exited)
                    raise
                await exited
        if c.id not in self.containers:
            return
        await self._remove(c, volumes)

    async def _remove(self, c: Container, volumes: bool = False) -> None:
        """Remove the container; with C{volumes} its anonymous volumes too."""
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
        await self.network_down(c)
        paths = self.overlay(c)
        await self.run_in_thread(self.mounts.unmount, paths["MergedDir"])
        for directory in (c.directory, os.path.dirname(paths["UpperDir"]), self.bundle(c)):
            await self.run_in_thread(shutil.rmtree, directory, True)
        self._locks.pop(c.id, None)
        self._restart_delay.pop(c.id, None)
        await self.release_volumes(c, remove_anonymous=volumes)
        self.log_event(c, "destroy")
        self._notify(self._exit_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})
        self._notify(self._removed_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})
