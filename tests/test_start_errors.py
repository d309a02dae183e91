"""A start that fails: the status and the container's exit code as dockerd
20.10 gives them.  Errors before the runtime (the spec's: dockerd's System
errors) keep their status and exit 128; the runtime's are translated as
translateContainerdStartErr does (127 or 126 and 400 for a missing or
refused file, 127 and an explanation for a file mounted onto a directory,
else 500 and 128)."""

import pytest

from twistedock.errors import InternalError

from .fake_runtime import World, failure_of


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def shim(message):
    return "failed to create shim task: OCI runtime create failed: runc create failed: %s: unknown" % message


@pytest.mark.parametrize("message, status, code, suffix", [
    (shim('unable to start container process: exec: "/nope": stat /nope: no such file or directory'), 400, 127, ""),
    (shim('exec: "nope": executable file not found in $PATH'), 400, 127, ""),
    (shim('exec: "/etc": permission denied'), 400, 126, ""),
    (shim("mount /a to rootfs at /etc/hostname: not a directory"), 400, 127,
     ": Are you trying to mount a directory onto a file (or vice-versa)? "
     "Check if the specified host path exists and is the expected type"),
    (shim('sysctl "a" is not in a separate kernel namespace'), 500, 128, ""),
])
def test_runtime_errors_are_translated(world, message, status, code, suffix):
    ident = world.create("web")
    world.runtime.failures["create"] = InternalError(message)
    error = failure_of(world.backend.start("web"))
    assert (error.status, error.message) == (status, message + suffix)
    state = world.state("web")
    assert (state["Status"], state["ExitCode"], state["Error"]) == ("created", code, message + suffix)
    assert ident


def test_spec_errors_keep_their_status_and_exit_128(world):
    # dockerd: BlkioDeviceReadBps on a missing path, 500 "stat /nonexist: no
    # such file or directory", ExitCode 128 (not the runtime's 127 and 400).
    world.create("web", host_config={"BlkioDeviceReadBps": [{"Path": "/nonexist", "Rate": 1}]})
    error = failure_of(world.backend.start("web"))
    assert (error.status, error.message) == (500, "stat /nonexist: no such file or directory")
    assert world.state("web")["ExitCode"] == 128
    world.create("empty", host_config={"BlkioDeviceReadBps": [{}]})
    error = failure_of(world.backend.start("empty"))
    assert (error.status, error.message) == (500, "stat : no such file or directory")


def test_an_unknown_log_driver_is_looked_up_as_a_plugin(world):
    # dockerd 20.10: 400 at create, in its plugin getter's words.
    error = failure_of(world.backend.create(
        "", {"Image": "busybox"}, {"LogConfig": {"Type": "Bogus"}}, None, "1.41"
    ))
    assert (error.status, error.message) == (
        400, 'error looking up logging plugin Bogus: plugin "Bogus" not found'
    )


@pytest.mark.parametrize("log_config, message", [
    # dockerd 20.10, side by side: 400 at create.
    ({"Type": "json-file", "Config": {"mode": "bad"}}, "logger: logging mode not supported: bad"),
    ({"Type": "json-file", "Config": {"bogus": "x"}}, "unknown log opt 'bogus' for json-file log driver"),
    ({"Type": "local", "Config": {"labels": "x"}}, "unknown log opt 'labels' for log driver local"),
    ({"Type": "json-file", "Config": {"max-buffer-size": "4m"}},
     "logger: max-buffer-size option is only supported with 'mode=non-blocking'"),
])
def test_log_options_a_driver_refuses(world, log_config, message):
    error = failure_of(world.backend.create("", {"Image": "busybox"}, {"LogConfig": log_config}, None, "1.41"))
    assert (error.status, error.message) == (400, message)


def test_log_options_a_driver_takes(world):
    for log_config in (
        {"Type": "json-file", "Config": {"max-size": "1m", "mode": "non-blocking", "max-buffer-size": "4m"}},
        {"Type": "none", "Config": {"anything": "x"}},
        {"Type": "local", "Config": {"cache-disabled": "true", "max-file": "2"}},
    ):
        world.create(host_config={"LogConfig": log_config})


def test_a_link_to_a_missing_container_is_refused_at_create(world):
    # dockerd 20.10, side by side: 400 (a 404 would send the CLI pulling).
    error = failure_of(world.backend.create("", {"Image": "busybox"}, {"Links": ["nosuch:x"]}, None, "1.41"))
    assert (error.status, error.message) == (400, "could not get container for nosuch: No such container: nosuch")
    for link, message in (("", "empty string specified for links"), ("a:b:c", "bad format for links: a:b:c")):
        error = failure_of(world.backend.create("", {"Image": "busybox"}, {"Links": [link]}, None, "1.41"))
        assert (error.status, error.message) == (400, message)
    world.create("db")
    world.create("app", host_config={"Links": ["db:database", "/db:/app/db2"]})
