"""The system backend: what /_ping, /info, /version, /events and /system/df say."""

import os
import platform
import sys
import threading
from typing import Dict, List, Optional, Sequence

import attr
import twisted
from twisted.internet.defer import Deferred
from zope.interface import Interface, implementer

from .. import __version__
from ..errors import NotImplementedYet
from ..routers.system import ISystemBackend, PingInfo
from .. import versions
from . import host
from .spec import current_sysinfo
from .events import EventLog
from .lazypages import sysctl as pipe_sysctl
from .. import golang


class IInventory(Interface):
    """What a store (containers, images, volumes) adds to /info and /system/df."""

    def counts():
        """A dict of counters for /info, e.g. C{{"Images": 3}}."""

    def disk_usage(types):
        """A dict of /system/df entries for the object types asked for (async)."""


@attr.s(frozen=True, auto_attribs=True)
class SystemSettings:
    """The daemon configuration the system backend reports."""

    daemon_id: str
    data_root: str
    exec_root: str
    experimental: bool = False
    debug: bool = False
    live_restore: bool = False
    labels: Sequence[str] = ()
    runc: Optional[str] = None
    conmon: Optional[str] = None
    criu: Optional[str] = None
    min_api_version: str = versions.MIN_API_VERSION
    max_api_version: str = versions.MAX_API_VERSION
    cgroup_driver: str = "cgroupfs"
    #: The containers' default log driver (--log-driver).
    logging_driver: str = "json-file"


class Once:
    """Run an async function once; every caller gets its result."""

    def __init__(self, function) -> None:
        self._function = function
        self._done = False
        self._result = None
        self._waiting: Optional[List[Deferred]] = None

    async def get(self):
        if self._done:
            return self._result
        if self._waiting is not None:
            waiter: Deferred = Deferred()
            self._waiting.append(waiter)
            return await waiter
        self._waiting = []
        try:
            self._result = await self._function()
            self._done = True
        finally:
            waiting, self._waiting = self._waiting, None
        for waiter in waiting:
            waiter.callback(self._result)
        return self._result


@implementer(ISystemBackend)
class SystemBackend:
    def __init__(
        self,
        reactor,
        settings: SystemSettings,
        events: EventLog,
        inventories: Sequence = (),
        criu=None,
        registry=None,
    ) -> None:
        self.reactor = reactor
        #: The registry client (a RegistryService): docker login, RegistryConfig.
        self.registry = registry
        self.settings = settings
        self.events = events
        self.inventories = list(inventories)
        #: The daemon's L{criu.Criu}: with --experimental, /info warns when
        #: it does not work (checkpoints are unavailable then).
        self.criu = criu
        self._components = Once(self._probe_components)

    async def _probe_components(self) -> Dict[str, host.Component]:
        found = {}
        for name in ("runc", "conmon", "criu"):
            found[name] = await host.probe_component(
                self.reactor, name, getattr(self.settings, name)
            )
        return found

    async def components(self) -> Dict[str, host.Component]:
        return await self._components.get()

    async def ping(self) -> PingInfo:
        # No BuildKit here: the classic builder's version.
        return PingInfo(builder_version="1", swarm="inactive")

    def _counts(self) -> Dict[str, int]:
        totals = {
            "Containers": 0,
            "ContainersRunning": 0,
            "ContainersPaused": 0,
            "ContainersStopped": 0,
            "Images": 0,
        }
        for inventory in self.inventories:
            for key, value in inventory.counts().items():
                totals[key] = totals.get(key, 0) + value
        return totals

    async def system_info(self) -> dict:
        s = self.settings
        components = await self.components()
        runc = components["runc"]
        cgroups = current_sysinfo()
        release = host.os_release()
        warnings = await self._warnings(components, cgroups)
        info = {"ID": s.daemon_id}
        info.update(self._counts())
        info.update(
            {
                "Driver": "overlay2",
                "DriverStatus": host.storage_driver_status(s.data_root),
                "Plugins": {
                    "Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": ["json-file", "k8s-file", "local", "none"],
                },
                "MemoryLimit": cgroups.memory,
                "SwapLimit": cgroups.swap,
                "CpuCfsPeriod": cgroups.cpu_cfs,
                "CpuCfsQuota": cgroups.cpu_cfs,
                "CPUShares": cgroups.cpu_shares,
                "CPUSet": cgroups.cpuset,
                "PidsLimit": cgroups.pids,
                "IPv4Forwarding": host.proc_flag("/proc/sys/net/ipv4/ip_forward"),
                "BridgeNfIptables": host.proc_flag(
                    "/proc/sys/net/bridge/bridge-nf-call-iptables"
                ),
                "BridgeNfIp6tables": host.proc_flag(
                    "/proc/sys/net/bridge/bridge-nf-call-ip6tables"
                ),
                "Debug": s.debug,
                "NFd": _open_fds(),
                "KernelMemory": cgroups.kernel_memory,
                "KernelMemoryTCP": cgroups.kernel_memory_tcp,
                "OomKillDisable": cgroups.oom_kill_disable,
                "NGoroutines": threading.active_count(),
                "SystemTime": golang.rfc3339_nano_fixed(golang.seconds_to_ns(self.reactor.seconds())),
                "LoggingDriver": self.settings.logging_driver,
                "CgroupDriver": self.settings.cgroup_driver,
                "CgroupVersion": cgroups.cgroup_version,
                "NEventsListener": self.events.listeners,
                "KernelVersion": host.kernel_version(),
                "OperatingSystem": release.get("PRETTY_NAME", "Linux"),
                "OSVersion": release.get("VERSION_ID", ""),
                "OSType": "linux",
                "Architecture": host.architecture(),
                "IndexServerAddress": "https://index.docker.io/v1/",
                "RegistryConfig": (
                    self.registry.registry_config() if self.registry is not None else registry_config()
                ),
                "NCPU": host.ncpu(),
                "MemTotal": host.mem_total(),
                "GenericResources": None,
                "DockerRootDir": s.data_root,
                "HttpProxy": os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
                "HttpsProxy": os.environ.get(
                    "HTTPS_PROXY", os.environ.get("https_proxy", "")
                ),
                "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
                "Name": host.hostname(),
                "Labels": list(s.labels),
                "ExperimentalBuild": s.experimental,
                "ServerVersion": __version__,
                "Runtimes": {"runc": {"path": runc.path or "runc"}},
                "DefaultRuntime": "runc",
                "Swarm": {
                    "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                    "ControlAvailable": False, "Error": "", "RemoteManagers": None,
                },
                "LiveRestoreEnabled": s.live_restore,
                "Isolation": "",
                "InitBinary": "",
                "ContainerdCommit": {"ID": ""},
                "RuncCommit": {"ID": runc.commit or runc.version},
                "InitCommit": {"ID": ""},
                "SecurityOptions": security_options(cgroups),
                "CDISpecDirs": [],
                # dockerd's Warnings are a nil slice when there are none.
                "Warnings": warnings or None,
            }
        )
        criu = components["criu"]
        if criu.found:
            info["CriuVersion"] = criu.version
        return info

    async def _warnings(self, components, cgroups) -> list:
        """What /info warns of: limits the kernel lacks, parts not found."""
        warnings = []
        if not cgroups.memory:
            warnings.append("WARNING: No memory limit support")
        if not cgroups.swap:
            warnings.append("WARNING: No swap limit support")
        if not components["runc"].found:
            warnings.append("WARNING: runc not found: containers cannot run")
        if not components["conmon"].found:
            warnings.append("WARNING: conmon not found: containers cannot run")
        if self.settings.experimental and self.criu is not None:
            criu_status = await self.criu.status()
            if not criu_status.works:
                warnings.append(
                    "WARNING: CRIU does not work: checkpoint and restore are unavailable: "
                    + criu_status.problem
                )
            lazy_problem = pipe_sysctl.problem()
            if lazy_problem:
                warnings.append("WARNING: lazy-pages checkpoints are unavailable: " + lazy_problem)
        return warnings

    async def system_version(self) -> dict:
        s = self.settings
        components = await self.components()
        engine_details = {
            "ApiVersion": s.max_api_version,
            "Arch": golang.goarch(),
            "BuildTime": "",
            "Experimental": "true" if s.experimental else "false",
            "GitCommit": "",
            "GoVersion": "python%s" % (platform.python_version(),),
            "KernelVersion": host.kernel_version(),
            "MinAPIVersion": s.min_api_version,
            "Os": "linux",
        }
        listed = [{"Name": "Engine", "Version": __version__, "Details": engine_details}]
        for name, label in (("runc", "runc"), ("conmon", "conmon"), ("criu", "CRIU")):
            component = components[name]
            if component.found:
                listed.append(
                    {
                        "Name": label,
                        "Version": component.version,
                        "Details": {"GitCommit": component.commit or ""},
                    }
                )
        listed.append(
            {
                "Name": "Twisted",
                "Version": twisted.__version__,
                "Details": {"Python": sys.version.split()[0]},
            }
        )
        doc = {
            "Platform": {"Name": "twistedock"},
            "Components": listed,
            "Version": __version__,
            "ApiVersion": s.max_api_version,
            "MinAPIVersion": s.min_api_version,
            "GitCommit": "",
            "GoVersion": engine_details["GoVersion"],
            "Os": "linux",
            "Arch": engine_details["Arch"],
            "KernelVersion": engine_details["KernelVersion"],
            "BuildTime": "",
        }
        if s.experimental:
            doc["Experimental"] = True
        return doc

    async def disk_usage(self, types) -> dict:
        usage: dict = {
            "LayersSize": 0,
            "Images": [] if "image" in types else None,
            "Containers": [] if "container" in types else None,
            "Volumes": [] if "volume" in types else None,
            "BuildCache": [] if "build-cache" in types else None,
        }
        for inventory in self.inventories:
            part = await inventory.disk_usage(types)
            for key, value in part.items():
                if key == "LayersSize":
                    usage[key] += value
                elif usage.get(key) is not None:
                    usage[key].extend(value)
        return usage

    async def subscribe_to_events(self, since, until, filters):
        return self.events.subscribe(since, until, filters)

    def unsubscribe_from_events(self, subscription) -> None:
        self.events.unsubscribe(subscription)

    async def authenticate(self, auth_config) -> dict:
        if self.registry is not None:
            from .distribution.auth import from_json

            return await self.registry.login(from_json(auth_config))
        raise NotImplementedYet(
            "registry login is not implemented yet: twistedock has no registry client"
        )


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def registry_config() -> dict:
    """/info's RegistryConfig: dockerd's defaults (no mirrors, no insecure
    registries but loopback)."""
    return {
        "AllowNondistributableArtifactsCIDRs": [],
        "AllowNondistributableArtifactsHostnames": [],
        "InsecureRegistryCIDRs": ["::1/128", "127.0.0.0/8"],
        "IndexConfigs": {
            "docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}
        },
        "Mirrors": [],
    }


def security_options(cgroups) -> list:
    """/info's SecurityOptions: what the spec applies to every container."""
    security = []
    if host.seccomp_supported():
        security.append("name=seccomp,profile=builtin")
    if cgroups.cgroup_version == "2":
        security.append("name=cgroupns")
    return security
