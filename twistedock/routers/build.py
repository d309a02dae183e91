"""The build router: classic Dockerfile builds (POST /build) and the build
cache's prune, as moby's api/server/router/build."""

import base64
import binascii
import json
from typing import Optional

from twisted.internet.defer import ensureDeferred
from zope.interface import Interface

from .. import golang
from ..deferreds import shield
from ..errors import InvalidParameter, NotImplementedYet
from ..server.httputils import APIRequest
from ..server.routing import route
from . import Router

ROUTES = (
    route("POST", "/build", "post_build"),
    route("POST", "/build/prune", "post_build_prune", min_version="1.31"),
    route("POST", "/build/cancel", None),
)


class IBuildBackend(Interface):
    def prepare(source, options):
        """Unpack the context (C{source}, a file the backend closes) and
        parse its Dockerfile as C{options} (a BuildOptions) say; raises
        dockerd's errors for a client's mistake.  A Deferred of a build
        whose C{run(emit)} writes the stream's messages."""


#: HostConfig resources a RUN step's container gets, from the query.
_RESOURCES = (
    ("memory", "Memory"),
    ("memswap", "MemorySwap"),
    ("cpushares", "CpuShares"),
    ("cpuperiod", "CpuPeriod"),
    ("cpuquota", "CpuQuota"),
    ("shmsize", "ShmSize"),
)


def _json_query(req: APIRequest, name: str, what: str):
    text = req.query(name, "") or ""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise InvalidParameter("unable to parse %s: %s" % (what, e))


def _registry_config(req: APIRequest) -> dict:
    header = req.request.getHeader("X-Registry-Config")
    if not header:
        return {}
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        configs = json.loads(decoded)
    except (binascii.Error, ValueError):
        return {}
    return configs if isinstance(configs, dict) else {}


class BuildRouter(Router):
    name = "build"
    routes = ROUTES

    def __init__(self, backend: Optional[IBuildBackend] = None) -> None:
        self.backend = backend

    def _options(self, req: APIRequest):
        from ..backend.build import BuildOptions

        version = req.query("version", "") or "1"
        if version == "2":
            raise InvalidParameter("buildkit not supported by daemon")
        if version != "1":
            raise InvalidParameter("unsupported builder version %s" % (version,))
        resources = {}
        for query, key in _RESOURCES:
            value = req.query(query, "")
            if value:
                number = golang.atoi(value)
                if number is None:
                    raise InvalidParameter("invalid value for %s: %s" % (query, value))
                resources[key] = number
        for query, key in (("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems")):
            if req.query(query, ""):
                resources[key] = req.query(query, "")
        remove = req.bool_query("rm") if req.query("rm", "") else True
        force = req.bool_query("forcerm")
        build_args = _json_query(req, "buildargs", "build args") or {}
        labels = _json_query(req, "labels", "labels") or {}
        if not isinstance(build_args, dict) or not isinstance(labels, dict):
            raise InvalidParameter("unable to parse build args")
        if req.bool_query("squash"):
            raise InvalidParameter("squash is only supported with experimental mode")
        isolation = req.query("isolation", "") or ""
        if isolation and isolation.lower() != "default":
            raise InvalidParameter("Unsupported isolation: %s" % (golang.quote(isolation),))
        ulimits = _json_query(req, "ulimits", "ulimits")
        if ulimits:
            resources["Ulimits"] = ulimits
        if req.query("cgroupparent", ""):
            resources["CgroupParent"] = req.query("cgroupparent", "")
        extra_hosts = req.query_all("extrahosts")
        if len(extra_hosts) == 1 and extra_hosts[0].startswith("["):
            extra_hosts = json.loads(extra_hosts[0])
        return BuildOptions(
            tags=[t for t in req.query_all("t") if t],
            dockerfile=req.query("dockerfile", "") or "Dockerfile",
            remote=req.query("remote", "") or "",
            target=req.query("target", "") or "",
            labels={str(k): str(v) for k, v in labels.items()},
            build_args={str(k): (None if v is None else str(v)) for k, v in build_args.items()},
            no_cache=req.bool_query("nocache"),
            remove=remove or force,
            force_remove=force,
            pull=req.bool_query("pull"),
            quiet=req.bool_query("q"),
            network_mode=req.query("networkmode", "") or "",
            extra_hosts=[h for h in extra_hosts if h],
            platform=req.query("platform", "") or "",
            resources=resources,
            auth_configs=_registry_config(req),
            cache_from=[str(c) for c in (_json_query(req, "cachefrom", "cache from") or [])],
        )

    async def post_build(self, req: APIRequest) -> None:
        if self.backend is None:
            raise NotImplementedYet("POST /build is not implemented yet")
        from .image import _body

        options = self._options(req)
        build = await self.backend.prepare(_body(req), options)
        req.start_stream("application/json")

        def emit(doc: dict) -> None:
            try:
                req.write(golang.json_marshal(doc) + b"\r\n")
            except RuntimeError:
                pass  # the client went away; the build goes on to its end

        # A client that goes away leaves the build to finish: no step's
        # container or image is left half made.
        await shield(ensureDeferred(build.run(emit)), None, "build")

    async def post_build_prune(self, req: APIRequest) -> None:
        # The classic builder keeps its cache in images (image prune);
        # dockerd 20.10 answers so without BuildKit's cache.
        req.filters()
        req.write_json({"CachesDeleted": None, "SpaceReclaimed": 0})
