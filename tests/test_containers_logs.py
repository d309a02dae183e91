"""
`docker logs` and attach's logs in process: the container backend reading a
log file in conmon's k8s-file format (written here, as conmon writes it)
with since, until, tail, timestamps and the stream choice.
"""

import os

import pytest

from twistedock.routers.container import ContainerAttachConfig, ContainerLogsOptions
from twistedock.streams import STDERR, STDOUT

from .fake_runtime import START, World, run

#: conmon's k8s-file lines: a second apart from START, a partial line joined
#: with its end, stderr between.
LOG = (
    b"2023-11-14T22:13:20.000000001+00:00 stdout F one\n"
    b"2023-11-14T22:13:21.000000000+00:00 stderr F oops\n"
    b"2023-11-14T22:13:22.000000000+00:00 stdout P tw\n"
    b"2023-11-14T22:13:22.500000000+00:00 stdout F o\n"
    b"2023-11-14T22:13:23.000000000+00:00 stdout F three\n"
    b"2023-11-14T22:13:24.000000000+00:00 stderr F last words\n"
)


class Writer:
    def __init__(self):
        self.written = []

    def write(self, stream, data):
        self.written.append((stream, data))


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    w.ident = w.create("web")
    with open(w.backend.get("web").log_path, "wb") as f:
        f.write(LOG)
    w.clock.advance(10)
    return w


def logs(world, **options):
    options.setdefault("stdout", True)
    options.setdefault("stderr", True)
    writer = Writer()
    run(world.backend.logs("web", ContainerLogsOptions(**options), writer))
    return writer.written


def test_everything(world):
    assert logs(world) == [
        (STDOUT, b"one\n"),
        (STDERR, b"oops\n"),
        (STDOUT, b"two\n"),
        (STDOUT, b"three\n"),
        (STDERR, b"last words\n"),
    ]


def test_one_stream(world):
    assert logs(world, stderr=False) == [(STDOUT, b"one\n"), (STDOUT, b"two\n"), (STDOUT, b"three\n")]
    assert logs(world, stdout=False) == [(STDERR, b"oops\n"), (STDERR, b"last words\n")]
    assert logs(world, stdout=False, stderr=False) == []


def test_tail(world):
    assert logs(world, tail="2") == [(STDOUT, b"three\n"), (STDERR, b"last words\n")]
    # The partial line counts once, from its first piece.
    assert logs(world, tail="3") == [(STDOUT, b"two\n"), (STDOUT, b"three\n"), (STDERR, b"last words\n")]
    assert logs(world, tail="0") == []
    assert len(logs(world, tail="all")) == 5
    assert len(logs(world, tail="100")) == 5
    # Not a number: everything, as dockerd.
    assert len(logs(world, tail="x")) == 5


def test_since_and_until(world):
    # Seconds since the epoch with an optional fraction, as the CLI sends them.
    assert logs(world, since="%d.5" % (START + 1)) == [
        (STDOUT, b"two\n"),
        (STDOUT, b"three\n"),
        (STDERR, b"last words\n"),
    ]
    assert logs(world, until="%d" % (START + 1)) == [(STDOUT, b"one\n"), (STDERR, b"oops\n")]
    assert logs(world, since="%d" % (START + 1), until="%d" % (START + 3)) == [
        (STDERR, b"oops\n"),
        (STDOUT, b"two\n"),
        (STDOUT, b"three\n"),
    ]
    # 0 means no bound.
    assert len(logs(world, since="0", until="0")) == 5


def test_timestamps(world):
    assert logs(world, timestamps=True, tail="3") == [
        (STDOUT, b"2023-11-14T22:13:22.000000000Z two\n"),
        (STDOUT, b"2023-11-14T22:13:23.000000000Z three\n"),
        (STDERR, b"2023-11-14T22:13:24.000000000Z last words\n"),
    ]
    assert logs(world, timestamps=True, stderr=False)[0] == (STDOUT, b"2023-11-14T22:13:20.000000001Z one\n")


def test_follow_of_a_stopped_container_ends_at_the_end(world):
    assert len(logs(world, follow=True)) == 5


def test_a_partial_line_at_the_end_is_given_as_it_is(world):
    with open(world.backend.get("web").log_path, "ab") as f:
        f.write(b"2023-11-14T22:13:25.000000000+00:00 stdout P no newline\n")
    assert logs(world)[-1] == (STDOUT, b"no newline")


def test_a_container_without_a_log_file(tmp_path):
    w = World(tmp_path)
    w.create("web")
    writer = Writer()
    run(w.backend.logs("web", ContainerLogsOptions(stdout=True, stderr=True), writer))
    assert writer.written == []


class Stream:
    """What attach writes to: the hijacked connection."""

    def __init__(self):
        from twisted.internet.defer import succeed

        self.written = []
        self.closed = succeed(None)
        self.framed = None
        self.close_calls = 0

    def write(self, stream, data):
        self.written.append((stream, data))

    def close(self):
        self.close_calls += 1


def test_attach_with_logs_and_no_stream_replays_the_log(world):
    stream = Stream()
    run(world.backend.attach(
        "web", ContainerAttachConfig(logs=True, stream=False, use_stdout=True, use_stderr=False), stream
    ))
    assert stream.written == [(STDOUT, b"one\n"), (STDOUT, b"two\n"), (STDOUT, b"three\n")]
    assert stream.framed is True and stream.close_calls == 1


def _entry_line(second: int, text: bytes) -> bytes:
    return b"2023-11-14T22:13:%02d.000000000+00:00 stdout F %s\n" % (second, text)


def test_rotated_files_read_first(world, tmp_path):
    """A rotated log (dockerd's json-file layout: PATH.2.gz, PATH.1, PATH)
    is read oldest first, whole and by tail; the tail reaches into the
    rotated files only as far as it needs."""
    import gzip

    from twistedock.backend.runtime import rotated_logs

    path = world.backend.get("web").log_path
    with gzip.open(path + ".2.gz", "wb") as f:
        f.write(_entry_line(1, b"oldest"))
    with open(path + ".1", "wb") as f:
        f.write(_entry_line(2, b"older") + _entry_line(3, b"old"))
    with open(path, "wb") as f:
        f.write(_entry_line(4, b"new"))
    open(path + ".x", "wb").close()  # not a rotated file
    assert rotated_logs(path) == [path + ".2.gz", path + ".1"]
    assert logs(world) == [(STDOUT, b"oldest\n"), (STDOUT, b"older\n"), (STDOUT, b"old\n"), (STDOUT, b"new\n")]
    assert logs(world, tail="2") == [(STDOUT, b"old\n"), (STDOUT, b"new\n")]
    assert logs(world, tail="1") == [(STDOUT, b"new\n")]
    assert len(logs(world, tail="10")) == 4


def test_rotate_and_compress_as_dockerd(tmp_path):
    """rotate_log moves PATH to PATH.1, shifting the older ones and dropping
    the one past max-file; compress_log gzips PATH.1 into PATH.1.gz; with
    one file the log is just removed (conmon starts an empty one)."""
    import gzip

    from twistedock.backend.runtime import compress_log, rotate_log, rotated_logs

    path = str(tmp_path / "c-json.log")

    def write(text):
        with open(path, "wb") as f:
            f.write(text)

    write(b"a")
    assert rotate_log(path, 3) == path + ".1"
    compress_log(path + ".1")
    write(b"b")
    assert rotate_log(path, 3) == path + ".1"
    write(b"c")
    assert rotated_logs(path) == [path + ".2.gz", path + ".1"]
    # While .1 is being compressed both are there for a moment: read once.
    open(path + ".1.gz", "wb").close()
    assert rotated_logs(path) == [path + ".2.gz", path + ".1"]
    os.unlink(path + ".1.gz")
    with gzip.open(path + ".2.gz") as f:
        assert f.read() == b"a"
    assert rotate_log(path, 3) == path + ".1"
    assert rotated_logs(path) == [path + ".2", path + ".1"]  # "a" dropped
    assert [open(p, "rb").read() for p in rotated_logs(path)] == [b"b", b"c"]
    write(b"d")
    assert rotate_log(path, 1) is None
    assert not (tmp_path / "c-json.log").exists()
