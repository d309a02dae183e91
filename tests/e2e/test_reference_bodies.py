"""
Side by side with the reference dockerd (20.10, API 1.41): the same image
imported into both, a created and a running container in each, and the
bodies of inspect, list, info, df and exec inspect compared by shape: the
same keys at every depth, and null where dockerd has null, [] where it has [].

Runs where a reference dockerd is installed: the one already running at
C{/tmp/reference-dockerd/docker.sock} (C{shared/tools/reference-dockerd
start}), else a private one this module starts with that script and
C{dockerd} from PATH, and stops. Skips where neither can be had.
"""

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Dict, Optional

import pytest

from .conftest import unix_request
from .test_containers import busybox_rootfs_tar

REFERENCE_SOCKET = "/tmp/reference-dockerd/docker.sock"
VERSION = "/v1.41"

#: Differences that come from how the two daemons are set up, not from
#: what twistedock answers; by path, with the reason.
SETUP_DIFFERENCES = {
    # The reference runs with --bridge=none, which disables its containers' networking.
    "$.Config.NetworkDisabled": "reference started with --bridge=none",
    # The reference runs with --experimental, twistedock's daemon here without.
    "$.Experimental": "reference started with --experimental",
    # twistedock's own addition: the CRIU its checkpoints use.
    "$.CriuVersion": "twistedock extension",
}

#: Maps whose keys are names of things installed on each host (runtimes,
#: registries' index configs): compared as maps, not key by key.
NAMED_MAPS = ("$.Runtimes", "$.RegistryConfig.IndexConfigs")


def _ping(sock: str) -> bool:
    try:
        return unix_request(sock, "GET", "/_ping", timeout=2).status == 200
    except OSError:
        return False


def _script() -> Optional[str]:
    """shared/tools/reference-dockerd beside the main checkout."""
    here = Path(__file__).resolve().parents[2]
    try:
        common = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        candidates = [Path(common).parent.parent / "shared" / "tools" / "reference-dockerd"]
    except (OSError, subprocess.CalledProcessError):
        candidates = []
    candidates.append(Path("/work/shared/tools/reference-dockerd"))
    for candidate in candidates:
        if os.access(str(candidate), os.X_OK):
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The socket of a reference dockerd."""
    if _ping(REFERENCE_SOCKET):
        yield REFERENCE_SOCKET
        return
    script = _script()
    if script is None or shutil.which("dockerd") is None:
        pytest.skip("no reference dockerd here (shared/tools/reference-dockerd and dockerd on PATH)")
    directory = str(tmp_path_factory.mktemp("ref"))
    env = dict(os.environ, REFERENCE_DOCKERD_DIR=directory)
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=120)
    try:
        if started.returncode != 0:
            pytest.skip("the reference dockerd did not start: " + started.stderr)
        yield os.path.join(directory, "docker.sock")
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=60)


def _docker(sock: str, *args: str, **kwargs) -> str:
    result = subprocess.run(
        ["docker", "-H", "unix://" + sock] + list(args),
        capture_output=True, text=True, timeout=60, **kwargs,
    )
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout.strip()


@pytest.fixture(scope="module")
def pair(module_daemons, reference, tmp_path_factory):
    """Both daemons with the same image, a created and a running container,
    and an exec: for each, the socket and the ids by role."""
    twistedock = module_daemons.start()
    tar = busybox_rootfs_tar(tmp_path_factory.mktemp("img"))
    tag = "refbodies-%s:latest" % (uuid.uuid4().hex[:8],)
    sides = {}
    for side, sock in (("reference", reference), ("twistedock", twistedock.sock)):
        suffix = uuid.uuid4().hex[:8]
        with open(tar, "rb") as f:
            image = _docker(sock, "import", "-", tag, stdin=f)
        created = _docker(sock, "create", "--name", "refb-created-" + suffix, tag, "true")
        running = _docker(sock, "run", "-d", "--name", "refb-running-" + suffix, tag, "sleep", "1000")
        # A pod: a sandbox sharing its IPC, a container joining its
        # network, IPC and PID namespaces (one created, one running).
        sandbox = _docker(sock, "run", "-d", "--name", "refb-sandbox-" + suffix, "--network", "none",
                          "--ipc", "shareable", tag, "sleep", "1000")
        join = ["--network", "container:" + sandbox, "--ipc", "container:" + sandbox, "--pid", "container:" + sandbox]
        joiner = _docker(sock, "run", "-d", "--name", "refb-joiner-" + suffix, *join, tag, "sleep", "1000")
        joiner_created = _docker(sock, "create", "--name", "refb-joinc-" + suffix, *join, tag, "true")
        answer = unix_request(
            sock, "POST", VERSION + "/containers/%s/exec" % (running,),
            body=json.dumps({"Cmd": ["true"]}).encode(), headers={"Content-Type": "application/json"},
        )
        assert answer.status == 201, answer.text()
        sides[side] = {
            "sock": sock, "image": image, "created": created, "running": running,
            "exec": answer.json()["Id"], "tag": tag, "sandbox": sandbox, "joiner": joiner,
            "joiner_created": joiner_created,
        }
    yield sides
    for ids in sides.values():
        subprocess.run(
            ["docker", "-H", "unix://" + ids["sock"], "rm", "-f", ids["created"], ids["running"], ids["joiner"],
             ids["joiner_created"], ids["sandbox"]],
            capture_output=True, timeout=60,
        )
        subprocess.run(
            ["docker", "-H", "unix://" + ids["sock"], "rmi", ids["tag"]], capture_output=True, timeout=60
        )


def shape(value, path: str = "$") -> Dict[str, str]:
    """Every path of a JSON body and what is there: an object, an empty or
    non-empty list, null, or a scalar's type. Lists are described by their
    first element; named maps by their first entry."""
    out: Dict[str, str] = {}
    if isinstance(value, dict):
        out[path] = "{}" if not value else "{..}"
        if path in NAMED_MAPS:
            items = list(value.items())[:1]
            for _, inner in items:
                out.update(shape(inner, path + ".*"))
        else:
            for key, inner in value.items():
                out.update(shape(inner, path + "." + key))
    elif isinstance(value, list):
        out[path] = "[]" if not value else "[..]"
        if value:
            out.update(shape(value[0], path + "[0]"))
    elif value is None:
        out[path] = "null"
    elif isinstance(value, bool):
        out[path] = "bool"
    elif isinstance(value, (int, float)):
        out[path] = "number"
    else:
        out[path] = "string"
    return out


def differences(reference, twistedock) -> Dict[str, tuple]:
    a, b = shape(reference), shape(twistedock)
    found = {}
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path) and path not in SETUP_DIFFERENCES:
            found[path] = (a.get(path, "absent"), b.get(path, "absent"))
    return found


def _get(sock: str, target: str):
    answer = unix_request(sock, "GET", VERSION + target)
    assert answer.status == 200, (target, answer.text())
    return answer.json()


def _both(pair, target: str):
    return [_get(pair[side]["sock"], target.format(**pair[side])) for side in ("reference", "twistedock")]


def _entry(entries, key: str, value):
    found = [e for e in entries if e[key] == value]
    assert len(found) == 1, (key, value, entries)
    return found[0]


@pytest.mark.route("GET", "/containers/{name:.*}/json")
@pytest.mark.parametrize("role", ["created", "running", "sandbox", "joiner", "joiner_created"])
def test_container_inspect(pair, role):
    assert differences(*_both(pair, "/containers/{%s}/json" % (role,))) == {}
    assert differences(*_both(pair, "/containers/{%s}/json?size=1" % (role,))) == {}


@pytest.mark.route("GET", "/containers/json")
@pytest.mark.parametrize("query", ["all=1", "all=1&size=1"])
def test_container_list(pair, query):
    bodies = _both(pair, "/containers/json?" + query)
    for role in ("created", "running", "sandbox", "joiner", "joiner_created"):
        entries = [_entry(body, "Id", pair[side][role]) for body, side in zip(bodies, ("reference", "twistedock"))]
        assert differences(*entries) == {}, role


@pytest.mark.route("GET", "/images/{name:.*}/json")
def test_image_inspect(pair):
    assert differences(*_both(pair, "/images/{image}/json")) == {}


@pytest.mark.route("GET", "/images/json")
def test_image_list(pair):
    bodies = _both(pair, "/images/json")
    entries = [_entry(body, "Id", pair[side]["image"]) for body, side in zip(bodies, ("reference", "twistedock"))]
    assert differences(*entries) == {}


@pytest.mark.route("GET", "/exec/{id:.*}/json")
def test_exec_inspect(pair):
    assert differences(*_both(pair, "/exec/{exec}/json")) == {}


@pytest.mark.route("GET", "/info")
def test_info(pair):
    reference, twistedock = _both(pair, "/info")
    # Counts and lists of things installed differ between hosts; the plugin
    # lists are of strings on both.
    for body in (reference, twistedock):
        body.pop("Plugins")
    assert differences(reference, twistedock) == {}


@pytest.mark.route("GET", "/version")
def test_version(pair):
    reference, twistedock = _both(pair, "/version")
    # Components name each daemon's parts (containerd, runc; conmon, CRIU).
    for body in (reference, twistedock):
        body.pop("Components")
        body.pop("Platform")
    assert differences(reference, twistedock) == {}


@pytest.mark.route("GET", "/system/df")
def test_disk_usage(pair):
    reference, twistedock = _both(pair, "/system/df")
    for key, field, role in (("Images", "Id", "image"), ("Containers", "Id", "created"), ("Containers", "Id", "running")):
        entries = [
            _entry(body[key], field, pair[side][role])
            for body, side in ((reference, "reference"), (twistedock, "twistedock"))
        ]
        assert differences(*entries) == {}, (key, role)
    for body in (reference, twistedock):
        body["Images"], body["Containers"] = body["Images"][:0], body["Containers"][:0]
        body.pop("Volumes")  # the reference may hold others' volumes
        body.pop("BuildCache")  # likewise its build cache
    assert differences(reference, twistedock) == {}


@pytest.mark.route("GET", "/containers/{name:.*}/json")
def test_joined_containers_values(pair):
    """Beyond the shapes: what a pod's joiner shows of its sandbox, the same
    on both daemons."""
    def facts(side):
        ids = pair[side]
        sandbox, joiner, created = (_get(ids["sock"], "/containers/%s/json" % ids[role])
                                    for role in ("sandbox", "joiner", "joiner_created"))
        paths = ("ResolvConfPath", "HostsPath", "HostnamePath")
        return {
            "joiner's files are the sandbox's": all(joiner[k] == sandbox[k] for k in paths),
            "created joiner's files": [created[k] for k in paths],
            "joiner's hostname is the sandbox's": joiner["Config"]["Hostname"] == sandbox["Config"]["Hostname"],
            "created joiner's hostname is its own": created["Config"]["Hostname"] == created["Id"][:12],
            "joiner's SandboxKey": joiner["NetworkSettings"]["SandboxKey"],
            "sandbox's SandboxKey is set": bool(sandbox["NetworkSettings"]["SandboxKey"]),
            "modes": [joiner["HostConfig"][k] == "container:" + sandbox["Id"]
                      for k in ("NetworkMode", "IpcMode", "PidMode")],
            "joiner's networks": joiner["NetworkSettings"]["Networks"],
            "sandbox's networks": sorted(sandbox["NetworkSettings"]["Networks"]),
        }
    assert facts("twistedock") == facts("reference")
