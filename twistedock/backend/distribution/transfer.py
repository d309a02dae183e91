"""
What a pull and a push share: the image store and the registry service they
work for, the image store's downloads directory (blobs in transit; the kept
blobs, L{blobs}, beside it), file work in the reactor's thread pool, and the
few helpers both call.
"""

import os
import time
from typing import Callable, Iterable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from . import blobs
from .client import RegistryService

#: Seconds an interrupted pull's downloads (verified blobs, C{.partial}
#: files) are kept for it to be tried again; older ones go at start-up.
DOWNLOADS_KEPT = 24 * 3600

#: How a pull or a push tells its progress: one JSON message at a time.
Emit = Callable[[dict], None]


class Transfer:
    def __init__(self, reactor, store, service: RegistryService, downloads: str) -> None:
        self.reactor = reactor
        self.store = store
        self.service = service
        self.downloads = downloads
        self.blobs = os.path.join(os.path.dirname(downloads), blobs.BLOBS_DIR)

    def _thread(self, function, *args) -> Deferred:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)


def unlink_all(paths: Iterable[str]) -> None:
    """Remove the files C{paths}, those already gone too.  Blocks."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def sweep_downloads(directory: str, now: Optional[float] = None, kept: float = DOWNLOADS_KEPT) -> None:
    """At start (no transfer under way): temporary files go, and what an
    interrupted pull left (verified blobs, C{.partial} downloads) once it
    has not been touched for C{kept} seconds.  Blocks."""
    now = time.time() if now is None else now
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            if name.startswith(".tmp-") or now - os.lstat(path).st_mtime > kept:
                os.unlink(path)
        except OSError:
            pass
