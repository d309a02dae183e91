"""
Start: one run set up (overlay, /etc files, OCI bundle) and handed to
conmon, a checkpoint restored instead when asked, as moby's daemon/start.go.
"""

import json
import os
from typing import Dict

from twisted.internet.defer import ensureDeferred

from ... import golang
from ...atomic import write_atomic
from ...errors import Conflict, DockerError, InternalError, InvalidParameter, NotModified
from ...logs import Logger
from .. import spec
from ..runtime import rootfs
from .defaults import CHECKPOINTED_MARK
from .attach import _closes_stdin
from .monitor import Run
from .networking import settled
from .record import Container, State

log = Logger()


class StartMixin:
    """The start part of L{ContainerBackend}."""

    async def start(self, ref, checkpoint: str = "", checkpoint_dir: str = "") -> None:
        if checkpoint and self.checkpoints is None:
            raise InvalidParameter("checkpoint is only supported in experimental mode")
        c = self.get(ref)
        async with self.lock(c):
            if c.state.paused:
                raise Conflict("cannot start a paused container, try unpause instead")
            # A restarting container is running to dockerd: 304, and its
            # restart goes on.
            if c.state.running:
                raise NotModified("Container is already started")
            if c.state.removing:
                raise Conflict("container is marked for removal and cannot be started")
            restore = None
            if checkpoint:
                restore = await self.checkpoints.restore_plan(c, checkpoint, checkpoint_dir)
            try:
                os.unlink(c.path_of(CHECKPOINTED_MARK))
                # runc's state of the checkpointed run may have been kept
                # (a dump over CRIU's RPC): gone before runc creates or
                # restores, reused by a restore over the RPC.
                stale_runtime = True
            except FileNotFoundError:
                stale_runtime = False
            # dockerd's ResetRestartManager: a manual start counts afresh.
            self._cancel_restart(c)
            self._restart_delay.pop(c.id, None)
            c.restart_count = 0
            c.manually_stopped = False
            try:
                await self._run(c, restore=restore, stale_runtime=stale_runtime)
            except Exception:
                # As dockerd: a --rm container that cannot start is removed
                # (docker run waits for that).
                if c.host_config.get("AutoRemove"):
                    await self._remove(c, volumes=True)
                raise

    async def _start_logged(self, c: Container) -> None:
        try:
            async with self.lock(c):
                if c.id not in self.containers or (c.state.running and not c.state.restarting):
                    return
                await self._run(c)
        except Exception as e:
            log.error("cannot restart container {id}: {e}", id=c.short_id, e=e)

    async def _run(self, c: Container, restore=None, stale_runtime: bool = False) -> None:
        """Set up and start one run; on failure leave the container exited.
        With C{restore} (a L{checkpoints.RestorePlan}) conmon restores the
        checkpoint instead of creating the container afresh: through runc,
        or, when the plan allows it, through CRIU's RPC with CRIU run by
        conmon (L{CriuDriver.restore_session}).  C{stale_runtime}: runc may
        still know the previous run (kept after a checkpoint)."""
        self.images.get(c.image_id)  # (its image must still be here)
        paths = self.overlay(c)
        bundle = self.bundle(c)
        try:
            self._check_network(c)
            await self._prepare_bundle(c, paths, bundle, restore)
        except DockerError as e:
            await self._failed_start(c, e)
            raise
        except OSError as e:
            await self._failed_start(c, e)
            raise InternalError(str(e))
        try:
            try:
                os.unlink(os.path.join(self.exit_dir, c.id))
            except FileNotFoundError:
                pass
            run = Run(self.reactor.seconds())
            self._runs[c.id] = run
            logged = (c.host_config.get("LogConfig") or {}).get("Type") != "none"
            log_path = c.log_path if logged else "/dev/null"
            await self.intend_start(c)
            if restore is not None:
                await restore.prepare(bundle)
            session = None
            if restore is not None and stale_runtime:
                session = await self.run_in_thread(
                    restore.rpc_session, c.id, bundle, paths["MergedDir"], c.tty, golang.rfc3339_nano(self.now())
                )
            if stale_runtime and session is None:
                try:
                    await self.runtime.delete(c.id, force=True)
                except DockerError:
                    pass
            arguments = restore.create_arguments() if restore is not None else {}
            if session is not None:
                arguments.update(session.conmon_options())
            created = ensureDeferred(self.runtime.create(
                c.id,
                bundle,
                log_path=log_path,
                exit_dir=self.exit_dir,
                socket_dir=self.socket_dir,
                terminal=c.tty,
                stdin=bool(c.config.get("OpenStdin")),
                leave_stdin_open=bool(c.config.get("OpenStdin")) and not _closes_stdin(c),
                socket_name=c.id[:12],
                **arguments,
            ))
            if session is not None:
                # conmon runs CRIU (our shim as its runtime): its questions
                # are answered while conmon waits for it.
                restored = ensureDeferred(session.start())
                try:
                    await restored
                except DockerError:
                    created.addErrback(lambda f: None)
                    raise
                finally:
                    session.close()
            pid = await created
            await self._connect_pending(c, run)
            if restore is None:
                await self.runtime.start(c.id)
        except DockerError as e:
            if restore is not None:
                restore.abort()
                e = restore.failed(e, bundle)
            e = _runtime_start_error(e)
            await self._failed_start(c, e)
            raise e
        except OSError as e:
            if restore is not None:
                restore.abort()
            await self._failed_start(c, e)
            raise InternalError(str(e))
        if restore is not None:
            restore.started(lambda: self.runtime.kill(c.id, "KILL"))
        c.state = State(
            running=True,
            pid=pid,
            started_at=self.now(),
            finished_at=c.state.finished_at,
            health=c.state.health,
        )
        self._tell("run_started", c)
        try:
            await self.save(c)
        except DockerError as e:
            await self.undo_start(c)
            raise e
        await self.clear_intent(c)
        self.log_event(c, "start")
        self._watch(c)

    async def _prepare_bundle(self, c: Container, paths: Dict[str, str], bundle: str, restore=None) -> None:
        """The run's root filesystem mounted, its /etc files written, its
        OCI bundle made (adjusted by C{restore} to restore a checkpoint)."""
        # The network set up (netavark) while the root filesystem is mounted.
        network = ensureDeferred(self.network_up(c))
        try:
            await self.run_in_thread(rootfs.make_init_layer, self.init_layer(c))
            await self.run_in_thread(
                self.mounts.mount, self.layer_dirs(c), paths["UpperDir"], paths["WorkDir"], paths["MergedDir"]
            )
        except BaseException:
            await settled(network)
            raise
        hc = c.host_config
        own_hosts = await network
        await self.run_in_thread(
            rootfs.write_etc_files,
            c.directory,
            c.config.get("Hostname", ""),
            c.config.get("Domainname", ""),
            hc.get("NetworkMode", "default"),
            own_hosts + self.extra_hosts(c),
            hc.get("Dns") or self.dns_servers(c),
            hc.get("DnsSearch"),
            hc.get("DnsOptions"),
        )
        await self.run_in_thread(_create_bind_sources, hc)
        volumes = await self.mount_volumes(c)
        inputs = await self.run_in_thread(spec.gather_inputs, c.config, hc, {}, paths["MergedDir"])
        oci = spec.build_spec(
            container_id=c.id,
            config=c.config,
            host_config=hc,
            image_config={},
            rootfs=paths["MergedDir"],
            hostname_path=c.path_of("hostname"),
            hosts_path=c.path_of("hosts"),
            resolv_conf_path=c.path_of("resolv.conf"),
            netns_path=self.joined_netns(c),
            inputs=inputs,
            init_path=self.init_path,
            volumes=volumes,
        )
        await self.run_in_thread(_write_bundle, bundle, oci, restore)

    async def _connect_pending(self, c: Container, run: Run) -> None:
        """Join the clients that attached before the run began."""
        for attachment in self._pending_attach.pop(c.id, []):
            try:
                await attachment.connect()
                run.attached.append(attachment)
            except Exception as e:
                log.warn("attach to {id} failed: {e}", id=c.short_id, e=e)
                attachment.stream.close()

    async def _failed_start(self, c: Container, error) -> None:
        """The run that could not start undone; the container exited with
        the runtime's code for it (L{_runtime_start_error}), else 128."""
        message = str(error)
        code = getattr(error, "start_exit_code", 128)
        self._runs.pop(c.id, None)
        try:
            await self.runtime.delete(c.id, force=True)
        except Exception:
            pass
        await self.run_in_thread(self.mounts.unmount, self.overlay(c)["MergedDir"])
        await self.unmount_volumes(c)
        await self.network_down(c)
        c.state.running = False
        c.state.restarting = False
        c.state.pid = 0
        c.state.exit_code = code
        c.state.error = message
        if c.id in self.containers:
            await self.save_or_log(c)
        await self.clear_intent(c)
        for attachment in self._pending_attach.pop(c.id, []):
            attachment.stream.close()


def _runtime_start_error(error: DockerError) -> DockerError:
    """The runtime's create or start error as dockerd's
    translateContainerdStartErr answers it: a missing file or command 127
    and a refused one 126, both 400; a directory mounted onto a file (or
    the reverse) 127 and explained; anything else as it is, 128.  Errors
    before the runtime (the spec's) are dockerd's System errors: 128, their
    own status."""
    text = error.message
    lowered = text.lower()
    code = None
    if any(s in lowered for s in (
        "executable file not found", "no such file or directory",
        "system cannot find the file specified", "failed to run runc create/exec call",
    )):
        code = 127
    if "permission denied" in lowered:
        code = 126
    if "not a directory" in lowered:
        text += (
            ": Are you trying to mount a directory onto a file (or vice-versa)? "
            "Check if the specified host path exists and is the expected type"
        )
        code = 127
    if code is None:
        error.start_exit_code = 128
        return error
    translated = InvalidParameter(text)
    translated.start_exit_code = code
    return translated


def _create_bind_sources(host_config: dict) -> None:
    """As dockerd's mount point setup: a Binds source missing on the host is
    made, root's, mode 0755 (a HostConfig.Mounts bind is refused instead)."""
    for source in spec.missing_bind_sources(host_config):
        os.makedirs(source, mode=0o755, exist_ok=True)


def _write_bundle(bundle: str, oci: dict, restore=None) -> None:
    os.makedirs(bundle, mode=0o700, exist_ok=True)
    if restore is not None:
        restore.adjust_spec(oci, bundle)
    write_atomic(os.path.join(bundle, "config.json"), json.dumps(oci, indent=1).encode(), mode=0o600)
