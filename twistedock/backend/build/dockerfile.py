"""
A Dockerfile read with dockerfile-parse into stages of instructions, checked
as moby's parser checks it (unknown instructions, a first instruction other
than FROM or ARG), and the small parsers of instruction arguments: flags,
JSON (exec) forms, key=value pairs.
"""

import io
import json
from typing import Dict, List, Optional, Tuple

import attr
from dockerfile_parse import DockerfileParser

from ...errors import InvalidParameter

INSTRUCTIONS = frozenset(
    (
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
        "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
        "WORKDIR",
    )
)


@attr.s(frozen=True, auto_attribs=True)
class Instruction:
    #: Upper-case name (RUN).
    name: str
    #: The arguments, continuation lines joined, as dockerfile-parse gives them.
    value: str
    #: What "Step i/n : ..." shows (moby's node.Original).
    original: str
    line: int


@attr.s(auto_attribs=True)
class Stage:
    base: str
    name: str
    platform: str
    original: str
    commands: List[Instruction] = attr.ib(factory=list)


@attr.s(auto_attribs=True)
class Dockerfile:
    meta_args: List[Instruction]
    stages: List[Stage]


def parse_dockerfile(content: bytes) -> Dockerfile:
    """The stages of a Dockerfile; L{InvalidParameter} with moby's
    "dockerfile parse error line N: ..." messages."""
    parser = DockerfileParser(fileobj=io.BytesIO(content))
    instructions: List[Instruction] = []
    for item in parser.structure:
        word = item["instruction"]
        if word == "COMMENT":
            continue
        name = word.upper()
        line = item["startline"] + 1
        if name not in INSTRUCTIONS:
            raise InvalidParameter(
                "dockerfile parse error line %d: unknown instruction: %s" % (line, word)
            )
        written = item["content"].split(None, 1)[0] if item["content"].strip() else word
        value = item["value"]
        original = (written + " " + value) if value else written
        instruction = Instruction(name, value, original, line)
        _check_flags(instruction)
        instructions.append(instruction)
    if not instructions:
        raise InvalidParameter("the Dockerfile (Dockerfile) cannot be empty")
    meta: List[Instruction] = []
    stages: List[Stage] = []
    for ins in instructions:
        if ins.name == "FROM":
            stages.append(_stage(ins))
        elif not stages:
            if ins.name != "ARG":
                raise InvalidParameter(
                    "dockerfile parse error line %d: %s"
                    % (ins.line, "no build stage in current context")
                )
            meta.append(ins)
        else:
            stages[-1].commands.append(ins)
    if not stages:
        raise InvalidParameter("dockerfile parse error line %d: no build stage in current context" % (
            instructions[-1].line,))
    return Dockerfile(meta, stages)


#: The flags each instruction takes in dockerd 20.10's parser.
FLAGS = {
    "FROM": ("platform",),
    "COPY": ("from", "chown", "chmod"),
    "ADD": ("chown", "chmod"),
    "RUN": ("mount", "network", "security"),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "retries"),
}

#: Flags parsed but refused by the classic builder (BuildKit's).
BUILDKIT_FLAGS = {"COPY": ("chmod",), "ADD": ("chmod",), "RUN": ("mount", "network", "security")}


def _check_flags(ins: Instruction) -> None:
    allowed = FLAGS.get(ins.name)
    if allowed is not None:
        parse_flags(ins.value, allowed, ins)


def _stage(ins: Instruction) -> Stage:
    flags, rest = parse_flags(ins.value, ("platform",), ins)
    words = rest.split()
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
    elif len(words) == 1:
        name = ""
    else:
        raise InvalidParameter(
            "dockerfile parse error line %d: FROM requires either one or three arguments"
            % (ins.line,)
        )
    return Stage(base=words[0], name=name, platform=flags.get("platform", ""), original=ins.original)


def parse_flags(value: str, allowed: Tuple[str, ...], ins: Instruction) -> Tuple[Dict[str, str], str]:
    """Leading C{--name=value} flags and the rest."""
    flags: Dict[str, str] = {}
    rest = value.lstrip()
    while rest.startswith("--"):
        word, _, tail = rest.partition(" ")
        if word == "--":
            rest = tail.lstrip()
            break
        key, eq, val = word[2:].partition("=")
        if key not in allowed:
            raise InvalidParameter(
                "dockerfile parse error line %d: Unknown flag: %s" % (ins.line, key)
            )
        flags[key] = val if eq else "true"
        rest = tail.lstrip()
    return flags, rest


def json_form(value: str) -> Optional[List[str]]:
    """The exec (JSON array of strings) form of C{value}, or None."""
    text = value.strip()
    if not text.startswith("["):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        return None
    return parsed
