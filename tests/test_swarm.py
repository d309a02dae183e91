"""The swarm routes answer as dockerd does on a node outside a swarm."""

import pytest

from twistedock.backend.swarm import NOT_A_MANAGER, NOT_IN_A_SWARM

from .memory import API

CASES = [
    ("GET", "/swarm", None, 503, NOT_A_MANAGER),
    ("GET", "/swarm/unlockkey", None, 503, NOT_A_MANAGER),
    ("POST", "/swarm/leave", {}, 503, NOT_IN_A_SWARM),
    ("POST", "/swarm/unlock", {"UnlockKey": "x"}, 503, NOT_A_MANAGER),
    ("POST", "/swarm/update", {}, 400, "invalid swarm version '': strconv.ParseUint: parsing \"\": invalid syntax"),
    ("POST", "/swarm/update?version=3", {}, 503, NOT_A_MANAGER),
    ("GET", "/services", None, 503, NOT_A_MANAGER),
    ("GET", "/services/x", None, 503, NOT_A_MANAGER),
    ("POST", "/services/create", {}, 503, NOT_A_MANAGER),
    ("POST", "/services/x/update", {}, 400, "invalid service version '': strconv.ParseUint: parsing \"\": invalid syntax"),
    ("DELETE", "/services/x", None, 503, NOT_A_MANAGER),
    ("GET", "/services/x/logs", None, 400, "Bad parameters: you must choose at least one stream"),
    ("GET", "/services/x/logs?stdout=1", None, 503, NOT_A_MANAGER),
    ("GET", "/nodes", None, 503, NOT_A_MANAGER),
    ("GET", "/nodes/x", None, 503, NOT_A_MANAGER),
    ("DELETE", "/nodes/x", None, 503, NOT_A_MANAGER),
    ("POST", "/nodes/x/update", {}, 400, "invalid node version '': strconv.ParseUint: parsing \"\": invalid syntax"),
    ("GET", "/tasks", None, 503, NOT_A_MANAGER),
    ("GET", "/tasks/x", None, 503, NOT_A_MANAGER),
    ("GET", "/tasks/x/logs", None, 400, "Bad parameters: you must choose at least one stream"),
    ("GET", "/secrets", None, 503, NOT_A_MANAGER),
    ("GET", "/secrets/x", None, 503, NOT_A_MANAGER),
    ("POST", "/secrets/create", {}, 503, NOT_A_MANAGER),
    ("POST", "/secrets/x/update", {}, 400, "invalid secret version"),
    ("DELETE", "/secrets/x", None, 503, NOT_A_MANAGER),
    ("GET", "/configs", None, 503, NOT_A_MANAGER),
    ("GET", "/configs/x", None, 503, NOT_A_MANAGER),
    ("POST", "/configs/create", {}, 503, NOT_A_MANAGER),
    ("POST", "/configs/x/update", {}, 400, "invalid config version"),
    ("DELETE", "/configs/x", None, 503, NOT_A_MANAGER),
    ("GET", "/services?filters=xx", None, 400, None),
]


def test_messages_are_dockerds():
    assert NOT_A_MANAGER == (
        'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
        "to connect this node to swarm and try again."
    )


@pytest.mark.route("POST", "/swarm/leave")
@pytest.mark.route("GET", "/swarm")
@pytest.mark.route("GET", "/swarm/unlockkey")
@pytest.mark.route("POST", "/swarm/update")
@pytest.mark.route("POST", "/swarm/unlock")
@pytest.mark.route("GET", "/services")
@pytest.mark.route("GET", "/services/{id}")
@pytest.mark.route("POST", "/services/create")
@pytest.mark.route("POST", "/services/{id}/update")
@pytest.mark.route("DELETE", "/services/{id}")
@pytest.mark.route("GET", "/services/{id}/logs")
@pytest.mark.route("GET", "/nodes")
@pytest.mark.route("GET", "/nodes/{id}")
@pytest.mark.route("DELETE", "/nodes/{id}")
@pytest.mark.route("POST", "/nodes/{id}/update")
@pytest.mark.route("GET", "/tasks")
@pytest.mark.route("GET", "/tasks/{id}")
@pytest.mark.route("GET", "/tasks/{id}/logs")
@pytest.mark.route("GET", "/secrets")
@pytest.mark.route("POST", "/secrets/create")
@pytest.mark.route("DELETE", "/secrets/{id}")
@pytest.mark.route("GET", "/secrets/{id}")
@pytest.mark.route("POST", "/secrets/{id}/update")
@pytest.mark.route("GET", "/configs")
@pytest.mark.route("POST", "/configs/create")
@pytest.mark.route("DELETE", "/configs/{id}")
@pytest.mark.route("GET", "/configs/{id}")
@pytest.mark.route("POST", "/configs/{id}/update")
@pytest.mark.parametrize("method, path, body, status, message", CASES)
def test_outside_a_swarm(method, path, body, status, message):
    answer = API().request(method, "/v1.41" + path, json_body=body)
    assert answer.code == status
    if message is not None:
        assert answer.json() == {"message": message}


@pytest.mark.route("POST", "/swarm/init")
@pytest.mark.route("POST", "/swarm/join")
def test_no_swarm_can_be_made():
    for path in ("/swarm/init", "/swarm/join"):
        answer = API().request("POST", path, json_body={"ListenAddr": "0.0.0.0:2377"})
        assert answer.code == 501
        assert "not implemented yet" in answer.json()["message"]
    assert API().request("POST", "/swarm/init", body=b"{", headers={"Content-Type": "application/json"}).code == 400
