"""
A container's volumes, as moby's daemon/volumes.go and create_unix.go:
mount points registered at create (--volumes-from, Binds, Mounts, then the
image's VOLUMEs as anonymous volumes), named volumes created on first use,
the image's content copied into an empty volume (unless nocopy), the volumes
mounted for a run and given back after it, references released (and
anonymous volumes removed with C{rm -v}) when the container goes.
"""

import os
import stat
from typing import Dict, List, Optional

from ...errors import Conflict, DockerError, InternalError, InvalidParameter, NotFound
from ...logs import Logger
from ... import golang, versions
from .. import spec
from ..spec.mounts import DEFAULT_PROPAGATION
from ..rootpath import PathNotDirectory, TooManyLinks, resolve
from ..runtime.processes import Collect
from .record import Container

log = Logger()


def _mount_point(**fields) -> dict:
    point = {"Type": "", "Name": "", "Source": "", "Destination": "", "Driver": "", "Mode": "",
             "RW": True, "Propagation": "", "CopyData": False, "Spec": {}}
    point.update(fields)
    return point


_PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")


def check_subpath_version(host_config: Optional[dict], api_version: str) -> None:
    """The container router's check: Subpath came with API 1.45."""
    if not versions.less_than(api_version, "1.45"):
        return
    for mount in (host_config or {}).get("Mounts") or ():
        if isinstance(mount, dict) and ((mount.get("VolumeOptions") or {}).get("Subpath")):
            raise InvalidParameter("VolumeOptions.Subpath needs API v1.45 or newer")


def parse_volumes_from(raw: str):
    """ParseVolumesFrom: "container[:ro|rw]"."""
    ident, _, mode = raw.partition(":")
    if not ident:
        raise InvalidParameter("invalid volumes-from specification: %s" % raw)
    if mode and mode not in ("ro", "rw"):
        raise InvalidParameter("invalid mode for volumes-from: %s" % mode)
    return ident, mode != "ro"


class VolumesMixin:
    """The volume part of L{ContainerBackend} (C{self.volumes}: the
    L{VolumeStore}, or None: volumes are refused at start)."""

    async def register_mount_points(self, ident: str, config: dict, host_config: dict) -> Dict[str, dict]:
        """The container's mount points by destination; the volumes they
        name are created (or found) and referenced by C{ident}."""
        points: Dict[str, dict] = {}
        try:
            await self._register(ident, config, host_config, points)
        except BaseException:
            await self._release_points(ident, points, remove_anonymous=True)
            raise
        return points

    async def _register(self, ident: str, config: dict, hc: dict, points: Dict[str, dict]) -> None:
        for raw in hc.get("VolumesFrom") or ():
            source_id, rw = parse_volumes_from(raw)
            other = self.get(source_id)
            for dest, m in (getattr(other, "mount_points", None) or {}).items():
                point = dict(m, RW=m["RW"] and rw, CopyData=False)
                if point["Type"] == "volume":
                    self.volumes.volume(point["Name"])
                    self.volumes.reference(point["Name"], ident)
                points[dest] = point
        for raw in hc.get("Binds") or ():
            parsed = spec.parse_bind(raw)
            dest = parsed["Destination"]
            if parsed["Type"] == "volume":
                volume = await self.volumes.create_volume(parsed["Name"], hc.get("VolumeDriver") or "", ref=ident)
                modes = parsed["Mode"].split(",") if parsed["Mode"] else []
                points[dest] = _mount_point(
                    Type="volume", Name=volume.name, Source=volume.path, Destination=dest,
                    Driver="local", Mode=parsed["Mode"] or "z", RW=parsed["RW"],
                    CopyData="nocopy" not in modes, Spec={"Source": parsed["Name"]},
                )
            else:
                modes = parsed["Mode"].split(",") if parsed["Mode"] else []
                explicit = next((m for m in modes if m in _PROPAGATIONS), "")
                points[dest] = _mount_point(
                    Type="bind", Source=parsed["Source"], Destination=dest, Mode=parsed["Mode"],
                    RW=parsed["RW"], Propagation=self._bind_propagation(parsed["Source"], explicit),
                    Spec={"Source": parsed["Source"], "NonRecursive": False, "Propagation": explicit},
                )
        for mount in hc.get("Mounts") or ():
            mtype = mount.get("Type") or ""
            dest = golang.clean(mount.get("Target") or "")
            rw = not mount.get("ReadOnly")
            if mtype == "volume":
                options = mount.get("VolumeOptions") or {}
                driver = options.get("DriverConfig") or {}
                volume = await self.volumes.create_volume(
                    mount.get("Source") or "", driver.get("Name") or hc.get("VolumeDriver") or "",
                    driver.get("Options") or None, options.get("Labels") or None, ref=ident,
                )
                points[dest] = _mount_point(
                    Type="volume", Name=volume.name, Source=volume.path, Destination=dest,
                    Driver="local", Mode="z", RW=rw, CopyData=not options.get("NoCopy"),
                    Spec={"Source": mount.get("Source") or "", "Subpath": options.get("Subpath") or ""},
                )
            elif mtype == "bind":
                bind = mount.get("BindOptions") or {}
                source = golang.clean(mount.get("Source") or "")
                points[dest] = _mount_point(
                    Type="bind", Source=source, Destination=dest,
                    RW=rw, Propagation=self._bind_propagation(source, bind.get("Propagation") or ""),
                    Spec={"Source": mount.get("Source") or "", "NonRecursive": bool(bind.get("NonRecursive")),
                          "Propagation": bind.get("Propagation") or ""},
                )
            elif mtype == "tmpfs":
                points[dest] = _mount_point(Type="tmpfs", Destination=dest, RW=rw)
        for raw in config.get("Volumes") or {}:
            dest = golang.clean(raw)
            if dest in points:
                continue  # --volumes-from, a bind or a mount is there already
            volume = await self.volumes.create_volume("", hc.get("VolumeDriver") or "", ref=ident)
            points[dest] = _mount_point(
                Type="volume", Name=volume.name, Source=volume.path, Destination=dest,
                Driver="local", CopyData=True, Spec={"Source": "", "FromImage": True},
            )

    def _bind_propagation(self, source: str, explicit: str) -> str:
        """validateBindDaemonRoot: a bind of (or into) the daemon's root is
        shown rslave unless its propagation was given, which must then be
        rslave or rshared.  (The OCI mount falls back to rprivate when the
        source's mount propagates neither way, as dockerd's.)"""
        root = os.path.dirname(os.path.abspath(self.containers_dir))
        if not (source.startswith(root) or root.startswith(source)):
            return explicit or DEFAULT_PROPAGATION
        if not explicit:
            return "rslave"
        if explicit in ("rslave", "rshared"):
            return explicit
        raise InvalidParameter(
            'invalid mount config: must use either propagation mode "rslave" or "rshared" when mount '
            'source is within the daemon root, daemon root: "%s", bind mount source: "%s", '
            'propagation: "%s"' % (root, source, explicit)
        )

    # -- copy-up ----------------------------------------------------------------

    async def populate_volumes(self, c: Container) -> None:
        """populateVolumes: the image's content at each volume's destination
        copied into the volume when it is empty (once, at create)."""
        wanted = [p for p in c.mount_points.values() if p["Type"] == "volume" and p["CopyData"]]
        if not wanted:
            return
        paths = self.overlay(c)
        merged = paths["MergedDir"]
        await self.run_in_thread(self.mounts.mount, self.layer_dirs(c), paths["UpperDir"], paths["WorkDir"], merged)
        try:
            for point in wanted:
                source = await self.run_in_thread(_image_path, merged, point)
                if source is None:
                    continue
                ref = c.id + "-populate"
                target = await self.volumes.mount(point["Name"], ref)
                try:
                    if await self.run_in_thread(_is_empty_dir, target):
                        await self._copy_tree(source, target)
                finally:
                    await self.volumes.unmount(point["Name"], ref)
        finally:
            await self.run_in_thread(self.mounts.unmount, merged)

    async def _copy_tree(self, source: str, target: str) -> None:
        collect = Collect(None)
        argv = ["cp", "-a", source + "/.", target + "/"]
        self.reactor.spawnProcess(collect, "cp", argv, env=dict(os.environ))
        out, err, code = await collect.done
        if code != 0:
            raise InternalError(err.decode("utf-8", "replace").strip() or "cp exited %d" % code)
        await self.run_in_thread(_copy_ownership, source, target)

    # -- a run's mounts ---------------------------------------------------------------

    async def mount_volumes(self, c: Container) -> Dict[str, dict]:
        """Mount the container's volumes for a run: what the OCI spec
        mounts, by destination, beyond its own Binds/Mounts (those are
        given their volume's directory here)."""
        mounted: Dict[str, dict] = {}
        points = getattr(c, "mount_points", None) or {}
        try:
            for dest, point in sorted(points.items()):
                if point["Type"] == "volume":
                    if self.volumes is None:
                        raise NotFound("get %s: no such volume" % point["Name"])
                    try:
                        path = await self.volumes.mount(point["Name"], c.id)
                    except NotFound:
                        raise
                    except DockerError as e:
                        raise InternalError("error while mounting volume '%s': %s" % (point["Source"], e.message))
                    mounted[dest] = {"Source": path, "RW": point["RW"], "Volume": point["Name"]}
                    self.events.log("volume", "mount", point["Name"], {
                        "driver": "local", "container": c.id, "destination": dest,
                        "read/write": "true" if point["RW"] else "false", "propagation": "",
                    })
                    subpath = (point.get("Spec") or {}).get("Subpath")
                    if subpath:
                        mounted[dest]["Source"] = await self.run_in_thread(_subpath, path, subpath)
                elif point["Type"] == "bind":
                    # The rslave shown for a bind of the daemon's root falls
                    # back to the default (dockerd: when its source's mount
                    # is private, as here).
                    propagation = (point.get("Spec") or {}).get("Propagation") or DEFAULT_PROPAGATION
                    mounted[dest] = {"Source": point["Source"], "RW": point["RW"],
                                     "Propagation": propagation}
        except BaseException:
            for entry in mounted.values():
                if entry.get("Volume"):
                    await self.volumes.unmount(entry["Volume"], c.id)
            raise
        return mounted

    async def unmount_volumes(self, c: Container) -> None:
        """Give back the volumes a run mounted (a volume with mount options
        is unmounted by its last user)."""
        if self.volumes is None:
            return
        for point in (getattr(c, "mount_points", None) or {}).values():
            if point["Type"] == "volume":
                try:
                    held = await self.volumes.unmount(point["Name"], c.id)
                except Exception as e:
                    log.warn("unmount volume {name}: {e}", name=point["Name"], e=e)
                    continue
                if held:  # not given back already (at the run's end)
                    self.events.log("volume", "unmount", point["Name"],
                                    {"driver": "local", "container": c.id})

    def restore_volumes(self, c: Container) -> None:
        """At load: the container references its volumes again, and a
        running one holds its mounts."""
        if self.volumes is None:
            return
        for point in (getattr(c, "mount_points", None) or {}).values():
            if point["Type"] == "volume":
                self.volumes.reference(point["Name"], c.id)
                if c.state.running:
                    self.volumes.adopt_mount(point["Name"], c.id)

    async def release_volumes(self, c: Container, remove_anonymous: bool) -> None:
        """removeMountPoints: the references dropped; with C{rm -v} the
        anonymous volumes removed too (unless another container uses them)."""
        await self._release_points(c.id, getattr(c, "mount_points", None) or {}, remove_anonymous)

    async def _release_points(self, ident: str, points: Dict[str, dict], remove_anonymous: bool) -> None:
        if self.volumes is None:
            return
        for point in points.values():
            if point["Type"] != "volume":
                continue
            self.volumes.release(point["Name"], ident)
            if not remove_anonymous or (point.get("Spec") or {}).get("Source"):
                continue
            try:
                await self.volumes.remove(point["Name"])
            except (Conflict, NotFound):
                pass
            except DockerError as e:
                log.warn("remove volume {name}: {e}", name=point["Name"], e=e)


def _image_path(merged: str, point: dict) -> Optional[str]:
    """The host path of the volume's destination in the image, if it is a
    directory there (a file under an image VOLUME is refused, as dockerd)."""
    root_fd = os.open(merged, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parts: List[str] = resolve(root_fd, point["Destination"])
    except (PathNotDirectory, TooManyLinks):
        return None
    finally:
        os.close(root_fd)
    path = os.path.join(merged, *parts) if parts else merged
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        if (point.get("Spec") or {}).get("FromImage"):
            raise InternalError("cannot mount volume over existing file, file exists %s" % path)
        return None
    return path


def _is_empty_dir(path: str) -> bool:
    try:
        return not os.listdir(path)
    except OSError:
        return False


def _copy_ownership(source: str, target: str) -> None:
    st = os.stat(source)
    os.chown(target, st.st_uid, st.st_gid)
    os.chmod(target, stat.S_IMODE(st.st_mode))


def _subpath(base: str, subpath: str) -> str:
    """The volume's subpath, resolved inside it (safepath.Join's checks)."""
    base_resolved = os.path.realpath(base)
    combined = os.path.join(base_resolved, subpath)
    if not os.path.lexists(combined):
        raise NotFound("cannot access path %s: lstat %s: no such file or directory" % (combined, combined))
    resolved = os.path.realpath(combined)
    if resolved != base_resolved and not resolved.startswith(base_resolved + "/"):
        raise InvalidParameter(
            "path concatenation escapes the base directory, base: %s, subpath: %s" % (base_resolved, subpath)
        )
    return resolved

