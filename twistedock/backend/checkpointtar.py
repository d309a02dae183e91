"""
The tarball a checkpoint travels in between daemons (export and import):
its layout, its writer, and its unpacking into a staging directory and
from there into a container (all blocking: call them in a thread).
"""

import json
import os
import shutil
from typing import List, Optional

from .. import golang
from ..errors import InvalidParameter
from .precopy import EXPORT_PRECOPY, PrecopyExtractor, PrecopyWriter


#: The export tarball's layout (see L{write_checkpoint_export}).
EXPORT_MANIFEST = "manifest.json"
EXPORT_VERSION = 1
EXPORT_CHECKPOINT = "checkpoint"
EXPORT_RECORD = "container.json"
EXPORT_ROOTFS = "rootfs-diff"
EXPORT_FILES = "files"
#: The container's own files exported beside it (the daemon rewrites them
#: at start; carried for reference and for a restore that needs them).
CONTAINER_FILES = ("hostname", "hosts", "resolv.conf")


def _tar_bytes(writer, name: str, data: bytes, mtime: float) -> None:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(mtime)
    info.uname = info.gname = ""
    writer.header(info)
    writer._write(data)
    rest = len(data) % tarfile.BLOCKSIZE
    if rest:
        writer._write(b"\0" * (tarfile.BLOCKSIZE - rest))


def _rebase_entry(entry, prefix: str) -> None:
    """Every entry of the upper dir kept (a migration needs all of it, the
    init layer's stubs included), named below C{prefix}."""
    stack = [entry]
    while stack:
        e = stack.pop()
        e.parts = [prefix] + list(e.parts)
        e.keep = True
        stack.extend(e.children)


def write_checkpoint_export(write, manifest: dict, record: bytes, checkpoint: Optional[str], upper: str,
                            layer_dirs, files_dir: Optional[str], record_into: Optional[dict] = None,
                            sent: Optional[dict] = None) -> None:
    """The export tarball (blocking, in a thread): C{manifest.json},
    C{container.json}, C{checkpoint/} (CRIU's images and checkpoint.json),
    C{files/} (hostname, hosts, resolv.conf) and C{rootfs-diff/}: the
    container's upper directory as an OCI layer (overlay whiteouts as
    C{.wh.NAME}, opaque directories with C{.wh..wh..opq}).  Without
    C{checkpoint} (a prepare export) no C{checkpoint/} nor C{files/}, and
    the upper directory's files are recorded into C{record_into}; with
    C{sent} (such a record) unchanged files are links to the target's
    pre-copy (L{precopy})."""
    import time as _time

    from ..tar import DIR_FLAGS
    from ..tar.layer import LowerView, scan_upper, write_layer_dir
    now = _time.time()
    writer = PrecopyWriter(write, EXPORT_ROOTFS, record=record_into, sent=sent)
    _tar_bytes(writer, EXPORT_MANIFEST, json.dumps(manifest, indent=1).encode(), now)
    _tar_bytes(writer, EXPORT_RECORD, record, now)
    if checkpoint is not None:
        fd = os.open(checkpoint, DIR_FLAGS)
        try:
            writer.tree(fd, None, EXPORT_CHECKPOINT, os.fstat(fd))
        finally:
            os.close(fd)
        for name in CONTAINER_FILES:
            path = os.path.join(files_dir, name)
            if os.path.isfile(path):
                writer.mounted(path, EXPORT_FILES + "/" + name)
    if os.path.isdir(upper):
        _, root = scan_upper(upper, LowerView(list(layer_dirs)))
        _rebase_entry(root, EXPORT_ROOTFS)
        upper_fd = os.open(upper, DIR_FLAGS)
        try:
            sub = writer.entry(upper_fd, None, EXPORT_ROOTFS, os.fstat(upper_fd))
            if sub is not None:
                os.close(sub)
            write_layer_dir(writer, upper_fd, root)
        finally:
            os.close(upper_fd)
    writer.close()


def _safe_parts(name: str) -> List[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts) or name.startswith("/"):
        raise InvalidParameter("invalid entry in checkpoint archive: %s" % (golang.quote(name),))
    return parts


def unpack_checkpoint_export(content, staging: str, checkpoint: bool = True,
                             precopy: Optional[str] = None) -> dict:
    """Unpack an export tarball (blocking) into C{staging}: C{checkpoint/},
    C{files/} and C{diff/} (the upper directory, whiteouts made overlay
    whiteouts again); the manifest and the record, parsed.  Without
    C{checkpoint} (a prepare export) C{checkpoint/} may be missing.  With
    C{precopy} (the upper directory a prepare export filled) the links to
    C{rootfs-precopy/} are links to its files (L{precopy})."""
    import tarfile

    from ..tar.read import ArchiveError

    os.makedirs(staging, mode=0o700)
    diff = os.path.join(staging, "diff")
    os.makedirs(diff, mode=0o755)
    found: dict = {}
    diff_fd = os.open(diff, os.O_RDONLY | os.O_DIRECTORY)
    precopy_fd = None
    try:
        if precopy is not None and os.path.isdir(precopy):
            precopy_fd = os.open(precopy, os.O_RDONLY | os.O_DIRECTORY)
        extractor = PrecopyExtractor(diff_fd, precopy_fd)
        try:
            tar = tarfile.open(fileobj=content, mode="r|", errorlevel=2)
        except tarfile.ReadError as e:
            raise InvalidParameter("not a checkpoint archive: %s" % (e,))
        with tar:
            for member in tar:
                tar.members = []
                parts = _safe_parts(member.name)
                top = parts[0]
                if top == EXPORT_ROOTFS:
                    if len(parts) == 1:
                        continue
                    member.name = "/".join(parts[1:])
                    if member.islnk() and member.linkname:
                        link = _safe_parts(member.linkname)
                        if link[0] == EXPORT_PRECOPY and len(link) > 1:
                            member.linkname = "/".join(link)
                        elif link[0] != EXPORT_ROOTFS:
                            raise InvalidParameter("invalid link in checkpoint archive: %s" % (golang.quote(member.name),))
                        else:
                            member.linkname = "/".join(link[1:])
                    extractor.extract(tar, member)
                    continue
                if len(parts) == 1 and top in (EXPORT_MANIFEST, EXPORT_RECORD) and member.isfile():
                    found[top] = tar.extractfile(member).read(16 * 1024 * 1024)
                    continue
                if top in (EXPORT_CHECKPOINT, EXPORT_FILES):
                    _stage_entry(tar, member, os.path.join(staging, *parts))
                    continue
                # Unknown entries (a later version's additions) are ignored.
            extractor.finish()
    except (tarfile.TarError, ArchiveError, EOFError) as e:
        raise InvalidParameter("invalid checkpoint archive: %s" % (e,))
    finally:
        os.close(diff_fd)
        if precopy_fd is not None:
            os.close(precopy_fd)
    for name in (EXPORT_MANIFEST, EXPORT_RECORD):
        if name not in found:
            raise InvalidParameter("invalid checkpoint archive: no %s" % (name,))
    try:
        manifest = json.loads(found[EXPORT_MANIFEST])
        record = json.loads(found[EXPORT_RECORD])
    except ValueError as e:
        raise InvalidParameter("invalid checkpoint archive: %s" % (e,))
    if not isinstance(manifest, dict) or not isinstance(record, dict) or not isinstance(record.get("Config"), dict):
        raise InvalidParameter("invalid checkpoint archive: bad manifest or container record")
    if checkpoint and not os.path.isdir(os.path.join(staging, EXPORT_CHECKPOINT)):
        raise InvalidParameter("invalid checkpoint archive: no checkpoint/")
    return {"manifest": manifest, "record": record}



def _stage_entry(tar, member, path: str) -> None:
    """Write a C{checkpoint/} or C{files/} entry (a directory or a regular
    file, nothing else) at C{path} in the staging directory (blocking)."""
    try:
        if member.isdir():
            os.makedirs(path, mode=0o700, exist_ok=True)
        elif member.isfile():
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            source = tar.extractfile(member)
            with open(path, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            os.chmod(path, 0o600)
        else:
            raise InvalidParameter(
                "unexpected entry in checkpoint archive: %s" % (golang.quote(member.name),)
            )
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        # An entry below a file, or a file where a directory already is.
        raise InvalidParameter(
            "invalid checkpoint archive: %s clashes with an earlier entry"
            % (golang.quote(member.name),)
        )

def install_import(staging: str, checkpoints_dir: str, checkpoint_id: str, upper: str, container_dir: str) -> None:
    """Move what was unpacked into place for the new container (blocking)."""
    os.makedirs(checkpoints_dir, mode=0o700, exist_ok=True)
    os.rename(os.path.join(staging, EXPORT_CHECKPOINT), os.path.join(checkpoints_dir, checkpoint_id))
    install_diff(staging, upper)
    files = os.path.join(staging, EXPORT_FILES)
    for name in CONTAINER_FILES:
        path = os.path.join(files, name)
        if os.path.isfile(path):
            shutil.copyfile(path, os.path.join(container_dir, name))


def install_diff(staging: str, upper: str) -> None:
    """The unpacked upper directory put in place of C{upper} (blocking)."""
    os.makedirs(os.path.dirname(upper), mode=0o710, exist_ok=True)
    if os.path.isdir(upper):
        shutil.rmtree(upper)
    os.rename(os.path.join(staging, "diff"), upper)
