"""Rename a container, as moby's daemon/rename.go."""

from ...errors import DockerError, InvalidParameter
from .. import spec


class RenameMixin:
    """The rename part of L{ContainerBackend}."""

    async def rename(self, ref, new_name) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        name = new_name if new_name.startswith("/") else "/" + new_name
        if name == c.name:
            raise InvalidParameter("Renaming a container with the same name as its current name")
        try:
            # dockerd's reserveName sees the name with its slash.
            spec.validate_name(name)
            self._check_name_free(name)
        except DockerError as e:
            raise type(e)("Error when allocating new name: %s" % (e,))
        old = c.name
        self.names.pop(old, None)
        c.name = name
        self.names[name] = c.id
        await self.save(c)
        self.log_event(c, "rename", oldName=old)
