"""
The swarm router: swarm, nodes, services, tasks, secrets and configs.  The
handlers check what dockerd checks before asking the cluster backend, so a
daemon outside a swarm answers exactly as dockerd outside a swarm.
"""

from zope.interface import Interface

from ..errors import InvalidParameter
from ..server.httputils import APIRequest
from ..server.routing import route
from . import Router

ROUTES = (
    route("POST", "/swarm/init", "init_cluster"),
    route("POST", "/swarm/join", "join_cluster"),
    route("POST", "/swarm/leave", "leave_cluster"),
    route("GET", "/swarm", "inspect_cluster"),
    route("GET", "/swarm/unlockkey", "get_unlock_key"),
    route("POST", "/swarm/update", "update_cluster"),
    route("POST", "/swarm/unlock", "unlock_cluster"),
    route("GET", "/services", "get_services"),
    route("GET", "/services/{id}", "get_service"),
    route("POST", "/services/create", "create_service"),
    route("POST", "/services/{id}/update", "update_service"),
    route("DELETE", "/services/{id}", "remove_service"),
    route("GET", "/services/{id}/logs", "get_service_logs"),
    route("GET", "/nodes", "get_nodes"),
    route("GET", "/nodes/{id}", "get_node"),
    route("DELETE", "/nodes/{id}", "remove_node"),
    route("POST", "/nodes/{id}/update", "update_node"),
    route("GET", "/tasks", "get_tasks"),
    route("GET", "/tasks/{id}", "get_task"),
    route("GET", "/tasks/{id}/logs", "get_task_logs"),
    route("GET", "/secrets", "get_secrets", min_version="1.25"),
    route("POST", "/secrets/create", "create_secret", min_version="1.25"),
    route("DELETE", "/secrets/{id}", "remove_secret", min_version="1.25"),
    route("GET", "/secrets/{id}", "get_secret", min_version="1.25"),
    route("POST", "/secrets/{id}/update", "update_secret", min_version="1.25"),
    route("GET", "/configs", "get_configs", min_version="1.30"),
    route("POST", "/configs/create", "create_config", min_version="1.30"),
    route("DELETE", "/configs/{id}", "remove_config", min_version="1.30"),
    route("GET", "/configs/{id}", "get_config", min_version="1.30"),
    route("POST", "/configs/{id}/update", "update_config", min_version="1.30"),
)


class IClusterBackend(Interface):
    """The swarm cluster, as the router sees it. Every method is async."""

    def init(request):
        """Create a swarm with this node as its manager: the node ID."""

    def join(request):
        """Join an existing swarm."""

    def leave(force):
        """Leave the swarm."""

    def inspect():
        """The swarm's spec and state."""

    def unlock_key():
        """The key that unlocks an autolocked manager."""

    def update(version, spec, flags):
        """Change the swarm's spec."""

    def unlock(request):
        """Unlock a locked manager."""

    def query(kind, ident, filters):
        """List (C{ident} None) or inspect a node, service, task, secret or config."""

    def create(kind, spec, options):
        """Create a service, secret or config."""

    def update_object(kind, ident, version, spec, options):
        """Update a node, service, secret or config."""

    def remove(kind, ident, options):
        """Remove a node, service, secret or config."""

    def logs(kind, ident, options):
        """Stream a service's or a task's logs."""


def _object_version(kind: str, value) -> int:
    """The C{version} query of an update, checked as dockerd checks it."""
    text = value or ""
    if text.isdigit():
        return int(text)
    if kind in ("secret", "config"):
        raise InvalidParameter("invalid %s version" % (kind,))
    raise InvalidParameter(
        "invalid %s version '%s': strconv.ParseUint: parsing \"%s\": invalid syntax"
        % (kind, text, text)
    )


class SwarmRouter(Router):
    name = "swarm"
    routes = ROUTES

    def __init__(self, backend: IClusterBackend) -> None:
        self.backend = backend

    # -- the swarm ------------------------------------------------------

    async def init_cluster(self, req: APIRequest) -> None:
        body = req.json_body({})
        req.write_json(await self.backend.init(body))

    async def join_cluster(self, req: APIRequest) -> None:
        body = req.json_body({})
        await self.backend.join(body)
        req.write_status(200)

    async def leave_cluster(self, req: APIRequest) -> None:
        await self.backend.leave(req.bool_query("force"))
        req.write_status(200)

    async def inspect_cluster(self, req: APIRequest) -> None:
        req.write_json(await self.backend.inspect())

    async def get_unlock_key(self, req: APIRequest) -> None:
        req.write_json(await self.backend.unlock_key())

    async def update_cluster(self, req: APIRequest) -> None:
        spec = req.json_body({})
        version = _object_version("swarm", req.query("version"))
        flags = {
            name: req.bool_query(name)
            for name in ("rotateWorkerToken", "rotateManagerToken", "rotateManagerUnlockKey")
        }
        await self.backend.update(version, spec, flags)
        req.write_status(200)

    async def unlock_cluster(self, req: APIRequest) -> None:
        body = req.json_body({})
        await self.backend.unlock(body)
        req.write_status(200)

    # -- objects --------------------------------------------------------

    async def _list(self, req: APIRequest, kind: str) -> None:
        filters = req.filters()
        req.write_json(await self.backend.query(kind, None, filters))

    async def _inspect(self, req: APIRequest, kind: str) -> None:
        req.write_json(await self.backend.query(kind, req.vars["id"], None))

    async def _create(self, req: APIRequest, kind: str) -> None:
        spec = req.json_body({})
        req.write_json(await self.backend.create(kind, spec, {}), status=201)

    async def _update(self, req: APIRequest, kind: str) -> None:
        spec = req.json_body({})
        version = _object_version(kind, req.query("version"))
        result = await self.backend.update_object(kind, req.vars["id"], version, spec, {})
        if result is None:
            req.write_status(200)
        else:
            req.write_json(result)

    async def _remove(self, req: APIRequest, kind: str, status: int) -> None:
        await self.backend.remove(kind, req.vars["id"], {"force": req.bool_query("force")})
        req.write_status(status)

    async def _logs(self, req: APIRequest, kind: str) -> None:
        if not (req.bool_query("stdout") or req.bool_query("stderr")):
            raise InvalidParameter("Bad parameters: you must choose at least one stream")
        await self.backend.logs(kind, req.vars["id"], req)

    async def get_services(self, req):
        await self._list(req, "service")

    async def get_service(self, req):
        await self._inspect(req, "service")

    async def create_service(self, req):
        await self._create(req, "service")

    async def update_service(self, req):
        await self._update(req, "service")

    async def remove_service(self, req):
        await self._remove(req, "service", 200)

    async def get_service_logs(self, req):
        await self._logs(req, "service")

    async def get_nodes(self, req):
        await self._list(req, "node")

    async def get_node(self, req):
        await self._inspect(req, "node")

    async def remove_node(self, req):
        await self._remove(req, "node", 200)

    async def update_node(self, req):
        await self._update(req, "node")

    async def get_tasks(self, req):
        await self._list(req, "task")

    async def get_task(self, req):
        await self._inspect(req, "task")

    async def get_task_logs(self, req):
        await self._logs(req, "task")

    async def get_secrets(self, req):
        await self._list(req, "secret")

    async def create_secret(self, req):
        await self._create(req, "secret")

    async def remove_secret(self, req):
        await self._remove(req, "secret", 204)

    async def get_secret(self, req):
        await self._inspect(req, "secret")

    async def update_secret(self, req):
        await self._update(req, "secret")

    async def get_configs(self, req):
        await self._list(req, "config")

    async def create_config(self, req):
        await self._create(req, "config")

    async def remove_config(self, req):
        await self._remove(req, "config", 204)

    async def get_config(self, req):
        await self._inspect(req, "config")

    async def update_config(self, req):
        await self._update(req, "config")
