"""
What the kernel offers containers, as dockerd's pkg/sysinfo sees it: probed
once from /proc and the cgroup filesystem (v1, hybrid or v2).  Every check
and builder takes a L{SysInfo}, so tests pass their own host.
"""

import os
import platform
import re
from typing import Optional

import attr

from ..host import ncpu, read_text, seccomp_supported


@attr.s(frozen=True, auto_attribs=True)
class SysInfo:
    """What the kernel offers, as dockerd's pkg/sysinfo sees it."""

    ncpu: int = 1
    cpus: str = "0"
    mems: str = "0"
    cgroup_version: str = "1"
    memory: bool = True
    swap: bool = True
    memory_reservation: bool = True
    memory_swappiness: bool = True
    kernel_memory: bool = True
    kernel_memory_tcp: bool = True
    oom_kill_disable: bool = True
    pids: bool = True
    cpu_shares: bool = True
    cpu_cfs: bool = True
    cpu_realtime: bool = True
    cpuset: bool = True
    blkio_weight: bool = True
    blkio_weight_device: bool = True
    blkio_read_bps: bool = True
    blkio_write_bps: bool = True
    blkio_read_iops: bool = True
    blkio_write_iops: bool = True
    cgroup_namespaces: bool = True
    ipv4_forwarding: bool = True
    seccomp: bool = True
    apparmor: bool = False
    last_cap: int = 40
    #: The daemon's bounding set (CapBnd) as a bit mask; None: not known.
    own_capabilities: Optional[int] = None
    kernel: str = "5.10.0"
    machine: str = "x86_64"


def _own_capabilities() -> Optional[int]:
    match = re.search(r"^CapBnd:\s*([0-9a-fA-F]+)", read_text("/proc/self/status") or "", re.M)
    return int(match.group(1), 16) if match else None


def _common_facts() -> dict:
    """The facts that do not depend on the cgroup version."""
    return dict(
        ncpu=ncpu(),
        cgroup_namespaces=os.path.exists("/proc/self/ns/cgroup"),
        ipv4_forwarding=(read_text("/proc/sys/net/ipv4/ip_forward") or "1").strip() == "1",
        seccomp=seccomp_supported(),
        apparmor=os.path.isdir("/sys/kernel/security/apparmor")
        and (read_text("/sys/module/apparmor/parameters/enabled") or "").startswith("Y"),
        last_cap=int((read_text("/proc/sys/kernel/cap_last_cap") or "40").strip() or 40),
        own_capabilities=_own_capabilities(),
        kernel=platform.release(),
        machine=platform.machine(),
    )


def _online(kind: str) -> str:
    return (read_text("/sys/devices/system/%s/online" % kind) or "0").strip()


def _probe_v2(cgroup_root: str, controllers: str) -> SysInfo:
    names = set(controllers.split())
    own = "/"
    for line in (read_text("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            own = line[3:].strip() or "/"
    swap = "memory" in names and any(
        os.path.exists(os.path.join(cgroup_root, sub.lstrip("/"), "memory.swap.max"))
        for sub in (own, "init.scope", "system.slice")
    )
    io = "io" in names
    blkio = dict.fromkeys(
        ("blkio_weight", "blkio_weight_device", "blkio_read_bps", "blkio_write_bps",
         "blkio_read_iops", "blkio_write_iops"),
        io,
    )
    cpus = read_text(os.path.join(cgroup_root, "cpuset.cpus.effective")) or _online("cpu")
    mems = read_text(os.path.join(cgroup_root, "cpuset.mems.effective")) or _online("node")
    return SysInfo(
        cpus=cpus.strip(),
        mems=mems.strip(),
        cgroup_version="2",
        memory="memory" in names,
        swap=swap,
        memory_reservation="memory" in names,
        memory_swappiness=False,
        kernel_memory=False,
        kernel_memory_tcp=False,
        oom_kill_disable=False,
        pids="pids" in names,
        cpu_shares="cpu" in names,
        cpu_cfs="cpu" in names,
        cpu_realtime=False,
        cpuset="cpuset" in names,
        **blkio,
        **_common_facts(),
    )


def _probe_v1(cgroup_root: str) -> SysInfo:
    def has(*parts: str) -> bool:
        return os.path.exists(os.path.join(cgroup_root, *parts))

    cpus = read_text(os.path.join(cgroup_root, "cpuset", "cpuset.cpus")) or _online("cpu")
    mems = read_text(os.path.join(cgroup_root, "cpuset", "cpuset.mems")) or _online("node")
    return SysInfo(
        cpus=cpus.strip(),
        mems=mems.strip(),
        cgroup_version="1",
        memory=has("memory", "memory.limit_in_bytes"),
        swap=has("memory", "memory.memsw.limit_in_bytes"),
        memory_reservation=has("memory", "memory.soft_limit_in_bytes"),
        memory_swappiness=has("memory", "memory.swappiness"),
        kernel_memory=has("memory", "memory.kmem.limit_in_bytes"),
        kernel_memory_tcp=has("memory", "memory.kmem.tcp.limit_in_bytes"),
        oom_kill_disable=has("memory", "memory.oom_control"),
        pids=has("pids", "pids.max") or has("pids", "cgroup.procs"),
        cpu_shares=has("cpu", "cpu.shares"),
        cpu_cfs=has("cpu", "cpu.cfs_quota_us") and has("cpu", "cpu.cfs_period_us"),
        cpu_realtime=has("cpu", "cpu.rt_period_us") and has("cpu", "cpu.rt_runtime_us"),
        cpuset=has("cpuset", "cpuset.cpus"),
        blkio_weight=has("blkio", "blkio.weight") or has("blkio", "blkio.bfq.weight"),
        blkio_weight_device=has("blkio", "blkio.weight_device")
        or has("blkio", "blkio.bfq.weight_device"),
        blkio_read_bps=has("blkio", "blkio.throttle.read_bps_device"),
        blkio_write_bps=has("blkio", "blkio.throttle.write_bps_device"),
        blkio_read_iops=has("blkio", "blkio.throttle.read_iops_device"),
        blkio_write_iops=has("blkio", "blkio.throttle.write_iops_device"),
        **_common_facts(),
    )


def probe_sysinfo(cgroup_root: str = "/sys/fs/cgroup") -> SysInfo:
    """Read this host's facts (cgroup v1, hybrid or v2)."""
    controllers = read_text(os.path.join(cgroup_root, "cgroup.controllers"))
    if controllers is not None:
        return _probe_v2(cgroup_root, controllers)
    return _probe_v1(cgroup_root)


_sysinfo: Optional[SysInfo] = None


def current_sysinfo() -> SysInfo:
    """This host's L{SysInfo}, probed once."""
    global _sysinfo
    if _sysinfo is None:
        _sysinfo = probe_sysinfo()
    return _sysinfo
