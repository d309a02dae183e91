"""
Unpacking tar streams safely: into a layer directory (L{unpack_layer}, the
size dockerd reports for it) and into a directory of a container's root for
docker cp (L{extract_into}).

Extraction is safe by construction:

- an entry whose name is absolute, or whose cleaned name climbs out of the
  root with C{..}, refuses the whole stream (L{BreakoutError});
- every directory on the way to an entry is opened with C{O_NOFOLLOW} from a
  descriptor of its parent, starting at the root: the kernel never follows a
  symbolic link for us.  A link met on the way is resolved here, inside the
  layer root, as dockerd resolves it inside its chroot (an absolute target
  starts again at the root, C{..} stops at the root), so C{a -> /etc} then
  C{a/passwd} writes C{<root>/etc/passwd} or fails, never C{/etc/passwd};
- every change is made with the final name relative to that descriptor and
  without following a link in the final component (C{O_NOFOLLOW},
  C{AT_SYMLINK_NOFOLLOW}); a hard link's target is resolved the same way;
- symbolic links are stored as they are, whatever they point at.

Whiteouts become overlayfs' own format, as dockerd's overlay2 driver stores
them: C{.wh.NAME} is a character device 0/0 named C{NAME}, and
C{.wh..wh..opq} marks its directory opaque (xattr C{trusted.overlay.opaque}
= C{y}).  AUFS metadata at the top (C{.wh..wh.*}) is skipped.  Modes,
ownership, modification times (directories last, once their content is
written), symbolic links, hard links, device nodes, FIFOs and extended
attributes (PAX C{SCHILY.xattr.*}) are kept.

Everything here blocks: run it in a thread (C{deferToThreadPool}), never on
the reactor thread.

For docker cp, a tar with an entry or a hard link that would land outside
the target directory is refused whole before anything is written.

Everything here blocks: run it in a thread (C{deferToThreadPool}), never on
the reactor thread.
"""

import copy
import errno
import os
import shutil
import stat
import tarfile
from typing import BinaryIO, List, Optional, Tuple

from .. import golang
from . import DIR_FLAGS
from .read import (
    CHUNK,
    OPAQUE_XATTR,
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    ArchiveError,
    BreakoutError,
    DigestReader,
    decompressed,
    entry_path,
    os_error,
    read_members,
)

#: As Linux: how many symbolic links one lookup may follow.
MAX_SYMLINKS = 40


class Extractor:
    """Unpack one tar stream under C{root_fd}; see the module docstring."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.directories: List[Tuple[List[str], int, int]] = []

    def open_dir(self, parts: List[str], create: bool, shown: str) -> int:
        """A descriptor of the directory at C{parts}, resolved inside the root.

        Missing directories named by the entry itself are made (0755, owned
        by root, as dockerd makes them) when C{create}; a component reached
        through a symbolic link must exist.  C{shown} names the entry in
        errors.
        """
        stack = [os.dup(self.root_fd)]
        pending = [(part, True) for part in parts]
        followed = 0
        try:
            while pending:
                part, own = pending.pop(0)
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                top = stack[-1]
                try:
                    fd = os.open(part, DIR_FLAGS, dir_fd=top)
                except OSError:
                    try:
                        st = os.stat(part, dir_fd=top, follow_symlinks=False)
                    except FileNotFoundError:
                        st = None
                    if st is None:
                        if not (create and own):
                            raise ArchiveError("open /%s: no such file or directory" % (shown,))
                        os.mkdir(part, 0o755, dir_fd=top)
                        os.chmod(part, 0o755, dir_fd=top)
                        fd = os.open(part, DIR_FLAGS, dir_fd=top)
                    elif stat.S_ISLNK(st.st_mode):
                        followed += 1
                        if followed > MAX_SYMLINKS:
                            raise ArchiveError(
                                "open /%s: too many levels of symbolic links" % (shown,)
                            )
                        target = os.readlink(part, dir_fd=top)
                        if target.startswith("/"):
                            while len(stack) > 1:
                                os.close(stack.pop())
                        pending = [(p, False) for p in target.split("/")] + pending
                        continue
                    else:
                        raise ArchiveError("open /%s: not a directory" % (shown,))
                stack.append(fd)
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    def remove_existing(self, parent_fd: int, base: str, keep_dir: bool) -> None:
        """Make room for a new entry, as dockerd does: anything in the way
        goes, except a directory that a directory entry merges into."""
        try:
            st = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(base, dir_fd=parent_fd)
        else:
            os.unlink(base, dir_fd=parent_fd)

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        path = entry_path(member.name)
        if path == ".":
            # dockerd keeps the layer root's own metadata.
            return
        if path.startswith(WHITEOUT_META_PREFIX) and path != WHITEOUT_OPAQUE:
            # AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the layer.
            return
        parts = path.split("/")
        base = parts[-1]
        parent_fd = self.open_dir(parts[:-1], create=True, shown=path)
        try:
            if base == WHITEOUT_OPAQUE:
                os.setxattr(parent_fd, OPAQUE_XATTR, b"y")
                return
            if base.startswith(WHITEOUT_PREFIX):
                self.whiteout(parent_fd, base[len(WHITEOUT_PREFIX) :], member, path)
                return
            self.create(tar, member, parent_fd, base, path)
        finally:
            os.close(parent_fd)

    def whiteout(self, parent_fd: int, name: str, member: tarfile.TarInfo, path: str) -> None:
        if not name or name in (".", ".."):
            raise ArchiveError("invalid whiteout %s" % (golang.quote(path),))
        self.remove_existing(parent_fd, name, keep_dir=False)
        os.mknod(name, stat.S_IFCHR, 0, dir_fd=parent_fd)
        os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)

    def create(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent_fd: int, base: str, path: str
    ) -> None:
        mode = member.mode & 0o7777
        is_dir = member.isdir()
        self.remove_existing(parent_fd, base, keep_dir=is_dir)
        symlink = False
        if is_dir:
            try:
                os.mkdir(base, 0o700, dir_fd=parent_fd)
            except FileExistsError:
                pass
        elif member.isreg():
            fd = os.open(
                base,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent_fd,
            )
            try:
                source = tar.extractfile(member)
                if source is not None:
                    while True:
                        try:
                            data = source.read(CHUNK)
                        except tarfile.ReadError as e:
                            raise ArchiveError(
                                "unexpected EOF" if "end of data" in str(e) else str(e)
                            )
                        if not data:
                            break
                        view = memoryview(data)
                        while view:
                            written = os.write(fd, view)
                            view = view[written:]
            finally:
                os.close(fd)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=parent_fd)
            symlink = True
        elif member.islnk():
            symlink = self.hardlink(member, parent_fd, base, path)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = (
                stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            )
            device = os.makedev(member.devmajor, member.devminor) if kind != stat.S_IFIFO else 0
            try:
                os.mknod(base, kind | 0o600, device, dir_fd=parent_fd)
            except PermissionError:
                # As dockerd in a user namespace: no device nodes there.
                return
        else:
            raise ArchiveError(
                "unhandled tar header type %d" % (ord(member.type) if member.type else 0,)
            )
        os.chown(base, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        self.set_xattrs(parent_fd, base, member)
        if not symlink:
            os.chmod(base, mode, dir_fd=parent_fd)
        atime, mtime = _times(member)
        if is_dir:
            self.directories.append((path.split("/"), atime, mtime))
        else:
            os.utime(base, ns=(atime, mtime), dir_fd=parent_fd, follow_symlinks=False)

    def lookup(self, parts: List[str], shown: str) -> Optional[Tuple[int, os.stat_result]]:
        """The directory holding the entry at C{parts}, resolved inside the
        root (a descriptor to close), and the entry's own lstat; None when
        either is missing."""
        try:
            parent = self.open_dir(parts[:-1], create=False, shown=shown)
        except ArchiveError:
            return None
        try:
            return parent, os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            os.close(parent)
            return None
        except BaseException:
            os.close(parent)
            raise

    def hardlink(self, member: tarfile.TarInfo, parent_fd: int, base: str, path: str) -> bool:
        """Link C{base} to the entry's target, inside the root; whether the
        target is a symbolic link (then it must not be chmod-ed)."""
        target = golang.clean(member.linkname.lstrip("/") or ".")
        if target == ".." or target.startswith("../") or target == ".":
            raise BreakoutError(
                "invalid hardlink %s -> %s" % (golang.quote("/" + path), golang.quote(member.linkname))
            )
        target_parts = target.split("/")
        shown = "%s /%s" % (target, path)
        found = self.lookup(target_parts, shown=target)
        if found is None:
            raise ArchiveError("link /%s: no such file or directory" % (shown,))
        target_parent, st = found
        try:
            if stat.S_ISDIR(st.st_mode):
                raise ArchiveError("link /%s: operation not permitted" % (shown,))
            os.link(
                target_parts[-1],
                base,
                src_dir_fd=target_parent,
                dst_dir_fd=parent_fd,
                follow_symlinks=False,
            )
            return stat.S_ISLNK(st.st_mode)
        finally:
            os.close(target_parent)

    def set_xattrs(self, parent_fd: int, base: str, member: tarfile.TarInfo) -> None:
        names = [k for k in member.pax_headers if k.startswith("SCHILY.xattr.")]
        if not names:
            return
        # The parent, by descriptor; the entry itself is not followed.
        where = "/proc/self/fd/%d/%s" % (parent_fd, base)
        for key in names:
            value = member.pax_headers[key]
            data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            try:
                os.setxattr(where, key[len("SCHILY.xattr.") :], data, follow_symlinks=False)
            except OSError as e:
                # As dockerd: not every filesystem takes every xattr.
                if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                    raise

    def finish(self) -> None:
        """Directory times last: writing into a directory changes its mtime."""
        for parts, atime, mtime in self.directories:
            try:
                fd = self.open_dir(parts, create=False, shown="/".join(parts))
            except ArchiveError:
                continue  # removed or replaced by a later entry
            try:
                os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)


def _times(member: tarfile.TarInfo) -> Tuple[int, int]:
    mtime = _nanoseconds(member.pax_headers.get("mtime"), member.mtime)
    atime = _nanoseconds(member.pax_headers.get("atime"), None)
    if atime is None or atime < mtime:
        atime = mtime
    return atime, mtime


def _nanoseconds(text: Optional[str], fallback) -> Optional[int]:
    if text:
        whole, _, fraction = text.partition(".")
        try:
            seconds = int(whole)
            nanos = int((fraction + "000000000")[:9]) if fraction else 0
        except ValueError:
            pass
        else:
            return seconds * 1_000_000_000 + (nanos if seconds >= 0 else -nanos)
    if fallback is None:
        return None
    return int(round(float(fallback) * 1_000_000_000))


def unpack(stream: BinaryIO, dest: str, seen=None) -> None:
    """Unpack the uncompressed tar C{stream} into the directory C{dest}
    (C{seen}, if given, is told each entry before it is unpacked).

    An empty stream is an empty layer, as for dockerd.  Raises
    L{BreakoutError} or L{ArchiveError}; C{dest} is then half written and
    the caller throws it away.
    """
    root_fd = os.open(dest, DIR_FLAGS)
    try:
        extractor = Extractor(root_fd)
        for tar, member in read_members(stream):
            if seen is not None:
                seen(member)
            extractor.extract(tar, member)
        extractor.finish()
    except OSError as e:
        raise ArchiveError(os_error(e))
    finally:
        os.close(root_fd)


def unpack_layer(source: BinaryIO, dest: str, split: Optional[BinaryIO] = None) -> str:
    """Unpack C{source} (a tar, compressed or not) into C{dest}: its diff ID.
    With C{split} (a file), the tar's own bytes are recorded there
    (L{twistedock.tar.split}), so that it can be given out again."""
    reader = DigestReader(decompressed(source))
    if split is None:
        unpack(reader, dest)
        reader.drain()
        return reader.digest
    from .split import SplitRecorder

    recorder = SplitRecorder(reader, split)
    unpack(recorder, dest, recorder.member)  # type: ignore[arg-type]
    recorder.drain()
    recorder.finish()
    return reader.digest


def directory_size(path: str) -> int:
    """dockerd's size of a layer directory: every non-directory entry's size,
    hard links counted once."""
    seen = set()
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
                continue
            if st.st_size == 0:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
    return total


# -- docker cp ------------------------------------------------------------------


class OverwriteConflict(ArchiveError):
    """noOverwriteDirNonDir refused an entry (400)."""


def scan_for_breakouts(stream: BinaryIO, dest: str) -> None:
    """Refuse the whole tar when an entry, or a hard link's target, would
    land outside C{dest} (moby checks each entry as it comes; refusing
    before anything is written leaves the container as it was)."""
    for _, member in read_members(stream, tarfile.BLOCKSIZE):
        name = golang.clean(member.name)
        joined = golang.clean(dest + "/" + name)
        if not _inside(joined, dest):
            raise BreakoutError("%s is outside of %s" % (golang.quote(name), golang.quote(dest)))
        if member.islnk():
            target = golang.clean(dest + "/" + member.linkname)
            if not _inside(target, dest):
                raise BreakoutError(
                    "invalid hardlink %s -> %s" % (golang.quote(target), golang.quote(member.linkname))
                )


def _inside(path: str, dest: str) -> bool:
    return dest == "/" or path == dest or path.startswith(dest.rstrip("/") + "/")


class CopyExtractor(Extractor):
    """The layer extractor for docker cp: entries land below C{dest_parts}
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
        self.dest_shown = "/" + "/".join(dest_parts)
        self.no_overwrite = no_overwrite_dir_non_dir
        self.owner = owner
        self._entry = ""

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = golang.clean(member.name).lstrip("/") or "."
        if name == "." or name.startswith("../") or name == "..":
            # "." merges into the existing directory (its metadata kept);
            # escaping names were refused before anything was written.
            return
        if name.startswith(WHITEOUT_META_PREFIX):
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
    dest = "/" + "/".join(dest_parts)
    content.seek(0)
    scan_for_breakouts(decompressed(content), dest)
    content.seek(0)
    stream = decompressed(content)
    extractor = CopyExtractor(root_fd, dest_parts, no_overwrite_dir_non_dir, owner)
    try:
        # An empty (or too short) body extracts nothing, as dockerd.
        for tar, member in read_members(stream, tarfile.BLOCKSIZE):
            extractor.extract(tar, member)
        extractor.finish()
    except OSError as e:
        raise ArchiveError(os_error(e))
