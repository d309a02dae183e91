"""
Endpoints: a container joining networks (addresses allocated, then one
C{netavark setup} of its namespace) and leaving them (C{netavark teardown},
addresses released). Called by the container backend at start, exit and
connect/disconnect; each endpoint's record is saved after each change
(L{store.NetworkStore.save_endpoint}: one small file, not the network's).
"""

import ipaddress
import secrets
from typing import Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import DeferredLock

from ...errors import Forbidden, InvalidParameter
from ...logs import Logger
from . import ipam, ports

log = Logger()

ICC_OPTION = "com.docker.network.bridge.enable_icc"


def mac_of(address: str) -> str:
    """dockerd's MAC address of an IPv4 address: 02:42 and its four bytes."""
    return "02:42:" + ":".join("%02x" % b for b in ipaddress.ip_address(address).packed)


def _ipv6(record: dict) -> bool:
    """The network gives its endpoints IPv6 addresses (EnableIPv6 and an
    IPv6 subnet)."""
    return bool(record.get("EnableIPv6")) and ipam.entry_of(record, 6) is not None


class EndpointsMixin:
    """The endpoint part of L{store.NetworkStore}."""

    _netavark_lock: Optional[DeferredLock] = None

    @property
    def netavark_lock(self) -> DeferredLock:
        # netavark calls one at a time: a bridge made by one setup is not
        # removed under another by a concurrent teardown.
        if self._netavark_lock is None:
            self._netavark_lock = DeferredLock()
        return self._netavark_lock

    _ports_lock: Optional[DeferredLock] = None

    @property
    def ports_lock(self) -> DeferredLock:
        """Held from the choice of a container's host ports to their record."""
        if self._ports_lock is None:
            self._ports_lock = DeferredLock()
        return self._ports_lock

    def endpoints_of(self, container_id: str) -> List[Tuple[dict, dict]]:
        """(network record, endpoint) of each network the container is joined to."""
        out = []
        for record in self.networks.values():
            ep = record["Endpoints"].get(container_id)
            if ep is not None:
                out.append((record, ep))
        out.sort(key=lambda pair: pair[1].get("Interface", ""))
        return out

    def _network_info(self, record: dict) -> dict:
        entries = [ipam.entry_of(record, 4)]
        if _ipv6(record):
            entries.append(ipam.entry_of(record, 6))
        mtu = (record.get("Options") or {}).get("com.docker.network.driver.mtu")
        options = {"mtu": mtu} if mtu and mtu != "1500" else {}
        return {
            "options": options,
            "name": record["Id"][:12] if record["Name"] not in ("bridge",) else "bridge",
            "id": record["Id"],
            "driver": "bridge",
            "network_interface": record["Interface"],
            "created": record["Created"],
            "subnets": [{"subnet": str(ipaddress.ip_network(entry["Subnet"], strict=False)),
                         "gateway": ipam.gateway_of(entry)} for entry in entries],
            "ipv6_enabled": len(entries) > 1,
            "internal": bool(record["Internal"]),
            "dns_enabled": bool(record.get("DNS")),
            "ipam_options": {"driver": "host-local"},
        }

    def _options(self, container_id: str, container_name: str, pairs: Sequence[Tuple[dict, dict]],
                 dns_servers: Sequence[str] = ()) -> dict:
        networks, info = {}, {}
        for record, ep in pairs:
            key = self._network_info(record)["name"]
            names = ep.get("DNSNames") or []
            networks[key] = {
                "static_ips": [ep["IPAddress"]] + ([ep["GlobalIPv6Address"]] if ep.get("GlobalIPv6Address") else []),
                # Each name also as NAME.NETWORK, which dockerd's server answers.
                "aliases": [a for a in names if a != container_name] + ["%s.%s" % (a, record["Name"]) for a in names],
                "interface_name": ep["Interface"],
            }
            if ep.get("StaticMac"):
                networks[key]["static_mac"] = ep["StaticMac"]
            elif ep.get("MacAddress"):
                networks[key]["static_mac"] = ep["MacAddress"]
            info[key] = self._network_info(record)
        options = {"container_id": container_id, "container_name": container_name,
                   "networks": networks, "network_info": info}
        # Published ports go to netavark (kernel NAT) unless the userland
        # proxy carries them; the endpoint says which, for its teardown.
        mappings = [m for _, ep in pairs if ep.get("PortsNat", True) for m in ep.get("Ports") or ()]
        if mappings:
            options["port_mappings"] = ports.for_netavark(mappings)
        if dns_servers:
            # aardvark-dns forwards the container's other names to these.
            options["dns_servers"] = list(dns_servers)
        return options

    def published(self) -> List[dict]:
        """The port mappings of every endpoint."""
        return [m for record in self.networks.values() for ep in record["Endpoints"].values()
                for m in ep.get("Ports") or ()]

    async def join(self, container_id: str, container_name: str, netns: str,
                   joins: Sequence[Tuple[dict, dict]], mac_address: str = "",
                   ports: Sequence[dict] = (), endpoint_id: str = "",
                   dns_servers: Sequence[str] = ()) -> Dict[str, dict]:
        """Join C{netns} to each (network record, EndpointSettings asked)
        of C{joins}: L{reserve}, then L{configure} (C{dns_servers}: where the
        embedded DNS server forwards the names it does not know)."""
        pairs = await self.reserve(container_id, container_name, netns, joins, mac_address, ports, endpoint_id)
        await self.configure(container_id, container_name, netns, pairs, dns_servers)
        return {record["Name"]: ep for record, ep in pairs}

    async def reserve(self, container_id: str, container_name: str, netns: str,
                      joins: Sequence[Tuple[dict, dict]], mac_address: str = "",
                      ports: Sequence[dict] = (), endpoint_id: str = "") -> List[Tuple[dict, dict]]:
        """The endpoints of C{netns} on each (network record,
        EndpointSettings asked) of C{joins}: addresses allocated, recorded
        (saved before the host is changed: a daemon killed during the setup
        finds them at its next start, and tears down what was done); the
        (record, endpoint) pairs. C{ports} (their host side bound by the
        L{proxy.PortProxies}) are published on the first endpoint, whose
        ID is C{endpoint_id} when given."""
        name = container_name.lstrip("/")
        published = ports
        taken = {ep["Interface"] for _, ep in self.endpoints_of(container_id)}
        pairs: List[Tuple[dict, dict]] = []
        try:
            for record, asked in joins:
                if container_id in record["Endpoints"]:
                    raise Forbidden("endpoint with name %s already exists in network %s"
                                    % (name, record["Name"]))
                entry = ipam.entry_of(record, 4)
                asked_ipam = (asked or {}).get("IPAMConfig") or {}
                wanted = asked_ipam.get("IPv4Address") or None
                wanted6 = asked_ipam.get("IPv6Address") or None
                if (wanted or wanted6) and record["Name"] == "bridge":
                    raise InvalidParameter("user specified IP address is supported on user defined "
                                           "networks only")
                used = {ep["IPAddress"] for ep in record["Endpoints"].values()}
                address = ipam.allocate(entry, used, wanted)
                entry6 = ipam.entry_of(record, 6) if _ipv6(record) else None
                if wanted6 and entry6 is None:
                    raise InvalidParameter("user specified IP address is supported only when connecting to "
                                           "networks with user configured subnets")
                address6 = ipam.allocate(entry6, {ep.get("GlobalIPv6Address") for ep in
                                                  record["Endpoints"].values()}, wanted6) if entry6 else ""
                index = 0
                while "eth%d" % index in taken:
                    index += 1
                taken.add("eth%d" % index)
                aliases = list((asked or {}).get("Aliases") or [])
                dns = [] if record["Name"] == "bridge" else [name, container_id[:12]] + aliases
                ep = {
                    "Name": name,
                    "EndpointID": (endpoint_id if not pairs and endpoint_id else secrets.token_hex(32)),
                    "IPAddress": address,
                    "IPPrefixLen": ipaddress.ip_network(entry["Subnet"], strict=False).prefixlen,
                    "Gateway": ipam.gateway_of(entry),
                    "GlobalIPv6Address": address6,
                    "GlobalIPv6PrefixLen": (ipaddress.ip_network(entry6["Subnet"], strict=False).prefixlen
                                            if entry6 else 0),
                    "IPv6Gateway": ipam.gateway_of(entry6) if entry6 else "",
                    "StaticMac": (asked or {}).get("MacAddress") or (mac_address if not pairs else ""),
                    "Aliases": aliases or None,
                    "DNSNames": dns or None,
                    "IPAMConfig": (asked or {}).get("IPAMConfig") or None,
                    "Links": (asked or {}).get("Links") or None,
                    "Interface": "eth%d" % index,
                    "Netns": netns,
                    "Ports": list(published) if not pairs else [],
                    "PortsNat": bool(published) and not pairs and not self.proxies.userland,
                }
                # dockerd's MAC address, made of the IPv4 address, unless one
                # is asked: known before the setup, so one record says all.
                ep["MacAddress"] = ep["StaticMac"] or mac_of(address)
                record["Endpoints"][container_id] = ep
                pairs.append((record, ep))
            for record, _ in pairs:
                await self.save_endpoint(record, container_id)
        except BaseException:
            await self._unreserve(container_id, pairs)
            raise
        return pairs

    async def _unreserve(self, container_id: str, pairs) -> None:
        for record, ep in pairs:
            if record["Endpoints"].get(container_id) is ep:
                record["Endpoints"].pop(container_id, None)
                await self.save_endpoint_or_log(record, container_id)

    async def configure(self, container_id: str, container_name: str, netns: str, pairs,
                        dns_servers: Sequence[str] = ()) -> None:
        """netavark's setup of the reserved endpoints C{pairs} in C{netns}
        (the bridge kept, the port isolated without inter-container
        traffic; C{dns_servers}: where aardvark-dns forwards the names it
        does not know); on failure the endpoints are released."""
        if not pairs:
            return
        name = container_name.lstrip("/")
        try:
            async with self.netavark_lock:
                await self.driver.setup(netns, self._options(container_id, name, pairs, dns_servers))
                try:
                    for record, ep in pairs:
                        await self.keep_bridge(record)
                        if (record.get("Options") or {}).get(ICC_OPTION) == "false":
                            await self.driver.isolate(netns, ep["Interface"], record["Interface"])
                except BaseException:
                    await self.driver.teardown(netns, self._options(container_id, name, pairs))
                    raise
        except BaseException:
            await self._unreserve(container_id, pairs)
            raise
        for record, _ in pairs:
            self.events.log("network", "connect", record["Id"],
                            {"container": container_id, "name": record["Name"], "type": "bridge"})

    async def keep_bridge(self, record: dict) -> None:
        """The network's bridge kept when its last container leaves (the
        netavark lock held)."""
        try:
            await self.driver.anchor(record["Interface"])
        except Exception as e:
            log.warn("{e}", e=e)

    async def release_network(self, record: dict) -> None:
        """The network's bridge, rules and anchor removed (it has no
        endpoint left), the netavark lock taken."""
        async with self.netavark_lock:
            if record["Endpoints"]:
                return
            # No aardvark-dns entry to remove for the stand-in container.
            info = dict(self._network_info(record), dns_enabled=False)
            # An address of each of its subnets (a dual-stack network's
            # IPv6 rules go with the IPv6 one).
            ips = [str(ipaddress.ip_network(s["subnet"]).broadcast_address - 1) for s in info["subnets"]]
            options = {"container_id": "0" * 64, "container_name": "twistedock-release",
                       "networks": {info["name"]: {"static_ips": ips, "interface_name": "eth0"}},
                       "network_info": {info["name"]: info}}
            try:
                await self.driver.release(record["Interface"], options)
            except Exception as e:
                log.warn("releasing the bridge {bridge}: {e}", bridge=record["Interface"], e=e)

    async def release_unused(self) -> None:
        """Every bridge network without endpoints released (at start-up,
        after a crash, and when the daemon stops)."""
        for record in list(self.networks.values()):
            if record["Driver"] == "bridge" and record["Interface"] and not record["Endpoints"]:
                await self.release_network(record)

    async def save_endpoint_or_log(self, record: dict, container_id: str) -> None:
        try:
            await self.save_endpoint(record, container_id)
        except Exception as e:
            log.warn("network record {name}: {e}", name=record["Name"], e=e)

    async def leave(self, container_id: str, records: Optional[Sequence[dict]] = None) -> None:
        """Tear down the container's endpoints (on C{records}, else on
        every network) and release their addresses."""
        pairs = [(r, ep) for r, ep in self.endpoints_of(container_id)
                 if records is None or r["Id"] in {x["Id"] for x in records}]
        if not pairs:
            return
        netns = pairs[0][1].get("Netns", "")
        try:
            async with self.netavark_lock:
                await self.driver.teardown(netns, self._options(container_id, pairs[0][1]["Name"], pairs))
        finally:
            for record, ep in pairs:
                record["Endpoints"].pop(container_id, None)
                await self.save_endpoint(record, container_id)
                self.events.log("network", "disconnect", record["Id"],
                                {"container": container_id, "name": record["Name"], "type": "bridge"})

    async def rename(self, container_id: str, old: str, new: str) -> None:
        """A container renamed: its endpoints' names, and the name the
        embedded DNS server answers for (the old one no longer)."""
        for record, ep in self.endpoints_of(container_id):
            ep["Name"] = new
            if ep.get("DNSNames"):
                ep["DNSNames"] = list(dict.fromkeys(new if n == old else n for n in ep["DNSNames"]))
            if record.get("DNS"):
                async with self.netavark_lock:
                    await self.driver.rename_dns(self._network_info(record)["name"], container_id, old, new)
            await self.save_endpoint(record, container_id)

    def public_endpoint(self, record: dict, ep: Optional[dict]) -> dict:
        """EndpointSettings as inspect shows it (empty when not running)."""
        ep = ep or {}
        return {
            "IPAMConfig": ep.get("IPAMConfig"),
            "Links": ep.get("Links"),
            "Aliases": ep.get("Aliases"),
            "NetworkID": record["Id"],
            "EndpointID": ep.get("EndpointID", ""),
            "Gateway": ep.get("Gateway", ""),
            "IPAddress": ep.get("IPAddress", ""),
            "IPPrefixLen": ep.get("IPPrefixLen", 0),
            "IPv6Gateway": ep.get("IPv6Gateway", ""),
            "GlobalIPv6Address": ep.get("GlobalIPv6Address", ""),
            "GlobalIPv6PrefixLen": ep.get("GlobalIPv6PrefixLen", 0),
            "MacAddress": ep.get("MacAddress", ""),
            "DriverOpts": None,
            "DNSNames": ep.get("DNSNames"),
        }
