"""
The checkpoint backend: containers checkpointed with C{runc checkpoint}
(CRIU) and restored through conmon's restore mode, as dockerd does with
C{--experimental}.

Where checkpoints live: C{<container dir>/checkpoints/<name>/} (or
C{<CheckpointDir>/<name>/} when the client names a directory, as dockerd
allows), holding CRIU's images as runc writes them (dockerd's layout, so a
checkpoint directory made by one can be read by the other) plus
L{METADATA}, a small JSON document saying what was checkpointed: the
container (ID, name, image), when, with which runc options (the restore
passes the same), whether the container was left running, whether it has
a terminal, and which CRIU made it.  A checkpoint is removed with its
container (it lives in the container's directory).

One operation at a time per container: a checkpoint holds the container's
lock (the one start and restart-policy restarts take), and stop, kill,
restart and forced removal wait for the holder to finish first, so a
checkpoint never sees its process signalled half-way through the dump.

After a checkpoint that stops the container (C{Exit}, the CLI's default),
the container is reported exited (exit code 137, as dockerd reports it)
before the request returns; the run is marked checkpointed, the container
treated as stopped by its user and marked (C{CHECKPOINTED_MARK}) until its
next start, so its restart policy does not revive it, not even "always"
when the daemon starts again (dockerd's would, from scratch).

A restore is a start (L{ContainerBackend.start} with a checkpoint): the
same bundle and overlay, and conmon given C{--restore DIR}, so that conmon
runs C{runc restore} instead of C{runc create}; the restored process is
then supervised, logged and waited on like any other, and its log goes on
in the same file.

A lazy checkpoint (C{LazyPages}, see L{lazypages}) answers once CRIU wrote
its images, leaving the pages behind: the process stays frozen and CRIU
serves them until one client (C{POST .../pages}) fetched them all; only
then is the container exited, as after any checkpoint.  If the pages are
not all fetched, CRIU is killed and the container runs on, here, its
partial checkpoint removed.  A daemon restoring such a checkpoint fetches
the pages through a page source (C{POST .../page-source}) given before the
start; the restore goes over CRIU's RPC (C{lazy_pages}) when a plain one
would, else through C{runc restore --lazy-pages}.
"""

import json
import os
import re
import shutil
import tempfile
from typing import List, Optional

from twisted.internet.defer import Deferred, ensureDeferred
from zope.interface import implementer

from ..atomic import fsync_dir, write_atomic
from ..deferreds import shield
from ..errors import Conflict, DockerError, InternalError, InvalidParameter, NotFound
from ..logs import Logger
from ..routers.checkpoint import ICheckpointBackend
from .. import golang
from .containers import CHECKPOINTED_MARK, Container
from .containers.defaults import IMPORT_PENDING_MARK, mark
from .runtime import runc_message
from .lazypages import sysctl
from .lazypages.dump import CRIU_CONFIG, LazyDump, LazyRpcDump, free_loopback_port
from .lazypages.restore import PageFetch
from .runtime.criu import Criu
from .restoreplan import RestorePlan, criu_log_errors
from .checkpointtar import (
    EXPORT_CHECKPOINT, EXPORT_FILES, EXPORT_RECORD, EXPORT_ROOTFS, EXPORT_VERSION, install_diff, install_import,
    unpack_checkpoint_export, write_checkpoint_export,
)

log = Logger()

#: dockerd's rule for checkpoint names (daemon/names: RestrictedNamePattern).
VALID_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
VALID_NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"

#: The document beside CRIU's images.
METADATA = "checkpoint.json"
METADATA_VERSION = 1

#: runc options every checkpoint is taken with (and so restored with):
#: established TCP connections (in the container's own network namespace)
#: and file locks would otherwise make CRIU refuse the dump.
RUNC_OPTIONS = ("--tcp-established", "--file-locks")

#: How long conmon may take to report a checkpointed container's exit.
EXIT_TIMEOUT = 30.0

#: How long an export asked to wait for its checkpoint waits for the
#: checkpoint to be taken (it is asked for at the same time).
PUBLISH_WAIT = 60.0


def _is_dir(path: str) -> bool:
    return os.path.isdir(path)


def checkpoint_dir(requested: str, checkpoint_id: str, name: str, default: str, create: bool) -> str:
    """dockerd's getCheckpointDir: the checkpoint's directory, made when
    C{create}; the errors are dockerd's (plain errors: 500)."""
    base = requested or default
    path = os.path.normpath(os.path.join(base, checkpoint_id)) if checkpoint_id else os.path.normpath(base)
    exists = os.path.lexists(path)
    if create:
        if exists and _is_dir(path):
            raise InternalError(
                "checkpoint with name %s already exists for container %s" % (checkpoint_id, name)
            )
        if exists:
            raise InternalError("%s exists and is not a directory" % (path,))
        os.makedirs(path, mode=0o700)
        return path
    if not exists:
        raise InternalError("checkpoint %s does not exist for container %s" % (checkpoint_id, name))
    if not _is_dir(path):
        raise InternalError("%s exists and is not a directory" % (path,))
    return path


def read_metadata(directory: str) -> Optional[dict]:
    """The checkpoint's L{METADATA}, or None (a checkpoint made elsewhere)."""
    try:
        with open(os.path.join(directory, METADATA), "rb") as f:
            value = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def default_dir(c: Container) -> str:
    """Where a container's checkpoints live unless told otherwise."""
    return os.path.join(c.directory, "checkpoints")


class CheckpointStore:
    """The checkpoints on disk as a start reads them to restore one: made
    before the container and checkpoint backends, and given to both."""

    def __init__(self, criu: Criu, run_in_thread, rpc=None) -> None:
        self.criu = criu
        self.run_in_thread = run_in_thread
        #: The L{CriuDriver} (CRIU over its RPC), or None: runc only.
        self.rpc = rpc
        #: The page sources given for lazy checkpoints not yet restored,
        #: by (container ID, checkpoint).
        self.page_sources = {}

    def add_page_source(self, container_id: str, checkpoint_id: str, fetch: PageFetch) -> None:
        key = (container_id, checkpoint_id)
        previous = self.page_sources.get(key)
        if previous is not None:
            previous.abort()
        self.page_sources[key] = fetch

        def forget(_):
            if self.page_sources.get(key) is fetch:
                del self.page_sources[key]

        fetch.stream.closed.addCallback(forget)

    async def restore_plan(self, c: Container, checkpoint_id: str, directory: str = "") -> RestorePlan:
        """Check that C{c} can be restored from the checkpoint: its
        directory exists and CRIU works.  Called by the container backend's
        start, which holds the container's lock."""
        path = checkpoint_dir(directory, checkpoint_id, c.name, default_dir(c), create=False)
        try:
            criu = await self.criu.require("restore")
        except DockerError as e:
            raise InternalError("Cannot restore container %s: %s" % (c.name.lstrip("/"), e))
        metadata = await self.run_in_thread(read_metadata, path)
        options = list(RUNC_OPTIONS)
        if metadata is not None and isinstance(metadata.get("RuncOptions"), list):
            options = [str(o) for o in metadata["RuncOptions"] if str(o) in RUNC_OPTIONS]
        pages = None
        if metadata is not None and metadata.get("LazyPages"):
            pages = self.page_sources.pop((c.id, checkpoint_id), None)
            if pages is None or pages.gone:
                raise InternalError(
                    "Cannot restore container %s: checkpoint %s left its pages on the daemon it was "
                    "taken on; restore it while that daemon serves them (twistedock-migrate --lazy)"
                    % (c.name.lstrip("/"), checkpoint_id)
                )
        return RestorePlan(path, criu, options, metadata, rpc=self.rpc, pages=pages)


@implementer(ICheckpointBackend)
class CheckpointBackend:
    """Checkpoints of the containers of a L{ContainerBackend}."""

    def __init__(
        self, reactor, containers, store: CheckpointStore, runtime, images, exit_timeout: float = EXIT_TIMEOUT
    ) -> None:
        self.reactor = reactor
        self.containers = containers
        self.store = store
        self.runtime = runtime
        self.images = images
        self.exit_timeout = exit_timeout
        #: How many checkpoints are being taken (for tests and /debug).
        self.in_progress = 0
        #: Lazy checkpoints whose pages are being served, by (container ID, checkpoint).
        self.lazy_dumps = {}
        #: Exports waiting for a checkpoint being taken (in the container's
        #: own directory), by (container ID, checkpoint): their Deferreds,
        #: fired with whether it was published.
        self.publishing = {}
        #: What a prepare export sent of a container's upper directory, by
        #: container ID: (checkpoint, {path: identity}) (see L{precopy}).
        self.precopied = {}

    # -- where ------------------------------------------------------------

    default_dir = staticmethod(default_dir)

    @property
    def criu(self) -> Criu:
        return self.store.criu

    def _work_dir(self, c: Container) -> str:
        return os.path.join(self.containers.bundle(c), "checkpoint-work")

    def _thread(self, function, *args):
        return self.containers.run_in_thread(function, *args)

    # -- list, delete ------------------------------------------------------

    async def list(self, name: str, directory: str = "") -> Optional[list]:
        c = self.containers.get(name)
        default = self.default_dir(c)
        if not directory and not os.path.isdir(default):
            return None
        base = checkpoint_dir(directory, "", name, default, create=False)
        entries = await self._thread(_list_dirs, base, os.path.normpath(base) == os.path.normpath(default))
        return [{"Name": entry} for entry in entries] or None

    async def delete(self, name: str, checkpoint_id: str, directory: str = "") -> None:
        c = self.containers.get(name)
        path = checkpoint_dir(directory, checkpoint_id, name, self.default_dir(c), create=False)
        await self._thread(shutil.rmtree, path, True)

    # -- create --------------------------------------------------------------

    async def create(self, name: str, options: dict) -> dict:
        """(See L{ICheckpointBackend.create}: C{"Frozen"} is told for a
        dump over CRIU's RPC.)"""
        timing: dict = {}
        try:
            # A client that goes away does not stop a checkpoint half-way:
            # runc and CRIU go on, and so must the bookkeeping.
            if options.get("LazyPages"):
                await self._create_lazy(name, options, timing)
            else:
                await shield(ensureDeferred(self._create(name, options, timing)), what="checkpoint of %s" % (name,))
        except DockerError:
            # An export asked for with it is answered now (not found), also
            # when the checkpoint was refused before it began.  (Not when
            # the client went away: the checkpoint goes on, and publishes.)
            try:
                c = self.containers.get(name)
            except DockerError:
                c = None
            if c is not None:
                self._published((c.id, options.get("CheckpointID") or ""), False)
            raise
        return timing

    def _check_running(self, c, name: str) -> None:
        """(Under the container's lock.)  C{c} is still there and runs."""
        if self.containers.by_id(c.id) is None:
            raise NotFound("No such container: %s" % (name,))
        if not c.state.running or c.state.restarting:
            raise InternalError("Container %s not running" % (name,))

    async def _create(self, name: str, options: dict, timing: dict) -> None:
        c = self.containers.get(name)
        async with self.containers.lock(c):
            self._check_running(c, name)
            checkpoint_id = options.get("CheckpointID") or ""
            if not VALID_NAME.match(checkpoint_id):
                raise InternalError(
                    "Invalid checkpoint ID (%s), only %s are allowed" % (checkpoint_id, VALID_NAME_CHARS)
                )
            try:
                final = checkpoint_dir(
                    options.get("CheckpointDir") or "", checkpoint_id, name, self.default_dir(c), create=True
                )
                # CRIU dumps under a temporary name, renamed once complete:
                # a dump a crash interrupts is never taken for a checkpoint.
                directory = dump_dir(final)
                os.rename(final, directory)
            except DockerError as e:
                raise InternalError("cannot checkpoint container %s: %s" % (name, e))
            except OSError as e:
                raise InternalError("cannot checkpoint container %s: %s" % (name, e))
            self.in_progress += 1
            key = (c.id, checkpoint_id)
            if not options.get("CheckpointDir"):
                self.publishing.setdefault(key, [])
            try:
                await self._checkpoint(
                    c, name, checkpoint_id, directory, exit=bool(options.get("Exit")), final=final, timing=timing
                )
            except BaseException:
                await self._thread(shutil.rmtree, directory, True)
                raise
            finally:
                self.in_progress -= 1
                self._published(key, False)
        self.containers.log_event(c, "checkpoint")

    def _published(self, key, published: bool) -> None:
        """The exports waiting for checkpoint C{key} told whether it was
        published (once: later calls find nobody waiting)."""
        for waiting in self.publishing.pop(key, ()):
            if not waiting.called:
                waiting.callback(published)

    async def _checkpoint(
        self, c: Container, name: str, checkpoint_id: str, directory: str, exit: bool, final: str = "",
        timing: Optional[dict] = None,
    ) -> None:
        try:
            criu = await self.criu.require("checkpoint")
        except DockerError as e:
            raise InternalError("Cannot checkpoint container %s: %s" % (name, e))
        work = self._work_dir(c)
        await self._thread(_fresh_dir, work)
        args = ["--criu", criu, "checkpoint", "--image-path", directory, "--work-path", work]
        if not exit:
            args.append("--leave-running")
        args += list(RUNC_OPTIONS)
        args.append(c.id)
        was_stopped_by_user = c.manually_stopped
        rpc = self.store.rpc
        over_rpc = rpc is not None and rpc.available()
        if exit:
            # From here the coming exit is the checkpoint's, not a crash:
            # no restart policy may bring the container back.
            if over_rpc:
                self.containers.mark_checkpointed(c, True, keep_runtime=True)
            else:
                self.containers.mark_checkpointed(c, True)
            c.manually_stopped = True
        exited = self.containers.wait_exit_code(c) if exit else None
        # Written while the dump begins (it says nothing the dump decides),
        # not while the process is frozen.
        metadata = self._thread(self._write_metadata, c, checkpoint_id, directory, exit, criu, over_rpc)
        try:
            if over_rpc:
                await self._dump_over_rpc(rpc, criu, c, name, directory, work, exit, timing)
            else:
                await self._runc_checkpoint(args, name, work)
            await metadata
        except BaseException:
            # (Settled before the dump's directory goes.)
            await metadata.addErrback(lambda _: None)
            if exit:
                self.containers.mark_checkpointed(c, False)
                c.manually_stopped = was_stopped_by_user
                exited.addErrback(lambda _: None)
                exited.cancel()
            # A dump that failed half-way may have left the process frozen,
            # or killed it with nobody to report its end.
            await self.containers.reconcile_one(c, "checkpoint")
            raise
        if final:
            await self._thread(publish_dump, directory, final)
        if exit:
            # Recorded as checkpointed (never restarted: manually stopped)
            # before any export begins: a migration's target restores
            # what it imported without waiting for this answer, and a
            # crash here must not bring a second copy back.
            await self._thread(mark, c.path_of(CHECKPOINTED_MARK))
            await self.containers.save(c)
        if final:
            # Complete: its export may begin while the
            # container's exit is recorded.
            self._published((c.id, checkpoint_id), True)
        await self._thread(shutil.rmtree, work, True)
        if exit:
            await self._finish_checkpointed_run(c, exited)

    async def _runc_checkpoint(self, args: List[str], name: str, work: str) -> None:
        out, err, code = await self.runtime.exec_runc(args)
        if code != 0:
            message = runc_message(err) or runc_message(out) or "runc checkpoint failed with status %d" % (code,)
            raise _dump_failed(name, message, work)

    async def _dump_over_rpc(self, rpc, criu: str, c: Container, name: str, directory: str, work: str,
                             exit: bool, timing: Optional[dict] = None) -> None:
        """The dump runc would make, made over CRIU's RPC (L{CriuDriver})."""
        try:
            # (A terminal's container restores through runc, with its
            # console bound on /dev: its tmpfs mounts stay CRIU's to tar.)
            await rpc.dump(
                criu, c.id, directory, work, leave_running=not exit,
                tcp_established="--tcp-established" in RUNC_OPTIONS, file_locks="--file-locks" in RUNC_OPTIONS,
                tmpfs_external=not c.tty, timing=timing,
            )
        except DockerError as e:
            raise _dump_failed(name, str(e), work)
        except OSError as e:
            raise _dump_failed(name, "%s" % (e,), work)

    async def _finish_checkpointed_run(self, c: Container, exited) -> None:
        """Record the exit that the checkpoint caused before answering, so
        the container is seen exited as soon as the request returns."""
        timer = self.reactor.callLater(self.exit_timeout, exited.cancel)
        try:
            code = await exited
        except Exception:
            log.warn("no exit reported for checkpointed container {id}", id=c.short_id)
            code = 137
        finally:
            if timer.active():
                timer.cancel()
        if c.state.running:
            await self.containers.finish_run(c, code)

    # -- lazy checkpoints ----------------------------------------------------

    async def _create_lazy(self, name: str, options: dict, timing: dict) -> None:
        """Answer once the images are written; the pages are served after."""
        answered: Deferred = Deferred()

        def failed(failure):
            if not answered.called:
                answered.errback(failure)
            else:
                log.failure("lazy checkpoint of {name}", failure, name=name)

        ensureDeferred(self._lazy_checkpoint(name, options, answered, timing)).addErrback(failed)
        await answered

    async def _lazy_checkpoint(self, name: str, options: dict, answered: Deferred, timing: dict) -> None:
        c = self.containers.get(name)
        async with self.containers.lock(c):
            self._check_running(c, name)
            if c.state.paused:
                raise Conflict("cannot take a lazy checkpoint of a paused container")
            checkpoint_id = options.get("CheckpointID") or ""
            if not VALID_NAME.match(checkpoint_id):
                raise InternalError(
                    "Invalid checkpoint ID (%s), only %s are allowed" % (checkpoint_id, VALID_NAME_CHARS)
                )
            if options.get("CheckpointDir"):
                raise InvalidParameter("a lazy checkpoint lives in the container's own directory")
            if not options.get("Exit"):
                raise InvalidParameter("a lazy checkpoint stops the container (Exit must be true)")
            try:
                criu = await self.criu.require("checkpoint")
            except DockerError as e:
                raise InternalError("Cannot checkpoint container %s: %s" % (name, e))
            problem = sysctl.problem()
            if problem:
                raise InternalError("Cannot checkpoint container %s with lazy pages: %s" % (name, problem))
            try:
                final = checkpoint_dir("", checkpoint_id, name, self.default_dir(c), create=True)
                directory = dump_dir(final)
                os.rename(final, directory)
            except (DockerError, OSError) as e:
                raise InternalError("cannot checkpoint container %s: %s" % (name, e))
            self.in_progress += 1
            # (An export asked for with it waits for its images: L{export}.)
            key = (c.id, checkpoint_id)
            self.publishing.setdefault(key, [])
            try:
                await self._lazy_dump(c, name, checkpoint_id, directory, final, criu, answered, timing)
            except BaseException:
                await self._thread(shutil.rmtree, directory, True)
                await self._thread(shutil.rmtree, final, True)
                raise
            finally:
                self.in_progress -= 1
                self._published(key, False)

    async def _lazy_dump(self, c: Container, name: str, checkpoint_id: str, directory: str, final: str,
                         criu: str, answered: Deferred, timing: dict) -> None:
        work = self._work_dir(c)
        await self._thread(_fresh_dir, work)
        config = os.path.join(work, "lazy-pages.conf")
        await self._thread(write_atomic, config, CRIU_CONFIG.encode(), 0o600)
        env = dict(os.environ)
        env["CRIU_CONFIG_FILE"] = config
        port = free_loopback_port()
        # The guard's socket in a private directory with a short path (a
        # unix socket path must fit in 108 bytes; the bundle's may not).
        private = await self._thread(tempfile.mkdtemp, "", "twistedock-pages-")
        rpc = self.store.rpc
        over_rpc = rpc is not None and rpc.available()
        if over_rpc:
            dump = LazyRpcDump(self.reactor, port, os.path.join(private, "guard.sock"))
        else:
            dump = LazyDump(self.reactor, port, os.path.join(private, "guard.sock"))
        dump.ended.addBoth(lambda result: (shutil.rmtree(private, True), result)[1])
        argv = dump.argv(self.runtime.runc, self.runtime.state_root, criu, c.id, directory, work, port,
                         RUNC_OPTIONS)
        was_stopped_by_user = c.manually_stopped
        self.containers.mark_checkpointed(c, True)
        c.manually_stopped = True
        exited = self.containers.wait_exit_code(c)

        def undo() -> None:
            self.containers.mark_checkpointed(c, False)
            c.manually_stopped = was_stopped_by_user
            exited.addErrback(lambda _: None)
            exited.cancel()

        try:
            if over_rpc:
                # (A terminal's container keeps CRIU's tar: see _dump_over_rpc.)
                dump.start(rpc, criu, c.id, directory, work, config, env, tmpfs_external=not c.tty, timing=timing)
            else:
                dump.spawn(argv, env)
            await dump.ready
        except DockerError as e:
            undo()
            details = criu_log_errors(os.path.join(work, "dump.log"))
            raise InternalError("Cannot checkpoint container %s: %s%s" % (
                name, "; ".join(line.strip() for line in str(e).splitlines() if line.strip()),
                ": " + details if details else ""))
        key = (c.id, checkpoint_id)
        try:
            await self._thread(self._write_metadata, c, checkpoint_id, directory, True, criu, over_rpc, True)
            await self._thread(publish_dump, directory, final)
        except BaseException:
            dump.abort("the checkpoint could not be recorded")
            await dump.ended
            undo()
            raise
        self.lazy_dumps[key] = dump
        self.containers.log_event(c, "checkpoint")
        self._published(key, True)
        answered.callback(None)
        try:
            code = await dump.ended
        finally:
            self.lazy_dumps.pop(key, None)
        if code == 0 and dump.complete:
            log.info("lazy checkpoint {checkpoint} of {id}: every page fetched", checkpoint=checkpoint_id,
                     id=c.short_id)
            await self._thread(shutil.rmtree, work, True)
            await self._thread(mark, c.path_of(CHECKPOINTED_MARK))
            await self.containers.save(c)
            await self._finish_checkpointed_run(c, exited)
            return
        # Not every page left: the process runs on here, and the checkpoint,
        # without its pages, is no checkpoint.
        undo()
        log.warn("lazy checkpoint {checkpoint} of {id} given up ({why}); the container runs on",
                 checkpoint=checkpoint_id, id=c.short_id,
                 why=dump.aborted or "runc checkpoint ended with status %d: %s" % (code, dump.output().strip()))
        await self._thread(shutil.rmtree, final, True)

    async def page_server(self, name: str, checkpoint_id: str):
        """The function serving the pages of lazy checkpoint C{checkpoint_id}
        of C{name} to a hijacked connection; NotFound when none are served."""
        c = self.containers.get(name)
        dump = self.lazy_dumps.get((c.id, checkpoint_id))
        if dump is None:
            raise NotFound("checkpoint %s of container %s serves no pages" % (checkpoint_id, name))
        if dump.joint is not None:
            raise Conflict("the pages of checkpoint %s are already being fetched" % (checkpoint_id,))
        return dump.serve

    async def page_source(self, name: str, checkpoint_id: str):
        """The function that keeps a hijacked connection as the page source
        of C{name}'s next restore from lazy checkpoint C{checkpoint_id}.
        The checkpoint may be still to come, for a container a prepared
        import made (a migration joins the page source before the freeze;
        the restore checks the checkpoint's pages are left behind)."""
        c = self.containers.get(name)
        path = os.path.join(self.default_dir(c), checkpoint_id)
        valid = bool(VALID_NAME.match(checkpoint_id or ""))
        metadata = await self._thread(read_metadata, path) if valid else None
        if metadata is None:
            coming = valid and await self._thread(os.path.exists, c.path_of(IMPORT_PENDING_MARK))
            if not coming:
                raise NotFound("checkpoint %s does not exist for container %s" % (checkpoint_id, name))
        elif not metadata.get("LazyPages"):
            raise InvalidParameter("checkpoint %s holds all its pages" % (checkpoint_id,))
        if c.state.running:
            raise Conflict("container %s is already running" % (name,))

        async def keep(stream) -> None:
            spawner = getattr(self.runtime, "spawner", None)
            fetch = PageFetch(self.reactor, stream, self._thread,
                              spawner.spawn_process if spawner is not None else None)
            self.store.add_page_source(c.id, checkpoint_id, fetch)
            await stream.closed

        return keep

    def _write_metadata(self, c: Container, checkpoint_id: str, directory: str, exit: bool, criu: str,
                        over_rpc: bool = False, lazy: bool = False) -> None:
        status = self.criu.checked
        document = {
            "Version": METADATA_VERSION,
            "Name": checkpoint_id,
            "Created": golang.rfc3339_nano(self.containers.now()),
            "Container": {
                "ID": c.id,
                "Name": c.name,
                "Image": c.config.get("Image", ""),
                "ImageID": c.image_id,
            },
            "Exit": exit,
            "Terminal": c.tty,
            "Paused": bool(c.state.paused),
            "RuncOptions": list(RUNC_OPTIONS),
            # Who dumped: the daemon over CRIU's RPC, or runc checkpoint.
            "CRIU": {"Path": criu, "Version": getattr(status, "version", ""), "RPC": over_rpc},
            "Rootfs": self.containers.overlay(c)["MergedDir"],
        }
        if lazy:
            document["LazyPages"] = True
        write_atomic(os.path.join(directory, METADATA), json.dumps(document, indent=1).encode(), mode=0o600)

    # -- export, import --------------------------------------------------------

    async def export(self, name: str, checkpoint_id: str, prepare: bool = False, wait: bool = False):
        """A L{TarStream} of the checkpoint (see L{write_checkpoint_export}).
        With C{prepare}, only what a target needs to make the container
        before the checkpoint exists (its manifest and record): a migration
        sends it before the freeze, the rest after (L{import_into}).  A
        checkpoint being taken is exported once complete; with C{wait}
        one not begun yet too (a migration asks for the checkpoint and its
        export at once), for at most L{PUBLISH_WAIT} seconds."""
        from ..tar.stream import TarStream

        c = self.containers.get(name)
        if not VALID_NAME.match(checkpoint_id or ""):
            raise InvalidParameter(
                "Invalid checkpoint ID (%s), only %s are allowed" % (checkpoint_id, VALID_NAME_CHARS)
            )
        path = os.path.join(self.default_dir(c), checkpoint_id)
        key = (c.id, checkpoint_id)
        if not prepare and (wait or key in self.publishing) and not os.path.isdir(path):
            # Being taken (or about to be): exported once it is complete,
            # not found if it fails.
            waiting: Deferred = Deferred()
            self.publishing.setdefault(key, []).append(waiting)
            timer = self.reactor.callLater(PUBLISH_WAIT, self._published, key, False)
            try:
                await waiting
            finally:
                if timer.active():
                    timer.cancel()
        if prepare:
            metadata = {}
        elif not os.path.isdir(path):
            raise NotFound("checkpoint %s does not exist for container %s" % (checkpoint_id, name))
        else:
            metadata = await self._thread(read_metadata, path) or {}
        image_ref = c.config.get("Image", "")
        manifest = {
            "Version": EXPORT_VERSION,
            "Checkpoint": checkpoint_id,
            "Container": {"ID": c.id, "Name": c.name, "Image": image_ref, "ImageID": c.image_id},
            "Exit": bool(metadata.get("Exit", True)),
            "CRIU": metadata.get("CRIU") or {},
            "Layout": {
                "checkpoint": EXPORT_CHECKPOINT + "/",
                "record": EXPORT_RECORD,
                "rootfs": EXPORT_ROOTFS + "/",
                "files": EXPORT_FILES + "/",
            },
        }
        record = c.record_bytes()
        upper = self.containers.overlay(c)["UpperDir"]
        try:
            layer_dirs = self.containers.layer_dirs(c)
        except Exception:
            layer_dirs = []
        if prepare:
            # The upper directory as it is now, what was sent remembered
            # for the export after the freeze.
            manifest["Prepare"] = True
            precopied: dict = {}
            self.precopied[c.id] = (checkpoint_id, precopied)
            return TarStream(
                self.reactor,
                lambda write: write_checkpoint_export(
                    write, manifest, record, None, upper, layer_dirs, None, record_into=precopied),
            )
        sent = None
        if self.precopied.get(c.id, (None,))[0] == checkpoint_id:
            sent = self.precopied.pop(c.id)[1]
        stream = TarStream(
            self.reactor,
            lambda write: write_checkpoint_export(write, manifest, record, path, upper, layer_dirs, c.directory,
                                                  sent=sent),
        )
        self.containers.log_event(c, "checkpoint-export")
        return stream


    async def import_checkpoint(self, content, name: str = "", api_version: str = "1.41",
                                prepare: bool = False) -> dict:
        """Create a container and its checkpoint from an export tarball
        (C{content}, a file): C{{"Id", "Checkpoint"}}.  With C{prepare}
        (an export made with C{prepare}) only the container, marked
        L{IMPORT_PENDING_MARK} until a restore from the checkpoint
        L{import_into} gives it: removed by the daemon's next start if that
        never comes."""
        staging = self.containers.staging_dir(".import-" + os.urandom(8).hex())
        try:
            parsed = await self._thread(unpack_checkpoint_export, content, staging, not prepare)
            manifest, record = parsed["manifest"], parsed["record"]
            checkpoint_id = str(manifest.get("Checkpoint") or "")
            if not VALID_NAME.match(checkpoint_id):
                raise InvalidParameter("invalid checkpoint archive: bad checkpoint name %s" % (golang.quote(checkpoint_id),))
            config = dict(record["Config"])
            image_ref = config.get("Image") or ""
            # The image is not carried: it must be here (404 naming it).
            self.images.get(image_ref)
            new_name = name or str(record.get("Name") or "").lstrip("/")
            created = await self.containers.create(
                new_name,
                config,
                dict(record.get("HostConfig") or {}),
                dict(record.get("NetworkingConfig") or {}),
                api_version,
                import_pending=prepare,
            )
            c = self.containers.get(created["Id"])
            try:
                if prepare:
                    # The source's upper directory as it was before the
                    # freeze: what the import after it links from.
                    await self._thread(install_diff, staging, self.containers.overlay(c)["UpperDir"])
                else:
                    await self._thread(
                        install_import, staging, self.default_dir(c), checkpoint_id,
                        self.containers.overlay(c)["UpperDir"], c.directory,
                    )
            except BaseException:
                try:
                    await self.containers.remove(c.id, True, False)
                except Exception as e:
                    log.warn("removing half-imported container {id}: {e}", id=c.short_id, e=e)
                raise
            self.containers.log_event(c, "checkpoint-import")
            if prepare:
                # The restore to come goes over CRIU's RPC without making
                # runc's state then: made now, before the source freezes.
                try:
                    await self.containers.prepare_restore(c.id)
                except DockerError as e:
                    log.info("{id} restores through runc: {e}", id=c.short_id, e=e)
            return {"Id": c.id, "Checkpoint": checkpoint_id}
        finally:
            await self._thread(shutil.rmtree, staging, True)

    async def import_into(self, name: str, content) -> dict:
        """The rest of a prepared import (C{content}, an export tarball of
        the checkpoint prepared for): CRIU's images and the root
        filesystem's changes installed into the container made by
        L{import_checkpoint} with C{prepare}; C{{"Id", "Checkpoint"}}.
        The container stays marked until a start restores it."""
        c = self.containers.get(name)
        staging = self.containers.staging_dir(".import-" + os.urandom(8).hex())
        try:
            parsed = await self._thread(unpack_checkpoint_export, content, staging, True,
                                        self.containers.overlay(c)["UpperDir"])
            checkpoint_id = str(parsed["manifest"].get("Checkpoint") or "")
            if not VALID_NAME.match(checkpoint_id):
                raise InvalidParameter("invalid checkpoint archive: bad checkpoint name %s" % (golang.quote(checkpoint_id),))
            async with self.containers.lock(c):
                self._check_prepared(c, name)
                # (A failure leaves the container prepared: the migration
                # removes it, or the daemon's next start does.)
                await self._thread(
                    install_import, staging, self.default_dir(c), checkpoint_id,
                    self.containers.overlay(c)["UpperDir"], c.directory,
                )
        except BaseException:
            await self._thread(shutil.rmtree, staging, True)
            raise
        self.containers.log_event(c, "checkpoint-import")
        # (What is left of the staging directory goes after the answer: the
        # restore waits for it; a crash leaves it to the next start's sweep.)
        self._thread(shutil.rmtree, staging, True).addErrback(
            lambda f: log.failure("removing {staging}", f, staging=staging))
        return {"Id": c.id, "Checkpoint": checkpoint_id}

    def _check_prepared(self, c: Container, name: str) -> None:
        """(Under the container's lock.)  C{c} is still there, was made by a
        prepared import and was not restored yet."""
        if self.containers.by_id(c.id) is None:
            raise NotFound("No such container: %s" % (name,))
        if not os.path.exists(c.path_of(IMPORT_PENDING_MARK)):
            raise Conflict("container %s was not made by a prepared checkpoint import" % (name,))
        if c.state.running:
            raise Conflict("container %s is already running" % (name,))


def _dump_failed(name: str, message: str, work: str) -> InternalError:
    """A failed dump's error: what runc or CRIU said, and the first errors
    of CRIU's dump.log."""
    message = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    details = criu_log_errors(os.path.join(work, "dump.log"))
    if details:
        message = "%s: %s" % (message, details)
    return InternalError("Cannot checkpoint container %s: %s" % (name, message))


def _list_dirs(base: str, complete_only: bool = False) -> List[str]:
    """The checkpoints in C{base}: never a dump in progress (its temporary
    name); with C{complete_only} (the container's own directory, where
    every checkpoint has its metadata) none without its L{METADATA}."""
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    return [
        n
        for n in names
        if os.path.isdir(os.path.join(base, n))
        and not n.startswith(DUMP_PREFIX)
        and (not complete_only or os.path.exists(os.path.join(base, n, METADATA)))
    ]


#: A checkpoint being dumped: its directory's name until it is complete.
DUMP_PREFIX = ".tmp-"


def dump_dir(final: str) -> str:
    """Where the checkpoint that will be C{final} is dumped."""
    return os.path.join(os.path.dirname(final), DUMP_PREFIX + os.path.basename(final))


def publish_dump(directory: str, final: str) -> None:
    """The complete dump renamed to its checkpoint's name, the rename made
    durable.  (CRIU's images are its own writes, not synced: they
    survive the daemon's end, not a power loss.)"""
    os.rename(directory, final)
    fsync_dir(os.path.dirname(final))


def _fresh_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700)
