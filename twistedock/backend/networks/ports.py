"""
Published ports: a container's PortBindings (and, with PublishAllPorts, its
ExposedPorts) made into port mappings (netavark's fields), each bound on the
host by a listener of L{proxy.PortProxies} (the userland proxy, or a hold of
the port when the kernel's NAT carries the traffic); an empty HostPort gets
an ephemeral port as dockerd's port allocator gives them (the local port
range, upwards from the last one given), a range of host ports its first
free one; a port published by another container or bound on the host is
refused with dockerd's messages. And the Ports views of inspect and list.
"""

import errno
from typing import Dict, Iterable, List, Optional, Tuple

from ...errors import InternalError
from .proxy import BindError

#: netavark's PortMapping fields (what a mapping is given to netavark with).
MAPPING_FIELDS = ("container_port", "protocol", "host_ip", "host_port", "range")


def _split(port: str) -> Tuple[int, str]:
    number, _, proto = port.partition("/")
    return int(number.split("-")[0]), (proto or "tcp")


def _host_ports(value: str) -> Tuple[int, int]:
    """HostPort "", "8080" or "8000-8010": (first, last); (0, 0) for any."""
    if not value:
        return 0, 0
    first, _, last = value.partition("-")
    return int(first), int(last or first)


def wanted(host_config: dict, exposed: Optional[dict]) -> List[dict]:
    """(container port, proto, host ip, host port or 0, last host port of a
    range) asked for."""
    out = []
    bindings = dict(host_config.get("PortBindings") or {})
    if host_config.get("PublishAllPorts"):
        for port in exposed or {}:
            bindings.setdefault(port, [{"HostIp": "", "HostPort": ""}])
    for port in sorted(bindings):
        number, proto = _split(port)
        for binding in bindings[port] or [{}]:
            binding = binding or {}
            first, last = _host_ports(binding.get("HostPort") or "")
            m = {"container_port": number, "protocol": proto, "host_ip": binding.get("HostIp") or "",
                 "host_port": first, "range": 1}
            if last != first:
                m["host_port_end"] = last
            out.append(m)
    return out


def local_port_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> Tuple[int, int]:
    """The kernel's ephemeral port range, dockerd's range for host ports."""
    try:
        with open(path) as f:
            first, last = f.read().split()[:2]
        return int(first), int(last)
    except (OSError, ValueError):
        return 49153, 65535


def _taken(published: Iterable[dict], ip: str, port: int, proto: str) -> bool:
    return any(m["host_port"] == port and m["protocol"] == proto
               and ((m["host_ip"] or "0.0.0.0") == ip or "0.0.0.0" in (m["host_ip"] or "0.0.0.0", ip))
               for m in published)


def publish(proxies, container_id: str, asked: List[dict], published: Iterable[dict],
            endpoint: str) -> List[dict]:
    """Bind a listener of C{proxies} for each mapping of C{asked}; the
    mappings with their host ports. Refused as dockerd (C{endpoint}: "name
    (endpoint ID)") when a port is published by another container or bound
    on the host; then nothing stays bound."""
    published = list(published)
    out = []
    try:
        for m in asked:
            m = dict(m)
            last = m.pop("host_port_end", m["host_port"])
            first = m["host_port"]
            ip = m["host_ip"] or "0.0.0.0"
            if m["host_port"] and last == m["host_port"]:
                if _taken(published, ip, m["host_port"], m["protocol"]):
                    raise InternalError("driver failed programming external connectivity on endpoint %s: "
                                        "Bind for %s:%d failed: port is already allocated"
                                        % (endpoint, ip, m["host_port"]))
                _bind(proxies, container_id, m, endpoint, ip)
            else:
                candidates = (range(first, last + 1) if first
                              else proxies.ephemeral_candidates(m["protocol"]))
                for port in candidates:
                    if _taken(published, ip, port, m["protocol"]):
                        continue
                    m["host_port"] = port
                    try:
                        _bind(proxies, container_id, m, endpoint, ip, quiet=True)
                    except BindError:
                        continue
                    if not last:
                        proxies.last_port[m["protocol"]] = port
                    break
                else:
                    if not last:
                        raise InternalError("driver failed programming external connectivity on endpoint "
                                            "%s: all ports are allocated" % endpoint)
                    raise InternalError("driver failed programming external connectivity on endpoint %s: "
                                        "Bind for %s:%d-%d failed: port is already allocated"
                                        % (endpoint, ip, first, last))
            published.append(m)
            out.append(m)
    except BaseException:
        proxies.close(container_id)
        raise
    return out


def _bind(proxies, container_id: str, m: dict, endpoint: str, ip: str, quiet: bool = False) -> None:
    try:
        proxies.bind(container_id, m["host_ip"], m["host_port"], m["protocol"])
    except BindError as e:
        if quiet:
            raise
        if e.errno == errno.EADDRINUSE:
            raise InternalError("driver failed programming external connectivity on endpoint %s: "
                                "Error starting userland proxy: listen %s %s:%d: bind: address "
                                "already in use" % (endpoint, m["protocol"] + "4", ip, m["host_port"]))
        raise InternalError("driver failed programming external connectivity on endpoint %s: "
                            "Error starting userland proxy: listen %s %s:%d: bind: %s"
                            % (endpoint, m["protocol"] + "4", ip, m["host_port"], e.strerror.lower()))


def for_netavark(mappings: Iterable[dict]) -> List[dict]:
    """The mappings with netavark's fields only."""
    return [{k: m[k] for k in MAPPING_FIELDS} for m in mappings]


def inspect_ports(mappings: List[dict], exposed: Optional[dict]) -> Dict[str, Optional[list]]:
    """NetworkSettings.Ports: each exposed or published port, its bindings."""
    doc: Dict[str, Optional[list]] = {port if "/" in port else port + "/tcp": None for port in exposed or {}}
    for m in mappings:
        key = "%d/%s" % (m["container_port"], m["protocol"])
        doc[key] = (doc.get(key) or []) + [{"HostIp": m["host_ip"] or "0.0.0.0", "HostPort": str(m["host_port"])}]
    return doc


def summary_ports(mappings: List[dict], exposed: Optional[dict]) -> List[dict]:
    """The list's Ports: published ones with their host side, others bare."""
    out, seen = [], set()
    for m in mappings:
        out.append({"IP": m["host_ip"] or "0.0.0.0", "PrivatePort": m["container_port"],
                    "PublicPort": m["host_port"], "Type": m["protocol"]})
        seen.add("%d/%s" % (m["container_port"], m["protocol"]))
    for port in exposed or {}:
        key = port if "/" in port else port + "/tcp"
        if key not in seen:
            number, proto = _split(key)
            out.append({"PrivatePort": number, "Type": proto})
    return out
