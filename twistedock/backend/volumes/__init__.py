"""Volumes of the local driver (L{store.VolumeStore}) and what containers
do with them (L{mounts}: mount points, copy-up)."""

from .store import VolumeStore

__all__ = ["VolumeStore"]
