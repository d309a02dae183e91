"""C{client.volumes} and C{client.networks}: thin."""

from typing import Optional

from .api import segment


class Volumes:
    def __init__(self, client) -> None:
        self.client = client

    async def list(self, filters=None) -> dict:
        """C{{"Volumes": [...], "Warnings": [...]}}."""
        return await self.client.json("GET", "/volumes", {"filters": filters})

    async def inspect(self, name) -> dict:
        return await self.client.json("GET", "/volumes/" + segment(name))

    async def create(self, name: Optional[str] = None, driver: Optional[str] = None,
                     driver_opts: Optional[dict] = None, labels: Optional[dict] = None) -> dict:
        body = {"Name": name or "", "Driver": driver or "local", "DriverOpts": driver_opts or {},
                "Labels": labels or {}}
        return await self.client.json("POST", "/volumes/create", json=body)

    async def remove(self, name, force: bool = False) -> None:
        await self.client.call("DELETE", "/volumes/" + segment(name), {"force": force})

    async def prune(self, filters=None) -> dict:
        return await self.client.json("POST", "/volumes/prune", {"filters": filters})


class Networks:
    def __init__(self, client) -> None:
        self.client = client

    async def list(self, filters=None) -> list:
        return await self.client.json("GET", "/networks", {"filters": filters})

    async def inspect(self, name) -> dict:
        return await self.client.json("GET", "/networks/" + segment(name))

    async def create(self, name: str, driver: Optional[str] = None, options: Optional[dict] = None,
                     labels: Optional[dict] = None, internal: bool = False) -> dict:
        body = {"Name": name, "Driver": driver or "bridge", "Options": options or {},
                "Labels": labels or {}, "Internal": internal}
        return await self.client.json("POST", "/networks/create", json=body)

    async def remove(self, name) -> None:
        await self.client.call("DELETE", "/networks/" + segment(name))

    async def connect(self, name, container, config: Optional[dict] = None) -> None:
        await self.client.call("POST", "/networks/%s/connect" % (segment(name),),
                               json={"Container": container, "EndpointConfig": config or {}})

    async def disconnect(self, name, container, force: bool = False) -> None:
        await self.client.call("POST", "/networks/%s/disconnect" % (segment(name),),
                               json={"Container": container, "Force": force})
