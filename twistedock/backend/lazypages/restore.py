"""
The target's side: the pages of a restored checkpoint fetched by
C{criu lazy-pages} through a loopback listener joined to the hijacked API
connection the migration opened (the page source).

Before the restore, L{PageFetch.start} listens on loopback and starts
C{criu lazy-pages} in the restore's work directory, the bundle, where the
restore's CRIU finds its C{lazy-pages.socket}: over CRIU's RPC (C{lazy_pages},
the bundle its C{work_dir_fd}) the request is sent once C{criu lazy-pages} is
ready, conmon having started CRIU meanwhile; through runc (conmon runs
C{runc restore --lazy-pages} with the bundle as its work path) it is started
first.  After the restore, L{PageFetch.watch} waits for
C{criu lazy-pages} to end: with success every page arrived; with anything
else the restored copy is killed, since the source still holds the process
and will run it again.
"""

import os
import signal
from typing import Callable, List, Optional

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol

from ...errors import InternalError
from ...logs import Logger
from ..runtime.processes import exit_status
from .prefetch import PrefetchJoint, lazy_ranges
from .relay import Joint

log = Logger()

STATUS_FD = 3
#: How long C{criu lazy-pages} may take to get ready.
READY_TIMEOUT = 30.0
#: C{criu lazy-pages}'s niceness during the copy (see L{PageFetch._lower_priority}).
COPY_NICENESS = 10
#: The log C{criu lazy-pages} leaves in the work directory.
LOG_NAME = "lazy-pages.log"


class _LazyPagesProcess(ProcessProtocol):
    def __init__(self) -> None:
        self.ready: Deferred = Deferred()
        self.ended: Deferred = Deferred()
        self._err: List[bytes] = []

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == STATUS_FD and not self.ready.called:
            self.ready.callback(None)
        elif fd in (1, 2):
            self._err.append(data)

    def processEnded(self, reason) -> None:
        code = exit_status(reason)
        if not self.ready.called:
            text = b"".join(self._err).decode("utf-8", "replace").strip()
            self.ready.errback(InternalError("criu lazy-pages failed (status %d)%s" % (code, ": " + text if text else "")))
        self.ended.callback(code)


class _OneConnection(Factory):
    """Accepts the first connection (CRIU's) only."""

    def __init__(self, joint: Joint) -> None:
        self.joint = joint
        self.taken = False

    def buildProtocol(self, addr):
        if self.taken:
            return None
        self.taken = True
        return self.joint


class PageFetch:
    """A page source (a hijacked stream to the source's page server) and
    the C{criu lazy-pages} that reads from it."""

    def __init__(self, reactor, stream, run_in_thread=None, spawn_process=None) -> None:
        self.reactor = reactor
        self.stream = stream
        self.run_in_thread = run_in_thread
        #: C{spawn_process(protocol, executable, argv, env, child_fds)}, a
        #: Deferred (L{spawn.Spawner.spawn_process}); else the reactor's.
        self.spawn_process = spawn_process
        #: Fetches every page ahead once the restore is done (L{prefetch}).
        self.joint = PrefetchJoint(stream)
        # The source gone, CRIU's lazy-pages must see its page server go.
        self.joint.remote_ended.addCallback(lambda _: self.joint.close())
        self._listening = None
        self._process: Optional[_LazyPagesProcess] = None
        #: Fires with True once every page arrived, False when they stopped.
        self.done: Deferred = Deferred()

    @property
    def gone(self) -> bool:
        """Whether the page source's connection already ended."""
        return bool(getattr(self.stream, "lost", False))

    async def start(self, criu: str, images_dir: str, work_dir: str) -> None:
        """Listen, start C{criu lazy-pages}, and wait until it is ready."""
        try:
            if self.run_in_thread is not None:
                ranges = await self.run_in_thread(lazy_ranges, images_dir)
            else:
                ranges = lazy_ranges(images_dir)
        except (OSError, ValueError) as e:
            # Then only criu lazy-pages' own requests fetch the pages.
            log.warn("no prefetch of the lazy pages: {e}", e=e)
            ranges = []
        self.joint.add_ranges(ranges)
        factory = _OneConnection(self.joint)
        self._listening = await TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1").listen(factory)
        port = self._listening.getHost().port
        for leftover in ("lazy-pages.socket",):
            try:
                os.unlink(os.path.join(work_dir, leftover))
            except FileNotFoundError:
                pass
        argv = [
            criu, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", str(port),
            "--images-dir", images_dir, "--work-dir", work_dir, "--status-fd", str(STATUS_FD),
            "-o", LOG_NAME, "-v2",
        ]
        process = self._process = _LazyPagesProcess()
        # No working directory given: CRIU goes into its --work-dir itself,
        # and a child spawned with one is a fork of the whole daemon
        # (Twisted's posix_spawn takes none), some 10 ms of page tables
        # copied on the reactor thread inside the downtime.
        child_fds = {0: "w", 1: "r", 2: "r", STATUS_FD: "r"}
        try:
            if self.spawn_process is not None:
                await self.spawn_process(process, criu, argv, dict(os.environ), child_fds)
            else:
                self.reactor.spawnProcess(process, criu, argv, env=dict(os.environ), childFDs=child_fds)
        except OSError as e:
            self.abort()
            raise InternalError("cannot run %s: %s" % (criu, e.strerror or e))
        process.ended.addCallback(self._ended)
        timer = self.reactor.callLater(READY_TIMEOUT, process.ready.cancel)
        try:
            await process.ready
        except BaseException:
            self.abort()
            raise
        finally:
            if timer.active():
                timer.cancel()

    def _ended(self, code: int) -> None:
        self._stop_listening()
        if code != 0:
            log.warn("criu lazy-pages ended with status {code}: the pages stopped arriving", code=code)
        if not self.done.called:
            self.done.callback(code == 0)
        self.stream.close()

    def _stop_listening(self) -> None:
        if self._listening is not None:
            listening, self._listening = self._listening, None
            listening.stopListening()

    def watch(self, kill: Callable[[], object]) -> None:
        """After the restore: C{kill()} the restored copy unless every page arrives."""

        self.joint.start_prefetch()
        self._lower_priority()
        restored = self.reactor.seconds()

        def finished(complete: bool) -> bool:
            joint = self.joint
            log.info("lazy pages {how} {seconds:.3f} s after the restore: {pages} pages prefetched, {hits} of "
                     "criu's requests answered from them, {passed} passed on",
                     how="complete" if complete else "broken off", seconds=self.reactor.seconds() - restored,
                     pages=joint.prefetched_pages, hits=joint.hits, passed=joint.passed)
            if not complete:
                log.warn("killing the restored copy: its pages did not all arrive")
                ensureDeferred(_call(kill)).addErrback(lambda f: log.failure("killing the restored copy", f))
            return complete

        self.done.addCallback(finished)

    def _lower_priority(self) -> None:
        """C{criu lazy-pages} niced for the copy: once the restore is done it
        polls its descriptors without sleeping until the last page came
        (uffd.c: C{handle_requests}, a zero timeout), a whole core taken
        from the daemons that relay those pages on a small machine."""
        pid = getattr(getattr(self._process, "transport", None), "pid", None)
        if pid:
            try:
                os.setpriority(os.PRIO_PROCESS, pid, COPY_NICENESS)
            except OSError:
                pass

    def abort(self) -> None:
        """Stop fetching (the restore failed or was not made)."""
        self._stop_listening()
        process = self._process
        if process is not None and not process.ended.called:
            try:
                process.transport.signalProcess(signal.SIGKILL)
            except Exception:
                pass
        self.stream.close()


async def _call(function):
    result = function()
    if isinstance(result, Deferred) or hasattr(result, "__await__"):
        return await result
    return result
