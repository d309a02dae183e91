"""
dockerd's checks of a create request (Config and HostConfig) in dockerd's
order, with its messages, and the HostConfig it stores: defaults filled in,
what the kernel cannot do discarded.  The checks of one concern live in
their modules (resources, mounts, network, security, capabilities); this
module runs them in dockerd's order.
"""

import copy
import re
from typing import List, Optional, Sequence

from ...errors import InvalidParameter
from ...versions import less_than
from ... import golang
from .capabilities import normalize_capabilities
from .defaults import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    DEFAULT_RUNTIMES,
    DEFAULT_SHM_SIZE,
)
from .fields import as_int, as_str
from .mounts import absolute_error, mount_points, not_root_error, validate_mount
from .network import validate_extra_hosts, validate_network_mode, validate_port_bindings
from .resources import check_resources
from .security import parse_security_opt
from .signals import parse_signal
from .sysinfo import SysInfo, current_sysinfo


_VALID_NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_VALID_NAME = re.compile(r"/?" + _VALID_NAME_CHARS + r"+")


def validate_name(name: str) -> None:
    """dockerd's rule for a container name (a leading '/' is allowed)."""
    if not _VALID_NAME.fullmatch(name):
        raise InvalidParameter(
            "Invalid container name (%s), only %s are allowed" % (name, _VALID_NAME_CHARS)
        )


def _validate_decoded(config: dict, hc: dict, si: SysInfo) -> None:
    """What dockerd's request decoder refuses before anything else."""
    validate_network_mode(config, hc)
    isolation = as_str(hc.get("Isolation"))
    if isolation and isolation.lower() != "default":
        raise InvalidParameter(
            "Invalid isolation: %s - linux only supports 'default'" % golang.quote(isolation)
        )
    if as_int(hc.get("IOMaximumBandwidth")):
        raise InvalidParameter(
            "Invalid QoS settings: linux does not support configuration of maximum bandwidth"
        )
    if as_int(hc.get("IOMaximumIOps")):
        raise InvalidParameter(
            "Invalid QoS settings: linux does not support configuration of maximum IOPs"
        )
    rt_period, rt_runtime = as_int(hc.get("CpuRealtimePeriod")), as_int(hc.get("CpuRealtimeRuntime"))
    if rt_period > 0 and not si.cpu_realtime:
        raise InvalidParameter("Your kernel does not support cgroup cpu real-time period")
    if rt_runtime > 0 and not si.cpu_realtime:
        raise InvalidParameter("Your kernel does not support cgroup cpu real-time runtime")
    if rt_period and rt_runtime and rt_runtime > rt_period:
        raise InvalidParameter("cpu real-time runtime cannot be higher than cpu real-time period")


def validate_decoded(
    config: Optional[dict], host_config: Optional[dict], *, sysinfo: Optional[SysInfo] = None
) -> None:
    """What dockerd's request decoder (runconfig's decodeContainerConfig)
    refuses in a body it decoded, as for a commit: nothing without a
    HostConfig."""
    if host_config is None:
        return
    _validate_decoded(config or {}, host_config, sysinfo or current_sysinfo())


def _validate_container_config(config: dict) -> None:
    working_dir = as_str(config.get("WorkingDir"))
    if working_dir and not working_dir.startswith("/"):
        raise InvalidParameter(
            "the working directory '%s' is invalid, it needs to be an absolute path" % working_dir
        )
    if config.get("StopSignal"):
        parse_signal(str(config["StopSignal"]))
    for env in config.get("Env") or ():
        if env.split("=", 1)[0] == "":
            raise InvalidParameter("invalid environment variable: %s" % env)
    health = config.get("Healthcheck")
    if health:
        for field in ("Interval", "Timeout"):
            value = as_int(health.get(field))
            if value and value < 1000000:
                raise InvalidParameter("%s in Healthcheck cannot be less than 1ms" % field)
        if as_int(health.get("Retries")) < 0:
            raise InvalidParameter("Retries in Healthcheck cannot be negative")
        for field in ("StartPeriod", "StartInterval"):
            value = as_int(health.get(field))
            if value and value < 1000000:
                raise InvalidParameter("%s in Healthcheck cannot be less than 1ms" % field)


def _validate_host_config(hc: dict, si: SysInfo) -> None:
    restart = hc.get("RestartPolicy") or {}
    policy = as_str(restart.get("Name"))
    if hc.get("AutoRemove") and policy not in ("", "no"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    for mount in hc.get("Mounts") or ():
        validate_mount(mount)
    validate_extra_hosts(hc)
    validate_port_bindings(hc)
    _validate_restart_policy(policy, as_int(restart.get("MaximumRetryCount")))
    for field in ("CapAdd", "CapDrop"):
        try:
            normalize_capabilities(hc.get(field), si)
        except InvalidParameter as e:
            raise InvalidParameter("invalid %s: %s" % (field, e.message))


def _validate_restart_policy(policy: str, retries: int) -> None:
    if policy in ("always", "unless-stopped", "no"):
        if retries != 0:
            raise InvalidParameter(
                "maximum retry count cannot be used with restart policy '%s'" % policy
            )
    elif policy == "on-failure":
        if retries < 0:
            raise InvalidParameter("maximum retry count cannot be negative")
    elif policy != "":
        raise InvalidParameter("invalid restart policy '%s'" % policy)


def validate_create(
    config: Optional[dict],
    host_config: Optional[dict],
    api_version: str,
    *,
    sysinfo: Optional[SysInfo] = None,
    runtimes: Sequence[str] = DEFAULT_RUNTIMES,
    update: bool = False,
) -> List[str]:
    """
    dockerd's checks of a create request that need no image, in dockerd's
    order; returns its warnings or raises L{InvalidParameter}.

    dockerd looks the image up, merges its config ("No command specified",
    see L{merge_config}) and checks the name (L{validate_name}) between the
    settings checks and the last two (SecurityOpt, then Binds and duplicate
    mount points), which this function also makes.  With C{update} (a
    container's HostConfig with an update's fields) a swap limit without a
    memory limit is left for runc to refuse, as dockerd leaves it.
    """
    config = config or {}
    hc = dict(host_config or {})
    si = sysinfo or current_sysinfo()
    if less_than(api_version, "1.25"):
        hc["AutoRemove"] = False
    if not less_than(api_version, "1.42"):
        hc["KernelMemory"] = 0  # removed in API 1.42: ignored
    if less_than(api_version, "1.40"):
        hc["Mounts"] = [
            dict(m, BindOptions=dict(m["BindOptions"], NonRecursive=False))
            if m.get("BindOptions")
            else m
            for m in hc.get("Mounts") or ()
        ]
    _validate_decoded(config, hc, si)
    _validate_container_config(config)
    _validate_host_config(hc, si)

    warnings, hc = check_resources(hc, si, update=update)
    if as_int(hc.get("ShmSize")) < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    oom_score_adj = as_int(hc.get("OomScoreAdj"))
    if oom_score_adj < -1000 or oom_score_adj > 1000:
        raise InvalidParameter(
            "Invalid value %d, range for oom score adj is [-1000, 1000]" % oom_score_adj
        )
    network_mode = as_str(hc.get("NetworkMode"))
    if not si.ipv4_forwarding and network_mode not in ("host", "none"):
        warnings.append("IPv4 forwarding is disabled. Networking will not work.")
    if network_mode == "host" and hc.get("PortBindings"):
        warnings.append("Published ports are discarded when using host network mode")
    runtime = as_str(hc.get("Runtime"))
    if runtime and runtime not in runtimes:
        raise InvalidParameter("Unknown runtime specified %s" % runtime)
    for destination in hc.get("Tmpfs") or {}:
        problem = not_root_error(destination) or absolute_error(destination)
        if problem:
            raise InvalidParameter(problem)
    cgroupns = as_str(hc.get("CgroupnsMode"))
    if cgroupns not in ("", "host", "private"):
        raise InvalidParameter("invalid cgroup namespace mode: %s" % cgroupns)
    if cgroupns == "private" and not si.cgroup_namespaces:
        warnings.append(
            "Your kernel does not support cgroup namespaces.  Cgroup namespace setting discarded."
        )

    parse_security_opt(hc.get("SecurityOpt"))
    mount_points(hc)
    if hc.get("StorageOpt"):
        # dockerd's overlay2 (then the container's layer is made) without
        # project quotas: any option is refused, none ignored.
        raise InvalidParameter("--storage-opt is supported only for overlay over xfs with 'pquota' mount option")
    return warnings


def adapt_host_config(
    host_config: Optional[dict], api_version: str, *, sysinfo: Optional[SysInfo] = None
) -> dict:
    """
    The HostConfig dockerd stores at create (and inspect shows): its defaults
    filled in and what the kernel cannot do discarded.  Call after
    L{validate_create} succeeded.
    """
    si = sysinfo or current_sysinfo()
    hc = copy.deepcopy(host_config or {})
    if less_than(api_version, "1.25"):
        hc["AutoRemove"] = False
    if less_than(api_version, "1.40"):
        for m in hc.get("Mounts") or ():
            if m.get("BindOptions"):
                m["BindOptions"]["NonRecursive"] = False
        hc["KernelMemoryTCP"] = 0
        if not hc.get("IpcMode"):
            hc["IpcMode"] = "shareable"
    if less_than(api_version, "1.41") and si.cgroup_version != "2" and not hc.get("CgroupnsMode"):
        hc["CgroupnsMode"] = "host"
    if not less_than(api_version, "1.42"):
        hc["KernelMemory"] = 0
    _, resources = check_resources(hc, si)
    hc.update(resources)
    if as_int(hc.get("Memory")) > 0 and as_int(hc.get("MemorySwap")) == 0:
        hc["MemorySwap"] = golang.int64(as_int(hc["Memory"]) * 2)
    if not as_int(hc.get("ShmSize")):
        hc["ShmSize"] = DEFAULT_SHM_SIZE
    if not hc.get("IpcMode"):
        hc["IpcMode"] = "private"
    if not hc.get("CgroupnsMode"):
        hc["CgroupnsMode"] = "private" if si.cgroup_version == "2" else "host"
    security = list(hc.get("SecurityOpt") or ())
    if not any(opt.split("=")[0] == "label" for opt in security):
        if hc.get("IpcMode") == "host" or hc.get("PidMode") == "host" or hc.get("Privileged"):
            security.append("label=disable")
    hc["SecurityOpt"] = security or None
    if hc.get("OomKillDisable") is None and si.oom_kill_disable:
        hc["OomKillDisable"] = False
    if not hc.get("NetworkMode"):
        hc["NetworkMode"] = "default"
    if not hc.get("Privileged"):
        if hc.get("MaskedPaths") is None:
            hc["MaskedPaths"] = list(DEFAULT_MASKED_PATHS)
        if hc.get("ReadonlyPaths") is None:
            hc["ReadonlyPaths"] = list(DEFAULT_READONLY_PATHS)
    return hc


# -- config merge -------------------------------------------------------------
