"""docker update as dockerd's Container.UpdateContainer: only the fields
the request sets change (the CLI sends every field, zeros included), the
restart policy only when it is named, and what runc is told is what inspect
shows.  Messages are dockerd 20.10's, asked side by side."""

import os

import pytest
import pytest_twisted

from twistedock.backend.containers import Container, ContainerBackend, State
from twistedock.backend.events import EventLog
from twistedock.errors import Conflict, InvalidParameter
from twistedock.backend.containers.store import ContainerStore

MB = 1024 * 1024

#: What `docker update --cpu-shares 512` sends (docker CLI 28).
CLI_UPDATE = {
    "BlkioWeight": 0, "CpuShares": 512, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
    "BlkioWeightDevice": None, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": None,
    "MemoryReservation": 0, "MemorySwap": 0, "KernelMemory": 0, "PidsLimit": None,
    "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
}  # fmt: skip

from .fake_runtime import FakeMounts


class _Images:
    def set_usage(self, function):
        pass


class _Runtime:
    def __init__(self):
        self.updates = []

    async def update(self, container_id, resources):
        self.updates.append((container_id, resources))


class _Exits:
    def start(self):
        pass

    def stop(self):
        pass


def backend_with(tmp_path, host_config, running=False):
    from twisted.internet import reactor

    backend = ContainerBackend(
        reactor, data_root=str(tmp_path / "root"), exec_root=str(tmp_path / "exec"),
        images=_Images(), events=EventLog(), runtime=_Runtime(), exit_watcher=_Exits(),
        log_reader_factory=lambda path: None, store=ContainerStore(), mounts=FakeMounts(),
    )  # fmt: skip
    directory = str(tmp_path / "root" / "containers" / ("c" * 64))
    os.makedirs(directory)
    c = Container(
        id="c" * 64, name="/web", created=1, image_id="sha256:img", config={"Image": "busybox"},
        host_config=dict({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}, **host_config),
        path="sh", args=[], directory=directory, state=State(running=running, pid=42 if running else 0),
    )  # fmt: skip
    backend.containers[c.id] = c
    backend.names[c.name] = c.id
    return backend, c


@pytest_twisted.ensureDeferred
async def test_zero_fields_and_an_unnamed_policy_change_nothing(tmp_path):
    backend, c = backend_with(tmp_path, {"Memory": 64 * MB, "MemorySwap": 128 * MB}, running=True)
    assert await backend.update("web", CLI_UPDATE) == {"Warnings": None}
    assert c.host_config["Memory"] == 64 * MB
    assert c.host_config["MemorySwap"] == 128 * MB
    assert c.host_config["CpuShares"] == 512
    assert c.host_config["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    # runc is told the limits inspect shows.
    [(_, resources)] = backend.runtime.updates
    assert resources["memory"]["limit"] == 64 * MB
    assert resources["cpu"]["shares"] == 512


@pytest_twisted.ensureDeferred
async def test_memory_keeps_the_swap_it_fits_under(tmp_path):
    backend, c = backend_with(tmp_path, {"Memory": 64 * MB, "MemorySwap": 128 * MB})
    await backend.update("web", dict(CLI_UPDATE, CpuShares=0, Memory=100 * MB))
    assert (c.host_config["Memory"], c.host_config["MemorySwap"]) == (100 * MB, 128 * MB)


@pytest.mark.parametrize("swap", [0, -1, 128 * MB])
@pytest_twisted.ensureDeferred
async def test_memory_above_the_swap_is_a_conflict(tmp_path, swap):
    backend, c = backend_with(tmp_path, {"Memory": 64 * MB if swap > 0 else 0, "MemorySwap": swap})
    with pytest.raises(Conflict) as caught:
        await backend.update("web", dict(CLI_UPDATE, CpuShares=0, Memory=256 * MB))
    assert caught.value.message == (
        "Cannot update container %s: Memory limit should be smaller than already set memoryswap "
        "limit, update the memoryswap at the same time" % c.id
    )
    assert c.host_config["MemorySwap"] == swap
    # With the swap given too, it applies.
    await backend.update("web", dict(CLI_UPDATE, Memory=256 * MB, MemorySwap=512 * MB))
    assert (c.host_config["Memory"], c.host_config["MemorySwap"]) == (256 * MB, 512 * MB)


@pytest_twisted.ensureDeferred
async def test_a_named_policy_replaces_the_old_one(tmp_path):
    backend, c = backend_with(tmp_path, {})
    await backend.update("web", {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}})
    assert c.host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    await backend.update("web", {"RestartPolicy": {"Name": "", "MaximumRetryCount": 5}})
    assert c.host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    with pytest.raises(InvalidParameter) as caught:
        await backend.update("web", {"RestartPolicy": {"Name": "bogus"}})
    assert caught.value.message == "invalid restart policy 'bogus'"


@pytest_twisted.ensureDeferred
async def test_conflicts_are_409s_naming_the_container(tmp_path):
    backend, c = backend_with(tmp_path, {"AutoRemove": True, "NanoCpus": 10**9, "RestartPolicy": None})
    for update, problem in [
        ({"RestartPolicy": {"Name": "always"}},
         "Restart policy cannot be updated because AutoRemove is enabled for the container"),
        ({"CpuPeriod": 100000}, "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"),
        ({"CpuQuota": 50000}, "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"),
    ]:  # fmt: skip
        with pytest.raises(Conflict) as caught:
            await backend.update("web", update)
        assert caught.value.message == "Cannot update container %s: %s" % (c.id, problem)
    backend, c = backend_with(tmp_path / "2", {"CpuPeriod": 100000})
    with pytest.raises(Conflict) as caught:
        await backend.update("web", {"NanoCpus": 10**9})
    assert caught.value.message.endswith(
        "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
    )


@pytest_twisted.ensureDeferred
async def test_pids_limit_zero_or_below_is_unlimited(tmp_path):
    backend, c = backend_with(tmp_path, {"PidsLimit": 10})
    await backend.update("web", {"PidsLimit": -5})
    assert c.host_config["PidsLimit"] == 0
    await backend.update("web", {"PidsLimit": None})
    assert c.host_config["PidsLimit"] == 0


@pytest_twisted.ensureDeferred
async def test_a_refused_runc_update_changes_nothing_and_names_the_container(tmp_path):
    from twistedock.errors import InternalError

    backend, c = backend_with(tmp_path, {"CpuShares": 512}, running=True)

    async def refuse(container_id, resources):
        raise InternalError("the minimum allowed cpu-shares is 2")

    backend.runtime.update = refuse
    with pytest.raises(InternalError) as caught:
        await backend.update("web", {"CpuShares": 1})
    # dockerd 20.10 (side by side): runc's refusal through containerd's shim.
    assert caught.value.message == (
        "Cannot update container %s: runc did not terminate successfully: exit status 1: "
        "the minimum allowed cpu-shares is 2\n: unknown" % c.id
    )
    assert c.host_config["CpuShares"] == 512


@pytest.fixture
def reference_host(monkeypatch):
    """The reference dockerd's host (no blkio weight, IPv4 forwarding on)."""
    from twistedock.backend import spec

    from .spec_hosts import HOST

    monkeypatch.setattr(spec, "current_sysinfo", lambda: HOST)
    return HOST


@pytest.mark.parametrize("update, warnings", [
    # dockerd 20.10, side by side: Go's nil slice when there are none.
    ({"CpuShares": 512}, None),
    ({}, None),
    ({"KernelMemory": 8000000},
     ["Specifying a kernel memory limit is deprecated and will be removed in a future release."]),
    ({"BlkioWeight": 300},
     ["Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."]),
])
@pytest_twisted.ensureDeferred
async def test_update_warnings_are_those_of_its_own_fields(tmp_path, reference_host, update, warnings):
    backend, c = backend_with(tmp_path, {"Memory": 64 * MB, "MemorySwap": 128 * MB}, running=True)
    assert await backend.update("web", update) == {"Warnings": warnings}


@pytest_twisted.ensureDeferred
async def test_a_swap_update_alone_is_no_error(tmp_path, reference_host):
    # Memory 0 with MemorySwap in an update: the container's Memory counts.
    backend, c = backend_with(tmp_path, {"Memory": 64 * MB, "MemorySwap": 128 * MB}, running=True)
    assert await backend.update("web", {"MemorySwap": 256 * MB}) == {"Warnings": None}
    assert c.host_config["MemorySwap"] == 256 * MB


@pytest_twisted.ensureDeferred
async def test_the_update_is_checked_before_it_meets_the_container(tmp_path, reference_host):
    # dockerd 20.10, side by side: Memory 1 on a container without a swap
    # limit is 400 "Minimum memory limit allowed is 6MB", not the 409 of a
    # memory above the swap.
    backend, c = backend_with(tmp_path, {"Memory": 0, "MemorySwap": 0}, running=True)
    with pytest.raises(InvalidParameter) as caught:
        await backend.update("web", {"Memory": 1})
    assert caught.value.message == "Minimum memory limit allowed is 6MB"
    with pytest.raises(Conflict):
        await backend.update("web", {"Memory": 64 * MB})


@pytest_twisted.ensureDeferred
async def test_what_dockerd_leaves_to_runc_goes_to_runc(tmp_path, reference_host):
    # dockerd 20.10, side by side: a swap limit without a memory limit, and
    # a negative cpu share (its uint64), reach runc, which refuses them.
    backend, c = backend_with(tmp_path, {"Memory": 0, "MemorySwap": 0}, running=True)
    await backend.update("web", {"MemorySwap": 1})
    await backend.update("web", {"CpuShares": -1})
    [(_, swap), (_, shares)] = backend.runtime.updates
    assert swap["memory"]["swap"] == 1
    assert shares["cpu"]["shares"] == 2**64 - 1
