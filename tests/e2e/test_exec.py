"""docker exec against the real daemon: the docker CLI (through a
pseudo-terminal for -it), docker-py, and raw HTTP for the hijacked stream."""

import json
import os
import socket
import subprocess
import time

import docker
import pexpect
import pytest

from twistedock.streams import unframe

from .conftest import DOCKER, wait_for
from .test_containers import daemon, remove  # noqa: F401  (module fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")]



@pytest.fixture
def box(daemon):
    """A running container, removed afterwards."""
    name = "xbox"
    remove(daemon, name)
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1000")
    yield name
    remove(daemon, name)


def exec_inspect(daemon, exec_id) -> dict:
    resp = daemon.request("GET", "/exec/%s/json" % exec_id)
    assert resp.status == 200, resp
    return resp.json()


def exec_create(daemon, name, **config) -> str:
    resp = daemon.request("POST", "/containers/%s/exec" % name, config)
    assert resp.status == 201, resp
    return resp.json()["Id"]


def exec_ids(daemon, name):
    return daemon.docker_json("inspect", name, format="{{json .ExecIDs}}")


def hijacked(daemon, target: str, body: dict, send: bytes = b"", upgrade=True, timeout=15.0):
    """POST by hand, send C{send} then half-close; (header lines, stream bytes)."""
    data = json.dumps(body).encode()
    lines = [
        "POST %s HTTP/1.1" % target,
        "Host: docker",
        "Content-Type: application/json",
        "Content-Length: %d" % len(data),
    ]
    if upgrade:
        lines += ["Connection: Upgrade", "Upgrade: tcp"]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(daemon.sock)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        if send:
            sock.sendall(send)
        sock.shutdown(socket.SHUT_WR)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    head, _, rest = received.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n"), rest


# -- the docker CLI ---------------------------------------------------------------


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
@pytest.mark.route("POST", "/exec/{name:.*}/start")
@pytest.mark.route("GET", "/exec/{id:.*}/json")
def test_exec_output_and_exit_codes(daemon, box):
    result = daemon.docker("exec", box, "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n")
    result = daemon.docker("exec", box, "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    # Killed by a signal: 128 + the signal, as a shell shows it.
    assert daemon.docker("exec", box, "sh", "-c", "kill -9 $$", check=False).returncode == 137


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_exec_of_a_missing_command(daemon, box):
    # dockerd 20.10 answers 126 for every exec that could not start.
    result = daemon.docker("exec", box, "nosuchcmd", check=False)
    assert result.returncode == 126
    assert 'OCI runtime exec failed: exec failed: unable to start container process: exec: "nosuchcmd": ' \
           "executable file not found in $PATH: unknown" in result.stdout + result.stderr
    result = daemon.docker("exec", "-w", "/nonexistent", box, "pwd", check=False)
    assert result.returncode == 126
    assert "no such file or directory" in result.stdout + result.stderr
    # Detached, the failure is the start's answer.
    result = daemon.docker("exec", "-d", box, "nosuchcmd", check=False)
    assert result.returncode == 1
    assert "executable file not found" in result.stderr


def test_exec_env_workdir_and_user(daemon, box):
    result = daemon.docker("exec", "-e", "FOO=bar", "-w", "/etc", "-u", "app", box,
                           "sh", "-c", 'echo "$FOO $(pwd) $HOME"; id')
    assert result.stdout == "bar /etc /home/app\nuid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n"
    env = daemon.docker("exec", box, "env").stdout.splitlines()
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in env
    assert "HOSTNAME=" + daemon.docker_json("inspect", box, format="{{json .Config.Hostname}}") in env
    assert not any(line.startswith("TERM=") for line in env)
    assert daemon.docker("exec", "-u", "65534:65534", box, "id", "-u").stdout == "65534\n"



@pytest.mark.route("POST", "/containers/{name:.*}/exec")
@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_exec_as_an_unknown_user(daemon, box):
    # As dockerd: the create is accepted, the start fails with exit code 126,
    # the error written as output (attached) or answered 500 (detached).
    exec_id = exec_create(daemon, box, User="nosuch", Cmd=["id"], AttachStdout=True, AttachStderr=True)
    message = "unable to find user nosuch: no matching entries in passwd file"
    result = daemon.docker("exec", "-u", "nosuch", box, "id", check=False)
    assert (result.returncode, result.stdout) == (126, message + "\n")  # (text mode reads \r\n as \n)
    head, stream = hijacked(daemon, "/v1.41/exec/%s/start" % exec_id, {"Detach": False})
    assert head[0] == "HTTP/1.1 101 UPGRADED"
    assert list(unframe(stream)) == [(1, (message + "\r\n").encode())]
    assert exec_inspect(daemon, exec_id)["ExitCode"] == 126
    exec_id = exec_create(daemon, box, User="nosuch", Cmd=["true"])
    resp = daemon.request("POST", "/exec/%s/start" % exec_id, {"Detach": True})
    assert (resp.status, resp.json()) == (500, {"message": message})
    assert exec_inspect(daemon, exec_id)["ExitCode"] == 126


def test_exec_privileged_and_capabilities(daemon, box):
    def caps(*args):
        lines = daemon.docker("exec", *args, box, "grep", "Cap", "/proc/self/status").stdout.splitlines()
        return dict(line.split(":\t") for line in lines)

    root = caps()
    assert root["CapEff"] == root["CapBnd"] != "0000000000000000"
    other = caps("-u", "65534")
    assert other["CapEff"] == "0000000000000000" and other["CapBnd"] == root["CapBnd"]
    privileged = caps("--privileged")
    assert int(privileged["CapEff"], 16) > int(root["CapEff"], 16)


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_exec_detached_runs_in_the_background(daemon, box):
    # The detached process waits for /tmp/go: the CLI returning before it
    # is told to go shows it did not wait for the process.
    result = daemon.docker("exec", "-d", box, "sh", "-c",
                           "while [ ! -e /tmp/go ]; do sleep 0.05; done; touch /tmp/done")
    assert result.returncode == 0 and result.stdout == ""
    assert daemon.docker("exec", box, "ls", "/tmp").stdout == ""
    daemon.docker("exec", box, "touch", "/tmp/go")
    wait_for(lambda: daemon.docker("exec", box, "ls", "/tmp", check=False).stdout == "done\ngo\n", 10,
             what="the detached exec's file")


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_exec_stdin_round_trips(daemon, box, tmp_path):
    result = subprocess.run(
        [DOCKER, "exec", "-i", box, "cat"], input=b"data\n", env=daemon.cli_env(), capture_output=True, timeout=30
    )
    assert (result.returncode, result.stdout) == (0, b"data\n")
    # Half-close: the end of stdin reaches the process, which ends the stream.
    big = os.urandom(5 * 1024 * 1024)
    result = subprocess.run(
        [DOCKER, "exec", "-i", box, "cat"], input=big, env=daemon.cli_env(), capture_output=True, timeout=60
    )
    assert result.returncode == 0
    assert len(result.stdout) == len(big) and result.stdout == big
    result = subprocess.run(
        [DOCKER, "exec", "-i", box, "sh", "-c", "wc -c; exit 3"], input=big, env=daemon.cli_env(),
        capture_output=True, timeout=60,
    )
    assert (result.returncode, result.stdout.split()) == (3, [str(len(big)).encode()])


@pytest.mark.route("POST", "/exec/{name:.*}/start")
@pytest.mark.route("POST", "/exec/{name:.*}/resize")
def test_exec_it_through_a_terminal(daemon, box):
    p = pexpect.spawn(DOCKER, ["exec", "-it", box, "sh"], env=daemon.cli_env(), timeout=15, dimensions=(33, 77))
    try:
        p.expect("# ")
        p.sendline("echo hi-$((1+1))")
        p.expect("hi-2")
        p.sendline("stty size; echo $TERM")
        p.expect("33 77")
        p.expect("xterm")
        p.sendline("exit 5")
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 5
    finally:
        p.close(force=True)


def test_exec_it_detach_keys_leave_it_running(daemon, box):
    p = pexpect.spawn(DOCKER, ["exec", "-it", box, "sh"], env=daemon.cli_env(), timeout=15)
    try:
        p.expect("# ")
        p.sendline("echo $$ > /tmp/shell")
        p.expect("# ")
        p.send("\x10")
        time.sleep(0.1)
        p.send("\x11")
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 1  # the CLI reports the detach, as with dockerd
    finally:
        p.close(force=True)
    [exec_id] = exec_ids(daemon, box)
    assert exec_inspect(daemon, exec_id)["Running"] is True


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
def test_exec_in_a_stopped_or_paused_container(daemon):
    remove(daemon, "xstopped", "xpaused")
    cid = daemon.docker("create", "--name", "xstopped", "busybox", "sleep", "1000").stdout.strip()
    daemon.docker("run", "-d", "--name", "xpaused", "busybox", "sleep", "1000")
    try:
        result = daemon.docker("exec", "xstopped", "true", check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == "Error response from daemon: Container %s is not running" % cid
        resp = daemon.request("POST", "/containers/xstopped/exec", {"Cmd": ["true"]})
        assert (resp.status, resp.json()) == (409, {"message": "Container %s is not running" % cid})
        daemon.docker("pause", "xpaused")
        resp = daemon.request("POST", "/containers/xpaused/exec", {"Cmd": ["true"]})
        assert resp.status == 409
        assert resp.json() == {"message": "Container xpaused is paused, unpause the container before exec"}
        resp = daemon.request("POST", "/containers/nope/exec", {"Cmd": ["true"]})
        assert (resp.status, resp.json()) == (404, {"message": "No such container: nope"})
        resp = daemon.request("POST", "/containers/xpaused/exec", {})
        assert (resp.status, resp.json()) == (400, {"message": "No exec command specified"})
    finally:
        remove(daemon, "xstopped", "xpaused")


# -- exec records -------------------------------------------------------------------


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
@pytest.mark.route("POST", "/exec/{name:.*}/start")
@pytest.mark.route("GET", "/exec/{id:.*}/json")
def test_exec_inspect_and_exec_ids(daemon, box):
    cid = daemon.docker_json("inspect", box, format="{{json .Id}}")
    assert exec_ids(daemon, box) is None
    exec_id = exec_create(daemon, box, Cmd=["sleep", "30"], User="app", DetachKeys="ctrl-a,b")
    assert exec_inspect(daemon, exec_id) == {
        "ID": exec_id,
        "Running": False,
        "ExitCode": None,
        "ProcessConfig": {"tty": False, "entrypoint": "sleep", "arguments": ["30"], "privileged": False, "user": "app"},
        "OpenStdin": False,
        "OpenStderr": False,
        "OpenStdout": False,
        "CanRemove": False,
        "ContainerID": cid,
        "DetachKeys": "AWI=",
        "Pid": 0,
    }
    assert exec_ids(daemon, box) == [exec_id]
    resp = daemon.request("POST", "/exec/%s/start" % exec_id, {"Detach": True})
    assert (resp.status, resp.body) == (200, b"")
    doc = exec_inspect(daemon, exec_id)
    assert doc["Running"] is True and doc["Pid"] > 0
    assert os.path.exists("/proc/%d" % doc["Pid"])
    resp = daemon.request("POST", "/exec/%s/start" % exec_id, {"Detach": True})
    assert (resp.status, resp.json()) == (409, {"message": "Error: Exec command %s is already running" % exec_id})
    # A quick one ends: no longer listed, its record keeps its exit code.
    quick = exec_create(daemon, box, Cmd=["sh", "-c", "exit 4"])
    daemon.request("POST", "/exec/%s/start" % quick, {"Detach": True})
    wait_for(lambda: exec_inspect(daemon, quick)["ExitCode"] == 4, 10, what="the exec's end")
    assert exec_inspect(daemon, quick)["Running"] is False
    assert exec_ids(daemon, box) == [exec_id]
    resp = daemon.request("POST", "/exec/%s/start" % quick, {"Detach": True})
    assert (resp.status, resp.json()) == (409, {"message": "Error: Exec command %s has already run" % quick})
    # The container stops: the running exec ends with it (137), an exec
    # never started is forgotten.
    unstarted = exec_create(daemon, box, Cmd=["true"])
    daemon.docker("kill", box)
    assert exec_ids(daemon, box) is None
    doc = exec_inspect(daemon, exec_id)
    assert (doc["Running"], doc["ExitCode"]) == (False, 137)
    resp = daemon.request("GET", "/exec/%s/json" % unstarted)
    assert (resp.status, resp.json()) == (404, {"message": "No such exec instance: %s" % unstarted})
    resp = daemon.request("POST", "/exec/%s/start" % exec_id, {"Detach": True})
    assert (resp.status, resp.json()) == (409, {"message": "Container %s is not running" % cid})
    # Removed with its container.
    remove(daemon, box)
    resp = daemon.request("GET", "/exec/%s/json" % exec_id)
    assert (resp.status, resp.json()) == (404, {"message": "No such exec instance: %s" % exec_id})


@pytest.mark.route("GET", "/events")
def test_exec_events(daemon, box):
    t0 = time.time()
    daemon.docker("exec", box, "sh", "-c", "exit 3", check=False)
    daemon.docker("exec", "-d", box, "sleep", "100")
    [sleeper] = exec_ids(daemon, box)
    daemon.docker("kill", box)
    t1 = time.time() + 0.5
    text = daemon.docker(
        "events", "--since", "%.6f" % t0, "--until", "%.6f" % t1, "--format", "{{json .}}", timeout=15
    ).stdout
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    seen = [(e["Action"], e["Actor"]["Attributes"].get("exitCode")) for e in events]
    first = [a for a, _ in seen if a.startswith("exec_")][:3]
    assert first == ["exec_create: sh -c exit 3", "exec_start: sh -c exit 3", "exec_die"]
    assert ("exec_die", "3") in seen
    assert ("exec_create: sleep 100", None) in seen and ("exec_start: sleep 100", None) in seen
    # The exec killed with its container dies before the container.
    assert seen.index(("exec_die", "137")) < seen.index(("die", "137"))
    die = [e for e in events if e["Action"] == "exec_die" and e["Actor"]["Attributes"]["exitCode"] == "137"][0]
    assert die["Type"] == "container"
    assert die["Actor"]["Attributes"]["execID"] == sleeper
    assert die["Actor"]["Attributes"]["name"] == box
    assert die["Actor"]["Attributes"]["image"] == "busybox"
    # The event filter matches exec_create and exec_start without their command.
    text = daemon.docker(
        "events", "--since", "%.6f" % t0, "--until", "%.6f" % t1, "--filter", "event=exec_start",
        "--format", "{{.Action}}", timeout=15,
    ).stdout
    assert text.split("\n")[:2] == ["exec_start: sh -c exit 3", "exec_start: sleep 100"]


# -- the hijacked stream, by hand -----------------------------------------------------


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_start_hijack_headers_framing_and_half_close(daemon, box):
    exec_id = exec_create(daemon, box, Cmd=["sh", "-c", "cat; echo err >&2; exit 2"],
                          AttachStdin=True, AttachStdout=True, AttachStderr=True)
    head, stream = hijacked(daemon, "/v1.51/exec/%s/start" % exec_id, {"Detach": False, "Tty": False}, b"in\n")
    assert head[0] == "HTTP/1.1 101 UPGRADED"
    assert "Content-Type: application/vnd.docker.multiplexed-stream" in head
    assert "Connection: Upgrade" in head and "Upgrade: tcp" in head
    assert "Api-Version: 1.51" in head and "Ostype: linux" in head
    assert unframe(stream) == [(1, b"in\n"), (2, b"err\n")]
    assert exec_inspect(daemon, exec_id)["ExitCode"] == 2
    # The error of a second start comes on the stream.
    head, stream = hijacked(daemon, "/v1.51/exec/%s/start" % exec_id, {})
    assert unframe(stream) == [(1, b"Error: Exec command %s has already run\r\n" % exec_id.encode())]
    # Without Upgrade: 200 and a raw-stream type; older API: raw-stream too.
    exec_id = exec_create(daemon, box, Cmd=["echo", "x"], AttachStdout=True)
    head, stream = hijacked(daemon, "/v1.51/exec/%s/start" % exec_id, {}, upgrade=False)
    assert head[0] == "HTTP/1.1 200 OK"
    assert "Content-Type: application/vnd.docker.raw-stream" in head
    assert unframe(stream) == [(1, b"x\n")]
    exec_id = exec_create(daemon, box, Cmd=["echo", "x"], AttachStdout=True)
    head, stream = hijacked(daemon, "/v1.41/exec/%s/start" % exec_id, {})
    assert "Content-Type: application/vnd.docker.raw-stream" in head
    assert unframe(stream) == [(1, b"x\n")]
    # Streams not attached are not sent.
    exec_id = exec_create(daemon, box, Cmd=["sh", "-c", "echo out; echo err >&2"], AttachStderr=True)
    _, stream = hijacked(daemon, "/v1.51/exec/%s/start" % exec_id, {})
    assert unframe(stream) == [(2, b"err\n")]


@pytest.mark.route("POST", "/exec/{name:.*}/start")
@pytest.mark.route("POST", "/exec/{name:.*}/resize")
def test_tty_start_is_raw_and_resizes(daemon, box):
    # The process prints its size once it is no longer the start's 5x6.
    wait_resized = 'while [ "$(stty size)" = "5 6" ]; do sleep 0.05; done; stty size'
    exec_id = exec_create(daemon, box, Cmd=["sh", "-c", wait_resized], Tty=True, AttachStdout=True)
    resp = daemon.request("POST", "/exec/%s/resize?h=x&w=3" % exec_id)
    assert (resp.status, resp.json()) == (400, {"message": 'invalid resize height "x"'})
    import threading

    def resize():
        # Once it runs, so that the size reaches its terminal.
        wait_for(lambda: exec_inspect(daemon, exec_id)["Running"], 10, what="the exec running")
        daemon.request("POST", "/exec/%s/resize?h=12&w=34" % exec_id)

    thread = threading.Thread(target=resize)
    thread.start()
    head, stream = hijacked(daemon, "/v1.51/exec/%s/start" % exec_id, {"Tty": True, "ConsoleSize": [5, 6]})
    thread.join()
    assert "Content-Type: application/vnd.docker.raw-stream" in head
    assert stream == b"12 34\r\n"
    # The console size of the start is the terminal's first size.
    exec_id = exec_create(daemon, box, Cmd=["stty", "size"], Tty=True, AttachStdout=True)
    _, stream = hijacked(daemon, "/v1.51/exec/%s/start" % exec_id, {"Tty": True, "ConsoleSize": [7, 9]})
    assert stream == b"7 9\r\n"
    resp = daemon.request("POST", "/exec/nope/resize?h=1&w=1")
    assert (resp.status, resp.json()) == (404, {"message": "No such exec instance: nope"})


# -- docker-py ------------------------------------------------------------------------


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
@pytest.mark.route("POST", "/exec/{name:.*}/start")
@pytest.mark.route("GET", "/exec/{id:.*}/json")
def test_docker_py_exec_run(daemon, box):
    client = docker.DockerClient(base_url=daemon.host, version="auto", timeout=30)
    try:
        c = client.containers.get(box)
        assert tuple(c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 4"])) == (4, b"out\nerr\n")
        assert c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True).output == (b"out\n", b"err\n")
        assert c.exec_run("cat /etc/hostname", tty=True).output == c.id[:12].encode() + b"\r\n"
        assert c.exec_run("pwd", workdir="/tmp", user="app").output == b"/tmp\n"
        assert c.exec_run(["sh", "-c", "echo $A"], environment={"A": "b"}).output == b"b\n"
        assert tuple(c.exec_run("sleep 1", detach=True)) == (None, "")
        chunks = list(c.exec_run(["sh", "-c", "echo 1; sleep 0.2; echo 2"], stream=True).output)
        assert b"".join(chunks) == b"1\n2\n"
        api = client.api
        e = api.exec_create(box, "sh -c 'read x; echo got $x'", stdin=True)
        sock = api.exec_start(e["Id"], socket=True)
        raw = getattr(sock, "_sock", sock)
        raw.sendall(b"line\n")
        raw.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
        assert unframe(data) == [(1, b"got line\n")]
        assert api.exec_inspect(e["Id"])["ExitCode"] == 0
    finally:
        client.close()
