"""
Paths of a container resolved inside its root, as docker cp sees them.

Every path a client names is resolved here, one component at a time,
relative to a descriptor of the container's root: a symbolic link is read
(never followed by the kernel) and resolved again inside the root (an
absolute target starts over at the root, C{..} stops at it), as moby's
FollowSymlinkInScope.  Files and directories are then opened from their
parent's descriptor with C{O_NOFOLLOW}, so a container that swaps a
directory for a link while we work (CVE-2018-15664) only makes us fail,
never read or write outside its root.

Everything here blocks: run it in a thread, never on the reactor thread.
"""

import base64
import errno
import json
import os
import stat
from typing import Dict, List, Optional, Sequence, Tuple

from .. import golang
from ..errors import InternalError, NotFound
from ..tar import DIR_FLAGS

#: As moby's FollowSymlinkInScope: how many links one resolution may follow.
MAX_LINKS = 255


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


def path_of(parts: Sequence[str]) -> str:
    """The absolute container path of resolved components."""
    return "/" + "/".join(parts)


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
                raise PathNotDirectory(path_of(names + [part]))
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
                fds.append(os.open(part, DIR_FLAGS, dir_fd=parent))
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
                next_fd = os.open(part, DIR_FLAGS, dir_fd=fd)
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
        shown = self.shown_root + path_of(dir_parts).rstrip("/") + "/" + base
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
                source_fd = os.open(os.path.dirname(source), DIR_FLAGS)
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
                link_target = path_of(self.resolve(target.abs_path))
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
