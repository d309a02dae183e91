"""
A run's end: the exit recorded, waiters told, the restart policy applied, as
moby's daemon/monitor.go and restartmanager.
"""

from typing import Dict, List, Optional

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred

from ...errors import NotFound
from ...logs import Logger
from .defaults import RESTART_DELAY, RESTART_DELAY_MAX, RESTART_RESET_AFTER
from .record import Container

log = Logger()


class Run:
    """What belongs to one run of a container (from start to exit)."""

    def __init__(self, started: float = 0.0) -> None:
        #: When it began, on the reactor's clock (the restart back-off
        #: starts again after a run that lasted long enough).
        self.started = started
        self.exit_watch: Optional[Deferred] = None
        self.attached: list = []
        #: The run ends because it was checkpointed (not a crash): no
        #: restart policy applies to its exit.
        self.checkpointed = False
        #: runc's state of the run (and its cgroups) kept after its exit:
        #: a dump over CRIU's RPC restores into them.
        self.keep_runtime = False


class MonitorMixin:
    """The monitor part of L{ContainerBackend}."""

    def _watch(self, c: Container) -> None:
        run = self._runs.get(c.id)
        d = self.exits.wait(c.id)
        if run is not None:
            run.exit_watch = d

        def exited(code):
            return ensureDeferred(self._exited(c, code))

        d.addCallback(exited)
        d.addErrback(lambda f: None if f.check(CancelledError) else log.failure("exit of {id}", f, id=c.short_id))

    async def _exited(self, c: Container, code: int) -> None:
        async with self.lock(c):
            if c.id not in self.containers or not c.state.running or c.state.restarting:
                return
            await self.finish_run(c, code)

    async def unmount_run(self, c: Container, keep_rootfs: bool = False) -> None:
        """The run's root filesystem (unless C{keep_rootfs}), volumes and
        shareable /dev/shm unmounted (a failure logged)."""
        if not keep_rootfs:
            try:
                await self.run_in_thread(self.mounts.unmount, self.overlay(c)["MergedDir"])
            except OSError as e:
                log.warn("unmount {id}: {e}", id=c.short_id, e=e)
        await self.unmount_volumes(c)
        await self.ipc_down(c)

    async def unmount_kept(self) -> None:
        """The root filesystems kept mounted after checkpoints (L{finish_run})
        of containers that did not run again, unmounted (the daemon stops;
        else the start-up sweep would)."""
        kept, self._kept_rootfs = self._kept_rootfs, set()
        for container_id in sorted(kept):
            c = self.containers.get(container_id)
            if c is None or c.state.running:
                continue
            try:
                await self.run_in_thread(self.mounts.unmount, self.overlay(c)["MergedDir"])
            except OSError as e:
                log.warn("unmount {id}: {e}", id=c.short_id, e=e)

    async def finish_run(self, c: Container, code: int, boot: bool = False) -> None:
        """The run is over: record how it ended, then apply the restart policy."""
        run = self._runs.pop(c.id, None)
        self._tell("run_ended", c)
        # The network torn down meanwhile (netavark is the slowest step).
        network = ensureDeferred(self.network_down(c))
        oom = False
        try:
            oom = bool(self.runtime.oom_killed(self.bundle(c), c.id))
        except Exception:
            pass
        keep = run is not None and run.checkpointed and run.keep_runtime
        deleted = True
        try:
            if not keep:
                await self.runtime.delete(c.id, force=True)
        except NotFound:
            pass  # (a checkpoint's end: runc has forgotten it already)
        except Exception as e:
            log.warn("runc delete {id}: {e}", id=c.short_id, e=e)
            deleted = False
        # A checkpointed run's root filesystem stays mounted for the restore
        # (or start) that follows: overlayfs syncs its upper file system when
        # unmounted, where the images were just dumped (up to ~300 ms for 256
        # MiB), and the restore mounts it again. A removal, a reconcile, the
        # shutdown (L{unmount_kept}) or the start-up sweep unmount it.
        keep_rootfs = run is not None and run.checkpointed and not boot
        await self.unmount_run(c, keep_rootfs=keep_rootfs)
        if keep_rootfs:
            self._kept_rootfs.add(c.id)
        await network
        c.state.running = False
        c.state.paused = False
        c.state.pid = 0
        c.state.exit_code = code
        c.state.oom_killed = oom
        c.state.finished_at = self.now()
        restart = not boot and not (run is not None and run.checkpointed) and self._should_restart(c)
        if restart:
            c.state.running = True
            c.state.restarting = True
        # A record that cannot be written (the disk full) must not keep the
        # exit from its waiters: runc and conmon's exit file say it again at
        # the next start.
        await self.save_or_log(c)
        if not deleted:
            # Recorded over: runc must not keep it (nor its conmon).
            await self.reconcile_one(c, "delete")
        if self.execs is not None:
            await self.execs.container_stopped(c)
        if oom:
            self.log_event(c, "oom")
        self.log_event(c, "die", exitCode=code)
        self._notify(self._exit_waiters, c, {"StatusCode": code, "Error": None})
        if run is not None:
            for attachment in run.attached:
                if not attachment.done.called:
                    attachment.done.callback(None)
        if restart:
            self._schedule_restart(c, run)
        elif c.host_config.get("AutoRemove") and not boot:
            await self._remove(c, volumes=True)

    def _notify(self, table, c: Container, result) -> None:
        for waiter in table.pop(c.id, []):
            if not waiter.called:
                waiter.callback(dict(result))

    def _waiter(self, table: Dict[str, List[Deferred]], c: Container) -> Deferred:
        """A Deferred in C{table} that L{_notify} fires; cancelling it
        forgets it."""
        waiters = table.setdefault(c.id, [])

        def cancel(d):
            if d in waiters:
                waiters.remove(d)

        d = Deferred(cancel)
        waiters.append(d)
        return d

    def _next_exit(self, c: Container) -> Deferred:
        """Fires with C{{"StatusCode", "Error"}} when the current run ends."""
        return self._waiter(self._exit_waiters, c)

    def _should_restart(self, c: Container, boot: bool = False) -> bool:
        if self.shutting_down:
            return False
        policy = c.restart_policy
        name = policy["Name"]
        if name in ("always", "unless-stopped"):
            if boot and name == "unless-stopped" and c.manually_stopped:
                return False
            return not c.manually_stopped or (boot and name == "always")
        if name == "on-failure":
            if c.manually_stopped or c.state.exit_code == 0:
                return False
            maximum = policy["MaximumRetryCount"]
            return maximum == 0 or c.restart_count < maximum
        return False

    def _schedule_restart(self, c: Container, run: Optional[Run]) -> None:
        lasted = self.reactor.seconds() - run.started if run is not None else 0
        delay = self._restart_delay.get(c.id, 0)
        if lasted >= RESTART_RESET_AFTER or not delay:
            delay = RESTART_DELAY
        else:
            delay = min(delay * 2, RESTART_DELAY_MAX)
        self._restart_delay[c.id] = delay
        c.restart_count += 1
        ensureDeferred(self.save_or_log(c))

        def restart():
            self._restart_timers.pop(c.id, None)
            ensureDeferred(self._start_logged(c))

        self._restart_timers[c.id] = self.reactor.callLater(delay, restart)

    def _cancel_restart(self, c: Container) -> None:
        timer = self._restart_timers.pop(c.id, None)
        if timer is not None and timer.active():
            timer.cancel()
