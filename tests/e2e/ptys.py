"""Driving the docker CLI through a pseudo-terminal, as a person at a terminal would."""

import fcntl
import os
import pty
import select
import subprocess
import termios
import time


class PtyProcess:
    def __init__(self, argv, env, rows=24, cols=80):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, bytes([rows, 0, cols, 0, 0, 0, 0, 0]))

        def controlling_tty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=controlling_tty, close_fds=True
        )
        os.close(slave)
        self.output = b""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def type(self, text: bytes, delay: float = 0.05) -> None:
        """One key at a time, as typed (detach keys count only so)."""
        for byte in text:
            os.write(self.master, bytes([byte]))
            time.sleep(delay)

    def read_until(self, needle: bytes, timeout: float = 15.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for %r; got %r" % (needle, self.output))
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    if needle not in self.output:
                        raise AssertionError("EOF waiting for %r; got %r" % (needle, self.output))
                    break
                self.output += chunk
        return self.output

    def drain(self, timeout: float = 1.0) -> None:
        try:
            self.read_until(b"\x00never\x00", timeout)
        except AssertionError:
            pass

    def wait(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.drain(0.2)
        code = self.proc.wait(max(0.1, deadline - time.monotonic()))
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
