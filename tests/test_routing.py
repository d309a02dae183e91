"""Composition: every route reachable bare and under /vX.Y, the catch-all, order."""

import json
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


def raw_http(api, method: bytes, uri: bytes):
    """(status, headers, body) of a request written by hand on an HTTP
    channel: bytes no client library would send as they are."""
    from twisted.internet.testing import StringTransport
    from twisted.web.server import Site

    channel = Site(api.resource).buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(method + b" " + uri + b" HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    if headers.get("transfer-encoding") == "chunked":
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return int(lines[0].split()[1]), headers, body


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


# -- the differential test: the Klein composition against the oracle ---------

#: Values for a variable: one segment, slashed (as %2F arrives), empty, and
#: words the tables use as literals.
VARIABLE_VALUES = ("x", "a/b", "", "json", "a/checkpoints/b", "c1/checkpoints/cp1")
VERSIONS = ("", "/v1.41", "/v1.12", "/v9.99", "/v1", "/v1.2.3")
EXTRA_PATHS = (
    "/", "/v1.41", "/v1.41/", "/v", "/v/info", "/vx/info", "/v1.41/v1.41/info", "/V1.41/info",
    "/debug/pprof", "/debug/pprof/", "/networks", "/networks/", "/containers", "/containers/",
    "/images/", "/info/", "/_ping/", "/exec//json", "/containers/checkpoints/import/",
)


def _fill(template: str, value: str) -> str:
    return re.sub(r"\{[A-Za-z_]+(:[^}]*)?\}", lambda m: value, template)


def probe_paths(routers):
    paths = set(EXTRA_PATHS)
    for router in routers:
        for route in router.routes:
            for value in VARIABLE_VALUES:
                path = _fill(route.path, value)
                for variant in (path, path + "/", path.rstrip("/"), path.rsplit("/", 1)[0]):
                    for version in VERSIONS:
                        paths.add(version + variant)
    return sorted(p for p in paths if p and clean_path(p) == p)


def probe_methods(routers):
    methods = {route.method for router in routers for route in router.routes}
    return sorted(methods | {"PATCH", "get", "Get", "TRACE"})


def test_klein_composition_chooses_as_the_oracle():
    from twistedock.server.mux import endpoint_name

    from .routing_oracle import compile_routes, match_route

    api = API(debug_backend=MemoryDebugBackend())
    oracle = compile_routes(api.routers)
    # match_route skips the routes of other methods: skip them once here.
    by_method = {}
    for compiled in oracle:
        by_method.setdefault(compiled.route.method, []).append(compiled)
    tables = {router.name: {endpoint_name(r): r for r in router.routes} for router in api.routers}
    compared = routed = 0
    for path in probe_paths(api.routers):
        for method in probe_methods(api.routers):
            expected, expected_vars = match_route(by_method.get(method, ()), method, path)
            found = api.resource.find(method, path)
            if expected is None:
                assert found is None, (method, path, found)
            else:
                assert found is not None, (method, path, expected.route)
                router, endpoint, variables = found
                assert (router.name, tables[router.name][endpoint]) == (expected.router, expected.route), (
                    method, path,
                )
                assert variables == expected_vars, (method, path)
                routed += 1
            compared += 1
    # Enough of both kinds that a broken probe set would show.
    assert routed > 5000 and compared - routed > 20000, (routed, compared)


@pytest.mark.route("HEAD", "/_ping")
@pytest.mark.route("GET", "/_ping")
@pytest.mark.route("OPTIONS", "/{anyroute:.*}")
def test_methods_as_gorilla_compares_them():
    api = API()
    assert api.request("HEAD", "/v1.41/_ping").code == 200  # the HEAD route, not GET's implied one
    assert api.request("GET", "/_ping").body == b"OK"
    answer = api.request("OPTIONS", "/v1.41")  # no route under the prefix: tried bare
    assert answer.code == 200 and answer.header("Api-Version") == "1.51"
    for method in (b"get", b"PATCH"):
        status, headers, body = raw_http(api, method, b"/v1.41/_ping")
        assert (status, body) == (404, b'{"message":"page not found"}\n'), method
        assert "api-version" not in headers


@pytest.mark.route("GET", "/debug/pprof/")
def test_strict_slashes_are_misses_not_redirects():
    api = API(debug_backend=MemoryDebugBackend())
    assert api.request("GET", "/debug/pprof/").code == 200
    answer = api.request("GET", "/debug/pprof")
    assert (answer.code, answer.body) == (404, b'{"message":"page not found"}\n')
    assert answer.header("Location") is None
    answer = api.request("GET", "/v1.41/info/")
    assert (answer.code, answer.body) == (404, b'{"message":"page not found"}\n')


@pytest.mark.route("GET", "/containers/{name:.*}/json")
def test_non_utf8_paths_are_routed_with_replacement_characters():
    # dockerd routes the bytes and shows them back as Go's JSON does:
    # invalid UTF-8 as U+FFFD (Go writes the escape \ufffd, twistedock the
    # character: the same JSON string).
    api = API()
    status, headers, body = raw_http(api, b"GET", b"/v1.41/containers/%FF/json")
    assert (status, json.loads(body)) == (404, {"message": "No such container: \ufffd"})
    assert headers["api-version"] == "1.51"
    status, _, body = raw_http(api, b"GET", b"/v1.41/containers/%C3%A9/json")
    assert (status, json.loads(body)) == (404, {"message": "No such container: \u00e9"})
    status, headers, body = raw_http(api, b"GET", b"/v1.41/info%FF")
    assert (status, body) == (404, b'{"message":"page not found"}\n')
    assert "api-version" not in headers
    # Unescaped bytes above 0x7f in the request line: dockerd routes them
    # too, but twisted.web's parser refuses the request first, a bare 400
    # (no client library sends them).
    status, _, body = raw_http(api, b"GET", b"/v1.41/containers/\xff/json")
    assert (status, body) == (400, b"")


@pytest.mark.route("GET", "/_ping")
@pytest.mark.route("GET", "/info")
def test_one_router_alone_through_its_own_klein_app():
    from treq.testing import StubTreq

    from .memory import MemorySystemBackend, result_of

    api = API()
    router = next(r for r in api.routers if r.name == "system")
    treq = StubTreq(router.app.resource())

    def get(path):
        d = treq.get("http://docker" + path)
        treq.flush()
        response = result_of(d)
        body = treq.content(response)
        treq.flush()
        return response, result_of(body)

    response, body = get("/_ping")
    assert (response.code, body) == (200, b"OK")
    assert response.headers.getRawHeaders("Api-Version") == ["1.51"]
    response, body = get("/info")
    assert json.loads(body)["ID"] == "memory"
    # Misses, failures: JSON, never werkzeug's or Twisted's HTML.
    for path in ("/nope", "/info/", "/containers/json"):
        response, body = get(path)
        assert (response.code, body) == (404, b'{"message":"page not found"}\n'), path
    assert isinstance(api.system, MemorySystemBackend)
    api.system.fail_with = RuntimeError("disk on fire")
    response, body = get("/info")
    assert (response.code, json.loads(body)) == (500, {"message": "disk on fire"})
