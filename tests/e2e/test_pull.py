"""
docker pull against a real registry: Debian's docker-registry (CNCF
distribution) on loopback, filled by skopeo from OCI layouts made here (a
busybox image, the same as a Docker schema2 manifest, a two-platform OCI
index, an image with a large layer), with and without htpasswd auth, driven
with the docker CLI; and the messages side by side with the reference
dockerd where one is running.
"""

import json
import io
import os
import re
import tarfile
import platform as host_platform
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest

from ..test_registry import layer_tar
from . import registry as reg
from .conftest import unix_request, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.route("POST", "/images/create"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(not reg.available(), reason="docker-registry, skopeo or htpasswd missing"),
]

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(host_platform.machine(), host_platform.machine())
OTHER_ARCH = "arm64" if HOST_ARCH != "arm64" else "amd64"
REFERENCE_SOCKET = "/tmp/reference-dockerd/docker.sock"
BIG = 6 << 20


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("layout") / "oci"
    busybox = reg.busybox_layer()
    hello = layer_tar({"etc/hello": b"hi\n"})
    host = reg.image_manifest(path, [busybox, hello], architecture=HOST_ARCH)
    other = reg.image_manifest(
        path, [busybox, layer_tar({"etc/hello": b"other\n"})], architecture=OTHER_ARCH,
        variant="v8" if OTHER_ARCH == "arm64" else "",
    )
    big = reg.image_manifest(
        path, [busybox, layer_tar({"etc/small": b"small\n"}), layer_tar({"big": os.urandom(BIG)})],
        architecture=HOST_ARCH,
    )
    reg.write_layout(path, {"latest": host, "multi": reg.index_of(path, [host, other]), "big": big})
    return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory, layout):
    r = reg.Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        r.push_layout(layout, "latest", "busybox:latest")
        r.push_layout(layout, "latest", "busybox:v2s2", fmt="v2s2")
        r.push_layout(layout, "multi", "multi:latest", all_platforms=True)
        r.push_layout(layout, "big", "big:latest")
        r.push_layout(layout, "latest", "library/busybox:latest")
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory, layout):
    r = reg.Registry(tmp_path_factory.mktemp("authregistry"), users={"alice": "s3cret"}).start()
    try:
        r.push_layout(layout, "latest", "busybox:latest")
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def daemon(module_daemons):
    return module_daemons.start()


def pull_lines(daemon, query: dict, headers=None, timeout=120.0):
    """POST /images/create: (status, the JSON lines or the error body)."""
    answer = unix_request(
        daemon.sock, "POST", "/images/create?" + urllib.parse.urlencode(query), None, headers, timeout
    )
    if answer.status != 200:
        return answer.status, answer.json()
    return answer.status, [json.loads(line) for line in answer.body.split(b"\r\n") if line.strip()]


def test_pull_runs_and_records_its_digest(daemon, registry):
    name = registry.address + "/busybox"
    result = daemon.docker("pull", name, timeout=120)
    digest = registry.manifest_digest("busybox", "latest")
    out = result.stdout
    assert "latest: Pulling from busybox" in out
    assert out.count(": Pull complete") == 2
    assert "Digest: %s" % (digest,) in out
    assert "Status: Downloaded newer image for %s:latest" % (name,) in out
    assert daemon.docker("run", "--rm", name, "cat", "/etc/hello").stdout == "hi\n"
    inspected = daemon.docker_json("image", "inspect", name)
    assert inspected["RepoTags"] == [name + ":latest"]
    assert inspected["RepoDigests"] == ["%s@%s" % (name, digest)]
    assert inspected["Architecture"] == HOST_ARCH
    again = daemon.docker("pull", name, timeout=60).stdout
    assert "Status: Image is up to date for %s:latest" % (name,) in again
    # The same image as a Docker schema2 manifest: same config, so the
    # same image, nothing downloaded; a tag and a digest more.
    v2 = daemon.docker("pull", name + ":v2s2", timeout=60).stdout
    assert "Pull complete" not in v2
    assert "Status: Downloaded newer image for %s:v2s2" % (name,) in v2
    assert daemon.docker_json("image", "inspect", name + ":v2s2")["Id"] == inspected["Id"]


def test_pull_by_digest(daemon, registry):
    digest = registry.manifest_digest("busybox", "latest")
    name = "%s/busybox@%s" % (registry.address, digest)
    out = daemon.docker("pull", name, timeout=120).stdout
    assert "%s: Pulling from busybox" % (digest,) in out
    assert "Status: Downloaded newer image for %s" % (name,) in out or "Image is up to date" in out
    assert daemon.docker("run", "--rm", name, "echo", "by digest").stdout == "by digest\n"


def test_the_progress_lines(daemon, registry):
    _forget_big(daemon, registry)
    status, lines = pull_lines(daemon, {"fromImage": registry.address + "/big", "tag": "latest"})
    assert status == 200
    seen = {line["status"] for line in lines}
    assert {"Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete",
            "Extracting", "Pull complete"} <= seen
    downloading = [line for line in lines if line["status"] == "Downloading"]
    big = [line for line in downloading if line["progressDetail"]["total"] > BIG]
    assert len(big) > 2  # a bar that moves
    assert big[-1]["progressDetail"]["current"] == big[-1]["progressDetail"]["total"]
    assert lines[-1] == {"status": "Status: Downloaded newer image for %s/big:latest" % (registry.address,)}


@pytest.mark.route("GET", "/distribution/{name:.*}/json")
def test_a_multi_platform_index(daemon, registry):
    name = registry.address + "/multi"
    daemon.docker("pull", name, timeout=120)
    assert daemon.docker_json("image", "inspect", name)["Architecture"] == HOST_ARCH
    assert daemon.docker("run", "--rm", name, "cat", "/etc/hello").stdout == "hi\n"
    daemon.docker("pull", "--platform", "linux/" + OTHER_ARCH, name, timeout=120)
    assert daemon.docker_json("image", "inspect", name)["Architecture"] == OTHER_ARCH
    failed = daemon.docker("pull", "--platform", "linux/s390x", name, check=False, timeout=60)
    assert failed.returncode != 0
    assert "no matching manifest for linux/s390x in the manifest list entries" in failed.stderr
    answer = daemon.request("GET", "/distribution/%s/json" % (name,))
    assert answer.status == 200
    doc = answer.json()
    assert doc["Descriptor"]["digest"] == registry.manifest_digest("multi", "latest")
    assert sorted(p["architecture"] for p in doc["Platforms"]) == sorted([HOST_ARCH, OTHER_ARCH])


def test_unknown_tags_and_repositories(daemon, registry):
    failed = daemon.docker("pull", registry.address + "/busybox:nope", check=False, timeout=60)
    assert failed.returncode != 0
    assert failed.stderr.strip() == (
        "Error response from daemon: manifest for %s/busybox:nope not found: "
        "manifest unknown: manifest unknown" % (registry.address,)
    )
    status, body = pull_lines(daemon, {"fromImage": registry.address + "/nothere", "tag": "latest"})
    assert status == 404
    assert body == {
        "message": "manifest for %s/nothere:latest not found: manifest unknown: manifest unknown"
        % (registry.address,)
    }
    status, body = pull_lines(daemon, {"fromImage": "127.0.0.1:1/busybox", "tag": "latest"})
    assert (status, body) == (
        500, {"message": 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'}
    )


@pytest.mark.route("POST", "/auth")
@pytest.mark.route("POST", "/images/{name:.*}/push")
def test_auth_with_htpasswd(daemon, auth_registry, tmp_path):
    name = auth_registry.address + "/busybox"
    env = {"DOCKER_CONFIG": str(tmp_path / "cli")}
    failed = daemon.docker("pull", name, check=False, env=env, timeout=60)
    assert failed.returncode != 0
    assert failed.stderr.strip() == (
        'Error response from daemon: Head "http://%s/v2/busybox/manifests/latest": '
        "no basic auth credentials" % (auth_registry.address,)
    )

    def login(password):
        return subprocess.run(
            ["docker", "login", "-u", "alice", "--password-stdin", auth_registry.address],
            input=password + "\n", env=daemon.cli_env(extra=env), capture_output=True, text=True,
            timeout=60,
        )

    bad = login("wrong")
    assert bad.returncode != 0
    assert "login attempt to http://%s/v2/ failed with status: 401 Unauthorized" % (
        auth_registry.address,
    ) in bad.stderr
    good = login("s3cret")
    assert good.returncode == 0, good.stderr
    assert "Login Succeeded" in good.stdout
    out = daemon.docker("pull", name, env=env, timeout=120).stdout
    assert "Status: Downloaded newer image for %s:latest" % (name,) in out
    assert daemon.docker("run", "--rm", name, "cat", "/etc/hello").stdout == "hi\n"
    # Pushing with the same credentials: mounted within the registry when
    # the blobs were kept from this one, sent otherwise.
    daemon.docker("tag", name, auth_registry.address + "/mine:1")
    out = daemon.docker("push", auth_registry.address + "/mine:1", env=env, timeout=120).stdout
    assert out.count(": Mounted from busybox") + out.count(": Pushed") == 2, out
    assert auth_registry.address + "/mine@sha256:" in "".join(
        daemon.docker_json("image", "inspect", auth_registry.address + "/mine:1")["RepoDigests"]
    )
    anonymous = daemon.docker("push", auth_registry.address + "/mine:1", check=False, timeout=60)
    assert "no basic auth credentials" in anonymous.stderr


def test_a_registry_killed_mid_blob(daemon, registry):
    _forget_big(daemon, registry)
    proxy = reg.StallingProxy(registry.port)
    try:
        name = proxy.address + "/big"
        proxy.stall_after = 2 << 20
        downloads = Path(daemon.data_root) / "image" / "downloads"
        small, big = _manifest_layers(registry, "big")[1:3]

        answers = []
        pulling = threading.Thread(
            target=lambda: answers.append(pull_lines(daemon, {"fromImage": name, "tag": "latest"}, timeout=240))
        )
        pulling.start()
        wait_for(proxy.stalled.is_set, 60, what="the big layer's download to stall")
        # The small layer is verified and kept before the registry dies.
        wait_for(lambda: (downloads / small.split(":")[1]).exists(), 60, what="the small blob")
        registry.stop()
        # The download fails: what the big layer had received is set aside
        # for a Range request, and tried again 5 seconds later, as dockerd.
        partial = downloads / (big.split(":")[1] + ".partial")
        wait_for(partial.exists, 60, what="the partial download set aside")
        partial_size = partial.stat().st_size
        assert 0 < partial_size < BIG
        assert daemon.docker("image", "inspect", name, check=False).returncode != 0
        registry.start()
        proxy.stall_after = None
        pulling.join(240)
        assert answers, "the pull did not end"
        status, lines = answers[0]
        assert status == 200, lines
        big_id = big.split(":")[1][:12]
        statuses = [line["status"] for line in lines if line.get("id") == big_id]
        assert "Retrying in 5 seconds" in statuses and "Retrying in 1 second" in statuses, statuses
        # The big one resumed where it stopped.
        after = statuses.index("Retrying in 1 second")
        resumed = [line for line in lines if line.get("id") == big_id and line["status"] == "Downloading"]
        assert resumed[-1]["progressDetail"]["current"] == resumed[-1]["progressDetail"]["total"]
        assert "Downloading" in statuses[after:]
        first_after = [line for line in lines if line.get("id") == big_id][after + 1:]
        first_after = [line for line in first_after if line["status"] == "Downloading"][0]
        assert first_after["progressDetail"]["current"] > partial_size, first_after
        assert not partial.exists()
        assert not [n for n in os.listdir(downloads) if n.startswith(".tmp-")]
        assert lines[-1]["status"] == "Status: Downloaded newer image for %s:latest" % (name,)
        assert daemon.docker("run", "--rm", name, "cat", "/etc/small").stdout == "small\n"
    finally:
        proxy.close()
        if registry.process is None:
            registry.start()


def _forget_big(daemon, registry) -> None:
    """Remove the big image by its ID, whatever names it has here."""
    import urllib.request

    request = urllib.request.Request(
        "http://%s/v2/big/manifests/latest" % (registry.address,), headers={"Accept": reg.OCI_MANIFEST}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        image_id = json.loads(answer.read())["config"]["digest"]
    daemon.docker("rmi", "-f", image_id, check=False)


def _manifest_layers(registry, repo):
    import urllib.request

    request = urllib.request.Request(
        "http://%s/v2/%s/manifests/latest" % (registry.address, repo),
        headers={"Accept": reg.OCI_MANIFEST},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return [layer["digest"] for layer in json.loads(answer.read())["layers"]]


@pytest.mark.route("GET", "/info")
def test_insecure_registries_in_info(daemons):
    d = daemons.start("--insecure-registry", "registry.example:5000", "--insecure-registry", "10.9.0.0/16")
    config = d.info()["RegistryConfig"]
    assert config["InsecureRegistryCIDRs"] == ["::1/128", "127.0.0.0/8", "10.9.0.0/16"]
    assert config["IndexConfigs"]["registry.example:5000"] == {
        "Name": "registry.example:5000", "Mirrors": [], "Secure": False, "Official": False,
    }


def _reference_up() -> bool:
    try:
        return unix_request(REFERENCE_SOCKET, "GET", "/_ping", timeout=2).status == 200
    except OSError:
        return False


@pytest.mark.skipif(not _reference_up(), reason="no reference dockerd running")
def test_messages_side_by_side_with_dockerd(daemon, registry, auth_registry):
    class Reference:
        sock = REFERENCE_SOCKET

    cases = [
        {"fromImage": registry.address + "/busybox", "tag": "nope"},
        {"fromImage": registry.address + "/nothere", "tag": "latest"},
        {"fromImage": "127.0.0.1:1/busybox", "tag": "latest"},
        {"fromImage": auth_registry.address + "/busybox", "tag": "latest"},
        {"fromImage": registry.address + "/multi", "tag": "latest", "platform": "linux/s390x"},
    ]
    try:
        for query in cases:
            theirs = pull_lines(Reference, query)
            ours = pull_lines(daemon, query)
            assert ours == theirs, query
        # A successful pull: the same statuses in the same places.
        daemon.docker("rmi", "-f", registry.address + "/busybox:latest", check=False)
        query = {"fromImage": registry.address + "/busybox", "tag": "latest"}
        theirs = pull_lines(Reference, query)[1]
        ours = pull_lines(daemon, query)[1]
        assert ours[0] == theirs[0]
        assert ours[-2:] == theirs[-2:]
    finally:
        unix_request(
            REFERENCE_SOCKET, "DELETE", "/images/%s/busybox:latest" % (registry.address,), timeout=30
        )


@pytest.mark.route("GET", "/images/search")
@pytest.mark.skipif(not _reference_up(), reason="no reference dockerd running")
def test_search_answers_as_dockerd(daemon, registry):
    """A registry without the v1 search, a port nobody serves, refusals:
    the same status and message from both daemons; and docker search."""
    class Reference:
        sock = REFERENCE_SOCKET

    cases = [
        {"term": registry.address + "/busybox"},
        {"term": "127.0.0.1:1/busybox"},
        {"term": registry.address + "/busybox", "limit": "101"},
        {"term": registry.address + "/busybox", "filters": '{"stars":["many"]}'},
    ]
    for query in cases:
        path = "/images/search?" + urllib.parse.urlencode(query)
        theirs = unix_request(Reference.sock, "GET", path, timeout=60)
        ours = unix_request(daemon.sock, "GET", path, timeout=60)
        assert (ours.status, ours.json()) == (theirs.status, theirs.json()), query
    result = daemon.docker("search", registry.address + "/busybox", check=False)
    assert result.returncode == 1
    assert "Unexpected status code 404" in result.stderr


@pytest.mark.route("POST", "/images/{name:.*}/push")
def test_push_rmi_and_pull_back(daemon, registry):
    source = registry.address + "/busybox"
    daemon.docker("pull", source, timeout=120)
    image_id = daemon.docker_json("image", "inspect", source)["Id"]
    repo = registry.address + "/pushed"
    daemon.docker("tag", source, repo + ":v1")
    out = daemon.docker("push", repo + ":v1", timeout=120).stdout
    assert "The push refers to repository [%s]" % (repo,) in out
    # The layers came from busybox on the same registry: mounted, not sent.
    assert out.count(": Mounted from busybox") == 2, out
    match = re.search(r"^v1: digest: (sha256:[0-9a-f]{64}) size: \d+$", out, re.M)
    assert match, out
    digest = match.group(1)
    assert registry.manifest_digest("pushed", "v1") == digest
    assert "%s@%s" % (repo, digest) in daemon.docker_json("image", "inspect", repo + ":v1")["RepoDigests"]
    again = daemon.docker("push", repo + ":v1", timeout=120).stdout
    assert again.count(": Layer already exists") == 2
    daemon.docker("rmi", "-f", image_id)
    daemon.docker("pull", repo + ":v1", timeout=120)
    pulled = daemon.docker_json("image", "inspect", repo + ":v1")
    assert pulled["Id"] == image_id
    assert pulled["RepoDigests"] == ["%s@%s" % (repo, digest)]
    assert daemon.docker("run", "--rm", repo + ":v1", "cat", "/etc/hello").stdout == "hi\n"


@pytest.mark.route("POST", "/images/{name:.*}/push")
def test_push_of_an_imported_image(daemon, registry, tmp_path):
    from .test_containers import busybox_rootfs_tar

    name = registry.address + "/imported:1"
    tar = busybox_rootfs_tar(tmp_path)
    # A layer of its own (no pulled blob has its diff ID): written anew.
    with tarfile.open(tar, "a") as archive:
        data = os.urandom(64).hex().encode()
        info = tarfile.TarInfo("etc/unique")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with open(tar, "rb") as f:
        subprocess.run(["docker", "import", "-", name], stdin=f, env=daemon.cli_env(),
                       check=True, capture_output=True, timeout=60)
    image_id = daemon.docker_json("image", "inspect", name)["Id"]
    out = daemon.docker("push", name, timeout=120).stdout
    assert ": Pushed" in out
    digest = re.search(r"^1: digest: (sha256:[0-9a-f]{64}) size: \d+$", out, re.M).group(1)
    daemon.docker("rmi", "-f", name)
    daemon.docker("pull", name, timeout=120)
    # Its layer went out as the tar it was imported from: the same image.
    assert daemon.docker_json("image", "inspect", name)["Id"] == image_id
    assert daemon.docker_json("image", "inspect", name)["RepoDigests"] == [
        "%s/imported@%s" % (registry.address, digest)
    ]
    assert daemon.docker("run", "--rm", name, "echo", "imported").stdout == "imported\n"


def test_push_of_a_tag_that_is_not_here(daemon, registry):
    failed = daemon.docker("push", registry.address + "/absent:v1", check=False, timeout=60)
    assert failed.returncode != 0
    assert "The push refers to repository [%s/absent]" % (registry.address,) in failed.stdout
    assert failed.stderr.strip() == (
        "An image does not exist locally with the tag: %s/absent" % (registry.address,)
    )


def test_pull_all_tags(daemon, registry):
    name = registry.address + "/busybox"
    out = daemon.docker("pull", "--all-tags", name, timeout=120).stdout
    assert "latest: Pulling from busybox" in out and "v2s2: Pulling from busybox" in out
    assert ("Status: Downloaded newer image for %s\n" % (name,) in out
            or "Status: Image is up to date for %s\n" % (name,) in out), out
    tags = daemon.docker_json("image", "inspect", name + ":latest")["RepoTags"]
    assert {name + ":latest", name + ":v2s2"} <= set(tags)


def test_a_docker_hub_mirror(daemons, registry):
    d = daemons.start("--registry-mirror", "http://" + registry.address)
    assert d.info()["RegistryConfig"]["Mirrors"] == ["http://%s/" % (registry.address,)]
    out = d.docker("pull", "busybox", timeout=120).stdout
    assert "latest: Pulling from library/busybox" in out
    assert "Status: Downloaded newer image for busybox:latest" in out
    assert d.docker("run", "--rm", "busybox", "cat", "/etc/hello").stdout == "hi\n"


def test_the_cli_draws_progress_bars_in_a_terminal(daemon, registry):
    from .ptys import PtyProcess

    _forget_big(daemon, registry)
    term = PtyProcess(["docker", "pull", registry.address + "/big"], daemon.cli_env(), cols=120)
    try:
        out = term.read_until(b"Status: Downloaded newer image", timeout=120)
        assert term.wait(30) == 0
    finally:
        term.kill()
    text = out.decode("utf-8", "replace")
    # The bars the CLI draws from progressDetail: "[====>   ]  1.2MB/6.3MB".
    assert re.search(r"Downloading \[=*>\s*\]\s+[0-9.]+[kM]?B/[0-9.]+MB", text), text[-2000:]
    assert re.search(r"Extracting \[=*>\s*\]", text), text[-2000:]
    assert "Pull complete" in text


def test_a_client_gone_mid_pull_leaves_nothing_half_made(daemon, registry):
    _forget_big(daemon, registry)
    proxy = reg.StallingProxy(registry.port)
    try:
        name = proxy.address + "/big"
        big = _manifest_layers(registry, "big")[2]
        downloads = Path(daemon.data_root) / "image" / "downloads"
        proxy.delay = 0.05  # about a megabyte a second
        pulling = daemon.docker_popen("pull", name)
        wait_for(proxy.flowing.is_set, 60, what="the big layer's download to be under way")
        pulling.kill()
        pulling.communicate(timeout=30)
        # The daemon notices at its next progress line and gives the
        # download up: its part set aside, no temporary file, no image.
        partial = downloads / (big.split(":")[1] + ".partial")
        wait_for(lambda: partial.exists() and not [n for n in os.listdir(downloads) if n.startswith(".tmp-")],
                 30, what="the cancelled download to be set aside")
        assert daemon.docker("image", "inspect", name, check=False).returncode != 0
        proxy.delay = 0
        out = daemon.docker("pull", name, timeout=120).stdout
        assert "Status: Downloaded newer image for %s:latest" % (name,) in out
    finally:
        proxy.close()
