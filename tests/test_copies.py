"""The copy backend (twistedock.backend.copies, rootpath, roots): path
resolution inside a container's root, path stats, tars out and in, the
backend over fake containers, and the routes over it."""

import base64
import io
import os
import tarfile

import pytest
import pytest_twisted
from twistedock import golang
from zope.interface import implementer

from twistedock.backend.runtime import rootfs
from twistedock.backend.copies import CopyBackend, write_path_archive
from twistedock.backend.rootpath import (
    PathNotDirectory,
    Scope,
    TooManyLinks,
    container_path,
    encode_path_stat,
    resolve,
)
from twistedock.tar import read
from twistedock.tar.extract import OverwriteConflict, extract_into
from twistedock.tar.write import write_export
from twistedock.errors import InternalError, InvalidParameter, NotFound
from twistedock.routers.container import CreateImageConfig, ICopyBackend
from twistedock.server.httputils import Flow

from .test_tar_stream import Consumer

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="device nodes, owners and trusted xattrs need root")

MTIME_NS = 1_700_000_000_500_000_000


# -- fixtures -------------------------------------------------------------------


class World:
    """A container root, and beside it an 'outside' the tests check is
    never read nor written."""

    def __init__(self, tmp_path) -> None:
        self.root = tmp_path / "root"
        self.outside = tmp_path / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        (self.outside / "secret").write_text("outside\n")
        self.fd = os.open(str(self.root), os.O_RDONLY | os.O_DIRECTORY)

    def scope(self, ref="c1"):
        return Scope(self.fd, "/merged", ref)

    def file(self, rel, text="x", mode=0o644):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(str(path), mode)
        return path

    def dir(self, rel, mode=0o755):
        path = self.root / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(str(path), mode)
        return path

    def link(self, rel, target):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, str(path))
        return path

    def outside_untouched(self) -> bool:
        return sorted(os.listdir(str(self.outside))) == ["secret"] and (
            self.outside / "secret"
        ).read_text() == "outside\n"

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def tar_bytes(entries) -> bytes:
    """A tar of (name, kind, data-or-linkname, extra) entries."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in entries:
            name, kind = item[0], item[1]
            arg = item[2] if len(item) > 2 else b""
            extra = item[3] if len(item) > 3 else {}
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            info.mode = extra.get("mode", 0o755 if kind == "d" else 0o644)
            info.uid = extra.get("uid", 0)
            info.gid = extra.get("gid", 0)
            data = None
            if kind == "f":
                data = io.BytesIO(arg)
                info.size = len(arg)
            elif kind == "d":
                info.type = tarfile.DIRTYPE
            elif kind == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = arg
            elif kind == "h":
                info.type = tarfile.LNKTYPE
                info.linkname = arg
            tar.addfile(info, data)
    return out.getvalue()


def members(data: bytes):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        return [(m.name, m.type, m.linkname if (m.issym() or m.islnk()) else m.size) for m in tar]


def collect(function, *args) -> bytes:
    out = []
    function(*args, out.append)
    return b"".join(out)


# -- Go's formats ---------------------------------------------------------------


@pytest.mark.parametrize(
    "given, absolute, base",
    [
        ("/data/f.txt", "/data/f.txt", "f.txt"),
        ("data/f.txt", "/data/f.txt", "f.txt"),
        ("/data/", "/data/", "data"),
        ("/data/.", "/data/.", "."),
        ("/data/./sub/..", "/data", "data"),
        ("/", "/", "/"),
        ("/../../etc", "/etc", "etc"),
        ("//x//y/", "/x/y/", "y"),
    ],
)
def test_container_paths_keep_a_trailing_slash_or_dot(given, absolute, base):
    assert container_path(given) == absolute
    assert golang.base(absolute) == base


# -- resolution inside the root -------------------------------------------------


def test_dot_dot_stops_at_the_root(world):
    world.dir("a")
    assert resolve(world.fd, "/a/../../../..") == []
    assert resolve(world.fd, "../../outside/secret") == ["outside", "secret"]


def test_an_absolute_link_starts_again_at_the_root(world):
    world.file("etc/passwd", "container passwd\n")
    world.link("data/abs", "/etc/passwd")
    world.link("data/etc", "/etc")
    assert resolve(world.fd, "/data/abs") == ["etc", "passwd"]
    assert resolve(world.fd, "/data/etc/passwd") == ["etc", "passwd"]
    # The last component is kept as it is when asked.
    assert resolve(world.fd, "/data/abs", follow_last=False) == ["data", "abs"]


def test_a_link_pointing_outside_stays_inside(world):
    world.link("data/up", "../../../../../outside")
    world.link("data/host", str(world.outside))
    assert resolve(world.fd, "/data/up/secret") == ["outside", "secret"]
    host_parts = [p for p in str(world.outside).split("/") if p]
    assert resolve(world.fd, "/data/host/secret") == host_parts + ["secret"]
    # Neither exists in the root: not found, never the real outside.
    for path in ("/data/up/secret", "/data/host/secret"):
        with pytest.raises(NotFound) as e:
            world.scope().path_stat(path)
        assert str(e.value) == "Could not find the file %s in container c1" % path


def test_link_loops_end(world):
    world.link("a", "b")
    world.link("b", "a")
    world.link("self", "self")
    world.link("deep", "./deep/x")
    for path in ("/a", "/self/x", "/deep"):
        with pytest.raises(TooManyLinks):
            resolve(world.fd, path)
    with pytest.raises(InternalError) as e:
        world.scope().path_stat("/a/x")
    assert str(e.value) == "evalSymlinksInScope: too many links in /merged/a"


def test_missing_components_are_kept_and_files_are_not_directories(world):
    world.file("f")
    assert resolve(world.fd, "/nope/x/../y") == ["nope", "y"]
    assert resolve(world.fd, "/f/..") == []
    with pytest.raises(PathNotDirectory):
        resolve(world.fd, "/f/x/y")


# -- stats ----------------------------------------------------------------------------


def test_path_stats_as_dockerd(world):
    f = world.file("data/f.txt", "hello\n")
    os.utime(str(f), ns=(MTIME_NS, MTIME_NS))
    world.dir("data/sub")
    world.link("data/abs", "/etc/passwd")
    world.link("data/rel", "../../../../etc")
    world.link("data/dl", "/data/sub")
    world.link("data/dangling", "nowhere")
    scope = world.scope()

    doc = scope.path_stat("/data/f.txt")[0]
    assert doc == {
        "name": "f.txt",
        "size": 6,
        "mode": 420,
        "mtime": "2023-11-14T22:13:20.5Z",
        "linkTarget": "",
    }
    assert scope.path_stat("/data/abs")[0]["linkTarget"] == "/etc/passwd"
    assert scope.path_stat("/data/rel")[0]["linkTarget"] == "/etc"
    assert scope.path_stat("/data/dangling")[0]["linkTarget"] == "/data/nowhere"
    link = scope.path_stat("/data/dl")[0]
    assert (link["name"], link["size"], link["mode"]) == ("dl", 9, 134218239)
    followed = scope.path_stat("/data/dl/")[0]
    assert (followed["name"], followed["mode"], followed["linkTarget"]) == ("dl", 2147484141, "")
    assert scope.path_stat("/data/.")[0]["name"] == "."
    assert scope.path_stat("/")[0]["name"] == "/"

    with pytest.raises(NotFound) as e:
        scope.path_stat("/nope")
    assert str(e.value) == "Could not find the file /nope in container c1"
    with pytest.raises(InternalError) as e:
        scope.path_stat("/data/f.txt/")
    assert str(e.value) == "lstat /merged/data/f.txt/: not a directory"
    with pytest.raises(NotFound):
        scope.path_stat("/data/abs/")  # no /etc/passwd in this root
    world.file("etc/passwd")
    with pytest.raises(InternalError) as e:
        scope.path_stat("/data/abs/")
    assert str(e.value) == "lstat /merged/etc/passwd/: not a directory"


def test_the_stat_header_is_base64_of_go_json():
    # As the reference dockerd answered for a file.
    doc = {
        "name": "f.txt",
        "size": 6,
        "mode": 420,
        "mtime": "2026-11-30T12:28:01.804866077Z",
        "linkTarget": "",
    }
    assert encode_path_stat(doc) == (
        "eyJuYW1lIjoiZi50eHQiLCJzaXplIjo2LCJtb2RlIjo0MjAsIm10aW1lIjoiMjAyNi0xMS0zMFQxMjoyODow"
        "MS44MDQ4NjYwNzdaIiwibGlua1RhcmdldCI6IiJ9"
    )
    assert b"\\u003c" in base64.b64decode(encode_path_stat(dict(doc, name="<a&b>")))


# -- tars out -------------------------------------------------------------------------


def archive_of(world, path):
    doc, target = world.scope().path_stat(path)
    try:
        return collect(write_path_archive, target)
    finally:
        target.close()


def test_archives_are_named_after_the_asked_base_name(world):
    world.file("data/f.txt", "hello\n")
    world.file("data/sub/y", "y")
    world.link("data/dl", "/data/sub")
    world.link("data/abs", "/etc/passwd")
    assert members(archive_of(world, "/data/f.txt")) == [("f.txt", tarfile.REGTYPE, 6)]
    # Go's writer: header, data block, two zero blocks (dockerd: 2048 bytes).
    assert len(archive_of(world, "/data/f.txt")) == 2048
    assert members(archive_of(world, "/data")) == [
        ("data", tarfile.DIRTYPE, 0),
        ("data/abs", tarfile.SYMTYPE, "/etc/passwd"),
        ("data/dl", tarfile.SYMTYPE, "/data/sub"),
        ("data/f.txt", tarfile.REGTYPE, 6),
        ("data/sub", tarfile.DIRTYPE, 0),
        ("data/sub/y", tarfile.REGTYPE, 1),
    ]
    assert members(archive_of(world, "/data/dl/")) == [
        ("dl", tarfile.DIRTYPE, 0),
        ("dl/y", tarfile.REGTYPE, 1),
    ]
    assert [m[0] for m in members(archive_of(world, "/data/."))][:2] == [".", "./abs"]
    # A link is archived as a link, never followed.
    assert members(archive_of(world, "/data/abs")) == [("abs", tarfile.SYMTYPE, "/etc/passwd")]
    raw = archive_of(world, "/")
    assert raw[:2] == b"/\0"
    assert "/data/f.txt" in [m[0] for m in members(raw)]


def test_a_link_to_outside_is_archived_from_inside(world):
    world.link("data/up", "../../../../outside")
    world.dir("outside")
    (world.root / "outside" / "inner").write_text("inside the root\n")
    names = [m[0] for m in members(archive_of(world, "/data/up/"))]
    assert names == ["up", "up/inner"]


def test_the_daemons_mounted_files_are_read_in_place_of_the_stubs(world, tmp_path):
    world.file("etc/hostname", "")  # runc's mount point
    world.file("etc/passwd", "root\n")
    host = tmp_path / "container-dir"
    host.mkdir()
    (host / "hostname").write_text("c0ffee\n")
    scope = Scope(world.fd, "/merged", "c1", {("etc", "hostname"): str(host / "hostname")})
    doc, target = scope.path_stat("/etc/hostname")
    try:
        assert doc["size"] == 7
        with tarfile.open(fileobj=io.BytesIO(collect(write_path_archive, target))) as tar:
            assert tar.extractfile("hostname").read() == b"c0ffee\n"
    finally:
        target.close()
    doc, target = scope.path_stat("/etc")
    try:
        with tarfile.open(fileobj=io.BytesIO(collect(write_path_archive, target))) as tar:
            assert tar.extractfile("etc/hostname").read() == b"c0ffee\n"
            assert tar.extractfile("etc/passwd").read() == b"root\n"
    finally:
        target.close()


def test_hard_links_sockets_and_export(world):
    a = world.file("a", "same")
    os.link(str(a), str(world.root / "b"))
    world.dir("d/e")
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(world.root / "d" / "sock"))
    try:
        data = collect(write_export, world.fd)
    finally:
        sock.close()
    assert members(data) == [
        ("a", tarfile.REGTYPE, 4),
        ("b", tarfile.LNKTYPE, "a"),
        ("d", tarfile.DIRTYPE, 0),
        ("d/e", tarfile.DIRTYPE, 0),
    ]


# -- tars in -----------------------------------------------------------------------------


def extract(world, dest, data, no_overwrite=False, owner=None):
    parts = resolve(world.fd, container_path(dest))
    extract_into(world.fd, parts, io.BytesIO(data), no_overwrite, owner)


def test_extract_a_tree(world):
    world.dir("data")
    extract(world, "/data", tar_bytes([
        ("newdir", "d"), ("newdir/a", "f", b"a\n"), ("newdir/b", "l", "/etc/passwd"),
        ("/absolute", "f", b"abs\n"), (".wh.name", "f", b"plain"),
    ]))
    assert (world.root / "data/newdir/a").read_text() == "a\n"
    assert os.readlink(str(world.root / "data/newdir/b")) == "/etc/passwd"
    assert (world.root / "data/absolute").read_text() == "abs\n"
    # docker cp does not know whiteouts.
    assert (world.root / "data/.wh.name").read_text() == "plain"
    assert world.outside_untouched()


@pytest.mark.parametrize(
    "entries, message",
    [
        ([("ok1", "f"), ("../../evil", "f"), ("ok2", "f")], '"../../evil" is outside of "/data"'),
        ([("sub/../../up", "f")], '"../up" is outside of "/data"'),
        ([("hl", "h", "../../../outside/secret")], 'invalid hardlink "/outside/secret" -> "../../../outside/secret"'),
    ],
)
def test_an_escaping_tar_is_refused_whole(world, entries, message):
    world.dir("data")
    with pytest.raises(read.BreakoutError) as e:
        extract(world, "/data", tar_bytes(entries))
    assert str(e.value) == message
    assert os.listdir(str(world.root / "data")) == []
    assert world.outside_untouched()


def test_entries_through_links_land_inside_the_root(world):
    world.dir("data")
    world.dir("etc")
    world.link("data/etc", "/etc")
    world.link("data/up", "../../../../outside")
    world.link("data/host", str(world.outside))
    world.dir("outside")  # the root's own /outside
    extract(world, "/data", tar_bytes([("etc/pwned", "f", b"1"), ("up/pwned", "f", b"2")]))
    assert (world.root / "etc/pwned").read_text() == "1"
    assert (world.root / "outside/pwned").read_text() == "2"
    with pytest.raises(read.ArchiveError):
        # The host path does not exist in the root: refused, never followed.
        extract(world, "/data", tar_bytes([("host/pwned", "f", b"3")]))
    assert world.outside_untouched()


def test_no_overwrite_dir_non_dir(world):
    world.dir("data/sub")
    world.file("data/f.txt")
    with pytest.raises(OverwriteConflict) as e:
        extract(world, "/data", tar_bytes([("sub", "f", b"x")]), no_overwrite=True)
    assert str(e.value) == 'cannot overwrite directory "/data/sub" with non-directory "/data"'
    with pytest.raises(OverwriteConflict) as e:
        extract(world, "/data", tar_bytes([("f.txt", "d")]), no_overwrite=True)
    assert str(e.value) == 'cannot overwrite non-directory "/data/f.txt" with directory "/data"'
    # Without the flag, the entry replaces what is there.
    extract(world, "/data", tar_bytes([("sub", "f", b"now a file")]))
    assert (world.root / "data/sub").read_text() == "now a file"


@needs_root
def test_owners_kept_or_copied(world):
    world.dir("data")
    extract(world, "/data", tar_bytes([("kept", "f", b"", {"uid": 1234, "gid": 4321})]))
    st = os.lstat(str(world.root / "data/kept"))
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    extract(world, "/data", tar_bytes([("copied", "f", b"", {"uid": 1234, "gid": 4321})]), owner=(1000, 50))
    st = os.lstat(str(world.root / "data/copied"))
    assert (st.st_uid, st.st_gid) == (1000, 50)


# -- the backend over fake containers ------------------------------------------------


class FakeState:
    running = True
    paused = False
    restarting = False
    dead = False
    removing = False


class FakeContainer:
    def __init__(self, base, image_id) -> None:
        self.id = "c" * 64
        self.name = "/fake"
        self.image_id = image_id
        self.config = {"Image": "img", "Cmd": ["sh", "-c", "work"], "Env": ["PATH=/bin"], "Hostname": "h"}
        self.host_config = {}
        self.state = FakeState()
        self.base = base


class FakeContainers:
    """Just what the copy backend uses; the merged directory is a plain
    directory the tests say is mounted."""

    def __init__(self, container, images=None) -> None:
        self.c = container
        self.images = images
        self.events = []
        self.calls = []

    def layer_dirs(self, c):
        """The image's layers (no init layer here)."""
        return list(self.images.get_layer_dirs(c.image_id)) if self.images is not None else []

    def get(self, ref):
        if ref not in ("fake", self.c.id):
            raise NotFound("No such container: %s" % ref)
        return self.c

    def overlay(self, c):
        return {
            "UpperDir": str(c.base / "diff"),
            "WorkDir": str(c.base / "work"),
            "MergedDir": str(c.base / "merged"),
        }

    def lock(self, c):
        from twisted.internet.defer import DeferredLock

        return DeferredLock()

    def log_event(self, c, action, **extra):
        self.events.append((action, extra))

    async def pause(self, ref):
        self.calls.append("pause")

    async def unpause(self, ref):
        self.calls.append("unpause")


@pytest_twisted.ensureDeferred
async def test_backend_archives_a_running_containers_root(tmp_path, monkeypatch):
    from twisted.internet import reactor

    monkeypatch.setattr(rootfs, "overlay_mounted", lambda path: True)
    c = FakeContainer(tmp_path / "c", "sha256:" + "0" * 64)
    merged = c.base / "merged"
    (merged / "data").mkdir(parents=True)
    (merged / "data" / "f.txt").write_text("hello\n")
    containers = FakeContainers(c)
    backend = CopyBackend(reactor, containers, None)
    doc = await backend.stat_path("fake", "/data/f.txt")
    assert (doc["name"], doc["size"]) == ("f.txt", 6)
    doc, stream = await backend.archive_path("fake", "/data")
    consumer = Consumer()
    await stream.write_to(consumer, Flow())
    assert [m[0] for m in members(b"".join(consumer.data))] == ["data", "data/f.txt"]
    await backend.extract_to_dir("fake", "/data", False, False, io.BytesIO(tar_bytes([("put", "f", b"p")])))
    assert (merged / "data" / "put").read_text() == "p"
    with pytest.raises(NotFound) as e:
        await backend.extract_to_dir("fake", "/nope", False, False, io.BytesIO(b""))
    assert str(e.value) == "Could not find the file /nope in container fake"
    with pytest.raises(InvalidParameter) as e:
        await backend.extract_to_dir("fake", "/data/f.txt", False, False, io.BytesIO(b""))
    assert str(e.value) == "extraction point is not a directory"
    stream = await backend.export("fake")
    consumer = Consumer()
    await stream.write_to(consumer, Flow())
    assert "data/put" in [m[0] for m in members(b"".join(consumer.data))]
    assert [e[0] for e in containers.events] == ["archive-path", "extract-to-dir", "export"]
    assert backend.roots._users == {}


# -- the routes ------------------------------------------------------------------------


@implementer(ICopyBackend)
class MemoryCopies:
    def __init__(self) -> None:
        self.calls = []

    async def stat_path(self, name, path):
        if path == "/nope":
            raise NotFound("Could not find the file /nope in container %s" % name)
        return {"name": "f.txt", "size": 6, "mode": 420, "mtime": "2026-11-30T12:28:01.804866077Z", "linkTarget": ""}

    async def archive_path(self, name, path):
        doc = await self.stat_path(name, path)

        class Stream:
            closed = False

            async def write_to(self, consumer, flow):
                consumer.write(b"TAR")

            def close(self):
                Stream.closed = True

        return doc, Stream()

    async def extract_to_dir(self, name, path, no_overwrite, copy_uid_gid, content):
        content.seek(0)
        self.calls.append(("extract", name, path, no_overwrite, copy_uid_gid, content.read()))

    async def export(self, name):
        return (await self.archive_path(name, "/"))[1]

    async def changes(self, name):
        return None if name == "clean" else [{"Path": "/a", "Kind": 1}]

    async def commit(self, name, options):
        self.calls.append(("commit", name, options))
        return "sha256:" + "1" * 64


def copy_api(copies):
    from treq.testing import StubTreq

    from twistedock.backend.swarm import InactiveCluster
    from twistedock.daemon import build_routers
    from twistedock.server.middleware import APIConfig
    from twistedock.server.root import APIResource, compose

    from .memory import API

    api = API()
    api.routers = build_routers(
        api.clock, api.system, InactiveCluster(), containers=api.containers, copies=copies
    )
    api.resource = APIResource(compose(api.routers, APIConfig(experimental=False, debug=False)))
    api.treq = StubTreq(api.resource)
    return api


@pytest.mark.route("HEAD", "/containers/{name:.*}/archive")
@pytest.mark.route("GET", "/containers/{name:.*}/archive")
@pytest.mark.route("PUT", "/containers/{name:.*}/archive")
def test_archive_routes():
    copies = MemoryCopies()
    api = copy_api(copies)
    for method in ("HEAD", "GET", "PUT"):
        answer = api.request(method, "/v1.41/containers/c/archive")
        assert answer.code == 400
        if method != "HEAD":
            assert answer.json() == {"message": "bad parameter: pathcannot be empty"}
    head = api.request("HEAD", "/v1.41/containers/c/archive?path=/data/f.txt")
    assert head.code == 200
    assert head.header("X-Docker-Container-Path-Stat") == (
        "eyJuYW1lIjoiZi50eHQiLCJzaXplIjo2LCJtb2RlIjo0MjAsIm10aW1lIjoiMjAyNi0xMS0zMFQxMjoyODow"
        "MS44MDQ4NjYwNzdaIiwibGlua1RhcmdldCI6IiJ9"
    )
    assert api.request("HEAD", "/v1.41/containers/c/archive?path=/nope").code == 404
    got = api.request("GET", "/v1.41/containers/c/archive?path=/data/f.txt")
    assert (got.code, got.header("Content-Type"), got.body) == (200, "application/x-tar", b"TAR")
    assert got.header("X-Docker-Container-Path-Stat") == head.header("X-Docker-Container-Path-Stat")
    put = api.request(
        "PUT", "/v1.41/containers/c/archive?path=/data&noOverwriteDirNonDir=true&copyUIDGID=1", body=b"tar"
    )
    assert (put.code, put.body) == (200, b"")
    assert copies.calls[-1] == ("extract", "c", "/data", True, True, b"tar")


@pytest.mark.route("GET", "/containers/{name:.*}/export")
@pytest.mark.route("GET", "/containers/{name:.*}/changes")
def test_export_and_changes_routes():
    api = copy_api(MemoryCopies())
    got = api.request("GET", "/v1.41/containers/c/export")
    assert (got.code, got.header("Content-Type"), got.body) == (200, "application/octet-stream", b"TAR")
    assert api.request("GET", "/v1.41/containers/c/changes").json() == [{"Path": "/a", "Kind": 1}]
    assert api.request("GET", "/v1.41/containers/clean/changes").body == b"null\n"


@pytest.mark.route("POST", "/commit")
def test_commit_route():
    copies = MemoryCopies()
    api = copy_api(copies)
    answer = api.request(
        "POST",
        "/v1.41/commit?container=c&repo=r&tag=t&comment=m&author=a&changes=CMD+x&changes=ENV+A%3D1",
    )
    assert (answer.code, answer.json()) == (201, {"Id": "sha256:" + "1" * 64})
    name, options = copies.calls[-1][1:]
    assert name == "c"
    assert options == CreateImageConfig(
        repo="r", tag="t", author="a", comment="m",
        changes=["CMD x", "ENV A=1"], pause=True, config=None,
    )
    api.request("POST", "/v1.41/commit?container=c&pause=0", json_body={"Cmd": ["x"]})
    assert copies.calls[-1][2].pause is False
    assert copies.calls[-1][2].config == {"Cmd": ["x"]}
    api.request("POST", "/v1.12/commit?container=c")
    assert copies.calls[-1][2].pause is False
    assert api.request("POST", "/v1.41/commit?container=c", body=b"[1]", headers={"Content-Type": "application/json"}).code == 400


def test_without_a_copy_backend_the_routes_answer_501():
    from .memory import API

    api = API()
    answer = api.request("GET", "/v1.41/containers/c/changes")
    assert answer.code == 501


@pytest.mark.route("POST", "/commit")
@pytest.mark.parametrize("body, message", [
    # dockerd 20.10's words (it answers 500; 400 here, as for create).
    (b'{"Cmd":123}', "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Cmd of type string"),
    (b'{"Env":"x"}', "json: cannot unmarshal string into Go struct field ContainerConfigWrapper.Env of type []string"),
    (b'{"HostConfig":{"PidsLimit":"AAA"}}',
     "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.PidsLimit of type int64"),
    (b'{"Labels":{"a":1}}', "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Labels of type string"),
    (b'{"StopTimeout":"x"}', "json: cannot unmarshal string into Go struct field ContainerConfigWrapper.StopTimeout of type int"),
    (b'{"Healthcheck":{"Interval":"x"}}',
     "json: cannot unmarshal string into Go struct field HealthConfig.Healthcheck.Interval of type time.Duration"),
    (b'[1]', "json: cannot unmarshal array into Go value of type runconfig.ContainerConfigWrapper"),
    (b'"x"', "json: cannot unmarshal string into Go value of type runconfig.ContainerConfigWrapper"),
])
def test_commit_bodies_are_decoded_as_create_bodies(body, message):
    copies = MemoryCopies()
    api = copy_api(copies)
    answer = api.request("POST", "/v1.41/commit?container=c", body=body, headers={"Content-Type": "application/json"})
    assert (answer.code, answer.json()) == (400, {"message": "invalid JSON: " + message})
    assert not [call for call in copies.calls if call[0] == "commit"]


@pytest.mark.route("POST", "/commit")
def test_commit_bodies_come_to_the_backend_as_go_leaves_them():
    copies = MemoryCopies()
    api = copy_api(copies)
    api.request("POST", "/v1.41/commit?container=c", json_body={"entrypoint": "sh", "Cmd": "true"})
    # Canonical names; a StrSlice as sent (the backend makes it a list).
    assert copies.calls[-1][2].config == {"Entrypoint": "sh", "Cmd": "true"}
