"""
Container logs as conmon writes them, in the C{k8s-file} format: one line
per piece of output, C{2026-11-30T10:34:29.369866874+00:00 stdout F text},
C{F} for a full line, C{P} for a piece without its newline yet (continued
by the next line of the same stream).  Read in threads, followed through
inotify.  Rotated as dockerd's json-file driver rotates its files
(L{rotate_log}): C{PATH.1} the newest of the older files, C{PATH.N.gz} when
compressed; reading from the start reads them first, oldest first.
"""

import calendar
import gzip
import os
import re
import shutil
from typing import Callable, Dict, List, Optional, Tuple, Union

from twisted.internet import inotify
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.filepath import FilePath

from ...logs import Logger

log = Logger()

_TIMESTAMP = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):?(\d\d))$"
)


def parse_timestamp(text: Union[bytes, str]) -> int:
    """An RFC 3339 timestamp (with nanoseconds) as nanoseconds since the epoch."""
    if isinstance(text, str):
        text = text.encode()
    match = _TIMESTAMP.match(text)
    if match is None:
        raise ValueError("not a timestamp: %r" % (text,))
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if not match.group(8) and match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == b"+" else -offset
    fraction = match.group(7) or b""
    return seconds * 1_000_000_000 + int((fraction + b"000000000")[:9])


class LogEntry(tuple):
    """One log entry: C{(timestamp_ns, stream, data)}, C{stream} being
    C{"stdout"} or C{"stderr"} and C{data} ending with a newline unless the
    container never wrote one.  C{offset} is where the log file goes on
    after the entry."""

    def __new__(cls, timestamp: int, stream: str, data: bytes, offset: int = 0) -> "LogEntry":
        self = tuple.__new__(cls, (timestamp, stream, data))
        self.offset = offset
        return self

    @property
    def timestamp(self) -> int:
        return self[0]

    @property
    def stream(self) -> str:
        return self[1]

    @property
    def data(self) -> bytes:
        return self[2]


def parse_line(line: bytes) -> Optional[Tuple[int, str, bool, bytes]]:
    """One k8s-file line (without its newline): (timestamp, stream, partial,
    text), or None for a line that is not one."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        timestamp = parse_timestamp(parts[0])
    except ValueError:
        return None
    tags = parts[2].split(b":")
    text = parts[3] if len(parts) > 3 else b""
    return timestamp, parts[1].decode("ascii", "replace"), b"P" in tags, text


class _Assembler:
    """Lines in, entries out: pieces of a partial line are joined with the
    rest of the line (the next pieces of the same stream)."""

    def __init__(self) -> None:
        self.pending: Dict[str, Tuple[int, List[bytes]]] = {}

    def feed(self, line: bytes, end: int) -> Optional[LogEntry]:
        parsed = parse_line(line)
        if parsed is None:
            return None
        timestamp, stream, partial, text = parsed
        if partial:
            first, pieces = self.pending.setdefault(stream, (timestamp, []))
            pieces.append(text)
            return None
        if stream in self.pending:
            first, pieces = self.pending.pop(stream)
            return LogEntry(first, stream, b"".join(pieces) + text + b"\n", end)
        return LogEntry(timestamp, stream, text + b"\n", end)

    def flush(self, end: int) -> List[LogEntry]:
        """The partial lines still waiting, as they are, oldest first."""
        entries = [LogEntry(first, stream, b"".join(pieces), end) for stream, (first, pieces) in self.pending.items()]
        self.pending.clear()
        return sorted(entries, key=lambda e: e.timestamp)


_READ_BLOCK = 256 * 1024


def rotated_logs(path: str) -> List[str]:
    """The rotated files of the log at C{path}, oldest first: C{PATH.N} or
    C{PATH.N.gz}, N from the highest down to 1."""
    directory, name = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    numbered = []
    for other in names:
        if not other.startswith(name + "."):
            continue
        suffix = other[len(name) + 1 :]
        number = suffix[:-3] if suffix.endswith(".gz") else suffix
        if number.isdigit():
            numbered.append((int(number), other.endswith(".gz"), other))
    # (Both PATH.N and PATH.N.gz for a moment while it is compressed: one.)
    chosen = {}
    for number, compressed, other in sorted(numbered, reverse=True):
        chosen[number] = other
    return [os.path.join(directory, chosen[number]) for number in sorted(chosen, reverse=True)]


def _read_whole(path: str) -> bytes:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, OSError, EOFError):
        # (rotated away meanwhile, or a compression not finished)
        return b""


def _parse_all(data: bytes) -> List[LogEntry]:
    assembler = _Assembler()
    entries = []
    for line in data.split(b"\n")[:-1]:
        entry = assembler.feed(line, 0)
        if entry is not None:
            entries.append(entry)
    return entries + assembler.flush(0)


def rotate_log(path: str, max_files: int) -> Optional[str]:
    """Move the log aside as dockerd's rotate does (run it in a thread):
    with one file the log is removed (conmon, told to reopen, starts an
    empty one); else C{PATH.1} becomes C{PATH.2} and so on (the oldest
    dropped) and the log becomes C{PATH.1}, whose path is returned."""
    if max_files < 2:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return None
    for suffix in ("", ".gz"):
        try:
            os.unlink("%s.%d%s" % (path, max_files - 1, suffix))
        except FileNotFoundError:
            pass
    for i in range(max_files - 1, 1, -1):
        for suffix in ("", ".gz"):
            try:
                os.rename("%s.%d%s" % (path, i - 1, suffix), "%s.%d%s" % (path, i, suffix))
            except FileNotFoundError:
                pass
    try:
        os.rename(path, path + ".1")
    except FileNotFoundError:
        return None
    return path + ".1"


def compress_log(path: str) -> None:
    """C{PATH} gzipped into C{PATH.gz} (run it in a thread, once conmon
    writes elsewhere): written beside, renamed in, the original removed.
    A container removed meanwhile (its directory gone) ends it quietly."""
    tmp = path + ".gz.tmp"
    try:
        with open(path, "rb") as source, gzip.open(tmp, "wb") as target:
            os.chmod(tmp, os.fstat(source.fileno()).st_mode & 0o777)
            shutil.copyfileobj(source, target, _READ_BLOCK)
        os.rename(tmp, path + ".gz")
        os.unlink(path)
    except FileNotFoundError:
        return


def _line_is_partial(line: bytes) -> bool:
    parts = line.split(b" ", 3)
    return len(parts) >= 3 and b"P" in parts[2].split(b":")


def _tail_start(f, end: int, count: int) -> int:
    """Where the last C{count} entries of the log begin, the log being read
    up to C{end} (just after a newline).  Going back from the end, C{count}
    full lines are taken, then the partial pieces before the earliest of
    them.  (A piece of the other stream interleaved just there is missed.)"""
    full = 0
    position = end  # the file offset of buffer's first byte
    buffer = b""  # bytes [position, lines_start), ending with a newline
    lines_start = end  # where the earliest line taken so far begins
    while True:
        while buffer:
            cut = buffer.rfind(b"\n", 0, len(buffer) - 1)
            if cut < 0 and position > 0:
                break  # this line begins in a block not read yet
            line = buffer[cut + 1 : -1]
            partial = _line_is_partial(line)
            if full >= count and not partial:
                return lines_start
            if not partial:
                full += 1
            lines_start = position + cut + 1
            buffer = buffer[: cut + 1]
        if position == 0:
            return lines_start
        size = min(_READ_BLOCK, position)
        position -= size
        f.seek(position)
        buffer = f.read(size) + buffer


def _whole_lines_end(f, size: int) -> int:
    """The offset just after the last newline of the file (its first C{size}
    bytes): conmon may be writing the line after it right now."""
    position = size
    while position > 0:
        block = min(_READ_BLOCK, position)
        position -= block
        f.seek(position)
        cut = f.read(block).rfind(b"\n")
        if cut >= 0:
            return position + cut + 1
    return 0


def _read_log(path: str, since: Optional[int], until: Optional[int], tail: Optional[int]) -> Tuple[List[LogEntry], int]:
    entries, end = _read_current(path, since, until, tail)
    if tail is not None and len(entries) >= tail:
        return entries, end
    # The rotated files, newest first, until the tail is full.
    older: List[LogEntry] = []
    for rotated in reversed(rotated_logs(path)):
        found = _parse_all(_read_whole(rotated))
        if since is not None:
            found = [e for e in found if e.timestamp >= since]
        if until is not None:
            found = [e for e in found if e.timestamp <= until]
        older = found + older
        if tail is not None and len(older) + len(entries) >= tail:
            break
    if tail is not None:
        older = older[max(0, len(older) + len(entries) - tail) :]
    return older + entries, end


def _read_current(path: str, since: Optional[int], until: Optional[int], tail: Optional[int]) -> Tuple[List[LogEntry], int]:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return [], 0
    with f:
        end = _whole_lines_end(f, os.fstat(f.fileno()).st_size)
        if tail is not None and tail <= 0:
            return [], end
        start = _tail_start(f, end, tail) if tail is not None else 0
        f.seek(start)
        assembler = _Assembler()
        entries: List[LogEntry] = []
        position = start
        remainder = b""
        while position < end:
            chunk = f.read(min(_READ_BLOCK, end - position))
            if not chunk:
                break
            position += len(chunk)
            data = remainder + chunk
            lines = data.split(b"\n")
            remainder = lines.pop()
            cursor = position - len(data)
            for line in lines:
                cursor += len(line) + 1
                entry = assembler.feed(line, cursor)
                if entry is not None:
                    entries.append(entry)
        entries.extend(assembler.flush(end))
    if tail is not None:
        entries = entries[-tail:]
    if since is not None:
        entries = [e for e in entries if e.timestamp >= since]
    if until is not None:
        entries = [e for e in entries if e.timestamp <= until]
    return entries, end


class LogChunks:
    """A log read piece by piece from an offset, for streaming it at the
    client's pace: each L{read} (run it in a thread) returns the entries of
    the next block and whether the end of the complete lines was reached.

    The current file is opened first and kept open, so that a rotation
    meanwhile changes nothing: read from its start, the rotated files that
    were there when it was opened come first; L{detach} hands the open
    file over to a L{LogFollower}, which goes on where this stopped."""

    def __init__(self, path: str, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._assembler = _Assembler()
        self._remainder = b""
        self._file = None
        #: The rotated files not read yet (None: not listed yet); read
        #: first when the log is read from its start.
        self._older: Optional[List[str]] = None if offset == 0 else []

    def _current(self):
        if self._file is None:
            try:
                self._file = open(self.path, "rb")
            except FileNotFoundError:
                return None
        return self._file

    def read(self, limit: int = _READ_BLOCK) -> Tuple[List[LogEntry], bool]:
        if self._older is None:
            f = self._current()
            held = os.fstat(f.fileno()) if f is not None else None
            self._older = [p for p in rotated_logs(self.path) if held is None or not _same_file(p, held)]
        if self._older:
            return _parse_all(_read_whole(self._older.pop(0))), False
        f = self._current()
        if f is None:
            return [], True
        end = _whole_lines_end(f, os.fstat(f.fileno()).st_size)
        start = self.offset + len(self._remainder)
        if start >= end:
            return [], True
        f.seek(start)
        chunk = f.read(min(limit, end - start))
        data = self._remainder + chunk
        lines = data.split(b"\n")
        self._remainder = lines.pop()
        entries = []
        for line in lines:
            self.offset += len(line) + 1
            entry = self._assembler.feed(line, self.offset)
            if entry is not None:
                entries.append(entry)
        return entries, start + len(chunk) >= end

    def partial(self) -> List[LogEntry]:
        """Partial lines held back at the end (the container has stopped)."""
        return self._assembler.flush(self.offset)

    def detach(self):
        """The open current file (None if there was none), no longer this
        reader's to close."""
        f, self._file = self._file, None
        return f

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _same_file(path: str, held: os.stat_result) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


class LogReader:
    """A container's C{k8s-file} log: read in a thread, followed through
    inotify."""

    def __init__(self, reactor, path: str) -> None:
        self.reactor = reactor
        self.path = path
        #: Where the last L{read} stopped (the end of its last whole line).
        self.position: Optional[int] = None

    def read(self, since: Optional[int] = None, until: Optional[int] = None, tail: Optional[int] = None) -> Deferred:
        """The entries (a list of L{LogEntry}): the last C{tail} ones (all
        when None), then those from C{since} to C{until} (nanoseconds)."""
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _read_log, self.path, since, until, tail)

        def done(result):
            entries, end = result
            self.position = end
            return entries

        return d.addCallback(done)

    def follow(
        self,
        callback: Callable[[LogEntry], None],
        start_after: Optional[LogEntry] = None,
        *,
        offset: Optional[int] = None,
        since: Optional[int] = None,
        until: Optional[int] = None,
    ) -> "LogFollower":
        """Deliver each new entry to C{callback} as conmon appends it, from
        C{offset}, else from where the last L{read} stopped, else after
        C{start_after}, else from the start.  Call C{stop()} on the result
        when the container stopped."""
        if offset is None:
            if self.position is not None:
                offset = self.position
            elif start_after is not None:
                offset = getattr(start_after, "offset", 0)
            else:
                offset = 0
        follower = LogFollower(self.reactor, self.path, callback, offset, since=since, until=until)
        follower.start()
        return follower


class LogFollower:
    """Reads what is appended to a log file when inotify says it grew."""

    MASK = inotify.IN_MODIFY | inotify.IN_CLOSE_WRITE | inotify.IN_CREATE | inotify.IN_MOVED_TO

    def __init__(
        self,
        reactor,
        path: str,
        callback: Callable[[LogEntry], None],
        offset: int = 0,
        *,
        since: Optional[int] = None,
        until: Optional[int] = None,
        file=None,
    ) -> None:
        """C{file}: the log already open (L{LogChunks.detach}), read from
        C{offset}; if the log was rotated since it was opened, its rest is
        read before the new file."""
        self.reactor = reactor
        self.path = os.path.abspath(path)
        self.callback = callback
        self.offset = offset
        self.since = since
        self.until = until
        #: Fires (with None) once following is over (L{stop}, L{cancel}, or
        #: an entry past C{until}).
        self.done: Deferred = Deferred()
        self._name = os.path.basename(self.path)
        self._file = None
        self._inode = None
        self._buffer = b""
        self._assembler = _Assembler()
        self._notifier: Optional[inotify.INotify] = None
        self._scheduled = None
        self._finished = False
        #: Whether the next read first checks for a rotation inotify could
        #: not tell (one before the watch began).
        self._check_rotation = False
        if file is not None:
            st = os.fstat(file.fileno())
            self._file, self._inode = file, (st.st_dev, st.st_ino)
            self._check_rotation = True

    def start(self) -> None:
        notifier = inotify.INotify(reactor=self.reactor)
        notifier.startReading()
        notifier.watch(FilePath(os.path.dirname(self.path)), mask=self.MASK, callbacks=[self._changed])
        self._notifier = notifier
        self._schedule()

    def _changed(self, _watch, path: FilePath, mask: int) -> None:
        name = path.basename()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "surrogateescape")
        if name != self._name or self._finished:
            return
        if mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO):
            self._read_available(reopen=True)
        self._schedule()

    _paused = False

    def pause(self) -> None:
        """The reader of the entries is behind: read no more until L{resume}."""
        self._paused = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None

    def resume(self) -> None:
        self._paused = False
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled is None and not self._finished and not self._paused:
            self._scheduled = self.reactor.callLater(0, self._run)

    def _run(self) -> None:
        self._scheduled = None
        if self._finished:
            return
        reopen, self._check_rotation = self._check_rotation, False
        if self._read_available(limit=_READ_BLOCK * 4, reopen=reopen):
            # More is there: let the reactor breathe, then go on.
            self._schedule()

    def _open(self) -> bool:
        if self._file is not None:
            return True
        try:
            self._file = open(self.path, "rb")
        except FileNotFoundError:
            return False
        st = os.fstat(self._file.fileno())
        self._inode = (st.st_dev, st.st_ino)
        if st.st_size < self.offset:
            self.offset = 0
        return True

    def _read_available(self, limit: Optional[int] = None, reopen: bool = False) -> bool:
        """Deliver what was appended; True if C{limit} stopped the read."""
        if reopen and self._file is not None:
            try:
                st = os.stat(self.path)
                same = (st.st_dev, st.st_ino) == self._inode
            except FileNotFoundError:
                same = True
            if not same:
                # Rotated: finish the old file, then start the new one.
                self._read_available()
                self._file.close()
                self._file = None
                self._buffer = b""
                self.offset = 0
        if not self._open():
            return False
        f = self._file
        if os.fstat(f.fileno()).st_size < self.offset + len(self._buffer):
            # Truncated under us.
            self.offset = 0
            self._buffer = b""
        f.seek(self.offset + len(self._buffer))
        read = 0
        while not self._finished:
            chunk = f.read(_READ_BLOCK)
            if not chunk:
                return False
            read += len(chunk)
            data = self._buffer + chunk
            lines = data.split(b"\n")
            self._buffer = lines.pop()
            for line in lines:
                self.offset += len(line) + 1
                entry = self._assembler.feed(line, self.offset)
                if entry is not None:
                    self._deliver(entry)
            if limit is not None and read >= limit:
                return True
        return False

    def _deliver(self, entry: LogEntry) -> None:
        if self._finished:
            return
        if self.since is not None and entry.timestamp < self.since:
            return
        if self.until is not None and entry.timestamp > self.until:
            self._finish()
            return
        try:
            self.callback(entry)
        except Exception:
            log.failure("log follower callback")

    def stop(self) -> Deferred:
        """The container stopped: deliver what is left (partial lines
        included), then end."""
        if not self._finished:
            self._read_available()
            for entry in self._assembler.flush(self.offset):
                self._deliver(entry)
            self._finish()
        return self.done

    def cancel(self) -> None:
        """End at once; what was not delivered yet is not."""
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self.done.callback(None)
