"""docker run as dockerd 20.10 runs it (issue 10): the network looked up at
start, a missing bind source made, the attach event, and the init layer
every container's root has."""

import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import time

import pytest

from .test_containers import daemon, remove, state  # noqa: F401  (module fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")]

#: What dockerd's init layer puts in every container's root (docker export).
INIT_LAYER_MEMBERS = {
    ".dockerenv": "-rwxr-xr-x",
    "dev/console": "-rwxr-xr-x",
    "dev/pts": "drwxr-xr-x",
    "dev/shm": "drwxr-xr-x",
    "etc/hostname": "-rwxr-xr-x",
    "etc/hosts": "-rwxr-xr-x",
    "etc/resolv.conf": "-rwxr-xr-x",
    "etc/mtab": "lrwxrwxrwx",
}


@pytest.mark.route("POST", "/containers/create")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_unknown_network_is_refused_at_start(daemon):
    remove(daemon, "nonet")
    resp = daemon.request("POST", "/v1.41/containers/create?name=nonet",
                          {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "nonet"}})
    assert resp.status == 201, resp
    try:
        resp = daemon.request("POST", "/v1.41/containers/nonet/start")
        assert (resp.status, resp.json()) == (404, {"message": "network nonet not found"})
        s = state(daemon, "nonet")
        assert (s["Status"], s["ExitCode"], s["Error"]) == ("created", 128, "network nonet not found")
    finally:
        remove(daemon, "nonet")
    # So is the container whose network a container: mode joins.
    resp = daemon.request("POST", "/v1.41/containers/create?name=nonet",
                          {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "container:nope"}})
    assert resp.status == 201, resp
    try:
        resp = daemon.request("POST", "/v1.41/containers/nonet/start")
        assert (resp.status, resp.json()) == (404, {"message": "No such container: nope"})
    finally:
        remove(daemon, "nonet")
    # The CLI shows the network's error, not a pull of an image it thinks missing.
    result = daemon.docker("run", "--rm", "--network", "nonet", "busybox", "true", check=False)
    assert result.returncode == 125
    assert result.stderr.startswith("docker: Error response from daemon: network nonet not found\n")


@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_missing_bind_source_is_made(daemon, tmp_path):
    source = tmp_path / "missing" / "dir"
    result = daemon.docker("run", "--rm", "-v", "%s:/c" % source, "busybox", "stat", "-c", "%F", "/c")
    assert result.stdout == "directory\n"
    st = os.stat(source)
    assert (oct(st.st_mode & 0o7777), st.st_uid) == (oct(0o755), 0)
    shutil.rmtree(tmp_path / "missing")
    # A --mount bind whose source is missing is refused, as dockerd refuses it.
    result = daemon.docker("run", "--rm", "--mount", "type=bind,src=%s,dst=/c" % source, "busybox", "true",
                           check=False)
    assert result.returncode == 125
    assert "invalid mount config for type \"bind\": bind source path does not exist: %s" % source in result.stderr
    assert not os.path.exists(source)


@pytest.mark.route("GET", "/events")
@pytest.mark.route("POST", "/containers/{name:.*}/attach")
def test_attached_run_logs_an_attach_event(daemon):
    remove(daemon, "evrun")
    t0 = time.time()
    daemon.docker("run", "--name", "evrun", "--label", "k=v", "busybox", "true")
    daemon.docker("rm", "evrun")
    t1 = time.time() + 1
    out = daemon.docker("events", "--since", "%.6f" % t0, "--until", "%.6f" % t1, "--filter", "container=evrun",
                        "--format", "{{json .}}", timeout=15).stdout
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["Action"] for e in events] == ["create", "attach", "start", "die", "destroy"]
    attach = events[1]
    assert (attach["status"], attach["Type"], attach["from"]) == ("attach", "container", "busybox")
    assert attach["Actor"]["Attributes"] == {"image": "busybox", "name": "evrun", "k": "v"}


def _export_members(daemon, name):
    data = subprocess.run(["docker", "export", name], env=daemon.cli_env(), capture_output=True,
                          check=True, timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


@pytest.mark.route("GET", "/containers/{name:.*}/export")
@pytest.mark.route("GET", "/containers/{name:.*}/changes")
@pytest.mark.route("POST", "/commit")
def test_init_layer_in_the_root_not_in_diff_nor_commit(daemon):
    remove(daemon, "initl")
    daemon.docker("run", "-d", "--name", "initl", "busybox", "sleep", "1000")
    try:
        listing = daemon.docker("exec", "initl", "ls", "-la", "/.dockerenv", "/etc/mtab").stdout
        assert "/etc/mtab -> /proc/mounts" in listing
        assert daemon.docker("exec", "initl", "stat", "-c", "%F", "/dev/pts", "/dev/shm").stdout == \
            "directory\ndirectory\n"
        members = _export_members(daemon, "initl")
        for name, mode in INIT_LAYER_MEMBERS.items():
            assert stat.filemode(members[name].mode | _type_bits(members[name])) == mode, name
        assert members["etc/mtab"].linkname == "/proc/mounts"
        assert members["etc/hosts"].size == 0  # the init layer's, not the bind-mounted file
        # dockerd's diff compares with the init layer: nothing changed yet.
        assert daemon.docker("diff", "initl").stdout == ""
        daemon.docker("exec", "initl", "sh", "-c", "touch /x /.dockerenv && rm /etc/mtab")
        # (dockerd lists them in its walk's order.)
        changes = sorted(daemon.docker("diff", "initl").stdout.splitlines())
        assert changes == ["A /x", "C /.dockerenv", "C /etc", "D /etc/mtab"]
        image = daemon.docker("commit", "initl", "initl:committed").stdout.strip()
        try:
            # The committed layer holds the container's changes only (as
            # dockerd's: .dockerenv, etc/, the whiteout of etc/mtab, x).
            upper = daemon.docker_json("image", "inspect", image, format="{{json .GraphDriver.Data.UpperDir}}")
            found = sorted(os.path.relpath(os.path.join(root, name), upper)
                           for root, dirs, files in os.walk(upper) for name in dirs + files)
            assert found == [".dockerenv", "etc", "etc/mtab", "x"]
            assert not os.path.islink(os.path.join(upper, "etc/mtab"))  # (a whiteout)
            daemon.docker("rm", "-f", "initl")
            daemon.docker("create", "--name", "initl", "initl:committed", "true")
            members = _export_members(daemon, "initl")
            # A new container gets its own init layer above the image's.
            assert members["etc/mtab"].linkname == "/proc/mounts"
            assert "x" in members and "dev/console" in members
        finally:
            remove(daemon, "initl")
            daemon.docker("rmi", image, check=False)
    finally:
        remove(daemon, "initl")


def _type_bits(member: tarfile.TarInfo) -> int:
    if member.isdir():
        return stat.S_IFDIR
    if member.issym():
        return stat.S_IFLNK
    return stat.S_IFREG
