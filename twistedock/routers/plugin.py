"""
The plugin router. Not served yet, but for one answer: twistedock has no
plugins (none can be installed), so C{GET /plugins/{name}/json} truthfully
says that the plugin is not found, in dockerd's words, and C{docker inspect
NAME} moves on to its other object kinds and ends in "No such object".
"""

from .. import golang
from ..errors import NotFound
from ..server.httputils import APIRequest
from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/plugins", None),
    route("GET", "/plugins/{name:.*}/json", "get_plugin"),
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

    async def get_plugin(self, req: APIRequest) -> None:
        raise NotFound("plugin %s not found" % (golang.quote(req.vars["name"]),))
