"""
The oracle of the routing tests: gorilla/mux's matching as twistedock did it
by hand before Klein (kept here, where it cannot drift from what it checks).

Every route of every router, in registration order, is one anchored regular
expression under the version prefix and one bare; the first whose method and
pattern match wins, as gorilla's first-match router.
"""

import re
from typing import Dict, Iterable, List, Optional, Pattern, Sequence, Tuple

import attr

from twistedock.server.routing import VERSION_PREFIX, Route

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*(?:\{[^{}]*\}[^{}]*)*))?\}")


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


@attr.s(frozen=True, auto_attribs=True)
class CompiledRoute:
    route: Route
    router: str
    pattern: Pattern

    def match(self, path: str) -> Optional[Dict[str, str]]:
        m = self.pattern.match(path)
        return None if m is None else m.groupdict()


def compile_routes(routers: Iterable) -> List[CompiledRoute]:
    """The routes of C{routers}, in order, each versioned then bare."""
    compiled: List[CompiledRoute] = []
    for router in routers:
        for route in router.routes:
            for template in (VERSION_PREFIX + route.path, route.path):
                compiled.append(CompiledRoute(route, router.name, compile_template(template)))
    return compiled


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
