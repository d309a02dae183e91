"""
The Dockerfile instructions `docker import --change` and `docker commit
--change` apply to a container config, as dockerd's BuildFromConfig:
CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, USER, VOLUME,
WORKDIR.  Lines are split by dockerfile-parse (continuation lines,
comments), words by L{twistedock.backend.images.shell}.
"""

import io
import json
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ... import golang
from ...errors import InvalidParameter
from .shell import ShellLex, parse_words

#: What dockerd lets an import (or a commit) change.
VALID_CHANGE_COMMANDS = (
    "cmd",
    "entrypoint",
    "healthcheck",
    "env",
    "expose",
    "label",
    "onbuild",
    "user",
    "volume",
    "workdir",
)

DEFAULT_SHELL = ["/bin/sh", "-c"]


def _env_map(env: Optional[List[str]]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in env or []:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _json_array(rest: str) -> Optional[List[str]]:
    """The exec form: a JSON array of strings, or None for the shell form."""
    text = rest.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise InvalidParameter(
            "when using JSON array syntax, arrays must be comprised of strings only"
        )
    return value


def _name_values(rest: str, key: str) -> List[Tuple[str, str]]:
    """The parser's parseNameVal: C{KEY name value} or C{KEY a=b c=d}."""
    words = parse_words(rest)
    if not words:
        return []
    if "=" not in words[0]:
        parts = re.split(r"\s+", rest.strip(), maxsplit=1)
        if len(parts) < 2:
            raise InvalidParameter("%s must have two arguments" % (key,))
        return [(parts[0], parts[1])]
    pairs = []
    for word in words:
        if "=" not in word:
            raise InvalidParameter(
                "Syntax error - can't find = in %s. Must be of the form: name=value"
                % (json.dumps(word),)
            )
        name, _, value = word.partition("=")
        pairs.append((name, value))
    return pairs


def _split_flags(rest: str) -> Tuple[Dict[str, str], str]:
    """Leading C{--name=value} words (the parser's builder flags)."""
    flags: Dict[str, str] = {}
    text = rest.lstrip()
    while text.startswith("--"):
        match = re.match(r"--(\S*)\s*", text)
        word = match.group(1)
        if word == "":
            text = text[match.end() :]
            break
        name, eq, value = word.partition("=")
        flags[name] = value if eq else "true"
        text = text[match.end() :]
    return flags, text


def _port_specs(ports: Iterable[str]) -> List[str]:
    """nat.ParsePortSpecs for EXPOSE: the C{port/proto} keys to expose."""
    out = []
    for raw in ports:
        spec = raw.rsplit(":", 1)[-1] if raw.count(":") else raw
        port, slash, proto = spec.partition("/")
        proto = proto if slash else "tcp"
        if port == "":
            raise InvalidParameter("No port specified: %s<empty>" % (raw,))
        start, dash, end = port.partition("-")
        try:
            first = int(start, 10)
            last = int(end, 10) if dash else first
            if not (0 <= first <= 65535 and 0 <= last <= 65535) or last < first:
                raise ValueError(port)
        except ValueError:
            raise InvalidParameter("Invalid containerPort: %s" % (port,))
        if proto.lower() not in ("tcp", "udp", "sctp"):
            raise InvalidParameter("Invalid proto: %s" % (proto,))
        for number in range(first, last + 1):
            out.append("%d/%s" % (number, proto.lower()))
    return out


def _healthcheck(rest: str) -> dict:
    flags, text = _split_flags(rest)
    words = text.split(None, 1)
    if not words:
        raise InvalidParameter("HEALTHCHECK requires at least one argument")
    kind = words[0].upper()
    args = words[1] if len(words) > 1 else ""
    if kind == "NONE":
        if args.strip():
            raise InvalidParameter("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    for name in flags:
        if name not in ("interval", "timeout", "start-period", "start-interval", "retries"):
            raise InvalidParameter("Unknown flag: %s" % (name,))
    if kind != "CMD":
        raise InvalidParameter("Unknown type %s in HEALTHCHECK (try CMD)" % (json.dumps(kind),))
    exec_form = _json_array(args)
    if exec_form is not None:
        command = ["CMD"] + exec_form
    else:
        command = ["CMD-SHELL", args.strip()] if args.strip() else []
    if len(command) <= 1:
        raise InvalidParameter("Missing command after HEALTHCHECK CMD")
    health: Dict[str, Any] = {"Test": command}
    for flag, key in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ):
        value = flags.get(flag, "")
        if not value:
            continue
        try:
            duration = golang.parse_duration(value)
        except ValueError as e:
            raise InvalidParameter(str(e))
        if duration < 1_000_000:
            raise InvalidParameter("Interval %s cannot be less than 1ms" % (json.dumps(flag),))
        health[key] = duration
    retries = flags.get("retries", "")
    if retries:
        try:
            count = int(retries, 10)
        except ValueError:
            raise InvalidParameter('strconv.ParseInt: parsing "%s": invalid syntax' % (retries,))
        if count < 1:
            raise InvalidParameter("--retries must be at least 1 (not %d)" % (count,))
        health["Retries"] = count
    return health


def _instructions(changes: Sequence[str]) -> List[Tuple[str, str]]:
    """Split the changes into (instruction, rest of the line), as the
    Dockerfile parser does (continuation lines, comments)."""
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(fileobj=io.BytesIO(), env_replace=False)
    parser.content = "\n".join(changes) + "\n"
    out = []
    for item in parser.structure:
        out.append((item["instruction"], item["value"]))
    return out


def _parse(changes: Sequence[str]) -> List[Tuple[str, Any]]:
    """The instructions with their arguments, checked as the parser checks
    them, every line first."""
    parsed: List[Tuple[str, Any]] = []
    for instruction, rest in _instructions(changes):
        command = instruction.lower()
        if command in ("env", "label"):
            parsed.append((command, _name_values(rest, instruction.upper())))
        elif command in ("cmd", "entrypoint", "run"):
            parsed.append((command, (_json_array(rest), rest)))
        else:
            parsed.append((command, rest))
    for command, _ in parsed:
        if command not in VALID_CHANGE_COMMANDS:
            raise InvalidParameter("%s is not a valid change command" % (command,))
    return parsed


class _Builder:
    """One config being changed, instruction after instruction."""

    def __init__(self, config: dict) -> None:
        self.config = config
        #: Whether a CMD with arguments came (a later ENTRYPOINT keeps it).
        self.cmd_set = False

    def apply(self, command: str, args: Any) -> None:
        lex = ShellLex(_env_map(self.config.get("Env")))
        getattr(self, "_" + command)(args, lex)

    def _env(self, args, lex: ShellLex) -> None:
        if not args:
            raise InvalidParameter("ENV requires at least one argument")
        pairs = []
        for key, value in args:
            if not key:
                raise InvalidParameter("ENV names can not be blank")
            pairs.append((lex.process_word(key), lex.process_word(value)))
        current = list(self.config.get("Env") or [])
        for key, value in pairs:
            item = "%s=%s" % (key, value)
            for i, existing in enumerate(current):
                if existing.split("=", 1)[0] == key:
                    current[i] = item
                    break
            else:
                current.append(item)
        self.config["Env"] = current

    def _label(self, args, lex: ShellLex) -> None:
        if not args:
            raise InvalidParameter("LABEL requires at least one argument")
        labels = dict(self.config.get("Labels") or {})
        for key, value in args:
            if not key:
                raise InvalidParameter("LABEL names can not be blank")
            labels[lex.process_word(key)] = lex.process_word(value)
        self.config["Labels"] = labels

    def _command_line(self, args) -> Tuple[List[str], List[str]]:
        """CMD's and ENTRYPOINT's (arguments given, the command line)."""
        exec_form, rest = args
        if exec_form is not None:
            return list(exec_form), list(exec_form)
        given = [rest.strip()] if rest.strip() else []
        return given, list(self.config.get("Shell") or DEFAULT_SHELL) + given

    def _cmd(self, args, lex: ShellLex) -> None:
        given, line = self._command_line(args)
        self.config["Cmd"] = line
        self.cmd_set = self.cmd_set or bool(given)

    def _entrypoint(self, args, lex: ShellLex) -> None:
        given, line = self._command_line(args)
        # An empty ENTRYPOINT clears it.
        self.config["Entrypoint"] = line if given else None
        if not self.cmd_set:
            self.config["Cmd"] = None

    def _expose(self, args, lex: ShellLex) -> None:
        words = parse_words(args)
        if not words:
            raise InvalidParameter("EXPOSE requires at least one argument")
        ports: List[str] = []
        for word in words:
            ports.extend(lex.process_words(word))
        exposed = dict(self.config.get("ExposedPorts") or {})
        for key in _port_specs(ports):
            exposed[key] = {}
        self.config["ExposedPorts"] = exposed

    def _user(self, args, lex: ShellLex) -> None:
        if not args.strip():
            raise InvalidParameter("USER requires exactly one argument")
        self.config["User"] = lex.process_word(args.strip())

    def _volume(self, args, lex: ShellLex) -> None:
        listed = _json_array(args)
        if listed is None:
            listed = parse_words(args)
        if not listed:
            raise InvalidParameter("VOLUME requires at least one argument")
        volumes = dict(self.config.get("Volumes") or {})
        for item in listed:
            path = lex.process_word(item).strip()
            if not path:
                raise InvalidParameter("VOLUME specified can not be an empty string")
            volumes[path] = {}
        self.config["Volumes"] = volumes

    def _workdir(self, args, lex: ShellLex) -> None:
        if not args.strip():
            raise InvalidParameter("WORKDIR requires exactly one argument")
        requested = lex.process_word(args.strip())
        if not requested:
            raise InvalidParameter("cannot normalize nothing")
        if not requested.startswith("/"):
            requested = os.path.normpath(
                os.path.join("/", self.config.get("WorkingDir") or "", requested)
            )
        self.config["WorkingDir"] = requested

    def _onbuild(self, args, lex: ShellLex) -> None:
        expression = args.strip()
        if not expression:
            raise InvalidParameter("ONBUILD requires at least one argument")
        trigger = expression.split(None, 1)[0].upper()
        if trigger == "ONBUILD":
            raise InvalidParameter("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("MAINTAINER", "FROM"):
            raise InvalidParameter("%s isn't allowed as an ONBUILD trigger" % (trigger,))
        self.config["OnBuild"] = list(self.config.get("OnBuild") or []) + [expression]

    def _healthcheck(self, args, lex: ShellLex) -> None:
        self.config["Healthcheck"] = _healthcheck(args)


def apply_changes(config: dict, changes: Sequence[str]) -> dict:
    """dockerd's BuildFromConfig for import: C{config} (a container.Config)
    with the C{changes} (Dockerfile instructions) applied."""
    if not changes:
        return config
    parsed = _parse(changes)
    builder = _Builder(json.loads(json.dumps(config)))
    for command, args in parsed:
        builder.apply(command, args)
    return builder.config
