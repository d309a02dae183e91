"""The checkpoint router (experimental). Registered before the container router
so that DELETE /containers/{name}/checkpoints/{checkpoint} is not taken by
DELETE /containers/{name:.*}. Not served yet."""

from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/containers/{name:.*}/checkpoints", None, experimental=True),
    route("POST", "/containers/{name:.*}/checkpoints", None, experimental=True),
    route("DELETE", "/containers/{name}/checkpoints/{checkpoint}", None, experimental=True),
)


class CheckpointRouter(Router):
    name = "checkpoint"
    routes = ROUTES

    def __init__(self, backend=None) -> None:
        self.backend = backend
