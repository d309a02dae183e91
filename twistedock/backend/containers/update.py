"""
Update a container's resources and restart policy, as moby's
daemon/update.go and Container.UpdateContainer: only the fields the request
sets (non-zero) change, so what inspect shows stays what the cgroup enforces.
"""

from typing import List, Optional

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


def update_warnings(update: dict) -> List[str]:
    """dockerd's warnings for an update: those of its own fields, as a
    HostConfig of nothing else (so also the IPv4 forwarding one, its
    NetworkMode being empty)."""
    si = spec.current_sysinfo()
    warnings, _ = spec.check_resources(update, si, update=True)
    if not si.ipv4_forwarding:
        warnings.append("IPv4 forwarding is disabled. Networking will not work.")
    return warnings


class UpdateMixin:
    """The update part of L{ContainerBackend}."""

    async def update(self, ref, update) -> dict:
        c = self.get(ref)
        # As dockerd: the update's own fields are checked first (their
        # warnings, or their error), then against the container's.
        warnings = update_warnings(update)
        problem = update_conflict(c.host_config, update)
        if problem is not None:
            raise Conflict("Cannot update container %s: %s" % (c.id, problem))
        host_config = updated_host_config(c.host_config, update)
        # dockerd's verifyContainerSettings(hostConfig, nil, true): no
        # Config (a network joiner's Hostname is no conflict here).
        spec.validate_create({}, host_config, MAX_API_VERSION, update=True)
        resources_changed = any(host_config.get(k) != c.host_config.get(k) for k in UPDATABLE)
        applied = c.state.running and not c.state.restarting and resources_changed
        if applied:
            resources = await self.run_in_thread(spec.read_linux_resources, host_config)
            try:
                await self.runtime.update(c.id, resources)
            except DockerError as e:
                await self.reconcile_one(c, "update")
                # The record keeps what the cgroup still enforces.  runc's
                # refusal as containerd's shim reports it to dockerd.
                message = e.message
                if e.status == 500:
                    message = "runc did not terminate successfully: exit status 1: %s\n: unknown" % (message,)
                raise type(e)("Cannot update container %s: %s" % (c.id, message))
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
        # Go's nil slice: null when there are none.
        return {"Warnings": warnings or None}
