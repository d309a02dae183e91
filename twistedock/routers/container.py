"""The container router: lifecycle, streams, archives and exec. Not served yet."""

from ..server.routing import route
from . import Router

ROUTES = (
    route("HEAD", "/containers/{name:.*}/archive", None),
    route("GET", "/containers/json", None),
    route("GET", "/containers/{name:.*}/export", None),
    route("GET", "/containers/{name:.*}/changes", None),
    route("GET", "/containers/{name:.*}/json", None),
    route("GET", "/containers/{name:.*}/top", None),
    route("GET", "/containers/{name:.*}/logs", None),
    route("GET", "/containers/{name:.*}/stats", None),
    route("GET", "/containers/{name:.*}/attach/ws", None),
    route("GET", "/exec/{id:.*}/json", None),
    route("GET", "/containers/{name:.*}/archive", None),
    route("POST", "/containers/create", None),
    route("POST", "/containers/{name:.*}/kill", None),
    route("POST", "/containers/{name:.*}/pause", None),
    route("POST", "/containers/{name:.*}/unpause", None),
    route("POST", "/containers/{name:.*}/restart", None),
    route("POST", "/containers/{name:.*}/start", None),
    route("POST", "/containers/{name:.*}/stop", None),
    route("POST", "/containers/{name:.*}/wait", None),
    route("POST", "/containers/{name:.*}/resize", None),
    route("POST", "/containers/{name:.*}/attach", None),
    route("POST", "/containers/{name:.*}/exec", None),
    route("POST", "/exec/{name:.*}/start", None),
    route("POST", "/exec/{name:.*}/resize", None),
    route("POST", "/containers/{name:.*}/rename", None),
    route("POST", "/containers/{name:.*}/update", None),
    route("POST", "/containers/prune", None, min_version="1.25"),
    route("POST", "/commit", None),
    route("PUT", "/containers/{name:.*}/archive", None),
    route("DELETE", "/containers/{name:.*}", None),
)


class ContainerRouter(Router):
    name = "container"
    routes = ROUTES
