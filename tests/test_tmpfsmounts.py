"""
The tmpfs mounts a dump names external (L{tmpfsmounts}): which, their
listing, a change seen at post-dump, their content made again for the
restore; and the dump taken again with CRIU's tar when one changed.
"""

import json
import os
import stat

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred

from twistedock.backend.runtime import criuopts, rootfs, tmpfsmounts

from .test_criurpc import fake_criu, messages  # noqa: F401

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")

MS_PRIVATE = 1 << 18


def _private_tmpfs(source, place, flags, data):
    rootfs.mount(source, str(place), "tmpfs", flags, data)
    # (Not a peer of its parent's group: a container's own mounts are not.)
    rootfs.mount("none", str(place), "", MS_PRIVATE, "")


@pytest.fixture
def dev(tmp_path):
    """A tmpfs as runc makes /dev: a device node, symbolic links,
    directories, an empty file, and another tmpfs on one directory."""
    place = tmp_path / "dev"
    place.mkdir()
    _private_tmpfs("tmpfs", place, rootfs.MS_NOSUID, "size=1024k,mode=755")
    try:
        os.mknod(place / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod(place / "null", 0o666)
        os.symlink("/proc/self/fd", place / "fd")
        os.symlink("pts/ptmx", place / "ptmx")
        (place / "pts").mkdir()
        (place / "shm").mkdir()
        (place / "console").touch()
        os.chown(place / "console", 5, 6)
        _private_tmpfs("shm", place / "shm", rootfs.MS_NOSUID | rootfs.MS_NODEV | rootfs.MS_NOEXEC,
                       "size=64k,mode=1777")
        yield str(place)
    finally:
        rootfs.detach(str(place / "shm"))
        rootfs.detach(str(place))


def _records(place):
    found = {r["mountpoint"]: r for r in tmpfsmounts.plan(os.getpid(), []) if r["mountpoint"].startswith(place)}
    return found


@needs_root
def test_a_tmpfs_of_nodes_links_and_empty_files_is_planned_external(dev):
    records = _records(dev)
    assert sorted(records) == [dev, dev + "/shm"]
    top = records[dev]
    assert top["source"] == "tmpfs" and top["flags"] == ["nosuid"] and "size=1024k" in top["options"]
    assert not top["read_only"]
    entries = {e[0]: e for e in top["entries"]}
    assert sorted(entries) == [".", "/console", "/fd", "/null", "/ptmx", "/pts", "/shm"]
    assert entries["/null"][1:6] == ["c", 0o666, 0, 0, os.makedev(1, 3)]
    assert entries["/fd"][1] == "l" and entries["/fd"][6] == "/proc/self/fd"
    assert entries["/console"][1] == "f" and entries["/console"][3:5] == [5, 6]
    # Another mount's place: its content is its mount's (listed apart).
    assert entries["/shm"][1] == "m"
    shm = records[dev + "/shm"]
    assert shm["source"] == "shm" and shm["flags"] == ["nosuid", "nodev", "noexec"]
    assert [e[0] for e in shm["entries"]] == ["."] and shm["entries"][0][2] == 0o1777
    # Named external by its place, restored from its key.
    assert tmpfsmounts.names_external([top]) == [{"key": dev, "val": top["key"]}]
    assert top["key"].startswith(tmpfsmounts.KEY_PREFIX) and top["key"] != shm["key"]


@needs_root
def test_what_a_listing_cannot_make_again_stays_criu_s(dev):
    with open(dev + "/shm/data", "w") as f:
        f.write("kept")
    os.mkfifo(dev + "/pts/fifo")
    assert _records(dev) == {}
    os.unlink(dev + "/pts/fifo")
    os.link(dev + "/console", dev + "/console2")
    assert list(_records(dev)) == []
    os.unlink(dev + "/console2")
    assert sorted(_records(dev)) == [dev]
    # Already external (a bind, a masked directory): left as it is.
    assert [r for r in tmpfsmounts.plan(os.getpid(), [dev]) if r["mountpoint"].startswith(dev)] == []


@needs_root
def test_a_change_after_the_listing_is_seen(dev):
    records = list(_records(dev).values())
    assert tmpfsmounts.changed(os.getpid(), records) == []
    with open(dev + "/shm/late", "w") as f:
        f.write("written before the freeze")
    assert tmpfsmounts.changed(os.getpid(), records) == [dev + "/shm"]
    # (Gone again, it leaves its directory's time changed.)
    os.unlink(dev + "/shm/late")
    os.utime(dev + "/null", ns=(1, 1))
    assert tmpfsmounts.changed(os.getpid(), records) == [dev, dev + "/shm"]


@needs_root
def test_the_listing_made_again_in_a_tmpfs_of_the_daemon_s(dev, tmp_path):
    records = list(_records(dev).values())
    images = tmp_path / "images"
    images.mkdir()
    tmpfsmounts.write_record(str(images), records)
    base = str(tmp_path / "sources")
    sources = tmpfsmounts.make_sources(str(images), base)
    try:
        assert sorted(sources) == sorted(r["key"] for r in records)
        for record in records:
            made = sources[record["key"]]
            assert os.path.ismount(made)
            covered = [made + e[0] for e in record["entries"] if e[1] in ("m", "M")]
            assert tmpfsmounts.listing(os.getpid(), made, covered) == record["entries"]
            options = [m for m in tmpfsmounts.mountinfo(os.getpid()) if m["mountpoint"] == made][0]
            original = [m for m in tmpfsmounts.mountinfo(os.getpid()) if m["mountpoint"] == record["mountpoint"]][0]
            assert options["source"] == original["source"]
            assert sorted(options["super"]) == sorted(original["super"])
            assert [o for o in options["options"] if o in tmpfsmounts.MOUNT_FLAGS] == record["flags"]
    finally:
        tmpfsmounts.sweep(base)
    assert not os.path.exists(base)


@needs_root
def test_a_read_only_file_system_made_read_only_once_filled(tmp_path):
    record = {"key": tmpfsmounts.key(0), "mountpoint": "/sys/fs/cgroup", "source": "tmpfs",
              "options": ["mode=755"], "read_only": True, "flags": [],
              "entries": [[".", "d", 0o755, 0, 0, 0, "", 10 ** 18], ["/cpu", "d", 0o555, 0, 0, 0, "", 10 ** 18],
                          ["/cpuacct", "l", 0o777, 0, 0, 0, "cpu", 10 ** 18]]}
    target = tmp_path / "made"
    target.mkdir()
    tmpfsmounts.recreate(record, str(target))
    try:
        assert os.readlink(target / "cpuacct") == "cpu"
        assert stat.S_IMODE(os.stat(target / "cpu").st_mode) == 0o555
        assert os.stat(target).st_mtime_ns == 10 ** 18
        with pytest.raises(OSError):
            (target / "new").mkdir()
    finally:
        tmpfsmounts.release([str(target)])
    assert not target.exists()


def test_the_restore_maps_each_key_to_its_source(tmp_path):
    from .test_criurpc import _state

    state = _state(tmp_path, os.getpid())
    options = criuopts.restore_options(state, [], images_dir_fd=9, work_dir_fd=10, root="/r", netns_fd=None,
                                       tcp_established=True, file_locks=True,
                                       tmpfs_sources={"twistedock-tmpfs-1": "/s/b", "twistedock-tmpfs-0": "/s/a"})
    assert options["ext_mnt"][-2:] == [{"key": "twistedock-tmpfs-0", "val": "/s/a"},
                                       {"key": "twistedock-tmpfs-1", "val": "/s/b"}]
    assert tmpfsmounts.read_record(str(tmp_path)) == []


def test_a_runc_restore_is_told_the_sources_in_its_configuration(tmp_path):
    from twistedock.backend.restoreplan import RESTORE_CONFIG, RestorePlan
    from twistedock.errors import InternalError

    images = tmp_path / "images"
    images.mkdir()
    (images / tmpfsmounts.RECORD).write_text("[]")
    made = []

    class Driver:
        def masked_source(self):
            return None

        def tmpfs_sources(self, directory):
            made.append(directory)
            return {"twistedock-tmpfs-0": "/run/td/criu/tmpfs/x"}

    plan = RestorePlan(str(images), "/opt/criu", rpc=Driver())
    spec = {}
    plan.adjust_spec(spec, str(tmp_path))
    text = (tmp_path / RESTORE_CONFIG).read_text()
    assert "ext-mount-map=twistedock-tmpfs-0:/run/td/criu/tmpfs/x\n" in text
    # Made once, for whichever restore.
    assert plan.tmpfs_sources() == {"twistedock-tmpfs-0": "/run/td/criu/tmpfs/x"} and len(made) == 1
    # The container's own CRIU configuration: no place for them, said so.
    other = RestorePlan(str(images), "/opt/criu", rpc=Driver())
    with pytest.raises(InternalError, match="names tmpfs mounts external"):
        other.adjust_spec({"annotations": {"org.criu.config": "/etc/mine.conf"}}, str(tmp_path))


def _driver_whose_shm_changes(tmp_path, monkeypatch, messages, checks):
    """A driver dumping a container "c1" whose /dev/shm is named external
    and found changed at post-dump (each check appended to C{checks})."""
    from twistedock.backend.runtime.criudriver import CriuDriver

    from .test_criurpc import _state

    state = _state(tmp_path, os.getpid())
    state["cgroup_paths"] = {}
    state["config"]["labels"] = ["bundle=/run/x"]
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "state.json").write_text(json.dumps(state))
    images, work = tmp_path / "images", tmp_path / "work"
    images.mkdir()
    work.mkdir()
    record = {"key": tmpfsmounts.key(0), "mountpoint": "/dev/shm", "entries": []}
    monkeypatch.setattr(criuopts, "has_tcp_connections", lambda pid: False)
    monkeypatch.setattr(tmpfsmounts, "plan", lambda pid, external: [record])
    monkeypatch.setattr(tmpfsmounts, "changed", lambda pid, records: checks.append(records) or ["/dev/shm"])
    driver = CriuDriver(reactor, None, str(tmp_path), lambda f, *a: maybeDeferred(f, *a), messages=messages)
    driver.nsenter = ""
    driver.masked_source = lambda: None
    return driver, images, work, record


@pytest_twisted.ensureDeferred
async def test_a_tmpfs_changed_before_the_freeze_is_dumped_again_with_tar(tmp_path, monkeypatch, fake_criu,
                                                                           messages):
    """At post-dump (tasks frozen) a listed tmpfs is found changed: the
    answer fails, CRIU gives the dump up, and it is taken again with no
    tmpfs external (CRIU tars it), its record gone."""
    worker, told = fake_criu
    checks = []
    driver, images, work, record = _driver_whose_shm_changes(tmp_path, monkeypatch, messages, checks)
    requests = []

    def spawned(criu, files=None, path=None, prefix=()):
        w = worker(FAKE_NOTIFY="post-dump")
        call = w.call
        w.call = lambda request, notify: (requests.append(request), call(request, notify))[1]
        return w

    driver.worker = spawned
    await driver.dump("/opt/criu", "c1", str(images), str(work), leave_running=False, tmpfs_external=True)
    assert checks == [[record]]
    first, second = [[(m.key, m.val) for m in r.opts.ext_mnt] for r in requests]
    assert ("/dev/shm", record["key"]) in first and ("/dev/shm", record["key"]) not in second
    assert not (images / tmpfsmounts.RECORD).exists()
    assert told()["notify"] == [["NOTIFY", True]]


@pytest.mark.parametrize("change", [
    lambda r: r.update(key="twistedock-tmpfs-0\nmanage-cgroups=full"),
    lambda r: r.update(source="tmpfs,uid=5"),
    lambda r: r.update(options=["size=1k,exec"]),
    lambda r: r.update(options=["context=x"]),
    lambda r: r["entries"].append(["/link/passwd", "f", 0o644, 0, 0, 0, "", 0]),
    lambda r: r["entries"].append(["/../etc", "d", 0o755, 0, 0, 0, "", 0]),
    lambda r: r["entries"].append(["/dir/../../x", "f", 0o644, 0, 0, 0, "", 0]),
    lambda r: r["entries"].append(["/s", "s", 0o644, 0, 0, 0, "", 0]),
    lambda r: r["entries"].pop(0),
])
def test_a_record_read_back_makes_a_tmpfs_and_nothing_else(change):
    """An imported checkpoint's record is not the daemon's: no way out of
    the tmpfs, no line of its own in CRIU's configuration, no option but
    tmpfs's."""
    record = {"key": tmpfsmounts.key(0), "mountpoint": "/dev", "source": "tmpfs", "options": ["size=1k"],
              "flags": [], "read_only": False,
              "entries": [[".", "d", 0o755, 0, 0, 0, "", 0], ["/dir", "d", 0o755, 0, 0, 0, "", 0],
                          ["/link", "l", 0o777, 0, 0, 0, "/etc", 0]]}
    tmpfsmounts.check(record)
    change(record)
    with pytest.raises(ValueError):
        tmpfsmounts.check(record)


@pytest_twisted.ensureDeferred
async def test_a_lazy_dump_whose_tmpfs_changed_is_given_up_not_served(tmp_path, monkeypatch, fake_criu, messages):
    """A lazy dump's CRIU would serve its pages after a failed post-dump:
    it is killed before it hears the answer, the dump fails (asked once,
    not again with the tar), the tmpfs mounts were named external."""
    from twistedock.errors import DockerError

    worker, told = fake_criu
    driver, images, work, record = _driver_whose_shm_changes(tmp_path, monkeypatch, messages, [])
    requests, workers = [], []

    def spawned(criu, files=None, path=None, prefix=()):
        w = worker(FAKE_NOTIFY="post-dump")
        call = w.call
        w.call = lambda request, notify: (requests.append(request), call(request, notify))[1]
        kill = w.kill
        w.kill = lambda: (workers.append("killed"), kill())[1]
        return w

    driver.worker = spawned
    with pytest.raises(DockerError, match="/dev/shm changed"):
        await driver.dump("/opt/criu", "c1", str(images), str(work), leave_running=False, tmpfs_external=True,
                          extra_options={"lazy_pages": True})
    assert len(requests) == 1 and "killed" in workers
    assert ("/dev/shm", record["key"]) in [(m.key, m.val) for m in requests[0].opts.ext_mnt]
