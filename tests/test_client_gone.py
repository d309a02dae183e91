"""A client that leaves before its answer, over a real HTTPChannel: the
handler is cancelled, nothing more is written, nothing is logged as a
failure (APIRequest.gone reads the request's own disconnected flag)."""

import pytest
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.server import Site

from twistedock import logs
from twistedock.server.middleware import APIConfig
from twistedock.server.root import APIResource, compose

from .memory import API


@pytest.fixture
def events():
    seen = []
    globalLogPublisher.addObserver(seen.append)
    was = logs.debug_enabled()
    logs.set_debug(True)
    yield seen
    logs.set_debug(was)
    globalLogPublisher.removeObserver(seen.append)


def failures(events):
    return [event for event in events if "log_failure" in event]


def connect(api, debug=False):
    resource = APIResource(compose(api.routers, APIConfig(debug=debug))) if debug else api.resource
    channel = Site(resource).buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


@pytest.mark.route("POST", "/containers/{name:.*}/wait")
@pytest.mark.parametrize("debug", [False, True])
def test_a_client_leaving_a_wait_cancels_it_quietly(events, debug):
    api = API()
    ensureDeferred(api.containers.create("c1", {}, {}, {}, "1.41"))
    ensureDeferred(api.containers.start("c1"))
    channel, transport = connect(api, debug)
    channel.dataReceived(b"POST /v1.41/containers/c1/wait HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    [waiter] = api.containers.waiters["c1"]
    transport.clear()
    channel.connectionLost(Failure(ConnectionDone()))
    assert waiter.called
    waiter.addErrback(lambda failure: failure.trap(CancelledError))
    assert transport.value() == b""
    assert failures(events) == []
    if debug:
        # The debug middleware's finish listener saw the client gone.
        [logged] = [event for event in events if "duration_ms" in event]
        assert logged["status"] == 499


@pytest.mark.route("GET", "/_ping")
def test_an_answered_request_is_not_gone(events):
    channel, transport = connect(API(), debug=True)
    for _ in range(2):
        channel.dataReceived(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
    answers = transport.value().split(b"HTTP/1.1 ")[1:]
    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [b"200 OK", b"200 OK"]
    assert all(answer.endswith(b"\r\n\r\nOK") for answer in answers)
    assert failures(events) == []
    assert [event["status"] for event in events if "duration_ms" in event] == [200, 200]
