"""
The classic builder (moby's builder/dockerfile): L{Builder.prepare} makes a
build of a request (its context and Dockerfile), L{Build.run} its stages
and steps, the cache look-ups, and the JSON stream dockerd 20.10 writes.
The instructions are L{Dispatchers} and L{RunStep}.
"""

import copy
import os
import shutil
from typing import Any, Callable, Dict, List, Optional, Tuple

import attr
from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ...errors import DockerError, InternalError, InvalidParameter, NotFound
from ...logs import Logger
from ...reference import parse_normalized_named, short_id
from ...routers.build import IBuildBackend
from ...tar.read import ArchiveError
from ..images.config import empty_container_config
from .context import (
    RemoteContexts,
    check_tag,
    make_context_dir,
    read_dockerfile,
    sweep,
    unpack_context,
)
from .dispatchers import Dispatchers
from .dockerfile import Dockerfile, Instruction, parse_dockerfile
from .dockerignore import apply_dockerignore
from .lex import process_word, process_words
from .run import RunStep
from .state import BUILTIN_ARGS, DEFAULT_PATH, DEFAULT_SHELL, BuildFailed, StageState, image_config

log = Logger()


@attr.s(auto_attribs=True, kw_only=True)
class BuildOptions:
    """The query of POST /build (Go's types.ImageBuildOptions)."""

    tags: List[str] = attr.ib(factory=list)
    dockerfile: str = "Dockerfile"
    remote: str = ""
    target: str = ""
    labels: Dict[str, str] = attr.ib(factory=dict)
    build_args: Dict[str, Optional[str]] = attr.ib(factory=dict)
    no_cache: bool = False
    remove: bool = True
    force_remove: bool = False
    pull: bool = False
    quiet: bool = False
    network_mode: str = ""
    extra_hosts: List[str] = attr.ib(factory=list)
    platform: str = ""
    #: HostConfig resources for RUN containers (Memory, CpuShares, ...).
    resources: Dict[str, Any] = attr.ib(factory=dict)
    #: X-Registry-Config: auth configs by registry.
    auth_configs: Dict[str, Any] = attr.ib(factory=dict)
    #: --cache-from: images whose ancestors alone may serve as the cache.
    cache_from: List[str] = attr.ib(factory=list)


@implementer(IBuildBackend)
class Builder(RemoteContexts):
    """Builds for the build router: made by the daemon with the container
    backend and the image store (their public methods only)."""

    def __init__(self, reactor, containers, images, tmp_root: str) -> None:
        self.reactor = reactor
        self.containers = containers
        self.images = images
        self.tmp_root = tmp_root
        self._swept = False
        self._sweep_lock = DeferredLock()

    def _thread(self, function, *args) -> Deferred:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    async def prepare(self, source, options: BuildOptions) -> "Build":
        """The context unpacked and the Dockerfile parsed; a client's
        mistake raises here, before the stream starts (dockerd answers
        those with a status)."""
        for tag in options.tags:
            check_tag(tag)
        await self._sweep_lock.run(self._sweep_once)
        context = await self._thread(make_context_dir, self.tmp_root)
        try:
            if options.remote:
                source.close()
                dockerfile = await self._remote(options.remote, context)
            else:
                dockerfile = None
                try:
                    await self._thread(unpack_context, source, context)
                except ArchiveError as e:
                    raise InternalError(str(e))
            name = options.dockerfile or "Dockerfile"
            if dockerfile is None:
                dockerfile = await self._thread(read_dockerfile, context, name)
            await self._thread(apply_dockerignore, context)
            parsed = parse_dockerfile(dockerfile)
            if options.target:
                names = [s.name for s in parsed.stages]
                if options.target.lower() not in names:
                    raise InvalidParameter(
                        "failed to reach build target %s in Dockerfile" % (options.target,)
                    )
                parsed.stages = parsed.stages[: names.index(options.target.lower()) + 1]
        except BaseException:
            await self._thread(shutil.rmtree, context, True)
            raise
        return Build(self, options, parsed, context)

    def _sweep_once(self) -> Deferred:
        """Remove, once, what builds of an earlier run of the daemon left."""
        if self._swept:
            return succeed(None)
        self._swept = True
        return self._thread(sweep, self.tmp_root)


class Build(Dispatchers, RunStep):
    """One build: L{run} writes its stream through C{emit}."""

    def __init__(self, builder: Builder, options: BuildOptions, dockerfile: Dockerfile, context: str) -> None:
        self.b = builder
        self.options = options
        self.dockerfile = dockerfile
        self.context = context
        self.emit: Callable[[dict], None] = lambda doc: None
        #: With C{q}: the progress held back (written if the build fails).
        self.held: List[dict] = []
        self._sources: Optional[set] = None
        self._named_sources: List[str] = []
        self.stages: Dict[str, str] = {}
        self.stage_ids: List[str] = []
        self.used_args: set = set()
        self.meta_args: Dict[str, Optional[str]] = {}
        self.total = len(dockerfile.meta_args) + sum(1 + len(s.commands) for s in dockerfile.stages)
        if options.labels:
            self.total += 1
        self.step = 0

    # -- output --------------------------------------------------------------

    def progress(self, doc: dict) -> None:
        """A message of the build's progress: written, or with C{q} held
        back, to be written only if the build fails (as dockerd's
        notVerboseBuffer)."""
        if self.options.quiet:
            self.held.append(doc)
        else:
            self.emit(doc)

    def out(self, text: str) -> None:
        self.progress({"stream": text})

    def _begin_step(self, original: str) -> None:
        self.step += 1
        self.out("Step %d/%d : %s" % (self.step, self.total, original))
        self.out("\n")

    # -- the run -------------------------------------------------------------

    async def run(self, emit: Callable[[dict], None]) -> Optional[str]:
        """Run every step; the final image's ID, or None after an error
        (written to the stream as dockerd writes it: after what C{q} held
        back)."""
        self.emit = emit
        try:
            return await self._run()
        except DockerError as e:
            for doc in self.held:
                emit(doc)
            self.held = []
            detail: Dict[str, Any] = {"message": str(e)}
            if isinstance(e, BuildFailed) and e.code is not None:
                detail = {"code": e.code, "message": str(e)}
            emit({"errorDetail": detail, "error": str(e)})
            return None
        except Exception as e:
            # A bug: the client still gets an error line, not a cut stream.
            log.failure("build failed")
            emit({"errorDetail": {"message": str(e)}, "error": str(e)})
            return None
        finally:
            await self.b._thread(shutil.rmtree, self.context, True)

    async def _run(self) -> str:
        for ins in self.dockerfile.meta_args:
            self._begin_step(ins.original)
            key, value = self._arg_pair(ins, {k: v for k, v in self.meta_args.items() if v is not None})
            if key in self.options.build_args:
                value = self.options.build_args[key]
                self.used_args.add(key)
            self.meta_args[key] = value
        state = None
        for stage in self.dockerfile.stages:
            state = await self._from(stage)
            for ins in stage.commands:
                await self._dispatch(state, ins)
            if self.options.labels and stage is self.dockerfile.stages[-1]:
                pairs = " ".join("%s=%s" % kv for kv in sorted(self.options.labels.items()))
                self._begin_step("LABEL " + pairs)
                config = copy.deepcopy(state.config)
                labels = dict(config.get("Labels") or {})
                labels.update(self.options.labels)
                config["Labels"] = labels
                await self._commit_config(state, config, "LABEL " + " ".join(
                    "%s=%s" % (k, v) for k, v in sorted(self.options.labels.items())))
            if state.image_id:
                # dockerd tells each stage's image as the stage ends.
                self.progress({"aux": {"ID": state.image_id}})
            self.stage_ids.append(state.image_id)
            if stage.name:
                self.stages[stage.name] = state.image_id
        assert state is not None
        unused = sorted(
            k for k in self.options.build_args
            if k not in self.used_args and k not in BUILTIN_ARGS
        )
        if unused:
            self.out("[Warning] One or more build-args %s were not consumed\n" % ("[" + " ".join(unused) + "]",))
        image_id = state.image_id
        if not image_id:
            raise BuildFailed("No image was generated. Is your Dockerfile empty?")
        self.out("Successfully built %s\n" % (short_id(image_id),))
        for tag in self.options.tags:
            ref = parse_normalized_named(tag)
            if not ref.tag:
                ref = ref.with_tag("latest")
            await self.b.images.tag(image_id, ref.name, ref.tag)
            self.out("Successfully tagged %s\n" % (ref.familiar_string(),))
        if self.options.quiet:
            self.emit({"stream": image_id + "\n"})
        return image_id

    # -- FROM --------------------------------------------------------------

    async def _from(self, stage) -> StageState:
        self._begin_step(stage.original)
        args = {k: v for k, v in self.meta_args.items() if v is not None}
        base = process_word(stage.base, args)
        if base.lower() in self.stages:
            image_id = self.stages[base.lower()]
        elif base.isdigit() and int(base) < len(self.stage_ids):
            image_id = self.stage_ids[int(base)]
        elif base == "scratch":
            image_id = ""
        else:
            image_id = await self._base_image(base, stage.platform)
        if image_id:
            self.out(" ---> %s\n" % (short_id(image_id),))
            whole = self.b.images.image_config(image_id)
            config = copy.deepcopy(whole.get("config") or {}) or empty_container_config()
            base_doc = {k: whole.get(k) for k in ("os", "architecture", "variant") if whole.get(k)}
        else:
            self.out(" ---> \n")
            config = empty_container_config()
            config["Env"] = [DEFAULT_PATH]
            base_doc = {}
        if not config.get("Env"):
            config["Env"] = [DEFAULT_PATH] if not image_id else config.get("Env")
        config["Image"] = image_id
        state = StageState(image_id=image_id, config=config, base=base_doc, stage_name=stage.name)
        triggers = list(config.get("OnBuild") or [])
        if triggers:
            state.config["OnBuild"] = None
            self.out("# Executing %d build trigger%s\n" % (len(triggers), "s" if len(triggers) > 1 else ""))
            for text in triggers:
                name, _, value = text.strip().partition(" ")
                await self._dispatch(state, Instruction(name.upper(), value.strip(), text, 0), trigger=True)
        return state

    async def _base_image(self, name: str, platform: str) -> str:
        if not self.options.pull:
            try:
                return self.b.images.get(name).id
            except NotFound:
                pass
        ref = parse_normalized_named(name)
        tag = ref.digest or ref.tag or "latest"
        auth = self.options.auth_configs.get(ref.domain) or None
        if ref.domain == "docker.io":
            auth = auth or self.options.auth_configs.get("https://index.docker.io/v1/")

        await self.b.images.pull_image(
            ref.trimmed().familiar_string(), tag, platform or self.options.platform, auth, self.progress,
        )
        return self.b.images.get(str(ref if ref.tag or ref.digest else ref.with_tag("latest"))).id

    # -- the other instructions ----------------------------------------------

    def _env(self, state: StageState) -> Dict[str, str]:
        env: Dict[str, str] = {}
        for key, value in state.declared.items():
            if value is not None:
                env[key] = value
        for item in state.config.get("Env") or []:
            k, _, v = item.partition("=")
            env[k] = v
        return env

    async def _dispatch(self, state: StageState, ins: Instruction, trigger: bool = False) -> None:
        if not trigger:
            self._begin_step(ins.original)
        handler = getattr(self, "_do_" + ins.name.lower(), None)
        if handler is None or ins.name == "FROM":
            raise BuildFailed("%s is not allowed as an ONBUILD trigger" % (ins.name,))
        await handler(state, ins)

    async def _commit_config(
        self, state: StageState, config: dict, comment: str, whole: bool = False, layer=None
    ) -> None:
        """A config-only step: the cached image, or a new one (with the
        layer C{layer()} makes, if any: WORKDIR's directory)."""
        probe = copy.deepcopy(config)
        probe["Cmd"] = DEFAULT_SHELL + (["#(nop) " + comment] if whole else ["#(nop) ", comment])
        probe["Image"] = state.image_id
        hit = await self._cached(state, probe)
        if hit is None:
            # dockerd makes (and removes) a container for these steps; the
            # image does not depend on one.
            container_id = os.urandom(32).hex()
            self.out(" ---> Running in %s\n" % (container_id[:12],))
            config = copy.deepcopy(config)
            source = (await layer()) if layer is not None else None
            image_id = await self.b.images.add_child(
                state.image_id, source, container_config=probe, config=image_config(config),
                container_id=container_id, base=state.base, author=state.author,
            )
            self.out("Removing intermediate container %s\n" % (container_id[:12],))
            hit = image_id
        self._advance(state, hit, config)

    async def _cached(self, state: StageState, probe: dict) -> Optional[str]:
        if self.options.no_cache:
            return None
        hit = self.b.images.cached_child(state.image_id, probe)
        if hit is not None and self.options.cache_from and hit not in self._cache_sources():
            hit = None
        if hit is None and self.options.cache_from:
            hit = await self._history_cache(state, probe)
        if hit is not None:
            self.out(" ---> Using cache\n")
        return hit

    async def _history_cache(self, state: StageState, probe: dict) -> Optional[str]:
        """The --cache-from images as dockerd reads them when they came
        without their parents: by their history."""
        self._cache_sources()
        found = self.b.images.history_cache(state.image_id, probe, self._named_sources)
        if found is None:
            return None
        if "id" in found:
            return found["id"]
        target, index = found["restore"]
        # dockerd follows that one image from here on.
        self._named_sources = [target]
        return await self.b.images.restore_cached(state.image_id, target, index, probe)

    def _cache_sources(self) -> set:
        """The --cache-from images and their ancestors (names not found are
        left out, as dockerd warns and goes on)."""
        if self._sources is None:
            self._sources = set()
            for name in self.options.cache_from:
                try:
                    image = self.b.images.get(name)
                except DockerError:
                    log.warn("build: --cache-from {name}: no such image", name=name)
                    continue
                image_id = image.id
                self._named_sources.append(image_id)
                while image_id and image_id not in self._sources:
                    self._sources.add(image_id)
                    try:
                        image_id = self.b.images.image_config(image_id).get("parent") or ""
                    except KeyError:
                        break  # a parent named in a loaded config, not here
        return self._sources

    def _advance(self, state: StageState, image_id: str, config: dict) -> None:
        state.image_id = image_id
        state.config = copy.deepcopy(config)
        state.config["Image"] = image_id
        self.out(" ---> %s\n" % (short_id(image_id),))

    def _words(self, state: StageState, ins: Instruction) -> List[str]:
        return process_words(ins.value, self._env(state))


    def _arg_pair(self, ins: Instruction, env: Dict[str, str]) -> Tuple[str, Optional[str]]:
        words = process_words(ins.value, env)
        if len(words) != 1:
            raise BuildFailed("ARG requires exactly one argument")
        key, eq, value = words[0].partition("=")
        return key, (value if eq else None)


    # -- COPY and ADD ----------------------------------------------------------


    # -- RUN ---------------------------------------------------------------


