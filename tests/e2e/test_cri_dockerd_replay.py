"""
A Kubernetes pod as cri-dockerd drives a Docker Engine, replayed against
twistedock: the calls its CRI handlers make (Mirantis/cri-dockerd at main,
Docker client v27, API 1.46), in the kubelet's order, with the request
bodies Go's encoding/json writes for the structs it fills in, and the
fields it reads back checked.  Each call names the function it comes from.

The pod: a sandbox (the pause container) and two app containers sharing
its network, IPC and PID namespaces (shareProcessNamespace); one serves
HTTP on 127.0.0.1:8080, the other fetches it over the pod's loopback.
No CNI plugin (cri-dockerd's no-op plugin: NetworkMode "default", which a
daemon without a default bridge runs with loopback only).  At the end
nothing of the pod is left on the host.
"""

import io
import json
import os
import re
import secrets
import socket
import struct
import subprocess
import tarfile
import time
import urllib.parse

import pytest

from .conftest import UnixHTTPConnection
from .test_containers import busybox_rootfs_tar

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

#: The Docker client v27 negotiates down to the daemon's version, at most 1.46.
API = "/v1.46"
#: core/sandbox_helpers.go
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024  # libdocker/kube_docker_client.go defaultShmSize
#: What the kubelet's default security context masks (ConvertToRuntimeMaskedPaths).
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
CRI_LOG_LINE = re.compile(r"^(\S+) (stdout|stderr) ([FP]) (.*)$")


def can_lower_oom_score() -> bool:
    with open("/proc/self/status") as f:
        caps = dict(line.split(":\t", 1) for line in f if line.startswith("Cap"))
    return bool(int(caps["CapEff"], 16) & (1 << 24))


#: defaultSandboxOOMAdj; a host withholding CAP_SYS_RESOURCE from root
#: cannot lower a score (dockerd fails the start there too): 0 then.
SANDBOX_OOM = -998 if can_lower_oom_score() else 0


# -- Go's JSON of the client's structs ------------------------------------------------


def go_config(**fields) -> dict:
    """container.Config (api/types/container/config.go) as encoding/json
    writes it: every field, zero unless set, omitempty ones left out."""
    doc = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
           "AttachStderr": False, "ExposedPorts": None, "Tty": False, "OpenStdin": False, "StdinOnce": False,
           "Env": None, "Cmd": None, "Healthcheck": None, "ArgsEscaped": None, "Image": "", "Volumes": None,
           "WorkingDir": "", "Entrypoint": None, "NetworkDisabled": None, "MacAddress": None, "OnBuild": None,
           "Labels": None, "StopSignal": None, "StopTimeout": None, "Shell": None}
    omitempty = {"ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress", "StopSignal",
                 "StopTimeout", "Shell"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if not (k in omitempty and not v)}


def go_host_config(**fields) -> dict:
    """container.HostConfig (api/types/container/hostconfig.go, Resources
    embedded) as encoding/json writes it."""
    doc = {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": None}, "NetworkMode": "",
        "PortBindings": None, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "Annotations": None,
        "CapAdd": None, "CapDrop": None, "CgroupnsMode": "", "Dns": None, "DnsOptions": None,
        "DnsSearch": None, "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "", "Links": None,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "StorageOpt": None, "Tmpfs": None, "UTSMode": "",
        "UsernsMode": "", "ShmSize": 0, "Sysctls": None, "Runtime": "", "Isolation": "",
        "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
        "BlkioWeightDevice": None, "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None,
        "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0,
        "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
        "Devices": None, "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0,
        "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
        "OomKillDisable": None, "PidsLimit": None, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "Mounts": None, "MaskedPaths": None,
        "ReadonlyPaths": None, "Init": None,
    }
    omitempty = {"Annotations", "StorageOpt", "Tmpfs", "Sysctls", "Runtime", "KernelMemory", "KernelMemoryTCP",
                 "Mounts", "Init"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if not (k in omitempty and not v)}


RESOURCES = ("CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight", "BlkioWeightDevice",
             "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
             "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems",
             "Devices", "DeviceCgroupRules", "DeviceRequests", "KernelMemory", "KernelMemoryTCP",
             "MemoryReservation", "MemorySwap", "MemorySwappiness", "OomKillDisable", "PidsLimit", "Ulimits",
             "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth")


def go_update_config(**fields) -> dict:
    """container.UpdateConfig: Resources embedded, then RestartPolicy."""
    host_config = go_host_config(**fields)
    doc = {k: host_config[k] for k in RESOURCES if k in host_config}
    doc["RestartPolicy"] = {"Name": "", "MaximumRetryCount": 0}
    return doc


def go_exec_options(**fields) -> dict:
    """container.ExecOptions (ConsoleSize omitempty)."""
    doc = {"User": "", "Privileged": False, "Tty": False, "AttachStdin": False, "AttachStderr": False,
           "AttachStdout": False, "Detach": False, "DetachKeys": "", "Env": None, "WorkingDir": "", "Cmd": None}
    doc.update(fields)
    return doc


def go_filters(**args) -> str:
    """filters.Args.ToJSON: {"label": {"k=v": true}}."""
    return json.dumps({key: {v: True for v in values} for key, values in args.items()}, separators=(",", ":"))


# -- the client ------------------------------------------------------------------------


class Client:
    """libdocker's kubeDockerClient over the Docker client's HTTP: one
    request a call, JSON in and out."""

    def __init__(self, sock: str) -> None:
        self.sock = sock
        self.calls = []

    def call(self, method: str, path: str, query=None, body=None, expect=(200,)):
        target = API + path
        if query:
            target += "?" + urllib.parse.urlencode(sorted(query.items()))
        headers = {"User-Agent": "Go-http-client/1.1"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = UnixHTTPConnection(self.sock, timeout=60)
        try:
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        self.calls.append((method, target, resp.status))
        assert resp.status in expect, (method, target, resp.status, raw[:500])
        if raw and resp.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(raw)
        return raw

    def hijack(self, path: str, body: dict, stdin: bytes = b""):
        """ContainerExecAttach + holdHijackedConnection: the upgraded
        connection, stdin copied then CloseWrite (the half-close), the
        multiplexed output read to its end: (stdout, stderr)."""
        data = json.dumps(body).encode()
        head = ("POST %s%s HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Go-http-client/1.1\r\n"
                "Content-Length: %d\r\nConnection: Upgrade\r\nContent-Type: application/json\r\n"
                "Upgrade: tcp\r\n\r\n" % (API, path, len(data)))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        try:
            sock.connect(self.sock)
            sock.sendall(head.encode() + data)
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
            status_line = received.split(b"\r\n", 1)[0]
            assert status_line.startswith(b"HTTP/1.1 101"), received
            if stdin:
                sock.sendall(stdin)
            sock.shutdown(socket.SHUT_WR)
            rest = received.partition(b"\r\n\r\n")[2]
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        finally:
            sock.close()
        return demux(rest)


def demux(data: bytes):
    """stdcopy.StdCopy: (stdout, stderr) of a multiplexed stream."""
    out, err = b"", b""
    while data:
        assert len(data) >= 8, data
        kind, size = data[0], struct.unpack(">I", data[4:8])[0]
        payload, data = data[8:8 + size], data[8 + size:]
        if kind == 1:
            out += payload
        elif kind == 2:
            err += payload
    return out, err


# -- the pod ---------------------------------------------------------------------------


def pause_rootfs(tmp_path) -> str:
    """A pause image: busybox and a /pause that sleeps until SIGTERM or SIGINT."""
    out = str(tmp_path / "pause.tar")
    script = (b"#!/bin/busybox sh\ntrap 'exit 0' TERM INT\n"
              b"while :; do /bin/busybox sleep 3600 & wait $!; done\n")
    with tarfile.open(out, "w") as tar:
        for directory in ("bin", "dev", "etc", "proc", "sys"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", "bin/busybox")
        info = tarfile.TarInfo("pause")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    return out


def docker_import(daemon, tar: str, ref: str, *changes: str) -> None:
    args = ["docker", "import"]
    for change in changes:
        args += ["-c", change]
    with open(tar, "rb") as f:
        result = subprocess.run(args + ["-", ref], stdin=f, env=daemon.cli_env(), capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def node(module_daemons, tmp_path_factory):
    d = module_daemons.start()
    tmp = tmp_path_factory.mktemp("images")
    docker_import(d, pause_rootfs(tmp), SANDBOX_IMAGE, 'ENTRYPOINT ["/pause"]')
    docker_import(d, busybox_rootfs_tar(tmp), "busybox:latest")
    yield d
    d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)


def pod_labels(name: str, namespace: str, uid: str) -> dict:
    return {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
            "io.kubernetes.pod.uid": uid, "app": "replay"}


def make_labels(labels: dict, annotations: dict) -> dict:
    """core/helpers.go makeLabels: annotations as "annotation."-prefixed labels."""
    merged = dict(labels)
    merged.update({"annotation." + k: v for k, v in annotations.items()})
    return merged


def run_pod_sandbox(client, name, namespace, uid, cgroup_parent, plugin) -> str:
    """core/sandbox_run.go RunPodSandbox; C{plugin} the network plugin
    ("no-op": NetworkMode "default"; "cni": "none", the plugin setting up
    the sandbox's namespace afterwards)."""
    # ensureSandboxImageExists -> InspectImageByRef: GET /images/{ref}/json,
    # matchImageTagOrSHA reads RepoTags.
    image = client.call("GET", "/images/%s/json" % SANDBOX_IMAGE)
    assert SANDBOX_IMAGE in image["RepoTags"]
    # makeSandboxDockerConfig (sandbox_helpers.go): IpcMode shareable,
    # applySandboxSecurityContext (NetworkMode "default" with the no-op
    # network plugin), OomScoreAdj, applySandboxResources (CpuShares 2,
    # MemorySwap 0, CgroupParent), getSandBoxSecurityOpts; kube_docker_client
    # CreateContainer's ShmSize default.
    labels = make_labels(pod_labels(name, namespace, uid),
                         {"kubernetes.io/config.seen": "2026-12-06T11:00:00.000000000Z",
                          "kubernetes.io/config.source": "api"})
    labels["io.kubernetes.docker.type"] = "podsandbox"
    labels["io.kubernetes.container.name"] = "POD"
    body = go_config(Hostname=name, Image=SANDBOX_IMAGE, Labels=labels)
    body["HostConfig"] = go_host_config(
        NetworkMode="none" if plugin == "cni" else "default", PortBindings={}, IpcMode="shareable", OomScoreAdj=SANDBOX_OOM,
        SecurityOpt=["no-new-privileges"], ShmSize=DEFAULT_SHM_SIZE, CpuShares=2, CgroupParent=cgroup_parent)
    # kubeDockerClient.CreateContainer: POST /containers/create?name=
    created = client.call("POST", "/containers/create", {"name": "k8s_POD_%s_%s_%s_0" % (name, namespace, uid)},
                          body, expect=(201,))
    sandbox_id = created["Id"]
    # StartContainer
    client.call("POST", "/containers/%s/start" % sandbox_id, expect=(204,))
    # InspectContainer, then rewriteResolvFile(ResolvConfPath) in place
    # (os.O_TRUNC|os.O_WRONLY: the same inode, which every container of
    # the pod has bind-mounted).
    info = client.call("GET", "/containers/%s/json" % sandbox_id)
    with open(info["ResolvConfPath"], "r+") as f:
        f.truncate()
        f.write("nameserver 10.96.0.10\nsearch %s.svc.cluster.local svc.cluster.local cluster.local\n"
                "options ndots:5\n" % namespace)
    return sandbox_id


def check_inspect(doc: dict) -> None:
    """What cri-dockerd dereferences: never null (a nil pointer crashes it)."""
    for key in ("NetworkSettings", "HostConfig", "Config", "State"):
        assert isinstance(doc[key], dict), key
    for key in ("Created",):
        assert RFC3339NANO.match(doc[key]), doc[key]
    for key in ("StartedAt", "FinishedAt"):
        assert RFC3339NANO.match(doc["State"][key]), doc["State"][key]
    assert isinstance(doc["Mounts"], list)


def pod_sandbox_status(client, sandbox_id) -> dict:
    """core/sandbox_status.go PodSandboxStatus (getPodSandboxDetails,
    getContainerTimestamps, networkNamespaceMode...)."""
    doc = client.call("GET", "/containers/%s/json" % sandbox_id)
    check_inspect(doc)
    assert doc["Name"].startswith("/k8s_POD_")
    assert doc["HostConfig"]["NetworkMode"] != "host" and doc["HostConfig"]["IpcMode"] == "shareable"
    assert doc["HostConfig"]["Runtime"] == "runc"
    assert doc["Config"]["Labels"]["io.kubernetes.docker.type"] == "podsandbox"
    # getIPs: NetworkSettings.IPAddress, GlobalIPv6Address (no CNI: none).
    assert doc["NetworkSettings"]["IPAddress"] == "" and doc["NetworkSettings"]["GlobalIPv6Address"] == ""
    return doc


def create_container(client, sandbox_id, sandbox_config, name, command, image_id, mounts, log_dir) -> str:
    """core/container_create.go CreateContainer with helpers_linux.go
    updateCreateConfig (resources, applyContainerSecurityContext with the
    pod's shared PID namespace) and getSecurityOpts (seccomp unconfined)."""
    pod, namespace, uid, cgroup_parent = sandbox_config
    # getDockerAPIVersion: GET /version
    version = client.call("GET", "/version")
    assert re.match(r"^\d+\.\d+$", version["ApiVersion"]) and float(version["ApiVersion"]) >= 1.42
    # InspectContainer(sandbox): HostConfig.Runtime; getRuntimeHandlers: GET /info
    sandbox = client.call("GET", "/containers/%s/json" % sandbox_id)
    info = client.call("GET", "/info")
    assert sandbox["HostConfig"]["Runtime"] in info["Runtimes"]
    labels = make_labels(dict(pod_labels(pod, namespace, uid), **{"io.kubernetes.container.name": name}),
                         {"io.kubernetes.container.hash": "1a2b3c4d", "io.kubernetes.container.restartCount": "0",
                          "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                          "io.kubernetes.container.terminationMessagePolicy": "File",
                          "io.kubernetes.pod.terminationGracePeriod": "30"})
    labels["io.kubernetes.docker.type"] = "container"
    labels["io.kubernetes.container.logpath"] = os.path.join(log_dir, name, "0.log")
    labels["io.kubernetes.sandbox.id"] = sandbox_id
    body = go_config(
        Entrypoint=command, Cmd=None, Image=image_id, Labels=labels,
        Env=["KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443", "HOSTNAME_OF_POD=" + pod],
        Healthcheck={"Test": ["NONE"]},
    )
    join = "container:" + sandbox_id
    body["HostConfig"] = go_host_config(
        Mounts=mounts, RestartPolicy={"Name": "no", "MaximumRetryCount": 0}, Runtime=sandbox["HostConfig"]["Runtime"],
        CpuShares=2, CpuPeriod=100000, OomScoreAdj=1000, NetworkMode=join, IpcMode=join, PidMode=join,
        MaskedPaths=MASKED_PATHS, ReadonlyPaths=READONLY_PATHS, CgroupParent=cgroup_parent, Devices=[],
        SecurityOpt=["seccomp=unconfined"], ShmSize=DEFAULT_SHM_SIZE,
    )
    created = client.call("POST", "/containers/create",
                          {"name": "k8s_%s_%s_%s_%s_0" % (name, pod, namespace, uid)}, body, expect=(201,))
    return created["Id"]


def start_container(client, container_id) -> str:
    """core/container_start.go StartContainer, then createContainerLogSymlink
    (InspectContainer: Config.Labels' log path, LogPath)."""
    client.call("POST", "/containers/%s/start" % container_id, expect=(204,))
    doc = client.call("GET", "/containers/%s/json" % container_id)
    path, real = doc["Config"]["Labels"]["io.kubernetes.container.logpath"], doc["LogPath"]
    assert os.path.isabs(real)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.remove(path)
    os.symlink(real, path)
    return path


def container_status(client, container_id) -> dict:
    """core/container_status.go ContainerStatus: timestamps, the image by
    ID (InspectImageByID), mounts."""
    doc = client.call("GET", "/containers/%s/json" % container_id)
    check_inspect(doc)
    image = client.call("GET", "/images/%s/json" % doc["Image"])
    assert image["Id"] == doc["Image"]
    assert doc["State"]["Running"] and doc["State"]["Status"] == "running"
    return doc


def exec_sync(client, container_id, cmd, stdin: bytes = b""):
    """core/exec.go NativeExecHandler.ExecInContainer (ExecSync: no stdin;
    kubectl exec -i: stdin, then the half-close): CreateExec, StartExec
    (ContainerExecAttach, holdHijackedConnection), InspectExec."""
    body = go_exec_options(Cmd=cmd, AttachStdin=bool(stdin), AttachStdout=True, AttachStderr=True)
    exec_id = client.call("POST", "/containers/%s/exec" % container_id, body=body, expect=(201,))["Id"]
    out, err = client.hijack("/exec/%s/start" % exec_id, {"Detach": False, "Tty": False}, stdin)
    # The stream ended: the exit code is final (no retry needed).
    inspect = client.call("GET", "/exec/%s/json" % exec_id)
    assert inspect["Running"] is False, inspect
    return out, err, inspect["ExitCode"]


def read_cri_log(path: str) -> list:
    """The kubelet's ReadLogs: CRI lines (or docker's json-file)."""
    with open(path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        m = CRI_LOG_LINE.match(line)
        if m:
            assert RFC3339NANO.match(m.group(1)), line
            out.append((m.group(2), m.group(4)))
        else:
            entry = json.loads(line)
            out.append((entry["stream"], entry["log"].rstrip("\n")))
    return out


def relist(client, sandbox_id, ids, running: bool) -> None:
    """The kubelet's PLEG relist, every second: core/sandbox_list.go
    ListPodSandbox and core/container_list.go ListContainers (label, id and
    status filters), their summaries as convert.go reads them (Names[0]
    parsed as k8s_<name>_<pod>_<namespace>_<uid>_<attempt>, Status's
    prefix, Created in seconds, Labels, ImageID)."""
    sandboxes = client.call("GET", "/containers/json",
                            {"all": "1", "filters": go_filters(label=["io.kubernetes.docker.type=podsandbox"])})
    assert [c["Id"] for c in sandboxes] == [sandbox_id]
    containers = client.call("GET", "/containers/json",
                             {"all": "1", "filters": go_filters(label=["io.kubernetes.docker.type=container"])})
    assert sorted(c["Id"] for c in containers) == sorted(ids)
    for c in sandboxes + containers:
        parts = c["Names"][0].lstrip("/").split("_")
        assert len(parts) == 6 and parts[0] == "k8s" and parts[5] == "0", c["Names"]
        assert c["Status"].startswith("Up" if running else "Exited"), c["Status"]
        assert isinstance(c["Created"], int) and c["Created"] > 1e9
        assert c["ImageID"].startswith("sha256:") and c["Labels"]["io.kubernetes.pod.name"] == "web"
    # ContainerStats: ListContainers with the id filter; a state filter.
    for container_id in ids:
        one = client.call("GET", "/containers/json", {"all": "1", "filters": go_filters(
            label=["io.kubernetes.docker.type=container"], id=[container_id])})
        assert [c["Id"] for c in one] == [container_id]
    state = client.call("GET", "/containers/json", {"all": "1", "filters": go_filters(
        label=["io.kubernetes.docker.type=container", "io.kubernetes.sandbox.id=" + sandbox_id],
        status=["running"])})
    assert sorted(c["Id"] for c in state) == (sorted(ids) if running else [])


def list_container_stats(client, ids) -> dict:
    """core/stats.go ListContainerStats: ListContainers (label filter), then
    stats_linux.go getContainerStats (GetContainerStats: one-shot), and the
    writable layer size (InspectContainerWithSize)."""
    listed = client.call("GET", "/containers/json",
                         {"all": "1", "filters": go_filters(label=["io.kubernetes.docker.type=container"])})
    assert {c["Id"] for c in listed} >= set(ids)
    found = {}
    for container_id in ids:
        stats = client.call("GET", "/containers/%s/stats" % container_id, {"stream": "0", "one-shot": "1"})
        usage = stats["cpu_stats"]["cpu_usage"]["total_usage"]
        memory = stats["memory_stats"]["usage"]
        assert isinstance(usage, int) and usage > 0, stats["cpu_stats"]
        assert isinstance(memory, int) and memory > 0, stats["memory_stats"]
        sized = client.call("GET", "/containers/%s/json" % container_id, {"size": "1"})
        assert isinstance(sized["SizeRw"], int)
        found[container_id] = stats
    return found


def update_container_resources(client, container_id, shares, quota, memory) -> None:
    """core/container_update_resources.go UpdateContainerResources (the
    kubelet's in-place resize): Memory and MemorySwap the same."""
    body = go_update_config(CpuPeriod=100000, CpuQuota=quota, CpuShares=shares, Memory=memory, MemorySwap=memory)
    answer = client.call("POST", "/containers/%s/update" % container_id, body=body)
    assert answer["Warnings"] is None or isinstance(answer["Warnings"], list)


def stop_container(client, container_id, timeout: int) -> None:
    """core/container_stop.go StopContainer: ContainerStop with t=."""
    client.call("POST", "/containers/%s/stop" % container_id, {"t": str(timeout)}, expect=(204, 304))


def stop_pod_sandbox(client, sandbox_id) -> None:
    """core/sandbox_stop.go StopPodSandbox: getPodSandboxDetails, then
    StopContainer with defaultSandboxGracePeriod (10s)."""
    client.call("GET", "/containers/%s/json" % sandbox_id)
    stop_container(client, sandbox_id, 10)


def remove_container(client, container_id, link: str) -> None:
    """core/container_remove.go RemoveContainer: removeContainerLogSymlink,
    then ContainerRemove(RemoveVolumes, Force)."""
    if os.path.lexists(link):
        os.remove(link)
    client.call("DELETE", "/containers/%s" % container_id, {"v": "1", "force": "1"}, expect=(204,))


def remove_pod_sandbox(client, sandbox_id) -> None:
    """core/sandbox_remove.go RemovePodSandbox: the sandbox's containers
    (label filter) removed, then the sandbox."""
    left = client.call("GET", "/containers/json",
                       {"all": "1", "filters": go_filters(label=["io.kubernetes.sandbox.id=" + sandbox_id])})
    for c in left:
        client.call("DELETE", "/containers/%s" % c["Id"], {"v": "1", "force": "1"}, expect=(204,))
    client.call("DELETE", "/containers/%s" % sandbox_id, {"v": "1", "force": "1"}, expect=(204,))


def mounts_below(prefix: str) -> list:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def cgroup_dirs(parent: str) -> list:
    found = []
    for mount in os.listdir("/sys/fs/cgroup"):
        directory = os.path.join("/sys/fs/cgroup", mount, parent.lstrip("/"))
        if os.path.isdir(directory):
            found += [os.path.join(directory, d) for d in os.listdir(directory)
                      if os.path.isdir(os.path.join(directory, d))]
    return found


def remove_cgroup_parents(parent: str) -> None:
    """The pod's cgroup, which the kubelet (not the runtime) removes."""
    for mount in os.listdir("/sys/fs/cgroup"):
        directory = os.path.join("/sys/fs/cgroup", mount, parent.lstrip("/"))
        top = os.path.join("/sys/fs/cgroup", mount)
        while os.path.isdir(directory) and directory != top:
            try:
                os.rmdir(directory)
            except OSError:
                break
            directory = os.path.dirname(directory)


def cni_set_up_pod(client, sandbox_id) -> None:
    """sandbox_run.go's ds.network.SetUpPod with a CNI plugin: the netns
    path from getNetworkNamespace (helpers_linux.go: /proc/<State.Pid>/ns/net),
    an interface made in it (a veth pair both ends of which stay in the
    pod: no traffic leaves it)."""
    doc = client.call("GET", "/containers/%s/json" % sandbox_id)
    netns = "/proc/%d/ns/net" % doc["State"]["Pid"]
    for command in (["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "cni-peer"],
                    ["ip", "addr", "add", "10.244.0.5/24", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"]):
        subprocess.run(["nsenter", "--net=" + netns] + command, check=True, capture_output=True)


def cni_tear_down_pod(client, sandbox_id) -> None:
    """sandbox_stop.go's ds.network.TearDownPod, before the sandbox stops."""
    doc = client.call("GET", "/containers/%s/json" % sandbox_id)
    subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % doc["State"]["Pid"], "ip", "link", "del", "eth0"],
                   check=True, capture_output=True)


@pytest.mark.route("GET", "/_ping")
@pytest.mark.route("GET", "/info")
@pytest.mark.route("GET", "/version")
@pytest.mark.route("GET", "/images/{name:.*}/json")
@pytest.mark.route("POST", "/containers/create")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("GET", "/containers/{name:.*}/json")
@pytest.mark.route("GET", "/containers/json")
@pytest.mark.route("POST", "/containers/{name:.*}/exec")
@pytest.mark.route("POST", "/exec/{name:.*}/start")
@pytest.mark.route("GET", "/exec/{id:.*}/json")
@pytest.mark.route("GET", "/containers/{name:.*}/stats")
@pytest.mark.route("POST", "/containers/{name:.*}/stop")
@pytest.mark.route("DELETE", "/containers/{name:.*}")
@pytest.mark.route("POST", "/containers/{name:.*}/update")
@pytest.mark.parametrize("plugin", ["no-op", "cni"])
def test_pod_lifecycle(node, tmp_path, plugin):
    client = Client(node.sock)
    # cri-dockerd's start: NegotiateAPIVersion (GET /_ping, /version), the
    # cgroup driver and log driver (getDockerInfo: GET /info).
    client.call("GET", "/_ping")
    info = client.call("GET", "/info")
    assert info["CgroupDriver"] == "cgroupfs" and info["OSType"] == "linux"
    assert os.path.isabs(info["DockerRootDir"])
    pod, namespace, uid = "web", "default", "%s-4b1e-4e1b-9c2e-%s" % (secrets.token_hex(4), secrets.token_hex(6))
    cgroup_parent = "/kubepods/besteffort/pod" + uid
    log_dir = str(tmp_path / "pods" / ("%s_%s_%s" % (namespace, pod, uid)))
    sandbox_id = run_pod_sandbox(client, pod, namespace, uid, cgroup_parent, plugin)
    if plugin == "cni":
        cni_set_up_pod(client, sandbox_id)
    try:
        sandbox = pod_sandbox_status(client, sandbox_id)
        assert sandbox["State"]["Running"]
        pid = sandbox["State"]["Pid"]
        # The sandbox: its SandboxKey the network namespace of its process.
        assert os.stat(sandbox["NetworkSettings"]["SandboxKey"]).st_ino == os.stat("/proc/%d/ns/net" % pid).st_ino
        assert sandbox["HostConfig"]["ShmSize"] == DEFAULT_SHM_SIZE

        # The kubelet's per-pod files, bound into each container (GenerateMountBindings).
        pod_dir = tmp_path / "kubelet" / uid
        os.makedirs(pod_dir / "containers", exist_ok=True)
        (pod_dir / "etc-hosts").write_text("127.0.0.1\tlocalhost\n10.244.0.5\t%s\n" % pod)
        image_id = client.call("GET", "/images/busybox:latest/json")["Id"]
        config = (pod, namespace, uid, cgroup_parent)
        ids, links = {}, {}
        commands = {
            "server": ["/bin/sh", "-c", "echo server-out; echo server-err >&2; mkdir -p /www; "
                                        "echo pod-ok > /www/index.html; exec httpd -f -p 127.0.0.1:8080 -h /www"],
            "client": ["/bin/sh", "-c", "echo client ready; exec sleep 3600"],
        }
        for name, command in commands.items():
            termination = pod_dir / "containers" / name
            termination.write_text("")
            mounts = [
                {"Type": "bind", "Source": str(pod_dir / "etc-hosts"), "Target": "/etc/hosts",
                 "BindOptions": {"CreateMountpoint": True}},
                {"Type": "bind", "Source": str(termination), "Target": "/dev/termination-log",
                 "BindOptions": {"CreateMountpoint": True}},
            ]
            ids[name] = create_container(client, sandbox_id, config, name, command, image_id, mounts, log_dir)
            links[name] = start_container(client, ids[name])
            doc = container_status(client, ids[name])
            # State.Pid is the host's; its namespaces are the sandbox's.
            for kind in ("net", "ipc", "pid"):
                assert os.readlink("/proc/%d/ns/%s" % (doc["State"]["Pid"], kind)) == \
                    os.readlink("/proc/%d/ns/%s" % (pid, kind)), kind
            assert doc["ResolvConfPath"] == sandbox["ResolvConfPath"]
            assert doc["HostsPath"] == sandbox["HostsPath"]
        if plugin == "cni":
            # The namespace the plugin set up is the pod's.
            out, _, code = exec_sync(client, ids["server"], ["ip", "-o", "addr", "show", "eth0"])
            assert code == 0 and b"10.244.0.5/24" in out, out

        # The client reaches the server over the pod's loopback.
        deadline = time.monotonic() + 15
        while True:
            out, err, code = exec_sync(client, ids["client"], ["wget", "-q", "-O-", "http://127.0.0.1:8080/"])
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (out, code) == (b"pod-ok\n", 0), (out, err, code)
        # kubectl exec -i: stdin, then the half-close; the output still comes.
        out, err, code = exec_sync(client, ids["client"], ["sh", "-c", "cat; echo done >&2"], stdin=b"ping\n")
        assert (out, err, code) == (b"ping\n", b"done\n", 0)
        out, err, code = exec_sync(client, ids["client"], ["sh", "-c", "exit 3"])
        assert code == 3
        # The pod's files: the kubelet's hosts, the rewritten resolv.conf,
        # one PID namespace, one /dev/shm.
        out, _, _ = exec_sync(client, ids["client"], ["cat", "/etc/hosts", "/etc/resolv.conf"])
        assert b"10.244.0.5\tweb" in out and b"nameserver 10.96.0.10" in out, out
        out, _, _ = exec_sync(client, ids["client"], ["ps", "-o", "args"])
        assert b"httpd -f -p 127.0.0.1:8080" in out and b"/pause" in out, out
        exec_sync(client, ids["server"], ["sh", "-c", "echo shared > /dev/shm/x"])
        out, _, _ = exec_sync(client, ids["client"], ["cat", "/dev/shm/x"])
        assert out == b"shared\n"

        # Logs, as the kubelet reads them: from the symlink to LogPath.
        deadline = time.monotonic() + 10
        while ("stderr", "server-err") not in read_cri_log(links["server"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = read_cri_log(links["server"])
        assert ("stdout", "server-out") in lines and ("stderr", "server-err") in lines, lines
        assert ("stdout", "client ready") in read_cri_log(links["client"])

        update_container_resources(client, ids["server"], 512, 50000, 64 * 1024 * 1024)
        doc = client.call("GET", "/containers/%s/json" % ids["server"])
        assert (doc["HostConfig"]["CpuShares"], doc["HostConfig"]["CpuQuota"], doc["HostConfig"]["Memory"],
                doc["HostConfig"]["MemorySwap"]) == (512, 50000, 64 << 20, 64 << 20)
        assert doc["HostConfig"]["RestartPolicy"]["Name"] == "no"
        cgroup = os.path.join(cgroup_parent, ids["server"]).lstrip("/")
        if os.path.exists(os.path.join("/sys/fs/cgroup/memory", cgroup)):
            with open(os.path.join("/sys/fs/cgroup/memory", cgroup, "memory.limit_in_bytes")) as f:
                assert int(f.read()) == 64 << 20
            with open(os.path.join("/sys/fs/cgroup/cpu", cgroup, "cpu.cfs_quota_us")) as f:
                assert int(f.read()) == 50000
        relist(client, sandbox_id, list(ids.values()), running=True)
        list_container_stats(client, list(ids.values()))

        # The kubelet's killPod: the containers (grace period 30), then the sandbox.
        for name in ("server", "client"):
            stop_container(client, ids[name], 30)
            assert container_status_exited(client, ids[name])
        if plugin == "cni":
            cni_tear_down_pod(client, sandbox_id)
        stop_pod_sandbox(client, sandbox_id)
        doc = client.call("GET", "/containers/%s/json" % sandbox_id)
        check_inspect(doc)
        assert doc["State"]["Running"] is False and doc["State"]["Pid"] == 0
        relist(client, sandbox_id, list(ids.values()), running=False)
        # Garbage collection: the containers, then the sandbox.
        for name in ("server", "client"):
            remove_container(client, ids[name], links[name])
        remove_pod_sandbox(client, sandbox_id)
    finally:
        node.docker("rm", "-f", *node.docker("ps", "-aq").stdout.split(), check=False)
        leftover_cgroups = cgroup_dirs(cgroup_parent)
        remove_cgroup_parents(cgroup_parent)

    # Nothing of the pod is left.
    assert client.call("GET", "/containers/json", {"all": "1"}) == []
    for container_id in [sandbox_id] + list(ids.values()):
        client.call("GET", "/containers/%s/json" % container_id, expect=(404,))
        assert not os.path.exists(os.path.join(node.data_root, "containers", container_id))
    assert mounts_below(node.data_root) == [] and mounts_below(node.exec_root) == []
    assert leftover_cgroups == []
    assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/cmdline" % pid).read().find("pause") < 0


def container_status_exited(client, container_id) -> bool:
    doc = client.call("GET", "/containers/%s/json" % container_id)
    check_inspect(doc)
    return doc["State"]["Status"] == "exited" and doc["State"]["Pid"] == 0 and \
        RFC3339NANO.match(doc["State"]["FinishedAt"]) is not None
