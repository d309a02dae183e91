"""
CRIU driven over its own RPC: C{criu swrk FD}, one worker process a
request, spoken to through an C{AF_UNIX SOCK_SEQPACKET} socket pair.

The messages are CRIU's (C{criu_req}, C{criu_resp}, C{criu_opts} of its
C{rpc.proto}), built with C{protobuf} from the descriptor that the
installed CRIU ships: C{scripts/install} puts Debian's
C{pycriu/rpc_pb2.py} (package python3-pycriu, the same CRIU version) at
L{PROVISIONED_RPC}; the serialized C{FileDescriptorProto} in it is read
(never executed) and loaded into a private descriptor pool, so the
protobuf runtime's version does not matter and nothing of CRIU is copied
into this project.

Framing: each message is one packet.  L{PacketSocket} reads a packet per
C{recv} on the reactor and hands it whole to its protocol; a request is
one C{send} (a packet is sent whole or not at all).  CRIU answers a
request with one C{criu_resp}, preceded by any number of notifications
(C{type: NOTIFY}, C{notify.script} "network-lock", "post-dump",
"post-restore", ...) when C{notify_scripts} is set, each of which waits
for our C{NOTIFY} answer (C{notify_success}).

A L{CriuWorker} is started ahead of the work it will do (its exec and its
dynamic loading overlap what the caller prepares meanwhile), then given
one request (L{CriuWorker.call}).
"""

import ast
import errno
import os
import socket
from typing import Callable, Dict, List, Optional, Sequence

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from ...errors import InternalError
from ...logs import Logger
from .processes import exit_status

log = Logger()

#: Where scripts/install puts CRIU's generated rpc module (python3-pycriu's).
PROVISIONED_RPC = "/opt/twistedock/lib/criu/rpc_pb2.py"

#: Other places the same file is found: Debian's python3-pycriu.
RPC_MODULE_PLACES = (
    PROVISIONED_RPC,
    "/usr/lib/python3/dist-packages/pycriu/rpc_pb2.py",
)

#: The largest packet read (runc reads 10 pages; CRIU's answers are small).
PACKET_SIZE = 10 * 4096

#: The worker's end of the socket pair, as C{criu swrk 3} is told.
WORKER_FD = 3


class RpcUnavailable(Exception):
    """CRIU's RPC cannot be used here (no protobuf, no rpc descriptor)."""


def serialized_descriptor(source: str) -> bytes:
    """The serialized C{FileDescriptorProto} that a generated C{*_pb2.py}
    hands to C{AddSerializedFile}, read from its C{source} text."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise RpcUnavailable("unreadable rpc module: %s" % (e,))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "AddSerializedFile"
            and node.args
        ):
            try:
                value = ast.literal_eval(node.args[0])
            except ValueError:
                continue
            if isinstance(value, bytes):
                return value
    raise RpcUnavailable("no serialized descriptor in the rpc module")


class Messages:
    """CRIU's RPC messages and enums, from its C{rpc.proto} descriptor."""

    def __init__(self, descriptor: bytes, origin: str = "") -> None:
        try:
            from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        except ImportError as e:
            raise RpcUnavailable("the protobuf package is missing (%s)" % (e,))
        self.origin = origin
        try:
            proto = descriptor_pb2.FileDescriptorProto.FromString(descriptor)
            self.pool = descriptor_pool.DescriptorPool()
            self.pool.Add(proto)

            def message(name):
                return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(name))

            self.Request = message("criu_req")
            self.Response = message("criu_resp")
            self.Options = message("criu_opts")
            self.ExtMount = message("ext_mount_map")
            self.InheritFd = message("inherit_fd")
            self.CgroupRoot = message("cgroup_root")
            self.JoinNamespace = message("join_namespace")
            self.Features = message("criu_features")
        except Exception as e:
            raise RpcUnavailable("CRIU's rpc descriptor does not load: %s" % (e,))

    def enum(self, enum: str, name: str) -> int:
        """The number of C{name} in CRIU's enum C{enum} (C{criu_req_type},
        C{criu_cg_mode}, C{criu_network_lock_method})."""
        return self.pool.FindEnumTypeByName(enum).values_by_name[name].number

    def enum_name(self, enum: str, number: int) -> str:
        values = self.pool.FindEnumTypeByName(enum).values_by_number
        return values[number].name if number in values else str(number)

    def request(self, type_name: str, **options) -> object:
        """A C{criu_req} of type C{type_name} ("DUMP", "RESTORE", ...)."""
        req = self.Request()
        req.type = self.enum("criu_req_type", type_name)
        if options:
            req.opts.images_dir_fd = -1
            set_options(req.opts, options)
        return req


def set_options(opts, options: Dict[str, object]) -> None:
    """Fill a C{criu_opts} from plain values: scalars set, lists of scalars
    extended, lists of dicts appended as sub-messages, a dict as a
    sub-message (C{ps}: the page server)."""
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, dict):
            set_options(getattr(opts, name), value)
            continue
        if isinstance(value, (list, tuple)):
            field = getattr(opts, name)
            for item in value:
                if isinstance(item, dict):
                    set_options(field.add(), item)
                else:
                    field.append(item)
        else:
            setattr(opts, name, value)


def load_messages(places: Sequence[str] = RPC_MODULE_PLACES) -> Messages:
    """CRIU's messages from the first rpc module found among C{places}."""
    for place in places:
        try:
            with open(place, "r", encoding="utf-8") as f:
                source = f.read()
        except OSError:
            continue
        return Messages(serialized_descriptor(source), place)
    raise RpcUnavailable("CRIU's rpc descriptor is not installed (looked at %s)" % (", ".join(places),))


# -- the socket on the reactor ---------------------------------------------------


class PacketSocket:
    """A connected C{SOCK_SEQPACKET} socket read on the reactor: each
    packet given whole to C{received(packet)}, C{closed(reason)} once."""

    def __init__(self, reactor, sock: socket.socket, received: Callable[[bytes], None],
                 closed: Callable[[Optional[str]], None], size: int = PACKET_SIZE) -> None:
        self.reactor = reactor
        self.socket = sock
        self.socket.setblocking(False)
        self.received = received
        self.closed = closed
        self.size = size
        self.connected = True
        reactor.addReader(self)

    def fileno(self) -> int:
        return self.socket.fileno() if self.connected else -1

    def logPrefix(self) -> str:
        return "criu-rpc"

    def doRead(self):
        try:
            packet, _, flags, _ = self.socket.recvmsg(self.size + 1)
        except BlockingIOError:
            return None
        except OSError as e:
            self._close("read: %s" % (e.strerror or e,))
            return None
        if not packet:
            self._close(None)
            return None
        if len(packet) > self.size or flags & socket.MSG_TRUNC:
            self._close("a packet larger than %d bytes" % (self.size,))
            return None
        self.received(packet)
        return None

    def send(self, packet: bytes) -> None:
        """One packet (whole: SEQPACKET sends all or nothing)."""
        if not self.connected:
            raise InternalError("CRIU's RPC socket is closed")
        try:
            self.socket.send(packet)
        except BlockingIOError:
            # The worker's queue is full: it reads requests one at a time
            # and answers before the next, so this is a stuck worker.
            raise InternalError("CRIU's RPC socket is full")
        except OSError as e:
            raise InternalError("cannot write to CRIU's RPC socket: %s" % (e.strerror or e,))

    def connectionLost(self, reason) -> None:
        self._close(None)

    def _close(self, problem: Optional[str]) -> None:
        if not self.connected:
            return
        self.connected = False
        self.reactor.removeReader(self)
        try:
            self.socket.close()
        except OSError:
            pass
        self.closed(problem)

    def close(self) -> None:
        """Close our end (the worker then sees EOF and exits)."""
        self._close(None)


# -- the worker -------------------------------------------------------------------


class CriuError(InternalError):
    """CRIU said no (C{criu_resp.success} false) or went away."""

    def __init__(self, message: str, errno_: int = 0) -> None:
        super().__init__(message)
        self.errno = errno_


class _WorkerProcess(ProcessProtocol):
    """The C{criu swrk} child: its output kept for messages, its end told."""

    LIMIT = 64 * 1024

    def __init__(self) -> None:
        self.output: List[bytes] = []
        self.size = 0
        self.ended: Deferred = Deferred()
        self.status: Optional[int] = None

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if self.size < self.LIMIT:
            self.output.append(data)
            self.size += len(data)

    def processEnded(self, reason: Failure) -> None:
        self.status = exit_status(reason)
        self.ended.callback(self.status)

    def text(self) -> str:
        lines = b"".join(self.output).decode("utf-8", "replace").splitlines()
        return "; ".join(line.strip() for line in lines if line.strip() and not line.startswith("Warn"))


#: A notification handler: C{(script, pid)} -> None or a Deferred; a
#: failure makes the notification answered unsuccessful (CRIU then fails).
NotifyHandler = Callable[[str, int], Optional[Deferred]]


class CriuWorker:
    """One C{criu swrk} process and our end of its socket (see the module).

    It is spawned at once, with C{files} (child fd -> our fd) passed
    beside its socket at fd 3, through C{prefix} when given (a command
    that execs the rest: C{nsenter --net=PATH --}); or, with C{spawn} false, not at all: another
    process runs C{criu swrk} on L{peer} (conmon, for a restore).  L{call}
    gives it a request and fires with CRIU's answer (a C{criu_resp}) or
    fails with L{CriuError}.  The descriptors a request names
    (C{images_dir_fd}, C{work_dir_fd}) are the daemon's own: CRIU opens
    them through /proc/PEER/fd, PEER the process that made the socket
    pair; C{inherit_fd} ones are CRIU's.
    """

    def __init__(self, reactor, criu: str, messages: Messages, *, files: Optional[Dict[int, int]] = None,
                 env: Optional[Dict[str, str]] = None, path: Optional[str] = None,
                 spawn: bool = True, prefix: Sequence[str] = ()) -> None:
        self.reactor = reactor
        self.criu = criu
        self.messages = messages
        self.process = _WorkerProcess()
        self._answer: Optional[Deferred] = None
        self._notify: Optional[NotifyHandler] = None
        self._problem: Optional[str] = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if not spawn:
            # Another process runs `criu swrk` on L{peer} (conmon, for a
            # restore whose tree must be conmon's children).
            self.peer = theirs
            self.transport = None
            self.pid = None
            self.socket = PacketSocket(reactor, ours, self._received, self._closed)
            return
        try:
            child_fds = {0: "w", 1: "r", 2: "r", WORKER_FD: theirs.fileno()}
            for child, parent in (files or {}).items():
                child_fds[child] = parent
            environment = dict(os.environ if env is None else env)
            argv = list(prefix) + [criu, "swrk", str(WORKER_FD)]
            self.transport = reactor.spawnProcess(
                self.process, argv[0], argv, env=environment, path=path, childFDs=child_fds,
            )
        except OSError as e:
            ours.close()
            raise CriuError("cannot run %s: %s" % (criu, e.strerror or e))
        finally:
            theirs.close()
        self.pid = self.transport.pid
        self.socket = PacketSocket(reactor, ours, self._received, self._closed)

    @property
    def ended(self) -> Deferred:
        """Fires with the worker's exit status once it exited."""
        return self.process.ended

    def call(self, request, notify: Optional[NotifyHandler] = None) -> Deferred:
        """Send C{request} (a C{criu_req}); fires with the final C{criu_resp}
        (its C{success} true) once CRIU answered."""
        if self._answer is not None:
            raise InternalError("a CRIU worker takes one request at a time")
        self._answer = Deferred()
        self._notify = notify
        self._type = request.type
        self.socket.send(request.SerializeToString())
        return self._answer

    def close(self) -> None:
        """Close our end of the socket; the worker exits."""
        self.socket.close()

    def kill(self) -> None:
        if self.transport is None:
            self.close()
            return
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass

    # -- packets --

    def _received(self, packet: bytes) -> None:
        response = self.messages.Response()
        try:
            response.ParseFromString(packet)
        except Exception as e:
            self._fail(CriuError("unreadable answer from CRIU: %s" % (e,)))
            return
        if self._answer is None:
            log.warn("CRIU said something unasked: {r}", r=str(response))
            return
        if response.type == self.messages.enum("criu_req_type", "NOTIFY") and response.success:
            script = response.notify.script
            pid = response.notify.pid
            self._notified(script, pid)
            return
        if not response.success:
            self._fail(CriuError(self._failure_text(response), response.cr_errno))
            return
        answer, self._answer = self._answer, None
        answer.callback(response)

    def _notified(self, script: str, pid: int) -> None:
        handler = self._notify

        def reply(ok: bool) -> None:
            req = self.messages.Request()
            req.type = self.messages.enum("criu_req_type", "NOTIFY")
            req.notify_success = ok
            try:
                self.socket.send(req.SerializeToString())
            except InternalError as e:
                self._fail(CriuError(str(e)))

        if handler is None:
            reply(True)
            return
        d = maybeDeferred(handler, script, pid)

        def failed(f: Failure) -> None:
            log.warn("CRIU notification {script} failed: {e}", script=script, e=f.getErrorMessage())
            self._problem = "%s: %s" % (script, f.getErrorMessage())
            reply(False)

        d.addCallbacks(lambda _: reply(True), failed)

    def _failure_text(self, response) -> str:
        what = self.messages.enum_name("criu_req_type", self._type)
        text = "criu failed: type %s errno %d" % (what, response.cr_errno)
        if response.cr_errmsg:
            text += ": " + response.cr_errmsg.strip()
        if self._problem:
            text += " (%s)" % (self._problem,)
        return text

    def _closed(self, problem: Optional[str]) -> None:
        if self._answer is None:
            return
        if self.transport is None:
            self._fail(CriuError("CRIU went away before answering" + (" (%s)" % (problem,) if problem else ""),
                                 errno.EPIPE))
            return

        def gone(status) -> None:
            output = self.process.text()
            text = "CRIU exited (status %s) before answering" % (status,)
            if problem:
                text += " (%s)" % (problem,)
            if output:
                text += ": " + output
            self._fail(CriuError(text, errno.EPIPE))

        # Its exit status and output say more than the closed socket.
        self.process.ended.addBoth(gone)

    def _fail(self, error: CriuError) -> None:
        if self._answer is None:
            return
        answer, self._answer = self._answer, None
        answer.errback(Failure(error))


async def finished(worker: CriuWorker, timeout: float = 10.0) -> Optional[int]:
    """Close a worker's socket and wait (at most C{timeout}) for it to exit."""
    worker.close()
    if worker.transport is None:
        return None
    timer = worker.reactor.callLater(timeout, worker.kill)
    try:
        return await worker.ended
    finally:
        if timer.active():
            timer.cancel()
