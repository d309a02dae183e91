"""
Inspect a container, with its sizes when asked, as moby's daemon/inspect.go.
"""

import os
from typing import Dict

from ...errors import DockerError
from ..runtime import rootfs
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
        doc = c.inspect(sizes)
        if self.execs is not None:
            doc["ExecIDs"] = self.execs.exec_ids(c.id)
        if c.state.running:
            doc["NetworkSettings"]["SandboxKey"] = (
                "/proc/%d/ns/net" % c.state.pid if c.state.pid else ""
            )
        return doc
