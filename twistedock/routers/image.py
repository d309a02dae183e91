"""The image router. Not served yet."""

from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/images/json", None),
    route("GET", "/images/search", None),
    route("GET", "/images/get", None),
    route("GET", "/images/{name:.*}/get", None),
    route("GET", "/images/{name:.*}/history", None),
    route("GET", "/images/{name:.*}/json", None),
    route("GET", "/images/{name:.*}/attestations", None, min_version="1.55"),
    route("POST", "/images/load", None),
    route("POST", "/images/create", None),
    route("POST", "/images/{name:.*}/push", None),
    route("POST", "/images/{name:.*}/tag", None),
    route("POST", "/images/prune", None, min_version="1.25"),
    route("DELETE", "/images/{name:.*}", None),
)


class ImageRouter(Router):
    name = "image"
    routes = ROUTES
