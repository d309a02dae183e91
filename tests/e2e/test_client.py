"""twistedock.client against a real C{twistd -n dockerd}, and the same
assertions against the reference dockerd when it answers (skipped
otherwise): containers run, followed, attached, exec'd, copied and
committed; images; events; the errors' types."""

import io
import os
import socket
import subprocess
import tarfile
import time

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.task import deferLater

from twistedock.client import (
    STDERR, STDOUT, APIError, Conflict, DockerClient, NotFound, NotImplementedByDaemon, NotModified, StreamError)

from . import registry as reg
from .test_containers import busybox_rootfs_tar, daemon  # noqa: F401  (the busybox daemon fixture)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

REFERENCE_SOCK = "/tmp/reference-dockerd/docker.sock"
LABEL = {"twistedock.client.test": "1"}
NO_NETWORK = {"NetworkMode": "none"}


def reference_answers() -> bool:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(REFERENCE_SOCK)
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        return b" 200 " in s.recv(100)
    except OSError:
        return False
    finally:
        s.close()


class Target:
    def __init__(self, kind, host, image):
        self.kind, self.host, self.image = kind, host, image

    def cli(self, *args, **kwargs):
        env = dict(os.environ, DOCKER_HOST=self.host)
        return subprocess.run(["docker"] + list(args), env=env, capture_output=True, timeout=60, **kwargs)


@pytest.fixture(scope="module", params=["twistedock", "dockerd"])
def target(request, tmp_path_factory):
    if request.param == "twistedock":
        d = request.getfixturevalue("daemon")
        t = Target("twistedock", d.host, "busybox:latest")
    else:
        if not reference_answers():
            pytest.skip("the reference dockerd is not answering on " + REFERENCE_SOCK)
        t = Target("dockerd", "unix://" + REFERENCE_SOCK, "twistedock-client-test:latest")
        with open(busybox_rootfs_tar(tmp_path_factory.mktemp("img")), "rb") as f:
            assert t.cli("import", "-", t.image, stdin=f).returncode == 0
    yield t
    found = t.cli("ps", "-aq", "--filter", "label=twistedock.client.test=1").stdout.split()
    if found:
        t.cli("rm", "-f", *[i.decode() for i in found])
    if t.kind == "dockerd":
        t.cli("rmi", "-f", t.image, "twistedock-client-test:tagged")


@pytest.fixture
def client(target):
    from twisted.internet import reactor

    c = DockerClient.for_host(reactor, target.host)
    yield c
    pytest_twisted.blockon(c.close())


async def run(client, target, cmd, **kwargs):
    config = dict(kwargs.pop("config", {}), Labels=LABEL)
    return await client.containers.run(target.image, cmd, config=config, host_config=NO_NETWORK, **kwargs)


@pytest.mark.route("POST", "/containers/create")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("GET", "/containers/{name:.*}/logs")
@pytest.mark.route("POST", "/containers/{name:.*}/wait")
@pytest.mark.route("DELETE", "/containers/{name:.*}")
@pytest_twisted.ensureDeferred
async def test_run_and_follow_the_logs(client, target):
    cid = await run(client, target, ["sh", "-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.1; done"])
    logs = await client.containers.logs(cid, follow=True)
    frames = [frame async for frame in logs]
    assert [d for s, d in frames if s == STDOUT] == [b"out1\n", b"out2\n", b"out3\n"]
    assert [d for s, d in frames if s == STDERR] == [b"err1\n", b"err2\n", b"err3\n"]
    assert (await client.containers.wait(cid))["StatusCode"] == 0
    tty = await run(client, target, ["echo", "hello"], config={"Tty": True})
    await client.containers.wait(tty)
    assert await (await client.containers.logs(tty)).text() == "hello\r\n"
    result = await client.containers.run(target.image, ["sh", "-c", "echo hi; echo ho >&2; exit 3"],
                                         detach=False, remove=True, host_config=NO_NETWORK)
    assert (result.status_code, result.stdout, result.stderr) == (3, b"hi\n", b"ho\n")
    with pytest.raises(NotFound):
        await client.containers.inspect(result.id)


@pytest_twisted.ensureDeferred
async def test_a_cancelled_follow_closes_its_connection(client, target):
    cid = await run(client, target, ["sh", "-c", "while true; do echo tick; sleep 0.05; done"])
    logs = await client.containers.logs(cid, follow=True)
    assert (await logs.next())[1] == b"tick\n"
    pending = logs.body.read_chunk()
    pending.cancel()
    with pytest.raises(CancelledError):
        await pending
    assert logs.body.queue.closed
    assert await logs.next() is None
    # The daemon goes on serving; the container still runs.
    assert (await client.containers.inspect(cid))["State"]["Running"]
    await client.containers.remove(cid, force=True)


@pytest.mark.route("POST", "/containers/{name:.*}/attach")
@pytest_twisted.ensureDeferred
async def test_attach_with_stdin(client, target):
    cid = (await client.containers.create(target.image, ["cat"], config={
        "OpenStdin": True, "StdinOnce": True, "AttachStdin": True, "AttachStdout": True,
        "AttachStderr": True, "Labels": LABEL}, host_config=NO_NETWORK))["Id"]
    session = await client.containers.attach(cid)
    await client.containers.start(cid)
    session.write(b"line one\n")
    assert await session.next() == (STDOUT, b"line one\n")
    session.write(b"x" * 200000)
    session.close_stdin()
    out, err = await session.output()
    assert (out, err) == (b"x" * 200000, b"")
    assert (await client.containers.wait(cid))["StatusCode"] == 0


@pytest.mark.route("POST", "/containers/{name:.*}/exec")
@pytest.mark.route("POST", "/exec/{name:.*}/start")
@pytest.mark.route("GET", "/exec/{id:.*}/json")
@pytest_twisted.ensureDeferred
async def test_exec(client, target, tmp_path):
    cid = await run(client, target, ["sleep", "100"])
    result = await client.containers.exec_run(cid, ["sh", "-c", "cat; echo done >&2; exit 4"], stdin=b"in\n")
    assert (result.exit_code, result.stdout, result.stderr) == (4, b"in\n", b"done\n")
    # A large stdin streamed from a file, while the output is read.
    big = tmp_path / "stdin"
    big.write_bytes(os.urandom(1 << 20) * 5)
    result = await client.containers.exec_run(cid, ["wc", "-c"], stdin=str(big))
    assert (result.exit_code, result.stdout.split()) == (0, [b"5242880"])
    result = await client.containers.exec_run(cid, ["echo", "tty"], tty=True)
    assert (result.exit_code, result.stdout) == (0, b"tty\r\n")
    with pytest.raises(NotFound):
        await client.containers.exec_inspect("nope")
    await client.containers.remove(cid, force=True)


@pytest_twisted.ensureDeferred
async def test_typed_errors(client, target):
    with pytest.raises(NotFound, match="No such container: nope"):
        await client.containers.inspect("nope")
    cid = await run(client, target, ["sleep", "100"])
    with pytest.raises(NotModified):
        await client.containers.start(cid)
    with pytest.raises(Conflict, match="You cannot remove a running container"):
        await client.containers.remove(cid)
    with pytest.raises(NotFound, match="No such image"):
        await client.images.inspect("no-such-image:latest")
    await client.containers.remove(cid, force=True)


def _tar(name, data):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.route("PUT", "/containers/{name:.*}/archive")
@pytest.mark.route("GET", "/containers/{name:.*}/archive")
@pytest.mark.route("GET", "/containers/{name:.*}/export")
@pytest.mark.route("GET", "/containers/{name:.*}/top")
@pytest.mark.route("POST", "/containers/{name:.*}/pause")
@pytest.mark.route("POST", "/containers/{name:.*}/unpause")
@pytest.mark.route("POST", "/containers/{name:.*}/update")
@pytest.mark.route("POST", "/containers/{name:.*}/rename")
@pytest.mark.route("GET", "/containers/json")
@pytest.mark.route("POST", "/commit")
@pytest.mark.route("GET", "/containers/{name:.*}/stats")
@pytest_twisted.ensureDeferred
async def test_files_commit_and_the_verbs(client, target, tmp_path):
    c = client.containers
    cid = await run(client, target, ["sleep", "100"], name="client-verbs")
    payload = os.urandom(3 << 20)
    source = tmp_path / "in.tar"
    source.write_bytes(_tar("blob", payload))
    await c.put_archive(cid, "/tmp", str(source))
    stream, stat = await c.get_archive(cid, "/tmp/blob")
    assert stat["name"] == "blob" and stat["size"] == len(payload)
    with tarfile.open(fileobj=io.BytesIO(await stream.read())) as tar:
        assert tar.extractfile("blob").read() == payload
    exported = await c.export(cid)
    with open(tmp_path / "export.tar", "wb") as f:
        size = await exported.write_to(f.write)
    assert size > len(payload)
    with tarfile.open(tmp_path / "export.tar") as tar:
        assert "tmp/blob" in tar.getnames()
    top = await c.top(cid)
    assert any("sleep" in " ".join(p) for p in top["Processes"])
    await c.pause(cid)
    assert (await c.inspect(cid))["State"]["Paused"]
    await c.unpause(cid)
    await c.update(cid, {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
    assert (await c.inspect(cid))["HostConfig"]["RestartPolicy"]["MaximumRetryCount"] == 2
    await c.rename(cid, "client-verbs-renamed")
    assert (await c.inspect(cid))["Name"] == "/client-verbs-renamed"
    listed = await c.list(filters={"label": "twistedock.client.test=1", "name": "client-verbs-renamed"})
    assert [x["Id"] for x in listed] == [cid]
    await _stats(client, target, cid)
    committed = await c.commit(cid, repo="twistedock-client-test", tag="committed", changes=["ENV A=1"])
    image = await client.images.inspect(committed["Id"])
    assert "A=1" in image["Config"]["Env"]
    await client.images.remove("twistedock-client-test:committed")
    await c.stop(cid, timeout=1)
    assert (await c.wait(cid))["StatusCode"] != 0
    await c.remove(cid)


async def _stats(client, target, cid):
    stats = await client.containers.stats(cid)
    first = await stats.next()
    second = await stats.next()
    stats.close()
    assert "memory_stats" in first and first["id"] == cid
    # Each sample after the first carries the one before it as precpu_stats.
    assert second["precpu_stats"]["cpu_usage"] == first["cpu_stats"]["cpu_usage"]
    assert (await client.containers.stats(cid, stream=False))["id"] == cid


async def _save_and_load(client, target, tmp_path):
    images = client.images
    saved = await images.save("twistedock-client-test:tagged")
    size = await saved.write_to(str(tmp_path / "saved.tar"))
    assert size == (tmp_path / "saved.tar").stat().st_size
    with tarfile.open(tmp_path / "saved.tar") as tar:
        assert "manifest.json" in tar.getnames()
    await images.remove("twistedock-client-test:tagged")
    events = await (await images.load(str(tmp_path / "saved.tar"))).wait()
    assert any("twistedock-client-test:tagged" in (e.get("stream") or "") for e in events), events


@pytest.mark.route("POST", "/images/{name:.*}/tag")
@pytest.mark.route("GET", "/images/{name:.*}/json")
@pytest.mark.route("GET", "/images/{name:.*}/history")
@pytest.mark.route("DELETE", "/images/{name:.*}")
@pytest.mark.route("GET", "/images/json")
@pytest.mark.route("POST", "/images/create")
@pytest.mark.route("GET", "/_ping")
@pytest.mark.route("GET", "/version")
@pytest.mark.route("GET", "/info")
@pytest.mark.route("GET", "/system/df")
@pytest.mark.route("GET", "/images/get")
@pytest.mark.route("POST", "/images/load")
@pytest_twisted.ensureDeferred
async def test_images_and_system(client, target, tmp_path):
    images = client.images
    await images.tag(target.image, "twistedock-client-test", "tagged")
    tagged = await images.inspect("twistedock-client-test:tagged")
    assert tagged["Id"] == (await images.inspect(target.image))["Id"]
    assert await images.history("twistedock-client-test:tagged")
    await _save_and_load(client, target, tmp_path)
    assert any(t == "twistedock-client-test:tagged" for i in await images.list() for t in i["RepoTags"] or [])
    deleted = await images.remove("twistedock-client-test:tagged")
    assert {"Untagged": "twistedock-client-test:tagged"} in deleted
    # An image from a root filesystem streamed from a file.
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(_tar("hello.txt", b"hello"))
    progress = await (await images.import_(str(rootfs), "twistedock-client-test:imported")).wait()
    imported = await images.inspect("twistedock-client-test:imported")
    assert progress[-1]["status"] == imported["Id"]
    await images.remove("twistedock-client-test:imported")
    assert (await client.system.ping())["Body"] == "OK"
    version = await client.system.version()
    assert version["ApiVersion"] == await client.api_version()
    assert "Containers" in await client.system.info()
    assert "Images" in await client.system.df()


@pytest.mark.route("GET", "/events")
@pytest_twisted.ensureDeferred
async def test_events_with_filters_since_and_until(client, target):
    since = int(time.time()) - 1
    live = await client.events.stream(filters={"type": "container", "event": "start",
                                               "label": "twistedock.client.test=1"})
    cid = await run(client, target, ["true"])
    event = await live.next()
    live.close()
    assert (event["Type"], event["Action"], event["Actor"]["ID"]) == ("container", "start", cid)
    await client.containers.wait(cid)
    until = time.time() + 0.5
    past = await (await client.events.stream(since=since, until=until, filters={"container": cid})).wait()
    actions = [e["Action"] for e in past]
    assert actions[:3] == ["create", "start", "die"], actions


def _context_tar(dockerfile):
    return _tar("Dockerfile", dockerfile.encode())


async def _unless_unimplemented(target, call):
    """C{call()}'s result; None where twistedock answers 501 (dockerd must
    serve it)."""
    try:
        return await call()
    except NotImplementedByDaemon:
        assert target.kind == "twistedock"
        return None


@pytest.mark.route("POST", "/build")
@pytest.mark.route("POST", "/images/create")
@pytest.mark.route("POST", "/volumes/create")
@pytest.mark.route("GET", "/volumes")
@pytest.mark.route("GET", "/volumes/{name:.*}")
@pytest.mark.route("DELETE", "/volumes/{name:.*}")
@pytest.mark.route("GET", "/networks")
@pytest_twisted.ensureDeferred
async def test_build_pull_volumes_and_networks(client, target):
    # Build and networks still answer 501 on twistedock (docs/COMPAT.md).
    async def build():
        stream = await client.images.build(_context_tar("FROM %s\nLABEL built=yes\n" % target.image),
                                           tag="twistedock-client-test:built")
        return await stream.wait()

    progress = await _unless_unimplemented(target, build)
    if progress is not None:
        assert any("aux" in p for p in progress)
        assert (await client.images.inspect("twistedock-client-test:built"))["Config"]["Labels"] == {"built": "yes"}
        await client.images.remove("twistedock-client-test:built")

    async def pull():
        return await (await client.images.pull("localhost:1/nope:latest")).wait()

    with pytest.raises((APIError, StreamError), match="localhost:1|not implemented yet"):
        await pull()

    created = await client.volumes.create("twistedock-client-test", labels=LABEL)
    listed = await client.volumes.list(filters={"label": "twistedock.client.test=1"})
    assert created["Name"] == "twistedock-client-test"
    assert [v["Name"] for v in listed["Volumes"]] == ["twistedock-client-test"]
    assert (await client.volumes.inspect("twistedock-client-test"))["Labels"] == LABEL
    await client.volumes.remove("twistedock-client-test")
    with pytest.raises(NotFound):
        await client.volumes.inspect("twistedock-client-test")
    networks = await _unless_unimplemented(target, client.networks.list)
    if networks is not None:
        assert "none" in [n["Name"] for n in networks]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A docker-registry on loopback (both daemons treat 127.0.0.0/8 as
    insecure: plain HTTP)."""
    if reg.REGISTRY is None:
        pytest.skip("docker-registry is not installed")
    r = reg.Registry(tmp_path_factory.mktemp("registry")).start()
    yield r
    r.close()


@pytest.mark.route("POST", "/images/{name:.*}/push")
@pytest.mark.route("POST", "/images/create")
@pytest_twisted.ensureDeferred
async def test_push_and_pull_with_progress(client, target, registry):
    images = client.images
    repo = "%s/client-%s" % (registry.address, target.kind)
    image_id = (await images.inspect(target.image))["Id"]
    await images.tag(target.image, repo, "v1")
    pushed = await (await images.push(repo + ":v1")).wait()
    assert "The push refers to repository [%s]" % (repo,) in pushed[0]["status"]
    assert any(e.get("status") == "Pushed" for e in pushed), pushed
    digest = [e["aux"]["Digest"] for e in pushed if "aux" in e][-1]
    assert registry.manifest_digest("client-" + target.kind, "v1") == digest
    await images.remove(repo + ":v1")
    # The progress as an async iterator, one event at a time.
    pull = await images.pull(repo + ":v1")
    events = [event async for event in pull]
    assert events[-1]["status"] == "Status: Downloaded newer image for %s:v1" % (repo,), events
    assert "Digest: " + digest in [e.get("status") for e in events]
    pulled = await images.inspect(repo + ":v1")
    assert pulled["Id"] == image_id and "%s@%s" % (repo, digest) in pulled["RepoDigests"]
    await images.remove(repo + ":v1")
    # A registry's error is the stream's error line (or the answer's status).
    with pytest.raises((StreamError, NotFound), match="not found|unknown"):
        await (await images.pull(repo + ":absent")).wait()


@pytest.mark.route("POST", "/containers/{name:.*}/wait")
@pytest_twisted.ensureDeferred
async def test_cancelling_a_request_closes_its_connection(client, target):
    cid = await run(client, target, ["sleep", "100"])
    waiting = ensureDeferred(client.containers.wait(cid))
    await deferLater(reactor(), 0.2, lambda: None)
    assert not waiting.called
    waiting.cancel()
    with pytest.raises(CancelledError):
        await waiting
    assert (await client.containers.inspect(cid))["State"]["Running"]
    await client.containers.remove(cid, force=True)


def reactor():
    from twisted.internet import reactor

    return reactor
