"""The plugin router. Not served yet."""

from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/plugins", None),
    route("GET", "/plugins/{name:.*}/json", None),
    route("GET", "/plugins/privileges", None),
    route("DELETE", "/plugins/{name:.*}", None),
    route("POST", "/plugins/{name:.*}/enable", None),
    route("POST", "/plugins/{name:.*}/disable", None),
    route("POST", "/plugins/pull", None),
    route("POST", "/plugins/{name:.*}/push", None),
    route("POST", "/plugins/{name:.*}/upgrade", None, min_version="1.26"),
    route("POST", "/plugins/{name:.*}/set", None),
    route("POST", "/plugins/create", None),
)


class PluginRouter(Router):
    name = "plugin"
    routes = ROUTES
