"""
Published ports: a container's PortBindings (and, with PublishAllPorts, its
ExposedPorts) made into netavark's port mappings (kernel NAT rules), an
ephemeral host port chosen for an empty HostPort, a port already published
or bound on the host refused as dockerd refuses it; and the Ports views of
inspect and list. Blocking (sockets probed): call in a thread.
"""

import errno
import socket
from typing import Dict, Iterable, List, Optional, Tuple

from ...errors import InternalError


def _split(port: str) -> Tuple[int, str]:
    number, _, proto = port.partition("/")
    return int(number.split("-")[0]), (proto or "tcp")


def wanted(host_config: dict, exposed: Optional[dict]) -> List[dict]:
    """(container port, proto, host ip, host port or 0) asked for."""
    out = []
    bindings = dict(host_config.get("PortBindings") or {})
    if host_config.get("PublishAllPorts"):
        for port in exposed or {}:
            bindings.setdefault(port, [{"HostIp": "", "HostPort": ""}])
    for port in sorted(bindings):
        number, proto = _split(port)
        for binding in bindings[port] or [{}]:
            binding = binding or {}
            host_port = (binding.get("HostPort") or "").split("-")[0]
            out.append({"container_port": number, "protocol": proto,
                        "host_ip": binding.get("HostIp") or "",
                        "host_port": int(host_port) if host_port else 0,
                        "range": 1})
    return out


def _kind(proto: str) -> int:
    return socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM


def _probe(host_ip: str, port: int, proto: str) -> int:
    """Bind the address (port 0: an ephemeral one); the port bound."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    s = socket.socket(family, _kind(proto))
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        return s.getsockname()[1]
    finally:
        s.close()


def allocate(asked: List[dict], published: Iterable[dict], endpoint: str) -> List[dict]:
    """The mappings with host ports chosen; refused as dockerd when a port is
    published by another container or bound on the host."""
    taken = {(m["host_ip"] or "0.0.0.0", m["host_port"], m["protocol"]) for m in published}
    out = []
    for m in asked:
        m = dict(m)
        ip = m["host_ip"] or "0.0.0.0"
        if m["host_port"]:
            clash = any(p == m["host_port"] and pr == m["protocol"] and (i == ip or "0.0.0.0" in (i, ip))
                        for i, p, pr in taken)
            if clash:
                raise InternalError("driver failed programming external connectivity on endpoint %s: "
                                    "Bind for %s:%d failed: port is already allocated"
                                    % (endpoint, ip, m["host_port"]))
        try:
            m["host_port"] = _probe(m["host_ip"], m["host_port"], m["protocol"])
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InternalError("driver failed programming external connectivity on endpoint %s: "
                                    "Error starting userland proxy: listen %s %s:%d: bind: address "
                                    "already in use" % (endpoint, m["protocol"] + "4", ip, m["host_port"]))
            raise InternalError("cannot publish %s:%d: %s" % (ip, m["host_port"], e.strerror))
        taken.add((ip, m["host_port"], m["protocol"]))
        out.append(m)
    return out


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
