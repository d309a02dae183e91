"""The image router with the real image store on a temporary data root."""

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from urllib.parse import quote, urlencode

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

import twistedock.tar.extract as archive_module
from twistedock.backend.events import EventLog
from twistedock.backend.images import ImageStore
from twistedock.backend.images.store import IContainerStore
from twistedock.backend.swarm import InactiveCluster
from twistedock.backend.system import IInventory
from twistedock.daemon import build_routers
from twistedock.filters import Filters
from twistedock.routers.image import IImageBackend, ImageRouter, disk_usage_json
from twistedock.server.middleware import APIConfig
from twistedock.versions import MAX_API_VERSION
from twistedock.server.root import APIResource, compose

from .memory import API, MemorySystemBackend, result_of

EMPTY_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# -- fixtures -------------------------------------------------------------------


class _SyncPool:
    """A thread pool that runs the work at once, so that StubTreq requests
    complete synchronously."""

    def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
        try:
            result = function(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class SyncReactor(Clock):
    def getThreadPool(self):
        return _SyncPool()

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)


def make_tar(files, compress=None) -> bytes:
    """A tar of C{files}: name -> bytes (a file), None (a directory) or
    ("->", target) (a symbolic link)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif isinstance(content, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o755
                tar.addfile(info, io.BytesIO(content))
    data = out.getvalue()
    return compress(data) if compress else data


ROOTFS = make_tar(
    {
        "bin/": None,
        "bin/tool": b"#!/bin/sh\necho tool\n",
        "bin/sh": ("->", "tool"),
        "etc/hostname": b"x\n",
    }
)
ROOTFS_DIFF_ID = "sha256:" + hashlib.sha256(ROOTFS).hexdigest()
ROOTFS_SIZE = len(b"#!/bin/sh\necho tool\n") + len("tool") + len(b"x\n")


@implementer(IContainerStore)
class UsageOf:
    """The containers using each image as C{usage(image_id)} says."""

    def __init__(self, usage):
        self.usage = usage

    def image_users(self, image_id):
        return self.usage(image_id)


class ImageAPI(API):
    """tests.memory's API with a real ImageStore on C{data_root}."""

    def __init__(self, data_root, usage=None):
        self.clock = SyncReactor()
        self.clock.advance(1_700_000_000)
        self.data_root = str(data_root)
        self.system = MemorySystemBackend(self.clock)
        self.usage = usage
        self.store = self.new_store()
        routers = [
            ImageRouter(self.store) if r.name == "image" else r
            for r in build_routers(self.clock, self.system, InactiveCluster())
        ]
        self.resource = APIResource(compose(routers, APIConfig()))
        self.treq = StubTreq(self.resource)

    def new_store(self):
        store = ImageStore(
            self.clock,
            self.data_root,
            self.system.events,
            now=lambda: int(round(self.clock.seconds() * 1e9)),
            containers=UsageOf(self.usage) if self.usage is not None else None,
        )
        run(store.load())
        return store

    def import_tar(self, data=ROOTFS, version="v1.51", **query):
        params = [("fromSrc", "-")]
        for key, value in query.items():
            if isinstance(value, (list, tuple)):
                params.extend((key, v) for v in value)
            else:
                params.append((key, value))
        return self.request(
            "POST",
            "/%s/images/create?%s" % (version, urlencode(params)),
            body=data,
            headers={"Content-Type": "application/x-tar"},
        )

    def imported(self, data=ROOTFS, **query) -> str:
        answer = self.import_tar(data, **query)
        assert answer.code == 200, answer.body
        self.clock.advance(1)
        return json.loads(answer.body)["status"]

    def events(self):
        return [
            (e.action, e.actor.id, dict(e.actor.attributes)) for e in self.system.events._history
        ]


@pytest.fixture
def api(tmp_path):
    return ImageAPI(tmp_path / "root")


def run(d):
    return result_of(ensureDeferred(d))


def layer_dirs(root):
    layers = os.path.join(str(root), "image", "layers")
    return sorted(os.listdir(layers)) if os.path.isdir(layers) else []


# -- interfaces ---------------------------------------------------------------


def test_store_provides_its_interfaces(tmp_path):
    store = ImageStore(SyncReactor(), str(tmp_path), EventLog())
    assert verifyObject(IImageBackend, store)
    assert verifyObject(IInventory, store)


@pytest.mark.route("GET", "/images/json")
@pytest.mark.route("GET", "/images/{name:.*}/json")
def test_without_a_store_the_routes_answer_501():
    treq = StubTreq(APIResource(compose([ImageRouter(None)], APIConfig())))
    for path, template in (
        ("/images/json", "/images/json"),
        ("/v1.41/images/busybox/json", "/images/{name:.*}/json"),
    ):
        d = treq.get("http://docker" + path)
        treq.flush()
        response = result_of(d)
        body = result_of(treq.json_content(response))
        assert response.code == 501
        assert body == {"message": "GET %s is not implemented yet" % (template,)}


# -- import -------------------------------------------------------------------


@pytest.mark.route("POST", "/images/create")
def test_import_answers_a_json_message_stream(api):
    answer = api.import_tar()
    assert answer.code == 200
    assert answer.header("Content-Type") == "application/json"
    assert answer.body.endswith(b"\r\n")
    image_id = json.loads(answer.body)["status"]
    assert image_id.startswith("sha256:") and len(image_id) == 71
    config_path = os.path.join(api.data_root, "image", "imagedb", image_id[7:])
    with open(config_path, "rb") as f:
        raw = f.read()
    # The ID is the digest of the config bytes, as docker's.
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == image_id
    config = json.loads(raw)
    assert list(config) == sorted(config)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [ROOTFS_DIFF_ID]}
    assert config["comment"] == "Imported from -"
    assert config["history"] == [{"created": config["created"], "comment": "Imported from -"}]
    assert config["os"] == "linux"
    assert config["config"]["Cmd"] is None
    assert api.events() == [("import", image_id, {"name": image_id})]


@pytest.mark.route("POST", "/images/create")
@pytest.mark.route("GET", "/images/{name:.*}/json")
def test_import_with_repo_tag_message_and_changes(api):
    image_id = api.imported(
        repo="example/app",
        tag="v1",
        message="hello",
        changes=[
            'CMD ["sh"]',
            "ENV A=1",
            "LABEL team=core",
            "EXPOSE 80",
            "WORKDIR /srv",
            "USER $A",
        ],
    )
    doc = api.request("GET", "/v1.51/images/example/app:v1/json").json()
    assert doc["Id"] == image_id
    assert doc["RepoTags"] == ["example/app:v1"]
    assert doc["Comment"] == "hello"
    assert doc["Config"] == {
        "User": "1",
        "ExposedPorts": {"80/tcp": {}},
        "Env": ["A=1"],
        "Entrypoint": None,
        "Cmd": ["sh"],
        "Volumes": None,
        "WorkingDir": "/srv",
        "Labels": {"team": "core"},
        "OnBuild": None,
    }
    # dockerd's order of events: the tag, then the import; labels included.
    assert api.events() == [
        ("tag", image_id, {"team": "core", "name": "example/app:v1"}),
        ("import", image_id, {"team": "core", "name": image_id}),
    ]


@pytest.mark.route("POST", "/images/create")
def test_import_repo_with_tag_and_tag_parameter(api):
    api.imported(repo="hx:t1", tag="t2")
    api.imported(repo="hx:t3")
    api.imported(repo="plain")
    tags = sorted(t for s in api.request("GET", "/images/json").json() for t in s["RepoTags"])
    assert tags == ["hx:t2", "hx:t3", "plain:latest"]


@pytest.mark.route("POST", "/images/create")
@pytest.mark.parametrize(
    "query, status, message",
    [
        ({"repo": "UPPER"}, 400, "invalid reference format: repository name must be lowercase"),
        ({"repo": "ok", "tag": "bad tag"}, 400, "invalid tag format"),
        (
            {"repo": "ok@sha256:" + "a" * 64},
            400,
            "cannot import digest reference",
        ),
        (
            {"repo": "a" * 64},
            400,
            "invalid repository name (%s), cannot specify 64-byte hexadecimal strings"
            % ("a" * 64,),
        ),
        ({"changes": "RUN echo hi"}, 400, "run is not a valid change command"),
        ({"changes": "FOO bar"}, 400, "foo is not a valid change command"),
        ({"changes": "STOPSIGNAL 9"}, 400, "stopsignal is not a valid change command"),
        ({"changes": "ENV A"}, 400, "ENV must have two arguments"),
        ({"changes": "EXPOSE abc"}, 400, "Invalid containerPort: abc"),
        ({"changes": "VOLUME "}, 400, "VOLUME requires at least one argument"),
        ({"changes": "ONBUILD FROM x"}, 400, "FROM isn't allowed as an ONBUILD trigger"),
        ({"platform": "windows"}, 400, "operating system is not supported"),
    ],
)
def test_import_bad_parameters(api, query, status, message):
    answer = api.import_tar(**query)
    assert answer.code == status
    assert answer.json() == {"message": message}
    assert layer_dirs(api.data_root) == []
    assert api.request("GET", "/images/json").json() == []


@pytest.mark.route("POST", "/images/create")
def test_import_refuses_tars_that_escape_and_leaves_nothing(api, tmp_path):
    for files in (
        {"ok": b"x", "../escape": b"bad"},
        {"/abs": b"x"},
    ):
        answer = api.import_tar(make_tar(files))
        assert answer.code == 400
        assert answer.json()["message"].startswith("Error processing tar file(exit status 1): ")
    assert not (tmp_path / "escape").exists()
    assert os.listdir(os.path.join(api.data_root, "image", "layers")) == []
    assert api.request("GET", "/images/json").json() == []


@pytest.mark.route("POST", "/images/create")
def test_import_of_garbage(api):
    answer = api.import_tar(b"garbage\n")
    assert answer.code == 500
    assert answer.json() == {"message": "Error processing tar file(exit status 1): unexpected EOF"}
    assert os.listdir(os.path.join(api.data_root, "image", "layers")) == []


@pytest.mark.route("POST", "/images/create")
def test_import_of_an_empty_body_is_an_empty_layer(api):
    image_id = api.imported(b"")
    doc = api.request("GET", "/images/%s/json" % (image_id,)).json()
    assert doc["RootFS"] == {"Type": "layers", "Layers": [EMPTY_DIGEST]}
    assert doc["Size"] == 0


@pytest.mark.route("POST", "/images/create")
@pytest.mark.parametrize(
    "compress", [gzip.compress, bz2.compress, lzma.compress]
)
def test_import_of_compressed_tars(api, compress):
    image_id = api.imported(compress(ROOTFS))
    assert api.store.get(image_id).diff_ids == [ROOTFS_DIFF_ID]


@pytest.mark.route("POST", "/images/create")
def test_pull_and_url_imports_are_not_implemented(api):
    answer = api.request("POST", "/images/create?fromImage=busybox&tag=latest")
    assert answer.code == 501
    assert answer.json()["message"].startswith("pull is not implemented yet")
    answer = api.request("POST", "/images/create?fromImage=UPPER")
    assert answer.code == 400
    assert answer.json() == {
        "message": "invalid reference format: repository name must be lowercase"
    }
    answer = api.request("POST", "/images/create?fromImage=scratch")
    assert answer.code == 403
    assert answer.json() == {"message": "'scratch' is a reserved name"}
    answer = api.request("POST", "/images/create?fromSrc=http://example.com/rootfs.tar")
    assert answer.code == 501
    assert "import from a URL is not implemented yet" in answer.json()["message"]
    answer = api.request("POST", "/images/create")
    assert answer.code == 500
    assert answer.json() == {"message": 'Get "http:": http: no Host in request URL'}


# -- sharing, persistence, crashes --------------------------------------------


@pytest.mark.route("POST", "/images/create")
@pytest.mark.route("DELETE", "/images/{name:.*}")
def test_the_same_tar_twice_shares_its_layer(api):
    first = api.imported(repo="one")
    second = api.imported(repo="two")
    assert first != second  # created differs
    assert layer_dirs(api.data_root) == [ROOTFS_DIFF_ID[7:]]
    assert api.store.get("one").layer_dirs == api.store.get("two").layer_dirs
    # The shared layer goes with the last image that uses it.
    assert api.request("DELETE", "/images/one").json() == [
        {"Untagged": "one:latest"},
        {"Deleted": first},
    ]
    assert layer_dirs(api.data_root) == [ROOTFS_DIFF_ID[7:]]
    assert api.request("DELETE", "/images/two").json() == [
        {"Untagged": "two:latest"},
        {"Deleted": second},
        {"Deleted": ROOTFS_DIFF_ID},
    ]
    assert layer_dirs(api.data_root) == []


def test_layer_dir_holds_the_unpacked_tree(api):
    image_id = api.imported()
    image = api.store.get(image_id)
    (diff,) = image.layer_dirs
    assert diff == os.path.join(api.data_root, "image", "layers", ROOTFS_DIFF_ID[7:], "diff")
    assert open(os.path.join(diff, "bin", "tool"), "rb").read() == b"#!/bin/sh\necho tool\n"
    assert os.readlink(os.path.join(diff, "bin", "sh")) == "tool"
    assert image.size == ROOTFS_SIZE
    assert image.chain_ids == [ROOTFS_DIFF_ID]
    assert api.store.get_layer_dirs(image_id) == [diff]


def test_state_survives_a_new_store(api):
    image_id = api.imported(repo="keep", tag="v1")
    api.request("POST", "/images/keep:v1/tag?repo=other")
    before = api.request("GET", "/images/keep:v1/json").json()
    api.store = api.new_store()
    again = api.store.get("keep:v1")
    assert again.id == image_id
    assert again.repo_tags == ["keep:v1", "other:latest"]
    assert again.last_tag_time == before["Metadata"]["LastTagTime"]
    assert again.size == ROOTFS_SIZE
    with open(os.path.join(api.data_root, "image", "repositories.json")) as f:
        state = json.load(f)
    assert state["Repositories"] == {
        "keep": {"keep:v1": image_id},
        "other": {"other:latest": image_id},
    }


def test_load_removes_what_a_crash_left(api):
    image_id = api.imported(repo="kept")
    layers = os.path.join(api.data_root, "image", "layers")
    # An unpack that never finished, a removal that never finished, a layer
    # no image uses (crash between the layer's rename and the config's
    # write), and a half-written state file.
    os.makedirs(os.path.join(layers, ".tmp-abc", "diff", "half"))
    os.makedirs(os.path.join(layers, ".trash-def", "diff"))
    orphan = make_tar({"orphan": b"o"})
    orphan_id = hashlib.sha256(orphan).hexdigest()
    os.makedirs(os.path.join(layers, orphan_id, "diff"))
    with open(os.path.join(layers, orphan_id, "layer.json"), "w") as f:
        json.dump(
            {
                "ChainID": "sha256:" + orphan_id,
                "DiffID": "sha256:" + orphan_id,
                "Parent": "",
                "Size": 1,
            },
            f,
        )
    with open(os.path.join(api.data_root, "image", ".tmp-xyz"), "w") as f:
        f.write('{"Repositories": {')
    with open(os.path.join(api.data_root, "image", "imagedb", ".tmp-uvw"), "w") as f:
        f.write("{")
    store = api.new_store()
    assert layer_dirs(api.data_root) == [ROOTFS_DIFF_ID[7:]]
    assert store.get("kept").id == image_id
    assert os.listdir(os.path.join(api.data_root, "image", "imagedb")) == [image_id[7:]]
    assert ".tmp-xyz" not in os.listdir(os.path.join(api.data_root, "image"))


def test_an_interrupted_unpack_leaves_no_layer(api):
    class Failing(io.RawIOBase):
        def __init__(self):
            self.data = io.BytesIO(make_tar({"big": b"b" * 300_000}))

        def readable(self):
            return True

        def readinto(self, buffer):
            if self.data.tell() > 100_000:
                raise OSError("connection lost")
            chunk = self.data.read(min(len(buffer), 4096))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    with pytest.raises(Exception):
        run(api.store.import_image(Failing(), "-", "x", "", "", (), ""))
    assert os.listdir(os.path.join(api.data_root, "image", "layers")) == []
    assert api.store.counts() == {"Images": 0}


class _QueuedPool:
    """A thread pool whose work runs when the test says so."""

    def __init__(self):
        self.queue = []

    def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
        self.queue.append((on_result, function, args, kwargs))


class QueuedReactor(SyncReactor):
    def __init__(self):
        super().__init__()
        self.pool = _QueuedPool()

    def getThreadPool(self):
        return self.pool


def _drain(pool):
    while pool.queue:
        on_result, function, args, kwargs = pool.queue.pop(0)
        _SyncPool().callInThreadWithCallback(on_result, function, *args, **kwargs)


def test_a_client_that_goes_away_mid_import_leaves_nothing_behind(tmp_path):
    reactor = QueuedReactor()
    store = ImageStore(reactor, str(tmp_path), EventLog())
    d = ensureDeferred(store.load())
    _drain(reactor.pool)
    result_of(d)
    # The unpack is under way in a thread when the client disconnects.
    d = ensureDeferred(store.import_image(io.BytesIO(ROOTFS), "-", "gone", "", "", (), ""))
    assert len(reactor.pool.queue) == 1
    d.cancel()
    with pytest.raises(CancelledError):
        result_of(d)
    _drain(reactor.pool)
    assert os.listdir(os.path.join(str(tmp_path), "image", "layers")) == []
    assert store.counts() == {"Images": 0}
    # Once the layer is unpacked, the import is finished even if the client left.
    d = ensureDeferred(store.import_image(io.BytesIO(ROOTFS), "-", "kept", "", "", (), ""))
    on_result, function, args, kwargs = reactor.pool.queue.pop(0)
    _SyncPool().callInThreadWithCallback(on_result, function, *args, **kwargs)
    d.cancel()
    with pytest.raises(CancelledError):
        result_of(d)
    _drain(reactor.pool)
    assert store.get("kept").diff_ids == [ROOTFS_DIFF_ID]
    assert os.listdir(os.path.join(str(tmp_path), "image", "layers")) == [ROOTFS_DIFF_ID[7:]]


CRASHER = textwrap.dedent("""
    import io, sys
    sys.path.insert(0, sys.argv[2])
    from tests.test_images import SyncReactor, run, make_tar
    from twistedock.backend.events import EventLog
    from twistedock.backend.images import ImageStore
    store = ImageStore(SyncReactor(), sys.argv[1], EventLog())
    run(store.load())
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    n = 0
    while True:
        n += 1
        data = make_tar({"file%d" % n: b"x" * 200000, "d/": None, "d/f": b"y" * (n % 7)})
        run(store.import_image(io.BytesIO(data), "-", "crash", "t%d" % (n % 3), "", (), ""))
        if n % 2:
            run(store.delete("crash:t%d" % (n % 3), False, True))
    """)


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1])
def test_kill_9_at_any_moment_leaves_a_consistent_store(tmp_path, delay):
    root = tmp_path / "root"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(root), repo],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline() == b"ready\n", child.stderr.read()
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
    store = ImageStore(SyncReactor(), str(root), EventLog())
    run(store.load())
    layers_dir = os.path.join(str(root), "image", "layers")
    on_disk = sorted(os.listdir(layers_dir))
    assert not [name for name in on_disk if name.startswith(".")]
    used = set()
    for summary in run(store.images(Filters(), True, False)):
        image = store.get(summary.id)
        for directory in image.layer_dirs:
            assert os.path.isdir(directory)
        used.update(c[7:] for c in image.chain_ids)
    # Every layer left is whole and used by an image.
    assert sorted(used) == on_disk
    for name in on_disk:
        with open(os.path.join(layers_dir, name, "layer.json")) as f:
            assert json.load(f)["ChainID"] == "sha256:" + name


# -- list -------------------------------------------------------------------


@pytest.mark.route("GET", "/images/json")
def test_list_shapes_by_version(api):
    tagged = api.imported(repo="tagged", changes=["LABEL a=b"])
    untagged = api.imported(make_tar({"other": b"o"}))
    old = api.request("GET", "/v1.41/images/json").json()
    assert [s["Id"] for s in old] == [untagged, tagged]
    assert old[0] == {
        "Containers": -1,
        "Created": 1_700_000_001,
        "Id": untagged,
        "Labels": None,
        "ParentId": "",
        "RepoDigests": ["<none>@<none>"],
        "RepoTags": ["<none>:<none>"],
        "SharedSize": -1,
        "Size": 1,
        "VirtualSize": 1,
    }
    assert old[1]["RepoTags"] == ["tagged:latest"]
    assert old[1]["RepoDigests"] is None
    assert old[1]["Labels"] == {"a": "b"}
    new = api.request("GET", "/v1.51/images/json").json()
    assert new[0]["RepoTags"] == [] and new[0]["RepoDigests"] == []
    assert "VirtualSize" not in new[0]
    assert new[1]["RepoDigests"] == []
    assert api.request("GET", "/v1.43/images/json").json()[0]["VirtualSize"] == 1


@pytest.mark.route("GET", "/images/json")
def test_list_shared_size(api):
    api.imported(repo="a")
    api.imported(repo="b")
    api.imported(make_tar({"alone": b"12"}), repo="c")
    listed = {
        s["RepoTags"][0]: s for s in api.request("GET", "/v1.42/images/json?shared-size=1").json()
    }
    assert listed["a:latest"]["SharedSize"] == ROOTFS_SIZE
    assert listed["b:latest"]["SharedSize"] == ROOTFS_SIZE
    assert listed["c:latest"]["SharedSize"] == 0
    # Not read before 1.42.
    assert api.request("GET", "/v1.41/images/json?shared-size=1").json()[0]["SharedSize"] == -1


def _list(api, filters, version="v1.51"):
    answer = api.request(
        "GET", "/%s/images/json?filters=%s" % (version, quote(json.dumps(filters)))
    )
    return answer


@pytest.mark.route("GET", "/images/json")
def test_list_filters(api):
    first = api.imported(repo="web", tag="1", changes=["LABEL tier=front"])
    second = api.imported(
        make_tar({"x": b"x"}), repo="docker.io/library/db", tag="2", changes=["LABEL tier=back"]
    )
    dangling = api.imported(make_tar({"y": b"y"}))
    third = api.imported(make_tar({"z": b"z"}), repo="example.com/team/web", tag="3")

    def ids(filters):
        answer = _list(api, filters)
        assert answer.code == 200, answer.body
        return [s["Id"] for s in answer.json()]

    assert ids({}) == [third, dangling, second, first]
    assert ids({"reference": ["web"]}) == [first]
    assert ids({"reference": ["*web*"]}) == [first]
    assert ids({"reference": ["*/*/web"]}) == [third]
    assert ids({"reference": ["db:2"]}) == [second]
    assert ids({"reference": ["web:?"]}) == [first]
    assert ids({"dangling": ["true"]}) == [dangling]
    assert ids({"dangling": ["false"]}) == [third, second, first]
    assert ids({"label": ["tier"]}) == [second, first]
    assert ids({"label": ["tier=back"]}) == [second]
    assert ids({"before": ["db:2"]}) == [first]
    assert ids({"since": ["db:2"]}) == [third, dangling]
    assert ids({"since": [first[7:19]], "before": [third]}) == [dangling, second]
    assert ids({"until": ["1700000002"]}) == [second, first]
    # The old filter argument, before 1.25.
    answer = api.request("GET", "/v1.24/images/json?filter=web")
    assert [s["Id"] for s in answer.json()] == [first]


@pytest.mark.route("GET", "/images/json")
def test_list_filter_errors(api):
    api.imported(repo="web")
    answer = _list(api, {"foo": ["x"]})
    assert (answer.code, answer.json()) == (400, {"message": "Invalid filter 'foo'"})
    answer = _list(api, {"dangling": ["xyz"]})
    assert (answer.code, answer.json()) == (400, {"message": "Invalid filter 'dangling=[xyz]'"})
    answer = _list(api, {"before": ["nope"]})
    assert (answer.code, answer.json()) == (404, {"message": "No such image: nope:latest"})
    answer = _list(api, {"reference": ["["]})
    assert (answer.code, answer.json()) == (500, {"message": "syntax error in pattern"})


# -- inspect and names ----------------------------------------------------------


@pytest.mark.route("GET", "/images/{name:.*}/json")
def test_inspect_shapes_by_version(api):
    image_id = api.imported(repo="shape", changes=['CMD ["sh"]'])
    old = api.request("GET", "/v1.41/images/shape/json").json()
    top = os.path.join(api.data_root, "image", "layers", ROOTFS_DIFF_ID[7:])
    assert old == {
        "Id": image_id,
        "RepoTags": ["shape:latest"],
        "RepoDigests": [],
        "Parent": "",
        "Comment": "Imported from -",
        "Created": "2023-11-14T22:13:20Z",
        "Container": "",
        "ContainerConfig": {
            "Hostname": "",
            "Domainname": "",
            "User": "",
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "Tty": False,
            "OpenStdin": False,
            "StdinOnce": False,
            "Env": None,
            "Cmd": None,
            "Image": "",
            "Volumes": None,
            "WorkingDir": "",
            "Entrypoint": None,
            "OnBuild": None,
            "Labels": None,
        },
        "DockerVersion": old["DockerVersion"],
        "Author": "",
        "Config": dict(old["ContainerConfig"], Cmd=["sh"]),
        "Architecture": old["Architecture"],
        "Os": "linux",
        "Size": ROOTFS_SIZE,
        "VirtualSize": ROOTFS_SIZE,
        "GraphDriver": {
            "Data": {
                "MergedDir": top + "/merged",
                "UpperDir": top + "/diff",
                "WorkDir": top + "/work",
            },
            "Name": "overlay2",
        },
        "RootFS": {"Type": "layers", "Layers": [ROOTFS_DIFF_ID]},
        "Metadata": {"LastTagTime": "2023-11-14T22:13:20Z"},
    }
    new = api.request("GET", "/v1.51/images/shape/json").json()
    for gone in ("Container", "ContainerConfig", "VirtualSize"):
        assert gone not in new
    assert new["Config"] == {
        "User": "",
        "Env": None,
        "Entrypoint": None,
        "Cmd": ["sh"],
        "Volumes": None,
        "WorkingDir": "",
        "Labels": None,
        "OnBuild": None,
    }
    assert "VirtualSize" in api.request("GET", "/v1.43/images/shape/json").json()
    assert "Container" in api.request("GET", "/v1.44/images/shape/json").json()


@pytest.mark.route("GET", "/images/{name:.*}/json")
def test_untagged_image_has_a_zero_last_tag_time(api):
    image_id = api.imported()
    doc = api.request("GET", "/images/%s/json" % (image_id,)).json()
    assert doc["RepoTags"] == []
    assert doc["Metadata"] == {"LastTagTime": "0001-01-01T00:00:00Z"}


@pytest.mark.route("GET", "/images/{name:.*}/json")
def test_name_resolution(api):
    image_id = api.imported(repo="resolve", tag="v2")
    hex_id = image_id[7:]
    for name in (
        image_id,
        hex_id,
        hex_id[:12],
        "sha256:" + hex_id[:5],
        hex_id[:1],
        "resolve:v2",
        "docker.io/library/resolve:v2",
        "index.docker.io/library/resolve:v2",
        "docker.io%2Flibrary%2Fresolve:v2",
    ):
        answer = api.request("GET", "/images/%s/json" % (name,))
        assert answer.code == 200, name
        assert answer.json()["Id"] == image_id
    api.imported(make_tar({"x": b"x"}), repo="resolve")
    assert api.request("GET", "/images/resolve/json").json()["RepoTags"] == ["resolve:latest"]
    for name, status, message in (
        ("nope", 404, "No such image: nope:latest"),
        ("resolve:v3", 404, "No such image: resolve:v3"),
        ("sha256:" + "0" * 64, 404, "No such image: sha256:" + "0" * 64),
        ("0" * 64, 404, "No such image: sha256:" + "0" * 64),
        ("UPPER", 400, "invalid reference format: repository name must be lowercase"),
        ("a%20b", 400, "invalid reference format"),
    ):
        answer = api.request("GET", "/images/%s/json" % (name,))
        assert (answer.code, answer.json()) == (status, {"message": message}), name


def test_ambiguous_prefix_is_not_found(api):
    ids = [api.imported(make_tar({"f%d" % i: b"x"})) for i in range(40)]
    firsts = {}
    for image_id in ids:
        firsts.setdefault(image_id[7], []).append(image_id)
    shared = next(prefix for prefix, group in firsts.items() if len(group) > 1)
    answer = api.request("GET", "/images/%s/json" % (shared,))
    assert (answer.code, answer.json()) == (
        404,
        {"message": "No such image: %s:latest" % (shared,)},
    )


# -- tag ----------------------------------------------------------------------


@pytest.mark.route("POST", "/images/{name:.*}/tag")
def test_tag(api):
    image_id = api.imported(repo="src")
    other = api.imported(make_tar({"o": b"o"}), repo="moved", tag="t")
    api.system.events._history.clear()
    answer = api.request("POST", "/images/src/tag?repo=dst&tag=v9")
    assert answer.code == 201
    assert answer.body == b""
    answer = api.request("POST", "/images/%s/tag?repo=moved:t" % (image_id[7:19],))
    assert answer.code == 201
    assert api.store.get("src").repo_tags == ["dst:v9", "moved:t", "src:latest"]
    assert api.store.get(other).repo_tags == []
    assert api.events() == [
        ("tag", image_id, {"name": "dst:v9"}),
        ("tag", image_id, {"name": "moved:t"}),
    ]
    doc = api.request("GET", "/images/dst:v9/json").json()
    assert doc["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"


@pytest.mark.route("POST", "/images/{name:.*}/tag")
@pytest.mark.parametrize(
    "query, status, message",
    [
        ("", 400, "invalid reference format"),
        ("repo=UPPER", 400, "invalid reference format: repository name must be lowercase"),
        ("repo=x&tag=bad%20tag", 400, "invalid tag format"),
        ("repo=x@sha256:" + "a" * 64, 400, "refusing to create a tag with a digest reference"),
        (
            "repo=sha256&tag=abc",
            400,
            "refusing to create an ambiguous tag using digest algorithm as name",
        ),
    ],
)
def test_tag_errors(api, query, status, message):
    api.imported(repo="src")
    answer = api.request("POST", "/images/src/tag?" + query)
    assert (answer.code, answer.json()) == (status, {"message": message})


@pytest.mark.route("POST", "/images/{name:.*}/tag")
def test_tag_of_a_missing_image(api):
    answer = api.request("POST", "/images/nope/tag?repo=x")
    assert (answer.code, answer.json()) == (404, {"message": "No such image: nope:latest"})


# -- history --------------------------------------------------------------------


@pytest.mark.route("GET", "/images/{name:.*}/history")
def test_history(api):
    image_id = api.imported(repo="hist", message="first import")
    assert api.request("GET", "/images/hist/history").json() == [
        {
            "Comment": "first import",
            "Created": 1_700_000_000,
            "CreatedBy": "",
            "Id": image_id,
            "Size": ROOTFS_SIZE,
            "Tags": ["hist:latest"],
        }
    ]
    untagged = api.imported(make_tar({"u": b"u"}))
    assert api.request("GET", "/images/%s/history" % (untagged,)).json()[0]["Tags"] is None
    answer = api.request("GET", "/images/nope/history")
    assert (answer.code, answer.json()) == (404, {"message": "No such image: nope:latest"})


# -- inventory ------------------------------------------------------------------


def test_inventory(tmp_path):
    users = {}
    api = ImageAPI(tmp_path / "root", usage=lambda image_id: users.get(image_id, []))
    first = api.imported(repo="a")
    api.imported(repo="b")
    users[first] = [("1" * 64, True), ("2" * 64, False)]
    assert api.store.counts() == {"Images": 2}
    usage = run(api.store.disk_usage({"image"}))
    assert usage["LayersSize"] == ROOTFS_SIZE
    # The store returns values; the routers shape them (/system/df).
    by_id = {image.id: disk_usage_json(image, MAX_API_VERSION) for image in usage["Images"]}
    assert by_id[first]["Containers"] == 2
    assert by_id[first]["SharedSize"] == ROOTFS_SIZE
    # At 1.41, as dockerd 20.10: VirtualSize, and the counts df computes
    # (which GET /images/json leaves at -1 there).
    old = {image.id: disk_usage_json(image, "1.41") for image in usage["Images"]}
    assert old[first]["VirtualSize"] == old[first]["Size"] == ROOTFS_SIZE
    assert (old[first]["Containers"], old[first]["SharedSize"]) == (2, ROOTFS_SIZE)
    assert old[first]["RepoDigests"] is None


def test_disk_usage_of_an_untagged_image_at_1_41(tmp_path):
    api = ImageAPI(tmp_path / "root")
    untagged = api.imported(make_tar({"u": b"u"}))
    usage = run(api.store.disk_usage({"image"}))
    (image,) = [disk_usage_json(i, "1.41") for i in usage["Images"] if i.id == untagged]
    assert (image["RepoTags"], image["RepoDigests"]) == (["<none>:<none>"], ["<none>@<none>"])
    (image,) = [disk_usage_json(i, MAX_API_VERSION) for i in usage["Images"] if i.id == untagged]
    assert (image["RepoTags"], image["RepoDigests"]) == ([], [])
    assert "VirtualSize" not in image
    assert run(api.store.disk_usage({"volume"})) == {}


# -- real threads -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_import_runs_in_the_reactor_thread_pool(tmp_path):
    from twisted.internet import reactor
    import threading

    seen = []
    original = archive_module.unpack_layer

    def spy(source, dest, split=None):
        seen.append(threading.current_thread() is threading.main_thread())
        return original(source, dest, split)

    archive_module.unpack_layer = spy
    try:
        store = ImageStore(reactor, str(tmp_path), EventLog())
        await store.load()
        image_id = await store.import_image(io.BytesIO(ROOTFS), "-", "threaded", "", "", (), "")
    finally:
        archive_module.unpack_layer = original
    assert seen == [False]
    assert store.get("threaded").id == image_id
