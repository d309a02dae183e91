"""Rename a container, as moby's daemon/rename.go."""

from ...errors import DockerError, InvalidParameter
from ...logs import Logger
from .. import spec

log = Logger()


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
        # The new name is reserved while the record is written, and shown
        # only once it is durable; a failed write gives it back.
        self.names[name] = c.id
        try:
            await self.save_changed(c, lambda r: setattr(r, "name", name))
        except BaseException:
            if self.names.get(name) == c.id:
                del self.names[name]
            raise
        if self.names.get(old) == c.id:
            del self.names[old]
        if self.networks is not None:
            try:
                await self.networks.rename(c.id, old.lstrip("/"), name.lstrip("/"))
            except Exception as e:
                log.warn("renaming the endpoints of {id}: {e}", id=c.short_id, e=e)
        self.log_event(c, "rename", oldName=old)
