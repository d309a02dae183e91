"""rootfs.write_etc_files: the container's hostname, hosts and resolv.conf,
written again only where they differ."""

import os

from twistedock.backend.runtime import rootfs


def _write(directory, hostname="web", extra_hosts=()):
    host_resolv = os.path.join(directory, "host-resolv.conf")
    if not os.path.exists(host_resolv):
        with open(host_resolv, "w") as f:
            f.write("nameserver 10.1.2.3\n")
    rootfs.write_etc_files(str(directory), hostname, "", "none", list(extra_hosts), None, None, None,
                           host_resolv)


def _inodes(directory):
    return {name: os.stat(os.path.join(directory, name)).st_ino for name in ("hostname", "hosts", "resolv.conf")}


def test_unchanged_files_are_left_as_they_are(tmp_path):
    _write(tmp_path)
    before = _inodes(tmp_path)
    _write(tmp_path)
    assert _inodes(tmp_path) == before
    assert (tmp_path / "hostname").read_text() == "web\n"


def test_a_changed_file_is_replaced_and_the_others_kept(tmp_path):
    _write(tmp_path)
    before = _inodes(tmp_path)
    _write(tmp_path, hostname="db", extra_hosts=["cache:10.0.0.9"])
    after = _inodes(tmp_path)
    assert after["hostname"] != before["hostname"] and after["hosts"] != before["hosts"]
    assert after["resolv.conf"] == before["resolv.conf"]
    assert (tmp_path / "hostname").read_text() == "db\n"
    assert "10.0.0.9\tcache\n" in (tmp_path / "hosts").read_text()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_a_file_with_another_mode_is_written_again(tmp_path):
    _write(tmp_path)
    os.chmod(tmp_path / "hosts", 0o600)
    _write(tmp_path)
    assert os.stat(tmp_path / "hosts").st_mode & 0o777 == 0o644
