"""docs/CLIENT.md's tutorial, its python blocks joined into one program, run
against two real twistd daemons (--experimental, CRIU); and the twistedock
command's checkpoint export/import and events subcommands."""

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time

import pytest

from .conftest import REPO_ROOT
from .test_checkpoint import numbers, state, wait_numbers
from .test_migrate import counter, criu, pair  # noqa: F401  (the fixtures)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

TUTORIAL = os.path.join(REPO_ROOT, "docs", "CLIENT.md")


def tutorial_program() -> str:
    with open(TUTORIAL) as f:
        return "\n".join(re.findall(r"```python\n(.*?)```", f.read(), re.S))


def env_for(host, tmp_path, **extra):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(DOCKER_HOST=host, DOCKER_CONFIG=str(tmp_path / "docker-config"), **extra)
    env.pop("DOCKER_CONTEXT", None)
    return env


@pytest.mark.route("POST", "/containers/create")
@pytest.mark.route("GET", "/containers/{name:.*}/logs")
@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
@pytest.mark.route("DELETE", "/containers/{name:.*}")
def test_the_tutorial_runs(pair, tmp_path):
    a, b = pair
    program = tmp_path / "tutorial.py"
    program.write_text(tutorial_program())
    result = subprocess.run([sys.executable, str(program)], env=env_for(a.host, tmp_path, TARGET_HOST=b.host),
                            capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert lines[:6] == ["counted %d" % i for i in range(6)], lines
    assert lines[6] == "checkpoints: ['cp1']"
    went_on = int(re.fullmatch(r"counting on from (\d+)", lines[7]).group(1))
    # Restored where it stopped: on from 5 (a few more counted before the checkpoint).
    assert 5 <= went_on <= 60, lines
    for d in (a, b):
        assert d.docker("ps", "-aq").stdout == ""


def twistedock(*args, env, **kwargs):
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "twistedock.cli"] + list(args), env=env,
                          capture_output=True, timeout=120, **kwargs)


@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("GET", "/events")
def test_checkpoint_files_and_events_commands(pair, tmp_path):
    a, b = pair
    since = str(int(time.time()) - 1)
    counter(a, "filed")
    wait_numbers(a, "filed", 3)
    a.docker("checkpoint", "create", "filed", "cp1")
    logged = numbers(a, "filed")
    exported = tmp_path / "cp.tar"
    result = twistedock("checkpoint", "export", "filed", "cp1", "-o", str(exported), env=env_for(a.host, tmp_path))
    assert result.returncode == 0, result.stderr
    assert exported.stat().st_size > 0
    # Through stdout too (-H beats DOCKER_HOST): the same files.
    piped = twistedock("checkpoint", "export", "-H", a.host, "filed", "cp1", env=env_for("unix:///nowhere", tmp_path))
    assert piped.returncode == 0, piped.stderr
    with tarfile.open(fileobj=io.BytesIO(piped.stdout)) as one, tarfile.open(exported) as other:
        assert one.getnames() == other.getnames()
    with open(exported, "rb") as f:
        result = twistedock("checkpoint", "import", "--name", "filed-copy", env=env_for(b.host, tmp_path), stdin=f)
    assert result.returncode == 0, result.stderr
    new_id = result.stdout.decode().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", new_id)
    b.docker("start", "--checkpoint", "cp1", "filed-copy")
    assert state(b, "filed-copy")["Status"] == "running"
    after = wait_numbers(b, "filed-copy", 3)
    assert logged[-1] - 1 <= after[0] <= logged[-1] + 2
    # A daemon's answer is the command's error.
    result = twistedock("checkpoint", "export", "nope", "cp1", "-o", str(tmp_path / "x"), env=env_for(a.host, tmp_path))
    assert result.returncode == 1 and b"No such container: nope" in result.stderr
    # Events: the past ones between since and until, filtered.
    until = "%.3f" % (time.time(),)
    result = twistedock("events", "--since", since, "--until", until, "--filter", "container=filed",
                        "--filter", "event=checkpoint", "--format", "json", env=env_for(a.host, tmp_path))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in events] == [("checkpoint", "filed")]
    result = twistedock("events", "--since", since, "--until", until, "--filter", "container=filed",
                        "--filter", "event=create", env=env_for(a.host, tmp_path))
    assert re.fullmatch(r"\S+Z container create [0-9a-f]{64} \(.*name=filed.*\)\n", result.stdout.decode())
