"""
Writing tars as Go's archive/tar writes them for moby (USTAR, PAX when
needed, mtimes in whole seconds, directories with a trailing slash, hard
links by inode, sockets skipped, the C{security.capability} attribute):
L{TarWriter}, one entry or a whole tree read through directory descriptors
(never following a link), and L{write_export}, a container's whole root.

Everything here blocks: run it in a thread, never on the reactor thread.
"""

import collections
import errno
import os
import stat
import tarfile
from typing import Callable, Dict, Optional, Sequence, Tuple

from . import DIR_FLAGS

#: How much of a file is read at a time.
CHUNK = 64 * 1024

_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


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
            fd = os.dup(dir_fd) if name is None else os.open(name, DIR_FLAGS, dir_fd=dir_fd)
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
        value = capability_at(fd, name)
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
            top = os.dup(dir_fd) if name is None else os.open(name, DIR_FLAGS, dir_fd=dir_fd)
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
        fd = os.open(os.path.dirname(source), DIR_FLAGS)
        try:
            name = os.path.basename(source)
            self.entry(fd, name, arcname, os.stat(name, dir_fd=fd, follow_symlinks=False))
        finally:
            os.close(fd)


def capability_at(fd: int, name: Optional[str]) -> Optional[bytes]:
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


def write_export(root_fd: int, write: Callable[[bytes], None]) -> None:
    """GET export: the whole root filesystem, names relative, no root entry."""
    writer = TarWriter(write)
    writer.tree(root_fd, None, "", os.fstat(root_fd), include_self=False, child_prefix="")
    writer.close()
