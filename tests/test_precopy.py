"""
The root filesystem pre-copy of a migration (L{twistedock.backend.precopy}):
a prepare export sends the upper directory and remembers what it sent; the
export after the freeze names the files that did not change (hard links to
C{rootfs-precopy/}), which the target links from the prepared container's
upper directory, never from anywhere else.  The real export writer and
import unpacker, on temporary directories.
"""

import io
import json
import os
import tarfile
import time

import pytest

from twistedock.backend import precopy
from twistedock.backend.checkpointtar import install_diff, unpack_checkpoint_export, write_checkpoint_export
from twistedock.errors import InvalidParameter

MANIFEST = {"Version": 1, "Checkpoint": "cp1"}
RECORD = json.dumps({"Config": {"Image": "busybox"}, "Name": "/moved"}).encode()


def export(**kwargs) -> bytes:
    out = io.BytesIO()
    args = dict(checkpoint=None, upper="", files_dir=None)
    args.update(kwargs)
    write_checkpoint_export(out.write, MANIFEST, RECORD, args.pop("checkpoint"), args.pop("upper"), [],
                            args.pop("files_dir"), **args)
    return out.getvalue()


def members(body: bytes) -> dict:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: m for m in tar.getmembers()}


def write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def source(tmp_path):
    upper = tmp_path / "source-upper"
    write(str(upper / "same"), b"unchanged " * 10000)
    write(str(upper / "dir" / "deep"), b"deep and unchanged")
    write(str(upper / "changed"), b"before")
    write(str(upper / "deleted"), b"gone after the freeze")
    os.symlink("same", str(upper / "link"))
    checkpoint = tmp_path / "checkpoint"
    write(str(checkpoint / "pages-1.img"), b"pages")
    return upper, checkpoint


def prepare(tmp_path, upper, monkeypatch):
    """The prepare export (every file old enough to be trusted), unpacked
    and installed as the target's upper directory; what the source
    remembers."""
    monkeypatch.setattr(precopy, "SETTLE_NS", -10 ** 12)
    sent: dict = {}
    body = export(upper=str(upper), record_into=sent)
    assert "checkpoint/pages-1.img" not in members(body)
    staging = str(tmp_path / "staging-prepare")
    unpack_checkpoint_export(io.BytesIO(body), staging, checkpoint=False)
    target = str(tmp_path / "target" / "diff")
    install_diff(staging, target)
    return target, sent


def test_unchanged_files_are_linked_from_the_precopy(tmp_path, source, monkeypatch):
    upper, checkpoint = source
    target, sent = prepare(tmp_path, upper, monkeypatch)
    assert set(sent) == {"same", "dir/deep", "changed", "deleted"}
    # After the freeze: one file changed, one deleted, one new.
    write(str(upper / "changed"), b"after")
    os.unlink(str(upper / "deleted"))
    write(str(upper / "new"), b"new")
    body = export(upper=str(upper), checkpoint=str(checkpoint), files_dir=str(tmp_path), sent=sent)
    found = members(body)
    assert found["rootfs-diff/same"].islnk() and found["rootfs-diff/same"].linkname == "rootfs-precopy/same"
    assert found["rootfs-diff/dir/deep"].linkname == "rootfs-precopy/dir/deep"
    assert found["rootfs-diff/changed"].isreg() and found["rootfs-diff/new"].isreg()
    assert "rootfs-diff/deleted" not in found
    # Far smaller than the files it names.
    assert len(body) < 20000
    staging = str(tmp_path / "staging-final")
    unpack_checkpoint_export(io.BytesIO(body), staging, precopy=target)
    diff = os.path.join(staging, "diff")
    assert read(os.path.join(diff, "same")) == b"unchanged " * 10000
    assert os.stat(os.path.join(diff, "same")).st_ino == os.stat(os.path.join(target, "same")).st_ino
    assert read(os.path.join(diff, "dir", "deep")) == b"deep and unchanged"
    assert read(os.path.join(diff, "changed")) == b"after"
    assert read(os.path.join(diff, "new")) == b"new"
    assert os.readlink(os.path.join(diff, "link")) == "same"
    assert not os.path.exists(os.path.join(diff, "deleted"))
    assert read(os.path.join(staging, "checkpoint", "pages-1.img")) == b"pages"


def test_a_metadata_change_sends_the_file_again(tmp_path, source, monkeypatch):
    upper, checkpoint = source
    target, sent = prepare(tmp_path, upper, monkeypatch)
    os.chmod(str(upper / "same"), 0o600)
    body = export(upper=str(upper), checkpoint=str(checkpoint), files_dir=str(tmp_path), sent=sent)
    assert members(body)["rootfs-diff/same"].isreg()


def test_files_changed_just_before_the_precopy_are_not_trusted(tmp_path, source):
    upper, _ = source
    sent: dict = {}
    os.utime(str(upper / "same"), (time.time() - 3600, time.time() - 3600))
    export(upper=str(upper), record_into=sent)
    # (Their ctime is within SETTLE_NS of the pre-copy: all just written.)
    assert sent == {}


def test_without_a_record_everything_is_sent(tmp_path, source):
    upper, checkpoint = source
    body = export(upper=str(upper), checkpoint=str(checkpoint), files_dir=str(tmp_path))
    assert not any(m.islnk() for m in members(body).values())


def final_with_link(name: str, linkname: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for part, data in (("manifest.json", json.dumps(MANIFEST).encode()), ("container.json", RECORD)):
            info = tarfile.TarInfo(part)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("checkpoint")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        info = tarfile.TarInfo("rootfs-diff/" + name)
        info.type = tarfile.LNKTYPE
        info.linkname = linkname
        tar.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize("linkname", [
    "rootfs-precopy/../../../../etc/passwd",     # climbs out
    "rootfs-precopy/escape/passwd",             # through a symbolic link to /etc
    "rootfs-precopy/dir",                       # a directory
    "rootfs-precopy/missing",                   # not there
])
def test_precopy_links_stay_inside_the_prepared_upper(tmp_path, linkname):
    target = tmp_path / "target"
    write(str(target / "dir" / "file"), b"x")
    os.symlink("/etc", str(target / "escape"))
    with pytest.raises(InvalidParameter):
        unpack_checkpoint_export(io.BytesIO(final_with_link("stolen", linkname)), str(tmp_path / "staging"),
                                 precopy=str(target))
    assert not (tmp_path / "staging" / "diff" / "stolen").exists()


def test_precopy_links_need_a_precopy(tmp_path):
    with pytest.raises(InvalidParameter):
        unpack_checkpoint_export(io.BytesIO(final_with_link("a", "rootfs-precopy/a")), str(tmp_path / "staging"))
