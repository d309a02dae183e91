"""Exec: the router's rules over an in-memory exec backend (the hijacked
start driven through a real HTTP channel on a string transport), and the
exec backend's own pieces (process spec, errors, conmon's reports, the
exec store) without running anything."""

import base64
import json

import attr
import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from twistedock.backend import execs as execs_module
from twistedock.backend.execs import (
    Exec,
    ExecBackend,
    ExecStore,
    daemon_environment,
    exec_process,
    start_error,
)
from twistedock.backend.runtime.conmon import ATTACH_FD, SYNC_FD, ConmonProcess
from twistedock.backend.events import EventLog
from twistedock.backend.swarm import InactiveCluster
from twistedock.daemon import build_routers
from twistedock.errors import Conflict, InternalError, InvalidParameter
from twistedock.routers.container import ExecOptions, IExecBackend
from twistedock.server.middleware import APIConfig
from twistedock.server.root import APIResource, compose
from twistedock.streams import unframe

from .memory import API, MemoryExecBackend



def exec_api() -> API:
    """L{API} with an in-memory exec backend, and a running container c1."""
    api = API()
    api.execs = MemoryExecBackend(api.containers)
    api.routers = build_routers(
        api.clock, api.system, InactiveCluster(), None, containers=api.containers, execs=api.execs
    )
    api.resource = APIResource(compose(api.routers, APIConfig(experimental=False, debug=False)))
    api.treq = StubTreq(api.resource)
    assert api.request("POST", "/containers/create?name=c1", json_body={"Image": "busybox"}).code == 201
    assert api.request("POST", "/containers/c1/start").code == 204
    return api


def create(api, cmd=("cat",), **config) -> str:
    answer = api.request("POST", "/containers/c1/exec", json_body=dict({"Cmd": list(cmd)}, **config))
    assert answer.code == 201, answer
    return answer.json()["Id"]


@attr.s(auto_attribs=True)
class Raw:
    """One request written by hand on an HTTP channel over a string transport."""

    transport: StringTransport
    channel: object

    @property
    def stream(self):
        """The hijacked stream, once the connection was taken over."""
        return getattr(self.transport, "protocol", None)

    def head_and_body(self):
        data = self.transport.value()
        head, _, body = data.partition(b"\r\n\r\n")
        return head.decode("latin-1").split("\r\n"), body


def raw(api, method: str, path: str, body=b"", headers=()) -> Raw:
    site = Site(api.resource)
    channel = site.buildProtocol(None)
    channel.callLater = api.clock.callLater
    transport = StringTransport()
    channel.makeConnection(transport)
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: docker", "Content-Length: %d" % len(body)]
    lines += ["%s: %s" % h for h in headers]
    channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return Raw(transport, channel)


def start(api, exec_id, version="v1.51", upgrade=True, **options) -> Raw:
    headers = [("Content-Type", "application/json")]
    if upgrade:
        headers += [("Connection", "Upgrade"), ("Upgrade", "tcp")]
    body = json.dumps(dict({"Detach": False, "Tty": False}, **options)).encode()
    return raw(api, "POST", "/%s/exec/%s/start" % (version, exec_id), body, headers)


# -- create and inspect ---------------------------------------------------------


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
@pytest.mark.route("GET", "/exec/{id:.*}/json")
def test_create_answers_201_with_the_id_and_inspect_finds_it():
    api = exec_api()
    exec_id = create(api, ("sh", "-c", "exit 3"), AttachStdout=True, Env=["A=1"])
    config = api.execs.execs[exec_id]["Config"]
    assert config.cmd == ("sh", "-c", "exit 3") and config.env == ("A=1",)
    answer = api.request("GET", "/exec/%s/json" % exec_id)
    assert answer.code == 200
    assert answer.json() == {"ID": exec_id, "Running": False, "ExitCode": None, "ContainerID": "c1"}


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
def test_create_without_a_command_is_refused():
    api = exec_api()
    for body in ({}, {"Cmd": []}, {"Cmd": None}, {"AttachStdout": True}):
        answer = api.request("POST", "/containers/c1/exec", json_body=body)
        assert (answer.code, answer.json()) == (400, {"message": "No exec command specified"})
    # An empty body is no options at all: no command either.
    answer = api.request("POST", "/containers/c1/exec")
    assert (answer.code, answer.json()) == (400, {"message": "No exec command specified"})


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
def test_create_decodes_as_go_does():
    api = exec_api()
    answer = api.request("POST", "/containers/c1/exec", json_body={"Cmd": "sh"})
    assert answer.code == 400
    assert answer.json() == {
        "message": "invalid JSON: json: cannot unmarshal string into Go struct field "
        "ExecOptions.Cmd of type []string"
    }
    answer = api.request("POST", "/containers/c1/exec", json_body={"Cmd": ["sh"], "tty": "yes"})
    assert answer.json()["message"].endswith("Go struct field ExecOptions.Tty of type bool")
    answer = api.request("POST", "/containers/c1/exec", json_body=["sh"])
    assert answer.json() == {
        "message": "invalid JSON: json: cannot unmarshal array into Go value of type container.ExecOptions"
    }
    # Names match regardless of case; unknown fields are ignored.
    answer = api.request("POST", "/containers/c1/exec", json_body={"cmd": ["true"], "attachstdin": True, "Whatever": 1})
    exec_id = answer.json()["Id"]
    assert api.execs.execs[exec_id]["Config"] == ExecOptions(cmd=["true"], attach_stdin=True)


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
def test_create_console_size_needs_api_1_42():
    api = exec_api()
    body = {"Cmd": ["sh"], "Tty": True, "ConsoleSize": [24, 80]}
    old = api.request("POST", "/v1.41/containers/c1/exec", json_body=body).json()["Id"]
    new = api.request("POST", "/v1.51/containers/c1/exec", json_body=body).json()["Id"]
    assert api.execs.execs[old]["Config"].console_size is None
    assert api.execs.execs[new]["Config"].console_size == (24, 80)


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
def test_create_in_a_stopped_or_missing_container():
    api = exec_api()
    api.containers.exit("c1", 0)
    answer = api.request("POST", "/containers/c1/exec", json_body={"Cmd": ["true"]})
    assert (answer.code, answer.json()) == (409, {"message": "Container c1 is not running"})
    answer = api.request("POST", "/containers/nope/exec", json_body={"Cmd": ["true"]})
    assert (answer.code, answer.json()) == (404, {"message": "No such container: nope"})


@pytest.mark.route("GET", "/exec/{id:.*}/json")
@pytest.mark.route("POST", "/exec/{name:.*}/start")
@pytest.mark.route("POST", "/exec/{name:.*}/resize")
def test_unknown_exec_is_404_everywhere():
    api = exec_api()
    expected = {"message": "No such exec instance: nope"}
    assert api.request("GET", "/exec/nope/json").json() == expected
    answer = api.request("POST", "/exec/nope/start", json_body={"Detach": True})
    assert (answer.code, answer.json()) == (404, expected)
    answer = api.request("POST", "/exec/nope/resize?h=10&w=20")
    assert (answer.code, answer.json()) == (404, expected)


def test_exec_routes_without_a_backend_answer_501():
    answer = API().request("POST", "/containers/c1/exec", json_body={"Cmd": ["true"]})
    assert (answer.code, answer.json()) == (501, {"message": "exec is not available in this daemon"})


# -- start ----------------------------------------------------------------------


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_detached_start_is_an_empty_200():
    api = exec_api()
    exec_id = create(api)
    answer = api.request("POST", "/exec/%s/start" % exec_id, json_body={"Detach": True, "Tty": True, "ConsoleSize": [5, 6]})
    assert answer.code == 200
    assert answer.body == b""
    assert api.execs.calls == [("start", exec_id, True, (5, 6))]
    r = start(api, create(api), Detach=True)
    head, body = r.head_and_body()
    assert head[0] == "HTTP/1.1 200 OK" and "Content-Length: 0" in head and body == b""
    assert not any(line.startswith("Content-Type") for line in head)
    # Once started, a second start is refused (a JSON error: nothing was hijacked).
    answer = api.request("POST", "/exec/%s/start" % exec_id, json_body={"Detach": True})
    assert answer.code == 409
    assert answer.json() == {"message": "Error: Exec command %s is already running" % exec_id}


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_console_size_only_with_a_tty_and_api_1_42():
    api = exec_api()
    for version, tty, expected in (("v1.51", True, (5, 6)), ("v1.51", False, None), ("v1.41", True, None)):
        exec_id = create(api)
        body = {"Detach": True, "Tty": tty, "ConsoleSize": [5, 6]}
        assert api.request("POST", "/%s/exec/%s/start" % (version, exec_id), json_body=body).code == 200
        assert api.execs.calls[-1] == ("start", exec_id, True, expected)


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_start_in_a_stopped_container_is_409_before_any_hijack():
    api = exec_api()
    exec_id = create(api)
    api.containers.exit("c1", 137)
    r = start(api, exec_id)
    head, body = r.head_and_body()
    assert head[0] == "HTTP/1.1 409 Conflict"
    assert json.loads(body) == {"message": "Container c1 is not running"}


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_upgraded_start_without_tty_is_multiplexed_with_the_middleware_headers():
    api = exec_api()
    exec_id = create(api)
    api.execs.execs[exec_id]["Output"] = [(1, b"out\n"), (2, b"err\n")]
    api.execs.execs[exec_id]["Code"] = 7
    r = start(api, exec_id)
    head, body = r.head_and_body()
    assert head[0] == "HTTP/1.1 101 UPGRADED"
    assert "Content-Type: application/vnd.docker.multiplexed-stream" in head
    assert "Connection: Upgrade" in head and "Upgrade: tcp" in head
    # Unlike attach, exec copies the headers the middleware set.
    assert "Api-Version: 1.51" in head and "Ostype: linux" in head
    assert any(line.startswith("Server: ") for line in head)
    assert body == b""
    stream = r.stream
    stream.dataReceived(b"hello\n")
    assert not r.transport.disconnecting
    # Half-close: stdin's end reaches the exec; the stream ends with it.
    stream.readConnectionLost()
    head, body = r.head_and_body()
    assert unframe(body) == [(1, b"hello\n"), (1, b"out\n"), (2, b"err\n")]
    assert r.transport.disconnecting
    assert api.execs.execs[exec_id]["ExitCode"] == 7
    assert api.request("GET", "/exec/%s/json" % exec_id).json()["ExitCode"] == 7


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_tty_start_is_raw():
    api = exec_api()
    exec_id = create(api, Tty=True)
    api.execs.execs[exec_id]["Output"] = [(1, b"hi\r\n")]
    r = start(api, exec_id, Tty=True)
    head, _ = r.head_and_body()
    assert "Content-Type: application/vnd.docker.raw-stream" in head
    r.stream.dataReceived(b"x")
    api.execs.finish(exec_id, 5)
    _, body = r.head_and_body()
    assert body == b"xhi\r\n"
    assert r.transport.disconnecting


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_start_before_api_1_42_and_without_upgrade():
    api = exec_api()
    r = start(api, create(api), version="v1.41")
    head, _ = r.head_and_body()
    assert head[0] == "HTTP/1.1 101 UPGRADED"
    assert "Content-Type: application/vnd.docker.raw-stream" in head
    r = start(api, create(api), upgrade=False)
    head, _ = r.head_and_body()
    assert head[0] == "HTTP/1.1 200 OK"
    assert "Content-Type: application/vnd.docker.raw-stream" in head
    # Still framed: the framing follows Tty, not the Content-Type.
    r.stream.dataReceived(b"abc")
    assert unframe(r.head_and_body()[1]) == [(1, b"abc")]


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_a_failure_after_the_hijack_is_written_as_output():
    api = exec_api()
    exec_id = create(api)
    api.execs.execs[exec_id]["Fail"] = InvalidParameter(
        'OCI runtime exec failed: exec: "nope": executable file not found in $PATH: unknown'
    )
    r = start(api, exec_id)
    head, body = r.head_and_body()
    assert head[0] == "HTTP/1.1 101 UPGRADED"
    assert unframe(body) == [
        (1, b'OCI runtime exec failed: exec: "nope": executable file not found in $PATH: unknown\r\n')
    ]
    assert r.transport.disconnecting
    # A second start (already run) is reported the same way, raw with a TTY.
    r = start(api, exec_id, Tty=True)
    assert r.head_and_body()[1] == b"Error: Exec command %s has already run\r\n" % exec_id.encode()


@pytest.mark.route("POST", "/exec/{name:.*}/start")
def test_client_leaving_ends_the_start():
    api = exec_api()
    exec_id = create(api)
    r = start(api, exec_id)
    r.stream.connectionLost(None)
    assert api.execs.execs[exec_id]["Running"] is False


# -- resize ---------------------------------------------------------------------


@pytest.mark.route("POST", "/exec/{name:.*}/resize")
def test_resize():
    api = exec_api()
    exec_id = create(api, Tty=True)
    answer = api.request("POST", "/exec/%s/resize?h=30&w=100" % exec_id)
    assert (answer.code, answer.body) == (200, b"")
    assert api.execs.calls == [("resize", exec_id, 30, 100)]
    answer = api.request("POST", "/exec/%s/resize?h=x&w=100" % exec_id)
    assert (answer.code, answer.json()) == (400, {"message": 'invalid resize height "x"'})
    answer = api.request("POST", "/exec/%s/resize?h=1" % exec_id)
    assert (answer.code, answer.json()) == (400, {"message": 'invalid resize width ""'})


# -- the exec backend's pieces --------------------------------------------------


def an_exec(**fields) -> Exec:
    values = dict(
        id="e" * 64, container_id="c" * 64, entrypoint="sh", args=["-c", "id"],
        env=["PATH=/bin"], user="", working_dir="",
    )
    values.update(fields)
    return Exec(**values)


CONTAINER_PROCESS = {
    "terminal": True,
    "user": {"uid": 0, "gid": 0, "additionalGids": [0, 10]},
    "args": ["sleep", "1000"],
    "env": ["PATH=/usr/bin", "TERM=xterm"],
    "cwd": "/srv",
    "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_CHOWN", "CAP_KILL"],
                     "permitted": ["CAP_CHOWN", "CAP_KILL"]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": True,
    "apparmorProfile": "docker-default",
}


def rootfs_with_users(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
    return str(tmp_path)


def test_exec_process_is_the_containers_with_the_execs_command(tmp_path):
    process = exec_process(CONTAINER_PROCESS, an_exec(), rootfs_with_users(tmp_path))
    assert process["args"] == ["sh", "-c", "id"]
    assert process["env"] == ["PATH=/bin"]
    assert process["cwd"] == "/"
    assert process["terminal"] is False
    assert "consoleSize" not in process
    # Kept from the container's process.
    assert process["user"] == {"uid": 0, "gid": 0, "additionalGids": [0, 10]}
    assert process["rlimits"] == CONTAINER_PROCESS["rlimits"]
    assert process["noNewPrivileges"] is True
    assert process["apparmorProfile"] == "docker-default"
    assert process["capabilities"]["effective"] == ["CAP_CHOWN", "CAP_KILL"]


def test_exec_process_user_tty_and_privileges(tmp_path):
    root = rootfs_with_users(tmp_path)
    e = an_exec(user="app", working_dir="/tmp", tty=True)
    process = exec_process(CONTAINER_PROCESS, e, root, group_add=["root"], console_size=[24, 80])
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50, 0]}
    assert process["cwd"] == "/tmp"
    assert process["terminal"] is True
    assert process["consoleSize"] == {"height": 24, "width": 80}
    # Not root: the bounding set only, as for a container's process.
    assert process["capabilities"] == {"bounding": ["CAP_CHOWN", "CAP_KILL"]}
    privileged = exec_process(CONTAINER_PROCESS, an_exec(privileged=True), root)
    caps = privileged["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    assert "CAP_SYS_ADMIN" in caps["bounding"] or len(caps["bounding"]) > 2
    with pytest.raises(InternalError, match="unable to find user nobody2"):
        exec_process(CONTAINER_PROCESS, an_exec(user="nobody2"), root)


def test_daemon_environment():
    config = {"Hostname": "abc", "Env": ["PATH=/x", "A=1"]}
    assert daemon_environment(config, False) == ["PATH=/x", "HOSTNAME=abc", "A=1"]
    assert daemon_environment(config, True) == ["PATH=/x", "HOSTNAME=abc", "TERM=xterm", "A=1"]


def test_start_errors_as_dockerd_translates_them():
    code, error = start_error('exec failed: exec: "nope": executable file not found in $PATH', "nope")
    # dockerd 20.10: exit code 126 for every exec that could not start.
    assert code == 126 and isinstance(error, InvalidParameter)
    assert str(error) == (
        'OCI runtime exec failed: exec failed: exec: "nope": executable file not found in $PATH: unknown'
    )
    code, error = start_error('chdir to cwd ("/x") set in config.json failed: no such file or directory', "pwd")
    assert code == 126 and isinstance(error, InvalidParameter)
    code, error = start_error("exec failed: something else", "true")
    assert code == 126 and isinstance(error, InternalError)
    code, error = start_error("exec /bin/x: permission denied", "/bin/x")
    assert code == 126 and isinstance(error, InvalidParameter)


def test_exec_inspect_shape():
    e = an_exec(user="app", detach_keys=b"\x01b", open_stdin=True)
    doc = e.inspect()
    assert list(doc) == [
        "ID", "Running", "ExitCode", "ProcessConfig", "OpenStdin", "OpenStderr", "OpenStdout",
        "CanRemove", "ContainerID", "DetachKeys", "Pid",
    ]
    assert doc["ProcessConfig"] == {
        "tty": False, "entrypoint": "sh", "arguments": ["-c", "id"], "privileged": False, "user": "app",
    }
    assert doc["DetachKeys"] == base64.b64encode(b"\x01b").decode() == "AWI="
    assert "user" not in an_exec().inspect()["ProcessConfig"]
    assert an_exec(args=[]).command() == "sh "


class FakeProcessTransport:
    def __init__(self):
        self.to_child = []
        self.closed = []

    def closeStdin(self):
        self.closed.append(0)

    def writeToChild(self, fd, data):
        self.to_child.append((fd, data))

    def closeChildFD(self, fd):
        self.closed.append(fd)


def conmon_protocol():
    protocol = ConmonProcess(exec_mode=True)
    protocol.makeConnection(FakeProcessTransport())
    return protocol


def test_conmon_reports_pid_then_exit_code_even_in_one_read():
    protocol = conmon_protocol()
    assert protocol.transport.to_child == [(4, b"0")]
    protocol.childDataReceived(ATTACH_FD, b'{"data": 0}\n')
    assert protocol.attach_ready.result is True
    protocol.go()
    assert protocol.transport.to_child[-1] == (4, b"1") and 4 in protocol.transport.closed
    protocol.childDataReceived(SYNC_FD, b'{"data": 123}\n{"da')
    assert protocol.started.result == {"data": 123}
    assert not protocol.exited.called
    protocol.childDataReceived(SYNC_FD, b'ta": 5}\n')
    assert protocol.exited.result == 5


def test_conmon_reports_a_failure_or_nothing():
    protocol = conmon_protocol()
    message = 'time="x" level=error msg="exec failed: boom"\n'
    protocol.childDataReceived(SYNC_FD, json.dumps({"data": -1, "message": message}).encode() + b"\n")
    assert protocol.started.result["data"] == -1
    assert protocol.exited.result is None
    silent = conmon_protocol()
    silent.childDataReceived(2, b"[conmon:e]: something broke\n")
    silent.childConnectionLost(SYNC_FD)
    assert silent.started.result == {"data": -1, "message": "something broke"}
    assert silent.attach_ready.result is False


def test_conmon_start_pipe_when_detached():
    protocol = conmon_protocol()
    protocol.go(attached=False)
    # conmon reads the start pipe once only when it does not attach.
    assert protocol.transport.to_child == [(4, b"0")]
    assert 4 in protocol.transport.closed


class FakeContainers:
    """What the exec backend reads of the container backend."""

    def __init__(self, tmp_path, clock):
        self.exec_root = str(tmp_path / "exec")
        self.socket_dir = str(tmp_path / "exec" / "s")
        self.runtime = object()
        self.containers = {}
        self.events = EventLog(now=lambda: 0)
        self.execs = ExecStore(clock)
        self._locks = {}
        #: (container ID, the failed call, whether its lock was held).
        self.reconciled = []

    def lock(self, c):
        from twisted.internet.defer import DeferredLock

        return self._locks.setdefault(c.id, DeferredLock())

    async def reconcile_one(self, c, after):
        self.reconciled.append((c.id, after, self.lock(c).locked))

    def by_id(self, container_id):
        return self.containers.get(container_id)

    def get(self, ref):
        from twistedock.errors import NotFound

        if ref not in self.containers:
            raise NotFound("No such container: %s" % ref)
        return self.containers[ref]

    def log_event(self, c, action, **extra):
        self.events.log("container", action, c.id, {k: str(v) for k, v in extra.items()})


@attr.s(auto_attribs=True)
class FakeState:
    running: bool = True
    paused: bool = False
    restarting: bool = False


@attr.s(auto_attribs=True)
class FakeContainer:
    id: str
    config: dict = attr.Factory(lambda: {"Hostname": "h", "Env": ["A=1"], "User": "", "WorkingDir": "/w"})
    host_config: dict = attr.Factory(dict)
    state: FakeState = attr.Factory(FakeState)
    name: str = "/c"

    @property
    def short_id(self):
        return self.id[:12]


def exec_backend(tmp_path):
    clock = Clock()
    containers = FakeContainers(tmp_path, clock)
    backend = ExecBackend(clock, containers, containers.execs, object(), exec_root=containers.exec_root)
    c = FakeContainer("c" * 64)
    containers.containers[c.id] = c
    return clock, containers, backend, c


def run_sync(coroutine):
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine waited")


def test_backend_provides_the_interface_and_joins_the_container_backend(tmp_path):
    _, containers, backend, _ = exec_backend(tmp_path)
    assert verifyObject(IExecBackend, backend)
    assert containers.execs is backend.store


def test_backend_create_rules_and_store(tmp_path):
    clock, containers, backend, c = exec_backend(tmp_path)
    exec_id = run_sync(backend.create_exec(c.id, ExecOptions(cmd=["sh"], tty=True, env=["B=2"])))
    e = backend.execs[exec_id]
    assert e.env == ["PATH=" + execs_module.spec.DEFAULT_PATH_ENV, "HOSTNAME=h", "TERM=xterm", "A=1", "B=2"]
    assert e.working_dir == "/w"
    assert backend.exec_ids(c.id) == [exec_id]
    assert backend.inspect_exec(exec_id)["ExitCode"] is None
    [event] = containers.events._history
    assert (event.action, event.actor.attributes) == ("exec_create: sh ", {"execID": exec_id})
    with pytest.raises(InternalError, match=r"Invalid escape keys \(bogus\) provided"):
        run_sync(backend.create_exec(c.id, ExecOptions(cmd=["sh"], detach_keys="bogus")))
    c.state.paused = True
    with pytest.raises(Conflict, match="Container c1 is paused, unpause the container before exec"):
        containers.containers["c1"] = c
        run_sync(backend.create_exec("c1", ExecOptions(cmd=["sh"])))
    # Start and resize name the container by its ID.
    with pytest.raises(Conflict, match="Container %s is paused" % c.id):
        backend.check_exec(exec_id)
    c.state.paused = False
    c.state.running = False
    with pytest.raises(Conflict, match="Container %s is not running$" % c.id):
        run_sync(backend.create_exec(c.id, ExecOptions(cmd=["sh"])))
    with pytest.raises(Conflict, match="Container %s is not running$" % c.id):
        backend.check_exec(exec_id)


def test_container_stop_forgets_unstarted_execs_and_gc_forgets_ended_ones(tmp_path):
    clock, containers, backend, c = exec_backend(tmp_path)
    unstarted = run_sync(backend.create_exec(c.id, ExecOptions(cmd=["sh"])))
    ended = run_sync(backend.create_exec(c.id, ExecOptions(cmd=["true"])))
    e = backend.execs[ended]
    e.running, e.pid = True, 42
    backend._exited(e, 3)
    assert backend.exec_ids(c.id) == [unstarted]
    assert containers.events._history[-1].action == "exec_die"
    assert containers.events._history[-1].actor.attributes == {"execID": ended, "exitCode": "3"}
    run_sync(backend.container_stopped(c))
    assert backend.exec_ids(c.id) is None
    with pytest.raises(Exception, match="No such exec instance"):
        backend.inspect_exec(unstarted)
    assert backend.inspect_exec(ended)["ExitCode"] == 3
    clock.advance(execs_module.GC_INTERVAL)
    assert backend.inspect_exec(ended)["CanRemove"] is True
    clock.advance(execs_module.GC_INTERVAL)
    assert backend.execs == {}
    # An exec whose container was removed is not found.
    again = run_sync(backend.create_exec(c.id, ExecOptions(cmd=["true"])))
    del containers.containers[c.id]
    with pytest.raises(Exception, match="No such exec instance"):
        backend.inspect_exec(again)
    with pytest.raises(Exception, match="No such container: %s" % again):
        backend.check_exec(again)


def test_conmon_command_line(tmp_path):
    _, containers, backend, c = exec_backend(tmp_path)

    class Runtime:
        conmon, runc, state_root = "/usr/bin/conmon", "/usr/sbin/runc", "/run/x/runc"

    backend.runtime = Runtime()
    e = an_exec(tty=True, open_stdin=True)
    args = backend.conmon_args(c, e, "/b", "/b/process.json", attached=True)
    assert args[:2] == ["/usr/bin/conmon", "--api-version"]
    joined = " ".join(args)
    assert "-c %s -u x%s " % (c.id, e.id[:11]) in joined
    assert "-l none --exit-dir /b/exits" in joined
    assert args[-6:] == ["--exec-process-spec", "/b/process.json", "--exec-attach", "-t", "-i", "--leave-stdin-open"]
    detached = backend.conmon_args(c, an_exec(open_stdin=True), "/b", "/b/process.json", attached=False)
    assert detached[-2:] == ["--exec-process-spec", "/b/process.json"]


class FakeClientStream:
    """The hijacked client side of an exec start."""

    def __init__(self):
        from twisted.internet.defer import Deferred

        self.closed = Deferred()
        self.written = []
        self.transport = None
        self.input = None

    def add_source(self, pause, resume):
        pass

    def read_input(self, on_input, on_closed):
        self.input = on_input

    def write(self, stream_id, data):
        self.written.append((stream_id, data))

    def close(self):
        if not self.closed.called:
            self.closed.callback(None)


class FakeAttachConnection:
    transport = None

    def __init__(self):
        self.written, self.closed = [], False

    def write(self, data):
        self.written.append(data)

    def close(self):
        self.closed = True

    def close_stdin(self):
        pass


@pytest.mark.parametrize("how", ["detached", "gone"])
def test_a_client_leaving_an_exec_cancels_its_wait_quietly(tmp_path, how):
    """The wait for the exec's end is cancelled when its client detaches or
    leaves: an expected cancellation, not an unhandled error in a Deferred."""
    from twisted.internet.defer import Deferred, ensureDeferred

    _, containers, backend, c = exec_backend(tmp_path)
    e = an_exec(tty=True, open_stdin=True, container_id=c.id)
    e.running, e.pid = True, 42
    waits = []

    def wait_ended():
        d = Deferred()
        waits.append(d)
        return d

    e.wait_ended = wait_ended
    stream, connection = FakeClientStream(), FakeAttachConnection()
    served = ensureDeferred(backend._serve(c, e, stream, connection, execs_module._Output(e, stream)))
    if how == "detached":
        for typed in (b"ls", b"\x10", b"\x11"):
            stream.input(typed)
    else:
        stream.close()
    assert served.called and served.result is None
    assert connection.written == [b"ls"] if how == "detached" else connection.written == []
    assert connection.closed
    [ended] = waits
    # Consumed: no CancelledError left to be logged when it is collected.
    assert ended.called and ended.result is None
    actions = [event.action for event in containers.events._history]
    assert actions == (["exec_detach"] if how == "detached" else [])


@pytest.mark.parametrize(
    "error, reconciled",
    [(InternalError("OCI runtime exec failed: cannot exec in a stopped container: unknown"), True),
     (InvalidParameter("OCI runtime exec failed: executable file not found in $PATH: unknown"), False)],
)
def test_an_exec_the_runtime_cannot_run_has_its_container_reconciled(tmp_path, error, reconciled):
    """Unless the command is at fault, a failed exec may mean the
    container's own process is gone with nobody to say so: the container
    backend is asked to make the record and runc agree, under its lock."""
    from twistedock.routers.container import ExecStartConfig

    _, containers, backend, c = exec_backend(tmp_path)
    exec_id = run_sync(backend.create_exec(c.id, ExecOptions(cmd=["sh"])))

    async def launch(*args):
        raise error

    backend._launch = launch
    with pytest.raises(type(error)):
        run_sync(backend.start_exec(exec_id, ExecStartConfig(stream=None)))
    assert containers.reconciled == ([(c.id, "exec", True)] if reconciled else [])
    assert backend.inspect_exec(exec_id)["Running"] is False
