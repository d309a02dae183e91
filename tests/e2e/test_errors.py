"""Bad requests over the real socket, answered as dockerd answers them."""

import pytest

pytestmark = pytest.mark.e2e

NOT_A_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
    "to connect this node to swarm and try again."
)
EXPERIMENTAL_DISABLED = (
    "This experimental feature is disabled by default. Start the Docker daemon in "
    "experimental mode in order to enable it."
)


def assert_json_error(resp, status, message):
    assert resp.status == status, resp
    assert resp.headers["Content-Type"] == "application/json", resp
    assert resp.json() == {"message": message}, resp
    assert int(resp.headers["Content-Length"]) == len(resp.body)


# No route mark: these match no route at all, the catch-all answers.
@pytest.mark.parametrize(
    "method, target",
    [
        ("GET", "/v1.41/nope"),
        ("GET", "/nope"),
        ("POST", "/info"),
        ("POST", "/v1.51/info"),
        ("DELETE", "/_ping"),
    ],
)
def test_page_not_found(default_daemon, method, target):
    resp = default_daemon.request(method, target)
    assert_json_error(resp, 404, "page not found")
    # The catch-all is outside the middleware: no API headers.
    assert "Api-Version" not in resp.headers, resp
    assert "Docker-Experimental" not in resp.headers, resp
    assert "Server" not in resp.headers, resp


@pytest.mark.route("GET", "/info")
def test_api_headers_on_a_route(default_daemon):
    resp = default_daemon.request("GET", "/v1.41/info")
    assert resp.status == 200, resp
    assert resp.headers["Api-Version"] == "1.51"
    assert resp.headers["Ostype"] == "linux"
    assert resp.headers["Docker-Experimental"] == "false"
    assert resp.headers["Content-Type"] == "application/json"


# No route mark: the version check answers before any handler runs.
def test_client_version_too_new(default_daemon):
    resp = default_daemon.request("GET", "/v1.99/info")
    assert_json_error(
        resp, 400, "client version 1.99 is too new. Maximum supported API version is 1.51"
    )
    assert resp.headers["Api-Version"] == "1.51"


# No route mark: the version check answers before any handler runs.
def test_client_version_too_old(default_daemon):
    resp = default_daemon.request("GET", "/v1.12/info")
    assert resp.status == 400, resp
    # Clients older than 1.24 predate JSON errors: plain text.
    assert resp.headers["Content-Type"].split(";")[0] == "text/plain", resp
    assert resp.text.strip() == (
        "client version 1.12 is too old. Minimum supported API version is 1.24, "
        "please upgrade your client to a newer version"
    )


@pytest.mark.route("GET", "/info")
def test_oldest_supported_version_is_served(default_daemon):
    resp = default_daemon.request("GET", "/v1.24/info")
    assert resp.status == 200, resp
    assert resp.json()["DockerRootDir"] == default_daemon.data_root


@pytest.mark.route("GET", "/plugins")
def test_unimplemented_route(default_daemon):
    resp = default_daemon.request("GET", "/v1.51/plugins")
    assert_json_error(resp, 501, "GET /plugins is not implemented yet")
    result = default_daemon.docker("plugin", "ls", check=False)
    assert result.returncode != 0
    assert "Error response from daemon: GET /plugins is not implemented yet" in result.stderr


@pytest.mark.route("GET", "/swarm")
def test_swarm_not_a_manager(default_daemon):
    resp = default_daemon.request("GET", "/v1.51/swarm")
    assert_json_error(resp, 503, NOT_A_MANAGER)
    # docker swarm join-token inspects the swarm first.
    result = default_daemon.docker("swarm", "join-token", "worker", check=False)
    assert result.returncode != 0
    assert "Error response from daemon: " + NOT_A_MANAGER in result.stderr, result.stderr


@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
def test_checkpoint_without_experimental(default_daemon):
    resp = default_daemon.request("GET", "/v1.51/containers/x/checkpoints")
    assert_json_error(resp, 501, EXPERIMENTAL_DISABLED)
    # The CLI does not even ask a daemon that is not experimental.
    result = default_daemon.docker("checkpoint", "ls", "x", check=False)
    assert result.returncode != 0
    assert "only supported on a Docker daemon with experimental features enabled" in result.stderr


@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/version")
def test_checkpoint_with_experimental(daemons):
    daemon = daemons.start("--experimental")
    assert daemon.docker("version", "--format", "{{.Server.Experimental}}").stdout.strip() == "true"
    resp = daemon.request("GET", "/v1.51/containers/x/checkpoints")
    assert resp.headers["Docker-Experimental"] == "true"
    # Served now (tests/e2e/test_checkpoint.py): dockerd's answer for no such container.
    assert_json_error(resp, 404, "No such container: x")
    result = daemon.docker("checkpoint", "ls", "x", check=False)
    assert result.returncode != 0
    assert "No such container: x" in result.stderr, result.stderr
