"""The system router: ping, version, info, events, disk usage, registry login."""

from typing import Optional

import attr
from zope.interface import Interface

from ..errors import InvalidParameter
from .. import versions
from ..server.httputils import APIRequest, encode_json
from ..server.routing import route
from . import Router
from .image import disk_usage_json

ROUTES = (
    route("OPTIONS", "/{anyroute:.*}", "options"),
    route("GET", "/_ping", "ping"),
    route("HEAD", "/_ping", "ping"),
    route("GET", "/events", "get_events"),
    route("GET", "/info", "get_info"),
    route("GET", "/version", "get_version"),
    route("GET", "/system/df", "get_disk_usage"),
    route("POST", "/auth", "post_auth"),
)

DISK_USAGE_TYPES = ("container", "image", "volume", "build-cache")


@attr.s(frozen=True, auto_attribs=True)
class PingInfo:
    builder_version: str
    swarm: str


class ISystemBackend(Interface):
    """What the system router asks of the daemon."""

    def ping():
        """A L{PingInfo} (async)."""

    def system_info():
        """The /info document (async)."""

    def system_version():
        """The /version document (async)."""

    def disk_usage(types):
        """The /system/df document for the object C{types} asked for (async)."""

    def subscribe_to_events(since, until, filters):
        """C{(past events, subscription)} for C{GET /events} (async)."""

    def unsubscribe_from_events(subscription):
        """Stop delivering to C{subscription}."""

    def authenticate(auth_config):
        """Log in to a registry: C{{"Status", "IdentityToken"}} (async)."""


def event_time(value: Optional[str]) -> Optional[int]:
    """A C{since}/C{until} value (C{seconds[.fraction]}) in nanoseconds."""
    if not value:
        return None
    seconds, dot, fraction = value.partition(".")
    try:
        whole = int(seconds, 10)
    except ValueError:
        raise InvalidParameter('strconv.ParseInt: parsing "%s": invalid syntax' % (seconds,))
    nanos = 0
    if dot:
        try:
            nanos = int(fraction, 10)
        except ValueError:
            raise InvalidParameter(
                'strconv.ParseInt: parsing "%s": invalid syntax' % (fraction,)
            )
        nanos = int(nanos * 10 ** (9 - len(fraction)))
    if whole == -1 and not dot:
        return None
    return whole * 1_000_000_000 + nanos


class SystemRouter(Router):
    name = "system"
    routes = ROUTES

    def __init__(self, backend: ISystemBackend, reactor) -> None:
        self.backend = backend
        self.reactor = reactor

    async def options(self, req: APIRequest) -> None:
        req.write_status(200)

    async def ping(self, req: APIRequest) -> None:
        info = await self.backend.ping()
        req.set_header("Cache-Control", "no-cache, no-store, must-revalidate")
        req.set_header("Pragma", "no-cache")
        req.set_header("Builder-Version", info.builder_version)
        req.set_header("Swarm", info.swarm)
        req.set_header("Content-Type", "text/plain; charset=utf-8")
        body = b"" if req.method == "HEAD" else b"OK"
        req.set_header("Content-Length", str(len(body)))
        req.write(body)

    async def get_info(self, req: APIRequest) -> None:
        req.write_json(info_json(await self.backend.system_info(), req.version))

    async def get_version(self, req: APIRequest) -> None:
        req.write_json(await self.backend.system_version())

    async def get_disk_usage(self, req: APIRequest) -> None:
        asked = req.query_all("type")
        if not asked or versions.less_than(req.version, "1.42"):
            types = set(DISK_USAGE_TYPES)
        else:
            for kind in asked:
                if kind not in DISK_USAGE_TYPES:
                    raise InvalidParameter("unknown object type: %s" % (kind,))
            types = set(asked)
        usage = await self.backend.disk_usage(types)
        if usage.get("Images"):
            usage["Images"] = [disk_usage_json(image, req.version) for image in usage["Images"]]
        if versions.less_than(req.version, "1.42"):
            # dockerd 20.10: the build cache a nil slice when empty, and the
            # deprecated BuilderSize (its total) still written.
            cache = usage.get("BuildCache") or None
            usage["BuildCache"] = cache
            usage["BuilderSize"] = sum(record.get("Size", 0) for record in cache or ())
        req.write_json(usage)

    async def post_auth(self, req: APIRequest) -> None:
        config = req.json_body({})
        req.write_json(await self.backend.authenticate(config))

    async def get_events(self, req: APIRequest) -> None:
        since_text, until_text = req.query("since", ""), req.query("until", "")
        since, until = event_time(since_text), event_time(until_text)
        filters = req.filters()
        only_past = False
        timer = None
        if until is not None:
            if until < (since or 0):
                raise InvalidParameter(
                    "`since` time (%s) cannot be after `until` time (%s)"
                    % (since_text, until_text)
                )
            now = int(self.reactor.seconds() * 1_000_000_000)
            only_past = until < now
        buffered, subscription = await self.backend.subscribe_to_events(
            since, until, filters
        )
        try:
            req.start_stream("application/json")
            for event in buffered:
                req.write(encode_json(event.to_json()))
            if only_past:
                return
            if until is not None:
                delay = (until - self.reactor.seconds() * 1_000_000_000) / 1e9
                timer = self.reactor.callLater(max(delay, 0), subscription.close)
            while True:
                event = await subscription.get()
                if event is None:
                    return
                req.write(encode_json(event.to_json()))
        finally:
            if timer is not None and timer.active():
                timer.cancel()
            self.backend.unsubscribe_from_events(subscription)


#: The external tools' commits in GET /info.
_COMMITS = ("ContainerdCommit", "RuncCommit", "InitCommit")

#: RegistryConfig's lists that API 1.49 removed.
_NONDISTRIBUTABLE = ("AllowNondistributableArtifactsCIDRs", "AllowNondistributableArtifactsHostnames")


def info_json(info: dict, version: str) -> dict:
    """
    GET /info for API C{version}: before 1.42 the KernelMemory flags
    (dockerd 20.10 writes them; later versions leave them out), CDISpecDirs
    only from 1.46 where it was added, each commit's C{Expected} (its own
    ID) and the registry's AllowNondistributableArtifacts lists before 1.49,
    which removed them, the BridgeNf flags before 1.50, which removed them.
    """
    doc = dict(info)
    if not versions.less_than(version, "1.42"):
        doc.pop("KernelMemory", None)
        doc.pop("KernelMemoryTCP", None)
    if versions.less_than(version, "1.46"):
        doc.pop("CDISpecDirs", None)
    if versions.less_than(version, "1.49"):
        for key in _COMMITS:
            if isinstance(doc.get(key), dict):
                doc[key] = dict(doc[key], Expected=doc[key].get("ID", ""))
    elif isinstance(doc.get("RegistryConfig"), dict):
        registry = dict(doc["RegistryConfig"])
        for key in _NONDISTRIBUTABLE:
            registry.pop(key, None)
        doc["RegistryConfig"] = registry
    if not versions.less_than(version, "1.50"):
        doc.pop("BridgeNfIptables", None)
        doc.pop("BridgeNfIp6tables", None)
    return doc
