"""The checkpoint router (experimental). Registered before the container router
so that DELETE /containers/{name}/checkpoints/{checkpoint} is not taken by
DELETE /containers/{name:.*}.

dockerd 20.10 answers these routes' failures as plain errors (500), decodes
the create body with Go's C{json.Decoder} (its messages are reproduced by
L{decode_create_options}), and lists checkpoints as C{[{"Name": ...}]}, or
C{null} when there are none.  Restoring is C{POST /containers/{name}/start}
with C{checkpoint} (and C{checkpoint-dir}), served by the container router."""

import json
from typing import Any, Dict

from zope.interface import Interface

from ..errors import DockerError, InternalError, InvalidParameter, NotImplementedYet
from ..server.hijack import hijacked, refused
from ..server.httputils import APIRequest, bool_value, decode_go_struct, go_syntax_error
from ..server.routing import route
from ..streams import RAW
from . import Router

#: On a checkpoint's answer (twistedock only): the seconds since its
#: process was frozen (a dump over CRIU's RPC).
FROZEN_HEADER = "X-Twistedock-Frozen-For"

ROUTES = (
    route("GET", "/containers/{name:.*}/checkpoints", "get_container_checkpoints", experimental=True),
    route("POST", "/containers/{name:.*}/checkpoints", "post_container_checkpoint", experimental=True),
    route(
        "DELETE",
        "/containers/{name}/checkpoints/{checkpoint}",
        "delete_container_checkpoint",
        experimental=True,
    ),
    # Beyond dockerd: a checkpoint that travels between daemons.
    route(
        "GET",
        "/containers/{name}/checkpoints/{checkpoint}/export",
        "get_container_checkpoint_export",
        experimental=True,
    ),
    route("POST", "/containers/checkpoints/import", "post_container_checkpoint_import", experimental=True),
    # Beyond dockerd: the second half of a prepared import (prepare=1 above).
    route(
        "POST",
        "/containers/{name}/checkpoints/import",
        "post_container_checkpoint_import_into",
        experimental=True,
    ),
    # Beyond dockerd: the pages of a lazy checkpoint, served by the daemon
    # that took it and fetched by the one restoring it (hijacked connections).
    route(
        "POST",
        "/containers/{name}/checkpoints/{checkpoint}/pages",
        "post_container_checkpoint_pages",
        experimental=True,
    ),
    route(
        "POST",
        "/containers/{name}/checkpoints/{checkpoint}/page-source",
        "post_container_checkpoint_page_source",
        experimental=True,
    ),
)


class ICheckpointBackend(Interface):
    """What the checkpoint router asks of the daemon (all async)."""

    def list(name, directory):
        """The checkpoints of container C{name}: C{[{"Name": ...}]}, or None
        when there are none; C{directory} ("" for the container's own)."""

    def create(name, options):
        """Checkpoint C{name}: C{options} has CheckpointID, CheckpointDir
        and Exit (stop the container once checkpointed).  May return
        C{{"Frozen": t}}: when (C{time.monotonic}) the process was frozen
        (L{FROZEN_HEADER})."""

    def delete(name, checkpoint_id, directory):
        """Remove a checkpoint."""

    def export(name, checkpoint_id, prepare, wait):
        """A tar stream (C{write_to(consumer, flow)}, C{close()}) of the
        checkpoint, the container's record and its root filesystem changes;
        with C{prepare} the record only (the checkpoint need not exist yet);
        with C{wait} once the checkpoint, not taken yet, is."""

    def import_checkpoint(content, name, api_version, prepare):
        """Create a container and its checkpoint from an export tar
        (C{content}, a file); C{{"Id": ..., "Checkpoint": ...}}; with
        C{prepare} the container only, awaiting L{import_into}."""

    def import_into(name, content):
        """The checkpoint and root filesystem changes of an export tar
        installed into the container C{name} a prepared import made."""

    def page_server(name, checkpoint_id):
        """C{serve(stream)}: the pages of a lazy checkpoint being served,
        given to a hijacked connection (NotFound when none are)."""

    def page_source(name, checkpoint_id):
        """C{keep(stream)}: a hijacked connection kept as where the next
        restore from a lazy checkpoint fetches its pages."""


#: The create body: types.CheckpointCreateOptions's fields and Go types.
CREATE_FIELDS = {"CheckpointID": "string", "CheckpointDir": "string", "Exit": "bool", "LazyPages": "bool"}
CREATE_TYPE = "types.CheckpointCreateOptions"


def decode_create_options(body: bytes, content_type: str = "") -> Dict[str, Any]:
    """The checkpoint create body as dockerd decodes it (the first JSON
    value; unknown fields ignored, names matched regardless of case; a
    form-encoded body is consumed by the form parser, as in Go)."""
    options: Dict[str, Any] = {"CheckpointID": "", "CheckpointDir": "", "Exit": False}
    if (content_type or "").split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
        body = b""
    text = body.decode("utf-8", "replace")
    stripped = text.lstrip()
    if not stripped:
        raise InternalError("EOF")
    try:
        value, _ = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError as e:
        raise InternalError(go_syntax_error(stripped, e))
    decoded, error = decode_go_struct(value, CREATE_TYPE, CREATE_FIELDS)
    if error is not None:
        raise InternalError(error)
    options.update(decoded)
    return options


class CheckpointRouter(Router):
    name = "checkpoint"
    routes = ROUTES

    def __init__(self, backend=None) -> None:
        self.backend = backend

    def _backend(self):
        if self.backend is None:
            raise NotImplementedYet("checkpoints are not available in this daemon")
        return self.backend

    async def get_container_checkpoints(self, req: APIRequest) -> None:
        backend = self._backend()
        req.write_json(await backend.list(req.vars["name"], req.query("dir", "") or ""))

    async def post_container_checkpoint(self, req: APIRequest) -> None:
        backend = self._backend()
        options = decode_create_options(req.body(), req.header("Content-Type") or "")
        timing = await backend.create(req.vars["name"], options)
        req.set_elapsed(FROZEN_HEADER, (timing or {}).get("Frozen"))
        req.write_status(201)

    async def delete_container_checkpoint(self, req: APIRequest) -> None:
        backend = self._backend()
        await backend.delete(req.vars["name"], req.vars["checkpoint"], req.query("dir", "") or "")
        req.write_status(204)

    async def get_container_checkpoint_export(self, req: APIRequest) -> None:
        backend = self._backend()
        stream = await backend.export(
            req.vars["name"], req.vars["checkpoint"], bool_value(req.query("prepare")), bool_value(req.query("wait"))
        )
        try:
            flow = req.start_stream("application/x-tar")
            await stream.write_to(req.request, flow)
        finally:
            stream.close()

    async def post_container_checkpoint_import(self, req: APIRequest) -> None:
        backend = self._backend()
        content = req.request.content
        if content is None:
            raise InvalidParameter("a checkpoint archive (tar) is required as the body")
        content.seek(0)
        result = await backend.import_checkpoint(
            content, req.query("name", "") or "", req.version, bool_value(req.query("prepare"))
        )
        req.write_json(result, status=201)

    async def post_container_checkpoint_import_into(self, req: APIRequest) -> None:
        backend = self._backend()
        content = req.request.content
        if content is None:
            raise InvalidParameter("a checkpoint archive (tar) is required as the body")
        content.seek(0)
        req.write_json(await backend.import_into(req.vars["name"], content))

    async def post_container_checkpoint_pages(self, req: APIRequest):
        backend = self._backend()
        try:
            serve = await backend.page_server(req.vars["name"], req.vars["checkpoint"])
        except DockerError as e:
            return refused(req, e.status, str(e))
        return hijacked(req, RAW, False, serve)

    async def post_container_checkpoint_page_source(self, req: APIRequest):
        backend = self._backend()
        try:
            keep = await backend.page_source(req.vars["name"], req.vars["checkpoint"])
        except DockerError as e:
            return refused(req, e.status, str(e))
        return hijacked(req, RAW, False, keep)
