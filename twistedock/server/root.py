"""
The composition: every router's Klein app under one root resource.

The root cleans the path (a 301 to the clean one, as gorilla/mux); the
version prefix C{/v{version:[0-9.]+}} comes off, and a versioned path no
route takes is tried bare, as dockerd's registration of every route both
ways amounts to; the routers are tried in registration order (checkpoint
before container), each matching once; and what no router takes, whatever
the method, gets the catch-all: 404 C{{"message":"page not found"}} with none
of the middleware's headers, as dockerd's mux answers.
"""

import re
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import quote, unquote_to_bytes

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from ..logs import Logger
from .app import ServedRouter, answer_failure, answer_not_found, serve_router
from .middleware import APIConfig
from .routing import clean_path, literal_head, literal_tail

log = Logger()

#: gorilla's /v{version:[0-9.]+} before a route's own path.
VERSION_PREFIX = re.compile(r"/v([0-9.]+)(/.*)", re.DOTALL)

Found = Tuple[ServedRouter, str, Dict[str, str]]
Candidate = Tuple[ServedRouter, Optional[FrozenSet[str]]]


def compose(routers: Iterable, config: APIConfig) -> List[ServedRouter]:
    """The routers, in order, each served by its own Klein app."""
    return [serve_router(router, config) for router in routers]


class Routers:
    """The routers in registration order: the first that takes a request.

    A router is asked only if one of its routes for the method can take a
    path with that first and last segment (an index made from the tables),
    so most requests are matched once, by the router that takes them."""

    def __init__(self, routers: Sequence[ServedRouter]) -> None:
        self.routers = tuple(routers)
        self._index: Dict[str, Dict[Optional[str], Tuple[Candidate, ...]]] = {}
        for method in {r.method for router in self.routers for r in router.routes}:
            heads = {literal_head(r.path) for router in self.routers for r in router.routes if r.method == method}
            self._index[method] = {h: self._candidates(method, h) for h in heads}

    def _candidates(self, method: str, first: Optional[str]) -> Tuple[Candidate, ...]:
        """The routers with a route for C{method} whose first segment is a
        variable or C{first}, each with the last segments its routes want
        (None: any)."""
        candidates = []
        for router in self.routers:
            routes = [r for r in router.routes if r.method == method and literal_head(r.path) in (None, first)]
            if routes:
                tails = {literal_tail(r.path) for r in routes}
                candidates.append((router, None if None in tails else frozenset(tails)))
        return tuple(candidates)

    def find(self, method: str, path: str) -> Optional[Found]:
        index = self._index.get(method)
        if index is None:
            return None
        # head(path) and tail(path), inline: this runs on every request.
        candidates = index.get(path[1:].split("/", 1)[0]) or index.get(None, ())
        last = path[path.rfind("/") + 1 :]
        for router, tails in candidates:
            if tails is not None and last not in tails:
                continue
            found = router.map.match(method, path, last)
            if found is not None:
                return router, found[0], found[1]
        return None


class VersionPrefix:
    """The version prefix in front of the routers: versioned first, then bare."""

    def __init__(self, routers: Routers) -> None:
        self.routers = routers

    def find(self, method: str, path: str) -> Optional[Found]:
        versioned = VERSION_PREFIX.fullmatch(path)
        if versioned is not None:
            found = self.routers.find(method, versioned.group(2))
            if found is not None:
                found[2]["version"] = versioned.group(1)
                return found
        return self.routers.find(method, path)


class NotFound(Resource):
    """dockerd's catch-all."""

    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        return answer_not_found(request)


class APIResource(Resource):
    """The root resource: routes every request itself."""

    isLeaf = True

    def __init__(self, routers: Sequence[ServedRouter]) -> None:
        super().__init__()
        self.routers = VersionPrefix(Routers(routers))
        self._find = self.routers.find
        self.not_found = NotFound()

    def find(self, method: str, path: str) -> Optional[Found]:
        """The router, endpoint and variables that take C{method} C{path}
        (clean and decoded), or None."""
        return self.routers.find(method, path)

    def render(self, request: IRequest):
        request.defaultContentType = None
        # Percent escapes and raw bytes alike: UTF-8, the invalid bytes
        # replaced, as dockerd (Go's JSON) shows them back.
        path = request.path
        if b"%" in path:
            path = unquote_to_bytes(path)
        path = path.decode("utf-8", "replace")
        cleaned = clean_path(path)
        if cleaned != path:
            return self._redirect(request, cleaned)
        found = self._find(request.method.decode("ascii", "replace"), path)
        if found is None:
            return self.not_found.render(request)
        router, endpoint, variables = found
        return serve(router, endpoint, variables, request)

    def _redirect(self, request: IRequest, cleaned: str) -> bytes:
        request.responseHeaders.removeHeader(b"server")
        location = quote(cleaned, safe="/:@!$&'()*+,;=~")
        query = request.uri.split(b"?", 1)
        if len(query) == 2:
            location += "?" + query[1].decode("latin-1")
        request.setResponseCode(301)
        request.setHeader("Location", location)
        request.setHeader("Content-Length", "0")
        return b""


def serve(router: ServedRouter, endpoint: str, variables: Dict[str, str], request: IRequest):
    """Run a matched endpoint as Klein's resource does after its own match
    (the function the app's C{execute_endpoint} would call, called directly):
    the handler is cancelled when the client leaves, failures go to the
    app's error answer, a returned resource is rendered (it takes the
    connection over), anything else finishes the request."""
    try:
        result = router.app.handlers[endpoint](request, **variables)
    except Exception:
        answer_failure(request, Failure())
        request.finish()
        return NOT_DONE_YET
    if isinstance(result, Deferred):
        wait_for(result, request)
        return NOT_DONE_YET
    try:
        if result is not None and IResource.providedBy(result):
            request.render(result)
        else:
            request.finish()
    except Exception:
        log.failure("Answering {uri}", Failure(), uri=request.uri)
    return NOT_DONE_YET


def wait_for(d: Deferred, request: IRequest) -> None:
    """Finish C{request} when the endpoint's C{d} fires, unless the client
    left first: then C{d} is cancelled."""
    # After the endpoint's own listener (it marks the request gone first).
    left = []

    def gone(reason) -> None:
        left.append(reason)
        d.cancel()

    request.notifyFinish().addCallbacks(left.append, gone)

    def answered(result) -> None:
        if IResource.providedBy(result):
            request.render(result)
        elif not left:
            request.finish()

    def failed(failure) -> None:
        if left:
            # The client is gone (the handler was cancelled): no one to tell.
            return
        answer_failure(request, failure)
        if not left:
            request.finish()

    d.addCallbacks(answered, failed)
    d.addErrback(lambda failure: log.failure("Answering {uri}", failure, uri=request.uri))
