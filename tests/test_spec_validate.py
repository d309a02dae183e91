"""dockerd's checks of a create request and the HostConfig it stores (backend/spec/validate.py)."""

import attr
import pytest

from twistedock.backend import spec
from twistedock.errors import InvalidParameter

from .spec_hosts import HOST


def validate(config=None, host_config=None, version="1.41", sysinfo=HOST):
    return spec.validate_create(config or {}, host_config or {}, version, sysinfo=sysinfo)


def refused(config=None, host_config=None, version="1.41", sysinfo=HOST):
    with pytest.raises(InvalidParameter) as caught:
        validate(config, host_config, version, sysinfo)
    assert caught.value.status == 400
    return caught.value.message


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


def test_bind_create_mountpoint(tmp_path):
    """BindOptions.CreateMountpoint (API 1.42): a missing Mounts bind source
    is accepted at create and made at start, as the kubelet's hostPath
    DirectoryOrCreate relies on."""
    missing = str(tmp_path / "made" / "here")
    mounts = [{"Type": "bind", "Source": missing, "Target": "/x", "BindOptions": {"CreateMountpoint": True}}]
    assert validate(host_config={"Mounts": mounts}) == []
    assert spec.missing_bind_sources({"Mounts": mounts + [{"Type": "bind", "Source": "/tmp", "Target": "/y"}]}) == [missing]


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


def test_the_default_swap_wraps_as_go_int64_does():
    # dockerd 20.10 stores twice the memory as Go computes it: wrapped; runc
    # then gets no swap limit (a negative one is none), and the start works.
    from twistedock.backend.spec.resources import linux_resources

    for memory, swap in ((1 << 62, -(1 << 63)), ((1 << 63) - 1, -2)):
        hc = spec.adapt_host_config({"Memory": memory}, "1.41", sysinfo=HOST)
        assert (hc["Memory"], hc["MemorySwap"]) == (memory, swap)
        assert "swap" not in linux_resources({"Memory": memory}, HOST, {})["memory"]


def test_storage_options_are_refused_not_ignored():
    # dockerd 20.10 on overlay2 without xfs project quotas (side by side):
    # {"size": "1G"} is refused at create, in these words (it answers 500).
    assert refused(host_config={"StorageOpt": {"size": "1G"}}) == (
        "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
    )
    validate(host_config={"StorageOpt": {}})


def test_log_rotation_as_json_file_checks_it():
    """max-size, max-file and compress as jsonfilelog.New reads them (the
    reference dockerd's words when it refuses them at start)."""
    from twistedock.backend.spec import LogDriverError, Rotation, log_rotation

    assert log_rotation("json-file", {}) is None
    assert log_rotation("json-file", {"max-file": "3"}) is None
    assert log_rotation("json-file", {"max-size": "1k"}) == Rotation(1000, 1, False)
    assert log_rotation("json-file", {"max-size": "10m", "max-file": "3", "compress": "true"}) == Rotation(
        10_000_000, 3, True
    )
    assert log_rotation("json-file", {"max-size": "1.5KB"}) == Rotation(1500, 1, False)
    assert log_rotation("local", {}) == Rotation(20 * 1024 * 1024, 5, True)
    assert log_rotation("none", {"max-size": "x"}) is None
    for options, message in [
        ({"max-size": "abc"}, "invalid size: 'abc'"),
        ({"max-size": "-1"}, "invalid size: '-1'"),
        ({"max-size": "0"}, "max-size must be a positive number"),
        ({"max-file": "0"}, "max-file cannot be less than 1"),
        ({"max-file": "x"}, 'strconv.Atoi: parsing "x": invalid syntax'),
        ({"compress": "true", "max-size": "1k"},
         "compress cannot be true when max-file is less than 2 or max-size is not set"),
        ({"compress": "yes"}, 'strconv.ParseBool: parsing "yes": invalid syntax'),
    ]:
        with pytest.raises(LogDriverError) as e:
            log_rotation("json-file", options)
        assert str(e.value) == message


def test_daemon_log_config_merged_as_dockerd():
    """mergeAndVerifyLogConfig: no driver named, the daemon's; the daemon's
    driver named, its options filled in; another driver, left alone."""
    default = {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert spec.merge_log_config(None, default) == default
    assert spec.merge_log_config({"Type": "json-file", "Config": {"max-size": "1k"}}, default) == {
        "Type": "json-file", "Config": {"max-size": "1k", "max-file": "3"}
    }
    assert spec.merge_log_config({"Type": "none"}, default) == {"Type": "none", "Config": {}}


def test_memory_swappiness_zero_on_cgroup_v2_warned_and_dropped():
    """cgroup v2 has no memory.swappiness: dockerd accepts 0 (Nomad and
    cri-dockerd send it), warns and drops it, as for any value."""
    v2 = attr.evolve(HOST, cgroup_version="2", memory_swappiness=False)
    host_config = {"MemorySwappiness": 0}
    assert validate(host_config=host_config, sysinfo=v2) == [
        "Your kernel does not support memory swappiness capabilities or the cgroup is not "
        "mounted. Memory swappiness discarded."
    ]
    stored = spec.adapt_host_config(host_config, "1.46", sysinfo=v2)
    assert stored["MemorySwappiness"] is None
    assert "swappiness" not in spec.linux_resources(stored, v2, {}).get("memory", {})
