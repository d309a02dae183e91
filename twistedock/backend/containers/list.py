"""List containers with dockerd's filters, as moby's daemon/list.go."""

from typing import List, Optional

from ...errors import DockerError, InvalidParameter
from ...filters import Filters
from .defaults import LIST_FILTERS, STATUSES
from .health import FILTER_VALUES, status_of


class ListMixin:
    """The list part of L{ContainerBackend}."""

    async def list(self, all, limit, size, filters: Filters, api_version) -> list:
        filters.validate(LIST_FILTERS)
        for status in filters.get("status"):
            if status not in STATUSES:
                raise InvalidParameter("Invalid filter 'status=%s'" % (status,))
        exited_codes = set()
        for value in filters.get("exited"):
            try:
                exited_codes.add(int(value))
            except ValueError:
                raise InvalidParameter("invalid filter 'exited=%s'" % (value,))
        for value in filters.get("health"):
            if value not in FILTER_VALUES:
                raise InvalidParameter("Unrecognised filter value for health: %s" % (value,))
        before = self._bound(filters, "before")
        since = self._bound(filters, "since")
        ancestors = self._ancestors(filters)
        containers = sorted(self.containers.values(), key=lambda c: c.created, reverse=True)
        if limit and limit > 0:
            all = True
        out = []
        now = self.now()
        for c in containers:
            status = c.state.status
            if not all and not c.state.running and not filters.contains("status") and not filters.contains("exited"):
                continue
            if before is not None and c.created >= before:
                continue
            if since is not None and c.created <= since:
                continue
            if filters.get("status") and status not in filters.get("status"):
                continue
            if exited_codes and (status != "exited" or c.state.exit_code not in exited_codes):
                continue
            if not _regex_match(filters, "name", [c.name, c.name.lstrip("/")]):
                continue
            if not _regex_match(filters, "id", [c.id]):
                continue
            if not filters.match_kv_list("label", c.config.get("Labels") or {}):
                continue
            if ancestors is not None and c.image_id not in ancestors:
                continue
            if filters.get("health") and status_of(c.state.health) not in filters.get("health"):
                continue
            if filters.get("network"):
                mode = c.network_mode()
                if ("bridge" if mode == "default" else mode) not in filters.get("network"):
                    continue
            if filters.get("volume") and not _uses_volume(c, filters.get("volume")):
                continue
            if filters.get("publish") or filters.get("expose"):
                continue
            if filters.get("is-task") and "true" in filters.get("is-task"):
                continue
            sizes = await self._sizes(c) if size else None
            out.append(self.network_summary(c, c.summary(self._image_name(c), now, sizes)))
            if limit and limit > 0 and len(out) >= limit:
                break
        return out

    def _bound(self, filters: Filters, key: str) -> Optional[int]:
        values = filters.get(key)
        if not values:
            return None
        return self.get(sorted(values)[0]).created

    def _ancestors(self, filters: Filters):
        values = filters.get("ancestor")
        if not values:
            return None
        found = set()
        for value in values:
            try:
                found.add(self.images.get(value).id)
            except DockerError:
                continue
        return found


def _uses_volume(c, values) -> bool:
    """The volume filter: a mount's destination, or its volume's name
    (its source for a bind), is one of C{values}."""
    for mount in c.mounts():
        if mount["Destination"] in values or (mount.get("Name") or mount["Source"]) in values:
            return True
    return False


def _regex_match(filters: Filters, key: str, sources: List[str]) -> bool:
    """A value is one of C{sources}, or a regular expression found in one."""
    values = filters.get(key)
    return not values or any(source in values or filters.match(key, source) for source in sources)
