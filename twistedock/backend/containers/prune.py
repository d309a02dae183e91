"""Prune stopped containers, as moby's daemon/prune.go."""

from ...errors import DockerError, InvalidParameter
from ...filters import Filters
from ...timetypes import get_timestamp


class PruneMixin:
    """The prune part of L{ContainerBackend}."""

    async def prune(self, filters: Filters) -> dict:
        filters.validate(("until", "label", "label!"))
        until = None
        for value in filters.get("until"):
            try:
                until = get_timestamp(value, self.now())
            except DockerError as e:
                # dockerd's words, with a client error's status.
                raise InvalidParameter(str(e))
        deleted, reclaimed = [], 0
        for c in list(self.containers.values()):
            if c.state.running:
                continue
            if until is not None and c.created >= until:
                continue
            if not filters.match_kv_list("label", c.config.get("Labels") or {}):
                continue
            if filters.get("label!") and Filters({"label": filters.get("label!")}).match_kv_list(
                "label", c.config.get("Labels") or {}
            ):
                continue
            sizes = await self._sizes(c)
            await self._remove(c)
            deleted.append(c.id)
            reclaimed += sizes["rw"]
        if deleted:
            self.events.log("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}
