"""
L{NetworkStore}: the networks (the predefined C{bridge}, C{host}, C{none}
and user-defined bridge networks), one atomic record each under
C{<data-root>/network/}, with their endpoints (the containers joined, their
addresses allocated here, by L{ipam}). The API documents are made here; the
host is changed only by the L{driver}, when a container joins or leaves.

Each endpoint is a record of its own, C{<network ID>.endpoints/<container
ID>.json} beside the network's C{<network ID>.json}: a join or leave writes
(or unlinks) one small file, whatever the number of containers on the
network. Records of an older daemon, with every endpoint inside the
network's record, are split so at start-up.
"""

import json
import os
import re
import secrets
import shutil
import time
from typing import Dict, List, Optional

from twisted.internet.defer import DeferredLock
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ... import golang
from ...atomic import fsync_dir, write_atomic
from ...errors import Conflict, Forbidden, InvalidParameter, NotFound
from ...filters import Filters
from ...logs import Logger
from ...routers.network import INetworkBackend
from ...timetypes import get_timestamp
from . import ipam
from .endpoints import EndpointsMixin
from .proxy import PortProxies

log = Logger()

PREDEFINED = ("bridge", "host", "none")
DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}
LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
PRUNE_FILTERS = ("label", "label!", "until")
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MTU_OPTION = "com.docker.network.driver.mtu"
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def _not_a_bridge(name: str, sysfs: str = "/sys/class/net") -> bool:
    """An interface of the host that is there and is not a bridge."""
    return os.path.exists(os.path.join(sysfs, name)) and not os.path.exists(os.path.join(sysfs, name, "bridge"))


def _new_id() -> str:
    return secrets.token_hex(32)


ENDPOINTS_SUFFIX = ".endpoints"


def _encode(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def write_endpoint(directory: str, container_id: str, data: bytes) -> None:
    """An endpoint's record written atomically (blocking), its directory
    made first (and made durable) if need be."""
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fsync_dir(os.path.dirname(directory))
    write_atomic(os.path.join(directory, container_id + ".json"), data, mode=0o600)


def remove_endpoint(directory: str, container_id: str) -> None:
    """An endpoint's record unlinked, durably (blocking)."""
    try:
        os.unlink(os.path.join(directory, container_id + ".json"))
    except FileNotFoundError:
        return
    fsync_dir(directory)


def read_endpoints(directory: str) -> Dict[str, dict]:
    """The endpoint records in C{directory} (blocking); a record cut short
    cannot be there (each was renamed into place), an unreadable one is
    logged and left out."""
    out: Dict[str, dict] = {}
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".json"):
            continue  # (a temporary file of a write the daemon did not finish)
        try:
            with open(os.path.join(directory, name), "rb") as f:
                out[name[: -len(".json")]] = json.loads(f.read())
        except (OSError, ValueError) as e:
            log.warn("endpoint record {name} unreadable: {e}", name=name, e=e)
    return out


@implementer(INetworkBackend)
class NetworkStore(EndpointsMixin):
    """The networks under C{<data-root>/network}; C{driver} (a
    L{driver.Netavark}) configures the namespaces of containers joining
    them. C{bridge}: the default bridge's interface name, C{"none"} for no
    default bridge (containers in the default mode then get loopback only)."""

    def __init__(self, reactor, data_root: str, events, driver, bridge: str = "twistedock0",
                 bip: str = "", routes=ipam.host_routes, mtu: int = 1500, containers=None,
                 proxies: Optional[PortProxies] = None, fixed_cidr: str = "", pools=None,
                 icc: bool = True, resolv_conf: str = "/etc/resolv.conf") -> None:
        self.reactor = reactor
        self.directory = os.path.join(data_root, "network")
        self.events = events
        self.driver = driver
        self.bridge_name = bridge or "twistedock0"
        self.bip = bip
        self.fixed_cidr = fixed_cidr
        #: The pools subnets are chosen from: (base, size) pairs.
        self.pools = tuple((p["base"], p["size"]) for p in pools) if pools else ipam.DEFAULT_POOLS
        self.icc = icc
        self.mtu = mtu
        #: The ContainerStore (shared): the current names of endpoints' containers.
        self.containers = containers
        self.routes = routes
        #: The host's resolver configuration: containers' resolv.conf and
        #: the embedded DNS server's upstream servers come from it.
        self.resolv_conf = resolv_conf
        self.networks: Dict[str, dict] = {}
        #: One lock an endpoint being saved: its writes in order.
        self._endpoint_locks: Dict[tuple, DeferredLock] = {}
        #: The listeners of published ports (the userland proxy by default).
        self.proxies = proxies if proxies is not None else PortProxies(reactor)

    # -- loading and saving ----------------------------------------------

    def load(self) -> None:
        """Read the records and make the predefined networks (blocking: at start-up)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        prepare = getattr(self.driver, "prepare", None)
        if prepare is not None:
            prepare()
        names = sorted(os.listdir(self.directory))
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    record = json.loads(f.read())
            except (OSError, ValueError) as e:
                log.warn("network record {name} unreadable: {e}", name=name, e=e)
                continue
            inline = record.get("Endpoints") or {}
            record["Endpoints"] = dict(inline)
            record["Endpoints"].update(read_endpoints(self._endpoints_dir(record)))
            if inline:
                # An older daemon's record: its endpoints written one a
                # file, then the record without them (a crash in between
                # leaves both, and this runs again).
                for container_id in inline:
                    write_endpoint(self._endpoints_dir(record), container_id,
                                   _encode(record["Endpoints"][container_id]))
                self._write(record)
            self.networks[record["Id"]] = record
        for name in names:
            # The endpoints of a network whose record is gone (a daemon
            # killed while it removed the network).
            if name.endswith(ENDPOINTS_SUFFIX) and name[: -len(ENDPOINTS_SUFFIX)] not in self.networks \
                    and not os.path.exists(os.path.join(self.directory, name[: -len(ENDPOINTS_SUFFIX)] + ".json")):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        self.make_predefined()

    def make_predefined(self) -> None:
        for name in PREDEFINED:
            if name == "bridge" and not self.default_bridge_enabled:
                continue
            existing = self.find_name(name)
            if existing is not None and name == "bridge" and not existing["Endpoints"]:
                # The flags (--bridge, --bip, --mtu) may have changed since.
                wanted = self._predefined(name)
                changed = wanted["Interface"] != existing["Interface"] or wanted["Options"] != existing["Options"]
                if (self.bip or self.fixed_cidr) and wanted["IPAM"] != existing["IPAM"]:
                    existing["IPAM"] = wanted["IPAM"]
                    changed = True
                if changed:
                    existing["Interface"], existing["Options"] = wanted["Interface"], wanted["Options"]
                    self._write(existing)
            if existing is None:
                record = self._predefined(name)
                self.networks[record["Id"]] = record
                self._write(record)

    @property
    def default_bridge_enabled(self) -> bool:
        return self.bridge_name != "none"

    def _predefined(self, name: str) -> dict:
        record = self._record(name, DRIVERS[name], [])
        if name == "bridge":
            if self.bip:
                entry = {"Subnet": str(ipam.ipaddress.ip_network(self.bip, strict=False)),
                         "Gateway": self.bip.split("/")[0]}
            elif self.fixed_cidr:
                # As dockerd: without --bip the fixed CIDR is the bridge's subnet.
                subnet = ipam.ipaddress.ip_network(self.fixed_cidr, strict=False)
                entry = {"Subnet": str(subnet), "Gateway": ipam.gateway_of({"Subnet": str(subnet)})}
            else:
                subnet = ipam.choose_subnet(self.routes() + self._subnets(), self.pools)
                entry = {"Subnet": str(subnet), "Gateway": ipam.gateway_of({"Subnet": str(subnet)})}
            if self.fixed_cidr:
                # libnetwork's order: Subnet, IPRange, Gateway.
                entry = {"Subnet": entry["Subnet"],
                         "IPRange": str(ipam.ipaddress.ip_network(self.fixed_cidr, strict=False)),
                         "Gateway": entry["Gateway"]}
            record["IPAM"]["Config"] = [entry]
            record["Interface"] = self.bridge_name
            record["Options"] = {
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": "true" if self.icc else "false",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                BRIDGE_NAME_OPTION: self.bridge_name,
                MTU_OPTION: str(self.mtu),
            }
        return record

    def _record(self, name: str, driver: str, config: List[dict]) -> dict:
        now = time.time_ns()
        return {
            "Name": name,
            "Id": _new_id(),
            "Created": golang.json_time(now),
            "CreatedNs": now,
            "Scope": "local",
            "Driver": driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": config},
            "Internal": False,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Options": {},
            "Labels": {},
            "Interface": "",
            "DNS": False,
            "Endpoints": {},
        }

    def _path(self, record: dict) -> str:
        return os.path.join(self.directory, record["Id"] + ".json")

    def _endpoints_dir(self, record: dict) -> str:
        return os.path.join(self.directory, record["Id"] + ENDPOINTS_SUFFIX)

    @staticmethod
    def _network_part(record: dict) -> bytes:
        """The network's own record: its endpoints are records of their own."""
        return _encode(dict(record, Endpoints={}))

    def _write(self, record: dict) -> None:
        write_atomic(self._path(record), self._network_part(record), mode=0o600)

    def save(self, record: dict):
        """The network's own record saved (not its endpoints: L{save_endpoint})."""
        return self._thread(write_atomic, self._path(record), self._network_part(record), 0o600)

    async def save_endpoint(self, record: dict, container_id: str) -> None:
        """The container's endpoint on the network saved as it is now in
        C{record}, or its record removed if it has left: one small file,
        written in a thread. The writes of one endpoint happen in the order
        asked (a join's write never lands after the leave's unlink)."""
        key = (record["Id"], container_id)
        lock = self._endpoint_locks.get(key)
        if lock is None:
            lock = self._endpoint_locks[key] = DeferredLock()
        try:
            async with lock:
                ep = record["Endpoints"].get(container_id)
                if ep is not None:
                    await self._thread(write_endpoint, self._endpoints_dir(record), container_id, _encode(ep))
                else:
                    await self._thread(remove_endpoint, self._endpoints_dir(record), container_id)
        finally:
            if not lock.locked and not lock.waiting:
                self._endpoint_locks.pop(key, None)

    def _thread(self, function, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    # -- lookups ---------------------------------------------------------

    def find_name(self, name: str) -> Optional[dict]:
        for record in self.networks.values():
            if record["Name"] == name:
                return record
        return None

    def resolve(self, ref: str) -> dict:
        """By full ID, name, or ID prefix (as libnetwork's FindNetwork)."""
        if ref in self.networks:
            return self.networks[ref]
        named = [r for r in self.networks.values() if r["Name"] == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise InvalidParameter("network %s is ambiguous (%d matches found based on name)"
                                   % (ref, len(named)))
        prefixed = [r for r in self.networks.values() if ref and r["Id"].startswith(ref)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise InvalidParameter("network %s is ambiguous (%d matches found based on ID prefix)"
                                   % (ref, len(prefixed)))
        raise NotFound("network %s not found" % (ref,))

    def _subnets(self) -> list:
        out = []
        for record in self.networks.values():
            for entry in record["IPAM"]["Config"]:
                try:
                    out.append(ipam.ipaddress.ip_network(entry["Subnet"], strict=False))
                except (KeyError, ValueError):
                    pass
        return out

    # -- API documents ---------------------------------------------------

    def document(self, record: dict, containers: bool = True) -> dict:
        doc = {k: record[k] for k in ("Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM",
                                       "Internal", "Attachable", "Ingress", "ConfigFrom", "ConfigOnly")}
        doc["Containers"] = {}
        if containers:
            for cid, ep in record["Endpoints"].items():
                c = self.containers.by_id.get(cid) if self.containers is not None else None
                doc["Containers"][cid] = {
                    "Name": c.name.lstrip("/") if c is not None else ep["Name"],
                    "EndpointID": ep["EndpointID"],
                    "MacAddress": ep.get("MacAddress", ""),
                    "IPv4Address": "%s/%d" % (ep["IPAddress"], ep["IPPrefixLen"]),
                    "IPv6Address": ("%s/%d" % (ep["GlobalIPv6Address"], ep["GlobalIPv6PrefixLen"])
                                    if ep.get("GlobalIPv6Address") else ""),
                }
        doc["Options"] = dict(record["Options"])
        doc["Labels"] = dict(record["Labels"])
        return doc

    # -- INetworkBackend -------------------------------------------------

    async def list(self, filters: Filters) -> List[dict]:
        filters.validate(LIST_FILTERS)
        if filters.contains("type"):
            for value in filters.get("type"):
                if value not in ("custom", "builtin"):
                    raise InvalidParameter("invalid filter: 'type'='%s'" % value)
        dangling = None
        if filters.contains("dangling"):
            dangling = filters.get_bool_or_default("dangling", False)
        out = []
        for record in sorted(self.networks.values(), key=lambda r: r.get("CreatedNs", 0)):
            if not filters.match("name", record["Name"]):
                continue
            if not filters.match("id", record["Id"]):
                continue
            if filters.contains("driver") and not filters.exact_match("driver", record["Driver"]):
                continue
            if filters.contains("scope") and not filters.exact_match("scope", "local"):
                continue
            if not filters.match_kv_list("label", record["Labels"]):
                continue
            builtin = record["Name"] in PREDEFINED
            if filters.contains("type") and not filters.exact_match("type", "builtin" if builtin else "custom"):
                continue
            if dangling is not None:
                unused = not builtin and not record["Endpoints"]
                if unused != dangling:
                    continue
            out.append(self.document(record, containers=False))
        return out

    async def inspect(self, ref: str, verbose: bool = False) -> dict:
        return self.document(self.resolve(ref))

    async def create(self, body: dict) -> dict:
        name = body.get("Name") or ""
        if not name or not NAME_RE.match(name):
            raise InvalidParameter("invalid name: %s" % name)
        if name in PREDEFINED:
            raise Forbidden("operation is not permitted on predefined %s network " % name)
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            if driver in ("host", "null"):
                raise Forbidden("only one instance of \"%s\" network is allowed" % driver)
            raise NotFound("plugin %s not found" % golang.quote(driver))
        warning = ""
        existing = self.find_name(name)
        if existing is not None:
            if body.get("CheckDuplicate"):
                raise Conflict("network with name %s already exists" % name)
            warning = "Network with name %s (id : %s) already exists" % (name, existing["Id"])
        ipam_body = body.get("IPAM") or {}
        if (ipam_body.get("Driver") or "default") != "default":
            raise NotFound("plugin %s not found" % golang.quote(ipam_body["Driver"]))
        taken = self.routes() + self._subnets()
        config = []
        for entry in ipam_body.get("Config") or []:
            if not entry.get("Subnet"):
                raise InvalidParameter("an IPAM configuration needs a subnet")
            checked = ipam.check_config(entry, taken)
            taken.append(ipam.ipaddress.ip_network(checked["Subnet"], strict=False))
            config.append(checked)
        versions = {ipam.ipaddress.ip_network(e["Subnet"], strict=False).version for e in config}
        if body.get("EnableIPv6") and 6 not in versions:
            # dockerd 20.10 has no default IPv6 pool.
            raise NotFound("could not find an available, non-overlapping IPv6 address pool "
                           "among the defaults to assign to the network")
        if 4 not in versions:
            subnet = ipam.choose_subnet(taken, self.pools)
            config = [{"Subnet": str(subnet), "Gateway": ipam.gateway_of({"Subnet": str(subnet)})}] + config
        record = self._record(name, "bridge", config)
        record["EnableIPv6"] = bool(body.get("EnableIPv6"))
        record["Internal"] = bool(body.get("Internal"))
        record["Attachable"] = bool(body.get("Attachable"))
        record["Options"] = dict(body.get("Options") or {})
        record["Labels"] = dict(body.get("Labels") or {})
        record["IPAM"]["Options"] = ipam_body.get("Options") or None
        record["Interface"] = record["Options"].get(BRIDGE_NAME_OPTION) or "br-" + record["Id"][:12]
        if len(record["Interface"]) > 15:
            raise InvalidParameter("bridge name %s is too long" % record["Interface"])
        if any(r["Interface"] == record["Interface"] for r in self.networks.values()):
            raise Forbidden("bridge name %s is in use by another network" % record["Interface"])
        if await self._thread(_not_a_bridge, record["Interface"]):
            raise Forbidden("the host's interface %s is not a bridge" % record["Interface"])
        record["DNS"] = True
        await self.save(record)
        self.networks[record["Id"]] = record
        self.events.log("network", "create", record["Id"], {"name": name, "type": "bridge"})
        return {"Id": record["Id"], "Warning": warning}

    async def remove(self, ref: str) -> None:
        record = self.resolve(ref)
        if record["Name"] in PREDEFINED:
            raise Forbidden("%s is a pre-defined network and cannot be removed" % record["Name"])
        if record["Endpoints"]:
            raise Forbidden("error while removing network: network %s id %s has active endpoints"
                            % (record["Name"], record["Id"]))
        await self._delete(record)

    async def _delete(self, record: dict) -> None:
        if record["Interface"]:
            # Its bridge and rules, kept since its last container left.
            await self.release_network(record)
        self.networks.pop(record["Id"], None)
        try:
            await self._thread(os.unlink, self._path(record))
        except FileNotFoundError:
            pass
        # (Empty, or left by a kill: its endpoints are gone with the network.)
        await self._thread(shutil.rmtree, self._endpoints_dir(record), True)
        self.events.log("network", "destroy", record["Id"], {"name": record["Name"], "type": record["Driver"]})

    async def prune(self, filters: Filters) -> dict:
        filters.validate(PRUNE_FILTERS)
        until = None
        for value in filters.get("until"):
            until = get_timestamp(value, time.time_ns())
        deleted = []
        for record in sorted(list(self.networks.values()), key=lambda r: r.get("CreatedNs", 0)):
            if record["Name"] in PREDEFINED or record["Endpoints"]:
                continue
            if not filters.match_kv_list("label", record["Labels"]):
                continue
            if filters.contains("label!") and any(
                    Filters({"label": [v]}).match_kv_list("label", record["Labels"])
                    for v in filters.get("label!")):
                continue
            if until is not None and record.get("CreatedNs", 0) >= until:
                continue
            await self._delete(record)
            deleted.append(record["Name"])
        self.events.log("network", "prune", "", {"reclaimed": "0"})
        return {"NetworksDeleted": deleted or None}
