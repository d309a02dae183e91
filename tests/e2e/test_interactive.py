"""docker run -it, attach and detach, through a real pseudo-terminal."""

import os

import pytest

from .ptys import PtyProcess
from .test_containers import daemon, remove, state  # noqa: F401  (module fixture)
from .conftest import DOCKER

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")]


@pytest.mark.route("POST", "/containers/{name:.*}/attach")
@pytest.mark.route("POST", "/containers/{name:.*}/resize")
def test_run_it_shell(daemon):
    p = PtyProcess([DOCKER, "run", "--rm", "-it", "busybox", "sh"], daemon.cli_env(), rows=33, cols=77)
    try:
        p.read_until(b"# ")
        p.send(b"echo hi-$((1+1))\r")
        p.read_until(b"hi-2")
        p.send(b"stty size\r")
        p.read_until(b"33 77")
        p.send(b"exit 5\r")
        assert p.wait() == 5
    finally:
        p.kill()


def test_ctrl_c_reaches_the_shell(daemon):
    p = PtyProcess([DOCKER, "run", "--rm", "-it", "busybox", "sh"], daemon.cli_env())
    try:
        p.read_until(b"# ")
        p.send(b"sleep 100\r")
        p.drain(0.5)
        p.send(b"\x03")
        p.send(b"echo after-$((2+3))\r")
        p.read_until(b"after-5", timeout=10)
        p.send(b"exit\r")
        assert p.wait() == 130 or p.proc.returncode in (0, 130)
    finally:
        p.kill()


def test_detach_and_attach_again(daemon):
    remove(daemon, "inter")
    p = PtyProcess([DOCKER, "run", "-it", "--name", "inter", "busybox", "sh"], daemon.cli_env())
    try:
        p.read_until(b"# ")
        p.send(b"echo before\r")
        p.read_until(b"before")
        p.type(b"\x10\x11")  # ctrl-p ctrl-q
        assert p.wait() == 0
        assert state(daemon, "inter")["Running"]
        a = PtyProcess([DOCKER, "attach", "inter"], daemon.cli_env())
        try:
            a.send(b"\r")
            a.read_until(b"# ")
            a.send(b"echo again-$((3*3))\r")
            a.read_until(b"again-9")
            a.type(b"\x10\x11")
            # docker attach reports the detach as an error, as with dockerd.
            assert a.wait() == 1
        finally:
            a.kill()
        assert state(daemon, "inter")["Running"]
    finally:
        p.kill()
        remove(daemon, "inter")
