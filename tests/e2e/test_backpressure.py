"""A fast producer and a slow reader: the daemon neither buffers without
bound nor stops answering others (a check, not a benchmark)."""

import os
import socket
import threading
import time

import pytest

from .test_containers import daemon, remove, state  # noqa: F401  (module fixture)
from .conftest import unix_request

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")]

PRODUCE = 200 * 1000 * 1000


def rss(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


#: What the slow reader takes at least, however loaded the machine.
FLOWED = 1000000


def slow_read(sock, seconds: float, per_read: int = 65536, pause: float = 0.01, limit: float = 60.0) -> int:
    """Read slowly for C{seconds}, and on until FLOWED bytes came (within
    C{limit}: how fast it flows is for benchmarks/, not a test)."""
    got = 0
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= limit or (elapsed >= seconds and got > FLOWED):
            break
        chunk = sock.recv(per_read)
        if not chunk:
            break
        got += len(chunk)
        time.sleep(pause)
    return got


def pings(daemon, stop: threading.Event, out: list) -> None:
    """Ping until told to stop: each answer (or what went wrong) in C{out}."""
    while not stop.is_set():
        try:
            out.append(unix_request(daemon.sock, "GET", "/_ping", timeout=5).status)
        except Exception as e:
            out.append(e)
            return
        time.sleep(0.05)


def check_while_streaming(daemon, sock) -> None:
    base = rss(daemon.proc.pid)
    stop, answers = threading.Event(), []
    pinger = threading.Thread(target=pings, args=(daemon, stop, answers))
    pinger.start()
    try:
        got = slow_read(sock, 4.0)
        peak = rss(daemon.proc.pid)
    finally:
        stop.set()
        pinger.join(10)
    assert got > FLOWED  # it flowed
    assert got < PRODUCE  # and the reader was slower than the producer
    # Others are answered while the stream is still in flight (how fast is
    # for benchmarks/, not a test): several pings, every one a 200.
    assert len(answers) >= 2 and set(answers) == {200}, answers
    # Without backpressure the daemon holds what the reader did not take
    # (seen: 60 MB more in these 4 s); with it, a few buffers at most.
    assert peak - base < 24 * 1024 * 1024, (base, peak)


def test_attach_to_a_fast_producer(daemon):
    remove(daemon, "fast")
    daemon.docker("create", "--name", "fast", "busybox", "sh", "-c", "yes | head -c %d" % PRODUCE)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(daemon.sock)
    try:
        sock.sendall(
            b"POST /v1.51/containers/fast/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
            b"Host: d\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        daemon.docker("start", "fast")
        check_while_streaming(daemon, sock)
    finally:
        sock.close()
        remove(daemon, "fast")


def test_logs_of_a_large_log(daemon):
    remove(daemon, "biglog")
    daemon.docker("run", "--name", "biglog", "busybox", "sh", "-c", "yes | head -c %d" % (PRODUCE // 4), timeout=120)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(daemon.sock)
    try:
        sock.sendall(b"GET /v1.51/containers/biglog/logs?stdout=1 HTTP/1.1\r\nHost: d\r\n\r\n")
        check_while_streaming(daemon, sock)
    finally:
        sock.close()
        remove(daemon, "biglog")
