"""
The image store: image configs keyed by their digest, references
(C{repo:tag}) to them, and the layers they are made of (L{LayerStore}), as
dockerd's graphdriver image service keeps them.

An image's ID is the sha256 of its config JSON bytes, as docker's.  Layout
under C{<data_root>/image/}::

    imagedb/<id hex>        the config JSON, byte for byte (its digest is the ID)
    repositories.json       {"Repositories": {name: {"name:tag": id}},
                             "LastTagTime": {id: time},
                             "Retained": {deleted image id: top chain ID}}
    layers/                 the layer store (see twistedock.backend.layers)

Every file is written atomically (temporary file, fsync, rename); a layer is
unpacked into a temporary directory and renamed into place when complete.
At start (L{ImageStore.load}) leftovers are removed and every layer that no
image (nor a container, see C{Retained}) uses is deleted, so a crash at any
moment leaves no half state: at worst an imported image without its tag.

For the container backend
=========================

- C{ImageStore(reactor, data_root, events)}; C{await store.load()} once at
  start.
- C{store.get(name_or_id) -> Image}: resolve a name as dockerd does (full
  ID, C{sha256:} ID, unique ID prefix, C{name} = C{name:latest},
  C{docker.io/library/name:tag} = C{name:tag}); raises
  L{twistedock.errors.NotFound} ("No such image: name:latest") or
  L{twistedock.errors.InvalidParameter} (a malformed reference).  L{Image}
  has C{id}, C{config} (the whole image config JSON as a dict: C{config}
  holds Cmd, Env, Entrypoint, WorkingDir...), C{repo_tags}, C{diff_ids},
  C{chain_ids}, C{created}, C{size}, C{layer_dirs} (absolute C{diff}
  directories, lowest first: reverse them for overlayfs' C{lowerdir}).
- C{store.get_layer_dirs(image_id) -> list}: the same directories by image
  ID, also for an image deleted with C{force} while a container still uses
  it (its layers stay until no container uses it).
- C{store.set_usage(fn)}: C{fn(image_id) -> [(container_id, running)]}, the
  containers using an image; until it is set no container uses any image.
  Deleting an image a container uses is refused (409) as dockerd refuses it.
- C{await store.collect_garbage()}: call after removing a container, so the
  layers of an image deleted while that container used it go too.
- As an C{IInventory} for the system backend: C{counts()} and
  C{disk_usage(types)}.

Blocking work (unpacking, hashing, directory sizes, every file write) runs
in the reactor's thread pool; the reactor thread only orchestrates, and
changes to the store are serialised by one lock.
"""

import calendar
import hashlib
import io
import json
import os
import re
import time
from typing import Any, BinaryIO, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import attr
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from .. import __version__, archive
from ..atomic import write_atomic
from ..deferreds import shield
from ..logs import Logger
from ..errors import (
    Conflict,
    DockerError,
    Forbidden,
    InternalError,
    InvalidParameter,
    NotFound,
    NotImplementedYet,
)
from ..filters import Filters
from .. import golang
from ..routers.image import IImageBackend, summary_json
from .events import EventLog
from .system import IInventory
from .layers import Layer, LayerStore, StagedLayer, chain_ids

log = Logger()


# =============================================================================
# References (distribution/reference)
# =============================================================================

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_NAME = "library"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN + r"/)?" + _REMOTE_NAME

REFERENCE_RE = re.compile(r"^(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?$")
ANCHORED_NAME_RE = re.compile(r"^(?:(" + _DOMAIN + r")/)?(" + _REMOTE_NAME + r")$")
ANCHORED_TAG_RE = re.compile(r"^" + _TAG + r"$")
ANCHORED_ID_RE = re.compile(r"^[a-f0-9]{64}$")

_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_ANCHORED = re.compile(r"^" + _DIGEST + r"$")


def validate_digest(text: str) -> Optional[str]:
    """go-digest's Validate: None, or why C{text} is not a digest."""
    index = text.find(":")
    if index <= 0 or index + 1 == len(text):
        return "invalid checksum digest format"
    algorithm, encoded = text[:index], text[index + 1 :]
    if algorithm not in _DIGEST_LENGTHS:
        if not _DIGEST_ANCHORED.match(text):
            return "invalid checksum digest format"
        return "unsupported digest algorithm"
    if len(encoded) != _DIGEST_LENGTHS[algorithm]:
        return "invalid checksum digest length"
    if not re.match(r"^[a-f0-9]*$", encoded):
        return "invalid checksum digest format"
    return None


@attr.s(frozen=True, auto_attribs=True)
class Reference:
    """An image reference: a repository with an optional tag and digest, or
    (no C{path}) a bare digest."""

    domain: str = ""
    path: str = ""
    tag: Optional[str] = None
    digest: Optional[str] = None

    @property
    def named(self) -> bool:
        return bool(self.path)

    @property
    def name(self) -> str:
        return "%s/%s" % (self.domain, self.path) if self.domain else self.path

    def __str__(self) -> str:
        if not self.path:
            return self.digest or ""
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def familiar_name(self) -> str:
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        parts = self.path.split("/")
        if len(parts) == 2 and parts[0] == OFFICIAL_REPO_NAME:
            return parts[1]
        return self.path

    def familiar_string(self) -> str:
        if not self.path:
            return self.digest or ""
        text = self.familiar_name()
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def with_tag(self, tag: str) -> "Reference":
        if not ANCHORED_TAG_RE.match(tag):
            raise InvalidParameter("invalid tag format")
        return attr.evolve(self, tag=tag)

    def tag_name_only(self) -> "Reference":
        """The default tag added to a bare repository name."""
        if self.named and not self.tag and not self.digest:
            return attr.evolve(self, tag=DEFAULT_TAG)
        return self

    def trimmed(self) -> "Reference":
        return attr.evolve(self, tag=None, digest=None)


def parse_reference(text: str) -> Reference:
    """reference.Parse: C{text} as it is (no default domain)."""
    match = REFERENCE_RE.match(text)
    if match is None:
        if text == "":
            raise InvalidParameter("repository name must have at least one component")
        if REFERENCE_RE.match(text.lower()):
            raise InvalidParameter("repository name must be lowercase")
        raise InvalidParameter("invalid reference format")
    name, tag, digest = match.group(1), match.group(2), match.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidParameter(
            "repository name must not be more than %d characters" % (NAME_TOTAL_LENGTH_MAX,)
        )
    if digest:
        problem = validate_digest(digest)
        if problem:
            raise InvalidParameter(problem)
    name_match = ANCHORED_NAME_RE.match(name)
    domain, path = (name_match.group(1) or "", name_match.group(2)) if name_match else ("", name)
    return Reference(domain=domain, path=path, tag=tag or None, digest=digest or None)


def split_docker_domain(name: str) -> Tuple[str, str]:
    index = name.find("/")
    first = name[:index]
    if index == -1 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[index + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_NAME + "/" + remainder
    return domain, remainder


def parse_normalized_named(text: str) -> Reference:
    """reference.ParseNormalizedNamed: C{busybox} is C{docker.io/library/busybox}."""
    if ANCHORED_ID_RE.match(text):
        raise InvalidParameter(
            "invalid repository name (%s), cannot specify 64-byte hexadecimal strings" % (text,)
        )
    domain, remainder = split_docker_domain(text)
    colon = remainder.find(":")
    remote = remainder[:colon] if colon > -1 else remainder
    if remote.lower() != remote:
        raise InvalidParameter("invalid reference format: repository name must be lowercase")
    ref = parse_reference(domain + "/" + remainder)
    if not ref.named:
        raise InvalidParameter("reference %s has no name" % (ref,))
    return ref


def parse_any_reference(text: str) -> Reference:
    """reference.ParseAnyReference: a bare ID or digest, or a name."""
    if ANCHORED_ID_RE.match(text):
        return Reference(digest="sha256:" + text)
    if validate_digest(text) is None:
        return Reference(digest=text)
    return parse_normalized_named(text)


def repo_tag_reference(repo: str, tag: str) -> Optional[Reference]:
    """The C{repo} and C{tag} form values as one tagged reference (None
    without C{repo}); C{latest} when no tag is given."""
    if not repo:
        return None
    ref = parse_normalized_named(repo)
    if ref.digest:
        raise InvalidParameter("cannot import digest reference")
    if tag:
        return ref.with_tag(tag)
    return ref.tag_name_only()


def short_id(image_id: str) -> str:
    """stringid.TruncateID: 12 hex digits, algorithm dropped."""
    text = image_id.split(":", 1)[1] if ":" in image_id else image_id
    return text[:12]


# =============================================================================
# docker's timetypes: --since, --until and until filters
# =============================================================================


def get_timestamp(value: str, now_ns: int) -> int:
    """timetypes.GetTimestamp + ParseTimestamps: a duration before now, a
    Unix time or an RFC 3339-like time, as nanoseconds since the epoch."""
    if value != "0":
        try:
            return now_ns - golang.parse_duration(value)
        except ValueError:
            pass
    parsed = _parse_time_value(value)
    if parsed is not None:
        return parsed
    if "-" in value:
        raise InternalError('parsing time "%s": cannot parse "%s" as a time' % (value, value))
    match = re.match(r"^(\d+)(?:\.(\d{1,9}))?$", value)
    if match is None:
        raise InternalError('failed to parse value as time or duration: "%s"' % (value,))
    seconds = int(match.group(1))
    nanos = int((match.group(2) or "").ljust(9, "0")) if match.group(2) else 0
    return seconds * 1_000_000_000 + nanos


_LOCAL_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S.%f", True),
    ("%Y-%m-%dT%H:%M:%S", False),
    ("%Y-%m-%dT%H:%M", False),
    ("%Y-%m-%dT%H", False),
    ("%Y-%m-%d", False),
)


def _parse_time_value(value: str) -> Optional[int]:
    exact = golang.parse_rfc3339(value)
    if exact is not None:
        return exact
    if any(c in value for c in "zZ+") or value.count("-") == 3:
        match = re.match(r"^(.*?)([Zz]|[+-]\d{2}:\d{2})$", value)
        if match is None:
            return None
        local = _parse_local(match.group(1))
        if local is None:
            return None
        zone = match.group(2)
        if zone in ("Z", "z"):
            return local
        sign = 1 if zone[0] == "+" else -1
        return local - sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * 1_000_000_000
    local = _parse_local(value)
    if local is None:
        return None
    # Go parses these in the daemon's local zone.
    offset = -time.altzone if time.localtime().tm_isdst > 0 else -time.timezone
    return local - offset * 1_000_000_000


def _parse_local(text: str) -> Optional[int]:
    """A zone-less time as if in UTC, in nanoseconds."""
    for fmt, fractional in _LOCAL_FORMATS:
        candidate = text
        nanos = 0
        if fractional:
            head, dot, fraction = text.partition(".")
            if not dot or not fraction.isdigit():
                continue
            nanos = int((fraction + "000000000")[:9])
            candidate = head
            fmt = fmt[: -len(".%f")]
        try:
            parsed = time.strptime(candidate, fmt)
        except ValueError:
            continue
        return calendar.timegm(parsed) * 1_000_000_000 + nanos
    return None


# =============================================================================
# Changes: the Dockerfile instructions `docker import --change` applies
# =============================================================================

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
_ESCAPE = "\\"


def empty_container_config() -> dict:
    """A container.Config with nothing set, as dockerd writes it in images."""
    return {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": None,
        "Cmd": None,
        "Image": "",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": None,
    }


#: container.Config's fields in Go's order, and those that are omitted when empty.
CONTAINER_CONFIG_ORDER = (
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
)
CONTAINER_CONFIG_OMITEMPTY = frozenset(
    (
        "ExposedPorts",
        "Healthcheck",
        "ArgsEscaped",
        "NetworkDisabled",
        "MacAddress",
        "StopSignal",
        "StopTimeout",
        "Shell",
    )
)


def ordered_container_config(config: Optional[dict]) -> dict:
    """C{config} in Go's field order, empty optional fields dropped, maps sorted."""
    config = config or {}
    out: Dict[str, Any] = {}
    for key in CONTAINER_CONFIG_ORDER:
        value = config.get(key, empty_container_config().get(key))
        if key in CONTAINER_CONFIG_OMITEMPTY and not value:
            continue
        out[key] = _sorted_map(value)
    for key, value in config.items():
        if key not in out and key not in CONTAINER_CONFIG_ORDER:
            out[key] = value
    return out


def _sorted_map(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: value[k] for k in sorted(value)}
    return value


def _parse_words(rest: str) -> List[str]:
    """The Dockerfile parser's parseWords: split on blanks, quotes kept."""
    words: List[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    word = ""
    quote = ""
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == in_spaces:
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            phase = in_word
        if phase in (in_word, in_quote) and pos == n:
            if blank_ok or word:
                words.append(word)
            break
        if phase == in_word:
            if ch.isspace():
                phase = in_spaces
                if blank_ok or word:
                    words.append(word)
                word = ""
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = in_quote
            if ch == _ESCAPE:
                if pos + 1 == n:
                    pos += 1
                    continue
                word += ch
                pos += 1
                ch = rest[pos]
            word += ch
            pos += 1
            continue
        if phase == in_quote:
            if ch == quote:
                phase = in_word
            if ch == _ESCAPE and quote != "'":
                if pos + 1 == n:
                    phase = in_word
                    pos += 1
                    continue
                pos += 1
                word += ch
                ch = rest[pos]
            word += ch
            pos += 1
    return words


class _ShellLex:
    """The Dockerfile shell lexer (buildkit's shell.Lex): quotes, escapes
    and C{$VAR}, C{${VAR}}, C{${VAR:-word}}, C{${VAR:+word}} expansion."""

    def __init__(self, env: Dict[str, str]) -> None:
        self.env = env

    def process_word(self, word: str) -> str:
        text, _ = self._process(word)
        return text

    def process_words(self, word: str) -> List[str]:
        _, words = self._process(word)
        return words

    def _process(self, word: str) -> Tuple[str, List[str]]:
        self.src = word
        self.pos = 0
        return self._stop_on("")

    def _peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def _next(self) -> str:
        ch = self._peek()
        if ch:
            self.pos += 1
        return ch

    def _stop_on(self, stop: str) -> Tuple[str, List[str]]:
        result = []
        words: List[str] = []
        current: List[str] = []
        in_word = False

        def add_char(ch: str, raw: bool) -> None:
            nonlocal in_word, current
            if ch.isspace() and not raw:
                if in_word:
                    words.append("".join(current))
                    current = []
                    in_word = False
                return
            current.append(ch)
            in_word = True

        while self._peek():
            ch = self._peek()
            if stop and ch == stop:
                self._next()
                if in_word:
                    words.append("".join(current))
                return "".join(result), words
            if ch == "'":
                text = self._single_quote()
                result.append(text)
                current.append(text)
                in_word = True
            elif ch == '"':
                text = self._double_quote()
                result.append(text)
                current.append(text)
                in_word = True
            elif ch == "$":
                text = self._dollar()
                result.append(text)
                for c in text:
                    add_char(c, False)
            else:
                ch = self._next()
                if ch == _ESCAPE:
                    ch = self._next()
                    if not ch:
                        break
                    add_char(ch, True)
                else:
                    add_char(ch, False)
                result.append(ch)
        if stop:
            raise InvalidParameter(
                "unexpected end of statement while looking for matching %s" % (stop,)
            )
        if in_word:
            words.append("".join(current))
        return "".join(result), words

    def _single_quote(self) -> str:
        self._next()
        out = []
        while True:
            ch = self._next()
            if not ch:
                raise InvalidParameter(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double_quote(self) -> str:
        self._next()
        out = []
        while True:
            ch = self._peek()
            if not ch:
                raise InvalidParameter(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self._next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = self._next()
            if ch == _ESCAPE:
                following = self._peek()
                if not following:
                    continue
                if following in ('"', "$", _ESCAPE):
                    ch = self._next()
            out.append(ch)

    def _name(self) -> str:
        ch = self._peek()
        if ch and (ch.isdigit() or ch in "$#*?@!-"):
            return self._next()
        out = []
        while True:
            ch = self._peek()
            if ch and (ch.isalnum() or ch == "_"):
                out.append(self._next())
            else:
                return "".join(out)

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            return self.env.get(name, "")
        self._next()
        ch = self._peek()
        if not ch:
            raise InvalidParameter("syntax error: missing '}'")
        if ch in "{}:":
            raise InvalidParameter("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if ch == "}":
            return self.env.get(name, "")
        if ch in ("-", "+", "?"):
            word, _ = self._stop_on("}")
            value = self.env.get(name)
            if ch == "-":
                return word if value is None else value
            if ch == "+":
                return "" if value is None else word
            if value is None:
                raise InvalidParameter("%s: %s" % (name, word or "is not allowed to be unset"))
            return value
        if ch == ":":
            modifier = self._next()
            try:
                word, _ = self._stop_on("}")
            except InvalidParameter:
                raise InvalidParameter("syntax error: missing '}'")
            value = self.env.get(name, "")
            if modifier == "+":
                return word if value else ""
            if modifier == "-":
                return value if value else word
            if modifier == "?":
                if not value:
                    raise InvalidParameter("%s: %s" % (name, word or "is not allowed to be empty"))
                return value
            raise InvalidParameter("unsupported modifier (%s) in substitution" % (modifier,))
        raise InvalidParameter("missing ':' in substitution")


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
    words = _parse_words(rest)
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


def apply_changes(config: dict, changes: Sequence[str]) -> dict:
    """dockerd's BuildFromConfig for import: C{config} (a container.Config)
    with the C{changes} (Dockerfile instructions) applied."""
    if not changes:
        return config
    config = json.loads(json.dumps(config))
    lines = _instructions(changes)
    parsed: List[Tuple[str, Any]] = []
    # The parser's own checks, for every line first.
    for instruction, rest in lines:
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
    cmd_set = False
    for command, args in parsed:
        env = _env_map(config.get("Env"))
        lex = _ShellLex(env)
        if command == "env":
            if not args:
                raise InvalidParameter("ENV requires at least one argument")
            pairs = []
            for key, value in args:
                if not key:
                    raise InvalidParameter("ENV names can not be blank")
                pairs.append((lex.process_word(key), lex.process_word(value)))
            current = list(config.get("Env") or [])
            for key, value in pairs:
                item = "%s=%s" % (key, value)
                for i, existing in enumerate(current):
                    if existing.split("=", 1)[0] == key:
                        current[i] = item
                        break
                else:
                    current.append(item)
            config["Env"] = current
        elif command == "label":
            if not args:
                raise InvalidParameter("LABEL requires at least one argument")
            labels = dict(config.get("Labels") or {})
            for key, value in args:
                if not key:
                    raise InvalidParameter("LABEL names can not be blank")
                labels[lex.process_word(key)] = lex.process_word(value)
            config["Labels"] = labels
        elif command in ("cmd", "entrypoint"):
            exec_form, rest = args
            given = (
                list(exec_form)
                if exec_form is not None
                else ([rest.strip()] if rest.strip() else [])
            )
            line: Optional[List[str]] = given
            if exec_form is None:
                line = list(config.get("Shell") or DEFAULT_SHELL) + given
            if command == "cmd":
                config["Cmd"] = line
                cmd_set = cmd_set or bool(given)
            else:
                # An empty ENTRYPOINT clears it.
                config["Entrypoint"] = line if given else None
                if not cmd_set:
                    config["Cmd"] = None
        elif command == "expose":
            words = _parse_words(args)
            if not words:
                raise InvalidParameter("EXPOSE requires at least one argument")
            ports: List[str] = []
            for word in words:
                ports.extend(lex.process_words(word))
            exposed = dict(config.get("ExposedPorts") or {})
            for key in _port_specs(ports):
                exposed[key] = {}
            config["ExposedPorts"] = exposed
        elif command == "user":
            if not args.strip():
                raise InvalidParameter("USER requires exactly one argument")
            config["User"] = lex.process_word(args.strip())
        elif command == "volume":
            listed = _json_array(args)
            if listed is None:
                listed = _parse_words(args)
            if not listed:
                raise InvalidParameter("VOLUME requires at least one argument")
            volumes = dict(config.get("Volumes") or {})
            for item in listed:
                path = lex.process_word(item).strip()
                if not path:
                    raise InvalidParameter("VOLUME specified can not be an empty string")
                volumes[path] = {}
            config["Volumes"] = volumes
        elif command == "workdir":
            if not args.strip():
                raise InvalidParameter("WORKDIR requires exactly one argument")
            requested = lex.process_word(args.strip())
            if not requested:
                raise InvalidParameter("cannot normalize nothing")
            if not requested.startswith("/"):
                requested = os.path.normpath(
                    os.path.join("/", config.get("WorkingDir") or "", requested)
                )
            config["WorkingDir"] = requested
        elif command == "onbuild":
            expression = args.strip()
            if not expression:
                raise InvalidParameter("ONBUILD requires at least one argument")
            trigger = expression.split(None, 1)[0].upper()
            if trigger == "ONBUILD":
                raise InvalidParameter("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
            if trigger in ("MAINTAINER", "FROM"):
                raise InvalidParameter("%s isn't allowed as an ONBUILD trigger" % (trigger,))
            config["OnBuild"] = list(config.get("OnBuild") or []) + [expression]
        elif command == "healthcheck":
            config["Healthcheck"] = _healthcheck(args)
    return config


# =============================================================================
# The store
# =============================================================================

IMAGE_DIR = "image"
IMAGEDB_DIR = "imagedb"
LAYERS_DIR = "layers"
STATE_FILE = "repositories.json"
#: The diff ID of an empty layer (Go's empty tar: 1024 zero bytes).
EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


@attr.s(frozen=True, auto_attribs=True)
class Image:
    """One image, as the store and the container backend see it."""

    id: str
    #: The image config JSON, parsed (C{config["config"]} is the container config).
    config: dict
    repo_tags: List[str]
    repo_digests: List[str]
    diff_ids: List[str]
    chain_ids: List[str]
    #: The config's C{created} (RFC 3339), and the same in nanoseconds.
    created: str
    created_ns: int
    #: The sum of the layers' sizes.
    size: int
    #: The layers' C{diff} directories, lowest first.
    layer_dirs: List[str]
    layers: List[Layer]
    parent: str
    #: When the image was last tagged (RFC 3339), or None.
    last_tag_time: Optional[str]

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def labels(self) -> Optional[dict]:
        return (self.config.get("config") or {}).get("Labels")


@attr.s(auto_attribs=True)
class ImageSummary:
    """One entry of GET /images/json (API names in comments)."""

    id: str  # Id
    parent_id: str  # ParentId
    repo_tags: Optional[List[str]]  # RepoTags (None: Go's nil)
    repo_digests: Optional[List[str]]  # RepoDigests
    created: int  # Created, Unix seconds
    size: int  # Size
    shared_size: int = -1  # SharedSize
    labels: Optional[dict] = None  # Labels
    containers: int = -1  # Containers


@attr.s(frozen=True, auto_attribs=True)
class HistoryItem:
    id: str
    created: int
    created_by: str
    tags: Optional[List[str]]
    size: int
    comment: str


@attr.s(frozen=True, auto_attribs=True)
class DeleteResponse:
    untagged: Optional[str] = None
    deleted: Optional[str] = None


@attr.s(auto_attribs=True)
class PruneReport:
    images_deleted: Optional[List[DeleteResponse]]
    space_reclaimed: int


@attr.s(frozen=True, auto_attribs=True)
class _Record:
    """An image config as stored: its bytes, parsed."""

    id: str
    raw: bytes
    config: dict
    created_ns: int
    diff_ids: Tuple[str, ...]
    chain_ids: Tuple[str, ...]

    @property
    def parent(self) -> str:
        return self.config.get("parent") or ""

    @property
    def top(self) -> str:
        return self.chain_ids[-1] if self.chain_ids else ""


def _record(raw: bytes, image_id: Optional[str] = None) -> _Record:
    config = json.loads(raw.decode("utf-8"))
    if not isinstance(config, dict):
        raise ValueError("not an image config")
    rootfs = config.get("rootfs") or {}
    diff_ids = tuple(rootfs.get("diff_ids") or ())
    return _Record(
        id=image_id or "sha256:" + hashlib.sha256(raw).hexdigest(),
        raw=raw,
        config=config,
        created_ns=golang.parse_rfc3339(config.get("created") or "") or 0,
        diff_ids=diff_ids,
        chain_ids=tuple(chain_ids(diff_ids)),
    )


def encode_image_config(config: dict) -> bytes:
    """The config JSON as dockerd writes it: top-level keys sorted (Go
    marshals the image through a map), the container config in Go's order."""
    doc: Dict[str, Any] = {}
    for key in sorted(config):
        value = config[key]
        if key in ("config", "container_config") and isinstance(value, dict):
            value = ordered_container_config(value)
        doc[key] = value
    return golang.json_marshal(doc)


class _DeleteConflict(Conflict):
    def __init__(self, image_id: str, hard: bool, used: bool, message: str) -> None:
        super().__init__(
            "conflict: unable to delete %s (%s) - %s"
            % (short_id(image_id), "cannot be forced" if hard else "must be forced", message)
        )
        self.hard = hard
        self.used = used


_CONFLICT_CHILD = 1
_CONFLICT_RUNNING = 2
_CONFLICT_REFERENCE = 4
_CONFLICT_STOPPED = 8
_CONFLICT_HARD = _CONFLICT_CHILD | _CONFLICT_RUNNING
_CONFLICT_SOFT = _CONFLICT_REFERENCE | _CONFLICT_STOPPED

_LIST_FILTERS = ("dangling", "label", "before", "since", "reference", "until")
_PRUNE_FILTERS = ("dangling", "label", "label!", "until")


def _bool_filter(filters: Filters, key: str, default: bool) -> bool:
    """Args.GetBoolOrDefault."""
    if not filters.contains(key):
        return default
    values = filters.get(key)
    false = bool(values & {"0", "false"})
    true = bool(values & {"1", "true"})
    if not values or (false and true) or (not false and not true):
        raise InvalidParameter(
            "invalid filter '%s=%s'" % (key, ",".join(sorted(values)))
            if values
            else "invalid filter '%s'" % (key,)
        )
    return true


@implementer(IImageBackend, IInventory)
class ImageStore:
    def __init__(
        self,
        reactor,
        data_root: str,
        events: EventLog,
        now: Callable[[], int] = time.time_ns,
    ) -> None:
        self.reactor = reactor
        self.events = events
        self.root = os.path.join(os.path.abspath(data_root), IMAGE_DIR)
        self.imagedb = os.path.join(self.root, IMAGEDB_DIR)
        self.state_path = os.path.join(self.root, STATE_FILE)
        self.layers = LayerStore(os.path.join(self.root, LAYERS_DIR))
        self._now = now
        self._images: Dict[str, _Record] = {}
        #: str(reference) -> (reference, image ID)
        self._refs: Dict[str, Tuple[Reference, str]] = {}
        self._last_tag: Dict[str, str] = {}
        #: Images deleted while containers used them: ID -> top chain ID.
        self._retained: Dict[str, str] = {}
        self._usage: Callable[[str], List[Tuple[str, bool]]] = lambda image_id: []
        self._usage_known = False
        self._lock = DeferredLock()
        self._pruning = False

    # -- plumbing --------------------------------------------------------

    def _thread(self, function, *args, on_abandon=None) -> Deferred:
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)
        return shield(d, on_abandon, "image operation", (DockerError, archive.ArchiveError))

    def _locked(self, function, *args) -> Deferred:
        """Run the coroutine function under the store's lock, to its end even
        if the caller goes away."""
        d = self._lock.run(lambda: ensureDeferred(function(*args)))
        return shield(d, None, "image operation", (DockerError, archive.ArchiveError))

    def set_usage(self, fn: Callable[[str], List[Tuple[str, bool]]]) -> None:
        """C{fn(image_id)}: the containers using an image, as
        C{[(container_id, running)]}."""
        self._usage = fn
        self._usage_known = True

    def _users(self, image_id: str) -> List[Tuple[str, bool]]:
        return list(self._usage(image_id) or [])

    def _log(self, action: str, image_id: str, name: str) -> None:
        attributes: Dict[str, str] = {}
        record = self._images.get(image_id)
        if record is not None:
            labels = (record.config.get("config") or {}).get("Labels") or {}
            attributes.update(labels)
        if name:
            attributes["name"] = name
        self.events.log("image", action, image_id, attributes)

    # -- loading and saving ------------------------------------------------

    async def load(self) -> None:
        """Read the store from disk; remove what a crash left half done."""
        state = await self._thread(self._load_blocking)
        layers, images, refs, last_tag, retained = state
        self.layers.layers = layers
        self._images = images
        self._refs = refs
        self._last_tag = last_tag
        self._retained = retained
        # Containers may not be loaded yet: what they hold stays.
        await self._locked(self._collect_garbage, False)

    def _load_blocking(self):
        for directory in (self.root, self.imagedb):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            for name in os.listdir(directory):
                if name.startswith(".tmp-"):
                    try:
                        os.unlink(os.path.join(directory, name))
                    except OSError:
                        pass
        layers = self.layers.load_blocking()
        images: Dict[str, _Record] = {}
        for name in os.listdir(self.imagedb):
            if not ANCHORED_ID_RE.match(name):
                continue
            path = os.path.join(self.imagedb, name)
            try:
                with open(path, "rb") as f:
                    raw = f.read()
                record = _record(raw)
            except (OSError, ValueError) as e:
                log.warn("ignoring image config {path}: {error}", path=path, error=str(e))
                continue
            if record.id != "sha256:" + name:
                log.warn("ignoring image config {path}: its digest differs", path=path)
                continue
            if record.top and record.top not in layers:
                log.warn("ignoring image {id}: a layer is missing", id=record.id)
                continue
            images[record.id] = record
        refs: Dict[str, Tuple[Reference, str]] = {}
        last_tag: Dict[str, str] = {}
        retained: Dict[str, str] = {}
        try:
            with open(self.state_path, "rb") as f:
                state = json.load(f)
        except FileNotFoundError:
            state = {}
        except (OSError, ValueError) as e:
            log.error("cannot read {path}: {error}", path=self.state_path, error=str(e))
            state = {}
        for repository in (state.get("Repositories") or {}).values():
            for text, image_id in (repository or {}).items():
                if image_id not in images:
                    continue
                try:
                    ref = parse_normalized_named(text)
                except DockerError:
                    continue
                refs[str(ref)] = (ref, image_id)
        for image_id, when in (state.get("LastTagTime") or {}).items():
            if image_id in images:
                last_tag[image_id] = when
        for image_id, top in (state.get("Retained") or {}).items():
            if top in layers and image_id not in images:
                retained[image_id] = top
        return layers, images, refs, last_tag, retained

    def _state_bytes(self) -> bytes:
        repositories: Dict[str, Dict[str, str]] = {}
        for ref, image_id in sorted(self._refs.values(), key=lambda item: str(item[0])):
            repositories.setdefault(ref.familiar_name(), {})[ref.familiar_string()] = image_id
        state = {
            "Repositories": repositories,
            "LastTagTime": dict(sorted(self._last_tag.items())),
            "Retained": dict(sorted(self._retained.items())),
        }
        return golang.json_marshal(state)

    async def _save_state(self) -> None:
        await self._thread(write_atomic, self.state_path, self._state_bytes(), 0o600)

    # -- lookups -----------------------------------------------------------

    def _references(self, image_id: str) -> List[Reference]:
        refs = [ref for ref, target in self._refs.values() if target == image_id]
        refs.sort(key=str)
        return refs

    def _search(self, term: str) -> Optional[str]:
        """digestset.Lookup: the one image whose ID starts with C{term}."""
        algorithm, colon, hex_part = term.partition(":")
        if not colon:
            algorithm, hex_part = "", term
        if not hex_part:
            return None
        found = [
            image_id
            for image_id in self._images
            if image_id.split(":", 1)[1].startswith(hex_part)
            and (not algorithm or image_id.split(":", 1)[0] == algorithm)
        ]
        if len(found) != 1:
            return None
        return found[0]

    def _resolve(self, name: str) -> _Record:
        """GetImage: the image C{name} names; NotFound or InvalidParameter."""
        ref = parse_any_reference(name)
        if not ref.named:
            record = self._images.get(ref.digest or "")
            if record is None:
                raise NotFound("No such image: %s" % (ref.familiar_string(),))
            return record
        found = self._refs.get(str(ref.tag_name_only()))
        if found is not None and found[1] in self._images:
            return self._images[found[1]]
        image_id = self._search(name)
        if image_id is not None:
            return self._images[image_id]
        raise NotFound("No such image: %s" % (ref.tag_name_only().familiar_string(),))

    def _image(self, record: _Record) -> Image:
        layers = self.layers.chain(record.top) if record.top else []
        refs = self._references(record.id)
        return Image(
            id=record.id,
            config=record.config,
            repo_tags=[r.familiar_string() for r in refs if r.tag],
            repo_digests=[r.familiar_string() for r in refs if r.digest],
            diff_ids=list(record.diff_ids),
            chain_ids=list(record.chain_ids),
            created=record.config.get("created") or "",
            created_ns=record.created_ns,
            size=sum(layer.size for layer in layers),
            layer_dirs=[layer.diff_dir for layer in layers],
            layers=layers,
            parent=record.parent,
            last_tag_time=self._last_tag.get(record.id),
        )

    def get(self, name_or_id: str) -> Image:
        """The image C{name_or_id} names (see the module docstring)."""
        return self._image(self._resolve(name_or_id))

    def get_layer_dirs(self, image_id: str) -> List[str]:
        """The layer directories of image C{image_id}, lowest first, also
        for a deleted image whose layers a container still holds."""
        record = self._images.get(image_id)
        top = record.top if record is not None else self._retained.get(image_id)
        if top is None:
            if record is None:
                raise NotFound("No such image: %s" % (image_id,))
            return []
        return [layer.diff_dir for layer in self.layers.chain(top)]

    def _children(self, image_id: str) -> List[str]:
        return [r.id for r in self._images.values() if r.parent == image_id]

    # -- IImageBackend -------------------------------------------------------

    async def pull_image(self, image: str, tag: str, platform: str) -> None:
        ref = parse_normalized_named(image[:-1] if image.endswith(":") else image)
        if tag:
            if validate_digest(tag) is None:
                ref = attr.evolve(ref.trimmed(), digest=tag)
            else:
                ref = ref.with_tag(tag)
        if ref.familiar_name() == "scratch":
            raise Forbidden("'scratch' is a reserved name")
        raise NotImplementedYet(
            "pull is not implemented yet: twistedock has no registry client; "
            "import a root filesystem with docker import instead"
        )

    async def import_image(
        self,
        source: BinaryIO,
        src: str = "-",
        repo: str = "",
        tag: str = "",
        message: str = "",
        changes: Sequence[str] = (),
        platform: str = "",
    ) -> str:
        """Import the tar C{source} as a one-layer image (docker import):
        the new image's ID.  The store reads C{source} in a thread and
        closes it."""
        try:
            ref = repo_tag_reference(repo, tag)
            os_name, architecture, variant = _platform_of(platform)
            container_config = apply_changes(empty_container_config(), list(changes))
        except BaseException:
            source.close()
            raise
        comment = message or "Imported from " + src

        def stage() -> StagedLayer:
            try:
                return self.layers.stage_blocking(source, "")
            finally:
                source.close()

        try:
            staged = await self._thread(stage, on_abandon=self.layers.discard_blocking)
        except archive.BreakoutError as e:
            raise InvalidParameter("Error processing tar file(exit status 1): %s" % (e,))
        except archive.ArchiveError as e:
            raise InternalError("Error processing tar file(exit status 1): %s" % (e,))
        return await self._locked(
            self._commit_import,
            staged,
            ref,
            comment,
            container_config,
            os_name,
            architecture,
            variant,
        )

    async def _commit_import(
        self,
        staged: StagedLayer,
        ref: Optional[Reference],
        comment: str,
        container_config: dict,
        os_name: str,
        architecture: str,
        variant: str,
    ) -> str:
        layer = await self._thread(self.layers.commit_blocking, staged)
        self.layers.add(layer)
        created = golang.rfc3339_nano(self._now())
        config: Dict[str, Any] = {
            "architecture": architecture,
            "comment": comment,
            "config": container_config,
            "container_config": empty_container_config(),
            "created": created,
            "docker_version": __version__,
            "history": [{"created": created, "comment": comment}],
            "os": os_name,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        }
        if variant:
            config["variant"] = variant
        raw = encode_image_config(config)
        record = _record(raw)
        await self._thread(
            write_atomic, os.path.join(self.imagedb, record.id.split(":", 1)[1]), raw, 0o600
        )
        self._images[record.id] = record
        self._retained.pop(record.id, None)
        if ref is not None:
            await self._add_reference(record.id, ref)
        self._log("import", record.id, record.id)
        return record.id

    async def commit_image(
        self,
        source: BinaryIO,
        parent_id: str,
        *,
        container_id: str,
        container_config: dict,
        config: dict,
        author: str = "",
        comment: str = "",
        ref: Optional[Reference] = None,
    ) -> str:
        """docker commit: the uncompressed layer tar C{source} on top of
        image C{parent_id}'s layers, and an image config as dockerd's
        NewChildImage writes it (an empty layer adds no layer, only an
        C{empty_layer} history entry).  The store reads C{source} in a
        thread and closes it.  The new image's ID."""
        parent = self._images.get(parent_id)
        if parent is None:
            source.close()
            raise NotFound("No such image: %s" % (parent_id,))

        def stage() -> StagedLayer:
            try:
                return self.layers.stage_blocking(source, parent.top)
            finally:
                source.close()

        try:
            staged = await self._thread(stage, on_abandon=self.layers.discard_blocking)
        except archive.ArchiveError as e:
            raise InternalError("Error processing tar file(exit status 1): %s" % (e,))
        return await self._locked(
            self._commit_child,
            staged,
            parent,
            container_id,
            container_config,
            config,
            author,
            comment,
            ref,
        )

    async def _commit_child(
        self,
        staged: StagedLayer,
        parent: _Record,
        container_id: str,
        container_config: dict,
        config: dict,
        author: str,
        comment: str,
        ref: Optional[Reference],
    ) -> str:
        empty = staged.layer.diff_id == EMPTY_LAYER_DIFF_ID
        diff_ids = list(parent.diff_ids)
        if empty:
            await self._thread(self.layers.discard_blocking, staged)
        else:
            layer = await self._thread(self.layers.commit_blocking, staged)
            self.layers.add(layer)
            diff_ids.append(layer.diff_id)
        created = golang.rfc3339_nano(self._now())
        entry: Dict[str, Any] = {"created": created}
        if author:
            entry["author"] = author
        created_by = " ".join(container_config.get("Cmd") or [])
        if created_by:
            entry["created_by"] = created_by
        if comment:
            entry["comment"] = comment
        if empty:
            entry["empty_layer"] = True
        image: Dict[str, Any] = {
            "architecture": parent.config.get("architecture") or golang.goarch(),
            "config": config,
            "container": container_id,
            "container_config": container_config,
            "created": created,
            "docker_version": __version__,
            "history": list(parent.config.get("history") or []) + [entry],
            "os": parent.config.get("os") or "linux",
            "parent": parent.id,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        if author:
            image["author"] = author
        if comment:
            image["comment"] = comment
        if parent.config.get("variant"):
            image["variant"] = parent.config["variant"]
        raw = encode_image_config(image)
        record = _record(raw)
        await self._thread(
            write_atomic, os.path.join(self.imagedb, record.id.split(":", 1)[1]), raw, 0o600
        )
        self._images[record.id] = record
        self._retained.pop(record.id, None)
        if ref is not None:
            await self._add_reference(record.id, ref)
        return record.id

    async def _add_reference(self, image_id: str, ref: Reference) -> None:
        """Point C{ref} at the image (moving it from another), save, log."""
        self._refs[str(ref)] = (ref, image_id)
        self._last_tag[image_id] = golang.rfc3339_nano(self._now())
        await self._save_state()
        self._log("tag", image_id, ref.familiar_string())

    async def tag(self, name: str, repo: str, tag: str) -> None:
        if not repo:
            raise InvalidParameter("invalid reference format")
        ref = parse_normalized_named(repo)
        if ref.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        ref = ref.with_tag(tag) if tag else ref.tag_name_only()
        if ref.familiar_name() == "sha256":
            raise InvalidParameter(
                "refusing to create an ambiguous tag using digest algorithm as name"
            )
        record = self._resolve(name)
        await self._locked(self._tag_locked, record.id, ref)

    async def _tag_locked(self, image_id: str, ref: Reference) -> None:
        if image_id not in self._images:
            raise NotFound("No such image: %s" % (image_id,))
        await self._add_reference(image_id, ref)

    async def inspect(self, name: str) -> Image:
        return self.get(name)

    async def history(self, name: str) -> List[HistoryItem]:
        record = self._resolve(name)
        items: List[HistoryItem] = []
        layers = self.layers.chain(record.top) if record.top else []
        counter = 0
        for entry in record.config.get("history") or []:
            size = 0
            if not entry.get("empty_layer"):
                if counter >= len(layers):
                    raise InternalError("too many non-empty layers in History section")
                size = layers[counter].size
                counter += 1
            items.insert(
                0,
                HistoryItem(
                    id="<missing>",
                    created=(golang.parse_rfc3339(entry.get("created") or "") or 0) // 1_000_000_000,
                    created_by=entry.get("created_by") or "",
                    tags=None,
                    size=size,
                    comment=entry.get("comment") or "",
                ),
            )
        out: List[HistoryItem] = []
        current: Optional[_Record] = record
        for item in items:
            if current is None:
                out.append(item)
                continue
            tags = [r.familiar_string() for r in self._references(current.id) if r.tag]
            out.append(attr.evolve(item, id=current.id, tags=tags or None))
            current = self._images.get(current.parent) if current.parent else None
        return out

    async def images(
        self, filters: Filters, all: bool = False, shared_size: bool = False
    ) -> List[ImageSummary]:
        return self._list(filters, all, shared_size, container_count=False)

    def _list(
        self, filters: Filters, all_images: bool, shared_size: bool, container_count: bool
    ) -> List[ImageSummary]:
        filters.validate(_LIST_FILTERS)
        dangling_only = _bool_filter(filters, "dangling", False)
        before: Optional[int] = None
        since: Optional[int] = None
        for value in sorted(filters.get("before")):
            created = self._resolve(value).created_ns
            if before is None or created < before:
                before = created
        for value in sorted(filters.get("until")):
            moment = get_timestamp(value, self._now())
            if before is None or moment < before:
                before = moment
        for value in sorted(filters.get("since")):
            created = self._resolve(value).created_ns
            if since is None or created > since:
                since = created
        patterns = sorted(filters.get("reference"))
        summaries: List[Tuple[ImageSummary, _Record]] = []
        for record in self._images.values():
            if dangling_only and self._children(record.id):
                continue
            if before is not None and not record.created_ns < before:
                continue
            if since is not None and not record.created_ns > since:
                continue
            config = record.config.get("config")
            if filters.contains("label"):
                if config is None or not filters.match_kv_list("label", config.get("Labels") or {}):
                    continue
            image = self._image(record)
            tags: List[str] = []
            digests: List[str] = []
            for ref in self._references(record.id):
                if patterns:
                    if not any(_familiar_match(p, ref) for p in patterns):
                        continue
                if ref.digest:
                    digests.append(ref.familiar_string())
                if ref.tag:
                    tags.append(ref.familiar_string())
            if not tags and not digests:
                if all_images or not self._children(record.id):
                    if filters.contains("dangling") and not dangling_only:
                        continue
                    if filters.contains("reference"):
                        continue
                else:
                    continue
            elif dangling_only and tags:
                continue
            summary = ImageSummary(
                id=record.id,
                parent_id=record.parent,
                repo_tags=tags or None,
                repo_digests=digests or None,
                created=record.created_ns // 1_000_000_000,
                size=image.size,
                labels=(config or {}).get("Labels"),
            )
            if container_count:
                summary.containers = len(self._users(record.id))
            summaries.append((summary, record))
        if shared_size:
            counts: Dict[str, int] = {}
            for record in self._images.values():
                for chain in record.chain_ids:
                    counts[chain] = counts.get(chain, 0) + 1
            for summary, record in summaries:
                summary.shared_size = sum(
                    self.layers.get(chain).size
                    for chain in record.chain_ids
                    if counts.get(chain, 0) > 1 and self.layers.get(chain) is not None
                )
        summaries.sort(key=lambda item: item[1].created_ns, reverse=True)
        return [summary for summary, _ in summaries]

    async def delete(
        self, name: str, force: bool = False, prune: bool = True
    ) -> List[DeleteResponse]:
        if not name.strip():
            raise InvalidParameter("image name cannot be blank")
        return await self._locked(self._delete, name, force, prune)

    async def _delete(self, name: str, force: bool, prune: bool) -> List[DeleteResponse]:
        records: List[DeleteResponse] = []
        try:
            await self._delete_into(records, name, force, prune)
        finally:
            if records:
                await self._save_state()
        await self._collect_garbage()
        return records

    async def _delete_into(
        self, records: List[DeleteResponse], name: str, force: bool, prune: bool
    ) -> None:
        """ImageDelete, as dockerd's graphdriver image service does it."""
        record = self._resolve(name)
        image_id = record.id
        refs = self._references(image_id)
        removed_repository_ref = False
        if not _is_image_id_prefix(image_id, name):
            if not force and _is_single_reference(refs):
                users = self._users(image_id)
                if users:
                    raise Conflict(
                        "conflict: unable to remove repository reference %s (must force) - "
                        "container %s is using its referenced image %s"
                        % (json.dumps(name), short_id(users[0][0]), short_id(image_id))
                    )
            parsed = parse_normalized_named(name).tag_name_only()
            self._refs.pop(str(parsed), None)
            self._log("untag", image_id, image_id)
            records.append(DeleteResponse(untagged=parsed.familiar_string()))
            refs = self._references(image_id)
            if not parsed.digest:
                if not any(not r.digest and r.name == parsed.name for r in refs):
                    remaining = []
                    for r in refs:
                        if r.digest and r.name == parsed.name:
                            self._refs.pop(str(r), None)
                            records.append(DeleteResponse(untagged=r.familiar_string()))
                        else:
                            remaining.append(r)
                    refs = remaining
            if refs:
                return
            removed_repository_ref = True
        elif _is_single_reference(refs):
            mask = _CONFLICT_HARD
            if not force:
                mask |= _CONFLICT_SOFT & ~_CONFLICT_REFERENCE
            conflict = self._conflict(image_id, mask)
            if conflict is not None:
                raise conflict
            for r in refs:
                self._refs.pop(str(r), None)
                self._log("untag", image_id, image_id)
                records.append(DeleteResponse(untagged=r.familiar_string()))
        await self._delete_helper(records, image_id, force, prune, removed_repository_ref)

    def _conflict(self, image_id: str, mask: int) -> Optional[_DeleteConflict]:
        if mask & _CONFLICT_CHILD and self._children(image_id):
            return _DeleteConflict(image_id, True, False, "image has dependent child images")
        users = self._users(image_id) if mask & (_CONFLICT_RUNNING | _CONFLICT_STOPPED) else []
        if mask & _CONFLICT_RUNNING:
            for container_id, running in users:
                if running:
                    return _DeleteConflict(
                        image_id,
                        True,
                        True,
                        "image is being used by running container %s" % (short_id(container_id),),
                    )
        if mask & _CONFLICT_REFERENCE and self._references(image_id):
            return _DeleteConflict(
                image_id, False, False, "image is referenced in multiple repositories"
            )
        if mask & _CONFLICT_STOPPED:
            for container_id, running in users:
                if not running:
                    return _DeleteConflict(
                        image_id,
                        False,
                        True,
                        "image is being used by stopped container %s" % (short_id(container_id),),
                    )
        return None

    def _is_dangling(self, image_id: str) -> bool:
        return not (self._references(image_id) or self._children(image_id))

    async def _delete_helper(
        self, records: List[DeleteResponse], image_id: str, force: bool, prune: bool, quiet: bool
    ) -> None:
        mask = _CONFLICT_HARD if force else _CONFLICT_HARD | _CONFLICT_SOFT
        conflict = self._conflict(image_id, mask)
        if conflict is not None:
            if quiet and (not self._is_dangling(image_id) or conflict.used):
                return
            raise conflict
        record = self._images[image_id]
        for r in self._references(image_id):
            self._refs.pop(str(r), None)
            self._log("untag", image_id, image_id)
            records.append(DeleteResponse(untagged=r.familiar_string()))
        removed = await self._remove_image(record)
        self._log("delete", image_id, image_id)
        records.append(DeleteResponse(deleted=image_id))
        for chain in removed:
            records.append(DeleteResponse(deleted=chain))
        if prune and record.parent and record.parent in self._images:
            await self._delete_helper(records, record.parent, False, True, True)

    async def _remove_image(self, record: _Record) -> List[str]:
        """Forget an image and delete its config; the chain IDs of the layers
        that went with it (those no other image, nor a container, holds)."""
        if self._users(record.id) and record.top:
            self._retained[record.id] = record.top
        del self._images[record.id]
        self._last_tag.pop(record.id, None)
        await self._save_state()
        path = os.path.join(self.imagedb, record.id.split(":", 1)[1])
        await self._thread(_unlink, path)
        unused = [chain for chain in reversed(record.chain_ids) if chain not in self._live_layers()]
        if unused:
            await self._thread(self.layers.remove_blocking, unused)
            for chain in unused:
                self.layers.forget(chain)
        return unused

    def _live_layers(self) -> set:
        live = set()
        tops = [record.top for record in self._images.values() if record.top]
        tops.extend(self._retained.values())
        for top in tops:
            current = top
            while current and current not in live:
                live.add(current)
                layer = self.layers.get(current)
                current = layer.parent if layer is not None else ""
        return live

    async def collect_garbage(self) -> None:
        """Delete layers nothing uses any more (call after removing a container)."""
        await self._locked(self._collect_garbage)

    async def _collect_garbage(self, drop_retained: bool = True) -> None:
        dropped = []
        if drop_retained and self._usage_known:
            # Without the container backend's word, a container may still
            # hold them: keep them.
            dropped = [image_id for image_id in self._retained if not self._users(image_id)]
        for image_id in dropped:
            del self._retained[image_id]
        if dropped:
            await self._save_state()
        live = self._live_layers()
        unused = [chain for chain in self.layers.layers if chain not in live]
        if unused:
            await self._thread(self.layers.remove_blocking, unused)
            for chain in unused:
                self.layers.forget(chain)

    async def prune(self, filters: Filters) -> PruneReport:
        if self._pruning:
            raise Conflict("a prune operation is already running")
        self._pruning = True
        try:
            return await self._locked(self._prune, filters)
        finally:
            self._pruning = False

    async def _prune(self, filters: Filters) -> PruneReport:
        filters.validate(_PRUNE_FILTERS)
        dangling_only = _bool_filter(filters, "dangling", True)
        until: Optional[int] = None
        if filters.contains("until"):
            values = filters.get("until")
            if len(values) > 1:
                raise InternalError("more than one until filter specified")
            until = get_timestamp(next(iter(values)), self._now())
        layer_sizes = {chain: layer.size for chain, layer in self.layers.layers.items()}
        candidates = []
        for record in list(self._images.values()):
            if dangling_only and self._children(record.id):
                continue
            if not self._references(record.id) and self._children(record.id):
                continue
            if until is not None and record.created_ns > until:
                continue
            config = record.config.get("config")
            if config is not None and not _match_labels(filters, config.get("Labels") or {}):
                continue
            candidates.append(record)
        deleted: List[DeleteResponse] = []
        for record in candidates:
            if record.id not in self._images:
                continue
            refs = self._references(record.id)
            if refs:
                should = not dangling_only or not any(r.tag for r in refs)
                if not should:
                    continue
                for r in refs:
                    deleted.extend(await self._prune_one(str(r)))
            else:
                deleted.extend(await self._prune_one(record.id.split(":", 1)[1]))
        await self._collect_garbage()
        reclaimed = sum(layer_sizes.get(item.deleted, 0) for item in deleted if item.deleted)
        self.events.log("image", "prune", "", {"reclaimed": str(reclaimed)})
        return PruneReport(images_deleted=deleted or None, space_reclaimed=reclaimed)

    async def _prune_one(self, name: str) -> List[DeleteResponse]:
        records: List[DeleteResponse] = []
        try:
            await self._delete_into(records, name, False, True)
        except Conflict:
            return []
        except DockerError as e:
            log.warn("failed to prune image {name}: {error}", name=name, error=str(e))
            return []
        finally:
            if records:
                await self._save_state()
        return records

    # -- IInventory ------------------------------------------------------

    def counts(self) -> Dict[str, int]:
        return {"Images": len(self._images)}

    async def disk_usage(self, types) -> dict:
        if "image" not in types:
            return {}
        summaries = self._list(Filters(), False, True, container_count=True)
        return {
            "LayersSize": self.layers.total_size(),
            "Images": [summary_json(s, "1.51") for s in summaries],
        }


def _familiar_match(pattern: str, ref: Reference) -> bool:
    try:
        if golang.path_match(pattern, ref.familiar_string()):
            return True
        return golang.path_match(pattern, ref.familiar_name())
    except golang.BadPattern as e:
        raise InternalError(str(e))


def _match_labels(filters: Filters, labels: dict) -> bool:
    if not filters.match_kv_list("label", labels):
        return False
    if filters.contains("label!") and filters.match_kv_list("label!", labels):
        return False
    return True


def _is_image_id_prefix(image_id: str, candidate: str) -> bool:
    if image_id.startswith(candidate):
        return True
    return image_id.split(":", 1)[-1].startswith(candidate)


def _is_single_reference(refs: List[Reference]) -> bool:
    """All references are from one repository, with at most one tag."""
    if len(refs) <= 1:
        return len(refs) == 1
    single: Optional[Reference] = None
    canonical = set()
    for ref in refs:
        if ref.digest:
            canonical.add(ref.name)
        elif single is None:
            single = ref
        else:
            return False
    if single is None:
        single = refs[0]
    return len(canonical) == 1 and single.name in canonical


def _platform_of(text: str) -> Tuple[str, str, str]:
    """The (os, architecture, variant) an import is for: the host's, or
    the C{platform} form value's."""
    arch = golang.goarch()
    if not text:
        return "linux", arch, ""
    parts = text.lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise InvalidParameter(
            '"%s": unknown operating system or architecture: invalid argument' % (text,)
        )
    if parts[0] != "linux":
        raise InvalidParameter("operating system is not supported")
    architecture = parts[1] if len(parts) > 1 else arch
    variant = parts[2] if len(parts) > 2 else ""
    return "linux", architecture, variant


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    directory = os.path.dirname(path)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
