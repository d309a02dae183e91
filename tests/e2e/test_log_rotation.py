"""
Container logs on disk as the engines read them: LogPath absolute and the
same across restarts, in the CRI format the kubelet parses; rotated by the
daemon as dockerd's json-file driver (--log-opt, daemon.json log-opts, the
container's LogConfig), read across the rotated files; a followed log
ending with the container.
"""

import gzip
import os
import re
import time

import pytest

from .conftest import wait_for
from .test_containers import import_busybox

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

#: The kubelet's CRI log line (pkg/kubelet/kuberuntime/logs parseCRILog).
CRI_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] ")


@pytest.fixture(scope="module")
def daemon(module_daemons, tmp_path_factory):
    d = module_daemons.start("--log-opt", "max-size=1k", "--log-opt", "max-file=3", "--log-opt", "compress=true")
    import_busybox(d, tmp_path_factory.mktemp("img"))
    yield d
    d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)


def log_files(log_path):
    directory, name = os.path.split(log_path)
    return sorted(n for n in os.listdir(directory) if n.startswith(name))


def slow_writer(count: int) -> list:
    return ["sh", "-c", "i=0; while [ $i -lt %d ]; do echo line-$i; i=$((i+1)); sleep 0.01; done" % count]


def test_daemon_log_opts_rotate_and_logs_read_across(daemon):
    daemon.docker("run", "-d", "--name", "rot", "busybox", *slow_writer(200))
    info = daemon.docker_json("inspect", "rot", format="{{json .}}")
    assert info["HostConfig"]["LogConfig"] == {
        "Type": "json-file", "Config": {"compress": "true", "max-file": "3", "max-size": "1k"}
    }
    log_path = info["LogPath"]
    assert os.path.isabs(log_path)
    # `docker logs -f` from the start sees every line, across rotations.
    followed = daemon.docker("logs", "-f", "rot", timeout=60).stdout.split()
    assert followed == ["line-%d" % i for i in range(200)]
    name = os.path.basename(log_path)
    wait_for(lambda: log_files(log_path) == [name, name + ".1.gz", name + ".2.gz"], 5,
             what="two compressed rotated files")
    with gzip.open(log_path + ".1.gz") as f:
        lines = f.read().splitlines()
    assert lines and all(CRI_LINE.match(line) for line in lines)
    # The oldest lines are gone (3 files of about 1 kB: the size is checked
    # once a reactor turn after a write, so a loaded host may overshoot
    # it), the rest in order.
    kept = daemon.docker("logs", "rot").stdout.split()
    first = int(kept[0].split("-")[1])
    assert kept == ["line-%d" % i for i in range(first, 200)] and len(kept) < 200
    assert daemon.docker("logs", "--tail", "3", "rot").stdout.split() == ["line-197", "line-198", "line-199"]
    daemon.docker("rm", "rot")


def test_container_log_config_wins_and_bad_options_fail_the_start(daemon):
    daemon.docker("run", "-d", "--name", "own", "--log-opt", "max-size=2k", "--log-opt", "max-file=2",
                  "--log-opt", "compress=false", "busybox", *slow_writer(150))
    log_path = daemon.docker_json("inspect", "own", format="{{json .LogPath}}")
    assert len(daemon.docker("logs", "-f", "own", timeout=60).stdout.split()) == 150
    name = os.path.basename(log_path)
    assert log_files(log_path) == [name, name + ".1"]
    assert 2000 <= os.path.getsize(log_path + ".1") < 20000
    daemon.docker("rm", "own")
    # As the reference dockerd: accepted at create, refused at start.
    for option, message in (("max-size=abc", "invalid size: 'abc'"),
                            ("max-file=0", "max-file cannot be less than 1")):
        daemon.docker("create", "--name", "bad", "--log-opt", option, "busybox", "true")
        resp = daemon.request("POST", "/containers/bad/start")
        assert (resp.status, resp.json()["message"]) == (500, "failed to initialize logging driver: " + message)
        daemon.docker("rm", "bad")


def test_log_path_stable_across_restarts_and_follow_ends_with_the_container(daemon):
    daemon.docker("run", "-d", "--name", "again", "--log-driver", "json-file", "--log-opt", "max-size=1m",
                  "busybox", "sh", "-c", "echo run; sleep 1")
    first = daemon.docker_json("inspect", "again", format="{{json .LogPath}}")
    # Nomad's docklog: follow with since, the answer ends with the run.
    started = time.monotonic()
    resp = daemon.request("GET", "/containers/again/logs?follow=1&since=1&stdout=1&stderr=1", timeout=20)
    assert resp.status == 200 and b"run\n" in resp.body
    assert time.monotonic() - started < 15
    daemon.docker("wait", "again")
    daemon.docker("start", "again")
    daemon.docker("wait", "again")
    assert daemon.docker_json("inspect", "again", format="{{json .LogPath}}") == first
    assert daemon.docker("logs", "again").stdout == "run\nrun\n"
    with open(first, "rb") as f:
        assert all(CRI_LINE.match(line) for line in f.read().splitlines())
    daemon.docker("rm", "again")


def test_daemon_json_log_opts(daemons):
    d = daemons.start(config={"log-driver": "local", "log-opts": {"max-size": "10m", "max-file": "2"}})
    assert d.info()["LoggingDriver"] == "local"
    code, output = daemons.run_to_exit(config={"log-opts": {"max-size": "nope"}})
    assert code != 0 and "failed to set log opts: invalid size: 'nope'" in output
