"""
Images from and to registries (the OCI distribution API v2), on Twisted
with treq: L{client} (endpoints, insecure registries, auth challenges and
tokens, requests), L{auth} (C{X-Registry-Auth}, C{WWW-Authenticate}),
L{manifest} (media types, platform selection), L{progress} (the JSON
progress lines the CLI draws bars from), L{errors} (dockerd's messages) and
L{pull} (L{pull.Puller}: manifest, concurrent verified downloads, layers
registered in the image store).
"""

from .client import RegistryService

__all__ = ["RegistryService"]
