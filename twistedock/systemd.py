"""
The daemon's side of systemd, as dockerd's: the readiness protocol of a
C{Type=notify} unit (sd_notify: one datagram to the unix socket named by
C{$NOTIFY_SOCKET}), sent once every listener serves, and the socket
activation variables cleared once the listeners took their sockets, so that
runc and conmon inherit neither (runc would act on C{NOTIFY_SOCKET}).
"""

import os
import socket
from typing import Iterable, Optional

from twisted.application.service import Service
from twisted.internet.defer import gatherResults

from .logs import Logger

log = Logger()

ACTIVATION_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def booted(run_dir: str = "/run/systemd/system") -> bool:
    """sd_booted(3): whether systemd is the init system (runc's systemd
    cgroup driver needs it, reached on D-Bus)."""
    return os.path.isdir(run_dir)


def take_notify_socket(environ=os.environ) -> Optional[str]:
    """C{$NOTIFY_SOCKET}, removed from C{environ}: set when systemd started
    this process for a C{Type=notify} unit."""
    return environ.pop("NOTIFY_SOCKET", None) or None


def notify(address: str, message: str) -> bool:
    """Send C{message} (C{"READY=1"}, ...) to systemd's socket at C{address}
    (a path, or C{@name} in the abstract namespace); whether it went."""
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            # A datagram to a local socket: never waits, at worst it fails.
            s.setblocking(False)
            s.sendto(message.encode("utf-8"), address)
        return True
    except OSError as e:
        log.warn("could not notify systemd ({message}): {error}", message=message, error=e)
        return False


class ReadinessService(Service):
    """Tells systemd C{READY=1} once every listener serves and C{STOPPING=1}
    when the daemon begins to stop.  Started after the listeners (it is the
    daemon's last child), so their C{listening} Deferreds exist."""

    name = "systemd-notify"

    def __init__(self, listeners: Iterable, notify_socket: Optional[str]) -> None:
        self.listeners = list(listeners)
        self.notify_socket = notify_socket
        self.ready = False

    def startService(self) -> None:
        Service.startService(self)
        for variable in ACTIVATION_VARIABLES:
            os.environ.pop(variable, None)
        gatherResults([listener.listening for listener in self.listeners]).addCallback(
            self._listening
        )

    def _listening(self, _) -> None:
        if not self.running:
            return
        self.ready = True
        if self.notify_socket:
            notify(self.notify_socket, "READY=1\nSTATUS=Serving the Engine API")

    def stopService(self):
        Service.stopService(self)
        if self.ready and self.notify_socket:
            notify(self.notify_socket, "STOPPING=1")
        self.ready = False
