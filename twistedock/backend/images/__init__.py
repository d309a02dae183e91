"""
The image store, one concern a module: L{store} (L{ImageStore}: configs by
digest, references, import, commit, list, history, inventory), L{delete}
(rmi and prune), L{save} and L{load} (docker save and load), L{image} (the
values it returns and its records),
L{layers} (the content-addressed layer store), L{config} (image config
JSON as dockerd writes it), L{changes} (the Dockerfile instructions of
C{--change}) and L{shell} (their words).
"""

from .store import ImageStore

__all__ = ["ImageStore"]
