"""
HostConfig's KernelMemory and KernelMemoryTCP, as dockerd 20.10 takes them at
API 1.41 and before (kept, shown, warned about, passed to the runtime, which
ignores them) and as dockerd 23+ from API 1.42 (KernelMemory ignored, both
left out of inspect when unset).
"""

import pytest

from twistedock.backend.spec import linux_resources
from twistedock.backend.spec.sysinfo import SysInfo, current_sysinfo
from twistedock.errors import InvalidParameter
from twistedock.versions import MAX_API_VERSION

from .fake_runtime import World, failure_of, run
from .memory import API

MB = 1 << 20
DEPRECATED = "Specifying a kernel memory limit is deprecated and will be removed in a future release."
LIMITS = {"KernelMemory": 10 * MB, "KernelMemoryTCP": 20 * MB}


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def create(world, name, version, host_config):
    return run(world.backend.create(name, {"Image": "busybox"}, dict(host_config), None, version))


def host_config(world, name, version):
    return run(world.backend.inspect(name, False, version))["HostConfig"]


def test_at_1_41_both_are_kept_shown_and_warned_about(world):
    answer = create(world, "old", "1.41", LIMITS)
    assert answer["Warnings"][0] == DEPRECATED
    if not current_sysinfo().kernel_memory:
        pytest.skip("this kernel has no kernel memory limits: dockerd discards them")
    hc = host_config(world, "old", "1.41")
    assert (hc["KernelMemory"], hc["KernelMemoryTCP"]) == (10 * MB, 20 * MB)
    keys = list(hc)
    assert keys.index("KernelMemoryTCP") == keys.index("KernelMemory") + 1
    # Newer clients of the same container still see what is set.
    hc = host_config(world, "old", MAX_API_VERSION)
    assert (hc["KernelMemory"], hc["KernelMemoryTCP"]) == (10 * MB, 20 * MB)
    # KernelMemoryTCP came with API 1.40.
    create(world, "older", "1.39", LIMITS)
    assert host_config(world, "older", "1.39")["KernelMemoryTCP"] == 0


def test_too_small_a_limit_is_refused_at_create_and_update(world):
    error = failure_of(world.backend.create("", {"Image": "busybox"}, {"KernelMemory": 1000}, None, "1.41"))
    assert isinstance(error, InvalidParameter)
    assert str(error) == "Minimum kernel memory limit allowed is 6MB"
    create(world, "web", "1.41", {})
    error = failure_of(world.backend.update("web", {"KernelMemory": 2000}))
    assert isinstance(error, InvalidParameter)
    assert str(error) == "Minimum kernel memory limit allowed is 6MB"


def test_an_update_sets_it_with_dockerds_warning_and_null_without(world):
    create(world, "web", "1.41", {})
    answer = run(world.backend.update("web", {"KernelMemory": 20 * MB}))
    assert answer["Warnings"][0] == DEPRECATED
    if current_sysinfo().kernel_memory:
        assert host_config(world, "web", "1.41")["KernelMemory"] == 20 * MB
    assert run(world.backend.update("web", {"CpuShares": 512})) == {"Warnings": None}


def test_from_1_42_kernel_memory_is_ignored_and_unset_fields_are_left_out(world):
    answer = create(world, "new", MAX_API_VERSION, LIMITS)
    assert DEPRECATED not in answer["Warnings"]
    hc = host_config(world, "new", MAX_API_VERSION)
    assert "KernelMemory" not in hc
    if current_sysinfo().kernel_memory_tcp:
        assert hc["KernelMemoryTCP"] == 20 * MB
    create(world, "plain", MAX_API_VERSION, {})
    hc = host_config(world, "plain", MAX_API_VERSION)
    assert "KernelMemory" not in hc and "KernelMemoryTCP" not in hc
    assert host_config(world, "plain", "1.41")["KernelMemory"] == 0


def test_the_router_drops_an_update_of_kernel_memory_from_1_42():
    api = API()
    api.request("POST", "/containers/create?name=web", json_body={"Image": "busybox"})
    api.request("POST", "/v1.51/containers/web/update", json_body={"KernelMemory": 20 * MB, "CpuShares": 2})
    assert "KernelMemory" not in api.containers.containers["web"]["HostConfig"]
    api.request("POST", "/v1.41/containers/web/update", json_body={"KernelMemory": 20 * MB})
    assert api.containers.containers["web"]["HostConfig"]["KernelMemory"] == 20 * MB


def test_the_runtime_is_given_the_limits_as_dockerd_gives_them():
    memory = linux_resources(LIMITS, SysInfo(), {})["memory"]
    assert (memory["kernel"], memory["kernelTCP"]) == (10 * MB, 20 * MB)
    assert "kernel" not in linux_resources({"Memory": 64 * MB}, SysInfo(), {})["memory"]
