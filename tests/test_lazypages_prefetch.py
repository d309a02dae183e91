"""The target's prefetching end of the page connection (lazypages.prefetch),
against a simulated source page server that answers in order as CRIU's does
(up to the end of one of its runs), and a simulated criu lazy-pages."""

import struct

from twistedock.backend.lazypages import prefetch
from twistedock.backend.lazypages.prefetch import (
    ANSWER_CMD, IMG_COMMON_MAGIC, PAGE_SIZE, PAGEMAP_MAGIC, PE_LAZY, PE_PRESENT, PrefetchJoint,
    lazy_ranges, pagemap_lazy_ranges,
)
from twistedock.backend.lazypages.protocol import IOV, PS_IOV_FLUSH, PS_IOV_GET


def varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def entry(vaddr, pages, flags):
    body = b"\x08" + varint(vaddr) + b"\x10" + varint(pages) + b"\x20" + varint(flags)
    return struct.pack("<I", len(body)) + body


def pagemap(entries):
    head = b"\x08\x01"
    return (struct.pack("<II", IMG_COMMON_MAGIC, PAGEMAP_MAGIC) + struct.pack("<I", len(head)) + head
            + b"".join(entry(*e) for e in entries))


def test_pagemap_lazy_entries(tmp_path):
    data = pagemap([(0x400000, 3, PE_PRESENT), (0x7f0000000000, 70000, PE_LAZY), (0x7f1000000000, 2, PE_LAZY)])
    assert pagemap_lazy_ranges(data) == [(0x7f0000000000, 70000), (0x7f1000000000, 2)]
    (tmp_path / "pagemap-1.img").write_bytes(data)
    (tmp_path / "pagemap-shmem-9.img").write_bytes(b"junk")
    assert lazy_ranges(str(tmp_path)) == [(1, 0x7f0000000000, 70000), (1, 0x7f1000000000, 2)]


def page(ident, vaddr):
    return struct.pack("<QQ", ident, vaddr) * (PAGE_SIZE // 16)


class Source:
    """The stream to the source: answers GETs in order, clamped to its runs."""

    def __init__(self, runs):
        self.runs = runs  # (ident, start, pages)
        self.requests = []
        self.joint = None
        self.queue = []
        self.closed = False

    def write_raw(self, data):
        assert len(data) % IOV.size == 0
        for i in range(0, len(data), IOV.size):
            command, pages, vaddr, ident = IOV.unpack_from(data, i)
            self.requests.append((command, ident, vaddr, pages))
            if command == PS_IOV_GET:
                for rid, start, count in self.runs:
                    if rid == ident and start <= vaddr < start + count * PAGE_SIZE:
                        pages = min(pages, (start + count * PAGE_SIZE - vaddr) // PAGE_SIZE)
                        break
                else:
                    raise AssertionError("asked for pages it does not have: %x" % (vaddr,))
                body = b"".join(page(ident, vaddr + n * PAGE_SIZE) for n in range(pages))
                self.queue.append(IOV.pack(ANSWER_CMD, pages, vaddr, ident) + body)
            else:
                self.queue.append(b"\0\0\0\0")

    def deliver(self, count=None, piece=5000):
        """Send queued answers (C{count} of them), in awkward pieces."""
        sent = 0
        while self.queue and (count is None or sent < count):
            data = self.queue.pop(0)
            for i in range(0, len(data), piece):
                self.joint._from_remote(data[i:i + piece])
            sent += 1

    def close(self):
        self.closed = True


class Criu:
    """criu lazy-pages: the transport the joint writes answers to."""

    def __init__(self):
        self.buffer = b""
        self.disconnecting = False

    def write(self, data):
        self.buffer += data

    def answers(self):
        found = []
        while len(self.buffer) >= IOV.size:
            command, pages, vaddr, ident = IOV.unpack_from(self.buffer, 0)
            size = IOV.size + pages * PAGE_SIZE
            assert len(self.buffer) >= size
            found.append((ident, vaddr, pages, self.buffer[IOV.size:size]))
            self.buffer = self.buffer[size:]
        return found

    def loseConnection(self):
        self.disconnecting = True


def joint_for(runs, **kwargs):
    source = Source(runs)
    joint = PrefetchJoint(source, [(i, s, n) for i, s, n in runs], **kwargs)
    source.joint = joint
    joint.transport = Criu()
    return source, joint


def ask(joint, ident, vaddr, pages):
    joint.dataReceived(IOV.pack(PS_IOV_GET, pages, vaddr, ident))


def check(answer):
    ident, vaddr, pages, data = answer
    assert data == b"".join(page(ident, vaddr + n * PAGE_SIZE) for n in range(pages))


def test_passes_requests_on_until_the_restore_is_done():
    source, joint = joint_for([(1, 0x10000, 8)])
    ask(joint, 1, 0x12000, 1)
    assert source.requests == [(PS_IOV_GET, 1, 0x12000, 1)]
    source.deliver()
    [answer] = joint.transport.answers()
    assert answer[:3] == (1, 0x12000, 1)
    check(answer)


def test_prefetch_answers_from_what_came_and_in_order():
    runs = [(1, 0x100000, 10), (1, 0x200000, 3), (7, 0x300000, 5)]
    source, joint = joint_for(runs, chunk_pages=4, in_flight=2)
    joint.start_prefetch()
    # Two in flight, in pieces of 4 pages.
    assert source.requests == [(PS_IOV_GET, 1, 0x100000, 4), (PS_IOV_GET, 1, 0x104000, 4)]
    # CRIU asks for a page in flight, then one nobody fetched yet.
    ask(joint, 1, 0x105000, 8)
    ask(joint, 7, 0x302000, 1)
    assert source.requests[-1] == (PS_IOV_GET, 7, 0x302000, 1)
    source.deliver(1)
    assert joint.transport.answers() == []  # its answer waits for the second chunk
    source.deliver()
    answers = joint.transport.answers()
    # The first: only to the end of the chunk that held it.
    assert [a[:3] for a in answers[:2]] == [(1, 0x105000, 3), (7, 0x302000, 1)]
    for a in answers:
        check(a)
    # Everything prefetched; each of CRIU's requests is answered from it.
    while source.queue:
        source.deliver()
    assert joint.prefetched_pages == 18
    ask(joint, 1, 0x100000, 5)
    ask(joint, 7, 0x300000, 5)
    answers = joint.transport.answers()
    assert [a[:3] for a in answers] == [(1, 0x100000, 4), (7, 0x300000, 4)]
    for a in answers:
        check(a)
    assert joint.passed == 1


def test_short_answers_are_asked_again_and_chunks_dropped_once_served():
    # The source's runs split a pagemap range: the answer comes short.
    source, joint = joint_for([(1, 0x100000, 4), (1, 0x104000, 4)], chunk_pages=8, in_flight=1)
    joint._ranges.clear()
    joint.add_ranges([(1, 0x100000, 8)])
    joint.start_prefetch()
    ask(joint, 1, 0x106000, 1)  # in the chunk in flight, beyond what will come
    source.deliver()
    source.deliver()
    source.deliver()
    answers = joint.transport.answers()
    assert [a[:3] for a in answers] == [(1, 0x106000, 1)]
    check(answers[0])
    assert joint.prefetched_pages == 8
    ask(joint, 1, 0x100000, 4)
    ask(joint, 1, 0x104000, 4)
    answers = joint.transport.answers()
    assert [a[:3] for a in answers] == [(1, 0x100000, 4), (1, 0x104000, 4)]
    # Every page given to CRIU: nothing held.
    assert joint._held == 0 and not joint._chunks


def test_window_bounds_what_is_held():
    source, joint = joint_for([(1, 0x100000, 64)], chunk_pages=4, in_flight=8, window=8 * PAGE_SIZE)
    joint.start_prefetch()
    assert len(source.requests) == 2
    source.deliver()
    assert len(source.requests) == 2  # two chunks held, none asked
    ask(joint, 1, 0x100000, 4)
    assert len(source.requests) == 3
    source.deliver()
    ask(joint, 1, 0x104000, 8)
    assert [a[:3] for a in joint.transport.answers()] == [(1, 0x100000, 4), (1, 0x104000, 4)]


def test_the_close_goes_after_the_prefetches_and_is_answered_at_once():
    # (The source corks its socket: its status would wait 200 ms.)
    source, joint = joint_for([(1, 0x100000, 16)], chunk_pages=4, in_flight=2)
    joint.start_prefetch()
    joint.dataReceived(IOV.pack(PS_IOV_FLUSH, 0, 0, 0))
    assert source.requests[-1][0] == PS_IOV_FLUSH
    assert len(source.requests) == 3  # no prefetch after the close
    assert joint.transport.buffer == b"\0\0\0\0"
    source.deliver()  # the prefetches' answers and the source's status: dropped
    assert joint.transport.buffer == b"\0\0\0\0"
    assert not source.closed


def test_the_close_waits_for_answers_owed():
    source, joint = joint_for([(1, 0x100000, 4)])
    ask(joint, 1, 0x100000, 1)
    joint.dataReceived(IOV.pack(PS_IOV_FLUSH, 0, 0, 0))
    assert joint.transport.buffer == b""
    source.deliver()
    [answer] = joint.transport.answers()
    check(answer)
    assert joint.transport.buffer == b"\0\0\0\0"


def test_unasked_bytes_from_the_source_end_the_connection():
    source, joint = joint_for([(1, 0x100000, 4)])
    joint._from_remote(b"x" * 30)
    assert source.closed and joint.transport.disconnecting


def test_default_sizes():
    ahead = prefetch.CHUNK_PAGES * PAGE_SIZE * prefetch.IN_FLIGHT
    assert ahead <= prefetch.WINDOW
    # A fault's request waits behind the prefetches in flight: at most 1 MiB.
    assert ahead <= 1024 * 1024
