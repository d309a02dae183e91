"""
Start: one run set up (overlay, /etc files, OCI bundle) and handed to
conmon, a checkpoint restored instead when asked, as moby's daemon/start.go.
"""

import json
import os
from typing import Dict, Optional

import attr

from twisted.internet.defer import ensureDeferred

from ... import golang
from ...atomic import write_atomic
from ...errors import Conflict, DockerError, InternalError, InvalidParameter, NotModified
from ...logs import Logger
from .. import spec
from ..runtime import rootfs
from ..runtime.criudriver import restorable_state
from .defaults import CHECKPOINTED_MARK, IMPORT_PENDING_MARK, PREPARED_MARK, mark, unmark
from .attach import _closes_stdin
from .monitor import Run
from .networking import settled
from .record import Container, State

log = Logger()


class StartMixin:
    """The start part of L{ContainerBackend}."""

    #: Whether a start from a checkpoint makes runc's state for a restore
    #: over CRIU's RPC when none is there (else runc restores): measured
    #: here, an imported checkpoint's start took some 60 ms more that way
    #: (network none) or 25 ms more (bridge, the state made while the
    #: network comes up) than through runc restore; prepared ahead
    #: (L{prepare_restore}), about as long as runc restore or less.
    prepare_restore_at_start = True

    async def start(self, ref, checkpoint: str = "", checkpoint_dir: str = "") -> Optional[dict]:
        """(See L{IContainerBackend.start}: C{"Resumed"} is told for a
        restore over CRIU's RPC.)"""
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
            # runc's state of the checkpointed run may have been kept (a
            # dump over CRIU's RPC), or made ahead of a restore
            # (L{prepare_restore}): gone before runc creates or restores,
            # reused by a restore over the RPC.
            stale_runtime = prepared = False
            for mark in (CHECKPOINTED_MARK, PREPARED_MARK):
                try:
                    os.unlink(c.path_of(mark))
                    stale_runtime = True
                    prepared = prepared or mark == PREPARED_MARK
                except FileNotFoundError:
                    pass
            # dockerd's ResetRestartManager: a manual start counts afresh.
            self._cancel_restart(c)
            self._restart_delay.pop(c.id, None)
            c.restart_count = 0
            c.manually_stopped = False
            try:
                resumed = await self._run(c, restore=restore, stale_runtime=stale_runtime, prepared=prepared)
            except Exception:
                # As dockerd: a --rm container that cannot start is removed
                # (docker run waits for that).
                if c.host_config.get("AutoRemove"):
                    await self._remove(c, volumes=True)
                raise
            finally:
                if restore is not None:
                    restore.release()
        return {"Resumed": resumed} if resumed is not None else None

    async def _start_logged(self, c: Container) -> None:
        try:
            async with self.lock(c):
                if c.id not in self.containers or (c.state.running and not c.state.restarting):
                    return
                await self._run(c)
        except Exception as e:
            log.error("cannot restart container {id}: {e}", id=c.short_id, e=e)

    async def _run(self, c: Container, restore=None, stale_runtime: bool = False,
                   prepared: bool = False) -> Optional[float]:
        """Set up and start one run; on failure leave the container exited.
        With C{restore} (a L{restoreplan.RestorePlan}) conmon restores the
        checkpoint instead of creating the container afresh: through runc,
        or, when the plan allows it, through CRIU's RPC with CRIU run by
        conmon (L{CriuDriver.restore_session}).  C{stale_runtime}: runc may
        still know the previous run (kept after a checkpoint).
        C{prepared}: L{prepare_restore} made this run's runc state and
        network namespace (a restore's conmon and CRIU are then started
        before its bundle is made: L{_restorer_ahead}).  A restore over
        CRIU's RPC returns when (C{time.monotonic}) its tasks ran again."""
        self.images.get(c.image_id)  # (its image must still be here)
        paths = self.overlay(c)
        bundle = self.bundle(c)
        # (A checkpointed run's root filesystem, still mounted, is reused.)
        self._kept_rootfs.discard(c.id)
        early = None
        try:
            _check_log_driver(c)
            self._check_network(c)
            self.check_joins(c)
            if restore is not None and prepared:
                early = await self._restorer_ahead(c, restore, bundle, paths["MergedDir"])
            await self._prepare_bundle(c, paths, bundle, restore, prepared=prepared)
        except DockerError as e:
            await _abandon_before_request(early, restore)
            await self._failed_start(c, e)
            raise
        except OSError as e:
            await _abandon_before_request(early, restore)
            await self._failed_start(c, e)
            raise InternalError(str(e))
        # runc's state for a restore over CRIU's RPC, made (when it is not
        # there) while the network comes up.
        preparing = session = None
        fetching = early.fetching if early is not None else None
        if restore is not None and early is None:
            preparing = ensureDeferred(self._restore_state(c, restore, bundle, paths["MergedDir"]))
        try:
            if early is None:
                run = await self._begin_run(c)
            else:
                run = early.run
            if restore is not None:
                # A restored process runs at once: its network first.
                await self._network_ready(c)
                # A lazy checkpoint's fetcher (C{criu lazy-pages}) starts
                # meanwhile (with conmon, when they started ahead): a
                # restore over the RPC needs it only once its request is
                # sent (L{RestoreSession.start}), after conmon started
                # CRIU; runc's restore at once.
                if fetching is None:
                    fetching = ensureDeferred(restore.prepare(bundle))
            if early is not None:
                session, created = early.session, early.created
            else:
                session = None
                if preparing is not None and await preparing:
                    stale_runtime = True
                if restore is not None and stale_runtime:
                    try:
                        session = await self.run_in_thread(
                            restore.rpc_session, c.id, bundle, paths["MergedDir"], c.tty,
                            golang.rfc3339_nano(self.now()),
                        )
                    except (OSError, ValueError, KeyError) as e:
                        log.warn("restoring {id} through runc: {e}", id=c.short_id, e=e)
                if stale_runtime and session is None:
                    try:
                        await self.runtime.delete(c.id, force=True)
                    except DockerError:
                        pass
                if fetching is not None and session is None:
                    await fetching
                created = self._create(c, bundle, restore, session)
            if session is not None:
                # conmon runs CRIU (our shim as its runtime): its questions
                # are answered while conmon waits for it.
                restored = ensureDeferred(session.start(ready=fetching))
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
                # netavark's setup overlapped the bundle and `runc create`;
                # the process runs once its network is there.
                await self._network_ready(c)
                await self.runtime.start(c.id)
        except _NetworkFailed as failed:
            # The network's error as it is, not the runtime's translation.
            _abandon(early)
            if preparing is not None:
                await settled(preparing)
            if fetching is not None:
                await settled(fetching)
                restore.abort()
            await self._failed_start(c, failed.error)
            raise failed.error
        except DockerError as e:
            _abandon(early)
            for pending in (preparing, fetching):
                if pending is not None:
                    await settled(pending)
            if restore is not None:
                restore.abort()
                e = restore.failed(e, bundle)
            e = _runtime_start_error(e)
            await self._failed_start(c, e)
            raise e
        except OSError as e:
            _abandon(early)
            for pending in (preparing, fetching):
                if pending is not None:
                    await settled(pending)
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
        if restore is not None:
            # A prepared import restored: no longer to be removed at the
            # next daemon start (recorded running first, then unmarked).
            await self.run_in_thread(unmark, c.path_of(IMPORT_PENDING_MARK))
        await self.clear_intent(c)
        self.log_event(c, "start")
        self._watch(c)
        return session.resumed if session is not None else None

    async def _begin_run(self, c: Container) -> Run:
        """The run registered and the start's intent marked, before conmon."""
        await self.run_in_thread(unmark, os.path.join(self.exit_dir, c.id))
        run = Run(self.reactor.seconds())
        self._runs[c.id] = run
        await self.intend_start(c)
        return run

    def _create(self, c: Container, bundle: str, restore, session):
        """conmon spawned to create the run's container, or to restore it
        (through runc, or as CRIU's parent with C{session}): a Deferred
        firing with its pid (L{Runtime.create})."""
        logged = (c.host_config.get("LogConfig") or {}).get("Type") != "none"
        arguments = restore.create_arguments(bundle) if restore is not None else {}
        if session is not None:
            arguments.update(session.conmon_options())
        created = ensureDeferred(self.runtime.create(
            c.id,
            bundle,
            log_path=c.log_path if logged else "/dev/null",
            exit_dir=self.exit_dir,
            socket_dir=self.socket_dir,
            terminal=c.tty,
            stdin=bool(c.config.get("OpenStdin")),
            leave_stdin_open=bool(c.config.get("OpenStdin")) and not _closes_stdin(c),
            socket_name=c.id[:12],
            **arguments,
        ))
        if session is not None:
            # A conmon that could not be spawned leaves CRIU's end to us.
            created.addErrback(_released, session)
        return created

    async def _restorer_ahead(self, c: Container, restore, bundle: str, root: str) -> Optional["_Ahead"]:
        """(A start from a checkpoint of a container L{prepare_restore}
        prepared.)  conmon, and through it CRIU, started before the run's
        bundle is made, when the restore goes over CRIU's RPC into the
        prepared state and network (L{network_kept}): their start (some
        10 ms of execs and loading) overlaps the root filesystem's mount,
        the /etc files and the spec, and CRIU waits for its request
        (L{RestoreSession.start}) until they are done.  None: made after
        the bundle, as any start."""
        try:
            session = await self.run_in_thread(self._session_ahead, c, restore, bundle, root,
                                               golang.rfc3339_nano(self.now()))
        except (OSError, ValueError, KeyError) as e:
            log.warn("restoring {id} through runc: {e}", id=c.short_id, e=e)
            return None
        if session is None:
            return None
        try:
            run = await self._begin_run(c)
        except BaseException:
            session.close()
            raise
        created = self._create(c, bundle, restore, session)
        # The kernel's wait before CRIU places the restored task (some 15
        # ms from now) begins, and a lazy checkpoint's C{criu lazy-pages}
        # starts, while conmon and CRIU start and the bundle is made
        # (RestorePlan.prepare): after the bundle they would come too late.
        fetching = ensureDeferred(restore.prepare(bundle))
        return _Ahead(run, session, created, fetching)

    def _session_ahead(self, c: Container, restore, bundle: str, root: str, now: str):
        """(In a thread.)  L{_restorer_ahead}'s restore session, or None."""
        if not self.network_kept(c) or self._restore_state_ready(c, restore, root) is not True:
            return None
        return restore.rpc_session(c.id, bundle, root, c.tty, now)

    # -- runc's state for a restore over CRIU's RPC ----------------------------

    async def prepare_restore(self, ref, checkpoint: str = "", checkpoint_dir: str = "") -> bool:
        """Ahead of a C{start --checkpoint} of a container that is not
        running (a migration's target, created before the source freezes):
        runc's state of a stopped container made for it (L{Runtime.create_stopped}:
        its cgroups, limits and device rules set, as runc restore would
        make them), so that the restore goes over CRIU's RPC without that
        work.  Idempotent: True when the state is there (made now or
        before), False when the restore will go through runc anyway (no
        RPC, a terminal, the checkpoint's pages not all here) or the state
        could not be made (logged).  C{checkpoint}, when given (and
        C{checkpoint_dir}), is checked too.

        The run's root filesystem, volumes, /dev/shm and bare network
        namespace are set up for C{runc create} and undone after: what
        stays is runc's state and cgroups, as after a dump over the RPC
        (a start deletes them when it does not restore, a removal and the
        daemon's reconciliation after a crash delete them)."""
        if self.checkpoints is None:
            raise InvalidParameter("checkpoint is only supported in experimental mode")
        c = self.get(ref)
        async with self.lock(c):
            if c.state.running:
                raise Conflict("container %s is running" % (c.name.lstrip("/"),))
            if c.state.removing:
                raise Conflict("container is marked for removal")
            plan = None
            if checkpoint:
                plan = await self.checkpoints.restore_plan(c, checkpoint, checkpoint_dir)
            paths = self.overlay(c)
            bundle = self.bundle(c)
            ready = await self.run_in_thread(self._restore_state_ready, c, plan, paths["MergedDir"])
            if ready is not None:
                return ready
            self.images.get(c.image_id)
            try:
                self._check_network(c)
                self.check_joins(c)
                await self._prepare_bundle(c, paths, bundle, bare_network=True)
                made = await self._make_restore_state(c, bundle)
            except (DockerError, OSError) as e:
                log.warn("cannot prepare {id} for a restore over CRIU's RPC: {e}", id=c.short_id, e=e)
                made = False
            finally:
                await self.unmount_run(c)
                await self._bare_netns_down(c)
            if made:
                await self.run_in_thread(mark, c.path_of(PREPARED_MARK))
            return made

    def _restore_state_ready(self, c: Container, plan, root: str):
        """(In a thread.)  True: runc's state to restore into is there;
        False: the restore cannot go over the RPC; None: to be made (any
        state runc has of C{c} that is not usable deleted first by
        L{_make_restore_state})."""
        rpc = self.checkpoints.rpc if self.checkpoints is not None else None
        if plan is not None and not plan.over_rpc(c.tty):
            return False
        if rpc is None or not rpc.available() or c.tty:
            return False
        state = restorable_state(rpc.state_root, c.id)
        if state is not None and (state.get("config") or {}).get("rootfs") == root:
            return True
        return None

    async def _restore_state(self, c: Container, restore, bundle: str, root: str) -> bool:
        """(In a start, its bundle made.)  Whether runc's state for a
        restore over CRIU's RPC is there, made now when it is not (and
        L{prepare_restore_at_start})."""
        ready = await self.run_in_thread(self._restore_state_ready, c, restore, root)
        if ready is not None:
            return ready
        if not self.prepare_restore_at_start:
            return False
        return await self._make_restore_state(c, bundle)

    async def _make_restore_state(self, c: Container, bundle: str) -> bool:
        """runc's stopped container made for the run's bundle (whatever
        runc knew of C{c} deleted first); False (logged) when it cannot be."""
        try:
            await self.runtime.delete(c.id, force=True)
        except DockerError:
            pass
        started = self.reactor.seconds()
        try:
            await self.runtime.create_stopped(c.id, bundle)
        except DockerError as e:
            log.warn("restoring {id} through runc: cannot prepare runc's state: {e}", id=c.short_id, e=e)
            return False
        log.info("runc's state of {id} prepared for a restore over CRIU's RPC in {ms:.0f} ms",
                 id=c.short_id, ms=(self.reactor.seconds() - started) * 1000)
        return True

    async def _bare_netns_up(self, c: Container) -> None:
        """Only the run's network namespace, where the spec names one (no
        endpoint, no port): what C{runc create} joins.  Off the bridge
        networks, the namespace the run will have (its loopback up),
        kept for the start (L{network_up} with C{prepared})."""
        path = self.joined_netns(c) if self.networks is not None else None
        if path and path == self.netns_path(c):
            await self.networks.driver.remove_netns(path)
            await self.networks.driver.create_netns(path)
            if not self._bridged(c):
                await self.networks.driver.loopback_up(path)

    async def _bare_netns_down(self, c: Container) -> None:
        if self.networks is not None and self._bridged(c):
            try:
                await self.networks.driver.remove_netns(self.netns_path(c))
            except Exception as e:
                log.warn("network namespace of {id}: {e}", id=c.short_id, e=e)

    async def _network_ready(self, c: Container) -> None:
        try:
            await self.network_ready(c)
        except DockerError as e:
            raise _NetworkFailed(e)

    async def _prepare_bundle(self, c: Container, paths: Dict[str, str], bundle: str, restore=None,
                              bare_network: bool = False, prepared: bool = False) -> None:
        """The run's root filesystem mounted, its /etc files written, its
        OCI bundle made (adjusted by C{restore} to restore a checkpoint).
        C{bare_network}: its network namespace only (L{prepare_restore});
        C{prepared}: as L{network_up}'s."""
        # The network set up (netavark) while the root filesystem is mounted.
        if bare_network:
            network = ensureDeferred(self._bare_netns_up(c)).addCallback(lambda _: [])
        else:
            network = ensureDeferred(self.network_up(c, prepared))
        try:
            # (One trip to a thread: each is a wait for a core on a busy host.)
            await self.run_in_thread(_mount_rootfs, self.mounts, self.init_layer(c), self.layer_dirs(c), paths)
        except BaseException:
            await settled(network)
            raise
        hc = c.host_config
        own_hosts = await network
        if not self.adopt_network_files(c):
            await self.run_in_thread(
                rootfs.write_etc_files,
                c.directory,
                c.config.get("Hostname", ""),
                c.config.get("Domainname", ""),
                hc.get("NetworkMode", "default"),
                own_hosts + self.extra_hosts(c),
                hc.get("Dns"),
                hc.get("DnsSearch"),
                hc.get("DnsOptions"),
                self.host_resolv_conf(),
                self.embedded_dns(c),
            )
        files = c.network_paths()
        shm = await self.ipc_up(c)
        inputs = await self.run_in_thread(_bind_sources_and_inputs, c.config, hc, paths["MergedDir"])
        volumes = await self.mount_volumes(c)
        oci = spec.build_spec(
            container_id=c.id,
            config=c.config,
            host_config=hc,
            image_config={},
            rootfs=paths["MergedDir"],
            hostname_path=files["HostnamePath"],
            hosts_path=files["HostsPath"],
            resolv_conf_path=files["ResolvConfPath"],
            netns_path=self.joined_netns(c),
            inputs=inputs,
            init_path=self.init_path,
            volumes=volumes,
            namespace_paths=self.namespace_paths(c),
            shm_source=shm,
            cgroup_parent=self.cgroup_parent,
            systemd_cgroup=self.cgroup_driver == "systemd",
            linked_env=self.linked_env(c),
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
        await self.ipc_down(c)
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
        # What the failed call may have left (a runc container runc delete
        # did not take, a conmon, the mount, the bundle) gone too.
        await self.reconcile_one(c, "start")


@attr.s(frozen=True, auto_attribs=True)
class _Ahead:
    """A restore's conmon and CRIU started before its bundle was made
    (L{StartMixin._restorer_ahead})."""

    run: Run
    session: object
    created: object
    #: L{RestorePlan.prepare}, begun with them.
    fetching: object


def _abandon(ahead: Optional[_Ahead]) -> None:
    """A restore started ahead given up before (or after) its request:
    CRIU's socket closed, which ends CRIU and then conmon (what they leave
    goes with the failed start's clean-up); conmon's failure swallowed."""
    if ahead is not None:
        ahead.session.close()
        ahead.created.addErrback(lambda f: None)


async def _abandon_before_request(ahead: Optional[_Ahead], restore) -> None:
    """L{_abandon}, the bundle not made: the fetcher started with them
    stopped too (once its start is over)."""
    if ahead is not None:
        _abandon(ahead)
        await settled(ahead.fetching)
        restore.abort()


class _NetworkFailed(Exception):
    """netavark's setup of a run failed with C{error}."""

    def __init__(self, error: DockerError) -> None:
        super().__init__(str(error))
        self.error = error


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


def _check_log_driver(c: Container) -> None:
    """The log rotation the container's LogConfig asks for can be done: as
    dockerd, a bad max-size, max-file or compress fails the start."""
    log_config = c.host_config.get("LogConfig") or {}
    try:
        spec.log_rotation(log_config.get("Type") or "", log_config.get("Config"))
    except spec.LogDriverError as e:
        raise InternalError("failed to initialize logging driver: %s" % (e,))


def _released(failure, session):
    session.release_peer()
    return failure


def _mount_rootfs(mounts, init_layer: str, layer_dirs, paths: Dict[str, str]) -> None:
    """(In a thread.)  The init layer made (when it is not there) and the
    run's root filesystem mounted."""
    rootfs.make_init_layer(init_layer)
    mounts.mount(layer_dirs, paths["UpperDir"], paths["WorkDir"], paths["MergedDir"])


def _bind_sources_and_inputs(config: dict, host_config: dict, root: str) -> dict:
    """(In a thread.)  L{_create_bind_sources}, then what the spec reads
    from the root filesystem (L{spec.gather_inputs})."""
    _create_bind_sources(host_config)
    return spec.gather_inputs(config, host_config, {}, root)


def _create_bind_sources(host_config: dict) -> None:
    """As dockerd's mount point setup: a Binds source missing on the host is
    made, root's, mode 0755 (a HostConfig.Mounts bind only with
    C{BindOptions.CreateMountpoint}, refused at create otherwise)."""
    for source in spec.missing_bind_sources(host_config):
        os.makedirs(source, mode=0o755, exist_ok=True)


def _write_bundle(bundle: str, oci: dict, restore=None) -> None:
    os.makedirs(bundle, mode=0o700, exist_ok=True)
    if restore is not None:
        restore.adjust_spec(oci, bundle)
    # (Not indented: json's C encoder, not its Python one, which holds
    # the GIL from the reactor thread for milliseconds on a large spec.)
    # (Not synced: the exec root's files describe processes a power loss
    # ends anyway.)
    write_atomic(os.path.join(bundle, "config.json"), json.dumps(oci).encode(), mode=0o600, durable=False)
