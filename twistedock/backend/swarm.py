"""
The cluster backend of a node that is not part of a swarm.  twistedock has
no swarm mode: it answers every cluster request as dockerd answers them
before C{docker swarm init}, and refuses to create or join a swarm.
"""

from zope.interface import implementer

from ..errors import NotImplementedYet, Unavailable
from ..routers.swarm import IClusterBackend

NOT_A_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or '
    '"docker swarm join" to connect this node to swarm and try again.'
)
NOT_IN_A_SWARM = "This node is not part of a swarm"


@implementer(IClusterBackend)
class InactiveCluster:
    async def init(self, request):
        raise NotImplementedYet("swarm mode is not implemented yet: this node cannot create a swarm")

    async def join(self, request):
        raise NotImplementedYet("swarm mode is not implemented yet: this node cannot join a swarm")

    async def leave(self, force):
        raise Unavailable(NOT_IN_A_SWARM)

    async def inspect(self):
        raise Unavailable(NOT_A_MANAGER)

    async def unlock_key(self):
        raise Unavailable(NOT_A_MANAGER)

    async def update(self, version, spec, flags):
        raise Unavailable(NOT_A_MANAGER)

    async def unlock(self, request):
        raise Unavailable(NOT_A_MANAGER)

    async def query(self, kind, ident, filters):
        raise Unavailable(NOT_A_MANAGER)

    async def create(self, kind, spec, options):
        raise Unavailable(NOT_A_MANAGER)

    async def update_object(self, kind, ident, version, spec, options):
        raise Unavailable(NOT_A_MANAGER)

    async def remove(self, kind, ident, options):
        raise Unavailable(NOT_A_MANAGER)

    async def logs(self, kind, ident, options):
        raise Unavailable(NOT_A_MANAGER)
