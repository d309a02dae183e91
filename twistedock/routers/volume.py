"""
The volume router: moby's volume routes over an L{IVolumeBackend} (the local
driver's volumes; twistedock has no swarm, hence no cluster volumes).
"""

from zope.interface import Interface

from ..errors import InvalidParameter, Unavailable
from ..server import godecode
from ..server.godecode import STRING, STRING_MAP, Struct
from ..server.httputils import APIRequest
from ..server.routing import route
from .. import versions
from . import Router

ROUTES = (
    route("GET", "/volumes", "get_volumes_list"),
    route("GET", "/volumes/{name:.*}", "get_volume_by_name"),
    route("POST", "/volumes/create", "post_volumes_create"),
    route("POST", "/volumes/prune", "post_volumes_prune", min_version="1.25"),
    route("PUT", "/volumes/{name:.*}", "put_volumes_update", min_version="1.42"),
    route("DELETE", "/volumes/{name:.*}", "delete_volumes"),
)

#: volume.CreateRequest (ClusterVolumeSpec is swarm's, ignored without one).
CREATE_REQUEST = Struct("volume.CreateOptions", {
    "Name": STRING, "Driver": STRING, "DriverOpts": STRING_MAP, "Labels": STRING_MAP,
})  # fmt: skip


class IVolumeBackend(Interface):
    """What the volume router calls: moby's volume service.  Every method
    is async."""

    def create(name, driver, driver_opts, labels):
        """The volume (API document) made, or the one of that name: a
        generated name (an anonymous volume) when C{name} is empty."""

    def get(name):
        """The volume's API document; NotFound "get NAME: no such volume"."""

    def list(filters):
        """(volumes, warnings) matching the filters (dangling, name, driver, label)."""

    def remove(name, force):
        """Remove an unused volume (Conflict when in use); C{force}: a
        missing one is no error."""

    def prune(filters):
        """Remove unused volumes: {"VolumesDeleted": [...], "SpaceReclaimed": n}.
        Anonymous ones only unless the filter C{all} is true."""


class VolumeRouter(Router):
    name = "volume"
    routes = ROUTES

    def __init__(self, backend=None) -> None:
        self.backend = backend

    async def get_volumes_list(self, req: APIRequest) -> None:
        volumes, warnings = await self.backend.list(req.filters())
        req.write_json({"Volumes": volumes, "Warnings": warnings})

    async def get_volume_by_name(self, req: APIRequest) -> None:
        req.write_json(await self.backend.get(req.vars["name"]))

    async def post_volumes_create(self, req: APIRequest) -> None:
        try:
            body = godecode.decode(req.json_body({}), CREATE_REQUEST) or {}
        except godecode.DecodeError as e:
            raise InvalidParameter("invalid JSON: " + e.message)
        volume = await self.backend.create(
            body.get("Name") or "",
            body.get("Driver") or "",
            body.get("DriverOpts") or None,
            body.get("Labels") or None,
        )
        req.write_json(volume, status=201)

    async def put_volumes_update(self, req: APIRequest) -> None:
        # Only cluster volumes can be updated, and there is no swarm.
        raise Unavailable("volume update only valid for cluster volumes, but swarm is unavailable")

    async def delete_volumes(self, req: APIRequest) -> None:
        await self.backend.remove(req.vars["name"], req.bool_query("force"))
        req.write_status(204)

    async def post_volumes_prune(self, req: APIRequest) -> None:
        filters = req.filters()
        if versions.less_than(req.version, "1.42"):
            # Before 1.42 a prune took every unused volume, named or not.
            filters.fields.setdefault("all", set()).add("true")
        req.write_json(await self.backend.prune(filters))

