"""
Error messages in dockerd's exact words (asked of dockerd 20.10): the
status was already right, the words are what scripts grep for.
"""


import pytest

from .test_containers import daemon  # noqa: F401  (the module's daemon with busybox)


def _message(answer):
    return answer.status, answer.json()


@pytest.mark.route("POST", "/containers/{name:.*}/kill")
def test_kill_of_an_unknown_container(daemon):
    answer = daemon.request("POST", "/v1.41/containers/nope/kill")
    assert _message(answer) == (404, {"message": "Cannot kill container: nope: No such container: nope"})


@pytest.mark.route("POST", "/containers/{name:.*}/rename")
def test_rename_onto_a_taken_or_invalid_name(daemon):
    first = daemon.docker("create", "--name", "m-first", "busybox", "true").stdout.strip()
    second = daemon.docker("create", "--name", "m-second", "busybox", "true").stdout.strip()
    try:
        for target in ("m-first", "/m-first"):
            answer = daemon.request("POST", "/v1.41/containers/m-second/rename?name=" + target)
            assert _message(answer) == (409, {
                "message": 'Error when allocating new name: Conflict. The container name "/m-first" '
                'is already in use by container "%s". You have to remove (or rename) that container '
                "to be able to reuse that name." % (first,)
            })
        for target in ("a%20b", "/a%20b"):
            answer = daemon.request("POST", "/v1.41/containers/m-second/rename?name=" + target)
            assert _message(answer) == (400, {
                "message": "Error when allocating new name: Invalid container name (/a b), "
                "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            })
        assert daemon.docker_json("inspect", second, format="{{json .Name}}") == "/m-second"
    finally:
        daemon.docker("rm", "-f", "m-first", "m-second", check=False)


@pytest.mark.route("GET", "/containers/json")
@pytest.mark.route("GET", "/images/json")
@pytest.mark.route("POST", "/images/prune")
def test_unknown_and_invalid_filters(daemon):
    bogus = "filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D"
    for target in ("/v1.41/containers/json?" + bogus, "/v1.41/images/json?" + bogus):
        assert _message(daemon.request("GET", target)) == (400, {"message": "Invalid filter 'bogus'"})
    dangling = "filters=%7B%22dangling%22%3A%5B%22xyz%22%5D%7D"
    answer = daemon.request("GET", "/v1.41/images/json?" + dangling)
    assert _message(answer) == (400, {"message": "Invalid filter 'dangling=[xyz]'"})
    answer = daemon.request("POST", "/v1.41/images/prune?" + dangling)
    assert _message(answer) == (400, {"message": "Invalid filter 'dangling=[xyz]'"})


@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_runc_start_errors_as_through_containerds_shim(daemon):
    daemon.docker("create", "--name", "m-missing", "busybox", "/nonexistent")
    try:
        answer = daemon.request("POST", "/v1.41/containers/m-missing/start")
        expected = (
            "failed to create shim task: OCI runtime create failed: runc create failed: unable to "
            'start container process: exec: "/nonexistent": stat /nonexistent: no such file or '
            "directory: unknown"
        )
        assert _message(answer) == (400, {"message": expected})
        state = daemon.docker_json("inspect", "m-missing", format="{{json .State}}")
        assert (state["Error"], state["ExitCode"]) == (expected, 127)
    finally:
        daemon.docker("rm", "-f", "m-missing", check=False)


@pytest.mark.route("GET", "/networks/{id:.+}")
def test_inspect_of_an_unknown_name(daemon):
    answer = daemon.request("GET", "/v1.41/networks/nope")
    assert _message(answer) == (404, {"message": "network nope not found"})
    result = daemon.docker("inspect", "nope", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (1, "[]\n", "Error: No such object: nope\n")
