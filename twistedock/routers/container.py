"""The container router: life cycle, logs, attach, exec, archives, export, changes and commit."""

from typing import Any, Optional, Tuple

import attr
from zope.interface import Interface

from ..errors import DockerError, InvalidParameter
from .. import versions
from ..server import godecode
from ..server.hijack import hijacked, refused, websocket_attached
from ..server.httputils import APIRequest, decode_go_struct, encode_json
from ..server.routing import route
from ..streams import MULTIPLEXED, RAW, StdWriter
from . import Router, types

#: On the answer to a start from a checkpoint (twistedock only): the
#: seconds since the restored process runs again (a restore over CRIU's RPC).
RESUMED_HEADER = "X-Twistedock-Running-For"

ROUTES = (
    route("HEAD", "/containers/{name:.*}/archive", "head_containers_archive"),
    route("GET", "/containers/json", "get_containers_json"),
    route("GET", "/containers/{name:.*}/export", "get_containers_export"),
    route("GET", "/containers/{name:.*}/changes", "get_containers_changes"),
    route("GET", "/containers/{name:.*}/json", "get_containers_by_name"),
    route("GET", "/containers/{name:.*}/top", "get_containers_top"),
    route("GET", "/containers/{name:.*}/logs", "get_containers_logs"),
    route("GET", "/containers/{name:.*}/stats", "get_containers_stats"),
    route("GET", "/containers/{name:.*}/attach/ws", "ws_containers_attach"),
    route("GET", "/exec/{id:.*}/json", "get_exec_by_id"),
    route("GET", "/containers/{name:.*}/archive", "get_containers_archive"),
    route("POST", "/containers/create", "post_containers_create"),
    route("POST", "/containers/{name:.*}/kill", "post_containers_kill"),
    route("POST", "/containers/{name:.*}/pause", "post_containers_pause"),
    route("POST", "/containers/{name:.*}/unpause", "post_containers_unpause"),
    route("POST", "/containers/{name:.*}/restart", "post_containers_restart"),
    route("POST", "/containers/{name:.*}/start", "post_containers_start"),
    route("POST", "/containers/{name:.*}/stop", "post_containers_stop"),
    route("POST", "/containers/{name:.*}/wait", "post_containers_wait"),
    route("POST", "/containers/{name:.*}/resize", "post_containers_resize"),
    route("POST", "/containers/{name:.*}/attach", "post_containers_attach"),
    route("POST", "/containers/{name:.*}/exec", "post_container_exec_create"),
    route("POST", "/exec/{name:.*}/start", "post_container_exec_start"),
    route("POST", "/exec/{name:.*}/resize", "post_container_exec_resize"),
    route("POST", "/containers/{name:.*}/rename", "post_container_rename"),
    route("POST", "/containers/{name:.*}/update", "post_container_update"),
    route("POST", "/containers/prune", "post_containers_prune", min_version="1.25"),
    route("POST", "/commit", "post_commit"),
    route("PUT", "/containers/{name:.*}/archive", "put_containers_archive"),
    route("DELETE", "/containers/{name:.*}", "delete_containers"),
)

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


def _console_size(value) -> Optional[Tuple[int, int]]:
    return None if value is None else (int(value[0]), int(value[1]))


# -- Option values the backends are given (moby's backend.go) ---------------
# Parsed once from the request by the handlers; the defaults are dockerd's.


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class ContainerLogsOptions:
    """C{GET /containers/{name}/logs}'s query.  C{since} and C{until} stay
    as given (seconds, with nanoseconds after a dot), C{tail} too ("all",
    or a number of lines), as in moby, whose daemon parses them."""

    stdout: bool = False
    stderr: bool = False
    follow: bool = False
    timestamps: bool = False
    since: str = ""
    until: str = ""
    tail: str = "all"
    details: bool = False


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class ContainerStatsConfig:
    """C{GET /containers/{name}/stats}'s query: a frame a second
    (C{stream}), or one frame, after two samples so that its precpu_stats
    are filled, or after one (C{one_shot}, from API 1.41)."""

    stream: bool = True
    one_shot: bool = False
    version: str = ""


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class ContainerAttachConfig:
    """What an attach joins: which of the container's streams, whether its
    log is replayed first (C{logs}) and the live streams follow (C{stream}),
    and the keys that detach (empty: the default)."""

    use_stdin: bool = False
    use_stdout: bool = False
    use_stderr: bool = False
    logs: bool = False
    stream: bool = False
    detach_keys: str = ""


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class ExecOptions:
    """An exec's configuration: the body of C{POST /containers/{name}/exec}
    (Go's container.ExecOptions; C{console_size} only from API 1.42)."""

    cmd: Tuple[str, ...] = attr.ib(default=(), converter=tuple)
    user: str = ""
    privileged: bool = False
    tty: bool = False
    console_size: Optional[Tuple[int, int]] = attr.ib(default=None, converter=_console_size)
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    detach_keys: str = ""
    env: Tuple[str, ...] = attr.ib(default=(), converter=tuple)
    working_dir: str = ""


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class ExecStartConfig:
    """How an exec starts: joined to C{stream} (a hijacked connection), or
    detached (None); C{console_size} its terminal's (None: the create's)."""

    stream: Any = None
    console_size: Optional[Tuple[int, int]] = attr.ib(default=None, converter=_console_size)


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class CreateImageConfig:
    """C{POST /commit}'s query and body: the new image's repository and tag
    (checked by the backend), author, comment, Dockerfile C{changes},
    whether the container is paused meanwhile, and the body's container
    config (None without a body)."""

    repo: str = ""
    tag: str = ""
    author: str = ""
    comment: str = ""
    changes: Tuple[str, ...] = attr.ib(default=(), converter=tuple)
    pause: bool = True
    config: Optional[dict] = None


class IContainerBackend(Interface):
    """What the container router asks of the daemon. Methods are async
    unless said otherwise."""

    def create(name, config, host_config, networking_config, api_version):
        """Create a container: C{{"Id": ..., "Warnings": [...]}}."""

    def start(name, checkpoint="", checkpoint_dir=""):
        """Start a created or stopped container (NotModified if running);
        with C{checkpoint}, restore it from that checkpoint (and maybe
        return C{{"Resumed": t}}: when, C{time.monotonic}, the restored
        process ran again, L{RESUMED_HEADER})."""

    def stop(name, signal, timeout):
        """Stop: the stop signal, then SIGKILL after C{timeout} seconds."""

    def kill(name, signal):
        """Send C{signal} (a name or number; None for SIGKILL)."""

    def restart(name, signal, timeout):
        """Stop if running, then start."""

    def pause(name):
        """Freeze every process of the container."""

    def unpause(name):
        """Thaw a paused container."""

    def wait(name, condition):
        """Check C{name} now (sync); a Deferred firing with the wait's body."""

    def remove(name, force, volumes, link=False):
        """Remove the container (force: kill it first; link: only the link
        C{name}, "parent/alias")."""

    def rename(name, new_name):
        """Give the container another name."""

    def update(name, update):
        """Change resources and restart policy: C{{"Warnings": [...]}}."""

    def top(name, ps_args):
        """C{{"Titles": [...], "Processes": [[...]]}} of the container's processes."""

    def list(all, limit, size, filters, api_version):
        """The containers as C{GET /containers/json} lists them."""

    def inspect(name, size, api_version):
        """The container as C{GET /containers/{name}/json} shows it."""

    def prune(filters):
        """Remove stopped containers: C{{"ContainersDeleted", "SpaceReclaimed"}}."""

    def tty(name):
        """Whether the container has a TTY (sync; NotFound if no such container)."""

    def logs(name, options: ContainerLogsOptions, writer):
        """Write each log entry with C{writer.write(stream, data)}, at the
        pace of C{writer.flow}; follow if asked."""

    def stats(name, config: ContainerStatsConfig, out):
        """Sample the container's resource usage: C{out.start()} once the
        request is accepted, then C{out.write(frame)} per frame (a dict, as
        dockerd's StatsJSON), at the pace of C{out.flow} (None: one frame)."""

    def attach(name, config: ContainerAttachConfig, stream):
        """Join C{stream} (a hijacked connection) to the container's stdio."""

    def check_attach(name, config: ContainerAttachConfig):
        """Refuse an attach before the connection is taken over (sync)."""

    def resize(name, height, width):
        """Resize the container's TTY."""


class ICopyBackend(Interface):
    """What the archive, export, changes and commit routes ask of the
    daemon (moby's copyBackend, plus commit).  All async."""

    def stat_path(name, path):
        """C{path} in the container, stat-ed: C{{"name", "size", "mode",
        "mtime", "linkTarget"}} (NotFound if it does not exist)."""

    def archive_path(name, path):
        """C{(stat, stream)}: the stat as L{stat_path}, and a tar stream of
        the path (C{stream.write_to(consumer, flow)}, C{stream.close()})."""

    def extract_to_dir(name, path, no_overwrite_dir_non_dir, copy_uid_gid, content):
        """Unpack the tar C{content} (a file) into the directory C{path}."""

    def export(name):
        """A tar stream of the container's whole root filesystem."""

    def changes(name):
        """C{[{"Path", "Kind"}]}: the container's changes to its image (or None)."""

    def commit(name, config: CreateImageConfig):
        """Make an image of the container: its ID."""


class IExecBackend(Interface):
    """What the exec routes ask of the daemon (moby's execBackend). Methods
    are async unless said otherwise."""

    def create_exec(name, config: ExecOptions):
        """Set up an exec in the running container C{name}: its ID."""

    def inspect_exec(exec_id):
        """The exec as C{GET /exec/{id}/json} shows it (sync)."""

    def check_exec(exec_id):
        """Refuse a start or resize before anything is written (sync):
        NotFound, or Conflict when the exec's container does not run."""

    def start_exec(exec_id, config: ExecStartConfig):
        """Run the exec.  With C{config.stream} (a hijacked connection), join
        it to the exec's stdio and return once the exec ended and its output
        was written (or the client left); with None, return once it runs."""

    def resize_exec(exec_id, height, width):
        """Resize the exec's TTY."""


def _timeout(req: APIRequest) -> Optional[int]:
    if not req.has_query("t") or req.query("t") == "":
        return None
    return req.int_query("t")


def _signal(req: APIRequest) -> Optional[str]:
    if versions.less_than(req.version, "1.42"):
        return None
    return req.query("signal") or None


def _typed(body, go_type):
    """The body as Go decodes it into C{go_type}: a value that does not fit
    is refused with Go's message (see L{types})."""
    try:
        return godecode.decode(body, go_type)
    except godecode.DecodeError as e:
        raise InvalidParameter("invalid JSON: " + e.message)


def _resize_value(req: APIRequest, name: str, label: str) -> int:
    value = req.query(name, "")
    if not value.isdigit() or int(value) > 0xFFFFFFFF:
        raise InvalidParameter('invalid resize %s "%s"' % (label, value))
    return int(value)


class _StatsOutput:
    """Where the stats frames go: a stream of JSON documents with no
    Content-Type (dockerd flushes its headers before any body), or one JSON
    answer."""

    def __init__(self, req: APIRequest, stream: bool) -> None:
        self.req = req
        self.stream = stream
        self.flow = None

    def start(self) -> None:
        if self.stream:
            self.flow = self.req.start_stream(None)

    def write(self, frame: dict) -> None:
        if self.stream:
            self.req.write(encode_json(frame))
        else:
            self.req.write_json(frame)


class ContainerRouter(Router):
    """Handlers for the container routes.  As moby's, the router's backend
    is split by concern: C{backend} (life cycle, logs, attach), C{execs}
    (exec), C{copies} (archives, export, changes, commit)."""

    name = "container"
    routes = ROUTES

    def __init__(self, backend: IContainerBackend, execs=None, copies=None) -> None:
        self.backend = backend
        self.execs = execs
        self.copies = copies

    async def get_containers_json(self, req: APIRequest) -> None:
        filters = req.filters()
        limit = req.int_query("limit", -1)
        listed = await self.backend.list(
            req.bool_query("all"), limit, req.bool_query("size"), filters, req.version
        )
        req.write_json(listed)

    async def get_containers_by_name(self, req: APIRequest) -> None:
        req.write_json(
            await self.backend.inspect(req.vars["name"], req.bool_query("size"), req.version)
        )

    async def get_containers_top(self, req: APIRequest) -> None:
        req.write_json(await self.backend.top(req.vars["name"], req.query("ps_args") or "-ef"))

    async def post_containers_create(self, req: APIRequest) -> None:
        body = req.json_body()
        if body is None:
            raise InvalidParameter("invalid JSON: EOF")
        body = _typed(body, types.CONTAINER_CREATE)
        host_config = body.pop("HostConfig", None) or {}
        networking = body.pop("NetworkingConfig", None) or {}
        created = await self.backend.create(
            req.query("name", ""), body, host_config, networking, req.version
        )
        req.write_json(created, status=201)

    async def post_containers_start(self, req: APIRequest) -> None:
        # Bodies were options before API 1.24; dockerd refuses them now.
        if len(req.body()) > 7 or (req.header("Transfer-Encoding") or "").lower() == "chunked" and req.body().strip():
            raise InvalidParameter(
                "starting container with non-empty request body was deprecated since "
                "API v1.22 and removed in v1.24"
            )
        checkpoint = req.query("checkpoint") or ""
        if checkpoint:
            # Restore from a checkpoint (experimental, as in dockerd).
            timing = await self.backend.start(
                req.vars["name"], checkpoint=checkpoint, checkpoint_dir=req.query("checkpoint-dir") or ""
            )
            req.set_elapsed(RESUMED_HEADER, (timing or {}).get("Resumed"))
        else:
            await self.backend.start(req.vars["name"])
        req.write_status(204)

    async def post_containers_stop(self, req: APIRequest) -> None:
        await self.backend.stop(req.vars["name"], _signal(req), _timeout(req))
        req.write_status(204)

    async def post_containers_kill(self, req: APIRequest) -> None:
        await self.backend.kill(req.vars["name"], req.query("signal") or None)
        req.write_status(204)

    async def post_containers_restart(self, req: APIRequest) -> None:
        await self.backend.restart(req.vars["name"], _signal(req), _timeout(req))
        req.write_status(204)

    async def post_containers_pause(self, req: APIRequest) -> None:
        await self.backend.pause(req.vars["name"])
        req.write_status(204)

    async def post_containers_unpause(self, req: APIRequest) -> None:
        await self.backend.unpause(req.vars["name"])
        req.write_status(204)

    async def post_containers_wait(self, req: APIRequest) -> None:
        condition = req.query("condition") or "not-running"
        if versions.less_than(req.version, "1.30"):
            condition = "not-running"
        if condition not in WAIT_CONDITIONS:
            raise InvalidParameter('invalid condition: "%s"' % (condition,))
        done = self.backend.wait(req.vars["name"], condition)
        # Headers go at once, so the client knows the wait is in place.
        req.start_stream("application/json")
        try:
            result = await done
        finally:
            done.cancel()
        req.write(encode_json(result))

    async def post_containers_resize(self, req: APIRequest) -> None:
        height = _resize_value(req, "h", "height")
        width = _resize_value(req, "w", "width")
        await self.backend.resize(req.vars["name"], height, width)
        req.write_status(200)

    async def post_container_rename(self, req: APIRequest) -> None:
        await self.backend.rename(req.vars["name"], req.query("name", ""))
        req.write_status(204)

    async def post_container_update(self, req: APIRequest) -> None:
        update = _typed(req.json_body({}), types.UPDATE_CONFIG) or {}
        if versions.less_than(req.version, "1.40"):
            update.pop("PidsLimit", None)
        if not versions.less_than(req.version, "1.42"):
            update.pop("KernelMemory", None)  # removed in API 1.42: ignored
        req.write_json(await self.backend.update(req.vars["name"], update))

    async def post_containers_prune(self, req: APIRequest) -> None:
        req.write_json(await self.backend.prune(req.filters()))

    async def delete_containers(self, req: APIRequest) -> None:
        if req.bool_query("link"):
            await self.backend.remove(req.vars["name"], req.bool_query("force"), req.bool_query("v"), link=True)
        else:
            await self.backend.remove(req.vars["name"], req.bool_query("force"), req.bool_query("v"))
        req.write_status(204)

    async def get_containers_logs(self, req: APIRequest) -> None:
        name = req.vars["name"]
        if not (req.bool_query("stdout") or req.bool_query("stderr")):
            raise InvalidParameter("Bad parameters: you must choose at least one stream")
        options = ContainerLogsOptions(
            stdout=req.bool_query("stdout"),
            stderr=req.bool_query("stderr"),
            follow=req.bool_query("follow"),
            timestamps=req.bool_query("timestamps"),
            since=req.query("since", ""),
            until=req.query("until", ""),
            tail=req.query("tail", "all") or "all",
            details=req.bool_query("details"),
        )
        tty = self.backend.tty(name)
        multiplexed = not tty
        content_type = MULTIPLEXED if multiplexed and not versions.less_than(req.version, "1.42") else RAW
        flow = req.start_stream(content_type)
        writer = StdWriter(req.write, multiplexed, flow)
        await self.backend.logs(name, options, writer)

    async def get_containers_stats(self, req: APIRequest) -> None:
        one_shot = False
        if not versions.less_than(req.version, "1.41"):
            one_shot = req.bool_query("one-shot")
        config = ContainerStatsConfig(
            stream=req.bool_query("stream", True), one_shot=one_shot, version=req.version
        )
        await self.backend.stats(req.vars["name"], config, _StatsOutput(req, config.stream))

    async def post_containers_attach(self, req: APIRequest) -> None:
        name = req.vars["name"]
        config = ContainerAttachConfig(
            stream=req.bool_query("stream"),
            use_stdin=req.bool_query("stdin"),
            use_stdout=req.bool_query("stdout"),
            use_stderr=req.bool_query("stderr"),
            logs=req.bool_query("logs"),
            detach_keys=req.query("detachKeys", ""),
        )
        try:
            self.backend.check_attach(name, config)
            tty = self.backend.tty(name)
        except DockerError as e:
            # dockerd answers a failed attach on the taken-over connection.
            return refused(req, e.status, str(e))
        multiplexed = not tty and not versions.less_than(req.version, "1.42")
        return hijacked(
            req, MULTIPLEXED if multiplexed else RAW, not tty,
            lambda stream: self.backend.attach(name, config, stream),
        )

    async def ws_containers_attach(self, req: APIRequest) -> None:
        name = req.vars["name"]
        forced = versions.less_than(req.version, "1.42")
        config = ContainerAttachConfig(
            stream=req.bool_query("stream"),
            use_stdin=forced or req.bool_query("stdin"),
            use_stdout=forced or req.bool_query("stdout"),
            use_stderr=forced or req.bool_query("stderr"),
            logs=req.bool_query("logs"),
            detach_keys=req.query("detachKeys", ""),
        )
        self.backend.check_attach(name, config)

        async def serve(stream) -> None:
            await stream.opened
            if stream.lost:
                return
            await self.backend.attach(name, config, stream)

        return websocket_attached(req, not versions.less_than(req.version, "1.28"), serve)

    # -- exec handlers ------------------------------------------------------

    #: The request bodies of exec create and start, as Go decodes them.
    EXEC_OPTIONS = {
        "User": "string", "Privileged": "bool", "Tty": "bool", "ConsoleSize": "[2]uint",
        "AttachStdin": "bool", "AttachStderr": "bool", "AttachStdout": "bool",
        "DetachKeys": "string", "Env": "[]string", "WorkingDir": "string",
        "Cmd": "[]string", "Detach": "bool",
    }  # fmt: skip
    EXEC_START_OPTIONS = {"Detach": "bool", "Tty": "bool", "ConsoleSize": "[2]uint"}

    def _exec_backend(self):
        if self.execs is None:
            from ..errors import NotImplementedYet

            raise NotImplementedYet("exec is not available in this daemon")
        return self.execs

    @staticmethod
    def _exec_options(body, struct: str, fields: dict) -> dict:
        """A JSON body decoded as Go decodes it into C{container.STRUCT}."""
        options, error = decode_go_struct(body, "container." + struct, fields)
        if error is not None:
            raise InvalidParameter("invalid JSON: " + error)
        return options

    async def get_exec_by_id(self, req: APIRequest) -> None:
        req.write_json(self._exec_backend().inspect_exec(req.vars["id"]))

    async def post_container_exec_create(self, req: APIRequest) -> None:
        execs = self._exec_backend()
        options = self._exec_options(req.json_body({}), "ExecOptions", self.EXEC_OPTIONS)
        if not options.get("Cmd"):
            raise InvalidParameter("No exec command specified")
        config = ExecOptions(
            cmd=options["Cmd"],
            user=options.get("User", ""),
            privileged=options.get("Privileged", False),
            tty=options.get("Tty", False),
            console_size=None if versions.less_than(req.version, "1.42") else options.get("ConsoleSize"),
            attach_stdin=options.get("AttachStdin", False),
            attach_stdout=options.get("AttachStdout", False),
            attach_stderr=options.get("AttachStderr", False),
            detach_keys=options.get("DetachKeys", ""),
            env=options.get("Env", ()),
            working_dir=options.get("WorkingDir", ""),
        )
        exec_id = await execs.create_exec(req.vars["name"], config)
        req.write_json({"Id": exec_id}, status=201)

    async def post_container_exec_start(self, req: APIRequest) -> None:
        execs = self._exec_backend()
        options = self._exec_options(req.json_body({}), "ExecStartOptions", self.EXEC_START_OPTIONS)
        name = req.vars["name"]
        execs.check_exec(name)
        tty = bool(options.get("Tty"))
        console_size = options.get("ConsoleSize")
        if versions.less_than(req.version, "1.42") or not tty:
            console_size = None
        if options.get("Detach"):
            await execs.start_exec(name, ExecStartConfig(console_size=console_size))
            req.write_status(200)
            return
        # Framing follows the start request's Tty, as dockerd's.
        multiplexed = not tty and not versions.less_than(req.version, "1.42")

        async def serve(stream) -> None:
            try:
                await execs.start_exec(name, ExecStartConfig(stream=stream, console_size=console_size))
            except DockerError as e:
                # Too late for a status: dockerd writes the error as output.
                from ..streams import STDOUT

                stream.write(STDOUT, (str(e) + "\r\n").encode("utf-8"))
            finally:
                stream.close()

        return hijacked(req, MULTIPLEXED if multiplexed else RAW, not tty, serve)

    async def post_container_exec_resize(self, req: APIRequest) -> None:
        execs = self._exec_backend()
        height = _resize_value(req, "h", "height")
        width = _resize_value(req, "w", "width")
        await execs.resize_exec(req.vars["name"], height, width)
        req.write_status(200)

    # -- archive, export, changes and commit handlers ------------------------

    def _copy_backend(self):
        if self.copies is None:
            from ..errors import NotImplementedYet

            raise NotImplementedYet("archives are not available in this daemon")
        return self.copies

    @staticmethod
    def _archive_path(req: APIRequest) -> str:
        path = req.query("path") or ""
        if not path:
            # dockerd 20.10's message, missing space included.
            raise InvalidParameter("bad parameter: pathcannot be empty")
        return path

    @staticmethod
    def _set_path_stat(req: APIRequest, stat: dict) -> None:
        """X-Docker-Container-Path-Stat: base64 (standard) of Go's JSON."""
        import base64
        import json

        text = json.dumps(stat, separators=(",", ":"), ensure_ascii=False)
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        req.set_header(
            "X-Docker-Container-Path-Stat", base64.b64encode(text.encode("utf-8")).decode("ascii")
        )

    async def head_containers_archive(self, req: APIRequest) -> None:
        path = self._archive_path(req)
        stat = await self._copy_backend().stat_path(req.vars["name"], path)
        self._set_path_stat(req, stat)
        req.write_status(200)

    async def get_containers_archive(self, req: APIRequest) -> None:
        path = self._archive_path(req)
        stat, stream = await self._copy_backend().archive_path(req.vars["name"], path)
        try:
            self._set_path_stat(req, stat)
            flow = req.start_stream("application/x-tar")
            await stream.write_to(req.request, flow)
        finally:
            stream.close()

    async def put_containers_archive(self, req: APIRequest) -> None:
        path = self._archive_path(req)
        await self._copy_backend().extract_to_dir(
            req.vars["name"],
            path,
            req.bool_query("noOverwriteDirNonDir"),
            req.bool_query("copyUIDGID"),
            req.request.content,
        )
        req.write_status(200)

    async def get_containers_export(self, req: APIRequest) -> None:
        stream = await self._copy_backend().export(req.vars["name"])
        try:
            flow = req.start_stream("application/octet-stream")
            await stream.write_to(req.request, flow)
        finally:
            stream.close()

    async def get_containers_changes(self, req: APIRequest) -> None:
        req.write_json(await self._copy_backend().changes(req.vars["name"]))

    async def post_commit(self, req: APIRequest) -> None:
        copies = self._copy_backend()
        # The body is a create's (runconfig.ContainerConfigWrapper), decoded
        # alike; its HostConfig is only checked.
        config = req.json_body()
        if config is not None:
            config = _typed(config, types.CONTAINER_CREATE)
        pause = req.bool_query("pause")
        if not req.query("pause") and not versions.less_than(req.version, "1.13"):
            pause = True
        options = CreateImageConfig(
            repo=req.query("repo", ""),
            tag=req.query("tag", ""),
            author=req.query("author", ""),
            comment=req.query("comment", ""),
            changes=req.query_all("changes"),
            pause=pause,
            config=config,
        )
        image_id = await copies.commit(req.query("container", ""), options)
        req.write_json({"Id": image_id}, status=201)
