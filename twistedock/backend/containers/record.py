"""
A container as the daemon keeps it: its record (what was asked for, its
state, its paths), serialised atomically to disk, and the views dockerd gives
of it (inspect, list, the Status text).
"""

import json
import os
from typing import Dict, List, Optional

import attr

from ...atomic import write_atomic
from ... import golang
from .health import status_text


@attr.s(auto_attribs=True)
class State:
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    removing: bool = False
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: int = 0
    finished_at: int = 0
    #: State.Health (see L{health}): None until a run with a healthcheck.
    health: Optional[dict] = None

    @property
    def status(self) -> str:
        if self.running:
            if self.paused:
                return "paused"
            if self.restarting:
                return "restarting"
            return "running"
        if self.removing:
            return "removing"
        if self.dead:
            return "dead"
        if not self.started_at:
            return "created"
        return "exited"

    def describe(self, now_ns: int) -> str:
        """The Status column of docker ps."""

        def since(ns: int) -> str:
            return golang.human_duration((now_ns - ns) / 1e9)

        if self.running:
            if self.paused:
                return "Up %s (Paused)" % since(self.started_at)
            if self.restarting:
                return "Restarting (%d) %s ago" % (self.exit_code, since(self.finished_at))
            if self.health is not None:
                return "Up %s (%s)" % (since(self.started_at), status_text(self.health))
            return "Up %s" % since(self.started_at)
        if self.removing:
            return "Removal In Progress"
        if self.dead:
            return "Dead"
        if not self.started_at:
            return "Created"
        if not self.finished_at:
            return ""
        return "Exited (%d) %s ago" % (self.exit_code, since(self.finished_at))

    def to_json(self) -> dict:
        return {
            "Status": self.status,
            "Running": self.running,
            "Paused": self.paused,
            "Restarting": self.restarting,
            "OOMKilled": self.oom_killed,
            "Dead": self.dead,
            "Pid": self.pid,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": golang.json_time(self.started_at),
            "FinishedAt": golang.json_time(self.finished_at),
        }


@attr.s(auto_attribs=True, eq=False)
class Container:
    """One container's record. C{config} and C{host_config} are the Engine
    API's Config and HostConfig as dockerd shows them in inspect."""

    id: str
    name: str  # with the leading slash, as dockerd keeps it
    created: int  # ns
    image_id: str
    config: dict
    host_config: dict
    path: str
    args: List[str]
    directory: str  # <data-root>/containers/<id>
    state: State = attr.Factory(State)
    restart_count: int = 0
    manually_stopped: bool = False
    #: Filled when a run is set up; kept for inspect.
    graph: Dict[str, str] = attr.Factory(dict)
    networking_config: dict = attr.Factory(dict)
    #: The mount points by destination (volumes, binds, tmpfs mounts) as
    #: registered at create; None for a record made before volumes existed.
    mount_points: Optional[Dict[str, dict]] = None
    #: A network joiner's /etc file paths (its target's, from its start):
    #: ResolvConfPath, HostnamePath, HostsPath.
    network_files: Optional[Dict[str, str]] = None

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, self.id + "-json.log")

    def path_of(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def network_paths(self) -> Dict[str, str]:
        """ResolvConfPath, HostnamePath and HostsPath: the container's own,
        or a network joiner's target's (empty before its first start)."""
        if self.network_files is not None:
            return dict(self.network_files)
        if self.network_mode().startswith("container:"):
            return {"ResolvConfPath": "", "HostnamePath": "", "HostsPath": ""}
        return {"ResolvConfPath": self.path_of("resolv.conf"), "HostnamePath": self.path_of("hostname"),
                "HostsPath": self.path_of("hosts")}

    @property
    def record_path(self) -> str:
        return os.path.join(self.directory, "container.json")

    @property
    def restart_policy(self) -> dict:
        policy = self.host_config.get("RestartPolicy") or {}
        return {
            "Name": policy.get("Name") or "no",
            "MaximumRetryCount": int(policy.get("MaximumRetryCount") or 0),
        }

    # -- persistence ----------------------------------------------------

    def to_record(self) -> dict:
        return {
            "Version": 1,
            "Id": self.id,
            "Name": self.name,
            "Created": self.created,
            "Image": self.image_id,
            "Config": self.config,
            "HostConfig": self.host_config,
            "NetworkingConfig": self.networking_config,
            "Path": self.path,
            "Args": self.args,
            "State": attr.asdict(self.state),
            "RestartCount": self.restart_count,
            "ManuallyStopped": self.manually_stopped,
            "GraphDriver": self.graph,
            "MountPoints": self.mount_points,
            "NetworkFiles": self.network_files,
        }

    @classmethod
    def from_record(cls, record: dict, directory: str) -> "Container":
        return cls(
            id=record["Id"],
            name=record["Name"],
            created=record["Created"],
            image_id=record["Image"],
            config=record["Config"],
            host_config=record["HostConfig"],
            networking_config=record.get("NetworkingConfig") or {},
            path=record["Path"],
            args=record["Args"],
            directory=directory,
            state=State(**record["State"]),
            restart_count=record.get("RestartCount", 0),
            manually_stopped=record.get("ManuallyStopped", False),
            graph=record.get("GraphDriver") or {},
            mount_points=record.get("MountPoints"),
            network_files=record.get("NetworkFiles"),
        )

    def record_bytes(self) -> bytes:
        return json.dumps(self.to_record(), separators=(",", ":")).encode("utf-8")

    def save(self) -> None:
        """Write the record atomically, on the caller's thread."""
        write_atomic(self.record_path, self.record_bytes(), mode=0o600)

    # -- views ----------------------------------------------------------

    def command(self) -> str:
        return " ".join([self.path] + list(self.args)).strip()

    def network_mode(self) -> str:
        return self.host_config.get("NetworkMode") or "default"

    def network_settings(self, sandbox_key: str = "") -> dict:
        mode = self.network_mode()
        name = "bridge" if mode == "default" else mode
        networks = {}
        if not name.startswith("container:"):
            networks[name] = _endpoint()
        return {
            "Bridge": "",
            "SandboxID": "",
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": {},
            "SandboxKey": sandbox_key,
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "EndpointID": "",
            "Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": "",
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "MacAddress": "",
            "Networks": networks,
        }

    def mounts(self) -> List[dict]:
        if self.mount_points is not None:
            return [_api_mount_point(self.mount_points[d]) for d in sorted(self.mount_points)]
        out = []
        for bind in self.host_config.get("Binds") or []:
            parts = bind.split(":")
            if len(parts) < 2:
                continue
            mode = parts[2] if len(parts) > 2 else ""
            out.append(
                {
                    "Type": "bind",
                    "Source": parts[0],
                    "Destination": parts[1],
                    "Mode": mode,
                    "RW": "ro" not in mode.split(","),
                    "Propagation": "rprivate",
                }
            )
        for mount in self.host_config.get("Mounts") or []:
            kind = mount.get("Type", "")
            entry = {
                "Type": kind,
                "Source": mount.get("Source", "") if kind == "bind" else "",
                "Destination": mount.get("Target", ""),
                "Mode": "",
                "RW": not mount.get("ReadOnly", False),
                "Propagation": ((mount.get("BindOptions") or {}).get("Propagation") or "rprivate")
                if kind == "bind"
                else "",
            }
            out.append(entry)
        for target in sorted(self.host_config.get("Tmpfs") or {}):
            out.append(
                {"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": True, "Propagation": ""}
            )
        return out

    def inspect(self, size: Optional[Dict[str, int]] = None, sandbox_key: str = "") -> dict:
        doc = {
            "Id": self.id,
            "Created": golang.json_time(self.created),
            "Path": self.path,
            "Args": list(self.args),
            "State": self.state.to_json(),
            "Image": self.image_id,
            **self.network_paths(),
            "LogPath": self.log_path,
            "Name": self.name,
            "RestartCount": self.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": self.host_config,
            "GraphDriver": {"Data": dict(self.graph), "Name": "overlay2"},
            "Mounts": self.mounts(),
            "Config": self.config,
            "NetworkSettings": self.network_settings(sandbox_key),
        }
        if size is not None:
            doc["SizeRw"] = size["rw"]
            doc["SizeRootFs"] = size["rootfs"]
        return doc

    def summary(self, image_name: str, now_ns: int, size: Optional[Dict[str, int]] = None) -> dict:
        mode = self.network_mode()
        networks = self.network_settings()["Networks"]
        doc = {
            "Id": self.id,
            "Names": [self.name],
            "Image": image_name,
            "ImageID": self.image_id,
            "Command": self.command(),
            "Created": self.created // 1_000_000_000,
            "Ports": [],
            "Labels": self.config.get("Labels") or {},
            "State": self.state.status,
            "Status": self.state.describe(now_ns),
            "HostConfig": {"NetworkMode": mode},
            "NetworkSettings": {"Networks": networks},
            "Mounts": self.mounts(),
        }
        # Go's omitempty on the summary's sizes: a zero size is left out.
        if size is not None and size["rw"]:
            doc["SizeRw"] = size["rw"]
        if size is not None and size["rootfs"]:
            doc["SizeRootFs"] = size["rootfs"]
        return doc


def _api_mount_point(point: dict) -> dict:
    """types.MountPoint: Name and Driver left out when empty (omitempty)."""
    doc = {"Type": point["Type"]}
    if point.get("Name"):
        doc["Name"] = point["Name"]
    doc["Source"] = point.get("Source", "")
    doc["Destination"] = point["Destination"]
    if point.get("Driver"):
        doc["Driver"] = point["Driver"]
    doc.update(Mode=point.get("Mode", ""), RW=point.get("RW", True),
               Propagation=point.get("Propagation", ""))
    return doc


def _endpoint() -> dict:
    return {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": None,
        "NetworkID": "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "",
        "DriverOpts": None,
    }


def load(directory: str) -> Optional[Container]:
    """The container whose record is in C{directory}, or None if it has none."""
    path = os.path.join(directory, "container.json")
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read())
    except FileNotFoundError:
        return None
    return Container.from_record(record, directory)
