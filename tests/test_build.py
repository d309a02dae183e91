"""The classic builder in process: the Dockerfile's parsing, words and
variables, .dockerignore, COPY's sources and layer, the cache keys, and the
build router with a fake backend."""

import io
import json
import os
import tarfile

import pytest
from treq.testing import StubTreq

from twistedock.backend.build.copying import (
    CopyError,
    Owner,
    content_hash,
    context_sources,
    resolve_in_image,
    dest_is_directory,
    image_sources,
    resolve_chown,
    write_copy_layer,
)
from twistedock.backend.build.dockerfile import json_form, parse_dockerfile, parse_flags
from twistedock.backend.build.dockerignore import PatternMatcher, apply_dockerignore, read_patterns
from twistedock.backend.build.lex import process_word, process_words
from twistedock.backend.images.children import cache_key
from twistedock.errors import InvalidParameter
from twistedock.routers.build import BuildRouter
from twistedock.backend.events import EventLog
from twistedock.backend.images import ImageStore
from twisted.internet.defer import ensureDeferred

from .memory import result_of
from .test_images import SyncReactor


# -- the Dockerfile ------------------------------------------------------------


def test_stages_meta_args_and_originals():
    parsed = parse_dockerfile(
        b"# syntax comment\nARG BASE=busybox\nFROM $BASE AS Build\nRUN echo a \\\n  b\n"
        b"from build\ncopy --from=build /a /b\n"
    )
    assert [i.original for i in parsed.meta_args] == ["ARG BASE=busybox"]
    first, second = parsed.stages
    assert (first.base, first.name, first.original) == ("$BASE", "build", "FROM $BASE AS Build")
    assert [(c.name, c.value) for c in first.commands] == [("RUN", "echo a   b")]
    assert second.base == "build" and second.name == ""
    # The instruction is shown as written.
    assert second.commands[0].original == "copy --from=build /a /b"
    assert second.commands[0].name == "COPY"


def test_parse_errors_are_dockerds():
    with pytest.raises(InvalidParameter) as e:
        parse_dockerfile(b"FROM busybox\nFOO bar\n")
    assert str(e.value) == "dockerfile parse error line 2: unknown instruction: FOO"
    with pytest.raises(InvalidParameter) as e:
        parse_dockerfile(b"RUN true\n")
    assert "no build stage in current context" in str(e.value)
    with pytest.raises(InvalidParameter) as e:
        parse_dockerfile(b"FROM a b\n")
    assert "FROM requires either one or three arguments" in str(e.value)


def test_from_platform_flag_and_unknown_flags():
    parsed = parse_dockerfile(b"FROM --platform=linux/amd64 busybox AS x\n")
    assert parsed.stages[0].platform == "linux/amd64"
    ins = parsed.stages[0]
    with pytest.raises(InvalidParameter) as e:
        parse_flags("--bogus=1 a b", ("from",), type("I", (), {"line": 3})())
    assert str(e.value) == "dockerfile parse error line 3: Unknown flag: bogus"
    assert ins.name == "x"
    assert parse_flags("--from=a --chown=1:2 src dst", ("from", "chown"), None) == (
        {"from": "a", "chown": "1:2"}, "src dst",
    )


def test_json_form():
    assert json_form('["sh", "-c", "x"]') == ["sh", "-c", "x"]
    assert json_form("echo [not json") is None
    assert json_form("[1, 2]") is None


# -- words and variables -------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("$A", "1"),
        ("${A}x", "1x"),
        ("${UNSET:-dflt}", "dflt"),
        ("${A:-dflt}", "1"),
        ("${A:+set}", "set"),
        ("${UNSET:+set}", ""),
        ("'$A'", "$A"),
        ('"$A b"', "1 b"),
        ("\\$A", "$A"),
        ("a$", "a$"),
    ],
)
def test_process_word(text, expected):
    assert process_word(text, {"A": "1"}) == expected


def test_process_words_splits_outside_quotes():
    assert process_words('a="x y" b=$B  c', {"B": "2"}) == ["a=x y", "b=2", "c"]


# -- .dockerignore ---------------------------------------------------------------


def test_dockerignore_patterns_and_exceptions():
    patterns = read_patterns("# comment\n*.log\n!keep.log\n/build\n**/*.tmp\ndocs/**\n\n")
    assert patterns == ["*.log", "!keep.log", "build", "**/*.tmp", "docs/**"]
    m = PatternMatcher(patterns)
    assert m.excluded("a.log")
    assert not m.excluded("keep.log")
    assert not m.excluded("sub/a.log")  # * does not cross directories
    assert m.excluded("build/x/y")  # a parent directory matches
    assert m.excluded("deep/er/x.tmp") and m.excluded("x.tmp")
    assert m.excluded("docs/a/b.md")
    assert not m.excluded("src/main.py")


def test_apply_dockerignore_drops_what_it_names(tmp_path):
    for name in ("Dockerfile", "a.txt", "secret/key", "logs/x.log", "logs/keep.log"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    (tmp_path / ".dockerignore").write_text("Dockerfile\nsecret\nlogs/*.log\n!logs/keep.log\n")
    apply_dockerignore(str(tmp_path))
    left = sorted(
        os.path.relpath(os.path.join(d, f), tmp_path) for d, _, files in os.walk(tmp_path) for f in files
    )
    # The Dockerfile (read before) goes too when named, as with dockerd.
    assert left == [".dockerignore", "a.txt", "logs/keep.log"]


# -- COPY and ADD ------------------------------------------------------------------


def _tree(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _members(handle):
    with tarfile.open(fileobj=handle) as tar:
        return {m.name: (m.type, m.uid, m.gid, tar.extractfile(m).read() if m.isreg() else None) for m in tar}


def test_copy_of_a_directory_copies_its_contents(tmp_path):
    ctx = tmp_path / "ctx"
    _tree(ctx, {"d/a": b"a", "d/sub/b": b"b", "f.txt": b"f"})
    sources = context_sources(str(ctx), ["d"], "COPY")
    handle = write_copy_layer(sources, "/out", True, Owner(), (), False, str(tmp_path))
    members = _members(handle)
    assert members["out/a"][3] == b"a" and members["out/sub/b"][3] == b"b"
    assert "out/d" not in members
    assert members["out"][0] == tarfile.DIRTYPE


def test_copy_of_a_file_to_a_file_or_a_directory(tmp_path):
    ctx = tmp_path / "ctx"
    _tree(ctx, {"f.txt": b"f"})
    sources = context_sources(str(ctx), ["f.txt"], "COPY")
    assert not dest_is_directory("/x/g", 1, ())
    assert dest_is_directory("/x/", 1, ())
    members = _members(write_copy_layer(sources, "/x/g", False, Owner(5, 6), (), False, str(tmp_path)))
    assert members["x/g"] == (tarfile.REGTYPE, 5, 6, b"f")
    members = _members(write_copy_layer(sources, "/x/", True, Owner(), (), False, str(tmp_path)))
    assert members["x/f.txt"][3] == b"f"


def test_wildcards_missing_sources_and_escapes(tmp_path):
    ctx = tmp_path / "ctx"
    _tree(ctx, {"a1.txt": b"1", "a2.txt": b"2", ".a3.txt": b"3", "b.txt": b"b"})
    names = [s.name for s in context_sources(str(ctx), ["*a*.txt"], "COPY")]
    assert names == [".a3.txt", "a1.txt", "a2.txt"]
    with pytest.raises(CopyError) as e:
        context_sources(str(ctx), ["nope"], "COPY")
    assert str(e.value) == (
        "COPY failed: file not found in build context or excluded by .dockerignore: "
        "stat nope: file does not exist"
    )
    # ../ cannot leave the context: it stops at its root.
    assert context_sources(str(ctx), ["../b.txt"], "COPY")[0].path == str(ctx / "b.txt")
    with pytest.raises(CopyError):
        context_sources(str(ctx), ["../../etc/passwd"], "COPY")
    os.symlink("/etc", ctx / "out")
    with pytest.raises(CopyError):
        context_sources(str(ctx), ["out/passwd"], "COPY")


def test_add_unpacks_a_local_archive(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("in/side.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (ctx / "bundle.tgz").write_bytes(buf.getvalue())
    sources = context_sources(str(ctx), ["bundle.tgz"], "ADD")
    members = _members(write_copy_layer(sources, "/opt/", True, Owner(), (), True, str(tmp_path)))
    assert members["opt/in/side.txt"][3] == b"hi"
    # COPY keeps the archive as it is.
    members = _members(write_copy_layer(sources, "/opt/", True, Owner(), (), False, str(tmp_path)))
    assert "opt/bundle.tgz" in members


def test_sources_from_an_image_merge_layers_and_whiteouts(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    _tree(lower, {"app/a": b"old", "app/gone": b"x", "etc/passwd": b"root:x:0:0::/:/bin/sh\nweb:x:33:44::/:/bin/sh\n",
                  "etc/group": b"root:x:0:\nwww:x:45:\n"})
    _tree(upper, {"app/a": b"new", "app/b": b"b"})
    os.mknod(upper / "app" / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    layers = (str(upper), str(lower))
    (source,) = image_sources(layers, ["/app"], "COPY")
    members = _members(write_copy_layer([source], "/copy", True, Owner(), (), False, str(tmp_path)))
    assert members["copy/a"][3] == b"new" and members["copy/b"][3] == b"b"
    assert "copy/gone" not in members
    assert resolve_chown("web", layers) == Owner(33, 44)
    assert resolve_chown("web:www", layers) == Owner(33, 45)
    assert resolve_chown("7:8", layers) == Owner(7, 8)
    with pytest.raises(CopyError):
        resolve_chown("nobody", layers)


def test_content_hash_follows_content(tmp_path):
    ctx = tmp_path / "ctx"
    _tree(ctx, {"d/a": b"1", "f": b"2"})
    one = content_hash(context_sources(str(ctx), ["f"], "COPY"))
    assert one.startswith("file:")
    assert content_hash(context_sources(str(ctx), ["d"], "COPY")).startswith("dir:")
    assert content_hash(context_sources(str(ctx), ["d", "f"], "COPY")).startswith("multi:")
    assert content_hash(context_sources(str(ctx), ["f"], "COPY")) == one
    (ctx / "f").write_bytes(b"3")
    assert content_hash(context_sources(str(ctx), ["f"], "COPY")) != one


# -- the cache key ---------------------------------------------------------------


def test_cache_key_is_the_config_that_matters():
    base = {"Cmd": ["/bin/sh", "-c", "#(nop) ", "ENV A=1"], "Env": ["A=1"], "Hostname": "abc", "Image": "sha256:1"}
    same = dict(base, Hostname="other", Image="sha256:2")
    assert cache_key(base) == cache_key(same)
    assert cache_key(base) != cache_key(dict(base, Cmd=["/bin/sh", "-c", "#(nop) ", "ENV A=2"]))
    assert cache_key(base) != cache_key(dict(base, Env=["A=2"]))
    assert cache_key(dict(base, Labels={})) == cache_key(dict(base, Labels=None))


def test_store_finds_a_cached_child(tmp_path):
    store = ImageStore(SyncReactor(), str(tmp_path), EventLog())

    async def scenario():
        await store.load()
        probe = {"Cmd": ["/bin/sh", "-c", "#(nop) ", "ENV A=1"], "Env": ["A=1"]}
        first = await store.add_child("", None, container_config=probe, config={"Env": ["A=1"]})
        assert store.cached_child("", probe) == first
        assert store.cached_child("", dict(probe, Env=["A=2"])) is None
        assert store.cached_child(first, probe) is None
        child = await store.add_child(first, None, container_config=probe, config={"Env": ["A=1"]})
        assert store.cached_child(first, probe) == child
        history = await store.history(child)
        assert [h.created_by for h in history] == ["/bin/sh -c #(nop)  ENV A=1"] * 2
        assert store.get(child).parent == first

    result_of(ensureDeferred(scenario()))


# -- the router ---------------------------------------------------------------------


class _FakeBuild:
    def __init__(self, options):
        self.options = options

    async def run(self, emit):
        emit({"stream": "Step 1/1 : FROM scratch"})
        emit({"aux": {"ID": "sha256:" + "0" * 64}})


class _FakeBuilder:
    def __init__(self):
        self.calls = []

    async def prepare(self, source, options):
        self.calls.append((source.read(), options))
        source.close()
        if options.dockerfile == "missing":
            raise InvalidParameter("dockerfile parse error line 1: unknown instruction: X")
        return _FakeBuild(options)


def _client(backend):
    return StubTreq(BuildRouter(backend).app.resource())


@pytest.mark.route("POST", "/build")
def test_router_parses_the_query_and_streams():
    backend = _FakeBuilder()
    client = _client(backend)
    result_of(ensureDeferred(_router_streams(client, backend)))


async def _router_streams(client, backend):
    query = (
        "t=a:1&t=b&dockerfile=sub/Df&target=t1&nocache=1&rm=0&forcerm=1&pull=1&q=1"
        "&networkmode=host&extrahosts=h:1.2.3.4&memory=1000000&cpushares=512&cpusetcpus=0"
        "&cgroupparent=/x&ulimits=" + json.dumps([{"Name": "nofile", "Soft": 10, "Hard": 20}])
        + "&cachefrom=" + json.dumps(["img:1"]) + "&buildargs=" + json.dumps({"A": "1", "B": None}) + "&labels=" + json.dumps({"l": "v"})
    )
    response = await client.post("http://x/build?" + query, data=b"ctx")
    assert response.code == 200
    body = await response.content()
    assert body.split(b"\r\n")[:2] == [b'{"stream":"Step 1/1 : FROM scratch"}', b'{"aux":{"ID":"sha256:' + b"0" * 64 + b'"}}']
    data, options = backend.calls[0]
    assert data == b"ctx"
    assert options.tags == ["a:1", "b"] and options.dockerfile == "sub/Df" and options.target == "t1"
    assert options.no_cache and options.remove and options.force_remove and options.pull and options.quiet
    assert options.network_mode == "host" and options.extra_hosts == ["h:1.2.3.4"]
    assert options.resources == {
        "Memory": 1000000, "CpuShares": 512, "CpusetCpus": "0", "CgroupParent": "/x",
        "Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}],
    }
    assert options.build_args == {"A": "1", "B": None} and options.labels == {"l": "v"}
    assert options.cache_from == ["img:1"]


@pytest.mark.route("POST", "/build")
def test_router_errors_before_the_stream_have_a_status():
    result_of(ensureDeferred(_router_errors(_client(_FakeBuilder()))))


async def _router_errors(client):
    response = await client.post("http://x/build?dockerfile=missing", data=b"")
    assert response.code == 400
    assert (await response.json()) == {"message": "dockerfile parse error line 1: unknown instruction: X"}
    response = await client.post("http://x/build?version=2", data=b"")
    assert response.code == 400
    response = await client.post("http://x/build?rm=", data=b"")
    assert response.code == 200
    response = await client.post("http://x/build?squash=1", data=b"")
    assert response.code == 400
    assert (await response.json()) == {"message": "squash is only supported with experimental mode"}
    response = await client.post("http://x/build?isolation=hyperv", data=b"")
    assert (await response.json()) == {"message": 'Unsupported isolation: "hyperv"'}


@pytest.mark.route("POST", "/build/prune")
def test_build_prune_answers_as_the_classic_builder():
    result_of(ensureDeferred(_prune(_client(_FakeBuilder()))))


async def _prune(client):
    response = await client.post("http://x/build/prune")
    assert response.code == 200
    assert (await response.json()) == {"CachesDeleted": None, "SpaceReclaimed": 0}


def test_copy_follows_the_images_links(tmp_path):
    # /bin -> usr/bin in the image: a COPY to /bin/ writes /usr/bin, and
    # never replaces the link with a directory.
    layer = tmp_path / "layer"
    (layer / "usr" / "bin").mkdir(parents=True)
    os.symlink("usr/bin", layer / "bin")
    os.symlink("/usr", layer / "abs")
    layers = (str(layer),)
    assert resolve_in_image(layers, "bin/x") == "usr/bin/x"
    assert resolve_in_image(layers, "abs/bin/../lib") == "usr/lib"
    ctx = tmp_path / "ctx"
    _tree(ctx, {"tool": b"t", "d/inner": b"i"})
    sources = context_sources(str(ctx), ["tool"], "COPY")
    members = _members(write_copy_layer(sources, "/bin/", True, Owner(), layers, False, str(tmp_path)))
    assert "usr/bin/tool" in members and "bin" not in members
    members = _members(write_copy_layer(sources, "/bin/tool2", False, Owner(), layers, False, str(tmp_path)))
    assert "usr/bin/tool2" in members and "bin" not in members
    sources = context_sources(str(ctx), ["d"], "COPY")
    members = _members(write_copy_layer(sources, "/bin", True, Owner(), layers, False, str(tmp_path)))
    assert "usr/bin/inner" in members and "bin" not in members


def test_instruction_flags_as_dockerd_20_10_parses_them():
    with pytest.raises(InvalidParameter) as e:
        parse_dockerfile(b"FROM scratch\nCOPY --bogus=1 a /a\n")
    assert str(e.value) == "dockerfile parse error line 2: Unknown flag: bogus"
    with pytest.raises(InvalidParameter) as e:
        parse_dockerfile(b"FROM scratch\nHEALTHCHECK --start-interval=1s CMD true\n")
    assert str(e.value) == "dockerfile parse error line 2: Unknown flag: start-interval"
    # BuildKit's flags parse; the build refuses them at their step.
    parse_dockerfile(b"FROM scratch\nRUN --mount=type=cache,target=/x true\nCOPY --chmod=755 a /a\n")


def test_expose_ports_as_dockerd_reads_them():
    from twistedock.backend.build.dispatchers import _port_keys
    from twistedock.backend.build.state import BuildFailed

    assert _port_keys("80") == ["80/tcp"]
    assert _port_keys("53/UDP") == ["53/udp"]
    assert _port_keys("8000-8002") == ["8000/tcp", "8001/tcp", "8002/tcp"]
    with pytest.raises(BuildFailed) as e:
        _port_keys("abc")
    assert str(e.value) == "Invalid containerPort: abc"


def test_builder_provides_the_routers_interface(tmp_path):
    from zope.interface.verify import verifyObject

    from twistedock.backend.build import Builder
    from twistedock.routers.build import IBuildBackend

    assert verifyObject(IBuildBackend, Builder(SyncReactor(), None, None, str(tmp_path)))
