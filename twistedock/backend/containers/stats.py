"""
Containers' resource usage, as moby's daemon/stats.go, daemon/stats/ (the
collector) and the statsV1/statsV2 conversions of daemon/daemon_unix.go.

One L{StatsCollector} samples every container someone watches, once an
interval, the containers due together in one job in a thread (one read pass
per cgroup per sample, shared by every watcher of that container); each
request turns the samples it receives into frames, with the previous one's
CPU figures as precpu_stats.
"""

import json
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, ensureDeferred, succeed

from ... import golang
from ...errors import InvalidParameter
from ...logs import Logger
from ...routers.container import ContainerStatsConfig
from ..host import mem_total, ncpu
from ..runtime.cgroups import Cgroup, CgroupStats, find_cgroup, read_cgroup, read_mounts, system_cpu_usage

log = Logger()

#: dockerd's collector interval.
INTERVAL = 1.0
#: Containers due within this many seconds of each other are sampled together.
BATCH = 0.05

#: The memory.stat keys dockerd reports, per cgroup version (statsV1, statsV2).
V1_MEMORY_KEYS = (
    "cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pgpgin", "pgpgout",
    "pgfault", "pgmajfault", "inactive_anon", "active_anon", "inactive_file", "active_file",
    "unevictable", "hierarchical_memory_limit", "hierarchical_memsw_limit", "total_cache",
    "total_rss", "total_rss_huge", "total_mapped_file", "total_dirty", "total_writeback",
    "total_pgpgin", "total_pgpgout", "total_pgfault", "total_pgmajfault",
    "total_inactive_anon", "total_active_anon", "total_inactive_file", "total_active_file",
    "total_unevictable",
)
V2_MEMORY_KEYS = (
    "anon", "file", "kernel_stack", "slab", "sock", "shmem", "file_mapped", "file_dirty",
    "file_writeback", "anon_thp", "inactive_anon", "active_anon", "inactive_file",
    "active_file", "unevictable", "slab_reclaimable", "slab_unreclaimable", "pgfault",
    "pgmajfault", "workingset_refault", "workingset_activate", "workingset_nodereclaim",
    "pgrefill", "pgscan", "pgsteal", "pgactivate", "pgdeactivate", "pglazyfree",
    "pglazyfreed", "thp_fault_alloc", "thp_collapse_alloc",
)
_BLKIO_FIELDS = (
    ("io_service_bytes_recursive", "io_service_bytes_recursive"),
    ("io_serviced_recursive", "io_serviced_recursive"),
    ("io_queue_recursive", "io_queued_recursive"),
    ("io_service_time_recursive", "io_service_time_recursive"),
    ("io_wait_time_recursive", "io_wait_time_recursive"),
    ("io_merged_recursive", "io_merged_recursive"),
    ("io_time_recursive", "time_recursive"),
    ("sectors_recursive", "sectors_recursive"),
)


# -- dockerd's StatsJSON ------------------------------------------------------


def cpu_stats(
    usage: Optional[CgroupStats] = None, system_usage: int = 0, online_cpus: int = 0
) -> dict:
    """types.CPUStats (zero when C{usage} is None)."""
    cpu_usage = {"total_usage": usage.cpu_total if usage else 0}
    if usage is not None and usage.cpu_percpu:
        cpu_usage["percpu_usage"] = list(usage.cpu_percpu)
    cpu_usage["usage_in_kernelmode"] = usage.cpu_kernel if usage else 0
    cpu_usage["usage_in_usermode"] = usage.cpu_user if usage else 0
    doc = {"cpu_usage": cpu_usage}
    if system_usage:
        doc["system_cpu_usage"] = system_usage
    if online_cpus:
        doc["online_cpus"] = online_cpus
    doc["throttling_data"] = {
        "periods": usage.periods if usage else 0,
        "throttled_periods": usage.throttled_periods if usage else 0,
        "throttled_time": usage.throttled_time if usage else 0,
    }
    return doc


def _omit_zero(pairs) -> dict:
    return {key: value for key, value in pairs if value}


def _memory_stats(usage: CgroupStats, machine_memory: int) -> dict:
    if usage.memory_stat is None:
        return {}
    keys = V1_MEMORY_KEYS if usage.version == 1 else V2_MEMORY_KEYS
    raw = {key: usage.memory_stat.get(key, 0) for key in sorted(keys)}
    limit = usage.memory_limit
    if machine_memory > 0 and limit > machine_memory:
        limit = machine_memory
    failcnt = usage.memory_failcnt
    if usage.version == 2:
        failcnt = (usage.memory_events or {}).get("oom", 0)
    return _omit_zero((
        ("usage", usage.memory_usage),
        ("max_usage", usage.memory_max_usage if usage.version == 1 else 0),
        ("stats", raw),
        ("failcnt", failcnt),
        ("limit", limit),
    ))


def _blkio_stats(usage: Optional[CgroupStats]) -> dict:
    doc: Dict[str, Optional[list]] = {name: None for name, _ in _BLKIO_FIELDS}
    if usage is None:
        return doc
    if usage.version == 1 and usage.blkio is not None:
        for name, field in _BLKIO_FIELDS:
            doc[name] = [_blkio_entry(*entry) for entry in usage.blkio.get(field, ())]
    elif usage.version == 2 and usage.io:
        entries = []
        for major, minor, values in usage.io:
            entries.append(_blkio_entry(major, minor, "read", values.get("rbytes", 0)))
            entries.append(_blkio_entry(major, minor, "write", values.get("wbytes", 0)))
        doc["io_service_bytes_recursive"] = entries
    return doc


def _blkio_entry(major: int, minor: int, op: str, value: int) -> dict:
    return {"major": major, "minor": minor, "op": op, "value": value}


def sample_json(
    usage: CgroupStats, read_ns: int, system_usage: int, online_cpus: int, machine_memory: int
) -> dict:
    """One sample as dockerd's collector publishes it: the fields of
    types.Stats that a sample fills (statsV1 / statsV2)."""
    pids = {}
    if usage.has_pids:
        pids = _omit_zero((("current", usage.pids_current), ("limit", usage.pids_limit)))
    return {
        "read": golang.rfc3339_nano(read_ns),
        "pids_stats": pids,
        "blkio_stats": _blkio_stats(usage),
        "cpu_stats": cpu_stats(usage, system_usage, online_cpus),
        "memory_stats": _memory_stats(usage, machine_memory),
    }


def stats_json(sample: Optional[dict], name: str, container_id: str,
               precpu: Optional[dict] = None, preread: str = golang.ZERO_TIME) -> dict:
    """types.StatsJSON in dockerd's field order: a sample (None: the zeroed
    stats of a container that does not run) with the previous frame's CPU
    figures and time."""
    sample = sample or {}
    return {
        "read": sample.get("read", golang.ZERO_TIME),
        "preread": preread,
        "pids_stats": sample.get("pids_stats", {}),
        "blkio_stats": sample.get("blkio_stats") or _blkio_stats(None),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": sample.get("cpu_stats") or cpu_stats(),
        "precpu_stats": precpu or cpu_stats(),
        "memory_stats": sample.get("memory_stats", {}),
        "name": name,
        "id": container_id,
    }


# -- sampling -----------------------------------------------------------------


class CgroupSampler:
    """Reads the samples of one collector tick (in a thread): each
    container's cgroup found once per run (the OCI spec's cgroupsPath, or
    its init process's /proc/PID/cgroup), then read once per tick, the
    host's CPU time read right after it, as dockerd does."""

    def __init__(self) -> None:
        self._mounts = None
        self._machine_memory: Optional[int] = None
        self._cgroups: Dict[Tuple[str, int], Optional[Cgroup]] = {}

    def _cgroup(self, container_id: str, pid: int, bundle: str) -> Optional[Cgroup]:
        key = (container_id, pid)
        if key not in self._cgroups:
            for old in [k for k in self._cgroups if k[0] == container_id]:
                del self._cgroups[old]
            cgroups_path = ""
            try:
                with open(os.path.join(bundle, "config.json")) as f:
                    cgroups_path = json.load(f).get("linux", {}).get("cgroupsPath") or ""
            except (OSError, ValueError, AttributeError):
                pass
            self._cgroups[key] = find_cgroup(self._mounts, cgroups_path, pid)
        return self._cgroups[key]

    def forget(self, container_id: str) -> None:
        for key in [k for k in self._cgroups if k[0] == container_id]:
            del self._cgroups[key]

    def sample(self, targets: List[Tuple[str, int, str]]) -> Dict[str, dict]:
        """C{{id: sample}} for each C{(id, pid, bundle)} that could be read."""
        if self._mounts is None:
            self._mounts = read_mounts()
            self._machine_memory = mem_total()
        online = ncpu()
        samples = {}
        for container_id, pid, bundle in targets:
            cgroup = self._cgroup(container_id, pid, bundle)
            if cgroup is None:
                continue
            read_ns = time.time_ns()
            try:
                usage = read_cgroup(cgroup)
                system_usage = system_cpu_usage()
            except (OSError, ValueError) as e:
                log.warn("stats of {container}: {error}", container=container_id, error=e)
                continue
            samples[container_id] = sample_json(
                usage, read_ns, system_usage, online, self._machine_memory or 0
            )
        return samples


#: What L{Subscription.next} gives once the container is removed.
_END = object()


class Subscription:
    """One watcher of a container's samples: the latest one not yet taken
    is kept (older ones are dropped, as dockerd's publisher drops them for
    a slow subscriber)."""

    def __init__(self, collector: "StatsCollector", container) -> None:
        self.collector = collector
        self.container = container
        self.closed = False
        self._pending: List[Optional[dict]] = []
        self._waiting: Optional[Deferred] = None

    def publish(self, sample: Optional[dict]) -> None:
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.callback(sample)
        else:
            self._pending[:] = [sample]

    def end(self) -> None:
        self.closed = True
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.callback(_END)

    def next(self) -> Deferred:
        """The next sample (None: the zeroed stats of a stopped container),
        or L{_END} once the container is removed."""
        if self._pending:
            return succeed(self._pending.pop())
        if self.closed:
            return succeed(_END)

        def cancel(d: Deferred) -> None:
            if self._waiting is d:
                self._waiting = None

        self._waiting = Deferred(cancel)
        return self._waiting

    def close(self) -> None:
        self.closed = True
        self.collector.unsubscribe(self)


class StatsCollector:
    """dockerd's stats collector: while anyone watches a container, sample
    it every L{INTERVAL} and hand each sample to its watchers; a container
    that does not run gets the zeroed stats; a removed one ends its
    watchers.

    Unlike dockerd's single loop, each container keeps its own cadence from
    its first watcher on, so that a new watcher has its first sample at
    once, not at the loop's next turn (a stream=false answer takes one
    interval, not up to two); the containers due together (within
    L{BATCH} seconds) are sampled in one job in a thread."""

    def __init__(
        self,
        reactor,
        run_in_thread: Callable,
        *,
        present: Callable,
        bundle: Callable,
        sampler: Optional[CgroupSampler] = None,
        interval: float = INTERVAL,
        batch: float = BATCH,
    ) -> None:
        self.reactor = reactor
        self.run_in_thread = run_in_thread
        self.present = present
        self.bundle = bundle
        self.sampler = sampler or CgroupSampler()
        self.interval = interval
        self.batch = batch
        self._watchers: Dict[str, List[Subscription]] = {}
        #: When each watched container is next due.
        self._due: Dict[str, float] = {}
        self._timer = None
        self._sampling = False

    def subscribe(self, container) -> Subscription:
        subscription = Subscription(self, container)
        watchers = self._watchers.setdefault(container.id, [])
        watchers.append(subscription)
        if len(watchers) == 1:
            self._due[container.id] = self.reactor.seconds() + self.batch
        self._schedule()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        container_id = subscription.container.id
        watchers = self._watchers.get(container_id, [])
        if subscription in watchers:
            watchers.remove(subscription)
        if not watchers:
            self._watchers.pop(container_id, None)
            self._due.pop(container_id, None)
        if not self._due and self._timer is not None and self._timer.active():
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        """Wake up when the first container is due (a new watcher's
        container a batch's time after it came, so that watchers arriving
        together are sampled together)."""
        if self._sampling or not self._due:
            return
        at = min(self._due.values())
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= at:
                return
            self._timer.cancel()
        self._timer = self.reactor.callLater(max(0.0, at - self.reactor.seconds()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._sampling = True
        d = ensureDeferred(self._tick())
        d.addErrback(lambda f: log.failure("stats collector", f))

        def done(_) -> None:
            self._sampling = False
            self._schedule()

        d.addBoth(done)

    async def _tick(self) -> None:
        now = self.reactor.seconds()
        due = [cid for cid, when in self._due.items() if when <= now + self.batch]
        containers = [self._watchers[cid][0].container for cid in due]
        for cid in due:
            self._due[cid] = now + self.interval
        targets = [(c.id, c.state.pid, self.bundle(c)) for c in containers if _is_running(c)]
        samples: Dict[str, dict] = {}
        if targets:
            try:
                samples = await self.run_in_thread(self.sampler.sample, targets)
            except Exception:
                log.failure("stats collector: sampling failed")
        for c in containers:
            watchers = list(self._watchers.get(c.id, ()))
            if not self.present(c):
                self.sampler.forget(c.id)
                self._watchers.pop(c.id, None)
                self._due.pop(c.id, None)
                for watcher in watchers:
                    watcher.end()
                continue
            sample = samples.get(c.id) if _is_running(c) else None
            for watcher in watchers:
                watcher.publish(sample)


def _is_running(c) -> bool:
    return c.state.running and not c.state.restarting


class StatsMixin:
    """The stats part of L{ContainerBackend}."""

    async def stats(self, ref, config: ContainerStatsConfig, out) -> None:
        c = self.get(ref)
        if config.stream and config.one_shot:
            raise InvalidParameter("cannot have stream=true and one-shot=true")
        if not _is_running(c) and not config.stream:
            out.start()
            out.write(stats_json(None, c.name, c.id))
            return
        out.start()
        flow = out.flow
        subscription = self.stats_collector.subscribe(c)
        precpu, preread = None, golang.ZERO_TIME
        skip_first = not config.one_shot
        try:
            while True:
                sample = await subscription.next()
                if sample is _END:
                    return
                if flow is not None:
                    if flow.stopped:
                        return
                    if flow.paused:
                        continue  # the client is behind: this frame is dropped
                frame = stats_json(sample, c.name, c.id, precpu, preread)
                precpu, preread = frame["cpu_stats"], frame["read"]
                if not config.stream and skip_first:
                    skip_first = False
                    continue
                out.write(frame)
                if not config.stream:
                    return
        finally:
            subscription.close()
