"""Remove a container, as moby's daemon/delete.go."""

import os
import signal as signals

from ...atomic import fsync_dir
from ...deferreds import cancel_quietly
from ...errors import Conflict, DockerError, InternalError, NotFound
from .reconcile import REMOVED_PREFIX, remove_path
from .record import Container


class DeleteMixin:
    """The delete part of L{ContainerBackend}."""

    async def remove(self, ref, force, volumes, link: bool = False) -> None:
        if link:
            # (dockerd finds "parent/alias" as the linked container's name.)
            return await self.remove_link(ref)
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
                await self._killed(c, exited)
        if c.id not in self.containers:
            return
        await self._remove(c, volumes)

    async def _remove(self, c: Container, volumes: bool = False) -> None:
        """Remove the container; with C{volumes} its anonymous volumes too.

        Gone means gone: runc has deleted it (its processes killed), its
        overlay is unmounted, then its record directory is renamed away (the
        point where the removal is durable: a crash after it finishes the
        removal at the next start) and its directories deleted.  A failure
        before that point leaves the container as it was and is the
        answer; one after it is the answer too, what is left being
        collected at the next start."""
        self._cancel_restart(c)
        was_removing = c.state.removing
        c.state.removing = True
        c.state.running = c.state.restarting = False
        self._runs.pop(c.id, None)
        paths = self.overlay(c)
        self._kept_rootfs.discard(c.id)
        try:
            try:
                await self.runtime.delete(c.id, force=True)
            except NotFound:
                pass
            except DockerError as e:
                await self.reconcile_one(c, "delete")
                raise InternalError(
                    "Could not kill running container %s, cannot remove - %s" % (c.id, e.message)
                )
            try:
                await self.run_in_thread(self.mounts.unmount, paths["MergedDir"])
            except OSError as e:
                raise InternalError("unable to remove filesystem for %s: %s" % (c.id, e))
            await self.unmount_volumes(c)
            await self.ipc_down(c)
            await self.network_down(c)
        except Exception:
            c.state.removing = was_removing
            raise
        self.containers.pop(c.id, None)
        self.names.pop(c.name, None)
        saving = self._save_locks.pop(c.id, None)
        if saving is not None:
            # Let a record write in flight land before its directory goes.
            await saving.acquire()
            saving.release()
        trash = os.path.join(self.containers_dir, REMOVED_PREFIX + c.id)
        try:
            await self.run_in_thread(_rename_if_there, c.directory, trash)
        except OSError as e:
            self.containers[c.id] = c
            self.names[c.name] = c.id
            c.state.removing = was_removing
            raise InternalError("unable to remove container %s: %s" % (c.id, e))
        self._locks.pop(c.id, None)
        self._restart_delay.pop(c.id, None)
        failed = []
        for path in (
            trash,
            os.path.dirname(paths["UpperDir"]),
            self.bundle(c),
            # (conmon's link to the bundle, and its exit file.)
            os.path.dirname(self.attach_socket(c)),
            os.path.join(self.exit_dir, c.id),
        ):
            try:
                await self.run_in_thread(remove_path, path)
            except OSError as e:
                failed.append("%s: %s" % (path, e.strerror or e))
        await self.release_volumes(c, remove_anonymous=volumes)
        self.log_event(c, "destroy")
        self._notify(self._exit_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})
        self._notify(self._removed_waiters, c, {"StatusCode": c.state.exit_code, "Error": None})
        if failed:
            raise InternalError("unable to remove filesystem for %s: %s" % (c.id, "; ".join(failed)))


def _rename_if_there(source: str, target: str) -> None:
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return
    fsync_dir(os.path.dirname(target))

