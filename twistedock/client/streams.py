"""Streamed bodies, both ways, with backpressure.

L{ChunkQueue} holds what a connection delivered until the program takes it,
and pauses the connection once C{HIGH_WATER} bytes wait: a slow reader slows
the daemon down instead of filling memory.  L{BodyStream} (an HTTP answer's
body), L{Frames} (stdcopy-multiplexed output) and L{JSONStream} (progress and
event lines) are async iterators over it; closing one, or cancelling the
Deferred of a pending read, drops its connection.  L{body_producer} sends
bytes, files and async iterators of bytes as request bodies."""

import io
import json
import os
import struct
from collections import deque
from typing import AsyncIterator, Optional, Tuple

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.web.client import FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from .errors import StreamError, StreamInterrupted

HIGH_WATER = 1 << 20

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_HEADER = struct.Struct(">BxxxL")


class ChunkQueue:
    """Chunks from a producer (a transport) to one reader at a time."""

    def __init__(self, producer=None, call_later=None) -> None:
        self.producer = producer
        #: The reactor's callLater: a waiting reader is woken once per read
        #: from the socket, not once per HTTP chunk (dockerd sends a log
        #: line a chunk).  None: at once (tests without a reactor).
        self._call_later = call_later
        self._wake_call = None
        self._chunks = deque()
        self._size = 0
        self._paused = False
        self._waiting: Optional[Deferred] = None
        self._ended = False
        self._reason = None
        self.closed = False

    # -- from the connection ---------------------------------------------

    def put(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if self._waiting is not None and self._call_later is None:
            waiting, self._waiting = self._waiting, None
            waiting.callback(data)
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._waiting is not None and self._wake_call is None:
            self._wake_call = self._call_later(0, self._wake)
        if self._size >= HIGH_WATER and not self._paused and self.producer is not None:
            self._paused = True
            self.producer.pauseProducing()

    def end(self, reason=None) -> None:
        """No more chunks: a clean end (C{reason} None) or a failure."""
        if self._ended:
            return
        self._ended, self._reason = True, reason
        if self._chunks:
            self._wake()
        elif self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            if reason is None:
                waiting.callback(b"")
            else:
                waiting.errback(reason)

    # -- to the reader ----------------------------------------------------

    def get(self) -> Deferred:
        """The next chunk; C{b""} at the end."""
        if self._chunks:
            return _fired(self._take())
        if self._ended or self.closed:
            d = Deferred()
            if self._reason is not None and not self.closed:
                d.errback(self._reason)
            else:
                d.callback(b"")
            return d
        if self._waiting is not None:
            raise RuntimeError("two readers of one stream")
        self._waiting = Deferred(self._cancelled)
        return self._waiting

    def _take(self) -> bytes:
        """Everything queued, as one chunk."""
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self.producer.resumeProducing()
        return data

    def _wake(self) -> None:
        self._wake_call = None
        if self._waiting is not None and self._chunks:
            waiting, self._waiting = self._waiting, None
            waiting.callback(self._take())

    def _cancelled(self, d: Deferred) -> None:
        self._waiting = None
        self.close()

    def close(self) -> None:
        """Stop reading: the connection is dropped if it still delivers."""
        if self.closed:
            return
        self.closed = True
        if self._wake_call is not None and self._wake_call.active():
            self._wake_call.cancel()
        self._wake_call = None
        self._chunks.clear()
        self._size = 0
        if not self._ended and self.producer is not None:
            producer, self.producer = self.producer, None
            producer.stopProducing()
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            if not waiting.called:
                waiting.callback(b"")


def _fired(value) -> Deferred:
    d = Deferred()
    d.callback(value)
    return d


class _BodyProtocol(Protocol):
    """Delivers an answer's body into a L{ChunkQueue}."""

    def __init__(self, queue: ChunkQueue) -> None:
        self.queue = queue

    def connectionMade(self) -> None:
        self.queue.producer = self.transport

    def dataReceived(self, data: bytes) -> None:
        self.queue.put(data)

    def connectionLost(self, reason) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self.queue.end()
        else:
            self.queue.end(StreamInterrupted("the answer's body", reason))


class _Iterator:
    """Async iteration and C{async with} over C{self.next()}."""

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self.next()
        if item is None:
            raise StopAsyncIteration
        return item

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        self.close()

    async def aclose(self) -> None:
        self.close()


class BodyStream(_Iterator):
    """An answer's body as chunks of bytes, read as they arrive."""

    def __init__(self, response, queue: Optional[ChunkQueue] = None, call_later=None) -> None:
        self.response = response
        self.headers = response.headers if response is not None else None
        self.queue = queue if queue is not None else ChunkQueue(call_later=call_later)
        if response is not None:
            response.deliverBody(_BodyProtocol(self.queue))

    def header(self, name: str) -> Optional[str]:
        values = self.headers.getRawHeaders(name) if self.headers is not None else None
        return values[0] if values else None

    @property
    def closed(self) -> bool:
        """Closed by its reader (or a read was cancelled)."""
        return self.queue.closed

    def read_chunk(self) -> Deferred:
        """The next chunk, C{b""} at the end; cancelling it closes the stream."""
        return self.queue.get()

    async def next(self) -> Optional[bytes]:
        data = await self.read_chunk()
        return data or None

    async def read(self) -> bytes:
        """Everything that is left (for bodies known to be small)."""
        parts = []
        async for chunk in self:
            parts.append(chunk)
        return b"".join(parts)

    async def write_to(self, target) -> int:
        """The stream to its end into C{target}; the number of bytes.

        C{target} is a path, a binary file, or a file's C{write}: the file
        is written in a thread (the reactor never waits on a disk), one
        chunk written while the next is read.  Any other callable is called
        on the reactor with each chunk and must not block (it may return a
        Deferred, awaited before the next chunk)."""
        if isinstance(target, (str, os.PathLike)):
            f = await deferToThread(open, target, "wb")
            try:
                return await self._write_in_thread(f.write)
            finally:
                await deferToThread(f.close)
        if hasattr(target, "write"):
            return await self._write_in_thread(target.write)
        if isinstance(getattr(target, "__self__", None), io.IOBase):
            return await self._write_in_thread(target)
        total = 0
        async for chunk in self:
            result = target(chunk)
            if isinstance(result, Deferred):
                await result
            total += len(chunk)
        return total

    async def _write_in_thread(self, write) -> int:
        total, pending = 0, None
        try:
            async for chunk in self:
                if pending is not None:
                    writing, pending = pending, None
                    await writing
                pending = deferToThread(write, chunk)
                pending.addErrback(self._write_failed)
                total += len(chunk)
        finally:
            # The last write (or the one running when reading failed) ends first.
            if pending is not None:
                await pending
        return total

    def _write_failed(self, failure):
        self.close()
        return failure

    def close(self) -> None:
        self.queue.close()


class Frames(_Iterator):
    """Container output as C{(stream, bytes)}: stdcopy frames split when the
    output is multiplexed (no TTY), else every chunk as stdout.  C{body} is
    a L{BodyStream} (C{next}, C{close} and C{closed})."""

    def __init__(self, body, multiplexed: bool) -> None:
        self.body = body
        self.multiplexed = multiplexed
        self._buffer = b""
        self._frames = deque()

    async def next(self) -> Optional[Tuple[int, bytes]]:
        if not self.multiplexed:
            data = await self.body.next()
            return None if data is None else (STDOUT, data)
        if self.body.closed:
            # Closed (or a read cancelled): frames split from an earlier
            # chunk are dropped with the rest.
            self._frames.clear()
            self._buffer = b""
            return None
        while not self._frames:
            data = await self.body.next()
            if data is None:
                if self._buffer:
                    raise StreamInterrupted("a frame")
                return None
            self._split(self._buffer + data if self._buffer else data)
        stream, payload = self._frames.popleft()
        if stream == SYSTEMERR:
            raise StreamError(payload.decode("utf-8", "replace").strip())
        return stream, payload

    def _split(self, buffer: bytes) -> None:
        """Every whole frame in C{buffer} queued, the rest kept (one pass:
        a chunk holds hundreds of log lines)."""
        offset, size, unpack, frames = 0, len(buffer), _HEADER.unpack_from, self._frames
        while size - offset >= 8:
            stream, length = unpack(buffer, offset)
            end = offset + 8 + length
            if end > size:
                break
            frames.append((stream, buffer[offset + 8:end]))
            offset = end
        self._buffer = buffer[offset:] if offset else buffer

    async def output(self) -> Tuple[bytes, bytes]:
        """Everything that is left: (stdout, stderr)."""
        out, err = [], []
        async for stream, data in self:
            (err if stream == STDERR else out).append(data)
        return b"".join(out), b"".join(err)

    async def text(self) -> str:
        """stdout and stderr in the order written, decoded."""
        parts = []
        async for _, data in self:
            parts.append(data)
        return b"".join(parts).decode("utf-8", "replace")

    def close(self) -> None:
        self.body.close()


class JSONStream(_Iterator):
    """Newline-separated JSON documents (events, progress, stats)."""

    def __init__(self, body) -> None:
        self.body = body
        self._buffer = b""
        self._lines = deque()

    async def next(self):
        while not self._lines:
            data = await self.body.next()
            if data is None:
                line, self._buffer = self._buffer, b""
                return json.loads(line) if line.strip() else None
            lines = (self._buffer + data).split(b"\n")
            self._buffer = lines.pop()
            self._lines.extend(line for line in lines if line.strip())
        return json.loads(self._lines.popleft())

    async def wait(self) -> list:
        """Every document to the end; a StreamError for an C{error} line."""
        documents = []
        async for document in self:
            if isinstance(document, dict) and document.get("error"):
                self.close()
                raise StreamError(document["error"], document.get("errorDetail"))
            documents.append(document)
        return documents

    def close(self) -> None:
        self.body.close()


@implementer(IBodyProducer)
class IteratorProducer:
    """A request body from an async iterator of bytes (another answer's
    L{BodyStream}, say): paused when the connection is, so the source is
    read no faster than the daemon takes it."""

    length = UNKNOWN_LENGTH

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self.source = source
        self._resumed: Optional[Deferred] = None
        self._paused = False
        self._stopped = False
        self._task: Optional[Deferred] = None

    def startProducing(self, consumer) -> Deferred:
        self._task = ensureDeferred(self._pump(consumer))
        return self._task

    async def _pump(self, consumer) -> None:
        async for chunk in self.source:
            if self._stopped:
                break
            consumer.write(chunk)
            if self._paused:
                self._resumed = Deferred()
                await self._resumed
        if self._stopped:
            raise _Stopped()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self._resumed is not None:
            resumed, self._resumed = self._resumed, None
            resumed.callback(None)

    def stopProducing(self) -> None:
        self._stopped = True
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
        self.resumeProducing()


class _Stopped(Exception):
    pass



def body_producer(body, cooperator=None):
    """A request body from bytes, a readable binary file (read in chunks as
    the connection takes them), an async iterator of bytes, or a path."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        body = open(body, "rb")
    if hasattr(body, "__aiter__"):
        return IteratorProducer(body)
    if hasattr(body, "read"):
        if cooperator is None:
            return FileBodyProducer(body, readSize=1 << 16)
        return FileBodyProducer(body, cooperator=cooperator, readSize=1 << 16)
    raise TypeError("a body is bytes, a binary file, a path or an async iterator of bytes, not %r" % (body,))
