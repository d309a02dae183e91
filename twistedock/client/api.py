"""L{DockerClient}: requests, API version negotiation and error mapping, once,
for the resource groups (C{containers}, C{images}, ...)."""

import json as _json
import os
from typing import Mapping, Optional
from urllib.parse import quote, urlencode

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError
from twisted.web._newclient import ResponseFailed, ResponseNeverReceived

from ..versions import compare
from .errors import DaemonUnreachable, DockerClientError, StreamInterrupted, error_for
from .hijack import hijack
from .hosts import DockerHost, TLSConfig, host_from_environ, parse_host
from .streams import BodyStream, JSONStream, body_producer
from .transport import agent_for, endpoint_for

#: The highest API version this client speaks; a daemon speaking less is
#: spoken to in its own (the lower of the two).
MAX_API_VERSION = "1.51"
BASE = "http://docker"


def segment(name: str) -> str:
    """A name or ID as one path segment."""
    return quote(str(name), safe="")


def encode_filters(filters) -> Optional[str]:
    """C{{"label": ["a=b"], "status": "running"}} as the API's JSON map of
    lists; a string is passed as it is."""
    if filters is None or isinstance(filters, str):
        return filters
    return _json.dumps({k: [v] if isinstance(v, str) else list(v) for k, v in filters.items()})


def query(params: Optional[Mapping]) -> str:
    """A query string: None left out, booleans as 1/0, filters as JSON."""
    if not params:
        return ""
    items = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        elif key == "filters":
            value = encode_filters(value)
        elif isinstance(value, dict):
            value = _json.dumps(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                items.append((key, str(v)))
            continue
        items.append((key, str(value)))
    return "?" + urlencode(items) if items else ""


async def content(response) -> bytes:
    """A whole (small) answer's body; a cut connection as L{StreamInterrupted}."""
    try:
        return await response.content()
    except ResponseFailed as e:
        raise StreamInterrupted("the answer's body", e)


class DockerClient:
    """An Engine API client.  C{http} is treq's C{HTTPClient} (or a
    C{StubTreq} in tests), C{endpoint} the client endpoint hijacked
    connections use (None: attach and exec are not possible), C{version}
    the API version to speak (None: negotiated with C{/_ping} on first
    use)."""

    def __init__(self, http, endpoint=None, version: Optional[str] = None, host: Optional[DockerHost] = None,
                 pool=None, reactor=None) -> None:
        from .checkpoints import Checkpoints
        from .containers import Containers
        from .images import Images
        from .system import Events, System
        from .volumes import Networks, Volumes

        self.http = http
        self.endpoint = endpoint
        self.host = host
        self._pool = pool
        self._call_later = reactor.callLater if reactor is not None else None
        self._version = version
        self._waiters: Optional[list] = None
        self.containers = Containers(self)
        self.checkpoints = Checkpoints(self)
        self.images = Images(self)
        self.volumes = Volumes(self)
        self.networks = Networks(self)
        self.system = System(self)
        self.events = Events(self)

    @classmethod
    def from_env(cls, reactor, environ=None, version: Optional[str] = None) -> "DockerClient":
        """The daemon the docker CLI would use (DOCKER_HOST, the TLS
        variables, the current context), in the API version of
        DOCKER_API_VERSION if set."""
        environ = os.environ if environ is None else environ
        return cls.for_host(reactor, host_from_environ(environ),
                            version=version or environ.get("DOCKER_API_VERSION") or None)

    @classmethod
    def for_host(cls, reactor, host, tls: Optional[TLSConfig] = None,
                 version: Optional[str] = None) -> "DockerClient":
        """C{host}: a L{DockerHost} or a URL (C{unix:///path},
        C{tcp://host:port}, with C{tls} for TLS)."""
        if isinstance(host, str):
            host = parse_host(host, tls)
        agent = agent_for(reactor, host)
        return cls(HTTPClient(agent), endpoint=endpoint_for(reactor, host), version=version, host=host,
                   pool=agent._pool, reactor=reactor)

    async def __aenter__(self) -> "DockerClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    def close(self) -> Deferred:
        """Close the idle connections kept for the next requests (also at
        the end of C{async with client:})."""
        if self._pool is None:
            d = Deferred()
            d.callback(None)
            return d
        return self._pool.closeCachedConnections()

    # -- the API version -------------------------------------------------

    async def api_version(self) -> str:
        """The version spoken: the daemon's (from C{/_ping}'s Api-Version)
        if lower than this client's, else this client's."""
        if self._version is not None:
            return self._version
        if self._waiters is not None:
            waiting = Deferred()
            self._waiters.append(waiting)
            return await waiting
        self._waiters = []
        try:
            response = await self._send("GET", BASE + "/_ping")
            await content(response)
        except BaseException as e:
            waiters, self._waiters = self._waiters, None
            for waiting in waiters:
                waiting.errback(e)
            raise
        offered = (response.headers.getRawHeaders("Api-Version") or [""])[0]
        self._version = offered if offered and compare(offered, MAX_API_VERSION) < 0 else MAX_API_VERSION
        waiters, self._waiters = self._waiters, None
        for waiting in waiters:
            waiting.callback(self._version)
        return self._version

    async def _send(self, method: str, url: str, **kwargs):
        """treq's request; a failed connection as L{DaemonUnreachable}."""
        try:
            return await self.http.request(method, url, unbuffered=True, **kwargs)
        except (ConnectError, ResponseNeverReceived) as e:
            reasons = getattr(e, "reasons", [])
            if any(r.check(CancelledError) for r in reasons):
                raise CancelledError()
            raise DaemonUnreachable(self.host.url if self.host is not None else BASE, e)
        except ResponseFailed as e:
            raise StreamInterrupted("the answer's head", e)

    async def url(self, path: str, params=None) -> str:
        return "%s/v%s%s%s" % (BASE, await self.api_version(), path, query(params))

    # -- requests --------------------------------------------------------

    async def request(self, method: str, path: str, params=None, json=None, body=None, headers=None):
        """The answer (its body not read yet) to a request; an L{APIError}
        for an error status (304 included: L{NotModified})."""
        url = await self.url(path, params)
        headers = dict(headers or {})
        data = None
        if json is not None:
            data = _json.dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        elif body is not None:
            data = body_producer(body)
        response = await self._send(method, url, data=data, headers=headers or None)
        if response.code >= 300:
            raise error_for(response.code, await content(response))
        return response

    async def json(self, method: str, path: str, params=None, json=None, body=None, headers=None):
        """The answer's JSON document (None for an empty body)."""
        response = await self.request(method, path, params, json=json, body=body, headers=headers)
        text = await content(response)
        if not text.strip():
            return None
        try:
            return _json.loads(text)
        except ValueError:
            raise DockerClientError("%s %s: not JSON: %r" % (method, path, text[:200]))

    async def call(self, method: str, path: str, params=None, json=None, body=None, headers=None):
        """A request whose answer has no body worth reading: the answer's
        headers (Twisted's C{Headers})."""
        response = await self.request(method, path, params, json=json, body=body, headers=headers)
        await content(response)
        return response.headers

    async def stream(self, method: str, path: str, params=None, json=None, body=None, headers=None) -> BodyStream:
        """The answer's body as a L{BodyStream}, read as it comes."""
        response = await self.request(method, path, params, json=json, body=body, headers=headers)
        return BodyStream(response, call_later=self._call_later)

    async def json_stream(self, method: str, path: str, params=None, json=None, body=None,
                          headers=None) -> JSONStream:
        return JSONStream(await self.stream(method, path, params, json=json, body=body, headers=headers))

    async def hijack(self, method: str, path: str, params=None, json=None, multiplexed=None):
        """A hijacked connection (attach, exec start)."""
        if self.endpoint is None:
            raise DockerClientError("this client has no endpoint to hijack a connection with")
        target = "/v%s%s%s" % (await self.api_version(), path, query(params))
        try:
            return await hijack(self.endpoint, method, target, json, multiplexed, self._call_later)
        except ConnectError as e:
            raise DaemonUnreachable(self.host.url if self.host is not None else BASE, e)
