"""
IP address management, kept by twistedock (netavark is given fixed
addresses): a network's pool chosen from dockerd's default address pools
avoiding subnets already routed on the host or used by another network, a
request's IPAM config checked as libnetwork's default IPAM does, and one
address taken per endpoint (the gateway and auxiliary addresses excepted).
Pure functions; the routes of the host are read by L{host_routes}.
"""

import ipaddress
from typing import Iterable, List, Optional, Sequence, Set

from ...errors import Forbidden, InvalidParameter, Unavailable

IPv4Network = ipaddress.IPv4Network

#: dockerd's default address pools (base, size): 172.17-31.0.0/16, then
#: 192.168.0.0/16 in /20s.
DEFAULT_POOLS = (("172.17.0.0/16", 16), ("192.168.0.0/16", 20))


def pool_subnets(pools: Sequence = DEFAULT_POOLS) -> Iterable[IPv4Network]:
    """The candidate subnets of the pools, in dockerd's order."""
    for base, size in pools:
        net = ipaddress.ip_network(base, strict=False)
        if size == 16 and str(net) == "172.17.0.0/16":
            # dockerd's first default pool is 172.17.0.0/16 .. 172.31.0.0/16.
            for second in range(17, 32):
                yield ipaddress.ip_network("172.%d.0.0/16" % second)
            continue
        yield from net.subnets(new_prefix=size)


def host_routes(path: str = "/proc/net/route") -> List[IPv4Network]:
    """The IPv4 subnets routed on the host (the default route left out)."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = int(fields[1], 16).to_bytes(4, "little")
        mask = int(fields[7], 16).to_bytes(4, "little")
        if mask == b"\0\0\0\0":
            continue
        out.append(ipaddress.ip_network("%s/%s" % (ipaddress.IPv4Address(dest), ipaddress.IPv4Address(mask)),
                                        strict=False))
    return out


def choose_subnet(taken: Iterable[IPv4Network], pools: Sequence = DEFAULT_POOLS) -> IPv4Network:
    """The first pool subnet that overlaps none of C{taken}."""
    taken = list(taken)
    for candidate in pool_subnets(pools):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise Unavailable("could not find an available, non-overlapping IPv4 address pool "
                      "among the defaults to assign to the network")


def check_config(entry: dict, taken: Iterable[IPv4Network]) -> dict:
    """One IPAM.Config entry checked (Subnet, IPRange, Gateway,
    AuxiliaryAddresses) as libnetwork does; the normalised entry."""
    raw = entry.get("Subnet") or ""
    try:
        subnet = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise InvalidParameter("Invalid subnet %s : invalid CIDR address: %s" % (raw, raw))
    for t in taken:
        if subnet.overlaps(t):
            raise Forbidden("Pool overlaps with other one on this address space")
    out = {"Subnet": raw}
    if entry.get("IPRange"):
        try:
            ip_range = ipaddress.ip_network(entry["IPRange"], strict=False)
        except ValueError:
            raise InvalidParameter("Invalid range %s : invalid CIDR address: %s"
                                   % (entry["IPRange"], entry["IPRange"]))
        if not ip_range.subnet_of(subnet):
            raise InvalidParameter("Invalid range %s : out of the subnet %s" % (entry["IPRange"], raw))
        out["IPRange"] = entry["IPRange"]
    if entry.get("Gateway"):
        gateway = _address(entry["Gateway"], "gateway")
        if gateway not in subnet:
            raise Forbidden("failed to allocate gateway (%s): Requested address is out of range"
                            % entry["Gateway"])
        out["Gateway"] = entry["Gateway"]
    aux = entry.get("AuxiliaryAddresses") or {}
    for name, value in aux.items():
        if _address(value, "auxiliary address") not in subnet:
            raise InvalidParameter("auxiliary address: (%s:%s) must belong to the master pool: %s"
                                   % (name, value, raw))
    if aux:
        out["AuxiliaryAddresses"] = dict(aux)
    return out


def _address(value: str, what: str):
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise InvalidParameter("invalid %s address: %s" % (what, value))


def entry_of(record: dict, version: int = 4) -> Optional[dict]:
    """The network's first IPAM.Config entry of IP C{version}."""
    for entry in record["IPAM"]["Config"]:
        try:
            if ipaddress.ip_network(entry["Subnet"], strict=False).version == version:
                return entry
        except (KeyError, ValueError):
            continue
    return None


def gateway_of(entry: dict) -> str:
    """The gateway: the configured one, else the subnet's first address."""
    if entry.get("Gateway"):
        return entry["Gateway"]
    return str(next(ipaddress.ip_network(entry["Subnet"], strict=False).hosts()))


def allocate(entry: dict, used: Set[str], wanted: Optional[str] = None) -> str:
    """One address of the entry's subnet (its IPRange when given) not in
    C{used}, the gateway or the auxiliary addresses: C{wanted} when given."""
    subnet = ipaddress.ip_network(entry["Subnet"], strict=False)
    reserved = set(used) | {gateway_of(entry)} | set((entry.get("AuxiliaryAddresses") or {}).values())
    if wanted:
        address = _address(wanted, "IP")
        if address not in subnet:
            raise InvalidParameter("no configured subnet or ip-range contain the IP address %s" % wanted)
        if wanted in reserved:
            raise Forbidden("Address already in use")
        return wanted
    pool = ipaddress.ip_network(entry["IPRange"], strict=False) if entry.get("IPRange") else subnet
    for host in pool:
        if host in (subnet.network_address, subnet.broadcast_address) and subnet.prefixlen < 31:
            continue
        if subnet.version == 6 and host == subnet.network_address:
            continue
        if str(host) not in reserved:
            return str(host)
    raise Unavailable("no available IPv%d addresses on this network's address pools: %s"
                      % (subnet.version, entry["Subnet"]))
