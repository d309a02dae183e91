"""
Create: a container's record from its Config and HostConfig, as moby's
daemon/create.go.
"""

import os
import shutil
from typing import Optional

from ...errors import Conflict, InvalidParameter, NotFound
from .. import host, spec
from ..names import random_name
from ..runtime import rootfs
from .defaults import (
    CONFIG_DEFAULTS,
    HOST_CONFIG_DEFAULTS,
    IMPORT_PENDING_MARK,
    LOG_DRIVERS,
    mark,
)
from .health import for_api
from .record import Container
from .volumes import check_subpath_version


class CreateMixin:
    """The create part of L{ContainerBackend}."""

    async def create(self, name, config, host_config, networking_config, api_version,
                     import_pending: bool = False):
        """The container recorded; with C{import_pending} (a prepared
        checkpoint import) marked L{IMPORT_PENDING_MARK} before its record
        exists, so that no crash leaves it unmarked."""
        check_subpath_version(host_config, api_version)
        if name:
            spec.validate_name(name)
            name = "/" + name.lstrip("/")
            self._check_name_free(name)
        image_ref = config.get("Image") or ""
        if not image_ref:
            raise InvalidParameter("No image was specified")
        config = for_api(config, api_version)
        warnings = spec.validate_create(config, host_config, api_version) or []
        image = self.images.get(image_ref)
        host_config = self._host_config(host_config, api_version)
        self.resolve_joins(host_config)
        parent = host_config.get("CgroupParent") or ""
        if parent and self.cgroup_driver == "systemd" and (len(parent) <= 6 or not parent.endswith(".slice")):
            raise InvalidParameter('cgroup-parent for systemd cgroup should be a valid slice named as "xxx.slice"')
        config = spec.merge_config(
            dict(CONFIG_DEFAULTS, **config), (image.config or {}).get("config") or {}
        )
        path, args = spec.entrypoint_and_args(config)
        self._check_links(host_config)
        ident = os.urandom(32).hex()
        if not name:
            name = "/" + self._generate_name()
        if not config.get("Hostname"):
            if host_config["NetworkMode"] == "host":
                config["Hostname"] = host.hostname()
            else:
                config["Hostname"] = ident[:12]
        directory = os.path.join(self.containers_dir, ident)
        # (In a thread: a busy disk stalls a mkdir, and the reactor with it.)
        await self.run_in_thread(os.makedirs, directory, 0o710)
        c = Container(
            id=ident,
            name=name,
            created=self.now(),
            image_id=image.id,
            config=config,
            host_config=host_config,
            networking_config=networking_config or {},
            path=path,
            args=args,
            directory=directory,
        )
        await self.run_in_thread(rootfs.make_init_layer, self.init_layer(c))
        c.graph = dict(self.overlay(c), LowerDir=":".join(reversed(self.layer_dirs(c))))
        if self.volumes is not None:
            c.mount_points = await self.register_mount_points(ident, config, host_config)
            try:
                await self.populate_volumes(c)
            except BaseException:
                await self.release_volumes(c, remove_anonymous=True)
                raise
        try:
            if import_pending:
                await self.run_in_thread(mark, c.path_of(IMPORT_PENDING_MARK))
            await self.save(c)
        except BaseException:
            # (The disk full: nothing of it is left.)
            await self.run_in_thread(shutil.rmtree, directory, True)
            await self.run_in_thread(shutil.rmtree, os.path.dirname(self.init_layer(c)), True)
            if self.volumes is not None:
                await self.release_volumes(c, remove_anonymous=True)
            raise
        self.containers[ident] = c
        self.names[name] = ident
        self.log_event(c, "create")
        return {"Id": ident, "Warnings": warnings}

    def _check_name_free(self, name: str) -> None:
        """dockerd's reserveName: a name one container has at a time."""
        if name in self.names:
            raise Conflict(
                'Conflict. The container name "%s" is already in use by container "%s". '
                "You have to remove (or rename) that container to be able to reuse that name."
                % (name, self.names[name])
            )

    def _check_links(self, hc: dict) -> None:
        """dockerd's registerLinks: each linked container must exist (400,
        not a 404 the CLI would take for a missing image).  Links are not
        wired here: no networks yet."""
        for link in hc.get("Links") or ():
            name, _ = spec.parse_link(link)
            try:
                self.get(name)
            except NotFound as e:
                raise InvalidParameter("could not get container for %s: %s" % (name, e.message))

    def _host_config(self, requested: Optional[dict], api_version: str) -> dict:
        """The HostConfig kept and shown: dockerd's defaults filled in."""
        hc = spec.adapt_host_config(dict(HOST_CONFIG_DEFAULTS, **(requested or {})), api_version)
        if not hc.get("RestartPolicy") or not hc["RestartPolicy"].get("Name"):
            hc["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
        log_config = (requested or {}).get("LogConfig") or {}
        if log_config.get("Type") and log_config["Type"] not in LOG_DRIVERS:
            # dockerd looks an unknown driver up as a plugin.
            raise InvalidParameter(
                'error looking up logging plugin %s: plugin "%s" not found'
                % (log_config["Type"], log_config["Type"])
            )
        hc["LogConfig"] = spec.merge_log_config(log_config, self.default_log_config)
        spec.validate_log_options(hc["LogConfig"]["Type"], hc["LogConfig"].get("Config"))
        if not hc.get("Runtime"):
            hc["Runtime"] = "runc"
        return hc

    def _generate_name(self) -> str:
        for _ in range(10):
            candidate = random_name()
            if "/" + candidate not in self.names:
                return candidate
        return random_name() + os.urandom(3).hex()
