"""
The containers the daemon knows, in memory, as moby's container store
(container/memory_store.go) and name index: made first and given to the
image store (which asks which containers use an image) and to the container
backend (which adds, renames and removes them).
"""

from typing import Dict, List, Tuple

from zope.interface import implementer

from ..images.store import IContainerStore
from .record import Container


@implementer(IContainerStore)
class ContainerStore:
    """Containers by full ID, and the ID each name belongs to (names with
    their leading slash, as dockerd keeps them)."""

    def __init__(self) -> None:
        self.by_id: Dict[str, Container] = {}
        self.names: Dict[str, str] = {}

    def image_users(self, image_id: str) -> List[Tuple[str, bool]]:
        return [(c.id, c.state.running) for c in self.by_id.values() if c.image_id == image_id]
