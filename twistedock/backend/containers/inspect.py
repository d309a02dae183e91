"""
Inspect a container, with its sizes when asked, as moby's daemon/inspect.go.
"""

import os
from typing import Dict

from ... import versions
from ...errors import DockerError
from ..images.config import ordered_container_config
from ..runtime import rootfs
from .health import health_json
from .record import Container


class InspectMixin:
    """The inspect part of L{ContainerBackend}."""

    def _image_name(self, c: Container) -> str:
        return c.config.get("Image") or c.image_id

    async def _sizes(self, c: Container) -> Dict[str, int]:
        upper = self.overlay(c)["UpperDir"]
        rw = await self.run_in_thread(rootfs.directory_size, upper) if os.path.isdir(upper) else 0
        try:
            image_size = self.images.get(c.image_id).size
        except DockerError:
            image_size = 0
        return {"rw": rw, "rootfs": rw + image_size}

    async def inspect(self, ref, size, api_version) -> dict:
        c = self.get(ref)
        sizes = await self._sizes(c) if size else None
        doc = inspect_json(c, sizes, api_version)
        if self.execs is not None:
            doc["ExecIDs"] = self.execs.exec_ids(c.id)
        if c.state.running and not c.network_mode().startswith("container:"):
            # (A network joiner has no sandbox of its own: "", as dockerd.)
            doc["NetworkSettings"]["SandboxKey"] = (
                "/proc/%d/ns/net" % c.state.pid if c.state.pid else ""
            )
        doc["NetworkSettings"] = self.network_settings(c, doc["NetworkSettings"], api_version)
        return doc


def inspect_json(c: Container, sizes, api_version: str) -> dict:
    """The record's inspect view with Config and HostConfig as dockerd
    writes them: container.Config's omitempty fields (ExposedPorts,
    StopSignal, ...) left out when unset, HostConfig for C{api_version}."""
    doc = c.inspect(sizes)
    if c.state.health is not None:
        doc["State"]["Health"] = health_json(c.state.health)
    doc["Config"] = ordered_container_config(c.config)
    doc["HostConfig"] = host_config_json(c.host_config, api_version)
    return doc


def host_config_json(host_config: dict, api_version: str) -> dict:
    """
    HostConfig as dockerd shows it at C{api_version}: a PidsLimit of zero
    or less is no limit (null, as moby's router stores it); before API 1.42
    (dockerd 20.10) KernelMemoryTCP follows KernelMemory even when unset,
    from 1.42 both are left out when unset.
    """
    doc = {}
    old = versions.less_than(api_version, "1.42")
    for key, value in host_config.items():
        if key == "PidsLimit" and isinstance(value, int) and value <= 0:
            value = None
        if key == "KernelMemoryTCP" and "KernelMemoryTCP" in doc:
            continue
        if key in ("KernelMemory", "KernelMemoryTCP") and not old and not value:
            continue  # omitempty from API 1.42 (dockerd 23)
        doc[key] = value
        if key == "KernelMemory" and (old or host_config.get("KernelMemoryTCP")):
            doc["KernelMemoryTCP"] = host_config.get("KernelMemoryTCP") or 0
    if old:
        doc.setdefault("KernelMemoryTCP", host_config.get("KernelMemoryTCP") or 0)
    return doc
