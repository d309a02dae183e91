"""
Containers joining another container's namespaces (C{container:<id>} in
NetworkMode, IpcMode and PidMode) as a pod's do: a pause-style sandbox and
a container joining all three, seen from inside both; dockerd's errors.
"""

import os

import pytest

from .test_containers import import_busybox

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


@pytest.fixture(scope="module")
def daemon(module_daemons, tmp_path_factory):
    d = module_daemons.start()
    import_busybox(d, tmp_path_factory.mktemp("img"))
    yield d
    d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)


def can_lower_oom_score() -> bool:
    """A negative OomScoreAdj needs CAP_SYS_RESOURCE (dockerd's and runc's
    start fail without it, as on hosts that withhold it from root)."""
    with open("/proc/self/status") as f:
        caps = dict(line.split(":\t", 1) for line in f if line.startswith("Cap"))
    return bool(int(caps["CapEff"], 16) & (1 << 24))


#: The kubelet's OomScoreAdj for a pod's sandbox, where the host allows it.
OOM = ["--oom-score-adj", "-998"] if can_lower_oom_score() else []


def inspect(daemon, name):
    return daemon.docker_json("inspect", name, format="{{json .}}")


def ns(pid: int, kind: str) -> str:
    return os.readlink("/proc/%d/ns/%s" % (pid, kind))


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_sandbox_and_joiner_share_namespaces_files_and_shm(daemon):
    daemon.docker("run", "-d", "--name", "sandbox", "--network", "none", "--ipc", "shareable",
                  *OOM, "--shm-size", "64m", "--restart", "unless-stopped",
                  "busybox", "sleep", "600")
    daemon.docker("create", "--name", "app", "--network", "container:sandbox", "--ipc", "container:sandbox",
                  "--pid", "container:sandbox", "-v", "/dev/null:/etc/hosts:ro", "busybox", "sleep", "600")
    sandbox = inspect(daemon, "sandbox")
    created = inspect(daemon, "app")
    for field in ("NetworkMode", "IpcMode", "PidMode"):
        # The name resolved at create, as dockerd keeps it.
        assert created["HostConfig"][field] == "container:" + sandbox["Id"]
    assert (created["ResolvConfPath"], created["HostsPath"], created["HostnamePath"]) == ("", "", "")
    daemon.docker("start", "app")
    app = inspect(daemon, "app")
    spid, apid = sandbox["State"]["Pid"], app["State"]["Pid"]
    for kind in ("net", "ipc", "pid"):
        assert ns(spid, kind) == ns(apid, kind), kind
    assert ns(spid, "mnt") != ns(apid, "mnt")
    for key in ("ResolvConfPath", "HostsPath", "HostnamePath"):
        assert app[key] == sandbox[key] and app[key].startswith(os.path.dirname(sandbox["LogPath"]))
    assert app["Config"]["Hostname"] == sandbox["Config"]["Hostname"] == sandbox["Id"][:12]
    assert app["NetworkSettings"]["SandboxKey"] == "" and app["NetworkSettings"]["Networks"] == {}
    # (The daemon's namespace file, as dockerd's: the sandbox's namespace.)
    key = sandbox["NetworkSettings"]["SandboxKey"]
    assert os.stat(key).st_ino == os.stat("/proc/%d/ns/net" % spid).st_ino
    with open("/proc/%d/oom_score_adj" % spid) as f:
        assert f.read().strip() == ("-998" if OOM else "0")
    assert daemon.docker("exec", "app", "hostname").stdout.strip() == sandbox["Id"][:12]
    # One PID namespace: the sandbox's sleep is seen from the app.
    ps = daemon.docker("exec", "app", "ps", "-o", "pid,args").stdout
    assert len([line for line in ps.splitlines() if "sleep 600" in line]) == 2, ps
    # The resolv.conf rewritten on the host reaches both.
    with open(sandbox["ResolvConfPath"], "w") as f:
        f.write("nameserver 10.96.0.10\nsearch default.svc.cluster.local\n")
    for name in ("sandbox", "app"):
        assert "10.96.0.10" in daemon.docker("exec", name, "cat", "/etc/resolv.conf").stdout
    # A user mount over /etc/hosts wins.
    assert daemon.docker("exec", "app", "cat", "/etc/hosts").stdout == ""
    assert "localhost" in daemon.docker("exec", "sandbox", "cat", "/etc/hosts").stdout
    # /dev/shm shared: the sandbox's own tmpfs of 64 MiB.
    shm = os.path.join(os.path.dirname(sandbox["LogPath"]), "mounts", "shm")
    assert mounted(shm)
    daemon.docker("exec", "sandbox", "sh", "-c", "echo hello > /dev/shm/x")
    assert daemon.docker("exec", "app", "cat", "/dev/shm/x").stdout == "hello\n"
    assert "size=65536k" in daemon.docker("exec", "app", "grep", "/dev/shm", "/proc/mounts").stdout
    daemon.docker("rm", "-f", "app")
    daemon.docker("stop", "sandbox")
    assert not mounted(shm)
    assert inspect(daemon, "sandbox")["NetworkSettings"]["SandboxKey"] == ""
    daemon.docker("rm", "sandbox")
    assert not os.path.exists(os.path.dirname(shm))


def start_error(daemon, name):
    return daemon.request("POST", "/containers/%s/start" % name)


def test_errors_as_dockerd(daemon):
    for field in ("IpcMode", "PidMode"):
        resp = daemon.request("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                               "HostConfig": {field: "container:nonex"}})
        assert (resp.status, resp.json()) == (400, {"message": "No such container: nonex"})
    daemon.docker("create", "--name", "donor", "busybox", "sleep", "600")
    donor = inspect(daemon, "donor")["Id"]
    daemon.docker("create", "--name", "j-net", "--network", "container:donor", "busybox", "true")
    daemon.docker("create", "--name", "j-ipc", "--ipc", "container:donor", "busybox", "true")
    daemon.docker("create", "--name", "j-pid", "--pid", "container:donor", "busybox", "true")
    daemon.docker("create", "--name", "self", "--network", "container:self", "busybox", "true")
    resp = start_error(daemon, "j-net")
    assert (resp.status, resp.json()["message"]) == (
        409, "cannot join network of a non running container: " + donor)
    resp = start_error(daemon, "j-ipc")
    assert (resp.status, resp.json()["message"]) == (
        500, "can't join IPC of container %s: container %s is not running" % (donor, donor))
    resp = start_error(daemon, "j-pid")
    assert (resp.status, resp.json()["message"]) == (500, "container %s is not running" % donor)
    resp = start_error(daemon, "self")
    assert (resp.status, resp.json()["message"]) == (500, "cannot join own network")
    daemon.docker("start", "donor")
    resp = start_error(daemon, "j-ipc")
    assert (resp.status, resp.json()["message"]) == (
        500, "can't join IPC of container %s: non-shareable IPC (hint: use IpcMode:shareable for the "
             "donor container)" % donor)
    daemon.docker("rm", "-f", "donor", "j-net", "j-ipc", "j-pid", "self")


def test_a_pod_survives_a_live_restore_restart(daemons, tmp_path):
    d = daemons.start("--live-restore")
    import_busybox(d, tmp_path)
    d.docker("run", "-d", "--name", "sandbox", "--network", "none", "--ipc", "shareable", "busybox", "sleep", "600")
    join = ["--network", "container:sandbox", "--ipc", "container:sandbox", "--pid", "container:sandbox"]
    d.docker("run", "-d", "--name", "app", *join, "busybox", "sleep", "600")
    before = inspect(d, "app")
    d.docker("exec", "sandbox", "sh", "-c", "echo kept > /dev/shm/x")
    d.restart()
    after = inspect(d, "app")
    assert after["State"]["Running"] and after["State"]["Pid"] == before["State"]["Pid"]
    for key in ("ResolvConfPath", "HostsPath", "HostnamePath"):
        assert after[key] == before[key]
    assert d.docker("exec", "app", "cat", "/dev/shm/x").stdout == "kept\n"
    shm = os.path.join(os.path.dirname(inspect(d, "sandbox")["LogPath"]), "mounts", "shm")
    assert mounted(shm)
    d.docker("rm", "-f", "app", "sandbox")
    assert not mounted(shm)


def test_cp_reads_a_joiners_files_from_its_sandbox(daemon, tmp_path):
    daemon.docker("run", "-d", "--name", "cp-sandbox", "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", "cp-app", "--network", "container:cp-sandbox", "busybox", "sleep", "600")
    sandbox = inspect(daemon, "cp-sandbox")
    with open(sandbox["ResolvConfPath"], "w") as f:
        f.write("nameserver 10.96.0.10\n")
    daemon.docker("cp", "cp-app:/etc/resolv.conf", str(tmp_path / "resolv.conf"))
    assert (tmp_path / "resolv.conf").read_text() == "nameserver 10.96.0.10\n"
    daemon.docker("rm", "-f", "cp-app", "cp-sandbox")
