"""The container router: lifecycle, logs, attach, and (not yet) exec and archives."""

from typing import Optional

from zope.interface import Interface

from ..errors import InvalidParameter
from ..server import versions
from ..server.hijack import hijack
from ..server.httputils import APIRequest, encode_json
from ..server.routing import route
from ..streams import MULTIPLEXED, RAW, StdWriter
from . import Router

ROUTES = (
    route("HEAD", "/containers/{name:.*}/archive", None),
    route("GET", "/containers/json", "get_containers_json"),
    route("GET", "/containers/{name:.*}/export", None),
    route("GET", "/containers/{name:.*}/changes", None),
    route("GET", "/containers/{name:.*}/json", "get_containers_by_name"),
    route("GET", "/containers/{name:.*}/top", "get_containers_top"),
    route("GET", "/containers/{name:.*}/logs", "get_containers_logs"),
    route("GET", "/containers/{name:.*}/stats", None),
    route("GET", "/containers/{name:.*}/attach/ws", None),
    route("GET", "/exec/{id:.*}/json", None),
    route("GET", "/containers/{name:.*}/archive", None),
    route("POST", "/containers/create", "post_containers_create"),
    route("POST", "/containers/{name:.*}/kill", "post_containers_kill"),
    route("POST", "/containers/{name:.*}/pause", "post_containers_pause"),
    route("POST", "/containers/{name:.*}/unpause", "post_containers_unpause"),
    route("POST", "/containers/{name:.*}/restart", "post_containers_restart"),
    route("POST", "/containers/{name:.*}/start", "post_containers_start"),
    route("POST", "/containers/{name:.*}/stop", "post_containers_stop"),
    route("POST", "/containers/{name:.*}/wait", "post_containers_wait"),
    route("POST", "/containers/{name:.*}/resize", "post_containers_resize"),
    route("POST", "/containers/{name:.*}/attach", "post_containers_attach"),
    route("POST", "/containers/{name:.*}/exec", None),
    route("POST", "/exec/{name:.*}/start", None),
    route("POST", "/exec/{name:.*}/resize", None),
    route("POST", "/containers/{name:.*}/rename", "post_container_rename"),
    route("POST", "/containers/{name:.*}/update", "post_container_update"),
    route("POST", "/containers/prune", "post_containers_prune", min_version="1.25"),
    route("POST", "/commit", None),
    route("PUT", "/containers/{name:.*}/archive", None),
    route("DELETE", "/containers/{name:.*}", "delete_containers"),
)

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


class IContainerBackend(Interface):
    """What the container router asks of the daemon. Methods are async
    unless said otherwise."""

    def create(name, config, host_config, networking_config, api_version):
        """Create a container: C{{"Id": ..., "Warnings": [...]}}."""

    def start(name):
        """Start a created or stopped container (NotModified if running)."""

    def stop(name, signal, timeout):
        """Stop: the stop signal, then SIGKILL after C{timeout} seconds."""

    def kill(name, signal):
        """Send C{signal} (a name or number; None for SIGKILL)."""

    def restart(name, signal, timeout):
        """Stop if running, then start."""

    def pause(name):
        """Freeze every process of the container."""

    def unpause(name):
        """Thaw a paused container."""

    def wait(name, condition):
        """Check C{name} now (sync); a Deferred firing with the wait's body."""

    def remove(name, force, volumes):
        """Remove the container (force: kill it first)."""

    def rename(name, new_name):
        """Give the container another name."""

    def update(name, update):
        """Change resources and restart policy: C{{"Warnings": [...]}}."""

    def top(name, ps_args):
        """C{{"Titles": [...], "Processes": [[...]]}} of the container's processes."""

    def list(all, limit, size, filters, api_version):
        """The containers as C{GET /containers/json} lists them."""

    def inspect(name, size, api_version):
        """The container as C{GET /containers/{name}/json} shows it."""

    def prune(filters):
        """Remove stopped containers: C{{"ContainersDeleted", "SpaceReclaimed"}}."""

    def tty(name):
        """Whether the container has a TTY (sync; NotFound if no such container)."""

    def logs(name, options, write):
        """Call C{write(stream, data)} for each log entry; follow if asked."""

    def attach(name, options, stream):
        """Join C{stream} (a hijacked connection) to the container's stdio."""

    def check_attach(name, options):
        """Refuse an attach before the connection is taken over (sync)."""

    def resize(name, height, width):
        """Resize the container's TTY."""


def _timeout(req: APIRequest) -> Optional[int]:
    if not req.has_query("t") or req.query("t") == "":
        return None
    return req.int_query("t")


def _signal(req: APIRequest) -> Optional[str]:
    if versions.less_than(req.version, "1.42"):
        return None
    return req.query("signal") or None


def _resize_value(req: APIRequest, name: str, label: str) -> int:
    value = req.query(name, "")
    if not value.isdigit() or int(value) > 0xFFFFFFFF:
        raise InvalidParameter('invalid resize %s "%s"' % (label, value))
    return int(value)


class ContainerRouter(Router):
    """Handlers for the container routes.  As moby's, the router's backend
    is split by concern: C{backend} (life cycle, logs, attach), C{execs}
    (exec), C{copies} (archives, export, changes, commit)."""

    name = "container"
    routes = ROUTES

    def __init__(self, backend: IContainerBackend, execs=None, copies=None) -> None:
        self.backend = backend
        self.execs = execs
        self.copies = copies

    async def get_containers_json(self, req: APIRequest) -> None:
        filters = req.filters()
        limit = req.int_query("limit", -1)
        listed = await self.backend.list(
            req.bool_query("all"), limit, req.bool_query("size"), filters, req.version
        )
        req.write_json(listed)

    async def get_containers_by_name(self, req: APIRequest) -> None:
        req.write_json(
            await self.backend.inspect(req.vars["name"], req.bool_query("size"), req.version)
        )

    async def get_containers_top(self, req: APIRequest) -> None:
        req.write_json(await self.backend.top(req.vars["name"], req.query("ps_args") or "-ef"))

    async def post_containers_create(self, req: APIRequest) -> None:
        body = req.json_body()
        if body is None:
            raise InvalidParameter("invalid JSON: EOF")
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: the body must be an object")
        host_config = body.pop("HostConfig", None) or {}
        networking = body.pop("NetworkingConfig", None) or {}
        created = await self.backend.create(
            req.query("name", ""), body, host_config, networking, req.version
        )
        req.write_json(created, status=201)

    async def post_containers_start(self, req: APIRequest) -> None:
        # Bodies were options before API 1.24; dockerd refuses them now.
        if len(req.body()) > 7 or (req.header("Transfer-Encoding") or "").lower() == "chunked" and req.body().strip():
            raise InvalidParameter(
                "starting container with non-empty request body was deprecated since "
                "API v1.22 and removed in v1.24"
            )
        if req.query("checkpoint"):
            from ..errors import NotImplementedYet

            raise NotImplementedYet("restoring from a checkpoint is not implemented yet")
        await self.backend.start(req.vars["name"])
        req.write_status(204)

    async def post_containers_stop(self, req: APIRequest) -> None:
        await self.backend.stop(req.vars["name"], _signal(req), _timeout(req))
        req.write_status(204)

    async def post_containers_kill(self, req: APIRequest) -> None:
        await self.backend.kill(req.vars["name"], req.query("signal") or None)
        req.write_status(204)

    async def post_containers_restart(self, req: APIRequest) -> None:
        await self.backend.restart(req.vars["name"], _signal(req), _timeout(req))
        req.write_status(204)

    async def post_containers_pause(self, req: APIRequest) -> None:
        await self.backend.pause(req.vars["name"])
        req.write_status(204)

    async def post_containers_unpause(self, req: APIRequest) -> None:
        await self.backend.unpause(req.vars["name"])
        req.write_status(204)

    async def post_containers_wait(self, req: APIRequest) -> None:
        condition = req.query("condition") or "not-running"
        if versions.less_than(req.version, "1.30"):
            condition = "not-running"
        if condition not in WAIT_CONDITIONS:
            raise InvalidParameter('invalid condition: "%s"' % (condition,))
        done = self.backend.wait(req.vars["name"], condition)
        # Headers go at once, so the client knows the wait is in place.
        req.start_stream("application/json")
        try:
            result = await done
        finally:
            done.cancel()
        req.write(encode_json(result))

    async def post_containers_resize(self, req: APIRequest) -> None:
        height = _resize_value(req, "h", "height")
        width = _resize_value(req, "w", "width")
        await self.backend.resize(req.vars["name"], height, width)
        req.write_status(200)

    async def post_container_rename(self, req: APIRequest) -> None:
        await self.backend.rename(req.vars["name"], req.query("name", ""))
        req.write_status(204)

    async def post_container_update(self, req: APIRequest) -> None:
        update = req.json_body({})
        if not isinstance(update, dict):
            raise InvalidParameter("invalid JSON: the body must be an object")
        req.write_json(await self.backend.update(req.vars["name"], update))

    async def post_containers_prune(self, req: APIRequest) -> None:
        req.write_json(await self.backend.prune(req.filters()))

    async def delete_containers(self, req: APIRequest) -> None:
        await self.backend.remove(
            req.vars["name"], req.bool_query("force"), req.bool_query("v")
        )
        req.write_status(204)

    async def get_containers_logs(self, req: APIRequest) -> None:
        name = req.vars["name"]
        if not (req.bool_query("stdout") or req.bool_query("stderr")):
            raise InvalidParameter("Bad parameters: you must choose at least one stream")
        options = {
            "stdout": req.bool_query("stdout"),
            "stderr": req.bool_query("stderr"),
            "follow": req.bool_query("follow"),
            "timestamps": req.bool_query("timestamps"),
            "since": req.query("since", ""),
            "until": req.query("until", ""),
            "tail": req.query("tail", "all") or "all",
            "details": req.bool_query("details"),
        }
        tty = self.backend.tty(name)
        multiplexed = not tty
        content_type = MULTIPLEXED if multiplexed and not versions.less_than(req.version, "1.42") else RAW
        req.start_stream(content_type)
        writer = StdWriter(req.write, multiplexed)
        await self.backend.logs(name, options, writer.write)

    async def post_containers_attach(self, req: APIRequest) -> None:
        name = req.vars["name"]
        options = {
            "stream": req.bool_query("stream"),
            "stdin": req.bool_query("stdin"),
            "stdout": req.bool_query("stdout"),
            "stderr": req.bool_query("stderr"),
            "logs": req.bool_query("logs"),
            "detach_keys": req.query("detachKeys", ""),
        }
        self.backend.check_attach(name, options)
        tty = self.backend.tty(name)
        multiplexed = not tty and not versions.less_than(req.version, "1.42")
        stream = hijack(req, MULTIPLEXED if multiplexed else RAW)
        stream.framed = not tty
        await self.backend.attach(name, options, stream)

    # -- exec handlers ------------------------------------------------------

    # -- archive, export, changes and commit handlers ------------------------
