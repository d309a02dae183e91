"""C{client.containers}: the container router's routes (and exec's)."""

import base64
import json
import shlex
from typing import Optional

import attr
from twisted.internet.defer import ensureDeferred

from ..versions import compare
from .api import segment
from .hijack import MULTIPLEXED
from .streams import Frames


def command(cmd):
    """A command as a list: a string is split as a shell would."""
    if cmd is None or isinstance(cmd, list):
        return cmd
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return list(cmd)


@attr.s(auto_attribs=True, frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


@attr.s(auto_attribs=True, frozen=True)
class RunResult:
    id: str
    status_code: int
    stdout: bytes
    stderr: bytes


class Containers:
    def __init__(self, client) -> None:
        self.client = client

    def _path(self, name, *rest) -> str:
        return "/containers/" + segment(name) + "".join("/" + part for part in rest)

    # -- listing and inspecting ------------------------------------------

    async def list(self, all: bool = False, limit: Optional[int] = None, size: bool = False, filters=None):
        return await self.client.json("GET", "/containers/json",
                                      {"all": all, "limit": limit, "size": size, "filters": filters})

    async def inspect(self, name, size: bool = False) -> dict:
        return await self.client.json("GET", self._path(name, "json"), {"size": size or None})

    async def top(self, name, ps_args: Optional[str] = None) -> dict:
        return await self.client.json("GET", self._path(name, "top"), {"ps_args": ps_args})

    async def changes(self, name):
        return await self.client.json("GET", self._path(name, "changes"))

    async def _multiplexed(self, name, stream) -> bool:
        """Whether a container's output comes in stdcopy frames: the
        Content-Type says so from API 1.42, before that its TTY does."""
        if compare(await self.client.api_version(), "1.42") >= 0 and stream.header("Content-Type"):
            return stream.header("Content-Type") == MULTIPLEXED
        return not (await self.inspect(name))["Config"].get("Tty")

    # -- life cycle ------------------------------------------------------

    async def create(self, image: str, cmd=None, name: Optional[str] = None, config: Optional[dict] = None,
                     host_config: Optional[dict] = None, networking_config: Optional[dict] = None,
                     platform: Optional[str] = None) -> dict:
        """C{{"Id": ..., "Warnings": [...]}}; C{config} holds the other
        fields of the create body (C{Env}, C{Tty}, C{Labels}...)."""
        body = dict(config or {})
        body["Image"] = image
        if cmd is not None:
            body["Cmd"] = command(cmd)
        if host_config is not None:
            body["HostConfig"] = host_config
        if networking_config is not None:
            body["NetworkingConfig"] = networking_config
        return await self.client.json("POST", "/containers/create", {"name": name, "platform": platform},
                                      json=body)

    async def run(self, image: str, cmd=None, name: Optional[str] = None, detach: bool = True,
                  remove: bool = False, **kwargs):
        """Create and start a container: its ID (C{detach}), else wait for
        it to exit and give a L{RunResult} with its output (removing it with
        C{remove})."""
        created = await self.create(image, cmd, name=name, **kwargs)
        cid = created["Id"]
        await self.start(cid)
        if detach:
            return cid
        status = await self.wait(cid)
        out, err = await (await self.logs(cid)).output()
        if remove:
            await self.remove(cid, force=True)
        return RunResult(cid, status.get("StatusCode", -1), out, err)

    async def start(self, name, checkpoint: Optional[str] = None, checkpoint_dir: Optional[str] = None) -> None:
        """Start (restore, from C{checkpoint}); L{NotModified} when it runs."""
        await self.client.call("POST", self._path(name, "start"),
                               {"checkpoint": checkpoint, "checkpoint-dir": checkpoint_dir})

    async def stop(self, name, timeout: Optional[int] = None, signal: Optional[str] = None) -> None:
        await self.client.call("POST", self._path(name, "stop"), {"t": timeout, "signal": signal})

    async def restart(self, name, timeout: Optional[int] = None, signal: Optional[str] = None) -> None:
        await self.client.call("POST", self._path(name, "restart"), {"t": timeout, "signal": signal})

    async def kill(self, name, signal: Optional[str] = None) -> None:
        await self.client.call("POST", self._path(name, "kill"), {"signal": signal})

    async def pause(self, name) -> None:
        await self.client.call("POST", self._path(name, "pause"))

    async def unpause(self, name) -> None:
        await self.client.call("POST", self._path(name, "unpause"))

    async def wait(self, name, condition: Optional[str] = None) -> dict:
        """C{{"StatusCode": ..., "Error": ...}} once the container is
        C{condition} (not-running, next-exit, removed); never times out."""
        return await self.client.json("POST", self._path(name, "wait"), {"condition": condition})

    async def remove(self, name, force: bool = False, volumes: bool = False, link: bool = False) -> None:
        await self.client.call("DELETE", self._path(name), {"force": force, "v": volumes, "link": link or None})

    async def rename(self, name, new_name: str) -> None:
        await self.client.call("POST", self._path(name, "rename"), {"name": new_name})

    async def update(self, name, resources: dict) -> dict:
        """C{resources}: the update body (C{Memory}, C{CpuShares},
        C{RestartPolicy}...)."""
        return await self.client.json("POST", self._path(name, "update"), json=resources)

    async def resize(self, name, height: int, width: int) -> None:
        await self.client.call("POST", self._path(name, "resize"), {"h": height, "w": width})

    async def prune(self, filters=None) -> dict:
        return await self.client.json("POST", "/containers/prune", {"filters": filters})

    async def commit(self, name, repo: Optional[str] = None, tag: Optional[str] = None,
                     message: Optional[str] = None, author: Optional[str] = None, pause: bool = True,
                     changes=None, config: Optional[dict] = None) -> dict:
        if isinstance(changes, str):
            changes = [changes]
        params = {"container": name, "repo": repo, "tag": tag, "comment": message, "author": author,
                  "pause": pause, "changes": changes}
        return await self.client.json("POST", "/commit", params, json=config or {})

    # -- output ----------------------------------------------------------

    async def logs(self, name, stdout: bool = True, stderr: bool = True, follow: bool = False,
                   timestamps: bool = False, since=None, until=None, tail=None) -> Frames:
        """The log as C{(stream, bytes)} frames (stream 1 stdout, 2
        stderr); with C{follow} it goes on until the container stops or the
        stream is closed."""
        body = await self.client.stream("GET", self._path(name, "logs"), {
            "stdout": stdout, "stderr": stderr, "follow": follow, "timestamps": timestamps,
            "since": since, "until": until, "tail": tail})
        try:
            multiplexed = await self._multiplexed(name, body)
        except BaseException:
            body.close()
            raise
        return Frames(body, multiplexed)

    async def stats(self, name, stream: bool = True, one_shot: bool = False):
        """Resource usage: a L{JSONStream} of samples (C{stream}), else one."""
        if stream:
            return await self.client.json_stream("GET", self._path(name, "stats"), {"stream": True})
        return await self.client.json("GET", self._path(name, "stats"),
                                      {"stream": False, "one-shot": one_shot or None})

    async def attach(self, name, stdin: bool = True, stdout: bool = True, stderr: bool = True,
                     logs: bool = False, detach_keys: Optional[str] = None):
        """A L{HijackedSession}: C{write}/C{close_stdin}, output frames."""
        version = await self.client.api_version()
        multiplexed = None
        if compare(version, "1.42") < 0:
            multiplexed = not (await self.inspect(name))["Config"].get("Tty")
        return await self.client.hijack("POST", self._path(name, "attach"), {
            "stream": True, "stdin": stdin, "stdout": stdout, "stderr": stderr, "logs": logs,
            "detachKeys": detach_keys}, multiplexed=multiplexed)

    # -- exec ------------------------------------------------------------

    async def exec_create(self, name, cmd, stdin: bool = False, stdout: bool = True, stderr: bool = True,
                          tty: bool = False, env=None, workdir: Optional[str] = None,
                          user: Optional[str] = None, privileged: bool = False) -> str:
        body = {"Cmd": command(cmd), "AttachStdin": stdin, "AttachStdout": stdout, "AttachStderr": stderr,
                "Tty": tty, "Privileged": privileged}
        if env is not None:
            body["Env"] = list(env)
        if workdir:
            body["WorkingDir"] = workdir
        if user:
            body["User"] = user
        return (await self.client.json("POST", self._path(name, "exec"), json=body))["Id"]

    async def exec_start(self, exec_id: str, tty: bool = False, detach: bool = False):
        """A L{HijackedSession} (None with C{detach})."""
        body = {"Detach": detach, "Tty": tty}
        path = "/exec/%s/start" % (segment(exec_id),)
        if detach:
            await self.client.call("POST", path, json=body)
            return None
        return await self.client.hijack("POST", path, json=body, multiplexed=not tty)

    async def exec_inspect(self, exec_id: str) -> dict:
        return await self.client.json("GET", "/exec/%s/json" % (segment(exec_id),))

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        await self.client.call("POST", "/exec/%s/resize" % (segment(exec_id),), {"h": height, "w": width})

    async def exec_run(self, name, cmd, stdin=None, tty: bool = False, **kwargs) -> ExecResult:
        """Run C{cmd} in the container to its end, C{stdin} (bytes, a file,
        a path, an async iterator of bytes) given to it."""
        exec_id = await self.exec_create(name, cmd, stdin=stdin is not None, tty=tty, **kwargs)
        session = await self.exec_start(exec_id, tty=tty)
        try:
            if stdin is not None:
                # Output is read while stdin is sent: a process answering
                # as it reads must not block on a full pipe.
                sending = ensureDeferred(session.send(stdin))
                out, err = await session.output()
                await sending
            else:
                out, err = await session.output()
        finally:
            session.close()
        exit_code = (await self.exec_inspect(exec_id)).get("ExitCode")
        return ExecResult(exit_code, out, err)

    # -- files -----------------------------------------------------------

    async def get_archive(self, name, path: str):
        """(a L{BodyStream} of the tar of C{path}, its stat)."""
        stream = await self.client.stream("GET", self._path(name, "archive"), {"path": path})
        encoded = stream.header("X-Docker-Container-Path-Stat")
        stat = json.loads(base64.b64decode(encoded)) if encoded else None
        return stream, stat

    async def put_archive(self, name, path: str, tar, no_overwrite_dir_non_dir: bool = False,
                          copy_uid_gid: bool = False) -> None:
        """Extract C{tar} (bytes, a binary file, a path or an async iterator
        of bytes) into C{path}."""
        await self.client.call("PUT", self._path(name, "archive"), {
            "path": path, "noOverwriteDirNonDir": no_overwrite_dir_non_dir or None,
            "copyUIDGID": copy_uid_gid or None}, body=tar, headers={"Content-Type": "application/x-tar"})

    async def export(self, name):
        """The container's filesystem as a tar L{BodyStream}."""
        return await self.client.stream("GET", self._path(name, "export"))
