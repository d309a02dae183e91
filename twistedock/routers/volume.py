"""
The volume router. Not served yet, but for one answer: twistedock has no
volumes (none can be created), so C{GET /volumes/{name}} truthfully says
that the volume is not found, in dockerd's words, and C{docker inspect NAME}
moves on to its other object kinds and ends in "No such object".
"""

from ..errors import NotFound
from ..server.httputils import APIRequest
from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/volumes", None),
    route("GET", "/volumes/{name:.*}", "get_volume_by_name"),
    route("POST", "/volumes/create", None),
    route("POST", "/volumes/prune", None, min_version="1.25"),
    route("PUT", "/volumes/{name:.*}", None, min_version="1.42"),
    route("DELETE", "/volumes/{name:.*}", None),
)


class VolumeRouter(Router):
    name = "volume"
    routes = ROUTES

    async def get_volume_by_name(self, req: APIRequest) -> None:
        raise NotFound("get %s: no such volume" % (req.vars["name"],))
