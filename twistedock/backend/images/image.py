"""
The image store's values: L{Image} (what the container backend reads),
the entries of list, history, delete and prune (the image router shapes
them as the request's API version asks), and L{ImageRecord}, an image
config as stored.
"""

import hashlib
import json
from typing import List, Optional, Tuple

import attr

from ... import golang
from ...reference import short_id
from .layers import Layer, chain_ids


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
class ImageRecord:
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


def read_record(raw: bytes, image_id: Optional[str] = None) -> ImageRecord:
    """The record of the config JSON C{raw} (its ID: its digest)."""
    config = json.loads(raw.decode("utf-8"))
    if not isinstance(config, dict):
        raise ValueError("not an image config")
    rootfs = config.get("rootfs") or {}
    diff_ids = tuple(rootfs.get("diff_ids") or ())
    return ImageRecord(
        id=image_id or "sha256:" + hashlib.sha256(raw).hexdigest(),
        raw=raw,
        config=config,
        created_ns=golang.parse_rfc3339(config.get("created") or "") or 0,
        diff_ids=diff_ids,
        chain_ids=tuple(chain_ids(diff_ids)),
    )
