"""The daemon under systemd, as twistedock.service runs it: the API socket
passed in by socket activation (C{-H fd://}), and readiness told to
C{$NOTIFY_SOCKET} only once the API answers.  systemd itself does not run
here: C{systemd-socket-activate} passes the socket as systemd does, and a
datagram socket of the test's stands in for systemd's notification socket."""

import io
import os
import shutil
import socket
import subprocess
import tarfile
import time

import pytest

from .conftest import REPO_ROOT, START_TIMEOUT, unix_request

pytestmark = pytest.mark.e2e


def socket_activate() -> str:
    found = shutil.which("systemd-socket-activate")
    assert found, "systemd-socket-activate is missing: scripts/install --test installs systemd's tools"
    return found


@pytest.fixture
def notify_socket(daemons):
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    path = str(daemons.workdir("n") / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(START_TIMEOUT)
    yield path, receiver
    receiver.close()


def activated(daemons, *extra_env: str):
    """A daemon started as systemd starts twistedock.service: its socket made
    by systemd-socket-activate, which execs the daemon (same pid) on the
    first connection."""
    daemon = daemons.make()
    command = daemon.command()
    command[command.index("-H") + 1] = "fd://"
    env = ["-E", "PATH", "-E", "PYTHONPATH=%s" % REPO_ROOT]
    for variable in extra_env:
        env += ["-E", variable]
    log = open(daemon.log_path, "ab")
    try:
        daemon.proc = subprocess.Popen(
            [socket_activate(), "-l", daemon.sock] + env + command,
            cwd=str(daemon.dir), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    finally:
        log.close()
    # Listening before the daemon runs, as systemd's socket unit.
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(daemon.sock):
        assert daemon.proc.poll() is None, daemon.log_text()
        assert time.monotonic() < deadline, "systemd-socket-activate made no socket"
        time.sleep(0.02)
    return daemon


@pytest.mark.route("GET", "/_ping")
@pytest.mark.route("GET", "/version")
def test_first_connection_starts_the_daemon_on_the_passed_socket(daemons):
    daemon = activated(daemons)
    # The daemon starts on this first connection and answers it.
    resp = unix_request(daemon.sock, "GET", "/_ping", timeout=START_TIMEOUT)
    assert (resp.status, resp.body) == (200, b"OK"), daemon.log_text()
    assert "API listen on fd://" in daemon.log_text()
    assert daemon.docker_json("version", format="{{json .Server.APIVersion}}")


@pytest.mark.route("GET", "/_ping")
def test_ready_is_told_once_the_api_answers(daemons, notify_socket, monkeypatch):
    path, receiver = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    daemon = daemons.make()
    daemon.spawn()
    message = receiver.recv(4096)
    assert message == b"READY=1\nSTATUS=Serving the Engine API", daemon.log_text()
    # Ready means answering: one try, no retry.
    assert unix_request(daemon.sock, "GET", "/_ping").body == b"OK"
    assert daemon.stop() == 0
    assert receiver.recv(4096) == b"STOPPING=1"


@pytest.mark.route("GET", "/_ping")
def test_socket_activation_with_readiness(daemons, notify_socket):
    path, receiver = notify_socket
    daemon = activated(daemons, "NOTIFY_SOCKET=%s" % path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as first:
        first.connect(daemon.sock)  # starts it
        assert receiver.recv(4096).startswith(b"READY=1\n"), daemon.log_text()
        first.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        first.settimeout(START_TIMEOUT)
        assert first.recv(4096).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.route("POST", "/containers/create")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("POST", "/containers/{name:.*}/wait")
def test_containers_run_under_a_notifying_daemon(daemons, notify_socket, monkeypatch, tmp_path):
    """runc acts on NOTIFY_SOCKET (it would wait for the container to say
    READY): the daemon must not pass systemd's on to runc and conmon."""
    path, receiver = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    daemon = daemons.make()
    daemon.spawn()
    assert receiver.recv(4096).startswith(b"READY=1\n"), daemon.log_text()
    image = io.BytesIO()
    with tarfile.open(fileobj=image, mode="w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    tar_path = tmp_path / "busybox.tar"
    tar_path.write_bytes(image.getvalue())
    daemon.docker("import", str(tar_path), "notify-test:latest")
    result = daemon.docker(
        "run", "--rm", "--network", "none", "notify-test:latest", "/bin/sh", "-c",
        'echo "[${NOTIFY_SOCKET-unset}]"', timeout=60,
    )
    assert result.stdout == "[unset]\n"


def test_fd_without_passed_sockets_stops_the_daemon(daemons):
    """Started by hand with -H fd://: it says why and exits, it does not hang."""
    code, output = daemons.run_to_exit("-H", "fd://")
    assert code == 1, output
    assert (
        "cannot serve the API on fd://: no sockets found via socket activation: "
        "make sure the service was started by systemd" in output
    ), output
