"""The network and plugin routers before those objects exist: the answers they give."""

import pytest

from .memory import API


@pytest.mark.route("GET", "/networks/{id:.+}")
def test_an_unknown_network_is_not_found():
    api = API()
    for version in ("/v1.41", "/v1.51", ""):
        answer = api.request("GET", version + "/networks/nope")
        # dockerd's words: docker inspect then goes on to "No such object".
        assert (answer.code, answer.json()) == (404, {"message": "network nope not found"})


def test_the_built_in_networks_are_not_served_yet():
    api = API()
    for name in ("bridge", "host", "none"):
        answer = api.request("GET", "/networks/" + name)
        assert (answer.code, answer.json()) == (
            501, {"message": "GET /networks/{id:.+} is not implemented yet"}
        )
    assert api.request("GET", "/networks").code == 501


@pytest.mark.route("GET", "/plugins/{name:.*}/json")
def test_no_plugin_is_found():
    answer = API().request("GET", "/v1.41/plugins/nope:latest/json")
    assert (answer.code, answer.json()) == (404, {"message": 'plugin "nope:latest" not found'})
