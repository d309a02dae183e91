"""The system router with in-memory and real backends."""

import os

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, ensureDeferred
from zope.interface.verify import verifyObject

from twistedock.backend.debug import DebugBackend
from twistedock.backend.events import EventLog
from twistedock.backend.swarm import InactiveCluster
from twistedock.backend.system import Once, SystemBackend, SystemSettings
from twistedock.routers.debug import IDebugBackend
from twistedock.routers.swarm import IClusterBackend
from twistedock.routers.system import ISystemBackend, event_time, info_json

from .memory import API, MemorySystemBackend, result_of


def test_backends_provide_their_interfaces(tmp_path):
    from twisted.internet import reactor

    settings = SystemSettings(daemon_id="x", data_root=str(tmp_path / "root"), exec_root=str(tmp_path / "exec"))
    assert verifyObject(ISystemBackend, SystemBackend(reactor, settings, EventLog()))
    assert verifyObject(ISystemBackend, MemorySystemBackend(API().clock))
    assert verifyObject(IClusterBackend, InactiveCluster())
    assert verifyObject(IDebugBackend, DebugBackend(reactor))


@pytest.mark.route("GET", "/_ping")
@pytest.mark.route("HEAD", "/_ping")
def test_ping_headers():
    api = API()
    for method, body in (("GET", b"OK"), ("HEAD", b"")):
        answer = api.request(method, "/_ping")
        assert answer.code == 200
        assert answer.body == body
        assert answer.header("Content-Type") == "text/plain; charset=utf-8"
        assert answer.header("Cache-Control") == "no-cache, no-store, must-revalidate"
        assert answer.header("Pragma") == "no-cache"
        assert answer.header("Builder-Version") == "1"
        assert answer.header("Swarm") == "inactive"
        assert answer.header("Api-Version") == "1.51"
        assert answer.header("Docker-Experimental") == "false"
        assert answer.header("Ostype") == "linux"


@pytest.mark.route("GET", "/system/df")
def test_disk_usage_types():
    api = API()
    every = api.request("GET", "/v1.41/system/df?type=image").json()
    # Before 1.42 the type argument is not read; dockerd 20.10 writes an
    # empty build cache as null and still has the deprecated BuilderSize.
    assert every == {
        "LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": None,
        "BuilderSize": 0,
    }
    some = api.request("GET", "/v1.42/system/df?type=image&type=volume").json()
    assert some == {"LayersSize": 0, "Images": [], "Containers": None, "Volumes": [], "BuildCache": None}
    answer = api.request("GET", "/v1.51/system/df?type=bogus")
    assert answer.code == 400
    assert answer.json() == {"message": "unknown object type: bogus"}


@pytest.mark.route("POST", "/auth")
def test_auth_not_implemented_yet():
    answer = API().request("POST", "/auth", json_body={"username": "u", "password": "p"})
    assert answer.code == 501
    assert "not implemented yet" in answer.json()["message"]


def test_event_time():
    assert event_time("") is None
    assert event_time("12") == 12_000_000_000
    assert event_time("12.5") == 12_500_000_000
    assert event_time("12.000000001") == 12_000_000_001
    assert event_time("-1") is None


def test_once_shares_one_result():
    calls = []
    pending = Deferred()

    async def work():
        calls.append(1)
        return await pending

    once = Once(work)
    first, second = ensureDeferred(once.get()), ensureDeferred(once.get())
    pending.callback("done")
    assert result_of(first) == result_of(second) == "done"
    assert result_of(ensureDeferred(once.get())) == "done"
    assert calls == [1]


@pytest_twisted.ensureDeferred
async def test_real_info_and_version(tmp_path):
    from twisted.internet import reactor

    settings = SystemSettings(
        daemon_id="id-1",
        data_root=str(tmp_path),
        exec_root=str(tmp_path),
        labels=("a=b",),
        debug=True,
    )
    events = EventLog()
    backend = SystemBackend(reactor, settings, events)
    info = await backend.system_info()
    assert info["ID"] == "id-1"
    assert info["NCPU"] == len(os.sched_getaffinity(0))
    with open("/proc/meminfo") as f:
        kb = int(f.readline().split()[1])
    assert info["MemTotal"] == kb * 1024
    assert info["KernelVersion"] == os.uname().release
    assert info["CgroupVersion"] == ("2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1")
    assert info["DockerRootDir"] == str(tmp_path)
    assert info["Labels"] == ["a=b"]
    assert info["Debug"] is True
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["Containers"] == info["Images"] == 0
    # dockerd writes empty lists here, a nil Warnings, and no Containerd when
    # it has none.
    registry = info["RegistryConfig"]
    assert registry["AllowNondistributableArtifactsCIDRs"] == []
    assert registry["AllowNondistributableArtifactsHostnames"] == []
    assert registry["Mirrors"] == []
    assert "Containerd" not in info
    assert info["Warnings"] is None or info["Warnings"]
    version = await backend.system_version()
    assert version["ApiVersion"] == "1.51"
    assert version["MinAPIVersion"] == "1.24"
    names = [c["Name"] for c in version["Components"]]
    assert names[0] == "Engine"
    import shutil

    if shutil.which("runc"):
        assert "runc" in names
        assert info["Runtimes"]["runc"]["path"] == shutil.which("runc")


def test_info_by_api_version():
    info = {
        "KernelMemory": False,
        "KernelMemoryTCP": False,
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": "v1.1.12-0-g51d5e94"},
        "InitCommit": {"ID": ""},
        "CDISpecDirs": [],
        "BridgeNfIptables": True,
        "BridgeNfIp6tables": True,
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "Mirrors": [],
        },
    }
    # dockerd 20.10 at 1.41: the kernel memory flags, each commit's Expected,
    # no CDISpecDirs (added in 1.46).
    assert info_json(info, "1.41") == {
        "KernelMemory": False,
        "KernelMemoryTCP": False,
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "v1.1.12-0-g51d5e94", "Expected": "v1.1.12-0-g51d5e94"},
        "InitCommit": {"ID": "", "Expected": ""},
        "BridgeNfIptables": True,
        "BridgeNfIp6tables": True,
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "Mirrors": [],
        },
    }
    # 1.51: what later APIs removed is gone (the 1.56 spec has none of it).
    assert info_json(info, "1.51") == {
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": "v1.1.12-0-g51d5e94"},
        "InitCommit": {"ID": ""},
        "CDISpecDirs": [],
        "RegistryConfig": {"Mirrors": []},
    }
