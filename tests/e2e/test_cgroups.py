"""
Where containers' cgroups go, as dockerd puts them: /docker/<id> by
default, <CgroupParent>/<id> when the request names a parent (a kubelet's
pod cgroup), <--cgroup-parent>/<id> for the daemon's (flag or daemon.json);
seen from /proc/<pid>/cgroup of the container's process, in every v1
hierarchy and the unified one beside them.  The systemd driver is refused
at start where systemd does not run (runc's message).
"""

import os
import secrets

import pytest

from .test_containers import import_busybox

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

TAG = secrets.token_hex(3)


def cgroups_of(pid: int) -> dict:
    """/proc/<pid>/cgroup as {controllers: path}."""
    with open("/proc/%d/cgroup" % pid) as f:
        return {line.split(":", 2)[1]: line.split(":", 2)[2].strip() for line in f}


def own_unified() -> str:
    return cgroups_of(os.getpid()).get("", "/")


def placed(daemon, *run_args) -> tuple:
    ident = daemon.docker("run", "-d", *run_args, "busybox", "sleep", "60").stdout.strip()
    pid = daemon.docker_json("inspect", ident, format="{{json .State.Pid}}")
    return ident, cgroups_of(pid)


def remove_parents(*paths: str) -> None:
    """The parent cgroups a test made (runc leaves them, as dockerd's /docker)."""
    for path in paths:
        for mount in os.listdir("/sys/fs/cgroup"):
            directory = os.path.join("/sys/fs/cgroup", mount, path.lstrip("/"))
            while os.path.isdir(directory) and directory.rstrip("/") != os.path.join("/sys/fs/cgroup", mount):
                try:
                    os.rmdir(directory)
                except OSError:
                    break
                directory = os.path.dirname(directory)


def check_placement(cgroups: dict, expected: str) -> None:
    for controllers in ("memory", "cpu", "cpuset", "pids", "devices", "freezer", "blkio"):
        for key, path in cgroups.items():
            if controllers in key.split(","):
                assert path == expected, (key, path, expected)
    if "" in cgroups and os.path.isdir("/sys/fs/cgroup/unified"):
        # The unified hierarchy beside v1 (hybrid): runc puts it there too.
        assert cgroups[""] == expected, cgroups


def test_default_and_requested_parents(module_daemons, tmp_path):
    daemon = module_daemons.start()
    import_busybox(daemon, tmp_path)
    assert daemon.info()["CgroupDriver"] == "cgroupfs"
    ident, cgroups = placed(daemon)
    check_placement(cgroups, "/docker/" + ident)
    # Where Nomad writes a task's reserved cores (cgroup v1).
    if os.path.isdir("/sys/fs/cgroup/cpuset/docker"):
        assert os.path.isfile("/sys/fs/cgroup/cpuset/docker/%s/cpuset.cpus" % ident)
    pod = "/kubepods/besteffort/pod" + TAG
    try:
        ident, cgroups = placed(daemon, "--cgroup-parent", pod)
        check_placement(cgroups, pod + "/" + ident)
        assert daemon.docker_json("inspect", ident, format="{{json .HostConfig.CgroupParent}}") == pod
        daemon.docker("rm", "-f", *daemon.docker("ps", "-aq").stdout.split())
    finally:
        remove_parents(pod)


@pytest.mark.parametrize("how", ["flag", "daemon.json"])
def test_daemon_cgroup_parent(module_daemons, tmp_path, how):
    parent = "/td-parent-" + TAG
    if how == "flag":
        daemon = module_daemons.start("--cgroup-parent=" + parent)
    else:
        daemon = module_daemons.start(config={"cgroup-parent": parent})
    try:
        import_busybox(daemon, tmp_path)
        ident, cgroups = placed(daemon)
        check_placement(cgroups, parent + "/" + ident)
        # A request's own parent still wins.
        ident, cgroups = placed(daemon, "--cgroup-parent", parent + "/own")
        check_placement(cgroups, parent + "/own/" + ident)
        daemon.docker("rm", "-f", *daemon.docker("ps", "-aq").stdout.split())
    finally:
        daemon.stop()
        remove_parents(parent + "/own", parent)


def test_cgroup_driver_options(daemons):
    code, output = daemons.run_to_exit("--exec-opt", "native.cgroupdriver=bogus")
    assert code != 0 and "native.cgroupdriver option bogus not supported" in output, output
    code, output = daemons.run_to_exit(config={"exec-opts": ["native.cgroupdriver=none"]})
    assert code != 0 and "native.cgroupdriver option none is internally used" in output, output
    code, output = daemons.run_to_exit("--exec-opt", "native.cgroupdriver=systemd", "--cgroup-parent=/docker")
    assert code != 0 and 'cgroup-parent for systemd cgroup should be a valid slice named as "xxx.slice"' in output
    if not os.path.isdir("/run/systemd/system"):
        code, output = daemons.run_to_exit("--exec-opt", "native.cgroupdriver=systemd")
        assert code != 0 and ("systemd cgroup flag passed, but systemd support for managing cgroups is not "
                              "available") in output, output
    else:
        daemon = daemons.start("--exec-opt", "native.cgroupdriver=systemd")
        assert daemon.info()["CgroupDriver"] == "systemd"
