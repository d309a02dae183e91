"""
HostConfig's resources: dockerd's checks (verifyPlatformContainerResources,
what the kernel cannot do discarded with a warning) and the OCI
C{linux.resources} runc applies at create and at C{docker update}.
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

from ...errors import InternalError, InvalidParameter
from ... import golang
from .defaults import LINUX_MIN_MEMORY
from .fields import as_int, as_str
from .outcomes import result
from .sysinfo import SysInfo, current_sysinfo


def _parse_uint_list(val: str, maximum: int = 0) -> set:
    if val == "":
        return set()
    invalid = InvalidParameter("invalid format: %s" % val)
    found = set()
    for r in val.split(","):
        if "-" not in r:
            v = golang.atoi(r)
            if v is None:
                raise invalid
            if maximum and v > maximum:
                raise InvalidParameter("value of out range, maximum is %d" % maximum)
            found.add(v)
        else:
            lo_s, hi_s = r.split("-", 1)
            lo, hi = golang.atoi(lo_s), golang.atoi(hi_s)
            if lo is None or hi is None or hi < lo:
                raise invalid
            if maximum and hi > maximum:
                raise InvalidParameter("value of out range, maximum is %d" % maximum)
            found.update(range(lo, hi + 1))
    return found


def _cpuset_available(provided: str, available: str) -> bool:
    parsed_available = _parse_uint_list(available)
    maximum = max([8192] + list(parsed_available))
    return _parse_uint_list(provided, maximum) <= parsed_available


# -- capabilities -------------------------------------------------------------


def check_resources(
    hc: dict, sysinfo: Optional[SysInfo] = None, update: bool = False
) -> Tuple[List[str], dict]:
    """verifyPlatformContainerResources: warnings, and the resources with what
    the kernel cannot do discarded (as dockerd stores them).  For an
    C{update} (its fields alone) a MemorySwap without Memory is no error."""
    si = sysinfo or current_sysinfo()
    r = dict(hc)
    warnings: List[str] = []
    _check_memory(r, si, warnings, update)
    for check in (_check_kernel_limits, _check_cpu, _check_cpuset, _check_blkio):
        check(r, si, warnings)
    return warnings, r


def _supported(value: int, supported: bool, warnings: List[str], warning: str) -> int:
    """C{value}, or 0 with C{warning} when the kernel cannot apply it."""
    if value > 0 and not supported:
        warnings.append(warning)
        return 0
    return value


def _check_memory(r: dict, si: SysInfo, warnings: List[str], update: bool = False) -> None:
    if r.get("MemorySwappiness") is not None and as_int(r["MemorySwappiness"]) == -1:
        r["MemorySwappiness"] = None
    memory, swap = as_int(r.get("Memory")), as_int(r.get("MemorySwap"))
    if memory != 0 and memory < LINUX_MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if memory > 0 and not si.memory:
        warnings.append(
            "Your kernel does not support memory limit capabilities or the cgroup is not mounted. "
            "Limitation discarded."
        )
        memory, swap = 0, -1
    if memory > 0 and swap != -1 and not si.swap:
        warnings.append(
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
            "Memory limited without swap."
        )
        swap = -1
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidParameter(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if memory == 0 and swap > 0 and not update:
        raise InvalidParameter(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    r["Memory"], r["MemorySwap"] = memory, swap
    if r.get("MemorySwappiness") is not None and not si.memory_swappiness:
        warnings.append(
            "Your kernel does not support memory swappiness capabilities or the cgroup is not "
            "mounted. Memory swappiness discarded."
        )
        r["MemorySwappiness"] = None
    if r.get("MemorySwappiness") is not None:
        swappiness = as_int(r["MemorySwappiness"])
        if swappiness < 0 or swappiness > 100:
            raise InvalidParameter(
                "Invalid value: %d, valid memory swappiness range is 0-100" % swappiness
            )
    reservation = _supported(
        as_int(r.get("MemoryReservation")), si.memory_reservation, warnings,
        "Your kernel does not support memory soft limit capabilities or the cgroup is not "
        "mounted. Limitation discarded.",
    )
    if 0 < reservation < LINUX_MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidParameter(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    r["MemoryReservation"] = reservation


def _check_kernel_limits(r: dict, si: SysInfo, warnings: List[str]) -> None:
    """Kernel memory, OomKillDisable, PidsLimit."""
    kernel_memory = as_int(r.get("KernelMemory"))
    if kernel_memory > 0:
        warnings.append(
            "Specifying a kernel memory limit is deprecated and will be removed in a future "
            "release."
        )
    kernel_memory = _supported(
        kernel_memory, si.kernel_memory, warnings,
        "Your kernel does not support kernel memory limit capabilities or the cgroup is not "
        "mounted. Limitation discarded.",
    )
    if 0 < kernel_memory < LINUX_MIN_MEMORY:
        raise InvalidParameter("Minimum kernel memory limit allowed is 6MB")
    r["KernelMemory"] = kernel_memory
    if as_int(r.get("KernelMemoryTCP")) > 0 and not si.kernel_memory_tcp:
        warnings.append(
            "Your kernel does not support kernel memory TCP limit capabilities or the cgroup is "
            "not mounted. Limitation discarded."
        )
        r["KernelMemoryTCP"] = 0
    if r.get("OomKillDisable") is not None and not si.oom_kill_disable:
        if r["OomKillDisable"]:
            warnings.append(
                "Your kernel does not support OomKillDisable. OomKillDisable discarded."
            )
        r["OomKillDisable"] = None
    if r.get("OomKillDisable") and as_int(r.get("Memory")) == 0:
        warnings.append(
            "OOM killer is disabled for the container, but no memory limit is set, this can "
            "result in the system running out of resources."
        )
    if r.get("PidsLimit") is not None and not si.pids:
        if as_int(r["PidsLimit"]) > 0:
            warnings.append(
                "Your kernel does not support PIDs limit capabilities or the cgroup is not "
                "mounted. PIDs limit discarded."
            )
        r["PidsLimit"] = None


def _check_cpu(r: dict, si: SysInfo, warnings: List[str]) -> None:
    nano, period, quota = as_int(r.get("NanoCpus")), as_int(r.get("CpuPeriod")), as_int(r.get("CpuQuota"))
    if nano > 0 and period > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano > 0 and not si.cpu_cfs:
        raise InvalidParameter(
            "NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the "
            "cgroup is not mounted"
        )
    if nano < 0 or nano > si.ncpu * 1000000000:
        raise InvalidParameter(
            "Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available"
            % (si.ncpu, si.ncpu)
        )
    if as_int(r.get("CpuShares")) > 0 and not si.cpu_shares:
        warnings.append(
            "Your kernel does not support CPU shares or the cgroup is not mounted. "
            "Shares discarded."
        )
        r["CpuShares"] = 0
    if (period or quota) and not si.cpu_cfs:
        warnings.append(
            "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded."
        )
        period = quota = 0
    if period and (period < 1000 or period > 1000000):
        raise InvalidParameter(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    r["CpuPeriod"], r["CpuQuota"] = period, quota
    if as_int(r.get("CpuPercent")) > 0:
        warnings.append("linux does not support CPU percent. Percent discarded.")
        r["CpuPercent"] = 0



def _check_cpuset_available(provided: str, available: str, field: str, what: str) -> None:
    try:
        ok = _cpuset_available(provided, available)
    except InvalidParameter as e:
        raise InvalidParameter("Invalid value %s for cpuset %s: %s" % (provided, field, e.message))
    if not ok:
        raise InvalidParameter(
            "Requested %s are not available - requested %s, available: %s"
            % (what, provided, available)
        )


def _check_cpuset(r: dict, si: SysInfo, warnings: List[str]) -> None:
    cpus, mems = as_str(r.get("CpusetCpus")), as_str(r.get("CpusetMems"))
    if (cpus or mems) and not si.cpuset:
        warnings.append(
            "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."
        )
        cpus = mems = ""
    _check_cpuset_available(cpus, si.cpus, "cpus", "CPUs")
    _check_cpuset_available(mems, si.mems, "mems", "memory nodes")
    r["CpusetCpus"], r["CpusetMems"] = cpus, mems


def _check_blkio(r: dict, si: SysInfo, warnings: List[str]) -> None:
    weight = _supported(
        as_int(r.get("BlkioWeight")), si.blkio_weight, warnings,
        "Your kernel does not support Block I/O weight or the cgroup is not mounted. "
        "Weight discarded.",
    )
    if weight > 0 and (weight < 10 or weight > 1000):
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    r["BlkioWeight"] = weight
    for field, supported, text in (
        ("BlkioWeightDevice", si.blkio_weight_device,
         "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. "
         "Weight-device discarded."),
        ("BlkioDeviceReadBps", si.blkio_read_bps,
         "Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. "
         "Block I/O BPS read limit discarded."),
        ("BlkioDeviceWriteBps", si.blkio_write_bps,
         "Your kernel does not support BPS Block I/O write limit or the cgroup is not mounted. "
         "Block I/O BPS write limit discarded."),
        ("BlkioDeviceReadIOps", si.blkio_read_iops,
         "Your kernel does not support IOPS Block read limit or the cgroup is not mounted. "
         "Block I/O IOPS read limit discarded."),
        ("BlkioDeviceWriteIOps", si.blkio_write_iops,
         "Your kernel does not support IOPS Block write limit or the cgroup is not mounted. "
         "Block I/O IOPS write limit discarded."),
    ):
        if r.get(field) and not supported:
            warnings.append(text)
            r[field] = []


#: The HostConfig fields that name block devices by path, and their OCI keys.
BLKIO_THROTTLES = (
    ("BlkioDeviceReadBps", "throttleReadBpsDevice"),
    ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
    ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
    ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice"),
)


def blkio_device_paths(host_config: dict) -> List[str]:
    """The block devices C{host_config} names (their numbers are read from the host)."""
    fields = ["BlkioWeightDevice"] + [field for field, _ in BLKIO_THROTTLES]
    return [as_str(device.get("Path")) for field in fields for device in host_config.get(field) or ()]


def linux_resources(
    host_config: dict, sysinfo: SysInfo, device_numbers: Mapping[str, Any], update: bool = False
) -> Dict[str, Any]:
    """The OCI C{linux.resources} (less devices) for C{host_config}: what
    C{runc update} takes for C{docker update}.  C{device_numbers} maps each
    of L{blkio_device_paths} to its (major, minor), or to the error reading
    it raised (L{outcomes.attempt}).  For an C{update}, what dockerd leaves
    to runc is left to it."""
    hc = dict(host_config or {})
    _, resources = check_resources(hc, sysinfo, update=update)
    hc.update(resources)
    res: Dict[str, Any] = {}
    memory = _memory_resources(hc, sysinfo)
    if memory:
        res["memory"] = memory
    cpu = _cpu_resources(hc, update)
    if cpu:
        res["cpu"] = cpu
    if hc.get("PidsLimit") is not None:
        pids = as_int(hc["PidsLimit"])
        res["pids"] = {"limit": pids if pids > 0 else -1}
    block_io = _block_io_resources(hc, device_numbers)
    if block_io:
        res["blockIO"] = block_io
    return res


def _memory_resources(hc: dict, si: SysInfo) -> Dict[str, Any]:
    memory: Dict[str, Any] = {}
    limit, swap = as_int(hc.get("Memory")), as_int(hc.get("MemorySwap"))
    if limit > 0 and swap == 0 and si.swap:
        swap = golang.int64(limit * 2)
    if limit > 0:
        memory["limit"] = limit
    if as_int(hc.get("MemoryReservation")) > 0:
        memory["reservation"] = as_int(hc["MemoryReservation"])
    if swap > 0:
        memory["swap"] = swap
    if hc.get("MemorySwappiness") is not None:
        memory["swappiness"] = as_int(hc["MemorySwappiness"])
    if si.oom_kill_disable:
        memory["disableOOMKiller"] = bool(hc.get("OomKillDisable"))
    # dockerd 20.10 passes the kernel limits on; runc >= 1.0 ignores them.
    if as_int(hc.get("KernelMemory")) != 0:
        memory["kernel"] = as_int(hc["KernelMemory"])
    if as_int(hc.get("KernelMemoryTCP")) != 0:
        memory["kernelTCP"] = as_int(hc["KernelMemoryTCP"])
    return memory


def _cpu_resources(hc: dict, update: bool = False) -> Dict[str, Any]:
    """For an C{update} a negative share goes to runc as dockerd sends it
    (Go's uint64 of it), for runc to refuse."""
    cpu: Dict[str, Any] = {}
    shares = as_int(hc.get("CpuShares"))
    if shares < 0 and update:
        shares &= 2**64 - 1
    if shares < 0:
        raise InternalError("shares: invalid argument")
    if shares:
        cpu["shares"] = shares
    nano = as_int(hc.get("NanoCpus"))
    if nano > 0:
        cpu["period"] = 100000
        cpu["quota"] = nano * 100000 // 1000000000
    if as_int(hc.get("CpuPeriod")):
        cpu["period"] = as_int(hc["CpuPeriod"])
    if as_int(hc.get("CpuQuota")):
        cpu["quota"] = as_int(hc["CpuQuota"])
    if as_int(hc.get("CpuRealtimePeriod")):
        cpu["realtimePeriod"] = as_int(hc["CpuRealtimePeriod"])
    if as_int(hc.get("CpuRealtimeRuntime")):
        cpu["realtimeRuntime"] = as_int(hc["CpuRealtimeRuntime"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    return cpu


def _block_io_resources(hc: dict, device_numbers: Mapping[str, Any]) -> Dict[str, Any]:
    block_io: Dict[str, Any] = {}
    if as_int(hc.get("BlkioWeight")):
        block_io["weight"] = as_int(hc["BlkioWeight"])
    weight_devices = []
    for device in hc.get("BlkioWeightDevice") or ():
        major, minor = result(device_numbers[as_str(device.get("Path"))])
        weight_devices.append(
            {"major": major, "minor": minor, "weight": as_int(device.get("Weight"))}
        )
    if weight_devices:
        block_io["weightDevice"] = weight_devices
    for field, key in BLKIO_THROTTLES:
        throttles = []
        for device in hc.get(field) or ():
            major, minor = result(device_numbers[as_str(device.get("Path"))])
            throttles.append({"major": major, "minor": minor, "rate": as_int(device.get("Rate"))})
        if throttles:
            block_io[key] = throttles
    return block_io
