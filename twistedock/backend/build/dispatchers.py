"""
The classic builder's dispatchers (moby's builder/dockerfile/dispatchers.go):
one method per instruction other than FROM and RUN, each changing the
stage's config and making its image (COPY and ADD with a layer, through
L{twistedock.backend.build.copying}).
"""

import copy
import os
import tempfile
from typing import Dict, List, Tuple

from ... import golang
from ...errors import DockerError, NotFound
from . import copying
from .dockerfile import BUILDKIT_FLAGS, FLAGS, Instruction, json_form, parse_flags
from .lex import process_word, process_words
from ..spec.signals import parse_signal
from .state import DEFAULT_SHELL, BuildFailed, StageState, image_config


class Dispatchers:
    """The instructions of L{twistedock.backend.build.builder.Build}."""

    async def _do_env(self, state: StageState, ins: Instruction) -> None:
        pairs = _pairs(ins, self._env(state), "ENV")
        config = copy.deepcopy(state.config)
        env = list(config.get("Env") or [])
        for key, value in pairs:
            item = "%s=%s" % (key, value)
            for i, existing in enumerate(env):
                if existing.partition("=")[0] == key:
                    env[i] = item
                    break
            else:
                env.append(item)
        config["Env"] = env
        await self._commit_config(state, config, "ENV " + " ".join("%s=%s" % p for p in pairs))

    async def _do_label(self, state: StageState, ins: Instruction) -> None:
        pairs = _pairs(ins, self._env(state), "LABEL")
        config = copy.deepcopy(state.config)
        labels = dict(config.get("Labels") or {})
        labels.update(pairs)
        config["Labels"] = labels
        await self._commit_config(state, config, "LABEL " + " ".join("%s=%s" % p for p in pairs))

    async def _do_maintainer(self, state: StageState, ins: Instruction) -> None:
        state.author = ins.value.strip()
        await self._commit_config(state, state.config, "MAINTAINER " + state.author)

    async def _do_arg(self, state: StageState, ins: Instruction) -> None:
        key, value = self._arg_pair(ins, self._env(state))
        comment = "ARG " + key + ("=" + value if value is not None else "")
        if value is None and key in self.meta_args:
            value = self.meta_args[key]
        if key in self.options.build_args:
            value = self.options.build_args[key]
            self.used_args.add(key)
        state.declared[key] = value
        await self._commit_config(state, state.config, comment)

    async def _do_workdir(self, state: StageState, ins: Instruction) -> None:
        path = process_word(ins.value.strip(), self._env(state))
        if not path:
            raise BuildFailed("WORKDIR requires exactly one argument")
        if not path.startswith("/"):
            path = os.path.join(state.config.get("WorkingDir") or "/", path)
        path = os.path.normpath(path)
        config = copy.deepcopy(state.config)
        config["WorkingDir"] = path

        async def layer():
            parent_layers = await self._layers_of(state.image_id)
            return await self.b._thread(copying.workdir_layer, path, parent_layers, self.b.tmp_root)

        await self._commit_config(state, config, "WORKDIR " + path, whole=True, layer=layer)

    async def _do_user(self, state: StageState, ins: Instruction) -> None:
        user = process_word(ins.value.strip(), self._env(state))
        config = copy.deepcopy(state.config)
        config["User"] = user
        await self._commit_config(state, config, "USER " + user)

    def _command(self, state: StageState, ins: Instruction) -> Tuple[List[str], bool]:
        parsed = json_form(ins.value)
        if parsed is not None:
            return parsed, False
        shell = list(state.config.get("Shell") or DEFAULT_SHELL)
        return shell + [ins.value.strip()], True

    async def _do_cmd(self, state: StageState, ins: Instruction) -> None:
        cmd, _ = self._command(state, ins)
        config = copy.deepcopy(state.config)
        config["Cmd"] = cmd
        state.cmd_set = True
        await self._commit_config(state, config, "CMD %s" % (golang_q(cmd),))
        state.cmd_set = True

    async def _do_entrypoint(self, state: StageState, ins: Instruction) -> None:
        entrypoint, _ = self._command(state, ins)
        config = copy.deepcopy(state.config)
        config["Entrypoint"] = entrypoint
        if not state.cmd_set:
            config["Cmd"] = None
        await self._commit_config(state, config, "ENTRYPOINT %s" % (golang_q(entrypoint),))

    async def _do_expose(self, state: StageState, ins: Instruction) -> None:
        ports = self._words(state, ins)
        if not ports:
            raise BuildFailed("EXPOSE requires at least one argument")
        config = copy.deepcopy(state.config)
        exposed = dict(config.get("ExposedPorts") or {})
        for port in ports:
            for key in _port_keys(port):
                exposed[key] = {}
        config["ExposedPorts"] = exposed
        await self._commit_config(state, config, "EXPOSE " + " ".join(sorted(ports)))

    async def _do_volume(self, state: StageState, ins: Instruction) -> None:
        volumes = json_form(ins.value)
        if volumes is None:
            volumes = self._words(state, ins)
        if not volumes:
            raise BuildFailed("VOLUME requires at least one argument")
        config = copy.deepcopy(state.config)
        table = dict(config.get("Volumes") or {})
        for v in volumes:
            v = v.strip()
            if not v:
                raise BuildFailed("VOLUME specified can not be an empty string")
            table[v] = {}
        config["Volumes"] = table
        await self._commit_config(state, config, "VOLUME [%s]" % (" ".join(volumes),))

    async def _do_shell(self, state: StageState, ins: Instruction) -> None:
        shell = json_form(ins.value)
        if not shell:
            raise BuildFailed("SHELL requires the arguments to be in JSON form")
        config = copy.deepcopy(state.config)
        config["Shell"] = shell
        await self._commit_config(state, config, "SHELL [%s]" % (" ".join(shell),))

    async def _do_stopsignal(self, state: StageState, ins: Instruction) -> None:
        signal = process_word(ins.value.strip(), self._env(state))
        try:
            parse_signal(signal)
        except DockerError as e:
            raise BuildFailed(str(e))
        config = copy.deepcopy(state.config)
        config["StopSignal"] = signal
        await self._commit_config(state, config, "STOPSIGNAL " + signal)

    async def _do_healthcheck(self, state: StageState, ins: Instruction) -> None:
        flags, rest = parse_flags(ins.value, FLAGS["HEALTHCHECK"], ins)
        word, _, tail = rest.partition(" ")
        config = copy.deepcopy(state.config)
        if word.upper() == "NONE":
            if tail.strip() or flags:
                raise BuildFailed("HEALTHCHECK NONE takes no arguments")
            health = {"Test": ["NONE"]}
        elif word.upper() == "CMD":
            parsed = json_form(tail)
            test = ["CMD"] + parsed if parsed is not None else ["CMD-SHELL", tail.strip()]
            health = {"Test": test}
            for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                              ("start-period", "StartPeriod")):
                if flag in flags:
                    try:
                        health[key] = golang.parse_duration(flags[flag])
                    except (ValueError, TypeError):
                        raise BuildFailed("time: invalid duration %s" % (golang.quote(flags[flag]),))
            if "retries" in flags:
                try:
                    health["Retries"] = int(flags["retries"])
                except ValueError:
                    raise BuildFailed("strconv.ParseInt: parsing %s: invalid syntax" % (golang.quote(flags["retries"]),))
        else:
            raise BuildFailed("Unknown type %s in HEALTHCHECK (try CMD)" % (golang.quote(word),))
        config["Healthcheck"] = health
        await self._commit_config(state, config, _healthcheck_comment(health))

    async def _do_onbuild(self, state: StageState, ins: Instruction) -> None:
        name, _, rest = ins.value.strip().partition(" ")
        upper = name.upper()
        if upper == "ONBUILD":
            raise BuildFailed("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if upper in ("MAINTAINER", "FROM"):
            raise BuildFailed("%s isn't allowed as an ONBUILD trigger" % (upper,))
        expression = upper + " " + rest.strip()
        config = copy.deepcopy(state.config)
        config["OnBuild"] = list(config.get("OnBuild") or []) + [expression]
        await self._commit_config(state, config, "ONBUILD " + expression)

    async def _do_copy(self, state: StageState, ins: Instruction) -> None:
        await self._copy(state, ins, "COPY")

    async def _do_add(self, state: StageState, ins: Instruction) -> None:
        await self._copy(state, ins, "ADD")

    async def _copy(self, state: StageState, ins: Instruction, command: str) -> None:
        flags, rest = parse_flags(ins.value, FLAGS[command], ins)
        _refuse_buildkit_flags(command, flags)
        env = self._env(state)
        words = json_form(rest)
        if words is not None:
            words = [process_word(w, env) for w in words]
        else:
            words = process_words(rest, env)
        if len(words) < 2:
            raise BuildFailed("%s requires at least two arguments, but only one was provided. Destination could not be determined." % (command,))
        patterns, dest = words[:-1], words[-1]
        shown_dest = dest
        if not dest.startswith("/"):
            workdir = state.config.get("WorkingDir") or "/"
            trailing = dest.endswith("/") or dest in (".", "./")
            dest = os.path.join(workdir, dest)
            if trailing and not dest.endswith("/"):
                dest += "/"
        parent_layers = await self._layers_of(state.image_id)
        scratch = os.path.join(self.context, ".twistedock-download")
        try:
            if flags.get("from"):
                source_id = await self._copy_from_image(flags["from"])
                layers = await self._layers_of(source_id)
                sources = await self.b._thread(copying.image_sources, layers, patterns, command)
            else:
                sources = []
                local = []
                for pattern in patterns:
                    if command == "ADD" and pattern.startswith(("http://", "https://")):
                        if local:
                            sources += await self.b._thread(copying.context_sources, self.context, local, command)
                            local = []
                        source = await self._download(pattern, scratch, dest)
                        sources.append(source)
                    else:
                        local.append(pattern)
                if local:
                    sources += await self.b._thread(copying.context_sources, self.context, local, command)
            owner = await self.b._thread(copying.resolve_chown, flags.get("chown", ""), parent_layers)
            digest = await self.b._thread(copying.content_hash, sources)
            dest_dir = await self.b._thread(copying.dest_is_directory, dest, len(sources), parent_layers)
            probe = copy.deepcopy(state.config)
            if flags.get("chown"):
                # dockerd 20.10 writes it so, without a space.
                digest = "--chown=%s%s" % (flags["chown"], digest)
            probe["Cmd"] = DEFAULT_SHELL + ["#(nop) %s %s in %s " % (command, digest, shown_dest)]
            probe["Image"] = state.image_id
            hit = await self._cached(state, probe)
            if hit is None:
                tar = await self.b._thread(
                    copying.write_copy_layer, sources, dest, dest_dir, owner, parent_layers,
                    command == "ADD", self.b.tmp_root,
                )
                hit = await self.b.images.add_child(
                    state.image_id, tar, container_config=probe,
                    config=image_config(state.config), base=state.base, author=state.author,
                )
        except copying.CopyError as e:
            raise BuildFailed(str(e))
        except OSError as e:
            raise BuildFailed("%s failed: %s" % (command, e))
        self._advance(state, hit, state.config)

    async def _copy_from_image(self, name: str) -> str:
        key = name.lower()
        if key in self.stages:
            return self.stages[key]
        if name.isdigit():
            index = int(name)
            if index < len(self.stage_ids):
                return self.stage_ids[index]
            raise BuildFailed("invalid from flag value %s: refers to current build stage" % (name,))
        try:
            return self.b.images.get(name).id
        except NotFound:
            pass
        try:
            return await self._base_image(name, "")
        except DockerError as e:
            raise BuildFailed("invalid from flag value %s: %s" % (name, e))

    async def _layers_of(self, image_id: str) -> Tuple[str, ...]:
        """The image's layer directories, top first ("" for scratch)."""
        if not image_id:
            return ()
        return tuple(reversed(self.b.images.get(image_id).layer_dirs))

    async def _download(self, url: str, scratch: str, dest: str) -> copying.Source:
        import treq

        try:
            response = await treq.get(url, unbuffered=True)
            if response.code >= 400:
                raise BuildFailed(
                    "failed to GET %s with status %d %s: " % (url, response.code, response.phrase.decode("latin-1"))
                )
            body = await response.content()
        except DockerError:
            raise
        except Exception as e:
            raise BuildFailed("Get %s: %s" % (golang.quote(url), e))
        name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "__unnamed__"
        path = await self.b._thread(_save_download, scratch, body)
        mtime = None
        modified = response.headers.getRawHeaders("last-modified")
        if modified:
            from email.utils import parsedate_to_datetime

            try:
                mtime = parsedate_to_datetime(modified[0]).timestamp()
            except (TypeError, ValueError):
                mtime = None
        return copying.Source(path, name, False, mode=0o600, mtime=mtime)


def _save_download(scratch: str, body: bytes) -> str:
    os.makedirs(scratch, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=scratch)
    with os.fdopen(fd, "wb") as f:
        f.write(body)
    return path


def _refuse_buildkit_flags(command: str, flags: dict) -> None:
    for flag in BUILDKIT_FLAGS.get(command, ()):
        if flag in flags:
            raise BuildFailed(
                "the --%s option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ "
                "to learn how to build images with BuildKit enabled" % (flag,)
            )


def _pairs(ins: Instruction, env: Dict[str, str], name: str) -> List[Tuple[str, str]]:
    """ENV/LABEL arguments: C{k=v ...}, or the legacy C{k value words}."""
    words = process_words(ins.value, env)
    if not words:
        raise BuildFailed("%s requires at least one argument" % (name,))
    if "=" not in words[0]:
        raw = ins.value.strip().split(None, 1)
        if len(raw) < 2:
            raise BuildFailed("%s must have two arguments" % (name,))
        return [(process_word(raw[0], env), process_word(raw[1], env))]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise BuildFailed("Syntax error - can't find = in %s. Must be of the form: name=value" % (golang.quote(word),))
        out.append((key, value))
    return out


def golang_q(values: List[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(golang.quote(v) for v in values) + "]"


def _healthcheck_comment(health: dict) -> str:
    """Go's %q of the *HealthConfig, as dockerd 20.10 puts it in history."""
    if health["Test"] == ["NONE"]:
        return "HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" '\\x00'}"
    durations = " ".join(
        golang.quote(golang.format_duration(health.get(key) or 0))
        for key in ("Interval", "Timeout", "StartPeriod")
    )
    retries = health.get("Retries") or 0
    return "HEALTHCHECK &{%s %s %s}" % (golang_q(health["Test"]), durations, _go_char(retries))


def _go_char(value: int) -> str:
    """Go's %q of an integer: a quoted character."""
    if 32 <= value < 127 and chr(value) not in "'\\":
        return "'%s'" % (chr(value),)
    if value < 256:
        return "'\\x%02x'" % (value,)
    return "'\\u%04x'" % (value,)


def _port_keys(spec: str) -> List[str]:
    """EXPOSE's ports as nat.ParsePortSpecs reads them: C{80}, C{53/udp},
    C{8000-8002} (each port of the range)."""
    port, _, proto = spec.partition("/")
    proto = proto or "tcp"
    start, dash, end = port.partition("-")
    try:
        first = int(start)
        last = int(end) if dash else first
    except ValueError:
        raise BuildFailed("Invalid containerPort: %s" % (port,))
    if not (0 <= first <= 65535 and 0 <= last <= 65535) or last < first:
        raise BuildFailed("Invalid containerPort: %s" % (port,))
    return ["%d/%s" % (n, proto.lower()) for n in range(first, last + 1)]
