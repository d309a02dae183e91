"""Volumes of the local driver against a real daemon, with the docker CLI
and docker-py: data kept across containers, copy-up, tmpfs and bind volumes
through DriverOpts, rm -v, dockerd's errors, docker cp through a volume and
volumes that survive a daemon restart."""

import io
import json
import os
import subprocess
import tarfile
import time
import uuid

import pytest

from .test_containers import busybox_rootfs_tar

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


@pytest.fixture(scope="module")
def daemon(module_daemons, tmp_path_factory):
    """A daemon with busybox, and "volbox": busybox with /data (holding a
    file) declared a VOLUME."""
    d = module_daemons.start()
    base = tmp_path_factory.mktemp("volimg")
    tar = busybox_rootfs_tar(base)
    with tarfile.open(tar, "a") as t:
        info = tarfile.TarInfo("data")
        info.type = tarfile.DIRTYPE
        info.mode = 0o750
        t.addfile(info)
        data = b"from the image\n"
        info = tarfile.TarInfo("data/image.txt")
        info.size = len(data)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(data))
    for args in (["busybox:latest"], ["-c", "VOLUME /data", "volbox:latest"]):
        with open(tar, "rb") as f:
            result = subprocess.run(["docker", "import"] + args[:-1] + ["-", args[-1]], stdin=f,
                                    env=d.cli_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    return d


def unique(prefix: str) -> str:
    return prefix + "-" + uuid.uuid4().hex[:8]


def volumes(daemon) -> set:
    return set(daemon.docker("volume", "ls", "-q").stdout.split())


def run(daemon, *args, check=True):
    return daemon.docker("run", "--network", "none", *args, check=check)


@pytest.mark.route("POST", "/volumes/create")
@pytest.mark.route("GET", "/volumes/{name:.*}")
@pytest.mark.route("DELETE", "/volumes/{name:.*}")
def test_named_volume_keeps_data_across_containers(daemon):
    name = unique("keep")
    run(daemon, "--rm", "-v", name + ":/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert run(daemon, "--rm", "-v", name + ":/data:ro", "busybox", "cat", "/data/f").stdout == "kept\n"
    doc = daemon.docker_json("volume", "inspect", name)
    assert (doc["Name"], doc["Driver"], doc["Scope"]) == (name, "local", "local")
    assert doc["Mountpoint"].endswith("/volumes/%s/_data" % name)
    daemon.docker("volume", "rm", name)
    assert name not in volumes(daemon)


def test_inspect_mounts_as_dockerd(daemon):
    name, c = unique("insp"), unique("c")
    daemon.docker("create", "--name", c, "-v", name + ":/n", "-v", "/anon",
                  "--mount", "type=volume,src=%s2,dst=/n2,readonly" % name,
                  "--mount", "type=tmpfs,dst=/t", "-v", "/tmp:/host:ro", "volbox", "true")
    try:
        mounts = {m["Destination"]: m for m in daemon.docker_json("inspect", c, format="{{json .Mounts}}")}
        assert set(mounts) == {"/n", "/n2", "/anon", "/data", "/t", "/host"}
        assert mounts["/n"] == {
            "Type": "volume", "Name": name, "Source": mounts["/n"]["Source"], "Destination": "/n",
            "Driver": "local", "Mode": "z", "RW": True, "Propagation": "",
        }
        assert mounts["/n"]["Source"].endswith("/volumes/%s/_data" % name)
        assert (mounts["/n2"]["RW"], mounts["/n2"]["Mode"]) == (False, "z")
        assert (mounts["/anon"]["Mode"], len(mounts["/anon"]["Name"])) == ("", 64)
        assert mounts["/t"] == {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "",
                                "RW": True, "Propagation": ""}
        # A bind of a directory holding the daemon's root is shown rslave, as dockerd's.
        assert daemon.data_root.startswith("/tmp/")
        assert mounts["/host"] == {"Type": "bind", "Source": "/tmp", "Destination": "/host", "Mode": "ro",
                                   "RW": False, "Propagation": "rslave"}
        anonymous = daemon.docker_json("volume", "inspect", mounts["/anon"]["Name"])
        assert anonymous["Labels"] == {"com.docker.volume.anonymous": ""}
    finally:
        daemon.docker("rm", "-v", c)
        daemon.docker("volume", "rm", name, name + "2")


def test_copy_up_and_nocopy(daemon):
    name, bare = unique("up"), unique("bare")
    out = run(daemon, "--rm", "-v", name + ":/data", "volbox", "sh", "-c",
              "cat /data/image.txt; stat -c %a /data").stdout
    assert out == "from the image\n750\n"
    # An image VOLUME (anonymous) is filled the same way.
    assert run(daemon, "--rm", "volbox", "cat", "/data/image.txt").stdout == "from the image\n"
    # nocopy (-v) and volume-nocopy (--mount) leave the volume empty.
    assert run(daemon, "--rm", "-v", bare + ":/data:nocopy", "volbox", "ls", "-A", "/data").stdout == ""
    assert run(daemon, "--rm", "--mount", "type=volume,src=%s,dst=/data,volume-nocopy" % bare,
               "volbox", "ls", "-A", "/data").stdout == ""
    # A volume with content is not filled again.
    run(daemon, "--rm", "-v", name + ":/data", "volbox", "sh", "-c", "rm /data/image.txt; touch /data/mine")
    assert run(daemon, "--rm", "-v", name + ":/data", "volbox", "ls", "-A", "/data").stdout == "mine\n"
    daemon.docker("volume", "rm", name, bare)


def test_tmpfs_volume_with_size(daemon):
    name = unique("tmp")
    daemon.docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs",
                  "--opt", "device=tmpfs", "--opt", "o=size=2m", name)
    out = run(daemon, "--rm", "-v", name + ":/scratch", "busybox", "sh", "-c",
              "grep ' /scratch ' /proc/mounts; echo hi > /scratch/f; cat /scratch/f").stdout
    assert out.startswith("tmpfs /scratch tmpfs ")
    assert "size=2048k" in out and out.endswith("hi\n")
    # Unmounted after its last user: nothing is left on the host.
    doc = daemon.docker_json("volume", "inspect", name)
    assert doc["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}
    assert os.listdir(doc["Mountpoint"]) == []
    daemon.docker("volume", "rm", name)
    # The same made on first use by --mount, with its options and labels.
    out = run(daemon, "--rm", "--mount", "type=volume,src=%s,dst=/m,volume-driver=local,volume-opt=type=tmpfs,"
              "volume-opt=device=tmpfs,volume-opt=o=size=1m,volume-label=team=a" % name,
              "busybox", "grep", " /m ", "/proc/mounts").stdout
    assert out.startswith("tmpfs /m tmpfs ") and "size=1024k" in out
    doc = daemon.docker_json("volume", "inspect", name)
    assert (doc["Labels"], doc["Options"]["o"]) == ({"team": "a"}, "size=1m")
    daemon.docker("volume", "rm", name)


def test_bind_volume_through_driver_opts(daemon, tmp_path):
    name = unique("bind")
    (tmp_path / "host.txt").write_text("on the host\n")
    daemon.docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=%s" % tmp_path, name)
    out = run(daemon, "--rm", "-v", name + ":/b", "busybox", "sh", "-c", "cat /b/host.txt; echo back > /b/new").stdout
    assert out == "on the host\n"
    assert (tmp_path / "new").read_text() == "back\n"
    daemon.docker("volume", "rm", name)
    assert (tmp_path / "host.txt").exists()


@pytest.mark.route("DELETE", "/containers/{name:.*}")
def test_rm_v_removes_anonymous_volumes_only(daemon):
    name, c = unique("named"), unique("c")
    daemon.docker("create", "--name", c, "-v", name + ":/n", "-v", "/anon", "volbox", "true")
    points = daemon.docker_json("inspect", c, format="{{json .Mounts}}")
    anonymous = {m["Name"] for m in points if m["Destination"] in ("/anon", "/data")}
    assert len(anonymous) == 2 and anonymous <= volumes(daemon)
    daemon.docker("rm", "-v", c)
    left = volumes(daemon)
    assert name in left and not anonymous & left
    # --rm does the same.
    before = volumes(daemon)
    run(daemon, "--rm", "-v", name + ":/n", "volbox", "true")
    assert volumes(daemon) == before
    # Without -v the anonymous volumes stay (dangling).
    c2 = unique("c")
    daemon.docker("create", "--name", c2, "volbox", "true")
    anon = daemon.docker_json("inspect", c2, format="{{json .Mounts}}")[0]["Name"]
    daemon.docker("rm", c2)
    assert anon in daemon.docker("volume", "ls", "-q", "--filter", "dangling=true").stdout.split()
    daemon.docker("volume", "rm", name, anon)


@pytest.mark.route("POST", "/volumes/prune")
@pytest.mark.route("GET", "/volumes")
def test_prune_anonymous_by_default_and_all(daemon):
    named = unique("prn")
    daemon.docker("volume", "create", named)
    c = unique("c")
    daemon.docker("create", "--name", c, "volbox", "true")
    anon = daemon.docker_json("inspect", c, format="{{json .Mounts}}")[0]["Name"]
    daemon.docker("rm", c)
    pruned = daemon.request("POST", "/v1.43/volumes/prune").json()
    assert anon in pruned["VolumesDeleted"] and named not in pruned["VolumesDeleted"]
    assert pruned["SpaceReclaimed"] >= len("from the image\n")
    pruned = daemon.request("POST", "/v1.41/volumes/prune").json()
    assert named in pruned["VolumesDeleted"]


def test_errors_as_dockerd(daemon):
    name, c = unique("err"), unique("c")
    daemon.docker("create", "--name", c, "-v", name + ":/n", "busybox", "true")
    try:
        answer = daemon.request("DELETE", "/v1.41/volumes/" + name)
        assert (answer.status, answer.json()) == (
            409, {"message": "remove %s: volume is in use - [%s]" % (name, daemon.docker(
                "inspect", "-f", "{{.Id}}", c).stdout.strip())})
        assert daemon.request("DELETE", "/v1.41/volumes/%s?force=1" % name).status == 409
    finally:
        daemon.docker("rm", c)
    answer = daemon.request("GET", "/v1.41/volumes/nope")
    assert (answer.status, answer.json()) == (404, {"message": "get nope: no such volume"})
    assert daemon.request("DELETE", "/v1.41/volumes/nope?force=1").status == 204
    # The same name again, other options: the volume there is answered, as dockerd's local driver.
    answer = daemon.request("POST", "/v1.41/volumes/create",
                            {"Name": name, "DriverOpts": {"type": "tmpfs", "device": "tmpfs"}})
    assert (answer.status, answer.json()["Options"]) == (201, None)
    answer = daemon.request("POST", "/v1.41/volumes/create", {"Name": "x2", "Driver": "foo"})
    assert (answer.status, answer.json()) == (
        404, {"message": 'create x2: error looking up volume plugin foo: plugin "foo" not found'})
    answer = daemon.request("POST", "/v1.41/volumes/create", {"Name": "x3", "DriverOpts": {"foo": "bar"}})
    assert (answer.status, answer.json()) == (400, {"message": 'create x3: invalid option: "foo"'})
    answer = daemon.request("POST", "/v1.41/volumes/create", {"Name": "x4", "DriverOpts": {"o": "size=1m"}})
    assert answer.status == 400 and "missing required option" in answer.json()["message"]
    result = daemon.docker("create", "-v", "/tmp:/x:private", "busybox", "true", check=False)
    assert result.stderr == (
        'Error response from daemon: invalid mount config: must use either propagation mode "rslave" or '
        '"rshared" when mount source is within the daemon root, daemon root: "%s", bind mount source: '
        '"/tmp", propagation: "private"\n' % daemon.data_root)
    result = daemon.docker("volume", "rm", "nope", check=False)
    assert result.returncode == 1 and "no such volume" in result.stderr
    daemon.docker("volume", "rm", name)


@pytest.mark.route("PUT", "/containers/{name:.*}/archive")
def test_cp_through_a_volume_mount(daemon, tmp_path):
    name, c = unique("cp"), unique("c")
    run(daemon, "-d", "--name", c, "-v", name + ":/vol", "busybox", "sleep", "1000")
    try:
        source = tmp_path / "in.txt"
        source.write_text("copied in\n")
        daemon.docker("cp", str(source), c + ":/vol/in.txt")
        assert daemon.docker("exec", c, "cat", "/vol/in.txt").stdout == "copied in\n"
        daemon.docker("exec", c, "sh", "-c", "mkdir /vol/d; echo out > /vol/d/out.txt")
        daemon.docker("cp", c + ":/vol/d", str(tmp_path / "d"))
        assert (tmp_path / "d" / "out.txt").read_text() == "out\n"
        daemon.docker("cp", c + ":/vol", str(tmp_path / "whole"))
        assert (tmp_path / "whole" / "in.txt").read_text() == "copied in\n"
        result = daemon.docker("cp", c + ":/vol/missing", str(tmp_path / "m"), check=False)
        assert result.returncode == 1 and "Could not find the file /vol/missing in container " + c in result.stderr
        daemon.docker("stop", "-t", "0", c)
        daemon.docker("cp", str(source), c + ":/vol/again.txt")
        # -a: the file is the container user's.
        user = unique("u")
        daemon.docker("create", "--name", user, "--user", "app", "-v", name + ":/vol", "-v", name + ":/ro:ro",
                      "busybox", "true")
        try:
            daemon.docker("cp", "-a", str(source), user + ":/vol/owned.txt")
            assert run(daemon, "--rm", "-v", name + ":/v", "busybox", "stat", "-c", "%u:%g", "/v/owned.txt"
                       ).stdout == "1000:1000\n"
            result = daemon.docker("cp", str(source), user + ":/ro/no.txt", check=False)
            assert result.stderr == "Error response from daemon: mounted volume is marked read-only\n"
        finally:
            daemon.docker("rm", user)
        assert run(daemon, "--rm", "-v", name + ":/v", "busybox", "cat", "/v/again.txt").stdout == "copied in\n"
    finally:
        daemon.docker("rm", "-f", c)
        daemon.docker("volume", "rm", name)


@pytest.mark.route("GET", "/containers/json")
def test_volumes_from(daemon, tmp_path):
    c1, c2 = unique("src"), unique("dst")
    (tmp_path / "f").write_text("bound\n")
    daemon.docker("create", "--name", c1, "-v", "/shared", "-v", "%s:/b" % tmp_path, "busybox", "true")
    try:
        out = run(daemon, "--rm", "--name", c2, "--volumes-from", c1 + ":ro", "busybox", "sh", "-c",
                  "grep -c ' /shared ' /proc/mounts; touch /shared/x 2>/dev/null || echo read-only;"
                  " cat /b/f").stdout
        assert out == "1\nread-only\nbound\n"
        shared = daemon.docker_json("inspect", c1, format="{{json .Mounts}}")
        name = next(m["Name"] for m in shared if m["Destination"] == "/shared")
        for value in ("/shared", name, str(tmp_path)):
            listed = daemon.docker("ps", "-a", "--filter", "volume=" + value, "--format", "{{.Names}}").stdout
            assert listed == c1 + "\n"
        assert daemon.docker("ps", "-a", "--filter", "volume=/elsewhere", "-q").stdout == ""
    finally:
        daemon.docker("rm", "-v", c1)


@pytest.mark.route("GET", "/system/df")
def test_system_df_counts_volume_usage(daemon):
    name, c = unique("df"), unique("c")
    run(daemon, "--name", c, "-v", name + ":/d", "busybox", "sh", "-c", "echo 12345 > /d/f")
    try:
        df = daemon.request("GET", "/v1.41/system/df").json()
        usage = {v["Name"]: v["UsageData"] for v in df["Volumes"]}
        assert usage[name] == {"RefCount": 1, "Size": 6}
    finally:
        daemon.docker("rm", c)
        daemon.docker("volume", "rm", name)


def test_docker_py_volumes(daemon):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host)
    try:
        name = unique("py")
        volume = client.volumes.create(name, labels={"team": "a"})
        assert client.volumes.get(name).attrs["Labels"] == {"team": "a"}
        assert [v.name for v in client.volumes.list(filters={"label": "team=a"})] == [name]
        volume.remove()
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get(name)
    finally:
        client.close()


def test_volume_survives_daemon_restart(module_daemons, tmp_path):
    d = module_daemons.start()
    tar = busybox_rootfs_tar(tmp_path)
    with open(tar, "rb") as f:
        subprocess.run(["docker", "import", "-", "busybox:latest"], stdin=f, env=d.cli_env(),
                       capture_output=True, check=True, timeout=60)
    d.docker("run", "--network", "none", "--name", "keeper", "-v", "kept:/data", "busybox",
             "sh", "-c", "echo survived > /data/f")
    d.docker("volume", "create", "--label", "a=b", "labelled")
    d.restart()
    assert d.docker_json("volume", "inspect", "labelled")["Labels"] == {"a": "b"}
    assert d.docker("run", "--rm", "--network", "none", "-v", "kept:/data", "busybox", "cat", "/data/f").stdout == "survived\n"
    # The stopped container still references it.
    assert d.request("DELETE", "/v1.41/volumes/kept").status == 409
    d.docker("rm", "keeper")
    d.docker("volume", "rm", "kept", "labelled")


def test_subpath(daemon):
    name = unique("sub")
    run(daemon, "--rm", "-v", name + ":/v", "busybox", "sh", "-c", "mkdir -p /v/a/b; echo deep > /v/a/b/f")
    out = run(daemon, "--rm", "--mount", "type=volume,src=%s,dst=/s,volume-subpath=a/b" % name,
              "busybox", "cat", "/s/f").stdout
    assert out == "deep\n"
    result = run(daemon, "--rm", "--mount", "type=volume,src=%s,dst=/s,volume-subpath=nope" % name,
                 "busybox", "true", check=False)
    assert result.returncode != 0 and "cannot access path" in result.stderr
    answer = daemon.request("POST", "/v1.44/containers/create", {
        "Image": "busybox", "Cmd": ["true"], "HostConfig": {"Mounts": [
            {"Type": "volume", "Source": name, "Target": "/s", "VolumeOptions": {"Subpath": "a"}}]}})
    assert (answer.status, answer.json()) == (400, {"message": "VolumeOptions.Subpath needs API v1.45 or newer"})
    daemon.docker("volume", "rm", name)


def test_volumes_from_shares_anonymous_volumes(daemon):
    c1, c2 = unique("src"), unique("dst")
    daemon.docker("create", "--name", c1, "-v", "/shared", "busybox", "true")
    shared = daemon.docker_json("inspect", c1, format="{{json .Mounts}}")[0]["Name"]
    daemon.docker("create", "--name", c2, "--volumes-from", c1, "busybox", "true")
    assert daemon.docker_json("inspect", c2, format="{{json .Mounts}}")[0]["Name"] == shared
    # rm -v of one leaves the volume the other still uses.
    daemon.docker("rm", "-v", c2)
    assert shared in volumes(daemon)
    daemon.docker("rm", "-v", c1)
    assert shared not in volumes(daemon)


def test_tmpfs_volume_after_the_daemon_is_killed(module_daemons, tmp_path):
    d = module_daemons.start()
    tar = busybox_rootfs_tar(tmp_path)
    with open(tar, "rb") as f:
        subprocess.run(["docker", "import", "-", "busybox:latest"], stdin=f, env=d.cli_env(),
                       capture_output=True, check=True, timeout=60)
    d.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "scratch")
    d.docker("run", "-d", "--network", "none", "--name", "holder", "-v", "scratch:/s", "busybox",
             "sleep", "1000")
    mountpoint = d.docker_json("volume", "inspect", "scratch")["Mountpoint"]
    assert _mounted(mountpoint)
    d.signal(9)
    d.wait_exit()
    d.start()
    # The container left running is stopped at start-up: its volume is unmounted.
    assert d.docker_json("inspect", "holder", format="{{json .State.Running}}") is False
    assert not _mounted(mountpoint)
    assert d.request("DELETE", "/v1.41/volumes/scratch").status == 409
    d.docker("rm", "holder")
    d.docker("volume", "rm", "scratch")


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@pytest.mark.route("GET", "/events")
def test_volume_events_as_dockerd(daemon):
    name = unique("ev")
    since = "%.9f" % (time.time() - 1)
    run(daemon, "--rm", "-v", name + ":/d", "busybox", "true")
    daemon.docker("volume", "rm", name)
    lines = daemon.docker("events", "--since", since, "--until", "%.9f" % time.time(), "--filter", "type=volume",
                          "--filter", "volume=" + name,
                          "--format", "{{.Action}} {{json .Actor.Attributes}}").stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["create", "mount", "unmount", "destroy"]
    mount = json.loads(lines[1].split(" ", 1)[1])
    assert {k: v for k, v in mount.items() if k != "container"} == {
        "destination": "/d", "driver": "local", "propagation": "", "read/write": "true"}
