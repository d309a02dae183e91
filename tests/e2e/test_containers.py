"""Containers that really run, driven with the real docker CLI and docker-py."""

import json
import os
import signal
import subprocess
import tarfile
import time

import pytest

from .conftest import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

BUSYBOX = "/bin/busybox"


def busybox_rootfs_tar(path) -> str:
    """A busybox image's root filesystem: the static binary, its applet
    links, and the /etc files a user lookup needs."""
    out = str(path / "busybox.tar")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(out, "w") as tar:
        for directory in ("bin", "etc", "tmp", "root", "home", "home/app", "proc", "sys", "dev"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            if directory == "home/app":
                info.uid = info.gid = 1000
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo("bin/" + applet)
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
             "nobody:x:65534:65534:nobody:/:/bin/false\n"),
            ("etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            import io

            tar.addfile(info, io.BytesIO(data))
    return out


def import_busybox(daemon, path, tag: str = "busybox:latest") -> None:
    """The busybox image (L{busybox_rootfs_tar}, made in C{path}) imported
    into C{daemon} as C{tag} with the docker CLI."""
    with open(busybox_rootfs_tar(path), "rb") as f:
        result = subprocess.run(["docker", "import", "-", tag], stdin=f, env=daemon.cli_env(),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def daemon(module_daemons, tmp_path_factory):
    d = module_daemons.start()
    tar = busybox_rootfs_tar(tmp_path_factory.mktemp("img"))
    with open(tar, "rb") as f:
        result = subprocess.run(
            ["docker", "import", "-", "busybox:latest"],
            stdin=f,
            env=d.cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    return d


def state(daemon, name) -> dict:
    return daemon.docker_json("inspect", name, format="{{json .State}}")


def remove(daemon, *names):
    daemon.docker("rm", "-f", *names, check=False)


@pytest.mark.route("POST", "/containers/create")
@pytest.mark.route("POST", "/containers/{name:.*}/attach")
@pytest.mark.route("POST", "/containers/{name:.*}/wait")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_run_rm_prints_and_removes(daemon):
    result = daemon.docker("run", "--rm", "--name", "hello", "busybox", "echo", "hello")
    assert result.stdout == "hello\n"
    assert daemon.docker("ps", "-a", "--filter", "name=hello", "-q").stdout == ""


def test_exit_code_and_streams(daemon):
    result = daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert result.returncode == 3
    assert result.stdout == "out\n"
    # Before the container's stderr the CLI prints the create answer's
    # warnings: with IPv4 forwarding off (as /info reports), dockerd's one.
    forwarding = daemon.info()["IPv4Forwarding"]
    warning = "" if forwarding else "WARNING: IPv4 forwarding is disabled. Networking will not work.\n"
    assert result.stderr == warning + "err\n"


@pytest.mark.route("GET", "/containers/json")
@pytest.mark.route("GET", "/containers/{name:.*}/json")
@pytest.mark.route("GET", "/containers/{name:.*}/top")
@pytest.mark.route("GET", "/containers/{name:.*}/logs")
@pytest.mark.route("POST", "/containers/{name:.*}/stop")
@pytest.mark.route("POST", "/containers/{name:.*}/restart")
@pytest.mark.route("POST", "/containers/{name:.*}/rename")
@pytest.mark.route("POST", "/containers/{name:.*}/pause")
@pytest.mark.route("POST", "/containers/{name:.*}/unpause")
@pytest.mark.route("DELETE", "/containers/{name:.*}")
def test_detached_lifecycle(daemon):
    remove(daemon, "web", "web2")
    cid = daemon.docker("run", "-d", "--name", "web", "busybox", "sh", "-c",
                        "echo started; exec sleep 1000").stdout.strip()
    assert len(cid) == 64
    try:
        ps = daemon.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}} {{.Command}}").stdout
        assert cid[:12] + " web Up " in ps
        s = state(daemon, "web")
        assert s["Status"] == "running" and s["Running"] and s["Pid"] > 0
        assert os.path.exists("/proc/%d" % s["Pid"])
        top = daemon.docker("top", "web").stdout
        assert "sleep 1000" in top
        wait_for(lambda: "started" in daemon.docker("logs", "web").stdout, 10, what="log line")

        since = "%.9f" % time.time()
        daemon.docker("stop", "-t", "1", "web")
        # sleep ignores SIGTERM as pid 1: killed after the 1 s timeout (by
        # the daemon's own clock, not the default 10 s).
        s = state(daemon, "web")
        assert s["Status"] == "exited" and s["ExitCode"] == 137
        kills = [
            json.loads(line) for line in daemon.docker(
                "events", "--since", since, "--until", "%.9f" % time.time(), "--filter", "container=web",
                "--filter", "event=kill", "--format", "{{json .}}",
            ).stdout.splitlines()
        ]
        assert [k["Actor"]["Attributes"]["signal"] for k in kills] == ["15", "9"]
        assert 1e9 <= kills[1]["timeNano"] - kills[0]["timeNano"] < 10e9

        daemon.docker("start", "web")
        assert state(daemon, "web")["Running"]
        pid = state(daemon, "web")["Pid"]
        daemon.docker("restart", "-t", "0", "web")
        assert state(daemon, "web")["Running"]
        assert state(daemon, "web")["Pid"] != pid

        daemon.docker("rename", "web", "web2")
        assert daemon.docker_json("inspect", "web2", format="{{json .Name}}") == "/web2"
        assert daemon.docker("inspect", "web", check=False).returncode != 0

        daemon.docker("pause", "web2")
        assert state(daemon, "web2")["Status"] == "paused"
        assert "(Paused)" in daemon.docker("ps", "--filter", "name=web2", "--format", "{{.Status}}").stdout
        daemon.docker("unpause", "web2")
        assert state(daemon, "web2")["Status"] == "running"

        daemon.docker("rm", "-f", "web2")
        assert daemon.docker("ps", "-aq", "--filter", "id=" + cid).stdout == ""
    finally:
        remove(daemon, "web", "web2")


@pytest.mark.route("POST", "/containers/{name:.*}/kill")
def test_kill_and_wait(daemon):
    remove(daemon, "kk")
    daemon.docker("run", "-d", "--name", "kk", "busybox", "sleep", "1000")
    try:
        waiter = daemon.docker_popen("wait", "kk")
        daemon.docker("kill", "-s", "TERM", "kk")  # pid 1 ignores TERM: still running
        time.sleep(0.3)
        assert state(daemon, "kk")["Running"]
        daemon.docker("kill", "kk")
        out, _ = waiter.communicate(timeout=15)
        assert out.strip() == "137"
        assert state(daemon, "kk")["ExitCode"] == 137
    finally:
        remove(daemon, "kk")


def test_memory_limit_oom_kill(daemon):
    remove(daemon, "oom")
    result = daemon.docker(
        "run", "--name", "oom", "--memory", "16m", "--memory-swap", "16m", "busybox",
        "sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo ${#x}",
        check=False, timeout=60,
    )
    try:
        assert result.returncode == 137, result
        s = state(daemon, "oom")
        assert s["OOMKilled"] is True
        assert s["ExitCode"] == 137
    finally:
        remove(daemon, "oom")


def test_restart_on_failure_twice(daemon):
    remove(daemon, "flaky")
    daemon.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox",
                  "sh", "-c", "echo run; exit 1")
    try:
        wait_for(
            lambda: daemon.docker_json("inspect", "flaky", format="{{json .RestartCount}}") == 2
            and not state(daemon, "flaky")["Running"],
            20,
            what="two restarts",
        )
        time.sleep(0.5)
        assert daemon.docker_json("inspect", "flaky", format="{{json .RestartCount}}") == 2
        assert state(daemon, "flaky")["ExitCode"] == 1
        assert daemon.docker("logs", "flaky").stdout == "run\nrun\nrun\n"
    finally:
        remove(daemon, "flaky")


def test_inside_the_container(daemon, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "from-host").write_text("host data\n")
    script = (
        "echo env=$GREETING; pwd; id -u; id -g; cat /data/from-host; echo made > /data/from-ctr;"
        " mount | grep ' /scratch ' | cut -d' ' -f5; hostname; cat /etc/hostname"
    )
    result = daemon.docker(
        "run", "--rm", "-e", "GREETING=hi", "-w", "/tmp", "-u", "app", "--hostname", "box",
        "-v", "%s:/data" % shared, "--tmpfs", "/scratch", "busybox", "sh", "-c", script,
    )
    assert result.stdout.splitlines() == [
        "env=hi", "/tmp", "1000", "1000", "host data", "tmpfs", "box", "box",
    ]
    assert (shared / "from-ctr").read_text() == "made\n"


@pytest.mark.route("GET", "/containers/{name:.*}/logs")
def test_logs_follow(daemon):
    remove(daemon, "ticker")
    daemon.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                  "for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done")
    try:
        result = daemon.docker("logs", "-f", "ticker", timeout=20)
        assert result.stdout == "".join("tick %d\n" % i for i in range(1, 6))
        stamped = daemon.docker("logs", "-t", "--tail", "2", "ticker").stdout.splitlines()
        assert len(stamped) == 2 and stamped[1].endswith(" tick 5")
        assert stamped[0][:4].isdigit() and "T" in stamped[0].split()[0]
    finally:
        remove(daemon, "ticker")


def test_docker_py(daemon):
    import docker

    client = docker.DockerClient(base_url=daemon.host)
    try:
        container = client.containers.run("busybox", ["sh", "-c", "echo py; sleep 30"], detach=True, name="py")
        container.reload()
        assert container.status == "running"
        assert container.attrs["Config"]["Cmd"] == ["sh", "-c", "echo py; sleep 30"]
        wait_for(lambda: container.logs() == b"py\n", 10, what="docker-py logs")
        container.kill()
        assert container.wait(timeout=15)["StatusCode"] == 137
        container.remove()
        assert client.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"
    finally:
        try:
            client.containers.get("py").remove(force=True)
        except docker.errors.NotFound:
            pass
        client.close()


@pytest.mark.route("POST", "/containers/prune")
def test_prune_and_filters(daemon):
    daemon.docker("container", "prune", "-f")
    daemon.docker("create", "--name", "c1", "--label", "tier=a", "busybox", "true")
    daemon.docker("run", "--name", "c2", "busybox", "sh", "-c", "exit 4", check=False)
    try:
        assert daemon.docker("ps", "-a", "--filter", "label=tier=a", "--format", "{{.Names}}").stdout == "c1\n"
        assert daemon.docker("ps", "-a", "--filter", "exited=4", "--format", "{{.Names}}").stdout == "c2\n"
        assert daemon.docker("ps", "-a", "--filter", "status=created", "--format", "{{.Names}}").stdout == "c1\n"
        bad = daemon.docker("ps", "--filter", "bogus=1", check=False)
        assert bad.returncode != 0 and "Invalid filter 'bogus'" in bad.stderr
        # until: moby's timestamps, composite Go durations included; both are newer.
        assert "Deleted" not in daemon.docker("container", "prune", "-f", "--filter", "until=1h30m").stdout
        bad = daemon.request("POST", "/containers/prune?filters=%7B%22until%22%3A%5B%22soon%22%5D%7D")
        assert bad.status == 400 and bad.json() == {"message": 'failed to parse value as time or duration: "soon"'}
        out = daemon.docker("container", "prune", "-f").stdout
        assert "Deleted Containers:" in out
        assert daemon.docker("ps", "-aq").stdout == ""
    finally:
        remove(daemon, "c1", "c2")


def test_bad_create_requests(daemon):
    def create(body, query=""):
        return daemon.request("POST", "/v1.41/containers/create" + query, body=body)

    answer = create({"Image": "nosuchimage"})
    assert answer.status == 404
    assert answer.json() == {"message": "No such image: nosuchimage:latest"}
    answer = create({"Image": "busybox", "Cmd": ["true"]}, "?name=bad%20name")
    assert answer.status == 400
    assert answer.json()["message"].startswith("Invalid container name (bad name)")
    remove(daemon, "taken")
    daemon.docker("create", "--name", "taken", "busybox", "true")
    try:
        answer = create({"Image": "busybox", "Cmd": ["true"]}, "?name=taken")
        assert answer.status == 409
        assert answer.json()["message"].startswith('Conflict. The container name "/taken" is already in use')
    finally:
        remove(daemon, "taken")
    answer = create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}})
    assert answer.status == 400
    answer = create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": 1024}})
    assert answer.status == 400
    assert "Minimum memory limit allowed is 6MB" in answer.json()["message"]
    answer = daemon.request("POST", "/containers/nosuch/start")
    assert answer.status == 404
    assert answer.json() == {"message": "No such container: nosuch"}


def test_events_for_a_run(daemon):
    since = "%.3f" % time.time()
    daemon.docker("run", "--rm", "--name", "ev", "busybox", "true")
    # --until a little ahead: the command ends by itself then.
    until = "%.3f" % (time.time() + 0.5)
    out = daemon.docker("events", "--since", since, "--until", until, "--filter", "container=ev",
                        "--format", "{{.Action}}").stdout.split()
    assert out == ["create", "attach", "start", "die", "destroy"] or out == ["create", "start", "die", "destroy"]


def test_daemon_killed_and_restarted(module_daemons, daemon):
    """kill -9 of the daemon while containers run: a restarted daemon shows
    every container with its true state and keeps their logs."""
    remove(daemon, "keep", "done", "always")
    daemon.docker("run", "-d", "--name", "keep", "busybox", "sh", "-c", "echo kept; exec sleep 1000")
    daemon.docker("run", "--name", "done", "busybox", "sh", "-c", "echo finished; exit 2", check=False)
    daemon.docker("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c",
                  "echo up; exec sleep 1000")
    wait_for(lambda: "kept" in daemon.docker("logs", "keep").stdout, 10, what="log")
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    daemon.start()
    try:
        # Without --live-restore, what was left running is stopped; "always" runs again.
        keep = state(daemon, "keep")
        assert keep["Status"] == "exited" and keep["ExitCode"] == 137
        done = state(daemon, "done")
        assert done["Status"] == "exited" and done["ExitCode"] == 2
        wait_for(lambda: state(daemon, "always")["Status"] == "running", 15, what="always restarted")
        assert daemon.docker("logs", "keep").stdout == "kept\n"
        assert daemon.docker("logs", "done").stdout == "finished\n"
    finally:
        remove(daemon, "keep", "done", "always")


def test_tty_run_and_logs(daemon):
    result = subprocess.run(
        ["docker", "run", "--rm", "-t", "busybox", "sh", "-c", "echo in-tty"],
        env=daemon.cli_env(), capture_output=True, timeout=30,
    )
    assert result.stdout == b"in-tty\r\n"
    remove(daemon, "tty")
    daemon.docker("run", "-d", "-t", "--name", "tty", "busybox", "sh", "-c", "echo out; echo err >&2")
    try:
        wait_for(lambda: not state(daemon, "tty")["Running"], 10, what="exit")
        logs = subprocess.run(["docker", "logs", "tty"], env=daemon.cli_env(), capture_output=True, timeout=30)
        # A TTY merges the streams: all of it is stdout, raw.
        assert logs.stdout == b"out\r\nerr\r\n" and logs.stderr == b""
    finally:
        remove(daemon, "tty")


def test_stdin_round_trip(daemon, tmp_path):
    data = os.urandom(10 * 1024 * 1024)
    result = subprocess.run(
        ["docker", "run", "--rm", "-i", "busybox", "cat"],
        input=data, env=daemon.cli_env(), capture_output=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


@pytest.mark.route("POST", "/containers/{name:.*}/update")
def test_update_resources_and_policy(daemon):
    remove(daemon, "upd")
    daemon.docker("run", "-d", "--name", "upd", "--memory", "32m", "busybox", "sleep", "1000")
    try:
        daemon.docker("update", "--memory", "64m", "--memory-swap", "128m", "--restart", "on-failure:3", "upd")
        hc = daemon.docker_json("inspect", "upd", format="{{json .HostConfig}}")
        assert hc["Memory"] == 64 * 1024 * 1024
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        pid = state(daemon, "upd")["Pid"]
        cgroup = [l for l in open("/proc/%d/cgroup" % pid).read().splitlines() if ":memory:" in l or l.startswith("0::")]
        assert cgroup
        path = cgroup[0].split(":", 2)[2]
        for candidate in ("/sys/fs/cgroup/memory%s/memory.limit_in_bytes" % path, "/sys/fs/cgroup%s/memory.max" % path):
            if os.path.exists(candidate):
                assert int(open(candidate).read()) == 64 * 1024 * 1024
                break
        else:
            pytest.fail("no memory cgroup found for pid %d" % pid)
    finally:
        remove(daemon, "upd")


def test_top_ps_args_and_not_running(daemon):
    remove(daemon, "tp")
    daemon.docker("run", "-d", "--name", "tp", "busybox", "sleep", "1000")
    try:
        out = daemon.docker("top", "tp", "-o", "pid,comm").stdout.splitlines()
        assert out[0].split() == ["PID", "COMMAND"]
        assert [line.split()[1] for line in out[1:]] == ["sleep"]
        daemon.docker("kill", "tp")
        bad = daemon.docker("top", "tp", check=False)
        assert bad.returncode != 0 and "is not running" in bad.stderr
    finally:
        remove(daemon, "tp")


def test_unless_stopped_and_always_after_a_clean_restart(daemons, tmp_path):
    d = daemons.start()
    with open(busybox_rootfs_tar(tmp_path), "rb") as f:
        subprocess.run(["docker", "import", "-", "busybox"], stdin=f, env=d.cli_env(), check=True, capture_output=True)
    d.docker("run", "-d", "--name", "al", "--restart", "always", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "us", "--restart", "unless-stopped", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "us-stopped", "--restart", "unless-stopped", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "plain", "busybox", "sleep", "1000")
    d.docker("stop", "-t", "0", "us-stopped")
    pids = {n: state(d, n)["Pid"] for n in ("al", "us", "plain")}
    # SIGTERM: the daemon stops what runs (no live restore), then exits.
    assert d.stop(timeout=30) == 0
    for name, pid in pids.items():
        assert not os.path.exists("/proc/%d" % pid), name
    d.start()
    wait_for(lambda: state(d, "al")["Running"] and state(d, "us")["Running"], 15, what="restarts")
    assert not state(d, "us-stopped")["Running"]
    assert not state(d, "plain")["Running"]
    d.docker("rm", "-f", "al", "us", "us-stopped", "plain")


def test_live_restore_keeps_containers(daemons, tmp_path):
    d = daemons.start("--live-restore")
    with open(busybox_rootfs_tar(tmp_path), "rb") as f:
        subprocess.run(["docker", "import", "-", "busybox"], stdin=f, env=d.cli_env(), check=True, capture_output=True)
    d.docker("run", "-d", "--name", "counter", "busybox", "sh", "-c",
             "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done")
    pid = state(d, "counter")["Pid"]
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    time.sleep(0.5)
    assert os.path.exists("/proc/%d" % pid)
    d.start()
    s = state(d, "counter")
    assert s["Running"] and s["Pid"] == pid
    lines = d.docker("logs", "counter").stdout.split()
    assert lines[:3] == ["0", "1", "2"]
    # The re-adopted container's exit is still noticed.
    d.docker("kill", "counter")
    assert state(d, "counter")["ExitCode"] == 137
    d.docker("rm", "counter")


def test_second_daemon_on_the_same_data_root(daemons):
    first = daemons.start()
    other = daemons.make(workdir=daemons.workdir("x"))
    other.data_root = first.data_root
    other.spawn()
    assert other.wait_exit(15) != 0
    assert "is in use by another daemon (pid %d)" % first.proc.pid in other.log_text()


def test_command_not_found(daemon):
    before = set(daemon.docker("ps", "-aq").stdout.split())
    result = daemon.docker("run", "--rm", "busybox", "nonexistent", check=False, timeout=30)
    assert result.returncode == 127
    assert 'exec: "nonexistent": executable file not found in $PATH' in result.stderr
    # --rm: the container that could not start is gone.
    assert set(daemon.docker("ps", "-aq").stdout.split()) == before


def test_logs_since_until(daemon):
    remove(daemon, "slow")
    daemon.docker("run", "-d", "--name", "slow", "busybox", "sh", "-c", "echo one; sleep 1.2; echo two")
    try:
        wait_for(lambda: not state(daemon, "slow")["Running"], 10, what="exit")
        stamped = daemon.docker("logs", "-t", "slow").stdout.splitlines()
        assert [l.split(" ", 1)[1] for l in stamped] == ["one", "two"]
        from datetime import datetime

        second = datetime.strptime(stamped[1].split()[0][:26] + "Z", "%Y-%m-%dT%H:%M:%S.%fZ")
        cut = second.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert daemon.docker("logs", "--since", cut, "slow").stdout == "two\n"
        first = stamped[0].split()[0]
        assert daemon.docker("logs", "--until", first, "slow").stdout in ("", "one\n")
        assert daemon.docker("logs", "--until", cut, "slow").stdout == "one\n"
    finally:
        remove(daemon, "slow")
