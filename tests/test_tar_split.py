"""A layer's tar recorded while it is unpacked (tar-split) and given out
again byte for byte from the record and the unpacked files."""

import gzip
import hashlib
import io
import os
import tarfile

import pytest

from twistedock.tar import extract, split


def unpacked(tmp_path, data: bytes):
    diff = tmp_path / "diff"
    diff.mkdir()
    record = tmp_path / "tar-split.json.gz"
    with open(record, "wb") as f:
        diff_id = extract.unpack_layer(io.BytesIO(data), str(diff), f)
    return diff_id, str(record), str(diff)


def assembled(record, diff):
    out = io.BytesIO()
    digest, size = split.assemble(record, diff, out.write)
    return out.getvalue(), digest, size


def layer(fmt=tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:

        def add(name, data=None, **fields):
            info = tarfile.TarInfo(name)
            for key, value in fields.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)

        add("bin/", type=tarfile.DIRTYPE, mode=0o755)
        add("bin/tool", os.urandom(70_000), mode=0o755)
        add("bin/sh", type=tarfile.SYMTYPE, linkname="tool")
        add("bin/hard", type=tarfile.LNKTYPE, linkname="bin/tool")
        add("deep/" + "long-name-" * 20, b"a file with a long name\n")
        add("deep/.wh.gone")
        add("deep/.wh..wh..opq")
        add("empty")
        add(".wh..wh.plnk/123", b"aufs metadata with content")
        add("ü/file", b"xyz", pax_headers={"mtime": "1.5"} if fmt == tarfile.PAX_FORMAT else {})
    return out.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_a_layer_comes_back_byte_for_byte(tmp_path, fmt):
    data = layer(fmt)
    diff_id, record, diff = unpacked(tmp_path, data)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    tar, digest, size = assembled(record, diff)
    assert tar == data
    assert (digest, size, split.tar_size(record)) == (diff_id, len(data), len(data))
    # The record holds headers, not content.
    assert os.path.getsize(record) < 4096


def test_compressed_and_trailing_data_and_empty_layers(tmp_path):
    data = layer() + b"trailing bytes after the end blocks" * 10
    for i, (given, uncompressed) in enumerate(((gzip.compress(data), data), (b"", b""))):
        base = tmp_path / str(i)
        base.mkdir()
        diff_id, record, diff = unpacked(base, given)
        tar, digest, _ = assembled(record, diff)
        assert tar == uncompressed
        assert digest == diff_id == "sha256:" + hashlib.sha256(uncompressed).hexdigest()


def test_a_changed_layer_is_not_given_out_as_it_was(tmp_path):
    diff_id, record, diff = unpacked(tmp_path, layer())
    with open(os.path.join(diff, "bin", "tool"), "r+b") as f:
        f.write(b"changed")
    _, digest, _ = assembled(record, diff)
    assert digest != diff_id
    os.unlink(os.path.join(diff, "ü", "file"))
    with pytest.raises(split.SplitError):
        assembled(record, diff)
    with pytest.raises(split.SplitError):
        split.tar_size(str(tmp_path / "missing.json.gz"))
