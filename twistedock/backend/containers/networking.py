"""
A container's networks, as moby's daemon/container_operations.go: the
networks a container joins (its NetworkMode's, then those connected later,
kept in its record's NetworkingConfig), a persistent network namespace made
for a run (its sandbox), joined to bridge networks through the network
store, left at the run's end; C{container:<id>} joins the other container's
namespace; C{host} none at all.  C{none} gets its namespace from the daemon
too, with loopback only (up), as dockerd's sandbox: runc then marks it
external in a checkpoint, so CRIU neither dumps nor restores it (its
routes, rules and iptables: ~30 ms of each checkpoint and restore), and
inspect's SandboxKey names it.  NetworkSettings as inspect shows them.
"""

import os
import secrets
from typing import List, Optional, Tuple

from twisted.internet.defer import ensureDeferred

from ...errors import Conflict, Forbidden, InternalError, InvalidParameter, NotFound
from ...logs import Logger
from ... import versions
from .. import spec
from ..networks import ipam, ports, resolvconf
from ..runtime import rootfs
from .record import Container

log = Logger()

#: In a record's NetworkingConfig: the IDs of networks of its NetworkMode
#: the container was disconnected from (not joined at its next start).
LEFT_KEY = "TwistedockLeft"


def _listdir(directory: str) -> List[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


async def settled(d) -> None:
    """Wait for C{d}, whatever its outcome (its failure is someone else's)."""
    try:
        await d
    except BaseException:
        pass


class NetworkingMixin:
    """The network part of L{ContainerBackend}; C{self.networks} is the
    L{NetworkStore} (None: containers get loopback only, as C{none})."""

    def netns_path(self, c: Container) -> str:
        return os.path.join(self.exec_root, "netns", c.id)

    def _mode(self, c: Container) -> str:
        mode = c.host_config.get("NetworkMode") or "default"
        if mode == "default":
            if self.networks is None or not self.networks.default_bridge_enabled:
                return "none"
            return "bridge"
        return mode

    def _bridged(self, c: Container) -> bool:
        mode = self._mode(c)
        return self.networks is not None and mode not in ("none", "host") and not mode.startswith("container:")

    def _sandboxed(self, c: Container) -> bool:
        """Whether the run gets a namespace of the daemon's (at
        L{netns_path}): all but C{host} and C{container:} modes, when the
        daemon has networks (else runc makes a new one)."""
        mode = self._mode(c)
        return self.networks is not None and mode != "host" and not mode.startswith("container:")

    def _joins(self, c: Container) -> List[Tuple[dict, dict]]:
        """(network record, EndpointSettings asked) for each network the
        container joins, its NetworkMode's first. NotFound at start, as dockerd."""
        mode = self._mode(c)
        configs = dict((c.networking_config or {}).get("EndpointsConfig") or {})
        primary = self.networks.resolve(mode)
        asked = {}
        for key in (c.host_config.get("NetworkMode") or "default", mode, primary["Name"]):
            asked = configs.pop(key, None) or asked
        left = set((c.networking_config or {}).get(LEFT_KEY) or ())
        out = [] if primary["Id"] in left else [(primary, asked)]
        for name, asked in configs.items():
            try:
                record = self.networks.resolve(name)
            except NotFound:
                raise NotFound("network %s not found" % name)
            if record["Id"] != primary["Id"]:
                out.append((record, asked or {}))
        return out

    def _check_network(self, c: Container) -> None:
        """dockerd looks the network (or the container whose network is
        joined) up at start, not at create."""
        mode = self._mode(c)
        if mode.startswith("container:"):
            other = self.get(mode[len("container:"):])
            if other.id == c.id:
                raise InternalError("cannot join own network")
            if not other.state.running:
                raise Conflict("cannot join network of a non running container: %s" % other.id)
            if other.state.restarting:
                raise Conflict("Container %s is restarting, wait until the container is running" % other.id)
        elif mode in ("none", "host"):
            return
        elif self.networks is None:
            raise NotFound("network %s not found" % (mode,))
        else:
            self._joins(c)

    def joined_netns(self, c: Container) -> Optional[str]:
        """The namespace path the run's spec names (None: runc makes a new one)."""
        mode = self._mode(c)
        if mode.startswith("container:"):
            other = self.get(mode[len("container:"):])
            if self._sandboxed(other) and os.path.exists(self.netns_path(other)):
                return self.netns_path(other)
            return "/proc/%d/ns/net" % other.state.pid
        if self._sandboxed(c):
            return self.netns_path(c)
        return None

    async def network_up(self, c: Container, prepared: bool = False) -> List[str]:
        """The run's namespace made, its ports published and its endpoints
        reserved (addresses, recorded); netavark's setup of the namespace
        started, to be awaited by L{network_ready} before the container's
        process runs (it overlaps the bundle and C{runc create}). The
        lines for /etc/hosts (its own addresses). A run on no network
        (C{none}, or disconnected from all) gets its namespace with
        loopback up (runc's, for a namespace it makes); C{prepared}: the
        one L{prepare_restore} made so is still there, and is taken as
        it is (three processes fewer inside a migration's downtime)."""
        if not self._sandboxed(c):
            return []
        joins = self._joins(c) if self._bridged(c) else []
        path = self.netns_path(c)
        if prepared and await self.run_in_thread(self.network_kept, c):
            return []
        await self.network_down(c)
        await self.networks.driver.create_netns(path)
        if not joins:
            try:
                await self.networks.driver.loopback_up(path)
            except BaseException:
                await self.networks.driver.remove_netns(path)
                raise
            return []
        proxies = self.networks.proxies
        endpoint_id = secrets.token_hex(32)
        try:
            wanted = ports.wanted(c.host_config, c.config.get("ExposedPorts"))
            upstream = await self.upstream_dns(c)
            # Ports chosen, bound and recorded (by the reservation) by one start at a time.
            async with self.networks.ports_lock:
                mappings = ports.publish(proxies, c.id, wanted, self.networks.published(),
                                         "%s (%s)" % (c.name.lstrip("/"), endpoint_id)) if wanted else []
                pairs = await self.networks.reserve(c.id, c.name, path, joins,
                                                    mac_address=c.config.get("MacAddress") or "",
                                                    ports=mappings, endpoint_id=endpoint_id)
        except BaseException:
            proxies.close(c.id)
            await self.networks.driver.remove_netns(path)
            raise
        self._network_setups[c.id] = ensureDeferred(self._configure(c, path, pairs, upstream))
        if mappings:
            proxies.forward(c.id, mappings, pairs[0][1]["IPAddress"])
        hostname = c.config.get("Hostname") or c.id[:12]
        return ["%s:%s" % (hostname, address) for _, ep in pairs
                for address in (ep["IPAddress"], ep.get("GlobalIPv6Address")) if address]

    def network_kept(self, c: Container) -> bool:
        """(Blocking, small.)  Whether L{network_up} with C{prepared} leaves
        the run's network as it is now: no namespace of the daemon's, or
        the one a restore's preparation made off the bridges, still
        mounted (a daemon restart sweeps it away)."""
        if not self._sandboxed(c):
            return True
        return not self._bridged(c) and os.path.ismount(self.netns_path(c))

    async def _configure(self, c: Container, path: str, pairs, upstream) -> None:
        """netavark's setup of the reserved endpoints, then 127.0.0.11
        redirected in the namespace to the embedded DNS server."""
        await self.networks.configure(c.id, c.name, path, pairs, upstream)
        gateway = self.dns_gateway(c)
        if gateway:
            await self.networks.driver.redirect_dns(path, gateway)

    async def network_ready(self, c: Container) -> None:
        """netavark's setup of the run's namespace done (its failure raised)."""
        d = self._network_setups.pop(c.id, None)
        if d is not None:
            await d

    def reopen_ports(self, c: Container) -> None:
        """A running container re-adopted at start-up (--live-restore):
        its published ports bound and forwarded again."""
        if self.networks is None:
            return
        pairs = [(record, ep) for record, ep in self.networks.endpoints_of(c.id) if ep.get("Ports")]
        for _, ep in pairs:
            for m in ep["Ports"]:
                try:
                    self.networks.proxies.bind(c.id, m["host_ip"], m["host_port"], m["protocol"])
                except Exception as e:
                    log.warn("published port {ip}:{port} of {id}: {e}", ip=m["host_ip"] or "0.0.0.0",
                             port=m["host_port"], id=c.short_id, e=e)
                    continue
                self.networks.proxies.forward(c.id, [m], ep["IPAddress"], last_only=True)

    async def network_down(self, c: Container) -> None:
        """The run's endpoints left and its namespace removed (idempotent)."""
        if self.networks is None:
            return
        # A setup still under way ends first (its failure is reported by
        # the start that waits for it, or is moot now).
        pending = self._network_setups.pop(c.id, None)
        if pending is not None:
            await settled(pending)
        # The published ports released first: free once the container stops.
        self.networks.proxies.close(c.id)
        try:
            await self.networks.leave(c.id)
        except Exception as e:
            log.warn("network teardown of {id}: {e}", id=c.short_id, e=e)
        try:
            await self.networks.driver.remove_netns(self.netns_path(c))
        except Exception as e:
            log.warn("network namespace of {id}: {e}", id=c.short_id, e=e)

    async def sweep_networks(self) -> None:
        """At start-up, once the containers are recovered: what a crash left
        of networks that no running container owns undone. Endpoints of
        containers that do not run are torn down (their records were
        written before netavark ran), namespaces under <exec-root>/netns
        of no running container unmounted (their veths go with them), and
        the bridges, rules and anchors of networks without endpoints
        removed."""
        if self.networks is None:
            return
        running = {i for i, c in self.containers.items() if c.state.running}
        stale = {cid for record in self.networks.networks.values() for cid in record["Endpoints"]} - running
        for cid in sorted(stale):
            log.info("tearing down the network endpoints of {id} (not running)", id=cid[:12])
            self.networks.proxies.close(cid)
            try:
                await self.networks.leave(cid)
            except Exception as e:
                log.warn("network teardown of {id}: {e}", id=cid[:12], e=e)
        directory = os.path.join(self.exec_root, "netns")
        names = await self.run_in_thread(_listdir, directory)
        for name in names:
            if name not in running:
                log.info("removing the network namespace {name} (no running container)", name=name)
                await self.networks.driver.remove_netns(os.path.join(directory, name))
        await self.networks.release_unused()

    def extra_hosts(self, c: Container) -> List[str]:
        """/etc/hosts entries (name:address) beyond the container's own:
        ExtraHosts, "host-gateway" being the default bridge's gateway, and
        the legacy links of the default bridge ("alias id name" of each
        linked container's address)."""
        out = []
        gateway = ""
        if self.networks is not None and self.networks.default_bridge_enabled:
            gateway = ipam.gateway_of(ipam.entry_of(self.networks.resolve("bridge")))
        for entry in c.host_config.get("ExtraHosts") or []:
            name, _, address = entry.partition(":")
            out.append("%s:%s" % (name, gateway if address == "host-gateway" and gateway else address))
        for link in c.host_config.get("Links") or []:
            target, alias = spec.parse_link(link)
            other = self.get(target)
            if not other.state.running:
                raise Conflict("Cannot link to a non running container: /%s AS %s/%s"
                               % (other.name.lstrip("/"), c.name if c.name.startswith("/") else "/" + c.name,
                                  alias))
            addresses = [ep["IPAddress"] for _, ep in (self.networks.endpoints_of(other.id)
                                                       if self.networks is not None else [])]
            if addresses:
                names = " ".join(dict.fromkeys([alias, other.id[:12], other.name.lstrip("/")]))
                out.append("%s:%s" % (names, addresses[0]))
        return out

    def dns_gateway(self, c: Container) -> Optional[str]:
        """Where the run's embedded DNS address is redirected: aardvark-dns
        on the gateway of its first network with name resolution."""
        if not self._bridged(c):
            return None
        for record, ep in self.networks.endpoints_of(c.id):
            if record.get("DNS"):
                return ep["Gateway"]
        return None

    def embedded_dns(self, c: Container) -> bool:
        """The run resolves names through 127.0.0.11 (a user network's; in
        C{container:} mode, the other container's)."""
        mode = self._mode(c)
        if mode.startswith("container:"):
            try:
                other = self.get(mode[len("container:"):])
            except NotFound:
                return False
            return other.id != c.id and self.dns_gateway(other) is not None
        return self.dns_gateway(c) is not None

    def host_resolv_conf(self) -> str:
        return self.networks.resolv_conf if self.networks is not None else "/etc/resolv.conf"

    async def upstream_dns(self, c: Container) -> List[str]:
        """The resolvers the embedded server forwards the run's other names
        to (dockerd's ExtServers): --dns, else the host's."""
        host = await self.run_in_thread(rootfs.read_host_file, self.host_resolv_conf())
        return resolvconf.external_servers(host, c.host_config.get("Dns") or ())

    async def refresh_dns(self, c: Container, had_embedded: bool) -> None:
        """After a connect or disconnect of a running container: the
        redirection pointed at a network it is still on; its resolv.conf
        pointed at the embedded server once it first joins a user network
        (as dockerd starts its resolver then)."""
        netns = self.netns_path(c)
        if not os.path.exists(netns):
            netns = "/proc/%d/ns/net" % c.state.pid
        await self.networks.driver.redirect_dns(netns, self.dns_gateway(c))
        if self.embedded_dns(c) and not had_embedded:
            hc = c.host_config
            text = await self.run_in_thread(
                rootfs.resolv_conf, hc.get("NetworkMode", "default"), hc.get("Dns"), hc.get("DnsSearch"),
                hc.get("DnsOptions"), self.host_resolv_conf(), True)
            await self.run_in_thread(rootfs.rewrite_resolv_conf, c.path_of("resolv.conf"), text)

    def published_ports(self, c: Container) -> list:
        if self.networks is None:
            return []
        return [m for _, ep in self.networks.endpoints_of(c.id) for m in ep.get("Ports") or ()]

    # -- connect and disconnect ---------------------------------------

    async def connect_network(self, network_ref: str, container_ref: str, endpoint_config: dict) -> None:
        if self.networks is None:
            raise NotFound("network %s not found" % network_ref)
        record = self.networks.resolve(network_ref)
        c = self.get(container_ref)
        async with self.lock(c):
            mode = self._mode(c)
            if "host" in (mode, record["Name"]):
                raise InvalidParameter("container cannot be disconnected from host network or connected "
                                       "to host network")
            if "none" in (mode, record["Name"]):
                raise InvalidParameter("container cannot be connected to multiple networks with one of the "
                                       "networks in private (none) mode")
            if mode.startswith("container:"):
                raise InvalidParameter("container sharing network namespace with another container or "
                                       "host cannot be connected to any other network")
            if c.state.running:
                if c.id in record["Endpoints"]:
                    raise Forbidden("endpoint with name %s already exists in network %s"
                                    % (c.name.lstrip("/"), record["Name"]))
                netns = self.netns_path(c)
                if not os.path.exists(netns):
                    netns = "/proc/%d/ns/net" % c.state.pid
                had_embedded = self.embedded_dns(c)
                await self.networks.join(c.id, c.name, netns, [(record, endpoint_config or {})],
                                         dns_servers=await self.upstream_dns(c))
                await self.refresh_dns(c, had_embedded)
            left = c.networking_config.get(LEFT_KEY) or []
            rejoined = record["Id"] in left
            if rejoined:
                # The NetworkMode's network, left before: joined again, with
                # the settings of this connect (Compose's aliases so).
                left.remove(record["Id"])
            if rejoined or not self._is_primary(c, record):
                configs = (c.networking_config or {}).get("EndpointsConfig") or {}
                configs[record["Name"]] = endpoint_config or {}
                c.networking_config["EndpointsConfig"] = configs
            await self.save(c)

    def _is_primary(self, c: Container, record: dict) -> bool:
        try:
            return self.networks.resolve(self._mode(c))["Id"] == record["Id"]
        except NotFound:
            return False

    def _joins_or_empty(self, c: Container):
        try:
            return self._joins(c)
        except NotFound:
            return []

    async def disconnect_network(self, network_ref: str, container_ref: str, force: bool) -> None:
        if self.networks is None:
            raise NotFound("network %s not found" % network_ref)
        record = self.networks.resolve(network_ref)
        c = self.get(container_ref)
        async with self.lock(c):
            if record["Name"] == "host" or self._mode(c) == "host":
                raise InvalidParameter("container cannot be disconnected from host network or connected "
                                       "to host network")
            configs = (c.networking_config or {}).get("EndpointsConfig") or {}
            names = [n for n in configs if n in (record["Name"], record["Id"])]
            left = c.networking_config.get(LEFT_KEY) or []
            primary = self._is_primary(c, record) and record["Id"] not in left
            running_ep = c.id in record["Endpoints"]
            if not names and not primary and not running_ep:
                raise Forbidden("container %s is not connected to the network %s" % (c.id, record["Name"]))
            if running_ep:
                await self.networks.leave(c.id, [record])
                if record.get("DNS") and c.state.running:
                    await self.refresh_dns(c, True)
            for n in names:
                configs.pop(n, None)
            if primary:
                # NetworkMode stays, as dockerd's; the network is not joined again.
                c.networking_config[LEFT_KEY] = left + [record["Id"]]
            await self.save(c)

    # -- inspect and list -----------------------------------------------

    def network_summary(self, c: Container, doc: dict) -> dict:
        """The list's Ports and NetworkSettings.Networks filled in."""
        if self.networks is None or not self._bridged(c):
            return doc
        # dockerd lists no ports for a container that does not run.
        doc["Ports"] = (ports.summary_ports(self.published_ports(c), c.config.get("ExposedPorts"))
                        if c.state.running else [])
        doc["NetworkSettings"] = {"Networks": self.network_settings(c, {})["Networks"]}
        return doc

    def network_settings(self, c: Container, settings: dict, api_version: str = "") -> dict:
        """NetworkSettings with the networks' endpoints filled in (DNSNames
        from API 1.44, as dockerd 25)."""
        if self.networks is None or not self._bridged(c):
            if c.state.running and "SandboxKey" in settings and self._sandboxed(c):
                settings["SandboxKey"] = self.netns_path(c)
            return settings
        eps = {r["Id"]: (r, ep) for r, ep in self.networks.endpoints_of(c.id)}
        networks = {}
        for record, asked in self._joins_or_empty(c):
            _, ep = eps.get(record["Id"], (record, None))
            doc = self.networks.public_endpoint(record, ep)
            if ep is None:
                # Not running: what was asked, no endpoint (dockerd's NetworkID is empty too).
                doc["Aliases"] = (asked or {}).get("Aliases")
                doc["IPAMConfig"] = (asked or {}).get("IPAMConfig")
                doc["NetworkID"] = doc["EndpointID"] = doc["Gateway"] = doc["IPAddress"] = ""
                doc["MacAddress"] = (asked or {}).get("MacAddress") or ""
            if api_version and versions.less_than(api_version, "1.44"):
                doc.pop("DNSNames", None)
            networks[record["Name"]] = doc
        settings["Networks"] = networks
        settings["Ports"] = (ports.inspect_ports(self.published_ports(c), c.config.get("ExposedPorts"))
                             if c.state.running else {})
        first = next(iter(networks.values()), None)
        if first is not None and self._mode(c) == "bridge":
            # The default bridge's endpoint is also shown at the top level.
            for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress", "IPv6Gateway",
                        "GlobalIPv6Address", "GlobalIPv6PrefixLen"):
                settings[key] = first[key]
            settings["Bridge"] = self.networks.resolve("bridge")["Interface"] if first["IPAddress"] else ""
        if c.state.running and "SandboxKey" in settings:
            settings["SandboxKey"] = self.netns_path(c)
        return settings
