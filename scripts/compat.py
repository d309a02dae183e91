#!/usr/bin/env python
"""
Generate docs/COMPAT.md: every route twistedock lists, what it answers, the
Engine API operation it implements, and the tests that exercise it.

    python scripts/compat.py            # write docs/COMPAT.md
    python scripts/compat.py --check    # exit 1 if docs/COMPAT.md is stale (CI)

Sources: the route tables, in twistedock.daemon.build_routers' order (debug
included); the newest Engine API spec, by default
<repo>/../shared/spec/engine-api-v1.56.yaml (--spec overrides); and the
C{@pytest.mark.route("METHOD", "/template")} marks of tests/**, read with
C{ast} (functions, classes, module C{pytestmark}).  The output is a pure
function of those, so it can be compared.

PyYAML reads the spec when it is installed; without it a small reader of the
spec's C{paths:} section does (the two agree: tests/test_compat.py checks).
"""

import argparse
import ast
import difflib
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO.parent / "shared" / "spec" / "engine-api-v1.56.yaml"
OUTPUT = REPO / "docs" / "COMPAT.md"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")

#: Routes served by a handler whose backend, as the daemon builds it, always
#: answers 501: (method, template) -> (backend module, class, method).  Each
#: is checked against the code: once the backend method does more than raise
#: NotImplementedYet, the route counts as served again.
BACKEND_STUBS = {
    ("POST", "/auth"): ("twistedock.backend.system", "SystemBackend", "authenticate"),
    ("POST", "/swarm/init"): ("twistedock.backend.swarm", "InactiveCluster", "init"),
    ("POST", "/swarm/join"): ("twistedock.backend.swarm", "InactiveCluster", "join"),
}

#: Routers whose backend is a stand-in: router name -> (the stand-in class's
#: name, which the daemon must construct, and the status shown).
STAND_INS = {"swarm": ("InactiveCluster", "as dockerd outside a swarm")}

# Summary categories; each route counts once, in the first that fits.
EXPERIMENTAL = "experimental"
NOT_IMPLEMENTED = "501"
STAND_IN = "stand-in"
TESTED = "tested"
UNTESTED = "untested"
CATEGORIES = (
    (TESTED, "Served and tested"),
    (UNTESTED, "Served, untested"),
    (EXPERIMENTAL, "Experimental (501 unless --experimental)"),
    (STAND_IN, "Answers as a dockerd outside a swarm"),
    (NOT_IMPLEMENTED, "Not implemented (501)"),
)


def _import_twistedock():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from twistedock import daemon
    from twistedock import versions

    return daemon, versions


# -- the spec ---------------------------------------------------------------


def normalise(template: str) -> str:
    """C{template} with every C{{...}} (nested braces included) as C{{}}."""
    out = []
    depth = 0
    for char in template:
        if char == "{":
            if depth == 0:
                out.append("{}")
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


def spec_operations_yaml(text: str) -> Tuple[str, Dict[Tuple[str, str], str]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc = yaml.load(text, Loader=loader)
    ops = {}
    for path, item in (doc.get("paths") or {}).items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                ops[(method.upper(), path)] = (op or {}).get("operationId", "")
    return str(doc.get("info", {}).get("version", "")), ops


_KEY = re.compile(r"^( *)(\"[^\"]*\"|'[^']*'|[^\s:#][^:#]*?)\s*:(?:\s+(.*?))?\s*$")


def _scalar(value: str) -> str:
    value = (value or "").split(" #", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def spec_operations_plain(text: str) -> Tuple[str, Dict[Tuple[str, str], str]]:
    """The spec's version and operations, read without PyYAML: only the
    block-style C{info.version} and C{paths.<path>.<method>.operationId}."""
    version = ""
    ops: Dict[Tuple[str, str], str] = {}
    section = None
    path = method = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _KEY.match(line)
        if m is None:
            continue
        indent, key, value = len(m.group(1)), _scalar(m.group(2)), m.group(3)
        if indent == 0:
            section, path, method = key, None, None
        elif section == "info" and indent == 2 and key == "version":
            version = _scalar(value)
        elif section == "paths" and indent == 2:
            path, method = key, None
        elif section == "paths" and indent == 4 and path is not None:
            method = key.upper() if key in HTTP_METHODS else None
            if method is not None:
                ops[(method, path)] = ""
        elif section == "paths" and indent == 6 and method and key == "operationId":
            ops[(method, path)] = _scalar(value)
    return version, ops


def spec_operations(spec: Path) -> Tuple[str, Dict[Tuple[str, str], str]]:
    """C{(info.version, {(METHOD, path): operationId})} of the spec at C{spec}."""
    text = spec.read_text(encoding="utf-8")
    try:
        import yaml  # noqa: F401
    except ImportError:
        return spec_operations_plain(text)
    return spec_operations_yaml(text)


# -- the tests --------------------------------------------------------------


def _route_marks(node: ast.AST) -> List[Tuple[Optional[str], Optional[str], int]]:
    """The C{(METHOD, template, line)} of every route mark in C{node}: a mark
    call, or a list/tuple of them.  Arguments that are not string literals
    give C{None}."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return [mark for element in node.elts for mark in _route_marks(element)]
    if not isinstance(node, ast.Call):
        return []
    func = node.func
    if not (isinstance(func, ast.Attribute) and func.attr == "route"):
        return []
    owner = func.value
    if not (
        (isinstance(owner, ast.Attribute) and owner.attr == "mark")
        or (isinstance(owner, ast.Name) and owner.id == "mark")
    ):
        return []
    args = [
        a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
        for a in node.args[:2]
    ]
    args += [None] * (2 - len(args))
    method = args[0].upper() if args[0] is not None else None
    return [(method, args[1], node.lineno)]


def _pytestmark(body: Sequence[ast.stmt]) -> list:
    marks = []
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            targets = stmt.targets
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets = [stmt.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets):
            marks.extend(_route_marks(stmt.value))
    return marks


def _decorator_marks(node) -> list:
    return [mark for d in node.decorator_list for mark in _route_marks(d)]


def _is_test_class(node: ast.ClassDef) -> bool:
    if node.name.startswith("Test"):
        return True
    for base in node.bases:
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
        if name.endswith("TestCase"):
            return True
    return False


def _tests_in(body, prefix: str, inherited: list):
    """C{(test id, marks)} for the tests pytest would collect from C{body}."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("test"):
                yield prefix + "::" + node.name, inherited + _decorator_marks(node)
        elif isinstance(node, ast.ClassDef) and _is_test_class(node):
            marks = inherited + _decorator_marks(node) + _pytestmark(node.body)
            yield from _tests_in(node.body, prefix + "::" + node.name, marks)


def scan_tests(repo: Path) -> List[Tuple[str, str, Optional[str], Optional[str]]]:
    """Every route mark in the tests: C{(test id, mark location, METHOD, template)}."""
    found = []
    tests = repo / "tests"
    files = sorted(tests.rglob("*.py")) if tests.is_dir() else []
    for path in files:
        if not (path.name.startswith("test_") or path.name.endswith("_test.py")):
            continue
        relative = path.relative_to(repo).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        for test_id, marks in _tests_in(tree.body, relative, _pytestmark(tree.body)):
            for method, template, line in marks:
                found.append((test_id, "%s:%d" % (relative, line), method, template))
    return found


# -- the routes -------------------------------------------------------------


def _always_501(function) -> Optional[str]:
    """The message if C{function}'s body (docstring aside) is only
    C{raise NotImplementedYet(...)}; otherwise None."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return None
    tree = ast.parse(source)
    if not tree.body or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    body = list(tree.body[0].body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Raise):
        return None
    exc = body[0].exc
    if not (isinstance(exc, ast.Call) and getattr(exc.func, "id", None) == "NotImplementedYet"):
        return None
    if exc.args and isinstance(exc.args[0], ast.Constant) and isinstance(exc.args[0].value, str):
        return exc.args[0].value
    return "not implemented"


def _routers(daemon) -> Tuple[list, set]:
    """The routers in registration order, and the names of those registered
    only with --debug."""
    sentinel = object()
    everything = daemon.build_routers(None, None, None, debug=sentinel)
    plain = {r.name for r in daemon.build_routers(None, None, None, debug=None)}
    return everything, {r.name for r in everything if r.name not in plain}


class Row:
    def __init__(self, router: str, route, operation: str) -> None:
        self.router = router
        self.route = route
        self.operation = operation
        self.status = ""
        self.category = ""
        self.tests: List[str] = []


class Model:
    def __init__(self) -> None:
        self.spec_version = ""
        self.routers: List[str] = []
        self.rows: List[Row] = []
        self.missing: List[Tuple[str, str, str]] = []  # spec operations with no route
        self.unknown_marks: List[Tuple[str, str, str]] = []  # (location, test, mark)
        self.ambiguous: List[str] = []


def build_model(repo: Path, spec: Path) -> Model:
    daemon, _ = _import_twistedock()
    model = Model()
    model.spec_version, operations = spec_operations(spec)
    by_shape: Dict[Tuple[str, str], List[Tuple[str, str]]] = {}
    for method, path in operations:
        by_shape.setdefault((method, normalise(path)), []).append((method, path))

    routers, debug_only = _routers(daemon)
    daemon_source = inspect.getsource(daemon)
    used = set()
    for router in routers:
        model.routers.append(router.name)
        for route in router.routes:
            keys = by_shape.get((route.method, normalise(route.path)), [])
            row = Row(router.name, route, "")
            if keys:
                used.update(keys)
                row.operation = ", ".join(sorted(operations[k] or "?" for k in keys))
            _status(row, router, debug_only, daemon_source)
            model.rows.append(row)
    shapes: Dict[Tuple[str, str], List[Row]] = {}
    for row in model.rows:
        shapes.setdefault((row.route.method, normalise(row.route.path)), []).append(row)
    for (method, shape), rows in sorted(shapes.items()):
        if len(rows) > 1:
            model.ambiguous.append(
                "%s %s: %s" % (method, shape, ", ".join("`%s`" % r.route.path for r in rows))
            )
    model.missing = sorted(
        (method, path, operations[(method, path)])
        for (method, path) in operations
        if (method, path) not in used
    )

    exact = {(row.route.method, row.route.path): row for row in model.rows}
    for test_id, location, method, template in scan_tests(repo):
        row = exact.get((method, template)) if method and template else None
        if row is None and method and template:
            candidates = shapes.get((method, normalise(template)), [])
            row = candidates[0] if len(candidates) == 1 else None
        if row is None:
            model.unknown_marks.append((location, test_id, "%s %s" % (method, template)))
        elif test_id not in row.tests:
            row.tests.append(test_id)
    for row in model.rows:
        row.tests.sort()
        if row.category == "":
            row.category = TESTED if row.tests else UNTESTED
    model.unknown_marks.sort()
    return model


def _status(row: Row, router, debug_only: set, daemon_source: str) -> None:
    route = row.route
    parts = []
    if route.handler is None:
        parts.append("501 not implemented yet")
        row.category = NOT_IMPLEMENTED
    else:
        handler = getattr(type(router), route.handler, None)
        if handler is None:
            raise SystemExit(
                "%s router: %s %s names handler %r, which it does not have"
                % (router.name, route.method, route.path, route.handler)
            )
        message = _always_501(handler)
        stub = BACKEND_STUBS.get((route.method, route.path))
        if message is None and stub is not None:
            module, cls, method = stub
            __import__(module)
            backend = getattr(sys.modules[module], cls)
            message = _always_501(getattr(backend, method))
            if message is not None:
                message = "%s (backend %s)" % (message, cls)
        stand_in = STAND_INS.get(router.name)
        if message is not None:
            parts.append("answers 501: %s" % (message,))
            row.category = NOT_IMPLEMENTED
        elif stand_in is not None and (stand_in[0] + "(") in daemon_source:
            parts.append(stand_in[1])
            row.category = STAND_IN
        else:
            parts.append("served")
    if route.experimental:
        row.category = EXPERIMENTAL
        if parts == ["served"]:
            parts.append("(experimental: 501 unless --experimental)")
        else:
            parts.append("(experimental)")
    if row.router in debug_only:
        parts.append("with --debug only" if parts == ["served"] else "(with --debug only)")
    row.status = " ".join(parts)


# -- the page ---------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _short(test_id: str) -> str:
    return test_id.split("::", 1)[1] if "::" in test_id else test_id


def _tests_cell(tests: List[str], shown: int = 3) -> str:
    if not tests:
        return "0"
    names = [_short(t) for t in tests[:shown]]
    more = " +%d more" % (len(tests) - shown) if len(tests) > shown else ""
    return "%d: %s%s" % (len(tests), ", ".join("`%s`" % n for n in names), more)


def render(model: Model, spec_name: str, min_api: str, max_api: str) -> str:
    out = []
    add = out.append
    add("<!-- Generated by `python scripts/compat.py`. Do not edit by hand: "
        "run it again (CI runs `python scripts/compat.py --check`). -->")
    add("")
    add("# Engine API compatibility")
    add("")
    add("Generated by `python scripts/compat.py` from the route tables "
        "(`twistedock/routers/*.py`, in `twistedock.daemon.build_routers` order), "
        "the Engine API spec `%s` (API %s) and the `@pytest.mark.route(METHOD, TEMPLATE)` "
        "marks in `tests/`. **Do not edit by hand.**" % (spec_name, model.spec_version))
    add("")
    add("twistedock serves API versions %s to %s. Every route is served both under "
        "`/vX.Y` and bare; the first match in the order below wins." % (min_api, max_api))
    add("")

    add("## Summary")
    add("")
    add("Each route counts once: experimental routes as experimental, then 501s, then the "
        "swarm stand-ins; the rest are served, tested when a test is marked with the route.")
    add("")
    add("| Router | Routes | " + " | ".join(label for _, label in CATEGORIES) + " |")
    add("|---|---:|" + "---:|" * len(CATEGORIES))
    totals = {key: 0 for key, _ in CATEGORIES}
    for name in model.routers:
        rows = [r for r in model.rows if r.router == name]
        counts = {key: sum(1 for r in rows if r.category == key) for key, _ in CATEGORIES}
        for key in totals:
            totals[key] += counts[key]
        add("| %s | %d | %s |" % (name, len(rows), " | ".join(str(counts[k]) for k, _ in CATEGORIES)))
    add("| **total** | **%d** | %s |" % (
        len(model.rows), " | ".join("**%d**" % totals[k] for k, _ in CATEGORIES)))
    add("")

    add("## Routes by router")
    add("")
    add("Status: *served* has a handler; *501 not implemented yet* is listed with no handler; "
        "*answers 501* has a handler (or backend) that always refuses; *experimental* routes "
        "answer 501 unless the daemon runs with `--experimental`; *as dockerd outside a swarm* "
        "is served by a backend answering as dockerd before `docker swarm init`.")
    for name in model.routers:
        add("")
        add("### %s" % (name,))
        add("")
        add("| Method | Path | Spec operationId | Status | Min API | Tests |")
        add("|---|---|---|---|---|---|")
        for row in (r for r in model.rows if r.router == name):
            add("| %s | `%s` | %s | %s | %s | %s |" % (
                row.route.method,
                _cell(row.route.path),
                row.operation or "— (not in spec)",
                _cell(row.status),
                row.route.min_version or "—",
                _cell(_tests_cell(row.tests)),
            ))
    add("")

    add("## Spec operations with no route")
    add("")
    if model.missing:
        for method, path, op in model.missing:
            add("- %s `%s` (%s)" % (method, path, op or "no operationId"))
    else:
        add("None: every operation of the spec has a route.")
    add("")

    add("## Routes not in the spec")
    add("")
    outside = [r for r in model.rows if not r.operation]
    if outside:
        add("| Router | Method | Path | Status |")
        add("|---|---|---|---|")
        for row in outside:
            add("| %s | %s | `%s` | %s |" % (
                row.router, row.route.method, _cell(row.route.path), _cell(row.status)))
    else:
        add("None.")
    add("")

    if model.ambiguous:
        add("## Routes of the same shape")
        add("")
        add("These routes differ only in their variables' patterns; a test mark must name "
            "one by its exact template.")
        add("")
        for line in model.ambiguous:
            add("- %s" % (line,))
        add("")

    add("## Test marks naming no route")
    add("")
    if model.unknown_marks:
        for location, test_id, mark in model.unknown_marks:
            add("- `%s` (%s): `%s`" % (test_id, location, mark))
    else:
        add("None.")
    add("")

    add("## Tests by route")
    add("")
    tested = [r for r in model.rows if r.tests]
    if not tested:
        add("No test is marked with a route yet.")
    for row in tested:
        add("- %s `%s` (%s)" % (row.route.method, row.route.path, row.router))
        for test_id in row.tests:
            add("  - `%s`" % (test_id,))
    return "\n".join(out).rstrip("\n") + "\n"


def generate(repo: Path = REPO, spec: Path = DEFAULT_SPEC) -> str:
    """The text docs/COMPAT.md should hold."""
    _, versions = _import_twistedock()
    model = build_model(repo, spec)
    return render(model, spec.name, versions.MIN_API_VERSION, versions.MAX_API_VERSION)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC,
                        help="the Engine API spec (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=OUTPUT,
                        help="the page to write or check (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the page differs from what would be generated")
    args = parser.parse_args(argv)
    if not args.spec.is_file():
        print("compat: spec not found: %s (use --spec)" % (args.spec,), file=sys.stderr)
        return 2
    text = generate(REPO, args.spec)
    if args.check:
        try:
            current = args.output.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(),
                "%s (committed)" % (args.output.name,), "%s (generated)" % (args.output.name,),
                lineterm="", n=1,
            )
            lines = list(diff)
            print("\n".join(lines[:60] + (["..."] if len(lines) > 60 else [])), file=sys.stderr)
            print("compat: %s is out of date: run `python scripts/compat.py` and commit it"
                  % (args.output,), file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
