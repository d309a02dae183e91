"""
The composition: every router's route table becomes one root resource.

Each route is served under the version prefix and bare, in registration
order (the first match wins), with the middleware wrapped around its handler
once, here.  Anything that matches no route, whatever the method, gets the
catch-all: 404 C{{"message":"page not found"}} with none of the middleware's
headers, as dockerd's mux answers.
"""

from typing import Iterable, List, Sequence
from urllib.parse import quote, unquote

from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..errors import DockerError, status_for
from ..logs import Logger
from .. import versions
from .httputils import APIRequest, encode_json
from .middleware import (
    APIConfig,
    Handler,
    debug_middleware,
    experimental_middleware,
    experimental_route,
    minimum_version,
    not_implemented,
    version_middleware,
)
from .routing import VERSION_PREFIX, CompiledRoute, clean_path, compile_template, match_route

log = Logger()

PAGE_NOT_FOUND = encode_json({"message": "page not found"})


def _handler_for(router, route, config: APIConfig) -> Handler:
    if route.handler is None:
        handler = not_implemented(route.method, route.path)
    else:
        handler = getattr(router, route.handler)
    if route.min_version is not None:
        handler = minimum_version(route.method, route.path, route.min_version)(handler)
    if route.experimental:
        handler = experimental_route(config)(handler)
    handler = experimental_middleware(config)(handler)
    handler = version_middleware(config)(handler)
    if config.debug:
        handler = debug_middleware()(handler)
    return handler


def compose(routers: Iterable, config: APIConfig) -> List[CompiledRoute]:
    """The routes of C{routers}, in order, each versioned then bare."""
    compiled: List[CompiledRoute] = []
    for router in routers:
        for route in router.routes:
            handler = _handler_for(router, route, config)
            for template in (VERSION_PREFIX + route.path, route.path):
                compiled.append(
                    CompiledRoute(route, router.name, compile_template(template), handler)
                )
    return compiled


def write_error(req: APIRequest, error: BaseException) -> None:
    """Answer C{error} as dockerd's makeHTTPHandler does."""
    request = req.request
    status = status_for(error)
    message = str(error) if isinstance(error, DockerError) else _unexpected(error)
    if status >= 500:
        log.error(
            "Handler for {method} {path} returned error: {message}",
            method=req.method,
            path=req.uri,
            message=message,
        )
    if req.started:
        # The status is gone already: a stream can only end.
        return
    request.setResponseCode(status)
    version = req.vars.get("version")
    if version and versions.less_than(version, "1.24"):
        # Clients too old for JSON errors still get a readable message.
        data = (message + "\n").encode("utf-8")
        request.setHeader("Content-Type", "text/plain; charset=utf-8")
        request.setHeader("X-Content-Type-Options", "nosniff")
    else:
        data = encode_json({"message": message})
        request.setHeader("Content-Type", "application/json")
    if status == 304:
        request.write(b"")
        return
    request.setHeader("Content-Length", str(len(data)))
    request.write(data)


def _unexpected(error: BaseException) -> str:
    text = str(error)
    return text if text else type(error).__name__


class APIResource(Resource):
    """The root resource: routes every request itself."""

    isLeaf = True

    def __init__(self, routes: Sequence[CompiledRoute]) -> None:
        super().__init__()
        self.routes = routes

    def render(self, request):
        request.defaultContentType = None
        raw_path = request.path.decode("latin-1")
        path = unquote(raw_path, encoding="utf-8", errors="replace")
        cleaned = clean_path(path)
        if cleaned != path:
            return self._redirect(request, cleaned)
        method = request.method.decode("ascii", "replace")
        compiled, variables = match_route(self.routes, method, path)
        if compiled is None:
            return self._not_found(request)
        req = APIRequest(request, variables)
        # Asked for before the handler runs, so it is told first when the
        # client goes away: every later listener sees req.gone.
        finished = request.notifyFinish()
        d = ensureDeferred(compiled.handler(req))

        def gone(_):
            req.gone = True
            d.cancel()

        finished.addErrback(gone)
        d.addErrback(self._failed, req, compiled)
        d.addBoth(self._finish, req)
        return NOT_DONE_YET

    def _failed(self, failure: Failure, req: APIRequest, compiled: CompiledRoute):
        if failure.check(CancelledError):
            log.info(
                "{method} {uri}: the client went away (499)", method=req.method, uri=req.uri
            )
            return None
        if not failure.check(DockerError):
            log.failure(
                "Unexpected error in {router} handler for {method} {uri}",
                failure,
                router=compiled.router,
                method=req.method,
                uri=req.uri,
            )
        if req.hijacked:
            # Too late for an HTTP answer: the stream just ends.
            return None
        if not req.gone:
            write_error(req, failure.value)
        return None

    def _finish(self, result, req: APIRequest):
        request = req.request
        if not request.finished and not req.gone and not req.hijacked:
            if not request.startedWriting:
                request.setHeader("Content-Length", "0")
            if req.flow is not None:
                # twisted.web wants a streamed answer's producer gone first.
                request.unregisterProducer()
            request.finish()

    def _not_found(self, request):
        request.responseHeaders.removeHeader(b"server")
        request.setResponseCode(404)
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Content-Length", str(len(PAGE_NOT_FOUND)))
        return PAGE_NOT_FOUND

    def _redirect(self, request, cleaned: str):
        request.responseHeaders.removeHeader(b"server")
        location = quote(cleaned, safe="/:@!$&'()*+,;=~")
        query = request.uri.split(b"?", 1)
        if len(query) == 2:
            location += "?" + query[1].decode("latin-1")
        request.setResponseCode(301)
        request.setHeader("Location", location)
        request.setHeader("Content-Length", "0")
        return b""
