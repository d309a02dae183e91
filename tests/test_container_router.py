"""The container router's own rules, over an in-memory backend."""

import json

import pytest

from twistedock.streams import unframe

from .memory import API


def created(api, name="web", **config):
    answer = api.request("POST", "/containers/create?name=" + name, json_body=dict({"Image": "busybox"}, **config))
    assert answer.code == 201
    return answer


@pytest.mark.route("POST", "/containers/create")
def test_create_needs_a_json_object():
    api = API()
    answer = api.request("POST", "/containers/create", body=b"[1]", headers={"Content-Type": "application/json"})
    assert answer.code == 400
    answer = api.request("POST", "/containers/create", body=b"", headers={"Content-Type": "application/json"})
    assert answer.code == 400
    assert created(api).json() == {"Id": "web", "Warnings": []}


@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_start_rules():
    api = API()
    created(api)
    answer = api.request("POST", "/containers/web/start", body=b'{"Binds": ["/a:/b"]}', headers={"Content-Type": "application/json"})
    assert answer.code == 400
    assert answer.json() == {
        "message": "starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24"
    }
    assert api.request("POST", "/containers/web/start", body=b"{}", headers={"Content-Type": "application/json"}).code == 204
    assert api.request("POST", "/containers/web/start").code == 304
    assert api.request("POST", "/containers/nope/start").json() == {"message": "No such container: nope"}


@pytest.mark.route("POST", "/containers/{name:.*}/wait")
def test_wait_flushes_headers_then_answers_on_exit():
    api = API()
    created(api)
    api.request("POST", "/containers/web/start")
    response, chunks, done = api.stream("POST", "/v1.41/containers/web/wait?condition=next-exit")
    assert response.code == 200
    assert chunks == [] and not done.called
    api.containers.exit("web", 3)
    api.treq.flush()
    assert json.loads(b"".join(chunks)) == {"StatusCode": 3, "Error": None}
    answer = api.request("POST", "/containers/web/wait?condition=whenever")
    assert answer.code == 400
    assert answer.json() == {"message": 'invalid condition: "whenever"'}
    # Not running: not-running answers at once.
    assert api.request("POST", "/containers/web/wait").json() == {"StatusCode": 3, "Error": None}


@pytest.mark.route("GET", "/containers/{name:.*}/logs")
def test_logs_framing_follows_tty_and_version():
    api = API()
    created(api)
    api.containers.containers["web"]["Logs"] = [(1, b"out\n"), (2, b"err\n")]
    answer = api.request("GET", "/containers/web/logs")
    assert answer.code == 400
    assert answer.json() == {"message": "Bad parameters: you must choose at least one stream"}
    answer = api.request("GET", "/v1.42/containers/web/logs?stdout=1&stderr=1")
    assert answer.header("Content-Type") == "application/vnd.docker.multiplexed-stream"
    assert unframe(answer.body) == [(1, b"out\n"), (2, b"err\n")]
    answer = api.request("GET", "/v1.41/containers/web/logs?stdout=1&stderr=1")
    assert answer.header("Content-Type") == "application/vnd.docker.raw-stream"
    assert unframe(answer.body) == [(1, b"out\n"), (2, b"err\n")]
    created(api, "tty", Tty=True)
    api.containers.containers["tty"]["Logs"] = [(1, b"out\r\n")]
    answer = api.request("GET", "/v1.51/containers/tty/logs?stdout=1")
    assert answer.header("Content-Type") == "application/vnd.docker.raw-stream"
    assert answer.body == b"out\r\n"


@pytest.mark.route("POST", "/containers/{name:.*}/resize")
def test_resize_values():
    api = API()
    created(api)
    answer = api.request("POST", "/containers/web/resize?h=x&w=80")
    assert answer.code == 400
    assert answer.json() == {"message": 'invalid resize height "x"'}
    answer = api.request("POST", "/containers/web/resize?h=24&w=-1")
    assert answer.json() == {"message": 'invalid resize width "-1"'}
    assert api.request("POST", "/containers/web/resize?h=24&w=80").code == 200
    assert api.containers.calls[-1] == ("resize", "web", 24, 80)


@pytest.mark.route("POST", "/containers/{name:.*}/stop")
@pytest.mark.route("POST", "/containers/{name:.*}/kill")
def test_stop_and_kill_arguments():
    api = API()
    created(api)
    api.request("POST", "/containers/web/start")
    assert api.request("POST", "/v1.41/containers/web/stop?t=5&signal=SIGINT").code == 204
    # signal is read from API 1.42 on
    assert api.containers.calls[-1] == ("stop", "web", None, 5)
    api.request("POST", "/containers/web/start")
    assert api.request("POST", "/v1.42/containers/web/stop?signal=SIGINT").code == 204
    assert api.containers.calls[-1] == ("stop", "web", "SIGINT", None)
    answer = api.request("POST", "/containers/web/stop?t=soon")
    assert answer.code == 400
    api.request("POST", "/containers/web/start")
    assert api.request("POST", "/containers/web/kill?signal=HUP").code == 204
    assert api.containers.calls[-1] == ("kill", "web", "HUP")


@pytest.mark.route("GET", "/containers/{name:.*}/top")
@pytest.mark.route("GET", "/containers/json")
@pytest.mark.route("POST", "/containers/{name:.*}/update")
def test_top_list_update():
    api = API()
    created(api)
    assert api.request("GET", "/containers/web/top").json()["ps_args"] == "-ef"
    assert api.request("GET", "/containers/web/top?ps_args=aux").json()["ps_args"] == "aux"
    assert api.request("GET", "/containers/json").json() == []
    assert api.request("GET", "/containers/json?all=1").json() == [{"Id": "web"}]
    answer = api.request("POST", "/containers/web/update", body=b"[]", headers={"Content-Type": "application/json"})
    assert answer.code == 400
    assert api.request("POST", "/containers/web/update", json_body={"Memory": 1 << 26}).json() == {"Warnings": None}
