"""The volume router. Not served yet."""

from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/volumes", None),
    route("GET", "/volumes/{name:.*}", None),
    route("POST", "/volumes/create", None),
    route("POST", "/volumes/prune", None, min_version="1.25"),
    route("PUT", "/volumes/{name:.*}", None, min_version="1.42"),
    route("DELETE", "/volumes/{name:.*}", None),
)


class VolumeRouter(Router):
    name = "volume"
    routes = ROUTES
