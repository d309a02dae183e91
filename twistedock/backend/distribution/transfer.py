"""
What a pull and a push share: the image store and the registry service they
work for, the image store's downloads directory (blobs in transit; the kept
blobs, L{blobs}, beside it), file work in the reactor's thread pool, and the
few helpers both call.
"""

import os
from typing import Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from . import blobs
from .client import RegistryService

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
