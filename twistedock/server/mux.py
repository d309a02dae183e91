"""
gorilla/mux's matching rules on werkzeug: the one module that knows werkzeug.

Each router's table becomes one werkzeug C{Map} (in a Klein app), and the
routers are tried one after the other in moby's registration order; one
merged Map would order rules by werkzeug's weights instead, so a checkpoint
route could lose to a container route.  Four things make a Map choose as mux
does:

 - C{{name:REGEX}} is REGEX over the rest of the path (L{TemplateConverter}
   is not part-isolating), so C{{name:.*}} spans slashes and may be empty;
   C{{name}} is one non-empty segment, werkzeug's default;
 - a GET rule implies no HEAD (werkzeug adds one to every GET rule);
 - strict slashes, slashes never merged, and werkzeug's redirect to the
   slashed path is a miss: cleaning the path is the root's job (a 301);
 - a 405 is a miss too: dockerd answers a wrong method with its catch-all.

werkzeug tries rules with a C{{name:.*}} variable one by one (a regular
expression each), and a router has a score of them; the root matches a
request in the bucket of the router's Map that holds only the rules that
can end as the path does (L{BucketedMap}), so a match tries a few.
"""

import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from klein import Klein
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, NoMatch, Rule, RoutingException

from .routing import Route

#: What werkzeug raises for a request no rule of a Map takes: not found,
#: method not allowed, the redirect of strict slashes.  All are misses.
ROUTING_MISSES = (HTTPException,)

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*(?:\{[^{}]*\}[^{}]*)*))?\}")


class TemplateConverter(BaseConverter):
    """C{{name:REGEX}}: the regular expression REGEX, slashes included."""

    part_isolating = False

    def __init__(self, map: Map, regex: str) -> None:
        super().__init__(map)
        self.regex = regex


def rule_text(template: str) -> str:
    """The werkzeug rule for a mux path template."""
    out = []
    pos = 0
    for match in _VARIABLE.finditer(template):
        out.append(template[pos : match.start()])
        name, regex = match.group(1), match.group(2)
        if regex is None:
            out.append("<%s>" % (name,))
        elif '"' in regex:
            raise ValueError("%s: a converter argument cannot hold a double quote" % (template,))
        else:
            out.append('<template("%s"):%s>' % (regex, name))
        pos = match.end()
    out.append(template[pos:])
    return "".join(out)


class TemplateMap(Map):
    """A Map with mux's rules: strict slashes, no merging, no redirects."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        super().__init__(
            rules,
            converters={"template": TemplateConverter},
            strict_slashes=True,
            merge_slashes=False,
            redirect_defaults=False,
        )


def last_literal(template: str) -> Optional[str]:
    """The last segment of every path C{template} matches (C{""} after a
    trailing slash), or None when a variable is part of it (a variable's
    regular expression may hold a slash: then a brace is after it)."""
    last = template.rsplit("/", 1)[1]
    return None if "{" in last or "}" in last else last


def copy(rule: Rule) -> Rule:
    """An unbound copy of C{rule}, its methods as they are (without the
    HEAD werkzeug would add again)."""
    methods = rule.methods
    rule = rule.empty()
    rule.methods = methods
    return rule


class BucketedMap:
    """A table's Map cut into small Maps, one per method and last literal
    segment, so a match tries a few rules instead of every C{.*} rule.

    The bucket for a method and last segment holds, in the table's order,
    that method's rules that end in that segment, in a variable (they may
    end in anything), or in a slash (strict slashes: werkzeug answers a
    redirect, a miss, for the path without it).  A rule outside the bucket
    can neither take a path with that last segment nor stop the search,
    so the bucket chooses what the whole Map chooses.

    A bucket is asked through its Map's matcher, what C{MapAdapter.match}
    asks after it has made the path, method and host ready and before it
    turns the matcher's exceptions into HTTP ones: a clean path is ready
    already, the host is not matched, and every exception is a miss; so
    no adapter is needed.

    A path that is the whole template of a rule without variables (C{/_ping},
    C{/containers/json}) is that rule's, the first such in the table: the
    matcher tries a state's literal transitions before its variables, so
    it walks that path's literals to the state that holds those rules and
    returns the first of them for the method.  Those rules are looked up
    by path (C{statics}) before the matcher is asked."""

    def __init__(self, routes: Sequence[Route], rules: Sequence[Rule]) -> None:
        by_method: Dict[str, List[Tuple[Optional[str], Rule]]] = {}
        for route, rule in zip(routes, rules):
            by_method.setdefault(route.method, []).append((last_literal(route.path), rule))
        self._buckets: Dict[str, Dict[Optional[str], Matcher]] = {}
        self.statics: Dict[str, Dict[str, Rule]] = {}
        for route, rule in zip(routes, rules):
            statics = self.statics.setdefault(route.method, {})
            if "{" not in route.path:
                statics.setdefault(route.path, rule)
        for method, tailed in by_method.items():
            lasts = {last for last, _ in tailed} | {None}
            self._buckets[method] = {
                last: _matcher(TemplateMap(copy(rule) for tail, rule in tailed if tail in (last, None, "")))
                for last in lasts
            }

    def match(self, method: str, path: str, last: str) -> Optional[Tuple[Rule, Dict[str, str]]]:
        """The rule that takes C{method} C{path} (clean, decoded, its last
        segment C{last}) and its variables, or None."""
        buckets = self._buckets.get(method)
        if buckets is None:
            return None
        rule = self.statics[method].get(path)
        if rule is not None:
            return rule, {}
        match = buckets.get(last) or buckets[None]
        try:
            # No host (not host matching: the subdomain, ""), not a websocket.
            return match("", path, method, False)
        except MATCHER_MISSES:
            return None


#: The matcher of a Map: (host, path, method, websocket) -> (rule, variables).
Matcher = Callable[[str, str, str, bool], Tuple[Rule, Dict[str, str]]]

#: What a Map's matcher raises for a miss: nothing matches (or another
#: method would), strict slashes' redirect.
MATCHER_MISSES = (NoMatch, RoutingException)


def _matcher(map: TemplateMap) -> Matcher:
    """C{map}'s matcher, its rules sorted (what C{MapAdapter.match} makes
    sure of on every call)."""
    map.update()
    return map._matcher.match


class _RuleCollector:
    """Takes the rules Klein's C{route} makes, as Klein's C{subroute} does."""

    def __init__(self) -> None:
        self.rules: List[Rule] = []

    def add(self, rule: Rule) -> None:
        self.rules.append(rule)


#: Route table -> its Map and buckets: werkzeug compiles a URL builder for
#: every rule, which costs milliseconds; they serve every app of that table.
_MAPS: Dict[Tuple[Route, ...], Tuple[TemplateMap, BucketedMap]] = {}


def endpoint_name(route: Route) -> str:
    return "%s %s" % (route.method, route.path)


class MuxApp(Klein):
    """A Klein app serving a route table, matching as gorilla/mux does:
    C{handler_for(route)} serves C{route} (it is called with the request
    and the route's variables).

    C{handlers} maps an endpoint to that function: what the app's
    C{execute_endpoint} calls, less Klein's two frames around it (the root
    calls it on every request; the function returns no coroutine, so
    Klein's wrapping would add nothing)."""

    def __init__(self, routes: Sequence[Route], handler_for: Callable[[Route], Callable]) -> None:
        super().__init__()
        routes = tuple(routes)
        self._url_map = collector = _RuleCollector()
        self.handlers: Dict[str, Callable] = {}
        for route in routes:
            name = endpoint_name(route)
            self.handlers[name] = served = handler_for(route)
            self.route(rule_text(route.path), methods=[route.method], endpoint=name)(served)
        if routes not in _MAPS:
            for route, rule in zip(routes, collector.rules):
                # werkzeug adds HEAD to a GET rule: then HEAD /info would
                # answer, and GET /_ping would take HEAD /_ping's requests.
                rule.methods = {route.method}
            _MAPS[routes] = (TemplateMap(collector.rules), BucketedMap(routes, collector.rules))
        self._url_map, self.buckets = _MAPS[routes]


class RouteMap:
    """A router's Map as the root asks it: one match per request and
    router, in the bucket of the app's Map that the method and last
    segment choose."""

    def __init__(self, app: MuxApp) -> None:
        self._buckets = app.buckets

    def match(self, method: str, path: str, last: Optional[str] = None) -> Optional[Tuple[str, Dict[str, str]]]:
        """The endpoint and variables of the route that takes C{method}
        C{path} (a clean, decoded path; C{last}, its last segment, if known),
        or None.  The method is compared as it is, as mux does."""
        if last is None:
            last = path[path.rfind("/") + 1 :]
        found = self._buckets.match(method, path, last)
        if found is None:
            return None
        return found[0].endpoint, found[1]
