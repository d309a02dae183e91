"""docker update with the real CLI, which sends every field (zeros
included): only what is given changes, and inspect shows what the cgroup
enforces (dockerd 20.10's answers, asked side by side)."""

import os

import pytest

from .test_containers import daemon  # noqa: F401  (the module's daemon with busybox)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

MB = 1024 * 1024


def memory_limit(pid: int) -> int:
    """The memory limit the container's cgroup enforces (v1 or v2)."""
    lines = open("/proc/%d/cgroup" % pid).read().splitlines()
    path = [l for l in lines if ":memory:" in l or l.startswith("0::")][0].split(":", 2)[2]
    for candidate in ("/sys/fs/cgroup/memory%s/memory.limit_in_bytes" % path, "/sys/fs/cgroup%s/memory.max" % path):
        if os.path.exists(candidate):
            return int(open(candidate).read())
    pytest.fail("no memory cgroup found for pid %d" % pid)


@pytest.mark.route("POST", "/containers/{name:.*}/update")
def test_update_of_other_fields_keeps_memory_swap_and_policy(daemon):
    daemon.docker("rm", "-f", "updz", check=False)
    daemon.docker("run", "-d", "--name", "updz", "--memory", "64m", "--restart", "always", "busybox", "sleep", "1000")
    try:
        daemon.docker("update", "--cpu-shares", "512", "updz")
        hc = daemon.docker_json("inspect", "updz", format="{{json .HostConfig}}")
        assert (hc["Memory"], hc["MemorySwap"], hc["CpuShares"]) == (64 * MB, 128 * MB, 512)
        assert hc["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
        pid = daemon.docker_json("inspect", "updz", format="{{json .State.Pid}}")
        assert memory_limit(pid) == 64 * MB
        # Above the swap without a new swap: dockerd's 409, nothing changed.
        bad = daemon.docker("update", "--memory", "256m", "updz", check=False)
        assert bad.returncode != 0
        container_id = daemon.docker_json("inspect", "updz", format="{{json .Id}}")
        assert (
            "Error response from daemon: Cannot update container %s: Memory limit should be smaller "
            "than already set memoryswap limit, update the memoryswap at the same time" % container_id
        ) in bad.stderr
        hc = daemon.docker_json("inspect", "updz", format="{{json .HostConfig}}")
        assert (hc["Memory"], hc["MemorySwap"]) == (64 * MB, 128 * MB)
        assert memory_limit(pid) == 64 * MB
    finally:
        daemon.docker("rm", "-f", "updz", check=False)
