"""
Reading tar streams: decompression (gzip, bzip2, xz, as dockerd's
DecompressStream detects them), the diff ID (the sha256 of the uncompressed
stream, every byte of it), entry names checked against breakouts, and one
reader of members (L{members}, L{read_members}) for unpacking layers, cp
extraction and the breakout scan.

Everything here blocks: run it in a thread (C{deferToThreadPool}), never on
the reactor thread.
"""

import bz2
import gzip
import hashlib
import io
import lzma
import os
import tarfile
from typing import BinaryIO, Optional

from .. import golang

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

#: How much is read at a time.
CHUNK = 1 << 20


class ArchiveError(Exception):
    """The stream cannot be unpacked (dockerd answers 500)."""


class BreakoutError(ArchiveError):
    """An entry would land outside the layer directory (refused: 400)."""


# -- decompression and digest ------------------------------------------------


class Prefixed(io.RawIOBase):
    """A stream whose first bytes were read already, given back first."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        if not data:
            return 0
        buffer[: len(data)] = data
        return len(data)


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks = []
    while size > 0:
        data = stream.read(size)
        if not data:
            break
        chunks.append(data)
        size -= len(data)
    return b"".join(chunks)


def compression_of(head: bytes) -> Optional[str]:
    """The compression C{head} (the first bytes of a stream) announces."""
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return None


def decompressed(stream: BinaryIO) -> BinaryIO:
    """C{stream} uncompressed, whichever of dockerd's compressions it uses."""
    head = read_exactly(stream, 6)
    raw = io.BufferedReader(Prefixed(head, stream), CHUNK)
    kind = compression_of(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, "rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, "rb")
    if kind == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            raise ArchiveError("zstd-compressed layers are not supported")
        return zstandard.ZstdDecompressor().stream_reader(raw)
    return raw


class ReadThrough:
    """A stream read through another by its own C{read(size)}: C{readinto}
    and C{drain} made of it."""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise NotImplementedError

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end (what follows the tar counts too)."""
        while self.read(CHUNK):
            pass


class DigestReader(ReadThrough, io.RawIOBase):
    """Reads through, hashing (sha256) and counting what passes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except (EOFError, OSError, lzma.LZMAError, ValueError) as e:
            raise ArchiveError(_stream_error(e))
        if data:
            self._hash.update(data)
            self.count += len(data)
        return data

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def _stream_error(error: BaseException) -> str:
    if isinstance(error, EOFError):
        return "unexpected EOF"
    text = str(error)
    return text or type(error).__name__


# -- paths -------------------------------------------------------------------


def entry_path(name: str) -> str:
    """The cleaned relative path of entry C{name}; refuse one that escapes."""
    if name.startswith("/"):
        raise BreakoutError("%s is an absolute path" % (golang.quote(name),))
    cleaned = golang.clean(name)
    if cleaned == ".." or cleaned.startswith("../"):
        raise BreakoutError("%s is outside of %s" % (golang.quote(name), golang.quote("/")))
    return cleaned


def read_members(stream: BinaryIO, least: int = 1):
    """The members of the uncompressed tar C{stream}, as L{members}; a
    stream shorter than C{least} bytes is empty (yields nothing)."""
    head = read_exactly(stream, tarfile.BLOCKSIZE)
    if len(head) < least:
        return iter(())
    source = io.BufferedReader(Prefixed(head, stream), CHUNK)
    return members(source, len(head))


def members(source: BinaryIO, head_length: int):
    """(tar, member) for each entry of the tar stream C{source}, read once
    in stream mode; a damaged stream raises L{ArchiveError} with dockerd's
    words (C{head_length}: how much of it was read to tell it is a tar)."""
    try:
        tar = tarfile.open(fileobj=source, mode="r|", errorlevel=2)
    except tarfile.ReadError as e:
        raise ArchiveError(_tar_error(e, head_length))
    with tar:
        while True:
            try:
                member = tar.next()
            except tarfile.ReadError as e:
                raise ArchiveError(_tar_error(e, tarfile.BLOCKSIZE))
            if member is None:
                return
            # Stream mode keeps every member it saw; the one at hand is enough.
            tar.members = []
            yield tar, member


def _tar_error(error: tarfile.ReadError, read: int) -> str:
    text = str(error)
    if read < tarfile.BLOCKSIZE or "truncated" in text or "end of data" in text:
        return "unexpected EOF"
    return "archive/tar: invalid tar header"


def os_error(error: OSError) -> str:
    reason = os.strerror(error.errno).lower() if error.errno else str(error)
    if error.filename:
        return "%s: %s" % (error.filename, reason)
    return reason
