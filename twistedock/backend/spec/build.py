"""
A container's OCI runtime spec (1.0.2, for runc 1.1) as dockerd's
createSpec makes it (moby's daemon/oci_linux.go): a skeleton, then small
C{with_*} steps in createSpec's order, each filling in one part.

Pure: what the host says comes in a L{SpecInputs} (L{inputs.gather_inputs},
run in a thread beforehand).  Errors are dockerd's start-time errors (500,
L{InternalError}) except Init without an init binary (L{InvalidParameter}).
"""

import posixpath
import resource
from typing import Any, Callable, Dict, List, Mapping, Optional, Set

import attr

from ...errors import InternalError, InvalidParameter, NotImplementedYet
from ... import golang
from .capabilities import tweak_capabilities
from .config import entrypoint_and_args, merge_config, replace_or_append_env
from .defaults import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_NOFILE,
    DEFAULT_PATH_ENV,
    DEFAULT_READONLY_PATHS,
    DEFAULT_SHM_SIZE,
    IN_CONTAINER_INIT_PATH,
    default_device_rules,
    default_mounts,
)
from .devices import cgroup_rules, device_requests
from .fields import as_int, as_str, is_container_mode
from .inputs import SpecInputs
from .mounts import (
    DEFAULT_PROPAGATION,
    check_propagation,
    depth,
    merge_tmpfs_options,
    mount_points,
    needs_shared_source,
)
from .outcomes import result
from .resources import check_resources, linux_resources
from .seccomp import seccomp_from_profile
from .security import SecurityOptions, apparmor_profile_loaded, parse_security_opt
from .sysinfo import SysInfo


@attr.s(auto_attribs=True)
class SpecContext:
    """The request as the steps read it: merged, checked, its modes parsed."""

    container_id: str
    config: dict
    host_config: dict
    inputs: SpecInputs
    security: SecurityOptions
    network_files: Dict[str, str]
    netns_path: Optional[str]
    cgroup_parent: str
    init_path: Optional[str]
    volumes: Mapping[str, str]
    namespace_paths: Mapping[str, str]
    #: The host directory bound on /dev/shm (IpcMode shareable or container:).
    shm_source: Optional[str] = None
    #: runc's systemd cgroup driver: cgroupsPath is "slice:docker:<id>".
    systemd_cgroup: bool = False
    #: The process's capabilities (the bounding set), once L{with_capabilities} ran.
    capabilities: List[str] = attr.Factory(list)

    @property
    def sysinfo(self) -> SysInfo:
        return self.inputs.sysinfo

    @property
    def privileged(self) -> bool:
        return bool(self.host_config.get("Privileged"))

    def mode(self, field: str, default: str = "") -> str:
        return as_str(self.host_config.get(field)) or default

    @property
    def hostname(self) -> str:
        if self.config.get("Hostname"):
            return self.config["Hostname"]
        if self.mode("NetworkMode", "default") == "host":
            return self.inputs.hostname
        return self.container_id[:12]


Step = Callable[[Dict[str, Any], SpecContext], None]


def build_spec(
    *,
    container_id: str,
    config: dict,
    host_config: dict,
    image_config: dict,
    rootfs: str,
    hostname_path: str,
    hosts_path: str,
    resolv_conf_path: str,
    netns_path: Optional[str],
    inputs: SpecInputs,
    cgroup_parent: str = "/docker",
    init_path: Optional[str] = None,
    volumes: Optional[Mapping[str, str]] = None,
    namespace_paths: Optional[Mapping[str, str]] = None,
    shm_source: Optional[str] = None,
    systemd_cgroup: bool = False,
) -> dict:
    """
    The OCI runtime spec dockerd's createSpec makes.

    C{config} is the request's Config as received (it is merged with
    C{image_config} here; pass C{image_config={}} for an already merged one).
    C{volumes} maps the destination of each volume mount (named or anonymous)
    to its host directory (or a mapping with Source, RW, Propagation: those
    of destinations the request does not name are mounted too); C{namespace_paths} maps "pid"/"ipc" to the path
    of the namespace a "container:" mode joins ("network" uses netns_path);
    C{shm_source} is the host directory bound on /dev/shm (a shareable IPC's
    tmpfs), None for the spec's own tmpfs.
    C{inputs} is what L{inputs.gather_inputs} read for this request.
    """
    merged = merge_config(config, image_config)
    hc = dict(host_config or {})
    hc.update(check_resources(hc, inputs.sysinfo)[1])
    context = SpecContext(
        container_id=container_id,
        config=merged,
        host_config=hc,
        inputs=inputs,
        security=parse_security_opt(hc.get("SecurityOpt")),
        network_files={"/etc/resolv.conf": resolv_conf_path, "/etc/hostname": hostname_path,
                       "/etc/hosts": hosts_path},
        netns_path=netns_path,
        cgroup_parent=cgroup_parent,
        init_path=init_path,
        volumes=volumes or {},
        namespace_paths=namespace_paths or {},
        shm_source=shm_source,
        systemd_cgroup=systemd_cgroup,
    )
    spec: Dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {},
        "root": {"path": rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "mounts": default_mounts(),
        "linux": {},
    }
    for step in STEPS:
        step(spec, context)
    return spec



def with_process(spec: Dict[str, Any], context: SpecContext) -> None:
    """Terminal, user, arguments, environment and working directory."""
    config = context.config
    path, args = entrypoint_and_args(config)
    defaults = ["PATH=" + DEFAULT_PATH_ENV, "HOSTNAME=" + context.hostname]
    if config.get("Tty"):
        defaults.append("TERM=xterm")
    spec["process"].update({
        "terminal": bool(config.get("Tty")),
        "user": result(context.inputs.user),
        "args": [path] + args,
        "env": replace_or_append_env(defaults, config.get("Env") or ()),
        "cwd": config.get("WorkingDir") or "/",
    })


def with_init(spec: Dict[str, Any], context: SpecContext) -> None:
    """HostConfig.Init: docker-init as PID 1 of a private PID namespace."""
    pid_mode = context.mode("PidMode")
    if not context.host_config.get("Init") or pid_mode == "host" or is_container_mode(pid_mode):
        return
    if not context.init_path:
        raise InvalidParameter(
            "Init was requested (HostConfig.Init) but no init binary is configured "
            "on this daemon"
        )
    process = spec["process"]
    process["args"] = [IN_CONTAINER_INIT_PATH, "--"] + process["args"]
    spec["mounts"].append({"destination": IN_CONTAINER_INIT_PATH, "type": "bind",
                           "source": context.init_path, "options": ["bind", "ro"]})


def with_capabilities(spec: Dict[str, Any], context: SpecContext) -> None:
    hc = context.host_config
    caps = tweak_capabilities(hc.get("CapAdd"), hc.get("CapDrop"), context.privileged,
                              context.sysinfo)
    context.capabilities = caps
    process = spec["process"]
    if process["user"]["uid"] == 0:
        process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    else:
        process["capabilities"] = {"bounding": list(caps)}


_UNLIMITED = 2**64 - 1


def _rlimit(name: str, soft: int, hard: int, ceilings: Mapping[str, int]) -> dict:
    """A Ulimit as dockerd puts it in the spec (Go's uint64 of the values):
    one runc refuses (an unknown name, soft above hard) goes as it is, so
    that the start fails with runc's own words, as with dockerd."""
    kind = "RLIMIT_" + name.upper()
    soft &= _UNLIMITED
    hard &= _UNLIMITED
    if kind not in ceilings or soft > hard:
        return {"type": kind, "hard": hard, "soft": soft}
    # Without CAP_SYS_RESOURCE nobody may raise a hard limit: runc would fail.
    own_hard = ceilings[kind]
    if own_hard != resource.RLIM_INFINITY:
        hard = min(hard, own_hard)
        soft = min(soft, hard)
    return {"type": kind, "hard": hard, "soft": soft}


def with_rlimits(spec: Dict[str, Any], context: SpecContext) -> None:
    """HostConfig.Ulimits, and dockerd's RLIMIT_NOFILE unless one names it."""
    ceilings = context.inputs.rlimit_ceilings
    rlimits = [
        _rlimit(as_str(u.get("Name")), as_int(u.get("Soft")), as_int(u.get("Hard")), ceilings)
        for u in context.host_config.get("Ulimits") or ()
    ]
    if "RLIMIT_NOFILE" not in {r["type"] for r in rlimits}:
        rlimits.append(_rlimit("nofile", DEFAULT_NOFILE, DEFAULT_NOFILE, ceilings))
    spec["process"]["rlimits"] = rlimits


def with_no_new_privileges(spec: Dict[str, Any], context: SpecContext) -> None:
    if context.security.no_new_privileges:
        spec["process"]["noNewPrivileges"] = True


def with_oom_score_adj(spec: Dict[str, Any], context: SpecContext) -> None:
    if as_int(context.host_config.get("OomScoreAdj")):
        spec["process"]["oomScoreAdj"] = as_int(context.host_config["OomScoreAdj"])


def with_apparmor(spec: Dict[str, Any], context: SpecContext) -> None:
    if not context.sysinfo.apparmor:
        return
    profile = context.security.apparmor_profile or (
        "unconfined" if context.privileged else "docker-default"
    )
    if apparmor_profile_loaded(profile, context.inputs.apparmor_profiles):
        spec["process"]["apparmorProfile"] = profile



def with_sysctls(spec: Dict[str, Any], context: SpecContext) -> None:
    """Domainname, the unprivileged ping and port sysctls, HostConfig.Sysctls."""
    sysctl: Dict[str, str] = {}
    if context.config.get("Domainname"):
        sysctl["kernel.domainname"] = context.config["Domainname"]
    network_mode = context.mode("NetworkMode", "default")
    if network_mode != "host" and not is_container_mode(network_mode):
        if "net.ipv4.ping_group_range" in context.inputs.sysctls:
            sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
        if "net.ipv4.ip_unprivileged_port_start" in context.inputs.sysctls:
            sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
    sysctl.update({k: str(v) for k, v in (context.host_config.get("Sysctls") or {}).items()})
    if sysctl:
        spec["linux"]["sysctl"] = sysctl


def with_resources(spec: Dict[str, Any], context: SpecContext) -> None:
    spec["linux"]["resources"] = linux_resources(
        context.host_config, context.sysinfo, context.inputs.device_numbers
    )


def with_devices(spec: Dict[str, Any], context: SpecContext) -> None:
    """HostConfig.Devices and DeviceCgroupRules; every host device if privileged."""
    hc = context.host_config
    found = [result(context.inputs.devices[r]) for r in device_requests(hc)]
    if context.privileged:
        devices = [dict(d) for d in context.inputs.host_devices]
        rules = [{"allow": True, "access": "rwm"}]
        for mapped, _ in found:
            devices.extend(dict(d) for d in mapped)
    else:
        devices, rules = [], default_device_rules()
        for mapped, allowed in found:
            devices.extend(dict(d) for d in mapped)
            rules.extend(dict(r) for r in allowed)
        rules.extend(cgroup_rules(hc.get("DeviceCgroupRules") or ()))
    spec["linux"]["resources"]["devices"] = rules
    if devices:
        spec["linux"]["devices"] = devices
    # dockerd's handleDevice: no device driver here (dockerd has one only
    # with nvidia's hook), so no request is met, and none is ignored.
    for request in hc.get("DeviceRequests") or ():
        raise InternalError("could not select device driver %s with capabilities: %s" % (
            golang.quote(as_str(request.get("Driver"))),
            _go_list([_go_list(caps or []) for caps in request.get("Capabilities") or []]),
        ))


def _go_list(items) -> str:
    """A slice as Go's %v prints it: C{[a b]}."""
    return "[" + " ".join(items) + "]"


def with_cgroups(spec: Dict[str, Any], context: SpecContext) -> None:
    """dockerd's cgroupsPath: <parent>/<id> (cgroupfs; a relative parent
    is runc's, below its own cgroup), or <slice>:docker:<id> (systemd: a
    docker-<id>.scope in the slice)."""
    parent = context.host_config.get("CgroupParent") or context.cgroup_parent
    if context.systemd_cgroup:
        spec["linux"]["cgroupsPath"] = "%s:docker:%s" % (parent, context.container_id)
        return
    spec["linux"]["cgroupsPath"] = golang.clean(posixpath.join(parent, context.container_id))


def _joined(kind: str, mode: str, paths: Mapping[str, str]) -> dict:
    if kind.lower() not in paths:
        raise InternalError("cannot join the %s namespace of %s: no path given" % (kind, mode))
    return {"type": kind.lower(), "path": paths[kind.lower()]}


def _ipc_namespace(context: SpecContext) -> Optional[dict]:
    ipc_mode = context.mode("IpcMode")
    known = ("", "private", "shareable", "none", "host")
    if ipc_mode not in known and not is_container_mode(ipc_mode):
        raise InternalError("Invalid IPC mode: %s" % ipc_mode)
    if ipc_mode == "host":
        return None
    if is_container_mode(ipc_mode):
        return _joined("IPC", ipc_mode, context.namespace_paths)
    return {"type": "ipc"}


def with_namespaces(spec: Dict[str, Any], context: SpecContext) -> None:
    """Mount, network, UTS, PID, IPC and cgroup namespaces: new or joined."""
    namespaces: List[dict] = [{"type": "mount"}]
    network_mode = context.mode("NetworkMode", "default")
    if network_mode != "host":
        if is_container_mode(network_mode) and not context.netns_path:
            raise InternalError(
                "cannot join the network namespace of %s: no path given" % network_mode
            )
        namespaces.append({"type": "network", "path": context.netns_path}
                          if context.netns_path else {"type": "network"})
    if context.mode("UTSMode") != "host":
        namespaces.append({"type": "uts"})
    pid_mode = context.mode("PidMode")
    if is_container_mode(pid_mode):
        namespaces.append(_joined("PID", pid_mode, context.namespace_paths))
    elif pid_mode != "host":
        namespaces.append({"type": "pid"})
    ipc = _ipc_namespace(context)
    if ipc:
        namespaces.append(ipc)
    cgroupns = context.mode("CgroupnsMode")
    if not cgroupns:
        cgroupns = "private" if context.sysinfo.cgroup_version == "2" else "host"
    if cgroupns == "private" and context.sysinfo.cgroup_namespaces:
        namespaces.append({"type": "cgroup"})
    spec["linux"]["namespaces"] = namespaces



def _requested_mounts(context: SpecContext) -> List[dict]:
    """The request's mounts (Binds, Mounts, Tmpfs, volumes) and the network
    files (unless the request mounts its own there), shallowest first."""
    hc = context.host_config
    points = mount_points(hc, context.inputs.bind_source_errors.get)
    tmpfs_map = hc.get("Tmpfs") or {}
    network_files = dict(context.network_files)
    network_writable = {k: not hc.get("ReadonlyRootfs") for k in network_files}
    tmpfs_mounts: List[dict] = [
        {"Source": "tmpfs", "Destination": dest, "Data": data or ""}
        for dest, data in tmpfs_map.items()
    ]
    user_mounts: List[dict] = []
    for dest, point in points.items():
        if dest in tmpfs_map:
            continue
        if point["Type"] == "tmpfs":
            tmpfs_mounts.append({"Source": "tmpfs", "Destination": dest, "Data": point["Data"]})
            continue
        if point["Type"] == "volume":
            if dest not in context.volumes:
                raise NotImplementedYet("volume mounts are not implemented yet (%s)" % dest)
            source, propagation = _volume_source(context.volumes[dest]), ""
        else:
            source, propagation = point["Source"], point["Propagation"]
        if dest in network_files:
            network_files[dest] = source
            network_writable[dest] = point["RW"]
            continue
        user_mounts.append({"Source": source, "Destination": dest, "Writable": point["RW"],
                            "Propagation": propagation, "NonRecursive": point["NonRecursive"]})
    for dest, volume in context.volumes.items():
        # The container's other mount points: the image's VOLUMEs and
        # --volumes-from (a mapping with Source, RW and Propagation).
        if dest in points or dest in tmpfs_map or isinstance(volume, str):
            continue
        user_mounts.append({"Source": volume["Source"], "Destination": dest,
                            "Writable": volume["RW"], "NonRecursive": False,
                            "Propagation": volume.get("Propagation") or ""})
    if context.shm_source and "/dev/shm" not in points and "/dev/shm" not in tmpfs_map:
        # dockerd's ipcMounts: the shareable tmpfs, unless a mount is there.
        user_mounts.append({"Source": context.shm_source, "Destination": "/dev/shm", "Writable": True,
                            "Propagation": DEFAULT_PROPAGATION, "NonRecursive": False})
    user_mounts.sort(key=lambda m: depth(m["Destination"]))
    for dest in ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts"):
        if network_files[dest]:
            user_mounts.append({"Source": network_files[dest], "Destination": dest,
                                "Writable": network_writable[dest],
                                "Propagation": DEFAULT_PROPAGATION, "NonRecursive": False})
    return sorted(user_mounts + tmpfs_mounts, key=lambda m: depth(m["Destination"]))


def _volume_source(volume) -> str:
    return volume if isinstance(volume, str) else volume["Source"]


def _kept_defaults(
    defaults: List[dict], destinations: Set[str], context: SpecContext
) -> List[dict]:
    """The default mounts the request does not replace; /dev/shm sized."""
    kept = []
    for m in defaults:
        if m["destination"] in destinations:
            continue
        if "/dev" in destinations and m["destination"].startswith("/dev/"):
            continue
        if m["destination"] == "/dev/shm":
            if context.mode("IpcMode") == "none":
                continue
            size = as_int(context.host_config.get("ShmSize")) or DEFAULT_SHM_SIZE
            m["options"].append("size=%d" % size)
        kept.append(m)
    return kept


def _spec_mount(m: dict) -> dict:
    if m["Source"] == "tmpfs":
        options = ["noexec", "nosuid", "nodev", DEFAULT_PROPAGATION]
        if m["Data"]:
            options.extend(m["Data"].split(","))
        return {"destination": m["Destination"], "type": "tmpfs", "source": "tmpfs",
                "options": merge_tmpfs_options(options)}
    options = ["bind" if m["NonRecursive"] else "rbind"]
    if not m["Writable"]:
        options.append("ro")
    if m["Propagation"]:
        options.append(m["Propagation"])
    return {"destination": m["Destination"], "type": "bind", "source": m["Source"],
            "options": options}


def _rootfs_propagation(current: str, propagation: str) -> str:
    """A shared bind makes the rootfs shared; a slave one makes it rslave."""
    if propagation in ("shared", "rshared"):
        if current not in ("shared", "rshared"):
            return "shared"
    elif propagation in ("slave", "rslave"):
        if current not in ("shared", "rshared", "slave", "rslave"):
            return "rslave"
    return current


def with_mounts(spec: Dict[str, Any], context: SpecContext) -> None:
    """The request's mounts over dockerd's defaults, with ReadonlyRootfs and
    Privileged applied to the defaults."""
    requested = _requested_mounts(context)
    destinations = {m["Destination"] for m in requested}
    mounts = _kept_defaults(spec["mounts"], destinations, context)
    rootfs_propagation = ""
    for m in requested:
        if m["Source"] != "tmpfs":
            if needs_shared_source(m["Propagation"]):
                found = context.inputs.source_mounts.get(m["Source"], ("", ""))
                check_propagation(m["Source"], m["Propagation"], found)
            rootfs_propagation = _rootfs_propagation(rootfs_propagation, m["Propagation"])
        mounts.append(_spec_mount(m))
    if context.host_config.get("ReadonlyRootfs"):
        for m in mounts:
            if m["destination"] in ("/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"):
                continue
            if m["destination"] not in destinations and "ro" not in m["options"]:
                m["options"].append("ro")
    if context.privileged:
        for m in mounts:
            if m["destination"] == "/sys" or m["type"] == "cgroup":
                m["options"] = [o for o in m["options"] if o != "ro"]
    spec["mounts"] = mounts
    if rootfs_propagation:
        spec["linux"]["rootfsPropagation"] = rootfs_propagation


def with_seccomp(spec: Dict[str, Any], context: SpecContext) -> None:
    """The default or the requested seccomp profile, unless unconfined or privileged."""
    chosen = context.security.seccomp_profile
    if chosen == "unconfined" or context.privileged:
        return
    if not context.sysinfo.seccomp:
        if chosen:
            raise InternalError(
                "seccomp is not enabled in your kernel, cannot run a custom seccomp profile"
            )
        return
    profile = result(context.inputs.seccomp_profile)
    if profile is None:
        return
    seccomp = seccomp_from_profile(profile, context.capabilities,
                                   machine=context.sysinfo.machine, kernel=context.sysinfo.kernel)
    if seccomp:
        spec["linux"]["seccomp"] = seccomp


def with_masked_paths(spec: Dict[str, Any], context: SpecContext) -> None:
    """MaskedPaths and ReadonlyPaths: dockerd's defaults unless privileged."""
    masked = context.host_config.get("MaskedPaths")
    readonly = context.host_config.get("ReadonlyPaths")
    linux = spec["linux"]
    if not context.privileged:
        linux["maskedPaths"] = list(DEFAULT_MASKED_PATHS if masked is None else masked)
        linux["readonlyPaths"] = list(DEFAULT_READONLY_PATHS if readonly is None else readonly)
    elif masked or readonly:
        linux["maskedPaths"] = list(masked or ())
        linux["readonlyPaths"] = list(readonly or ())


def with_hostname(spec: Dict[str, Any], context: SpecContext) -> None:
    if context.mode("UTSMode") != "host":
        spec["hostname"] = context.hostname


def with_annotations(spec: Dict[str, Any], context: SpecContext) -> None:
    if context.host_config.get("Annotations"):
        spec["annotations"] = dict(context.host_config["Annotations"])


#: createSpec's order: a step may use what an earlier one set, and the
#: first error met is the one a client sees.
STEPS: List[Step] = [
    with_process,
    with_init,
    with_capabilities,
    with_rlimits,
    with_no_new_privileges,
    with_oom_score_adj,
    with_apparmor,
    with_sysctls,
    with_resources,
    with_devices,
    with_cgroups,
    with_namespaces,
    with_mounts,
    with_seccomp,
    with_masked_paths,
    with_hostname,
    with_annotations,
]
