"""docker-py 7 against the daemon: version negotiation, version, info, ping
and events."""

import os
import signal
import time

import docker
import pytest

import twistedock

from .conftest import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(default_daemon):
    client = docker.APIClient(base_url=default_daemon.host, version="auto", timeout=30)
    yield client
    client.close()


@pytest.mark.route("GET", "/version")
def test_version_negotiation(api):
    # version="auto" asks GET /version and speaks the ApiVersion it says.
    assert api._version == "1.51"
    assert api.api_version == "1.51"


@pytest.mark.route("GET", "/version")
def test_version(api):
    version = api.version()
    assert version["Platform"]["Name"] == "twistedock"
    assert version["Version"] == twistedock.__version__
    assert version["ApiVersion"] == "1.51"
    assert version["MinAPIVersion"] == "1.24"
    assert version["Os"] == "linux"
    assert version["KernelVersion"] == os.uname().release


@pytest.mark.route("GET", "/info")
def test_info(api, default_daemon):
    info = api.info()
    assert info["DockerRootDir"] == default_daemon.data_root
    assert info["NCPU"] == len(os.sched_getaffinity(0))
    assert info["KernelVersion"] == os.uname().release
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["ServerVersion"] == twistedock.__version__


@pytest.mark.route("GET", "/_ping")
def test_ping(api):
    assert api.ping() is True


@pytest.mark.route("GET", "/_ping")
@pytest.mark.route("GET", "/version")
@pytest.mark.route("GET", "/info")
@pytest.mark.route("GET", "/events")
def test_docker_client_events(daemons):
    daemon = daemons.start(config={"labels": ["py=1"]})
    client = docker.DockerClient(base_url=daemon.host, timeout=30)
    try:
        assert client.ping() is True
        assert client.version()["Platform"]["Name"] == "twistedock"
        daemon_id = client.info()["ID"]
        t0 = round(time.time(), 6)
        daemon.write_config({"labels": ["py=2"]})
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: client.info()["Labels"] == ["py=2"], 10, what="the reload")
        t1 = round(time.time(), 6)
        # --until in the past: the stream ends by itself (else the client's
        # 30 s read timeout fails the test).
        events = list(client.events(since=t0, until=t1, decode=True))
        assert len(events) == 1, events
        event = events[0]
        assert event["Type"] == "daemon"
        assert event["Action"] == "reload"
        assert event["Actor"]["ID"] == daemon_id
        assert event["Actor"]["Attributes"]["labels"] == "[py=2]"

        # Filters go to the daemon as JSON and are applied there.
        assert list(client.events(since=t0, until=t1, decode=True, filters={"type": "container"})) == []
        filtered = list(
            client.events(
                since=t0, until=t1, decode=True, filters={"type": "daemon", "event": "reload"}
            )
        )
        assert [e["Action"] for e in filtered] == ["reload"]
    finally:
        client.close()
