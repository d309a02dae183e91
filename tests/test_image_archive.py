"""docker save and load through the image router, with the real image store
on a temporary data root: the archive's layout, a round trip keeping the
ID, an OCI layout, dockerd's lines, and refused archives leaving nothing."""

import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile

import pytest
from twisted.internet.defer import succeed

import twistedock.tar.stream as stream_module
from twistedock.backend.images.save import legacy_layers
from twistedock.backend.images.image import read_record
from twistedock.progress import bar as progress_bar, human_size

from .test_images import ROOTFS, ImageAPI, make_tar

OTHER_LAYER = make_tar({"data/": None, "data/file": b"second layer\n"})


@pytest.fixture
def api(tmp_path, monkeypatch):
    # The tar is made in the test's thread, so that StubTreq sees it whole.
    monkeypatch.setattr(stream_module, "_in_thread", lambda reactor, function: succeed(function()))
    return ImageAPI(tmp_path / "root")


def members(data: bytes) -> dict:
    """name -> bytes (a file) or ("->", target) (a link) or None (a directory)."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar:
            if m.issym():
                out[m.name] = ("->", m.linkname)
            elif m.isdir():
                out[m.name.rstrip("/")] = None
            else:
                out[m.name] = tar.extractfile(m).read()
    return out


def tar_of(files: dict) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, tuple):
                info.type = tarfile.SYMTYPE if content[0] == "->" else tarfile.LNKTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def save(api, *names, version="v1.41"):
    if len(names) == 1:
        return api.request("GET", "/%s/images/%s/get" % (version, names[0]))
    query = "&".join("names=" + n for n in names)
    return api.request("GET", "/%s/images/get?%s" % (version, query))


def load(api, data: bytes, quiet=None):
    path = "/v1.41/images/load"
    if quiet is not None:
        path += "?quiet=" + ("1" if quiet else "0")
    return api.request("POST", path, body=data, headers={"Content-Type": "application/x-tar"})


def lines(answer):
    return [json.loads(line) for line in answer.body.split(b"\r\n") if line]


def stored(api):
    """What is on disk: layer directories and image configs."""
    root = os.path.join(api.data_root, "image")
    layers = sorted(os.listdir(os.path.join(root, "layers")))
    configs = sorted(os.listdir(os.path.join(root, "imagedb")))
    return layers, configs


def two_layer_image(api, tag="two:latest"):
    base = api.imported(ROOTFS, repo="base", tag="1")
    image = api.store.get(base)
    # A child image through the store's commit: a second layer on the first.
    child = run_commit(api, base, tag)
    return base, child, image


def run_commit(api, parent, tag):
    from twistedock.reference import parse_normalized_named
    from .test_images import run

    return run(
        api.store.commit_image(
            io.BytesIO(OTHER_LAYER),
            parent,
            container_id="c" * 64,
            container_config={"Cmd": ["/bin/sh", "-c", "echo hi > /data/file"]},
            config={"Cmd": ["/bin/sh"]},
            comment="second",
            ref=parse_normalized_named(tag),
        )
    )


# -- save -------------------------------------------------------------------------------


@pytest.mark.route("GET", "/images/{name:.*}/get")
def test_save_writes_docker_archive_and_oci_layout(api):
    image_id = api.imported(ROOTFS, repo="busybox", tag="latest")
    answer = save(api, "busybox")
    assert answer.code == 200, answer.body
    assert answer.header("Content-Type") == "application/x-tar"
    files = members(answer.body)
    hex_id = image_id.split(":")[1]
    diff_id = "sha256:" + hashlib.sha256(ROOTFS).hexdigest()
    manifest = json.loads(files["manifest.json"])
    assert manifest == [
        {
            "Config": "blobs/sha256/" + hex_id,
            "RepoTags": ["busybox:latest"],
            "Layers": ["blobs/sha256/" + diff_id.split(":")[1]],
        }
    ]
    # The config and the layer, byte for byte.
    assert hashlib.sha256(files["blobs/sha256/" + hex_id]).hexdigest() == hex_id
    assert files["blobs/sha256/" + diff_id.split(":")[1]] == ROOTFS
    # dockerd 20.10's legacy layout beside it.
    record = read_record(files["blobs/sha256/" + hex_id])
    (legacy,) = legacy_layers(record)
    v1 = legacy.v1_id.split(":")[1]
    assert files[v1 + "/VERSION"] == b"1.0"
    assert json.loads(files[v1 + "/json"])["id"] == v1
    assert files[v1 + "/layer.tar"] == ("->", "../blobs/sha256/" + diff_id.split(":")[1])
    assert files[hex_id + ".json"] == ("->", "blobs/sha256/" + hex_id)
    assert json.loads(files["repositories"]) == {"busybox": {"latest": v1}}
    # The OCI layout.
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    (descriptor,) = index["manifests"]
    assert descriptor["annotations"] == {
        "io.containerd.image.name": "docker.io/library/busybox:latest",
        "org.opencontainers.image.ref.name": "latest",
    }
    oci = json.loads(files["blobs/sha256/" + descriptor["digest"].split(":")[1]])
    assert oci["config"]["digest"] == image_id
    assert [layer["digest"] for layer in oci["layers"]] == [diff_id]
    assert ("save", image_id) in [(e[0], e[1]) for e in api.events()]


@pytest.mark.route("GET", "/images/get")
def test_save_of_several_names_shares_layers(api):
    base, child, _ = two_layer_image(api)
    answer = save(api, "base:1", "two:latest", "base")
    assert answer.code == 200, answer.body
    files = members(answer.body)
    manifest = json.loads(files["manifest.json"])
    assert [m["RepoTags"] for m in manifest] == [["base:1"], ["two:latest"]]
    assert manifest[1]["Layers"][0] == manifest[0]["Layers"][0]
    assert len(json.loads(files["index.json"])["manifests"]) == 2


@pytest.mark.route("GET", "/images/{name:.*}/get")
def test_save_of_unknown_images_answers_as_dockerd(api):
    api.imported(ROOTFS, repo="busybox", tag="latest")
    for name, code, message in (
        ("nonexist", 404, "No such image: nonexist"),
        ("nonexist:latest", 404, "reference does not exist"),
        ("busybox:other", 404, "reference does not exist"),
        ("sha256:" + "0" * 64, 404, "No such image: sha256:" + "0" * 64),
    ):
        answer = save(api, name)
        assert (answer.code, answer.json()) == (code, {"message": message}), name
    answer = api.request("GET", "/v1.41/images/get?names=busybox&names=nonexist")
    assert (answer.code, answer.json()) == (404, {"message": "No such image: nonexist"})


def test_legacy_layers_are_dockerd_20_10s():
    # An image dockerd 20.10 committed (two layers), and the legacy layer
    # directories its docker save wrote.
    raw = (
        b'{"architecture":"amd64","config":{"Hostname":"d7aac8751812","Domainname":"","User":"","Att'
        b'achStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"Std'
        b'inOnce":false,"Env":null,"Cmd":["/bin/sh"],"Image":"slbusybox","Volumes":null,"WorkingDir"'
        b':"","Entrypoint":null,"NetworkDisabled":true,"OnBuild":null,"Labels":{}},"container":"d7aa'
        b'c8751812953ac9fb7441044db5bb66ad9f830f270494029edab1a088b674","container_config":{"Hostnam'
        b'e":"d7aac8751812","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"Attac'
        b'hStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["sh","-c",'
        b'"echo hi \\u003e /f"],"Image":"slbusybox","Volumes":null,"WorkingDir":"","Entrypoint":null,'
        b'"NetworkDisabled":true,"OnBuild":null,"Labels":{}},"created":"2026-12-06T09:02:58.58852351'
        b'9Z","docker_version":"20.10.24+dfsg1","history":[{"created":"2026-12-06T08:54:21.676234896'
        b'Z","comment":"Imported from -"},{"created":"2026-12-06T09:02:58.588523519Z","created_by":"'
        b'sh -c echo hi \\u003e /f"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:7821'
        b'a7130598d94e8c01b9573885f23f04da685092b9591bd092884bee535c29","sha256:2c2e657c9d7f44fcc848'
        b'287b64e5cf007bcd6a70e0aabee3388ada210688142e"]}}'
    )
    low = (
        b'{"id":"b19d1e0e40cb33314c7dd95f4062dbdfc319af19c40b8c8c1db7cd3400dd00f2","created":"1970-0'
        b'1-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":'
        b'false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":'
        b'false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"O'
        b'nBuild":null,"Labels":null},"os":"linux"}'
    )
    top = (
        b'{"id":"ccf9a6646e288607860ed1f338efbd023de7cfaa2fcabaeb0c829128055a8241","parent":"b19d1e0'
        b'e40cb33314c7dd95f4062dbdfc319af19c40b8c8c1db7cd3400dd00f2","created":"2026-12-06T09:02:58.'
        b'588523519Z","container":"d7aac8751812953ac9fb7441044db5bb66ad9f830f270494029edab1a088b674"'
        b',"container_config":{"Hostname":"d7aac8751812","Domainname":"","User":"","AttachStdin":fal'
        b'se,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false'
        b',"Env":null,"Cmd":["sh","-c","echo hi \\u003e /f"],"Image":"slbusybox","Volumes":null,"Work'
        b'ingDir":"","Entrypoint":null,"NetworkDisabled":true,"OnBuild":null,"Labels":{}},"docker_ve'
        b'rsion":"20.10.24+dfsg1","config":{"Hostname":"d7aac8751812","Domainname":"","User":"","Att'
        b'achStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"Std'
        b'inOnce":false,"Env":null,"Cmd":["/bin/sh"],"Image":"slbusybox","Volumes":null,"WorkingDir"'
        b':"","Entrypoint":null,"NetworkDisabled":true,"OnBuild":null,"Labels":{}},"architecture":"a'
        b'md64","os":"linux"}'
    )
    legacy = legacy_layers(read_record(raw))
    assert [entry.v1_id for entry in legacy] == [
        "sha256:b19d1e0e40cb33314c7dd95f4062dbdfc319af19c40b8c8c1db7cd3400dd00f2",
        "sha256:ccf9a6646e288607860ed1f338efbd023de7cfaa2fcabaeb0c829128055a8241",
    ]
    assert [entry.json for entry in legacy] == [low, top]


def test_progress_is_rendered_as_dockerd_renders_it():
    assert human_size(32768) == "32.77kB"
    assert human_size(1996800) == "1.997MB"
    assert progress_bar(32768, 1996800) == "[>" + " " * 50 + "]  32.77kB/1.997MB"
    assert progress_bar(1996800, 1996800) == "[" + "=" * 50 + ">]  1.997MB/1.997MB"


# -- load -------------------------------------------------------------------------------


@pytest.mark.route("POST", "/images/load")
def test_save_and_load_round_trip_keeps_the_id(api, tmp_path):
    base, child, _ = two_layer_image(api)
    archive = save(api, "two").body
    other = ImageAPI(tmp_path / "other")
    answer = load(other, archive)
    assert answer.code == 200
    assert answer.header("Content-Type") == "application/json"
    assert lines(answer) == [{"stream": "Loaded image: two:latest\n"}]
    assert other.store.get("two:latest").id == child
    assert other.store.get("two:latest").diff_ids == api.store.get(child).diff_ids
    # As dockerd: a loaded tag sets no LastTagTime.
    assert other.store.get("two:latest").last_tag_time is None
    # Loaded layers can be saved again, byte for byte.
    assert members(save(other, "two").body)["manifest.json"] == members(archive)["manifest.json"]
    assert ("load", child) in [(e[0], e[1]) for e in other.events()]


@pytest.mark.route("POST", "/images/load")
def test_load_compressed_archives(api, tmp_path):
    api.imported(ROOTFS, repo="busybox", tag="latest")
    archive = save(api, "busybox").body
    for compress in (gzip.compress, lzma.compress):
        other = ImageAPI(tmp_path / compress.__module__)
        assert lines(load(other, compress(archive))) == [{"stream": "Loaded image: busybox:latest\n"}]


@pytest.mark.route("POST", "/images/load")
def test_load_not_quiet_reports_layer_progress(api, tmp_path):
    image_id = api.imported(ROOTFS, repo="busybox", tag="latest")
    archive = save(api, "busybox").body
    other = ImageAPI(tmp_path / "other")
    got = lines(load(other, archive, quiet=False))
    diff_id = api.store.get(image_id).diff_ids[0]
    assert got[-1] == {"stream": "Loaded image: busybox:latest\n"}
    progress = got[:-1]
    assert progress and all(p["status"] == "Loading layer" for p in progress)
    assert all(p["id"] == diff_id.split(":")[1][:12] for p in progress)
    assert progress[-1]["progressDetail"] == {"current": len(ROOTFS), "total": len(ROOTFS)}
    # Layers the store has already are not loaded again.
    assert lines(load(other, archive, quiet=False)) == [{"stream": "Loaded image: busybox:latest\n"}]


@pytest.mark.route("POST", "/images/load")
def test_load_moves_tags_and_reports_untagged_ids(api, tmp_path):
    image_id = api.imported(ROOTFS, repo="busybox", tag="latest")
    archive = save(api, "busybox").body
    untagged = save(api, image_id).body
    other = ImageAPI(tmp_path / "other")
    previous = other.imported(OTHER_LAYER, repo="busybox", tag="latest")
    assert lines(load(other, archive)) == [
        {
            "stream": "The image busybox:latest already exists, renaming the old one with ID %s to empty string\n"
            % previous
        },
        {"stream": "Loaded image: busybox:latest\n"},
    ]
    assert other.store.get("busybox:latest").id == image_id
    third = ImageAPI(tmp_path / "third")
    assert lines(load(third, untagged)) == [{"stream": "Loaded image ID: %s\n" % image_id}]


def oci_layout(config_patch=None, layer=ROOTFS, annotations=None, compress=True, nested=False):
    blob = gzip.compress(layer, mtime=0) if compress else layer
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    config.update(config_patch or {})
    config_raw = json.dumps(config).encode()
    files = {"blobs/": None, "blobs/sha256/": None}

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        files["blobs/sha256/" + digest] = data
        return "sha256:" + digest

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put(config_raw),
                "size": len(config_raw),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": put(blob),
                    "size": len(blob),
                }
            ],
        }
    ).encode()
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put(manifest),
        "size": len(manifest),
    }
    if nested:
        from twistedock import golang

        inner = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    dict(descriptor, platform={"os": "linux", "architecture": "s390x"}),
                    dict(descriptor, platform={"os": "linux", "architecture": golang.goarch()}),
                ],
            }
        ).encode()
        descriptor = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": put(inner),
            "size": len(inner),
        }
    if annotations:
        descriptor["annotations"] = annotations
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [descriptor]}).encode()
    return tar_of(files), "sha256:" + hashlib.sha256(config_raw).hexdigest(), files


@pytest.mark.route("POST", "/images/load")
def test_load_an_oci_layout(api):
    archive, image_id, _ = oci_layout(annotations={"io.containerd.image.name": "docker.io/library/oci:v1"})
    assert lines(load(api, archive)) == [{"stream": "Loaded image: oci:v1\n"}]
    image = api.store.get("oci:v1")
    assert image.id == image_id
    assert image.config["config"] == {"Cmd": ["/bin/sh"]}
    archive, image_id, _ = oci_layout({"created": "2024-01-02T00:00:00Z"}, nested=True)
    assert lines(load(api, archive)) == [{"stream": "Loaded image ID: %s\n" % image_id}]
    # A bare tag names no repository.
    archive, image_id, _ = oci_layout(
        {"created": "2024-01-03T00:00:00Z"}, annotations={"org.opencontainers.image.ref.name": "latest"}
    )
    assert lines(load(api, archive)) == [{"stream": "Loaded image ID: %s\n" % image_id}]


# -- refused archives ------------------------------------------------------------------------


def refused(api, data, message):
    before = stored(api)
    answer = load(api, data)
    assert answer.code == 200
    got = lines(answer)
    assert got == [{"errorDetail": {"message": message}, "error": message}], got
    assert stored(api) == before
    tmp = [n for n in os.listdir(os.path.join(api.data_root, "image", "layers")) if n.startswith(".")]
    assert tmp == []


@pytest.mark.route("POST", "/images/load")
def test_load_refuses_escaping_paths(api):
    good = save(api, api.imported(ROOTFS, repo="x", tag="1")).body
    files = members(good)
    for name, content, message in (
        ("../evil", b"x", 'Error processing tar file(exit status 1): "../evil" is outside of "/"'),
        ("/abs", b"x", 'Error processing tar file(exit status 1): "/abs" is an absolute path'),
        ("link", ("->", "/etc"), 'Error processing tar file(exit status 1): invalid symlink "link" -> "/etc"'),
        ("d/up", ("->", "../../x"), 'Error processing tar file(exit status 1): invalid symlink "d/up" -> "../../x"'),
    ):
        crafted = dict(files)
        crafted[name] = content
        refused(api, tar_of(crafted), message)


@pytest.mark.route("POST", "/images/load")
def test_load_refuses_a_layer_that_does_not_match_its_diff_id(api, tmp_path):
    image_id = api.imported(ROOTFS, repo="x", tag="1")
    files = members(save(api, "x").body)
    diff_id = api.store.get(image_id).diff_ids[0]
    crafted = {k: v for k, v in files.items() if not isinstance(v, tuple)}
    crafted["blobs/sha256/" + diff_id.split(":")[1]] = OTHER_LAYER
    other = ImageAPI(tmp_path / "other")
    refused(
        other,
        tar_of(crafted),
        'invalid diffID for layer 0: expected "%s", got "sha256:%s"'
        % (diff_id, hashlib.sha256(OTHER_LAYER).hexdigest()),
    )
    # A config that is not what its name says.
    crafted = {k: v for k, v in files.items() if not isinstance(v, tuple)}
    name = "blobs/sha256/" + image_id.split(":")[1]
    crafted[name] = crafted[name].replace(b"Imported", b"Forged!!")
    message = lines(load(other, tar_of(crafted)))[0]["error"]
    assert message.startswith("invalid archive: config %s does not match its digest" % name)
    # An OCI layer blob that is not what its descriptor says.
    archive, _, oci_files = oci_layout()
    for key, value in oci_files.items():
        if value == gzip.compress(ROOTFS, mtime=0):
            oci_files[key] = gzip.compress(ROOTFS, mtime=1)
    message = lines(load(other, tar_of(oci_files)))[0]["error"]
    assert "does not match its digest" in message
    assert stored(other) == (sorted(os.listdir(os.path.join(other.data_root, "image", "layers"))), [])


@pytest.mark.route("POST", "/images/load")
def test_load_refuses_truncated_and_incomplete_archives(api, tmp_path):
    api.imported(ROOTFS, repo="x", tag="1")
    good = save(api, "x").body
    other = ImageAPI(tmp_path / "other")
    refused(other, good[: len(good) // 2], "Error processing tar file(exit status 1): unexpected EOF")
    refused(other, gzip.compress(good)[:-100], "Error processing tar file(exit status 1): unexpected EOF")
    files = members(good)
    del files["manifest.json"]
    del files["index.json"]
    refused(other, tar_of(files), "invalid archive: does not contain a manifest.json")
    refused(other, b"", "invalid archive: does not contain a manifest.json")
    files = members(good)
    files = {k: v for k, v in files.items() if not k.startswith("blobs/sha256/") or len(v or b"") < 2000}
    message = lines(load(other, tar_of(files)))[0]["error"]
    assert message.startswith("invalid archive: open blobs/sha256/")
    assert stored(other) == ([], [])


@pytest.mark.route("GET", "/images/{name:.*}/get")
@pytest.mark.route("POST", "/images/load")
def test_platforms_of_api_1_48(api, tmp_path):
    from urllib.parse import quote

    from twistedock import golang

    api.imported(ROOTFS, repo="busybox", tag="latest")
    here = quote(json.dumps({"os": "linux", "architecture": golang.goarch()}))
    arm = quote(json.dumps({"os": "linux", "architecture": "s390x"}))
    assert api.request("GET", "/v1.48/images/busybox/get?platform=" + here).code == 200
    answer = api.request("GET", "/v1.48/images/busybox/get?platform=" + arm)
    assert (answer.code, answer.json()) == (
        500,
        {"message": "no suitable export target found for platform linux/s390x"},
    )
    # Before 1.48 the parameter is not read.
    assert api.request("GET", "/v1.47/images/busybox/get?platform=" + arm).code == 200
    for query, message in (
        ("platform=x", "failed to parse platform: invalid character 'x' looking for beginning of value"),
        ("platform=" + quote('{"os":"linux"}'), "both OS and Architecture must be provided"),
        (
            "platform=" + quote('{"variant":"v7"}'),
            "optional platform fields provided, but OS and Architecture are missing",
        ),
        (
            "platform=%s&platform=%s" % (here, arm),
            "multiple platform parameters are not supported in this API version; use API version 1.52 or later",
        ),
    ):
        answer = api.request("GET", "/v1.48/images/busybox/get?" + query)
        assert (answer.code, answer.json()) == (400, {"message": message}), query
    archive = save(api, "busybox").body
    other = ImageAPI(tmp_path / "other")
    answer = other.request(
        "POST", "/v1.48/images/load?platform=" + arm, body=archive, headers={"Content-Type": "application/x-tar"}
    )
    assert (answer.code, answer.body) == (200, b"")
    assert stored(other) == ([], [])
    answer = other.request(
        "POST", "/v1.48/images/load?platform=" + here, body=archive, headers={"Content-Type": "application/x-tar"}
    )
    assert lines(answer) == [{"stream": "Loaded image: busybox:latest\n"}]


@pytest.mark.route("GET", "/images/{name:.*}/get")
def test_save_refuses_layers_stored_without_their_tar(api):
    image_id = api.imported(ROOTFS, repo="old", tag="1")
    (layer,) = api.store.get(image_id).layers
    os.unlink(layer.tar_split)
    answer = save(api, "old:1")
    assert answer.code == 500
    assert answer.json()["message"].startswith("cannot export layer %s: its tar was not recorded" % layer.diff_id)


def test_an_image_deleted_while_it_is_saved_keeps_its_layers_until_then(api):
    from twistedock.server.httputils import Flow

    from .test_images import run

    image_id = api.imported(ROOTFS, repo="gone", tag="1")
    (layer,) = api.store.get(image_id).layers
    stream = run(api.store.export_images(["gone:1"]))
    run(api.store.delete("gone:1"))
    assert os.path.isdir(layer.diff_dir)

    class Consumer:
        data = []

        def write(self, chunk):
            self.data.append(chunk)

    run(stream.write_to(Consumer(), Flow()))
    files = members(b"".join(Consumer.data))
    assert files["blobs/sha256/" + layer.diff_id.split(":")[1]] == ROOTFS
    # Written: the layers go.
    assert not os.path.exists(layer.path)
    assert stored(api) == ([], [])


@pytest.mark.route("POST", "/images/load")
def test_load_follows_links_inside_the_archive_as_dockerd_20_10_writes_them(api, tmp_path):
    """dockerd 20.10 names each image's layers <v1 id>/layer.tar and links a
    layer shared with an image saved before it to the first copy."""
    image_id = api.imported(ROOTFS, repo="x", tag="1")
    files = members(save(api, "x").body)
    config = files["blobs/sha256/" + image_id.split(":")[1]]
    archive = tar_of(
        {
            "aaa/": None,
            "aaa/layer.tar": ROOTFS,
            "bbb/": None,
            "bbb/layer.tar": ("->", "../aaa/layer.tar"),
            image_id.split(":")[1] + ".json": config,
            "manifest.json": json.dumps(
                [{"Config": image_id.split(":")[1] + ".json", "RepoTags": ["linked:1"], "Layers": ["bbb/layer.tar"]}]
            ).encode(),
        }
    )
    other = ImageAPI(tmp_path / "other")
    assert lines(load(other, archive)) == [{"stream": "Loaded image: linked:1\n"}]
    assert other.store.get("linked:1").id == image_id
