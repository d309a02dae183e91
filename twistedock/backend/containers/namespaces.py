"""
Joining another container's namespaces, as moby's
daemon/container_operations_unix.go: C{container:<id>} in NetworkMode,
IpcMode and PidMode names a running container whose process's namespaces
(C{/proc/<pid>/ns/...}) the run joins; a network joiner uses the target's
own hostname, hosts and resolv.conf files (the same host files, so a
rewrite of the target's reaches every joiner) and its hostname; IpcMode
C{shareable} gets a tmpfs of its own at C{<container dir>/mounts/shm},
bind-mounted on /dev/shm, which C{container:} joiners bind too.

Names are resolved at create (C{container:<name>} kept as
C{container:<full id>}, as dockerd keeps it); the targets are checked at
start, with dockerd's messages.
"""

import os
from typing import Dict, Optional

from ...errors import InternalError, InvalidParameter, NotFound
from ...logs import Logger
from ..spec.fields import as_int, as_str, is_container_mode
from ..spec.defaults import DEFAULT_SHM_SIZE
from .record import Container

log = Logger()

PREFIX = "container:"


def joined_ref(mode) -> str:
    """The container a C{container:<ref>} mode names ("" for other modes)."""
    mode = as_str(mode)
    return mode[len(PREFIX):] if is_container_mode(mode) else ""


class NamespacesMixin:
    """The namespace-joining part of L{ContainerBackend}."""

    def resolve_joins(self, host_config: dict) -> None:
        """At create: IpcMode's and PidMode's C{container:<ref>} must name
        a container (dockerd's 400 otherwise); all three modes keep the
        full ID of the one they name (a NetworkMode naming none is looked
        up again at start)."""
        for field in ("NetworkMode", "IpcMode", "PidMode"):
            ref = joined_ref(host_config.get(field))
            if not ref:
                continue
            try:
                target = self.get(ref)
            except NotFound:
                if field == "NetworkMode":
                    continue
                raise InvalidParameter("No such container: %s" % (ref,))
            host_config[field] = PREFIX + target.id

    def joined(self, c: Container, field: str) -> Optional[Container]:
        """The container C{c}'s C{field} joins (None: no C{container:} mode)."""
        ref = joined_ref(c.host_config.get(field))
        return self.get(ref) if ref else None

    def check_joins(self, c: Container) -> None:
        """At start: the containers whose IPC and PID namespaces C{c} joins
        are running, the IPC one shareable (the network one is
        L{NetworkingMixin._check_network}'s).  Errors of dockerd's
        createSpec, which its start answers as System errors: 500."""
        ref = joined_ref(c.host_config.get("IpcMode"))
        if ref:
            what = "can't join IPC of container " + ref
            try:
                target = self.get(ref)
            except NotFound as e:
                raise InternalError("%s: %s" % (what, e.message))
            if not target.state.running:
                raise InternalError("%s: container %s is not running" % (what, target.id))
            if target.state.restarting:
                raise InternalError("%s: container %s is restarting, wait until the container is running"
                                    % (what, target.id))
            if not os.path.isdir(self.shm_path(target)):
                raise InternalError(what + ": non-shareable IPC (hint: use IpcMode:shareable for the "
                                           "donor container)")
        ref = joined_ref(c.host_config.get("PidMode"))
        if ref:
            try:
                target = self.get(ref)
            except NotFound as e:
                raise InternalError("cannot join PID of a non running container: %s: %s" % (ref, e.message))
            if not target.state.running:
                raise InternalError("container %s is not running" % target.id)
            if target.state.restarting:
                # (createSpec's errors are System errors to dockerd's start: 500.)
                raise InternalError("container %s is restarting, wait until the container is running" % target.id)

    def namespace_paths(self, c: Container) -> Dict[str, str]:
        """The IPC and PID namespaces a run joins: its targets' processes'."""
        paths = {}
        for field, kind in (("IpcMode", "ipc"), ("PidMode", "pid")):
            target = self.joined(c, field)
            if target is not None:
                paths[kind] = "/proc/%d/ns/%s" % (target.state.pid, kind)
        return paths

    # -- /etc files and hostname of a network joiner ----------------------

    def adopt_network_files(self, c: Container) -> bool:
        """A network joiner takes its target's hostname, domain name and
        /etc file paths (kept in its record, as dockerd's
        initializeNetworkingPaths); False for a container of its own."""
        target = self.joined(c, "NetworkMode")
        if target is None:
            c.network_files = None
            return False
        if target.id == c.id:
            raise InternalError("cannot join own network")
        c.network_files = dict(target.network_paths())
        for key in ("Hostname", "Domainname"):
            c.config[key] = target.config.get(key) or ""
        return True

    # -- /dev/shm -----------------------------------------------------------

    def shm_path(self, c: Container) -> str:
        return os.path.join(c.directory, "mounts", "shm")

    async def ipc_up(self, c: Container) -> Optional[str]:
        """The host directory bound on the run's /dev/shm: its own tmpfs
        (mounted now) when shareable, its target's when joining; None for
        the spec's own tmpfs (private) or none."""
        mode = as_str(c.host_config.get("IpcMode"))
        if mode == "shareable":
            path = self.shm_path(c)
            size = as_int(c.host_config.get("ShmSize")) or DEFAULT_SHM_SIZE
            await self.run_in_thread(self.mounts.mount_shm, path, size)
            return path
        target = self.joined(c, "IpcMode")
        if target is not None:
            return self.shm_path(target)
        return None

    async def ipc_down(self, c: Container) -> None:
        """The run's shareable /dev/shm unmounted (idempotent)."""
        path = self.shm_path(c)
        if not os.path.isdir(path):
            return
        try:
            await self.run_in_thread(self.mounts.unmount, path)
            await self.run_in_thread(_remove_dirs, path)
        except OSError as e:
            log.warn("unmount {path}: {e}", path=path, e=e)


def _remove_dirs(path: str) -> None:
    """The empty mount point and its C{mounts} parent removed."""
    for directory in (path, os.path.dirname(path)):
        try:
            os.rmdir(directory)
        except OSError:
            return
