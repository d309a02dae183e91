"""Start-up checks (addresses, daemon.json) and a clean SIGTERM shutdown."""

import grp
import os
import re
import signal
import socket
import stat

import pytest

from .conftest import free_port

pytestmark = pytest.mark.e2e

#: twistd re-raises the signal that stopped the reactor once it has shut down.



@pytest.mark.route("GET", "/_ping")
def test_second_daemon_on_the_same_socket(default_daemon, daemons):
    # Same socket as the running daemon, its own data root.
    code, output = daemons.run_to_exit(sock=default_daemon.sock)
    assert code != 0, output
    assert "another daemon is already serving %s" % default_daemon.host in output, output
    # The first one is untouched.
    assert os.path.exists(default_daemon.sock)
    assert default_daemon.request("GET", "/_ping").body == b"OK"


@pytest.mark.route("GET", "/_ping")
@pytest.mark.route("GET", "/version")
def test_stale_socket_file_is_replaced(daemons):
    daemon = daemons.make()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(daemon.sock)
    stale.close()
    assert stat.S_ISSOCK(os.stat(daemon.sock).st_mode)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        probe.connect(daemon.sock)
    probe.close()

    daemon.start()
    assert daemon.request("GET", "/_ping").body == b"OK"
    assert "Server: twistedock" in daemon.docker("version").stdout


def test_socket_file_mode_and_group(daemons):
    """The socket is 0660, owned by the group named by -G (default
    "docker") where it exists, as dockerd makes it; root's group where it
    does not.  (The group is looked up as this daemon starts: another
    test, scripts/install --service, may make or remove it.)"""
    daemon = daemons.make()
    try:
        expected = grp.getgrnam("docker").gr_gid
    except KeyError:
        expected = 0
    daemon.start()
    st = os.stat(daemon.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    assert st.st_gid == expected


def test_socket_group_by_number(daemons):
    """-G takes a group's number as well as its name."""
    daemon = daemons.start("-G", "4242")
    assert os.stat(daemon.sock).st_gid == 4242


def test_tcp_on_all_interfaces_without_tls_is_refused(daemons):
    port = free_port()
    code, output = daemons.run_to_exit("-H", "tcp://0.0.0.0:%d" % port)
    assert code != 0, output
    assert (
        "refusing to serve the API on tcp://0.0.0.0:%d without TLS" % port in output
    ), output


@pytest.mark.route("HEAD", "/_ping")
@pytest.mark.route("GET", "/version")
def test_tcp_on_loopback_without_tls_is_served(daemons):
    port = free_port()
    tcp = "tcp://127.0.0.1:%d" % port
    daemon = daemons.start("-H", tcp)
    daemon.wait_for_log("API listen on %s$" % re.escape(tcp))
    result = daemon.docker("version", host=tcp)
    assert "Server: twistedock" in result.stdout
    # -H on the command line wins over DOCKER_HOST.
    assert "Server: twistedock" in daemon.docker("-H", tcp, "version").stdout


def test_address_in_use_exits_non_zero(daemons):
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        tcp = "tcp://127.0.0.1:%d" % busy.getsockname()[1]
        code, output = daemons.run_to_exit("-H", tcp)
    finally:
        busy.close()
    assert "cannot serve the API on %s" % tcp in output, output
    # dockerd: "failed to load listeners: ... address already in use", exit 1.
    assert code != 0, output


def test_config_file_conflicts_with_flag(daemons):
    code, output = daemons.run_to_exit("--debug", config={"debug": True})
    assert code != 0, output
    assert (
        "the following directives are specified both as a flag and in the configuration "
        "file: debug: (from flag: true, from file: true)" in output
    ), output


def test_config_file_unknown_directive(daemons):
    code, output = daemons.run_to_exit(config={"foo": "bar", "labels": ["a=b"]})
    assert code != 0, output
    assert "the following directives don't match any configuration option: foo" in output, output


@pytest.mark.route("GET", "/info")
def test_config_file_is_read(daemons):
    # The counterpart of the two refusals: a valid file is applied.
    daemon = daemons.start(config={"debug": True, "labels": ["k=v"]})
    info = daemon.info()
    assert info["Debug"] is True
    assert info["Labels"] == ["k=v"]


def test_sigterm_removes_socket(daemons):
    daemon = daemons.start()
    assert os.path.exists(daemon.sock)
    daemon.signal(signal.SIGTERM)
    daemon.wait_exit(10)
    assert not os.path.exists(daemon.sock)
    log = daemon.log_text()
    assert "twistedock stopping" in log, log
    assert "Traceback" not in log, log
    # The engine ID is kept for next time.
    assert os.path.exists(os.path.join(daemon.data_root, "engine-id"))


def test_sigterm_exit_status_is_zero(daemons):
    daemon = daemons.start()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0, daemon.log_text()
