"""twistedock.client in process: against the composed root resource with the
in-memory backends through StubTreq (the client's HTTP agent swapped), its
host and context resolution, its streams' backpressure and cancellation, and
hijacked exec sessions over a temporary unix socket."""

import hashlib
import json
import os
import struct
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.web.resource import Resource

from twistedock.client import (
    MAX_API_VERSION,
    APIError,
    Conflict,
    DockerClient,
    HostError,
    NotFound,
    NotModified,
    StreamError,
    TLSConfig,
    host_from_environ,
    parse_host,
)
from twistedock.client.api import query
from twistedock.client.errors import NotImplementedByDaemon, error_for
from twistedock.client.streams import HIGH_WATER, ChunkQueue, Frames, IteratorProducer, JSONStream

from .memory import API, MemoryExecBackend, result_of
from .test_checkpoints import checkpoint_api


def run(stub, coroutine):
    """Drive C{coroutine} (a client call) over C{stub} to its end."""
    d = ensureDeferred(coroutine)
    for _ in range(50):
        if d.called:
            break
        stub.flush()
    return result_of(d)


def client_for(api, version=None):
    return DockerClient(api.treq, version=version)


def frame(stream, data):
    return struct.pack(">BxxxL", stream, len(data)) + data


# -- which daemon ---------------------------------------------------------


def test_hosts_parse_as_the_cli_reads_them():
    h = parse_host("unix:///run/x.sock")
    assert (h.scheme, h.path, h.tls) == ("unix", "/run/x.sock", None)
    h = parse_host("tcp://10.0.0.1")
    assert (h.scheme, h.hostname, h.port) == ("tcp", "10.0.0.1", 2375)
    h = parse_host("tcp://example.org", TLSConfig())
    assert h.port == 2376 and h.tls.verify
    assert parse_host("tcp://[::1]:99").hostname == "::1"
    assert parse_host("https://d:1").tls == TLSConfig(verify=True)
    assert parse_host("").path == "/var/run/docker.sock"
    for bad in ("ssh://u@h", "ftp://x", "unix://", "tcp://:1"):
        with pytest.raises(HostError):
            parse_host(bad)


def test_docker_host_and_the_tls_variables(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    env = {"DOCKER_HOST": "tcp://h:1", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    h = host_from_environ(env)
    assert (h.hostname, h.port) == ("h", 1)
    assert h.tls == TLSConfig(True, str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    env = {"DOCKER_HOST": "tcp://h", "DOCKER_TLS": "1", "DOCKER_CONFIG": str(tmp_path)}
    h = host_from_environ(env)
    assert h.port == 2376 and h.tls.verify is False and h.tls.ca_cert is None
    assert h.tls.client_cert == str(tmp_path / "cert.pem")
    assert host_from_environ({"DOCKER_HOST": "tcp://h:2"}).tls is None
    with pytest.raises(HostError, match="could not read CA certificate"):
        host_from_environ({"DOCKER_HOST": "tcp://h", "DOCKER_TLS_VERIFY": "1",
                           "DOCKER_CERT_PATH": str(tmp_path / "empty")})
    assert host_from_environ({"DOCKER_CONFIG": str(tmp_path / "none")}).path == "/var/run/docker.sock"


def _context(config_dir, name, host, skip_verify=False, tls_files=False):
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config_dir / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": name, "Metadata": {},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}}))
    if tls_files:
        tls = config_dir / "contexts" / "tls" / digest / "docker"
        tls.mkdir(parents=True)
        for f in ("ca.pem", "cert.pem", "key.pem"):
            (tls / f).write_text("x")
        return tls


def test_contexts_as_the_cli_chooses_them(tmp_path):
    _context(tmp_path, "remote", "tcp://remote:2376", tls_files=True)
    _context(tmp_path, "local", "unix:///tmp/local.sock")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    h = host_from_environ(env)
    assert (h.hostname, h.port, h.tls.verify) == ("remote", 2376, True)
    assert h.tls.ca_cert.endswith("contexts/tls/%s/docker/ca.pem" % hashlib.sha256(b"remote").hexdigest())
    # DOCKER_CONTEXT beats the config; DOCKER_HOST beats both; "default" is DOCKER_HOST or the socket.
    assert host_from_environ(dict(env, DOCKER_CONTEXT="local")).path == "/tmp/local.sock"
    assert host_from_environ(dict(env, DOCKER_HOST="unix:///x", DOCKER_CONTEXT="local")).path == "/x"
    assert host_from_environ(dict(env, DOCKER_CONTEXT="default")).path == "/var/run/docker.sock"
    with pytest.raises(HostError, match="context 'gone' does not exist"):
        host_from_environ(dict(env, DOCKER_CONTEXT="gone"))


def test_docker_api_version_pins_the_version():
    from twisted.internet.task import Clock

    client = DockerClient.from_env(Clock(), {"DOCKER_HOST": "unix:///x", "DOCKER_API_VERSION": "1.41"})
    assert result_of(ensureDeferred(client.api_version())) == "1.41"


def test_query_strings():
    assert query(None) == ""
    assert query({"all": True, "size": False, "limit": None, "t": 3}) == "?all=1&size=0&t=3"
    assert query({"filters": {"label": "a=b", "status": ["running", "paused"]}}) == (
        "?filters=%7B%22label%22%3A+%5B%22a%3Db%22%5D%2C+%22status%22%3A+%5B%22running%22%2C+%22paused%22%5D%7D")
    assert query({"names": ["a", "b:1"]}) == "?names=a&names=b%3A1"


def test_errors_are_mapped_once():
    e = error_for(404, b'{"message":"No such container: x"}')
    assert isinstance(e, NotFound) and isinstance(e, APIError)
    assert (e.status, e.message, str(e)) == (404, "No such container: x", "No such container: x")
    assert isinstance(error_for(409, b"{}"), Conflict)
    assert isinstance(error_for(304, b""), NotModified)
    assert isinstance(error_for(501, b'{"message":"m"}'), NotImplementedByDaemon)
    e = error_for(418, b"plain text\n")
    assert type(e) is APIError and e.message == "plain text"


def test_the_package_does_not_import_the_daemon():
    code = ("import sys, twistedock.client, twistedock.cli, twistedock.migrate; "
            "print([m for m in sys.modules if m.split('.')[:2] in "
            "(['twistedock','backend'], ['twistedock','server'], ['twistedock','routers'])])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]"


# -- through StubTreq over the root resource --------------------------------


class _Recorder(Resource):
    """A daemon speaking API 1.40 that answers {} and records the URIs."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.uris = []

    def render(self, request):
        self.uris.append(request.uri.decode())
        if request.path == b"/_ping":
            request.setHeader(b"Api-Version", b"1.40")
            return b"OK"
        request.setHeader(b"Content-Type", b"application/json")
        return b"{}"


@pytest.mark.route("GET", "/_ping")
def test_the_version_is_negotiated_once():
    from treq.testing import StubTreq

    recorder = _Recorder()
    stub = StubTreq(recorder)
    client = DockerClient(stub)
    both = [ensureDeferred(client.system.info()), ensureDeferred(client.containers.inspect("a/b"))]
    for _ in range(10):
        stub.flush()
    assert [result_of(d) for d in both] == [{}, {}]
    assert recorder.uris == ["/_ping", "/v1.40/info", "/v1.40/containers/a%2Fb/json"]
    api = API()
    client = client_for(api)
    assert run(api.treq, client.api_version()) == MAX_API_VERSION
    assert run(api.treq, client.system.ping())["Body"] == "OK"


@pytest.mark.route("POST", "/containers/create")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("GET", "/containers/{name:.*}/json")
@pytest.mark.route("GET", "/containers/json")
@pytest.mark.route("POST", "/containers/{name:.*}/stop")
@pytest.mark.route("POST", "/containers/{name:.*}/wait")
@pytest.mark.route("POST", "/containers/{name:.*}/kill")
@pytest.mark.route("POST", "/containers/{name:.*}/restart")
@pytest.mark.route("POST", "/containers/{name:.*}/rename")
@pytest.mark.route("POST", "/containers/{name:.*}/update")
@pytest.mark.route("POST", "/containers/{name:.*}/resize")
@pytest.mark.route("GET", "/containers/{name:.*}/top")
@pytest.mark.route("DELETE", "/containers/{name:.*}")
@pytest.mark.route("POST", "/containers/prune")
def test_container_life_cycle():
    api = API()
    c = client_for(api).containers
    created = run(api.treq, c.create("busybox", "sh -c 'echo hi'", name="web", config={"Tty": False}))
    assert created["Id"] == "web"
    assert api.containers.containers["web"]["Config"]["Cmd"] == ["sh", "-c", "echo hi"]
    assert api.containers.containers["web"]["Config"]["Image"] == "busybox"
    run(api.treq, c.start("web"))
    with pytest.raises(NotModified):
        run(api.treq, c.start("web"))
    assert run(api.treq, c.inspect("web"))["State"]["Running"] is True
    assert run(api.treq, c.list()) == [{"Id": "web"}]
    waiting = ensureDeferred(c.wait("web"))
    api.treq.flush()
    assert not waiting.called  # a wait never times out on its own
    run(api.treq, c.stop("web", timeout=3))
    assert api.containers.calls[-1] == ("stop", "web", None, 3)
    for _ in range(5):
        api.treq.flush()
    assert result_of(waiting) == {"StatusCode": 143, "Error": None}
    assert run(api.treq, c.list()) == [] and run(api.treq, c.list(all=True)) == [{"Id": "web"}]
    run(api.treq, c.start("web"))
    run(api.treq, c.kill("web", signal="SIGUSR1"))
    run(api.treq, c.restart("web", timeout=1))
    assert api.containers.calls[-2:] == [("kill", "web", "SIGUSR1"), ("restart", "web", None, 1)]
    run(api.treq, c.resize("web", 24, 80))
    assert api.containers.calls[-1] == ("resize", "web", 24, 80)
    assert run(api.treq, c.top("web", "aux"))["ps_args"] == "aux"
    assert run(api.treq, c.update("web", {"Memory": 1 << 20})) == {"Warnings": None}
    run(api.treq, c.rename("web", "db"))
    assert run(api.treq, c.prune()) == {"ContainersDeleted": None, "SpaceReclaimed": 0}
    with pytest.raises(NotFound, match="No such container: web"):
        run(api.treq, c.inspect("web"))
    run(api.treq, c.remove("db", force=True))
    with pytest.raises(NotFound) as caught:
        run(api.treq, c.remove("db"))
    assert caught.value.status == 404


@pytest.mark.route("GET", "/containers/{name:.*}/logs")
def test_logs_are_demultiplexed_without_a_tty():
    api = API()
    c = client_for(api).containers
    run(api.treq, c.create("busybox", name="plain"))
    api.containers.containers["plain"]["Logs"] = [(1, b"out\n"), (2, b"err\n"), (1, b"x" * 70000)]
    logs = run(api.treq, c.logs("plain"))
    assert run(api.treq, logs.output()) == (b"out\n" + b"x" * 70000, b"err\n")
    run(api.treq, c.create("busybox", name="tty", config={"Tty": True}))
    api.containers.containers["tty"]["Logs"] = [(1, b"a\r\n"), (1, b"b\r\n")]
    logs = run(api.treq, c.logs("tty"))
    assert not logs.multiplexed
    assert run(api.treq, logs.text()) == "a\r\nb\r\n"
    with pytest.raises(NotFound):
        run(api.treq, c.logs("nope"))


@pytest.mark.route("GET", "/events")
def test_events_stream_past_and_live_ones():
    api = API()
    client = client_for(api)
    api.system.events.log("container", "create", "c1", {"name": "one"})
    api.clock.advance(10)
    api.system.events.log("container", "start", "c1", {"name": "one"})
    stream = run(api.treq, client.events.stream(since=1_700_000_000, filters={"event": "start"}))
    first = run(api.treq, stream.next())
    assert (first["Action"], first["Actor"]["ID"]) == ("start", "c1")
    pending = ensureDeferred(stream.next())
    api.treq.flush()
    assert not pending.called
    api.system.events.log("container", "die", "c1")
    api.system.events.log("container", "start", "c2")
    for _ in range(5):
        api.treq.flush()
    assert result_of(pending)["Actor"]["ID"] == "c2"
    assert api.system.events.listeners == 1
    stream.close()
    for _ in range(5):
        api.treq.flush()
    assert api.system.events.listeners == 0
    assert run(api.treq, stream.next()) is None
    # Bounded by until: the stream ends by itself.
    stream = run(api.treq, client.events.stream(since=1_700_000_000, until=1_700_000_005))
    assert [e["Action"] for e in run(api.treq, stream.wait())] == ["create"]


@pytest.mark.route("GET", "/events")
def test_cancelling_a_pending_read_closes_the_connection():
    api = API()
    stream = run(api.treq, client_for(api).events.stream())
    pending = stream.body.read_chunk()
    api.treq.flush()
    assert api.system.events.listeners == 1
    pending.cancel()
    for _ in range(5):
        api.treq.flush()
    assert api.system.events.listeners == 0


class _ExportStream:
    def __init__(self, chunks):
        self.chunks = chunks
        self.closed = False

    async def write_to(self, consumer, flow):
        for chunk in self.chunks:
            consumer.write(chunk)

    def close(self):
        self.closed = True


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("DELETE", "/containers/{name}/checkpoints/{checkpoint}")
@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_checkpoints(tmp_path):
    api, backend = checkpoint_api()
    cp = client_for(api).checkpoints
    run(api.treq, api.containers.create("web", {}, {}, {}, "1.51"))
    run(api.treq, cp.create("web", "cp1"))
    assert backend.calls[-1] == ("create", "web", {"CheckpointID": "cp1", "CheckpointDir": "", "Exit": True})
    assert run(api.treq, cp.list("web")) == ["cp1"]
    with pytest.raises(NotFound, match="No such container: nope"):
        run(api.treq, cp.list("nope"))
    run(api.treq, cp.start("web", "cp1"))
    assert api.containers.calls[-1] == ("start", "web", "cp1", "")
    run(api.treq, cp.delete("web", "cp1"))
    assert run(api.treq, cp.list("web")) == []
    with pytest.raises(APIError, match="checkpoint cp1 does not exist") as caught:
        run(api.treq, cp.delete("web", "cp1"))
    assert caught.value.status == 500
    chunks = [b"a" * 100000, b"b" * 5, b"c" * 300000]
    exported = _ExportStream(chunks)

    async def export(name, checkpoint_id, prepare=False, wait=False):
        return exported

    backend.export = export
    received = []
    stream = run(api.treq, cp.export("web", "cp1"))
    assert run(api.treq, stream.write_to(received.append)) == 400005
    assert b"".join(received) == b"".join(chunks) and exported.closed
    assert run(api.treq, cp.import_(b"".join(received), name="moved")) == "f" * 64
    assert backend.calls[-1] == ("import", "moved", b"".join(chunks))


def test_move_a_checkpointed_container_to_another_daemon():
    from twistedock.errors import Conflict as ConflictError

    source_api, source_backend = checkpoint_api()
    target_api, target_backend = checkpoint_api()

    async def export(name, checkpoint_id, prepare=False, wait=False):
        return _ExportStream([b"tar" * 1000])

    async def import_checkpoint(content, name, api_version, prepare=False):
        target_backend.calls.append(("import", name, content.read()))
        return await target_api.containers.create(name, {}, {}, {}, api_version)

    source_backend.export = export
    target_backend.import_checkpoint = import_checkpoint
    source, target = client_for(source_api), client_for(target_api)
    streamed = target.checkpoints.import_

    async def import_(tar, name=None):
        # StubTreq sends bytes bodies only: the export stream read here.
        return await streamed(await tar.read(), name=name)

    target.checkpoints.import_ = import_

    def both(coroutine):
        d = ensureDeferred(coroutine)
        for _ in range(100):
            if d.called:
                break
            source_api.treq.flush()
            target_api.treq.flush()
        return result_of(d)

    both(source_api.containers.create("web", {}, {}, {}, "1.51"))
    assert both(source.checkpoints.move("web", "cp1", target, name="moved")) == "moved"
    assert target_backend.calls[-1] == ("import", "moved", b"tar" * 1000)
    assert ("start", "moved", "cp1", "") in target_api.containers.calls
    assert "web" not in source_api.containers.containers
    # A start that fails there: the copy removed there, the container kept here.
    both(source_api.containers.create("db", {}, {}, {}, "1.51"))

    async def refuse(name, checkpoint="", checkpoint_dir=""):
        raise ConflictError("cannot restore")

    target_api.containers.start = refuse
    with pytest.raises(Conflict, match="cannot restore"):
        both(source.checkpoints.move("db", "cp1", target, name="db"))
    assert "db" not in target_api.containers.containers and "db" in source_api.containers.containers


@pytest_twisted.ensureDeferred
async def test_a_checkpoint_exported_to_a_file_in_a_thread(tmp_path):
    from twisted.internet import task

    api, backend = checkpoint_api()
    cp = client_for(api).checkpoints
    flushing = task.LoopingCall(api.treq.flush)
    flushing.start(0.01)
    try:
        await api.containers.create("web", {}, {}, {}, "1.51")
        chunks = [b"a" * 100000, b"b" * 5, b"c" * 300000]
        exported = _ExportStream(chunks)

        async def export(name, checkpoint_id, prepare=False, wait=False):
            return exported

        backend.export = export
        target = tmp_path / "cp.tar"
        assert await cp.export_to("web", "cp1", str(target)) == 400005
        assert target.read_bytes() == b"".join(chunks) and exported.closed
    finally:
        flushing.stop()


def test_an_unserved_experimental_route_is_a_typed_error():
    api, _ = checkpoint_api(experimental=False)
    with pytest.raises(NotImplementedByDaemon, match="experimental mode"):
        run(api.treq, client_for(api).checkpoints.list("web"))


@pytest.mark.route("GET", "/info")
@pytest.mark.route("GET", "/version")
@pytest.mark.route("GET", "/system/df")
def test_system():
    api = API()
    s = client_for(api).system
    assert run(api.treq, s.info())["ID"] == "memory"
    assert run(api.treq, s.version())["Version"] == "memory"
    assert run(api.treq, s.df(["image"]))["Images"] == []


# -- streams --------------------------------------------------------------


class _Producer:
    def __init__(self):
        self.events = []

    def pauseProducing(self):
        self.events.append("pause")

    def resumeProducing(self):
        self.events.append("resume")

    def stopProducing(self):
        self.events.append("stop")


def test_a_slow_reader_pauses_the_connection():
    producer = _Producer()
    queue = ChunkQueue(producer)
    chunk = b"x" * 65536
    for _ in range(HIGH_WATER // len(chunk) + 3):
        queue.put(chunk)
    assert producer.events == ["pause"]
    assert result_of(queue.get()) == chunk * (HIGH_WATER // len(chunk) + 3)
    assert producer.events == ["pause", "resume"]
    queue.close()
    assert producer.events[-1] == "stop"
    assert result_of(queue.get()) == b""


def test_a_waiting_reader_is_woken_once_per_read_from_the_socket():
    from twisted.internet.task import Clock

    clock = Clock()
    queue = ChunkQueue(_Producer(), call_later=clock.callLater)
    d = queue.get()
    for line in (b"a\n", b"b\n", b"c\n"):
        queue.put(line)
    assert not d.called
    clock.advance(0)
    assert result_of(d) == b"a\nb\nc\n"
    d = queue.get()
    queue.put(b"last")
    queue.end()
    assert result_of(d) == b"last" and result_of(queue.get()) == b""


def test_a_cancelled_read_stops_the_connection():
    producer = _Producer()
    queue = ChunkQueue(producer)
    d = queue.get()
    d.cancel()
    assert producer.events == ["stop"]
    with pytest.raises(CancelledError):
        result_of(d)


class _Chunks:
    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.closed = False

    async def next(self):
        return self.chunks.pop(0) if self.chunks else None

    def close(self):
        self.chunks = []
        self.closed = True


def test_frames_split_across_chunks():
    data = frame(1, b"hello") + frame(2, b"") + frame(2, b"oops") + frame(1, b"x" * 1000)
    pieces = [data[i:i + 3] for i in range(0, len(data), 3)]
    frames = Frames(_Chunks(pieces), multiplexed=True)
    assert result_of(ensureDeferred(frames.output())) == (b"hello" + b"x" * 1000, b"oops")
    broken = Frames(_Chunks([frame(1, b"abc")[:-1]]), multiplexed=True)
    with pytest.raises(StreamError, match="middle of a frame"):
        result_of(ensureDeferred(broken.output()))
    failed = Frames(_Chunks([frame(3, b"the daemon failed\n")]), multiplexed=True)
    with pytest.raises(StreamError, match="the daemon failed"):
        result_of(ensureDeferred(failed.output()))


def test_json_lines_and_progress_errors():
    stream = JSONStream(_Chunks([b'{"status":"a"}\n{"sta', b'tus":"b"}\n\n', b'{"status":"c"}']))
    assert [e["status"] for e in result_of(ensureDeferred(stream.wait()))] == ["a", "b", "c"]
    stream = JSONStream(_Chunks([b'{"status":"a"}\n{"error":"no space","errorDetail":{"message":"no space"}}\n']))
    with pytest.raises(StreamError, match="no space") as caught:
        result_of(ensureDeferred(stream.wait()))
    assert caught.value.detail == {"message": "no space"}


class _Consumer:
    def __init__(self):
        self.data = []

    def write(self, data):
        self.data.append(data)


def test_an_iterator_body_follows_the_connections_pace():
    pulled = []

    class Source:
        def __init__(self):
            self.items = [b"1", b"2", b"3"]
            self.closed = False

        def __aiter__(self):
            return self

        async def __anext__(self):
            if not self.items:
                raise StopAsyncIteration
            pulled.append(self.items[0])
            return self.items.pop(0)

        def close(self):
            self.closed = True

    body = Source()
    producer = IteratorProducer(body)
    consumer = _Consumer()
    producer.pauseProducing()
    done = producer.startProducing(consumer)
    assert consumer.data == [b"1"] and pulled == [b"1"]
    producer.resumeProducing()
    assert done.called and consumer.data == [b"1", b"2", b"3"]
    producer = IteratorProducer(Source())
    producer.pauseProducing()
    done = producer.startProducing(_Consumer())
    producer.stopProducing()
    assert done.called and producer.source.closed
    done.addErrback(lambda f: None)


# -- hijacked sessions over a temporary unix socket --------------------------


@pytest.fixture
def served(tmp_path):
    """The memory API with execs served on a unix socket in tmp_path."""
    from twisted.internet import reactor

    from twistedock.backend.swarm import InactiveCluster
    from twistedock.daemon import APISite, build_routers
    from twistedock.server.middleware import APIConfig
    from twistedock.server.root import APIResource, compose

    api = API()
    api.execs = MemoryExecBackend(api.containers)
    routers = build_routers(api.clock, api.system, InactiveCluster(), None, containers=api.containers,
                            execs=api.execs)
    site = APISite(APIResource(compose(routers, APIConfig(experimental=False, debug=False))))
    path = str(tmp_path / "d.sock")
    port = reactor.listenUNIX(path, site)
    api.client = DockerClient.for_host(reactor, "unix://" + path)
    yield api
    pytest_twisted.blockon(api.client.close())
    pytest_twisted.blockon(port.stopListening())


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
@pytest.mark.route("POST", "/exec/{name:.*}/start")
@pytest.mark.route("GET", "/exec/{id:.*}/json")
@pytest_twisted.ensureDeferred
async def test_exec_over_a_hijacked_connection(served):
    c = served.client.containers
    await c.create("busybox", name="box")
    await c.start("box")
    result = await c.exec_run("box", ["cat"], stdin=b"through stdin\n" * 1000)
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"through stdin\n" * 1000, b"")
    # Output after stdin closed, on both streams, demultiplexed; the exit code.
    exec_id = await c.exec_create("box", ["sh"], stdin=True)
    served.execs.execs[exec_id]["Output"] = [(1, b"out"), (2, b"err")]
    served.execs.execs[exec_id]["Code"] = 7
    session = await c.exec_start(exec_id)
    session.write(b"echo")
    assert await session.next() == (1, b"echo")
    session.close_stdin()
    assert await session.output() == (b"out", b"err")
    assert (await c.exec_inspect(exec_id))["ExitCode"] == 7
    # Too late for a status once hijacked: the daemon says why as output.
    session = await c.exec_start(exec_id)
    assert "has already run" in await session.text()
    # Before hijacking, a typed error.
    with pytest.raises(NotFound, match="No such exec instance"):
        await c.exec_start("nope")
    await c.kill("box")
    with pytest.raises(Conflict, match="is not running"):
        await c.exec_create("box", ["true"])


# -- the twistedock command's client subcommands ------------------------------


def test_cli_filters_and_event_lines():
    from twistedock.cli import format_event, parse_filters, parser

    assert parse_filters(["type=container", "event=start", "event=die"]) == {
        "type": ["container"], "event": ["start", "die"]}
    assert parse_filters([]) is None
    with pytest.raises(ValueError, match="expected name=value"):
        parse_filters(["oops"])
    line = format_event({"Type": "container", "Action": "start", "timeNano": 1700000000123456789,
                         "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}}})
    assert line == "2023-11-14T22:13:20.123456789Z container start abc (image=busybox, name=web)"
    args = parser().parse_args(["checkpoint", "export", "-H", "unix:///x", "web", "cp1", "-o", "f.tar"])
    assert (args.command, args.verb, args.host, args.container, args.checkpoint, args.output) == (
        "checkpoint", "export", "unix:///x", "web", "cp1", "f.tar")


def test_the_twistedock_command_runs_the_client_subcommands(monkeypatch):
    from twistedock import tap

    calls = []
    monkeypatch.setattr("twistedock.cli.main", lambda argv: calls.append(argv) or 5)
    with pytest.raises(SystemExit) as exited:
        tap.main(["events", "--filter", "type=container"])
    assert exited.value.code == 5 and calls == [["events", "--filter", "type=container"]]


@pytest_twisted.ensureDeferred
async def test_no_daemon_is_a_typed_error(tmp_path):
    from twisted.internet import reactor

    from twistedock.client import DaemonUnreachable

    client = DockerClient.for_host(reactor, "unix://%s/none.sock" % (tmp_path,))
    with pytest.raises(DaemonUnreachable, match="Cannot connect to the Docker daemon at unix://.*none.sock"):
        await client.system.info()
    await client.close()


# -- a connection cut in the middle, files written in a thread ---------------


class _CutServer:
    """A unix socket server answering every request with C{head} and
    C{body}, then dropping the connection (abortConnection: a reset)."""

    def __init__(self, path, head, body):
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol

        class Cut(Protocol):
            def dataReceived(self, data):
                if b"\r\n\r\n" in data:
                    self.transport.write(head + body)
                    reactor.callLater(0.05, self.transport.abortConnection)

        self.port = reactor.listenUNIX(path, Factory.forProtocol(Cut))


@pytest_twisted.ensureDeferred
async def test_a_connection_cut_mid_stream_is_a_client_error(tmp_path):
    from twisted.internet import reactor

    from twistedock.client import DockerClientError, StreamInterrupted

    chunked = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = _CutServer(str(tmp_path / "d.sock"), chunked, b"a\r\n{\"id\": 1}\n\r\n")
    client = DockerClient.for_host(reactor, "unix://%s/d.sock" % (tmp_path,), version="1.45")
    try:
        stats = await client.containers.stats("x")
        assert await stats.next() == {"id": 1}
        with pytest.raises(StreamInterrupted, match="cut in the middle of the answer's body") as raised:
            await stats.next()
        assert isinstance(raised.value, StreamError) and isinstance(raised.value, DockerClientError)
        # The same into a file (written in a thread): the error, what came written.
        export = await client.containers.export("x")
        with pytest.raises(StreamInterrupted):
            await export.write_to(str(tmp_path / "out"))
        assert (tmp_path / "out").read_bytes() == b"{\"id\": 1}\n"
    finally:
        await client.close()
        await server.port.stopListening()
    sized = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    server = _CutServer(str(tmp_path / "e.sock"), sized, b"{\"Id\": ")
    client = DockerClient.for_host(reactor, "unix://%s/e.sock" % (tmp_path,), version="1.45")
    try:
        with pytest.raises(StreamInterrupted):
            await client.containers.inspect("x")
    finally:
        await client.close()
        await server.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_hijacked_session_cut_is_a_client_error(tmp_path):
    from twisted.internet import reactor

    from twistedock.client import StreamInterrupted

    upgraded = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
                b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    server = _CutServer(str(tmp_path / "h.sock"), upgraded, frame(1, b"one\n") + frame(1, b"two\n")[:-2])
    client = DockerClient.for_host(reactor, "unix://%s/h.sock" % (tmp_path,), version="1.45")
    try:
        session = await client.containers.attach("x")
        assert await session.next() == (1, b"one\n")
        # A unix socket's peer gone reads as its end: here, in the middle of a frame.
        with pytest.raises(StreamInterrupted, match="cut in the middle of a frame"):
            await session.next()
        session.close()
    finally:
        await client.close()
        await server.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_write_to_files_paths_and_callables(tmp_path):
    import threading

    from twistedock.client.streams import BodyStream

    def stream(*chunks):
        queue = ChunkQueue()
        for chunk in chunks:
            queue.put(chunk)
        queue.end()
        return BodyStream(None, queue)

    main = threading.get_ident()
    threads = []

    class File:
        def __init__(self):
            self.data = b""

        def write(self, data):
            threads.append(threading.get_ident())
            self.data += data

    f = File()
    assert await stream(b"ab", b"cd").write_to(f) == 4
    assert f.data == b"abcd" and threads and main not in threads
    assert await stream(b"xy").write_to(str(tmp_path / "p")) == 2
    assert (tmp_path / "p").read_bytes() == b"xy"
    with open(tmp_path / "q", "wb") as real:
        assert await stream(b"z" * 10).write_to(real.write) == 10
    assert (tmp_path / "q").read_bytes() == b"z" * 10
    # Any other callable runs on the reactor (and must not block).
    seen = []
    assert await stream(b"1", b"2").write_to(lambda chunk: seen.append(threading.get_ident())) == 2
    assert set(seen) == {main}
