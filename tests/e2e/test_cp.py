"""docker cp, export, diff and commit against a real daemon, with the real
docker CLI, docker-py and raw HTTP; links and tars that try to leave the
container's root must stay inside it."""

import base64
import io
import json
import os
import socket
import subprocess
import tarfile
import time
import uuid

import pytest

from .conftest import wait_for
from .test_containers import daemon  # noqa: F401  (the module's daemon with busybox)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]





@pytest.fixture
def running(daemon):
    """A running container with files and links to copy; removed after."""
    name = "cp-" + uuid.uuid4().hex[:8]
    daemon.docker(
        "run", "-d", "--network", "none", "--name", name, "busybox", "sh", "-c",
        # Idempotent: it runs again when the container is restarted.
        "mkdir -p /data/sub; echo hello > /data/f.txt; echo y > /data/sub/y;"
        " ln -sfn /etc/passwd /data/passwd; ln -sfn ../../../../../../../../tmp /data/up;"
        " ln -sfn / /data/root; touch /data/ready; exec sleep 1000",
    )
    wait_for(
        lambda: daemon.request("HEAD", "/containers/%s/archive?path=/data/ready" % name).status == 200,
        10,
        what="the container's files",
    )
    yield name
    daemon.docker("rm", "-f", name, check=False)


def stat_header(resp) -> dict:
    return json.loads(base64.b64decode(resp.headers["X-Docker-Container-Path-Stat"]))


def tar_of(entries) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def names_in(data: bytes):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


@pytest.mark.route("HEAD", "/containers/{name:.*}/archive")
@pytest.mark.route("GET", "/containers/{name:.*}/archive")
@pytest.mark.route("PUT", "/containers/{name:.*}/archive")
def test_cp_both_ways_running_and_stopped(daemon, running, tmp_path):
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "one").write_text("one\n")
    (src / "deep" / "two").write_text("two\n")
    os.chmod(str(src / "one"), 0o640)

    # Host to container: a file, a directory, a file under a new name.
    daemon.docker("cp", str(src / "one"), running + ":/data/")
    daemon.docker("cp", str(src), running + ":/data/copied")
    daemon.docker("cp", str(src / "one"), running + ":/data/renamed")
    listing = daemon.docker("exec", running, "sh", "-c",
                            "cat /data/one /data/copied/deep/two /data/renamed; stat -c %a /data/one").stdout
    assert listing == "one\ntwo\none\n640\n"

    # Container to host: a file, a directory, a directory's content.
    out = tmp_path / "out"
    out.mkdir()
    daemon.docker("cp", running + ":/data/f.txt", str(out))
    daemon.docker("cp", running + ":/data/sub", str(out))
    daemon.docker("cp", running + ":/data/sub/.", str(out / "content"))
    assert (out / "f.txt").read_text() == "hello\n"
    assert (out / "sub" / "y").read_text() == "y\n"
    assert (out / "content" / "y").read_text() == "y\n"

    # The same with the container stopped: its root is mounted for the copy.
    daemon.docker("stop", "-t", "0", running)
    daemon.docker("cp", str(src / "deep"), running + ":/data/while-stopped")
    daemon.docker("cp", running + ":/data/while-stopped/two", str(out / "two"))
    assert (out / "two").read_text() == "two\n"
    daemon.docker("start", running)
    assert daemon.docker("exec", running, "cat", "/data/while-stopped/two").stdout == "two\n"


@pytest.mark.route("HEAD", "/containers/{name:.*}/archive")
def test_path_stat_header_of_a_file_a_dir_and_a_link(daemon, running):
    resp = daemon.request("HEAD", "/v1.41/containers/%s/archive?path=/data/f.txt" % running)
    assert resp.status == 200 and resp.body == b""
    doc = stat_header(resp)
    assert (doc["name"], doc["size"], doc["mode"], doc["linkTarget"]) == ("f.txt", 6, 0o644, "")
    assert doc["mtime"].endswith("Z")
    doc = stat_header(daemon.request("HEAD", "/v1.41/containers/%s/archive?path=/data" % running))
    assert (doc["name"], doc["mode"], doc["linkTarget"]) == ("data", (1 << 31) | 0o755, "")
    doc = stat_header(daemon.request("HEAD", "/v1.41/containers/%s/archive?path=/data/passwd" % running))
    assert (doc["name"], doc["size"], doc["mode"], doc["linkTarget"]) == (
        "passwd", 11, (1 << 27) | 0o777, "/etc/passwd"
    )
    doc = stat_header(daemon.request("HEAD", "/v1.41/containers/%s/archive?path=/data/up" % running))
    assert doc["linkTarget"] == "/tmp"


@pytest.mark.route("GET", "/containers/{name:.*}/archive")
def test_the_daemons_etc_files_are_what_cp_reads(daemon, running, tmp_path):
    container_id = daemon.docker_json("inspect", running, format="{{json .Id}}")
    out = subprocess.run(
        "docker cp %s:/etc/hostname - | tar xO" % running, shell=True, env=daemon.cli_env(),
        capture_output=True, text=True, timeout=30,
    )
    assert out.stdout == container_id[:12] + "\n"
    daemon.docker("cp", running + ":/etc/hosts", str(tmp_path / "hosts"))
    assert "localhost" in (tmp_path / "hosts").read_text()


@pytest.mark.route("GET", "/containers/{name:.*}/archive")
@pytest.mark.route("PUT", "/containers/{name:.*}/archive")
def test_links_pointing_outside_stay_inside_the_container(daemon, running, tmp_path):
    marker = "host-only-" + uuid.uuid4().hex
    host_marker = os.path.join("/tmp", marker)
    with open(host_marker, "w") as f:
        f.write("host\n")
    try:
        out = tmp_path / "out"
        out.mkdir()
        # A link is copied as a link; followed (-L), it is the container's file.
        daemon.docker("cp", running + ":/data/passwd", str(out / "link"))
        assert os.readlink(str(out / "link")) == "/etc/passwd"
        daemon.docker("cp", "-L", running + ":/data/passwd", str(out / "followed"))
        assert "app:x:1000" in (out / "followed").read_text()
        # ../../.. and / lead to the container's /tmp and root, not the host's.
        daemon.docker("cp", running + ":/data/up/.", str(out / "tmp"))
        assert marker not in os.listdir(str(out / "tmp"))
        resp = daemon.request("GET", "/containers/%s/archive?path=/data/root/tmp/%s" % (running, marker))
        assert resp.status == 404
        assert resp.json() == {
            "message": "Could not find the file /data/root/tmp/%s in container %s" % (marker, running)
        }
        # Writing through them lands in the container too.
        src = tmp_path / "through"
        src.write_text("through\n")
        daemon.docker("cp", str(src), running + ":/data/up/")
        daemon.docker("cp", str(src), running + ":/data/root/tmp/via-root")
        assert daemon.docker("exec", running, "cat", "/tmp/through", "/tmp/via-root").stdout == "through\nthrough\n"
        assert not os.path.exists("/tmp/through") or open("/tmp/through").read() != "through\n"
        assert not os.path.exists("/tmp/via-root")
        with open(host_marker) as f:
            assert f.read() == "host\n"
    finally:
        os.unlink(host_marker)


@pytest.mark.route("PUT", "/containers/{name:.*}/archive")
def test_an_escaping_tar_is_refused_whole(daemon, running):
    evil = "evil-" + uuid.uuid4().hex
    body = tar_of([("ok1", b"1"), ("../../../../../../../tmp/" + evil, b"bad"), ("ok2", b"2")])
    resp = daemon.request(
        "PUT", "/v1.41/containers/%s/archive?path=/data" % running, body=body,
        headers={"Content-Type": "application/x-tar"},
    )
    assert resp.status == 400
    assert resp.json()["message"] == (
        'Error processing tar file(exit status 1): "../../../../../../../tmp/%s" is outside of "/data"' % evil
    )
    listing = daemon.docker("exec", running, "ls", "/data", "/tmp").stdout
    assert "ok1" not in listing and "ok2" not in listing and evil not in listing
    assert not os.path.exists("/tmp/" + evil)
    # The other refusals and answers dockerd gives.
    put = lambda path, data, query="": daemon.request(
        "PUT", "/v1.41/containers/%s/archive?path=%s%s" % (running, path, query), body=data
    )
    resp = put("/nope", tar_of([("x", b"")]))
    assert (resp.status, resp.json()) == (
        404, {"message": "Could not find the file /nope in container %s" % running}
    )
    resp = put("/data/f.txt", tar_of([("x", b"")]))
    assert (resp.status, resp.json()) == (400, {"message": "extraction point is not a directory"})
    resp = put("/data", tar_of([("sub", b"")]), "&noOverwriteDirNonDir=1")
    assert (resp.status, resp.json()) == (400, {
        "message": 'Error processing tar file(exit status 1): cannot overwrite directory '
                   '"/data/sub" with non-directory "/data"'
    })
    resp = daemon.request("PUT", "/v1.41/containers/%s/archive" % running, body=b"")
    assert (resp.status, resp.json()) == (400, {"message": "bad parameter: pathcannot be empty"})
    assert put("/data", b"").status == 200


@pytest.mark.route("GET", "/containers/{name:.*}/archive")
@pytest.mark.route("GET", "/containers/{name:.*}/export")
@pytest.mark.route("GET", "/containers/{name:.*}/changes")
@pytest.mark.route("POST", "/commit")
def test_unknown_containers_and_missing_parameters(daemon):
    resp = daemon.request("GET", "/v1.41/containers/nosuch/archive?path=/")
    assert (resp.status, resp.json()) == (404, {"message": "No such container: nosuch"})
    for what in ("export", "changes"):
        resp = daemon.request("GET", "/v1.41/containers/nosuch/%s" % what)
        assert (resp.status, resp.json()) == (404, {"message": "No such container: nosuch"})
    resp = daemon.request("POST", "/v1.41/commit?container=x")
    assert (resp.status, resp.json()) == (404, {"message": "No such container: x"})
    resp = daemon.request("GET", "/v1.41/containers/nosuch/archive")
    assert (resp.status, resp.json()) == (400, {"message": "bad parameter: pathcannot be empty"})


@pytest.mark.route("GET", "/containers/{name:.*}/export")
def test_export_lists_the_root_filesystem(daemon, running):
    export = subprocess.run(
        "docker export %s | tar t" % running, shell=True, env=daemon.cli_env(),
        capture_output=True, text=True, timeout=60,
    )
    assert export.returncode == 0, export.stderr
    names = export.stdout.split()
    for expected in ("bin/busybox", "etc/passwd", "data/f.txt", "data/sub/y", "data/passwd", "tmp/"):
        assert expected in names
    assert not any(n.startswith("/") or n.startswith("./") for n in names)


@pytest.mark.route("GET", "/containers/{name:.*}/changes")
def test_diff_after_add_change_delete(daemon):
    name = "diff-" + uuid.uuid4().hex[:8]
    daemon.docker(
        "run", "--network", "none", "--name", name, "busybox", "sh", "-c",
        "echo new > /tmp/new; echo more >> /etc/passwd; rm /etc/group; mkdir -p /x/y; touch /x/y/f;"
        " rm -rf /home; mkdir /home; touch /home/n",
    )
    try:
        # dockerd's walk order: a directory before what is inside it, its
        # deletions after its other changes.
        assert daemon.docker("diff", name).stdout.splitlines() == [
            "C /etc",
            "C /etc/passwd",
            "D /etc/group",
            "C /home",
            "A /home/n",
            "D /home/app",
            "C /tmp",
            "A /tmp/new",
            "A /x",
            "A /x/y",
            "A /x/y/f",
        ]
        fresh = daemon.docker("create", "busybox", "true").stdout.strip()
        assert daemon.request("GET", "/containers/%s/changes" % fresh).body == b"null\n"
        daemon.docker("rm", fresh)
    finally:
        daemon.docker("rm", "-f", name, check=False)


@pytest.mark.route("POST", "/commit")
def test_commit_then_run_the_new_image(daemon, running):
    image = "committed-" + uuid.uuid4().hex[:8]
    daemon.docker("exec", running, "sh", "-c", "echo made > /data/made; rm /data/f.txt")
    result = daemon.docker(
        "commit", "-c", 'CMD ["echo","committed"]', "-c", "ENV GREETING=hi", "-m", "a message",
        running, image + ":v1",
    )
    image_id = result.stdout.strip()
    assert image_id.startswith("sha256:")
    try:
        # The container was paused for the commit, and runs again.
        assert daemon.docker_json("inspect", running, format="{{json .State.Status}}") == "running"
        assert daemon.docker("run", "--rm", "--network", "none", image + ":v1").stdout == "committed\n"
        out = daemon.docker(
            "run", "--rm", "--network", "none", image + ":v1", "sh", "-c",
            'cat /data/made; echo $GREETING; test -e /data/f.txt || echo gone',
        ).stdout
        assert out == "made\nhi\ngone\n"
        inspect = daemon.docker_json("image", "inspect", image + ":v1", format="{{json .}}")
        busybox = daemon.docker_json("image", "inspect", "busybox", format="{{json .Id}}")
        assert inspect["Parent"] == busybox
        assert inspect["Comment"] == "a message"
        assert len(inspect["RootFS"]["Layers"]) == 2
        history = daemon.docker("history", "--format", "{{.Comment}}", image + ":v1").stdout.split("\n")
        assert history[0] == "a message"
        resp = daemon.request(
            "POST", "/v1.41/commit?container=%s&changes=BOGUS+x" % running
        )
        assert (resp.status, resp.json()) == (400, {"message": "bogus is not a valid change command"})
    finally:
        daemon.docker("rmi", "-f", image + ":v1", check=False)


@pytest.mark.route("GET", "/containers/{name:.*}/archive")
@pytest.mark.route("PUT", "/containers/{name:.*}/archive")
def test_docker_py_get_and_put_archive(daemon, running):
    import docker

    client = docker.DockerClient(base_url=daemon.host, version="auto")
    try:
        container = client.containers.get(running)
        assert container.put_archive("/data", tar_of([("py.txt", b"from python\n")]))
        chunks, stat = container.get_archive("/data/py.txt")
        assert stat["name"] == "py.txt" and stat["size"] == 12
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            assert tar.extractfile("py.txt").read() == b"from python\n"
        with pytest.raises(docker.errors.NotFound):
            container.get_archive("/nope")
    finally:
        client.close()


@pytest.mark.route("GET", "/containers/{name:.*}/archive")
def test_a_slow_reader_is_streamed_to_with_bounded_memory(daemon, running):
    daemon.docker("exec", running, "dd", "if=/dev/zero", "of=/data/big", "bs=1048576", "count=64")
    pid = daemon.proc.pid

    def rss_kb() -> int:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def tar_threads() -> int:
        count = 0
        for task in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/comm" % (pid, task)) as f:
                    count += f.read().strip() == "twistedock-tar"
            except OSError:
                pass
        return count

    before = rss_kb()
    sock = socket.socket(socket.AF_UNIX)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(daemon.sock)
    try:
        sock.sendall(
            ("GET /v1.41/containers/%s/archive?path=/data/big HTTP/1.1\r\nHost: d\r\n\r\n" % running).encode()
        )
        got = 0
        while got < 1 << 20:
            got += len(sock.recv(65536))
        time.sleep(1.0)
        # 64 MiB wait in the container; the daemon holds only a few chunks.
        assert rss_kb() - before < 32 * 1024
        # It keeps serving meanwhile, the tar's thread waiting for the client.
        assert daemon.request("GET", "/_ping").status == 200
        assert tar_threads() == 1
    finally:
        sock.close()
    # The client left: the producing thread ends.
    wait_for(lambda: tar_threads() == 0, 10, what="the tar thread to end")
    resp = daemon.request("GET", "/containers/%s/archive?path=/data/big" % running, timeout=60)
    assert resp.status == 200 and len(resp.body) == 64 * 1048576 + 512 + 1024
