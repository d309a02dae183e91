"""
Route tables, and the path cleaning in front of them.

A route is one line of a router's table: method, gorilla/mux path template,
the name of the router's handler method (or None for a route twistedock does
not serve yet), whether it is experimental, and an optional minimum API
version.  Templates use moby's syntax: C{{name}} matches one path segment,
C{{name:REGEX}} matches REGEX (C{{name:.*}} may be empty or hold slashes);
L{twistedock.server.mux} makes werkzeug match them so.
"""

from typing import Optional

import attr

from .. import golang


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


def head(path: str) -> str:
    """The first segment of a path (C{""} for C{/})."""
    return path[1:].split("/", 1)[0]


def tail(path: str) -> str:
    """The last segment of a path (C{""} after a trailing slash)."""
    return path.rsplit("/", 1)[1]


def literal_head(template: str) -> Optional[str]:
    """The first segment every path a template matches has, or None when
    a variable is part of it."""
    first = head(template)
    return None if "{" in first else first


def literal_tail(template: str) -> Optional[str]:
    """The last segment every path a template matches has, or None."""
    last = tail(template)
    return None if "{" in last else last


#: What dockerd puts before every route: gorilla's /v{version:[0-9.]+}.
VERSION_PREFIX = "/v{version:[0-9.]+}"


def clean_path(p: str) -> str:
    """Go's path.Clean as gorilla/mux applies it, keeping a trailing slash."""
    if p.startswith("/") and "//" not in p and "/." not in p:
        # No empty, "." or ".." element: clean already (most requests).
        return p
    if p == "":
        return "/"
    if not p.startswith("/"):
        p = "/" + p
    cleaned = golang.clean(p)
    if p.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned
