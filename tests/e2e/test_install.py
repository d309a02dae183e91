"""scripts/install as a new user runs it on a stock Debian: with Debian's own
python3 (EXTERNALLY-MANAGED: it refuses `pip install` outside a virtual
environment), into a temporary environment, bindir and unit directory, so
that nothing of this machine's installation changes.  The daemon then runs
from that environment alone: no PYTHONPATH, not from the checkout."""

import grp
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, START_TIMEOUT, STOP_TIMEOUT, unix_request, wait_for

pytestmark = pytest.mark.e2e

DEBIAN_PYTHON = "/usr/bin/python3"
#: The first install downloads the dependencies; later ones reuse pip's cache.
INSTALL_TIMEOUT = 110


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYENV"))}
    env.update(extra)
    return env


def run_install(paths, *flags: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "scripts", "install"), "--service", *flags],
        env=clean_env(
            TWISTEDOCK_VENV=str(paths["venv"]),
            TWISTEDOCK_BINDIR=str(paths["bin"]),
            TWISTEDOCK_UNITDIR=str(paths["units"]),
            TWISTEDOCK_PYTHON=DEBIAN_PYTHON,
        ),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
    )
    assert result.returncode == 0, result
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    assert os.access(DEBIAN_PYTHON, os.X_OK), "this test needs Debian's python3 at %s" % DEBIAN_PYTHON
    base = tmp_path_factory.mktemp("install")
    paths = {"base": base, "venv": base / "venv", "bin": base / "bin", "units": base / "units"}
    # (--service makes the docker group where there is none: removed
    # after, as this machine had it.)
    had_group = _group_exists("docker")
    try:
        paths["install"] = run_install(paths)
        yield paths
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if not had_group and _group_exists("docker"):
            subprocess.run(["groupdel", "docker"], check=False, capture_output=True)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def venv_python(installed, code: str) -> str:
    return subprocess.run(
        [str(installed["venv"] / "bin" / "python"), "-c", code],
        cwd=str(installed["base"]), env=clean_env(), capture_output=True, text=True, check=True,
    ).stdout.strip()


def test_debian_python_is_externally_managed():
    """The premise: pip refuses Debian's interpreter outside a venv."""
    stdlib = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert os.path.exists(os.path.join(stdlib, "EXTERNALLY-MANAGED"))


def test_environment_is_made_with_debian_python(installed):
    config = (installed["venv"] / "pyvenv.cfg").read_text()
    assert "home = /usr/bin\n" in config
    assert venv_python(installed, "import sys; print(sys.base_prefix)") == "/usr"
    where = venv_python(installed, "import twistedock; print(twistedock.__file__)")
    assert where.startswith(str(installed["venv"]) + "/"), where


def test_nothing_goes_into_the_system_python(installed):
    result = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import twistedock"],
        cwd=str(installed["base"]), env=clean_env(), capture_output=True, text=True,
    )
    assert "No module named 'twistedock'" in result.stderr


@pytest.mark.route("GET", "/_ping")
def test_twistd_dockerd_runs_from_the_environment(installed):
    """twistd's plugin discovery finds the dropin the package installed."""
    work = installed["base"] / "d"
    work.mkdir()
    (work / "daemon.json").write_text("{}")
    sock = str(work / "api.sock")
    with open(work / "daemon.log", "wb") as log:
        proc = subprocess.Popen(
            [str(installed["venv"] / "bin" / "twistd"), "-n", "--pidfile=", "dockerd", "-H", "unix://" + sock,
             "--data-root", str(work / "root"), "--exec-root", str(work / "exec"),
             "--config-file", str(work / "daemon.json")],
            cwd=str(work), env=clean_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        def answers():
            assert proc.poll() is None, (work / "daemon.log").read_text()
            try:
                return unix_request(sock, "GET", "/_ping", timeout=2).body == b"OK"
            except OSError:
                return False

        wait_for(answers, START_TIMEOUT, what="/_ping from the installed daemon")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT) == 0, (work / "daemon.log").read_text()


def test_commands_are_linked_and_twistd_is_not(installed):
    links = sorted(os.listdir(installed["bin"]))
    assert links == ["twistedock", "twistedock-migrate"]
    for name in links:
        assert os.readlink(installed["bin"] / name) == str(installed["venv"] / "bin" / name)
    version = subprocess.run(
        [str(installed["bin"] / "twistedock"), "--version"], env=clean_env(), capture_output=True, text=True
    )
    assert version.stdout.startswith("twistedock version "), version
    usage = subprocess.run(
        [str(installed["bin"] / "twistedock-migrate"), "--help"], env=clean_env(), capture_output=True, text=True
    )
    assert usage.returncode == 0 and "SOURCE" in usage.stdout.upper(), usage


def test_installed_units_pass_systemd_analyze_verify(installed):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/install --test installs systemd's tools"
    units = [str(installed["units"] / n) for n in ("twistedock.socket", "twistedock.service")]
    service = Path(units[1]).read_text()
    assert "ExecStart=%s/bin/twistedock -H fd://\n" % installed["venv"] in service
    result = subprocess.run([analyze, "verify"] + units, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_second_run_changes_nothing(installed):
    stamp = installed["venv"] / ".twistedock"
    package = Path(venv_python(installed, "import twistedock; print(twistedock.__file__)"))
    before = (stamp.stat().st_mtime_ns, package.stat().st_mtime_ns)
    result = run_install(installed)
    assert (stamp.stat().st_mtime_ns, package.stat().st_mtime_ns) == before
    assert "installed" not in result.stderr, result


def test_plain_editable_install_gives_twistd_dockerd(installed):
    """`pip install -e .` (no compat mode), which `--editable` runs: the
    checkout goes on sys.path, where twistd finds the dropin."""
    run_install(installed, "--editable")
    where = venv_python(installed, "import twistedock; print(twistedock.__file__)")
    assert where == os.path.join(REPO_ROOT, "twistedock", "__init__.py")
    listed = subprocess.run(
        [str(installed["venv"] / "bin" / "twistd"), "--help"],
        cwd=str(installed["base"]), env=clean_env(), capture_output=True, text=True,
    )
    assert "dockerd" in listed.stdout, listed
    assert "mode=editable" in (installed["venv"] / ".twistedock").read_text()
