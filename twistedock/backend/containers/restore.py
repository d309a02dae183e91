"""
Recovery when the daemon starts (records read, running containers re-adopted
or settled) and what it does when it stops, as moby's daemon/restore.
"""

import os
import shutil
import signal as signals

from twisted.internet.defer import CancelledError, ensureDeferred, gatherResults

from ...logs import Logger
from ..runtime import rootfs
from .defaults import CHECKPOINTED_MARK, IMPORT_PENDING_MARK, LAZY_PENDING_MARK
from .monitor import Run
from .record import Container
from .record import load as load_record
from .reconcile import RECOVERY_EXIT_TIMEOUT, sweep_record_dirs

log = Logger()


class RestoreMixin:
    """The restore part of L{ContainerBackend}."""

    async def load(self) -> None:
        """Read every container's record; re-adopt or settle the running ones."""
        self.exits.start()
        await self.run_in_thread(sweep_record_dirs, self.containers_dir)
        for entry in sorted(os.listdir(self.containers_dir)):
            directory = os.path.join(self.containers_dir, entry)
            try:
                c = load_record(directory)
            except (ValueError, KeyError, TypeError) as e:
                log.error("unreadable container record in {dir}: {e}", dir=directory, e=e)
                continue
            if c is None:
                # Created but never recorded: the daemon died inside create.
                await self.run_in_thread(shutil.rmtree, directory, True)
                continue
            self.containers[c.id] = c
            self.names[c.name] = c.id
            self.restore_volumes(c)
            # Containers made before init layers existed get theirs (export
            # and diff mount and compare with it).
            try:
                await self.run_in_thread(rootfs.make_init_layer, self.init_layer(c))
            except OSError as e:
                log.warn("init layer of {id}: {e}", id=c.short_id, e=e)
        try:
            await self.reconcile_before()
        except Exception:
            log.failure("reconciling the records with runc")
        for c in list(self.containers.values()):
            try:
                await self._recover(c)
            except Exception:
                log.failure("recovering container {id}", id=c.id)
        try:
            await self.reconcile_after()
        except Exception:
            log.failure("removing what no container owns")
        try:
            await self.sweep_networks()
        except Exception:
            log.failure("removing the network state no container owns")
        await self._reconcile_pending_imports()
        for c in list(self.containers.values()):
            if c.state.running or os.path.exists(c.path_of(CHECKPOINTED_MARK)):
                continue
            if self._should_restart(c, boot=True):
                ensureDeferred(self._start_logged(c))

    async def _reconcile_pending_imports(self) -> None:
        """Containers of prepared checkpoint imports (L{IMPORT_PENDING_MARK})
        whose restore never happened are removed: their migration died
        before it (the source still has the container, running or
        checkpointed).  One that runs was restored and is kept."""
        for c in list(self.containers.values()):
            mark = c.path_of(IMPORT_PENDING_MARK)
            if not os.path.exists(mark):
                continue
            try:
                if c.state.running:
                    await self.run_in_thread(os.unlink, mark)
                    continue
                log.info("removing {id}, prepared for an import that never came", id=c.short_id)
                await self._remove(c, volumes=True)
            except Exception:
                log.failure("removing the prepared import {id}", id=c.short_id)

    async def _recover(self, c: Container) -> None:
        c.state.removing = False
        if not c.state.running:
            return
        code = self.runtime.exit_code(self.exit_dir, c.id)
        state = await self.runtime.state(c.id)
        alive = state is not None and state.get("status") in ("running", "paused") and code is None
        # A copy restored from a lazy checkpoint whose pages had not all
        # arrived is not kept, even with live restore.
        lazy_pending = os.path.exists(os.path.join(self.bundle(c), LAZY_PENDING_MARK))
        if alive and self.live_restore and not lazy_pending:
            log.info("re-adopting running container {id}", id=c.short_id)
            c.state.paused = state.get("status") == "paused"
            c.state.restarting = False
            self._runs[c.id] = Run(self.reactor.seconds())
            self._watch(c)
            self.reopen_ports(c)
            if not c.state.paused:
                self._tell("run_started", c)
            await self.save_or_log(c)
            return
        if alive:
            # Without live restore the daemon does not keep what it did not
            # stop: stop it now; its policy decides whether it runs again.
            log.info("stopping container {id} left running{why}", id=c.short_id,
                     why=" (its lazy pages never all arrived)" if lazy_pending else "")
            self._runs[c.id] = Run(self.reactor.seconds())
            d = self._next_exit(c)
            self._watch(c)
            try:
                await self._signal(c, signals.SIGKILL, announce=False)
            except Exception as e:
                log.warn("SIGKILL to {id}: {e}", id=c.short_id, e=e)
            # The exit is awaited, but not for ever: a conmon that died
            # would never report it.
            timer = self.reactor.callLater(RECOVERY_EXIT_TIMEOUT, d.cancel)
            try:
                await d
            except CancelledError:
                log.warn("no exit reported for {id}: settled as killed", id=c.short_id)
                await self.runtime_delete_quietly(c)
                if c.state.running and c.id in self.containers:
                    await self.finish_run(c, 137, boot=True)
            finally:
                if timer.active():
                    timer.cancel()
            return
        if c.state.restarting:
            c.state.running = c.state.restarting = False
            await self.save_or_log(c)
            return
        await self.finish_run(c, code if code is not None else 255, boot=True)

    async def shutdown(self) -> None:
        """Stop what runs (unless live restore keeps it), as dockerd does."""
        self.shutting_down = True
        for timer in self._restart_timers.values():
            if timer.active():
                timer.cancel()
        self._restart_timers.clear()
        if self.live_restore:
            self._tell("shutdown")
            self.exits.stop()
            await self.unmount_kept()
            return
        running = [c for c in self.containers.values() if c.state.running]
        await gatherResults(
            [ensureDeferred(self._stop(c, None, None, manual=False)) for c in running],
            consumeErrors=True,
        ).addErrback(lambda f: log.failure("stopping containers", f))
        self.exits.stop()
        await self.unmount_kept()
