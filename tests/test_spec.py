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

from .spec_hosts import HOST

PROFILE = spec.DEFAULT_SECCOMP_PROFILE
needs_profile = pytest.mark.skipif(
    not os.path.exists(PROFILE), reason="containers-common seccomp profile not installed"
)


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
    assert s["linux"]["cgroupsPath"] == "/docker/" + "0123456789abcdef" * 4
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
    # What runc refuses goes to it as it is (see below).
    refused = build(rootfs, host_config={"Ulimits": [{"Name": "nofile", "Soft": 3, "Hard": 2}]})
    assert refused["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 2, "soft": 3}]


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
    """A failed read is kept and raised at its step: an Init without its
    binary (checked before devices) wins over a missing device node, as in
    dockerd."""
    with pytest.raises(InvalidParameter, match="no init binary"):
        build(rootfs, host_config={
            "Init": True,
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


def test_ulimits_runc_refuses_go_to_runc_as_they_are(rootfs):
    """dockerd puts Ulimits in the spec unchecked (Go's uint64 of the
    values): runc refuses an unknown name or a soft limit above the hard
    one, with the words dockerd's clients see."""
    s = build(rootfs, host_config={"Ulimits": [
        {"Name": "bogus", "Soft": 1, "Hard": 1}, {}, {"Name": "nproc", "Soft": 5, "Hard": 3},
    ]})
    assert s["process"]["rlimits"][:3] == [
        {"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1},
        {"type": "RLIMIT_", "hard": 0, "soft": 0},
        {"type": "RLIMIT_NPROC", "hard": 3, "soft": 5},
    ]


def test_device_requests_are_refused_not_ignored(rootfs):
    """No device driver (dockerd has one only with nvidia's hook): dockerd
    20.10's start refuses every request, side by side."""
    with pytest.raises(InternalError) as caught:
        build(rootfs, host_config={"DeviceRequests": [{}]})
    assert caught.value.message == 'could not select device driver "" with capabilities: []'
    with pytest.raises(InternalError) as caught:
        build(rootfs, host_config={"DeviceRequests": [
            {"Driver": "", "Count": -1, "Capabilities": [["gpu"], ["gpu", "utility"]]},
        ]})
    assert caught.value.message == (
        'could not select device driver "" with capabilities: [[gpu] [gpu utility]]'
    )


@pytest.mark.parametrize("value, message", [
    # dockerd 20.10 (json.Unmarshal's words), side by side.
    ("/nonexist", "invalid character '/' looking for beginning of value"),
    ("{", "unexpected end of JSON input"),
    ('{"a":}', "invalid character '}' looking for beginning of value"),
    ("'x", "invalid character '\\'' looking for beginning of value"),
])
def test_a_seccomp_profile_that_is_not_json(value, message):
    from twistedock.backend.spec.seccomp import load_seccomp_profile

    with pytest.raises(InternalError) as caught:
        load_seccomp_profile(value)
    assert caught.value.message == "Decoding seccomp profile failed: " + message
