"""In-memory backends and a StubTreq client over the composed root resource."""

import json

import attr
from treq.testing import StubTreq
from twisted.internet.task import Clock
from zope.interface import implementer

from twistedock.backend.events import EventLog
from twistedock.backend.swarm import InactiveCluster
from twistedock.daemon import build_routers
from twistedock.routers.system import ISystemBackend, PingInfo
from twistedock.server.middleware import APIConfig
from twistedock.server.root import APIResource, compose

BASE = "http://docker"


@implementer(ISystemBackend)
class MemorySystemBackend:
    """Fixed documents and a real event log on a test clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events = EventLog(now=lambda: int(round(clock.seconds() * 1e9)))
        self.info = {"ID": "memory", "Containers": 0, "Images": 0}
        self.fail_with = None

    async def ping(self):
        return PingInfo(builder_version="1", swarm="inactive")

    async def system_info(self):
        if self.fail_with is not None:
            raise self.fail_with
        return dict(self.info)

    async def system_version(self):
        return {"Version": "memory", "ApiVersion": "1.51"}

    async def disk_usage(self, types):
        return {
            "LayersSize": 0,
            "Images": [] if "image" in types else None,
            "Containers": [] if "container" in types else None,
            "Volumes": [] if "volume" in types else None,
            "BuildCache": [] if "build-cache" in types else None,
        }

    async def subscribe_to_events(self, since, until, filters):
        return self.events.subscribe(since, until, filters)

    def unsubscribe_from_events(self, subscription):
        self.events.unsubscribe(subscription)

    async def authenticate(self, auth_config):
        from twistedock.errors import NotImplementedYet

        raise NotImplementedYet("registry login is not implemented yet")


@attr.s(auto_attribs=True)
class Answer:
    code: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        values = self.headers.get(name.lower())
        return values[0] if values else None


class API:
    """The composed resource with in-memory backends, and a client for it."""

    def __init__(self, experimental=False, debug_backend=None, system=None, min_version=None):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)  # a wall-clock time, for since/until
        self.system = system or MemorySystemBackend(self.clock)
        self.routers = build_routers(self.clock, self.system, InactiveCluster(), debug_backend)
        config = APIConfig(experimental=experimental, debug=False)
        if min_version is not None:
            config = attr.evolve(config, min_version=min_version)
        self.resource = APIResource(compose(self.routers, config))
        self.treq = StubTreq(self.resource)

    def request(self, method, path, body=None, headers=None, json_body=None) -> Answer:
        """Make a request that completes; its whole answer."""
        headers = dict(headers or {})
        data = body
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        d = self.treq.request(method, BASE + path, data=data, headers=headers)
        self.treq.flush()
        response = result_of(d)
        content = self.treq.content(response)
        self.treq.flush()
        return Answer(
            response.code,
            {k.decode().lower(): [v.decode() for v in vs] for k, vs in response.headers.getAllRawHeaders()},
            result_of(content),
        )

    def stream(self, method, path):
        """Start a request whose body streams: (response, received chunks, done)."""
        d = self.treq.request(method, BASE + path)
        self.treq.flush()
        response = result_of(d)
        chunks = []
        from treq import collect

        done = collect(response, chunks.append)
        self.treq.flush()
        return response, chunks, done


def result_of(d):
    """The result of a Deferred that has fired; fail the test otherwise."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    from twisted.python.failure import Failure

    if isinstance(result, Failure):
        result.raiseException()
    return result
