"""
The network router: moby's network routes over an L{INetworkBackend} (the
networks and their endpoints) and, for connect and disconnect, an
L{INetworkContainers} (the container backend: a container's networks are
part of its record and its run).
"""

from zope.interface import Interface

from ..errors import InvalidParameter
from ..server import godecode
from ..server.godecode import ANY, BOOL, STRING, STRING_MAP, Struct
from ..server.httputils import APIRequest
from ..server.routing import route
from .. import versions
from . import Router

ROUTES = (
    route("GET", "/networks", "get_networks_list"),
    route("GET", "/networks/", "get_networks_list"),
    route("GET", "/networks/{id:.+}", "get_network"),
    route("POST", "/networks/create", "post_network_create"),
    route("POST", "/networks/{id:.*}/connect", "post_network_connect"),
    route("POST", "/networks/{id:.*}/disconnect", "post_network_disconnect"),
    route("POST", "/networks/prune", "post_networks_prune", min_version="1.25"),
    route("DELETE", "/networks/{id:.*}", "delete_network"),
)

#: The networks every daemon has (moby's predefined networks).
BUILTIN_NETWORKS = ("bridge", "host", "none")

#: types.NetworkCreateRequest, as decoded by Go's json.Decoder.
CREATE_REQUEST = Struct("types.NetworkCreateRequest", {
    "Name": STRING, "CheckDuplicate": BOOL, "Driver": STRING, "Scope": STRING,
    "EnableIPv6": BOOL, "IPAM": ANY, "Internal": BOOL, "Attachable": BOOL,
    "Ingress": BOOL, "ConfigOnly": BOOL, "ConfigFrom": ANY, "Options": STRING_MAP,
    "Labels": STRING_MAP,
})  # fmt: skip


class INetworkBackend(Interface):
    """What the network router calls of the networks.  Every method is async."""

    def list(filters):
        """The networks' API documents matching the filters (dangling,
        driver, id, label, name, scope, type)."""

    def inspect(ref, verbose):
        """One network's API document (with its Containers); NotFound
        "network REF not found"."""

    def create(body):
        """A bridge network made from a NetworkCreateRequest: {"Id", "Warning"}."""

    def remove(ref):
        """Remove a user network: Forbidden for a predefined one or one in use."""

    def prune(filters):
        """Remove unused user networks: {"NetworksDeleted": [names]}."""


class INetworkContainers(Interface):
    """What the network router calls of the containers.  Async."""

    def connect_network(network_ref, container_ref, endpoint_config):
        """Join the container to the network (now when running, at its
        next start otherwise)."""

    def disconnect_network(network_ref, container_ref, force):
        """Leave the network."""


class NetworkRouter(Router):
    name = "network"
    routes = ROUTES

    def __init__(self, backend=None, containers=None) -> None:
        self.backend = backend
        self.containers = containers

    async def get_networks_list(self, req: APIRequest) -> None:
        req.write_json(await self.backend.list(req.filters()))

    async def get_network(self, req: APIRequest) -> None:
        verbose = req.bool_query("verbose")
        req.write_json(await self.backend.inspect(req.vars["id"], verbose))

    async def post_network_create(self, req: APIRequest) -> None:
        try:
            body = godecode.decode(req.json_body({}), CREATE_REQUEST) or {}
        except godecode.DecodeError as e:
            raise InvalidParameter("invalid JSON: " + e.message)
        if not versions.less_than(req.version, "1.44"):
            # From API 1.44 names are always unique (CheckDuplicate ignored).
            body["CheckDuplicate"] = True
        req.write_json(await self.backend.create(body), status=201)

    async def post_network_connect(self, req: APIRequest) -> None:
        body = req.json_body({}) or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON body")
        await self.containers.connect_network(
            req.vars["id"], body.get("Container") or "", body.get("EndpointConfig") or {}
        )
        req.write_status(200)

    async def post_network_disconnect(self, req: APIRequest) -> None:
        body = req.json_body({}) or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON body")
        await self.containers.disconnect_network(
            req.vars["id"], body.get("Container") or "", bool(body.get("Force"))
        )
        req.write_status(200)

    async def delete_network(self, req: APIRequest) -> None:
        await self.backend.remove(req.vars["id"])
        req.write_status(204)

    async def post_networks_prune(self, req: APIRequest) -> None:
        req.write_json(await self.backend.prune(req.filters()))
