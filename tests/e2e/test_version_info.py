"""docker version and docker info against a real daemon: the figures must be
this host's, and the engine ID must survive a restart."""

import os
import re
import subprocess

import pytest

import twistedock

pytestmark = pytest.mark.e2e


def runc_version() -> str:
    out = subprocess.run(["runc", "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"runc version (\S+)", out.stdout)
    assert match, out.stdout
    return match.group(1)


def mem_total_bytes() -> int:
    with open("/proc/meminfo") as f:
        match = re.search(r"^MemTotal:\s+(\d+) kB", f.read(), re.M)
    return int(match.group(1)) * 1024


def bytes_size(size: float) -> str:
    """go-units BytesSize, as docker info shows Total Memory."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024.0
        i += 1
    return "%.4g%s" % (size, units[i])


def host_cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


@pytest.mark.route("HEAD", "/_ping")
@pytest.mark.route("GET", "/version")
def test_docker_version(default_daemon):
    text = default_daemon.docker("version").stdout
    assert re.search(r"^Server: twistedock$", text, re.M), text
    assert re.search(r"^ Engine:\n  Version:\s+%s$" % re.escape(twistedock.__version__), text, re.M), text
    assert re.search(r"API version:\s+1\.51 \(minimum version 1\.24\)", text), text
    assert re.search(r"^ runc:\n  Version:\s+%s$" % re.escape(runc_version()), text, re.M), text

    server = default_daemon.docker_json("version", format="{{json .Server}}")
    assert server["Platform"]["Name"] == "twistedock"
    assert server["Version"] == twistedock.__version__
    assert server["ApiVersion"] == "1.51"
    assert server["MinAPIVersion"] == "1.24"
    assert server["KernelVersion"] == os.uname().release
    components = {c["Name"]: c for c in server["Components"]}
    engine = components["Engine"]
    assert engine["Version"] == twistedock.__version__
    assert engine["Details"]["ApiVersion"] == "1.51"
    assert engine["Details"]["MinAPIVersion"] == "1.24"
    assert components["runc"]["Version"] == runc_version()


@pytest.mark.route("GET", "/info")
def test_docker_info(default_daemon):
    text = default_daemon.docker("info").stdout
    data_root = default_daemon.data_root
    assert "Docker Root Dir: %s\n" % data_root in text, text
    assert "Kernel Version: %s\n" % os.uname().release in text, text
    assert "CPUs: %d\n" % len(os.sched_getaffinity(0)) in text, text
    assert "Total Memory: %s\n" % bytes_size(mem_total_bytes()) in text, text
    assert "Cgroup Version: %s\n" % host_cgroup_version() in text, text
    assert " Swarm: inactive\n" in text, text
    assert "Server Version: %s\n" % twistedock.__version__ in text, text

    info = default_daemon.docker_json("info")
    assert info["DockerRootDir"] == data_root
    assert info["KernelVersion"] == os.uname().release
    assert info["NCPU"] == len(os.sched_getaffinity(0))
    assert info["MemTotal"] == mem_total_bytes()
    assert info["CgroupVersion"] == host_cgroup_version()
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["OSType"] == "linux"
    assert info["Name"] == os.uname().nodename
    assert info["ServerVersion"] == twistedock.__version__
    assert info["ID"]


@pytest.mark.route("GET", "/info")
def test_daemon_id_survives_restart(daemons, default_daemon):
    daemon = daemons.start()
    first = daemon.docker("info", "--format", "{{.ID}}").stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", first), first
    # Another data root, another daemon: another ID.
    assert first != default_daemon.info()["ID"]

    daemon.restart()
    second = daemon.docker("info", "--format", "{{.ID}}").stdout.strip()
    assert second == first
    with open(os.path.join(daemon.data_root, "engine-id")) as f:
        assert f.read().strip() == first
