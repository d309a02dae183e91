"""
Running containers' log files rotated by the daemon, as dockerd's json-file
driver rotates its own (C{max-size}, C{max-file}, C{compress} of the
container's LogConfig, or the daemon's C{--log-opt}): conmon writes the
file, so the daemon watches its size through inotify, moves it aside
(L{rotate_log}) and tells conmon to reopen it.  Nothing asks conmon
to reopen from outside (cri-dockerd cannot), and the kubelet and C{docker
logs} find the current file at the same C{LogPath}.
"""

from typing import Callable, Dict, Optional

from twisted.internet import inotify
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath

from ...logs import Logger
from .. import spec
from ..runtime import compress_log, rotate_log

log = Logger()

#: How long after telling conmon to reopen before the moved file is
#: compressed (conmon reopens at its next turn: it may still write a line).
COMPRESS_DELAY = 0.2


class _Watched:
    """One running container's log under rotation."""

    def __init__(self, container, rotation: spec.Rotation) -> None:
        self.container = container
        self.rotation = rotation
        self.path = container.log_path
        self.name = FilePath(self.path).basename()
        self.watch: Optional[FilePath] = None
        self.check_scheduled = False
        self.rotating = False
        self.ended = False
        #: The compression of the file last moved aside, while it runs.
        self.compressing: Optional[Deferred] = None


class LogRotator:
    """A run watcher (L{ContainerBackend.watch_runs}): while a container
    whose LogConfig asks for rotation runs, its log file is rotated each
    time it reaches C{max-size}.  C{reopen(c)} (a Deferred) makes the
    container's conmon reopen its log file; C{run_in_thread} runs the file
    work."""

    def __init__(self, reactor, containers, reopen: Callable[[object], Deferred], run_in_thread: Callable) -> None:
        self.reactor = reactor
        self.reopen = reopen
        self.run_in_thread = run_in_thread
        self._watched: Dict[str, _Watched] = {}
        self._notifier: Optional[inotify.INotify] = None
        containers.watch_runs(self)

    # -- run watcher ------------------------------------------------------------

    def run_started(self, c) -> None:
        log_config = c.host_config.get("LogConfig") or {}
        try:
            rotation = spec.log_rotation(log_config.get("Type") or "", log_config.get("Config"))
        except spec.LogDriverError:
            rotation = None  # (refused at start: not running)
        if rotation is None:
            return
        self.run_ended(c)
        watched = _Watched(c, rotation)
        self._watched[c.id] = watched
        if self._notifier is None:
            self._notifier = inotify.INotify(reactor=self.reactor)
            self._notifier.startReading()
        directory = FilePath(self.path_dir(watched))
        try:
            self._notifier.watch(
                directory,
                mask=inotify.IN_MODIFY,
                callbacks=[lambda _w, path, _mask: self._changed(watched, path)],
            )
        except Exception as e:
            log.warn("cannot watch the log of {id}: {e}", id=c.short_id, e=e)
            return
        watched.watch = directory
        self._schedule_check(watched)

    def run_ended(self, c) -> None:
        watched = self._watched.pop(c.id, None)
        if watched is None:
            return
        watched.ended = True
        if watched.watch is not None and self._notifier is not None:
            try:
                self._notifier.ignore(watched.watch)
            except KeyError:
                pass

    def run_paused(self, c) -> None:
        pass

    def run_resumed(self, c) -> None:
        pass

    def shutdown(self) -> None:
        for container_id in list(self._watched):
            self.run_ended(self._watched[container_id].container)
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None

    # -- rotation ---------------------------------------------------------------

    @staticmethod
    def path_dir(watched: _Watched) -> str:
        return FilePath(watched.path).dirname()

    def _changed(self, watched: _Watched, path: FilePath) -> None:
        name = path.basename()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "surrogateescape")
        if name == watched.name:
            self._schedule_check(watched)

    def _schedule_check(self, watched: _Watched) -> None:
        # Writes come in bursts: one size check a reactor turn.
        if watched.check_scheduled or watched.rotating or watched.ended:
            return
        watched.check_scheduled = True
        self.reactor.callLater(0, self._check, watched)

    def _check(self, watched: _Watched) -> None:
        watched.check_scheduled = False
        if watched.ended or watched.rotating:
            return
        try:
            size = FilePath(watched.path).getsize()
        except OSError:
            return
        if size >= watched.rotation.max_size:
            watched.rotating = True
            d = ensureDeferred(self._rotate(watched))
            d.addErrback(lambda f: log.failure("log rotation of {id}", f, id=watched.container.short_id))

            def done(_) -> None:
                watched.rotating = False
                self._schedule_check(watched)  # (it may have grown meanwhile)

            d.addBoth(done)

    async def _rotate(self, watched: _Watched) -> None:
        rotation = watched.rotation
        if watched.compressing is not None:
            # The files are renamed only once the last one is compressed.
            compressing, watched.compressing = watched.compressing, None
            await compressing
        moved = await self.run_in_thread(rotate_log, watched.path, rotation.max_files)
        try:
            await self.reopen(watched.container)
        except Exception as e:
            # (the container ended meanwhile: nothing writes any more)
            log.debug("reopen of the log of {id}: {e}", id=watched.container.short_id, e=e)
        if moved is not None and rotation.compress:
            # In the background: the log may grow and be checked meanwhile.
            watched.compressing = ensureDeferred(self._compress(moved))
            watched.compressing.addErrback(lambda f: log.failure("compressing {path}", f, path=moved))

    async def _compress(self, path: str) -> None:
        await deferLater(self.reactor, COMPRESS_DELAY, lambda: None)
        await self.run_in_thread(compress_log, path)
