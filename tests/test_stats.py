"""
Container stats in process: the cgroup reader on made-up v1 and v2
directories, the frames as dockerd writes them, the collector and the
backend's stream over a fake sampler and a clock, and the route.
"""

import json
import os

import pytest
from twisted.internet.defer import ensureDeferred

from twistedock.backend.containers.stats import (
    BATCH,
    V1_MEMORY_KEYS,
    V2_MEMORY_KEYS,
    CgroupSampler,
    sample_json,
    stats_json,
)
from twistedock.backend.runtime.cgroups import (
    Cgroup,
    CgroupStats,
    find_cgroup,
    read_cgroup,
    read_mounts,
    system_cpu_usage,
)
from twistedock.errors import InvalidParameter, NotFound
from twistedock.routers.container import ContainerStatsConfig
from twistedock.server.httputils import encode_json

from .fake_runtime import World, failure_of, run
from .memory import API, result_of

#: dockerd 20.10's answer for a container that does not run (stream=false).
STOPPED_BODY = (
    '{"read":"0001-01-01T00:00:00Z","preread":"0001-01-01T00:00:00Z","pids_stats":{},'
    '"blkio_stats":{"io_service_bytes_recursive":null,"io_serviced_recursive":null,'
    '"io_queue_recursive":null,"io_service_time_recursive":null,"io_wait_time_recursive":null,'
    '"io_merged_recursive":null,"io_time_recursive":null,"sectors_recursive":null},'
    '"num_procs":0,"storage_stats":{},"cpu_stats":{"cpu_usage":{"total_usage":0,'
    '"usage_in_kernelmode":0,"usage_in_usermode":0},"throttling_data":{"periods":0,'
    '"throttled_periods":0,"throttled_time":0}},"precpu_stats":{"cpu_usage":{"total_usage":0,'
    '"usage_in_kernelmode":0,"usage_in_usermode":0},"throttling_data":{"periods":0,'
    '"throttled_periods":0,"throttled_time":0}},"memory_stats":{},"name":"/st-stopped",'
    '"id":"80d7fbfd68b58a535254dfdaf7783a428d3fb25fffce8922c5d18c84c4d8b4e5"}\n'
)

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 /nested /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
JOINED_MOUNTINFO = """\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
"""
UNIFIED_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def write_files(directory, files):
    os.makedirs(directory, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)


# -- finding the cgroups --------------------------------------------------------------


def test_hybrid_hosts_count_as_v1_and_each_controller_is_found_where_mounted(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(HYBRID_MOUNTINFO)
    mounts = read_mounts(str(mountinfo))
    assert not mounts.unified
    assert mounts.controllers["cpuacct"] == ("/sys/fs/cgroup/cpuacct", "/")
    assert "systemd" not in mounts.controllers
    cgroup = find_cgroup(mounts, "/twistedock/abc")
    assert cgroup.version == 1
    assert cgroup.paths["cpu"] == "/sys/fs/cgroup/cpu/twistedock/abc"
    assert cgroup.paths["memory"] == "/sys/fs/cgroup/memory/twistedock/abc"
    # cpu and cpuacct mounted together: one directory for both.
    mountinfo.write_text(JOINED_MOUNTINFO)
    joined = find_cgroup(read_mounts(str(mountinfo)), "/twistedock/abc")
    assert joined.paths["cpu"] == joined.paths["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/twistedock/abc"


def test_a_v2_host_has_one_directory_per_container(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(UNIFIED_MOUNTINFO)
    mounts = read_mounts(str(mountinfo))
    assert mounts.unified and mounts.root == "/sys/fs/cgroup"
    assert find_cgroup(mounts, "/docker/abc") == Cgroup(2, {"": "/sys/fs/cgroup/docker/abc"})


def test_without_a_cgroupfs_path_the_init_process_says_where_it_is(tmp_path):
    # systemd's "slice:prefix:name" form: read /proc/PID/cgroup (this process's).
    mounts = read_mounts()
    cgroup = find_cgroup(mounts, "system.slice:docker:abc", os.getpid())
    assert cgroup is not None
    assert cgroup.version == (2 if mounts.unified else 1)
    assert all(os.path.isdir(path) for path in cgroup.paths.values())
    assert find_cgroup(mounts, "system.slice:docker:abc", 0) is None


# -- reading them ---------------------------------------------------------------------

V1_FILES = {
    "cpuacct": {
        "cpuacct.usage": "71476012387\n",
        "cpuacct.usage_percpu": "35446535576 36031951981 \n",
        "cpuacct.stat": "user 7119\nsystem 28\n",
    },
    "cpu": {"cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\nnr_bursts 0\n"},
    "memory": {
        "memory.stat": "cache 4096\nrss 57344\nshmem 0\ntotal_inactive_file 8192\n"
                       "hierarchical_memory_limit 9223372036854771712\n",
        "memory.usage_in_bytes": "319488\n",
        "memory.max_usage_in_bytes": "3829760\n",
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.failcnt": "3\n",
    },
    "pids": {"pids.current": "4\n", "pids.max": "max\n"},
    "blkio": {
        "blkio.throttle.io_service_bytes": "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
        "blkio.throttle.io_serviced": "8:0 Read 1\n8:0 Write 0\nTotal 1\n",
    },
}


def v1_cgroup(root, files=V1_FILES) -> Cgroup:
    paths = {}
    for controller, content in files.items():
        paths[controller] = str(root / controller / "c")
        write_files(paths[controller], content)
    return Cgroup(1, paths)


def test_a_v1_sample_reads_what_containerd_reads(tmp_path):
    usage = read_cgroup(v1_cgroup(tmp_path))
    assert usage.version == 1
    assert (usage.cpu_total, usage.cpu_percpu) == (71476012387, [35446535576, 36031951981])
    # cpuacct.stat counts USER_HZ ticks.
    assert (usage.cpu_user, usage.cpu_kernel) == (71_190_000_000, 280_000_000)
    assert (usage.periods, usage.throttled_periods, usage.throttled_time) == (10, 2, 5000)
    assert usage.memory_stat["rss"] == 57344
    assert (usage.memory_usage, usage.memory_max_usage, usage.memory_failcnt) == (319488, 3829760, 3)
    assert (usage.pids_current, usage.pids_limit) == (4, 0)
    # No CFQ files: the throttle files, "Total" skipped.
    assert usage.blkio == {
        "io_serviced_recursive": [(8, 0, "Read", 1), (8, 0, "Write", 0)],
        "io_service_bytes_recursive": [(8, 0, "Read", 4096), (8, 0, "Write", 0)],
    }


def test_v1_blkio_prefers_the_cfq_files_when_they_say_something(tmp_path):
    files = dict(V1_FILES)
    files["blkio"] = dict(V1_FILES["blkio"])
    files["blkio"]["blkio.io_serviced_recursive"] = "8:0 Read 7\nTotal 7\n"
    files["blkio"]["blkio.sectors_recursive"] = "8:0 16\n"
    usage = read_cgroup(v1_cgroup(tmp_path, files))
    assert usage.blkio["io_serviced_recursive"] == [(8, 0, "Read", 7)]
    assert usage.blkio["sectors_recursive"] == [(8, 0, "", 16)]
    assert usage.blkio["io_service_bytes_recursive"] == []
    # Present but empty: the throttle files after all.
    files["blkio"]["blkio.io_serviced_recursive"] = "Total 0\n"
    files["blkio"]["blkio.sectors_recursive"] = ""
    usage = read_cgroup(v1_cgroup(tmp_path / "again", files))
    assert usage.blkio["io_serviced_recursive"] == [(8, 0, "Read", 1), (8, 0, "Write", 0)]


def test_a_missing_controller_leaves_its_fields_unset(tmp_path):
    usage = read_cgroup(v1_cgroup(tmp_path, {"cpuacct": V1_FILES["cpuacct"]}))
    assert usage.memory_stat is None and usage.blkio is None and not usage.has_pids
    doc = sample_json(usage, 1, 2, 2, 1 << 30)
    assert doc["memory_stats"] == {} and doc["pids_stats"] == {}
    assert set(doc["blkio_stats"].values()) == {None}


V2_FILES = {
    "cpu.stat": "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\n"
                "nr_throttled 1\nthrottled_usec 30\n",
    "memory.stat": "anon 8192\nfile 4096\ninactive_file 1024\nsomething_new 5\n",
    "memory.current": "65536\n",
    "memory.max": "max\n",
    "memory.events": "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
    "pids.current": "2\n",
    "pids.max": "100\n",
    "io.stat": "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n",
}


def test_a_v2_sample_and_its_frame(tmp_path):
    write_files(str(tmp_path / "c"), V2_FILES)
    usage = read_cgroup(Cgroup(2, {"": str(tmp_path / "c")}))
    assert (usage.cpu_total, usage.cpu_user, usage.cpu_kernel) == (2_000_000, 1_500_000, 500_000)
    assert usage.cpu_percpu is None
    assert usage.memory_limit == 2**64 - 1
    doc = sample_json(usage, 1_700_000_000_123_456_789, 99, 2, 1 << 30)
    assert doc["read"] == "2023-11-14T22:13:20.123456789Z"
    assert doc["cpu_stats"] == {
        "cpu_usage": {"total_usage": 2_000_000, "usage_in_kernelmode": 500_000, "usage_in_usermode": 1_500_000},
        "system_cpu_usage": 99,
        "online_cpus": 2,
        "throttling_data": {"periods": 4, "throttled_periods": 1, "throttled_time": 30_000},
    }
    memory = doc["memory_stats"]
    # v2's keys; no max_usage; failcnt is memory.events' oom; "max" clamped to the host's memory.
    assert list(memory) == ["usage", "stats", "failcnt", "limit"]
    assert (memory["usage"], memory["failcnt"], memory["limit"]) == (65536, 1, 1 << 30)
    assert list(memory["stats"]) == sorted(V2_MEMORY_KEYS)
    assert memory["stats"]["anon"] == 8192 and memory["stats"]["pgfault"] == 0
    assert doc["pids_stats"] == {"current": 2, "limit": 100}
    assert doc["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 4096},
        {"major": 8, "minor": 0, "op": "write", "value": 512},
    ]
    assert doc["blkio_stats"]["io_serviced_recursive"] is None


def test_a_v1_frame_has_dockerds_fields_in_dockerds_order(tmp_path):
    usage = read_cgroup(v1_cgroup(tmp_path))
    sample = sample_json(usage, 1_700_000_000_000_000_000, 21631580000000, 2, 25276194816)
    frame = stats_json(sample, "/web", "abc", {"cpu_usage": {"total_usage": 1}}, "then")
    assert list(frame) == [
        "read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats",
        "cpu_stats", "precpu_stats", "memory_stats", "name", "id",
    ]
    assert frame["preread"] == "then" and frame["precpu_stats"] == {"cpu_usage": {"total_usage": 1}}
    assert list(frame["cpu_stats"]["cpu_usage"]) == [
        "total_usage", "percpu_usage", "usage_in_kernelmode", "usage_in_usermode",
    ]
    memory = frame["memory_stats"]
    assert list(memory) == ["usage", "max_usage", "stats", "failcnt", "limit"]
    assert list(memory["stats"]) == sorted(V1_MEMORY_KEYS)
    assert memory["stats"]["hierarchical_memory_limit"] == 9223372036854771712
    assert memory["limit"] == 25276194816  # no limit: the host's memory
    assert frame["pids_stats"] == {"current": 4}
    assert frame["blkio_stats"]["io_time_recursive"] == []
    assert frame["blkio_stats"]["io_service_bytes_recursive"][0] == {
        "major": 8, "minor": 0, "op": "Read", "value": 4096,
    }


def test_a_container_that_does_not_run_gets_dockerds_zeroed_stats():
    body = encode_json(stats_json(
        None, "/st-stopped", "80d7fbfd68b58a535254dfdaf7783a428d3fb25fffce8922c5d18c84c4d8b4e5"
    ))
    assert body.decode() == STOPPED_BODY


def test_system_cpu_usage_sums_the_first_seven_fields(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 1 50 1000 2 3 4 0 0 0\ncpu0 50 0 25 500 1 1 2 0 0 0\n")
    assert system_cpu_usage(str(stat)) == 1160 * 10_000_000
    stat.write_text("intr 1\n")
    with pytest.raises(ValueError):
        system_cpu_usage(str(stat))


def test_the_sampler_finds_the_cgroup_from_the_bundles_spec_once_per_run(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"linux": {"cgroupsPath": "/twistedock/abc"}}))
    found = []

    def find(mounts, cgroups_path, pid):
        found.append((cgroups_path, pid))
        return v1_cgroup(tmp_path / "cg")

    monkeypatch.setattr("twistedock.backend.containers.stats.find_cgroup", find)
    sampler = CgroupSampler()
    first = sampler.sample([("abc", 10, str(bundle))])
    second = sampler.sample([("abc", 10, str(bundle))])
    assert found == [("/twistedock/abc", 10)]
    assert first["abc"]["cpu_stats"]["cpu_usage"]["total_usage"] == 71476012387
    assert first["abc"]["cpu_stats"]["system_cpu_usage"] > 0
    assert second["abc"]["memory_stats"]["usage"] == 319488
    # A new run (another pid) finds it again; an unreadable cgroup gives no sample.
    sampler.sample([("abc", 11, str(bundle))])
    assert found[-1] == ("/twistedock/abc", 11)
    monkeypatch.setattr("twistedock.backend.containers.stats.find_cgroup", lambda *a: None)
    assert sampler.sample([("xyz", 1, str(bundle))]) == {}


# -- the collector and the backend's frames -------------------------------------------


class FakeSampler:
    """Samples whose CPU total counts the ticks."""

    def __init__(self):
        self.ticks = []

    def sample(self, targets):
        self.ticks.append([t[0] for t in targets])
        n = len(self.ticks)
        usage = CgroupStats(version=1, cpu_total=n * 100, memory_stat={}, memory_usage=n)
        return {cid: sample_json(usage, n * 1_000_000_000, n * 1000, 2, 0) for cid, _, _ in targets}

    def forget(self, container_id):
        pass


class Output:
    def __init__(self, flow=None):
        self.started = False
        self.frames = []
        self.flow = flow
        self._flow = flow

    def start(self):
        self.started = True
        self.flow = self._flow

    def write(self, frame):
        self.frames.append(frame)


class Flow:
    paused = False
    stopped = False


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    w.sampler = FakeSampler()
    w.backend.stats_collector.sampler = w.sampler
    return w


def watch(world, ref, stream=True, one_shot=False, flow=None, settle=True):
    """Start a stats request; with C{settle}, let its first sample come (a
    new watcher's container is sampled a L{BATCH} later)."""
    out = Output(flow if flow is not None else (Flow() if stream else None))
    config = ContainerStatsConfig(stream=stream, one_shot=one_shot, version="1.41")
    done = ensureDeferred(world.backend.stats(ref, config, out))
    if settle:
        world.clock.advance(BATCH)
    return out, done


def test_stream_false_samples_twice_and_one_shot_once(world):
    ident = world.started("web")
    out, done = watch(world, "web", stream=False)
    assert out.started and out.frames == [] and not done.called
    world.clock.advance(1)
    assert done.called and len(out.frames) == 1
    frame = out.frames[0]
    assert frame["id"] == ident and frame["name"] == "/web"
    assert frame["cpu_stats"]["cpu_usage"]["total_usage"] == 200
    assert frame["precpu_stats"]["cpu_usage"]["total_usage"] == 100
    assert frame["preread"] == "1970-01-01T00:00:01Z" and frame["read"] == "1970-01-01T00:00:02Z"
    out, done = watch(world, "web", stream=False, one_shot=True)
    assert done.called and len(out.frames) == 1
    assert out.frames[0]["precpu_stats"] == stats_json(None, "", "")["precpu_stats"]
    assert out.frames[0]["preread"] == "0001-01-01T00:00:00Z"
    # No watcher left: the collector stopped sampling.
    ticks = len(world.sampler.ticks)
    world.clock.advance(5)
    assert len(world.sampler.ticks) == ticks


def test_errors_come_before_anything_is_written(world):
    world.started("web")
    out = Output()
    error = failure_of(world.backend.stats("web", ContainerStatsConfig(stream=True, one_shot=True), out))
    assert isinstance(error, InvalidParameter)
    assert str(error) == "cannot have stream=true and one-shot=true"
    error = failure_of(world.backend.stats("nope", ContainerStatsConfig(stream=False), out))
    assert isinstance(error, NotFound) and str(error) == "No such container: nope"
    assert not out.started


def test_a_stopped_container_without_stream_gets_zeroed_stats_at_once(world):
    ident = world.create("idle")
    out, done = watch(world, "idle", stream=False)
    assert done.called
    assert out.frames == [stats_json(None, "/idle", ident)]
    assert world.sampler.ticks == []


def test_a_stream_goes_on_through_a_stop_and_ends_with_the_removal(world):
    ident = world.started("web")
    out, done = watch(world, "web")
    world.clock.advance(1)
    assert [f["cpu_stats"]["cpu_usage"]["total_usage"] for f in out.frames] == [100, 200]
    assert out.frames[1]["precpu_stats"] == out.frames[0]["cpu_stats"]
    world.runtime.exit(ident, 0)
    world.settle()
    world.clock.advance(1)
    # Zeroed stats, with the last sample as precpu, as dockerd.
    assert out.frames[2]["read"] == "0001-01-01T00:00:00Z"
    assert out.frames[2]["precpu_stats"] == out.frames[1]["cpu_stats"]
    assert out.frames[2]["memory_stats"] == {}
    world.clock.advance(1)
    assert out.frames[3] == stats_json(None, "/web", ident)
    assert not done.called
    run(world.backend.remove("web", False, False))
    world.clock.advance(1)
    assert done.called and len(out.frames) == 4
    assert world.backend.stats_collector._watchers == {}


def test_one_sample_per_tick_serves_every_watcher(world):
    world.started("aa")
    world.started("bb")
    out_a, _ = watch(world, "aa", settle=False)
    out_b1, _ = watch(world, "bb", settle=False)
    world.clock.advance(BATCH)
    world.clock.advance(1)
    # Another watcher of a watched container follows its cadence.
    out_b2, d = watch(world, "bb")
    assert out_b2.frames == []
    world.clock.advance(1)
    assert world.sampler.ticks == [[world.backend.get(n).id for n in ("aa", "bb")]] * 3
    assert len(out_a.frames) == 3 and len(out_b1.frames) == 3 and len(out_b2.frames) == 1
    assert out_b2.frames[0]["read"] == out_b1.frames[-1]["read"]
    # A container watched later has its first sample at once, then its own cadence.
    world.started("cc")
    out_c, _ = watch(world, "cc", settle=False)
    world.clock.advance(BATCH)
    assert len(out_c.frames) == 1 and world.sampler.ticks[-1] == [world.backend.get("cc").id]
    d.cancel()
    assert len(world.backend.stats_collector._watchers[world.backend.get("bb").id]) == 1


def test_a_client_that_leaves_or_falls_behind(world):
    world.started("web")
    flow = Flow()
    out, done = watch(world, "web", flow=flow)
    world.clock.advance(1)
    assert len(out.frames) == 2
    # Behind: frames are dropped, not queued.
    flow.paused = True
    world.clock.advance(3)
    assert len(out.frames) == 2
    flow.paused = False
    world.clock.advance(1)
    assert len(out.frames) == 3
    # precpu is the last frame the client got.
    assert out.frames[2]["precpu_stats"] == out.frames[1]["cpu_stats"]
    # Gone: the request is cancelled, the watcher leaves, sampling stops.
    done.cancel()
    assert world.backend.stats_collector._watchers == {}
    ticks = len(world.sampler.ticks)
    world.clock.advance(3)
    assert len(world.sampler.ticks) == ticks


def test_a_failing_sample_gives_zeroed_stats_and_the_collector_goes_on(world):
    world.started("web")

    def broken(targets):
        raise OSError("gone")

    sample = world.sampler.sample
    world.sampler.sample = broken
    out, _ = watch(world, "web")
    assert out.frames[0]["read"] == "0001-01-01T00:00:00Z"
    world.sampler.sample = sample
    world.clock.advance(1)
    assert out.frames[1]["cpu_stats"]["cpu_usage"]["total_usage"] == 100


# -- the route ------------------------------------------------------------------------


@pytest.mark.route("GET", "/containers/{name:.*}/stats")
def test_the_route_streams_without_a_content_type_or_answers_one_json():
    api = API()
    api.request("POST", "/containers/create?name=web", json_body={"Image": "busybox"})
    api.containers.containers["web"]["Stats"] = [{"n": 1}, {"n": 2}]
    answer = api.request("GET", "/v1.41/containers/web/stats?stream=0")
    assert answer.code == 200 and answer.header("Content-Type") == "application/json"
    assert answer.body == b'{"n":1}\n'
    response, chunks, done = api.stream("GET", "/v1.41/containers/web/stats")
    assert response.code == 200 and not response.headers.hasHeader("Content-Type")
    assert b"".join(chunks) == b'{"n":1}\n{"n":2}\n' and not done.called
    for d in api.containers.waiters.pop("stats:web"):
        d.callback(None)
    api.treq.flush()
    assert done.called
    # one-shot from API 1.41 only; stream is true unless said otherwise.
    answer = api.request("GET", "/v1.41/containers/web/stats?one-shot=1")
    assert answer.code == 400
    assert answer.json() == {"message": "cannot have stream=true and one-shot=true"}
    api.request("GET", "/v1.40/containers/web/stats?stream=false&one-shot=1")
    config = api.containers.calls[-1][2]
    assert (config.stream, config.one_shot, config.version) == (False, False, "1.40")
    assert api.request("GET", "/containers/nope/stats").code == 404
    result_of(done)
