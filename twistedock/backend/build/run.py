"""
RUN: a step's command in a real container of the container backend
(created with the stage's config, attached, started, waited for), its
upper directory committed as the step's layer as docker commit makes it,
the container removed as C{rm}/C{forcerm} say.
"""

import copy
import os
from typing import Callable, List

from twisted.internet.defer import Deferred, ensureDeferred

from ... import versions
from ...errors import DockerError
from ...logs import Logger
from ..commit import layer_tar
from .dockerfile import FLAGS, Instruction, parse_flags
from .dispatchers import _refuse_buildkit_flags
from .state import BUILTIN_ARGS, BuildFailed, StageState, image_config

log = Logger()


class RunStep:
    """RUN for L{twistedock.backend.build.builder.Build}."""

    async def _do_run(self, state: StageState, ins: Instruction) -> None:
        if not state.image_id:
            raise BuildFailed("Please provide a source image with `from` prior to run")
        flags, rest = parse_flags(ins.value, FLAGS["RUN"], ins)
        _refuse_buildkit_flags("RUN", flags)
        cmd, shell_form = self._command(state, ins)
        args_env = self._build_args_env(state)
        save_cmd = list(cmd)
        if args_env:
            shown = sorted(
                e for e in args_env if e.partition("=")[0] not in BUILTIN_ARGS
                or e.partition("=")[0] in state.declared
            )
            save_cmd = ["|%d" % (len(shown),)] + shown + save_cmd
        probe = copy.deepcopy(state.config)
        probe["Cmd"] = save_cmd
        probe["Image"] = state.image_id
        probe["Entrypoint"] = None
        hit = await self._cached(state, probe)
        if hit is not None:
            self._advance(state, hit, state.config)
            return
        run_config = copy.deepcopy(state.config)
        run_config["Cmd"] = cmd
        run_config["Entrypoint"] = [""]
        run_config["Env"] = list(state.config.get("Env") or []) + args_env
        run_config["Image"] = state.image_id
        run_config["Healthcheck"] = None
        run_config["AttachStdout"] = run_config["AttachStderr"] = True
        run_config.pop("OnBuild", None)
        host_config = dict(self.options.resources)
        host_config["NetworkMode"] = self.options.network_mode or "default"
        if self.options.extra_hosts:
            host_config["ExtraHosts"] = list(self.options.extra_hosts)
        created = await self.b.containers.create(
            "", run_config, host_config, {}, versions.MAX_API_VERSION
        )
        container_id = created["Id"]
        self.out(" ---> Running in %s\n" % (container_id[:12],))
        image_id = None
        try:
            code = await self._run_container(container_id)
            if code != 0:
                raise BuildFailed(
                    "The command '%s' returned a non-zero code: %d" % (" ".join(cmd), code), code
                )
            image_id = await self._commit_run(container_id, state, probe)
        finally:
            if self.options.force_remove or (self.options.remove and image_id is not None):
                await self._remove_container(container_id)
        self._advance(state, image_id, state.config)

    def _build_args_env(self, state: StageState) -> List[str]:
        """The build args a RUN sees (declared, or builtin and given) that
        ENV does not set."""
        config_keys = {e.partition("=")[0] for e in state.config.get("Env") or []}
        out = []
        for key, value in state.declared.items():
            if value is not None and key not in config_keys:
                out.append("%s=%s" % (key, value))
        for key in BUILTIN_ARGS:
            value = self.options.build_args.get(key)
            if key not in state.declared and value is not None and key not in config_keys:
                out.append("%s=%s" % (key, value))
        return out

    async def _run_container(self, container_id: str) -> int:
        stream = _RunOutput(self.b.reactor, self.out)
        from ...routers.container import ContainerAttachConfig

        attached = ensureDeferred(self.b.containers.attach(
            container_id,
            ContainerAttachConfig(use_stdout=True, use_stderr=True, stream=True),
            stream,
        ))
        exited = self.b.containers.wait(container_id, "next-exit")
        try:
            await self.b.containers.start(container_id)
        except BaseException:
            exited.cancel()
            stream.close()
            raise
        result = await exited
        await stream.drained()
        stream.close()
        await attached
        return int(result.get("StatusCode") or 0)

    async def _commit_run(self, container_id: str, state: StageState, probe: dict) -> str:
        c = self.b.containers.get(container_id)
        upper = self.b.containers.overlay(c)["UpperDir"]
        handle = await self.b._thread(
            layer_tar, upper, self.b.containers.layer_dirs(c), os.path.dirname(upper)
        )
        return await self.b.images.add_child(
            state.image_id, handle, container_config=probe, config=image_config(state.config),
            container_id=container_id, base=state.base, author=state.author,
        )

    async def _remove_container(self, container_id: str) -> None:
        try:
            await self.b.containers.remove(container_id, True, False)
            self.out("Removing intermediate container %s\n" % (container_id[:12],))
        except DockerError as e:
            log.warn("build: removing {id}: {e}", id=container_id[:12], e=e)


class _RunOutput:
    """What the container backend's attach writes into: a RUN's output,
    stderr in red as dockerd shows it."""

    framed = False

    def __init__(self, reactor, out: Callable[[str], None]) -> None:
        self._reactor = reactor
        self._out = out
        self.closed: Deferred = Deferred()
        self._ended: Deferred = Deferred()

    def write(self, stream_id: int, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        if stream_id == 2:
            text = "\x1b[91m" + text + "\x1b[0m"
        self._out(text)

    def add_source(self, pause, resume) -> None:
        pass

    def read_input(self, data, ended) -> None:
        pass

    def close(self) -> None:
        if not self._ended.called:
            self._ended.callback(None)
        if not self.closed.called:
            self.closed.callback(None)

    def drained(self) -> Deferred:
        """Fires once the attach socket ended (the output is all here)."""
        d: Deferred = Deferred()

        def done(_):
            if not d.called:
                d.callback(None)
            return _

        self._ended.addBoth(done)
        # The socket ends with the container; do not wait for ever.
        call = self._reactor.callLater(5, lambda: d.called or d.callback(None))
        d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
        return d
