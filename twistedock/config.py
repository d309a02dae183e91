"""
The daemon's configuration: command-line flags merged with daemon.json as
dockerd merges them.  A directive given both ways, or one the file does not
know, is refused with dockerd's wording.
"""

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

    def __attrs_post_init__(self) -> None:
        try:
            self.mtu = int(self.mtu)
        except (TypeError, ValueError):
            raise ConfigError("invalid MTU: %s" % (self.mtu,))
        if self.mtu < 68:
            raise ConfigError("invalid MTU: %d (at least 68)" % (self.mtu,))

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
}

_TYPES = {
    "hosts": list,
    "labels": list,
    "insecure-registries": list,
    "registry-mirrors": list,
    "experimental": bool,
    "debug": bool,
    "tls": bool,
    "tlsverify": bool,
    "live-restore": bool,
    "ip-forward": bool,
    "lazy-pages-sysctl": bool,
    "criu-rpc": bool,
    "mtu": int,
}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
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
        if not isinstance(value, expected) or (expected is list and not all(isinstance(v, str) for v in value)):
            raise ConfigError(
                "unable to configure the daemon with file %s: %s must be a %s"
                % (path, key, {list: "list of strings", bool: "boolean", str: "string", int: "number"}[expected])
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
