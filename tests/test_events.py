"""The event log and GET /events: history, live feed, since/until, filters."""

import json

import pytest

from twistedock.backend.events import HISTORY_LIMIT, EventLog, event_matches
from twistedock.filters import Filters

from .memory import API

SECOND = 1_000_000_000


def lines(chunks):
    return [json.loads(line) for line in b"".join(chunks).splitlines() if line]


def log_at(api, seconds, *args, **kwargs):
    api.clock.advance(seconds - api.clock.seconds())
    return api.system.events.log(*args, **kwargs)


@pytest.mark.route("GET", "/events")
def test_event_published_while_connected_is_streamed():
    api = API()
    response, chunks, done = api.stream("GET", "/v1.41/events")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type") == ["application/json"]
    assert chunks == []
    api.system.events.log("daemon", "reload", "id1", {"name": "host"})
    api.treq.flush()
    (event,) = lines(chunks)
    assert event["Type"] == "daemon"
    assert event["Action"] == "reload"
    assert event["Actor"] == {"ID": "id1", "Attributes": {"name": "host"}}
    assert event["scope"] == "local"
    assert event["time"] == 1_700_000_000
    assert event["timeNano"] == 1_700_000_000 * SECOND
    assert "status" not in event  # only container and image events carry it
    assert not done.called


@pytest.mark.route("GET", "/events")
def test_since_until_replays_history_and_ends():
    api = API()
    log_at(api, 1_700_000_010, "container", "create", "c1", {"image": "busybox", "name": "a"})
    log_at(api, 1_700_000_020, "container", "start", "c1", {"image": "busybox", "name": "a"})
    log_at(api, 1_700_000_030, "container", "die", "c1", {"image": "busybox", "name": "a"})
    answer = api.request("GET", "/events?since=1700000015&until=1700000025")
    events = [json.loads(line) for line in answer.body.splitlines()]
    assert [e["Action"] for e in events] == ["start"]
    assert events[0]["status"] == "start"
    assert events[0]["id"] == "c1"
    assert events[0]["from"] == "busybox"
    # until alone: everything up to it
    answer = api.request("GET", "/events?until=1700000025.5")
    assert [json.loads(l)["Action"] for l in answer.body.splitlines()] == ["create", "start"]


@pytest.mark.route("GET", "/events")
def test_future_until_streams_then_ends():
    api = API()
    log_at(api, 1_700_000_100, "daemon", "reload", "d")
    response, chunks, done = api.stream("GET", "/events?since=1700000050&until=1700000200")
    assert [e["Action"] for e in lines(chunks)] == ["reload"]
    api.system.events.log("network", "create", "n1", {"name": "net"})
    api.treq.flush()
    assert [e["Action"] for e in lines(chunks)] == ["reload", "create"]
    assert not done.called
    api.clock.advance(150)
    api.treq.flush()
    assert done.called
    assert api.system.events.listeners == 0


@pytest.mark.route("GET", "/events")
def test_filters_apply_to_history_and_live_events():
    api = API()
    log_at(api, 1_700_000_010, "container", "start", "c1", {"name": "web", "image": "busybox:latest"})
    log_at(api, 1_700_000_011, "container", "start", "c2", {"name": "db", "image": "redis"})
    log_at(api, 1_700_000_012, "image", "tag", "sha256:abc", {"name": "busybox:1"})
    filters = json.dumps({"container": {"web": True}})
    response, chunks, done = api.stream("GET", "/events?since=1700000000&filters=" + filters)
    assert [e["id"] for e in lines(chunks)] == ["c1"]
    api.system.events.log("container", "stop", "c2", {"name": "db", "image": "redis"})
    api.system.events.log("container", "stop", "c1", {"name": "web", "image": "busybox"})
    api.treq.flush()
    assert [(e["id"], e["Action"]) for e in lines(chunks)] == [("c1", "start"), ("c1", "stop")]


@pytest.mark.route("GET", "/events")
def test_bad_since_until_and_filters():
    api = API()
    answer = api.request("GET", "/v1.41/events?since=10&until=5")
    assert answer.code == 400
    assert answer.json() == {"message": "`since` time (10) cannot be after `until` time (5)"}
    answer = api.request("GET", "/events?since=abc")
    assert answer.code == 400
    assert answer.json() == {"message": 'strconv.ParseInt: parsing "abc": invalid syntax'}
    answer = api.request("GET", "/events?until=1&filters=xx")
    assert answer.code == 400
    assert answer.json()["message"].startswith("invalid filter")


def test_history_is_bounded():
    now = [0]
    events = EventLog(now=lambda: now[0])
    for i in range(HISTORY_LIMIT + 10):
        now[0] = i + 1
        events.log("daemon", "reload", str(i))
    buffered, subscription = events.subscribe(0, None, Filters())
    assert len(buffered) == HISTORY_LIMIT
    assert buffered[0].actor.id == "10"


def event(type_, action, actor, **attributes):
    from twistedock.backend.events import Actor, Event

    return Event(type_, action, Actor(actor, attributes), 1)


@pytest.mark.parametrize(
    "filters, matches",
    [
        ({}, True),
        ({"type": ["container"]}, True),
        ({"type": ["image"]}, False),
        ({"event": ["start"]}, True),
        ({"event": ["stop", "start"]}, True),
        ({"event": ["sta"]}, False),
        ({"event": ["exec_create", "star"]}, True),  # fuzzy once exec_create is asked for
        ({"container": ["abc"]}, True),  # ID prefix
        ({"container": ["web"]}, True),  # name
        ({"container": ["other"]}, False),
        ({"image": ["busybox"]}, True),  # familiar name of docker.io/library/busybox:1.36
        ({"image": ["docker.io/library/busybox:1.36"]}, True),
        ({"image": ["alpine"]}, False),
        ({"label": ["tier"]}, True),
        ({"label": ["tier=front"]}, True),
        ({"label": ["tier=back"]}, False),
        ({"label": ["tier", "missing"]}, False),
        ({"scope": ["local"]}, True),
        ({"scope": ["swarm"]}, False),
        ({"network": ["web"]}, True),  # a network filter alone passes a container event
    ],
)
def test_event_filters(filters, matches):
    ev = event(
        "container", "start", "abcdef", name="web", image="docker.io/library/busybox:1.36", tier="front"
    )
    assert event_matches(Filters(filters), ev) is matches


@pytest.mark.route("GET", "/events")
def test_client_going_away_ends_its_subscription():
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure
    from twisted.web.test.requesthelper import DummyRequest

    api = API()
    request = DummyRequest([b""])
    request.method = b"GET"
    request.uri = request.path = b"/v1.41/events"
    # DummyRequest drives a push producer in a loop; a real request does not.
    request.registerProducer = lambda producer, streaming: None
    api.resource.render(request)
    assert api.system.events.listeners == 1
    request.processingFailed(Failure(ConnectionDone()))
    assert api.system.events.listeners == 0
