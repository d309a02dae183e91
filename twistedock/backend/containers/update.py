"""
Update a container's resources and restart policy, as moby's
daemon/update.go.
"""

from ...errors import InvalidParameter
from ...versions import MAX_API_VERSION
from .. import spec
from .defaults import UPDATABLE


class UpdateMixin:
    """The update part of L{ContainerBackend}."""

    async def update(self, ref, update) -> dict:
        c = self.get(ref)
        policy = update.get("RestartPolicy")
        if policy and policy.get("Name") not in (None, "", "no") and c.host_config.get("AutoRemove"):
            raise InvalidParameter(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        changes = {k: update[k] for k in UPDATABLE if k in update and update[k] not in (None,)}
        host_config = dict(c.host_config, **changes)
        if policy and policy.get("Name") is not None:
            host_config["RestartPolicy"] = {
                "Name": policy.get("Name") or "no",
                "MaximumRetryCount": int(policy.get("MaximumRetryCount") or 0),
            }
        spec.validate_create(c.config, host_config, MAX_API_VERSION)
        if c.state.running and not c.state.restarting and changes:
            resources = await self.run_in_thread(spec.read_linux_resources, host_config)
            await self.runtime.update(c.id, resources)
        c.host_config = host_config
        await self.save(c)
        self.log_event(c, "update")
        return {"Warnings": []}
