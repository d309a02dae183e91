"""
The Go types of the request bodies dockerd decodes (moby's api/types:
container.Config, HostConfig with its Resources, RestartPolicy, Mounts,
LogConfig, PortBindings, NetworkingConfig, UpdateConfig), as one table read
by L{twistedock.server.godecode}: a body whose values do not fit is refused
at the door with Go's message, and a body that fits can be stored and used.
"""

from ..server.godecode import (
    BOOL,
    DURATION,
    INT,
    INT64,
    STRING,
    STRING_MAP,
    STRINGS,
    STRSLICE,
    UINT,
    UINT16,
    UINT64,
    Int,
    Map,
    Slice,
    Struct,
    named_string,
)

EMPTY_STRUCT = Struct("struct {}", {})

HEALTH_CONFIG = Struct("container.HealthConfig", {
    "Test": STRINGS, "Interval": DURATION, "Timeout": DURATION,
    "StartPeriod": DURATION, "StartInterval": DURATION, "Retries": INT,
})  # fmt: skip

CONFIG_FIELDS = {
    "Hostname": STRING, "Domainname": STRING, "User": STRING,
    "AttachStdin": BOOL, "AttachStdout": BOOL, "AttachStderr": BOOL,
    "ExposedPorts": Map(EMPTY_STRUCT, "nat.PortSet"),
    "Tty": BOOL, "OpenStdin": BOOL, "StdinOnce": BOOL,
    "Env": STRINGS, "Cmd": STRSLICE, "Healthcheck": HEALTH_CONFIG,
    "ArgsEscaped": BOOL, "Image": STRING, "Volumes": Map(EMPTY_STRUCT),
    "WorkingDir": STRING, "Entrypoint": STRSLICE, "NetworkDisabled": BOOL,
    "MacAddress": STRING, "OnBuild": STRINGS, "Labels": STRING_MAP,
    "StopSignal": STRING, "StopTimeout": INT, "Shell": STRSLICE,
}  # fmt: skip

CONFIG = Struct("container.Config", CONFIG_FIELDS)

RESTART_POLICY = Struct("container.RestartPolicy", {"Name": STRING, "MaximumRetryCount": INT})

WEIGHT_DEVICE = Struct("blkiodev.WeightDevice", {"Path": STRING, "Weight": UINT16})
THROTTLE_DEVICE = Struct("blkiodev.ThrottleDevice", {"Path": STRING, "Rate": UINT64})

RESOURCES_FIELDS = {
    "CpuShares": INT64, "Memory": INT64, "NanoCpus": INT64, "CgroupParent": STRING,
    "BlkioWeight": UINT16, "BlkioWeightDevice": Slice(WEIGHT_DEVICE),
    "BlkioDeviceReadBps": Slice(THROTTLE_DEVICE), "BlkioDeviceWriteBps": Slice(THROTTLE_DEVICE),
    "BlkioDeviceReadIOps": Slice(THROTTLE_DEVICE), "BlkioDeviceWriteIOps": Slice(THROTTLE_DEVICE),
    "CpuPeriod": INT64, "CpuQuota": INT64, "CpuRealtimePeriod": INT64,
    "CpuRealtimeRuntime": INT64, "CpusetCpus": STRING, "CpusetMems": STRING,
    "Devices": Slice(Struct("container.DeviceMapping", {
        "PathOnHost": STRING, "PathInContainer": STRING, "CgroupPermissions": STRING,
    })),
    "DeviceCgroupRules": STRINGS,
    "DeviceRequests": Slice(Struct("container.DeviceRequest", {
        "Driver": STRING, "Count": INT, "DeviceIDs": STRINGS,
        "Capabilities": Slice(STRINGS), "Options": STRING_MAP,
    })),
    "KernelMemory": INT64, "KernelMemoryTCP": INT64, "MemoryReservation": INT64,
    "MemorySwap": INT64, "MemorySwappiness": INT64, "OomKillDisable": BOOL,
    "PidsLimit": INT64,
    "Ulimits": Slice(Struct("units.Ulimit", {"Name": STRING, "Hard": INT64, "Soft": INT64})),
    "CpuCount": INT64, "CpuPercent": INT64, "IOMaximumIOps": UINT64, "IOMaximumBandwidth": UINT64,
}  # fmt: skip

MOUNT = Struct("mount.Mount", {
    "Type": named_string("mount.Type"), "Source": STRING, "Target": STRING,
    "ReadOnly": BOOL, "Consistency": named_string("mount.Consistency"),
    "BindOptions": Struct("mount.BindOptions", {
        "Propagation": named_string("mount.Propagation"), "NonRecursive": BOOL,
    }),
    "VolumeOptions": Struct("mount.VolumeOptions", {
        "NoCopy": BOOL, "Labels": STRING_MAP,
        "DriverConfig": Struct("mount.Driver", {"Name": STRING, "Options": STRING_MAP}),
        "Subpath": STRING,
    }),
    "TmpfsOptions": Struct("mount.TmpfsOptions", {
        "SizeBytes": INT64, "Mode": Int("os.FileMode", 0, 2**32 - 1),
    }),
})  # fmt: skip

PORT_BINDING = Struct("nat.PortBinding", {"HostIp": STRING, "HostPort": STRING})

HOST_CONFIG_FIELDS = dict(RESOURCES_FIELDS, **{
    "Binds": STRINGS, "ContainerIDFile": STRING,
    "LogConfig": Struct("container.LogConfig", {"Type": STRING, "Config": STRING_MAP}),
    "NetworkMode": named_string("container.NetworkMode"),
    "PortBindings": Map(Slice(PORT_BINDING), "nat.PortMap"),
    "RestartPolicy": RESTART_POLICY, "AutoRemove": BOOL, "VolumeDriver": STRING,
    "VolumesFrom": STRINGS, "CapAdd": STRSLICE, "CapDrop": STRSLICE,
    "CgroupnsMode": named_string("container.CgroupnsMode"),
    "Dns": STRINGS, "DnsOptions": STRINGS, "DnsSearch": STRINGS,
    "ExtraHosts": STRINGS, "GroupAdd": STRINGS,
    "IpcMode": named_string("container.IpcMode"), "Cgroup": named_string("container.CgroupSpec"),
    "Links": STRINGS, "OomScoreAdj": INT, "PidMode": named_string("container.PidMode"),
    "Privileged": BOOL, "PublishAllPorts": BOOL, "ReadonlyRootfs": BOOL,
    "SecurityOpt": STRINGS, "StorageOpt": STRING_MAP, "Tmpfs": STRING_MAP,
    "UTSMode": named_string("container.UTSMode"), "UsernsMode": named_string("container.UsernsMode"),
    "ShmSize": INT64, "Sysctls": STRING_MAP, "Runtime": STRING,
    "ConsoleSize": Slice(UINT, 2), "Isolation": named_string("container.Isolation"),
    "Mounts": Slice(MOUNT), "MaskedPaths": STRINGS, "ReadonlyPaths": STRINGS, "Init": BOOL,
})  # fmt: skip

HOST_CONFIG = Struct("container.HostConfig", HOST_CONFIG_FIELDS)

ENDPOINT_SETTINGS = Struct("network.EndpointSettings", {
    "IPAMConfig": Struct("network.EndpointIPAMConfig", {
        "IPv4Address": STRING, "IPv6Address": STRING, "LinkLocalIPs": STRINGS,
    }),
    "Links": STRINGS, "Aliases": STRINGS, "NetworkID": STRING, "EndpointID": STRING,
    "Gateway": STRING, "IPAddress": STRING, "IPPrefixLen": INT, "IPv6Gateway": STRING,
    "GlobalIPv6Address": STRING, "GlobalIPv6PrefixLen": INT, "MacAddress": STRING,
    "DriverOpts": STRING_MAP,
})  # fmt: skip

NETWORKING_CONFIG = Struct(
    "network.NetworkingConfig", {"EndpointsConfig": Map(ENDPOINT_SETTINGS)}
)

#: The body of POST /containers/create (runconfig's ContainerConfigWrapper).
CONTAINER_CREATE = Struct("runconfig.ContainerConfigWrapper", dict(
    CONFIG_FIELDS, HostConfig=HOST_CONFIG, NetworkingConfig=NETWORKING_CONFIG,
))  # fmt: skip

#: The body of POST /containers/{id}/update.
UPDATE_CONFIG = Struct(
    "container.UpdateConfig", dict(RESOURCES_FIELDS, RestartPolicy=RESTART_POLICY)
)

