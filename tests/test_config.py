"""Flags, daemon.json and listen addresses, checked as dockerd checks them."""

import json
import socket

import pytest
from twisted.python.usage import UsageError

from twistedock.config import ConfigError, merge
from twistedock.listeners import Address, check_addresses, is_loopback, parse_host
from twistedock.tap import Options


@pytest.fixture(autouse=True)
def default_config_file(monkeypatch, tmp_path):
    """Where daemon.json is read from without --config-file: a temporary
    path (absent unless a test writes it), never the host's
    /etc/twistedock/daemon.json."""
    path = tmp_path / "etc" / "daemon.json"
    parameters = [list(p) for p in Options.optParameters]
    for parameter in parameters:
        if parameter[0] == "config-file":
            parameter[2] = str(path)
    monkeypatch.setattr(Options, "optParameters", parameters)
    return path


def test_the_default_config_file_is_read_when_it_exists(default_config_file, tmp_path):
    options = Options()
    options.parseOptions(["-H", "unix://%s" % (tmp_path / "s")])
    assert options.config.labels == [] and options.config.config_file == str(default_config_file)
    default_config_file.parent.mkdir()
    default_config_file.write_text(json.dumps({"labels": ["from=default"]}))
    options = Options()
    options.parseOptions(["-H", "unix://%s" % (tmp_path / "s")])
    assert options.config.labels == ["from=default"]


def test_flags(tmp_path):
    sock = tmp_path / "d.sock"
    options = Options()
    options.parseOptions(
        ["-H", "unix://%s" % sock, "--host", "tcp://127.0.0.1:2375", "--data-root", str(tmp_path / "root"),
         "-D", "--experimental", "--tls=false"]
    )
    config = options.config
    assert config.hosts == ["unix://%s" % sock, "tcp://127.0.0.1:2375"]
    assert config.data_root == str(tmp_path / "root")
    assert config.debug and config.experimental
    assert config.tls is False
    assert not config.use_tls
    assert {"hosts", "data_root", "debug", "experimental", "tls"} <= options.explicit


def write(tmp_path, values):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(values))
    return str(path)


def test_config_file_fills_what_flags_left(tmp_path):
    path = write(tmp_path, {"debug": True, "labels": ["a=b"], "data-root": str(tmp_path / "r")})
    options = Options()
    options.parseOptions(["--config-file", path, "-H", "unix://%s" % (tmp_path / "s")])
    assert options.config.debug is True
    assert options.config.labels == ["a=b"]
    assert options.config.data_root == str(tmp_path / "r")


def test_flag_and_file_conflict(tmp_path):
    x, y = "unix://%s" % (tmp_path / "x.sock"), "unix://%s" % (tmp_path / "y.sock")
    path = write(tmp_path, {"debug": False, "hosts": [x]})
    options = Options()
    with pytest.raises(UsageError) as e:
        options.parseOptions(["--config-file", path, "--debug", "-H", y])
    assert str(e.value) == (
        "unable to configure the daemon with file %s: the following directives are specified "
        "both as a flag and in the configuration file: hosts: (from flag: [%s], "
        "from file: [%s]), debug: (from flag: true, from file: false)" % (path, y, x)
    )


def test_unknown_directive_and_bad_types(tmp_path):
    with pytest.raises(ConfigError) as e:
        merge({}, set(), {"foo": 1, "bar": 2}, "/etc/daemon.json")
    assert str(e.value).endswith(
        "the following directives don't match any configuration option: bar, foo"
    )
    with pytest.raises(ConfigError) as e:
        merge({}, set(), {"debug": "yes"}, "/d.json")
    assert "debug must be a boolean" in str(e.value)
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    options = Options()
    with pytest.raises(UsageError) as e:
        options.parseOptions(["--config-file", str(path)])
    assert str(e.value).startswith("unable to configure the daemon with file %s: " % path)


def test_explicit_missing_config_file_is_an_error(tmp_path):
    options = Options()
    with pytest.raises(UsageError) as e:
        options.parseOptions(["--config-file", str(tmp_path / "missing.json")])
    assert "No such file or directory" in str(e.value)


def test_min_api_version_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_MIN_API_VERSION", "1.40")
    options = Options()
    options.parseOptions(["-H", "unix://%s" % (tmp_path / "s")])
    assert options.config.min_api_version == "1.40"
    monkeypatch.setenv("DOCKER_MIN_API_VERSION", "1.2")
    with pytest.raises(UsageError):
        Options().parseOptions(["-H", "unix://%s" % (tmp_path / "s")])


@pytest.mark.parametrize(
    "value, address",
    [
        ("unix:///run/x.sock", Address("unix", path="/run/x.sock")),
        ("unix://", Address("unix", path="/var/run/docker.sock")),
        ("tcp://127.0.0.1:2375", Address("tcp", host="127.0.0.1", port=2375)),
        ("tcp://:2376", Address("tcp", host="", port=2376)),
        ("tcp://0.0.0.0", Address("tcp", host="0.0.0.0", port=2375)),
        ("tcp://[::1]:99", Address("tcp", host="::1", port=99)),
        ("127.0.0.1:80", Address("tcp", host="127.0.0.1", port=80)),
        ("fd://", Address("fd")),
        ("fd://3", Address("fd", fd=3)),
    ],
)
def test_parse_host(value, address):
    assert parse_host(value) == address


@pytest.mark.parametrize("value", ["udp://x:1", "tcp://h:port", "fd://x", "tcp://h:1/path"])
def test_bad_hosts(value):
    with pytest.raises(ConfigError) as e:
        parse_host(value)
    assert str(e.value) == "Invalid bind address format: %s" % value


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("10.1.2.3")


def test_plain_tcp_refused_off_loopback_unless_forced():
    options = Options()
    with pytest.raises(UsageError) as e:
        options.parseOptions(["-H", "tcp://0.0.0.0:2375"])
    assert "without TLS" in str(e.value)
    options = Options()
    options.parseOptions(["-H", "tcp://0.0.0.0:2375", "--tls=false"])
    assert options.config.tls is False


def test_live_socket_refused_stale_socket_accepted(tmp_path):
    path = str(tmp_path / "d.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    options = Options()
    try:
        with pytest.raises(UsageError) as e:
            options.parseOptions(["-H", "unix://" + path])
        assert "another daemon is already serving unix://%s" % path in str(e.value)
    finally:
        server.close()
    # The file is left behind, nothing answers: stale, accepted.
    options = Options()
    options.parseOptions(["-H", "unix://" + path])
    assert check_addresses(options.config)[0].path == path


def test_tlsverify_needs_readable_files(tmp_path):
    options = Options()
    with pytest.raises(UsageError) as e:
        options.parseOptions(
            ["-H", "tcp://127.0.0.1:2376", "--tlsverify", "--tlscert", str(tmp_path / "no.pem")]
        )
    assert "could not read --tlscert" in str(e.value)


def test_log_driver_and_options(tmp_path):
    """--log-driver and --log-opt, or daemon.json's log-driver and
    log-opts: the containers' default LogConfig."""
    options = Options()
    options.parseOptions(["-H", "unix://%s" % (tmp_path / "s"), "--log-opt", "max-size=10m",
                          "--log-opt", "max-file=3", "--log-driver", "local"])
    assert options.config.log_driver == "local"
    assert options.config.log_opts == {"max-size": "10m", "max-file": "3"}
    path = write(tmp_path, {"log-driver": "json-file", "log-opts": {"max-size": "1k"}})
    options = Options()
    options.parseOptions(["--config-file", path, "-H", "unix://%s" % (tmp_path / "s")])
    assert (options.config.log_driver, options.config.log_opts) == ("json-file", {"max-size": "1k"})
    with pytest.raises(UsageError) as e:
        Options().parseOptions(["--config-file", path, "--log-opt", "max-file=2"])
    assert "log-opts: (from flag: map[max-file:2], from file: map[max-size:1k])" in str(e.value)
    with pytest.raises(UsageError) as e:
        Options().parseOptions(["--log-opt", "max-size"])
    assert "bad attribute format" in str(e.value)
    with pytest.raises(ConfigError) as e:
        merge({}, set(), {"log-opts": {"max-file": 3}}, "/d.json")
    assert "log-opts must be a map of strings" in str(e.value)
