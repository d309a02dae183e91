"""
The layer store: content-addressed, read-only filesystem layers, each
unpacked once and shared by every image whose chain contains it.

Identities are the OCI image spec's: a layer's diff ID is the sha256 of its
uncompressed tar stream; its chain ID names it together with everything
below it (the base layer's chain ID is its diff ID, the next one's is
C{sha256("<parent chain ID> <diff ID>")}).

On disk, under C{<data_root>/image/layers/}::

    <chain ID hex>/diff/       the unpacked layer, overlayfs whiteouts included:
                               an overlay lowerdir as it is
    <chain ID hex>/layer.json  {"ChainID", "DiffID", "Parent", "Size"}
    <chain ID hex>/tar-split.json.gz  the layer tar's own bytes (docker save
                               gives the tar out again from them and diff/)
    .tmp-*/                    an unpack in progress (removed at start)
    .trash-*/                  a layer being removed (removed at start)

A layer is unpacked into a C{.tmp-*} directory and renamed to its chain ID
only once it is complete (its C{layer.json} written and synced), so a crash
at any moment leaves either no layer or a whole one.  Removal renames first,
then deletes.  Which layers are in use is the image store's business: it
keeps the images, and with them the chains that hold layers.

The store's methods named C{*_blocking} touch the disk: call them in a
thread.  The others only read or change the in-memory map, and belong to
the reactor thread.
"""

import errno
import hashlib
import json
import os
import shutil
import tempfile
from typing import BinaryIO, Dict, List, Optional, Sequence

import attr

from ...tar import extract
from ...atomic import fsync_dir, write_atomic
from ...logs import Logger

log = Logger()

LAYER_META = "layer.json"
TAR_SPLIT = "tar-split.json.gz"
DIFF_DIR = "diff"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def chain_id(parent: str, diff_id: str) -> str:
    """The chain ID of layer C{diff_id} on top of the chain C{parent}."""
    if not parent:
        return diff_id
    return "sha256:" + hashlib.sha256(("%s %s" % (parent, diff_id)).encode("ascii")).hexdigest()


def chain_ids(diff_ids: Sequence[str]) -> List[str]:
    """The chain ID of every layer of an image, lowest first."""
    out: List[str] = []
    parent = ""
    for diff_id in diff_ids:
        parent = chain_id(parent, diff_id)
        out.append(parent)
    return out


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1] if ":" in digest else digest


@attr.s(frozen=True, auto_attribs=True)
class Layer:
    chain_id: str
    diff_id: str
    #: The chain ID of the layer below, "" for a base layer.
    parent: str
    #: The size of this layer's own content (dockerd's DiffSize).
    size: int
    #: The layer's directory; its content is in L{diff_dir}.
    path: str

    @property
    def diff_dir(self) -> str:
        return os.path.join(self.path, DIFF_DIR)

    @property
    def tar_split(self) -> str:
        return os.path.join(self.path, TAR_SPLIT)

    def to_json(self) -> dict:
        return {
            "ChainID": self.chain_id,
            "DiffID": self.diff_id,
            "Parent": self.parent,
            "Size": self.size,
        }


@attr.s(frozen=True, auto_attribs=True)
class StagedLayer:
    """A layer unpacked into a temporary directory, not visible yet."""

    tmp_dir: str
    layer: Layer


class LayerStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.layers: Dict[str, Layer] = {}

    # -- in memory (reactor thread) ------------------------------------------

    def get(self, chain_id: str) -> Optional[Layer]:
        return self.layers.get(chain_id)

    def chain(self, top: str) -> List[Layer]:
        """The layers of the chain ending at C{top}, lowest first."""
        out: List[Layer] = []
        current = top
        while current:
            layer = self.layers.get(current)
            if layer is None:
                raise KeyError(current)
            out.append(layer)
            current = layer.parent
        out.reverse()
        return out

    def add(self, layer: Layer) -> None:
        self.layers[layer.chain_id] = layer

    def forget(self, chain_id: str) -> None:
        self.layers.pop(chain_id, None)

    def total_size(self) -> int:
        return sum(layer.size for layer in self.layers.values())

    def path_of(self, chain_id: str) -> str:
        return os.path.join(self.root, _hex(chain_id))

    # -- on disk (threads) -----------------------------------------------------

    def load_blocking(self) -> Dict[str, Layer]:
        """Every complete layer on disk; leftovers of interrupted unpacks
        and removals are deleted."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        found: Dict[str, Layer] = {}
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                _remove_tree(path)
                continue
            try:
                with open(os.path.join(path, LAYER_META), "rb") as f:
                    meta = json.load(f)
                layer = Layer(
                    chain_id=meta["ChainID"],
                    diff_id=meta["DiffID"],
                    parent=meta.get("Parent") or "",
                    size=int(meta.get("Size") or 0),
                    path=path,
                )
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warn("ignoring layer directory {path}: {error}", path=path, error=str(e))
                continue
            if (
                _hex(layer.chain_id) != name
                or chain_id(layer.parent, layer.diff_id) != layer.chain_id
            ):
                log.warn("ignoring layer directory {path}: inconsistent metadata", path=path)
                continue
            if not os.path.isdir(layer.diff_dir):
                log.warn("ignoring layer directory {path}: no diff", path=path)
                continue
            found[layer.chain_id] = layer
        # A layer whose parent is gone cannot be used.
        changed = True
        while changed:
            changed = False
            for key, layer in list(found.items()):
                if layer.parent and layer.parent not in found:
                    log.warn("ignoring layer {id}: its parent is missing", id=key)
                    del found[key]
                    changed = True
        return found

    def stage_blocking(self, source: BinaryIO, parent: str = "") -> StagedLayer:
        """Unpack C{source} on top of the chain C{parent} into a temporary
        directory; raises L{twistedock.tar.read.ArchiveError} (nothing is left then)."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.root)
        try:
            diff = os.path.join(tmp, DIFF_DIR)
            os.mkdir(diff, 0o755)
            os.chmod(diff, 0o755)
            with open(os.path.join(tmp, TAR_SPLIT), "wb") as split:
                diff_id = extract.unpack_layer(source, diff, split)
                split.flush()
                os.fsync(split.fileno())
            layer = Layer(
                chain_id=chain_id(parent, diff_id),
                diff_id=diff_id,
                parent=parent,
                size=extract.directory_size(diff),
                path=tmp,
            )
            write_atomic(
                os.path.join(tmp, LAYER_META),
                json.dumps(layer.to_json(), sort_keys=True).encode("utf-8"),
                mode=0o600,
            )
            return StagedLayer(tmp_dir=tmp, layer=layer)
        except BaseException:
            _remove_tree(tmp)
            raise

    def commit_blocking(self, staged: StagedLayer) -> Layer:
        """Make a staged layer visible under its chain ID; if that layer
        exists already, the staged copy is thrown away and the existing one
        is shared."""
        final = self.path_of(staged.layer.chain_id)
        try:
            os.rename(staged.tmp_dir, final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                _remove_tree(staged.tmp_dir)
                raise
            _remove_tree(staged.tmp_dir)
        else:
            fsync_dir(self.root)
        return attr.evolve(staged.layer, path=final)

    def discard_blocking(self, staged: StagedLayer) -> None:
        _remove_tree(staged.tmp_dir)

    def remove_blocking(self, chain_ids: Sequence[str]) -> None:
        """Delete layers: each is renamed out of sight first, so a crash
        never leaves half a layer under its chain ID."""
        trash = []
        for chain in chain_ids:
            path = self.path_of(chain)
            target = os.path.join(self.root, TRASH_PREFIX + _hex(chain))
            try:
                os.rename(path, target)
            except FileNotFoundError:
                continue
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                _remove_tree(target)
                os.rename(path, target)
            trash.append(target)
        if trash:
            fsync_dir(self.root)
        for path in trash:
            _remove_tree(path)


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
