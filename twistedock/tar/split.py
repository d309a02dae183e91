"""
A layer's tar, kept as dockerd keeps it (tar-split): the bytes of the
uncompressed stream that are not file content (headers, padding, the end
blocks, anything after them) are recorded while the layer is unpacked, and
the regular files' content is read back from the unpacked layer.  So a
layer can be given out again byte for byte, and its digest is its diff ID:
what `docker save` needs to keep an image's ID.

The record is a gzip of JSON lines: C{{"type": 2, "payload": <base64>}} for
raw bytes, C{{"type": 1, "name": <path>, "size": <n>}} for a file's content
(C{name} is the entry's cleaned path in the layer).

Everything here blocks: run it in a thread, never on the reactor thread.
"""

import base64
import gzip
import hashlib
import json
import os
import stat
import tarfile
from typing import BinaryIO, Callable, Iterator, Optional, Tuple

from . import DIR_FLAGS
from .read import WHITEOUT_META_PREFIX, WHITEOUT_PREFIX, ArchiveError, ReadThrough, entry_path

SEGMENT, FILE = 2, 1
#: How much of a file is read at a time when assembling.
CHUNK = 256 * 1024


class SplitError(Exception):
    """The layer cannot be given out as it came (no record, or the layer's
    files no longer match it)."""


class SplitRecorder(ReadThrough):
    """Reads through the uncompressed layer stream, keeping what is not file
    content; L{member} is told each entry once its header is read."""

    def __init__(self, stream: BinaryIO, out: BinaryIO) -> None:
        self._stream = stream
        self._out = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0)
        #: Bytes read but not yet written out, from absolute position _base.
        self._pending = bytearray()
        self._base = 0
        #: Where the stream has been read to.
        self._position = 0
        #: Everything before this is written out (or is content).
        self._cursor = 0
        #: Content bytes, never kept, end here.
        self._skip_until = 0

    # -- the stream ------------------------------------------------------------

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            start = self._position
            self._position += len(data)
            if self._position > self._skip_until:
                kept = data
                if start < self._skip_until:
                    kept = data[self._skip_until - start :]
                    start = self._skip_until
                if not self._pending:
                    self._base = start
                self._pending += kept
        return data

    # -- the record ----------------------------------------------------------------

    def _segment(self, end: int) -> None:
        """Write out the raw bytes from the cursor to C{end}."""
        if end <= self._cursor:
            return
        start = self._cursor - self._base
        data = bytes(self._pending[start : end - self._base])
        if len(data) != end - self._cursor:
            raise ArchiveError("tar-split: lost track of the stream")
        self._line({"type": SEGMENT, "payload": base64.b64encode(data).decode("ascii")})
        self._cursor = end
        del self._pending[: end - self._base]
        self._base = end

    def _line(self, doc: dict) -> None:
        self._out.write(json.dumps(doc, separators=(",", ":")).encode("utf-8") + b"\n")

    def member(self, member: tarfile.TarInfo) -> None:
        """An entry's header was read: its content, if the layer keeps it
        as a file, is not recorded."""
        if not (member.isreg() and member.size > 0 and stored_as_file(member.name)):
            return
        self._segment(member.offset_data)
        self._line({"type": FILE, "name": entry_path(member.name), "size": member.size})
        end = member.offset_data + member.size
        self._cursor = self._skip_until = end
        if self._base + len(self._pending) <= end:
            self._pending.clear()
        else:
            del self._pending[: end - self._base]
            self._base = end

    def finish(self) -> None:
        """The stream is read to its end: write the rest out."""
        self._segment(self._position)
        self._out.close()


def stored_as_file(name: str) -> bool:
    """Whether unpacking keeps entry C{name}'s content as a file of the
    layer (not the root itself, AUFS metadata or a whiteout)."""
    try:
        path = entry_path(name)
    except ArchiveError:
        return False
    if path == "." or path.startswith(WHITEOUT_META_PREFIX):
        return False
    return not path.split("/")[-1].startswith(WHITEOUT_PREFIX)


def _records(split_path: str) -> Iterator[dict]:
    try:
        with gzip.open(split_path, "rb") as f:
            for line in f:
                yield json.loads(line)
    except FileNotFoundError:
        raise SplitError("the layer's original tar was not recorded")
    except (OSError, EOFError, ValueError) as e:
        raise SplitError("the layer's tar record is damaged: %s" % (e,))


def tar_size(split_path: str) -> int:
    """The size of the layer's tar."""
    total = 0
    for record in _records(split_path):
        if record.get("type") == FILE:
            total += int(record["size"])
        else:
            total += len(base64.b64decode(record.get("payload") or ""))
    return total


def assemble(split_path: str, diff_dir: str, write: Callable[[bytes], None]) -> Tuple[str, int]:
    """Write the layer's tar: (its digest, its size).  The caller compares
    the digest with the diff ID."""
    from .extract import Extractor

    digest = hashlib.sha256()
    size = 0
    root_fd = os.open(diff_dir, DIR_FLAGS)
    try:
        for record in _records(split_path):
            if record.get("type") != FILE:
                data = base64.b64decode(record.get("payload") or "")
                digest.update(data)
                size += len(data)
                write(data)
                continue
            name, length = record["name"], int(record["size"])
            for data in _content(Extractor(root_fd), name, length):
                digest.update(data)
                size += len(data)
                write(data)
    finally:
        os.close(root_fd)
    return "sha256:" + digest.hexdigest(), size


def _content(extractor, name: str, length: int) -> Iterator[bytes]:
    parts = name.split("/")
    fd: Optional[int] = None
    try:
        parent = extractor.open_dir(parts[:-1], create=False, shown=name)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SplitError("%s is no longer a file" % (name,))
        remaining = length
        while remaining > 0:
            data = os.read(fd, min(CHUNK, remaining))
            if not data:
                raise SplitError("%s is shorter than it was" % (name,))
            remaining -= len(data)
            yield data
    except (OSError, ArchiveError) as e:
        raise SplitError("%s: %s" % (name, e))
    finally:
        if fd is not None:
            os.close(fd)
