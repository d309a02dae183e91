"""Healthchecks through the docker CLI: probes run as execs, State.Health,
health_status events, docker ps's status and health filter, an image's
HEALTHCHECK."""

import json
import signal
import subprocess
import time

import pytest

from .conftest import wait_for
from .test_containers import busybox_rootfs_tar, daemon, remove  # noqa: F401  (module fixture)

#: Probes every second: a status takes a few seconds to settle.
SETTLE = 30


def health(daemon, name):
    return daemon.docker_json("inspect", name, format="{{json .State.Health}}")


def wait_status(daemon, name, status):
    return wait_for(
        lambda: (health(daemon, name) or {}).get("Status") == status and health(daemon, name),
        SETTLE,
        interval=0.2,
        what="%s to be %s" % (name, status),
    )


def health_events(daemon, since, name):
    until = "%.3f" % time.time()
    result = daemon.docker(
        "events", "--since", "%.3f" % since, "--until", until,
        "--filter", "event=health_status", "--filter", "container=" + name, "--format", "{{json .}}",
        timeout=15,
    )  # fmt: skip
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def wait_probes(daemon, name, count):
    """State.Health once it logged C{count} results."""

    def probed():
        h = health(daemon, name)
        return h if h and len(h["Log"]) >= count else None

    return wait_for(probed, SETTLE, interval=0.3, what="%d probes of %s" % (count, name))


def ps_names(daemon, *filters):
    args = ["ps", "-a", "--format", "{{.Names}}"]
    for f in filters:
        args += ["--filter", f]
    return daemon.docker(*args).stdout.split()


@pytest.mark.route("GET", "/containers/json")
@pytest.mark.route("GET", "/events")
def test_a_succeeding_check_makes_the_container_healthy(daemon):
    since = time.time()
    daemon.docker(
        "run", "-d", "--name", "hc-ok", "--health-cmd", "echo ok; echo err >&2",
        "--health-interval", "1s", "busybox", "sleep", "1000",
    )  # fmt: skip
    try:
        h = wait_status(daemon, "hc-ok", "healthy")
        assert h["FailingStreak"] == 0
        entry = h["Log"][0]
        assert entry["ExitCode"] == 0
        assert entry["Output"] == "ok\nerr\n"
        assert entry["Start"] <= entry["End"]
        status = daemon.docker("ps", "--filter", "name=hc-ok", "--format", "{{.Status}}").stdout.strip()
        assert status.startswith("Up ") and status.endswith(" (healthy)"), status
        assert ps_names(daemon, "health=healthy") == ["hc-ok"]
        assert "hc-ok" not in ps_names(daemon, "health=none")
        events = health_events(daemon, since, "hc-ok")
        assert [e["Action"] for e in events] == ["health_status: healthy"]
        assert events[0]["Actor"]["Attributes"]["name"] == "hc-ok"
        # The log keeps the last five results.
        wait_probes(daemon, "hc-ok", 5)
        time.sleep(1.5)
        assert len(health(daemon, "hc-ok")["Log"]) == 5
        # Probes are execs, announced as dockerd announces them.
        execs = daemon.docker(
            "events", "--since", "%.3f" % since, "--until", "%.3f" % time.time(),
            "--filter", "container=hc-ok", "--filter", "event=exec_create", "--format", "{{.Action}}",
            timeout=15,
        ).stdout.splitlines()  # fmt: skip
        assert execs and execs[0] == "exec_create: /bin/sh -c echo ok; echo err >&2"
    finally:
        remove(daemon, "hc-ok")


@pytest.mark.route("GET", "/events")
def test_a_failing_check_makes_it_unhealthy_after_the_retries(daemon):
    since = time.time()
    daemon.docker(
        "run", "-d", "--name", "hc-bad", "--health-cmd", "echo nope; exit 3",
        "--health-interval", "1s", "--health-retries", "2", "busybox", "sleep", "1000",
    )  # fmt: skip
    try:
        h = wait_status(daemon, "hc-bad", "unhealthy")
        assert h["FailingStreak"] >= 2
        assert len(h["Log"]) >= 2
        assert all(e["ExitCode"] == 3 and e["Output"] == "nope\n" for e in h["Log"])
        status = daemon.docker("ps", "--filter", "name=hc-bad", "--format", "{{.Status}}").stdout.strip()
        assert status.endswith(" (unhealthy)"), status
        assert ps_names(daemon, "health=unhealthy") == ["hc-bad"]
        assert [e["Action"] for e in health_events(daemon, since, "hc-bad")] == ["health_status: unhealthy"]
    finally:
        remove(daemon, "hc-bad")


def test_failures_within_the_start_period_do_not_count(daemon):
    daemon.docker(
        "run", "-d", "--name", "hc-slow", "--health-cmd", "test -e /tmp/ready",
        "--health-interval", "1s", "--health-retries", "1", "--health-start-period", "1h",
        "busybox", "sleep", "1000",
    )  # fmt: skip
    try:
        h = wait_probes(daemon, "hc-slow", 3)
        assert h["Status"] == "starting"
        assert h["FailingStreak"] == 0
        assert all(e["ExitCode"] == 1 for e in h["Log"])
        status = daemon.docker("ps", "--filter", "name=hc-slow", "--format", "{{.Status}}").stdout.strip()
        assert status.endswith(" (health: starting)"), status
        assert ps_names(daemon, "health=starting") == ["hc-slow"]
        # A success within the start period is healthy at once.
        daemon.docker("exec", "hc-slow", "touch", "/tmp/ready")
        wait_status(daemon, "hc-slow", "healthy")
        # Once healthy, failures count even within the start period.
        daemon.docker("exec", "hc-slow", "rm", "/tmp/ready")
        h = wait_status(daemon, "hc-slow", "unhealthy")
        assert h["FailingStreak"] == 1
    finally:
        remove(daemon, "hc-slow")


def test_a_probe_past_its_timeout_is_killed(daemon):
    daemon.docker(
        "run", "-d", "--name", "hc-hang", "--health-cmd", "sleep 77",
        "--health-interval", "1s", "--health-timeout", "1500ms", "--health-retries", "1",
        "busybox", "sleep", "1000",
    )  # fmt: skip
    try:
        h = wait_status(daemon, "hc-hang", "unhealthy")
        assert h["Log"][0]["ExitCode"] == -1
        assert h["Log"][0]["Output"] == "Health check exceeded timeout (1.5s)"
        # The probe's process was killed; no probe piles up.
        time.sleep(1)
        processes = daemon.docker("exec", "hc-hang", "ps", "-o", "args").stdout
        assert processes.count("sleep 77") <= 1, processes
    finally:
        remove(daemon, "hc-hang")


@pytest.mark.route("POST", "/containers/{name:.*}/pause")
@pytest.mark.route("POST", "/containers/{name:.*}/unpause")
def test_probes_stop_while_paused_and_after_the_exit(daemon):
    daemon.docker(
        "run", "-d", "--name", "hc-pause", "--health-cmd", "true", "--health-interval", "1s",
        "busybox", "sleep", "1000",
    )  # fmt: skip
    try:
        wait_status(daemon, "hc-pause", "healthy")
        daemon.docker("pause", "hc-pause")
        # As dockerd: a container no longer probed is unhealthy.
        assert health(daemon, "hc-pause")["Status"] == "unhealthy"
        count = len(health(daemon, "hc-pause")["Log"])
        ends = [e["End"] for e in health(daemon, "hc-pause")["Log"]]
        time.sleep(2.5)
        assert [e["End"] for e in health(daemon, "hc-pause")["Log"]] == ends
        status = daemon.docker("ps", "--filter", "name=hc-pause", "--format", "{{.Status}}").stdout.strip()
        assert status.endswith("(Paused)"), status
        daemon.docker("unpause", "hc-pause")
        wait_status(daemon, "hc-pause", "healthy")
        assert len(health(daemon, "hc-pause")["Log"]) >= min(count + 1, 5)
        daemon.docker("stop", "-t", "0", "hc-pause")
        h = health(daemon, "hc-pause")
        assert h["Status"] == "unhealthy"
        ends = [e["End"] for e in h["Log"]]
        time.sleep(2.5)
        assert [e["End"] for e in health(daemon, "hc-pause")["Log"]] == ends
        assert "hc-pause" in ps_names(daemon, "health=unhealthy")
    finally:
        remove(daemon, "hc-pause")


@pytest.mark.route("POST", "/commit")
def test_an_image_healthcheck_and_no_healthcheck(daemon):
    daemon.docker("create", "--name", "hc-base", "busybox", "sleep", "1000")
    try:
        daemon.docker(
            "commit", "--change", "HEALTHCHECK --interval=1s --retries=1 CMD echo from-image",
            "--change", 'CMD ["sleep", "1000"]', "hc-base", "hc-image:latest",
        )  # fmt: skip
        daemon.docker("run", "-d", "--name", "hc-img", "hc-image")
        h = wait_status(daemon, "hc-img", "healthy")
        assert h["Log"][0]["Output"] == "from-image\n"
        config = daemon.docker_json("inspect", "hc-img", format="{{json .Config.Healthcheck}}")
        assert config["Test"] == ["CMD-SHELL", "echo from-image"]
        assert config["Interval"] == 1_000_000_000
        # The create's options complete the image's.
        daemon.docker("run", "-d", "--name", "hc-over", "--health-cmd", "exit 1", "hc-image")
        h = wait_status(daemon, "hc-over", "unhealthy")
        assert h["FailingStreak"] == 1
        # --no-healthcheck: no probe, no health state, health=none.
        daemon.docker("run", "-d", "--name", "hc-none", "--no-healthcheck", "hc-image")
        assert daemon.docker_json("inspect", "hc-none", format="{{json .Config.Healthcheck.Test}}") == ["NONE"]
        time.sleep(2)
        assert health(daemon, "hc-none") is None
        assert "hc-none" in ps_names(daemon, "health=none")
        assert "hc-img" not in ps_names(daemon, "health=none")
        status = daemon.docker("ps", "--filter", "name=hc-none", "--format", "{{.Status}}").stdout.strip()
        assert "(" not in status, status
    finally:
        remove(daemon, "hc-img", "hc-over", "hc-none", "hc-base")
        daemon.docker("rmi", "hc-image", check=False)


@pytest.mark.route("GET", "/containers/json")
@pytest.mark.route("POST", "/containers/create")
def test_bad_filter_and_bad_durations(daemon):
    result = daemon.docker("ps", "--filter", "health=ill", check=False)
    assert result.returncode != 0
    assert "Unrecognised filter value for health: ill" in result.stderr
    answer = daemon.request(
        "POST", "/v1.44/containers/create",
        {"Image": "busybox", "Cmd": ["true"], "Healthcheck": {"Test": ["CMD", "true"], "StartInterval": 10}},
    )  # fmt: skip
    assert answer.status == 400
    assert answer.json() == {"message": "StartInterval in Healthcheck cannot be less than 1ms"}
    # Before API 1.44 there is no StartInterval: it is dropped, not checked.
    answer = daemon.request(
        "POST", "/v1.41/containers/create?name=hc-old",
        {"Image": "busybox", "Cmd": ["true"], "Healthcheck": {"Test": ["CMD", "true"], "StartInterval": 10}},
    )  # fmt: skip
    try:
        assert answer.status == 201, answer.text
        config = daemon.docker_json("inspect", "hc-old", format="{{json .Config.Healthcheck}}")
        assert "StartInterval" not in config
    finally:
        remove(daemon, "hc-old")


def test_a_re_adopted_container_is_probed_again(daemons, tmp_path):
    d = daemons.start("--live-restore")
    with open(busybox_rootfs_tar(tmp_path), "rb") as f:
        subprocess.run(["docker", "import", "-", "busybox"], stdin=f, env=d.cli_env(), check=True, capture_output=True)
    d.docker(
        "run", "-d", "--name", "hc-kept", "--health-cmd", "date +%s%N", "--health-interval", "1s",
        "busybox", "sleep", "1000",
    )  # fmt: skip
    wait_status(d, "hc-kept", "healthy")
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    d.start()
    # The record kept the status; the new daemon starts probing again.
    h = health(d, "hc-kept")
    assert h["Status"] in ("starting", "healthy")
    last = h["Log"][-1]["End"] if h["Log"] else ""
    wait_for(
        lambda: (health(d, "hc-kept")["Log"] or [{}])[-1].get("End", "") > last
        and health(d, "hc-kept")["Status"] == "healthy",
        SETTLE, interval=0.3, what="a probe by the new daemon",
    )  # fmt: skip
    d.docker("rm", "-f", "hc-kept")
