"""
Crash safety, in process: the daemon killed at the worst moments (inside a
start, inside a removal, inside a checkpoint, with the disk full), then
started again on the same host: what runc, the mounts and the data root hold
agrees with the records again, and nothing acknowledged is undone.
"""

import errno
import json
import os

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from twistedock.backend.containers import backend as backend_module
from twistedock.backend.containers import reconcile
from twistedock.backend.runtime import rootfs
from twistedock.errors import InternalError, NotFound
from twistedock.backend.runtime.runc import runc_error

from twistedock.backend.containers.record import load as load_record

from .fake_runtime import World, failure_of, run
from .memory import result_of


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def hang_in_start(world, then_running):
    """The daemon will die inside its next start: C{runc create} done (and
    C{runc start} too with C{then_running}), the record not yet saved."""

    def start(container_id):
        world.runtime.calls.append((world.clock.seconds(), "start", container_id))
        if then_running:
            world.runtime.processes[container_id].status = "running"
        return Deferred()

    world.runtime.start = start


def crashed_inside_start(world, name, then_running=False):
    ident = world.create(name)
    hang_in_start(world, then_running)
    ensureDeferred(world.backend.start(ident))
    c = world.backend.get(name)
    assert os.path.exists(c.path_of(reconcile.STARTING_MARK))
    merged = world.backend.overlay(c)["MergedDir"]
    assert merged in world.mounts.mounted
    world.crash()
    del world.runtime.start
    return ident, merged


def test_a_kill_between_create_and_start_leaves_nothing_running(world):
    ident, merged = crashed_inside_start(world, "web")
    assert world.runtime.status(ident) == "created"  # a runc init waits
    again = world.restarted()
    assert again.state("web")["Status"] == "created"
    assert world.runtime.status(ident) is None
    assert (ident, True) in again.runtime.called("delete")
    assert merged not in again.mounts.mounted
    assert not os.path.exists(again.backend.get("web").path_of(reconcile.STARTING_MARK))
    # And it starts as any created container.
    run(again.backend.start("web"))
    assert again.state("web")["Status"] == "running"


def test_a_kill_after_runc_start_is_a_run_stopped_without_live_restore(world):
    ident, merged = crashed_inside_start(world, "web", then_running=True)
    again = world.restarted()
    state = again.state("web")
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    assert world.runtime.status(ident) is None
    assert merged not in again.mounts.mounted
    assert again.restarted().state("web")["Status"] == "exited"


def test_a_kill_after_runc_start_is_re_adopted_with_live_restore(world):
    ident, merged = crashed_inside_start(world, "web", then_running=True)
    pid = world.runtime.processes[ident].pid
    again = world.restarted(live_restore=True)
    state = again.state("web")
    assert (state["Status"], state["Pid"]) == ("running", pid)
    assert merged in again.mounts.mounted
    # Durable: a third start sees it running too, and its exit is seen.
    third = again.restarted(live_restore=True)
    assert third.state("web")["Status"] == "running"
    third.runtime.exit(ident, 3)
    third.settle()
    assert third.state("web")["ExitCode"] == 3


def test_a_kill_inside_a_policy_restart_leaves_no_runc_init(world):
    ident = world.started("web", host_config={"RestartPolicy": {"Name": "always"}})
    world.runtime.exit(ident, 1)
    assert world.state("web")["Restarting"]
    hang_in_start(world, then_running=False)
    world.clock.advance(1)  # the restart: runc create done, runc start never answers
    assert world.runtime.status(ident) == "created"
    world.crash()
    del world.runtime.start
    again = world.restarted()
    # The half-made run is deleted, then the policy starts it afresh.
    state = again.state("web")
    assert (state["Status"], state["Restarting"]) == ("running", False)
    assert world.runtime.status(ident) == "running"
    assert (ident, True) in again.runtime.called("delete")


def test_rm_f_of_a_container_runc_still_knows_deletes_it(world):
    """The kill inside a start, then rm -f by a daemon that knows only the
    records (no reconcile): runc's container is deleted, not left behind
    with a 204."""
    ident, merged = crashed_inside_start(world, "web")
    again = World(world.root, runtime=world.runtime, clock=world.clock, mounts=world.mounts)
    c = load_record(world.backend.get("web").directory)
    again.backend.containers[ident] = c
    again.backend.names[c.name] = ident
    run(again.backend.remove("web", True, False))
    assert world.runtime.status(ident) is None
    assert merged not in world.mounts.mounted
    assert not os.path.exists(again.backend.bundle(c))
    assert not os.path.exists(c.directory)


def test_rm_f_answers_an_error_when_runc_cannot_delete(world):
    ident = world.started("web")
    world.runtime.exit(ident, 0)
    world.settle()
    world.runtime.failures["delete"] = runc_error("permission denied")
    error = failure_of(world.backend.remove("web", True, False))
    assert isinstance(error, InternalError)
    assert "cannot remove" in error.message
    # Still there, and removable once runc can.
    c = world.backend.get("web")
    assert c.id == ident and not c.state.removing
    assert os.path.exists(c.record_path)
    run(world.backend.remove("web", True, False))
    with pytest.raises(NotFound):
        world.backend.get("web")
    assert not os.path.exists(c.directory)


def test_a_removed_container_stays_removed(world):
    """An acknowledged rm -f of a re-adopted paused container is not undone
    by a record write that raced it."""
    world.started("frozen")
    run(world.backend.pause("frozen"))
    again = world.restarted(live_restore=True)
    c = again.backend.get("frozen")
    removed = ensureDeferred(again.backend.remove("frozen", True, False))
    again.settle()
    result_of(removed)
    # A write that was late (a health result, an exit) cannot bring it back.
    assert isinstance(failure_of(again.backend.save(c)), InternalError)
    third = again.restarted(live_restore=True)
    assert list(third.backend.containers) == []
    assert os.listdir(third.backend.containers_dir) == []


def test_leftovers_of_unknown_containers_are_collected(world):
    kept = world.started("kept")
    gone = "f" * 64
    b = world.backend
    # What a kill inside a removal leaves: runc's container, its bundle,
    # its layer (mounted), its attach socket directory, the record renamed.
    world.runtime.processes[gone] = type(world.runtime.processes[kept])(9999, b.exec_root, {}, "running")
    for directory in (os.path.join(b.layers_dir, gone, "diff"), os.path.join(b.exec_root, gone),
                      os.path.join(b.socket_dir, gone[:12]),
                      os.path.join(b.containers_dir, reconcile.REMOVED_PREFIX + gone),
                      os.path.join(b.layers_dir, ".import-0123")):
        os.makedirs(directory)
    world.mounts.mounted.add(os.path.join(b.layers_dir, gone, "merged"))
    again = world.restarted(live_restore=True)
    assert world.runtime.status(gone) is None
    assert os.listdir(again.backend.layers_dir) == [kept]
    assert sorted(os.listdir(again.backend.containers_dir)) == [kept]
    assert not os.path.exists(os.path.join(b.exec_root, gone))
    assert not os.path.exists(os.path.join(b.socket_dir, gone[:12]))
    assert world.mounts.mounted == {again.backend.overlay(again.backend.get("kept"))["MergedDir"]}
    assert again.state("kept")["Status"] == "running"


def test_a_container_not_running_keeps_no_mount(world):
    ident = world.create("web")
    c = world.backend.get("web")
    merged = world.backend.overlay(c)["MergedDir"]
    world.mounts.mount([], *(world.backend.overlay(c)[k] for k in ("UpperDir", "WorkDir", "MergedDir")))
    again = world.restarted()
    assert merged not in again.mounts.mounted
    assert again.backend.get(ident).state.status == "created"


def test_temporary_files_do_not_survive_a_restart(world):
    world.create("web")
    c = world.backend.get("web")
    for name in (".tmp-abc", "hostname.tmp", "resolv.conf.tmp", "hosts.tmp"):
        with open(c.path_of(name), "w") as f:
            f.write("half")
    with open(os.path.join(world.backend.containers_dir, ".tmp-xyz"), "w"):
        pass
    again = world.restarted()
    c = again.backend.get("web")
    assert sorted(os.listdir(c.directory)) == ["container.json"]
    assert sorted(os.listdir(again.backend.containers_dir)) == [c.id]


def test_partial_checkpoints_are_removed(world):
    world.create("web")
    c = world.backend.get("web")
    base = os.path.join(c.directory, "checkpoints")
    for name in ("good", "half", ".tmp-dumping"):
        os.makedirs(os.path.join(base, name))
    for name in ("good", ".tmp-dumping"):
        with open(os.path.join(base, name, "checkpoint.json"), "w") as f:
            json.dump({"Name": name}, f)
    world.restarted()
    assert os.listdir(base) == ["good"]


# -- writes that fail (the disk full) ---------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """Every record write fails with ENOSPC while C{full[0]} (set it)."""
    full = [False]
    real = backend_module.write_atomic

    def write(path, data, mode=0o644, durable=True):
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, mode, durable)

    monkeypatch.setattr(backend_module, "write_atomic", write)
    monkeypatch.setattr(reconcile, "write_atomic", write)
    return full


def test_the_mark_of_a_start_is_not_synced(world, monkeypatch):
    """The starting mark lies on every start's path: written, not fsynced
    (what it tells of is gone after a power loss anyway)."""
    real = reconcile.write_atomic
    written = []

    def write(path, data, mode=0o644, durable=True):
        written.append((os.path.basename(path), durable))
        return real(path, data, mode, durable)

    monkeypatch.setattr(reconcile, "write_atomic", write)
    world.create("web")
    run(world.backend.start("web"))
    assert (reconcile.STARTING_MARK, False) in written
    assert (reconcile.STARTING_MARK, True) not in written


def test_a_create_on_a_full_disk_leaves_nothing(world, full_disk):
    full_disk[0] = True
    error = failure_of(world.backend.create("web", {"Image": "busybox"}, {}, None, "1.41"))
    assert "no space left on device" in error.message
    with pytest.raises(NotFound):
        world.backend.get("web")
    assert os.listdir(world.backend.containers_dir) == []
    assert os.listdir(world.backend.layers_dir) == []


def test_rename_on_a_full_disk_changes_nothing(world, full_disk):
    world.create("old")
    full_disk[0] = True
    error = failure_of(world.backend.rename("old", "new"))
    assert isinstance(error, InternalError) and "no space left on device" in error.message
    assert world.backend.get("old").name == "/old"
    with pytest.raises(NotFound):
        world.backend.get("new")
    full_disk[0] = False
    assert world.restarted().backend.get("old").name == "/old"


def test_pause_on_a_full_disk_changes_nothing(world, full_disk):
    ident = world.started("web")
    full_disk[0] = True
    error = failure_of(world.backend.pause("web"))
    assert "no space left on device" in error.message
    assert world.state("web")["Status"] == "running"
    assert world.runtime.status(ident) == "running"


def test_update_on_a_full_disk_changes_nothing(world, full_disk):
    world.create("web")
    full_disk[0] = True
    error = failure_of(world.backend.update("web", {"RestartPolicy": {"Name": "always"}}))
    assert "no space left on device" in error.message
    assert world.backend.get("web").restart_policy["Name"] == "no"
    full_disk[0] = False
    assert world.restarted().backend.get("web").restart_policy["Name"] == "no"


def test_a_start_on_a_full_disk_fails_and_leaves_nothing(world, full_disk):
    ident = world.create("web")
    full_disk[0] = True
    error = failure_of(world.backend.start("web"))
    assert "no space left on device" in error.message
    assert world.runtime.status(ident) is None
    assert world.mounts.mounted == set()
    assert not world.backend.get("web").state.running


def test_a_restart_with_the_disk_full_does_not_wait_for_ever(world, full_disk):
    """The reported hang: a restart after kill -9 waited for an exit notice
    that a failed record write kept from coming."""
    ident = world.started("web")
    world.crash()
    full_disk[0] = True
    again = world.restarted()  # (fails if the load does not complete)
    assert again.state("web")["Status"] == "exited"
    assert world.runtime.status(ident) is None
    # Once space is back a restart agrees.
    full_disk[0] = False
    assert again.restarted().state("web")["Status"] == "exited"


def test_an_etc_file_that_cannot_be_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    def chmod(path, mode):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rootfs.os, "chmod", chmod)
    with pytest.raises(OSError):
        rootfs._write(str(tmp_path / "hostname"), "web\n")
    assert os.listdir(str(tmp_path)) == []
