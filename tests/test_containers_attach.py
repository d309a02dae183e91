"""
Attach, resize and top in process, over a fake runtime: a client joined to
a running container's stdio through (a fake of) conmon's attach socket, a
client that attached before the start joined when the run begins, detach
keys, and what is refused.
"""

import attr
import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from twistedock.errors import Conflict, InvalidParameter
from twistedock.routers.container import ContainerAttachConfig

from twistedock.streams import STDERR, STDOUT

from .fake_runtime import World, failure_of, run


class Stream:
    """The hijacked client connection, as attach uses it."""

    def __init__(self):
        self.written = []
        self.closed = Deferred()
        self.framed = None
        self.input = None

    def write(self, stream, data):
        self.written.append((stream, data))

    def add_source(self, pause, resume):
        pass

    def read_input(self, data, ended):
        self.input = (data, ended)

    def close(self):
        if not self.closed.called:
            self.closed.callback(None)


OPTIONS = ContainerAttachConfig(stream=True, use_stdin=True, use_stdout=True, use_stderr=False, logs=False)


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_attach_to_a_running_container(world):
    ident = world.started("web", OpenStdin=True)
    stream = Stream()
    d = ensureDeferred(world.backend.attach("web", OPTIONS, stream))
    c = world.backend.get("web")
    assert world.runtime.called("attach") == [(world.backend.attach_socket(c),)]
    assert stream.framed is True
    (attachment,) = world.backend._runs[ident].attached
    connection = attachment.connection
    # Output as asked: stdout only.
    connection.output(STDOUT, b"out\n")
    connection.output(STDERR, b"err\n")
    assert stream.written == [(STDOUT, b"out\n")]
    # Typed input goes to the container; the detach keys end the client.
    feed = stream.input[0]
    feed(b"ls\n")
    assert connection.written == [b"ls\n"]
    feed(b"\x10")
    feed(b"\x11")
    assert stream.closed.called and d.called and connection.closed
    # The container goes on.
    assert world.state("web")["Running"]


def test_a_client_attached_before_the_start_is_joined_by_it(world):
    ident = world.create("web", Tty=True)
    stream = Stream()
    d = ensureDeferred(world.backend.attach("web", attr.evolve(OPTIONS, use_stdin=False), stream))
    assert world.runtime.called("attach") == [] and not d.called
    assert stream.framed is False
    run(world.backend.start("web"))
    assert len(world.runtime.called("attach")) == 1
    (attachment,) = world.backend._runs[ident].attached
    # The run's end ends the attachment.
    world.runtime.exit(ident, 0)
    assert attachment.done.called
    stream.close()
    assert d.called


def test_what_attach_and_resize_refuse(world):
    ident = world.started("web", Tty=True)
    error = failure_of(_check(world, ContainerAttachConfig(detach_keys="ctrl-1")))
    assert isinstance(error, InvalidParameter) and str(error) == "Invalid detach keys (ctrl-1) provided"
    run(world.backend.resize("web", 24, 80))
    c = world.backend.get("web")
    assert world.runtime.called("resize") == [(world.backend.bundle(c), 24, 80)]
    run(world.backend.pause("web"))
    error = failure_of(_check(world, ContainerAttachConfig()))
    assert isinstance(error, Conflict)
    assert str(error) == "container %s is paused, unpause the container before attach" % (ident,)
    run(world.backend.unpause("web"))
    world.backend.get("web").host_config["RestartPolicy"] = {"Name": "always", "MaximumRetryCount": 0}
    world.runtime.exit(ident, 1)
    error = failure_of(_check(world, ContainerAttachConfig()))
    assert str(error) == "container is restarting, wait until the container is running"
    run(world.backend.stop("web", None, 1))
    error = failure_of(world.backend.resize("web", 24, 80))
    assert isinstance(error, Conflict) and str(error) == "Container %s is not running" % (ident,)
    assert world.backend.tty("web") is True


def test_top_of_a_container_that_does_not_run(world):
    ident = world.create("web")
    error = failure_of(world.backend.top("web", "-ef"))
    assert isinstance(error, Conflict) and str(error) == "Container %s is not running" % (ident,)


async def _check(world, options):
    world.backend.check_attach("web", options)
