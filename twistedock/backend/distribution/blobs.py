"""
The compressed blobs of pulled layers, kept by diff ID in
C{<image root>/blobs/}: C{<diff ID hex>.blob} (the bytes the registry
served, verified) and C{<diff ID hex>.json} (C{digest}, C{mediaType},
C{size}, C{repository}).  A push sends them as they are, so a pulled image
pushed elsewhere keeps its layers' digests and its ID, and can be mounted
from the repository it came from.  Entries whose layer the store no longer
has are removed at the next pull or push.  Everything here blocks.
"""

import json
import os
from typing import Iterable, Optional

import attr

from ...atomic import write_atomic

BLOBS_DIR = "blobs"

#: Media types a Docker schema2 manifest can name as they are.
GZIP_TYPES = (
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar+gzip",
)


@attr.s(frozen=True, auto_attribs=True)
class KeptBlob:
    path: str
    digest: str
    media_type: str
    size: int
    repository: str


def _hex(digest: str) -> str:
    return digest.split(":", 1)[-1]


def keep(directory: str, path: str, diff_id: str, digest: str, media_type: str, size: int,
         repository: str) -> None:
    """Move the verified blob at C{path} into the cache for C{diff_id}."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    base = os.path.join(directory, _hex(diff_id))
    meta = {"digest": digest, "mediaType": media_type, "size": size, "repository": repository}
    os.replace(path, base + ".blob")
    write_atomic(base + ".json", json.dumps(meta, sort_keys=True).encode("utf-8"), mode=0o600)


def find(directory: str, diff_id: str) -> Optional[KeptBlob]:
    base = os.path.join(directory, _hex(diff_id))
    try:
        with open(base + ".json", "rb") as f:
            meta = json.load(f)
        size = os.stat(base + ".blob").st_size
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("size") != size:
        return None
    return KeptBlob(base + ".blob", str(meta.get("digest") or ""), str(meta.get("mediaType") or ""),
                    size, str(meta.get("repository") or ""))


def prune(directory: str, live_diff_ids: Iterable[str]) -> None:
    """Remove the entries of layers the store no longer has."""
    live = {_hex(d) for d in live_diff_ids}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        stem = name.split(".", 1)[0]
        if name.startswith(".tmp-") or stem not in live:
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
