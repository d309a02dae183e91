"""
Typed errors, as moby's errdefs: a backend raises the class that says what
went wrong and the server layer alone turns the class into a status code.
"""


class DockerError(Exception):
    """Base class: an error with a message meant for the API client."""

    status = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(DockerError):
    status = 404


class InvalidParameter(DockerError):
    status = 400


class Conflict(DockerError):
    status = 409


class Unauthorized(DockerError):
    status = 401


class Forbidden(DockerError):
    status = 403


class NotModified(DockerError):
    """304: the request changed nothing (start of a running container)."""

    status = 304


class Unavailable(DockerError):
    status = 503


class NotImplementedYet(DockerError):
    """501: a route or feature twistedock does not serve (yet)."""

    status = 501


class InternalError(DockerError):
    """500: the daemon failed, not the client (errdefs' System class)."""

    status = 500


def status_for(error: BaseException) -> int:
    """The HTTP status dockerd would answer for C{error}."""
    if isinstance(error, DockerError):
        return error.status
    return 500
