"""Safe tar extraction into layer directories (twistedock.tar.extract)."""

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile

import pytest

from twistedock.tar import extract, read

MTIME = 1_700_000_000


def entry(
    name,
    kind=tarfile.REGTYPE,
    data=b"",
    linkname="",
    mode=0o644,
    uid=0,
    gid=0,
    mtime=MTIME,
    pax=None,
    devmajor=0,
    devminor=0,
):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.mtime = mtime
    info.devmajor = devmajor
    info.devminor = devminor
    if pax:
        info.pax_headers = dict(pax)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, data


def make_tar(entries) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return out.getvalue()


@pytest.fixture
def layer(tmp_path):
    """An empty layer directory beside an 'outside' directory the tests
    check is never touched."""
    root = tmp_path / "layer"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("untouched")
    os.chmod(outside / "secret", 0o600)
    return root, outside


def unpack(root, entries):
    data = make_tar(entries)
    return extract.unpack_layer(io.BytesIO(data), str(root)), data


def assert_outside_untouched(outside):
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_text() == "untouched"
    assert stat.S_IMODE(os.lstat(outside / "secret").st_mode) == 0o600


# -- escapes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, message",
    [
        ("../escape", '"../escape" is outside of "/"'),
        ("a/../../escape", '"a/../../escape" is outside of "/"'),
        ("./../../../../escape", '"./../../../../escape" is outside of "/"'),
        ("/abs", '"/abs" is an absolute path'),
    ],
)
def test_names_that_escape_are_refused(layer, name, message):
    root, outside = layer
    with pytest.raises(read.BreakoutError) as caught:
        unpack(root, [entry("ok", data=b"x"), entry(name, data=b"bad")])
    assert str(caught.value) == message
    assert not (root.parent / "escape").exists()
    assert_outside_untouched(outside)


def test_dotdot_that_stays_inside_is_fine(layer):
    root, _ = layer
    unpack(root, [entry("a/", tarfile.DIRTYPE, mode=0o755), entry("a/../b", data=b"x")])
    assert (root / "b").read_bytes() == b"x"


def test_symlink_parent_is_resolved_inside_the_root(layer):
    root, outside = layer
    # a -> <outside>, then a/secret: dockerd's chroot resolves the link inside
    # the root, where <outside> does not exist: refused, nothing written.
    with pytest.raises(read.ArchiveError) as caught:
        unpack(
            root,
            [entry("a", tarfile.SYMTYPE, linkname=str(outside)), entry("a/secret", data=b"pwned")],
        )
    assert "no such file or directory" in str(caught.value)
    assert_outside_untouched(outside)
    assert os.readlink(root / "a") == str(outside)


def test_symlink_to_etc_writes_inside_the_layer(layer):
    root, outside = layer
    unpack(
        root,
        [
            entry("etc/", tarfile.DIRTYPE, mode=0o755),
            entry("a", tarfile.SYMTYPE, linkname="/etc"),
            entry("a/passwd", data=b"inside"),
        ],
    )
    assert (root / "etc" / "passwd").read_bytes() == b"inside"
    assert os.path.islink(root / "a")


def test_relative_symlink_climbing_stops_at_the_root(layer):
    root, outside = layer
    unpack(
        root,
        [
            entry("d/", tarfile.DIRTYPE, mode=0o755),
            entry("d/up", tarfile.SYMTYPE, linkname="../../../../.."),
            entry("d/up/file", data=b"clamped"),
        ],
    )
    assert (root / "file").read_bytes() == b"clamped"
    assert_outside_untouched(outside)


def test_symlink_loop_is_an_error(layer):
    root, _ = layer
    with pytest.raises(read.ArchiveError) as caught:
        unpack(
            root,
            [
                entry("a", tarfile.SYMTYPE, linkname="b"),
                entry("b", tarfile.SYMTYPE, linkname="a"),
                entry("a/x", data=b"x"),
            ],
        )
    assert "too many levels of symbolic links" in str(caught.value)


def test_symlinks_are_stored_whatever_they_point_at(layer):
    root, outside = layer
    unpack(
        root,
        [
            entry("abs", tarfile.SYMTYPE, linkname=str(outside / "secret")),
            entry("rel", tarfile.SYMTYPE, linkname="../../../etc"),
        ],
    )
    assert os.readlink(root / "abs") == str(outside / "secret")
    assert os.readlink(root / "rel") == "../../../etc"


def test_entry_replacing_a_symlink_does_not_follow_it(layer):
    root, outside = layer
    unpack(
        root,
        [
            entry("s", tarfile.SYMTYPE, linkname=str(outside / "secret")),
            entry("s", data=b"new file", mode=0o600),
        ],
    )
    assert not os.path.islink(root / "s")
    assert (root / "s").read_bytes() == b"new file"
    assert_outside_untouched(outside)


def test_hardlink_escaping_is_refused(layer):
    root, outside = layer
    with pytest.raises(read.BreakoutError) as caught:
        unpack(root, [entry("h", tarfile.LNKTYPE, linkname="../outside/secret")])
    assert str(caught.value) == 'invalid hardlink "/h" -> "../outside/secret"'
    assert_outside_untouched(outside)


def test_hardlink_through_a_symlink_stays_inside(layer):
    root, outside = layer
    # s -> <outside>: a hard link to s/secret resolves s inside the root.
    with pytest.raises(read.ArchiveError) as caught:
        unpack(
            root,
            [
                entry("s", tarfile.SYMTYPE, linkname=str(outside)),
                entry("h", tarfile.LNKTYPE, linkname="s/secret"),
            ],
        )
    assert str(caught.value) == "link /s/secret /h: no such file or directory"
    assert_outside_untouched(outside)


def test_hardlink_to_a_symlink_never_chmods_its_target(layer):
    root, outside = layer
    unpack(
        root,
        [
            entry("s", tarfile.SYMTYPE, linkname=str(outside / "secret")),
            entry("h", tarfile.LNKTYPE, linkname="s", mode=0o777),
        ],
    )
    assert os.path.islink(root / "h")
    assert os.lstat(root / "h").st_ino == os.lstat(root / "s").st_ino
    assert_outside_untouched(outside)


def test_hardlink_to_a_missing_target(layer):
    root, _ = layer
    with pytest.raises(read.ArchiveError) as caught:
        unpack(root, [entry("g", tarfile.LNKTYPE, linkname="nothere")])
    assert str(caught.value) == "link /nothere /g: no such file or directory"


def test_hardlinks_within_the_layer(layer):
    root, _ = layer
    unpack(
        root,
        [
            entry("d/f", data=b"hello"),
            entry("g", tarfile.LNKTYPE, linkname="d/f"),
            entry("h", tarfile.LNKTYPE, linkname="/d/f"),
        ],
    )
    assert os.stat(root / "g").st_ino == os.stat(root / "d" / "f").st_ino
    assert os.stat(root / "h").st_ino == os.stat(root / "d" / "f").st_ino
    assert os.stat(root / "g").st_nlink == 3
    assert extract.directory_size(str(root)) == 5


# -- whiteouts ----------------------------------------------------------------


def test_whiteout_becomes_an_overlay_character_device(layer):
    root, _ = layer
    unpack(
        root,
        [
            entry("d/", tarfile.DIRTYPE, mode=0o755),
            entry("d/.wh.gone", uid=12, gid=34),
            entry(".wh.top"),
        ],
    )
    for path in (root / "d" / "gone", root / "top"):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode)
        assert st.st_rdev == 0
        assert stat.S_IMODE(st.st_mode) == 0
    assert os.lstat(root / "d" / "gone").st_uid == 12
    assert os.lstat(root / "d" / "gone").st_gid == 34
    assert not (root / "d" / ".wh.gone").exists()


def test_opaque_directory(layer):
    root, _ = layer
    unpack(
        root,
        [
            entry("d/", tarfile.DIRTYPE, mode=0o755),
            entry("d/.wh..wh..opq"),
            entry("d/kept", data=b"k"),
        ],
    )
    assert os.getxattr(root / "d", read.OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(root / "d")) == ["kept"]


def test_opaque_marker_creates_its_directory(layer):
    root, _ = layer
    unpack(root, [entry("new/.wh..wh..opq")])
    assert os.getxattr(root / "new", read.OPAQUE_XATTR) == b"y"


def test_aufs_metadata_is_skipped(layer):
    root, _ = layer
    unpack(
        root,
        [
            entry(".wh..wh.plnk/", tarfile.DIRTYPE, mode=0o700),
            entry(".wh..wh.plnk/1234.5678", data=b"x"),
            entry(".wh..wh.aufs", data=b"x"),
            entry("f", data=b"f"),
        ],
    )
    assert sorted(os.listdir(root)) == ["f"]


# -- what is kept -------------------------------------------------------------


def test_modes_owners_times_and_special_files(layer):
    root, _ = layer
    unpack(
        root,
        [
            entry("dir/", tarfile.DIRTYPE, mode=0o750, uid=7, gid=8, mtime=1_600_000_000),
            entry(
                "dir/suid",
                data=b"#!/bin/sh\n",
                mode=0o4755,
                uid=1000,
                gid=1000,
                mtime=1_500_000_000,
            ),
            entry("dir/link", tarfile.SYMTYPE, linkname="suid", uid=5, gid=6, mtime=1_400_000_000),
            entry("fifo", tarfile.FIFOTYPE, mode=0o640),
            entry("null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
            entry("loop", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=0),
            entry("precise", data=b"p", pax={"mtime": "1700000000.123456789"}),
            entry("xattr", data=b"x", pax={"SCHILY.xattr.user.note": "hello"}),
        ],
    )
    st = os.lstat(root / "dir")
    assert stat.S_IMODE(st.st_mode) == 0o750 and (st.st_uid, st.st_gid) == (7, 8)
    # Written into after it was made, and still carries the tar's mtime.
    assert st.st_mtime == 1_600_000_000
    st = os.lstat(root / "dir" / "suid")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (1000, 1000)
    assert st.st_mtime == 1_500_000_000
    st = os.lstat(root / "dir" / "link")
    assert stat.S_ISLNK(st.st_mode) and (st.st_uid, st.st_gid) == (5, 6)
    assert st.st_mtime == 1_400_000_000
    assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(root / "fifo").st_mode) == 0o640
    st = os.lstat(root / "null")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    st = os.lstat(root / "loop")
    assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (7, 0)
    assert os.lstat(root / "precise").st_mtime_ns == 1_700_000_000_123_456_789
    assert os.getxattr(root / "xattr", "user.note") == b"hello"


def test_later_entries_replace_earlier_ones(layer):
    root, _ = layer
    unpack(
        root,
        [
            entry("x/", tarfile.DIRTYPE, mode=0o755),
            entry("x/inner", data=b"1"),
            entry("x", data=b"now a file"),
            entry("y", data=b"a file"),
            entry("y/", tarfile.DIRTYPE, mode=0o700),
            entry("z/", tarfile.DIRTYPE, mode=0o755),
            entry("z/kept", data=b"k"),
            entry("z/", tarfile.DIRTYPE, mode=0o711),
        ],
    )
    assert (root / "x").read_bytes() == b"now a file"
    assert (root / "y").is_dir()
    assert (root / "z" / "kept").read_bytes() == b"k"
    assert stat.S_IMODE(os.lstat(root / "z").st_mode) == 0o711


def test_missing_parents_are_made(layer):
    root, _ = layer
    unpack(root, [entry("a/b/c/file", data=b"deep")])
    assert (root / "a" / "b" / "c" / "file").read_bytes() == b"deep"
    assert stat.S_IMODE(os.lstat(root / "a").st_mode) == 0o755


def test_root_entry_keeps_the_layer_root(layer):
    root, _ = layer
    os.chmod(root, 0o755)
    unpack(root, [entry("./", tarfile.DIRTYPE, mode=0o700), entry("./f", data=b"f")])
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o755
    assert (root / "f").read_bytes() == b"f"


# -- streams ------------------------------------------------------------------


@pytest.mark.parametrize(
    "compress",
    [lambda b: b, gzip.compress, bz2.compress, lzma.compress],
    ids=["plain", "gzip", "bzip2", "xz"],
)
def test_diff_id_is_the_digest_of_the_uncompressed_stream(tmp_path, compress):
    data = make_tar([entry("f", data=b"content" * 1000)])
    diff_id = extract.unpack_layer(io.BytesIO(compress(data)), str(tmp_path))
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (tmp_path / "f").read_bytes() == b"content" * 1000


def test_trailing_data_counts_in_the_digest(tmp_path):
    data = make_tar([entry("f", data=b"x")]) + b"\0" * 4096
    assert extract.unpack_layer(io.BytesIO(data), str(tmp_path)) == (
        "sha256:" + hashlib.sha256(data).hexdigest()
    )


def test_empty_stream_is_an_empty_layer(tmp_path):
    assert extract.unpack_layer(io.BytesIO(b""), str(tmp_path)) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert os.listdir(tmp_path) == []


def test_garbage_is_an_error(tmp_path):
    with pytest.raises(read.ArchiveError) as caught:
        extract.unpack_layer(io.BytesIO(b"garbage\n"), str(tmp_path))
    assert str(caught.value) == "unexpected EOF"
    with pytest.raises(read.ArchiveError) as caught:
        extract.unpack_layer(io.BytesIO(b"x" * 2048), str(tmp_path))
    assert str(caught.value) == "archive/tar: invalid tar header"


def test_truncated_stream_is_an_error(tmp_path):
    data = make_tar([entry("f", data=b"y" * 10000)])
    with pytest.raises(read.ArchiveError) as caught:
        extract.unpack_layer(io.BytesIO(data[:2048]), str(tmp_path))
    assert str(caught.value) == "unexpected EOF"


def test_corrupt_gzip_is_an_error(tmp_path):
    data = gzip.compress(make_tar([entry("f", data=b"z" * 10000)]))
    with pytest.raises(read.ArchiveError):
        extract.unpack_layer(io.BytesIO(data[: len(data) // 2]), str(tmp_path))


def test_directory_size_is_dockerds(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"12345")
    os.link(tmp_path / "d" / "a", tmp_path / "b")
    os.symlink("a-target", tmp_path / "c")
    (tmp_path / "empty").write_bytes(b"")
    # Directories and empty files count nothing, a hard link once, a
    # symbolic link its target's length.
    assert extract.directory_size(str(tmp_path)) == 5 + len("a-target")
