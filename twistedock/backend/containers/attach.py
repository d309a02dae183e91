"""
Attach: hijacked clients joined to a container's stdio through conmon's
attach socket, as moby's daemon/attach.go; and its terminal resized.
"""

from twisted.internet.defer import Deferred

from ...errors import Conflict
from ...logs import Logger
from ...routers.container import ContainerAttachConfig
from ...streams import STDERR, STDOUT
from ..detachkeys import DEFAULT_DETACH_KEYS, EscapeKeys, parse_detach_keys
from .record import Container

log = Logger()


class Attachment:
    """A hijacked client joined to a container's stdio through conmon."""

    def __init__(self, backend, container: Container, config: ContainerAttachConfig, stream) -> None:
        self.backend = backend
        self.container = container
        self.config = config
        self.stream = stream
        self.connection = None
        self.done = Deferred()
        self.escape = EscapeKeys(parse_detach_keys(config.detach_keys or DEFAULT_DETACH_KEYS))

    def output(self, stream_id: int, data: bytes) -> None:
        if stream_id == STDOUT and not self.config.use_stdout:
            return
        if stream_id == STDERR and not self.config.use_stderr:
            return
        self.stream.write(stream_id, data)

    async def connect(self) -> None:
        c = self.container
        self.connection = await self.backend.runtime.attach(
            self.backend.attach_socket(c), self.output, self._ended
        )
        transport = self.connection.transport
        if transport is not None:
            self.stream.add_source(transport.pauseProducing, transport.resumeProducing)
        if self.config.use_stdin and c.config.get("OpenStdin"):
            self.stream.read_input(self._input, self._stdin_ended)
        self.stream.closed.addCallback(lambda _: self.connection.close())

    def _input(self, data: bytes) -> None:
        passed, detach = self.escape.feed(data)
        if passed:
            self.connection.write(passed)
        if detach:
            # The client leaves; the container goes on (stdin stays open).
            log.info("attach to {id}: detach keys read", id=self.container.short_id)
            self.stream.close()

    def _stdin_ended(self) -> None:
        if _closes_stdin(self.container) and self.connection is not None:
            self.connection.close_stdin()

    def _ended(self) -> None:
        self.stream.close()
        if not self.done.called:
            self.done.callback(None)


class AttachMixin:
    """The attach part of L{ContainerBackend}."""

    def tty(self, ref) -> bool:
        return self.get(ref).tty

    def check_attach(self, ref, config: ContainerAttachConfig) -> None:
        c = self.get(ref)
        if c.state.paused:
            raise Conflict("container %s is paused, unpause the container before attach" % (c.id,))
        if c.state.restarting:
            raise Conflict("container is restarting, wait until the container is running")
        if config.detach_keys:
            parse_detach_keys(config.detach_keys)

    async def attach(self, ref, config: ContainerAttachConfig, stream) -> None:
        c = self.get(ref)
        stream.framed = not c.tty
        if config.logs:
            reader = self.log_reader_factory(c.log_path)
            for ts, name, data in await reader.read(tail=None):
                if (name == "stdout" and config.use_stdout) or (name == "stderr" and config.use_stderr):
                    stream.write(STDOUT if name == "stdout" else STDERR, data)
        self.log_event(c, "attach")
        if not config.stream:
            stream.close()
            return
        attachment = Attachment(self, c, config, stream)
        run = self._runs.get(c.id)
        if c.state.running and run is not None:
            await attachment.connect()
            run.attached.append(attachment)
        else:
            pending = self._pending_attach.setdefault(c.id, [])
            pending.append(attachment)
            stream.closed.addCallback(lambda _: attachment in pending and pending.remove(attachment))
        await stream.closed

    async def resize(self, ref, height, width) -> None:
        c = self.get(ref)
        if not c.state.running:
            raise Conflict("Container %s is not running" % (c.id,))
        if c.tty:
            await self.runtime.resize(self.bundle(c), height, width)


def _closes_stdin(c: Container) -> bool:
    """dockerd closes a container's stdin when its attached client leaves
    only for StdinOnce containers without a TTY (docker run -i, not -it)."""
    return bool(c.config.get("StdinOnce")) and not c.tty
