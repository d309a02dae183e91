"""The systemd units in contrib/systemd/: shaped as dockerd's docker.service
and docker.socket, and valid for systemd (C{systemd-analyze verify})."""

import configparser
import shutil
import subprocess
from pathlib import Path

UNITS = Path(__file__).resolve().parents[1] / "contrib" / "systemd"
EXEC_START = "/opt/twistedock/venv/bin/twistedock"


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: scripts/install --test installs systemd's tools"
    return found


def test_service_is_shaped_as_docker_service():
    service = read_unit("twistedock.service")
    assert service["Service"]["Type"] == "notify"
    assert service["Service"]["ExecStart"] == EXEC_START + " -H fd://"
    assert service["Service"]["KillMode"] == "process"
    assert service["Service"]["Delegate"] == "yes"
    assert service["Service"]["Restart"] == "on-failure"
    assert service["Service"]["LimitNOFILE"] == "1048576"
    assert service["Service"]["ExecReload"] == "/bin/kill -s HUP $MAINPID"
    assert service["Unit"]["Requires"] == "twistedock.socket"
    assert "twistedock.socket" in service["Unit"]["After"].split()
    assert service["Install"]["WantedBy"] == "multi-user.target"


def test_socket_is_shaped_as_docker_socket():
    unit = read_unit("twistedock.socket")
    assert unit["Socket"]["ListenStream"] == "/run/twistedock.sock"
    assert unit["Socket"]["SocketMode"] == "0660"
    assert unit["Socket"]["SocketGroup"] == "docker"
    assert unit["Install"]["WantedBy"] == "sockets.target"


def test_units_pass_systemd_analyze_verify(tmp_path):
    """The shipped units, with ExecStart pointed at an executable that exists
    here (verify checks it); tests/e2e/test_install.py verifies the units
    scripts/install writes, pointing at the twistedock it installed."""
    command = tmp_path / "twistedock"
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    for name in ("twistedock.service", "twistedock.socket"):
        text = (UNITS / name).read_text().replace(EXEC_START, str(command))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [systemd_analyze(), "verify", str(tmp_path / "twistedock.socket"), str(tmp_path / "twistedock.service")],
        capture_output=True, text=True, timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_catches_a_bad_unit(tmp_path):
    """What the test above relies on: verify complains about what is wrong."""
    (tmp_path / "twistedock.service").write_text(
        (UNITS / "twistedock.service").read_text().replace(EXEC_START, str(tmp_path / "missing"))
        + "Bogus=1\n"
    )
    result = subprocess.run(
        [systemd_analyze(), "verify", str(tmp_path / "twistedock.service")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "is not executable" in result.stderr
    assert "Unknown key 'Bogus'" in result.stderr

