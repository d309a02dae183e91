"""docker save and docker load with the real CLI and docker-py against a
real twistd dockerd: round trips keep the image ID, an OCI layout loads,
crafted archives are refused leaving nothing behind, and archives cross
between twistedock and the reference dockerd 20.10 both ways."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

import docker
import pytest

from .conftest import DOCKER
from .test_containers import busybox_rootfs_tar, daemon  # noqa: F401  (the module's daemon with busybox)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.route("GET", "/images/get"),
    pytest.mark.route("POST", "/images/load"),
]

REFERENCE = "unix:///tmp/reference-dockerd/docker.sock"


def image_id(daemon, name):
    return daemon.docker("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def on_disk(daemon):
    """The layers and image configs the daemon keeps."""
    root = os.path.join(daemon.data_root, "image")
    return (
        sorted(os.listdir(os.path.join(root, "layers"))),
        sorted(os.listdir(os.path.join(root, "imagedb"))),
    )


def members(path) -> dict:
    out = {}
    with tarfile.open(path) as tar:
        for m in tar:
            if m.isfile():
                out[m.name] = tar.extractfile(m).read()
            elif m.issym():
                out[m.name] = ("->", m.linkname)
    return out


def write_tar(path, files: dict) -> None:
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))


def load(daemon, path, host=None):
    return daemon.docker("load", "-i", str(path), check=False, host=host, timeout=120)


def test_save_and_load_round_trip_keeps_the_id(daemon, tmp_path):
    original = image_id(daemon, "busybox")
    archive = tmp_path / "busybox.tar"
    daemon.docker("save", "-o", str(archive), "busybox")
    files = members(archive)
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    assert "index.json" in files and "oci-layout" in files
    daemon.docker("tag", "busybox", "keep:me")
    daemon.docker("rmi", "busybox")
    result = load(daemon, archive)
    assert (result.returncode, result.stdout) == (0, "Loaded image: busybox:latest\n"), result.stderr
    assert image_id(daemon, "busybox") == original
    # Through a pipe, as `docker save busybox | docker load`.
    env = daemon.cli_env()
    piped = subprocess.run(
        "%s save busybox | %s load" % (DOCKER, DOCKER),
        shell=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (piped.returncode, piped.stdout) == (0, "Loaded image: busybox:latest\n"), piped.stderr
    assert image_id(daemon, "busybox") == original
    daemon.docker("rmi", "keep:me")


@pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")
def test_a_loaded_image_runs(daemon, tmp_path):
    archive = tmp_path / "busybox.tar.gz"
    saved = subprocess.run([DOCKER, "save", "busybox"], env=daemon.cli_env(), capture_output=True, timeout=120)
    assert saved.returncode == 0
    archive.write_bytes(gzip.compress(saved.stdout))
    daemon.docker("tag", "busybox", "runs:before")
    daemon.docker("rmi", "busybox", "runs:before")
    result = load(daemon, archive)
    assert result.stdout == "Loaded image: busybox:latest\n", result.stderr
    assert daemon.docker("run", "--rm", "busybox", "echo", "loaded").stdout == "loaded\n"


def test_load_moves_a_tag_as_dockerd(daemon, tmp_path):
    archive = tmp_path / "busybox.tar"
    daemon.docker("save", "-o", str(archive), "busybox")
    original = image_id(daemon, "busybox")
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tar:
        info = tarfile.TarInfo("marker")
        tar.addfile(info)
    daemon.docker("import", str(other), "busybox:latest")
    moved = image_id(daemon, "busybox")
    result = load(daemon, archive)
    assert result.stdout == (
        "The image busybox:latest already exists, renaming the old one with ID %s to empty string\n"
        "Loaded image: busybox:latest\n" % moved
    )
    assert image_id(daemon, "busybox") == original
    daemon.docker("rmi", moved)


def oci_layout(tmp_path, rootfs: bytes, name: str):
    """An OCI image layout, as tools other than docker write them: a gzip
    layer, an image index, a name annotation."""
    blobs = {}

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs["blobs/sha256/" + digest] = data
        return "sha256:" + digest

    layer = gzip.compress(rootfs, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-05-01T10:00:00Z",
            "config": {"Cmd": ["/bin/sh"], "Env": ["FROM=oci"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(rootfs).hexdigest()]},
            "history": [{"created": "2024-05-01T10:00:00Z", "created_by": "hand-made"}],
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(layer), "size": len(layer)}
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put(manifest),
                "size": len(manifest),
                "annotations": {"io.containerd.image.name": name},
            }
        ],
    }
    path = tmp_path / "oci.tar"
    files = dict(blobs)
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    files["index.json"] = json.dumps(index).encode()
    write_tar(path, files)
    return path, "sha256:" + hashlib.sha256(config).hexdigest()


def test_load_of_an_oci_layout(daemon, tmp_path):
    rootfs = open(busybox_rootfs_tar(tmp_path), "rb").read()
    path, config_digest = oci_layout(tmp_path, rootfs, "docker.io/library/ocibox:1.0")
    result = load(daemon, path)
    assert (result.returncode, result.stdout) == (0, "Loaded image: ocibox:1.0\n"), result.stderr
    assert image_id(daemon, "ocibox:1.0") == config_digest
    env = daemon.docker_json("image", "inspect", "ocibox:1.0", format="{{json .Config.Env}}")
    assert env == ["FROM=oci"]
    daemon.docker("rmi", "ocibox:1.0")


def test_crafted_archives_are_refused_leaving_nothing(daemon, tmp_path):
    archive = tmp_path / "good.tar"
    daemon.docker("save", "-o", str(archive), "busybox")
    original = image_id(daemon, "busybox")
    good = members(archive)
    layer_name = json.loads(good["manifest.json"])[0]["Layers"][0]
    cases = []
    escaping = dict(good)
    escaping["../../escaped"] = b"x"
    cases.append(("escape", escaping, '"../../escaped" is outside of "/"'))
    absolute = dict(good)
    absolute["/tmp/absolute-from-archive"] = b"x"
    cases.append(("absolute", absolute, "is an absolute path"))
    linked = dict(good)
    linked["evil"] = ("->", "/etc/passwd")
    cases.append(("symlink", linked, 'invalid symlink "evil" -> "/etc/passwd"'))
    corrupt = {k: v for k, v in good.items() if not isinstance(v, tuple)}
    layer = bytearray(corrupt[layer_name])
    layer[600] ^= 0xFF  # a byte of the first file's content
    corrupt[layer_name] = bytes(layer)
    cases.append(("corrupt", corrupt, "invalid diffID for layer 0"))
    no_manifest = {k: v for k, v in good.items() if k not in ("manifest.json", "index.json")}
    cases.append(("no manifest", no_manifest, "invalid archive: does not contain a manifest.json"))
    # Without busybox, its layer is new: a refused load would have to write it.
    daemon.docker("rmi", "busybox")
    try:
        before = on_disk(daemon)
        for label, files, message in cases:
            path = tmp_path / (label.replace(" ", "-") + ".tar")
            write_tar(path, files)
            result = load(daemon, path)
            assert result.returncode == 1, (label, result.stdout)
            assert message in result.stderr, (label, result.stderr)
            assert on_disk(daemon) == before, label
            assert not os.path.exists("/tmp/absolute-from-archive")
        truncated = tmp_path / "truncated.tar"
        truncated.write_bytes(archive.read_bytes()[: os.path.getsize(archive) // 2])
        result = load(daemon, truncated)
        assert result.returncode == 1
        assert "unexpected EOF" in result.stderr
        assert on_disk(daemon) == before
    finally:
        load(daemon, archive)
    assert image_id(daemon, "busybox") == original


def test_a_blob_failing_its_check_is_not_kept(daemon, tmp_path):
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        data = os.urandom(4096)
        info = tarfile.TarInfo("fresh/data")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path, _ = oci_layout(tmp_path, rootfs.getvalue(), "docker.io/library/fresh:1")
    files = members(path)
    for name, value in list(files.items()):
        if value[:2] == b"\x1f\x8b":
            # The same layer, another blob: its descriptor no longer matches.
            files[name] = gzip.compress(rootfs.getvalue(), mtime=1)
    write_tar(path, files)
    before = on_disk(daemon)
    result = load(daemon, path)
    assert result.returncode == 1
    assert "does not match its digest" in result.stderr
    assert on_disk(daemon) == before


@pytest.mark.route("GET", "/images/{name:.*}/get")
def test_docker_py_save_and_load(daemon):
    client = docker.DockerClient(base_url=daemon.host, timeout=60)
    try:
        image = client.images.get("busybox")
        # By ID (docker-py's default): no tags in the archive.
        data = b"".join(image.save())
        names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
        assert "manifest.json" in names
        named = b"".join(image.save(named=True))
        daemon.docker("tag", "busybox", "py:hold")
        client.images.remove("busybox")
        (loaded,) = client.images.load(data)
        assert (loaded.id, loaded.tags) == (image.id, ["py:hold"])
        (loaded,) = client.images.load(named)
        assert loaded.id == image.id
        assert sorted(loaded.tags) == ["busybox:latest", "py:hold"]
        client.images.remove("py:hold")
    finally:
        client.close()


# -- side by side with dockerd 20.10 ------------------------------------------------------


@pytest.fixture
def reference(daemon):
    probe = subprocess.run(
        [DOCKER, "version", "--format", "{{.Server.Version}}"],
        env=daemon.cli_env(REFERENCE),
        capture_output=True,
        text=True,
        timeout=20,
    )
    if probe.returncode != 0:
        pytest.skip("the reference dockerd is not answering")
    return REFERENCE


def test_archives_cross_between_twistedock_and_dockerd(daemon, reference, tmp_path):
    # dockerd 20.10's archive into twistedock.
    rootfs = busybox_rootfs_tar(tmp_path)
    tag = "crossref:%s" % (os.urandom(4).hex(),)
    daemon.docker("import", rootfs, tag, host=reference)
    theirs = tmp_path / "theirs.tar"
    try:
        daemon.docker("save", "-o", str(theirs), tag, host=reference)
        their_id = image_id_on(daemon, tag, reference)
    finally:
        daemon.docker("rmi", tag, host=reference, check=False)
    result = load(daemon, theirs)
    assert result.stdout == "Loaded image: %s\n" % tag, result.stderr
    assert image_id(daemon, tag) == their_id
    # ... and saved again by twistedock, byte for byte the same layer and config.
    again = tmp_path / "again.tar"
    daemon.docker("save", "-o", str(again), tag)
    daemon.docker("rmi", tag)
    ours = tmp_path / "ours.tar"
    daemon.docker("save", "-o", str(ours), "busybox")
    our_id = image_id(daemon, "busybox")
    present = subprocess.run(
        [DOCKER, "image", "inspect", our_id], env=daemon.cli_env(reference), capture_output=True, timeout=20
    ).returncode == 0
    mytag = "crossours:%s" % (os.urandom(4).hex(),)
    daemon.docker("tag", "busybox", mytag)
    mine = tmp_path / "mine.tar"
    daemon.docker("save", "-o", str(mine), mytag)
    daemon.docker("rmi", mytag)
    try:
        for archive in (again, mine):
            result = load(daemon, archive, host=reference)
            assert result.returncode == 0, result.stderr
        assert image_id_on(daemon, tag, reference) == their_id
        assert image_id_on(daemon, mytag, reference) == our_id
    finally:
        daemon.docker("rmi", tag, host=reference, check=False)
        daemon.docker("rmi", mytag, host=reference, check=False)
        if not present:
            daemon.docker("rmi", our_id, host=reference, check=False)


def image_id_on(daemon, name, host):
    return daemon.docker("image", "inspect", "--format", "{{.Id}}", name, host=host).stdout.strip()


def test_a_committed_image_from_dockerd_loads_and_goes_back(daemon, reference, tmp_path):
    """Two layers and a config dockerd wrote: same ID here, and saved by
    twistedock, the same ID in dockerd again."""
    suffix = os.urandom(4).hex()
    base, tag, container = "crossbase:" + suffix, "crosstwo:" + suffix, "crossc" + suffix
    daemon.docker("import", busybox_rootfs_tar(tmp_path), base, host=reference)
    theirs = tmp_path / "theirs.tar"
    try:
        ran = daemon.docker("run", "--name", container, base, "sh", "-c", "echo hi > /f", host=reference, check=False)
        if ran.returncode != 0:
            pytest.skip("the reference dockerd cannot run containers: %s" % (ran.stderr,))
        daemon.docker("commit", "-c", 'CMD ["/bin/sh"]', container, tag, host=reference)
        daemon.docker("save", "-o", str(theirs), tag, host=reference)
        their_id = image_id_on(daemon, tag, reference)
    finally:
        daemon.docker("rm", "-f", container, host=reference, check=False)
        daemon.docker("rmi", tag, base, host=reference, check=False)
    result = load(daemon, theirs)
    assert result.stdout == "Loaded image: %s\n" % tag, result.stderr
    assert image_id(daemon, tag) == their_id
    history = daemon.docker("history", "--format", "{{.CreatedBy}}", tag).stdout.splitlines()
    assert history[0] == "sh -c echo hi > /f"
    ours = tmp_path / "ours.tar"
    daemon.docker("save", "-o", str(ours), tag)
    daemon.docker("rmi", tag)
    # dockerd 20.10's legacy layer directories, as it names them.
    legacy = sorted(n.split("/")[0] for n in members(ours) if n.endswith("/layer.tar"))
    assert legacy == sorted(n.split("/")[0] for n in members(theirs) if n.endswith("/layer.tar"))
    try:
        result = load(daemon, ours, host=reference)
        assert result.returncode == 0, result.stderr
        assert image_id_on(daemon, tag, reference) == their_id
    finally:
        daemon.docker("rmi", tag, host=reference, check=False)


def test_load_lines_side_by_side_with_dockerd(daemon, reference, tmp_path):
    """POST /images/load?quiet=0 with a layer new to both daemons: the same
    kinds of lines (progress per layer, then the loaded image), and the same
    error line for an archive without a manifest."""
    from .conftest import unix_request

    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        data = os.urandom(3 * 1024 * 1024)
        info = tarfile.TarInfo("side/data")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tag = "sidebyside:" + os.urandom(4).hex()
    source = tmp_path / "rootfs.tar"
    source.write_bytes(rootfs.getvalue())
    daemon.docker("import", str(source), tag)
    archive = tmp_path / "side.tar"
    daemon.docker("save", "-o", str(archive), tag)
    daemon.docker("rmi", tag)
    body = archive.read_bytes()
    headers = {"Content-Type": "application/x-tar"}
    answers = {}
    try:
        for label, sock in (("ours", daemon.sock), ("theirs", REFERENCE[len("unix://"):])):
            answer = unix_request(sock, "POST", "/v1.41/images/load?quiet=0", body, headers, timeout=60)
            assert answer.status == 200
            assert answer.headers["Content-Type"] == "application/json"
            answers[label] = [json.loads(line) for line in answer.body.split(b"\r\n") if line]
    finally:
        daemon.docker("rmi", tag, check=False)
        daemon.docker("rmi", tag, host=reference, check=False)

    def shape(lines):
        kinds = []
        for line in lines:
            kind = ("progress", line["id"], line["progressDetail"]["total"]) if "status" in line else ("stream", line["stream"])
            if not kinds or kinds[-1] != kind:
                kinds.append(kind)
        return kinds

    assert shape(answers["ours"]) == shape(answers["theirs"])
    assert answers["ours"][-2] == answers["theirs"][-2]  # the last progress line, bar included
    # Blobs alone: dockerd 20.10 falls back to the legacy format (which
    # would load the legacy layer directories, so they are left out too) and
    # names its temporary file; both say so in an error line with a 200.
    files = members(archive)
    no_manifest = tmp_path / "nomanifest.tar"
    write_tar(no_manifest, {k: v for k, v in files.items() if k.startswith("blobs/")})
    for sock in (daemon.sock, REFERENCE[len("unix://"):]):
        answer = unix_request(sock, "POST", "/v1.41/images/load", no_manifest.read_bytes(), headers, timeout=60)
        (line,) = [json.loads(x) for x in answer.body.split(b"\r\n") if x]
        assert answer.status == 200
        assert set(line) == {"errorDetail", "error"}


def test_the_cli_draws_load_progress_on_a_terminal(daemon, tmp_path):
    """At a terminal `docker load` asks for progress (quiet=0) and draws
    dockerd's bars, then prints the loaded image."""
    from .ptys import PtyProcess

    archive = tmp_path / "busybox.tar"
    daemon.docker("save", "-o", str(archive), "busybox")
    original = image_id(daemon, "busybox")
    daemon.docker("rmi", "busybox")  # so that its layer is loaded again
    p = PtyProcess([DOCKER, "load", "-i", str(archive)], daemon.cli_env(), cols=200)
    try:
        output = p.read_until(b"Loaded image: busybox:latest", timeout=60)
    except BaseException:
        p.kill()
        raise
    assert p.wait(30) == 0
    assert b"Loading layer" in output
    assert b"=>]" in output  # the whole bar
    assert image_id(daemon, "busybox") == original
