"""
Route tables and path templates.

A route is one line of a router's table: method, gorilla/mux path template,
the name of the router's handler method (or None for a route twistedock does
not serve yet), whether it is experimental, and an optional minimum API
version.  Templates use moby's syntax: C{{name}} matches one path segment,
C{{name:REGEX}} matches REGEX (C{{name:.*}} may be empty or hold slashes).
"""

import re
from typing import Callable, Dict, Optional, Pattern, Sequence, Tuple

import attr

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*(?:\{[^{}]*\}[^{}]*)*))?\}")


@attr.s(frozen=True, auto_attribs=True)
class Route:
    method: str
    path: str
    handler: Optional[str]
    experimental: bool = False
    min_version: Optional[str] = None


def route(
    method: str,
    path: str,
    handler: Optional[str],
    *,
    experimental: bool = False,
    min_version: Optional[str] = None,
) -> Route:
    return Route(method, path, handler, experimental, min_version)


def compile_template(template: str) -> Pattern:
    """The anchored regular expression for a mux path template."""
    out = []
    pos = 0
    for match in _VARIABLE.finditer(template):
        out.append(re.escape(template[pos : match.start()]))
        name, pattern = match.group(1), match.group(2)
        out.append("(?P<%s>%s)" % (name, pattern if pattern is not None else "[^/]+"))
        pos = match.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "$", re.DOTALL)


#: What dockerd puts before every route: gorilla's /v{version:[0-9.]+}.
VERSION_PREFIX = "/v{version:[0-9.]+}"


@attr.s(frozen=True, auto_attribs=True)
class CompiledRoute:
    route: Route
    router: str
    pattern: Pattern
    handler: Callable

    def match(self, path: str) -> Optional[Dict[str, str]]:
        m = self.pattern.match(path)
        return None if m is None else m.groupdict()


def match_route(
    routes: Sequence[CompiledRoute], method: str, path: str
) -> Tuple[Optional[CompiledRoute], Dict[str, str]]:
    """The first route that matches C{method} and C{path}, and its variables.

    Routing misses and method mismatches are the same to dockerd: both are
    answered by the catch-all, so a miss is simply C{(None, {})}.
    """
    for compiled in routes:
        if compiled.route.method != method:
            continue
        found = compiled.match(path)
        if found is not None:
            return compiled, found
    return None, {}


def clean_path(p: str) -> str:
    """Go's path.Clean as gorilla/mux applies it, keeping a trailing slash."""
    if p == "":
        return "/"
    if not p.startswith("/"):
        p = "/" + p
    parts = []
    for segment in p.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    cleaned = "/" + "/".join(parts)
    if p.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned
