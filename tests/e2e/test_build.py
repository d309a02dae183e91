"""The classic builder, driven with the docker CLI (DOCKER_BUILDKIT=0) and
docker-py: a multi-stage Dockerfile using every instruction, its image run,
a rebuild all from the cache, and failing builds that leave nothing behind."""

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from .test_containers import daemon  # noqa: F401 (the busybox fixture)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

DOCKERFILE = """\
# a comment
ARG BASE=busybox
FROM ${BASE} AS builder
ARG GREETING=hello
RUN echo "$GREETING from the builder" > /greeting && mkdir -p /out && cp /greeting /out/ && echo run-output && echo to-stderr >&2
COPY files/ /out/files/
ADD bundle.tar.gz /out/unpacked/

FROM busybox
LABEL org.example.name="the app" tier=web
MAINTAINER someone@example.com
ENV APP_HOME=/app PORT=8080
ARG VERSION=1.0
WORKDIR $APP_HOME
COPY --from=builder /out/ ./
COPY --chown=app:staff f*.txt ./texts/
RUN echo "version $VERSION" > version && ls -ln texts > owners
USER app
EXPOSE 8080 53/udp
VOLUME /data
SHELL ["/bin/sh", "-c"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD true
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/greeting /app/version"]
"""


def _context(dockerfile: str = DOCKERFILE, extra=None) -> bytes:
    """A build context as a tar in memory."""
    buf = io.BytesIO()
    files = {
        "Dockerfile": dockerfile.encode(),
        "files/a": b"a\n",
        "files/sub/b": b"b\n",
        "first.txt": b"1\n",
        "fifth.txt": b"5\n",
        "ignored.log": b"no\n",
        ".dockerignore": b"*.log\n",
    }
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w") as t:
        data = b"inside\n"
        info = tarfile.TarInfo("dir/inside.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    files["bundle.tar.gz"] = gzip.compress(inner.getvalue())
    files.update(extra or {})
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _write_context(path, dockerfile: str = DOCKERFILE) -> str:
    with tarfile.open(fileobj=io.BytesIO(_context(dockerfile))) as tar:
        tar.extractall(path)
    return str(path)


def _build(daemon, path, *args, check=True):  # noqa: F811
    env = daemon.cli_env(extra={"DOCKER_BUILDKIT": "0"})
    result = subprocess.run(
        ["docker", "build", *args, path], env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _containers(daemon):  # noqa: F811
    return daemon.docker("ps", "-aq").stdout.split()


def test_multistage_build_runs_with_its_config(daemon, tmp_path):  # noqa: F811
    path = _write_context(tmp_path)
    result = _build(daemon, path, "-t", "app:1", "-t", "app:latest", "--build-arg", "VERSION=2.5")
    out = result.stdout
    assert "Step 1/24 : ARG BASE=busybox" in out
    assert "Step 2/24 : FROM ${BASE} AS builder" in out
    assert " ---> Running in " in out
    assert "run-output" in out and "to-stderr" in out
    assert "Removing intermediate container" in out
    assert "Successfully built " in out
    assert "Successfully tagged app:1" in out and "Successfully tagged app:latest" in out
    assert _containers(daemon) == []

    config = daemon.docker_json("image", "inspect", "app:1", format="{{json .Config}}")
    assert config["Labels"] == {"org.example.name": "the app", "tier": "web"}
    assert "APP_HOME=/app" in config["Env"] and "PORT=8080" in config["Env"]
    assert config["WorkingDir"] == "/app"
    assert config["User"] == "app"
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGTERM"
    assert config["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert config["Healthcheck"]["Interval"] == 30 * 10**9
    assert config["OnBuild"] == ["RUN echo triggered"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["cat /app/greeting /app/version"]
    # The base, WORKDIR's new directory, two COPYs, the RUN (as dockerd).
    layers = daemon.docker_json("image", "inspect", "app:1", format="{{json .RootFS.Layers}}")
    assert len(layers) == 5
    author = daemon.docker("image", "inspect", "app:1", "--format", "{{.Author}}").stdout.strip()
    assert author == "someone@example.com"

    run = daemon.docker("run", "--rm", "app:1")
    assert run.stdout == "hello from the builder\nversion 2.5\n"
    listing = daemon.docker(
        "run", "--rm", "--entrypoint", "sh", "app:1", "-c",
        "cat owners; ls /app/files /app/files/sub /app/unpacked/dir; ls /app/texts; "
        "ls / | grep -c ignored; true",
    ).stdout
    assert "1000" in listing and "50" in listing  # --chown=app:staff
    assert "a\nsub\n" in listing and "b\n" in listing and "inside.txt" in listing
    assert "fifth.txt\nfirst.txt\n" in listing

    history = daemon.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", "app:1").stdout
    lines = history.splitlines()
    assert lines[0] == '/bin/sh -c #(nop)  CMD ["cat /app/greeting /app/version"]|0B'
    assert any(line.startswith("|1 VERSION=2.5 /bin/sh -c echo \"version $VERSION\"") for line in lines)
    # As dockerd 20.10 writes them (the missing space after --chown too).
    assert any(line.startswith("/bin/sh -c #(nop) COPY --chown=app:staffmulti:") for line in lines)
    assert any(line.startswith("/bin/sh -c #(nop) COPY dir:") and " in ./ |" in line for line in lines)
    assert "/bin/sh -c #(nop)  EXPOSE 53/udp 8080|0B" in lines
    assert "/bin/sh -c #(nop)  HEALTHCHECK &{[\"CMD-SHELL\" \"true\"] \"30s\" \"3s\" \"0s\" '\\x00'}|0B" in lines
    assert any(line.startswith("/bin/sh -c #(nop) WORKDIR /app|0B") for line in lines)

    # A rebuild: every step from the cache, no container run, the same image.
    first_id = daemon.docker("image", "inspect", "app:1", "--format", "{{.Id}}").stdout.strip()
    again = _build(daemon, path, "-t", "app:1", "--build-arg", "VERSION=2.5").stdout
    assert " ---> Running in " not in again
    assert again.count(" ---> Using cache") == 21
    assert "Successfully built %s" % first_id.split(":")[1][:12] in again
    # A changed build arg misses the cache from its RUN on.
    changed = _build(daemon, path, "--build-arg", "VERSION=3").stdout
    assert changed.count(" ---> Running in ") == 1 + 9  # the RUN, then the config steps after it

    # ONBUILD triggers run in a child build.
    child = tmp_path / "child"
    child.mkdir()
    (child / "Dockerfile").write_text("FROM app:1\nUSER root\n")
    out = _build(daemon, str(child), "-t", "app-child").stdout
    assert "# Executing 1 build trigger" in out and "triggered" in out
    daemon.docker("rmi", "app-child", "app:1", "app:latest")


@pytest.mark.parametrize(
    "dockerfile,message,status",
    [
        ("FROM busybox\nRUN exit 3\n", "The command '/bin/sh -c exit 3' returned a non-zero code: 3", 3),
        ('FROM busybox\nRUN ["sh", "-c", "exit 4"]\n', "The command 'sh -c exit 4' returned a non-zero code: 4", 4),
        ("FROM busybox\nCOPY nope /x\n",
         "COPY failed: file not found in build context or excluded by .dockerignore: "
         "stat nope: file does not exist", 1),
        ("FROM busybox\nFOO bar\n", "dockerfile parse error line 2: unknown instruction: FOO", 1),
        ('FROM busybox\nRUN ["/nonexistent"]\n', "no such file or directory", 1),
    ],
)
def test_failing_builds_leave_nothing(daemon, tmp_path, dockerfile, message, status):  # noqa: F811
    (tmp_path / "Dockerfile").write_text(dockerfile)
    before = daemon.docker("images", "-aq").stdout.split()
    result = _build(daemon, str(tmp_path), "--force-rm", "-t", "broken", check=False)
    assert result.returncode == status, result.stdout + result.stderr
    assert message in result.stderr
    assert _containers(daemon) == []
    assert daemon.docker("images", "-aq").stdout.split() == before
    assert daemon.docker("images", "-q", "broken").stdout.strip() == ""


def test_failing_run_without_force_rm_keeps_its_container(daemon, tmp_path):  # noqa: F811
    # As dockerd: rm removes a step's container after a success only.
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN exit 5\n")
    result = _build(daemon, str(tmp_path), check=False)
    assert result.returncode == 5
    left = _containers(daemon)
    assert len(left) == 1
    daemon.docker("rm", left[0])


def test_docker_py_build_and_quiet_stream(daemon):  # noqa: F811
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=120)
    try:
        context = _context("FROM busybox\nCOPY first.txt /\nCMD [\"cat\", \"/first.txt\"]\n")
        image, logs = client.images.build(
            fileobj=io.BytesIO(context), custom_context=True, tag="pybuilt", rm=True,
            labels={"built-by": "docker-py"},
        )
        logs = list(logs)
        lines = [entry.get("stream", "") for entry in logs]
        assert "Step 1/4 : FROM busybox" in lines
        assert any(entry.get("aux", {}).get("ID") == image.id for entry in logs)
        assert image.labels == {"built-by": "docker-py"}
        assert client.containers.run("pybuilt", remove=True) == b"1\n"
        raw = client.api.build(fileobj=io.BytesIO(context), custom_context=True, quiet=True, decode=True)
        docs = list(raw)
        # Quiet: no steps, the image ID alone.
        assert len(docs) == 1 and docs[0]["stream"].startswith("sha256:")
        # Quiet and failing: what was held back, then the error (as dockerd).
        failing = list(client.api.build(
            fileobj=io.BytesIO(_context("FROM busybox\nRUN echo held; exit 6\n")), custom_context=True,
            quiet=True, forcerm=True, decode=True,
        ))
        assert {"stream": "Step 2/2 : RUN echo held; exit 6"} in failing
        assert {"stream": "held\n"} in failing
        assert failing[-1]["errorDetail"]["code"] == 6
        with pytest.raises(docker.errors.BuildError) as failure:
            client.images.build(
                fileobj=io.BytesIO(_context("FROM busybox\nRUN exit 7\n")), custom_context=True,
                forcerm=True,
            )
        assert "returned a non-zero code: 7" in str(failure.value)
        client.images.remove("pybuilt")
    finally:
        client.close()


def test_build_api_answers(daemon):  # noqa: F811
    ping = daemon.request("GET", "/_ping")
    assert ping.headers["Builder-Version"] == "1"
    prune = daemon.request("POST", "/v1.41/build/prune")
    assert prune.status == 200 and prune.json() == {"CachesDeleted": None, "SpaceReclaimed": 0}
    assert "Total reclaimed space: 0B" in daemon.docker("builder", "prune", "-f").stdout
    df = daemon.request("GET", "/v1.41/system/df").json()
    assert df["BuildCache"] is None
    bad = daemon.request(
        "POST", "/v1.41/build?dockerfile=Nope", body=_context(),
        headers={"Content-Type": "application/x-tar"},
    )
    assert bad.status == 500  # as dockerd 20.10
    assert bad.json() == {"message": "Cannot locate specified Dockerfile: Nope"}
    unknown = daemon.request(
        "POST", "/v1.41/build", body=_context("FROM busybox\nBOGUS x\n"),
        headers={"Content-Type": "application/x-tar"},
    )
    assert unknown.status == 400
    assert unknown.json() == {"message": "dockerfile parse error line 2: unknown instruction: BOGUS"}
    # The daemon applies .dockerignore itself (for clients that do not).
    ignored = daemon.request(
        "POST", "/v1.41/build", body=_context("FROM busybox\nCOPY first.txt /\n", {".dockerignore": b"first.txt\n"}),
        headers={"Content-Type": "application/x-tar"}, timeout=60,
    )
    assert json.loads(ignored.text.splitlines()[-1])["error"] == (
        "COPY failed: file not found in build context or excluded by .dockerignore: "
        "stat first.txt: file does not exist"
    )
    target = daemon.request(
        "POST", "/v1.41/build?target=builder&t=stage1", body=_context(),
        headers={"Content-Type": "application/x-tar"}, timeout=120,
    )
    docs = [json.loads(line) for line in target.text.splitlines() if line.strip()]
    steps = [d["stream"] for d in docs if d.get("stream", "").startswith("Step ")]
    assert steps[-1].startswith("Step 6/6 : ADD bundle.tar.gz")
    assert docs[-1] == {"stream": "Successfully tagged stage1:latest\n"}
    daemon.docker("rmi", "stage1")


def test_cli_without_buildkit_variable_uses_this_builder(daemon, tmp_path):  # noqa: F811
    # The daemon's _ping says Builder-Version 1: the CLI (without buildx)
    # takes the classic builder, with its deprecation notice.
    (tmp_path / "Dockerfile").write_text("FROM busybox\nENV X=1\n")
    env = daemon.cli_env()
    env.pop("DOCKER_BUILDKIT", None)
    result = subprocess.run(
        ["docker", "build", "-t", "nobk", str(tmp_path)], env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "DEPRECATED: The legacy builder is deprecated" in result.stderr
    assert "Step 2/2 : ENV X=1" in result.stdout
    assert "Successfully tagged nobk:latest" in result.stdout
    daemon.docker("rmi", "nobk")


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="Debian's docker-compose (1.29) is not installed")
def test_docker_compose_build(daemon, tmp_path):  # noqa: F811
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text("FROM busybox\nARG MSG\nRUN echo \"$MSG\" > /msg\nCMD [\"cat\", \"/msg\"]\n")
    (tmp_path / "docker-compose.yml").write_text(
        "version: '3.8'\n"
        "services:\n"
        "  web:\n"
        "    build:\n"
        "      context: ./web\n"
        "      args:\n"
        "        MSG: built by compose\n"
        "    image: composed-web:1\n"
    )
    # Through docker-py (COMPOSE_DOCKER_CLI_BUILD=0), then through the
    # docker CLI (compose's default), with nothing else set.
    for extra in ({"COMPOSE_DOCKER_CLI_BUILD": "0"}, {}):
        env = daemon.cli_env(extra=extra)
        env.pop("DOCKER_BUILDKIT", None)
        result = subprocess.run(
            ["docker-compose", "-p", "cb", "build", "--no-cache"], cwd=str(tmp_path), env=env,
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Successfully tagged composed-web:1" in result.stdout + result.stderr
        assert daemon.docker("run", "--rm", "composed-web:1").stdout == "built by compose\n"
        daemon.docker("rmi", "composed-web:1")


@pytest.fixture
def web(tmp_path):
    """A loopback HTTP server of the files under tmp_path/www."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_remote_context_add_url_and_run_options(daemon, web):  # noqa: F811
    root, base = web
    (root / "note.txt").write_text("downloaded\n")
    dockerfile = (
        "FROM busybox\n"
        "ADD %s/note.txt /fetched/\n"
        "RUN grep -q somehost /etc/hosts && (cat /sys/fs/cgroup/memory.max || "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes) > /memory\n"
        "COPY first.txt /\n" % (base,)
    )
    (root / "context.tar.gz").write_bytes(gzip.compress(_context(dockerfile)))
    result = daemon.request(
        "POST", "/v1.41/build?t=remote:1&remote=" + base + "/context.tar.gz"
        "&extrahosts=somehost:10.1.2.3&memory=67108864",
        body=b"", headers={"Content-Type": "application/x-tar"}, timeout=120,
    )
    assert result.status == 200
    assert "Successfully tagged remote:1" in result.text, result.text
    out = daemon.docker(
        "run", "--rm", "remote:1", "sh", "-c", "cat /fetched/note.txt /first.txt; stat -c %a /fetched/note.txt; cat /memory"
    ).stdout
    assert out.startswith("downloaded\n1\n600\n")
    assert out.endswith("67108864\n"), result.text
    # A plain Dockerfile as the remote context.
    (root / "Dockerfile").write_text("FROM busybox\nLABEL from=url\n")
    result = daemon.request(
        "POST", "/v1.41/build?t=remote:2&remote=" + base + "/Dockerfile", body=b"",
        headers={"Content-Type": "application/x-tar"}, timeout=120,
    )
    assert "Successfully tagged remote:2" in result.text, result.text
    daemon.docker("rmi", "remote:1", "remote:2")


def test_from_a_missing_image_fails_as_a_pull(daemon, tmp_path):  # noqa: F811
    (tmp_path / "Dockerfile").write_text("FROM 127.0.0.1:1/nothing/here:1\n")
    result = _build(daemon, str(tmp_path), check=False)
    assert result.returncode == 1
    assert "Step 1/1 : FROM 127.0.0.1:1/nothing/here:1" in result.stdout
    assert "connection refused" in result.stderr
    assert _containers(daemon) == []


def test_buildkit_flags_are_refused_at_their_step(daemon, tmp_path):  # noqa: F811
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=cache,target=/x true\n")
    result = _build(daemon, str(tmp_path), check=False)
    assert result.returncode == 1
    assert "Step 2/2 : RUN --mount=type=cache,target=/x true" in result.stdout
    assert "the --mount option requires BuildKit" in result.stderr


def test_image_prune_after_an_untagged_build(daemon, tmp_path):  # noqa: F811
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL stage=tmp\nRUN echo x > /x\nENV Y=1\n")
    before = sorted(daemon.docker("images", "-aq").stdout.split())
    dangling = len(daemon.docker("images", "-q", "--filter", "dangling=true").stdout.split())
    _build(daemon, str(tmp_path))
    assert len(daemon.docker("images", "-aq").stdout.split()) == len(before) + 3
    assert len(daemon.docker("images", "-q", "--filter", "dangling=true").stdout.split()) == dangling + 1
    pruned = daemon.docker("image", "prune", "-f", "--filter", "label=stage=tmp").stdout
    assert pruned.count("deleted: sha256:") == 4  # three images, the RUN step's layer
    assert sorted(daemon.docker("images", "-aq").stdout.split()) == before


def test_two_builds_at_once(daemon, tmp_path):  # noqa: F811
    procs = []
    env = daemon.cli_env(extra={"DOCKER_BUILDKIT": "0"})
    for n in range(2):
        directory = tmp_path / str(n)
        directory.mkdir()
        (directory / "Dockerfile").write_text(
            "FROM busybox\nRUN echo build-%d | tee /n && sleep 0.3\nCMD [\"cat\", \"/n\"]\n" % n
        )
        procs.append(subprocess.Popen(
            ["docker", "build", "-t", "both:%d" % n, str(directory)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    for n, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
        assert "\nbuild-%d\n" % n in out and "build-%d" % (1 - n) not in out
    for n in range(2):
        assert daemon.docker("run", "--rm", "both:%d" % n).stdout == "build-%d\n" % n
    daemon.docker("rmi", "both:0", "both:1")
    assert _containers(daemon) == []


def test_git_remote_context(daemon, tmp_path):  # noqa: F811
    from .conftest import free_port, wait_for

    repo = tmp_path / "repos" / "app.git"
    work = tmp_path / "work"
    work.mkdir()
    (work / "sub").mkdir()
    (work / "sub" / "Dockerfile").write_text("FROM busybox\nCOPY hello.txt /\nCMD [\"cat\", \"/hello.txt\"]\n")
    (work / "sub" / "hello.txt").write_text("from git\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(git + ["init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run(git + ["-C", str(work), "add", "."], check=True)
    subprocess.run(git + ["-C", str(work), "commit", "-qm", "app"], check=True)
    subprocess.run(git + ["-C", str(work), "tag", "v1"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], check=True)
    port = free_port()
    server = subprocess.Popen([
        "git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", "--port=%d" % port,
        "--base-path=%s" % (tmp_path / "repos"), str(tmp_path / "repos"),
    ])
    try:
        import socket

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, 10, what="git daemon")
        url = "git://127.0.0.1:%d/app.git#v1:sub" % port
        result = daemon.request(
            "POST", "/v1.41/build?t=fromgit:1&remote=" + url, body=b"",
            headers={"Content-Type": "application/x-tar"}, timeout=120,
        )
        assert "Successfully tagged fromgit:1" in result.text, result.text
        assert daemon.docker("run", "--rm", "fromgit:1").stdout == "from git\n"
        daemon.docker("rmi", "fromgit:1")
        missing = daemon.request(
            "POST", "/v1.41/build?remote=git://127.0.0.1:%d/nothing.git" % port, body=b"",
            headers={"Content-Type": "application/x-tar"}, timeout=60,
        )
        assert missing.status == 500 and missing.json()["message"].startswith("error fetching: ")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_cache_from_limits_the_cache_to_those_images(daemon, tmp_path):  # noqa: F811
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo cf > /cf\nENV CF=1\n")
    _build(daemon, str(tmp_path), "-t", "cf:1")
    hits = _build(daemon, str(tmp_path), "--cache-from", "cf:1").stdout
    assert hits.count(" ---> Using cache") == 2 and " ---> Running in " not in hits
    # Images not named (or whose descendants are not) are no cache.
    misses = _build(daemon, str(tmp_path), "--cache-from", "busybox", "-t", "cf:2").stdout
    assert " ---> Using cache" not in misses and misses.count(" ---> Running in ") == 2
    daemon.docker("rmi", "cf:1", "cf:2")


def test_cache_from_an_image_without_its_parents(daemon, tmp_path):  # noqa: F811
    # As after a pull: the image alone, read by its history.
    (tmp_path / "Dockerfile").write_text("FROM busybox\nENV H=1\nRUN echo h > /h\nCOPY first.txt /\nCMD [\"cat\", \"/h\"]\n")
    (tmp_path / "first.txt").write_text("1\n")
    _build(daemon, str(tmp_path), "-t", "hc:1")
    image_id = daemon.docker("image", "inspect", "hc:1", "--format", "{{.Id}}").stdout.strip()
    archive = tmp_path / "hc.tar"
    daemon.docker("save", "-o", str(archive), "hc:1")
    daemon.docker("rmi", "hc:1")
    daemon.docker("load", "-i", str(archive))
    result = _build(daemon, str(tmp_path), "--cache-from", "hc:1", "-t", "hc:2", check=False)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert out.count(" ---> Using cache") == 4 and " ---> Running in " not in out, out
    assert daemon.docker("image", "inspect", "hc:2", "--format", "{{.Id}}").stdout.strip() == image_id
    assert daemon.docker("run", "--rm", "hc:2").stdout == "h\n"
    daemon.docker("rmi", "hc:1", "hc:2")
