"""
A bounded schemathesis pass against a real C{twistd -n dockerd}: requests
generated from the Engine API spec (v1.41), valid and invalid, over the
served container, exec, image and system operations, sent over the unix
socket to a daemon with a busybox image and a running container C{web}.
No answer may be a 5xx for a client's input, but for the 500s dockerd 20.10
itself gives for the same input, with the same words (L{DOCKERD_500S},
each with its reason).

A create whose body the generator made is also tried with the busybox
image, a harmless command and without what would touch the host (bind
sources are made on the host, a cgroup parent is made in the host's
hierarchy), and started: the start-time checks of every HostConfig field.

Deterministic (derandomized, no example database) and bounded (EXAMPLES per
operation and generation mode; a minute or two on two cores).
"""

import json
import os
import re
import socket
from urllib.parse import quote, urlencode

import pytest

from .test_containers import daemon  # noqa: F401  (the module's daemon with busybox)

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.core.errors import SerializationNotPossible  # noqa: E402

from ..test_schemathesis import AREAS, spec_path  # noqa: E402

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

#: Per operation and generation mode.
EXAMPLES = 6
#: More for the bodies with the most fields (each create is also started).
MORE_EXAMPLES = {"/containers/create": 40, "/containers/{id}/update": 20, "/commit": 12}

#: Answers that do not end (streams, hijacked connections, waits), and
#: what would wait on a container for as long as asked.
SKIPPED = re.compile(
    r"/(attach|attach/ws|logs|stats|events|wait)$|^/exec/\{id\}/start$"
)

#: What reaches past this machine: a registry (login, pull, push, search,
#: distribution inspect) or a URL (import from a URL).  Test traffic goes to
#: loopback only; these are tested against a loopback registry in test_pull.
REMOTE = re.compile(r"^/(auth|images/create|images/\{name\}/push|images/search|distribution/)")

#: The 500s dockerd 20.10 gives for the same client input, in the same
#: words (asked side by side): kept as dockerd answers them.
DOCKERD_500S = (
    # runc refused the spec (a sysctl, a cpu share, an rlimit, an env with
    # NUL...): containerd's error, errdefs.Unknown in dockerd.
    re.compile(r"^failed to create shim task: OCI runtime create failed: "),
    # createSpec's errors are errdefs.System in dockerd (start).
    re.compile(r"^error gathering device information while adding custom device "),
    re.compile(r"^(unable to find user|Unable to find group|unable to find group) .*: no matching entries in (passwd|group) file$"),
    re.compile(r"^uids and gids must be in range 0-2147483647$"),
    re.compile(r"^invalid device cgroup rule format: "),
    re.compile(r"^invalid tmpfs option "),
    re.compile(r"^Invalid IPC mode: "),
    re.compile(r"^shares: invalid argument$"),
    re.compile(r"^stat .*: no such file or directory$"),
    re.compile(r"^could not select device driver .* with capabilities: "),
    re.compile(r"^Decoding seccomp profile failed: "),
    # DELETE /containers/{name}?link=1 of a name that is no link: a plain
    # error in dockerd's daemon/delete.go rmLink.
    re.compile(r"^Conflict, cannot remove the default link name of the container$"),
    # Exec create with DetachKeys that do not parse: a plain error.
    re.compile(r"^Invalid escape keys \(.*\) provided$"),
    # Unpause of a container that is not paused: a plain error.
    re.compile(r"^Container [0-9a-f]{64} is not paused$"),
    # An update runc refuses (a cpu share above the maximum...).
    re.compile(r"^Cannot update container [0-9a-f]{64}: runc did not terminate successfully: "),
    # The resize of an exec that never started, after 10 s.
    re.compile(r"^timeout waiting for exec session ready$"),
)

#: The container command: SIGTERM ends it at once (a stop does not wait).
WEB_CMD = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]

#: What a generated create may not do to the host when it is started.
HOST_TOUCHING = ("Binds", "Mounts", "VolumesFrom", "CgroupParent", "Devices")


class Pass:
    """The daemon, its fixtures (the container web, an exec in it, the
    busybox image) kept in place between requests, and what went wrong."""

    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.image_id = self.call("GET", "/images/busybox/json").json()["Id"]
        self.exec_id = "none"
        self.problems = {}
        self.hangs = []

    def call(self, method, target, body=None, headers=None, timeout=20.0):
        return self.daemon.request(method, "/v1.41" + target, body=body, headers=headers, timeout=timeout)

    def ensure_fixtures(self) -> None:
        if self.call("GET", "/images/busybox/json").status != 200:
            tagged = self.call("POST", "/images/%s/tag?repo=busybox&tag=latest" % self.image_id)
            assert tagged.status == 201, tagged
        answer = self.call("GET", "/containers/web/json")
        if answer.status == 404:
            created = self.call("POST", "/containers/create?name=web", {"Image": "busybox", "Cmd": WEB_CMD})
            assert created.status == 201, created
            answer = self.call("GET", "/containers/web/json")
        state = answer.json()["State"]
        if state["Paused"]:
            self.call("POST", "/containers/web/unpause")
        elif state["Restarting"]:
            self.call("POST", "/containers/web/stop?t=0")
        if not self.call("GET", "/containers/web/json").json()["State"]["Running"]:
            started = self.call("POST", "/containers/web/start")
            assert started.status in (204, 304), started
            # An exec that runs (with a terminal to resize), so that its
            # routes get past the lookup and the wait for its start.
            made = self.call("POST", "/containers/web/exec", {"Cmd": ["sleep", "1000"], "Tty": True})
            assert made.status == 201, made
            self.exec_id = made.json()["Id"]
            started = self.call("POST", "/exec/%s/start" % self.exec_id, {"Detach": True, "Tty": True})
            assert started.status == 200, started

    def target(self, case) -> str:
        path = case.operation.path
        for key, value in (case.path_parameters or {}).items():
            if path.startswith("/images/"):
                value = "busybox"
            elif path.startswith("/exec/"):
                value = self.exec_id
            elif key in ("id", "name"):
                value = "web"
            path = path.replace("{%s}" % key, quote(str(value), safe=""))
        query = dict(case.query or {})
        if case.operation.path == "/commit" and "container" in query:
            query["container"] = "web"
        # A stop or restart waits as long as asked: not more than a second.
        if "t" in query and re.fullmatch(r"-?[0-9]+", str(query["t"])):
            query["t"] = str(max(-1, min(int(query["t"]), 1)))
        encoded = urlencode(
            [(k, str(v)) for k, vs in query.items() for v in (vs if isinstance(vs, list) else [vs])]
        )
        return path + ("?" + encoded if encoded else "")

    def send(self, case, target=None, body=None):
        """The request of C{case}: its answer, or None when there is none
        (a request HTTP cannot carry, an answer that did not come)."""
        headers = {
            k: str(v) for k, v in (case.headers or {}).items() if k.lower() not in ("content-length", "host")
        }
        if body is None and case.body is not None and type(case.body).__name__ != "NotSet":
            body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
            headers.setdefault("Content-Type", case.media_type or "application/json")
        elif body is not None:
            headers["Content-Type"] = "application/json"
        target = target or self.target(case)
        try:
            return self.call(case.method.upper(), target, body=body, headers=headers)
        except (ValueError, TypeError, UnicodeError):
            return None  # not a request HTTP can carry (a header with a newline)
        except socket.timeout:
            self.hangs.append("%s %s" % (case.method.upper(), target))
            return None

    def check(self, label: str, answer, sent) -> None:
        if answer is None or answer.status < 500 or answer.status == 501:
            return
        try:
            message = answer.json().get("message", "")
        except ValueError:
            message = answer.text
        if answer.status == 500 and any(p.search(message) for p in DOCKERD_500S):
            return
        self.problems.setdefault(label, (answer.status, message, sent))

    def run_case(self, case) -> None:
        self.ensure_fixtures()
        label = "%s %s" % (case.method.upper(), case.operation.path)
        answer = self.send(case)
        self.check(label, answer, case.body)
        if case.operation.path == "/containers/create" and isinstance(case.body, dict):
            self.create_and_start(case)

    def create_and_start(self, case) -> None:
        body = dict(case.body, Image="busybox", Cmd=["true"], Entrypoint=None)
        host_config = body.get("HostConfig")
        if isinstance(host_config, dict):
            body["HostConfig"] = {k: v for k, v in host_config.items() if k not in HOST_TOUCHING}
        created = self.send(case, target="/containers/create", body=json.dumps(body).encode())
        self.check("POST /containers/create (busybox)", created, body)
        if created is None or created.status != 201:
            return
        ident = created.json()["Id"]
        try:
            started = self.call("POST", "/containers/%s/start" % ident)
            self.check("POST /containers/{id}/start (generated create)", started, body)
        finally:
            self.call("DELETE", "/containers/%s?force=1" % ident)


def operations():
    schema = schemathesis.openapi.from_path(str(spec_path()))
    for result in schema.get_all_operations():
        operation = result.ok()
        if AREAS.match(operation.path) and not (SKIPPED.search(operation.path) or REMOTE.match(operation.path)):
            yield operation


def test_no_client_input_gets_a_5xx(daemon):  # noqa: F811
    run = Pass(daemon)
    try:
        for operation in operations():
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                try:
                    strategy = operation.as_strategy(generation_mode=mode)
                except Exception:  # an operation schemathesis cannot negate
                    continue

                @settings(
                    max_examples=MORE_EXAMPLES.get(operation.path, EXAMPLES), derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate),
                )  # fmt: skip
                @given(case=strategy)
                def each(case):
                    run.run_case(case)

                try:
                    each()
                except (Unsatisfiable, SerializationNotPossible):
                    pass  # no invalid request exists, or its body is not JSON (a tar)
    finally:
        listed = daemon.request("GET", "/v1.41/containers/json?all=1").json()
        for container in listed:
            daemon.request("DELETE", "/v1.41/containers/%s?force=1" % container["Id"])
    found = ["%s: %d %s (body %.300r)" % (label, *problem) for label, problem in sorted(run.problems.items())]
    print("\n".join(found)); assert found == []
    assert run.hangs == []
