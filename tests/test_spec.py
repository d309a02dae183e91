"""The OCI spec builder and dockerd's create-request checks (backend/spec/)."""

import builtins
import glob
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import uuid

import attr
import pytest

from twistedock.backend import spec
from twistedock.errors import InternalError, InvalidParameter, NotImplementedYet

#: A host as the reference dockerd's: 2 CPUs, cgroup v1, no blkio weight.
HOST = spec.SysInfo(
    ncpu=2,
    cpus="0-1",
    mems="0",
    blkio_weight=False,
    blkio_weight_device=False,
    own_capabilities=None,
    last_cap=40,
    kernel="6.1.0",
    machine="x86_64",
)

PROFILE = spec.DEFAULT_SECCOMP_PROFILE
needs_profile = pytest.mark.skipif(
    not os.path.exists(PROFILE), reason="containers-common seccomp profile not installed"
)


def validate(config=None, host_config=None, version="1.41", sysinfo=HOST):
    return spec.validate_create(config or {}, host_config or {}, version, sysinfo=sysinfo)


def refused(config=None, host_config=None, version="1.41", sysinfo=HOST):
    with pytest.raises(InvalidParameter) as caught:
        validate(config, host_config, version, sysinfo)
    assert caught.value.status == 400
    return caught.value.message


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (root / "etc" / "group").write_text(
        "root:x:0:\n"
        "daemon:x:1:\n"
        "audio:x:29:alice\n"
        "video:x:44:alice,daemon\n"
        "alice:x:1000:\n"
        "staff:x:50:\n"
        "nogroup:x:65534:\n"
    )
    return str(root)


def build_with_inputs(*, sysinfo=None, seccomp_profile_path=PROFILE, **arguments):
    """build_spec over what gather_inputs reads for the same request."""
    inputs = spec.gather_inputs(
        arguments["config"], arguments["host_config"], arguments["image_config"],
        arguments["rootfs"], seccomp_profile_path, sysinfo,
    )
    return spec.build_spec(inputs=inputs, **arguments)


def build(rootfs, config=None, host_config=None, image_config=None, **kwargs):
    files = os.path.dirname(rootfs)
    arguments = dict(
        container_id="0123456789abcdef" * 4,
        config=config if config is not None else {"Cmd": ["true"]},
        host_config=host_config or {},
        image_config=image_config or {},
        rootfs=rootfs,
        hostname_path=os.path.join(files, "hostname"),
        hosts_path=os.path.join(files, "hosts"),
        resolv_conf_path=os.path.join(files, "resolv.conf"),
        netns_path=None,
        sysinfo=HOST,
    )
    arguments.update(kwargs)
    return build_with_inputs(**arguments)


def mount(s, destination):
    found = [m for m in s["mounts"] if m["destination"] == destination]
    assert len(found) == 1, (destination, s["mounts"])
    return found[0]


# -- names --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ab", "/ab", "web_1", "a.b-c", "A9"])
def test_valid_names(name):
    spec.validate_name(name)


@pytest.mark.parametrize("name", ["a", "_ab", "//ab", "a b", "-ab", "ab/c", "ab\n"])
def test_invalid_names(name):
    with pytest.raises(InvalidParameter) as caught:
        spec.validate_name(name)
    assert caught.value.message == (
        "Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed" % name
    )


# -- create-request checks: dockerd 20.10's messages ---------------------------

REFUSALS = [
    ({"RestartPolicy": {"Name": "x"}}, "invalid restart policy 'x'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
     "maximum retry count cannot be used with restart policy 'always'"),
    ({"RestartPolicy": {"Name": "no", "MaximumRetryCount": 1}},
     "maximum retry count cannot be used with restart policy 'no'"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}},
     "maximum retry count cannot be negative"),
    ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}},
     "can't create 'AutoRemove' container with restart policy"),
    ({"AutoRemove": True, "RestartPolicy": {"Name": "bogus"}},
     "can't create 'AutoRemove' container with restart policy"),
    ({"Memory": 1000}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": -1}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 10000000, "MemorySwap": 5000000},
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({"MemorySwap": 50000000},
     "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ({"MemoryReservation": 5}, "Minimum memory reservation allowed is 6MB"),
    ({"Memory": 7000000, "MemoryReservation": 8000000},
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    ({"MemorySwappiness": 101}, "Invalid value: 101, valid memory swappiness range is 0-100"),
    ({"KernelMemory": 100}, "Minimum kernel memory limit allowed is 6MB"),
    ({"NanoCpus": 1000000000, "CpuQuota": 50000},
     "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
    ({"NanoCpus": 1000000000, "CpuPeriod": 50000},
     "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
    ({"NanoCpus": 3000000000},
     "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    ({"NanoCpus": -1}, "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    ({"CpuPeriod": 100},
     "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    ({"CpuPeriod": 10000000},
     "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    ({"CpuQuota": 100}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ({"CpusetCpus": "abc"}, "Invalid value abc for cpuset cpus: invalid format: abc"),
    ({"CpusetCpus": "1-0"}, "Invalid value 1-0 for cpuset cpus: invalid format: 1-0"),
    ({"CpusetCpus": "-1"}, "Invalid value -1 for cpuset cpus: invalid format: -1"),
    ({"CpusetCpus": "0-100000"},
     "Invalid value 0-100000 for cpuset cpus: value of out range, maximum is 8192"),
    ({"CpusetCpus": "0-200"}, "Requested CPUs are not available - requested 0-200, available: 0-1"),
    ({"CpusetMems": "x"}, "Invalid value x for cpuset mems: invalid format: x"),
    ({"CpusetMems": "5"},
     "Requested memory nodes are not available - requested 5, available: 0"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"OomScoreAdj": 5000}, "Invalid value 5000, range for oom score adj is [-1000, 1000]"),
    ({"CapAdd": ["FOO"]}, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    ({"CapDrop": ["cap_foo"]}, 'invalid CapDrop: unknown capability: "CAP_FOO"'),
    ({"CapAdd": ["CAP_ALL"]}, 'invalid CapAdd: unknown capability: "CAP_ALL"'),
    ({"Mounts": [{"Target": "/x"}]}, 'invalid mount config for type "": mount type unknown'),
    ({"Mounts": [{"Type": "foo", "Target": "/x"}]},
     'invalid mount config for type "foo": mount type unknown'),
    ({"Mounts": [{"Type": "bind", "Target": "/x"}]},
     'invalid mount config for type "bind": field Source must not be empty'),
    ({"Mounts": [{"Type": "bind", "Source": "rel", "Target": "/x"}]},
     "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be "
     "absolute"),
    ({"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "x"}]},
     "invalid mount config for type \"bind\": invalid mount path: 'x' mount path must be absolute"),
    ({"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x/.."}]},
     "invalid mount config for type \"bind\": invalid specification: destination can't be '/'"),
    ({"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x",
                  "BindOptions": {"Propagation": "weird"}}]},
     'invalid mount config for type "bind": invalid propagation mode: weird'),
    ({"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x", "VolumeOptions": {}}]},
     'invalid mount config for type "bind": field VolumeOptions must not be specified'),
    ({"Mounts": [{"Type": "tmpfs", "Source": "/tmp", "Target": "/x"}]},
     'invalid mount config for type "tmpfs": field Source must not be specified'),
    ({"Mounts": [{"Type": "tmpfs", "Target": "/x", "BindOptions": {}}]},
     'invalid mount config for type "tmpfs": field BindOptions must not be specified'),
    ({"Mounts": [{"Type": "volume", "Target": "/x", "ReadOnly": True}]},
     'invalid mount config for type "volume": must not set ReadOnly mode when using '
     "anonymous volumes"),
    ({"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x"}], "Binds": ["/tmp:/x"]},
     "Duplicate mount point: /x"),
    ({"Binds": ["/tmp:/x", "/tmp:/x/"]}, "Duplicate mount point: /x"),
    ({"Binds": ["/tmp:/x"], "Tmpfs": {"/x": ""}}, "Duplicate mount point: /x"),
    ({"Binds": [":/x"]}, "invalid volume specification: ':/x'"),
    ({"Binds": ["/x:rw"]}, "invalid volume specification: '/x:rw'"),
    ({"Binds": ["a:b:c:d:e"]}, "invalid volume specification: 'a:b:c:d:e'"),
    ({"Binds": ["/tmp:/x:bogus"]}, "invalid mode: bogus"),
    ({"Binds": ["/tmp:/x:ro,rw"]}, "invalid mode: ro,rw"),
    ({"Binds": ["/tmp:/"]},
     "invalid volume specification: '/tmp:/': invalid mount config for type \"bind\": "
     "invalid specification: destination can't be '/'"),
    ({"Binds": ["/tmp:/x:nocopy"]},
     "invalid volume specification: '/tmp:/x:nocopy': invalid mount config for type "
     '"bind": field VolumeOptions must not be specified'),
    ({"Binds": ["/tmp::ro"]},
     "invalid volume specification: '/tmp::ro': invalid mount config for type \"bind\": "
     "field Target must not be empty"),
    ({"Tmpfs": {"rel": ""}}, "invalid mount path: 'rel' mount path must be absolute"),
    ({"Tmpfs": {"/": ""}}, "invalid specification: destination can't be '/'"),
    ({"SecurityOpt": ["foo"]}, 'invalid --security-opt 1: "foo"'),
    ({"SecurityOpt": ["foo=bar"]}, 'invalid --security-opt 2: "foo=bar"'),
    ({"SecurityOpt": ["no-new-privileges=maybe"]},
     'invalid --security-opt 2: "no-new-privileges=maybe"'),
    # SecurityOpt is checked before Binds, as dockerd does.
    ({"Binds": ["/tmp:/x:bogus"], "SecurityOpt": ["foo"]}, 'invalid --security-opt 1: "foo"'),
    ({"NetworkMode": "container:"},
     "Invalid network mode: invalid container format container:<name|id>"),
    ({"NetworkMode": "container"},
     "Invalid network mode: invalid container format container:<name|id>"),
    ({"NetworkMode": "host", "Links": ["a:b"]},
     "conflicting options: host type networking can't be used with links. "
     "This would result in undefined behavior"),
    ({"NetworkMode": "container:x", "Links": ["a:b"]},
     "conflicting options: container type network can't be used with links. "
     "This would result in undefined behavior"),
    ({"NetworkMode": "container:x", "Dns": ["1.1.1.1"]},
     "conflicting options: dns and the network mode"),
    ({"NetworkMode": "container:x", "ExtraHosts": ["a:1.1.1.1"]},
     "conflicting options: custom host-to-IP mapping and the network mode"),
    ({"NetworkMode": "container:x", "PublishAllPorts": True},
     "conflicting options: port publishing and the container type network mode"),
    ({"ExtraHosts": ["foo"]}, 'bad format for add-host: "foo"'),
    ({"ExtraHosts": ["foo:bar"]}, 'invalid IP address in add-host: "bar"'),
    ({"PortBindings": {"abc/tcp": []}}, 'invalid port specification: "abc"'),
    ({"PortBindings": {"80-81/tcp": []}}, 'invalid port specification: "80-81"'),
    ({"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}, 'invalid port specification: "99999"'),
    ({"CpuRealtimePeriod": 1000, "CpuRealtimeRuntime": 2000},
     "cpu real-time runtime cannot be higher than cpu real-time period"),
    ({"IOMaximumIOps": 10},
     "Invalid QoS settings: linux does not support configuration of maximum IOPs"),
    ({"Isolation": "hyperv"}, "Invalid isolation: \"hyperv\" - linux only supports 'default'"),
    ({"Runtime": "foo"}, "Unknown runtime specified foo"),
    ({"CgroupnsMode": "foo"}, "invalid cgroup namespace mode: foo"),
]


@pytest.mark.parametrize("host_config,message", REFUSALS)
def test_create_refusals(host_config, message):
    assert refused(host_config=host_config) == message


@pytest.mark.parametrize(
    "config,message",
    [
        ({"Env": ["=foo"]}, "invalid environment variable: =foo"),
        ({"Env": [""]}, "invalid environment variable: "),
        ({"WorkingDir": "rel"},
         "the working directory 'rel' is invalid, it needs to be an absolute path"),
        ({"StopSignal": "FOO"}, "Invalid signal: FOO"),
        ({"StopSignal": "0"}, "Invalid signal: 0"),
        ({"Healthcheck": {"Interval": 5}}, "Interval in Healthcheck cannot be less than 1ms"),
        ({"Healthcheck": {"Retries": -1}}, "Retries in Healthcheck cannot be negative"),
    ],
)
def test_config_refusals(config, message):
    assert refused(config=config) == message


def test_hostname_conflicts():
    assert refused({"Hostname": "h"}, {"UTSMode": "host"}) == (
        "conflicting options: hostname and the UTS mode"
    )
    assert refused({"Hostname": "h"}, {"NetworkMode": "container:abc"}) == (
        "conflicting options: hostname and the network mode"
    )
    assert refused({"MacAddress": "02:42:ac:11:00:02"}, {"NetworkMode": "host"}) == (
        "conflicting options: mac-address and the network mode"
    )
    assert refused({"ExposedPorts": {"80/tcp": {}}}, {"NetworkMode": "container:x"}) == (
        "conflicting options: port exposing and the container type network mode"
    )


def test_bind_source_must_exist(tmp_path):
    missing = str(tmp_path / "nope")
    mounts = [{"Type": "bind", "Source": missing, "Target": "/x"}]
    assert refused(host_config={"Mounts": mounts}) == (
        'invalid mount config for type "bind": bind source path does not exist: %s' % missing
    )
    # Binds sources are created at start instead, as dockerd does.
    assert validate(host_config={"Binds": [missing + ":/x"]}) == []
    assert spec.missing_bind_sources({"Binds": [missing + ":/x", "/tmp:/y", "vol:/z"]}) == [missing]


@pytest.mark.parametrize(
    "host_config",
    [
        {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5}},
        {"RestartPolicy": {"Name": "", "MaximumRetryCount": 1}},
        {"AutoRemove": True, "RestartPolicy": {"Name": "no"}},
        {"Memory": 10000000, "MemorySwap": -1},
        {"NanoCpus": 1000000000, "CpuQuota": -1},
        {"CpuQuota": -1},
        {"CpusetCpus": "+1"},
        {"CpusetCpus": "0-1"},
        {"PidsLimit": -5},
        {"MemorySwappiness": -1},
        {"CapAdd": ["sys_admin", "CAP_NET_ADMIN", "all", "bpf"]},
        {"NetworkMode": "foo"},
        {"NetworkMode": "container:abc"},
        {"IpcMode": "foo", "PidMode": "bar", "UTSMode": "baz"},
        {"Binds": ["/tmp:/x:Z,ro,rshared", "relname:/y", "/anon"]},
        {"Mounts": [{"Type": "tmpfs", "Target": "/x", "ReadOnly": True}]},
        {"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x",
                     "BindOptions": {"NonRecursive": True}}]},
        {"ExtraHosts": ["foo:1.2.3.4", "bar:host-gateway", "x:::1"]},
        {"PortBindings": {"80/udp": [{"HostPort": ""}, {"HostPort": "8080-8081"}]}},
        {"SecurityOpt": ["no-new-privileges=true", "label=disable", "apparmor=x",
                         "seccomp=unconfined"]},
        {"Isolation": "Default"},
        {"Runtime": "runc"},
    ],
)
def test_accepted(host_config):
    assert validate(host_config=host_config) == []


def test_warnings():
    assert validate(host_config={"BlkioWeight": 2000}) == [
        "Your kernel does not support Block I/O weight or the cgroup is not mounted. "
        "Weight discarded."
    ]
    assert validate(host_config={"OomKillDisable": True}) == [
        "OOM killer is disabled for the container, but no memory limit is set, this can "
        "result in the system running out of resources."
    ]
    assert validate(host_config={"KernelMemory": 7000000}) == [
        "Specifying a kernel memory limit is deprecated and will be removed in a future release."
    ]
    assert validate(host_config={"CpuPercent": 10}) == [
        "linux does not support CPU percent. Percent discarded."
    ]
    assert validate(
        host_config={"NetworkMode": "host", "PortBindings": {"80/tcp": [{"HostPort": "80"}]}}
    ) == ["Published ports are discarded when using host network mode"]
    no_swap = attr.evolve(HOST, swap=False)
    assert validate(host_config={"Memory": 10000000}, sysinfo=no_swap) == [
        "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
        "Memory limited without swap."
    ]


def test_api_version_adjustments():
    # Before API 1.25 the client removed the container itself: AutoRemove is ignored.
    host_config = {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}
    assert validate(host_config=host_config, version="1.24") == []
    assert refused(host_config=host_config, version="1.25") == (
        "can't create 'AutoRemove' container with restart policy"
    )


def test_adapt_host_config():
    adapted = spec.adapt_host_config(
        {"Memory": 64 << 20, "BlkioWeight": 500, "Privileged": False}, "1.41", sysinfo=HOST
    )
    assert adapted["MemorySwap"] == 128 << 20
    assert adapted["ShmSize"] == 64 << 20
    assert adapted["IpcMode"] == "private"
    assert adapted["CgroupnsMode"] == "host"
    assert adapted["OomKillDisable"] is False
    assert adapted["BlkioWeight"] == 0
    assert adapted["MaskedPaths"] == list(spec.DEFAULT_MASKED_PATHS)
    assert adapted["ReadonlyPaths"] == list(spec.DEFAULT_READONLY_PATHS)
    assert adapted["SecurityOpt"] is None
    privileged = spec.adapt_host_config({"Privileged": True}, "1.41", sysinfo=HOST)
    assert privileged["SecurityOpt"] == ["label=disable"]
    assert "MaskedPaths" not in privileged
    assert spec.adapt_host_config({}, "1.39", sysinfo=HOST)["IpcMode"] == "shareable"
    v2 = attr.evolve(HOST, cgroup_version="2")
    assert spec.adapt_host_config({}, "1.41", sysinfo=v2)["CgroupnsMode"] == "private"


# -- config merge and process ------------------------------------------------


def test_merge_image_defaults():
    image = {
        "Cmd": ["/bin/sh"],
        "Entrypoint": ["/entry"],
        "Env": ["PATH=/image/bin", "A=image", "B=image"],
        "WorkingDir": "/srv",
        "User": "daemon",
        "Labels": {"a": "image", "b": "image"},
        "StopSignal": "SIGQUIT",
    }
    merged = spec.merge_config({"Env": ["A=mine"], "Labels": {"a": "mine"}}, image)
    assert merged["Entrypoint"] == ["/entry"]
    assert merged["Cmd"] == ["/bin/sh"]
    assert merged["Env"] == ["A=mine", "PATH=/image/bin", "B=image"]
    assert merged["WorkingDir"] == "/srv"
    assert merged["User"] == "daemon"
    assert merged["Labels"] == {"a": "mine", "b": "image"}
    assert merged["StopSignal"] == "SIGQUIT"
    assert spec.entrypoint_and_args(merged) == ("/entry", ["/bin/sh"])


def test_entrypoint_resets_image_cmd():
    image = {"Cmd": ["image-cmd"], "Entrypoint": ["/image-entry"]}
    merged = spec.merge_config({"Entrypoint": ["/mine"]}, image)
    assert spec.entrypoint_and_args(merged) == ("/mine", [])
    merged = spec.merge_config({"Cmd": ["mine"]}, image)
    assert spec.entrypoint_and_args(merged) == ("/image-entry", ["mine"])
    # [""] clears the image's entrypoint and keeps its Cmd away too.
    merged = spec.merge_config({"Entrypoint": [""], "Cmd": ["echo", "hi"]}, image)
    assert spec.entrypoint_and_args(merged) == ("echo", ["hi"])
    # A string is a one-item list, as the API's StrSlice.
    merged = spec.merge_config({"Entrypoint": "/bin/x", "Cmd": "arg"}, {})
    assert spec.entrypoint_and_args(merged) == ("/bin/x", ["arg"])


def test_no_command():
    with pytest.raises(InvalidParameter) as caught:
        spec.merge_config({}, {})
    assert caught.value.message == "No command specified"
    with pytest.raises(InvalidParameter):
        spec.merge_config({"Entrypoint": [""]}, {"Entrypoint": ["/x"]})


def test_environment(rootfs):
    s = build(rootfs, {"Cmd": ["true"], "Env": ["FOO=bar", "PATH=/mine"]})
    assert s["process"]["env"] == ["PATH=/mine", "HOSTNAME=0123456789ab", "FOO=bar"]
    s = build(rootfs, {"Cmd": ["true"], "Tty": True, "Hostname": "web", "Env": ["HOSTNAME"]})
    assert s["process"]["env"] == ["PATH=" + spec.DEFAULT_PATH_ENV, "TERM=xterm"]
    assert s["process"]["terminal"] is True
    assert s["hostname"] == "web"
    s = build(rootfs, {"Cmd": ["true"]}, image_config={"Env": ["LANG=C"], "WorkingDir": "/w"})
    assert s["process"]["env"][-1] == "LANG=C"
    assert s["process"]["cwd"] == "/w"
    assert s["process"]["terminal"] is False


def test_process_basics(rootfs):
    s = build(rootfs, {"Cmd": ["echo", "hi"], "Domainname": "example.com"})
    assert s["ociVersion"] == "1.0.2"
    assert s["process"]["args"] == ["echo", "hi"]
    assert s["process"]["cwd"] == "/"
    assert s["root"] == {"path": rootfs, "readonly": False}
    assert s["linux"]["cgroupsPath"] == "/twistedock/" + "0123456789abcdef" * 4
    assert s["linux"]["sysctl"]["kernel.domainname"] == "example.com"
    assert "noNewPrivileges" not in s["process"]
    assert "oomScoreAdj" not in s["process"]
    assert "apparmorProfile" not in s["process"]
    s = build(rootfs, host_config={"SecurityOpt": ["no-new-privileges"], "OomScoreAdj": 100,
                                   "CgroupParent": "/elsewhere"})
    assert s["process"]["noNewPrivileges"] is True
    assert s["process"]["oomScoreAdj"] == 100
    assert s["linux"]["cgroupsPath"] == "/elsewhere/" + "0123456789abcdef" * 4


def test_init(rootfs):
    s = build(rootfs, {"Cmd": ["sleep", "1"]}, {"Init": True}, init_path="/usr/bin/tini")
    assert s["process"]["args"] == ["/sbin/docker-init", "--", "sleep", "1"]
    assert mount(s, "/sbin/docker-init") == {
        "destination": "/sbin/docker-init", "type": "bind", "source": "/usr/bin/tini",
        "options": ["bind", "ro"],
    }
    # No init in the host's PID namespace.
    s = build(rootfs, {"Cmd": ["sleep", "1"]}, {"Init": True, "PidMode": "host"},
              init_path="/usr/bin/tini")
    assert s["process"]["args"] == ["sleep", "1"]
    with pytest.raises(InvalidParameter):
        build(rootfs, {"Cmd": ["sleep", "1"]}, {"Init": True})


# -- users -------------------------------------------------------------------


@pytest.mark.parametrize(
    "user,expected",
    [
        ("", (0, 0, [0])),
        ("root", (0, 0, [0])),
        ("alice", (1000, 1000, [1000, 29, 44])),
        ("1000", (1000, 1000, [1000, 29, 44])),
        ("daemon", (1, 1, [1, 44])),
        ("nobody", (65534, 65534, [65534])),
        ("alice:staff", (1000, 50, [50])),
        ("alice:50", (1000, 50, [50])),
        ("alice:4242", (1000, 4242, [4242])),
        ("4242", (4242, 0, [0])),
        ("4242:4343", (4242, 4343, [4343])),
    ],
)
def test_resolve_user(rootfs, user, expected):
    resolved = spec.resolve_user(rootfs, user)
    assert (resolved["uid"], resolved["gid"], resolved["additionalGids"]) == expected


def test_resolve_user_errors(rootfs):
    with pytest.raises(InternalError) as caught:
        spec.resolve_user(rootfs, "foo")
    assert caught.value.message == "unable to find user foo: no matching entries in passwd file"
    with pytest.raises(InternalError) as caught:
        spec.resolve_user(rootfs, "alice:foo")
    assert caught.value.message == "unable to find group foo: no matching entries in group file"
    with pytest.raises(InternalError) as caught:
        spec.resolve_user(rootfs, "99999999999")
    assert caught.value.message == "uids and gids must be in range 0-2147483647"
    with pytest.raises(InternalError) as caught:
        spec.resolve_user(rootfs, "nobody", ["foo"])
    assert caught.value.message == "Unable to find group foo: no matching entries in group file"


def test_group_add(rootfs):
    resolved = spec.resolve_user(rootfs, "nobody", ["77", "staff", "audio", "77"])
    assert resolved["additionalGids"] == [65534, 77, 50, 29]


def test_passwd_symlink_stays_in_rootfs(tmp_path, rootfs):
    etc = os.path.join(rootfs, "etc")
    os.rename(os.path.join(etc, "passwd"), os.path.join(etc, "passwd.real"))
    os.symlink("/etc/passwd.real", os.path.join(etc, "passwd"))
    assert spec.resolve_user(rootfs, "alice")["uid"] == 1000


def test_no_passwd_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert spec.resolve_user(str(empty), "123:456") == {
        "uid": 123, "gid": 456, "additionalGids": [456],
    }
    with pytest.raises(InternalError):
        spec.resolve_user(str(empty), "alice")


def test_user_in_spec(rootfs):
    s = build(rootfs, {"Cmd": ["id"], "User": "alice"}, {"GroupAdd": ["staff"]})
    assert s["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 29, 44, 50]}
    # Image default user, overridden by the request's.
    s = build(rootfs, {"Cmd": ["id"]}, image_config={"User": "daemon"})
    assert s["process"]["user"]["uid"] == 1
    s = build(rootfs, {"Cmd": ["id"], "User": "0"}, image_config={"User": "daemon"})
    assert s["process"]["user"]["uid"] == 0


# -- capabilities --------------------------------------------------------------


def test_default_capabilities(rootfs):
    s = build(rootfs)
    caps = s["process"]["capabilities"]
    assert caps["bounding"] == list(spec.DEFAULT_CAPABILITIES)
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert "inheritable" not in caps
    # A non-root user keeps only the bounding set, as dockerd 20.10.
    s = build(rootfs, {"Cmd": ["true"], "User": "nobody"})
    assert s["process"]["capabilities"] == {"bounding": list(spec.DEFAULT_CAPABILITIES)}


def test_cap_add_drop():
    caps = spec.tweak_capabilities(
        ["sys_admin", "CAP_NET_ADMIN"], ["chown", "CAP_KILL"], sysinfo=HOST
    )
    assert "CAP_SYS_ADMIN" in caps and "CAP_NET_ADMIN" in caps
    assert "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    assert spec.tweak_capabilities(["NET_RAW"], ["ALL"], sysinfo=HOST) == ["CAP_NET_RAW"]
    everything = spec.tweak_capabilities(["ALL"], ["mknod"], sysinfo=HOST)
    assert everything == [c for c in spec.ALL_CAPABILITIES if c != "CAP_MKNOD"]
    assert spec.tweak_capabilities(None, None, True, HOST) == list(spec.ALL_CAPABILITIES)
    older = attr.evolve(HOST, last_cap=37)
    assert spec.tweak_capabilities(None, None, True, older)[-1] == "CAP_AUDIT_READ"
    with pytest.raises(InvalidParameter):
        spec.tweak_capabilities(["CAP_BPF"], None, sysinfo=older)


def test_all_means_what_the_daemon_holds():
    # Bits 0-23 and 25-40: everything but CAP_SYS_RESOURCE.
    lacking = attr.evolve(HOST, own_capabilities=(1 << 41) - 1 - (1 << 24))
    caps = spec.tweak_capabilities(None, None, True, lacking)
    assert "CAP_SYS_RESOURCE" not in caps and "CAP_SYS_ADMIN" in caps
    assert "CAP_SYS_RESOURCE" not in spec.tweak_capabilities(["ALL"], None, sysinfo=lacking)
    # Asked for by name, it stays: runc then fails as it fails under dockerd.
    assert "CAP_SYS_RESOURCE" in spec.tweak_capabilities(["SYS_RESOURCE"], None, sysinfo=lacking)


# -- seccomp -------------------------------------------------------------------


def rule_for(seccomp, name):
    return [r for r in seccomp["syscalls"] if name in r["names"]]


@needs_profile
def test_default_seccomp_follows_capabilities(rootfs):
    s = build(rootfs)
    seccomp = s["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert seccomp["defaultErrnoRet"] == 38
    assert seccomp["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert [r["action"] for r in rule_for(seccomp, "bpf")] == ["SCMP_ACT_ERRNO"]
    assert rule_for(seccomp, "bpf")[0]["errnoRet"] == 1
    assert [r["action"] for r in rule_for(seccomp, "chroot")] == ["SCMP_ACT_ALLOW"]
    assert rule_for(seccomp, "arch_prctl")
    assert not rule_for(seccomp, "s390_runtime_instr")
    s = build(rootfs, host_config={"CapAdd": ["SYS_ADMIN"], "CapDrop": ["SYS_CHROOT"]})
    seccomp = s["linux"]["seccomp"]
    assert [r["action"] for r in rule_for(seccomp, "bpf")] == ["SCMP_ACT_ALLOW"]
    assert [r["action"] for r in rule_for(seccomp, "chroot")] == ["SCMP_ACT_ERRNO"]


@needs_profile
def test_seccomp_for_another_architecture():
    with open(PROFILE) as f:
        profile = json.load(f)
    seccomp = spec.seccomp_from_profile(
        profile, spec.DEFAULT_CAPABILITIES, machine="aarch64", kernel="6.1"
    )
    assert seccomp["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert not rule_for(seccomp, "arch_prctl")
    assert rule_for(seccomp, "cacheflush")


def test_seccomp_selection_rules():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"name": "a", "action": "SCMP_ACT_ALLOW"},
            {"names": ["b"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.0"}},
            {"names": ["c"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.0"}},
            {"names": ["d"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
            {"names": ["e"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        ],
    }
    seccomp = spec.seccomp_from_profile(profile, [], machine="x86_64", kernel="6.1.0")
    assert seccomp["architectures"] == ["SCMP_ARCH_X86_64"]
    assert [r["names"] for r in seccomp["syscalls"]] == [["a"], ["e"]]
    assert seccomp["syscalls"][1]["args"] == [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]
    assert spec.seccomp_from_profile({}, []) is None


def test_seccomp_options(rootfs):
    assert "seccomp" not in build(rootfs, host_config={"Privileged": True})["linux"]
    assert "seccomp" not in build(
        rootfs, host_config={"SecurityOpt": ["seccomp=unconfined"]}
    )["linux"]
    inline = {"defaultAction": "SCMP_ACT_ALLOW",
              "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    s = build(rootfs, host_config={"SecurityOpt": ["seccomp=" + json.dumps(inline)]})
    assert s["linux"]["seccomp"] == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
    }
    path = os.path.join(os.path.dirname(rootfs), "profile.json")
    with open(path, "w") as f:
        json.dump(inline, f)
    s = build(rootfs, host_config={"SecurityOpt": ["seccomp=" + path]})
    assert s["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    with pytest.raises(InternalError) as caught:
        build(rootfs, host_config={"SecurityOpt": ["seccomp={bad"]})
    assert caught.value.message.startswith("Decoding seccomp profile failed: ")
    no_seccomp = attr.evolve(HOST, seccomp=False)
    assert "seccomp" not in build(rootfs, sysinfo=no_seccomp)["linux"]
    with pytest.raises(InternalError):
        build(rootfs, host_config={"SecurityOpt": ["seccomp=" + path]}, sysinfo=no_seccomp)


# -- mounts --------------------------------------------------------------------


def test_default_mounts(rootfs):
    s = build(rootfs)
    assert [m["destination"] for m in s["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
        "/etc/resolv.conf", "/etc/hostname", "/etc/hosts",
    ]
    assert mount(s, "/dev/shm")["options"] == [
        "nosuid", "noexec", "nodev", "mode=1777", "size=67108864",
    ]
    assert mount(s, "/sys")["options"] == ["nosuid", "noexec", "nodev", "ro"]
    assert mount(s, "/sys/fs/cgroup")["options"] == ["ro", "nosuid", "noexec", "nodev"]
    files = os.path.dirname(rootfs)
    assert mount(s, "/etc/hosts") == {
        "destination": "/etc/hosts", "type": "bind", "source": os.path.join(files, "hosts"),
        "options": ["rbind", "rprivate"],
    }
    assert s["linux"]["maskedPaths"] == list(spec.DEFAULT_MASKED_PATHS)
    assert s["linux"]["readonlyPaths"] == list(spec.DEFAULT_READONLY_PATHS)
    s = build(rootfs, host_config={"ShmSize": 1 << 20, "MaskedPaths": [], "ReadonlyPaths": ["/x"]})
    assert mount(s, "/dev/shm")["options"][-1] == "size=1048576"
    assert s["linux"]["maskedPaths"] == [] and s["linux"]["readonlyPaths"] == ["/x"]
    s = build(rootfs, host_config={"IpcMode": "none"})
    assert "/dev/shm" not in [m["destination"] for m in s["mounts"]]


def test_binds_and_mounts(rootfs, tmp_path):
    src = str(tmp_path)
    s = build(rootfs, host_config={
        "Binds": [src + ":/b1:ro", src + ":/data/b2:rprivate,z", "/anon"],
        "Mounts": [
            {"Type": "bind", "Source": src, "Target": "/b3", "ReadOnly": True,
             "BindOptions": {"Propagation": "private", "NonRecursive": True}},
            {"Type": "tmpfs", "Target": "/t2",
             "TmpfsOptions": {"SizeBytes": 2097152, "Mode": 0o1770}},
            {"Type": "volume", "Source": "named", "Target": "/v"},
        ],
        "Tmpfs": {"/run": "size=1m,mode=700,exec"},
    }, volumes={"/anon": "/var/lib/vols/anon", "/v": "/var/lib/vols/named"})
    assert mount(s, "/b1") == {"destination": "/b1", "type": "bind", "source": src,
                               "options": ["rbind", "ro", "rprivate"]}
    assert mount(s, "/data/b2")["options"] == ["rbind", "rprivate"]
    assert mount(s, "/b3")["options"] == ["bind", "ro", "private"]
    assert mount(s, "/anon") == {"destination": "/anon", "type": "bind",
                                 "source": "/var/lib/vols/anon", "options": ["rbind"]}
    assert mount(s, "/v")["source"] == "/var/lib/vols/named"
    assert mount(s, "/t2") == {"destination": "/t2", "type": "tmpfs", "source": "tmpfs",
                               "options": ["noexec", "nosuid", "nodev", "rprivate",
                                           "mode=1770", "size=2m"]}
    assert mount(s, "/run")["options"] == ["nosuid", "nodev", "rprivate", "size=1m",
                                           "mode=700", "exec"]
    destinations = [m["destination"] for m in s["mounts"]]
    # Shallower destinations first, as dockerd sorts them.
    assert destinations.index("/b1") < destinations.index("/data/b2")
    assert destinations.index("/run") < destinations.index("/etc/hosts")
    assert "rootfsPropagation" not in s["linux"]


def test_volume_without_a_path(rootfs):
    with pytest.raises(NotImplementedYet):
        build(rootfs, host_config={"Binds": ["named:/v"]})


def test_bad_tmpfs_option(rootfs):
    with pytest.raises(InternalError) as caught:
        build(rootfs, host_config={"Tmpfs": {"/x": "foo"}})
    assert caught.value.message == 'invalid tmpfs option ["foo"]'


def test_user_mounts_replace_defaults(rootfs, tmp_path):
    src = str(tmp_path)
    hosts = os.path.join(src, "myhosts")
    open(hosts, "w").close()
    s = build(rootfs, host_config={
        "Binds": [hosts + ":/etc/hosts:ro"],
        "Mounts": [{"Type": "tmpfs", "Target": "/dev/shm"}],
    })
    assert mount(s, "/etc/hosts")["source"] == hosts
    assert mount(s, "/etc/hosts")["options"] == ["rbind", "ro", "rprivate"]
    assert mount(s, "/dev/shm")["source"] == "tmpfs"
    s = build(rootfs, host_config={"Binds": [src + ":/dev"]})
    destinations = [m["destination"] for m in s["mounts"]]
    assert not [d for d in destinations if d.startswith("/dev/")]
    assert mount(s, "/dev")["type"] == "bind"


def test_readonly_rootfs(rootfs, tmp_path):
    s = build(rootfs, host_config={"ReadonlyRootfs": True, "Binds": [str(tmp_path) + ":/b"]})
    assert s["root"]["readonly"] is True
    for destination in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
        assert "ro" in mount(s, destination)["options"]
    assert "ro" not in mount(s, "/b")["options"]
    assert "ro" not in mount(s, "/dev/shm")["options"]
    assert "ro" not in mount(s, "/proc")["options"]


def test_privileged(rootfs):
    s = build(rootfs, host_config={"Privileged": True})
    assert s["process"]["capabilities"]["bounding"] == list(spec.ALL_CAPABILITIES)
    assert "ro" not in mount(s, "/sys")["options"]
    assert "ro" not in mount(s, "/sys/fs/cgroup")["options"]
    assert "maskedPaths" not in s["linux"] and "readonlyPaths" not in s["linux"]
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert {"path": "/dev/null", "type": "c", "major": 1, "minor": 3} in [
        {k: d[k] for k in ("path", "type", "major", "minor")} for d in s["linux"]["devices"]
    ]


def test_devices(rootfs):
    s = build(rootfs, host_config={
        "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                     "CgroupPermissions": "rw"}],
        "DeviceCgroupRules": ["c 42:* rmw"],
    })
    [device] = s["linux"]["devices"]
    assert (device["path"], device["type"], device["major"], device["minor"]) == (
        "/dev/mynull", "c", 1, 3,
    )
    rules = s["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"} in rules
    assert rules[-1] == {"allow": True, "type": "c", "major": 42, "minor": -1, "access": "rmw"}


# -- resources, namespaces, limits --------------------------------------------


def test_resources(rootfs):
    s = build(rootfs, host_config={
        "Memory": 64 << 20, "MemoryReservation": 32 << 20, "NanoCpus": 1500000000,
        "CpuShares": 512, "CpusetCpus": "0", "CpusetMems": "0", "PidsLimit": 50,
        "BlkioWeight": 500, "OomKillDisable": True, "MemorySwappiness": 10,
    })
    r = s["linux"]["resources"]
    assert r["memory"] == {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20,
                           "swappiness": 10, "disableOOMKiller": True}
    assert r["cpu"] == {"shares": 512, "period": 100000, "quota": 150000, "cpus": "0", "mems": "0"}
    assert r["pids"] == {"limit": 50}
    assert "blockIO" not in r  # no blkio weight on this host: discarded, as dockerd warns
    s = build(rootfs, host_config={"Memory": 64 << 20, "MemorySwap": -1, "CpuPeriod": 50000,
                                   "CpuQuota": 25000, "PidsLimit": 0})
    r = s["linux"]["resources"]
    assert r["memory"] == {"limit": 64 << 20, "disableOOMKiller": False}
    assert r["cpu"] == {"period": 50000, "quota": 25000}
    assert r["pids"] == {"limit": -1}
    v2 = attr.evolve(HOST, cgroup_version="2", oom_kill_disable=False, blkio_weight=True)
    r = build(rootfs, host_config={"BlkioWeight": 500, "OomKillDisable": True},
              sysinfo=v2)["linux"]["resources"]
    assert r["blockIO"] == {"weight": 500}
    assert "memory" not in r


def test_namespaces(rootfs):
    def kinds(s):
        return [(n["type"], n.get("path")) for n in s["linux"]["namespaces"]]

    s = build(rootfs)
    assert kinds(s) == [("mount", None), ("network", None), ("uts", None), ("pid", None),
                        ("ipc", None)]
    assert s["linux"]["sysctl"] == {"net.ipv4.ping_group_range": "0 2147483647",
                                    "net.ipv4.ip_unprivileged_port_start": "0"}
    s = build(rootfs, netns_path="/run/netns/x")
    assert ("network", "/run/netns/x") in kinds(s)
    s = build(rootfs, host_config={"NetworkMode": "host", "PidMode": "host", "IpcMode": "host",
                                   "Sysctls": {"kernel.msgmax": "1"}})
    assert kinds(s) == [("mount", None), ("uts", None)]
    assert s["hostname"] == socket.gethostname()
    assert s["linux"]["sysctl"] == {"kernel.msgmax": "1"}
    s = build(rootfs, host_config={"NetworkMode": "none", "UTSMode": "host",
                                   "CgroupnsMode": "private"})
    assert kinds(s) == [("mount", None), ("network", None), ("pid", None), ("ipc", None),
                        ("cgroup", None)]
    assert "hostname" not in s
    s = build(rootfs, host_config={"NetworkMode": "container:abc", "PidMode": "container:abc"},
              netns_path="/proc/42/ns/net", namespace_paths={"pid": "/proc/42/ns/pid"})
    assert ("pid", "/proc/42/ns/pid") in kinds(s) and ("network", "/proc/42/ns/net") in kinds(s)
    with pytest.raises(InternalError) as caught:
        build(rootfs, host_config={"IpcMode": "foo"})
    assert caught.value.message == "Invalid IPC mode: foo"


def test_rlimits(rootfs):
    own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected = 1048576 if own_hard == resource.RLIM_INFINITY else min(1048576, own_hard)
    s = build(rootfs)
    assert s["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": expected, "soft": expected}
    ]
    s = build(rootfs, host_config={"Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200},
                                               {"Name": "nproc", "Soft": -1, "Hard": -1}]})
    nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 2**64 - 1 if nproc_hard == resource.RLIM_INFINITY else nproc_hard
    assert s["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100},
        {"type": "RLIMIT_NPROC", "hard": nproc, "soft": nproc},
    ]
    # Above the daemon's own hard limit runc would fail ("operation not permitted"): capped.
    big = build(rootfs, host_config={"Ulimits": [{"Name": "nofile", "Soft": 10**9, "Hard": 10**9}]})
    capped = 10**9 if own_hard == resource.RLIM_INFINITY else min(10**9, own_hard)
    assert big["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": capped, "soft": capped}]
    with pytest.raises(InvalidParameter):
        build(rootfs, host_config={"Ulimits": [{"Name": "nofile", "Soft": 3, "Hard": 2}]})
    with pytest.raises(InternalError):
        build(rootfs, host_config={"Ulimits": [{"Name": "foo", "Soft": 1, "Hard": 1}]})


# -- build_spec is pure -------------------------------------------------------


@pytest.mark.parametrize("privileged", [False, True])
def test_build_spec_reads_nothing(rootfs, tmp_path, monkeypatch, privileged):
    """What build_spec needs from the host comes in its inputs (gathered in a
    thread): with every way to reach the host refused, it builds the same spec."""
    files = os.path.dirname(rootfs)
    arguments = dict(
        container_id="0123456789abcdef" * 4,
        config={"Cmd": ["true"], "User": "alice", "Domainname": "example.org"},
        host_config={
            "Privileged": privileged,
            "GroupAdd": ["staff"],
            "Mounts": [{"Type": "bind", "Source": str(tmp_path), "Target": "/m"}],
            "Binds": [str(tmp_path) + ":/b:ro"],
            "Tmpfs": {"/t": "size=1m"},
            "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull"}],
            "BlkioDeviceReadBps": [{"Path": "/dev/null", "Rate": 1024}],
            "Ulimits": [{"Name": "nproc", "Soft": 100, "Hard": 200}],
            "SecurityOpt": ["no-new-privileges"],
        },
        image_config={},
        rootfs=rootfs,
        hostname_path=os.path.join(files, "hostname"),
        hosts_path=os.path.join(files, "hosts"),
        resolv_conf_path=os.path.join(files, "resolv.conf"),
        netns_path=None,
    )
    inputs = spec.gather_inputs(
        arguments["config"], arguments["host_config"], {}, rootfs, PROFILE, HOST
    )
    expected = spec.build_spec(inputs=inputs, **arguments)
    assert expected["process"]["user"] == {"uid": 1000, "gid": 1000,
                                           "additionalGids": [1000, 29, 44, 50]}

    def refuse(*args, **kwargs):
        raise AssertionError("build_spec reached the host: %r" % (args,))

    for module, names in (
        (builtins, ("open",)),
        (io, ("open",)),
        (os, ("stat", "lstat", "listdir", "scandir", "walk", "readlink", "access")),
        (os.path, ("exists", "lexists", "isfile", "isdir", "islink", "realpath")),
        (socket, ("gethostname",)),
        (resource, ("getrlimit",)),
    ):
        for name in names:
            monkeypatch.setattr(module, name, refuse)
    try:
        built = spec.build_spec(inputs=inputs, **arguments)
    finally:
        monkeypatch.undo()
    assert json.dumps(built) == json.dumps(expected)


def test_build_spec_raises_read_errors_where_dockerd_meets_them(rootfs):
    """A failed read is kept and raised at its step: a bad ulimit (checked
    before devices) wins over a missing device node, as in dockerd."""
    with pytest.raises(InvalidParameter, match="ulimit soft limit"):
        build(rootfs, host_config={
            "Ulimits": [{"Name": "nproc", "Soft": 2, "Hard": 1}],
            "Devices": [{"PathOnHost": "/dev/does-not-exist"}],
        })
    with pytest.raises(InternalError, match="error gathering device information"):
        build(rootfs, host_config={"Devices": [{"PathOnHost": "/dev/does-not-exist"}]})


# -- the spec runs -------------------------------------------------------------

needs_runc = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runc") or not os.path.exists("/bin/busybox"),
    reason="needs root, runc and /bin/busybox",
)


@pytest.fixture
def bundle(tmp_path):
    bundle = tmp_path / "bundle"
    bin_dir = bundle / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy("/bin/busybox", bin_dir / "busybox")
    for applet in ("sh", "echo", "id", "cat", "ls", "touch", "grep"):
        os.symlink("busybox", bin_dir / applet)
    etc = bundle / "rootfs" / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
    )
    for name in ("hosts", "resolv.conf", "hostname"):
        (tmp_path / name).write_text("")
    return tmp_path


def run_bundle(tmp_path, config, host_config=None):
    container_id = "twistedock-test-" + uuid.uuid4().hex[:12]
    s = build_with_inputs(
        container_id=container_id,
        config=config,
        host_config=host_config or {},
        image_config={},
        rootfs=str(tmp_path / "bundle" / "rootfs"),
        hostname_path=str(tmp_path / "hostname"),
        hosts_path=str(tmp_path / "hosts"),
        resolv_conf_path=str(tmp_path / "resolv.conf"),
        netns_path=None,
        cgroup_parent="/twistedock-test",
    )
    with open(tmp_path / "bundle" / "config.json", "w") as f:
        json.dump(s, f)
    runc = ["runc", "--root", str(tmp_path / "runcroot")]
    try:
        return subprocess.run(
            runc + ["run", "-b", str(tmp_path / "bundle"), container_id],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
        )
    finally:
        subprocess.run(runc + ["delete", "-f", container_id], capture_output=True, timeout=30)
        for parent in glob.glob("/sys/fs/cgroup/*/twistedock-test") + glob.glob(
            "/sys/fs/cgroup/twistedock-test"
        ):
            try:
                os.rmdir(parent)  # only if empty: another run may still use it
            except OSError:
                pass


@needs_runc
def test_spec_runs_under_runc(bundle):
    (bundle / "hostname").write_text("from-the-daemon\n")
    done = run_bundle(
        bundle,
        {"Cmd": ["sh", "-c", "id -u; echo $FOO; cat /etc/hostname; exit 3"],
         "Env": ["FOO=bar"], "User": "nobody"},
        {"Memory": 64 << 20, "PidsLimit": 50,
         "Mounts": [{"Type": "tmpfs", "Target": "/scratch",
                     "TmpfsOptions": {"SizeBytes": 1 << 20}}]},
    )
    assert done.stdout.decode().splitlines() == ["65534", "bar", "from-the-daemon"], done.stderr
    assert done.returncode == 3


@needs_runc
@needs_profile
def test_default_seccomp_runs(bundle):
    done = run_bundle(bundle, {"Cmd": ["sh", "-c", "echo ok; grep ^Seccomp: /proc/self/status"]})
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["ok", "Seccomp:", "2"]


@needs_runc
def test_readonly_rootfs_runs(bundle):
    done = run_bundle(
        bundle,
        {"Cmd": ["sh", "-c", "touch /x && echo wrote; touch /scratch/x && echo scratch"],
         "Tty": False},
        {"ReadonlyRootfs": True, "Tmpfs": {"/scratch": ""}},
    )
    assert done.stdout.decode().split() == ["scratch"]
    assert b"Read-only file system" in done.stderr
    assert done.returncode == 0
