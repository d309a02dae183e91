"""C{client.images}: the image, distribution and build routers."""

import base64
import json
from typing import Optional

from .api import segment

TAR = {"Content-Type": "application/x-tar"}


def registry_auth(auth: Optional[dict]) -> str:
    """The X-Registry-Auth header: base64url of the auth config JSON."""
    return base64.urlsafe_b64encode(json.dumps(auth or {}).encode()).decode()


def split_reference(reference: str):
    """(repository, tag) of C{name[:tag]}, a digest kept in the name."""
    if "@" in reference:
        return reference, None
    name, colon, tag = reference.rpartition(":")
    if colon and "/" not in tag:
        return name, tag
    return reference, None


class Images:
    def __init__(self, client) -> None:
        self.client = client

    def _path(self, name, *rest) -> str:
        return "/images/" + segment(name) + "".join("/" + part for part in rest)

    async def list(self, all: bool = False, filters=None, digests: bool = False) -> list:
        return await self.client.json("GET", "/images/json", {"all": all, "filters": filters,
                                                              "digests": digests or None})

    async def inspect(self, name) -> dict:
        return await self.client.json("GET", self._path(name, "json"))

    async def history(self, name) -> list:
        return await self.client.json("GET", self._path(name, "history"))

    async def tag(self, name, repository: str, tag: Optional[str] = None) -> None:
        await self.client.call("POST", self._path(name, "tag"), {"repo": repository, "tag": tag})

    async def remove(self, name, force: bool = False, noprune: bool = False) -> list:
        return await self.client.json("DELETE", self._path(name), {"force": force, "noprune": noprune})

    async def prune(self, filters=None) -> dict:
        return await self.client.json("POST", "/images/prune", {"filters": filters})

    async def pull(self, reference: str, tag: Optional[str] = None, platform: Optional[str] = None,
                   auth: Optional[dict] = None):
        """Progress events (a L{JSONStream}); C{await stream.wait()} to the end."""
        if tag is None:
            reference, tag = split_reference(reference)
        return await self.client.json_stream(
            "POST", "/images/create", {"fromImage": reference, "tag": tag, "platform": platform},
            headers={"X-Registry-Auth": registry_auth(auth)})

    async def push(self, reference: str, tag: Optional[str] = None, auth: Optional[dict] = None):
        if tag is None:
            reference, tag = split_reference(reference)
        return await self.client.json_stream("POST", self._path(reference, "push"), {"tag": tag},
                                             headers={"X-Registry-Auth": registry_auth(auth)})

    async def import_(self, tar, repository: Optional[str] = None, tag: Optional[str] = None,
                      message: Optional[str] = None, changes=None, platform: Optional[str] = None):
        """An image from a root filesystem tar (bytes, file, path, async
        iterator); progress events whose last names the image."""
        if repository is not None and tag is None:
            repository, tag = split_reference(repository)
        return await self.client.json_stream("POST", "/images/create", {
            "fromSrc": "-", "repo": repository, "tag": tag, "message": message, "changes": changes,
            "platform": platform}, body=tar, headers=TAR)

    async def save(self, *names):
        """The images as one tar L{BodyStream} (docker save)."""
        return await self.client.stream("GET", "/images/get", {"names": list(names)})

    async def load(self, tar, quiet: bool = True):
        """docker load: progress events."""
        return await self.client.json_stream("POST", "/images/load", {"quiet": quiet}, body=tar, headers=TAR)

    async def build(self, context, tag: Optional[str] = None, dockerfile: Optional[str] = None,
                    buildargs: Optional[dict] = None, labels: Optional[dict] = None, nocache: bool = False,
                    rm: bool = True, pull: bool = False, target: Optional[str] = None):
        """Build from a context tar (bytes, file, path, async iterator): the
        build's JSON lines (C{stream}, C{aux}, C{error})."""
        params = {"t": tag, "dockerfile": dockerfile, "nocache": nocache or None, "rm": rm,
                  "pull": pull or None, "target": target}
        if buildargs:
            params["buildargs"] = buildargs
        if labels:
            params["labels"] = labels
        return await self.client.json_stream("POST", "/build", params, body=context, headers=TAR)
