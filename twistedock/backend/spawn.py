"""
L{spawn_process}: a child process started from a thread of its own, so that
the reactor neither waits for it nor holds the GIL meanwhile.

Twisted's C{spawnProcess} runs C{posix_spawn} on the reactor thread, and
C{os.posix_spawn} keeps the GIL: glibc's C{posix_spawn} is a C{vfork},
whose parent waits until the child has run its file actions and exec'd,
which on a loaded host is milliseconds during which no thread of the daemon
runs; before it, Twisted checks each of the daemon's open fds (a
thousand with a few hundred containers). Here the pipes are made and wired
on the reactor (as Twisted does), and the rest runs in a thread: the fds
checked, the spawn itself through libc by ctypes (which releases the
GIL). The child is what Twisted's would be: the same file
actions (Twisted's own computation), every signal's disposition set to its
default (those caught are reset by the exec anyway: Twisted resets those
ignored), an empty signal mask. Where that is not available (another
reactor, no glibc) the reactor's C{spawnProcess} is used.
"""

import ctypes
import ctypes.util
import fcntl
import os
import signal
from typing import Dict, Optional, Sequence

from twisted.internet import process as _process
from twisted.internet.defer import Deferred, succeed
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ..logs import Logger

log = Logger()

_DUP2, _CLOSE = 1, 2
_POSIX_SPAWN_SETSIGDEF = 0x04
_POSIX_SPAWN_SETSIGMASK = 0x08
#: Room for glibc's posix_spawn_file_actions_t (80 bytes), posix_spawnattr_t
#: (336) and sigset_t (128), with a margin.
_OPAQUE = 1024


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        for name in ("posix_spawnp", "posix_spawn_file_actions_init", "posix_spawn_file_actions_adddup2",
                     "posix_spawn_file_actions_addclose", "posix_spawn_file_actions_destroy",
                     "posix_spawnattr_init", "posix_spawnattr_setflags", "posix_spawnattr_setsigdefault",
                     "posix_spawnattr_setsigmask", "posix_spawnattr_destroy", "sigemptyset", "sigaddset"):
            getattr(libc, name)
    except (OSError, AttributeError):
        return None
    libc.posix_spawnattr_setflags.argtypes = [ctypes.c_void_p, ctypes.c_short]
    return libc


def _has_addchdir(libc) -> bool:
    """Whether libc can start a child in a working directory of its own
    (C{posix_spawn_file_actions_addchdir_np}: glibc 2.29 on)."""
    try:
        libc.posix_spawn_file_actions_addchdir_np.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        return True
    except AttributeError:
        return False


_libc = _load_libc()
#: Whether L{Spawner.spawn_process} takes a working directory (C{path}).
CAN_CHDIR = _libc is not None and _has_addchdir(_libc)


def _sigset(signals: Sequence[int]):
    s = ctypes.create_string_buffer(_OPAQUE)
    _libc.sigemptyset(s)
    for number in signals:
        _libc.sigaddset(s, number)
    return s


def _file_actions(fdmap: Dict[int, int]) -> list:
    """Twisted's file actions for a child whose fds are C{fdmap} (the
    child's fd -> ours): each of our fds inherited by mistake closed."""
    fd_state = []
    for fd in _process._listOpenFDs():
        try:
            fd_state.append((fd, fcntl.fcntl(fd, fcntl.F_GETFD, fcntl.FD_CLOEXEC)))
        except OSError:
            pass
    return _process._getFileActions(fd_state, fdmap, doClose=_CLOSE, doDup2=_DUP2)


def _spawn(executable: bytes, argv: Sequence[bytes], envp: Sequence[bytes], fdmap: Dict[int, int],
           path: Optional[bytes] = None) -> int:
    """posix_spawnp through libc (in a thread: the file actions computed
    here, O(open fds), and the GIL released while the child starts), in
    the working directory C{path} when given: its pid; OSError if it could
    not be started."""
    actions = _file_actions(fdmap)
    file_actions = ctypes.create_string_buffer(_OPAQUE)
    attributes = ctypes.create_string_buffer(_OPAQUE)
    _libc.posix_spawn_file_actions_init(file_actions)
    _libc.posix_spawnattr_init(attributes)
    try:
        if path is not None:
            _libc.posix_spawn_file_actions_addchdir_np(file_actions, path)
        for action in actions:
            if action[0] == _DUP2:
                _libc.posix_spawn_file_actions_adddup2(file_actions, action[1], action[2])
            else:
                _libc.posix_spawn_file_actions_addclose(file_actions, action[1])
        _libc.posix_spawnattr_setflags(attributes, _POSIX_SPAWN_SETSIGDEF | _POSIX_SPAWN_SETSIGMASK)
        # Every signal to its default: an ignored one would stay ignored in
        # the child, a caught one reverts at the exec anyway.
        _libc.posix_spawnattr_setsigdefault(attributes, _sigset(sorted(signal.valid_signals())))
        _libc.posix_spawnattr_setsigmask(attributes, _sigset(()))
        pid = ctypes.c_int()
        c_argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
        c_envp = (ctypes.c_char_p * (len(envp) + 1))(*envp, None)
        error = _libc.posix_spawnp(ctypes.byref(pid), executable, file_actions, attributes, c_argv, c_envp)
    finally:
        _libc.posix_spawn_file_actions_destroy(file_actions)
        _libc.posix_spawnattr_destroy(attributes)
    if error:
        raise OSError(error, "%s: %s" % (os.strerror(error), os.fsdecode(executable)))
    return pid.value


class _Spawned(_process.Process):
    """Twisted's Process for a child started already: its pipes' parent
    ends wired to the reactor, the protocol connected, the child reaped
    (what the end of C{Process.__init__} does)."""

    def __init__(self, reactor, proto, pid: int, child_fds: Dict[int, object], helpers: Dict[int, int]) -> None:
        self._reactor = reactor
        _process._BaseProcess.__init__(self, proto)
        self.pipes = {}
        self.pid = pid
        self.status = -1
        for child_fd, parent_fd in helpers.items():
            if child_fds[child_fd] == "r":
                self.pipes[child_fd] = self.processReaderFactory(reactor, self, child_fd, parent_fd)
            else:
                self.pipes[child_fd] = self.processWriterFactory(reactor, self, child_fd, parent_fd,
                                                                 forceReadHack=True)
        try:
            if self.proto is not None:
                self.proto.makeConnection(self)
        except BaseException:
            log.failure("connecting the process protocol of {pid}", pid=pid)
        # (A child that ended meanwhile is reaped here: SIGCHLD's handler
        # only reaps registered children.)
        _process.registerReapProcessHandler(self.pid, self)


class Spawner:
    """Spawns children from its own small thread pool (not the reactor's,
    which file work may keep busy): L{spawn_process}."""

    def __init__(self, reactor, threads: int = 2) -> None:
        self.reactor = reactor
        self.pool: Optional[ThreadPool] = None
        self.threads = threads

    @property
    def usable(self) -> bool:
        return _libc is not None and isinstance(self.reactor, PosixReactorBase) and hasattr(_process, "_getFileActions")

    @property
    def can_chdir(self) -> bool:
        """Whether L{spawn_process} starts a child in a working directory
        (C{path}) without forking the daemon: glibc's addchdir."""
        return self.usable and CAN_CHDIR

    def _pool(self) -> ThreadPool:
        if self.pool is None:
            self.pool = ThreadPool(1, self.threads, name="spawn")
            self.pool.start()
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        return self.pool

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()
            self.pool = None

    def spawn_process(self, proto, executable: str, args: Sequence[str], env: Dict[str, str],
                      child_fds: Optional[dict] = None, path: Optional[str] = None):
        """As C{reactor.spawnProcess(proto, executable, args, env,
        childFDs=child_fds, path=path)} (no uid/gid; C{path} only where
        L{CAN_CHDIR}): a Deferred firing with the process transport, or
        failing with the OSError of a child that could not be started."""
        if not self.usable:
            where = {"path": path} if path is not None else {}
            return succeed(self.reactor.spawnProcess(proto, executable, list(args), env=env, childFDs=child_fds,
                                                     **where))
        if path is not None and not CAN_CHDIR:
            raise ValueError("this libc cannot start a child in a working directory")
        child_fds = dict(child_fds) if child_fds is not None else {0: "w", 1: "r", 2: "r"}
        fdmap: Dict[int, int] = {}  # the child's fd -> ours
        helpers: Dict[int, int] = {}  # the child's fd -> our end of its pipe
        opened = []
        try:
            for child_fd, target in child_fds.items():
                if target in ("r", "w"):
                    r, w = os.pipe()
                    opened += [r, w]
                    fdmap[child_fd], helpers[child_fd] = (w, r) if target == "r" else (r, w)
                else:
                    fdmap[child_fd] = target
            argv = [os.fsencode(a) for a in args]
            envp = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise

        def started(pid: int):
            for child_fd in helpers:
                os.close(fdmap[child_fd])
            return _Spawned(self.reactor, proto, pid, child_fds, helpers)

        def failed(failure):
            for fd in opened:
                os.close(fd)
            return failure

        spawned = deferToThreadPool(self.reactor, self._pool(), _spawn, os.fsencode(executable), argv, envp, fdmap,
                                    os.fsencode(path) if path is not None else None)
        spawned.addCallbacks(started, failed)
        # The caller may cancel what it awaits (a client gone): the child,
        # started or about to be, is wired and reaped all the same, as one
        # of Twisted's would be.
        result = Deferred()

        def deliver(outcome):
            if not result.called:
                if isinstance(outcome, Failure):
                    result.errback(outcome)
                else:
                    result.callback(outcome)
            elif isinstance(outcome, Failure):
                log.failure("starting {executable}", outcome, executable=executable)
            return None

        spawned.addBoth(deliver)
        return result
