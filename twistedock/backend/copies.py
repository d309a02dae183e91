"""
The copy backend: what `docker cp`, `docker export` and `docker diff` ask
of a container's filesystem, as dockerd answers; `docker commit` is
L{twistedock.backend.commit}'s.

Safety first.  Every path a client names is resolved inside the
container's root (L{twistedock.backend.rootpath}); extraction goes through
L{twistedock.tar.extract}, which resolves the same way and refuses a tar
with an entry or a hard link that would land outside the target directory
whole (400) before anything is written.  Nothing of the container is ever
executed or loaded (CVE-2019-14271).

The root is held (mounted if need be) by L{ContainerRoots}; changes and
commit read the upper directory and the image's layers directly.  Tars are
written in a thread and handed to the request chunk by chunk with
backpressure (L{TarStream}).
"""

import io
import os
from contextlib import asynccontextmanager
from typing import Callable, Dict, List, Optional, Tuple

from twisted.internet.defer import ensureDeferred
from zope.interface import implementer

from .. import golang
from ..deferreds import shield
from ..errors import Forbidden, InternalError, InvalidParameter, NotFound
from ..routers.container import CreateImageConfig, ICopyBackend
from ..tar.extract import OverwriteConflict, extract_into
from ..tar.layer import changes_of
from ..tar.read import ArchiveError, BreakoutError
from ..tar.stream import TarStream
from ..tar.write import TarWriter, write_export
from .commit import ContainerCommitter
from .rootpath import Scope, Target, container_path, open_dir
from .roots import ContainerRoots
from .spec.validate import validate_decoded

#: The files of the container's directory the daemon mounts on /etc.
MOUNTED_FILES = ("hostname", "hosts", "resolv.conf")


@implementer(ICopyBackend)
class CopyBackend:
    """Archives, export, changes and commit over the container backend's
    containers and the image store."""

    def __init__(self, reactor, containers, images, volumes=None) -> None:
        """C{volumes}: the L{VolumeStore} that mounts a volume a path of
        the container is in (None: paths are the root's only)."""
        self.reactor = reactor
        self.containers = containers
        self.images = images
        self.volumes = volumes
        self.roots = ContainerRoots(reactor, containers, images)
        self._committer = ContainerCommitter(reactor, containers, images)

    def _container(self, ref: str):
        if not ref:
            raise InvalidParameter('invalid name or ID supplied: ""')
        return self.containers.get(ref)

    @staticmethod
    def _mounts(c) -> Dict[Tuple[str, ...], str]:
        """The files the daemon mounts into the container, once it ran (a
        network joiner's are its target's)."""
        path_of = getattr(c, "path_of", None)
        if path_of is None:
            return {}
        joined = c.network_paths() if hasattr(c, "network_paths") else {}
        keys = {"hostname": "HostnamePath", "hosts": "HostsPath", "resolv.conf": "ResolvConfPath"}
        mounts = {}
        for name in MOUNTED_FILES:
            source = joined.get(keys[name]) or path_of(name)
            if os.path.isfile(source):
                mounts[("etc", name)] = source
        return mounts

    # -- archives ----------------------------------------------------------

    async def stat_path(self, name: str, path: str) -> dict:
        c = self._container(name)
        mount = await self._mount_point_of(c, path)
        if mount is not None:
            async with self._volume_scope(c, name, path, mount) as (scope, rest):
                doc = await self.roots.thread(_path_stat_only, scope, rest, {})
            doc["name"] = golang.base(container_path(path))
            return doc
        mounts = await self.roots.thread(self._mounts, c)
        return await self.roots.in_root(c, name, _path_stat_only, path, mounts)

    async def archive_path(self, name: str, path: str) -> Tuple[dict, TarStream]:
        c = self._container(name)
        mount = await self._mount_point_of(c, path)
        if mount is not None:
            return await self._archive_volume_path(c, name, path, mount)
        mounts = await self.roots.thread(self._mounts, c)
        fd = await self.roots.acquire(c)
        scope = Scope(fd, self.roots.merged(c), name, mounts)
        try:
            work = self.roots.thread(scope.path_stat, path)
        except BaseException:
            self.roots.release(c, fd)
            raise

        def failed(failure):
            self.roots.release(c, fd)
            return failure

        def abandoned(result) -> None:
            result[1].close()
            self.roots.release(c, fd)

        work.addErrback(failed)
        doc, target = await shield(work, abandoned)

        def cleanup():
            target.close()
            return self.roots.release(c, fd)

        stream = TarStream(self.reactor, lambda write: write_path_archive(target, write), cleanup)
        self.containers.log_event(c, "archive-path")
        return doc, stream

    async def extract_to_dir(
        self, name: str, path: str, no_overwrite_dir_non_dir: bool, copy_uid_gid: bool, content
    ) -> None:
        c = self._container(name)
        if content is None:
            content = io.BytesIO()
        mount = await self._mount_point_of(c, path)
        if mount is not None:
            # dockerd 20.10 answered 500, moby now 400.
            read_only = None if mount["RW"] else InvalidParameter("mounted volume is marked read-only")
            owner = None
            if copy_uid_gid and (c.config.get("User") or ""):
                # The user is the container's: looked up in its root.
                owner = await self.roots.in_root(c, name, _container_owner, c)
            async with self._volume_scope(c, name, path, mount) as (scope, rest):
                await self.roots.thread(
                    _extract_blocking, scope, c, rest, no_overwrite_dir_non_dir, False, content,
                    read_only, owner,
                )
        else:
            read_only = None
            if c.host_config.get("ReadonlyRootfs"):
                read_only = Forbidden("container rootfs is marked read-only")
            await self.roots.in_root(
                c, name, _extract_blocking, c, path, no_overwrite_dir_non_dir, copy_uid_gid,
                content, read_only,
            )
        self.containers.log_event(c, "extract-to-dir")

    # -- paths in volumes and binds ------------------------------------------------

    async def _mount_point_of(self, c, path: str) -> Optional[dict]:
        """The volume or bind mount point holding C{path} (the deepest),
        compared as dockerd's HasResource: lexically."""
        points = getattr(c, "mount_points", None) or {}
        cleaned = golang.clean("/" + path)
        found = None
        for dest, point in points.items():
            if point["Type"] not in ("volume", "bind"):
                continue
            if point["Type"] == "volume" and self.volumes is None:
                continue
            if cleaned == dest or cleaned.startswith(dest.rstrip("/") + "/"):
                if found is None or len(dest) > len(found["Destination"]):
                    found = point
        if found is not None and found["Type"] == "bind":
            # A file bound over a file is the root's business (as the
            # daemon's /etc files).
            if not await self.roots.thread(os.path.isdir, found["Source"]):
                return None
        return found

    @asynccontextmanager
    async def _volume_scope(self, c, name: str, path: str, point: dict):
        """A L{Scope} rooted at the mount point's host directory (the volume
        mounted meanwhile), and C{path} relative to it."""
        ref = "copy-" + os.urandom(8).hex()
        if point["Type"] == "volume":
            source = await self.volumes.mount(point["Name"], ref)
            subpath = (point.get("Spec") or {}).get("Subpath")
            if subpath:
                source = os.path.join(source, subpath)
        else:
            source = point["Source"]
        try:
            try:
                fd = await self.roots.thread(os.open, source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                raise InternalError(str(e))
            try:
                full = container_path(path)
                rest = full[len(point["Destination"].rstrip("/")):] or "/"
                yield _MountScope(fd, source, name, path), rest
            finally:
                os.close(fd)
        finally:
            if point["Type"] == "volume":
                await self.volumes.unmount(point["Name"], ref)

    async def _archive_volume_path(self, c, name: str, path: str, point: dict):
        context = self._volume_scope(c, name, path, point)
        scope, rest = await context.__aenter__()
        try:
            doc, target = await self.roots.thread(scope.path_stat, rest)
        except BaseException:
            await context.__aexit__(None, None, None)
            raise
        doc["name"] = golang.base(container_path(path))
        target.abs_path = container_path(path)

        def cleanup():
            target.close()
            return ensureDeferred(context.__aexit__(None, None, None))

        stream = TarStream(self.reactor, lambda write: write_path_archive(target, write), cleanup)
        self.containers.log_event(c, "archive-path")
        return doc, stream

    # -- export and changes ----------------------------------------------------

    async def export(self, name: str) -> TarStream:
        c = self._container(name)
        fd = await self.roots.acquire(c)
        stream = TarStream(
            self.reactor, lambda write: write_export(fd, write), lambda: self.roots.release(c, fd)
        )
        self.containers.log_event(c, "export")
        return stream

    async def changes(self, name: str) -> Optional[List[dict]]:
        c = self._container(name)
        upper = self.containers.overlay(c)["UpperDir"]
        listed = await self.roots.thread(changes_of, upper, self.roots.layer_dirs(c))
        return listed or None

    # -- commit ----------------------------------------------------------------

    async def commit(self, name: str, options: CreateImageConfig) -> str:
        # As dockerd's decoder, before the container is looked up: a
        # HostConfig in the body is checked, then ignored.
        if isinstance(options.config, dict):
            validate_decoded(options.config, options.config.get("HostConfig"))
        return await self._committer.commit(self._container(name), options)


def write_path_archive(target: Target, write: Callable[[bytes], None]) -> None:
    """GET archive: the target (and what is below it), named after the
    base name of the asked path (moby's TarResourceRebase)."""
    writer = TarWriter(write)
    rebase = golang.base(target.abs_path)
    arcname = "" if rebase == "/" else rebase
    name = None if target.is_dir_itself else target.base
    writer.tree(target.dir_fd, name, arcname, target.st, parts=target.parts, mounts=target.mounts)
    writer.close()


def _path_stat_only(scope: Scope, path: str, mounts) -> dict:
    scope.mounts = dict(mounts)
    doc, target = scope.path_stat(path)
    target.close()
    return doc


class _MountScope(Scope):
    """A volume's (or bind's) directory as a scope: not-found messages
    name the path the client asked for."""

    def __init__(self, fd: int, source: str, ref: str, asked: str) -> None:
        super().__init__(fd, source, ref)
        self.asked = asked

    def not_found(self, path: str) -> NotFound:
        return super().not_found(self.asked)


def _container_owner(scope: Scope, c) -> Tuple[int, int]:
    from .spec import resolve_user

    user = resolve_user("/proc/self/fd/%d" % scope.root_fd, c.config.get("User") or "")
    return user["uid"], user["gid"]


def _extract_blocking(
    scope: Scope, c, path, no_overwrite, copy_uid_gid, content, read_only=None, owner=None
) -> None:
    """Extract the tar C{content} at C{path}; C{read_only}, the error that
    refuses a write there (after the path was checked)."""
    # Unlike a read, the last component is followed: extracting "into" a
    # link to a directory extracts into that directory.
    parts = scope.resolve(container_path(path))
    try:
        dest_fd = open_dir(scope.root_fd, parts)
    except FileNotFoundError:
        raise scope.not_found(path)
    except NotADirectoryError:
        raise InvalidParameter("extraction point is not a directory")
    os.close(dest_fd)
    if read_only is not None:
        raise read_only
    if copy_uid_gid and (c.config.get("User") or ""):
        owner = _container_owner(scope, c)
    try:
        extract_into(scope.root_fd, parts, content, no_overwrite, owner)
    except (OverwriteConflict, BreakoutError) as e:
        raise InvalidParameter("Error processing tar file(exit status 1): %s" % (e,))
    except ArchiveError as e:
        raise InternalError("Error processing tar file(exit status 1): %s" % (e,))
