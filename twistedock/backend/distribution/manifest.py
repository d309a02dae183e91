"""
Manifests as a pull reads them: the media types it accepts, a manifest's
config and layers, and the platform an index or manifest list resolves to
(the host's by default, or the C{platform} asked for, as containerd's
platform matcher chooses).
"""

import json
from typing import List, Optional, Tuple

import attr

from ... import golang
from ...errors import InvalidParameter
from .errors import no_match, unsupported

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))

#: Layer media types a pull unpacks (gzip, zstd or plain tars).
LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
)


@attr.s(frozen=True, auto_attribs=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Optional[dict] = None
    urls: Tuple[str, ...] = ()

    def to_json(self) -> dict:
        doc = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            doc["urls"] = list(self.urls)
        return doc


@attr.s(frozen=True, auto_attribs=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = "%s/%s" % (self.os, self.architecture)
        if self.variant:
            text += "/" + self.variant
        return text


def _descriptor(doc) -> Descriptor:
    if not isinstance(doc, dict) or not isinstance(doc.get("digest"), str):
        raise ValueError("a descriptor without digest")
    return Descriptor(
        media_type=str(doc.get("mediaType") or ""),
        digest=doc["digest"],
        size=int(doc.get("size") or 0),
        platform=doc.get("platform") if isinstance(doc.get("platform"), dict) else None,
        urls=tuple(doc.get("urls") or ()),
    )


@attr.s(frozen=True, auto_attribs=True)
class Manifest:
    """One manifest: an image's (C{config}, C{layers}) or an index's
    (C{manifests})."""

    media_type: str
    config: Optional[Descriptor] = None
    layers: Tuple[Descriptor, ...] = ()
    manifests: Tuple[Descriptor, ...] = ()

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES


def parse(body: bytes, content_type: str = "") -> Manifest:
    """A manifest's bytes; its type from the document, else the answer's
    Content-Type."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidParameter("invalid manifest: %s" % (e,))
    if not isinstance(doc, dict):
        raise InvalidParameter("invalid manifest: not an object")
    media_type = doc.get("mediaType") or content_type.split(";")[0].strip()
    if not media_type or media_type == "application/json":
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if doc.get("schemaVersion") == 1 or media_type in SCHEMA1:
        raise InvalidParameter(
            "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has "
            "been removed. Suggest the author of the image to upgrade it"
        )
    try:
        if media_type in INDEXES:
            return Manifest(media_type, manifests=tuple(_descriptor(m) for m in doc.get("manifests") or ()))
        if media_type in IMAGE_MANIFESTS:
            return Manifest(
                media_type,
                config=_descriptor(doc.get("config")),
                layers=tuple(_descriptor(layer) for layer in doc.get("layers") or ()),
            )
    except (ValueError, TypeError) as e:
        raise InvalidParameter("invalid manifest: %s" % (e,))
    raise unsupported(media_type)


def _normalize(os_name: str, arch: str, variant: str) -> Platform:
    """containerd's platforms.Normalize for the names registries use."""
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}.get(arch, arch)
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    if arch == "arm" and variant in ("", "7"):
        variant = "v7" if variant in ("", "7") else variant
    if arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os_name.lower(), arch, variant)


def host_platform() -> Platform:
    return _normalize("linux", golang.goarch(), "")


def split_platform(text: str) -> Tuple[str, str, str]:
    """A C{platform} value (C{os[/arch[/variant]]}, not empty) as dockerd
    takes it: its OS (linux only), architecture (the host's when left out)
    and variant, as given."""
    parts = text.lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise InvalidParameter(
            '"%s": unknown operating system or architecture: invalid argument' % (text,)
        )
    if parts[0] != "linux":
        raise InvalidParameter("operating system is not supported")
    arch = parts[1] if len(parts) > 1 else golang.goarch()
    return parts[0], arch, parts[2] if len(parts) > 2 else ""


def parse_platform(text: str) -> Platform:
    """The C{platform} query value (C{os[/arch[/variant]]}), or the host's."""
    if not text:
        return host_platform()
    return _normalize(*split_platform(text))


def platform_of(doc: Optional[dict]) -> Optional[Platform]:
    if not doc:
        return None
    return _normalize(
        str(doc.get("os") or ""), str(doc.get("architecture") or ""), str(doc.get("variant") or "")
    )


def matches(wanted: Platform, offered: Optional[Platform]) -> bool:
    if offered is None:
        return False
    if offered.os != wanted.os or offered.architecture != wanted.architecture:
        return False
    return not wanted.variant or offered.variant == wanted.variant


def select(index: Manifest, wanted: Platform) -> Descriptor:
    """The entry of C{index} for C{wanted}: the first that matches; for an
    arm variant, the highest one the platform can run is not guessed."""
    candidates: List[Descriptor] = [
        m for m in index.manifests if matches(wanted, platform_of(m.platform))
    ]
    if not candidates:
        raise no_match(str(wanted))
    return candidates[0]


def platform_json(doc: dict) -> dict:
    """An index entry's platform as /distribution shows it."""
    out = {"architecture": doc.get("architecture") or "", "os": doc.get("os") or ""}
    for key in ("os.version", "os.features", "variant", "features"):
        if doc.get(key):
            out[key] = doc[key]
    return out
