"""
Checkpoint and restore with CRIU, driven with the real docker CLI
(`docker checkpoint create|ls|rm`, `docker start --checkpoint`) against a
daemon run with --experimental, as dockerd 20.10 answers them.

A busybox counter (one number every 0.1 s) is checkpointed and restored;
its log must go on from where the checkpoint left it, not from 0.  The
answers for bad requests are the ones a dockerd 20.10 with --experimental
gave (status and message, checked by hand against it).

CRIU 4.x comes from scripts/install (on Debian 12 Debian 13's CRIU in a
private prefix, /opt/twistedock/bin/criu): a machine where the install ran
has it, so where it is missing or broken these tests fail, saying why; they
do not skip.  TWISTEDOCK_TEST_CRIU names another CRIU for the daemons under
test (their --criu-path), e.g. a missing one, to see the suite go red.
"""

import json
import os
import re
import subprocess
import threading
import time

import pytest

from twistedock.backend.runtime.criu import find_criu

from .conftest import wait_for
from .test_containers import busybox_rootfs_tar

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

LOOP = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"
NAME_RULE = "[a-zA-Z0-9][a-zA-Z0-9_.-]"


def configured_criu():
    """The CRIU the daemons under test are given, and where it was looked for."""
    return find_criu(os.environ.get("TWISTEDOCK_TEST_CRIU") or None)


def _criu_problem():
    """Why checkpoints cannot work on this machine, or None."""
    path, looked = configured_criu()
    if path is None:
        return "CRIU could not be provisioned here (looked at %s): run scripts/install" % ", ".join(looked)
    try:
        result = subprocess.run([path, "check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "%s check: %s" % (path, e)
    if result.returncode != 0 or "Looks good" not in result.stdout + result.stderr:
        return "%s check fails here: %s" % (path, (result.stderr or result.stdout).strip()[-300:])
    return None


@pytest.fixture(scope="module")
def criu():
    """The working CRIU the checkpoint daemons run (--criu-path); its absence
    fails every test that needs it: the README's install provides it."""
    problem = _criu_problem()
    if problem:
        pytest.fail("checkpoints need a working CRIU: " + problem, pytrace=False)
    return configured_criu()[0]


def _import_busybox(daemon, tmp_path_factory):
    tar = busybox_rootfs_tar(tmp_path_factory.mktemp("img"))
    with open(tar, "rb") as f:
        result = subprocess.run(
            ["docker", "import", "-", "busybox:latest"],
            stdin=f,
            env=daemon.cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr


def criu_args(criu):
    """The daemon flags naming C{criu}; TWISTEDOCK_TEST_CRIU_RPC=false runs
    the daemons under test with --criu-rpc=false (runc checkpoint)."""
    args = ["--criu-path", criu]
    if os.environ.get("TWISTEDOCK_TEST_CRIU_RPC", "").lower() in ("false", "0"):
        args.append("--criu-rpc=false")
    return args


@pytest.fixture(scope="module")
def daemon(module_daemons, tmp_path_factory, criu):
    d = module_daemons.start("--experimental", "--debug", *criu_args(criu))
    _import_busybox(d, tmp_path_factory)
    return d


# -- helpers -----------------------------------------------------------------


def counter(daemon, name, *options):
    """A running busybox counter container named C{name}."""
    daemon.docker("rm", "-f", name, check=False)
    daemon.docker("run", "-d", "--name", name, "--network", "none", *options, "busybox", "sh", "-c", LOOP)
    return name


def numbers(daemon, name):
    """The numbers the counter logged so far (TTY carriage returns dropped)."""
    out = daemon.docker("logs", name).stdout.replace("\r", "")
    return [int(word) for word in out.split() if word.isdigit()]


def wait_numbers(daemon, name, count, timeout=15.0):
    return wait_for(
        lambda: (lambda found: found if len(found) >= count else None)(numbers(daemon, name)),
        timeout,
        interval=0.1,
        what="%d numbers in the log of %s" % (count, name),
    )


def state(daemon, name):
    return daemon.docker_json("inspect", name, format="{{json .State}}")


def restored_numbers(daemon, name, logged_before, more=5):
    """The numbers logged after a restore (the log had C{logged_before})."""
    found = wait_numbers(daemon, name, logged_before + more)
    return found[logged_before:]


def assert_continues(after, last):
    """The restored counter goes on from C{last} (the last number logged
    before the checkpoint), one by one: not from 0."""
    assert after, "nothing logged after the restore"
    assert last - 1 <= after[0] <= last + 2, (last, after[:10])
    assert after == list(range(after[0], after[0] + len(after))), after[:20]


def assert_in_its_network_namespace(daemon, name):
    """The restored process is in the container's network namespace (the
    daemon's, SandboxKey), not in CRIU's or the host's."""
    settings = daemon.docker_json("inspect", name, format="{{json .NetworkSettings}}")
    pid = state(daemon, name)["Pid"]
    assert os.stat("/proc/%d/ns/net" % (pid,)).st_ino == os.stat(settings["SandboxKey"]).st_ino
    assert os.stat("/proc/%d/ns/net" % (pid,)).st_ino != os.stat("/proc/self/ns/net").st_ino


def checkpoint_and_restore(daemon, name, *create_options, start_options=()):
    """Checkpoint (the container stops), check it exited as dockerd says,
    restore; the numbers logged after the restore and the last before."""
    wait_numbers(daemon, name, 5)
    result = daemon.docker("checkpoint", "create", *create_options, name, "cp1")
    assert result.stdout == "cp1\n"
    s = state(daemon, name)
    assert (s["Status"], s["Running"], s["ExitCode"]) == ("exited", False, 137)
    logged = numbers(daemon, name)
    daemon.docker("start", "--checkpoint", "cp1", *start_options, name)
    s = state(daemon, name)
    assert s["Status"] == "running" and s["Pid"] > 0
    return restored_numbers(daemon, name, len(logged)), logged[-1]


# -- checkpoint and restore -----------------------------------------------------


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
def test_checkpoint_then_restore_continues_the_counter(daemon):
    name = counter(daemon, "ck-basic")
    after, last = checkpoint_and_restore(daemon, name)
    assert_continues(after, last)
    assert daemon.docker("checkpoint", "ls", name).stdout.split() == ["CHECKPOINT", "NAME", "cp1"]
    # Supervised like any other run: it stops, is waited on and logged.
    daemon.docker("stop", "-t", "0", name)
    assert state(daemon, name)["Status"] == "exited"
    daemon.docker("rm", name)


def _perf_events(daemon) -> int:
    fds = "/proc/%d/fd" % (daemon.proc.pid,)
    kinds = []
    for n in os.listdir(fds):
        try:
            kinds.append(os.readlink(os.path.join(fds, n)))
        except OSError:
            pass
    return kinds.count("anon_inode:[perf_event]")


def test_an_experimental_daemon_holds_a_perf_event(daemon, default_daemon):
    """One perf event bound to the daemon keeps the kernel's scheduler
    hooks on, so that CRIU's breakpoint in a process's first dump does not
    wait for them (runtime/perfhooks.py); a daemon that never checkpoints
    holds none."""
    assert _perf_events(daemon) == 1
    assert _perf_events(default_daemon) == 0


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_a_restored_container_checkpoints_and_restores_again(daemon):
    """The second dump names the restored process's own stdio (conmon's
    new pipes), so that the second restore's output reaches the log too."""
    name = counter(daemon, "ck-twice")
    after, last = checkpoint_and_restore(daemon, name)
    assert_continues(after, last)
    wait_numbers(daemon, name, len(numbers(daemon, name)) + 5)
    daemon.docker("checkpoint", "create", name, "cp2")
    logged = numbers(daemon, name)
    daemon.docker("start", "--checkpoint", "cp2", name)
    assert_continues(restored_numbers(daemon, name, len(logged)), logged[-1])
    daemon.docker("rm", "-f", name)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_leave_running_keeps_the_original_running(daemon):
    name = counter(daemon, "ck-leave")
    first = wait_numbers(daemon, name, 5)
    daemon.docker("checkpoint", "create", "--leave-running", name, "cp1")
    at_checkpoint = numbers(daemon, name)
    s = state(daemon, name)
    assert s["Status"] == "running" and s["Running"]
    # It goes on counting after the checkpoint.
    moved_on = wait_numbers(daemon, name, len(at_checkpoint) + 10)
    daemon.docker("kill", name)
    stopped = numbers(daemon, name)
    daemon.docker("start", "--checkpoint", "cp1", name)
    after = restored_numbers(daemon, name, len(stopped))
    # Back to the checkpoint's moment: after the numbers logged before it,
    # well before where the original had got to.
    assert first[-1] <= after[0] <= at_checkpoint[-1] + 2, (first[-1], at_checkpoint[-1], after[:5])
    assert after[0] < moved_on[-1]
    assert after == list(range(after[0], after[0] + len(after)))
    daemon.docker("rm", "-f", name)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("DELETE", "/containers/{name}/checkpoints/{checkpoint}")
def test_checkpoint_dir(daemon, tmp_path):
    name = counter(daemon, "ck-dir")
    directory = str(tmp_path / "checkpoints")
    os.makedirs(directory)
    wait_numbers(daemon, name, 5)
    daemon.docker("checkpoint", "create", "--checkpoint-dir", directory, name, "cp1")
    # CRIU's images and what was checkpointed, in DIR/NAME.
    files = os.listdir(os.path.join(directory, "cp1"))
    assert "inventory.img" in files and "checkpoint.json" in files
    with open(os.path.join(directory, "cp1", "checkpoint.json")) as f:
        metadata = json.load(f)
    assert metadata["Name"] == "cp1" and metadata["Exit"] is True
    assert metadata["Container"]["Name"] == "/" + name
    listed = daemon.docker("checkpoint", "ls", "--checkpoint-dir", directory, name).stdout.split()
    assert listed == ["CHECKPOINT", "NAME", "cp1"]
    assert daemon.docker("checkpoint", "ls", name).stdout.split() == ["CHECKPOINT", "NAME"]
    logged = numbers(daemon, name)
    # dockerd refuses a custom directory on start (403); twistedock restores from it.
    daemon.docker("start", "--checkpoint", "cp1", "--checkpoint-dir", directory, name)
    assert_continues(restored_numbers(daemon, name, len(logged)), logged[-1])
    daemon.docker("checkpoint", "rm", "--checkpoint-dir", directory, name, "cp1")
    assert os.listdir(directory) == []
    daemon.docker("rm", "-f", name)


def _checkpoint_document(daemon, name, checkpoint="cp1"):
    cid = daemon.docker_json("inspect", name, format="{{json .Id}}")
    path = os.path.join(daemon.data_root, "containers", cid, "checkpoints", checkpoint, "checkpoint.json")
    with open(path) as f:
        return json.load(f)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_dump_over_criu_rpc_then_runc_knows_the_restored_container(daemon):
    """The daemon's own dump (CRIU's RPC, unless the suite runs with
    TWISTEDOCK_TEST_CRIU_RPC=false) restores through runc under conmon:
    runc knows the restored container (exec, kill, delete work), its
    process is in the container's cgroups, its log goes on."""
    name = counter(daemon, "ck-rpc")
    after, last = checkpoint_and_restore(daemon, name)
    assert_continues(after, last)
    assert_in_its_network_namespace(daemon, name)
    document = _checkpoint_document(daemon, name)
    assert document["CRIU"]["RPC"] is ("--criu-rpc=false" not in criu_args("criu"))
    cid = daemon.docker_json("inspect", name, format="{{json .Id}}")
    pid = state(daemon, name)["Pid"]
    with open("/proc/%d/cgroup" % (pid,)) as f:
        assert all(cid in line for line in f if line.strip())
    # Restored over the RPC too: conmon ran CRIU itself (its runtime the
    # daemon's shim), not runc restore.
    with open(os.path.join(daemon.exec_root, cid, "conmon.pid")) as f:
        conmon = int(f.read())
    with open("/proc/%d/cmdline" % (conmon,), "rb") as f:
        runtime = f.read().split(b"\0")
    runtime = runtime[runtime.index(b"-r") + 1].decode()
    assert runtime.endswith("/criu-swrk") is document["CRIU"]["RPC"]
    with open(os.path.join(daemon.exec_root, "runc", cid, "state.json")) as f:
        assert json.load(f)["init_process_pid"] == pid
    assert daemon.docker("exec", name, "echo", "in").stdout == "in\n"
    daemon.docker("kill", name)
    assert state(daemon, name)["Status"] == "exited"
    daemon.docker("rm", name)


def _tmpfs_record(daemon, name, checkpoint="cp1"):
    """The places of the tmpfs mounts the dump named external."""
    cid = daemon.docker_json("inspect", name, format="{{json .Id}}")
    path = os.path.join(daemon.data_root, "containers", cid, "checkpoints", checkpoint, "tmpfs-mounts.json")
    try:
        with open(path) as f:
            return [record["mountpoint"] for record in json.load(f)]
    except FileNotFoundError:
        return []


#: The tmpfs mounts of a default container (/sys/fs/cgroup: cgroup v1).
TMPFS_PLACES = ("/dev", "/dev/shm", "/sys/fs/cgroup")


def _mounts(daemon, name):
    """The container's tmpfs mounts at L{TMPFS_PLACES}: {place: (source,
    options but the access-time ones)}."""
    found = {}
    for line in daemon.docker("exec", name, "cat", "/proc/mounts").stdout.splitlines():
        source, place, fstype, options = line.split()[:4]
        if place in TMPFS_PLACES and fstype == "tmpfs":
            kept = [o for o in options.split(",") if not o.endswith("atime")]
            found[place] = (source, kept)
    return found


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_a_file_written_into_dev_shm_survives_the_restore(daemon):
    """A tmpfs holding a file with content is CRIU's to save (tar): not
    named external, its file there after the restore."""
    name = counter(daemon, "ck-shm-file")
    daemon.docker("exec", name, "sh", "-c", "echo kept > /dev/shm/f")
    wait_numbers(daemon, name, 5)
    daemon.docker("checkpoint", "create", name, "cp1")
    places = _tmpfs_record(daemon, name)
    assert "/dev/shm" not in places
    if _checkpoint_document(daemon, name)["CRIU"]["RPC"]:
        assert "/dev" in places
    logged = numbers(daemon, name)
    daemon.docker("start", "--checkpoint", "cp1", name)
    assert_continues(restored_numbers(daemon, name, len(logged)), logged[-1])
    assert daemon.docker("exec", name, "cat", "/dev/shm/f").stdout == "kept\n"
    daemon.docker("rm", "-f", name)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_restored_tmpfs_mounts_are_the_ones_runc_made(daemon):
    """/dev, /dev/shm and (cgroup v1) /sys/fs/cgroup named external by the
    dump over the RPC and made again by the restore: the same entries
    (device nodes that work), the same mount options (the size asked
    for), /dev/shm writable; the daemon's own mounts of them gone
    afterwards."""
    name = counter(daemon, "ck-devs", "--shm-size", "8m")
    wait_numbers(daemon, name, 5)
    script = ("ls -lnA /dev | grep -v -e ' pts$' -e ' mqueue$'; echo; ls -A1 /sys/fs/cgroup; "
              "ls -lnA /sys/fs/cgroup | grep '^l'; true")
    listed = daemon.docker("exec", name, "sh", "-c", script).stdout
    mounts = _mounts(daemon, name)
    assert mounts["/dev/shm"][1].count("size=8192k") == 1
    daemon.docker("checkpoint", "create", name, "cp1")
    if _checkpoint_document(daemon, name)["CRIU"]["RPC"]:
        assert sorted(_tmpfs_record(daemon, name)) == sorted(mounts)
    logged = numbers(daemon, name)
    daemon.docker("start", "--checkpoint", "cp1", name)
    assert_continues(restored_numbers(daemon, name, len(logged)), logged[-1])
    assert daemon.docker("exec", name, "sh", "-c", script).stdout == listed
    assert _mounts(daemon, name) == mounts
    assert daemon.docker("exec", name, "sh", "-c", "head -c 3 /dev/zero | wc -c; echo x > /dev/null; "
                         "echo w > /dev/shm/w; cat /dev/shm/w").stdout.split() == ["3", "w"]
    sources = os.path.join(daemon.exec_root, "criu", "tmpfs") + "/"

    def released():
        with open("/proc/self/mountinfo") as f:
            return not any(line.split()[4].startswith(sources) for line in f)

    wait_for(released, 10, interval=0.1, what="the restore's tmpfs sources unmounted")
    daemon.docker("rm", "-f", name)


@pytest.fixture(scope="module")
def runc_daemon(module_daemons, tmp_path_factory, criu):
    """A daemon checkpointing through runc (--criu-rpc=false)."""
    d = module_daemons.start("--experimental", "--criu-path", criu, "--criu-rpc=false")
    _import_busybox(d, tmp_path_factory)
    return d


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_runc_checkpoint_fallback(runc_daemon):
    """--criu-rpc=false: runc checkpoint and runc restore, as before."""
    name = counter(runc_daemon, "ck-runc")
    after, last = checkpoint_and_restore(runc_daemon, name)
    assert_continues(after, last)
    assert _checkpoint_document(runc_daemon, name)["CRIU"]["RPC"] is False
    assert runc_daemon.docker("exec", name, "echo", "in").stdout == "in\n"
    runc_daemon.docker("rm", "-f", name)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_tty_container(daemon):
    name = counter(daemon, "ck-tty", "-t")
    after, last = checkpoint_and_restore(daemon, name)
    assert_continues(after, last)
    # (Dumped over the RPC from inside its network namespace, which the
    # images then leave out; restored by runc, whose CRIU enters it.)
    assert_in_its_network_namespace(daemon, name)
    assert daemon.docker_json("inspect", name, format="{{json .Config.Tty}}") is True
    daemon.docker("rm", "-f", name)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_restore_after_daemon_restart(daemon):
    name = counter(daemon, "ck-reboot")
    wait_numbers(daemon, name, 5)
    daemon.docker("checkpoint", "create", name, "cp1")
    logged = numbers(daemon, name)
    daemon.restart()
    assert state(daemon, name)["Status"] == "exited"
    assert daemon.docker("checkpoint", "ls", name).stdout.split() == ["CHECKPOINT", "NAME", "cp1"]
    daemon.docker("start", "--checkpoint", "cp1", name)
    assert_continues(restored_numbers(daemon, name, len(logged)), logged[-1])
    daemon.docker("rm", "-f", name)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_restart_policy_does_not_revive_a_checkpointed_container(daemon):
    name = counter(daemon, "ck-always", "--restart", "always")
    # A control that fails by itself once told to: once the restart manager
    # has revived it, it has had its turn (dockerd's would have started
    # ck-always again by then).
    daemon.docker("rm", "-f", "ck-control", check=False)
    daemon.docker("run", "-d", "--name", "ck-control", "--network", "none", "--restart", "on-failure:1",
                  "busybox", "sh", "-c", "while [ ! -e /stop ]; do sleep 0.1; done; exit 1")
    wait_numbers(daemon, name, 3)
    daemon.docker("checkpoint", "create", name, "cp1")
    daemon.docker("exec", "ck-control", "touch", "/stop")
    wait_for(lambda: daemon.docker_json("inspect", "ck-control", format="{{json .RestartCount}}") == 1
             and not state(daemon, "ck-control")["Running"], 15, what="the control container restarted")
    s = daemon.docker_json("inspect", name, format="{{json .}}")
    assert s["State"]["Status"] == "exited" and s["RestartCount"] == 0
    # Nor when the daemon starts again ("always" restarts stopped containers
    # then: a control, running when the daemon stops, shows it has).
    daemon.docker("rm", "-f", "ck-control")
    control = counter(daemon, "ck-control", "--restart", "always", "--stop-timeout", "1")
    daemon.restart()
    wait_for(lambda: state(daemon, control)["Running"], 15, what="the control container restarted")
    assert state(daemon, name)["Status"] == "exited"
    daemon.docker("rm", "-f", control)
    logged = numbers(daemon, name)
    daemon.docker("start", "--checkpoint", "cp1", name)
    assert_continues(restored_numbers(daemon, name, len(logged)), logged[-1])
    # After a restore the policy applies again, as after any start.
    assert daemon.docker_json("inspect", name, format="{{json .HostConfig.RestartPolicy.Name}}") == "always"
    daemon.docker("rm", "-f", name)


# -- list, remove, events ---------------------------------------------------------


@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("DELETE", "/containers/{name}/checkpoints/{checkpoint}")
def test_ls_and_rm_several(daemon):
    name = counter(daemon, "ck-many")
    assert daemon.request("GET", "/v1.41/containers/%s/checkpoints" % name).json() is None
    for checkpoint in ("b-two", "a.one", "c_three"):
        daemon.docker("checkpoint", "create", "--leave-running", name, checkpoint)
    listed = daemon.docker("checkpoint", "ls", name).stdout.split()
    assert listed == ["CHECKPOINT", "NAME", "a.one", "b-two", "c_three"]
    resp = daemon.request("GET", "/v1.41/containers/%s/checkpoints" % name)
    assert resp.status == 200
    assert resp.json() == [{"Name": "a.one"}, {"Name": "b-two"}, {"Name": "c_three"}]
    assert daemon.docker("checkpoint", "rm", name, "b-two").stdout == ""
    assert daemon.docker("checkpoint", "ls", name).stdout.split() == ["CHECKPOINT", "NAME", "a.one", "c_three"]
    resp = daemon.request("DELETE", "/v1.41/containers/%s/checkpoints/a.one" % name)
    assert (resp.status, resp.body) == (204, b"")
    result = daemon.docker("checkpoint", "rm", name, "b-two", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error response from daemon: checkpoint b-two does not exist for container %s" % name
    )
    # Checkpoints live in the container's directory and go with it.
    cid = daemon.docker_json("inspect", name, format="{{json .Id}}")
    directory = os.path.join(daemon.data_root, "containers", cid, "checkpoints")
    assert os.listdir(directory) == ["c_three"]
    daemon.docker("rm", "-f", name)
    assert not os.path.exists(directory)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/events")
def test_checkpoint_event(daemon):
    name = counter(daemon, "ck-events")
    wait_numbers(daemon, name, 2)
    since = str(time.time() - 1)
    daemon.docker("checkpoint", "create", name, "cp1")
    out = daemon.docker(
        "events", "--since", since, "--until", str(time.time() + 0.5), "--filter", "container=" + name,
        "--format", "{{.Action}} {{index .Actor.Attributes \"exitCode\"}}",
    ).stdout
    # As dockerd: the container dies (137), then the checkpoint is announced.
    actions = [line.strip() for line in out.splitlines()]
    assert actions[-2:] == ["die 137", "checkpoint"], actions
    daemon.docker("rm", "-f", name)


# -- one operation at a time ---------------------------------------------------------


def calls(daemon, name):
    """The checkpoint and stop requests for C{name} the daemon logged (--debug), in order."""
    pattern = r"Calling POST /v[0-9.]+/containers/%s/(checkpoints|stop)\b" % re.escape(name)
    return re.findall(pattern, daemon.log_text())


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("POST", "/containers/{name:.*}/stop")
def test_checkpoint_racing_a_stop_and_a_second_checkpoint(daemon):
    name = counter(daemon, "ck-race")
    wait_numbers(daemon, name, 5)
    results = {}

    def run(key, *args):
        results[key] = daemon.docker(*args, check=False)

    threads = [
        threading.Thread(target=run, args=("first", "checkpoint", "create", name, "cp1")),
        threading.Thread(target=run, args=("second", "checkpoint", "create", name, "cp2")),
        threading.Thread(target=run, args=("stop", "stop", "-t", "1", name)),
    ]
    # Each request reaches the daemon (its handlers run in arrival order)
    # before the next is sent.
    for count, t in enumerate(threads, 1):
        t.start()
        wait_for(lambda: len(calls(daemon, name)) == count, 15, what="request %d in the daemon's log" % count)
    assert calls(daemon, name) == ["checkpoints", "checkpoints", "stop"]
    for t in threads:
        t.join(60)
    assert results["first"].returncode == 0, results["first"].stderr
    # Serialised: the second came after the first had stopped the container.
    assert results["second"].returncode == 1
    assert results["second"].stderr.strip() == (
        "Error response from daemon: Container %s not running" % name
    )
    assert results["stop"].returncode == 0, results["stop"].stderr
    assert daemon.docker("checkpoint", "ls", name).stdout.split() == ["CHECKPOINT", "NAME", "cp1"]
    # The checkpoint is whole: the stop's signal did not get into it.
    logged = numbers(daemon, name)
    daemon.docker("start", "--checkpoint", "cp1", name)
    assert_continues(restored_numbers(daemon, name, len(logged), more=10), logged[-1])
    assert state(daemon, name)["Running"]
    daemon.docker("rm", "-f", name)


# -- what dockerd answers when it goes wrong --------------------------------------------


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("DELETE", "/containers/{name}/checkpoints/{checkpoint}")
def test_bad_cases_answer_as_dockerd(daemon, tmp_path):
    running = counter(daemon, "ck-bad")
    daemon.docker("rm", "-f", "ck-created", check=False)
    daemon.docker("create", "--name", "ck-created", "--network", "none", "busybox", "sh", "-c", LOOP)
    base = "/v1.41/containers/"

    def create(container, body, raw=None):
        headers = {"Content-Type": "application/json"}
        data = raw if raw is not None else json.dumps(body).encode()
        resp = daemon.request("POST", base + container + "/checkpoints", data, headers)
        return resp.status, (resp.json()["message"] if resp.body.strip() else "")

    # No such container.
    assert create("ck-nope", {"CheckpointID": "cp1"}) == (404, "No such container: ck-nope")
    resp = daemon.request("GET", base + "ck-nope/checkpoints")
    assert (resp.status, resp.json()) == (404, {"message": "No such container: ck-nope"})
    # Not running.
    assert create("ck-created", {"CheckpointID": "cp1"}) == (500, "Container ck-created not running")
    result = daemon.docker("checkpoint", "create", "ck-created", "cp1", check=False)
    assert result.stderr.strip() == "Error response from daemon: Container ck-created not running"
    # Invalid names (one character is too short for dockerd's rule too).
    for bad in ("a/b", "-x", "", "..", "a"):
        assert create(running, {"CheckpointID": bad, "Exit": False}) == (
            500,
            "Invalid checkpoint ID (%s), only %s are allowed" % (bad, NAME_RULE),
        )
    # Bodies as Go's JSON decoder reads them.
    assert create(running, None, raw=b"") == (500, "EOF")
    assert create(running, None, raw=b"{") == (500, "unexpected EOF")
    assert create(running, None, raw=b"x") == (500, "invalid character 'x' looking for beginning of value")
    assert create(running, None, raw=b"[]") == (
        500, "json: cannot unmarshal array into Go value of type types.CheckpointCreateOptions"
    )
    assert create(running, {"CheckpointID": "ok1", "Exit": "yes"}) == (
        500, "json: cannot unmarshal string into Go struct field CheckpointCreateOptions.Exit of type bool"
    )
    # Exit left out: dockerd leaves the container running.
    assert create(running, {"CheckpointID": "kept"}) == (201, "")
    assert state(daemon, running)["Running"]
    # A name taken.
    assert create(running, {"CheckpointID": "kept", "Exit": False}) == (
        500,
        "cannot checkpoint container %s: checkpoint with name kept already exists for container %s"
        % (running, running),
    )
    # Restore while running: 304, as starting a running container.
    resp = daemon.request("POST", base + running + "/start?checkpoint=kept")
    assert (resp.status, resp.body) == (304, b"")
    # Unknown checkpoint: on restore (container name with its slash), rm and ls.
    daemon.docker("kill", running)
    resp = daemon.request("POST", base + running + "/start?checkpoint=zz")
    assert (resp.status, resp.json()) == (
        500, {"message": "checkpoint zz does not exist for container /%s" % running}
    )
    result = daemon.docker("start", "--checkpoint", "zz", running, check=False)
    assert result.stderr.strip() == (
        "Error response from daemon: checkpoint zz does not exist for container /%s" % running
    )
    assert state(daemon, running)["Status"] == "exited"
    resp = daemon.request("DELETE", base + running + "/checkpoints/zz")
    assert (resp.status, resp.json()) == (
        500, {"message": "checkpoint zz does not exist for container %s" % running}
    )
    resp = daemon.request("GET", base + running + "/checkpoints?dir=" + str(tmp_path / "nowhere"))
    assert (resp.status, resp.json()) == (
        500, {"message": "checkpoint  does not exist for container %s" % running}
    )
    # Checkpoint of a stopped container.
    assert create(running, {"CheckpointID": "late", "Exit": True}) == (500, "Container %s not running" % running)
    daemon.docker("rm", "-f", running, "ck-created")


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_failed_restore_says_why_and_leaves_the_container_startable(daemon):
    name = counter(daemon, "ck-broken")
    wait_numbers(daemon, name, 3)
    daemon.docker("checkpoint", "create", name, "cp1")
    cid = daemon.docker_json("inspect", name, format="{{json .Id}}")
    directory = os.path.join(daemon.data_root, "containers", cid, "checkpoints", "cp1")
    for entry in os.listdir(directory):
        if entry.startswith("pages-"):
            os.unlink(os.path.join(directory, entry))
    result = daemon.docker("start", "--checkpoint", "cp1", name, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "Error response from daemon: Cannot restore container from %s: " % directory
    ), result.stderr
    assert "Error (criu/" in result.stderr  # CRIU's own words
    s = state(daemon, name)
    assert s["Status"] == "exited" and s["Error"].startswith("Cannot restore container")
    logged = numbers(daemon, name)
    daemon.docker("start", name)
    assert wait_numbers(daemon, name, len(logged) + 3)[len(logged)] == 0  # afresh
    daemon.docker("rm", "-f", name)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_paused_container(daemon):
    name = counter(daemon, "ck-paused")
    wait_numbers(daemon, name, 5)
    daemon.docker("pause", name)
    daemon.docker("checkpoint", "create", "--leave-running", name, "cp1")
    assert state(daemon, name)["Status"] == "paused"
    daemon.docker("checkpoint", "create", name, "cp2")
    s = state(daemon, name)
    assert (s["Status"], s["Paused"], s["ExitCode"]) == ("exited", False, 137)
    logged = numbers(daemon, name)
    daemon.docker("start", "--checkpoint", "cp2", name)
    assert_continues(restored_numbers(daemon, name, len(logged)), logged[-1])
    daemon.docker("rm", "-f", name)


@pytest.mark.route("GET", "/version")
@pytest.mark.route("GET", "/info")
def test_version_and_info_report_criu(daemon):
    version = daemon.request("GET", "/version").json()
    components = {c["Name"]: c for c in version["Components"]}
    assert components["CRIU"]["Version"].split(".")[0] >= "4"
    info = daemon.info()
    assert not [w for w in info["Warnings"] or [] if "CRIU" in w]


# -- without a working CRIU ---------------------------------------------------------------


@pytest.mark.route("GET", "/info")
def test_the_configured_criu_works(daemons):
    """The daemon's own `criu check` (run at start with --experimental,
    reported by /info) passes with the CRIU it is configured with: the
    README's install provides one, so its absence is a failure, not a skip."""
    path = os.environ.get("TWISTEDOCK_TEST_CRIU")
    d = daemons.start("--experimental", *(["--criu-path", path] if path else []))
    warnings = [w for w in d.info()["Warnings"] or [] if "CRIU" in w]
    assert warnings == [], "the daemon's CRIU does not work (run scripts/install): %s" % warnings


BROKEN_CRIU = """#!/bin/sh
case "$1" in
  --version) echo "Version: 4.1.1" ;;
  check) echo "Error (criu/cr-check.c:1): this kernel lacks what CRIU needs" >&2; exit 1 ;;
  *) exit 1 ;;
esac
"""


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("DELETE", "/containers/{name}/checkpoints/{checkpoint}")
@pytest.mark.route("GET", "/info")
def test_without_criu_checkpoints_say_what_is_missing(daemons, tmp_path_factory):
    tools = tmp_path_factory.mktemp("criu")
    broken = str(tools / "criu")
    with open(broken, "w") as f:
        f.write(BROKEN_CRIU)
    os.chmod(broken, 0o755)
    d = daemons.start("--experimental", "--criu-path", broken)
    _import_busybox(d, tmp_path_factory)
    name = counter(d, "nocriu")
    problem = '%s failed "criu check": this kernel lacks what CRIU needs' % broken
    # The checkpoint routes say what is missing (500, as dockerd without CRIU)...
    result = d.docker("checkpoint", "create", name, "cp1", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error response from daemon: Cannot checkpoint container %s: checkpoint needs CRIU: %s" % (name, problem)
    )
    assert state(d, name)["Running"]
    assert d.docker("checkpoint", "ls", name).stdout.split() == ["CHECKPOINT", "NAME"]
    # ...restoring too (a checkpoint directory made by hand)...
    cid = d.docker_json("inspect", name, format="{{json .Id}}")
    os.makedirs(os.path.join(d.data_root, "containers", cid, "checkpoints", "manual"))
    d.docker("kill", name)
    result = d.docker("start", "--checkpoint", "manual", name, check=False)
    assert result.stderr.strip() == (
        "Error response from daemon: Cannot restore container %s: restore needs CRIU: %s" % (name, problem)
    )
    d.docker("checkpoint", "rm", name, "manual")
    # .../info warns, and everything else keeps working.
    warnings = d.info()["Warnings"]
    assert [w for w in warnings if "CRIU" in w] == [
        "WARNING: CRIU does not work: checkpoint and restore are unavailable: " + problem
    ]
    assert d.docker("run", "--rm", "--network", "none", "busybox", "echo", "still works").stdout == "still works\n"
    d.docker("start", name)
    assert state(d, name)["Running"]
    d.docker("rm", "-f", name)


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
def test_missing_criu_binary(daemons, tmp_path_factory):
    missing = str(tmp_path_factory.mktemp("nocriu") / "criu")
    d = daemons.start("--experimental", "--criu-path", missing)
    _import_busybox(d, tmp_path_factory)
    name = counter(d, "nocriu2")
    result = d.docker("checkpoint", "create", name, "cp1", check=False)
    assert result.stderr.strip().startswith(
        "Error response from daemon: Cannot checkpoint container %s: checkpoint needs CRIU: %s is not an executable file"
        % (name, missing)
    )
    d.docker("rm", "-f", name)


@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_restore_needs_experimental(daemons, tmp_path_factory):
    d = daemons.start()
    resp = d.request("POST", "/v1.41/containers/anything/start?checkpoint=cp1")
    assert (resp.status, resp.json()) == (400, {"message": "checkpoint is only supported in experimental mode"})
