"""
COPY and ADD: their sources found (the context, or another stage's image
seen through its layer directories), hashed for the cache as the classic
builder keys them (C{file:}, C{dir:}, C{multi:}), and written as a layer tar
with dockerd's directory semantics (a directory's contents are copied, a
destination ending in C{/} is a directory, a local archive given to ADD is
unpacked).  Everything here blocks: run it in a thread.
"""

import glob
import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile
from typing import BinaryIO, Iterator, List, Optional, Sequence, Tuple

import attr

from ...tar.layer import LowerView
from ...tar.read import compression_of, decompressed

class CopyError(Exception):
    """A COPY/ADD that cannot be done; the message is dockerd's."""


@attr.s(auto_attribs=True)
class Source:
    """One source: where it is read from and the name it goes under."""

    #: The path on disk (in the context, or in a layer directory).
    path: str
    #: Its name (the basename used when copied into a directory).
    name: str
    is_dir: bool
    #: For a source in an image: its layer directories (top first) and
    #: the path inside the image, to merge directories across layers.
    layers: Tuple[str, ...] = ()
    inner: str = ""
    #: ADD of a URL: a downloaded file with this mode (0600).
    mode: Optional[int] = None
    mtime: Optional[float] = None


def _has_wildcards(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def context_sources(root: str, patterns: Sequence[str], command: str) -> List[Source]:
    """The context files C{patterns} name (wildcards expanded)."""
    out: List[Source] = []
    for pattern in patterns:
        rel = posixpath.normpath("/" + pattern).lstrip("/") or "."
        if _has_wildcards(rel):
            matches = sorted(glob.glob(rel, root_dir=root, include_hidden=True))
            if not matches:
                raise CopyError(
                    "%s failed: no source files were specified" % (command,)
                )
            for match in matches:
                full = os.path.join(root, match)
                out.append(Source(full, posixpath.basename(match), os.path.isdir(full) and not os.path.islink(full)))
            continue
        full = os.path.join(root, rel) if rel != "." else root
        if not os.path.lexists(full) or not _inside(full, root):
            raise CopyError(
                "%s failed: file not found in build context or excluded by .dockerignore: "
                "stat %s: file does not exist" % (command, pattern)
            )
        out.append(Source(full, posixpath.basename(rel) if rel != "." else "", os.path.isdir(full) and not os.path.islink(full)))
    return out


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(os.path.dirname(path))
    root = os.path.realpath(root)
    return real == root or real.startswith(root + os.sep)


def image_sources(layers: Sequence[str], patterns: Sequence[str], command: str) -> List[Source]:
    """Sources in an image, its layer directories given top first."""
    out: List[Source] = []
    for pattern in patterns:
        inner = posixpath.normpath("/" + pattern).lstrip("/")
        candidates = [inner]
        if _has_wildcards(inner):
            found = set()
            for layer in layers:
                found.update(glob.glob(inner, root_dir=layer, include_hidden=True))
            candidates = sorted(found)
            if not candidates:
                raise CopyError("%s failed: no source files were specified" % (command,))
        for rel in candidates:
            path = _lookup(layers, rel)
            if path is None:
                raise CopyError(
                    "%s failed: stat %s: file does not exist" % (command, "/" + rel)
                )
            is_dir = os.path.isdir(path) and not os.path.islink(path)
            out.append(Source(path, posixpath.basename(rel), is_dir, tuple(layers), rel))
    return out


def _view(layers: Sequence[str]) -> LowerView:
    """The layers (top first) merged as overlayfs shows them."""
    return LowerView(list(reversed(list(layers))))


def _parts(rel: str) -> List[str]:
    return [p for p in rel.split("/") if p and p != "."]


def _lookup(layers: Sequence[str], rel: str) -> Optional[str]:
    """The topmost layer's file at C{rel} ("" is the root), or None when
    absent, whited out or under an opaque directory."""
    parts = _parts(rel)
    if not parts:
        return layers[0] if layers else None
    return _view(layers).path_of(parts)


def walk(source: Source) -> Iterator[Tuple[str, str]]:
    """(relative name, path on disk) of everything under a directory
    source, parents before children, sorted; merged across layers."""
    if not source.layers:
        for dirpath, dirnames, filenames in os.walk(source.path):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, source.path)
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in sorted(dirnames + filenames):
                yield posixpath.join(rel_dir, name), os.path.join(dirpath, name)
        return
    yield from _walk_layers(_view(source.layers), _parts(source.inner), "")


def _walk_layers(view: LowerView, inner: List[str], rel: str) -> Iterator[Tuple[str, str]]:
    for name in view.listdir(inner + _parts(rel)):
        child = posixpath.join(rel, name) if rel else name
        path = view.path_of(inner + _parts(child))
        if path is None:
            continue
        yield child, path
        if os.path.isdir(path) and not os.path.islink(path):
            yield from _walk_layers(view, inner, child)


def resolve_in_image(layers: Sequence[str], rel: str) -> str:
    """C{rel} with the image's symbolic links on the way followed inside
    the image (as dockerd copies into the container's root): a COPY to
    /bin/ of an image whose /bin links to usr/bin writes /usr/bin."""
    if not layers:
        return rel
    view = _view(layers)
    todo = _parts(rel)
    done: List[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = done + [part]
        st = view.lstat(candidate)
        if st is not None and stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise CopyError("too many levels of symbolic links: /" + rel)
            target = os.readlink(view.path_of(candidate))
            todo = _parts(target) + todo
            if target.startswith("/"):
                done = []
            continue
        done = candidate
    return "/".join(done)


def content_hash(sources: Sequence[Source]) -> str:
    """The cache's name of the sources: C{file:<sha256>}, C{dir:<sha256>}
    or C{multi:<sha256>} of their names, modes and contents."""
    digests = []
    for source in sources:
        h = hashlib.sha256()
        if source.is_dir:
            for rel, path in walk(source):
                _hash_entry(h, rel, path)
        else:
            _hash_entry(h, "", source.path)
        digests.append(("dir:" if source.is_dir else "file:") + h.hexdigest())
    if len(digests) == 1:
        return digests[0]
    return "multi:" + hashlib.sha256(",".join(digests).encode()).hexdigest()


def _hash_entry(h, rel: str, path: str) -> None:
    st = os.lstat(path)
    h.update(("%s\0%o\0%d\0" % (rel, st.st_mode, st.st_size)).encode("utf-8", "surrogateescape"))
    if stat.S_ISLNK(st.st_mode):
        h.update(os.readlink(path).encode("utf-8", "surrogateescape"))
    elif stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)


def is_archive(path: str) -> bool:
    """Whether ADD unpacks the local file C{path} (a tar, maybe compressed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
            if compression_of(head) is not None:
                f.seek(0)
                with decompressed(f) as inner:
                    head = inner.read(512)
    except OSError:
        return False
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
        return True
    except tarfile.HeaderError:
        return False


@attr.s(auto_attribs=True)
class Owner:
    uid: int = 0
    gid: int = 0


def resolve_chown(spec: str, layers: Sequence[str]) -> Owner:
    """--chown=user[:group], names looked up in the image's /etc/passwd
    and /etc/group (its layer directories, top first)."""
    if not spec:
        return Owner()
    user, _, group = spec.partition(":")
    uid = _lookup_id(user, layers, "etc/passwd", "user")
    if group:
        gid = _lookup_id(group, layers, "etc/group", "group")
    else:
        gid = uid if user.isdigit() else _primary_gid(user, layers)
    return Owner(uid, gid)


def _read_db(layers: Sequence[str], name: str) -> List[List[str]]:
    path = _lookup(layers, name)
    if path is None or not os.path.isfile(path):
        return []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n").split(":") for line in f if ":" in line]


def _lookup_id(name: str, layers: Sequence[str], db: str, kind: str) -> int:
    if name.isdigit():
        return int(name)
    for fields in _read_db(layers, db):
        if fields[0] == name and len(fields) > 2 and fields[2].isdigit():
            return int(fields[2])
    raise CopyError(
        "unable to convert uid/gid chown string to host mapping: can't find uid for user %s: "
        "no such user: %s" % (name, name) if kind == "user" else
        "unable to convert uid/gid chown string to host mapping: can't find gid for group %s: "
        "no such group: %s" % (name, name)
    )


def _primary_gid(user: str, layers: Sequence[str]) -> int:
    for fields in _read_db(layers, "etc/passwd"):
        if fields[0] == user and len(fields) > 3 and fields[3].isdigit():
            return int(fields[3])
    return 0


def write_copy_layer(
    sources: Sequence[Source],
    dest: str,
    dest_is_dir: bool,
    owner: Owner,
    parent_layers: Sequence[str],
    extract_archives: bool,
    tmp_dir: str,
    make_dest: bool = False,
) -> BinaryIO:
    """The layer tar of a COPY/ADD in an unlinked temporary file, rewound."""
    os.makedirs(tmp_dir, exist_ok=True)
    handle = tempfile.TemporaryFile(dir=tmp_dir)
    try:
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
            written = set()
            resolved: dict = {}

            def target_of(name: str) -> str:
                # The parent directories as the image has them (links followed).
                parent, base = posixpath.split(name)
                if parent not in resolved:
                    resolved[parent] = resolve_in_image(parent_layers, parent)
                return posixpath.join(resolved[parent], base) if resolved[parent] else base

            dest = posixpath.normpath(dest).lstrip("/")
            if dest_is_dir and dest:
                dest = resolve_in_image(parent_layers, dest)

            def add_dirs(path: str) -> None:
                parts = [p for p in path.split("/") if p]
                for i in range(1, len(parts) + 1):
                    rel = "/".join(parts[:i])
                    if rel in written:
                        continue
                    written.add(rel)
                    info = tarfile.TarInfo(rel)
                    info.type = tarfile.DIRTYPE
                    existing = _lookup(parent_layers, rel)
                    if existing is not None and os.path.isdir(existing) and not os.path.islink(existing):
                        st = os.stat(existing)
                        info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
                        info.mtime = int(st.st_mtime)
                    else:
                        info.mode = 0o755
                        info.uid, info.gid = owner.uid, owner.gid
                    tar.addfile(info)

            def add(path_on_disk: str, name: str, mode: Optional[int] = None, mtime=None) -> None:
                name = target_of(name)
                info = tar.gettarinfo(path_on_disk, name)
                info.uid, info.gid = owner.uid, owner.gid
                info.uname = info.gname = ""
                if mode is not None:
                    info.mode = mode
                if mtime is not None:
                    info.mtime = int(mtime)
                if info.islnk():
                    info.type = tarfile.REGTYPE
                    info.linkname = ""
                    info.size = os.stat(path_on_disk).st_size
                if name in written and info.isdir():
                    return
                written.add(name)
                if info.isreg():
                    with open(path_on_disk, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)

            def add_archive(path: str, into: str) -> None:
                with open(path, "rb") as raw, decompressed(raw) as stream:
                    with tarfile.open(fileobj=stream, mode="r|") as src:
                        for member in src:
                            name = posixpath.normpath(member.name).lstrip("/")
                            if name.startswith("..") or name == ".":
                                continue
                            target = target_of(posixpath.join(into, name) if into else name)
                            add_dirs(posixpath.dirname(target))
                            member.name = target
                            if member.islnk():
                                member.linkname = posixpath.join(into, posixpath.normpath(member.linkname).lstrip("/"))
                            if member.isdir():
                                if target in written:
                                    continue
                                written.add(target)
                                tar.addfile(member)
                            elif member.isreg():
                                written.add(target)
                                tar.addfile(member, src.extractfile(member))
                            else:
                                written.add(target)
                                tar.addfile(member)

            if make_dest:
                add_dirs(dest)
            for source in sources:
                if source.is_dir:
                    add_dirs(dest)
                    for rel, path in walk(source):
                        add(path, posixpath.join(dest, rel) if dest else rel)
                elif extract_archives and source.mode is None and is_archive(source.path):
                    add_dirs(dest)
                    add_archive(source.path, dest)
                else:
                    target = posixpath.join(dest, source.name) if dest_is_dir else dest
                    add_dirs(resolve_in_image(parent_layers, posixpath.dirname(target)))
                    add(source.path, target, source.mode, source.mtime)
        handle.flush()
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle


def dest_is_directory(dest: str, count: int, parent_layers: Sequence[str]) -> bool:
    """Whether the destination is a directory: it ends with C{/}, several
    sources go there, or the image already has a directory there."""
    if dest.endswith("/") or count > 1:
        return True
    rel = resolve_in_image(parent_layers, posixpath.normpath(dest).lstrip("/"))
    existing = _lookup(parent_layers, rel)
    return existing is not None and os.path.isdir(existing) and not os.path.islink(existing)


def workdir_layer(path: str, parent_layers: Sequence[str], tmp_dir: str) -> Optional[BinaryIO]:
    """WORKDIR's layer: the directory made (root's, 0755) when the image
    has none there, as dockerd's ContainerCreateWorkdir; None when it has."""
    rel = resolve_in_image(parent_layers, posixpath.normpath(path).lstrip("/"))
    existing = _lookup(parent_layers, rel) if rel else parent_layers[0] if parent_layers else None
    if existing is not None and os.path.isdir(existing) and not os.path.islink(existing):
        return None
    return write_copy_layer([], rel, True, Owner(), parent_layers, False, tmp_dir, make_dest=True)

