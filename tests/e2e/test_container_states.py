"""Paused, restarting and just-exited containers as the docker CLI and
docker-py see them against a real daemon, as the reference dockerd 20.10
answers; and clients leaving without an error in the daemon's log."""

import time

import docker
import pexpect
import pytest

from .conftest import DOCKER, wait_for
from .test_containers import daemon, remove  # noqa: F401  (module fixture)


def status(daemon, name) -> str:
    return daemon.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.strip()


def restarting(daemon, name, count=3) -> str:
    """Wait until C{name} (an --restart always container that keeps
    exiting) is restarting with a restart delay long enough to act in."""

    def found():
        answer = daemon.request("GET", "/containers/%s/json" % name).json()
        return answer["State"]["Status"] == "restarting" and answer["RestartCount"] >= count and answer["Id"]

    return wait_for(found, 30, what="%s restarting" % name)


@pytest.mark.route("DELETE", "/containers/{name:.*}")
@pytest.mark.route("POST", "/containers/{name:.*}/kill")
@pytest.mark.route("POST", "/containers/{name:.*}/pause")
def test_force_remove_and_kill_of_a_paused_container(daemon):
    remove(daemon, "pz1", "pz2")
    daemon.docker("run", "-d", "--name", "pz1", "busybox", "sleep", "1000")
    daemon.docker("pause", "pz1")
    # dockerd: 204, and it is gone (not leaked, killed but kept).
    assert daemon.docker("rm", "-f", "pz1").stdout.strip() == "pz1"
    assert daemon.docker("ps", "-aq", "--filter", "name=pz1").stdout == ""
    daemon.docker("run", "-d", "--name", "pz2", "busybox", "sleep", "1000")
    daemon.docker("pause", "pz2")
    resp = daemon.request("POST", "/containers/pz2/kill")
    assert (resp.status, resp.body) == (204, b"")
    assert status(daemon, "pz2") == "exited 137"
    remove(daemon, "pz2")


@pytest.mark.route("POST", "/containers/{name:.*}/stop")
@pytest.mark.route("POST", "/containers/{name:.*}/unpause")
def test_a_signal_meant_to_end_a_paused_container_thaws_it(daemon):
    remove(daemon, "pz3")
    daemon.docker("run", "-d", "--name", "pz3", "busybox", "sleep", "1000")
    daemon.docker("pause", "pz3")
    daemon.docker("kill", "-s", "USR1", "pz3")
    assert daemon.docker("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "pz3").stdout.split() == [
        "running", "false"
    ]
    resp = daemon.request("POST", "/containers/pz3/unpause")
    assert (resp.status, resp.json()) == (500, {"message": "Container %s is not paused" % resp_id(daemon, "pz3")})
    daemon.docker("pause", "pz3")
    daemon.docker("stop", "-t", "1", "pz3")
    assert status(daemon, "pz3") == "exited 137"
    remove(daemon, "pz3")


def resp_id(daemon, name) -> str:
    return daemon.request("GET", "/containers/%s/json" % name).json()["Id"]


@pytest.mark.route("DELETE", "/containers/{name:.*}")
@pytest.mark.route("POST", "/containers/{name:.*}/pause")
@pytest.mark.route("POST", "/containers/{name:.*}/kill")
def test_remove_pause_and_kill_of_a_restarting_container(daemon):
    remove(daemon, "rs1")
    daemon.docker("run", "-d", "--name", "rs1", "--restart", "always", "busybox", "sh", "-c", "exit 3")
    cid = restarting(daemon, "rs1")
    resp = daemon.request("DELETE", "/containers/rs1")
    assert (resp.status, resp.json()) == (409, {
        "message": "You cannot remove a restarting container %s. Stop the container before attempting "
        "removal or force remove" % cid
    })
    restarting(daemon, "rs1")
    resp = daemon.request("POST", "/containers/rs1/pause")
    assert (resp.status, resp.json()) == (409, {
        "message": "Container %s is restarting, wait until the container is running" % cid
    })
    restarting(daemon, "rs1")
    resp = daemon.request("POST", "/containers/rs1/kill")
    assert (resp.status, resp.body) == (204, b"")
    assert status(daemon, "rs1") == "exited 3"
    time.sleep(0.5)
    assert status(daemon, "rs1") == "exited 3"
    daemon.docker("start", "rs1")
    restarting(daemon, "rs1")
    assert daemon.docker("rm", "-f", "rs1").stdout.strip() == "rs1"
    assert daemon.docker("ps", "-aq", "--filter", "name=rs1").stdout == ""


@pytest.mark.route("DELETE", "/containers/{name:.*}")
def test_force_remove_of_a_container_that_keeps_exiting(daemon):
    """Whatever moment the remove meets it (running, exited but not yet
    handled, restarting), dockerd removes it."""
    for attempt in range(8):
        name = "rs2-%d" % attempt
        remove(daemon, name)
        daemon.docker("run", "-d", "--name", name, "--restart", "always", "busybox", "true")
        time.sleep(0.05 * attempt)
        result = daemon.docker("rm", "-f", name, check=False)
        assert (result.returncode, result.stdout.strip(), result.stderr) == (0, name, "")


@pytest.mark.route("POST", "/commit")
def test_docker_py_commit_of_a_container_that_just_exited(daemon):
    client = docker.DockerClient(base_url=daemon.host, timeout=30)
    try:
        for _ in range(3):
            container = client.containers.create("busybox", ["touch", "/test"])
            container.start()
            image = client.containers.get(container.id).commit()  # pause=True, docker-py's default
            assert image.id.startswith("sha256:")
            client.images.remove(image.id)
            container.remove(force=True)
    finally:
        client.close()


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_exec_detach_logs_no_error(daemon):
    remove(daemon, "xdetach")
    daemon.docker("run", "-d", "--name", "xdetach", "busybox", "sleep", "1000")
    for _ in range(2):
        p = pexpect.spawn(DOCKER, ["exec", "-it", "xdetach", "sh"], env=daemon.cli_env(), timeout=15)
        try:
            p.expect("# ")
            p.send("\x10")
            time.sleep(0.1)
            p.send("\x11")
            p.expect(pexpect.EOF)
        finally:
            p.close(force=True)
    # Logs followed and left, too.
    follower = daemon.docker_popen("logs", "-f", "xdetach")
    time.sleep(0.5)
    follower.terminate()
    follower.wait(10)
    wait_for(lambda: daemon.request("GET", "/_ping").status == 200, 5)
    time.sleep(0.5)
    log = daemon.log_text()
    assert "Unhandled error in Deferred" not in log and "CancelledError" not in log
    remove(daemon, "xdetach")
