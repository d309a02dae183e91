"""
C{twistd dockerd}: the command line, mirroring dockerd's flags, and the
service it makes; C{twistedock}, the same daemon as one command.
"""

import os
import sys

from twisted.application.service import ServiceMaker
from twisted.python import usage

from . import __version__, systemd, versions
from .config import DEFAULT_CONFIG_FILE, ConfigError, DaemonConfig, merge, parse_pool, read_config_file
from .listeners import check_addresses
from .responsive import make_responsive

BOOLEAN_FLAGS = ("debug", "experimental", "tls", "tlsverify", "live-restore", "ip-forward", "userland-proxy",
                 "iptables", "icc", "criu-rpc", "lazy-pages-sysctl")


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "A Docker-Engine-compatible container daemon. Point the docker CLI at it "
        "with DOCKER_HOST=unix://PATH."
    )

    optFlags = [
        ["debug", "D", "Log every API request; serve /debug/vars and /debug/pprof"],
        ["experimental", None, "Serve experimental routes (checkpoints)"],
        ["tls", None, "Serve TCP addresses over TLS (--tls=false: say plain TCP is meant)"],
        ["tlsverify", None, "TLS, and require client certificates signed by --tlscacert"],
        ["live-restore", None, "Keep containers running while the daemon is down"],
        ["ip-forward", None, "Turn on net.ipv4.ip_forward (the default; --ip-forward=false: leave it)"],
        ["userland-proxy", None, "Serve published ports with the daemon's proxy (the default; "
                                 "--userland-proxy=false: kernel NAT only)"],
        ["iptables", None, "Write firewall rules: NAT, published ports (the default; --iptables=false: none)"],
        ["icc", None, "Let the default bridge's containers talk to each other (the default; --icc=false: not)"],
        ["lazy-pages-sysctl", None,
         "With --experimental, raise fs.pipe-max-size to 4 MiB for lazy-pages checkpoints "
         "(the default; --lazy-pages-sysctl=false: leave it)"],
        ["criu-rpc", None, "Checkpoint and restore over CRIU's RPC (the default; --criu-rpc=false: runc checkpoint/restore)"],
    ]
    optParameters = [
        ["data-root", None, None, "Where persistent state lives [default: /var/lib/twistedock]"],
        ["exec-root", None, None, "Where runtime state lives [default: /run/twistedock]"],
        ["config-file", None, DEFAULT_CONFIG_FILE, "daemon.json to read"],
        ["tlscacert", None, None, "CA certificate clients must be signed by"],
        ["tlscert", None, None, "The daemon's TLS certificate"],
        ["tlskey", None, None, "The daemon's TLS key"],
        ["group", "G", None, "Group owning the unix socket [default: docker]"],
        ["bridge", "b", None, "The default bridge network's interface ('none': no default bridge) [default: twistedock0]"],
        ["mtu", None, None, "The MTU of the default bridge's containers [default: 1500]"],
        ["bip", None, None, "The default bridge's address and subnet (CIDR) [default: a free one of dockerd's pools]"],
        ["cgroup-parent", None, None, "The parent cgroup of containers without a CgroupParent [default: /docker, system.slice with the systemd driver]"],
        ["fixed-cidr", None, None, "The default bridge's addresses given to containers (a CIDR within --bip's)"],
        ["criu-path", None, None, "The CRIU binary [default: scripts/install's /opt/twistedock/bin/criu, else criu on PATH]"],
        ["log-driver", None, None, "The log driver of containers that name none [default: json-file]"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["host"] = []
        self["insecure-registry"] = []
        self["registry-mirror"] = []
        self["log-opt"] = {}
        self["exec-opt"] = []
        self["default-address-pool"] = []
        self.explicit = set()
        self.false_flags = set()

    def opt_host(self, value: str) -> None:
        """Address to serve the API on: unix://PATH, tcp://HOST:PORT, fd:// (repeatable)"""
        self["host"].append(value)
        self.explicit.add("hosts")

    opt_H = opt_host

    def opt_insecure_registry(self, value: str) -> None:
        """A registry reached over plain HTTP or unverified TLS: host[:port] or a CIDR (repeatable; loopback always is)"""
        self["insecure-registry"].append(value)
        self.explicit.add("insecure_registries")

    def opt_registry_mirror(self, value: str) -> None:
        """A mirror of Docker Hub, shown in /info (repeatable)"""
        self["registry-mirror"].append(value)
        self.explicit.add("registry_mirrors")

    def opt_log_opt(self, value: str) -> None:
        """A default log option, KEY=VALUE (max-size, max-file, compress; repeatable)"""
        key, sep, option = value.partition("=")
        if not sep:
            raise usage.UsageError("invalid argument %r for --log-opt: bad attribute format: %s" % (value, value))
        self["log-opt"][key] = option
        self.explicit.add("log_opts")
    def opt_exec_opt(self, value: str) -> None:
        """A runtime execution option: native.cgroupdriver=cgroupfs|systemd (repeatable)"""
        self["exec-opt"].append(value)
        self.explicit.add("exec_opts")

    def opt_default_address_pool(self, value: str) -> None:
        """Where networks' subnets are chosen: base=CIDR,size=N (repeatable; replaces dockerd's pools)"""
        try:
            self["default-address-pool"].append(parse_pool(value))
        except ConfigError as e:
            raise usage.UsageError("invalid argument %r for \"--default-address-pool\" flag: %s" % (value, e))
        self.explicit.add("default_address_pools")

    def opt_version(self) -> None:
        """Print the version and exit"""
        print("twistedock version %s" % (__version__,))
        raise SystemExit(0)

    opt_v = opt_version

    def parseOptions(self, options=None) -> None:
        if options is None:
            options = sys.argv[1:]
        rewritten = []
        for option in options:
            name, sep, value = option.partition("=")
            if sep and name.startswith("--") and name[2:] in BOOLEAN_FLAGS:
                if value.lower() in ("1", "true", "t"):
                    rewritten.append(name)
                elif value.lower() in ("0", "false", "f"):
                    self.false_flags.add(name[2:])
                    self.explicit.add(name[2:].replace("-", "_"))
                else:
                    raise usage.UsageError("invalid boolean value %r for %s" % (value, name))
                continue
            rewritten.append(option)
        self._record_explicit()
        super().parseOptions(rewritten)

    def _record_explicit(self) -> None:
        for name, handler in list(self._dispatch.items()):
            if name in ("host", "H", "insecure-registry", "registry-mirror", "log-opt", "exec-opt", "default-address-pool"):
                continue
            self._dispatch[name] = _Recorder(self, name, handler)

    def postOptions(self) -> None:
        flags = {
            "hosts": list(self["host"]),
            "experimental": bool(self["experimental"]),
            "debug": bool(self["debug"]),
            "tls": True if self["tls"] else (False if "tls" in self.false_flags else None),
            "tlsverify": bool(self["tlsverify"]),
            "live_restore": bool(self["live-restore"]),
            "ip_forward": "ip-forward" not in self.false_flags,
            "userland_proxy": "userland-proxy" not in self.false_flags,
            "iptables": "iptables" not in self.false_flags,
            "icc": "icc" not in self.false_flags,
            "default_address_pools": list(self["default-address-pool"]),
            "lazy_pages_sysctl": "lazy-pages-sysctl" not in self.false_flags,
            "criu_rpc": "criu-rpc" not in self.false_flags,
            "insecure_registries": list(self["insecure-registry"]),
            "registry_mirrors": list(self["registry-mirror"]),
            "log_opts": dict(self["log-opt"]),
            "exec_opts": list(self["exec-opt"]),
        }
        defaults = DaemonConfig()
        for option, attribute in (
            ("data-root", "data_root"),
            ("exec-root", "exec_root"),
            ("tlscacert", "tlscacert"),
            ("tlscert", "tlscert"),
            ("tlskey", "tlskey"),
            ("group", "group"),
            ("criu-path", "criu_path"),
            ("cgroup-parent", "cgroup_parent"),
            ("bridge", "bridge"),
            ("bip", "bip"),
            ("fixed-cidr", "fixed_cidr"),
            ("mtu", "mtu"),
            ("log-driver", "log_driver"),
        ):
            value = self[option]
            flags[attribute] = value if value is not None else getattr(defaults, attribute)
        flags["min_api_version"] = os.environ.get("DOCKER_MIN_API_VERSION") or versions.MIN_API_VERSION
        path = self["config-file"]
        explicit_file = "config_file" in self.explicit
        try:
            if explicit_file or os.path.exists(path):
                file_values = read_config_file(path)
            else:
                file_values = {}
            self.config = merge(flags, self.explicit, file_values, path)
            check_addresses(self.config)
        except ConfigError as e:
            raise usage.UsageError(str(e))


class _Recorder:
    """Notes which options the command line gave, for daemon.json conflicts."""

    def __init__(self, options: Options, name: str, handler) -> None:
        self.options = options
        self.name = name
        self.handler = handler

    def __call__(self, name, value):
        self.options.explicit.add(name.replace("-", "_"))
        if isinstance(self.handler, usage.CoerceParameter):
            return self.handler.dispatch(name, value)
        return self.handler(name, value)


def makeService(options: Options):
    from twisted.internet import reactor

    from .daemon import Daemon

    make_responsive(reactor)
    # Read before anything starts: runc and conmon must not inherit it.
    notify_socket = systemd.take_notify_socket()
    try:
        daemon = Daemon(reactor, options.config)
    except ConfigError as e:
        raise SystemExit("twistd dockerd: %s" % (e,))
    # Last child: it starts after the listeners, and stops first.
    systemd.ReadinessService(daemon.listeners, notify_socket).setServiceParent(daemon)
    return daemon


#: The twistd plugin, as twisted/plugins/twistedock_dockerd.py declares it
#: (that dropin imports nothing of twistedock: twistd imports every dropin).
DOCKERD = ServiceMaker(
    "twistedock dockerd", __name__, "A Docker-Engine-compatible container daemon", "dockerd"
)


def main(argv=None) -> None:
    """The C{twistedock} command: C{twistedock [dockerd flags]} is
    C{twistd -n --pidfile= dockerd [dockerd flags]}, found without twistd's
    plugin discovery, so it works from any install; C{twistedock migrate ...}
    is C{twistedock-migrate ...}, and C{checkpoint} and C{events} are the
    client commands of L{twistedock.cli}."""
    from twisted.scripts.twistd import ServerOptions, runApp

    argv = sys.argv[1:] if argv is None else list(argv)
    from .cli import SUBCOMMANDS

    if argv[:1] and argv[0] in SUBCOMMANDS:
        from .cli import main as client_command

        raise SystemExit(client_command(argv))

    class DaemonOptions(ServerOptions):
        synopsis = "Usage: twistedock"

        @staticmethod
        def _getPlugins(interface):
            return [DOCKERD]

    config = DaemonOptions()
    try:
        config.parseOptions(["--nodaemon", "--pidfile=", "dockerd"] + argv)
    except usage.UsageError as e:
        sys.stderr.write("twistedock: %s\nSee 'twistedock --help'.\n" % (e,))
        raise SystemExit(1)
    runApp(config)
