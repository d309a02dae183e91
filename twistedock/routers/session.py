"""The session router: BuildKit's session over an h2c upgrade. Not served yet."""

from ..server.routing import route
from . import Router

ROUTES = (
    route("POST", "/session", None),
)


class SessionRouter(Router):
    name = "session"
    routes = ROUTES
