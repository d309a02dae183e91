"""
A container's log read and followed at the client's pace, as moby's
daemon/logs.go.
"""

from typing import Optional

from ...deferreds import cancel_quietly
from ...errors import InvalidParameter
from ...streams import STDERR, STDOUT
from ... import golang
from ...routers.container import ContainerLogsOptions
from ..runtime import LogChunks, LogFollower


class LogsMixin:
    """The logs part of L{ContainerBackend}."""

    async def logs(self, ref, options: ContainerLogsOptions, writer) -> None:
        """Stream the log at the client's pace: read a block, write it, wait
        until the client has taken it, read the next; then, with follow,
        what conmon appends until the run ends."""
        c = self.get(ref)
        since = _log_time(options.since)
        until = _log_time(options.until)
        tail = options.tail
        tail_n = None
        if tail not in ("", "all"):
            try:
                tail_n = max(int(tail), 0)
            except ValueError:
                tail_n = None
        streams = set()
        if options.stdout:
            streams.add("stdout")
        if options.stderr:
            streams.add("stderr")
        flow = getattr(writer, "flow", None)

        def emit(entry) -> None:
            ts, stream, data = entry
            if stream not in streams:
                return
            if since is not None and ts < since:
                return
            if until is not None and ts > until:
                return
            if options.timestamps:
                data = golang.rfc3339_nano_fixed(ts).encode() + b" " + data
            writer.write(STDOUT if stream == "stdout" else STDERR, data)

        follow = options.follow and (until is None or until > self.now())
        ended = self._next_exit(c) if follow and c.state.running else None
        chunks = None
        handed_over = None
        try:
            if tail_n is not None:
                reader = self.log_reader_factory(c.log_path)
                for entry in await reader.read(tail=tail_n):
                    emit(entry)
                offset = reader.position or 0
            else:
                chunks = LogChunks(c.log_path)
                while True:
                    entries, at_end = await self.run_in_thread(chunks.read)
                    for entry in entries:
                        emit(entry)
                    if at_end:
                        break
                    if flow is not None:
                        await flow.writable()
                        if flow.stopped:
                            return
                offset = chunks.offset
                if ended is None:
                    for entry in chunks.partial():
                        emit(entry)
                else:
                    # Followed on in the same file, even if rotated meanwhile.
                    handed_over = chunks.detach()
            if ended is None:
                return
            follower = LogFollower(self.reactor, c.log_path, emit, offset, since=since, until=until,
                                   file=handed_over)
            follower.start()
            pacing = (follower.pause, follower.resume)
            if flow is not None:
                flow.listeners.append(pacing)
                if flow.paused:
                    follower.pause()
            try:
                await ended
            finally:
                if flow is not None and pacing in flow.listeners:
                    flow.listeners.remove(pacing)
                follower.resume()
                await follower.stop()
        finally:
            if chunks is not None:
                chunks.close()
            if ended is not None:
                cancel_quietly(ended)


def _log_time(value) -> Optional[int]:
    if not value:
        return None
    seconds, _, fraction = str(value).partition(".")
    try:
        whole = int(seconds)
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
    except ValueError:
        raise InvalidParameter("invalid value for time: %s" % (value,))
    if whole == 0 and nanos == 0:
        return None
    return whole * 1_000_000_000 + nanos
