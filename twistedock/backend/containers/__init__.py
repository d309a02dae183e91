"""
The container backend, one module per verb or concern as moby's daemon:
L{record} (a container's record and state), L{create}, L{start},
L{monitor} (exits and restart policies), L{stop} (stop, kill, restart),
L{pause}, L{wait}, L{delete}, L{rename}, L{update}, L{top}, L{inspect},
L{list}, L{prune}, L{usage}, L{logs}, L{attach}, L{restore} (recovery at
start-up), L{store} (the containers in memory, shared with the image store),
and L{backend}, the L{ContainerBackend} that joins them.
"""

from .backend import ContainerBackend
from .defaults import CHECKPOINTED_MARK
from .monitor import Run
from .record import Container, State
from .store import ContainerStore

__all__ = ["CHECKPOINTED_MARK", "Container", "ContainerBackend", "ContainerStore", "Run", "State"]
