"""C{client.system} and C{client.events}: the system router."""

from typing import Optional

from .api import content


class System:
    def __init__(self, client) -> None:
        self.client = client

    async def ping(self) -> dict:
        """C{/_ping}'s headers of note (Api-Version, OSType, ...) and body."""
        response = await self.client._send("GET", "http://docker/_ping")
        body = await content(response)
        if response.code != 200:
            from .errors import error_for

            raise error_for(response.code, body)
        headers = {}
        for name in ("Api-Version", "Builder-Version", "Docker-Experimental", "OSType", "Swarm"):
            value = response.headers.getRawHeaders(name)
            if value:
                headers[name] = value[0]
        return {"Body": body.decode("utf-8", "replace"), "Headers": headers}

    async def version(self) -> dict:
        return await self.client.json("GET", "/version")

    async def info(self) -> dict:
        return await self.client.json("GET", "/info")

    async def df(self, types=None) -> dict:
        return await self.client.json("GET", "/system/df", {"type": list(types) if types else None})


class Events:
    def __init__(self, client) -> None:
        self.client = client

    async def stream(self, since=None, until=None, filters=None):
        """The daemon's events as a L{JSONStream} of dicts: past ones from
        C{since}, then live ones until C{until} (forever without it) or the
        stream is closed.  C{since}/C{until}: Unix times or the CLI's forms."""
        return await self.client.json_stream("GET", "/events", {
            "since": _time(since), "until": _time(until), "filters": filters})


def _time(value) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return "%.9f" % (value,)
    return str(int(value))
