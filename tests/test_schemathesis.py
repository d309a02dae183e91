"""A bounded schemathesis pass over the implemented container, image and
system operations of the Engine API spec (v1.41): requests generated from
the spec, valid and invalid, sent to the composed root resource with the
in-memory backends; no answer may be a 500 (a 501 names a feature this
daemon lacks, not a client's mistake).  Deterministic: derandomized,
bounded examples, no example database."""

import os
import re
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from twisted.python.failure import Failure

from .memory import API
from .test_compat import compat

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.core.errors import SerializationNotPossible  # noqa: E402

#: Per operation and generation mode.
EXAMPLES = 8
AREAS = re.compile(r"^/(containers|images|info|version|_ping|system|commit|exec|auth|build/prune)")
#: Streams and hijacked connections: they do not end in memory.
STREAMS = re.compile(r"/(attach|attach/ws|logs|stats|events|export|wait|start)$|^/exec/\{id\}/start$")


def spec_path() -> Path:
    """The v1.41 spec beside the one the suite uses (TWISTEDOCK_API_SPEC, or
    compat's default); a named spec that is missing fails the test."""
    given_path = os.environ.get("TWISTEDOCK_API_SPEC")
    if given_path:
        assert Path(given_path).is_file(), "TWISTEDOCK_API_SPEC=%s: no such file" % (given_path,)
        found = Path(given_path)
    elif compat.DEFAULT_SPEC.is_file():
        found = compat.DEFAULT_SPEC
    else:
        pytest.skip("Engine API spec not found at %s (set TWISTEDOCK_API_SPEC)" % (compat.DEFAULT_SPEC,))
    beside = found.parent / "engine-api-v1.41.yaml"
    return beside if beside.is_file() else found


def operations():
    schema = schemathesis.openapi.from_path(str(spec_path()))
    for result in schema.get_all_operations():
        operation = result.ok()
        if AREAS.match(operation.path) and not STREAMS.search(operation.path):
            yield operation


def send(api: API, case) -> int:
    """The request the case describes, made against a container named web
    (so the handlers get past the lookup): its status, or None when the
    answer did not end in memory."""
    params = {k: "web" if k in ("id", "name") else v for k, v in (case.path_parameters or {}).items()}
    path = case.operation.path
    for key, value in params.items():
        path = path.replace("{%s}" % key, quote(str(value), safe=""))
    query = urlencode(
        [(k, str(v)) for k, vs in (case.query or {}).items() for v in (vs if isinstance(vs, list) else [vs])]
    )
    headers = {k: str(v) for k, v in (case.headers or {}).items() if k.lower() not in ("content-length", "host")}
    body = None
    if case.body is not None and type(case.body).__name__ != "NotSet":
        import json

        body = json.dumps(case.body).encode() if not isinstance(case.body, bytes) else case.body
        headers.setdefault("Content-Type", case.media_type or "application/json")
    try:
        d = api.treq.request(
            case.method, "http://docker/v1.41" + path + ("?" + query if query else ""), data=body, headers=headers
        )
    except (ValueError, TypeError):  # not a request HTTP can carry (a header with a newline)
        return None
    api.treq.flush()
    fired = []
    d.addBoth(fired.append)
    if not fired:
        d.cancel()
        return None
    if isinstance(fired[0], Failure):
        fired[0].trap(ValueError, TypeError)
        return None
    return fired[0].code


def test_no_client_input_gets_a_500():
    problems = {}
    api = API()
    for operation in operations():
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                strategy = operation.as_strategy(generation_mode=mode)
            except Exception:  # an operation schemathesis cannot negate
                continue

            @settings(
                max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate),
            )  # fmt: skip
            @given(case=strategy)
            def run(case):
                # One daemon for the pass (building one costs more than a request);
                # the container web is there before each request.
                api.request("POST", "/containers/create?name=web", json_body={"Image": "busybox"})
                code = send(api, case)
                if code is not None and code == 500:
                    problems.setdefault("%s %s" % (operation.method.upper(), operation.path), case.body)

            try:
                run()
            except (Unsatisfiable, SerializationNotPossible):
                pass  # no invalid request exists, or its body is not JSON (a tar)
    assert problems == {}
