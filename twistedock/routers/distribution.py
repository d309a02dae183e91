"""The distribution router: registry manifest look-ups. Not served yet."""

from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/distribution/{name:.*}/json", None, min_version="1.30"),
)


class DistributionRouter(Router):
    name = "distribution"
    routes = ROUTES
