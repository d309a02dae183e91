"""
The details cri-dockerd and Nomad's docker driver rely on, each checked
against a real daemon as the reference dockerd answers them: inspect's
shape and values, list filters, image references, signals by name,
capabilities as both engines spell them, mounts over single files and
nested, the security and namespace options, /version and /info.
"""

import ipaddress
import json
import os
import re
import time
import urllib.parse

import pytest

from .test_containers import import_busybox

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

#: dockerd's default capabilities (oci/caps/defaults.go): 14 of them.
DEFAULT_CAPS = {
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
}
CAP_NUMBERS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7,
    "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13, "SYS_CHROOT": 18,
    "SYS_TIME": 25, "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31,
}


@pytest.fixture(scope="module")
def daemon(module_daemons, tmp_path_factory):
    d = module_daemons.start()
    import_busybox(d, tmp_path_factory.mktemp("img"))
    yield d
    d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)


def run(daemon, name, host_config=None, **config):
    body = {"Image": "busybox", "Cmd": ["sleep", "600"]}
    body.update(config)
    body["HostConfig"] = host_config or {}
    resp = daemon.request("POST", "/containers/create?name=" + name, body)
    assert resp.status == 201, resp
    resp = daemon.request("POST", "/containers/%s/start" % name)
    assert resp.status == 204, resp
    return daemon.request("GET", "/containers/%s/json" % name).json()


def sh(daemon, name, script):
    return daemon.docker("exec", name, "sh", "-c", script).stdout


def caps_of(pid):
    with open("/proc/%d/status" % pid) as f:
        value = int([line for line in f if line.startswith("CapEff:")][0].split()[1], 16)
    return {name for name, bit in CAP_NUMBERS.items() if value & (1 << bit)}, value


def test_inspect_shape_values_and_filters(daemon):
    info = run(daemon, "shape", Labels={"app": "web", "tier": "front"})
    # A host PID, the container's own process.
    with open("/proc/%d/cmdline" % info["State"]["Pid"], "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"600"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$", info["State"]["StartedAt"])
    assert info["State"]["FinishedAt"] == "0001-01-01T00:00:00Z"
    for key in ("NetworkSettings", "HostConfig", "Config", "State"):
        assert isinstance(info[key], dict)
    sized = daemon.request("GET", "/containers/shape/json?size=1").json()
    assert isinstance(sized["SizeRw"], int) and isinstance(sized["SizeRootFs"], int)
    for key in ("IPAddress", "Gateway", "GlobalIPv6Address", "IPv6Gateway", "MacAddress"):
        value = info["NetworkSettings"].get(key, "")
        assert value == "" or ipaddress.ip_address(value) or re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", value)

    def listed(filters):
        resp = daemon.request("GET", "/containers/json?all=1&filters=" + urllib.parse.quote(json.dumps(filters)))
        return resp.status, [c["Names"][0] for c in resp.json()] if resp.status == 200 else resp.json()

    assert listed({"label": ["app=web", "tier=front"]}) == (200, ["/shape"])
    assert listed({"label": ["app=web", "tier=back"]}) == (200, [])
    assert listed({"id": [info["Id"]], "status": ["running"]}) == (200, ["/shape"])
    assert listed({"id": [info["Id"]], "status": ["exited"]}) == (200, [])
    # As the reference dockerd (20.10 and since): an unknown status is refused.
    assert listed({"status": ["bogus"]}) == (400, {"message": "Invalid filter 'status=bogus'"})
    # stop?t=: SIGTERM ignored by process 1, SIGKILL after t seconds.
    started = time.monotonic()
    assert daemon.request("POST", "/containers/shape/stop?t=1").status == 204
    assert 0.9 < time.monotonic() - started < 8
    assert daemon.request("GET", "/containers/shape/json").json()["State"]["ExitCode"] == 137
    daemon.docker("rm", "shape")


def test_image_references_and_kill_by_signal_name(daemon):
    image = daemon.request("GET", "/images/busybox/json").json()
    for ref in (image["Id"], image["Id"][7:19], "busybox", "busybox:latest", "docker.io/library/busybox:latest",
                "docker.io/library/busybox"):
        resp = daemon.request("GET", "/images/%s/json" % urllib.parse.quote(ref, safe=":/@"))
        assert resp.status == 200 and resp.json()["Id"] == image["Id"], ref
    run(daemon, "hup", Cmd=["sh", "-c", "trap 'echo hup > /tmp/hup' HUP; while :; do sleep 0.1; done"])
    assert daemon.request("POST", "/containers/hup/kill?signal=SIGHUP").status == 204
    deadline = time.monotonic() + 5
    while "hup" not in daemon.docker("exec", "hup", "cat", "/tmp/hup", check=False).stdout:
        assert time.monotonic() < deadline, "SIGHUP not delivered"
        time.sleep(0.1)
    daemon.docker("rm", "-f", "hup")


def test_capabilities_as_both_engines_spell_them(daemon):
    info = run(daemon, "caps-default")
    names, value = caps_of(info["State"]["Pid"])
    assert names == DEFAULT_CAPS and bin(value).count("1") == 14
    # cri-dockerd sends CAP_-prefixed names, Nomad lower case without.
    info = run(daemon, "caps-mixed", {"CapAdd": ["CAP_SYS_TIME", "net_admin"], "CapDrop": ["net_raw", "CAP_MKNOD"]})
    names, _ = caps_of(info["State"]["Pid"])
    assert names == (DEFAULT_CAPS | {"SYS_TIME", "NET_ADMIN"}) - {"NET_RAW", "MKNOD"}
    info = run(daemon, "caps-none", {"CapDrop": ["ALL"], "CapAdd": ["kill"]})
    assert caps_of(info["State"]["Pid"])[0] == {"KILL"}
    daemon.docker("rm", "-f", "caps-default", "caps-mixed", "caps-none")


def test_mounts_the_kubelet_asks_for(daemon, tmp_path):
    hosts = tmp_path / "etc-hosts"
    hosts.write_text("10.0.0.1 pod\n")
    termination = tmp_path / "termination-log"
    termination.write_text("")
    outer = tmp_path / "outer"
    (outer / "inner").mkdir(parents=True)
    inner = tmp_path / "inner-src"
    inner.mkdir()
    (inner / "mark").write_text("inner")
    made = tmp_path / "made" / "by" / "start"
    run(daemon, "mounts", {
        "Binds": ["%s:/etc/hosts" % hosts, "%s:/dev/termination-log" % termination],
        # cri-dockerd sorts mounts so a parent comes before its child.
        "Mounts": [
            {"Type": "bind", "Source": str(outer), "Target": "/data"},
            {"Type": "bind", "Source": str(inner), "Target": "/data/inner"},
            {"Type": "bind", "Source": str(made), "Target": "/made", "BindOptions": {"CreateMountpoint": True}},
            {"Type": "bind", "Source": str(outer), "Target": "/ro", "ReadOnly": True,
             "BindOptions": {"ReadOnlyNonRecursive": True}},
        ],
    })
    assert sh(daemon, "mounts", "cat /etc/hosts") == "10.0.0.1 pod\n"
    sh(daemon, "mounts", "echo 'exited: reason' > /dev/termination-log")
    assert termination.read_text() == "exited: reason\n"
    assert sh(daemon, "mounts", "cat /data/inner/mark") == "inner"
    assert made.is_dir()
    assert "Read-only" in daemon.docker("exec", "mounts", "touch", "/ro/x", check=False).stderr
    daemon.docker("rm", "-f", "mounts")


def test_security_and_namespace_options(daemon):
    profile = json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]})
    run(daemon, "sec", {
        "SecurityOpt": ["seccomp=" + profile],
        "Sysctls": {"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shm_rmid_forced": "1"},
        "GroupAdd": ["50", "1234"],
        "MaskedPaths": ["/etc/passwd"],
        "ReadonlyPaths": ["/tmp"],
        "MemorySwappiness": 0,
    }, User="1000:1000")
    assert "Operation not permitted" in daemon.docker("exec", "sec", "mkdir", "/home/app/x", check=False).stderr
    assert sh(daemon, "sec", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced") == "80\n1\n"
    assert sh(daemon, "sec", "id -u; id -g; id -G").split() == ["1000", "1000", "1000", "50", "1234"]
    assert sh(daemon, "sec", "wc -c < /etc/passwd").strip() == "0"
    assert "Read-only" in daemon.docker("exec", "sec", "touch", "/tmp/x", check=False).stderr
    run(daemon, "unconfined", {"SecurityOpt": ["seccomp=unconfined"], "UTSMode": "host"})
    assert "Seccomp:\t0" in sh(daemon, "unconfined", "grep Seccomp: /proc/self/status")
    assert sh(daemon, "unconfined", "hostname").strip() == os.uname().nodename
    daemon.docker("rm", "-f", "sec", "unconfined")


def test_version_and_info(daemon):
    version = daemon.request("GET", "/version").json()
    major, minor = (int(x) for x in version["ApiVersion"].split("."))
    assert (major, minor) >= (1, 42) and re.match(r"^\d+\.\d+$", version["ApiVersion"])
    info = daemon.request("GET", "/info").json()
    assert info["DockerRootDir"] == daemon.data_root
    assert info["OSType"] == "linux" and info["CgroupDriver"] in ("cgroupfs", "systemd")
    assert info["DefaultRuntime"] == "runc" and "runc" in info["Runtimes"]
    assert info["Runtimes"]["runc"]["path"]


def test_exec_after_half_close_and_exit_code_final_at_the_end(daemon):
    """cri-dockerd's exec: stdin closed by the client's half-close, the
    process's output still flowing after it, and ExitCode already final
    when the stream ends (the CRI's ExecSync reads it at once)."""
    import socket

    run(daemon, "halfclose")
    resp = daemon.request("POST", "/containers/halfclose/exec", {
        "Cmd": ["sh", "-c", "cat; sleep 1; echo after-close; exit 7"],
        "AttachStdin": True, "AttachStdout": True, "AttachStderr": True})
    exec_id = resp.json()["Id"]
    body = json.dumps({"Detach": False, "Tty": False}).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(daemon.sock)
    sock.sendall(b"POST /exec/%s/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                 b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: %d\r\n\r\n" % (exec_id.encode(), len(body))
                 + body)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    head, _, stream = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    sock.sendall(b"hello\n")
    sock.shutdown(socket.SHUT_WR)
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        stream += chunk
    sock.close()
    inspect = daemon.request("GET", "/exec/%s/json" % exec_id).json()
    assert (inspect["Running"], inspect["ExitCode"]) == (False, 7)
    assert stream == (b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"
                      b"\x01\x00\x00\x00\x00\x00\x00\x0cafter-close\n")
    daemon.docker("rm", "-f", "halfclose")
