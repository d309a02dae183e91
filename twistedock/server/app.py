"""
A router served: its route table as a Klein app, every handler wrapped in the
middleware once, and how an answer ends (finished, failed, or the connection
taken over), whether the root resource or the app's own resource took the
request.

A handler answers through its L{APIRequest} and returns None, or returns a
resource that takes the connection over (L{twistedock.server.hijack}): Klein
renders a returned resource instead of finishing the request.
"""

from typing import Coroutine, Generator

import attr
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from .. import versions
from ..errors import DockerError, status_for
from ..logs import Logger
from .httputils import APIRequest, encode_json, raw_headers
from .middleware import (
    APIConfig,
    Handler,
    debug_middleware,
    experimental_route,
    minimum_version,
    not_implemented,
    version_middleware,
)
from .mux import ROUTING_MISSES, MuxApp, RouteMap
from .routing import Route

log = Logger()

PAGE_NOT_FOUND = encode_json({"message": "page not found"})


@attr.s(frozen=True, auto_attribs=True)
class ServedRouter:
    """A router as the root resource tries it: its Klein app and Map."""

    name: str
    routes: tuple
    app: MuxApp
    map: RouteMap


def handler_for(router, route: Route, config: APIConfig) -> Handler:
    """The handler of C{route} inside the middleware, as dockerd orders it."""
    if route.handler is None:
        handler = not_implemented(route.method, route.path)
    else:
        handler = getattr(router, route.handler)
    if route.min_version is not None:
        handler = minimum_version(route.method, route.path, route.min_version)(handler)
    if route.experimental:
        handler = experimental_route(config)(handler)
    handler = version_middleware(config)(handler)
    if config.debug:
        handler = debug_middleware()(handler)
    return handler


def build_app(router, config: APIConfig) -> MuxApp:
    """C{router}'s table as a Klein app; misses answer dockerd's 404."""
    app = MuxApp(router.routes, lambda route: endpoint(router.name, handler_for(router, route, config)))
    app.handle_errors(*ROUTING_MISSES)(answer_routing_miss)
    app.handle_errors(Exception)(answer_failure)
    return app


def serve_router(router, config: APIConfig) -> ServedRouter:
    app = build_app(router, config)
    return ServedRouter(router.name, tuple(router.routes), app, RouteMap(app))


def endpoint(router: str, handler: Handler):
    """The Klein endpoint of one route: C{handler} with an L{APIRequest};
    its failures are answered here, where the request's context is.  It
    returns the handler's result, or a Deferred of it when the handler
    waits (most answer without waiting: no Deferred for those)."""

    async def answer(req: APIRequest):
        try:
            result = await handler(req)
        except CancelledError:
            log.info("{method} {uri}: the client went away (499)", method=req.method, uri=req.uri)
            raise
        except Exception:
            answer_error(req, Failure())
            return None
        if result is None:
            end_answer(req)
        return result

    def serve(request: IRequest, **variables):
        return run_coroutine(answer(APIRequest(request, variables, router)))

    return serve


def run_coroutine(coro: Coroutine):
    """Run C{coro} until it waits: its result if it finished, else, as
    C{ensureDeferred} would, a Deferred of the rest (cancelling it cancels
    what the coroutine waits on)."""
    try:
        awaited = coro.send(None)
    except StopIteration as done:
        return done.value
    return Deferred.fromCoroutine(_rest(coro, awaited))


def _rest(coro: Coroutine, awaited) -> Generator:
    """C{coro} from where it waits on C{awaited}, for Twisted's driver: what
    it waits on goes to the driver, whose answer goes back to C{coro}."""
    while True:
        try:
            result = yield awaited
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as error:
            try:
                awaited = coro.throw(error)
            except StopIteration as done:
                return done.value
        else:
            try:
                awaited = coro.send(result)
            except StopIteration as done:
                return done.value


def end_answer(req: APIRequest) -> None:
    """Make C{req}'s answer ready to be finished."""
    if req.gone or req.hijacked:
        return
    request = req.request
    if not request.startedWriting:
        raw_headers(request)[b"Content-Length"] = [b"0"]
    if req.flow is not None:
        # twisted.web wants a streamed answer's producer gone first.
        request.unregisterProducer()


def answer_error(req: APIRequest, failure: Failure) -> None:
    """Answer a handler's failure (status_for says the status)."""
    if not failure.check(DockerError):
        log.failure(
            "Unexpected error in {router} handler for {method} {uri}",
            failure,
            router=req.router,
            method=req.method,
            uri=req.uri,
        )
    if req.gone or req.hijacked:
        # No one to tell, or too late for an HTTP answer: the stream just ends.
        return
    write_error(req, failure.value)
    end_answer(req)


def answer_failure(request: IRequest, failure: Failure) -> bytes:
    """Klein's error handler: a failure outside any handler (a bug) gets
    a JSON 500, never Twisted's HTML page."""
    answer_error(APIRequest(request, {}), failure)
    return b""


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


def answer_not_found(request: IRequest) -> bytes:
    """dockerd's catch-all: 404, JSON, none of the middleware's headers."""
    headers = raw_headers(request)
    headers.pop(b"Server", None)
    request.setResponseCode(404)
    headers[b"Content-Type"] = [b"application/json"]
    headers[b"Content-Length"] = [b"%d" % (len(PAGE_NOT_FOUND),)]
    return PAGE_NOT_FOUND


def answer_routing_miss(request: IRequest, failure: Failure) -> bytes:
    """A request a router alone (its own resource) does not route."""
    return answer_not_found(request)
