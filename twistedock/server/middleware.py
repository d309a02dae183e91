"""
Middleware: wrappers applied once to every handler when the route tables are
composed.  Their order on a request is dockerd's: debug logging, then the
API version check and headers, then the experimental header (one wrapper,
L{version_middleware}), then the route's own wrappers (experimental gate,
minimum version), then the handler.
"""

import functools
import json
import time
from typing import Awaitable, Callable, Optional

import attr

from twisted.web.resource import IResource

from .. import __version__
from ..errors import InvalidParameter, NotImplementedYet
from ..logs import Logger
from .. import versions
from .httputils import APIRequest, raw_headers

#: A handler answers through its APIRequest and returns None, or returns a
#: resource that takes the connection over (attach, exec start).
Handler = Callable[[APIRequest], Awaitable[Optional[IResource]]]
Middleware = Callable[[Handler], Handler]

log = Logger()

EXPERIMENTAL_DISABLED = (
    "This experimental feature is disabled by default. Start the Docker daemon "
    "in experimental mode in order to enable it."
)

#: Keys whose values dockerd's debug log masks in request bodies.
SECRET_KEYS = frozenset(
    ["data", "jointoken", "password", "secret", "signingcakey", "unlockkey"]
)


@attr.s(frozen=True, auto_attribs=True)
class APIConfig:
    """What the server layer needs to know of the daemon's configuration."""

    experimental: bool = False
    debug: bool = False
    min_version: str = versions.MIN_API_VERSION
    max_version: str = versions.MAX_API_VERSION
    server_version: str = __version__

    @property
    def server_header(self) -> str:
        return "twistedock/%s (linux)" % (self.server_version,)


def version_middleware(config: APIConfig) -> Middleware:
    """dockerd's version middleware, then its experimental middleware, in
    one wrapper (both only set headers and check the version): Server,
    Api-Version and Ostype; 400 when the version is too old or too new;
    then Docker-Experimental (not on that 400, as dockerd); C{req.version}
    (a bare path: the newest)."""
    newest = config.max_version

    @functools.lru_cache(maxsize=64)
    def refusal(version: str) -> Optional[str]:
        """Why C{version} is refused, or None (asked on every request)."""
        if versions.less_than(version, config.min_version):
            return (
                "client version %s is too old. Minimum supported API version "
                "is %s, please upgrade your client to a newer version"
                % (version, config.min_version)
            )
        if versions.greater_than(version, newest):
            return "client version %s is too new. Maximum supported API version is %s" % (
                version, newest,
            )
        return None

    # Encoded once; set straight into the response's headers (a new list
    # each time: see raw_headers).
    server = config.server_header.encode("utf-8")
    api_version = newest.encode("ascii")
    experimental = b"true" if config.experimental else b"false"

    def wrap(handler: Handler) -> Handler:
        async def versioned(req: APIRequest) -> Optional[IResource]:
            headers = raw_headers(req.request)
            headers[b"Server"] = [server]
            headers[b"Api-Version"] = [api_version]
            headers[b"Ostype"] = [b"linux"]
            version = req.vars.get("version") or newest
            refused = refusal(version)
            if refused is not None:
                raise InvalidParameter(refused)
            req.version = version
            headers[b"Docker-Experimental"] = [experimental]
            return await handler(req)

        return versioned

    return wrap


def mask_secrets(value):
    """A copy of a decoded JSON body with secret values replaced."""
    if isinstance(value, dict):
        return {
            k: "*****" if k.lower() in SECRET_KEYS else mask_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def debug_middleware(clock=time) -> Middleware:
    """Log each request and, when it finishes, its status and duration."""

    def wrap(handler: Handler) -> Handler:
        async def logged(req: APIRequest) -> Optional[IResource]:
            started = clock.monotonic()
            body: Optional[str] = None
            request = req.request
            if req.method == "POST":
                content_type = req.header("Content-Type") or ""
                raw = req.body()
                if content_type.startswith("application/json") and 0 < len(raw) <= 4096:
                    try:
                        body = json.dumps(mask_secrets(json.loads(raw)))
                    except ValueError:
                        body = None
            log.debug("Calling {method} {uri}", method=req.method, uri=req.uri, vars=req.vars)
            if body is not None:
                log.debug("form data: {form_data}", form_data=body)

            def finished(_):
                log.debug(
                    "{method} {uri} {status} {duration_ms:.1f}ms",
                    method=req.method,
                    uri=req.uri,
                    status=499 if req.gone else request.code,
                    duration_ms=(clock.monotonic() - started) * 1000,
                )

            request.notifyFinish().addBoth(finished)
            return await handler(req)

        return logged

    return wrap


def experimental_route(config: APIConfig) -> Middleware:
    """The gate of an experimental route: 501 unless the daemon is experimental."""

    def wrap(handler: Handler) -> Handler:
        if config.experimental:
            return handler

        async def disabled(req: APIRequest) -> None:
            raise NotImplementedYet(EXPERIMENTAL_DISABLED)

        return disabled

    return wrap


def minimum_version(method: str, template: str, minimum: str) -> Middleware:
    def wrap(handler: Handler) -> Handler:
        async def gated(req: APIRequest) -> Optional[IResource]:
            if req.version is not None and versions.less_than(req.version, minimum):
                raise InvalidParameter(
                    "%s %s requires minimum API version %s" % (method, template, minimum)
                )
            return await handler(req)

        return gated

    return wrap


def not_implemented(method: str, template: str) -> Handler:
    """The handler of a route twistedock lists but does not serve yet."""

    async def unimplemented(req: APIRequest) -> None:
        raise NotImplementedYet("%s %s is not implemented yet" % (method, template))

    return unimplemented
