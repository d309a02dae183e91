"""
Image references as distribution/reference parses, normalises and shows
them (C{name[:tag][@digest]}, C{docker.io/library/} implied), and the
short forms dockerd shows.
"""

import re
from typing import Optional, Tuple

import attr

from .errors import InvalidParameter

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


OFFICIAL_REPO_PREFIX = OFFICIAL_REPO_NAME + "/"


def familiar_name(reference: str) -> str:
    """The repository of C{reference} without tag, digest and default domain."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            if name.startswith(OFFICIAL_REPO_PREFIX) and name.count("/") == 1:
                name = name[len(OFFICIAL_REPO_PREFIX) :]
            break
    return name
