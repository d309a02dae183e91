"""
A container's own layer: its overlay upper directory compared with the
image's layers below it (L{LowerView}), giving the changes `docker diff`
reports (L{changes_of}) and the layer tar `docker commit` stores
(L{write_layer}: overlayfs whiteouts become C{.wh.NAME} files, opaque
directories get a C{.wh..wh..opq} file).

A container's lower layers end with its init layer (dockerd's, made by
L{backend.runtime.rootfs.make_init_layer} from L{INIT_LAYER}), so what it
holds is no change.  Containers made before the init layer existed have its
mount points in their upper directory, as runc created them: those stubs
are treated as the init layer's too (not changes, not committed).

Everything here blocks: run it in a thread, never on the reactor thread.
"""

import os
import stat
import tarfile
from typing import Callable, List, Optional, Sequence, Tuple

from .. import golang
from . import DIR_FLAGS
from .read import OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX
from .write import TarWriter, capability_at


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

#: Change kinds, as the API numbers them.
MODIFIED, ADDED, DELETED = 0, 1, 2


def _is_whiteout(st) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _is_opaque_fd(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


_FOUND, _MISSING, _HIDDEN = "found", "missing", "hidden"


def _descend(layer: str, parts: Sequence[str]):
    """Follow C{parts} down one layer: C{(kind, path, st, opaque_above)}.
    C{kind} is C{_FOUND} (C{st}: the last component's stat, None for the
    layer's root), C{_MISSING}, or C{_HIDDEN} (a whiteout, or a
    non-directory on the way, hides it and whatever is below);
    C{opaque_above}: whether a directory on the way is opaque."""
    path = layer
    opaque_above = False
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return _MISSING, path, None, opaque_above
        if _is_whiteout(st):
            return _HIDDEN, path, None, opaque_above
        if i == len(parts) - 1:
            return _FOUND, path, st, opaque_above
        if not stat.S_ISDIR(st.st_mode):
            return _HIDDEN, path, None, opaque_above
        if _is_opaque(path):
            opaque_above = True
    return _FOUND, path, None, opaque_above


class LowerView:
    """The image's layers merged, as overlayfs shows them below the
    container's own layer (whiteouts and opaque directories honoured)."""

    def __init__(self, layer_dirs: Sequence[str]) -> None:
        #: Highest first.
        self.layers = list(reversed(list(layer_dirs)))

    def lstat(self, parts: Sequence[str]):
        """The stat of C{parts} in the merged layers, or None."""
        for layer in self.layers:
            kind, _, st, opaque_above = _descend(layer, parts)
            if kind == _HIDDEN:
                return None
            if st is not None:
                return st
            if opaque_above:
                return None
        return None

    def listdir(self, parts: Sequence[str]) -> List[str]:
        """The names in the merged directory C{parts}."""
        names: set = set()
        hidden: set = set()
        for layer in self.layers:
            kind, path, st, blocked = _descend(layer, parts)
            if kind == _HIDDEN or (st is not None and not stat.S_ISDIR(st.st_mode)):
                return sorted(names)
            if kind == _MISSING:
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
    upper_fd = os.open(upper, DIR_FLAGS)
    try:
        _scan_dir(upper_fd, root, lower, changes)
    finally:
        os.close(upper_fd)
    return changes, root


def _scan_dir(dir_fd: int, entry: "_Entry", lower: LowerView, changes: List[Tuple[str, int]]) -> bool:
    """Classify the children of C{entry} (open as C{dir_fd}); whether any
    change was recorded below it.

    C{changes} come in the order of dockerd's walk (archive.ChangesDirs'
    addChanges): depth first, each entry's own change before those inside
    it (a directory unchanged itself but with changes inside listed as
    modified, before them), a directory's deletions after its other
    changes.  Siblings come by name (Go's map order is random)."""
    recorded = False
    deleted: List[Tuple[str, int]] = []
    names = sorted(os.listdir(dir_fd))
    for name in names:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        child = _Entry(entry.parts + [name], st)
        entry.children.append(child)
        path = "/" + "/".join(child.parts)
        rel = "/".join(child.parts)
        if _is_whiteout(st):
            if lower.lstat(child.parts) is not None:
                child.kind = DELETED
                deleted.append((path, DELETED))
                recorded = True
            else:
                child.keep = False  # a whiteout of nothing
            continue
        start = len(changes)
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
                and capability_at(dir_fd, name) != _capability(lower.path_of(child.parts))
            )
        ):
            child.kind = MODIFIED
            changes.append((path, MODIFIED))
            recorded = True
        if not is_dir:
            continue
        sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        try:
            child.opaque = _is_opaque_fd(sub)
            inside = _scan_dir(sub, child, lower, changes)
            if child.opaque and old is not None and stat.S_ISDIR(old.st_mode) and child.keep:
                present = set(os.listdir(sub))
                for gone in sorted(lower.listdir(child.parts)):
                    if gone not in present:
                        changes.append(("/" + "/".join(child.parts + [gone]), DELETED))
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
                changes.insert(start, (path, MODIFIED))
    changes.extend(deleted)
    return recorded


def changes_of(upper: str, layer_dirs: Sequence[str]) -> List[dict]:
    """GET changes: C{[{"Path", "Kind"}]} in dockerd's walk order (None: no change,
    as dockerd's JSON null)."""
    if not os.path.isdir(upper):
        return []
    changes, _ = scan_upper(upper, LowerView(layer_dirs))
    return [{"Path": path, "Kind": kind} for path, kind in changes]


def write_layer(upper: str, layer_dirs: Sequence[str], write: Callable[[bytes], None]) -> None:
    """The container's own layer as an OCI layer tar: overlayfs whiteouts
    (character devices 0/0) become C{.wh.NAME} files, opaque directories get
    a C{.wh..wh..opq} file, the init layer's mount points are left out."""
    writer = TarWriter(write)
    if os.path.isdir(upper):
        _, root = scan_upper(upper, LowerView(layer_dirs))
        upper_fd = os.open(upper, DIR_FLAGS)
        try:
            write_layer_dir(writer, upper_fd, root)
        finally:
            os.close(upper_fd)
    writer.close()


def _kept(entry: _Entry) -> bool:
    if entry.keep:
        return True
    return any(_kept(child) for child in entry.children)


def write_overlay_entry(writer: TarWriter, dir_fd: int, name: str, arcname: str, st,
                        opaque: Callable[[int], bool], contents: Callable[[int], None]) -> None:
    """One entry of an overlay directory as an OCI layer tar has it: a
    whiteout (a character device 0/0) as a C{.wh.NAME} file, anything else
    as itself; a directory C{opaque} says is (given its descriptor) gets a
    C{.wh..wh..opq} file, then C{contents} writes what it holds."""
    if _is_whiteout(st):
        directory, base = golang.split(arcname)
        info = TarWriter.info_for(directory + WHITEOUT_PREFIX + base, st, tarfile.REGTYPE)
        info.mode = 0o600
        writer.header(info)
        return
    sub = writer.entry(dir_fd, name, arcname, st)
    if sub is None:
        return
    try:
        if opaque(sub):
            info = TarWriter.info_for(arcname + "/" + WHITEOUT_OPAQUE, st, tarfile.REGTYPE)
            info.mode = stat.S_IMODE(st.st_mode) & 0o777
            writer.header(info)
        contents(sub)
    finally:
        os.close(sub)


def write_layer_dir(writer: TarWriter, dir_fd: int, entry: _Entry) -> None:
    for child in entry.children:
        if not _kept(child):
            continue
        name = child.parts[-1]
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        write_overlay_entry(writer, dir_fd, name, "/".join(child.parts), st,
                            lambda _, child=child: child.opaque,
                            lambda sub, child=child: write_layer_dir(writer, sub, child))


def write_diff_dir(writer: TarWriter, dir_fd: int, parts: Sequence[str] = ()) -> None:
    """A whole overlay layer directory (a layer's diff) as its layer tar,
    names sorted, opaque directories known by their xattr."""
    for name in sorted(os.listdir(dir_fd)):
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        here = list(parts) + [name]
        write_overlay_entry(writer, dir_fd, name, "/".join(here), st, _is_opaque_fd,
                            lambda sub, here=here: write_diff_dir(writer, sub, here))
