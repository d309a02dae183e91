"""The plugin router before plugins exist: the answers it gives."""

import pytest

from .memory import API


@pytest.mark.route("GET", "/plugins/{name:.*}/json")
def test_no_plugin_is_found():
    answer = API().request("GET", "/v1.41/plugins/nope:latest/json")
    assert (answer.code, answer.json()) == (404, {"message": 'plugin "nope:latest" not found'})
