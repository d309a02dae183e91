"""
Nomad's docker task driver (hashicorp/nomad drivers/docker/, moby client
v0.5, API types v1.55) replayed against a running twistedock: one task
group in bridge mode, call by call, with the request bodies its structs
marshal to (Go's json: nil slices and maps as null, empty ones as [] and
{}, omitempty fields left out) and the fields it reads back, decoded as
strictly as its typed client decodes them (netip.Addr, HardwareAddr,
network.Port keys, time.Time).  Each call names the Nomad function it
comes from.
"""

import ipaddress
import json
import os
import re
import subprocess
import threading
import time
import urllib.parse

import pytest

from .conftest import UnixHTTPConnection, wait_for
from .test_containers import busybox_rootfs_tar

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

#: The API version the moby client settles on by negotiation
#: (min(client's, the daemon's /_ping Api-Version)).
V = "/v1.51"

#: Nomad's default infra_image (config.go: registry.k8s.io/pause-<arch>:3.3).
INFRA_IMAGE = "registry.k8s.io/pause-amd64:3.3"
TASK_IMAGE = "busybox:1.36"
ALLOC_ID = "8d5ab5a2-4f73-0a3a-26bb-8f0a1f14f3b2"
TASK = "web"
ALLOC_LABEL = "com.hashicorp.nomad.alloc_id"

#: What the task prints, and how it ends: SIGINT (Nomad's kill_signal)
#: makes it exit 130 after a last line.
TASK_SCRIPT = (
    'trap "echo got-int; exit 130" INT; echo started; '
    "while :; do echo tick; sleep 0.2; done"
)


@pytest.fixture(scope="module")
def daemon(module_daemons, tmp_path_factory):
    d = module_daemons.start()
    tar = busybox_rootfs_tar(tmp_path_factory.mktemp("img"))
    for ref, changes in (
        # A pause image: waits for TERM or INT, as registry.k8s.io/pause does.
        (INFRA_IMAGE, ['ENTRYPOINT ["/bin/sh", "-c", "trap \\"exit 0\\" TERM INT; while :; do sleep 0.1; done"]']),
        (TASK_IMAGE, ['CMD ["sh"]']),
    ):
        with open(tar, "rb") as f:
            args = ["docker", "import"]
            for change in changes:
                args += ["--change", change]
            result = subprocess.run(args + ["-", ref], stdin=f, env=d.cli_env(),
                                    capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    yield d
    d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)


def call(daemon, method, path, body=None, timeout=30.0):
    resp = daemon.request(method, V + path, body, timeout=timeout)
    return resp


# -- the strictness of Nomad's typed client ----------------------------------

_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
_PORT = re.compile(r"^\d+(-\d+)?(/(tcp|udp|sctp))?$")
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def _addr(value, where):
    """netip.Addr's UnmarshalText: "" is the zero Addr, else a valid address."""
    assert isinstance(value, str), where
    if value:
        ipaddress.ip_address(value)


def _time(value, where):
    assert isinstance(value, str) and _RFC3339.match(value), (where, value)


def assert_decodes_as_moby_types(inspect: dict) -> None:
    """What would make client.ContainerInspect fail for Nomad: a null where
    a struct is decoded and dereferenced, an address, MAC, port key or
    time its types refuse."""
    for key in ("State", "Config", "HostConfig", "NetworkSettings"):
        assert isinstance(inspect[key], dict), key
    _time(inspect["Created"], "Created")
    _time(inspect["State"]["StartedAt"], "StartedAt")
    _time(inspect["State"]["FinishedAt"], "FinishedAt")
    assert isinstance(inspect["State"]["Pid"], int)
    settings = inspect["NetworkSettings"]
    for key in ("IPAddress", "Gateway", "GlobalIPv6Address", "IPv6Gateway", "LinkLocalIPv6Address"):
        if key in settings:
            _addr(settings[key], key)
    if settings.get("MacAddress"):
        assert _MAC.match(settings["MacAddress"])
    for port, bindings in (settings.get("Ports") or {}).items():
        assert _PORT.match(port), port
        for binding in bindings or ():
            _addr(binding.get("HostIp", ""), port)
    for name, endpoint in (settings.get("Networks") or {}).items():
        for key in ("IPAddress", "Gateway", "GlobalIPv6Address", "IPv6Gateway"):
            _addr(endpoint.get(key, ""), name + "." + key)
        if endpoint.get("MacAddress"):
            assert _MAC.match(endpoint["MacAddress"]), name
    for port in (inspect["Config"].get("ExposedPorts") or {}):
        assert _PORT.match(port), port
    for port in (inspect["HostConfig"].get("PortBindings") or {}):
        assert _PORT.match(port), port


# -- the bodies Nomad's structs marshal to -----------------------------------


def sandbox_create_body(hostname: str = "") -> dict:
    """createSandboxContainerConfig: container.Config{Image, Hostname,
    Labels}, HostConfig{NetworkMode: none, RestartPolicy: unless-stopped},
    no NetworkingConfig (a nil pointer, omitted)."""
    return {
        "Hostname": hostname, "Domainname": "", "User": "",
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": None, "Cmd": None, "Image": INFRA_IMAGE, "Volumes": None, "WorkingDir": "",
        "Entrypoint": None, "OnBuild": None, "Labels": {ALLOC_LABEL: ALLOC_ID},
        "HostConfig": host_config(NetworkMode="none", RestartPolicy={"Name": "unless-stopped", "MaximumRetryCount": 0}),
    }


def host_config(**fields) -> dict:
    """A container.HostConfig as json.Marshal writes a Go value whose
    unset fields are zero (nil slices and pointers null)."""
    hc = {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": None},
        "NetworkMode": "", "PortBindings": None, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
        "CapAdd": None, "CapDrop": None, "CgroupnsMode": "", "Dns": None, "DnsOptions": None,
        "DnsSearch": None, "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "",
        "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 0,
        "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": None, "BlkioDeviceReadBps": None,
        "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None,
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": None, "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
        "OomKillDisable": None, "PidsLimit": None, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
    }
    hc.update(fields)
    return hc


def task_create_body(pause_id: str, alloc_dir: str) -> dict:
    """createContainerConfig for a task of a group in bridge mode: the
    group's network joined (NetworkMode container:<pause>), the alloc,
    local and secrets directories bound (containerBinds), a generated
    /etc/hosts mounted, the plugin's default logging (json-file, 2 files
    of 2m), 256 MiB hard and soft, PidsLimit -1, CapDrop of what the
    default allow_caps leaves out (capabilities.Delta: lower case, no
    CAP_), PortBindings an empty map, the alloc label, the task's env."""
    memory = 256 * 1024 * 1024
    return {
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": ["NOMAD_ALLOC_ID=" + ALLOC_ID, "NOMAD_TASK_NAME=" + TASK, "NOMAD_ALLOC_DIR=/alloc"],
        "Cmd": ["sh", "-c", TASK_SCRIPT], "Image": TASK_IMAGE, "Volumes": None, "WorkingDir": "",
        "Entrypoint": None, "OnBuild": None, "Labels": {ALLOC_LABEL: ALLOC_ID},
        "HostConfig": host_config(
            Binds=[alloc_dir + "/alloc:/alloc", alloc_dir + "/" + TASK + "/local:/local",
                   alloc_dir + "/" + TASK + "/secrets:/secrets"],
            LogConfig={"Type": "json-file", "Config": {"max-file": "2", "max-size": "2m"}},
            NetworkMode="container:" + pause_id,
            PortBindings={},
            CapAdd=[],
            CapDrop=["net_raw"],
            Memory=memory,
            MemoryReservation=memory,
            MemorySwap=memory,
            CpuShares=100,
            PidsLimit=-1,
            Mounts=[{"Type": "bind", "Source": alloc_dir + "/" + TASK + "/hosts", "Target": "/etc/hosts",
                     "ReadOnly": True, "BindOptions": {"Propagation": "rprivate"}}],
        ),
    }


# -- the replay --------------------------------------------------------------


def container_by_name(daemon, name: str):
    """Driver.containerByName: the list of every container, a name matched
    with its slash, then that one inspected."""
    resp = call(daemon, "GET", "/containers/json?all=1")
    assert resp.status == 200, resp
    for summary in resp.json():
        if "/" + name in summary["Names"]:
            found = call(daemon, "GET", "/containers/%s/json" % summary["Id"])
            assert found.status == 200, found
            assert_decodes_as_moby_types(found.json())
            return found.json()
    return None


def create_and_start(daemon, name: str, body: dict) -> dict:
    """Driver.createContainer (ContainerCreate, then containerByName), then
    Driver.startContainer (ContainerStart; a 409 counts as started), then
    the ContainerInspect of StartTask / CreateNetwork."""
    resp = call(daemon, "POST", "/containers/create?name=" + name, body)
    assert resp.status == 201, resp
    created = container_by_name(daemon, name)
    assert created is not None and not created["State"]["Running"]
    resp = call(daemon, "POST", "/containers/%s/start" % created["Id"])
    assert resp.status in (204, 409), resp
    resp = call(daemon, "GET", "/containers/%s/json" % created["Id"])
    assert resp.status == 200, resp
    assert_decodes_as_moby_types(resp.json())
    return resp.json()


class Background:
    """One long request (ContainerWait, ContainerLogs with follow) on its
    own connection, read to its end in a thread, as the driver's
    goroutines do."""

    def __init__(self, daemon, method: str, path: str, timeout: float = 60.0) -> None:
        self.status = None
        self.body = b""
        self.ended_at = None
        self.error = None
        self._conn = UnixHTTPConnection(daemon.sock, timeout=timeout)
        self._conn.request(method, V + path)
        self._response = self._conn.getresponse()
        self.status = self._response.status
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self.body = self._response.read()
        except Exception as e:  # pragma: no cover - reported by the test
            self.error = e
        self.ended_at = time.monotonic()
        self._conn.close()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def demux(stream: bytes):
    """stdcopy.StdCopy: the frames of a non-TTY stream, (stream, bytes)."""
    out = []
    while stream:
        kind, size = stream[0], int.from_bytes(stream[4:8], "big")
        out.append((kind, stream[8 : 8 + size]))
        stream = stream[8 + size :]
    return out


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_nomad_task_group_in_bridge_mode(daemon, tmp_path):
    alloc_dir = str(tmp_path / "alloc" / ALLOC_ID)
    for sub in ("alloc", TASK + "/local", TASK + "/secrets"):
        os.makedirs(os.path.join(alloc_dir, sub))
    with open(os.path.join(alloc_dir, TASK, "hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n")

    # Driver.CreateNetwork -> pullInfraImage: the tag is not "latest", so
    # ImageInspect; an image found (its ID read) is not pulled.
    resp = call(daemon, "GET", "/images/%s/json" % INFRA_IMAGE)
    assert resp.status == 200 and resp.json()["Id"].startswith("sha256:"), resp
    # CreateNetwork -> containerByName: no such sandbox yet.
    assert container_by_name(daemon, "nomad_init_" + ALLOC_ID) is None
    # CreateNetwork -> createContainer(createSandboxContainerConfig) ->
    # startContainer -> ContainerInspect: SandboxKey is the spec's Path.
    pause = create_and_start(daemon, "nomad_init_" + ALLOC_ID, sandbox_create_body())
    assert pause["State"]["Running"] and pause["HostConfig"]["NetworkMode"] == "none"
    assert pause["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    sandbox_key = pause["NetworkSettings"]["SandboxKey"]
    assert sandbox_key and os.path.exists(sandbox_key)
    # (The daemon's namespace file, as dockerd's: the pause's namespace.)
    assert os.stat(sandbox_key).st_ino == os.stat("/proc/%d/ns/net" % pause["State"]["Pid"]).st_ino

    # Driver.StartTask: Info (CgroupDriver kept for dockerCgroup).
    info = call(daemon, "GET", "/info").json()
    assert info["CgroupDriver"] in ("cgroupfs", "systemd")
    # StartTask -> createImage: ImageInspect of the task's image.
    assert call(daemon, "GET", "/images/%s/json" % TASK_IMAGE).status == 200
    # createContainerConfig: ServerVersion for capabilities.DockerDefaults.
    version = call(daemon, "GET", "/version").json()
    assert re.match(r"^1\.\d+$", version["ApiVersion"]) and version["Os"] == "linux"
    # StartTask -> createContainer -> startContainer -> ContainerInspect.
    name = "%s-%s" % (TASK, ALLOC_ID)
    task = create_and_start(daemon, name, task_create_body(pause["Id"], alloc_dir))
    task_id = task["Id"]
    assert task["State"]["Running"] and task["State"]["Pid"] > 0
    assert task["HostConfig"]["NetworkMode"] == "container:" + pause["Id"]
    assert os.readlink("/proc/%d/ns/net" % task["State"]["Pid"]) == os.readlink(
        "/proc/%d/ns/net" % pause["State"]["Pid"])
    # Driver.detectIP: no network of its own has an address.
    assert all(not n.get("IPAddress") for n in (task["NetworkSettings"]["Networks"] or {}).values())
    assert task["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "2", "max-size": "2m"}}

    # taskHandle.run: ContainerWait with condition not-running (the
    # infinity client: no timeout), in the background.
    waiter = Background(daemon, "POST", "/containers/%s/wait?condition=not-running" % task_id)
    assert waiter.status == 200
    # docklog.dockerLogger.Start: ContainerLogs from StartTime (the Unix
    # epoch: Since formatted RFC3339, sent as timetypes' seconds), follow.
    query = urllib.parse.urlencode(
        {"follow": "1", "since": "0.000000000", "stderr": "1", "stdout": "1"}
    )
    follower = Background(daemon, "GET", "/containers/%s/logs?%s" % (task_id, query))
    assert follower.status == 200

    # taskHandle.collectDockerStats: ContainerStats with
    # IncludePreviousSample (stream=0, no one-shot): two samples.
    for _ in range(2):
        started = time.monotonic()
        resp = call(daemon, "GET", "/containers/%s/stats?stream=0" % task_id)
        assert resp.status == 200, resp
        stats = resp.json()
        _time(stats["read"], "read")
        _time(stats["preread"], "preread")
        assert stats["preread"] != "0001-01-01T00:00:00Z"
        assert stats["precpu_stats"]["system_cpu_usage"] > 0
        assert stats["cpu_stats"]["system_cpu_usage"] >= stats["precpu_stats"]["system_cpu_usage"]
        assert stats["cpu_stats"]["cpu_usage"]["total_usage"] >= stats["precpu_stats"]["cpu_usage"]["total_usage"]
        assert stats["memory_stats"]["usage"] > 0 and stats["memory_stats"]["limit"] == 256 * 1024 * 1024
        assert time.monotonic() - started < 5

    # taskHandle.Exec (script checks): ExecCreate, ExecAttach, ExecInspect.
    resp = call(daemon, "POST", "/containers/%s/exec" % task_id, {
        "User": "", "Privileged": False, "Tty": False, "ConsoleSize": None, "AttachStdin": False,
        "AttachStderr": True, "AttachStdout": True, "DetachKeys": "", "Env": None, "WorkingDir": "",
        "Cmd": ["sh", "-c", "cat /etc/hosts; exit 3"],
    })
    assert resp.status == 201, resp
    exec_id = resp.json()["Id"]
    resp = call(daemon, "POST", "/exec/%s/start" % exec_id, {"Detach": False, "Tty": False, "ConsoleSize": None})
    assert resp.status == 200 and b"127.0.0.1 localhost" in resp.body, resp
    assert call(daemon, "GET", "/exec/%s/json" % exec_id).json()["ExitCode"] == 3

    # Driver.StopTask -> taskHandle.Kill with kill_signal = "SIGINT":
    # ContainerKill by name, then the wait ends.
    resp = call(daemon, "POST", "/containers/%s/kill?signal=SIGINT" % task_id)
    assert resp.status == 204, resp
    assert waiter.join(20), "ContainerWait did not end"
    assert json.loads(waiter.body) == {"Error": None, "StatusCode": 130} or json.loads(waiter.body)["StatusCode"] == 130
    # The log follow ends with the task (docklog then inspects, sees it
    # stopped, and returns).
    assert follower.join(10), "the log follow did not end when the task stopped"
    frames = demux(follower.body)
    text = b"".join(data for kind, data in frames if kind == 1)
    assert text.startswith(b"started\ntick\n") and text.endswith(b"got-int\n"), text[-200:]
    # taskHandle.run after the wait: ContainerInspect (OOMKilled), then a
    # ContainerStop with no timeout "just in case": 304 for a stopped one.
    done = call(daemon, "GET", "/containers/%s/json" % task_id).json()
    assert_decodes_as_moby_types(done)
    assert done["State"]["Running"] is False and done["State"]["OOMKilled"] is False
    assert done["State"]["ExitCode"] == 130
    resp = call(daemon, "POST", "/containers/%s/stop?t=0" % task_id)
    assert resp.status == 304, resp
    # Stats of a stopped container (collectStats ends on doneCh; a late
    # tick still decodes).
    assert call(daemon, "GET", "/containers/%s/stats?stream=0" % task_id).status == 200

    # Driver.DestroyTask: ContainerInspect, not running, ContainerRemove force.
    resp = call(daemon, "DELETE", "/containers/%s?force=1" % task_id)
    assert resp.status == 204, resp
    # Driver.DestroyNetwork: ContainerStop(timeout 1) of the pause
    # container, then ContainerRemove force.
    resp = call(daemon, "POST", "/containers/%s/stop?t=1" % pause["Id"])
    assert resp.status == 204, resp
    resp = call(daemon, "DELETE", "/containers/%s?force=1" % pause["Id"])
    assert resp.status == 204, resp
    assert container_by_name(daemon, "nomad_init_" + ALLOC_ID) is None
    assert container_by_name(daemon, name) is None
    # Nothing left behind: the sandbox's namespace file unmounted (when it
    # was one of the daemon's, not /proc/<pid>/ns/net).
    if not sandbox_key.startswith("/proc/"):
        wait_for(lambda: not mounted(sandbox_key), 5, what="the sandbox's namespace to go")


def test_kill_by_name_of_a_stopped_or_removed_task(daemon):
    """taskHandle.Kill tolerates only NotFound and NotModified: dockerd's
    409 for a stopped container and 404 for a removed one."""
    resp = call(daemon, "POST", "/containers/create?name=nomad-gone", {
        "Image": TASK_IMAGE, "Cmd": ["true"], "HostConfig": host_config(NetworkMode="none")})
    assert resp.status == 201, resp
    cid = resp.json()["Id"]
    resp = call(daemon, "POST", "/containers/%s/kill?signal=SIGTERM" % cid)
    assert (resp.status, resp.json()["message"]) == (
        409, "Cannot kill container: %s: Container %s is not running" % (cid, cid))
    assert call(daemon, "DELETE", "/containers/%s?force=1" % cid).status == 204
    resp = call(daemon, "POST", "/containers/%s/kill?signal=SIGTERM" % cid)
    assert resp.status == 404, resp
