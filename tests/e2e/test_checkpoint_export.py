"""
A checkpoint that travels: exported from one twistedock daemon as a tar
(GET /containers/{name}/checkpoints/{checkpoint}/export), imported into
another (POST /containers/checkpoints/import), and restored there with the
real `docker start --checkpoint`.  Two daemons on this machine, each with
its own data root and socket, both --experimental and both with the busybox
image imported; the busybox counter must go on counting on the target from
where it was checkpointed, not from 0.
"""

import io
import json
import os
import stat
import tarfile

import pytest

from .conftest import wait_for
from .test_checkpoint import (  # noqa: F401  (the criu fixture)
    _import_busybox,
    assert_continues,
    criu,
    criu_args,
    numbers,
    state,
    wait_numbers,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

#: The counter, after changing its root filesystem (a file added, one removed).
SCRIPT = "echo moved > /marker; rm /bin/true; i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"


@pytest.fixture(scope="module")
def pair(module_daemons, tmp_path_factory, criu):  # noqa: F811
    a = module_daemons.start("--experimental", *criu_args(criu))
    b = module_daemons.start("--experimental", *criu_args(criu))
    _import_busybox(a, tmp_path_factory)
    _import_busybox(b, tmp_path_factory)
    yield a, b
    for d in (a, b):
        _remove_all(d)


def _remove_all(daemon):
    """Leave no counter running (sh as PID 1 ignores SIGTERM: a daemon
    stopping it would wait for its stop timeout)."""
    if daemon.running:
        ids = daemon.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            daemon.docker("rm", "-f", *ids, check=False)


def counter(daemon, name):
    daemon.docker("rm", "-f", name, check=False)
    daemon.docker("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c", SCRIPT)
    return name


def export(daemon, name, checkpoint):
    answer = daemon.request(
        "GET", "/v1.41/containers/%s/checkpoints/%s/export" % (name, checkpoint), timeout=60
    )
    assert answer.status == 200, answer
    assert answer.headers["Content-Type"] == "application/x-tar"
    return answer.body


def import_(daemon, body, name=""):
    target = "/v1.41/containers/checkpoints/import" + ("?name=" + name if name else "")
    return daemon.request("POST", target, body=body, headers={"Content-Type": "application/x-tar"}, timeout=60)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_export_import_restore_continues_on_the_other_daemon(pair):
    a, b = pair
    counter(a, "travel")
    wait_numbers(a, "travel", 5)
    assert a.docker("checkpoint", "create", "travel", "cp1").stdout == "cp1\n"
    last = numbers(a, "travel")[-1]
    body = export(a, "travel", "cp1")

    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
        assert names[:2] == ["manifest.json", "container.json"]
        assert "checkpoint/checkpoint.json" in names
        assert any(n.startswith("checkpoint/") and n.endswith(".img") for n in names)
        assert "rootfs-diff/marker" in names
        assert "rootfs-diff/bin/.wh.true" in names  # the overlay whiteout, as OCI writes it

    answer = import_(b, body, "arrived")
    assert answer.status == 201, answer
    result = answer.json()
    assert result["Checkpoint"] == "cp1" and len(result["Id"]) == 64
    assert b.docker("checkpoint", "ls", "arrived").stdout.split() == ["CHECKPOINT", "NAME", "cp1"]
    assert state(b, "arrived")["Status"] == "created"

    b.docker("start", "--checkpoint", "cp1", "arrived")
    s = state(b, "arrived")
    assert s["Status"] == "running" and s["Pid"] > 0
    after = wait_numbers(b, "arrived", 5)
    assert_continues(after, last)
    if _over_rpc():
        # Its own network namespace (network none) made empty as runc
        # restore makes it, its loopback up as it was.
        assert int(b.docker("exec", "arrived", "cat", "/sys/class/net/lo/flags").stdout, 16) & 1
    # Its root filesystem changes came with it: the whiteout is one again.
    upper = os.path.join(b.data_root, "overlay2", result["Id"], "diff")
    with open(os.path.join(upper, "marker")) as f:
        assert f.read() == "moved\n"
    st = os.lstat(os.path.join(upper, "bin", "true"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    b.docker("rm", "-f", "arrived")
    a.docker("rm", "-f", "travel")


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_leave_running_then_import_keeps_both(pair):
    a, b = pair
    counter(a, "twin")
    wait_numbers(a, "twin", 5)
    before = numbers(a, "twin")[-1]
    a.docker("checkpoint", "create", "--leave-running", "twin", "snap")
    after_checkpoint = numbers(a, "twin")[-1]
    assert state(a, "twin")["Status"] == "running"
    body = export(a, "twin", "snap")
    # Without ?name=, the container keeps its name (free on the target).
    answer = import_(b, body)
    assert answer.status == 201, answer
    b.docker("start", "--checkpoint", "snap", "twin")
    restored = wait_numbers(b, "twin", 5)
    assert before - 1 <= restored[0] <= after_checkpoint + 2, (before, after_checkpoint, restored[:5])
    assert restored == list(range(restored[0], restored[0] + len(restored)))
    wait_for(lambda: len(numbers(a, "twin")) > len(restored) + 10 or numbers(a, "twin")[-1] > after_checkpoint + 5,
             15, what="the original going on")
    assert state(a, "twin")["Status"] == "running"
    # Importing the same export again: its name is now taken.
    answer = import_(b, body)
    assert answer.status == 409, answer
    b.docker("rm", "-f", "twin")
    a.docker("rm", "-f", "twin")


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
def test_missing_image_on_the_target_is_404_naming_it(pair, module_daemons):
    a, _ = pair
    bare = module_daemons.start("--experimental")
    counter(a, "lonely")
    wait_numbers(a, "lonely", 3)
    a.docker("checkpoint", "create", "--leave-running", "lonely", "cp1")
    body = export(a, "lonely", "cp1")
    answer = import_(bare, body)
    assert (answer.status, answer.json()) == (404, {"message": "No such image: busybox:latest"})
    assert bare.docker("ps", "-aq").stdout == ""
    a.docker("rm", "-f", "lonely")


@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
def test_bad_requests(pair):
    a, b = pair
    answer = import_(b, b"this is not a tar")
    assert answer.status == 400, answer
    assert "checkpoint archive" in answer.json()["message"]
    answer = a.request("GET", "/v1.41/containers/nope/checkpoints/cp1/export")
    assert (answer.status, answer.json()) == (404, {"message": "No such container: nope"})
    counter(a, "plain")
    answer = a.request("GET", "/v1.41/containers/plain/checkpoints/none/export")
    assert (answer.status, answer.json()) == (404, {"message": "checkpoint none does not exist for container plain"})
    a.docker("rm", "-f", "plain")


def _conmon_runtime(daemon, cid):
    """The runtime conmon was given: the daemon's CRIU shim for a restore
    over CRIU's RPC, runc otherwise."""
    with open(os.path.join(daemon.exec_root, cid, "conmon.pid")) as f:
        conmon = int(f.read())
    with open("/proc/%d/cmdline" % (conmon,), "rb") as f:
        argv = f.read().split(b"\0")
    return argv[argv.index(b"-r") + 1].decode()


def _over_rpc():
    return "--criu-rpc=false" not in criu_args("criu")


@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("POST", "/containers/{name:.*}/pause")
@pytest.mark.route("POST", "/containers/{name:.*}/unpause")
@pytest.mark.route("POST", "/containers/{name:.*}/stop")
def test_an_imported_checkpoint_restores_over_criu_rpc(pair):
    """A container that never ran on the target (no runc state kept from a
    dump) is restored over CRIU's RPC all the same: runc's state of a
    stopped container is prepared first (its cgroups with its limits), and
    runc knows the restored container: exec, pause, stop, rm."""
    a, b = pair
    a.docker("rm", "-f", "limited", check=False)
    a.docker("run", "-d", "--name", "limited", "-m", "64m", "busybox", "sh", "-c", SCRIPT)
    wait_numbers(a, "limited", 5)
    a.docker("checkpoint", "create", "limited", "cp1")
    last = numbers(a, "limited")[-1]
    answer = import_(b, export(a, "limited", "cp1"), "limited-here")
    assert answer.status == 201, answer
    cid = answer.json()["Id"]
    b.docker("start", "--checkpoint", "cp1", "limited-here")
    assert_continues(wait_numbers(b, "limited-here", 5), last)
    pid = state(b, "limited-here")["Pid"]
    assert _conmon_runtime(b, cid).endswith("/criu-swrk") is _over_rpc()
    with open(os.path.join(b.exec_root, "runc", cid, "state.json")) as f:
        assert json.load(f)["init_process_pid"] == pid
    assert not os.path.exists(os.path.join(b.exec_root, "runc", cid, "exec.fifo"))
    with open("/proc/%d/cgroup" % (pid,)) as f:
        groups = dict(line.strip().split(":", 2)[1:] for line in f if line.strip())
    assert all(cid in path for path in groups.values()), groups
    memory = [path for kinds, path in groups.items() if "memory" in kinds.split(",")]
    if memory:  # (cgroup v1)
        with open("/sys/fs/cgroup/memory%s/memory.limit_in_bytes" % (memory[0],)) as f:
            assert int(f.read()) == 64 * 1024 * 1024
    assert b.docker("exec", "limited-here", "cat", "/marker").stdout == "moved\n"
    b.docker("pause", "limited-here")
    assert state(b, "limited-here")["Status"] == "paused"
    b.docker("unpause", "limited-here")
    count = len(numbers(b, "limited-here"))
    wait_numbers(b, "limited-here", count + 3)
    b.docker("stop", "-t", "1", "limited-here")
    assert state(b, "limited-here")["Status"] == "exited"
    b.docker("rm", "limited-here")
    assert not os.path.exists(os.path.join(b.exec_root, "runc", cid))
    a.docker("rm", "-f", "limited")


@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_an_imported_tty_checkpoint_restores_through_runc(pair):
    """A terminal's pty goes to conmon's console socket through runc
    restore: no runc state is prepared for it."""
    a, b = pair
    a.docker("rm", "-f", "tty-travel", check=False)
    a.docker("run", "-d", "-t", "--name", "tty-travel", "--network", "none", "busybox", "sh", "-c", SCRIPT)
    wait_numbers(a, "tty-travel", 5)
    a.docker("checkpoint", "create", "tty-travel", "cp1")
    last = numbers(a, "tty-travel")[-1]
    answer = import_(b, export(a, "tty-travel", "cp1"), "tty-here")
    assert answer.status == 201, answer
    cid = answer.json()["Id"]
    b.docker("start", "--checkpoint", "cp1", "tty-here")
    assert_continues(wait_numbers(b, "tty-here", 5), last)
    assert not _conmon_runtime(b, cid).endswith("/criu-swrk")
    assert b.docker("exec", "tty-here", "echo", "in").stdout == "in\n"
    b.docker("rm", "-f", "tty-here")
    a.docker("rm", "-f", "tty-travel")


@pytest.fixture(scope="module")
def runc_target(module_daemons, tmp_path_factory, criu):  # noqa: F811
    """A daemon restoring through runc (--criu-rpc=false)."""
    d = module_daemons.start("--experimental", "--criu-path", criu, "--criu-rpc=false")
    _import_busybox(d, tmp_path_factory)
    yield d
    _remove_all(d)


@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_tmpfs_mounts_named_external_restore_through_runc(pair, runc_target):
    """A dump over the RPC named its tmpfs mounts external (/dev...): a
    daemon restoring through runc makes them again and maps them in its
    CRIU configuration file."""
    a, _ = pair
    if not _over_rpc():
        pytest.skip("the dump goes through runc: its tmpfs mounts are tarred")
    a.docker("rm", "-f", "to-runc", check=False)
    counter(a, "to-runc")
    wait_numbers(a, "to-runc", 5)
    a.docker("checkpoint", "create", "to-runc", "cp1")
    last = numbers(a, "to-runc")[-1]
    body = export(a, "to-runc", "cp1")
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert "checkpoint/tmpfs-mounts.json" in tar.getnames()
    answer = import_(runc_target, body, "from-rpc")
    assert answer.status == 201, answer
    cid = answer.json()["Id"]
    runc_target.docker("start", "--checkpoint", "cp1", "from-rpc")
    assert_continues(wait_numbers(runc_target, "from-rpc", 5), last)
    assert not _conmon_runtime(runc_target, cid).endswith("/criu-swrk")
    assert runc_target.docker("exec", "from-rpc", "sh", "-c", "head -c 2 /dev/zero | wc -c").stdout.strip() == "2"
    runc_target.docker("rm", "-f", "from-rpc")
    a.docker("rm", "-f", "to-runc")
