"""dockerd's checks of a create request's network settings: the network and
UTS modes against the options they conflict with, ExtraHosts, PortBindings."""

import ipaddress
import re
from typing import Optional, Tuple

from ...errors import InvalidParameter
from ... import golang
from .fields import as_str, is_container_mode


def validate_network_mode(config: dict, hc: dict) -> None:
    """validateNetMode: the modes against Hostname, Links, Dns, MacAddress, ports."""
    mode = as_str(hc.get("NetworkMode"))
    parts = mode.split(":")
    if parts[0] == "container" and (len(parts) < 2 or parts[1] == ""):
        raise InvalidParameter(
            "Invalid network mode: invalid container format container:<name|id>"
        )
    container = is_container_mode(mode)
    if container:
        if config.get("Hostname"):
            raise InvalidParameter("conflicting options: hostname and the network mode")
        if hc.get("Links"):
            raise InvalidParameter(
                "conflicting options: container type network can't be used with links. "
                "This would result in undefined behavior"
            )
        if hc.get("Dns"):
            raise InvalidParameter("conflicting options: dns and the network mode")
        if hc.get("ExtraHosts"):
            raise InvalidParameter(
                "conflicting options: custom host-to-IP mapping and the network mode"
            )
    if (container or mode == "host") and config.get("MacAddress"):
        raise InvalidParameter("conflicting options: mac-address and the network mode")
    if container and (hc.get("PortBindings") or hc.get("PublishAllPorts")):
        raise InvalidParameter(
            "conflicting options: port publishing and the container type network mode"
        )
    if container and config.get("ExposedPorts"):
        raise InvalidParameter(
            "conflicting options: port exposing and the container type network mode"
        )
    if as_str(hc.get("UTSMode")) == "host" and config.get("Hostname"):
        raise InvalidParameter("conflicting options: hostname and the UTS mode")
    if mode == "host" and hc.get("Links"):
        raise InvalidParameter(
            "conflicting options: host type networking can't be used with links. "
            "This would result in undefined behavior"
        )


def _split_proto_port(raw: str) -> Tuple[str, str]:
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1:
        return "tcp", raw
    if not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _parse_port16(s: str) -> Optional[int]:
    if not re.match(r"^[0-9]+$", s):
        return None
    v = int(s)
    return v if v <= 65535 else None


def _host_port_valid(raw: str) -> bool:
    _, port = _split_proto_port(raw)
    if port == "":
        return True
    if "-" not in port:
        return _parse_port16(port) is not None
    pieces = port.split("-")
    lo, hi = _parse_port16(pieces[0]), _parse_port16(pieces[1])
    return lo is not None and hi is not None and hi >= lo


def _validate_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip())
        return True
    except ValueError:
        return False


def validate_extra_hosts(hc: dict) -> None:
    """ExtraHosts entries are host:IP (or host:host-gateway)."""
    for extra in hc.get("ExtraHosts") or ():
        parts = extra.split(":", 1)
        if len(parts) != 2 or not parts[0]:
            raise InvalidParameter("bad format for add-host: %s" % golang.quote(extra))
        if parts[1] != "host-gateway" and not _validate_ip(parts[1]):
            raise InvalidParameter("invalid IP address in add-host: %s" % golang.quote(parts[1]))


def validate_port_bindings(hc: dict) -> None:
    """PortBindings' container ports and host ports (or ranges) are 16-bit."""
    for port, bindings in (hc.get("PortBindings") or {}).items():
        _, port_str = _split_proto_port(port)
        if port_str and _parse_port16(port_str) is None:
            raise InvalidParameter("invalid port specification: %s" % golang.quote(port_str))
        for binding in bindings or ():
            host_port = as_str((binding or {}).get("HostPort"))
            if not _host_port_valid(host_port):
                raise InvalidParameter("invalid port specification: %s" % golang.quote(host_port))


def parse_link(value: str) -> Tuple[str, str]:
    """opts.ParseLink: a HostConfig.Links entry as (container, alias)."""
    if value == "":
        raise InvalidParameter("empty string specified for links")
    parts = value.split(":")
    if len(parts) > 2:
        raise InvalidParameter("bad format for links: %s" % (value,))
    if len(parts) == 1:
        return value, value
    if parts[0].startswith("/"):
        return parts[0][1:], parts[1].rsplit("/", 1)[-1]
    return parts[0], parts[1]
