"""
The image router: import (C{POST /images/create?fromSrc=-}), list, inspect,
history, tag, delete, prune, save (C{GET /images/get}) and load.  The backend answers with attrs values; the
JSON shapes, and what each API version keeps of them, are decided here, as
moby's image router decides them.
"""

import base64
import functools
import io
import json
import os
from typing import Any, Dict, List, Optional

from zope.interface import Interface

from ..errors import DockerError, InternalError, InvalidParameter, NotImplementedYet
from .. import containerconfig, progress, versions
from ..server.httputils import APIRequest, go_syntax_error
from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/images/json", "get_images_json"),
    route("GET", "/images/search", "get_images_search"),
    route("GET", "/images/get", "get_images_get"),
    route("GET", "/images/{name:.*}/get", "get_images_name_get"),
    route("GET", "/images/{name:.*}/history", "get_images_history"),
    route("GET", "/images/{name:.*}/json", "get_images_by_name"),
    route("GET", "/images/{name:.*}/attestations", None, min_version="1.55"),
    route("POST", "/images/load", "post_images_load"),
    route("POST", "/images/create", "post_images_create"),
    route("POST", "/images/{name:.*}/push", "post_images_push"),
    route("POST", "/images/{name:.*}/tag", "post_images_tag"),
    route("POST", "/images/prune", "post_images_prune", min_version="1.25"),
    route("DELETE", "/images/{name:.*}", "delete_images"),
)


class IImageBackend(Interface):
    """The image store, as the image router sees it.  Every method is async."""

    def pull_image(image, tag, platform, auth, emit):
        """Pull C{image} (C{fromImage}) from a registry with the credentials
        C{auth}; C{emit(doc)} is given each progress message."""

    def search_images(term, limit, filters):
        """GET /images/search: the registry's results, filtered."""

    def push_image(name, tag, auth, emit):
        """Push image C{name} (all its repository's tags, or C{tag}) to its
        registry; C{emit(doc)} is given each progress message."""

    def import_image(source, src, repo, tag, message, changes, platform):
        """Import the tar file object C{source} (closed once read) as an
        image: its ID."""

    def images(filters, all, shared_size):
        """The image summaries C{GET /images/json} lists, newest first."""

    def inspect(name):
        """The image C{name} names (an C{Image})."""

    def history(name):
        """The history of image C{name}, newest first (C{HistoryItem}s)."""

    def tag(name, repo, tag):
        """Point C{repo:tag} at image C{name}."""

    def delete(name, force, prune):
        """Untag or delete image C{name}: C{DeleteResponse}s."""

    def prune(filters):
        """Delete unused images: a C{PruneReport}."""

    def export_images(names, platforms):
        """docker save: a tar stream (C{write_to(consumer, flow)},
        C{close()}) of the images C{names} name; C{platforms} (OCI platform
        dicts, may be empty): what they must be for."""

    def load_images(source, quiet, platforms, output):
        """docker load of the tar file object C{source} (closed once read),
        only the images for C{platforms} if any: C{output} is called with
        each progress value (C{id}, C{current}, C{total}) and text value
        (C{text}) to tell the client."""


#: container.Config fields as API < 1.50 shows an image's Config (Go's order;
#: the starred ones only when set).
_LEGACY_CONFIG = tuple(
    ("*" + name, None) if zero is containerconfig.OMIT else (name, zero)
    for name, zero in containerconfig.FIELDS
)

#: The OCI image config fields API >= 1.50 shows (starred: only when set).
_OCI_CONFIG = (
    ("User", ""),
    ("*ExposedPorts", None),
    ("Env", None),
    ("Entrypoint", None),
    ("Cmd", None),
    ("Volumes", None),
    ("WorkingDir", ""),
    ("Labels", None),
    ("*StopSignal", None),
    ("*ArgsEscaped", None),
    ("*Healthcheck", None),
    ("OnBuild", None),
    ("*Shell", None),
)


def _fields(config: Optional[dict], fields) -> dict:
    config = config or {}
    out: Dict[str, Any] = {}
    for name, default in fields:
        optional = name.startswith("*")
        key = name.lstrip("*")
        value = config.get(key, default)
        if optional and not value:
            continue
        if isinstance(value, dict):
            value = {k: value[k] for k in sorted(value)}
        out[key] = value
    return out


def config_json(config: Optional[dict], version: str) -> dict:
    """An image's Config as API C{version} shows it."""
    if versions.less_than(version, "1.50"):
        return _fields(config, _LEGACY_CONFIG)
    return _fields(config, _OCI_CONFIG)


def graph_driver_json(image) -> dict:
    layers = list(image.layers)
    if not layers:
        return {"Data": None, "Name": "overlay2"}
    top = layers[-1]
    data: Dict[str, str] = {}
    if len(layers) > 1:
        data["LowerDir"] = ":".join(layer.diff_dir for layer in reversed(layers[:-1]))
    data["MergedDir"] = top.path + "/merged"
    data["UpperDir"] = top.diff_dir
    data["WorkDir"] = top.path + "/work"
    return {"Data": data, "Name": "overlay2"}


def inspect_json(image, version: str) -> dict:
    """GET /images/{name}/json for API C{version}."""
    config = image.config
    doc: Dict[str, Any] = {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Parent": image.parent,
        "Comment": config.get("comment") or "",
        "Created": config.get("created") or "0001-01-01T00:00:00Z",
    }
    if versions.less_than(version, "1.45"):
        doc["Container"] = config.get("container") or ""
        doc["ContainerConfig"] = _fields(config.get("container_config"), _LEGACY_CONFIG)
    doc["DockerVersion"] = config.get("docker_version") or ""
    doc["Author"] = config.get("author") or ""
    doc["Config"] = config_json(config.get("config"), version)
    doc["Architecture"] = config.get("architecture") or ""
    if config.get("variant"):
        doc["Variant"] = config["variant"]
    doc["Os"] = config.get("os") or ""
    if config.get("os.version"):
        doc["OsVersion"] = config["os.version"]
    doc["Size"] = image.size
    if versions.less_than(version, "1.44"):
        doc["VirtualSize"] = image.size
    doc["GraphDriver"] = graph_driver_json(image)
    rootfs: Dict[str, Any] = {"Type": (config.get("rootfs") or {}).get("type") or "layers"}
    if image.diff_ids:
        rootfs["Layers"] = list(image.diff_ids)
    doc["RootFS"] = rootfs
    doc["Metadata"] = {"LastTagTime": image.last_tag_time or "0001-01-01T00:00:00Z"}
    return doc


def summary_json(summary, version: str) -> dict:
    """One entry of GET /images/json for API C{version}."""
    tags, digests = summary.repo_tags, summary.repo_digests
    if versions.less_than(version, "1.43"):
        if not tags and not digests:
            tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    else:
        tags = tags if tags is not None else []
        digests = digests if digests is not None else []
    doc = {
        "Containers": summary.containers if not versions.less_than(version, "1.51") else -1,
        "Created": summary.created,
        "Id": summary.id,
        "Labels": summary.labels,
        "ParentId": summary.parent_id,
        "RepoDigests": digests,
        "RepoTags": tags,
        "SharedSize": summary.shared_size,
        "Size": summary.size,
    }
    if versions.less_than(version, "1.44"):
        doc["VirtualSize"] = summary.size
    return doc


def disk_usage_json(summary, version: str) -> dict:
    """One image of GET /system/df for API C{version}: a list entry of that
    version, with the counts df computes (which the list leaves at -1)."""
    doc = summary_json(summary, version)
    doc["Containers"] = summary.containers
    doc["SharedSize"] = summary.shared_size
    return doc


def history_json(item) -> dict:
    return {
        "Comment": item.comment,
        "Created": item.created,
        "CreatedBy": item.created_by,
        "Id": item.id,
        "Size": item.size,
        "Tags": item.tags,
    }


def delete_json(item) -> dict:
    if item.untagged is not None:
        return {"Untagged": item.untagged}
    return {"Deleted": item.deleted}


def registry_auth(req: APIRequest) -> dict:
    """The X-Registry-Auth header: base64url JSON (padded or not); one that
    does not decode is no credentials, as dockerd 20.10 takes it."""
    value = (req.header("X-Registry-Auth") or "").strip()
    if not value:
        return {}
    value += "=" * (-len(value) % 4)
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            doc = json.loads(decode(value).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        return doc if isinstance(doc, dict) else {}
    return {}


def _progress_writer(req: APIRequest):
    """emit(doc) for a pull: the first message starts the 200 stream."""

    def emit(doc: dict) -> None:
        request = req.request
        if getattr(request, "finished", False) or getattr(request, "_disconnected", False):
            return  # the client went away: the pull is being cancelled
        if not req.started:
            req.start_stream("application/json")
        req.write(progress.encode(doc))

    return emit


def _load_line(item) -> bytes:
    """A docker load output value as dockerd's JSON message line."""
    text = getattr(item, "text", None)
    if text is not None:
        return progress.encode(progress.stream_message(text))
    return progress.encode(progress.message("Loading layer", id=item.id, current=item.current, total=item.total))


def _platforms(req: APIRequest) -> List[dict]:
    """httputils.DecodePlatforms of the C{platform} values (API >= 1.48):
    each a JSON OCI platform with its OS and architecture."""
    version = req.version or versions.MAX_API_VERSION
    if versions.less_than(version, "1.48"):
        return []
    values = req.query_all("platform")
    if versions.less_than(version, "1.52") and len(values) > 1:
        raise InvalidParameter(
            "multiple platform parameters are not supported in this API version; "
            "use API version 1.52 or later"
        )
    out = []
    for text in values:
        try:
            platform = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidParameter("failed to parse platform: %s" % (go_syntax_error(text, e),))
        if not isinstance(platform, dict):
            raise InvalidParameter(
                "failed to parse platform: json: cannot unmarshal %s into Go value of type v1.Platform"
                % (_json_kind(platform),)
            )
        has_optional = bool(
            platform.get("variant") or platform.get("os.version") or platform.get("os.features")
        )
        if not platform.get("os") and not platform.get("architecture") and has_optional:
            raise InvalidParameter("optional platform fields provided, but OS and Architecture are missing")
        if not platform.get("os") or not platform.get("architecture"):
            raise InvalidParameter("both OS and Architecture must be provided")
        out.append(platform)
    return out


def _json_kind(value) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"


def _body(req: APIRequest):
    """The request body as a file of its own: twisted.web closes its copy
    when the client goes away, while the store may still be reading."""
    content = req.request.content
    if content is None:
        return io.BytesIO(b"")
    try:
        fd = content.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        content.seek(0)
        return io.BytesIO(content.read())
    body = os.fdopen(os.dup(fd), "rb")
    body.seek(0)
    return body


def _served(handler):
    """Without an image store a route answers as an unserved one (501)."""
    (listed,) = [r for r in ROUTES if r.handler == handler.__name__]

    @functools.wraps(handler)
    async def guarded(self, req: APIRequest) -> None:
        if self.backend is None:
            raise NotImplementedYet("%s %s is not implemented yet" % (listed.method, listed.path))
        await handler(self, req)

    return guarded


class ImageRouter(Router):
    name = "image"
    routes = ROUTES

    def __init__(self, backend: Optional[IImageBackend] = None) -> None:
        self.backend = backend

    @_served
    async def post_images_create(self, req: APIRequest) -> None:
        image = req.query("fromImage", "") or ""
        repo = req.query("repo", "") or ""
        tag = req.query("tag", "") or ""
        message = req.query("message", "") or ""
        platform = ""
        if not versions.less_than(req.version or versions.MAX_API_VERSION, "1.32"):
            platform = req.query("platform", "") or ""
        try:
            if image:
                await self.backend.pull_image(
                    image, tag, platform, registry_auth(req),
                    _progress_writer(req),
                )
                return
            src = req.query("fromSrc", "") or ""
            if src != "-":
                # dockerd fetches the URL; twistedock does not (yet).
                if src == "":
                    raise InternalError('Get "http:": http: no Host in request URL')
                raise NotImplementedYet(
                    "import from a URL is not implemented yet: send the tar as the body (fromSrc=-)"
                )
            source = _body(req)
            image_id = await self.backend.import_image(
                source, src, repo, tag, message, req.query_all("changes"), platform
            )
        except DockerError as e:
            if not req.started:
                raise
            req.write(progress.encode(progress.error_message(str(e))))
            return
        req.start_stream("application/json")
        req.write(progress.encode(progress.message(image_id, detail=False)))

    @_served
    async def post_images_push(self, req: APIRequest) -> None:
        try:
            await self.backend.push_image(
                req.vars["name"], req.query("tag", "") or "", registry_auth(req),
                _progress_writer(req),
            )
        except DockerError as e:
            if not req.started:
                raise
            req.write(progress.encode(progress.error_message(str(e))))

    @_served
    async def get_images_get(self, req: APIRequest) -> None:
        await self._save(req, req.query_all("names"))

    @_served
    async def get_images_name_get(self, req: APIRequest) -> None:
        await self._save(req, [req.vars["name"]])

    async def _save(self, req: APIRequest, names: List[str]) -> None:
        stream = await self.backend.export_images(names, _platforms(req))
        try:
            flow = req.start_stream("application/x-tar")
            await stream.write_to(req.request, flow)
        finally:
            stream.close()

    @_served
    async def post_images_load(self, req: APIRequest) -> None:
        platforms = _platforms(req)
        quiet = req.bool_query("quiet", True)
        source = _body(req)
        req.start_stream("application/json")

        def output(item) -> None:
            try:
                req.write(_load_line(item))
            except RuntimeError:
                pass  # the client went away; the load goes on to its end

        try:
            await self.backend.load_images(source, quiet, platforms, output)
        except DockerError as e:
            req.write(progress.encode(progress.error_message(str(e))))

    @_served
    async def get_images_json(self, req: APIRequest) -> None:
        version = req.version or versions.MAX_API_VERSION
        filters = req.filters()
        if versions.less_than(version, "1.25") and not filters.contains("reference"):
            legacy = req.query("filter", "")
            if legacy:
                filters.fields.setdefault("reference", set()).add(legacy)
        shared_size = False
        if not versions.less_than(version, "1.42"):
            shared_size = req.bool_query("shared-size")
        summaries = await self.backend.images(filters, req.bool_query("all"), shared_size)
        req.write_json([summary_json(s, version) for s in summaries])

    @_served
    async def get_images_search(self, req: APIRequest) -> None:
        limit = 25
        text = req.query("limit", "") or ""
        if text:
            try:
                limit = int(text, 10)
            except ValueError:
                raise InternalError('strconv.Atoi: parsing %s: invalid syntax' % (json.dumps(text),))
        req.write_json(await self.backend.search_images(req.query("term", "") or "", limit, req.filters()))

    @_served
    async def get_images_by_name(self, req: APIRequest) -> None:
        image = await self.backend.inspect(req.vars["name"])
        req.write_json(inspect_json(image, req.version or versions.MAX_API_VERSION))

    @_served
    async def get_images_history(self, req: APIRequest) -> None:
        items = await self.backend.history(req.vars["name"])
        req.write_json([history_json(item) for item in items])

    @_served
    async def post_images_tag(self, req: APIRequest) -> None:
        await self.backend.tag(
            req.vars["name"], req.query("repo", "") or "", req.query("tag", "") or ""
        )
        req.write_status(201)

    @_served
    async def delete_images(self, req: APIRequest) -> None:
        items = await self.backend.delete(
            req.vars["name"], req.bool_query("force"), not req.bool_query("noprune")
        )
        req.write_json([delete_json(item) for item in items])

    @_served
    async def post_images_prune(self, req: APIRequest) -> None:
        report = await self.backend.prune(req.filters())
        deleted: Optional[List[dict]] = None
        if report.images_deleted:
            deleted = [delete_json(item) for item in report.images_deleted]
        req.write_json({"ImagesDeleted": deleted, "SpaceReclaimed": report.space_reclaimed})
