"""Deferred helpers shared by the backends."""

from typing import Any, Callable, Optional, Tuple, Type

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from .errors import DockerError
from .logs import Logger

log = Logger()


def shield(
    work: Deferred,
    on_abandon: Optional[Callable[[Any], Any]] = None,
    what: str = "work",
    expected: Tuple[Type[BaseException], ...] = (DockerError,),
) -> Deferred:
    """A Deferred for C{work}'s result whose cancellation leaves C{work}
    running to its end (a client that goes away must not leave a half-done
    copy, import or checkpoint).  A result nobody waits for any more goes to
    C{on_abandon}; a failure nobody waits for is logged (with its traceback
    unless it is one of the C{expected} errors)."""
    outer: Deferred = Deferred()

    def relay(result):
        if not outer.called:
            if isinstance(result, Failure):
                outer.errback(result)
            else:
                outer.callback(result)
        elif isinstance(result, Failure):
            if result.check(*expected):
                log.warn("{what} (its client gone) failed: {error}", what=what, error=result.getErrorMessage())
            else:
                log.failure("{what} (its client gone) failed", result, what=what)
        elif on_abandon is not None:
            try:
                on_abandon(result)
            except Exception:
                log.failure("cleaning up after {what}", what=what)
        return None

    work.addBoth(relay)
    return outer


def cancel_quietly(d: Deferred) -> None:
    """Cancel C{d}, which nobody may be waiting for any more (a client that
    left): its L{CancelledError} is expected, not an error to log when the
    Deferred is collected."""
    if d.called:
        return
    d.addErrback(_ignore_cancelled)
    d.cancel()


def _ignore_cancelled(failure):
    failure.trap(CancelledError)
    return None
