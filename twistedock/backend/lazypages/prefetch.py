"""
The target's end of the page connection, pipelining the bulk copy.

Why: C{criu lazy-pages} fetches the pages not faulted in one background
request at a time (C{xfer_pages} waits for each answer before the next),
from 64 KiB up to 4 MiB, and every fault of the running process drops the
size back to 64 KiB.  Across the daemons' connections (three relays, TLS)
a round trip costs milliseconds, so a process that faults every
millisecond copied its 256 MiB in about a minute and a half, the source
kept frozen all that time.

So the daemon, which sits between C{criu lazy-pages} and the source, asks
the source itself for every lazy page as soon as the restore is done
(L{PrefetchJoint.start_prefetch}): the ranges come from the checkpoint's
pagemap images (entries flagged C{PE_LAZY}, the ones C{criu lazy-pages}
fetches too), in requests of L{CHUNK_PAGES}, a few in flight
(L{IN_FLIGHT}), the answers kept until asked for (at most L{WINDOW} bytes
ahead).  C{criu lazy-pages}'s own requests are answered from those pages,
or wait for the request in flight that holds them, or go to the source as
they are.  The source's page server answers in order and reads its pages
with C{tee} (a page may be read again), so the protocol on both sides is
CRIU's own (L{protocol}): the source's guard still sees every request and
the final C{PS_IOV_CLOSE}, which goes out after the prefetches and whose
answer goes back to C{criu lazy-pages}.
"""

import bisect
import glob
import os
import re
import struct
from collections import deque
from typing import Dict, List, Optional, Tuple

from ...logs import Logger
from .protocol import IOV, PS_IOV_FLUSH, PS_IOV_FLUSH_N_CLOSE, PS_IOV_GET
from .relay import Joint

log = Logger()

PAGE_SIZE = 4096
#: Pages per prefetch request (256 KiB).
CHUNK_PAGES = 64
#: Prefetch requests in flight at once.  The source answers in order, so a
#: fault's request waits behind every byte of them still on its way (three
#: relays, TLS: some 50-90 MiB/s here): their total bounds a fault's wait,
#: and 1 MiB is still more than a round trip of the pipeline (1-7 ms)
#: carries.  Measured across the two namespaces over TLS (256 MiB, the
#: ticker's random faults, shared 2-core machine at load 8 to 12, faults of
#: the first second after the restore, two runs each): 8 x 1 MiB, median
#: 56-255 ms a fault, up to 0.31 s; 8 x 512 KiB, 6-131 ms, up to 0.27 s;
#: 4 x 256 KiB, 11-15 ms, up to 63 ms; copy done 3.5-14 s after the restore
#: in all three (the load's noise hid any difference).
IN_FLIGHT = 4
#: Bytes fetched ahead and not yet asked for, at most.
WINDOW = 64 * 1024 * 1024

#: CRIU's image heads and pagemap flags (criu/include/magic.h, pagemap.h).
IMG_COMMON_MAGIC = 0x54564319
PAGEMAP_MAGIC = 0x56084025
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2
#: The answer's command: PS_IOV_ADD_F with PE_PRESENT (page-xfer.c).
PS_IOV_ADD_F = 6
ANSWER_CMD = (PE_PRESENT << 16) | PS_IOV_ADD_F

#: The page server's answer to PS_IOV_CLOSE: an int32 status, always 0.
CLOSE_STATUS = struct.pack("<i", 0)

PAGEMAP_NAME = re.compile(r"^pagemap-(\d+)\.img$")


# -- the checkpoint's lazy ranges ---------------------------------------------------


def _varint(data: bytes, offset: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def _fields(message: bytes) -> Dict[int, int]:
    """The varint fields of a protobuf message (what pagemap entries hold)."""
    fields: Dict[int, int] = {}
    offset = 0
    while offset < len(message):
        key, offset = _varint(message, offset)
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields[number], offset = _varint(message, offset)
        elif wire == 1:
            offset += 8
        elif wire == 2:
            length, offset = _varint(message, offset)
            offset += length
        elif wire == 5:
            offset += 4
        else:
            raise ValueError("unexpected protobuf wire type %d" % (wire,))
    return fields


def pagemap_lazy_ranges(data: bytes) -> List[Tuple[int, int]]:
    """The (vaddr, pages) of the C{PE_LAZY} entries of a pagemap image."""
    if len(data) < 8 or struct.unpack_from("<II", data, 0) != (IMG_COMMON_MAGIC, PAGEMAP_MAGIC):
        raise ValueError("not a pagemap image")
    offset = 8
    ranges = []
    head = True
    while offset + 4 <= len(data):
        (size,) = struct.unpack_from("<I", data, offset)
        offset += 4
        message = data[offset:offset + size]
        if len(message) < size:
            raise ValueError("truncated pagemap image")
        offset += size
        if head:  # pagemap_head
            head = False
            continue
        fields = _fields(message)
        pages = fields.get(5, fields.get(2, 0))
        if fields.get(4, 0) & PE_LAZY and pages:
            ranges.append((fields.get(1, 0), pages))
    return ranges


def lazy_ranges(images_dir: str) -> List[Tuple[int, int, int]]:
    """(In a thread.)  The (page server id, vaddr, pages) of every lazy range
    of a checkpoint: the id is the task's, as C{criu lazy-pages} asks."""
    found = []
    for path in sorted(glob.glob(os.path.join(images_dir, "pagemap-*.img"))):
        match = PAGEMAP_NAME.match(os.path.basename(path))
        if not match:
            continue
        with open(path, "rb") as f:
            data = f.read()
        found.extend((int(match.group(1)), vaddr, pages) for vaddr, pages in pagemap_lazy_ranges(data))
    return found


# -- the proxy ----------------------------------------------------------------------


def _copy(buffer: bytearray, start: int, end: int) -> bytes:
    """Bytes of C{buffer}, copied once (a slice of a bytearray is another
    bytearray: twice), the view released before the buffer changes."""
    with memoryview(buffer) as view:
        return bytes(view[start:end])


class _Chunk:
    """Pages asked of the source by the prefetch: in flight (C{data} None) or here."""

    __slots__ = ("ident", "start", "pages", "data", "served")

    def __init__(self, ident: int, start: int, pages: int) -> None:
        self.ident = ident
        self.start = start
        self.pages = pages
        self.data: Optional[bytes] = None
        self.served = 0

    @property
    def end(self) -> int:
        return self.start + self.pages * PAGE_SIZE


class _Answer:
    """An answer owed to C{criu lazy-pages}, in the order it asked."""

    __slots__ = ("ident", "vaddr", "pages", "chunk", "payload")

    def __init__(self, ident: int, vaddr: int, pages: int) -> None:
        self.ident = ident
        self.vaddr = vaddr
        self.pages = pages
        #: The prefetch it waits for, if any.
        self.chunk: Optional[_Chunk] = None
        #: The bytes to send, once known.
        self.payload: Optional[bytes] = None


class PrefetchJoint(Joint):
    """A L{Joint} between C{criu lazy-pages} (this transport) and the
    source's page server (the stream) that fetches ahead (see the module).

    C{ranges}: L{lazy_ranges} of the checkpoint.  Until L{start_prefetch}
    it only passes requests on (and their answers back)."""

    def __init__(self, stream, ranges=(), *, chunk_pages: int = CHUNK_PAGES, in_flight: int = IN_FLIGHT,
                 window: int = WINDOW) -> None:
        super().__init__(stream)
        self.chunk_pages = chunk_pages
        self.in_flight_limit = in_flight
        self.window = window
        self._ranges = deque((ident, vaddr, pages) for ident, vaddr, pages in ranges)
        self._prefetching = False
        #: Our requests to the source in its answering order: ("client", _Answer),
        #: ("prefetch", _Chunk) or ("close", None).
        self._sent = deque()
        #: What CRIU asked, in order.
        self._answers = deque()
        self._from_client = b""
        self._from_source = bytearray()
        #: Prefetched chunks by task: their starts sorted, and by start.
        self._starts: Dict[int, List[int]] = {}
        self._chunks: Dict[Tuple[int, int], _Chunk] = {}
        #: The pages CRIU was given, by task (a chunk's pages it got some
        #: other way count as served: the chunk is dropped once all are).
        self._delivered: Dict[int, set] = {}
        self._in_flight = 0
        self._held = 0
        self._failed = False
        #: Figures: pages prefetched, CRIU's requests answered from them, passed on.
        self.prefetched_pages = 0
        self.hits = 0
        self.passed = 0

    # -- CRIU's requests --

    def dataReceived(self, data: bytes) -> None:
        buffer = self._from_client + data if self._from_client else data
        offset = 0
        while len(buffer) - offset >= IOV.size and not self._failed:
            command, pages, vaddr, ident = IOV.unpack_from(buffer, offset)
            offset += IOV.size
            if command == PS_IOV_GET and pages:
                self._asked(ident, vaddr, pages)
            elif command in (PS_IOV_FLUSH, PS_IOV_FLUSH_N_CLOSE):
                # The end: passed on after every request of ours, and
                # answered here at once.  The source's page server corks
                # its socket (TCP_CORK) when it serves lazy pages: its
                # 4-byte status would wait 200 ms for the cork's timer,
                # and the status is always 0 (page-xfer.c); the source's
                # own end follows from the close (see L{guard}).
                self._prefetching = False
                self._ranges.clear()
                self._sent.append(("close", None))
                self.stream.write_raw(buffer[offset - IOV.size:offset])
                status = _Answer(ident, vaddr, 0)
                status.payload = CLOSE_STATUS
                self._answers.append(status)
            else:
                self._fail("unexpected request %#x from criu lazy-pages" % (command,))
        self._from_client = buffer[offset:]
        self._flush_answers()

    def _asked(self, ident: int, vaddr: int, pages: int) -> None:
        answer = _Answer(ident, vaddr, pages)
        self._answers.append(answer)
        chunk, following = self._lookup(ident, vaddr)
        if chunk is not None:
            self.hits += 1
            if chunk.data is None:
                answer.chunk = chunk
            else:
                self._serve(answer, chunk)
            return
        # Not fetched ahead: asked of the source as it is (up to the next
        # chunk, which is or will be here anyway).
        if following is not None:
            answer.pages = min(pages, max(1, (following - vaddr) // PAGE_SIZE))
        self.passed += 1
        self._sent.append(("client", answer))
        self.stream.write_raw(IOV.pack(PS_IOV_GET, answer.pages, vaddr, ident))

    def _lookup(self, ident: int, vaddr: int):
        """The chunk holding C{vaddr}, and the start of the next one."""
        starts = self._starts.get(ident)
        if not starts:
            return None, None
        i = bisect.bisect_right(starts, vaddr)
        following = starts[i] if i < len(starts) else None
        if i:
            chunk = self._chunks[(ident, starts[i - 1])]
            if vaddr < chunk.end:
                return chunk, following
        return None, following

    def _serve(self, answer: _Answer, chunk: _Chunk) -> None:
        """The answer made of the chunk's pages (as many as it holds from there)."""
        first = (answer.vaddr - chunk.start) // PAGE_SIZE
        pages = min(answer.pages, chunk.pages - first)
        data = chunk.data[first * PAGE_SIZE:(first + pages) * PAGE_SIZE]
        answer.payload = IOV.pack(ANSWER_CMD, pages, answer.vaddr, answer.ident) + data
        answer.chunk = None
        self._deliver(answer.ident, answer.vaddr, pages)

    def _deliver(self, ident: int, vaddr: int, pages: int) -> None:
        """Pages given to CRIU: counted served in the chunks holding them."""
        delivered = self._delivered.setdefault(ident, set())
        for page in range(vaddr, vaddr + pages * PAGE_SIZE, PAGE_SIZE):
            if page in delivered:
                continue
            delivered.add(page)
            chunk, _ = self._lookup(ident, page)
            if chunk is not None:
                chunk.served += 1
                if chunk.data is not None and chunk.served >= chunk.pages:
                    self._drop(chunk)

    def _drop(self, chunk: _Chunk) -> None:
        key = (chunk.ident, chunk.start)
        if self._chunks.pop(key, None) is None:
            return
        starts = self._starts[chunk.ident]
        del starts[bisect.bisect_left(starts, chunk.start)]
        self._held -= len(chunk.data or b"")
        self._pump()

    def _flush_answers(self) -> None:
        while self._answers and self._answers[0].payload is not None:
            answer = self._answers.popleft()
            if not self._closed:
                self.transport.write(answer.payload)

    # -- the source's answers --

    def _from_remote(self, data: bytes) -> None:
        if self._failed:
            return
        buffer = self._from_source
        buffer += data
        offset = 0
        while self._sent:
            kind, item = self._sent[0]
            if kind == "close":
                if len(buffer) - offset < 4:
                    break
                # (Already answered.)
                offset += 4
                self._sent.popleft()
                continue
            if len(buffer) - offset < IOV.size:
                break
            _, pages, vaddr, ident = IOV.unpack_from(buffer, offset)
            size = IOV.size + pages * PAGE_SIZE
            if len(buffer) - offset < size:
                break
            self._sent.popleft()
            if kind == "client":
                item.payload = _copy(buffer, offset, offset + size)
                self._deliver(ident, vaddr, pages)
            else:
                self._arrived(item, pages, _copy(buffer, offset + IOV.size, offset + size))
            offset += size
        del buffer[:offset]
        if not self._sent and buffer:
            self._fail("%d bytes from the page server that nobody asked for" % (len(buffer),))
            return
        self._flush_answers()
        self._pump()

    def _arrived(self, chunk: _Chunk, pages: int, data: bytes) -> None:
        self._in_flight -= 1
        if pages < chunk.pages:
            # The page server answers up to the end of one of its runs:
            # the rest is asked again, first.
            rest = chunk.pages - pages
            self._ranges.appendleft((chunk.ident, chunk.start + pages * PAGE_SIZE, rest))
            chunk.pages = pages
        chunk.data = data
        self._held += len(data)
        self.prefetched_pages += pages
        delivered = self._delivered.get(chunk.ident) or ()
        chunk.served = sum(1 for page in range(chunk.start, chunk.end, PAGE_SIZE) if page in delivered)
        for answer in self._answers:
            if answer.chunk is chunk:
                if answer.vaddr < chunk.end:
                    self._serve(answer, chunk)
                else:
                    # Beyond what came: asked of the source as it is.
                    answer.chunk = None
                    self.passed += 1
                    self._sent.append(("client", answer))
                    self.stream.write_raw(IOV.pack(PS_IOV_GET, answer.pages, answer.vaddr, answer.ident))
        if chunk.served >= chunk.pages:
            self._drop(chunk)

    # -- the prefetch --

    def add_ranges(self, ranges) -> None:
        """More lazy ranges (L{lazy_ranges}) to fetch ahead."""
        self._ranges.extend(ranges)

    def start_prefetch(self) -> None:
        """The restore is done: fetch every lazy page ahead from now on."""
        if self._failed or self._closed:
            return
        self._prefetching = True
        self._pump()

    def _pump(self) -> None:
        while (self._prefetching and self._ranges and not self._closed
               and self._in_flight < self.in_flight_limit
               and self._held + self._in_flight * self.chunk_pages * PAGE_SIZE < self.window):
            ident, vaddr, pages = self._ranges.popleft()
            take = min(pages, self.chunk_pages)
            if take < pages:
                self._ranges.appendleft((ident, vaddr + take * PAGE_SIZE, pages - take))
            if (ident, vaddr) in self._chunks:
                continue
            chunk = _Chunk(ident, vaddr, take)
            delivered = self._delivered.get(ident)
            if delivered:
                chunk.served = sum(1 for i in range(take) if vaddr + i * PAGE_SIZE in delivered)
            bisect.insort(self._starts.setdefault(ident, []), vaddr)
            self._chunks[(ident, vaddr)] = chunk
            self._in_flight += 1
            self._sent.append(("prefetch", chunk))
            self.stream.write_raw(IOV.pack(PS_IOV_GET, take, vaddr, ident))

    def _fail(self, why: str) -> None:
        log.warn("page connection given up: {why}", why=why)
        self._failed = True
        self.close()
        self.stream.close()
