"""Composition: every route reachable bare and under /vX.Y, the catch-all, order."""

import re

import pytest
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from twistedock.routers.debug import IDebugBackend
from twistedock.server.routing import clean_path

from .memory import API
from .routing_oracle import compile_template


@implementer(IDebugBackend)
class MemoryDebugBackend:
    def variables(self):
        return {"pid": 1}

    def cmdline(self):
        return ["twistd", "dockerd"]

    async def cpu_profile(self, seconds, binary):
        return b"data" if binary else "profile"

    async def heap_profile(self, seconds):
        return "heap"

    def stacks(self):
        return "thread 1"


def concrete(path: str) -> str:
    """A request path that the template matches."""
    return re.sub(r"\{([a-z]+)(:[^}]*)?\}", lambda m: "x" + m.group(1), path)


def all_routes(api):
    for router in api.routers:
        for route in router.routes:
            yield router.name, route


def test_every_route_is_served_bare_and_versioned():
    api = API(debug_backend=MemoryDebugBackend())
    seen = 0
    for router, route in all_routes(api):
        path = concrete(route.path)
        if route.path == "/events":
            path += "?until=1"
        for prefix in ("", "/v1.41", "/v1.51"):
            answer = api.request(route.method, prefix + path)
            if route.handler == "post_containers_attach":
                # A failed attach is answered on the taken-over connection,
                # bare, as dockerd answers it.
                assert answer.header("Content-Type") == "application/vnd.docker.raw-stream"
                assert answer.body == b"No such container: xname\r\n"
                seen += 1
                continue
            # The catch-all carries no middleware headers: these went through a route.
            assert answer.header("Api-Version") == "1.51", (router, route, prefix, answer)
            assert answer.body != b'{"message":"page not found"}\n', (router, route)
            seen += 1
    assert seen == 3 * sum(len(r.routes) for r in api.routers)


def test_route_count_matches_dockerd():
    # moby master's routers (less /grpc, which needs BuildKit); the checkpoint
    # router also carries twistedock's export and import.
    api = API(debug_backend=MemoryDebugBackend())
    counts = {router.name: len(router.routes) for router in api.routers}
    assert counts.pop("checkpoint") >= 3
    assert counts == {
        "container": 30, "image": 13, "system": 8, "volume": 6, "build": 3, "session": 1,
        "swarm": 30, "plugin": 11, "distribution": 1, "network": 8, "debug": 7,
    }


def test_unknown_path_is_dockerd_catch_all():
    api = API()
    for method, path in [
        ("GET", "/v1.41/nope"),
        ("GET", "/nope"),
        ("GET", "/v9.99/nope"),  # unknown under an unsupported version: 404, not 400
        ("POST", "/info"),  # known path, wrong method: 404, never 405
        ("HEAD", "/info"),  # HEAD is not implied by GET
        ("DELETE", "/v1.41/version"),
    ]:
        answer = api.request(method, path)
        assert answer.code == 404, (method, path)
        if method != "HEAD":
            assert answer.body == b'{"message":"page not found"}\n'
        assert answer.header("Content-Type") == "application/json"
        for header in ("Api-Version", "Server", "Ostype", "Docker-Experimental"):
            assert answer.header(header) is None, (method, path, header)


def render_raw(api, method: bytes, uri: bytes):
    """Render a request whose path no client library would normalise."""
    request = DummyRequest([b""])
    request.method = method
    request.uri = uri
    request.path = uri.split(b"?", 1)[0]
    body = api.resource.render(request)
    return request, body


def test_unclean_paths_are_redirected():
    api = API()
    for uri, location in [
        (b"//info", b"/info"),
        (b"/v1.41/a/../info?x=1", b"/v1.41/info?x=1"),
        (b"/v1.41/./info/", b"/v1.41/info/"),
    ]:
        request, body = render_raw(api, b"GET", uri)
        assert request.responseCode == 301, uri
        assert request.responseHeaders.getRawHeaders(b"location") == [location]
        assert body == b""


@pytest.mark.route("DELETE", "/containers/{name}/checkpoints/{checkpoint}")
@pytest.mark.route("DELETE", "/containers/{name:.*}")
def test_checkpoint_delete_is_not_masked_by_container_delete():
    api = API()
    answer = api.request("DELETE", "/v1.41/containers/web/checkpoints/cp1")
    assert answer.code == 501
    assert answer.json()["message"].startswith("This experimental feature is disabled")
    answer = api.request("DELETE", "/v1.41/containers/web")
    assert answer.json()["message"] == "No such container: web"


@pytest.mark.route("GET", "/images/{name:.*}/get")
def test_names_may_hold_slashes_and_escapes():
    api = API()
    for path in (
        "/v1.41/images/docker.io/library/busybox:latest/get",
        "/images/docker.io%2Flibrary%2Fbusybox/get",
    ):
        answer = api.request("GET", path)
        assert answer.code == 501
        assert answer.json() == {"message": "GET /images/{name:.*}/get is not implemented yet"}


@pytest.mark.route("GET", "/containers/json")
@pytest.mark.route("GET", "/containers/{name:.*}/json")
def test_first_registered_route_wins():
    api = API()
    # /containers/json is registered before /containers/{name:.*}/json.
    assert api.request("GET", "/containers/json").json() == []
    answer = api.request("GET", "/containers/web/json")
    assert answer.json()["message"] == "No such container: web"


@pytest.mark.route("OPTIONS", "/{anyroute:.*}")
def test_options_answers_any_path():
    api = API()
    answer = api.request("OPTIONS", "/v1.41/any/thing/at/all")
    assert answer.code == 200
    assert answer.body == b""
    assert answer.header("Api-Version") == "1.51"


@pytest.mark.route("POST", "/containers/prune")
@pytest.mark.route("GET", "/images/{name:.*}/attestations")
def test_route_minimum_version():
    api = API()
    answer = api.request("POST", "/v1.24/containers/prune")
    assert answer.code == 400
    assert answer.json() == {
        "message": "POST /containers/prune requires minimum API version 1.25"
    }
    answer = api.request("POST", "/v1.25/containers/prune")
    assert answer.code == 200
    answer = api.request("GET", "/images/busybox/attestations")
    assert answer.code == 400
    assert answer.json()["message"] == (
        "GET /images/{name:.*}/attestations requires minimum API version 1.55"
    )


@pytest.mark.route("GET", "/debug/vars")
def test_debug_router_only_with_debug():
    assert API().request("GET", "/debug/vars").code == 404
    answer = API(debug_backend=MemoryDebugBackend()).request("GET", "/debug/vars")
    assert answer.code == 200
    assert answer.json() == {"pid": 1}


def test_clean_path_is_gos():
    assert clean_path("") == "/"
    assert clean_path("info") == "/info"
    assert clean_path("//info") == "/info"
    assert clean_path("/a/./b/../c/") == "/a/c/"
    assert clean_path("/../x") == "/x"
    assert clean_path("/") == "/"


def test_templates():
    pattern = compile_template("/v{version:[0-9.]+}/containers/{name:.*}/json")
    assert pattern.match("/v1.41/containers/a/b/json").groupdict() == {
        "version": "1.41",
        "name": "a/b",
    }
    assert pattern.match("/v1.41/containers//json").group("name") == ""
    one = compile_template("/containers/{name}/checkpoints/{checkpoint}")
    assert one.match("/containers/a/b/checkpoints/c") is None
    assert compile_template("/networks/{id:.+}").match("/networks/") is None
