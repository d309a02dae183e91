"""
A fact read from the host in a thread, or the error reading it raised.

The builder must answer with the error it met first, as dockerd's createSpec
does while it reads; so a read that fails is kept, not raised, and raised
again where the builder uses it (L{result}).
"""

from typing import Any, Callable

from ...errors import DockerError


def attempt(read: Callable[..., Any], *args: Any) -> Any:
    """C{read(*args)}, or the L{DockerError} it raised."""
    try:
        return read(*args)
    except DockerError as e:
        return e


def result(outcome: Any) -> Any:
    """The value of an L{attempt}; its error raised."""
    if isinstance(outcome, DockerError):
        raise outcome
    return outcome
