"""The network router. Not served yet."""

from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/networks", None),
    route("GET", "/networks/", None),
    route("GET", "/networks/{id:.+}", None),
    route("POST", "/networks/create", None),
    route("POST", "/networks/{id:.*}/connect", None),
    route("POST", "/networks/{id:.*}/disconnect", None),
    route("POST", "/networks/prune", None, min_version="1.25"),
    route("DELETE", "/networks/{id:.*}", None),
)


class NetworkRouter(Router):
    name = "network"
    routes = ROUTES
