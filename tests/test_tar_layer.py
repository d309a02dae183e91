"""A container's own layer against its image's layers: the changes docker
diff reports and the layer tar commit writes (twistedock.tar.layer)."""


import io
import os
import stat
import tarfile

import pytest

from twistedock.tar import read
from twistedock.tar.extract import unpack_layer
from twistedock.tar.layer import ADDED, DELETED, MODIFIED, LowerView, changes_of, write_layer

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="device nodes, owners and trusted xattrs need root")

MTIME_NS = 1_700_000_000_500_000_000


from .test_copies import collect, members

# -- changes and the commit layer --------------------------------------------------------


def _whiteout(path):
    os.mknod(str(path), stat.S_IFCHR | 0o600, os.makedev(0, 0))


@pytest.fixture
def layers(tmp_path):
    """An image of two layers and a container's upper directory."""
    base = tmp_path / "base"
    top = tmp_path / "top"
    upper = tmp_path / "upper"
    for directory in (base, top, upper):
        directory.mkdir()
    for rel in ("bin", "etc", "home/app", "tmp", "gone/deep"):
        (base / rel).mkdir(parents=True)
    for rel in ("bin/ls", "bin/cat", "etc/passwd", "etc/group", "home/app/x", "gone/deep/f", "same"):
        (base / rel).write_text(rel)
    (top / "etc").mkdir()
    (top / "etc/motd").write_text("hi")
    return base, top, upper


def stamp_like(src, dst):
    st = os.lstat(str(src))
    os.chmod(str(dst), stat.S_IMODE(st.st_mode))
    os.utime(str(dst), ns=(st.st_atime_ns, st.st_mtime_ns))


@needs_root
def test_changes_as_dockerd_reports_them(layers):
    base, top, upper = layers
    # Modified, deleted, added; the directories on the way as dockerd shows them.
    (upper / "etc").mkdir()
    stamp_like(top / "etc", upper / "etc")
    (upper / "etc/passwd").write_text("changed")
    _whiteout(upper / "etc/group")
    # runc's mount points: the init layer's, not changes.
    for stub in ("hosts", "hostname", "resolv.conf"):
        (upper / "etc" / stub).write_text("")
    (upper / "proc").mkdir()
    (upper / "bin").mkdir()
    stamp_like(base / "bin", upper / "bin")
    _whiteout(upper / "bin/ls")
    (upper / "home").mkdir()
    stamp_like(base / "home", upper / "home")
    os.setxattr(str(upper / "home"), read.OPAQUE_XATTR, b"y")
    (upper / "home/n").write_text("n")
    (upper / "a").mkdir()
    (upper / "a/b").write_text("b")
    (upper / "a.txt").write_text("")
    _whiteout(upper / "gone")
    _whiteout(upper / "never-existed")
    # A copy-up that changed nothing.
    (upper / "same").write_text("same")
    stamp_like(base / "same", upper / "same")
    os.chown(str(upper / "same"), 0, 0)

    # In the order of dockerd's walk (not sorted): depth first, a directory
    # before what is inside it, its deletions after its other changes.
    assert changes_of(str(upper), [str(base), str(top)]) == [
        {"Path": p, "Kind": k}
        for p, k in [
            ("/a", ADDED),
            ("/a/b", ADDED),
            ("/a.txt", ADDED),
            ("/bin", MODIFIED),
            ("/bin/ls", DELETED),
            ("/etc", MODIFIED),
            ("/etc/passwd", MODIFIED),
            ("/etc/group", DELETED),
            ("/home", MODIFIED),
            ("/home/n", ADDED),
            ("/home/app", DELETED),
            ("/gone", DELETED),
        ]
    ]
    assert changes_of(str(upper.parent / "nothing"), [str(base)]) == []


@needs_root
def test_lower_view_honours_whiteouts_and_opaque_directories(layers):
    base, top, _ = layers
    _whiteout(top / "etc/passwd")
    (top / "home").mkdir()
    os.setxattr(str(top / "home"), read.OPAQUE_XATTR, b"y")
    (top / "home/new").write_text("")
    view = LowerView([str(base), str(top)])
    assert view.lstat(["etc", "passwd"]) is None
    assert view.lstat(["etc", "group"]) is not None
    assert view.lstat(["etc", "motd"]) is not None
    assert view.lstat(["home", "app"]) is None
    assert view.listdir(["etc"]) == ["group", "motd"]
    assert view.listdir(["home"]) == ["new"]


@needs_root
def test_the_commit_layer_writes_oci_whiteouts(layers, tmp_path):
    base, top, upper = layers
    (upper / "etc").mkdir()
    _whiteout(upper / "etc/group")
    (upper / "etc/hosts").write_text("")
    (upper / "home").mkdir()
    os.setxattr(str(upper / "home"), read.OPAQUE_XATTR, b"y")
    (upper / "home/n").write_text("n")
    (upper / "new").write_text("new")
    data = collect(write_layer, str(upper), [str(base), str(top)])
    assert members(data) == [
        ("etc", tarfile.DIRTYPE, 0),
        ("etc/.wh.group", tarfile.REGTYPE, 0),
        ("home", tarfile.DIRTYPE, 0),
        ("home/.wh..wh..opq", tarfile.REGTYPE, 0),
        ("home/n", tarfile.REGTYPE, 1),
        ("new", tarfile.REGTYPE, 3),
    ]
    # The image store unpacks it back into overlayfs' own format.
    out = tmp_path / "unpacked"
    out.mkdir()
    unpack_layer(io.BytesIO(data), str(out))
    st = os.lstat(str(out / "etc/group"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(str(out / "home"), read.OPAQUE_XATTR) == b"y"
    assert not (out / "etc/hosts").exists()
    # Nothing changed: an empty layer, Go's 1024 zero bytes.
    empty = tmp_path / "empty-upper"
    empty.mkdir()
    assert collect(write_layer, str(empty), [str(base)]) == b"\0" * 1024


@needs_root
def test_the_init_layer_is_below_the_containers_own(layers, tmp_path):
    # dockerd's init layer: its files in every root, never a change nor committed.
    from twistedock.backend.runtime.rootfs import make_init_layer

    base, top, upper = layers
    init = tmp_path / "init"
    make_init_layer(str(init))
    make_init_layer(str(init))  # (idempotent: made again at each start)
    assert os.readlink(str(init / "etc/mtab")) == "/proc/mounts"
    for rel in (".dockerenv", "dev/console", "etc/hosts", "etc/hostname", "etc/resolv.conf"):
        st = os.lstat(str(init / rel))
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and st.st_size == 0, rel
    for rel in ("dev/pts", "dev/shm", "proc", "sys"):
        assert stat.filemode(os.lstat(str(init / rel)).st_mode) == "drwxr-xr-x", rel
    lower = [str(base), str(top), str(init)]
    assert changes_of(str(upper), lower) == []
    (upper / "etc").mkdir()
    stamp_like(init / "etc", upper / "etc")
    _whiteout(upper / "etc/mtab")
    (upper / "x").write_text("x")
    assert changes_of(str(upper), lower) == [
        {"Path": "/etc", "Kind": MODIFIED},
        {"Path": "/etc/mtab", "Kind": DELETED},
        {"Path": "/x", "Kind": ADDED},
    ]
    buf = io.BytesIO()
    write_layer(str(upper), lower, buf.write)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        assert sorted(tar.getnames()) == ["etc", "etc/.wh.mtab", "x"]
