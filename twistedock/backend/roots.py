"""
A container's root filesystem held for the time of a copy or an export.

The root is the overlay's merged directory: mounted while the container
runs, mounted here for the time of the work otherwise (the container's lock
makes that decision race-free with a start; a descriptor held on the mount
keeps it usable even when it is detached under us).  The last user
unmounts what was mounted here, unless the container started meanwhile.
"""

import os
from typing import Dict, List

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import deferToThreadPool

from ..deferreds import shield
from ..errors import InternalError
from ..logs import Logger
from .runtime import rootfs
from .rootpath import Scope

log = Logger()


class ContainerRoots:
    """Descriptors of containers' roots, over the container backend's
    public surface (C{overlay}, C{lock}) and the image store's layers."""

    def __init__(self, reactor, containers, images) -> None:
        self.reactor = reactor
        self.containers = containers
        self.images = images
        #: Operations holding each container's root (by container ID).
        self._users: Dict[str, int] = {}
        #: Containers whose root this backend mounted.
        self._mounted: set = set()

    def thread(self, function, *args) -> Deferred:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    def layer_dirs(self, c) -> List[str]:
        return self.containers.layer_dirs(c)

    def merged(self, c) -> str:
        return self.containers.overlay(c)["MergedDir"]

    def acquire(self, c) -> Deferred:
        """A descriptor of the container's root filesystem (mounted for the
        time of the work when the container does not run).  Should the
        caller go away meanwhile, what was acquired is released."""
        self._users[c.id] = self._users.get(c.id, 0) + 1
        d = ensureDeferred(self._acquire_root(c))
        return shield(d, lambda fd: self.release(c, fd))

    async def _acquire_root(self, c) -> int:
        merged = self.containers.overlay(c)["MergedDir"]
        try:
            async with self.containers.lock(c):
                if not await self.thread(rootfs.overlay_mounted, merged):
                    paths = self.containers.overlay(c)
                    await self.thread(
                        rootfs.mount_overlay,
                        self.layer_dirs(c),
                        paths["UpperDir"],
                        paths["WorkDir"],
                        merged,
                    )
                    self._mounted.add(c.id)
                return await self.thread(
                    os.open, merged, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
                )
        except OSError as e:
            self.release(c, -1)
            raise InternalError(str(e))
        except BaseException:
            self.release(c, -1)
            raise

    def release(self, c, fd: int) -> Deferred:
        """Give back what L{acquire} gave; the last user unmounts what this
        backend mounted, unless the container started meanwhile."""
        d = ensureDeferred(self._release_root(c, fd))
        d.addErrback(lambda f: log.failure("releasing the root of {id}", f, id=c.id[:12]))
        return d

    async def _release_root(self, c, fd: int) -> None:
        if fd >= 0:
            os.close(fd)
        count = self._users.get(c.id, 1) - 1
        if count > 0:
            self._users[c.id] = count
            return
        self._users.pop(c.id, None)
        if c.id not in self._mounted:
            return
        async with self.containers.lock(c):
            if self._users.get(c.id) or c.id not in self._mounted:
                return
            self._mounted.discard(c.id)
            if c.state.running and not c.state.restarting:
                return  # started meanwhile: the mount is the container's now
            try:
                await self.thread(rootfs.unmount, self.containers.overlay(c)["MergedDir"])
            except OSError as e:
                log.warn("unmount {id}: {e}", id=c.id[:12], e=e)

    async def in_root(self, c, ref: str, function, *args):
        """C{function(scope, *args)} in a thread, with the container's root;
        the root is given back once the thread is over, whether or not the
        caller still waits."""
        fd = await self.acquire(c)
        try:
            work = self.thread(function, Scope(fd, self.merged(c), ref), *args)
        except BaseException:
            self.release(c, fd)
            raise
        work.addBoth(lambda result: (self.release(c, fd), result)[1])
        return await shield(work)
