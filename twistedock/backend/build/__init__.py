"""
The classic builder (dockerd's builder/dockerfile, the one `DOCKER_BUILDKIT=0
docker build` talks to): a tar context, its Dockerfile parsed with
dockerfile-parse, each step an image, RUN steps in real containers of the
container backend, and the classic builder's cache among image children.
"""

from .builder import Builder, BuildOptions

__all__ = ["Builder", "BuildOptions"]
