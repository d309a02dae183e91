"""
A migration interrupted at each of its steps (the tool stopped there with
its hidden --pause-before hook, then a daemon SIGKILLed, the tool's
connections dropped, or the target's disk full) leaves the container
running on exactly one side, or stopped with its checkpoint intact.  The
daemons run with --live-restore, so a daemon that comes back keeps what
ran while it was away (without it, a restarted daemon stops every
container it left running, migrated or not).
"""

import os
import signal
import subprocess

import pytest

from .conftest import wait_for
from .test_checkpoint import (  # noqa: F401  (the criu fixture)
    _import_busybox,
    criu,
    numbers,
    state,
    wait_numbers,
)
from .test_checkpoint_export import _remove_all
from .test_migrate import Paused, counter, migrate_command, migrate_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


@pytest.fixture
def pair(daemons, tmp_path_factory, criu):  # noqa: F811
    a = daemons.start("--experimental", "--live-restore", "--criu-path", criu)
    b = daemons.start("--experimental", "--live-restore", "--criu-path", criu)
    _import_busybox(a, tmp_path_factory)
    _import_busybox(b, tmp_path_factory)
    yield a, b
    for d in (a, b):
        if d.running:
            _remove_all(d)


def running(daemon, name):
    result = daemon.docker("inspect", "--format", "{{.State.Running}}", name, check=False)
    return result.returncode == 0 and result.stdout.strip() == "true"


def assert_runs_on(daemon, name, last_logged):
    """The counter goes on on C{daemon}, from where it stopped."""
    wait_for(lambda: running(daemon, name), 30, what="%s running" % (name,))
    logged = len(numbers(daemon, name))
    after = wait_numbers(daemon, name, logged + 3, timeout=30)[logged:]
    assert after[0] > last_logged - 2, (last_logged, after[:3])


def checkpoints(daemon, name):
    result = daemon.docker("checkpoint", "ls", name, check=False)
    return result.stdout.split()[1:] if result.returncode == 0 else []


# -- lazy (post-copy) ----------------------------------------------------------


@pytest.mark.route("POST", "/containers/{name}/checkpoints/{checkpoint}/pages")
@pytest.mark.route("POST", "/containers/{name}/checkpoints/{checkpoint}/page-source")
def test_lazy_tool_dropped_before_restore(pair):
    a, b = pair
    counter(a, "drop")
    last = wait_numbers(a, "drop", 3)[-1]
    paused = Paused(a, b, "drop", "restore", "--lazy")
    try:
        # Dumped over the RPC from inside its network namespace: the page
        # server listens there, the images leave the namespace out.
        cid = a.docker_json("inspect", "drop", format="{{json .Id}}")
        directory = os.path.join(a.data_root, "containers", cid, "checkpoints")
        assert [c for c in os.listdir(directory) if os.path.exists(os.path.join(directory, c, "net-left-out"))]
        # Frozen on the source, its pages relayed: the tool's connections go.
        paused.kill()
    finally:
        paused.close()
    assert_runs_on(a, "drop", last)
    assert not any(c.startswith("migrate-") for c in checkpoints(a, "drop"))
    assert not running(b, "drop")


@pytest.mark.route("POST", "/containers/{name}/checkpoints/{checkpoint}/pages")
def test_lazy_source_killed_before_pages(pair):
    a, b = pair
    counter(a, "src")
    last = wait_numbers(a, "src", 3)[-1]
    paused = Paused(a, b, "src", "pages", "--lazy")
    code, out, err = paused.go_on_without(a)
    assert code == 1, (out, err)
    # The target's copy was removed; the source's process runs again (the
    # guard killed CRIU when the daemon died), kept by the daemon's return.
    assert b.docker("inspect", "src", check=False).returncode != 0
    a.start()
    assert_runs_on(a, "src", last)


# -- plain (stop and copy) -----------------------------------------------------


@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
def test_plain_source_killed_after_checkpoint_keeps_it(pair):
    a, b = pair
    counter(a, "kept")
    wait_numbers(a, "kept", 3)
    paused = Paused(a, b, "kept", "export")
    code, out, err = paused.go_on_without(a)
    assert code == 1, (out, err)
    assert b.docker("inspect", "kept", check=False).returncode != 0
    # Stopped on the source with its checkpoint intact: it restores.
    a.start()
    assert not running(a, "kept")
    (checkpoint,) = [c for c in checkpoints(a, "kept") if c.startswith("migrate-")]
    last = numbers(a, "kept")[-1]
    a.docker("start", "--checkpoint", checkpoint, "kept")
    assert_runs_on(a, "kept", last)


@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_plain_source_killed_before_restore_leaves_one_copy(pair):
    """The checkpoint exported and imported (the restore does not wait for
    the checkpoint's own answer), the source killed then: the container
    runs on the target; the source, back, has it stopped with its
    checkpoint (recorded checkpointed before its export began), never
    restarted by its restart policy."""
    a, b = pair
    counter(a, "once", "--restart", "always")
    last = wait_numbers(a, "once", 3)[-1]
    paused = Paused(a, b, "once", "restore")
    code, out, err = paused.go_on_without(a)
    assert code == 0, (out, err)
    assert "could not be removed from the source" in out, (out, err)
    assert_runs_on(b, "once", last)
    a.start()
    assert any(c.startswith("migrate-") for c in checkpoints(a, "once"))
    assert state(a, "once")["Status"] == "exited"
    # (A restart policy would have started it as the daemon came back.)
    assert a.docker("inspect", "--format", "{{.RestartCount}}", "once").stdout.strip() == "0"
    assert not running(a, "once")


@pytest.mark.route("POST", "/containers/checkpoints/import")
def test_plain_tool_dropped_before_import_keeps_the_checkpoint(pair):
    a, b = pair
    counter(a, "cut")
    wait_numbers(a, "cut", 3)
    paused = Paused(a, b, "cut", "import")
    try:
        paused.kill()
    finally:
        paused.close()
    assert not running(a, "cut") and not running(b, "cut")
    (checkpoint,) = [c for c in checkpoints(a, "cut") if c.startswith("migrate-")]
    last = numbers(a, "cut")[-1]
    a.docker("start", "--checkpoint", checkpoint, "cut")
    assert_runs_on(a, "cut", last)


@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
def test_plain_tool_dropped_after_prepare_target_removes_it(pair):
    """The target was prepared (the container made there before the
    freeze), then the tool died: the source runs on, untouched; the
    target's next start removes the prepared container."""
    a, b = pair
    counter(a, "prep")
    last = wait_numbers(a, "prep", 3)[-1]
    paused = Paused(a, b, "prep", "checkpoint")
    try:
        assert not running(b, "prep") and b.docker("inspect", "prep", check=False).returncode == 0
        paused.kill()
    finally:
        paused.close()
    assert_runs_on(a, "prep", last)
    assert not any(c.startswith("migrate-") for c in checkpoints(a, "prep"))
    b.signal(signal.SIGKILL)
    b.wait_exit(10)
    b.start()
    assert b.docker("inspect", "prep", check=False).returncode != 0


@pytest.mark.route("POST", "/containers/{name}/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name}/checkpoints/{checkpoint}/page-source")
@pytest.mark.parametrize("mode", ["plain", "lazy"])
def test_target_killed_before_restore(pair, mode):
    """The checkpoint imported into the prepared container (the page
    source joined, for lazy), the target killed before the restore: the
    source restores its own checkpoint (lazy: its CRIU killed, the process
    runs on); the target's next start removes the prepared container."""
    a, b = pair
    counter(a, "half")
    last = wait_numbers(a, "half", 3)[-1]
    paused = Paused(a, b, "half", "restore", *(["--lazy"] if mode == "lazy" else []))
    code, out, err = paused.go_on_without(b)
    assert code == 1, (out, err)
    assert "runs on the source again" in out, (out, err)
    assert_runs_on(a, "half", last)
    b.start()
    assert b.docker("inspect", "half", check=False).returncode != 0


@pytest.mark.route("POST", "/containers/checkpoints/import")
def test_plain_full_disk_on_target(daemons, tmp_path, tmp_path_factory, criu):  # noqa: F811
    a = daemons.start("--experimental", "--criu-path", criu)
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(root)], check=True)
    try:
        b = daemons.make("--experimental", "--criu-path", criu, workdir=root)
        b.start()
        _import_busybox(a, tmp_path_factory)
        _import_busybox(b, tmp_path_factory)
        counter(a, "full")
        last = wait_numbers(a, "full", 3)[-1]
        # Leave the target's disk all but full.
        subprocess.run(["dd", "if=/dev/zero", "of=%s" % (root / "filler"), "bs=64k"], capture_output=True)
        result = subprocess.run(migrate_command(a.host, b.host, "full"), env=migrate_env(), capture_output=True,
                                text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == 1, (result.stdout, result.stderr)
        # Refused while the target is prepared (before the freeze), or at
        # the import (after it, then restored on the source).
        assert ("the container runs on the source again" in result.stdout
                or "nothing was done" in result.stderr), (result.stdout, result.stderr)
        assert_runs_on(a, "full", last)
        assert not running(b, "full")
        _remove_all(a)
        b.stop()
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
