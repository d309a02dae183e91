"""
What the daemons see of CRIU's page-server protocol: the lazy-pages client
(the target) sends fixed-size requests, C{struct page_server_iov} (u32 cmd,
u32 nr_pages, u64 vaddr, u64 dst_id, little-endian), and ends with
C{PS_IOV_FLUSH} (or C{PS_IOV_FLUSH_N_CLOSE}) once it has every page.  A
connection that ends before that has not copied the process.
"""

import struct

IOV = struct.Struct("<IIQQ")
PS_IOV_GET = 7
PS_IOV_FLUSH = 0x1023
PS_IOV_FLUSH_N_CLOSE = 0x1024


class RequestWatcher:
    """Fed the client's bytes in any pieces; C{complete} once the client
    said it has all the pages it needs."""

    def __init__(self) -> None:
        self._buffer = b""
        self.requests = 0
        self.complete = False

    def feed(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        offset, size = 0, len(buffer)
        while size - offset >= IOV.size:
            command = IOV.unpack_from(buffer, offset)[0]
            offset += IOV.size
            if command in (PS_IOV_FLUSH, PS_IOV_FLUSH_N_CLOSE):
                self.complete = True
            else:
                self.requests += 1
        self._buffer = buffer[offset:]
