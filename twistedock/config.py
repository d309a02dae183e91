"""
The daemon's configuration: command-line flags merged with daemon.json as
dockerd merges them.  A directive given both ways, or one the file does not
know, is refused with dockerd's wording.
"""

import ipaddress
import json
import os
from typing import Any, Dict, List, Optional

import attr

from . import versions

DEFAULT_UNIX_SOCKET = "/var/run/docker.sock"
DEFAULT_DATA_ROOT = "/var/lib/twistedock"
DEFAULT_EXEC_ROOT = "/run/twistedock"
DEFAULT_CONFIG_FILE = "/etc/twistedock/daemon.json"
DEFAULT_GROUP = "docker"


def _cert_dir() -> str:
    return os.environ.get("DOCKER_CERT_PATH") or os.path.join(
        os.path.expanduser("~"), ".docker"
    )


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


@attr.s(auto_attribs=True)
class DaemonConfig:
    hosts: List[str] = attr.Factory(list)
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    experimental: bool = False
    debug: bool = False
    #: None: not said either way; False: said, with --tls=false.
    tls: Optional[bool] = None
    tlsverify: bool = False
    tlscacert: str = attr.Factory(lambda: os.path.join(_cert_dir(), "ca.pem"))
    tlscert: str = attr.Factory(lambda: os.path.join(_cert_dir(), "cert.pem"))
    tlskey: str = attr.Factory(lambda: os.path.join(_cert_dir(), "key.pem"))
    group: str = DEFAULT_GROUP
    live_restore: bool = False
    labels: List[str] = attr.Factory(list)
    criu_path: Optional[str] = None
    #: Checkpoints through CRIU's RPC (False: through runc checkpoint).
    criu_rpc: bool = True
    min_api_version: str = versions.MIN_API_VERSION
    config_file: str = DEFAULT_CONFIG_FILE
    insecure_registries: List[str] = attr.Factory(list)
    registry_mirrors: List[str] = attr.Factory(list)
    #: The default bridge network's interface ("none": no default bridge).
    bridge: str = "twistedock0"
    bip: str = ""
    ip_forward: bool = True
    #: With --experimental: fs.pipe-max-size raised for lazy-pages checkpoints.
    lazy_pages_sysctl: bool = True
    mtu: int = 1500
    #: The log driver and options of containers that name none (a
    #: container naming the same driver gets the options it lacks).
    log_driver: str = "json-file"
    log_opts: Dict[str, str] = attr.Factory(dict)
    #: dockerd's --cgroup-parent: where containers without a CgroupParent
    #: go ("": /docker, or system.slice with the systemd driver).
    cgroup_parent: str = ""
    #: dockerd's --exec-opt (native.cgroupdriver=cgroupfs|systemd).
    exec_opts: List[str] = attr.Factory(list)
    #: Published ports served by the daemon's proxy (False: kernel NAT only).
    userland_proxy: bool = True
    #: The default bridge's addresses given to containers (a CIDR in --bip's subnet).
    fixed_cidr: str = ""
    #: The pools networks' subnets are chosen from: [{"base": CIDR, "size": N}]
    #: (empty: dockerd's defaults).
    default_address_pools: List[dict] = attr.Factory(list)
    #: False: no firewall rule written (no NAT, no published ports by the kernel).
    iptables: bool = True
    #: False: no traffic between the default bridge's containers.
    icc: bool = True

    def __attrs_post_init__(self) -> None:
        try:
            self.mtu = int(self.mtu)
        except (TypeError, ValueError):
            raise ConfigError("invalid MTU: %s" % (self.mtu,))
        if self.mtu < 68:
            raise ConfigError("invalid MTU: %d (at least 68)" % (self.mtu,))
        driver = self.cgroup_driver
        if driver == "none":
            raise ConfigError("native.cgroupdriver option %s is internally used and cannot be specified "
                              "manually" % driver)
        if driver not in ("cgroupfs", "systemd"):
            raise ConfigError("native.cgroupdriver option %s not supported" % driver)
        if self.cgroup_parent and driver == "systemd" and (
                len(self.cgroup_parent) <= 6 or not self.cgroup_parent.endswith(".slice")):
            raise ConfigError('cgroup-parent for systemd cgroup should be a valid slice named as "xxx.slice"')

        self.default_address_pools = [check_pool(p) for p in self.default_address_pools]
        if self.fixed_cidr:
            try:
                fixed = ipaddress.ip_network(self.fixed_cidr, strict=False)
            except ValueError:
                raise ConfigError("invalid fixed-cidr %s: invalid CIDR address: %s"
                                  % (self.fixed_cidr, self.fixed_cidr))
            if self.bip:
                bip = ipaddress.ip_network(self.bip, strict=False)
                if not fixed.subnet_of(bip):
                    raise ConfigError("fixed-cidr %s is not within the bridge's subnet %s" % (fixed, bip))
    @property
    def cgroup_driver(self) -> str:
        """dockerd's getCgroupDriver: the last native.cgroupdriver of the
        exec options (any case), cgroupfs when none says."""
        driver = ""
        for option in self.exec_opts:
            key, sep, value = option.partition("=")
            if sep and key.strip().lower() == "native.cgroupdriver":
                driver = value.strip()
        return driver or "cgroupfs"

    @property
    def use_tls(self) -> bool:
        return bool(self.tls) or self.tlsverify


#: daemon.json keys, and the attribute each one sets.
FILE_KEYS = {
    "hosts": "hosts",
    "data-root": "data_root",
    "exec-root": "exec_root",
    "experimental": "experimental",
    "debug": "debug",
    "tls": "tls",
    "tlsverify": "tlsverify",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
    "group": "group",
    "live-restore": "live_restore",
    "labels": "labels",
    "criu-path": "criu_path",
    "criu-rpc": "criu_rpc",
    "min-api-version": "min_api_version",
    "insecure-registries": "insecure_registries",
    "registry-mirrors": "registry_mirrors",
    "bridge": "bridge",
    "bip": "bip",
    "ip-forward": "ip_forward",
    "lazy-pages-sysctl": "lazy_pages_sysctl",
    "mtu": "mtu",
    "log-driver": "log_driver",
    "log-opts": "log_opts",
    "cgroup-parent": "cgroup_parent",
    "exec-opts": "exec_opts",
    "userland-proxy": "userland_proxy",
    "fixed-cidr": "fixed_cidr",
    "default-address-pools": "default_address_pools",
    "iptables": "iptables",
    "icc": "icc",
}

_TYPES = {
    "hosts": list,
    "labels": list,
    "insecure-registries": list,
    "registry-mirrors": list,
    "exec-opts": list,
    "experimental": bool,
    "debug": bool,
    "tls": bool,
    "tlsverify": bool,
    "live-restore": bool,
    "ip-forward": bool,
    "userland-proxy": bool,
    "iptables": bool,
    "icc": bool,
    "default-address-pools": "pools",
    "lazy-pages-sysctl": bool,
    "criu-rpc": bool,
    "mtu": int,
    "log-opts": dict,
}


def parse_pool(value: str) -> dict:
    """A --default-address-pool value, "base=10.10.0.0/16,size=24"."""
    pool: Dict[str, Any] = {}
    for field in value.split(","):
        key, sep, item = field.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("base", "size"):
            raise ConfigError("invalid field %r must be a key=value pair" % (field,))
        if key == "size":
            try:
                pool["size"] = int(item)
            except ValueError:
                raise ConfigError("invalid size value %r" % (item,))
        else:
            pool["base"] = item.strip()
    return check_pool(pool)


def check_pool(pool: Any) -> dict:
    if not isinstance(pool, dict) or not pool.get("base") or not isinstance(pool.get("size"), int):
        raise ConfigError("invalid default address pool %s: it needs a base CIDR and a size" % (pool,))
    try:
        base = ipaddress.ip_network(pool["base"], strict=False)
    except ValueError:
        raise ConfigError("invalid base pool %s: invalid CIDR address: %s" % (pool["base"], pool["base"]))
    if base.version != 4 or not base.prefixlen <= pool["size"] <= 32:
        raise ConfigError("invalid pools size: %d" % (pool["size"],))
    return {"base": str(base), "size": pool["size"]}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        # Go's fmt of a map: keys sorted.
        return "map[" + " ".join("%s:%s" % (k, value[k]) for k in sorted(value)) + "]"
    return str(value)


def read_config_file(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError("unable to configure the daemon with file %s: %s" % (path, e.strerror))
    if not raw.strip():
        return {}
    try:
        values = json.loads(raw)
    except ValueError as e:
        raise ConfigError("unable to configure the daemon with file %s: %s" % (path, e))
    if not isinstance(values, dict):
        raise ConfigError(
            "unable to configure the daemon with file %s: the file must hold a JSON object"
            % (path,)
        )
    return values


def merge(flags: Dict[str, Any], explicit: set, file_values: Dict[str, Any], path: str) -> DaemonConfig:
    """The configuration from C{flags} (attribute names; C{explicit} were given
    on the command line) and C{file_values} (daemon.json keys)."""
    unknown = sorted(k for k in file_values if k not in FILE_KEYS)
    if unknown:
        raise ConfigError(
            "unable to configure the daemon with file %s: the following directives "
            "don't match any configuration option: %s" % (path, ", ".join(unknown))
        )
    conflicts = []
    for key, attribute in FILE_KEYS.items():
        if key in file_values and attribute in explicit:
            conflicts.append(
                "%s: (from flag: %s, from file: %s)"
                % (key, _show(flags[attribute]), _show(file_values[key]))
            )
    if conflicts:
        raise ConfigError(
            "unable to configure the daemon with file %s: the following directives are "
            "specified both as a flag and in the configuration file: %s"
            % (path, ", ".join(conflicts))
        )
    values = dict(flags)
    for key, value in file_values.items():
        expected = _TYPES.get(key, str)
        if expected == "pools":
            if not isinstance(value, list):
                raise ConfigError("unable to configure the daemon with file %s: %s must be a list"
                                  % (path, key))
            values[FILE_KEYS[key]] = value
            continue
        if (
            not isinstance(value, expected)
            or (expected is list and not all(isinstance(v, str) for v in value))
            or (expected is dict and not all(isinstance(v, str) for v in value.values()))
        ):
            raise ConfigError(
                "unable to configure the daemon with file %s: %s must be a %s"
                % (path, key, {list: "list of strings", bool: "boolean", str: "string", int: "number",
                               dict: "map of strings"}[expected])
            )
        values[FILE_KEYS[key]] = value
    values["config_file"] = path
    config = DaemonConfig(**values)
    if versions.less_than(config.min_api_version, versions.MIN_API_VERSION) or versions.greater_than(
        config.min_api_version, versions.MAX_API_VERSION
    ):
        raise ConfigError(
            "invalid API version (%s): must be between %s and %s"
            % (config.min_api_version, versions.MIN_API_VERSION, versions.MAX_API_VERSION)
        )
    return config
