"""The Engine API's failures as exception classes, mapped from a status once
(L{error_for}), as the daemon's C{errors.status_for} maps them the other way."""

import json
from typing import Optional


class DockerClientError(Exception):
    """Anything this client raises about a daemon or its configuration."""


class APIError(DockerClientError):
    """The daemon answered a request with an error status: C{status} and the
    C{message} of its C{{"message": ...}} body (or its text)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message or "status %d" % (self.status,)


class NotModified(APIError):
    """304: the container was already in the state asked for."""


class BadRequest(APIError):
    """400: the request was invalid."""


class Unauthorized(APIError):
    """401."""


class Forbidden(APIError):
    """403."""


class NotFound(APIError):
    """404: no such container, image, exec, volume, network..."""


class Conflict(APIError):
    """409: a name in use, a container running or not running..."""


class ServerError(APIError):
    """500."""


class NotImplementedByDaemon(APIError):
    """501: the daemon serves the route but not (yet) what it does."""


class Unavailable(APIError):
    """503."""


class StreamError(DockerClientError):
    """A progress stream (pull, push, build, load, import) reported an
    C{error} line; C{detail} is its C{errorDetail}."""

    def __init__(self, message: str, detail: Optional[dict] = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def __str__(self) -> str:
        return self.message


class StreamInterrupted(StreamError):
    """The connection was cut (the daemon gone, a reset) before an answer's
    end: a stream, a body or a hijacked session stops short.  C{reason} is
    what Twisted said."""

    def __init__(self, what: str, reason=None) -> None:
        super().__init__("the connection was cut in the middle of %s%s" % (
            what, " (%s)" % (_describe(reason),) if reason is not None else ""))
        self.reason = reason


class DaemonUnreachable(DockerClientError):
    """No answer: the connection failed (refused, no socket, TLS refused)."""

    def __init__(self, host: str, reason: Exception) -> None:
        super().__init__(host, reason)
        self.host = host
        self.reason = reason

    def __str__(self) -> str:
        return "Cannot connect to the Docker daemon at %s (%s). Is the docker daemon running?" % (
            self.host, _describe(self.reason))


def _describe(reason) -> str:
    reason = getattr(reason, "value", reason)  # a Failure's exception
    reasons = getattr(reason, "reasons", None)
    if reasons:
        return "; ".join(str(r.value) or type(r.value).__name__ for r in reasons)
    return str(reason) or type(reason).__name__


class HostError(DockerClientError):
    """DOCKER_HOST, a context or the TLS files cannot be used."""


_CLASSES = {
    304: NotModified,
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    500: ServerError,
    501: NotImplementedByDaemon,
    503: Unavailable,
}


def message_of(body: bytes) -> str:
    """The C{message} of an error body, or its text (APIs before 1.24 and
    proxies answer plain text)."""
    try:
        document = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return document["message"]
    return body.decode("utf-8", "replace").strip()


def error_for(status: int, body: bytes) -> APIError:
    """The exception for an answer with C{status} and C{body}."""
    cls = _CLASSES.get(status, APIError)
    return cls(status, message_of(body))
