"""
Containers joining another container's namespaces, in process over the
fake runtime: names resolved at create, targets checked at start with
dockerd's messages, the spec's namespace paths, /etc files and /dev/shm;
and the cgroup paths of both drivers.
"""

import json
import os

import pytest
from twisted.internet.defer import ensureDeferred

from twistedock.backend.containers import ContainerBackend
from twistedock.config import ConfigError, DaemonConfig
from twistedock.errors import Conflict, InternalError, InvalidParameter

from .fake_runtime import World, failure_of, run


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def spec_of(world, ref) -> dict:
    c = world.backend.get(ref)
    with open(os.path.join(world.backend.bundle(c), "config.json")) as f:
        return json.load(f)


def namespaces(spec) -> dict:
    return {ns["type"]: ns.get("path") for ns in spec["linux"]["namespaces"]}


def test_names_resolved_at_create(world):
    sandbox = world.create("sandbox", {"IpcMode": "shareable"})
    for field in ("NetworkMode", "IpcMode", "PidMode"):
        world.create("j-" + field, {field: "container:sandbox"})
        assert world.backend.get("j-" + field).host_config[field] == "container:" + sandbox
    for field in ("IpcMode", "PidMode"):
        error = failure_of(world.backend.create("", {"Image": "busybox"}, {field: "container:nonex"}, None, "1.41"))
        assert isinstance(error, InvalidParameter) and str(error) == "No such container: nonex"
    # A network target is looked up again at start.
    world.create("later", {"NetworkMode": "container:nonex"})
    assert world.backend.get("later").host_config["NetworkMode"] == "container:nonex"


def test_a_joiner_gets_the_targets_namespaces_files_hostname_and_shm(world):
    sandbox = world.started("sandbox", {"NetworkMode": "none", "IpcMode": "shareable", "ShmSize": 1 << 20})
    pid = world.backend.get(sandbox).state.pid
    join = "container:" + sandbox
    app = world.create("app", {"NetworkMode": join, "IpcMode": join, "PidMode": join})
    doc = run(world.backend.inspect("app", False, "1.41"))
    assert (doc["ResolvConfPath"], doc["HostsPath"], doc["HostnamePath"]) == ("", "", "")
    run(world.backend.start("app"))
    s = namespaces(spec_of(world, "app"))
    assert s["network"] == "/proc/%d/ns/net" % pid
    assert s["ipc"] == "/proc/%d/ns/ipc" % pid and s["pid"] == "/proc/%d/ns/pid" % pid
    assert s["mount"] is None and s["uts"] is None
    sandbox_doc = run(world.backend.inspect("sandbox", False, "1.41"))
    doc = run(world.backend.inspect("app", False, "1.41"))
    for key in ("ResolvConfPath", "HostsPath", "HostnamePath"):
        assert doc[key] == sandbox_doc[key]
    assert doc["Config"]["Hostname"] == sandbox[:12] and spec_of(world, "app")["hostname"] == sandbox[:12]
    assert doc["NetworkSettings"]["SandboxKey"] == ""
    assert sandbox_doc["NetworkSettings"]["SandboxKey"] == "/proc/%d/ns/net" % pid
    # The spec binds the sandbox's files and its shm tmpfs.
    shm = os.path.join(world.backend.get(sandbox).directory, "mounts", "shm")
    assert ("mount_shm", shm, 1 << 20) in world.mounts.calls
    for ref in ("sandbox", "app"):
        mounts = {m["destination"]: m for m in spec_of(world, ref)["mounts"]}
        assert mounts["/dev/shm"]["source"] == shm and mounts["/dev/shm"]["type"] == "bind"
        assert mounts["/etc/resolv.conf"]["source"] == sandbox_doc["ResolvConfPath"]
    # The files of a joiner are its target's: none of its own written.
    assert not os.path.exists(os.path.join(world.backend.get(app).directory, "resolv.conf"))
    # The run's end unmounts the shm; the record keeps the paths.
    world.runtime.exit(sandbox, 0)
    assert shm not in world.mounts.mounted and not os.path.exists(shm)
    restarted = world.restarted()
    doc = run(restarted.backend.inspect("app", False, "1.41"))
    assert doc["ResolvConfPath"] == sandbox_doc["ResolvConfPath"]


def test_a_user_mount_over_etc_hosts_wins(world, tmp_path):
    sandbox = world.started("sandbox")
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    world.started("app", {"NetworkMode": "container:" + sandbox, "Binds": ["%s:/etc/hosts" % hosts]})
    mounts = {m["destination"]: m for m in spec_of(world, "app")["mounts"]}
    assert mounts["/etc/hosts"]["source"] == str(hosts)
    assert mounts["/etc/resolv.conf"]["source"] == world.backend.get(sandbox).path_of("resolv.conf")


def test_start_errors_as_dockerd(world):
    donor = world.create("donor")
    for field in ("NetworkMode", "IpcMode", "PidMode"):
        world.create("j-" + field, {field: "container:donor"})
    error = failure_of(world.backend.start("j-NetworkMode"))
    assert isinstance(error, Conflict)
    assert str(error) == "cannot join network of a non running container: " + donor
    error = failure_of(world.backend.start("j-IpcMode"))
    assert isinstance(error, InternalError)
    assert str(error) == "can't join IPC of container %s: container %s is not running" % (donor, donor)
    error = failure_of(world.backend.start("j-PidMode"))
    assert isinstance(error, InternalError) and str(error) == "container %s is not running" % donor
    assert world.state("j-PidMode")["Error"] == "container %s is not running" % donor
    run(world.backend.start("donor"))
    error = failure_of(world.backend.start("j-IpcMode"))
    assert str(error) == ("can't join IPC of container %s: non-shareable IPC (hint: use IpcMode:shareable "
                          "for the donor container)" % donor)
    run(world.backend.start("j-PidMode"))
    run(world.backend.start("j-NetworkMode"))
    world.create("self", {"NetworkMode": "container:self"})
    error = failure_of(world.backend.start("self"))
    assert isinstance(error, InternalError) and str(error) == "cannot join own network"


def cgroups_path(world, ref) -> str:
    return spec_of(world, ref)["linux"]["cgroupsPath"]


def test_cgroup_paths(tmp_path):
    world = World(tmp_path / "a")
    ident = world.started("plain")
    assert cgroups_path(world, ident) == "/docker/" + ident
    ident = world.started("pod", {"CgroupParent": "/kubepods/besteffort/pod1"})
    assert cgroups_path(world, ident) == "/kubepods/besteffort/pod1/" + ident


def backend_like(world, **options) -> ContainerBackend:
    b = world.backend
    return ContainerBackend(
        world.clock, data_root=os.path.dirname(b.containers_dir), exec_root=b.exec_root, store=world.store,
        images=world.images, events=world.events, runtime=world.runtime, exit_watcher=world.runtime.watcher,
        mounts=world.mounts, log_reader_factory=b.log_reader_factory, **options)


def test_daemon_cgroup_parent_and_the_systemd_driver(tmp_path):
    world = World(tmp_path)
    world.backend = backend_like(world, cgroup_parent="/nomad")
    ident = world.started("one")
    assert cgroups_path(world, ident) == "/nomad/" + ident
    world.backend = backend_like(world, cgroup_driver="systemd")
    ident = world.started("two")
    assert cgroups_path(world, ident) == "system.slice:docker:" + ident
    ident = world.started("three", {"CgroupParent": "kubepods-besteffort.slice"})
    assert cgroups_path(world, ident) == "kubepods-besteffort.slice:docker:" + ident
    error = failure_of(world.backend.create("", {"Image": "busybox"}, {"CgroupParent": "/kubepods"}, None, "1.41"))
    assert isinstance(error, InvalidParameter)
    assert str(error) == 'cgroup-parent for systemd cgroup should be a valid slice named as "xxx.slice"'


def test_cgroup_driver_options():
    assert DaemonConfig().cgroup_driver == "cgroupfs"
    assert DaemonConfig(exec_opts=["native.cgroupdriver=systemd"]).cgroup_driver == "systemd"
    assert DaemonConfig(exec_opts=["Native.CgroupDriver=cgroupfs"]).cgroup_driver == "cgroupfs"
    with pytest.raises(ConfigError, match="native.cgroupdriver option foo not supported"):
        DaemonConfig(exec_opts=["native.cgroupdriver=foo"])
    with pytest.raises(ConfigError, match="is internally used"):
        DaemonConfig(exec_opts=["native.cgroupdriver=none"])
    with pytest.raises(ConfigError, match="valid slice"):
        DaemonConfig(exec_opts=["native.cgroupdriver=systemd"], cgroup_parent="/docker")
    DaemonConfig(exec_opts=["native.cgroupdriver=systemd"], cgroup_parent="k8s.slice")


def test_a_shm_a_crash_left_mounted_is_unmounted_at_start_up(world):
    ident = world.create("sandbox", {"IpcMode": "shareable"})
    shm = os.path.join(world.backend.get(ident).directory, "mounts", "shm")
    # A start that got as far as the shm's mount when the daemon died.
    world.mounts.mount_shm(shm, 1 << 20)
    restarted = world.restarted()
    assert shm not in restarted.mounts.mounted and not os.path.exists(shm)
    assert ("unmount", shm) in restarted.mounts.calls


def test_a_network_joiner_can_be_updated(world):
    # dockerd checks an update's HostConfig without the Config: the
    # joiner's Hostname (its sandbox's) is no conflict with its mode.
    sandbox = world.started("sandbox")
    world.started("app", {"NetworkMode": "container:" + sandbox})
    answer = run(world.backend.update("app", {"CpuShares": 512, "Memory": 64 << 20, "MemorySwap": 64 << 20}))
    assert answer == {"Warnings": None} or answer.get("Warnings") in (None, [])
    assert world.backend.get("app").host_config["CpuShares"] == 512


def test_a_target_removed_before_the_start(world):
    donor = world.started("donor", {"IpcMode": "shareable"})
    world.create("j-ipc", {"IpcMode": "container:donor"})
    world.create("j-pid", {"PidMode": "container:donor"})
    d = ensureDeferred(world.backend.remove("donor", True, False))
    world.settle()
    assert d.called
    error = failure_of(world.backend.start("j-ipc"))
    assert isinstance(error, InternalError)
    assert str(error) == "can't join IPC of container %s: No such container: %s" % (donor, donor)
    error = failure_of(world.backend.start("j-pid"))
    assert isinstance(error, InternalError)
    assert str(error) == "cannot join PID of a non running container: %s: No such container: %s" % (donor, donor)
