"""What a container gets when its creator says nothing, and the values
the container backend accepts."""

import os

from ..images.config import empty_container_config

DEFAULT_STOP_TIMEOUT = 10
#: dockerd's restart manager: the first delay, its growth, its ceiling, and
#: how long a run must last for the delay to start again from the first.
RESTART_DELAY = 0.1
RESTART_DELAY_MAX = 60.0
RESTART_RESET_AFTER = 10.0

#: Log drivers a container may ask for.  conmon writes every log (but
#: "none") in its k8s-file format, which `docker logs` reads; the default is
#: named json-file, the name clients (docker-py, compose) take to mean "a
#: local log that docker logs can read".
DEFAULT_LOG_DRIVER = "json-file"
LOG_DRIVERS = ("json-file", "k8s-file", "local", "none")
LIST_FILTERS = (
    "ancestor",
    "before",
    "exited",
    "expose",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
)
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


#: An empty Config as dockerd shows it for a container (labels an empty map).
CONFIG_DEFAULTS = dict(empty_container_config(), Labels={})

HOST_CONFIG_DEFAULTS = {
    "Binds": None,
    "ContainerIDFile": "",
    "LogConfig": {"Type": DEFAULT_LOG_DRIVER, "Config": {}},
    "NetworkMode": "default",
    "PortBindings": {},
    "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False,
    "VolumeDriver": "",
    "VolumesFrom": None,
    "ConsoleSize": [0, 0],
    "CapAdd": None,
    "CapDrop": None,
    "CgroupnsMode": "",
    "Dns": [],
    "DnsOptions": [],
    "DnsSearch": [],
    "ExtraHosts": None,
    "GroupAdd": None,
    "IpcMode": "private",
    "Cgroup": "",
    "Links": None,
    "OomScoreAdj": 0,
    "PidMode": "",
    "Privileged": False,
    "PublishAllPorts": False,
    "ReadonlyRootfs": False,
    "SecurityOpt": None,
    "UTSMode": "",
    "UsernsMode": "",
    "ShmSize": 67108864,
    "Runtime": "runc",
    "Isolation": "",
    "CpuShares": 0,
    "Memory": 0,
    "NanoCpus": 0,
    "CgroupParent": "",
    "BlkioWeight": 0,
    "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": [],
    "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [],
    "BlkioDeviceWriteIOps": [],
    "CpuPeriod": 0,
    "CpuQuota": 0,
    "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0,
    "CpusetCpus": "",
    "CpusetMems": "",
    "Devices": [],
    "DeviceCgroupRules": None,
    "DeviceRequests": None,
    "MemoryReservation": 0,
    "MemorySwap": 0,
    "MemorySwappiness": None,
    "OomKillDisable": False,
    "PidsLimit": None,
    "Ulimits": [],
    "CpuCount": 0,
    "CpuPercent": 0,
    "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0,
    "MaskedPaths": None,
    "ReadonlyPaths": None,
}

#: What `docker update` may change, and the HostConfig keys it lands in.
UPDATABLE = (
    "BlkioWeight",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpuShares",
    "CpusetCpus",
    "CpusetMems",
    "KernelMemory",
    "Memory",
    "MemoryReservation",
    "MemorySwap",
    "NanoCpus",
    "PidsLimit",
)


#: A file in the container's directory saying that its last run ended in a
#: checkpoint (docker checkpoint create without --leave-running): no restart
#: policy revives it, not even "always" when the daemon starts; a start
#: removes it.
CHECKPOINTED_MARK = "checkpointed"

#: A file in the container's directory saying that runc's state of a
#: stopped container was made for it ahead of a restore (prepare_restore):
#: the next start reuses it (a restore over CRIU's RPC) or deletes it.
PREPARED_MARK = "restore-prepared"

#: In a restored container's bundle while its lazy pages are still being
#: fetched: a daemon that restarts then does not re-adopt the copy (its
#: pages would never come), it stops it.
LAZY_PENDING_MARK = "lazy-pages-pending"

#: In a container made by a prepared checkpoint import (a migration's
#: target, made before the source froze) until it was restored: a daemon
#: that starts and finds it there with the container not running removes
#: the container (the migration never reached its restore); a start from a
#: checkpoint removes it once the restored run is recorded.
IMPORT_PENDING_MARK = "import-pending"


def mark(path: str) -> None:
    """An empty marker file at C{path} (blocking)."""
    with open(path, "w"):
        pass


def unmark(path: str) -> None:
    """The file at C{path} gone, if it was there (blocking)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
