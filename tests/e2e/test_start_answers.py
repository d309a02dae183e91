"""docker start against a real daemon as the reference dockerd 20.10
answers it: a restarting container is running to it (304, its restart goes
on), and a manual start counts restarts afresh."""

import pytest

from .conftest import wait_for
from .test_container_states import restarting
from .test_containers import daemon, remove  # noqa: F401  (module fixture)


@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_start_of_a_restarting_container_is_not_modified(daemon):
    remove(daemon, "rs304")
    daemon.docker("run", "-d", "--name", "rs304", "--restart", "always", "busybox", "false")
    try:
        ident = restarting(daemon, "rs304")
        answer = daemon.request("POST", "/v1.41/containers/%s/start" % ident)
        assert (answer.status, answer.body) == (304, b"")
        inspected = daemon.request("GET", "/containers/rs304/json").json()
        assert inspected["RestartCount"] >= 3
    finally:
        remove(daemon, "rs304")


@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_a_manual_start_resets_the_restart_count(daemon):
    remove(daemon, "rsreset")
    daemon.docker("run", "-d", "--name", "rsreset", "--restart", "on-failure:1", "busybox", "sh", "-c", "exit 3")
    try:
        def given_up():
            answer = daemon.request("GET", "/containers/rsreset/json").json()
            return answer["State"]["Status"] == "exited" and answer["RestartCount"] == 1

        wait_for(given_up, 30, what="rsreset to give up")
        # The new run lasts long enough to be seen.
        daemon.request("POST", "/v1.41/containers/rsreset/update", {"RestartPolicy": {"Name": "no"}})
        daemon.docker("start", "rsreset")
        assert daemon.request("GET", "/containers/rsreset/json").json()["RestartCount"] == 0
    finally:
        remove(daemon, "rsreset")
