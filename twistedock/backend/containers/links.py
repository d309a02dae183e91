"""
Legacy links of the default bridge, as moby's daemon/links and
daemon/container_operations.go: a linked container's environment variables
(C{ALIAS_PORT_...}, C{ALIAS_NAME}, C{ALIAS_ENV_...}), its /etc/hosts line
(L{networking.NetworkingMixin.extra_hosts}), and a link removed by
C{DELETE /containers/{parent}/{alias}?link=1}.
"""

from typing import Iterable, List, Optional, Tuple

from ...errors import InternalError, NotFound
from .. import spec
from .record import Container


def _port(key: str) -> Tuple[int, str]:
    number, _, proto = key.partition("/")
    return int(number), (proto or "tcp").lower()


def _sorted(ports: Iterable[str]) -> List[Tuple[int, str]]:
    """nat.Sort as links use it: by number, tcp before udp at one number."""
    return sorted((_port(p) for p in ports), key=lambda p: (p[0], p[1] != "tcp"))


def _next_contiguous(ports: List[Tuple[int, str]], value: int, index: int) -> int:
    if index + 1 == len(ports):
        return index
    for i in range(index + 1, len(ports)):
        if ports[i][0] > value + 1:
            return i - 1
        value += 1
    return len(ports) - 1


def link_env(name: str, child_ip: str, exposed: Iterable[str], child_env: Iterable[str]) -> List[str]:
    """Link.ToEnv: the variables of a link called C{name}
    ("/parent/alias") to a container at C{child_ip} exposing C{exposed}
    ("80/tcp") with C{child_env} (its Config.Env)."""
    alias = name.rsplit("/", 1)[-1].upper().replace("-", "_")
    ports = _sorted(exposed)
    env = []
    if ports:
        number, proto = ports[0]
        env.append("%s_PORT=%s://%s:%d" % (alias, proto, child_ip, number))
    i = 0
    while i < len(ports):
        number, proto = ports[i]
        j = _next_contiguous(ports, number, i)
        if j > i + 1:
            upper = proto.upper()
            env.append("%s_PORT_%d_%s_START=%s://%s:%d" % (alias, number, upper, proto, child_ip, number))
            env.append("%s_PORT_%d_%s_ADDR=%s" % (alias, number, upper, child_ip))
            env.append("%s_PORT_%d_%s_PROTO=%s" % (alias, number, upper, proto))
            env.append("%s_PORT_%d_%s_PORT_START=%d" % (alias, number, upper, number))
            last, last_proto = ports[j]
            env.append("%s_PORT_%d_%s_END=%s://%s:%d" % (alias, number, last_proto.upper(), last_proto, child_ip,
                                                          last))
            env.append("%s_PORT_%d_%s_PORT_END=%d" % (alias, number, last_proto.upper(), last))
            i = j + 1
        else:
            i += 1
    for number, proto in ports:
        upper = proto.upper()
        env.append("%s_PORT_%d_%s=%s://%s:%d" % (alias, number, upper, proto, child_ip, number))
        env.append("%s_PORT_%d_%s_ADDR=%s" % (alias, number, upper, child_ip))
        env.append("%s_PORT_%d_%s_PORT=%d" % (alias, number, upper, number))
        env.append("%s_PORT_%d_%s_PROTO=%s" % (alias, number, upper, proto))
    env.append("%s_NAME=%s" % (alias, name))
    for entry in child_env:
        key, sep, value = entry.partition("=")
        if not sep or key in ("HOME", "PATH"):
            continue
        env.append("%s_ENV_%s=%s" % (alias, key, value))
    return env


class LinksMixin:
    """The legacy links part of L{ContainerBackend}."""

    def linked_env(self, c: Container) -> List[str]:
        """The variables of each of the container's links on the default
        bridge (containers without an address there give none)."""
        env: List[str] = []
        if self.networks is None:
            return env
        parent = c.name if c.name.startswith("/") else "/" + c.name
        for child, alias in self._linked(c):
            address = self._bridge_address(child)
            if not address:
                continue
            env += link_env("%s/%s" % (parent, alias), address, (child.config.get("ExposedPorts") or {}).keys(),
                            child.config.get("Env") or ())
        return env

    def _linked(self, c: Container):
        """(child container, alias) of each of C{c}'s links whose container
        is still there."""
        for link in c.host_config.get("Links") or []:
            target, alias = spec.parse_link(link)
            try:
                yield self.get(target), alias
            except NotFound:
                continue

    def links_view(self, c: Container) -> Optional[List[str]]:
        """HostConfig.Links as dockerd's inspect shows them:
        "/child:/parent/alias" for each linked container still there."""
        parent = c.name if c.name.startswith("/") else "/" + c.name
        out = []
        for child, alias in self._linked(c):
            out.append("%s:%s/%s" % (child.name if child.name.startswith("/") else "/" + child.name, parent, alias))
        return out or None

    def _bridge_address(self, c: Container) -> Optional[str]:
        for record, ep in self.networks.endpoints_of(c.id):
            if record["Name"] == "bridge":
                return ep["IPAddress"]
        return None

    async def remove_link(self, ref: str) -> None:
        """rmLink: C{ref} is "parent/alias"; the parent's link of that
        alias removed (its running processes keep what they were given)."""
        name = ref if ref.startswith("/") else "/" + ref
        parent_name, _, alias = name.rpartition("/")
        parent = self._linking_parent(parent_name, alias)
        if parent is None:
            try:
                self.get(ref)
            except NotFound:
                raise NotFound("No such container: %s" % ref)
            if not parent_name:
                raise InternalError("Conflict, cannot remove the default link name of the container")
            raise InternalError("Cannot get parent %s for link %s" % (parent_name, name))
        async with self.lock(parent):
            links = [l for l in parent.host_config.get("Links") or [] if spec.parse_link(l)[1] != alias]
            await self.save_changed(parent, lambda r: setattr(r, "host_config", dict(r.host_config, Links=links or None)))

    def _linking_parent(self, parent_name: str, alias: str) -> Optional[Container]:
        if not parent_name:
            return None
        try:
            parent = self.get(parent_name.lstrip("/"))
        except NotFound:
            return None
        if any(spec.parse_link(l)[1] == alias for l in parent.host_config.get("Links") or []):
            return parent
        return None
