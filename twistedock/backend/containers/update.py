"""
Update a container's resources and restart policy, as moby's
daemon/update.go and Container.UpdateContainer: only the fields the request
sets (non-zero) change, so what inspect shows stays what the cgroup enforces.
"""

from typing import Optional

from ...errors import Conflict, DockerError
from ...logs import Logger
from ...versions import MAX_API_VERSION
from .. import spec
from .defaults import UPDATABLE

log = Logger()


def _set(value) -> bool:
    """Whether a request field changes anything: Go's zero values do not."""
    return value is not None and value != 0 and value != ""


def update_conflict(resources: dict, update: dict) -> Optional[str]:
    """Why the update cannot apply to a container with C{resources} (its
    HostConfig), in dockerd's words; None when it can."""
    nano, period, quota = (update.get(k) or 0 for k in ("NanoCpus", "CpuPeriod", "CpuQuota"))
    if nano > 0 and (resources.get("CpuPeriod") or 0) > 0:
        return "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
    if nano > 0 and (resources.get("CpuQuota") or 0) > 0:
        return "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"
    if period > 0 and (resources.get("NanoCpus") or 0) > 0:
        return "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
    if quota > 0 and (resources.get("NanoCpus") or 0) > 0:
        return "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
    memory = update.get("Memory") or 0
    if memory and memory > (resources.get("MemorySwap") or 0) and not update.get("MemorySwap"):
        return (
            "Memory limit should be smaller than already set memoryswap limit, "
            "update the memoryswap at the same time"
        )
    policy = update.get("RestartPolicy") or {}
    if policy.get("Name") and resources.get("AutoRemove") and policy["Name"] != "no":
        return "Restart policy cannot be updated because AutoRemove is enabled for the container"
    return None


def updated_host_config(host_config: dict, update: dict) -> dict:
    """C{host_config} with the update's non-zero resources, its PidsLimit
    when given, and its restart policy when it names one."""
    hc = dict(host_config)
    for field in UPDATABLE:
        value = update.get(field)
        if field == "PidsLimit" and value is not None:
            hc[field] = value if value > 0 else 0
        elif _set(value):
            hc[field] = value
    policy = update.get("RestartPolicy") or {}
    if policy.get("Name"):
        hc["RestartPolicy"] = {
            "Name": policy["Name"],
            "MaximumRetryCount": policy.get("MaximumRetryCount") or 0,
        }
    return hc


class UpdateMixin:
    """The update part of L{ContainerBackend}."""

    async def update(self, ref, update) -> dict:
        c = self.get(ref)
        problem = update_conflict(c.host_config, update)
        if problem is not None:
            raise Conflict("Cannot update container %s: %s" % (c.id, problem))
        # verifyContainerSettings on the update's own resources: its warnings.
        warnings, _ = spec.check_resources({k: update.get(k) for k in UPDATABLE})
        host_config = updated_host_config(c.host_config, update)
        spec.validate_create(c.config, host_config, MAX_API_VERSION)
        resources_changed = any(host_config.get(k) != c.host_config.get(k) for k in UPDATABLE)
        applied = c.state.running and not c.state.restarting and resources_changed
        if applied:
            resources = await self.run_in_thread(spec.read_linux_resources, host_config)
            try:
                await self.runtime.update(c.id, resources)
            except DockerError as e:
                # The record keeps what the cgroup still enforces.
                raise type(e)("Cannot update container %s: %s" % (c.id, e.message))
        try:
            await self.save_changed(c, lambda r: setattr(r, "host_config", host_config))
        except BaseException:
            # Not recorded: the cgroup goes back to what the record says.
            if applied:
                try:
                    before = await self.run_in_thread(spec.read_linux_resources, c.host_config)
                    await self.runtime.update(c.id, before)
                except Exception as e:
                    log.warn("restoring the resources of {id}: {e}", id=c.short_id, e=e)
            raise
        self.log_event(c, "update")
        return {"Warnings": warnings or None}
