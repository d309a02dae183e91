"""
The network router. Not served yet, but for one answer: until networks
exist, C{GET /networks/{id}} says that a network other than the three
built-in ones is not found (dockerd's 404), so that C{docker inspect NAME}
moves on to its other object kinds and ends in "No such object".

The built-in C{bridge}, C{host} and C{none} keep the 501: they do exist
(containers join them through C{NetworkMode}), and their inspect body (an
ID, a creation time, IPAM, the containers attached) is what the networks
work will own; a made-up one now would be a wrong answer clients keep.
"""

from ..errors import NotFound, NotImplementedYet
from ..server.httputils import APIRequest
from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/networks", None),
    route("GET", "/networks/", None),
    route("GET", "/networks/{id:.+}", "get_network"),
    route("POST", "/networks/create", None),
    route("POST", "/networks/{id:.*}/connect", None),
    route("POST", "/networks/{id:.*}/disconnect", None),
    route("POST", "/networks/prune", None, min_version="1.25"),
    route("DELETE", "/networks/{id:.*}", None),
)

#: The networks every daemon has (moby's predefined networks).
BUILTIN_NETWORKS = ("bridge", "host", "none")


class NetworkRouter(Router):
    name = "network"
    routes = ROUTES

    async def get_network(self, req: APIRequest) -> None:
        ident = req.vars["id"]
        if ident in BUILTIN_NETWORKS:
            raise NotImplementedYet("GET /networks/{id:.+} is not implemented yet")
        raise NotFound("network %s not found" % (ident,))
