"""Exit codes as conmon writes them, awaited through inotify."""

import os
from typing import Dict, List, Optional

from twisted.internet import inotify
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from .interfaces import IExitWatcher
from .processes import read_int


@implementer(IExitWatcher)
class ExitWatcher:
    """Exit codes as conmon writes them to C{EXIT_DIR/ID}, through inotify.

    L{wait} fires with the code at once when the file is already there,
    else as soon as conmon writes it.
    """

    MASK = inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO

    def __init__(self, reactor, exit_dir: str) -> None:
        self.reactor = reactor
        self.exit_dir = os.path.abspath(exit_dir)
        self._notifier: Optional[inotify.INotify] = None
        self._waiters: Dict[str, List[Deferred]] = {}

    @property
    def running(self) -> bool:
        return self._notifier is not None

    def start(self) -> None:
        if self._notifier is not None:
            return
        os.makedirs(self.exit_dir, mode=0o711, exist_ok=True)
        notifier = inotify.INotify(reactor=self.reactor)
        notifier.startReading()
        notifier.watch(FilePath(self.exit_dir), mask=self.MASK, callbacks=[self._changed])
        self._notifier = notifier
        # Whatever was written while nobody watched.
        self.rescan()

    def stop(self) -> None:
        """Stop watching; pending waiters fail with L{CancelledError}."""
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.loseConnection()
        waiters, self._waiters = self._waiters, {}
        for ds in waiters.values():
            for d in ds:
                if not d.called:
                    d.errback(Failure(CancelledError("exit watcher stopped")))

    def wait(self, container_id: str) -> Deferred:
        """A Deferred firing with the container's exit code.  Cancelling it
        only forgets this waiter."""
        if self._notifier is None:
            self.start()
        code = read_int(os.path.join(self.exit_dir, container_id))
        if code is not None:
            return succeed(code)

        def cancel(d: Deferred) -> None:
            waiters = self._waiters.get(container_id, [])
            if d in waiters:
                waiters.remove(d)
            if not waiters:
                self._waiters.pop(container_id, None)

        d = Deferred(cancel)
        self._waiters.setdefault(container_id, []).append(d)
        return d

    def waiting(self, container_id: str) -> int:
        """How many waiters the container has."""
        return len(self._waiters.get(container_id, ()))

    def rescan(self) -> None:
        """Fire the waiters whose exit file exists (inotify loses events
        only when its queue overflows; call this then, or after a pause)."""
        for container_id in list(self._waiters):
            self._check(container_id)

    def _changed(self, _watch, path: FilePath, mask: int) -> None:
        name = path.basename()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "surrogateescape")
        if name in self._waiters:
            self._check(name)

    def _check(self, container_id: str) -> None:
        code = read_int(os.path.join(self.exit_dir, container_id))
        if code is None:
            return
        for d in self._waiters.pop(container_id, []):
            if not d.called:
                d.callback(code)
