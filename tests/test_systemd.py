"""systemd's side of the daemon: the readiness notification (sd_notify) sent
only once the listeners listen, the activation variables children must not
inherit, and the C{twistedock} command that runs the same plugin as twistd."""

import importlib.util
import os
import socket
from pathlib import Path

import pytest
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from twistedock import __version__, listeners, systemd, tap
from twistedock.config import DaemonConfig
from twistedock.listeners import Address, ListenerService

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def notify_socket(tmp_path):
    """A fake $NOTIFY_SOCKET: the datagram socket systemd listens on."""
    path = str(tmp_path / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    yield path, receiver
    receiver.close()


def received(receiver) -> list:
    messages = []
    while True:
        try:
            messages.append(receiver.recv(4096).decode("utf-8"))
        except BlockingIOError:
            return messages


class PendingEndpoint:
    """An endpoint whose listen() completes when the test says."""

    def __init__(self) -> None:
        self.result = Deferred()

    def listen(self, factory):
        return self.result


class FakePort:
    def stopListening(self):
        return None


@pytest.fixture
def endpoints(monkeypatch):
    """Every listener gets PendingEndpoints instead of sockets."""
    made = []

    def endpoints_for(reactor, address, config):
        made.append(PendingEndpoint())
        return [made[-1]]

    monkeypatch.setattr(listeners, "endpoints_for", endpoints_for)
    return made


def daemon_tree(reactor, notify_path, count=1):
    """The daemon's shape: listeners, then the readiness service, last."""
    daemon = MultiService()
    services = []
    for n in range(count):
        listener = ListenerService(reactor, Address("fd", fd=3 + n), DaemonConfig(), factory=None)
        listener.setServiceParent(daemon)
        services.append(listener)
    readiness = systemd.ReadinessService(services, notify_path)
    readiness.setServiceParent(daemon)
    return daemon, readiness


def test_ready_only_once_every_listener_listens(notify_socket, endpoints):
    path, receiver = notify_socket
    daemon, readiness = daemon_tree(MemoryReactorClock(), path, count=2)
    daemon.startService()
    assert received(receiver) == []
    endpoints[0].result.callback(FakePort())
    assert received(receiver) == [] and not readiness.ready
    endpoints[1].result.callback(FakePort())
    assert received(receiver) == ["READY=1\nSTATUS=Serving the Engine API"]
    assert readiness.ready
    daemon.stopService()
    assert received(receiver) == ["STOPPING=1"]


def test_no_ready_when_a_listener_fails(notify_socket, endpoints):
    path, receiver = notify_socket
    reactor = MemoryReactorClock()
    daemon, readiness = daemon_tree(reactor, path)
    daemon.startService()
    endpoints[0].result.errback(OSError(98, "Address already in use"))
    assert received(receiver) == []
    assert not readiness.ready
    # The daemon stops, and exits failed.
    assert reactor.whenRunningHooks
    assert reactor.triggers["after"]["shutdown"]
    daemon.stopService()
    assert received(receiver) == []


def test_without_notify_socket_nothing_is_sent(endpoints):
    daemon, readiness = daemon_tree(MemoryReactorClock(), None)
    daemon.startService()
    endpoints[0].result.callback(FakePort())
    assert readiness.ready
    daemon.stopService()


def test_activation_variables_are_cleared_once_listeners_started(endpoints, monkeypatch):
    for name, value in (("LISTEN_PID", "1"), ("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "x")):
        monkeypatch.setenv(name, value)
    daemon, _ = daemon_tree(MemoryReactorClock(), None)
    daemon.startService()
    assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(os.environ)
    daemon.stopService()


def test_take_notify_socket_removes_it():
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "PATH": "/bin"}
    assert systemd.take_notify_socket(environ) == "/run/systemd/notify"
    assert environ == {"PATH": "/bin"}
    assert systemd.take_notify_socket(environ) is None
    assert systemd.take_notify_socket({"NOTIFY_SOCKET": ""}) is None


def test_notify_abstract_address():
    name = "twistedock-test-%d" % os.getpid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        assert systemd.notify("@" + name, "READY=1")
        assert receiver.recv(100) == b"READY=1"


def test_notify_without_listener_says_so(tmp_path):
    assert not systemd.notify(str(tmp_path / "nobody"), "READY=1")


def test_listener_failure_is_logged_with_its_cause(endpoints, monkeypatch):
    reactor = MemoryReactorClock()
    listener = ListenerService(reactor, Address("fd", fd=3), DaemonConfig(), factory=None)
    listener.startService()
    events = []
    monkeypatch.setattr(listeners.log, "critical", lambda fmt, **kw: events.append(kw))
    endpoints[0].result.errback(OSError("no socket"))
    assert events == [{"address": "fd://3", "error": "no socket"}]
    # Handled: what waits on it waits for ever, and no error is left unhandled.
    assert listener.listening.paused
    assert not isinstance(listener.listening.result, Failure)


def test_dropin_and_command_run_the_same_plugin():
    spec = importlib.util.spec_from_file_location(
        "dropin", REPO / "twisted" / "plugins" / "twistedock_dockerd.py"
    )
    dropin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dropin)
    for attribute in ("name", "module", "description", "tapname"):
        assert getattr(dropin.dockerd, attribute) == getattr(tap.DOCKERD, attribute)
    assert tap.DOCKERD.module == "twistedock.tap"


def test_command_version(capsys):
    with pytest.raises(SystemExit) as e:
        tap.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == "twistedock version %s\n" % (__version__,)


def test_command_help_lists_the_daemon_flags(capsys):
    with pytest.raises(SystemExit) as e:
        tap.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: twistedock dockerd [options]")
    assert "--live-restore" in out and "--host=" in out


def test_command_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        tap.main(["--no-such-flag"])
    assert e.value.code == 1
    assert capsys.readouterr().err == (
        "twistedock: option --no-such-flag not recognized\nSee 'twistedock --help'.\n"
    )


def test_command_migrate_is_twistedock_migrate(monkeypatch):
    calls = []
    monkeypatch.setattr("twistedock.migrate.main", lambda argv: calls.append(argv) or 3)
    with pytest.raises(SystemExit) as e:
        tap.main(["migrate", "unix:///a", "unix:///b", "web"])
    assert e.value.code == 3
    assert calls == [["unix:///a", "unix:///b", "web"]]

