"""
The copy backend: what `docker cp`, `docker export`, `docker diff` and
`docker commit` ask of a container's filesystem, as dockerd answers.

Safety first.  Every path a client names is resolved here, one component at
a time, relative to a descriptor of the container's root: a symbolic link is
read (never followed by the kernel) and resolved again inside the root (an
absolute target starts over at the root, C{..} stops at it), as moby's
FollowSymlinkInScope.  Files and directories are then opened from their
parent's descriptor with C{O_NOFOLLOW}, so a container that swaps a
directory for a link while we work (CVE-2018-15664) only makes us fail,
never read or write outside its root.  Extraction goes through
L{twistedock.archive}'s extractor, which resolves the same way; a tar with an
entry or a hard link that would land outside the target directory is refused
whole (400) before anything is written.  Nothing of the container is ever
executed or loaded (CVE-2019-14271).

The root is the overlay's merged directory: mounted while the container
runs, mounted here for the time of the work otherwise (the container's lock
makes that decision race-free with a start; a descriptor held on the mount
keeps it usable even when it is detached under us).  Changes and commit read
the upper directory and the image's layers directly.

Containers run without dockerd's "init layer"; the mount points runc
creates in the upper directory (C{/etc/hostname}, C{/etc/hosts},
C{/etc/resolv.conf}, C{/proc}, ...) are treated as that layer: not changes,
not committed.

Tars are written as Go's archive/tar writes them for moby (USTAR, PAX when
needed, mtimes in whole seconds, directories with a trailing slash, hard
links by inode, sockets skipped, the C{security.capability} attribute), in a
thread, handed to the request chunk by chunk with backpressure
(L{TarStream}).
"""

import base64
import collections
import copy
import errno
import io
import json
import os
import stat
import tarfile
import tempfile
import threading
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from zope.interface import implementer

from .. import archive
from ..deferreds import shield
from ..errors import (
    Conflict,
    DockerError,
    Forbidden,
    InternalError,
    InvalidParameter,
    NotFound,
)
from ..logs import Logger
from ..routers.container import ICopyBackend
from .runtime import rootfs
from .. import golang

log = Logger()

#: As moby's FollowSymlinkInScope: how many links one resolution may follow.
MAX_LINKS = 255

#: Stream chunks, and how many may wait for the client (bounded memory).
CHUNK = 64 * 1024
WINDOW = 4

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY

#: dockerd's init layer: the mount points of every container, below its own
#: layer, so never a change nor committed ("file", "dir", or a link target).
INIT_LAYER = {
    "dev": "dir",
    "dev/pts": "dir",
    "dev/shm": "dir",
    "dev/console": "file",
    "proc": "dir",
    "sys": "dir",
    "etc": "dir",
    ".dockerenv": "file",
    "etc/resolv.conf": "file",
    "etc/hosts": "file",
    "etc/hostname": "file",
    "etc/mtab": "/proc/mounts",
}

#: The files of the container's directory the daemon mounts on /etc.
MOUNTED_FILES = ("hostname", "hosts", "resolv.conf")

#: Change kinds, as the API numbers them.
MODIFIED, ADDED, DELETED = 0, 1, 2


# =============================================================================
# Go's view of paths, modes and times
# =============================================================================



def container_path(path: str) -> str:
    """C{path} as an absolute path in the container, cleaned, with a trailing
    C{/} or C{/.} kept (moby's PreserveTrailingDotOrSeparator): they mean
    "the directory itself" or "its content" to docker cp."""
    cleaned = golang.clean("/" + path)
    if golang.base(cleaned) != "." and golang.base(path) == ".":
        if not cleaned.endswith("/"):
            cleaned += "/"
        cleaned += "."
    if not cleaned.endswith("/") and path.endswith("/"):
        cleaned += "/"
    return cleaned


def _shown(parts: Sequence[str]) -> str:
    return "/" + "/".join(parts)


# =============================================================================
# Resolving paths inside a root (blocking: run in a thread)
# =============================================================================


class PathNotDirectory(Exception):
    """A component used as a directory is something else (dockerd: 500)."""


class TooManyLinks(Exception):
    """The path goes round symbolic links."""


#: In the walk's stack: a component that exists but is not a directory.
_NOT_DIR = -2


def resolve(root_fd: int, path: str, follow_last: bool = True) -> List[str]:
    """The components of C{path} resolved inside the root, as moby's
    FollowSymlinkInScope: every symbolic link met is replaced by its target
    read from the root (the last component's only with C{follow_last}),
    C{..} stops at the root, and components that do not exist are kept as
    they are.  Raises L{PathNotDirectory} when a file is used as a directory
    and L{TooManyLinks}."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    names: List[str] = []
    fds: List[int] = [os.dup(root_fd)]
    links = 0
    try:
        while pending:
            part = pending.pop(0)
            if part == "..":
                if names:
                    names.pop()
                    fd = fds.pop()
                    if fd >= 0:
                        os.close(fd)
                continue
            parent = fds[-1]
            if parent == _NOT_DIR:
                raise PathNotDirectory(_shown(names + [part]))
            if parent == -1:
                # Below a component that does not exist: accepted as it is.
                names.append(part)
                fds.append(-1)
                continue
            try:
                st = os.stat(part, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                names.append(part)
                fds.append(-1)
                continue
            if stat.S_ISLNK(st.st_mode) and (pending or follow_last):
                links += 1
                if links > MAX_LINKS:
                    raise TooManyLinks()
                target = os.readlink(part, dir_fd=parent)
                if target.startswith("/"):
                    for fd in fds[1:]:
                        if fd >= 0:
                            os.close(fd)
                    del fds[1:]
                    names = []
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                continue
            if stat.S_ISDIR(st.st_mode):
                fds.append(os.open(part, _DIR_FLAGS, dir_fd=parent))
            else:
                fds.append(_NOT_DIR)
            names.append(part)
        return names
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def open_dir(root_fd: int, parts: Sequence[str]) -> int:
    """A descriptor of the directory at the resolved C{parts}, every step
    taken without following a link (a link swapped in meanwhile fails with
    ELOOP or ENOTDIR).  FileNotFoundError when it does not exist."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                raise
            os.close(fd)
            fd = next_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


class Target:
    """A path of the container, resolved as dockerd's ResolvePath: its
    directory with every link followed, its last component as it is."""

    def __init__(
        self,
        abs_path: str,
        dir_parts: List[str],
        base: str,
        dir_fd: int,
        st,
        mounts: Optional[Dict[Tuple[str, ...], str]] = None,
    ) -> None:
        self.abs_path = abs_path
        self.dir_parts = dir_parts
        #: Files mounted into the container (container path: host file).
        self.mounts = mounts or {}
        #: The last component, or "" / "." for the directory itself.
        self.base = base
        #: The directory holding the target (or the target directory itself).
        self.dir_fd = dir_fd
        self.st = st

    @property
    def is_dir_itself(self) -> bool:
        return self.base in ("", ".")

    @property
    def parts(self) -> List[str]:
        return self.dir_parts if self.is_dir_itself else self.dir_parts + [self.base]

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


class Scope:
    """A container's root filesystem, by descriptor, and the names it gives
    in messages (dockerd names its host paths)."""

    def __init__(
        self,
        root_fd: int,
        shown_root: str,
        container_ref: str,
        mounts: Optional[Dict[Tuple[str, ...], str]] = None,
    ) -> None:
        self.root_fd = root_fd
        self.shown_root = shown_root.rstrip("/")
        self.ref = container_ref
        #: The daemon's files mounted over the root (hostname, hosts,
        #: resolv.conf), by container path: reads see them, as dockerd's.
        self.mounts = dict(mounts or {})

    def not_found(self, path: str) -> NotFound:
        return NotFound("Could not find the file %s in container %s" % (path, self.ref))

    def resolve(self, path: str, follow_last: bool = True) -> List[str]:
        try:
            return resolve(self.root_fd, path, follow_last)
        except PathNotDirectory as e:
            raise InternalError("lstat %s%s: not a directory" % (self.shown_root, e.args[0]))
        except TooManyLinks:
            raise InternalError(
                "evalSymlinksInScope: too many links in %s%s"
                % (self.shown_root, golang.clean("/" + path))
            )

    def target(self, path: str) -> Target:
        """Resolve C{path} as dockerd's ResolvePath, and lstat it."""
        abs_path = container_path(path)
        directory, base = golang.split(abs_path)
        dir_parts = self.resolve(directory)
        shown = self.shown_root + _shown(dir_parts).rstrip("/") + "/" + base
        try:
            dir_fd = open_dir(self.root_fd, dir_parts)
        except FileNotFoundError:
            raise self.not_found(path)
        except NotADirectoryError:
            raise InternalError("lstat %s: not a directory" % (shown,))
        try:
            if base in ("", "."):
                st = os.fstat(dir_fd)
            else:
                st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.close(dir_fd)
            raise self.not_found(path)
        except BaseException:
            os.close(dir_fd)
            raise
        source = self.mounts.get(tuple(dir_parts + [base]))
        if source is not None and not stat.S_ISDIR(st.st_mode):
            try:
                source_fd = os.open(os.path.dirname(source), _DIR_FLAGS)
            except OSError:
                source_fd = -1
            if source_fd >= 0:
                os.close(dir_fd)
                dir_fd, base = source_fd, os.path.basename(source)
                try:
                    st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
                except BaseException:
                    os.close(dir_fd)
                    raise
        return Target(abs_path, dir_parts, base, dir_fd, st, self.mounts)

    def path_stat(self, path: str) -> Tuple[dict, Target]:
        """The C{X-Docker-Container-Path-Stat} of C{path}, and its target."""
        target = self.target(path)
        try:
            link_target = ""
            if stat.S_ISLNK(target.st.st_mode):
                link_target = _shown(self.resolve(target.abs_path))
            doc = {
                "name": golang.base(target.abs_path),
                "size": target.st.st_size,
                "mode": golang.file_mode(target.st.st_mode),
                "mtime": golang.rfc3339_nano(target.st.st_mtime_ns),
                "linkTarget": link_target,
            }
        except BaseException:
            target.close()
            raise
        return doc, target


def encode_path_stat(doc: dict) -> str:
    """The header's value: base64 (standard) of Go's JSON of the stat."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# =============================================================================
# Writing tars (blocking)
# =============================================================================


class StreamStopped(Exception):
    """The reader went away: stop producing."""


class TarWriter:
    """Tar entries as moby's archive package writes them, to C{write}."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._links: Dict[Tuple[int, int], str] = {}

    # -- headers ---------------------------------------------------------

    def header(self, info: tarfile.TarInfo) -> None:
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    @staticmethod
    def info_for(name: str, st, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid = st.st_uid
        info.gid = st.st_gid
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        info.size = 0
        return info

    def close(self) -> None:
        """The end of the archive: two zero blocks, as Go's writer."""
        self._write(b"\0" * (2 * tarfile.BLOCKSIZE))

    # -- entries -----------------------------------------------------------

    def entry(self, dir_fd: int, name: Optional[str], arcname: str, st) -> Optional[int]:
        """Write one entry: C{name} in C{dir_fd} (None: the directory
        C{dir_fd} itself).  For a directory, its open descriptor is
        returned (the caller closes it); None otherwise."""
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return None  # as moby: sockets are skipped
        if stat.S_ISDIR(mode):
            fd = os.dup(dir_fd) if name is None else os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                info = self.info_for(arcname, st, tarfile.DIRTYPE)
                self._capability(fd, None, info)
                self.header(info)
            except BaseException:
                os.close(fd)
                raise
            return fd
        assert name is not None
        if stat.S_ISLNK(mode):
            info = self.info_for(arcname, st, tarfile.SYMTYPE)
            info.linkname = os.readlink(name, dir_fd=dir_fd)
            self.header(info)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                info = self.info_for(arcname, st, tarfile.LNKTYPE)
                info.linkname = self._links[key]
                self.header(info)
                return None
            self.regular(dir_fd, name, arcname, st)
            if st.st_nlink > 1:
                self._links[key] = arcname
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info = self.info_for(
                arcname, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            )
            info.devmajor = os.major(st.st_rdev)
            info.devminor = os.minor(st.st_rdev)
            self._capability(dir_fd, name, info)
            self.header(info)
        elif stat.S_ISFIFO(mode):
            info = self.info_for(arcname, st, tarfile.FIFOTYPE)
            self.header(info)
        return None

    def regular(self, dir_fd: int, name: str, arcname: str, st) -> None:
        # O_NONBLOCK: a FIFO swapped in for the file must not hang us.
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                raise OSError(errno.EINVAL, "%s changed while being read" % (arcname,))
            info = self.info_for(arcname, now, tarfile.REGTYPE)
            info.size = now.st_size
            self._capability(fd, None, info)
            self.header(info)
            remaining = info.size
            while remaining > 0:
                data = os.read(fd, min(CHUNK, remaining))
                if not data:
                    # Shrunk while read: pad, so that the archive stays whole.
                    data = b"\0" * min(CHUNK, remaining)
                self._write(data)
                remaining -= len(data)
            tail = info.size % tarfile.BLOCKSIZE
            if tail:
                self._write(b"\0" * (tarfile.BLOCKSIZE - tail))
        finally:
            os.close(fd)

    @staticmethod
    def _capability(fd: int, name: Optional[str], info: tarfile.TarInfo) -> None:
        """moby keeps one extended attribute: security.capability."""
        value = _capability_at(fd, name)
        if value is None:
            return
        info.pax_headers["SCHILY.xattr.security.capability"] = value.decode(
            "utf-8", "surrogateescape"
        )

    # -- trees -------------------------------------------------------------

    def tree(
        self,
        dir_fd: int,
        name: Optional[str],
        arcname: str,
        st,
        include_self: bool = True,
        child_prefix: Optional[str] = None,
        parts: Sequence[str] = (),
        mounts: Optional[Dict[Tuple[str, ...], str]] = None,
    ) -> None:
        """C{name} (or the directory C{dir_fd}) and, for a directory,
        everything below it, in Go's Walk order (names sorted); the
        children are named C{child_prefix} (C{arcname + "/"} by default)
        followed by their path below it.  C{parts} is the directory's path
        in the container, C{mounts} the files mounted over it (container
        path: host file), archived in place of what the root holds."""
        if include_self:
            top = self.entry(dir_fd, name, arcname, st)
            if top is None:
                return
        else:
            top = os.dup(dir_fd) if name is None else os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        prefix = arcname + "/" if child_prefix is None else child_prefix
        # Depth first, iteratively: (descriptor, names left, prefix, path).
        stack = [(top, _sorted_names(top), prefix, tuple(parts))]
        try:
            while stack:
                fd, names, where, here = stack[-1]
                if not names:
                    os.close(fd)
                    stack.pop()
                    continue
                child = names.popleft()
                try:
                    child_st = os.stat(child, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # gone meanwhile
                child_arc = where + child
                source = mounts.get(here + (child,)) if mounts else None
                if source is not None and not stat.S_ISDIR(child_st.st_mode):
                    self.mounted(source, child_arc)
                    continue
                sub = self.entry(fd, child, child_arc, child_st)
                if sub is not None:
                    stack.append((sub, _sorted_names(sub), child_arc + "/", here + (child,)))
        finally:
            for fd, _, _, _ in stack:
                os.close(fd)

    def mounted(self, source: str, arcname: str) -> None:
        """A file the daemon mounts into the container (hostname, hosts,
        resolv.conf: its own files, not the container's)."""
        fd = os.open(os.path.dirname(source), _DIR_FLAGS)
        try:
            name = os.path.basename(source)
            self.entry(fd, name, arcname, os.stat(name, dir_fd=fd, follow_symlinks=False))
        finally:
            os.close(fd)


def _capability_at(fd: int, name: Optional[str]) -> Optional[bytes]:
    """The security.capability attribute of C{name} in directory C{fd}
    (not followed), or of C{fd} itself; None if it has none."""
    try:
        if name is None:
            return os.getxattr(fd, "security.capability")
        return os.getxattr(
            "/proc/self/fd/%d/%s" % (fd, name), "security.capability", follow_symlinks=False
        )
    except OSError:
        return None


def _sorted_names(fd: int) -> collections.deque:
    return collections.deque(sorted(os.listdir(fd)))


def write_path_archive(target: Target, write: Callable[[bytes], None]) -> None:
    """GET archive: the target (and what is below it), named after the
    base name of the asked path (moby's TarResourceRebase)."""
    writer = TarWriter(write)
    rebase = golang.base(target.abs_path)
    arcname = "" if rebase == "/" else rebase
    name = None if target.is_dir_itself else target.base
    writer.tree(target.dir_fd, name, arcname, target.st, parts=target.parts, mounts=target.mounts)
    writer.close()


def write_export(root_fd: int, write: Callable[[bytes], None]) -> None:
    """GET export: the whole root filesystem, names relative, no root entry."""
    writer = TarWriter(write)
    writer.tree(root_fd, None, "", os.fstat(root_fd), include_self=False, child_prefix="")
    writer.close()


# =============================================================================
# Streaming a tar to a request, with backpressure
# =============================================================================


def _in_thread(reactor, function: Callable[[], Any]) -> Deferred:
    """Run C{function} in a thread of its own (a stream may wait on a slow
    client for long: it must not hold one of the reactor pool's threads)."""
    d: Deferred = Deferred()

    def run() -> None:
        _name_thread(b"twistedock-tar")
        try:
            result = function()
        except BaseException:
            failure = Failure()
            reactor.callFromThread(d.errback, failure)
        else:
            reactor.callFromThread(d.callback, result)

    threading.Thread(target=run, name="twistedock-tar", daemon=True).start()
    return d


def _name_thread(name: bytes) -> None:
    """Name the OS thread (ps, top -H and /proc show it): the streams'
    threads are easy to tell apart from the pool's."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, name, 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass


class _Chunker:
    """Gathers small writes into chunks of C{size} bytes."""

    def __init__(self, put: Callable[[bytes], None], size: int) -> None:
        self._put = put
        self._size = size
        self._parts: List[bytes] = []
        self._length = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._parts.append(bytes(data))
        self._length += len(data)
        if self._length >= self._size:
            joined = b"".join(self._parts)
            self._parts, self._length = [], 0
            for start in range(0, len(joined), self._size):
                self._put(joined[start : start + self._size])

    def flush(self) -> None:
        if self._parts:
            joined = b"".join(self._parts)
            self._parts, self._length = [], 0
            self._put(joined)


class TarStream:
    """A tar made in a thread and written to a consumer (a request) at the
    pace of its L{Flow<twistedock.server.httputils.Flow>}: at most
    C{window} chunks wait for the client, and the thread blocks until the
    client has taken them.  When the client goes away (the flow stopped, or
    the handler's Deferred cancelled) the thread is told to stop and ends;
    C{cleanup} runs once the thread is over (or at L{close} if the stream
    never started)."""

    def __init__(
        self,
        reactor,
        produce: Callable[[Callable[[bytes], None]], None],
        cleanup: Optional[Callable[[], Any]] = None,
        chunk_size: int = CHUNK,
        window: int = WINDOW,
    ) -> None:
        self._reactor = reactor
        self._produce = produce
        self._cleanup = cleanup
        self._chunk_size = chunk_size
        self._cond = threading.Condition()
        self._credits = window
        self._stopped = False
        self._pending: collections.deque = collections.deque()
        self._paused = False
        self._consumer = None
        self._flushed: Optional[Deferred] = None
        self._started = False
        self._cleaned = False
        #: Chunks written to the consumer (for tests and logs).
        self.written = 0

    # -- the thread's side ---------------------------------------------------

    def _put(self, data: bytes) -> None:
        with self._cond:
            while self._credits <= 0 and not self._stopped:
                self._cond.wait()
            if self._stopped:
                raise StreamStopped()
            self._credits -= 1
        self._reactor.callFromThread(self._deliver, data)

    def _main(self) -> None:
        chunker = _Chunker(self._put, self._chunk_size)
        self._produce(chunker.write)
        chunker.flush()

    # -- the reactor's side ----------------------------------------------------

    def _deliver(self, data: bytes) -> None:
        if self._consumer is None:
            return
        self._pending.append(data)
        self._flush()

    def _flush(self) -> None:
        while self._pending and not self._paused and self._consumer is not None:
            data = self._pending.popleft()
            self._consumer.write(data)
            self.written += 1
            with self._cond:
                self._credits += 1
                self._cond.notify()
        if not self._pending and self._flushed is not None:
            d, self._flushed = self._flushed, None
            d.callback(None)

    def _pause(self) -> None:
        self._paused = True

    def _resume(self) -> None:
        self._paused = False
        self._flush()

    def stop(self) -> None:
        """Tell the thread to stop at its next chunk."""
        self._consumer = None
        self._pending.clear()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _clean(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        if self._cleanup is not None:
            try:
                result = self._cleanup()
                if isinstance(result, Deferred):
                    result.addErrback(lambda f: log.failure("cleaning up a tar stream", f))
            except Exception:
                log.failure("cleaning up a tar stream")

    def close(self) -> None:
        """Release what the stream holds if it never started."""
        if not self._started:
            self._started = True
            self._clean()

    def write_to(self, consumer, flow) -> Deferred:
        """Write the whole tar with C{consumer.write}, paced by C{flow} (the
        request's Flow: C{paused}, C{stopped}, C{listeners}); fires when it
        is all written."""
        return ensureDeferred(self._write_to(consumer, flow))

    async def _write_to(self, consumer, flow) -> None:
        if self._started:
            raise RuntimeError("a tar stream is written once")
        self._started = True
        self._consumer = consumer
        self._paused = bool(flow.paused)

        def resumed() -> None:
            if flow.stopped:
                self.stop()
            else:
                self._resume()

        listener = (self._pause, resumed)
        flow.listeners.append(listener)
        outcome: Deferred = Deferred()

        def over(result):
            self._clean()
            if not outcome.called:
                if isinstance(result, Failure):
                    outcome.errback(result)
                else:
                    outcome.callback(result)
            return None

        try:
            if flow.stopped:
                raise CancelledError()
            _in_thread(self._reactor, self._main).addBoth(over)
        except BaseException:
            self._clean()
            if listener in flow.listeners:
                flow.listeners.remove(listener)
            raise
        try:
            try:
                await outcome
            except StreamStopped:
                raise CancelledError()
            if self._pending:
                self._flushed = Deferred()
                await self._flushed
        except CancelledError:
            raise
        except Exception:
            # The status is sent: cut the connection, so that the client
            # sees a broken stream rather than a short tar.
            _abort(consumer)
            raise
        finally:
            self.stop()
            self._flushed = None
            if listener in flow.listeners:
                flow.listeners.remove(listener)


def _abort(consumer) -> None:
    channel = getattr(consumer, "channel", None)
    transport = getattr(channel, "transport", None) if channel is not None else None
    if transport is None:
        transport = getattr(consumer, "transport", None)
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        try:
            abort()
        except Exception:
            pass


# =============================================================================
# Extracting a tar into a directory of the container (blocking)
# =============================================================================


class OverwriteConflict(archive.ArchiveError):
    """noOverwriteDirNonDir refused an entry (400)."""


def _scan_for_breakouts(stream: BinaryIO, dest: str) -> None:
    """Refuse the whole tar when an entry, or a hard link's target, would
    land outside C{dest} (moby checks each entry as it comes; refusing
    before anything is written leaves the container as it was)."""
    head = archive._read_exactly(stream, tarfile.BLOCKSIZE)
    if len(head) < tarfile.BLOCKSIZE:
        return
    source = io.BufferedReader(archive._Prefixed(head, stream), archive._CHUNK)
    for _, member in archive.members(source, len(head)):
        name = golang.clean(member.name)
        joined = golang.clean(dest + "/" + name)
        if not _inside(joined, dest):
            raise archive.BreakoutError("%s is outside of %s" % (golang.quote(name), golang.quote(dest)))
        if member.islnk():
            target = golang.clean(dest + "/" + member.linkname)
            if not _inside(target, dest):
                raise archive.BreakoutError(
                    "invalid hardlink %s -> %s" % (golang.quote(target), golang.quote(member.linkname))
                )


def _inside(path: str, dest: str) -> bool:
    return dest == "/" or path == dest or path.startswith(dest.rstrip("/") + "/")


class CopyExtractor(archive._Extractor):
    """archive's extractor for docker cp: entries land below C{dest_parts}
    of the container's root (links on the way resolved inside the root),
    whiteout names are plain files, and noOverwriteDirNonDir and
    copyUIDGID are honoured."""

    def __init__(
        self,
        root_fd: int,
        dest_parts: List[str],
        no_overwrite_dir_non_dir: bool = False,
        owner: Optional[Tuple[int, int]] = None,
    ) -> None:
        super().__init__(root_fd)
        self.dest_parts = list(dest_parts)
        self.dest_shown = _shown(dest_parts)
        self.no_overwrite = no_overwrite_dir_non_dir
        self.owner = owner
        self._entry = ""

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = golang.clean(member.name).lstrip("/") or "."
        if name == "." or name.startswith("../") or name == "..":
            # "." merges into the existing directory (its metadata kept);
            # escaping names were refused before anything was written.
            return
        if name.startswith(archive.WHITEOUT_META_PREFIX):
            return  # AUFS metadata, as moby skips it
        parts = self.dest_parts + name.split("/")
        shown = "/".join(parts)
        if self.owner is not None:
            member.uid, member.gid = self.owner
        parent_fd = self.open_dir(parts[:-1], create=True, shown=shown)
        try:
            self._entry = "/" + shown
            self.create(tar, member, parent_fd, parts[-1], shown)
        finally:
            os.close(parent_fd)

    def remove_existing(self, parent_fd: int, base: str, keep_dir: bool) -> None:
        if self.no_overwrite:
            try:
                st = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                is_dir = stat.S_ISDIR(st.st_mode)
                if is_dir and not keep_dir:
                    raise OverwriteConflict(
                        "cannot overwrite directory %s with non-directory %s"
                        % (golang.quote(self._entry), golang.quote(self.dest_shown))
                    )
                if not is_dir and keep_dir:
                    raise OverwriteConflict(
                        "cannot overwrite non-directory %s with directory %s"
                        % (golang.quote(self._entry), golang.quote(self.dest_shown))
                    )
        super().remove_existing(parent_fd, base, keep_dir)

    def hardlink(self, member: tarfile.TarInfo, parent_fd: int, base: str, path: str) -> bool:
        # Link names are relative to the directory extracted into.
        target = golang.clean(self.dest_shown + "/" + member.linkname)
        relocated = copy.copy(member)
        relocated.linkname = target.lstrip("/")
        return super().hardlink(relocated, parent_fd, base, path)


def extract_into(
    root_fd: int,
    dest_parts: List[str],
    content: BinaryIO,
    no_overwrite_dir_non_dir: bool,
    owner: Optional[Tuple[int, int]],
) -> None:
    """Check, then unpack the tar C{content} (compressed or not, seekable)
    into the resolved directory C{dest_parts}."""
    dest = _shown(dest_parts)
    content.seek(0)
    _scan_for_breakouts(archive.decompressed(content), dest)
    content.seek(0)
    stream = archive.decompressed(content)
    head = archive._read_exactly(stream, tarfile.BLOCKSIZE)
    if len(head) < tarfile.BLOCKSIZE:
        return  # an empty (or too short) body extracts nothing, as dockerd
    source = io.BufferedReader(archive._Prefixed(head, stream), archive._CHUNK)
    extractor = CopyExtractor(root_fd, dest_parts, no_overwrite_dir_non_dir, owner)
    try:
        for tar, member in archive.members(source, len(head)):
            extractor.extract(tar, member)
        extractor.finish()
    except OSError as e:
        raise archive.ArchiveError(archive._os_error(e))


# =============================================================================
# Changes: the upper directory against the image's layers (blocking)
# =============================================================================


def _is_whiteout(st) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, archive.OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _is_opaque_fd(fd: int) -> bool:
    try:
        return os.getxattr(fd, archive.OPAQUE_XATTR) == b"y"
    except OSError:
        return False


class LowerView:
    """The image's layers merged, as overlayfs shows them below the
    container's own layer (whiteouts and opaque directories honoured)."""

    def __init__(self, layer_dirs: Sequence[str]) -> None:
        #: Highest first.
        self.layers = list(reversed(list(layer_dirs)))

    def lstat(self, parts: Sequence[str]):
        """The stat of C{parts} in the merged layers, or None."""
        for layer in self.layers:
            path = layer
            hidden_below = False
            found = None
            for i, part in enumerate(parts):
                path = os.path.join(path, part)
                try:
                    st = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    break
                if _is_whiteout(st):
                    return None
                if i == len(parts) - 1:
                    found = st
                    break
                if not stat.S_ISDIR(st.st_mode):
                    return None  # a file here hides whatever is below
                if _is_opaque(path):
                    hidden_below = True
            if found is not None:
                return found
            if hidden_below:
                return None
        return None

    def listdir(self, parts: Sequence[str]) -> List[str]:
        """The names in the merged directory C{parts}."""
        names: set = set()
        hidden: set = set()
        for layer in self.layers:
            path = layer
            blocked = False
            present = True
            for i, part in enumerate(parts):
                path = os.path.join(path, part)
                try:
                    st = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    present = False
                    break
                if _is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                    return sorted(names)
                if _is_opaque(path) and i < len(parts) - 1:
                    blocked = True
            if not present:
                if blocked:
                    break
                continue
            try:
                entries = os.listdir(path)
            except OSError:
                entries = []
            for name in entries:
                if name in hidden or name in names:
                    continue
                try:
                    st = os.lstat(os.path.join(path, name))
                except OSError:
                    continue
                if _is_whiteout(st):
                    hidden.add(name)
                else:
                    names.add(name)
            if blocked or _is_opaque(path):
                break
        return sorted(names)

    def path_of(self, parts: Sequence[str]) -> Optional[str]:
        """The path of C{parts} in the highest layer holding it, or None."""
        if self.lstat(parts) is None:
            return None
        for layer in self.layers:
            candidate = os.path.join(layer, *parts)
            if os.path.lexists(candidate):
                return candidate
        return None


def _stat_different(old, new) -> bool:
    """moby's statDifferent (naive diff): mode, owner, device, and for
    non-directories mtime and size."""
    if (
        old.st_mode != new.st_mode
        or old.st_uid != new.st_uid
        or old.st_gid != new.st_gid
        or old.st_rdev != new.st_rdev
    ):
        return True
    if not stat.S_ISDIR(old.st_mode):
        if old.st_mtime_ns != new.st_mtime_ns or old.st_size != new.st_size:
            return True
    return False


def _capability(path: Optional[str]) -> Optional[bytes]:
    if path is None:
        return None
    try:
        return os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        return None


def _init_stub(rel: str, st) -> bool:
    """Whether C{rel} in the upper directory is one of the init layer's
    mount points as runc made it (an empty file, or a directory)."""
    kind = INIT_LAYER.get(rel)
    if kind is None:
        return False
    if kind == "dir":
        return stat.S_ISDIR(st.st_mode)
    if kind == "file":
        return stat.S_ISREG(st.st_mode) and st.st_size == 0
    return stat.S_ISLNK(st.st_mode)


class _Entry:
    """One entry of the upper directory, classified against the layers."""

    __slots__ = ("parts", "st", "kind", "opaque", "children", "changed_inside", "keep")

    def __init__(self, parts: List[str], st) -> None:
        self.parts = parts
        self.st = st
        #: ADDED, MODIFIED, DELETED, or None (unchanged).
        self.kind: Optional[int] = None
        self.opaque = False
        self.children: List["_Entry"] = []
        self.changed_inside = False
        #: Whether a commit keeps it (False for the init layer's stubs).
        self.keep = True


def scan_upper(upper: str, lower: LowerView) -> Tuple[List[Tuple[str, int]], "_Entry"]:
    """Walk the container's upper directory: the changes dockerd reports
    (path, kind), and the tree of entries (for commit)."""
    changes: List[Tuple[str, int]] = []
    root = _Entry([], os.lstat(upper))
    if not stat.S_ISDIR(root.st.st_mode):
        return changes, root
    upper_fd = os.open(upper, _DIR_FLAGS)
    try:
        _scan_dir(upper_fd, root, lower, changes)
    finally:
        os.close(upper_fd)
    changes.sort(key=lambda item: item[0])
    return changes, root


def _scan_dir(dir_fd: int, entry: "_Entry", lower: LowerView, changes: List[Tuple[str, int]]) -> bool:
    """Classify the children of C{entry} (open as C{dir_fd}); whether any
    change was recorded below it."""
    recorded = False
    names = sorted(os.listdir(dir_fd))
    for name in names:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        child = _Entry(entry.parts + [name], st)
        entry.children.append(child)
        path = _shown(child.parts)
        rel = "/".join(child.parts)
        if _is_whiteout(st):
            if lower.lstat(child.parts) is not None:
                child.kind = DELETED
                changes.append((path, DELETED))
                recorded = True
            else:
                child.keep = False  # a whiteout of nothing
            continue
        old = lower.lstat(child.parts)
        is_dir = stat.S_ISDIR(st.st_mode)
        if old is None and _init_stub(rel, st):
            # The init layer's mount point: as if it were below.
            child.keep = False
            old = st
        if old is None:
            child.kind = ADDED
            changes.append((path, ADDED))
            recorded = True
        elif child.keep and (
            _stat_different(old, st)
            or (
                stat.S_ISREG(st.st_mode)
                and _capability_at(dir_fd, name) != _capability(lower.path_of(child.parts))
            )
        ):
            child.kind = MODIFIED
            changes.append((path, MODIFIED))
            recorded = True
        if not is_dir:
            continue
        sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            child.opaque = _is_opaque_fd(sub)
            inside = _scan_dir(sub, child, lower, changes)
            if child.opaque and old is not None and stat.S_ISDIR(old.st_mode) and child.keep:
                present = set(os.listdir(sub))
                for gone in lower.listdir(child.parts):
                    if gone not in present:
                        changes.append((_shown(child.parts + [gone]), DELETED))
                        inside = True
        finally:
            os.close(sub)
        if child.opaque:
            child.keep = True
        if inside:
            recorded = True
            child.changed_inside = True
            child.keep = True
            if child.kind is None:
                child.kind = MODIFIED
                changes.append((path, MODIFIED))
    return recorded


def changes_of(upper: str, layer_dirs: Sequence[str]) -> List[dict]:
    """GET changes: C{[{"Path", "Kind"}]} sorted by path (None: no change,
    as dockerd's JSON null)."""
    if not os.path.isdir(upper):
        return []
    changes, _ = scan_upper(upper, LowerView(layer_dirs))
    return [{"Path": path, "Kind": kind} for path, kind in changes]


# =============================================================================
# Commit: the upper directory as a layer tar (blocking)
# =============================================================================


def write_layer(upper: str, layer_dirs: Sequence[str], write: Callable[[bytes], None]) -> None:
    """The container's own layer as an OCI layer tar: overlayfs whiteouts
    (character devices 0/0) become C{.wh.NAME} files, opaque directories get
    a C{.wh..wh..opq} file, the init layer's mount points are left out."""
    writer = TarWriter(write)
    if os.path.isdir(upper):
        _, root = scan_upper(upper, LowerView(layer_dirs))
        upper_fd = os.open(upper, _DIR_FLAGS)
        try:
            _write_layer_dir(writer, upper_fd, root)
        finally:
            os.close(upper_fd)
    writer.close()


def _kept(entry: _Entry) -> bool:
    if entry.keep:
        return True
    return any(_kept(child) for child in entry.children)


def _write_layer_dir(writer: TarWriter, dir_fd: int, entry: _Entry) -> None:
    for child in entry.children:
        if not _kept(child):
            continue
        name = child.parts[-1]
        arcname = "/".join(child.parts)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if _is_whiteout(st):
            directory, base = golang.split(arcname)
            info = TarWriter.info_for(directory + archive.WHITEOUT_PREFIX + base, st, tarfile.REGTYPE)
            info.mode = 0o600
            writer.header(info)
            continue
        sub = writer.entry(dir_fd, name, arcname, st)
        if sub is None:
            continue
        try:
            if child.opaque:
                info = TarWriter.info_for(arcname + "/" + archive.WHITEOUT_OPAQUE, st, tarfile.REGTYPE)
                info.mode = stat.S_IMODE(st.st_mode) & 0o777
                writer.header(info)
            _write_layer_dir(writer, sub, child)
        finally:
            os.close(sub)


# =============================================================================
# Commit: the image config
# =============================================================================

#: The container.Config fields a commit body may set (others are ignored).
_CONFIG_FIELDS = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
    "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
    "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell",
)


def merge_commit_config(user: dict, container: dict) -> dict:
    """dockerd's commit merge: C{user} (the request's config with the
    changes applied) completed from the container's config."""
    out = dict(user)
    if not out.get("User"):
        out["User"] = container.get("User") or ""
    exposed = out.get("ExposedPorts") or {}
    if not exposed:
        out["ExposedPorts"] = container.get("ExposedPorts")
    else:
        exposed = dict(exposed)
        for port in container.get("ExposedPorts") or {}:
            exposed.setdefault(port, {})
        out["ExposedPorts"] = exposed
    env = list(out.get("Env") or [])
    if not env:
        out["Env"] = container.get("Env")
    else:
        keys = {item.split("=", 1)[0] for item in env}
        for item in container.get("Env") or []:
            if item.split("=", 1)[0] not in keys:
                env.append(item)
        out["Env"] = env
    labels = dict(out.get("Labels") or {})
    for key, value in (container.get("Labels") or {}).items():
        labels.setdefault(key, value)
    out["Labels"] = labels
    if not out.get("Entrypoint") and not out.get("Cmd"):
        out["Cmd"] = container.get("Cmd")
        out["Entrypoint"] = container.get("Entrypoint")
    if container.get("Healthcheck"):
        if not out.get("Healthcheck"):
            out["Healthcheck"] = container.get("Healthcheck")
        else:
            health = dict(out["Healthcheck"])
            for key in ("Test", "Interval", "Timeout", "StartPeriod", "Retries"):
                if not health.get(key):
                    health[key] = container["Healthcheck"].get(key)
            out["Healthcheck"] = health
    if not out.get("WorkingDir"):
        out["WorkingDir"] = container.get("WorkingDir") or ""
    volumes = out.get("Volumes") or {}
    if not volumes:
        out["Volumes"] = container.get("Volumes")
    else:
        volumes = dict(volumes)
        volumes.update(container.get("Volumes") or {})
        out["Volumes"] = volumes
    if not out.get("StopSignal"):
        if container.get("StopSignal"):
            out["StopSignal"] = container.get("StopSignal")
    return out


# =============================================================================
# The backend
# =============================================================================


@implementer(ICopyBackend)
class CopyBackend:
    """Archives, export, changes and commit over the container backend's
    containers and the image store."""

    def __init__(self, reactor, containers, images) -> None:
        self.reactor = reactor
        self.containers = containers
        self.images = images
        #: Operations holding each container's root (by container ID).
        self._users: Dict[str, int] = {}
        #: Containers whose root this backend mounted.
        self._mounted: set = set()

    # -- plumbing --------------------------------------------------------

    def _thread(self, function, *args) -> Deferred:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    def _container(self, ref: str):
        if not ref:
            raise InvalidParameter('invalid name or ID supplied: ""')
        return self.containers.get(ref)

    def _layer_dirs(self, c) -> List[str]:
        return list(self.images.get_layer_dirs(c.image_id))

    def _acquire(self, c) -> Deferred:
        """A descriptor of the container's root filesystem (mounted for the
        time of the work when the container does not run).  Should the
        caller go away meanwhile, what was acquired is released."""
        self._users[c.id] = self._users.get(c.id, 0) + 1
        d = ensureDeferred(self._acquire_root(c))
        return shield(d, lambda fd: self._release(c, fd))

    async def _acquire_root(self, c) -> int:
        merged = self.containers.overlay(c)["MergedDir"]
        try:
            async with self.containers.lock(c):
                if not await self._thread(rootfs.is_mounted, merged):
                    paths = self.containers.overlay(c)
                    await self._thread(
                        rootfs.mount_overlay,
                        self._layer_dirs(c),
                        paths["UpperDir"],
                        paths["WorkDir"],
                        merged,
                    )
                    self._mounted.add(c.id)
                return await self._thread(
                    os.open, merged, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
                )
        except OSError as e:
            self._release(c, -1)
            raise InternalError(str(e))
        except BaseException:
            self._release(c, -1)
            raise

    def _release(self, c, fd: int) -> Deferred:
        """Give back what L{_acquire} gave; the last user unmounts what this
        backend mounted, unless the container started meanwhile."""
        d = ensureDeferred(self._release_root(c, fd))
        d.addErrback(lambda f: log.failure("releasing the root of {id}", f, id=c.id[:12]))
        return d

    async def _release_root(self, c, fd: int) -> None:
        if fd >= 0:
            os.close(fd)
        count = self._users.get(c.id, 1) - 1
        if count > 0:
            self._users[c.id] = count
            return
        self._users.pop(c.id, None)
        if c.id not in self._mounted:
            return
        async with self.containers.lock(c):
            if self._users.get(c.id) or c.id not in self._mounted:
                return
            self._mounted.discard(c.id)
            if c.state.running and not c.state.restarting:
                return  # started meanwhile: the mount is the container's now
            try:
                await self._thread(rootfs.unmount, self.containers.overlay(c)["MergedDir"])
            except OSError as e:
                log.warn("unmount {id}: {e}", id=c.id[:12], e=e)

    async def _in_root(self, c, ref: str, function, *args):
        """C{function(scope, *args)} in a thread, with the container's root;
        the root is given back once the thread is over, whether or not the
        caller still waits."""
        fd = await self._acquire(c)
        try:
            work = self._thread(function, Scope(fd, self._merged(c), ref), *args)
        except BaseException:
            self._release(c, fd)
            raise
        work.addBoth(lambda result: (self._release(c, fd), result)[1])
        return await shield(work)

    def _merged(self, c) -> str:
        return self.containers.overlay(c)["MergedDir"]

    @staticmethod
    def _mounts(c) -> Dict[Tuple[str, ...], str]:
        """The files the daemon mounts into the container, once it ran."""
        path_of = getattr(c, "path_of", None)
        if path_of is None:
            return {}
        mounts = {}
        for name in MOUNTED_FILES:
            source = path_of(name)
            if os.path.isfile(source):
                mounts[("etc", name)] = source
        return mounts

    # -- archives ----------------------------------------------------------

    async def stat_path(self, name: str, path: str) -> dict:
        c = self._container(name)
        mounts = await self._thread(self._mounts, c)
        return await self._in_root(c, name, _path_stat_only, path, mounts)

    async def archive_path(self, name: str, path: str) -> Tuple[dict, TarStream]:
        c = self._container(name)
        mounts = await self._thread(self._mounts, c)
        fd = await self._acquire(c)
        scope = Scope(fd, self._merged(c), name, mounts)
        try:
            work = self._thread(scope.path_stat, path)
        except BaseException:
            self._release(c, fd)
            raise

        def failed(failure):
            self._release(c, fd)
            return failure

        def abandoned(result) -> None:
            result[1].close()
            self._release(c, fd)

        work.addErrback(failed)
        doc, target = await shield(work, abandoned)

        def cleanup():
            target.close()
            return self._release(c, fd)

        stream = TarStream(self.reactor, lambda write: write_path_archive(target, write), cleanup)
        self.containers.log_event(c, "archive-path")
        return doc, stream

    async def extract_to_dir(
        self, name: str, path: str, no_overwrite_dir_non_dir: bool, copy_uid_gid: bool, content
    ) -> None:
        c = self._container(name)
        if content is None:
            content = io.BytesIO()
        await self._in_root(
            c, name, _extract_blocking, c, path, no_overwrite_dir_non_dir, copy_uid_gid, content
        )
        self.containers.log_event(c, "extract-to-dir")

    # -- export and changes ----------------------------------------------------

    async def export(self, name: str) -> TarStream:
        c = self._container(name)
        fd = await self._acquire(c)
        stream = TarStream(
            self.reactor, lambda write: write_export(fd, write), lambda: self._release(c, fd)
        )
        self.containers.log_event(c, "export")
        return stream

    async def changes(self, name: str) -> Optional[List[dict]]:
        c = self._container(name)
        upper = self.containers.overlay(c)["UpperDir"]
        listed = await self._thread(changes_of, upper, self._layer_dirs(c))
        return listed or None

    # -- commit ----------------------------------------------------------------

    async def commit(self, name: str, options: dict) -> str:
        from .images import apply_changes, repo_tag_reference

        c = self._container(name)
        if c.state.dead:
            raise Conflict("You cannot commit container %s which is Dead" % (c.id,))
        if c.state.removing:
            raise Conflict("You cannot commit container %s which is being removed" % (c.id,))
        ref = repo_tag_reference(options.get("repo") or "", options.get("tag") or "")
        container_config = {k: v for k, v in c.config.items() if k in _CONFIG_FIELDS}
        body = options.get("config")
        if isinstance(body, dict) and any(key in body for key in _CONFIG_FIELDS):
            user_config = {k: v for k, v in body.items() if k in _CONFIG_FIELDS}
        else:
            user_config = json.loads(json.dumps(container_config))
        new_config = apply_changes(user_config, list(options.get("changes") or ()))
        new_config = merge_commit_config(new_config, container_config)
        paused_here = False
        if (
            options.get("pause", True)
            and c.state.running
            and not c.state.paused
            and not c.state.restarting
        ):
            await self.containers.pause(c.id)
            paused_here = True
        try:
            upper = self.containers.overlay(c)["UpperDir"]
            tmp_dir = os.path.dirname(upper)
            layer = shield(
                self._thread(_layer_tar, upper, self._layer_dirs(c), tmp_dir),
                lambda handle: handle.close(),
            )
            handle = await layer
        finally:
            if paused_here:
                try:
                    await self.containers.unpause(c.id)
                except DockerError as e:
                    log.warn("unpause {id} after commit: {e}", id=c.id[:12], e=e)
        image_id = await self.images.commit_image(
            handle,
            c.image_id,
            container_id=c.id,
            container_config=container_config,
            config=new_config,
            author=options.get("author") or "",
            comment=options.get("comment") or "",
            ref=ref,
        )
        self.containers.log_event(
            c,
            "commit",
            comment=options.get("comment") or "",
            imageID=image_id,
            imageRef=ref.familiar_string() if ref is not None else "",
        )
        return image_id


def _path_stat_only(scope: Scope, path: str, mounts) -> dict:
    scope.mounts = dict(mounts)
    doc, target = scope.path_stat(path)
    target.close()
    return doc


def _extract_blocking(scope: Scope, c, path, no_overwrite, copy_uid_gid, content) -> None:
    # Unlike a read, the last component is followed: extracting "into" a
    # link to a directory extracts into that directory.
    parts = scope.resolve(container_path(path))
    try:
        dest_fd = open_dir(scope.root_fd, parts)
    except FileNotFoundError:
        raise scope.not_found(path)
    except NotADirectoryError:
        raise InvalidParameter("extraction point is not a directory")
    os.close(dest_fd)
    if c.host_config.get("ReadonlyRootfs"):
        raise Forbidden("container rootfs is marked read-only")
    owner = None
    if copy_uid_gid and (c.config.get("User") or ""):
        from .spec import resolve_user

        user = resolve_user("/proc/self/fd/%d" % scope.root_fd, c.config.get("User") or "")
        owner = (user["uid"], user["gid"])
    try:
        extract_into(scope.root_fd, parts, content, no_overwrite, owner)
    except (OverwriteConflict, archive.BreakoutError) as e:
        raise InvalidParameter("Error processing tar file(exit status 1): %s" % (e,))
    except archive.ArchiveError as e:
        raise InternalError("Error processing tar file(exit status 1): %s" % (e,))


def _layer_tar(upper: str, layer_dirs: List[str], tmp_dir: str) -> BinaryIO:
    """The container's layer tar in an unlinked temporary file, rewound."""
    os.makedirs(tmp_dir, exist_ok=True)
    handle = tempfile.TemporaryFile(dir=tmp_dir)
    try:
        write_layer(upper, layer_dirs, handle.write)
        handle.flush()
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle
