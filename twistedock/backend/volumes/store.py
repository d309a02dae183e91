"""
L{VolumeStore}: the volumes of the local driver, as moby's volume service
and store keep them: created (named, or anonymous with a random name),
listed with filters, removed unless a container references them, pruned,
and mounted for containers with a count of mounts per volume (a volume with
C{type}/C{device} options is mounted by mount(8) on its first mount and
unmounted after its last).

References are the containers that use a volume (whatever their state): the
container backend adds them at create and at load, and releases them when a
container goes.
"""

import os
from typing import Dict, List, Optional, Set, Tuple

from twisted.internet.defer import DeferredLock
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ...errors import Conflict, InternalError, InvalidParameter, NotFound
from ...filters import Filters
from ...logs import Logger
from ...routers.volume import IVolumeBackend
from ..runtime import rootfs
from ..runtime.processes import Collect
from ..system import IInventory
from . import local
from .local import ANONYMOUS_LABEL, DRIVER, Volume

log = Logger()

LIST_FILTERS = ("dangling", "name", "driver", "label")
PRUNE_FILTERS = ("label", "label!", "all")


@implementer(IVolumeBackend, IInventory)
class VolumeStore:
    """The local driver's volumes under C{<data-root>/volumes}."""

    def __init__(self, reactor, data_root: str, events, mount_command: str = "mount",
                 umount_command: str = "umount") -> None:
        self.reactor = reactor
        self.events = events
        self.directory = os.path.join(data_root, "volumes")
        self.mount_command = mount_command
        self.umount_command = umount_command
        self.volumes: Dict[str, Volume] = {}
        #: The containers that use each volume.
        self.references: Dict[str, Set[str]] = {}
        #: The mounts of each volume (by mount reference) and whether it is mounted.
        self._mounts: Dict[str, Set[str]] = {}
        self._mounted: Set[str] = set()
        self._lock = DeferredLock()
        self._pruning = False

    def thread(self, function, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    async def load(self) -> None:
        """Find the volumes on disk, and which are still mounted (a daemon
        killed with containers running on them)."""
        for volume in await self.thread(local.load_all, self.directory):
            self.volumes[volume.name] = volume
            if volume.needs_mount and await self.thread(rootfs.is_mounted, volume.path):
                self._mounted.add(volume.name)

    # -- lookups ---------------------------------------------------------------

    def volume(self, name: str) -> Volume:
        """The volume of that name (NotFound in the words of an operation "get")."""
        try:
            return self.volumes[name]
        except KeyError:
            raise NotFound("get %s: no such volume" % (name,))

    def ref_count(self, name: str) -> int:
        return len(self.references.get(name, ()))

    # -- IVolumeBackend --------------------------------------------------------

    async def create(self, name: str, driver: str, driver_opts=None, labels=None, ref: str = "") -> dict:
        volume = await self.create_volume(name, driver, driver_opts, labels, ref)
        return volume.to_api()

    async def create_volume(self, name: str, driver: str, driver_opts=None, labels=None,
                            ref: str = "") -> Volume:
        """Create the volume, or find the one of that name (its options and
        labels as they were: dockerd's local driver ignores the new ones);
        C{ref}, a container, then references it."""
        labels = dict(labels) if labels else None
        if not name:
            name = os.urandom(32).hex()
            labels = dict(labels or {}, **{ANONYMOUS_LABEL: ""})
        if driver and driver != DRIVER:
            raise NotFound(
                'create %s: error looking up volume plugin %s: plugin "%s" not found'
                % (name, driver, driver)
            )
        await self._lock.acquire()
        try:
            volume = self.volumes.get(name)
            if volume is None:
                try:
                    local.validate_name(name)
                    local.validate_opts(driver_opts)
                except InvalidParameter as e:
                    raise InvalidParameter("create %s: %s" % (name, e.message))
                volume = Volume(name=name, root=os.path.join(self.directory, name), labels=labels,
                                options=dict(driver_opts) if driver_opts else None)
                try:
                    await self.thread(volume.write)
                except OSError as e:
                    raise InternalError("create %s: %s" % (name, e))
                self.volumes[name] = volume
                self.events.log("volume", "create", name, {"driver": DRIVER})
            if ref:
                self.references.setdefault(name, set()).add(ref)
            return volume
        finally:
            self._lock.release()

    async def get(self, name: str) -> dict:
        return self.volume(name).to_api()

    async def list(self, filters: Filters) -> Tuple[List[dict], Optional[List[str]]]:
        filters.validate(LIST_FILTERS)
        return [v.to_api() for v in self._find(filters)], None

    def _find(self, filters: Filters) -> List[Volume]:
        dangling = None
        if filters.contains("dangling"):
            dangling = filters.get_bool_or_default("dangling", False)
        found = []
        for volume in self.volumes.values():
            if filters.get("driver") and DRIVER not in filters.get("driver"):
                continue
            if filters.contains("name") and not filters.match("name", volume.name):
                continue
            if not filters.match_kv_list("label", volume.labels):
                continue
            if filters.contains("label!") and filters.match_kv_list("label!", volume.labels):
                continue
            if dangling is not None and dangling == bool(self.ref_count(volume.name)):
                continue
            found.append(volume)
        return found

    async def remove(self, name: str, force: bool = False) -> None:
        """Remove the volume; with C{force} a volume that does not exist is
        no error.  One in use is refused (409) whatever C{force} says."""
        volume = self.volumes.get(name)
        if volume is None:
            if force:
                return
            raise NotFound("get %s: no such volume" % (name,))
        await self._remove(volume)

    async def _remove(self, volume: Volume) -> None:
        await self._lock.acquire()
        try:
            if self.volumes.get(volume.name) is not volume:
                return
            refs = sorted(self.references.get(volume.name, ()))
            if refs:
                raise Conflict(
                    "remove %s: volume is in use - [%s]" % (volume.name, ", ".join(refs))
                )
            if self._mounts.get(volume.name):
                raise InternalError("remove %s: volume has active mounts" % (volume.name,))
            if volume.name in self._mounted:
                # Mounted by a daemon that died meanwhile, used by no one now.
                await self._run([self.umount_command, volume.path], "remove " + volume.name + ": %s")
                self._mounted.discard(volume.name)
            try:
                await self.thread(volume.remove)
            except OSError as e:
                raise InternalError(
                    "remove %s: error removing volume path '%s': %s" % (volume.name, volume.root, e)
                )
            del self.volumes[volume.name]
            self.references.pop(volume.name, None)
            self.events.log("volume", "destroy", volume.name, {"driver": DRIVER})
        finally:
            self._lock.release()

    async def prune(self, filters: Filters) -> dict:
        """Unused local volumes without options; only anonymous ones unless
        the filter C{all} is true (the router adds it below API 1.42)."""
        if self._pruning:
            raise Conflict("a prune operation is already running")
        self._pruning = True
        try:
            everything = filters.get("all")
            if len(everything) > 1:
                raise InvalidParameter(
                    "invalid filter 'all=[%s]': only one value is expected" % " ".join(sorted(everything))
                )
            filters.validate(PRUNE_FILTERS)
            wanted = Filters({k: v for k, v in filters.fields.items() if k != "all"})
            if not everything or not _parse_bool(next(iter(everything))):
                wanted.fields.setdefault("label", set()).add(ANONYMOUS_LABEL)
            deleted, reclaimed = [], 0
            for volume in self._find(wanted):
                if self.ref_count(volume.name) or volume.options:
                    continue
                size = await self.thread(rootfs.directory_size, volume.path)
                try:
                    await self._remove(volume)
                except Exception as e:
                    log.warn("could not remove volume {name}: {e}", name=volume.name, e=e)
                    continue
                reclaimed += size
                deleted.append(volume.name)
            self.events.log("volume", "prune", "", {"reclaimed": str(reclaimed)})
            return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}
        finally:
            self._pruning = False

    # -- IInventory --------------------------------------------------------------

    def counts(self) -> dict:
        return {}

    async def disk_usage(self, types) -> dict:
        """/system/df: the local volumes without options, their size and
        how many containers use them."""
        if "volume" not in types:
            return {}
        listed = []
        for volume in list(self.volumes.values()):
            if volume.options:
                continue
            size = await self.thread(_size_or_unknown, volume.path)
            doc = volume.to_api()
            doc["UsageData"] = {"RefCount": self.ref_count(volume.name), "Size": size}
            listed.append(doc)
        return {"Volumes": listed}

    # -- what containers use ------------------------------------------------------

    def reference(self, name: str, ref: str) -> None:
        """C{ref} (a container) uses the volume: it cannot be removed."""
        self.references.setdefault(name, set()).add(ref)

    def release(self, name: str, ref: str) -> None:
        refs = self.references.get(name)
        if refs is not None:
            refs.discard(ref)
            if not refs:
                del self.references[name]

    async def mount(self, name: str, ref: str) -> str:
        """The volume's directory, mounted first if it has mount options and
        is not mounted yet; C{ref} names this mount for L{unmount}."""
        volume = self.volume(name)
        await self._lock.acquire()
        try:
            if volume.needs_mount and name not in self._mounted:
                await self._run_mount(volume)
                self._mounted.add(name)
            self._mounts.setdefault(name, set()).add(ref)
        finally:
            self._lock.release()
        return volume.path

    def adopt_mount(self, name: str, ref: str) -> None:
        """A mount made before the daemon restarted (a running container)."""
        if name in self.volumes:
            self._mounts.setdefault(name, set()).add(ref)

    async def unmount(self, name: str, ref: str) -> bool:
        """Give back the mount C{ref}; the last one unmounts what was mounted.
        False when C{ref} held no mount of it (given back already)."""
        volume = self.volumes.get(name)
        if volume is None:
            return False
        await self._lock.acquire()
        try:
            mounts = self._mounts.get(name, set())
            if ref not in mounts:
                return False
            mounts.discard(ref)
            if mounts:
                return True
            self._mounts.pop(name, None)
            if name in self._mounted:
                await self._run(
                    [self.umount_command, volume.path], "failed to unmount local volume: %s"
                )
                self._mounted.discard(name)
            return True
        finally:
            self._lock.release()

    async def _run_mount(self, volume: Volume) -> None:
        argv = local.mount_argv(volume.options or {}, volume.path)
        argv[0] = self.mount_command
        opts = volume.options or {}
        await self._run(
            argv,
            "failed to mount local volume: mount %s:%s, data: %s: %%s"
            % (opts.get("device", ""), volume.path, opts.get("o", "")),
        )

    async def _run(self, argv: List[str], message: str) -> None:
        collect = Collect(None)
        try:
            self.reactor.spawnProcess(collect, argv[0], argv, env=dict(os.environ))
        except OSError as e:
            raise InternalError(message % (e.strerror or e,))
        out, err, code = await collect.done
        if code != 0:
            text = (err or out).decode("utf-8", "replace").strip()
            raise InternalError(message % (text or "exit status %d" % code,))


def _parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool, refused as dockerd refuses it."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise InvalidParameter('invalid filter \'all\': strconv.ParseBool: parsing "%s": invalid syntax' % text)


def _size_or_unknown(path: str) -> int:
    if not os.path.isdir(path):
        return -1
    return rootfs.directory_size(path)
