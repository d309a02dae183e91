"""Rename a container, as moby's daemon/rename.go."""

from ...errors import InvalidParameter
from .. import spec


class RenameMixin:
    """The rename part of L{ContainerBackend}."""

    async def rename(self, ref, new_name) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        spec.validate_name(new_name)
        name = "/" + new_name.lstrip("/")
        if name == c.name:
            raise InvalidParameter("Renaming a container with the same name as its current name")
        self._check_name_free(name)
        old = c.name
        self.names.pop(old, None)
        c.name = name
        self.names[name] = c.id
        await self.save(c)
        self.log_event(c, "rename", oldName=old)
