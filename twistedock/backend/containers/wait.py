"""Wait for a container's exit or removal, as moby's daemon/wait.go."""

from twisted.internet.defer import Deferred, succeed


class WaitMixin:
    """The wait part of L{ContainerBackend}."""

    def wait(self, ref, condition) -> Deferred:
        c = self.get(ref)
        if condition == "not-running" and not c.state.running:
            return succeed({"StatusCode": c.state.exit_code, "Error": None})
        table = self._removed_waiters if condition == "removed" else self._exit_waiters
        return self._waiter(table, c)
