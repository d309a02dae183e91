"""
Checkpoint import (POST /containers/checkpoints/import) unpacks a tar that
came over the network: every way a malicious archive could reach outside
the daemon's directories (C{..}, absolute names, symbolic and hard links
out, device nodes, whiteouts that escape or are misused), in every part of
the archive (C{manifest.json}, C{container.json}, C{checkpoint/},
C{files/}, C{rootfs-diff/}), is refused with a 4xx naming the entry, and
leaves nothing behind: no container, no staging directory, no file
changed anywhere on the machine's side of the test's directory.

The real L{CheckpointBackend} over a stand-in container backend (only what
import calls), in process.
"""

import hashlib
import io
import json
import os
import stat
import tarfile

import pytest
from twisted.internet.defer import DeferredLock, ensureDeferred, succeed

from twistedock import golang
from twistedock.backend.checkpoints import CheckpointBackend, CheckpointStore
from twistedock.backend.containers import State
from twistedock.backend.containers.defaults import IMPORT_PENDING_MARK
from twistedock.errors import NotFound, status_for

OPAQUE_XATTR = "trusted.overlay.opaque"
ROOT = os.geteuid() == 0
#: Deep enough to climb out of the staging directory from anywhere below it.
UP = "../" * 24


class ImportedContainer:
    def __init__(self, ident, directory):
        self.id = ident
        self.short_id = ident[:12]
        self.directory = directory
        self.state = State(running=False)

    def path_of(self, name):
        return os.path.join(self.directory, name)


class ImportingContainers:
    """The parts of the container backend that checkpoint import uses."""

    def __init__(self, root):
        self.root = root
        self.layers_dir = os.path.join(root, "overlay2")
        self.containers = {}
        self.created = []
        self.removed = []
        self._locks = {}
        self.events = []
        self.prepared = []
        os.makedirs(self.layers_dir)

    class images:
        @staticmethod
        def get(ref):
            if ref != "busybox":
                raise NotFound("No such image: %s:latest" % (ref,))

    def run_in_thread(self, function, *args):
        return succeed(function(*args))

    def staging_dir(self, name):
        return os.path.join(self.layers_dir, name)

    async def create(self, name, config, host_config, networking_config, api_version, import_pending=False):
        ident = "%064x" % (len(self.created) + 1)
        directory = os.path.join(self.root, "containers", ident)
        os.makedirs(directory)
        if import_pending:
            with open(os.path.join(directory, IMPORT_PENDING_MARK), "w"):
                pass
        for name_ in ("hostname", "hosts", "resolv.conf"):
            with open(os.path.join(directory, name_), "w") as f:
                f.write("made by the daemon\n")
        os.makedirs(os.path.join(self.layers_dir, ident, "diff"))
        self.containers[ident] = ImportedContainer(ident, directory)
        self.created.append(name)
        return {"Id": ident}

    def get(self, ident):
        return self.containers[ident]

    def by_id(self, ident):
        return self.containers.get(ident)

    def lock(self, c):
        return self._locks.setdefault(c.id, DeferredLock())

    def overlay(self, c):
        return {"UpperDir": os.path.join(self.layers_dir, c.id, "diff")}

    async def remove(self, ident, force, volumes):
        import shutil

        c = self.containers.pop(ident)
        shutil.rmtree(c.directory)
        shutil.rmtree(os.path.join(self.layers_dir, ident))
        self.removed.append(ident)

    def log_event(self, c, action, **extra):
        self.events.append((c.id, action))

    async def prepare_restore(self, ref, checkpoint="", checkpoint_dir=""):
        self.prepared.append(ref)
        return True


# -- archives ---------------------------------------------------------------------


def entry(name, kind="file", data=b"", link="", device=(1, 3), mode=0o644):
    """One tar entry: C{kind} is file, dir, symlink, hardlink, chr, blk or fifo."""
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "blk": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }[kind]
    info.linkname = link
    if kind in ("chr", "blk"):
        info.devmajor, info.devminor = device
    if kind == "dir":
        info.mode = 0o755
    info.size = len(data) if kind == "file" else 0
    return info, data


MANIFEST = entry("manifest.json", data=json.dumps({"Version": 1, "Checkpoint": "cp1"}).encode())
RECORD = entry(
    "container.json", data=json.dumps({"Name": "/moved", "Config": {"Image": "busybox"}}).encode()
)
BENIGN = [
    MANIFEST,
    RECORD,
    entry("checkpoint", "dir"),
    entry("checkpoint/inventory.img", data=b"images"),
    entry("files", "dir"),
    entry("files/hostname", data=b"moved\n"),
    entry("rootfs-diff", "dir"),
    entry("rootfs-diff/etc", "dir"),
    entry("rootfs-diff/etc/marker", data=b"moved\n"),
]


def archive(entries):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def with_attack(attack, replace=()):
    """The benign archive with C{attack}'s entries after its own, and the
    entries named in C{replace} left out (the attack stands in for them)."""
    return archive([e for e in BENIGN if e[0].name not in replace] + list(attack))


# -- the machine around the daemon's directories ----------------------------------------


@pytest.fixture
def machine(tmp_path):
    """C{daemon/} (the data root the backend works in) beside C{outside/}
    (what no archive may touch: a secret, a file a whiteout could remove,
    a JSON file a link could make the importer read)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("do not touch\n")
    (outside / "victim").write_text("still here\n")
    (outside / "record.json").write_text(json.dumps({"Name": "/stolen", "Config": {"Image": "busybox"}}))
    (outside / "dir").mkdir()
    containers = ImportingContainers(str(tmp_path / "daemon"))
    store = CheckpointStore(None, containers.run_in_thread)
    backend = CheckpointBackend(None, containers, store, runtime=None, images=containers.images)
    return backend, containers, tmp_path


def snapshot(top):
    """Every path under C{top}: its kind, mode, content digest, device and
    the overlay xattr, as one comparable value."""
    seen = {}
    for directory, dirs, files in os.walk(top):
        for name in [""] + dirs + files:
            path = os.path.join(directory, name) if name else directory
            st = os.lstat(path)
            digest = ""
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(path)
            try:
                opaque = os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False)
            except OSError:
                opaque = None
            seen[os.path.relpath(path, top)] = (st.st_mode, st.st_nlink, st.st_rdev, digest, opaque)
    return seen


def run_import(backend, body):
    """The import's result, or the error it raised."""
    results = []
    ensureDeferred(backend.import_checkpoint(io.BytesIO(body), "")).addBoth(results.append)
    assert results, "the import did not finish"
    result = results[0]
    return result.value if hasattr(result, "value") else result


def assert_refused(machine, body, message):
    """The import of C{body} is refused (4xx, C{message}) and changes nothing."""
    backend, containers, top = machine
    before = snapshot(str(top))
    error = run_import(backend, body)
    assert isinstance(error, Exception), "the archive was accepted: %r" % (error,)
    assert 400 <= status_for(error) < 500, (status_for(error), error)
    assert str(error) == message
    assert containers.created == [] and containers.events == []
    assert snapshot(str(top)) == before


# -- the harness works ---------------------------------------------------------------------


def test_a_benign_archive_is_imported(machine):
    backend, containers, top = machine
    result = run_import(backend, archive(BENIGN))
    assert result == {"Id": "%064x" % 1, "Checkpoint": "cp1"}
    c = containers.get(result["Id"])
    with open(os.path.join(c.directory, "checkpoints", "cp1", "inventory.img"), "rb") as f:
        assert f.read() == b"images"
    with open(os.path.join(containers.overlay(c)["UpperDir"], "etc", "marker")) as f:
        assert f.read() == "moved\n"
    with open(os.path.join(c.directory, "hostname")) as f:
        assert f.read() == "moved\n"
    assert [n for n in os.listdir(containers.layers_dir) if n.startswith(".import-")] == []


def result_of_import(d):
    results = []
    d.addBoth(results.append)
    assert results, "the import did not finish"
    return results[0].value if hasattr(results[0], "value") else results[0]


def test_a_prepared_import_then_its_checkpoint(machine):
    """Before the freeze the record and the root filesystem's changes make
    the container, marked; after it the checkpoint goes into that container
    (only into one so made and not running)."""
    backend, containers, top = machine
    prepare = archive([MANIFEST, RECORD, entry("rootfs-diff", "dir"), entry("rootfs-diff/kept", data=b"pre\n")])
    made = result_of_import(ensureDeferred(backend.import_checkpoint(io.BytesIO(prepare), "moved", "1.41", True)))
    c = containers.get(made["Id"])
    upper = containers.overlay(c)["UpperDir"]
    assert os.path.exists(c.path_of(IMPORT_PENDING_MARK))
    # runc's state for the restore made ahead of the freeze.
    assert containers.prepared == [c.id]
    assert not os.path.exists(os.path.join(c.directory, "checkpoints"))
    with open(os.path.join(upper, "kept")) as f:
        assert f.read() == "pre\n"
    final = with_attack([entry("rootfs-diff/kept", "hardlink", link="rootfs-precopy/kept")])
    answer = result_of_import(ensureDeferred(backend.import_into(c.id, io.BytesIO(final))))
    assert answer == {"Id": c.id, "Checkpoint": "cp1"}
    with open(os.path.join(c.directory, "checkpoints", "cp1", "inventory.img"), "rb") as f:
        assert f.read() == b"images"
    with open(os.path.join(upper, "kept")) as f:
        assert f.read() == "pre\n"
    with open(os.path.join(upper, "etc", "marker")) as f:
        assert f.read() == "moved\n"
    # (Still marked: only the restore unmarks it.)
    assert os.path.exists(c.path_of(IMPORT_PENDING_MARK))
    os.unlink(c.path_of(IMPORT_PENDING_MARK))
    error = result_of_import(ensureDeferred(backend.import_into(c.id, io.BytesIO(archive(BENIGN)))))
    assert status_for(error) == 409, error
    assert [n for n in os.listdir(containers.layers_dir) if n.startswith(".import-")] == []


# -- names that climb out or are absolute ------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "checkpoint/../../../outside/pwned",
        "checkpoint/" + UP + "outside/pwned",
        "files/../../outside/pwned",
        "rootfs-diff/../../outside/pwned",
        "rootfs-diff/etc/" + UP + "outside/pwned",
        "../container.json",
        "../../manifest.json",
        "/checkpoint/pwned",
        "/files/hostname",
        "/rootfs-diff/pwned",
        "/container.json",
        "/manifest.json",
    ],
)
def test_names_that_climb_out_or_are_absolute(machine, name):
    body = with_attack([entry(name, data=b"{}")])
    assert_refused(machine, body, "invalid entry in checkpoint archive: %s" % (golang.quote(name),))


def test_an_absolute_name_outside_every_part(machine):
    name = str(machine[2] / "outside" / "pwned")
    assert_refused(machine, with_attack([entry(name)]), "invalid entry in checkpoint archive: %s" % (golang.quote(name),))


# -- symbolic links -------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["checkpoint", "files"])
@pytest.mark.parametrize("target", ["absolute", "relative", "inside"])
def test_no_symbolic_link_in_checkpoint_or_files(machine, part, target):
    outside = str(machine[2] / "outside")
    link = {"absolute": outside, "relative": UP + outside.lstrip("/"), "inside": "inventory.img"}[target]
    name = part + "/link"
    body = with_attack([entry(name, "symlink", link=link), entry(name + "/pwned", data=b"x")])
    assert_refused(machine, body, "unexpected entry in checkpoint archive: %s" % (golang.quote(name),))


@pytest.mark.parametrize("part", ["container.json", "manifest.json"])
def test_a_json_part_that_is_a_symbolic_link_is_not_followed(machine, part):
    body = with_attack([entry(part, "symlink", link=str(machine[2] / "outside" / "record.json"))], replace=[part])
    assert_refused(machine, body, "invalid checkpoint archive: no %s" % (part,))


@pytest.mark.parametrize("target", ["absolute", "relative"])
@pytest.mark.parametrize(
    "through",
    ["pwned", "dir/pwned", ".wh.victim", ".wh..wh..opq", "dir/.wh..wh..opq"],
)
def test_nothing_is_written_through_a_symbolic_link_in_rootfs_diff(machine, target, through):
    """A link out is a legitimate file of a container's root filesystem (it
    points into the container once restored) and is kept as image layers
    keep it; but nothing is written, removed or marked through it."""
    outside = str(machine[2] / "outside")
    link = outside if target == "absolute" else UP + outside.lstrip("/")
    body = with_attack(
        [entry("rootfs-diff/link", "symlink", link=link), entry("rootfs-diff/link/" + through, data=b"x")]
    )
    assert_refused(
        machine, body, "invalid checkpoint archive: open /link/%s: no such file or directory" % (through,)
    )


# -- hard links -----------------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["checkpoint", "files"])
def test_no_hard_link_in_checkpoint_or_files(machine, part):
    name = part + "/link"
    for link in (str(machine[2] / "outside" / "secret"), UP + "outside/secret", part + "/inventory.img"):
        body = with_attack([entry(name, "hardlink", link=link)])
        assert_refused(machine, body, "unexpected entry in checkpoint archive: %s" % (golang.quote(name),))


@pytest.mark.parametrize("part", ["container.json", "manifest.json"])
def test_a_json_part_that_is_a_hard_link_is_not_followed(machine, part):
    body = with_attack([entry(part, "hardlink", link=str(machine[2] / "outside" / "record.json"))], replace=[part])
    assert_refused(machine, body, "invalid checkpoint archive: no %s" % (part,))


def test_hard_links_in_rootfs_diff_stay_inside_it(machine):
    secret = str(machine[2] / "outside" / "secret")
    cases = [
        (secret, "invalid entry in checkpoint archive: %s" % (golang.quote(secret),)),
        ("rootfs-diff/" + UP + "outside/secret",
         "invalid entry in checkpoint archive: %s" % (golang.quote("rootfs-diff/" + UP + "outside/secret"),)),
        ("checkpoint/inventory.img", "invalid link in checkpoint archive: \"h\""),
        ("etc/passwd", "invalid link in checkpoint archive: \"h\""),
    ]
    for link, message in cases:
        assert_refused(machine, with_attack([entry("rootfs-diff/h", "hardlink", link=link)]), message)
    # Through a symbolic link out: resolved inside the layer, where it is not.
    body = with_attack([
        entry("rootfs-diff/out", "symlink", link=str(machine[2] / "outside")),
        entry("rootfs-diff/h", "hardlink", link="rootfs-diff/out/secret"),
    ])
    assert_refused(
        machine, body,
        "invalid checkpoint archive: link /out/secret /h: no such file or directory",
    )


# -- device nodes -----------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["checkpoint", "files"])
@pytest.mark.parametrize("kind", ["chr", "blk", "fifo"])
def test_no_device_node_in_checkpoint_or_files(machine, part, kind):
    name = part + "/node"
    body = with_attack([entry(name, kind, device=(8, 0))])
    assert_refused(machine, body, "unexpected entry in checkpoint archive: %s" % (golang.quote(name),))


@pytest.mark.parametrize("part", ["container.json", "manifest.json"])
def test_a_json_part_that_is_a_device_is_not_read(machine, part):
    body = with_attack([entry(part, "chr", device=(1, 8))], replace=[part])
    assert_refused(machine, body, "invalid checkpoint archive: no %s" % (part,))


# -- whiteouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rootfs-diff/.wh..", "rootfs-diff/.wh...", "rootfs-diff/etc/.wh..."])
def test_whiteouts_of_dot_names_are_refused(machine, name):
    shown = name[len("rootfs-diff/"):]
    assert_refused(machine, with_attack([entry(name)]), "invalid checkpoint archive: invalid whiteout %s" % (
        json.dumps(shown),
    ))


@pytest.mark.parametrize("name", ["rootfs-diff/" + UP + ".wh.victim", "rootfs-diff/etc/../../.wh.victim"])
def test_whiteouts_that_climb_out_are_refused(machine, name):
    assert_refused(machine, with_attack([entry(name)]), "invalid entry in checkpoint archive: %s" % (golang.quote(name),))


@pytest.mark.skipif(not ROOT, reason="whiteouts are device nodes and trusted xattrs: root only")
def test_whiteouts_and_opaque_markers_act_only_inside_the_layer(machine):
    """A whiteout removes what it names in the layer being built and makes
    a 0/0 device there; an opaque marker marks its own directory there."""
    backend, containers, top = machine
    outside_before = snapshot(str(top / "outside"))
    body = with_attack([
        entry("rootfs-diff/victim", data=b"in the layer\n"),
        entry("rootfs-diff/.wh.victim"),
        entry("rootfs-diff/etc/.wh..wh..opq"),
        entry("rootfs-diff/out", "symlink", link=str(top / "outside")),
        entry("rootfs-diff/.wh.out"),
    ])
    result = run_import(backend, body)
    assert isinstance(result, dict), result
    upper = containers.overlay(containers.get(result["Id"]))["UpperDir"]
    st = os.lstat(os.path.join(upper, "victim"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    st = os.lstat(os.path.join(upper, "out"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(upper, "etc"), OPAQUE_XATTR) == b"y"
    assert snapshot(str(top / "outside")) == outside_before


# -- collisions inside the archive ------------------------------------------------------------


@pytest.mark.parametrize("part", ["checkpoint", "files"])
def test_a_file_then_a_directory_of_the_same_name(machine, part):
    body = with_attack([entry(part + "/clash", data=b"x"), entry(part + "/clash/inner", data=b"y")])
    assert_refused(
        machine, body, "invalid checkpoint archive: %s clashes with an earlier entry" % (golang.quote(part + "/clash/inner"),)
    )
