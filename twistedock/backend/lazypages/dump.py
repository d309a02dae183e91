"""
The source's side: a lazy dump (over CRIU's RPC, L{LazyRpcDump}, or
C{runc checkpoint --lazy-pages}, L{LazyDump}), CRIU's page server on
loopback, and the one API connection allowed to fetch the pages through it.

Over the RPC, CRIU dumps from inside the container's network namespace
when it can (no TCP connection to lock, the port free on that namespace's
loopback: L{CriuDriver._dump_plan}), which the images then leave out
(L{criuopts.NET_LEFT_OUT}): its page server listens on that loopback, the
guard joins the namespace to reach it.

CRIU reports (runc's status descriptor, or the RPC's C{status-ready}
notification) once the images (everything but the pages left behind) are
written: the checkpoint can then be exported while
the process stays frozen and CRIU serves its pages.  CRIU ends its dump
successfully once its client disconnects, whether or not it had every page:
so the loopback connection is only ever ended after the client's final
flush (see L{protocol}); any other end of the API connection (cut, closed
early, never made within L{CONNECT_TIMEOUT}) kills CRIU instead, and the
process it had seized (and never changed) runs on.  The loopback connection
is held by a guard process (L{guard}), not by the daemon: the daemon's own
death must not look like a finished copy to CRIU.
"""

import os
import signal
import socket
import sys
from typing import List, Optional

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from ...errors import Conflict, InternalError
from ...logs import Logger
from ..runtime.processes import exit_status
from .guard import child_pids
from .protocol import RequestWatcher
from .relay import Joint, joint_factory

log = Logger()

GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guard.py")
#: How the guard is run: isolated and without site (the standard library
#: only), an interpreter that starts in some 20 ms of CPU instead of 50-70
#: with an installation's site-packages.
GUARD_COMMAND = (sys.executable, "-I", "-S", GUARD)

#: runc's --status-fd in the child.
STATUS_FD = 3
#: How long the pages wait for their client once the images are written.
CONNECT_TIMEOUT = 60.0
#: CRIU's configuration for a lazy dump: runc passes the page server's port
#: but, for lazy pages, CRIU ignores its address and would listen on every
#: interface (INADDR_ANY); a configuration file (read before the RPC
#: options, and again after them) binds it to loopback, where only this
#: daemon's guard reaches it: the daemon's loopback, or the container's
#: when CRIU dumps from inside its network namespace (not its bridge
#: address, which other containers on the bridge reach).
CRIU_CONFIG = "address 127.0.0.1\n"


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (CRIU binds it a moment later)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class LazyDump(ProcessProtocol):
    """One C{runc checkpoint --lazy-pages} run and its page server."""

    def __init__(self, reactor, port: int, guard_socket: str, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.reactor = reactor
        self.port = port
        self.guard_socket = guard_socket
        self.connect_timeout = connect_timeout
        #: Fires once the images are written (fails if runc ends first).
        self.ready: Deferred = Deferred()
        #: Fires with runc's exit status.
        self.ended: Deferred = Deferred()
        self.watcher = RequestWatcher()
        self.joint: Optional[Joint] = None
        #: Why the dump was given up, if it was.
        self.aborted = ""
        self._out: List[bytes] = []
        self._err: List[bytes] = []
        self._timer = None
        #: The guard's process, once spawned.
        self.guard: Optional[_Guard] = None

    # -- runc ------------------------------------------------------------

    @staticmethod
    def argv(runc: str, state_root: str, criu: str, container_id: str, image_path: str, work_path: str,
             port: int, options) -> List[str]:
        return [
            runc, "--root", state_root, "--criu", criu, "checkpoint",
            "--image-path", image_path, "--work-path", work_path,
            "--lazy-pages", "--page-server", "127.0.0.1:%d" % (port,), "--status-fd", str(STATUS_FD),
        ] + list(options) + [container_id]

    def spawn(self, argv: List[str], env: dict) -> None:
        try:
            self.reactor.spawnProcess(
                self, argv[0], argv, env=env, childFDs={0: "w", 1: "r", 2: "r", STATUS_FD: "r"}
            )
        except OSError as e:
            raise InternalError("cannot run %s: %s" % (argv[0], e.strerror or e))
        guard = list(GUARD_COMMAND) + [self.guard_socket, str(self.port), str(self.transport.pid),
                                       str(self.connect_timeout + 30)]
        self.guard = _Guard()
        try:
            self.reactor.spawnProcess(self.guard, guard[0], guard, env=env, childFDs={0: "w", 1: "r", 2: "r"})
        except OSError as e:
            self.abort("cannot start the page server's guard: %s" % (e,))

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == STATUS_FD:
            if not self.ready.called:
                self._timer = self.reactor.callLater(
                    self.connect_timeout, self.abort, "no client fetched the pages in %.0f s" % (self.connect_timeout,)
                )
                self.ready.callback(None)
        elif fd == 1:
            self._out.append(data)
        elif fd == 2:
            self._err.append(data)

    def output(self) -> str:
        return (b"".join(self._err) + b"".join(self._out)).decode("utf-8", "replace")

    def processEnded(self, reason) -> None:
        code = exit_status(reason)
        self._cancel_timer()
        if not self.ready.called:
            self.ready.errback(InternalError(self.output().strip() or "runc checkpoint failed with status %d" % (code,)))
        if self.joint is not None:
            self.joint.close()
        self.ended.callback(code)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    # -- the pages --------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Whether the client said it had every page."""
        return self.watcher.complete

    async def serve(self, stream) -> None:
        """Join C{stream} (a hijacked API connection) to the page server
        until the copy ends, one way or the other."""
        if self.joint is not None:
            raise Conflict("the pages of this checkpoint are already being fetched")
        if self.ended.called:
            raise Conflict("this checkpoint no longer serves pages")
        self._cancel_timer()
        joint = self.joint = Joint(stream, self.watcher.feed)
        try:
            # (A dump quicker than the guard's start would find no socket.)
            if self.guard is not None:
                await self.guard.listening
            await UNIXClientEndpoint(self.reactor, self.guard_socket, timeout=10).connect(joint_factory(joint))
        except Exception as e:
            self.abort("cannot reach CRIU's page server: %s" % (e,))
            stream.close()
            return
        await joint.remote_ended
        if self.complete:
            joint.half_close()
        else:
            self.abort("the page connection ended before the last page")
        await joint.ended

    def abort(self, why: str) -> None:
        """Give the dump up: CRIU killed, the process it froze left to run."""
        if self.ended.called or self.complete:
            return
        if not self.aborted:
            log.warn("lazy checkpoint given up: {why}", why=why)
            self.aborted = why
        for victim in self._criu_pids():
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                pass

    def _criu_pids(self) -> list:
        """The processes that are CRIU: runc's children (runc itself if it
        has none yet)."""
        pid = getattr(self.transport, "pid", None)
        if not pid:
            return []
        return child_pids(pid) or [pid]


class LazyRpcDump(LazyDump):
    """The same lazy dump made by the daemon over CRIU's RPC (L{CriuDriver.dump}
    with C{lazy_pages} and a page server): no runc in between, the worker
    spawned before the freeze, the daemon's own network lock and cgroup
    freeze.  CRIU tells that the images are written by its C{status-ready}
    notification; it dumps in the C{criu swrk} process itself, which is what
    the guard and L{abort} kill."""

    def __init__(self, reactor, port: int, guard_socket: str, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        super().__init__(reactor, port, guard_socket, connect_timeout)
        self.worker = None
        self._problem = ""

    def start(self, rpc, criu: str, container_id: str, image_path: str, work_path: str, config: str,
              env: dict, tmpfs_external: bool = False, timing: Optional[dict] = None) -> None:
        """Spawn the worker and its guard, and send the dump request
        (C{tmpfs_external}, C{timing}: see L{CriuDriver.dump})."""
        options = {"lazy_pages": True, "ps": {"port": self.port}, "config_file": config}

        def notified(script: str, pid: int):
            if script == "status-ready":
                self._images_written()
            return None

        d = ensureDeferred(rpc.dump(
            criu, container_id, image_path, work_path, leave_running=False, extra_options=options,
            notify=notified, on_worker=lambda worker, netns: self._spawned(worker, env, netns),
            tmpfs_external=tmpfs_external, timing=timing,
        ))
        d.addCallbacks(lambda _: self._finished(0), self._failed)

    def _spawned(self, worker, env: dict, netns: Optional[str]) -> Optional[Deferred]:
        """The guard started beside the worker; C{netns}: the container's
        network namespace, where CRIU dumps from and so listens (the
        guard joins it to connect), or None (the daemon's).  A Deferred
        firing once the guard listens: the dump's request (and so the
        freeze) waits for it, the interpreter's start kept out of the
        downtime (on two cores it took one from CRIU's dump)."""
        self.worker = worker
        guard = list(GUARD_COMMAND) + [self.guard_socket, str(self.port), str(worker.pid),
                                       str(self.connect_timeout + 30), "criu"] + (["--net=" + netns] if netns else [])
        self.guard = _Guard()
        try:
            self.reactor.spawnProcess(self.guard, guard[0], guard, env=env, childFDs={0: "w", 1: "r", 2: "r"})
        except OSError as e:
            self.abort("cannot start the page server's guard: %s" % (e,))
            return None
        ready: Deferred = Deferred()

        def passed(result):
            # (A guard that failed fails the dump: nobody serves its pages.)
            if isinstance(result, Failure):
                ready.errback(result)
                return None
            ready.callback(None)
            return result

        self.guard.listening.addBoth(passed)
        return ready

    def _images_written(self) -> None:
        if not self.ready.called:
            self._timer = self.reactor.callLater(
                self.connect_timeout, self.abort, "no client fetched the pages in %.0f s" % (self.connect_timeout,)
            )
            self.ready.callback(None)

    def _failed(self, failure) -> None:
        self._problem = failure.getErrorMessage()
        self._finished(1)

    def _finished(self, code: int) -> None:
        self._cancel_timer()
        if not self.ready.called:
            self.ready.errback(InternalError(self._problem or "the lazy dump ended before its images were written"))
        if self.joint is not None:
            self.joint.close()
        if not self.ended.called:
            self.ended.callback(code)

    def output(self) -> str:
        return self._problem

    def _criu_pids(self) -> list:
        """The CRIU worker and its children."""
        pid = getattr(self.worker, "pid", None)
        if not pid:
            return []
        return [pid] + child_pids(pid)


class _Guard(ProcessProtocol):
    """The guard's protocol: L{listening} fires once the guard listens on
    its socket (it says so on its output), or fails if it ended first;
    its end is not waited for."""

    def __init__(self) -> None:
        self.listening: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 1 and not self.listening.called:
            self.listening.callback(None)

    def processEnded(self, reason) -> None:
        if not self.listening.called:
            self.listening.errback(InternalError("the page server's guard ended with status %d"
                                                 % (exit_status(reason),)))
