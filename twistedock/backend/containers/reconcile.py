"""
The records and the host made to agree after a crash: what runc knows
(C{runc list} under the daemon's runc root, the conmon of each container),
the overlay mounts under the data root and the directories and temporary
files the daemon leaves while it works, compared with the containers'
records when the daemon starts (L{ReconcileMixin.reconcile_before} before the
running containers are recovered, L{ReconcileMixin.reconcile_after} after).

A start writes its intent first (L{STARTING_MARK} in the container's
directory, before conmon runs C{runc create}), so that recovery knows
a runc container may exist although the record does not say running.
"""

import errno
import os
import re
import shutil
from typing import Dict, Iterable, List

import attr
from twisted.internet.defer import DeferredLock

from ...atomic import write_atomic
from ...errors import InternalError
from ...logs import Logger
from ..runtime import rootfs
from .record import Container, State
from .record import load as load_record

log = Logger()

#: The intent of a start, written before C{runc create}, removed once the
#: record says how the start ended.
STARTING_MARK = "starting"
#: A removed container's directory, renamed so before it is deleted: the
#: rename is the point where the removal is durable.
REMOVED_PREFIX = ".removed-"
#: Temporary files the daemon writes beside a container's record, and
#: what a crash may leave of them.
TEMP_NAMES = re.compile(r"^(\.tmp-.*|.*\.tmp)$")
FULL_ID = re.compile(r"^[0-9a-f]{64}$")
SHORT_ID = re.compile(r"^[0-9a-f]{12}$")
#: A checkpoint being dumped (renamed to its name once complete).
CHECKPOINT_TEMP_PREFIX = ".tmp-"
CHECKPOINT_METADATA = "checkpoint.json"
#: How long recovery waits for an exit it caused (a SIGKILL) before it
#: settles the container itself.
RECOVERY_EXIT_TIMEOUT = 30.0
#: The runtime calls that freeze or thaw a container (a CRIU dump freezes
#: it while it dumps).
FREEZER_CALLS = ("pause", "resume", "checkpoint")


def save_error(c: Container, error: OSError) -> InternalError:
    """The clear message a write that failed answers (the disk full, EIO)."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        reason = "no space left on device"
    return InternalError("cannot save the state of container %s: %s" % (c.short_id, reason))


def remove_path(path: str) -> None:
    """Remove C{path}: a directory with what it holds, a file or a symbolic
    link itself (never what it points to); nothing when it is not there.
    Blocking: run it in a thread."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def remove_temp_files(directory: str) -> List[str]:
    """Remove what a crash left of the daemon's temporary files in a
    container's directory (C{.tmp-*}, C{hostname.tmp}, ...)."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if TEMP_NAMES.match(name):
            path = os.path.join(directory, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def partial_checkpoints(base: str) -> List[str]:
    """The checkpoints under C{base} (a container's own checkpoint
    directory) that were never completed: dumps still under their temporary
    name, and directories without their L{CHECKPOINT_METADATA}."""
    try:
        names = os.listdir(base)
    except OSError:
        return []
    partial = []
    for name in names:
        path = os.path.join(base, name)
        if not os.path.isdir(path):
            continue
        if name.startswith(CHECKPOINT_TEMP_PREFIX) or not os.path.exists(os.path.join(path, CHECKPOINT_METADATA)):
            partial.append(path)
    return partial


def sweep_record_dirs(containers_dir: str) -> None:
    """Before the records are read: finish removals a crash interrupted
    (L{REMOVED_PREFIX} directories), remove temporary files beside the
    records and partial checkpoints.  Blocking: run in a thread."""
    for name in os.listdir(containers_dir):
        path = os.path.join(containers_dir, name)
        if name.startswith(REMOVED_PREFIX) or (name.startswith(".tmp-")):
            shutil.rmtree(path, ignore_errors=True)
            if os.path.lexists(path) and not os.path.isdir(path):
                os.unlink(path)
            continue
        if not os.path.isdir(path):
            continue
        for removed in remove_temp_files(path):
            log.info("removed temporary file {path}", path=removed)
        for partial in partial_checkpoints(os.path.join(path, "checkpoints")):
            log.info("removed partial checkpoint {path}", path=partial)
            shutil.rmtree(partial, ignore_errors=True)


def orphans(directory: str, known: Iterable[str], pattern=FULL_ID) -> List[str]:
    """The entries of C{directory} named as a container ID that no known
    container has."""
    known = set(known)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if pattern.match(n) and n not in known]


class ReconcileMixin:
    """The reconcile part of L{ContainerBackend}."""

    # -- the intent of a start ---------------------------------------------

    async def intend_start(self, c: Container) -> None:
        """Mark that a start is under way, before C{runc create}.  Not
        synced: the mark speaks of processes, which a power loss ends
        together with runc's knowledge of them, while a crash of the
        daemon alone loses nothing written (it is in the page cache); and
        it lies on the path of every start and restore (two fsyncs: 3-7
        ms measured here)."""
        try:
            await self.run_in_thread(write_atomic, c.path_of(STARTING_MARK), b"", 0o600, False)
        except OSError as e:
            raise save_error(c, e)

    async def clear_intent(self, c: Container) -> None:
        """The record now says how the start ended."""
        try:
            await self.run_in_thread(os.unlink, c.path_of(STARTING_MARK))
        except OSError:
            pass

    async def undo_start(self, c: Container) -> None:
        """A run whose start could not be recorded (the disk full) is
        undone: its process killed and deleted, its overlay unmounted, its
        state in memory the one on disk again."""
        self._tell("run_ended", c)
        run = self._runs.pop(c.id, None)
        if run is not None and run.exit_watch is not None:
            run.exit_watch.cancel()
        await self.runtime_delete_quietly(c)
        await self.unmount_run(c)
        try:
            durable = await self.run_in_thread(load_record, c.directory)
        except Exception:
            durable = None
        c.state = durable.state if durable is not None else State()
        c.state.running = c.state.paused = c.state.restarting = False
        c.state.pid = 0
        await self.clear_intent(c)
        if run is not None:
            for attachment in run.attached:
                if not attachment.done.called:
                    attachment.done.callback(None)

    # -- saves that must not stop the work -----------------------------------

    async def save_changed(self, c: Container, change) -> None:
        """A change visible only once durable: C{change} (a function of a
        record) applied to a copy of C{c}, the copy saved, then C{change}
        applied to C{c}; when the save fails C{c} is unchanged."""
        lock = self._save_locks.setdefault(c.id, DeferredLock())
        await lock.acquire()
        try:
            copy = attr.evolve(c, state=attr.evolve(c.state))
            change(copy)
            try:
                await self.run_in_thread(write_atomic, copy.record_path, copy.record_bytes(), 0o600)
            except OSError as e:
                raise save_error(c, e)
            change(c)
        finally:
            lock.release()

    async def save_or_log(self, c: Container) -> bool:
        """Save the record; a failure (the disk full) is logged, not raised:
        for an exit recorded or recovery, where the runtime's own state says
        what happened and the next start of the daemon settles it again."""
        try:
            await self.save(c)
            return True
        except Exception as e:
            log.error("cannot save the record of {id}: {e}", id=c.short_id, e=e)
            return False

    async def runtime_delete_quietly(self, c: Container) -> None:
        try:
            await self.runtime.delete(c.id, force=True)
        except Exception as e:
            log.debug("runc delete {id}: {e}", id=c.short_id, e=e)

    # -- at start-up -----------------------------------------------------------

    async def runc_containers(self) -> Dict[str, str]:
        """runc's containers under the daemon's root: ID -> status."""
        listing = getattr(self.runtime, "list_containers", None)
        if listing is None:
            return {}
        try:
            entries = await listing()
        except Exception as e:
            log.warn("runc list: {e}", e=e)
            return {}
        return {e.get("id"): e.get("status", "") for e in entries if isinstance(e, dict) and e.get("id")}

    async def forget_runc(self, container_id: str, bundle: str) -> None:
        """Kill what runs of a container runc knows but the daemon does not
        keep (its conmon first), and have runc forget it."""
        await self.run_in_thread(self.runtime.kill_conmon, bundle)
        try:
            await self.runtime.delete(container_id, force=True)
        except Exception as e:
            log.warn("runc delete {id}: {e}", id=container_id[:12], e=e)

    async def reconcile_before(self) -> None:
        """Once the records are read, before the running ones are recovered:
        runc's containers the records do not know are deleted; a start a
        crash interrupted (L{STARTING_MARK}) is either a running container
        (recovered as the others: re-adopted under --live-restore, stopped
        without) or deleted; a running container whose conmon is gone
        (nobody would report its exit) is deleted, then recorded exited."""
        listed = await self.runc_containers()
        for container_id, status in sorted(listed.items()):
            c = self.containers.get(container_id)
            bundle = os.path.join(self.exec_root, container_id)
            if c is None:
                log.info("deleting unknown runc container {id}", id=container_id[:12])
                await self.forget_runc(container_id, bundle)
                continue
            alive = await self.run_in_thread(self.runtime.conmon_alive, bundle)
            starting = os.path.exists(c.path_of(STARTING_MARK))
            if c.state.running:
                if starting and status == "created":
                    # A restart (its policy's) interrupted before runc start.
                    log.info("deleting runc container {id} never started", id=c.short_id)
                    await self.forget_runc(container_id, bundle)
                elif alive is False and status in ("running", "paused", "created"):
                    log.info("conmon of {id} is gone: deleting it", id=c.short_id)
                    await self.forget_runc(container_id, bundle)
                continue
            if status in ("running", "paused") and alive is not False and starting:
                # Started, but the daemon died before it said so.
                state = await self.runtime.state(container_id)
                log.info("container {id} was started when the daemon died", id=c.short_id)
                c.state.running = True
                c.state.paused = status == "paused"
                c.state.restarting = False
                c.state.pid = int((state or {}).get("pid") or 0)
                c.state.started_at = self.now()
                continue
            log.info("deleting runc container {id} its record does not run", id=c.short_id)
            await self.forget_runc(container_id, bundle)
        for c in self.containers.values():
            if os.path.exists(c.path_of(STARTING_MARK)):
                if c.state.running:
                    await self.save_or_log(c)
                await self.clear_intent(c)

    async def reconcile_after(self) -> None:
        """Once the containers are recovered: overlay and shareable /dev/shm
        mounts of containers that do not run unmounted; layers, bundles and attach sockets of
        containers the daemon does not know removed."""
        known = set(self.containers)
        running = {i for i, c in self.containers.items() if c.state.running}
        listing = getattr(self.mounts, "mounted_under", None) or rootfs.mounted_under
        busy = set()
        for target in await self.run_in_thread(listing, self.layers_dir):
            relative = os.path.relpath(target, self.layers_dir).split(os.sep)
            if len(relative) != 2 or relative[1] != "merged" or not FULL_ID.match(relative[0]):
                continue
            if relative[0] in running:
                continue
            try:
                await self.run_in_thread(self.mounts.unmount, target)
                log.info("unmounted {target} (no run of it)", target=target)
            except OSError as e:
                busy.add(relative[0])
                log.warn("unmount {target}: {e}", target=target, e=e)
        for c in list(self.containers.values()):
            if not c.state.running:
                # A shareable /dev/shm a crash left mounted (idempotent).
                await self.ipc_down(c)
        for path in orphans(self.layers_dir, known | busy) + orphans(self.exec_root, known):
            log.info("removing orphaned {path}", path=path)
            await self.run_in_thread(shutil.rmtree, path, True)
        for name in os.listdir(self.layers_dir):
            if name.startswith((".import-", ".tmp-")):
                await self.run_in_thread(shutil.rmtree, os.path.join(self.layers_dir, name), True)
        shorts = {i[:12] for i in known}
        # conmon's links to bundles and its exit files, of containers gone.
        for path in orphans(self.socket_dir, shorts, SHORT_ID) + orphans(self.exit_dir, known):
            try:
                await self.run_in_thread(remove_path, path)
            except OSError as e:
                log.warn("removing {path}: {e}", path=path, e=e)

    # -- after a failed runtime call -------------------------------------------

    async def reconcile_one(self, c: Container, after: str, code: int = 255) -> None:
        """After a runtime call for C{c} failed (C{after} names it, for the
        log): runc's state of it, its conmon and its overlay mount compared
        with its record, and the two brought into agreement:

          - the record does not run it (a start that failed, a run over):
            runc forgets it (its conmon killed first), its overlay is
            unmounted, and after a failed start its bundle is removed;
          - the record runs it, but its process is gone (or unsupervised:
            its conmon died) and no exit file says so: what is left is
            deleted and the run ended as an exit conmon reported would end
            it: with C{code} (255: unknown; 137 when a SIGKILL was sent),
            137 when it was killed here;
          - after a call that freezes or thaws (L{FREEZER_CALLS}), the
            record runs it and runc's freezer says otherwise: the change
            the failed call made is undone, or, when that fails too, the
            record takes runc's view.

        Never raises: what it cannot mend is logged, and the next start of
        the daemon tries again.  The caller holds the container's lock, or
        is alone in acting on it."""
        try:
            await self._reconcile_one(c, after, code)
        except Exception:
            log.failure("reconciling {id} after a failed {after}", id=c.short_id, after=after)

    async def _reconcile_one(self, c: Container, after: str, code: int) -> None:
        if self.containers.get(c.id) is not c:
            return  # removed meanwhile: the removal owns what is left
        state = await self.runtime.state(c.id)
        status = (state or {}).get("status")
        bundle = self.bundle(c)
        if not c.state.running or c.state.restarting:
            if status is not None:
                log.info("runc still has {id} ({status}) after a failed {after}: deleting it",
                         id=c.short_id, status=status, after=after)
                await self.forget_runc(c.id, bundle)
            await self.run_in_thread(self.mounts.unmount, self.overlay(c)["MergedDir"])
            if after == "start" and not c.state.running:
                for path in (bundle, os.path.dirname(self.attach_socket(c))):
                    await self.run_in_thread(remove_path, path)
            return
        alive = await self.run_in_thread(self.runtime.conmon_alive, bundle)
        if status in ("created", "running", "paused") and alive is not False:
            # (Only the calls that freeze or thaw: after a kill, a thawed
            # process may be one runc thawed to let a SIGKILL end it.)
            frozen = status == "paused"
            if after in FREEZER_CALLS and status != "created" and frozen != bool(c.state.paused):
                await self._agree_paused(c, frozen, after)
            return
        if alive:
            return  # the process ended: its conmon writes the exit file
        if self.runtime.exit_code(self.exit_dir, c.id) is not None:
            return  # written: the exit watcher reports it
        if status is not None:
            if status != "stopped":
                # Runs with nobody to report its end: ended here.
                code = 137
            await self.runtime_delete_quietly(c)
        log.warn("{id} ended unreported (found after a failed {after}): recorded exited {code}",
                 id=c.short_id, after=after, code=code)
        run = self._runs.get(c.id)
        if run is not None and run.exit_watch is not None and not run.exit_watch.called:
            run.exit_watch.cancel()
        await self.finish_run(c, code)

    async def _agree_paused(self, c: Container, paused: bool, after: str) -> None:
        """runc's freezer says C{paused}, the record the opposite."""
        undo = self.runtime.resume if paused else self.runtime.pause
        try:
            await undo(c.id)
            log.info("{id} {what} after a failed {after}, as its record says",
                     id=c.short_id, what="thawed" if paused else "frozen again", after=after)
            return
        except Exception as e:
            log.warn("{id}: cannot undo what a failed {after} did: {e}", id=c.short_id, after=after, e=e)
        await self.save_changed(c, lambda r: setattr(r.state, "paused", paused))
        self._tell("run_paused" if paused else "run_resumed", c)
