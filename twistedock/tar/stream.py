"""
A tar made in a thread and handed to a request chunk by chunk, at the
client's pace (L{TarStream}): bounded memory, and the thread stops when
the client goes away.
"""

import collections
import threading
from typing import Any, Callable, List, Optional

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.python.failure import Failure

from ..logs import Logger

log = Logger()

#: Stream chunks, and how many may wait for the client (bounded memory).
CHUNK = 64 * 1024
WINDOW = 4


class StreamStopped(Exception):
    """The reader went away: stop producing."""


def _in_thread(reactor, function: Callable[[], Any]) -> Deferred:
    """Run C{function} in a thread of its own (a stream may wait on a slow
    client for long: it must not hold one of the reactor pool's threads)."""
    d: Deferred = Deferred()

    def run() -> None:
        _name_thread(b"twistedock-tar")
        try:
            result = function()
        except BaseException:
            failure = Failure()
            reactor.callFromThread(d.errback, failure)
        else:
            reactor.callFromThread(d.callback, result)

    threading.Thread(target=run, name="twistedock-tar", daemon=True).start()
    return d


def _name_thread(name: bytes) -> None:
    """Name the OS thread (ps, top -H and /proc show it): the streams'
    threads are easy to tell apart from the pool's."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, name, 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass


class _Chunker:
    """Gathers small writes into chunks of C{size} bytes."""

    def __init__(self, put: Callable[[bytes], None], size: int) -> None:
        self._put = put
        self._size = size
        self._parts: List[bytes] = []
        self._length = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._parts.append(bytes(data))
        self._length += len(data)
        if self._length >= self._size:
            joined = b"".join(self._parts)
            self._parts, self._length = [], 0
            for start in range(0, len(joined), self._size):
                self._put(joined[start : start + self._size])

    def flush(self) -> None:
        if self._parts:
            joined = b"".join(self._parts)
            self._parts, self._length = [], 0
            self._put(joined)


class TarStream:
    """A tar made in a thread and written to a consumer (a request) at the
    pace of its L{Flow<twistedock.server.httputils.Flow>}: at most
    C{window} chunks wait for the client, and the thread blocks until the
    client has taken them.  When the client goes away (the flow stopped, or
    the handler's Deferred cancelled) the thread is told to stop and ends;
    C{cleanup} runs once the thread is over (or at L{close} if the stream
    never started)."""

    def __init__(
        self,
        reactor,
        produce: Callable[[Callable[[bytes], None]], None],
        cleanup: Optional[Callable[[], Any]] = None,
        chunk_size: int = CHUNK,
        window: int = WINDOW,
    ) -> None:
        self._reactor = reactor
        self._produce = produce
        self._cleanup = cleanup
        self._chunk_size = chunk_size
        self._cond = threading.Condition()
        self._credits = window
        self._stopped = False
        self._pending: collections.deque = collections.deque()
        self._paused = False
        self._consumer = None
        self._flushed: Optional[Deferred] = None
        self._started = False
        self._cleaned = False
        #: Chunks written to the consumer (for tests and logs).
        self.written = 0

    # -- the thread's side ---------------------------------------------------

    def _put(self, data: bytes) -> None:
        with self._cond:
            while self._credits <= 0 and not self._stopped:
                self._cond.wait()
            if self._stopped:
                raise StreamStopped()
            self._credits -= 1
        self._reactor.callFromThread(self._deliver, data)

    def _main(self) -> None:
        chunker = _Chunker(self._put, self._chunk_size)
        self._produce(chunker.write)
        chunker.flush()

    # -- the reactor's side ----------------------------------------------------

    def _deliver(self, data: bytes) -> None:
        if self._consumer is None:
            return
        self._pending.append(data)
        self._flush()

    def _flush(self) -> None:
        while self._pending and not self._paused and self._consumer is not None:
            data = self._pending.popleft()
            self._consumer.write(data)
            self.written += 1
            with self._cond:
                self._credits += 1
                self._cond.notify()
        if not self._pending and self._flushed is not None:
            d, self._flushed = self._flushed, None
            d.callback(None)

    def _pause(self) -> None:
        self._paused = True

    def _resume(self) -> None:
        self._paused = False
        self._flush()

    def stop(self) -> None:
        """Tell the thread to stop at its next chunk."""
        self._consumer = None
        self._pending.clear()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _clean(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        if self._cleanup is not None:
            try:
                result = self._cleanup()
                if isinstance(result, Deferred):
                    result.addErrback(lambda f: log.failure("cleaning up a tar stream", f))
            except Exception:
                log.failure("cleaning up a tar stream")

    def close(self) -> None:
        """Release what the stream holds if it never started."""
        if not self._started:
            self._started = True
            self._clean()

    def write_to(self, consumer, flow) -> Deferred:
        """Write the whole tar with C{consumer.write}, paced by C{flow} (the
        request's Flow: C{paused}, C{stopped}, C{listeners}); fires when it
        is all written."""
        return ensureDeferred(self._write_to(consumer, flow))

    async def _write_to(self, consumer, flow) -> None:
        if self._started:
            raise RuntimeError("a tar stream is written once")
        self._started = True
        self._consumer = consumer
        self._paused = bool(flow.paused)

        def resumed() -> None:
            if flow.stopped:
                self.stop()
            else:
                self._resume()

        listener = (self._pause, resumed)
        flow.listeners.append(listener)
        outcome: Deferred = Deferred()

        def over(result):
            self._clean()
            if not outcome.called:
                if isinstance(result, Failure):
                    outcome.errback(result)
                else:
                    outcome.callback(result)
            return None

        try:
            if flow.stopped:
                raise CancelledError()
            _in_thread(self._reactor, self._main).addBoth(over)
        except BaseException:
            self._clean()
            if listener in flow.listeners:
                flow.listeners.remove(listener)
            raise
        try:
            try:
                await outcome
            except StreamStopped:
                raise CancelledError()
            if self._pending:
                self._flushed = Deferred()
                await self._flushed
        except CancelledError:
            raise
        except Exception:
            # The status is sent: cut the connection, so that the client
            # sees a broken stream rather than a short tar.
            _abort(consumer)
            raise
        finally:
            self.stop()
            self._flushed = None
            if listener in flow.listeners:
                flow.listeners.remove(listener)


def _abort(consumer) -> None:
    channel = getattr(consumer, "channel", None)
    transport = getattr(channel, "transport", None) if channel is not None else None
    if transport is None:
        transport = getattr(consumer, "transport", None)
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        try:
            abort()
        except Exception:
            pass
