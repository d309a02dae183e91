"""The build router: classic Dockerfile builds and the build cache. Not served yet."""

from ..server.routing import route
from . import Router

ROUTES = (
    route("POST", "/build", None),
    route("POST", "/build/prune", None, min_version="1.31"),
    route("POST", "/build/cancel", None),
)


class BuildRouter(Router):
    name = "build"
    routes = ROUTES
