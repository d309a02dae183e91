"""The distribution router: a registry's manifest descriptor and platforms
for an image reference (C{docker manifest inspect}'s daemon side)."""

from typing import Optional

from zope.interface import Interface

from ..errors import NotImplementedYet
from ..server.httputils import APIRequest
from ..server.routing import route
from . import Router
from .image import registry_auth

ROUTES = (
    route("GET", "/distribution/{name:.*}/json", "get_distribution_info", min_version="1.30"),
)


class IDistributionBackend(Interface):
    def distribution_inspect(name, auth):
        """C{{"Descriptor": ..., "Platforms": [...]}} of image C{name} in its
        registry, with the credentials C{auth} (async)."""


class DistributionRouter(Router):
    name = "distribution"
    routes = ROUTES

    def __init__(self, backend: Optional[IDistributionBackend] = None) -> None:
        self.backend = backend

    async def get_distribution_info(self, req: APIRequest) -> None:
        if self.backend is None:
            raise NotImplementedYet("GET /distribution/{name:.*}/json is not implemented yet")
        req.write_json(await self.backend.distribution_inspect(req.vars["name"], registry_auth(req)))
