"""
twistedock-migrate moves a running busybox counter between two twistedock
daemons on this machine (separate data roots and sockets, both
--experimental): the counter goes on counting on the target, the source no
longer has it; and a target killed in the middle of a migration leaves the
container running on the source.
"""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT, wait_for
from .test_checkpoint import (  # noqa: F401  (the criu fixture)
    LOOP,
    _import_busybox,
    assert_in_its_network_namespace,
    criu,
    numbers,
    state,
    wait_numbers,
)
from .test_checkpoint_export import _remove_all

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


def migrate_command(*args):
    return [sys.executable, "-m", "twistedock.migrate"] + list(args)


def migrate_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_migrate(*args, timeout=120):
    return subprocess.run(
        migrate_command(*args), env=migrate_env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def counter(daemon, name, *options):
    daemon.docker("rm", "-f", name, check=False)
    daemon.docker("run", "-d", "--name", name, "--network", "none", *options, "busybox", "sh", "-c", LOOP)


@pytest.fixture
def pair(daemons, tmp_path_factory, criu):  # noqa: F811
    a = daemons.start("--experimental", "--criu-path", criu)
    b = daemons.start("--experimental", "--criu-path", criu)
    _import_busybox(a, tmp_path_factory)
    _import_busybox(b, tmp_path_factory)
    yield a, b
    for d in (a, b):
        _remove_all(d)


@pytest.mark.route("GET", "/containers/{name:.*}/json")
@pytest.mark.route("GET", "/images/{name:.*}/json")
@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("DELETE", "/containers/{name:.*}")
@pytest.mark.parametrize("options,run_options", [
    ((), ()),
    (("--no-export-with-checkpoint",), ()),
    (("--lazy",), ()),
    # (A terminal: the target's restore goes through runc.)
    (("--lazy",), ("-t",)),
])
def test_migrate_moves_a_running_counter(pair, options, run_options):
    a, b = pair
    counter(a, "mover", *run_options)
    wait_numbers(a, "mover", 5)
    before = numbers(a, "mover")[-1]
    result = run_migrate(a.host, b.host, "mover", "--json", *options)
    assert result.returncode == 0, (result.stdout, result.stderr)
    downtime = re.search(r"downtime: (\d+) ms", result.stdout)
    moved = re.search(r"bytes moved: (\d+)", result.stdout)
    assert downtime and moved, result.stdout
    assert int(moved.group(1)) > 0
    # The downtime the daemons measured (the freeze, the restored process
    # running again: restores over CRIU's RPC), inside the tool's span from
    # the checkpoint's request to the restore's answer; a terminal's
    # restore (runc's) says nothing, and the span stands.
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["Measured"] is ("-t" not in run_options), figures
    assert 0 < figures["Downtime"] <= figures["Span"], figures
    if figures["Measured"]:
        assert figures["Downtime"] < figures["Span"] and "as the daemons measured it" in result.stdout
    assert int(downtime.group(1)) == round(figures["Downtime"] * 1000), (result.stdout, figures)
    # The source no longer has it; the target runs it, counting on.
    gone = a.docker("container", "inspect", "mover", check=False)
    assert gone.returncode != 0 and "No such" in gone.stderr
    s = state(b, "mover")
    assert s["Status"] == "running" and s["Pid"] > 0
    after = wait_numbers(b, "mover", 5)
    assert before - 1 <= after[0] <= before + 100, (before, after[:5])
    assert after == list(range(after[0], after[0] + len(after)))
    # (Dumped from inside it, lazily too, which the images left out: the
    # restore joined it.)
    assert_in_its_network_namespace(b, "mover")
    b.docker("rm", "-f", "mover")


@pytest.mark.route("GET", "/containers/{name:.*}/json")
@pytest.mark.route("GET", "/images/{name:.*}/json")
def test_missing_container_or_image_changes_nothing(pair, daemons):
    a, b = pair
    result = run_migrate(a.host, b.host, "nope")
    assert result.returncode == 1 and "No such container: nope" in result.stderr
    bare = daemons.start("--experimental")
    counter(a, "stay")
    result = run_migrate(a.host, bare.host, "stay")
    assert result.returncode == 1 and "No such image: busybox:latest" in result.stderr
    assert state(a, "stay")["Status"] == "running"
    result = run_migrate(a.host, b.host, "stay", "--pre-copy", "2")
    assert result.returncode == 1 and "--pre-copy is not supported" in result.stderr
    assert state(a, "stay")["Status"] == "running"
    a.docker("rm", "-f", "stay")


class Paused:
    """twistedock-migrate stopped before C{step}."""

    def __init__(self, a, b, name, step, *args):
        self.proc = subprocess.Popen(
            migrate_command(a.host, b.host, name, "--pause-before", step, *args),
            env=migrate_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.kill()
                raise AssertionError("migrate ended early: %s %s" % (lines, self.proc.stderr.read()))
            lines.append(line)
            if "paused before %s" % (step,) in line:
                return

    def go_on(self, timeout=120):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def go_on_without(self, daemon, timeout=120):
        """C{daemon} killed (SIGKILL) while the tool waits, then the tool
        let go on: its exit status, output and errors."""
        try:
            daemon.signal(signal.SIGKILL)
            daemon.wait_exit(10)
            return self.go_on(timeout)
        finally:
            self.close()

    def kill(self):
        self.proc.kill()
        self.proc.communicate(timeout=30)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.route("GET", "/containers/{name:.*}/json")
@pytest.mark.route("GET", "/images/{name:.*}/json")
@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_target_killed_mid_migration_leaves_the_source_running(pair):
    a, b = pair
    counter(a, "survivor")
    wait_numbers(a, "survivor", 5)
    paused = Paused(a, b, "survivor", "import")
    try:
        # Checkpointed and exported: the source's container is stopped now.
        assert state(a, "survivor")["Status"] == "exited"
        logged = numbers(a, "survivor")
        b.signal(signal.SIGKILL)
        b.wait_exit(10)
        code, out, err = paused.go_on()
    finally:
        paused.close()
    assert code == 1, (out, err)
    assert "the container runs on the source again" in out, (out, err)
    s = state(a, "survivor")
    assert s["Status"] == "running" and s["Pid"] > 0
    after = wait_for(
        lambda: (lambda n: n if len(n) >= len(logged) + 5 else None)(numbers(a, "survivor")),
        15, what="the counter going on on the source",
    )[len(logged):]
    assert logged[-1] - 1 <= after[0] <= logged[-1] + 2, (logged[-1], after[:5])
    a.docker("rm", "-f", "survivor")
    # The killed target's next start removes the container it prepared,
    # runc's state and cgroups with it.
    b.start()
    assert b.docker("inspect", "survivor", check=False).returncode != 0


@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name}/checkpoints/import")
def test_root_filesystem_changes_move_and_unchanged_files_are_not_sent_twice(pair):
    """The target is prepared with the root filesystem's changes while the
    container runs; what changes after that (here while the tool waits
    before the freeze) travels again, the unchanged megabyte does not."""
    a, b = pair
    counter(a, "files")
    wait_numbers(a, "files", 3)
    a.docker("exec", "files", "sh", "-c",
             "dd if=/dev/urandom of=/big bs=64k count=16 2>/dev/null && echo before > /changed && echo x > /gone")
    big = a.docker("exec", "files", "md5sum", "/big").stdout.split()[0]
    wait_numbers(a, "files", len(numbers(a, "files")) + 3)  # (older than the pre-copy's margin)
    paused = Paused(a, b, "files", "checkpoint")
    try:
        a.docker("exec", "files", "sh", "-c", "echo after > /changed && rm /gone && echo new > /new")
        code, out, err = paused.go_on()
    finally:
        paused.close()
    assert code == 0, (out, err)
    moved = int(re.search(r"bytes moved: (\d+)", out).group(1))
    assert moved < 1 << 20, out
    assert state(b, "files")["Status"] == "running"
    assert b.docker("exec", "files", "md5sum", "/big").stdout.split()[0] == big
    assert b.docker("exec", "files", "cat", "/changed", "/new").stdout.split() == ["after", "new"]
    assert b.docker("exec", "files", "ls", "/gone", check=False).returncode != 0
    b.docker("rm", "-f", "files")
