"""A Twisted-native Engine API client on treq, for twistedock and dockerd.

    client = DockerClient.from_env(reactor)      # DOCKER_HOST, contexts, TLS
    cid = await client.containers.run("busybox", "echo hello")
    async for stream, data in await client.containers.logs(cid, follow=True):
        ...

Everything returns Deferreds or is async; streams are async iterators that
never time out and close their connection when closed or cancelled.  This
package imports nothing of the daemon's (backends, server, routers)."""

from .api import MAX_API_VERSION, DockerClient
from .errors import (
    APIError,
    BadRequest,
    Conflict,
    DaemonUnreachable,
    DockerClientError,
    Forbidden,
    HostError,
    NotFound,
    NotImplementedByDaemon,
    NotModified,
    ServerError,
    StreamError,
    StreamInterrupted,
    Unauthorized,
    Unavailable,
)
from .hosts import DockerHost, TLSConfig, host_from_environ, parse_host
from .streams import STDERR, STDOUT, BodyStream, Frames, JSONStream

__all__ = [
    "MAX_API_VERSION", "DockerClient", "APIError", "BadRequest", "Conflict", "DaemonUnreachable",
    "DockerClientError", "Forbidden", "HostError", "NotFound", "NotImplementedByDaemon", "NotModified",
    "ServerError", "StreamError", "StreamInterrupted", "Unauthorized", "Unavailable", "DockerHost", "TLSConfig", "host_from_environ",
    "parse_host", "STDERR", "STDOUT", "BodyStream", "Frames", "JSONStream",
]
