"""Images through the real docker CLI: import, images, inspect, tag, rmi,
image prune, history and events, against a real twistd dockerd."""

import gzip
import hashlib
import io
import json
import os
import tarfile
import time

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.route("POST", "/images/create"),
    pytest.mark.route("GET", "/images/json"),
    pytest.mark.route("GET", "/images/{name:.*}/json"),
]

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ls", "cat", "echo", "true", "false", "env", "id")


def busybox_rootfs(path) -> str:
    """A root filesystem tar: Debian's static busybox and applet links."""
    out = str(path / "busybox.tar")
    with tarfile.open(out, "w") as tar:
        for directory in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo("bin/" + applet)
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        data = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    if not os.path.exists(BUSYBOX):
        pytest.skip("no %s (Debian's busybox-static)" % (BUSYBOX,))
    return busybox_rootfs(tmp_path_factory.mktemp("rootfs"))


@pytest.fixture(scope="module")
def daemon(module_daemons):
    return module_daemons.start()


def digest(path) -> str:
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def layer_dirs(daemon):
    path = os.path.join(daemon.data_root, "image", "layers")
    return sorted(name for name in os.listdir(path) if not name.startswith("."))


def image_ids(daemon, *args):
    out = daemon.docker("images", "-q", "--no-trunc", *args).stdout.split()
    return out


@pytest.mark.route("GET", "/images/{name:.*}/history")
def test_import_inspect_history(daemon, rootfs):
    result = daemon.docker(
        "import",
        "--change",
        'CMD ["sh"]',
        "--change",
        "ENV A=1",
        "-m",
        "from e2e",
        rootfs,
        "bb:imported",
    )
    image_id = result.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71, result.stdout
    doc = daemon.docker_json("image", "inspect", "bb:imported")
    assert doc["Id"] == image_id
    assert doc["RepoTags"] == ["bb:imported"]
    assert doc["Comment"] == "from e2e"
    assert doc["Config"]["Cmd"] == ["sh"]
    assert doc["Config"]["Env"] == ["A=1"]
    assert doc["RootFS"]["Layers"] == [digest(rootfs)]
    assert doc["GraphDriver"]["Name"] == "overlay2"
    upper = doc["GraphDriver"]["Data"]["UpperDir"]
    assert os.path.isfile(os.path.join(upper, "bin", "busybox"))
    assert os.readlink(os.path.join(upper, "bin", "sh")) == "busybox"
    assert doc["Size"] == os.path.getsize(BUSYBOX) + len(APPLETS) * len("busybox") + len(
        b"root:x:0:0:root:/root:/bin/sh\n"
    )
    history = daemon.docker("history", "--no-trunc", "--format", "{{json .}}", "bb:imported").stdout
    (line,) = [json.loads(x) for x in history.splitlines() if x.strip()]
    assert line["ID"] == image_id
    assert line["Comment"] == "from e2e"
    listed = [
        json.loads(x)
        for x in daemon.docker("images", "--format", "{{json .}}", "bb").stdout.splitlines()
    ]
    assert [(x["Repository"], x["Tag"]) for x in listed] == [("bb", "imported")]


@pytest.mark.route("POST", "/images/{name:.*}/tag")
@pytest.mark.route("DELETE", "/images/{name:.*}")
def test_tag_and_rmi(daemon, rootfs):
    image_id = daemon.docker("import", rootfs, "tagme:one").stdout.strip()
    daemon.docker("tag", "tagme:one", "tagme:two")
    daemon.docker("tag", image_id[7:19], "example.com/other/tagme")
    assert sorted(daemon.docker_json("image", "inspect", image_id)["RepoTags"]) == [
        "example.com/other/tagme:latest",
        "tagme:one",
        "tagme:two",
    ]
    assert daemon.docker("rmi", "tagme:two").stdout.splitlines() == ["Untagged: tagme:two"]
    refused = daemon.docker("rmi", image_id[7:19], check=False)
    assert refused.returncode != 0
    assert "image is referenced in multiple repositories" in refused.stderr
    out = daemon.docker("rmi", "-f", image_id).stdout.splitlines()
    # References in dockerd's order: by their full name (docker.io/library/...).
    assert out[:2] == ["Untagged: tagme:one", "Untagged: example.com/other/tagme:latest"]
    assert "Deleted: " + image_id in out
    missing = daemon.docker("rmi", "tagme:one", check=False)
    assert missing.returncode != 0
    assert "No such image: tagme:one" in missing.stderr


def test_same_tar_twice_shares_the_layer(daemon, rootfs, tmp_path):
    before = set(layer_dirs(daemon))
    first = daemon.docker("import", rootfs, "share:a").stdout.strip()
    gz = str(tmp_path / "rootfs.tar.gz")
    with open(rootfs, "rb") as src, gzip.open(gz, "wb") as dst:
        dst.write(src.read())
    second = daemon.docker("import", gz, "share:b").stdout.strip()
    assert first != second
    assert set(layer_dirs(daemon)) - before <= {digest(rootfs)[7:]}
    assert digest(rootfs)[7:] in layer_dirs(daemon)
    a = daemon.docker_json("image", "inspect", "share:a")
    b = daemon.docker_json("image", "inspect", "share:b")
    assert a["GraphDriver"]["Data"]["UpperDir"] == b["GraphDriver"]["Data"]["UpperDir"]
    daemon.docker("rmi", "share:a", "share:b")


@pytest.mark.route("POST", "/images/prune")
def test_image_prune(daemon, rootfs, tmp_path):
    small = str(tmp_path / "small.tar")
    with tarfile.open(small, "w") as tar:
        data = b"dangling layer"
        info = tarfile.TarInfo("only-here")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    dangling = daemon.docker("import", small).stdout.strip()
    kept = daemon.docker("import", rootfs, "prune:kept").stdout.strip()
    assert dangling in image_ids(daemon, "--filter", "dangling=true")
    out = daemon.docker("image", "prune", "-f").stdout
    assert "deleted: " + dangling in out
    assert "Total reclaimed space: 14B" in out
    assert kept in image_ids(daemon)
    assert dangling not in image_ids(daemon, "-a")
    daemon.docker("rmi", "prune:kept")


def test_events_of_an_image(daemon, rootfs):
    since = "%.6f" % time.time()
    image_id = daemon.docker("import", rootfs, "events:one").stdout.strip()
    daemon.docker("tag", "events:one", "events:two")
    daemon.docker("rmi", "events:one", "events:two")
    until = "%.6f" % (time.time() + 1)
    out = daemon.docker(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        "type=image",
        "--format",
        "{{json .}}",
    ).stdout
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    seen = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"].get("name")) for e in events]
    assert seen == [
        ("tag", image_id, "events:one"),
        ("import", image_id, image_id),
        ("tag", image_id, "events:two"),
        ("untag", image_id, image_id),
        ("untag", image_id, image_id),
        ("delete", image_id, image_id),
    ]


def test_errors_as_dockerd(daemon, rootfs):
    result = daemon.docker("image", "inspect", "nope", check=False)
    assert result.returncode == 1
    assert "No such image: nope" in result.stderr
    result = daemon.docker("import", "--change", "RUN echo hi", rootfs, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error response from daemon: run is not a valid change command"
    result = daemon.docker("tag", "nope", "x", check=False)
    assert "No such image: nope:latest" in result.stderr
    # A registry on a loopback port nobody listens on (tests reach nothing else).
    result = daemon.docker("pull", "127.0.0.1:1/busybox", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        'Error response from daemon: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: '
        "connect: connection refused"
    )


def test_images_survive_a_restart(module_daemons, rootfs):
    daemon = module_daemons.start()
    image_id = daemon.docker("import", rootfs, "survivor:1").stdout.strip()
    daemon.restart()
    assert daemon.docker_json("image", "inspect", "survivor:1")["Id"] == image_id
    assert daemon.info()["Images"] == 1
    df = daemon.request("GET", "/system/df").json()
    assert [i["Id"] for i in df["Images"]] == [image_id]
    assert df["LayersSize"] > 0
