"""GET /containers/{id}/attach/ws: attach over a websocket."""

import base64
import os
import socket
import struct

import pytest

from .test_containers import daemon, remove, state  # noqa: F401  (module fixture)
from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")]


class WebSocketClient:
    """Just enough RFC 6455 for a test: handshake, masked frames out,
    unmasked frames in."""

    def __init__(self, sock_path: str, target: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(sock_path)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost\r\n\r\n"
                % (target, key)
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self):
        """(opcode, payload) of the next frame."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(8))[0]
        return first & 0x0F, self._read(length)

    def send(self, data: bytes, opcode: int = 2) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        else:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def messages_until_close(self):
        out = []
        while True:
            opcode, payload = self.receive()
            if opcode == 8:
                return out
            out.append((opcode, payload))


@pytest.mark.route("GET", "/containers/{name:.*}/attach/ws")
def test_ws_attach_stdin_and_output(daemon):
    remove(daemon, "wsc")
    daemon.docker("create", "-i", "--name", "wsc", "busybox", "sh", "-c", "read line; echo got-$line; echo err >&2")
    try:
        ws = WebSocketClient(daemon.sock, "/v1.51/containers/wsc/attach/ws?stream=1&stdin=1&stdout=1&stderr=1")
        assert ws.status == 101
        daemon.docker("start", "wsc")
        ws.send(b"hello\n")
        messages = ws.messages_until_close()
        # Binary frames, not multiplexed: stdout and stderr as they come.
        assert all(opcode == 2 for opcode, _ in messages)
        assert b"".join(p for _, p in messages) in (b"got-hello\nerr\n", b"err\ngot-hello\n")
        wait_for(lambda: not state(daemon, "wsc")["Running"], 10, what="exit")
    finally:
        remove(daemon, "wsc")


def test_ws_attach_logs_replay_and_text_frames_before_1_28(daemon):
    remove(daemon, "wsl")
    daemon.docker("run", "--name", "wsl", "busybox", "echo", "logged")
    try:
        ws = WebSocketClient(daemon.sock, "/v1.27/containers/wsl/attach/ws?logs=1&stream=0")
        assert ws.status == 101
        messages = ws.messages_until_close()
        assert messages == [(1, b"logged\n")]
    finally:
        remove(daemon, "wsl")
