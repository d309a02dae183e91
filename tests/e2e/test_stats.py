"""
Container stats with the real CLI and docker-py, from the host's real
cgroups: `docker stats --no-stream` for a busy and an idle container, the
stream through a stop and a removal, stream=false and one-shot, and the
bodies side by side with the reference dockerd (20.10) when it answers;
and docker-py's kernel_memory at API 1.41.
"""

import json
import os
import shutil
import subprocess
import uuid

import docker
import pytest

from twistedock.backend.runtime.cgroups import Cgroup, find_cgroup, read_cgroup, read_mounts
from twistedock.backend.spec.sysinfo import current_sysinfo

from .conftest import DockerDaemon, unix_request
from .test_containers import busybox_rootfs_tar, daemon, import_busybox  # noqa: F401  (the module's daemon with busybox)
from .test_reference_bodies import _docker, differences, reference  # noqa: F401

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

MB = 1024 * 1024
UNITS = {"B": 1, "KiB": 1024, "MiB": MB, "GiB": 1024 * MB, "TiB": 1024 * 1024 * MB}
BUSY = ("sh", "-c", "while :; do :; done")


def size(text: str) -> float:
    for unit in sorted(UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * UNITS[unit]
    raise AssertionError("not a size: %r" % text)


def mem_total() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def stats(daemon, target, version="/v1.41"):
    answer = daemon.request("GET", version + target, timeout=30)
    return answer


@pytest.fixture
def busy_and_idle(daemon):
    daemon.docker("rm", "-f", "st-busy", "st-idle", check=False)
    daemon.docker("run", "-d", "--name", "st-busy", "busybox", *BUSY)
    daemon.docker("run", "-d", "--name", "st-idle", "--memory", "64m", "busybox", "sleep", "1000")
    yield
    daemon.docker("rm", "-f", "st-busy", "st-idle", check=False)


@pytest.mark.route("GET", "/containers/{name:.*}/stats")
def test_docker_stats_no_stream_shows_a_busy_and_an_idle_container(daemon, busy_and_idle):
    result = daemon.docker("stats", "--no-stream", "--format", "{{json .}}", "st-busy", "st-idle")
    rows = {row["Name"]: row for row in map(json.loads, result.stdout.splitlines())}
    busy, idle = rows["st-busy"], rows["st-idle"]
    # A busy loop gets a good share of a CPU even on a loaded host; sleep gets none.
    assert float(busy["CPUPerc"].rstrip("%")) > 5.0, busy
    assert float(idle["CPUPerc"].rstrip("%")) < 5.0, idle
    for row in (busy, idle):
        used, limit = (size(part.strip()) for part in row["MemUsage"].split("/"))
        assert 0 < used < 64 * MB, row
        assert row["PIDs"] == "1"
    # No limit: the host's memory; --memory 64m: that.
    assert abs(size(busy["MemUsage"].split("/")[1].strip()) - mem_total()) < 0.01 * mem_total()
    assert size(idle["MemUsage"].split("/")[1].strip()) == 64 * MB


def test_stream_false_and_one_shot_bodies(daemon, busy_and_idle):
    answer = stats(daemon, "/containers/st-busy/stats?stream=false")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    frame = answer.json()
    assert frame["name"] == "/st-busy" and len(frame["id"]) == 64
    cpu, precpu = frame["cpu_stats"], frame["precpu_stats"]
    # Two samples: precpu is the first, a second earlier.
    assert cpu["cpu_usage"]["total_usage"] > precpu["cpu_usage"]["total_usage"] > 0
    assert cpu["system_cpu_usage"] > precpu["system_cpu_usage"] > 0
    assert cpu["online_cpus"] == len(os.sched_getaffinity(0))
    assert frame["preread"] < frame["read"]
    memory = frame["memory_stats"]
    assert memory["usage"] > 0 and memory["limit"] > 0
    v1 = not read_mounts().unified
    assert ("total_inactive_file" in memory["stats"]) == v1
    assert ("inactive_file" in memory["stats"]) and (("max_usage" in memory) == v1)
    assert ("percpu_usage" in cpu["cpu_usage"]) == v1
    assert frame["pids_stats"]["current"] == 1
    assert "networks" not in frame  # only loopback
    # one-shot: one sample, precpu empty.
    frame = stats(daemon, "/containers/st-idle/stats?stream=false&one-shot=true").json()
    assert frame["preread"] == "0001-01-01T00:00:00Z"
    assert frame["precpu_stats"] == {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }
    assert frame["memory_stats"]["limit"] == 64 * MB
    answer = stats(daemon, "/containers/st-idle/stats?one-shot=true")
    assert (answer.status, answer.json()) == (400, {"message": "cannot have stream=true and one-shot=true"})
    assert stats(daemon, "/containers/st-nothere/stats").status == 404


def test_a_container_that_does_not_run_gets_zeroed_stats(daemon):
    daemon.docker("rm", "-f", "st-created", check=False)
    ident = daemon.docker("create", "--name", "st-created", "busybox", "true").stdout.strip()
    try:
        frame = stats(daemon, "/containers/st-created/stats?stream=false").json()
        assert frame["read"] == "0001-01-01T00:00:00Z" and frame["id"] == ident
        assert frame["memory_stats"] == {} and frame["pids_stats"] == {}
        assert set(frame["blkio_stats"].values()) == {None}
    finally:
        daemon.docker("rm", "-f", "st-created", check=False)


def test_docker_py_stats_stream_through_a_stop_until_the_removal(daemon):
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=30)
    container = client.containers.run("busybox", list(BUSY), detach=True, name="st-py")
    try:
        one = container.stats(stream=False)
        assert one["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        frames = container.stats(decode=True)
        first, second = next(frames), next(frames)
        assert second["preread"] == first["read"]
        assert second["precpu_stats"] == first["cpu_stats"]
        container.kill()
        frame = next(frames)
        while frame["read"] != "0001-01-01T00:00:00Z":
            frame = next(frames)
        # dockerd goes on with zeroed stats while the container exists ...
        assert next(frames)["memory_stats"] == {}
        container.remove()
        # ... and ends the stream once it is removed.
        rest = list(frames)
        assert len(rest) <= 2 and all(f["read"] == "0001-01-01T00:00:00Z" for f in rest)
    finally:
        daemon.docker("rm", "-f", "st-py", check=False)
        client.close()


class UnifiedOnlyDaemon(DockerDaemon):
    """A daemon that sees cgroup v2 alone: in a mount namespace of its own
    where the host's unified hierarchy is mounted on /sys/fs/cgroup (runc
    under it sees the same)."""

    def command(self):
        script = ("mount --make-rprivate / && mount --bind /sys/fs/cgroup/unified /sys/fs/cgroup"
                  ' && exec "$@"')
        return ["unshare", "-m", "sh", "-c", script, "sh"] + super().command()


@pytest.mark.route("GET", "/containers/{name:.*}/stats")
def test_docker_stats_on_cgroup_v2(daemons, tmp_path):
    """On a v2 host as it is; on a hybrid one, a daemon that sees only its
    unified hierarchy (where no controller is enabled: CPU time only)."""
    if read_mounts().unified:
        d = daemons.start()
    else:
        if shutil.which("unshare") is None or not os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"):
            pytest.skip("neither a cgroup v2 host nor a unified hierarchy beside v1")
        d = UnifiedOnlyDaemon(daemons.workdir("v2"), daemons.cli_config)
        daemons.daemons.append(d)
        d.start()
    import_busybox(d, tmp_path)
    assert d.info()["CgroupVersion"] == "2"
    try:
        d.docker("run", "-d", "--name", "v2-busy", "busybox", *BUSY)
        d.docker("run", "-d", "--name", "v2-idle", "busybox", "sleep", "1000")
        result = d.docker("stats", "--no-stream", "--format", "{{json .}}", "v2-busy", "v2-idle")
        rows = {row["Name"]: row for row in map(json.loads, result.stdout.splitlines())}
        assert float(rows["v2-busy"]["CPUPerc"].rstrip("%")) > 5.0, rows
        assert float(rows["v2-idle"]["CPUPerc"].rstrip("%")) < 5.0, rows
        frame = d.request("GET", "/v1.41/containers/v2-busy/stats?stream=false", timeout=30).json()
        cpu = frame["cpu_stats"]
        assert cpu["cpu_usage"]["total_usage"] > frame["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert "percpu_usage" not in cpu["cpu_usage"]
        memory = frame["memory_stats"]
        # v2's keys, no max_usage; no io.stat entries: null.
        assert "anon" in memory["stats"] and "total_rss" not in memory["stats"]
        assert "max_usage" not in memory
        assert frame["blkio_stats"]["io_serviced_recursive"] is None
        pid = d.docker_json("inspect", "v2-busy", format="{{json .State.Pid}}")
        path = [line.split(":", 2)[2].strip() for line in open("/proc/%d/cgroup" % pid) if line.startswith("0::")][0]
        root = "/sys/fs/cgroup" if read_mounts().unified else "/sys/fs/cgroup/unified"
        if os.path.exists(os.path.join(root + path, "memory.current")):
            assert memory["usage"] > 0 and memory["limit"] > 0
    finally:
        d.docker("rm", "-f", "v2-busy", "v2-idle", check=False)


def test_the_v2_reader_on_this_hosts_unified_hierarchy(daemon, busy_and_idle):
    """On a hybrid host the container's unified cgroup has cpu.stat: the v2
    reader agrees with the v1 one about the CPU time."""
    mounts = read_mounts()
    pid = daemon.docker_json("inspect", "st-busy", format="{{json .State.Pid}}")
    cgroup = find_cgroup(mounts, "", pid)
    assert cgroup is not None
    if mounts.unified:
        assert read_cgroup(cgroup).cpu_total > 0
        return
    path = [line.split(":", 2)[2] for line in open("/proc/%d/cgroup" % pid) if line.startswith("0::")]
    unified = "/sys/fs/cgroup/unified" + (path[0].strip() if path else "")
    if not path or not os.path.exists(os.path.join(unified, "cpu.stat")):
        pytest.skip("no unified hierarchy beside the v1 controllers")
    v2 = read_cgroup(Cgroup(2, {"": unified}))
    v1 = read_cgroup(cgroup)
    assert v2.cpu_total > 0 and v1.cpu_total > 0
    assert abs(v2.cpu_total - v1.cpu_total) < max(v1.cpu_total, v2.cpu_total) * 0.5


def test_bodies_match_the_reference(daemon, reference, tmp_path):  # noqa: F811
    tag = "st-ref-%s:latest" % (uuid.uuid4().hex[:8],)
    with open(busybox_rootfs_tar(tmp_path), "rb") as f:
        _docker(reference, "import", "-", tag, stdin=f)
    suffix = uuid.uuid4().hex[:8]
    names = {"running": "st-run-" + suffix, "created": "st-new-" + suffix}
    try:
        for sock, image in ((reference, tag), (daemon.sock, "busybox")):
            _docker(sock, "run", "-d", "--name", names["running"], image, "sleep", "1000")
            _docker(sock, "create", "--name", names["created"], image, "true")
        for name in names.values():
            for query in ("stream=false", "stream=false&one-shot=true"):
                target = "/v1.41/containers/%s/stats?%s" % (name, query)
                bodies = [unix_request(sock, "GET", target, timeout=30) for sock in (reference, daemon.sock)]
                assert [b.status for b in bodies] == [200, 200]
                assert [b.headers["Content-Type"] for b in bodies] == ["application/json"] * 2
                assert differences(*[b.json() for b in bodies]) == {}, (name, query)
    finally:
        for sock in (reference, daemon.sock):
            subprocess.run(["docker", "-H", "unix://" + sock, "rm", "-f", *names.values()],
                           capture_output=True, timeout=60)
        subprocess.run(["docker", "-H", "unix://" + reference, "rmi", tag], capture_output=True, timeout=60)


@pytest.mark.route("POST", "/containers/create")
@pytest.mark.route("POST", "/containers/{name:.*}/update")
def test_docker_py_kernel_memory_at_1_41(daemon):
    """Issue 14's legacy bit: docker-py's kernel_memory, as dockerd 20.10
    takes it at API 1.41 (kept, warned about; runc ignores it)."""
    if not current_sysinfo().kernel_memory:
        pytest.skip("no kernel memory limits here (cgroup v2): dockerd discards them with a warning")
    client = docker.APIClient(base_url=daemon.host, version="1.41", timeout=30)
    try:
        created = client.create_container(
            "busybox", ["sleep", "1000"], name="st-kmem",
            host_config=client.create_host_config(kernel_memory="10m"),
        )
        assert "Specifying a kernel memory limit is deprecated" in created["Warnings"][0]
        client.start(created["Id"])
        answer = client.update_container("st-kmem", kernel_memory="20m")
        assert "Specifying a kernel memory limit is deprecated" in answer["Warnings"][0]
        inspected = client.inspect_container("st-kmem")
        assert inspected["State"]["Running"]
        assert (inspected["HostConfig"]["KernelMemory"], inspected["HostConfig"]["KernelMemoryTCP"]) == (20 * MB, 0)
        # The newest API shows what is set and leaves the unset field out.
        newest = daemon.request("GET", "/containers/st-kmem/json").json()["HostConfig"]
        assert newest["KernelMemory"] == 20 * MB and "KernelMemoryTCP" not in newest
    finally:
        daemon.docker("rm", "-f", "st-kmem", check=False)
        client.close()
