"""Version checks and headers, error mapping, JSON bodies, debug masking."""

import pytest
from twisted.logger import globalLogPublisher

from twistedock import errors
from twistedock import versions
from twistedock.server.middleware import mask_secrets

from .memory import API


def test_versions_compare_numerically():
    assert versions.less_than("1.9", "1.10")
    assert versions.greater_than("1.41", "1.5")
    assert versions.compare("1.24", "1.24.0") == 0
    assert versions.less_than("1", "1.24")
    assert versions.compare("1.x", "1.0") == 0


@pytest.mark.route("GET", "/info")
def test_too_new_version():
    answer = API().request("GET", "/v1.99/info")
    assert answer.code == 400
    assert answer.json() == {
        "message": "client version 1.99 is too new. Maximum supported API version is 1.51"
    }
    assert answer.header("Content-Type") == "application/json"
    assert answer.header("Api-Version") == "1.51"
    assert answer.header("Ostype") == "linux"
    assert answer.header("Server").startswith("twistedock/")
    # The experimental header is set inside the version check.
    assert answer.header("Docker-Experimental") is None


@pytest.mark.route("GET", "/info")
def test_too_old_version_is_plain_text():
    for version in ("1.12", "1", "1.2.3", "1.23"):
        answer = API().request("GET", "/v%s/info" % version)
        assert answer.code == 400
        assert answer.header("Content-Type") == "text/plain; charset=utf-8"
        assert answer.header("X-Content-Type-Options") == "nosniff"
        assert answer.body == (
            b"client version %s is too old. Minimum supported API version is 1.24, "
            b"please upgrade your client to a newer version\n" % version.encode()
        )


@pytest.mark.route("GET", "/info")
def test_minimum_can_be_raised():
    answer = API(min_version="1.40").request("GET", "/v1.39/info")
    assert answer.code == 400
    assert answer.json()["message"].startswith("client version 1.39 is too old. Minimum supported API version is 1.40")
    assert API(min_version="1.40").request("GET", "/v1.40/info").code == 200


@pytest.mark.route("GET", "/info")
def test_headers_on_success():
    answer = API().request("GET", "/v1.41/info")
    assert answer.code == 200
    assert answer.header("Docker-Experimental") == "false"
    assert answer.header("Content-Type") == "application/json"
    assert API(experimental=True).request("GET", "/info").header("Docker-Experimental") == "true"


@pytest.mark.route("GET", "/info")
@pytest.mark.parametrize(
    "error, status",
    [
        (errors.NotFound("No such container: x"), 404),
        (errors.InvalidParameter("bad"), 400),
        (errors.Conflict("in use"), 409),
        (errors.Unauthorized("who"), 401),
        (errors.Forbidden("no"), 403),
        (errors.Unavailable("later"), 503),
        (errors.NotImplementedYet("not yet"), 501),
        (errors.InternalError("broken"), 500),
    ],
)
def test_backend_errors_map_to_status(error, status):
    api = API()
    api.system.fail_with = error
    answer = api.request("GET", "/v1.41/info")
    assert answer.code == status
    assert answer.header("Content-Type") == "application/json"
    assert answer.json() == {"message": str(error)}


@pytest.mark.route("GET", "/info")
def test_not_modified_has_no_body():
    api = API()
    api.system.fail_with = errors.NotModified("already started")
    answer = api.request("GET", "/v1.41/info")
    assert answer.code == 304
    assert answer.body == b""


@pytest.mark.route("GET", "/info")
def test_unexpected_exception_is_500_without_traceback():
    api = API()
    api.system.fail_with = KeyError("Containers")
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        answer = api.request("GET", "/v1.41/info")
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert answer.code == 500
    assert answer.json() == {"message": "'Containers'"}
    assert b"Traceback" not in answer.body
    failures = [e for e in logged if "log_failure" in e]
    assert failures and failures[0]["log_failure"].check(KeyError)


@pytest.mark.route("POST", "/auth")
def test_json_bodies_checked_as_dockerd():
    api = API()
    answer = api.request("POST", "/auth", body=b"{}", headers={"Content-Type": "text/plain"})
    assert answer.code == 400
    assert answer.json() == {
        "message": "unsupported Content-Type header (text/plain): must be 'application/json'"
    }
    answer = api.request("POST", "/auth", body=b"{nope", headers={"Content-Type": "application/json"})
    assert answer.code == 400
    assert answer.json()["message"].startswith("invalid JSON: ")
    answer = api.request("POST", "/auth", body=b"{} {}", headers={"Content-Type": "application/json; charset=utf-8"})
    assert answer.code == 400
    assert answer.json() == {"message": "unexpected content after JSON"}
    # Well-formed: on to the backend, which has no registry client yet.
    answer = api.request("POST", "/auth", json_body={"username": "u", "password": "p"})
    assert answer.code == 501


def test_secrets_masked_in_debug_log():
    body = {"Name": "x", "Password": "p", "Spec": {"Data": "c2VjcmV0", "Labels": {}}, "list": [{"secret": 1}]}
    assert mask_secrets(body) == {
        "Name": "x",
        "Password": "*****",
        "Spec": {"Data": "*****", "Labels": {}},
        "list": [{"secret": "*****"}],
    }


@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
def test_experimental_routes_gated():
    message = (
        "This experimental feature is disabled by default. Start the Docker daemon "
        "in experimental mode in order to enable it."
    )
    for method in ("GET", "POST"):
        answer = API().request(method, "/v1.41/containers/web/checkpoints")
        assert answer.code == 501
        assert answer.json() == {"message": message}
        # With --experimental the route's own handler answers.
        answer = API(experimental=True).request(method, "/v1.41/containers/web/checkpoints")
        assert answer.json()["message"] != message
