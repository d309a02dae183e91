"""Container inspect and list bodies key by key as dockerd writes them."""

from twistedock.backend.containers.defaults import HOST_CONFIG_DEFAULTS
from twistedock.backend.containers.inspect import host_config_json, inspect_json
from twistedock.backend.containers.record import Container, State
from twistedock.backend.spec.config import merge_config
from twistedock.versions import MAX_API_VERSION


def _container(tmp_path, config=None, host_config=None):
    return Container(
        id="c" * 64, name="/web", created=1, image_id="sha256:img",
        config=merge_config(dict({"Image": "busybox", "Cmd": ["true"]}, **(config or {})), {}),
        host_config=dict(HOST_CONFIG_DEFAULTS, **(host_config or {})), path="true", args=[],
        directory=str(tmp_path), state=State(),
    )


def test_config_omits_what_dockerd_omits_when_unset(tmp_path):
    config = inspect_json(_container(tmp_path), None, "1.41")["Config"]
    # container.Config's omitempty fields are absent, Env is null (a nil slice).
    for key in ("ExposedPorts", "StopSignal", "Healthcheck", "ArgsEscaped", "NetworkDisabled",
                "MacAddress", "StopTimeout", "Shell"):
        assert key not in config, key
    assert config["Env"] is None
    assert list(config) == [
        "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
        "OpenStdin", "StdinOnce", "Env", "Cmd", "Image", "Volumes", "WorkingDir", "Entrypoint",
        "OnBuild", "Labels",
    ]


def test_config_keeps_what_is_set(tmp_path):
    c = _container(tmp_path, {"ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGINT", "Env": ["A=1"]})
    config = inspect_json(c, None, MAX_API_VERSION)["Config"]
    assert (config["ExposedPorts"], config["StopSignal"], config["Env"]) == (
        {"80/tcp": {}}, "SIGINT", ["A=1"]
    )


def test_host_config_kernel_memory_tcp_before_1_42(tmp_path):
    # Create's validation stores KernelMemory (resources.py), not KernelMemoryTCP.
    c = _container(tmp_path, host_config={"KernelMemory": 0})
    old = inspect_json(c, None, "1.41")["HostConfig"]
    assert old["KernelMemoryTCP"] == 0
    keys = list(old)
    assert keys.index("KernelMemoryTCP") == keys.index("KernelMemory") + 1
    assert "KernelMemoryTCP" not in inspect_json(c, None, MAX_API_VERSION)["HostConfig"]


def test_host_config_pids_limit_zero_is_null():
    # moby's router stores a PidsLimit of 0 or less as nil (unlimited).
    for value in (0, -1):
        assert host_config_json({"PidsLimit": value}, MAX_API_VERSION)["PidsLimit"] is None
    assert host_config_json({"PidsLimit": 20}, MAX_API_VERSION)["PidsLimit"] == 20
    assert host_config_json({"PidsLimit": None}, MAX_API_VERSION)["PidsLimit"] is None


def test_summary_omits_zero_sizes(tmp_path):
    c = _container(tmp_path)
    summary = c.summary("busybox", 10, {"rw": 0, "rootfs": 5})
    assert "SizeRw" not in summary and summary["SizeRootFs"] == 5
    summary = c.summary("busybox", 10, {"rw": 3, "rootfs": 5})
    assert (summary["SizeRw"], summary["SizeRootFs"]) == (3, 5)
