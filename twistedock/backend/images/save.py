"""
docker save (C{GET /images/get}, C{GET /images/{name}/get}): images as one
tar, streamed at the client's pace (L{TarStream}), never whole in memory.

The archive is read by every C{docker load} (dockerd 20.10's and newer,
which follow C{manifest.json}) and is an OCI image layout too, as dockerd
25+ writes it::

    blobs/sha256/<config digest>       the image config, byte for byte
    blobs/sha256/<diff ID>             each layer's tar, byte for byte
    blobs/sha256/<manifest digest>     an OCI manifest per image
    <v1 ID>/VERSION, json, layer.tar   dockerd 20.10's legacy layer directories
                                       (layer.tar: a link to its blob)
    <config hex>.json                  20.10's config name (a link to the blob)
    index.json, oci-layout             the OCI layout (tags as annotations)
    manifest.json                      [{"Config", "RepoTags", "Layers"}]
    repositories                       {name: {tag: top v1 ID}}

A layer's tar is assembled from its tar-split record and its files, and
its digest is checked against its diff ID as it goes out.
"""

import hashlib
import os
import tarfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import attr
from twisted.internet.defer import ensureDeferred

from ... import golang
from ...errors import InternalError, InvalidParameter, NotFound
from ...reference import Reference, parse_any_reference
from ...tar.split import SplitError, assemble, tar_size
from ...tar.stream import TarStream
from ...tar.write import TarWriter
from .config import ordered_container_config
from .image import ImageRecord
from .layers import Layer, chain_ids

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = "1970-01-01T00:00:00Z"


@attr.s(frozen=True, auto_attribs=True)
class SavedImage:
    """One image of a save: its config, tags and layers (lowest first)."""

    record: ImageRecord
    refs: Tuple[Reference, ...]
    layers: Tuple[Layer, ...]


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}


def _arch(name: str) -> str:
    return _ARCH_ALIASES.get(name, name)


def platform_matches(found: dict, wanted: dict) -> bool:
    """Whether the platform C{found} (an image config's, or a descriptor's
    C{platform}) is the platform C{wanted} (an OCI platform)."""
    if (found.get("os") or "linux") != wanted.get("os"):
        return False
    if _arch(found.get("architecture") or "") != _arch(wanted.get("architecture") or ""):
        return False
    variant = wanted.get("variant") or ""
    if variant:
        have = found.get("variant") or ("v8" if _arch(wanted["architecture"]) == "arm64" else "")
        return have == variant
    return True


def format_platform(platform: dict) -> str:
    """platforms.FormatAll: os/architecture[/variant]."""
    parts = [platform.get("os") or "unknown", platform.get("architecture") or "unknown"]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def _blob(digest: str) -> str:
    return "blobs/sha256/" + _hex(digest)


# -- dockerd's legacy (v1) layer configs ------------------------------------------


def v1_config(config: Optional[dict], os_name: str) -> Dict[str, object]:
    """image.V1Image as Go marshals it (without id and parent): the image's
    own for the top layer (C{config}), an empty one below."""
    if config is None:
        return {"created": EPOCH, "container_config": ordered_container_config({})}
    out: Dict[str, object] = {}
    for key in ("comment",):
        if config.get(key):
            out[key] = config[key]
    out["created"] = config.get("created") or "0001-01-01T00:00:00Z"
    if config.get("container"):
        out["container"] = config["container"]
    out["container_config"] = ordered_container_config(config.get("container_config") or {})
    for key in ("docker_version", "author"):
        if config.get(key):
            out[key] = config[key]
    if config.get("config") is not None:
        out["config"] = ordered_container_config(config["config"])
    for key in ("architecture", "variant"):
        if config.get(key):
            out[key] = config[key]
    if os_name:
        out["os"] = os_name
    if config.get("Size"):
        out["Size"] = config["Size"]
    return out


def v1_id(v1: Dict[str, object], chain: str, parent: str) -> str:
    """v1.CreateID: the digest of the legacy config with the layer's chain
    ID and the parent's v1 ID, keys sorted (Go marshals a map)."""
    doc = dict(v1)
    doc["layer_id"] = chain
    if parent:
        doc["parent"] = parent
    return "sha256:" + hashlib.sha256(golang.json_marshal({k: doc[k] for k in sorted(doc)})).hexdigest()


def v1_json(v1: Dict[str, object], image_id: str, parent: str) -> bytes:
    """A legacy layer directory's C{json}: V1Image with id and parent."""
    doc: Dict[str, object] = {"id": _hex(image_id)}
    if parent:
        doc["parent"] = _hex(parent)
    doc.update(v1)
    return golang.json_marshal(doc)


@attr.s(frozen=True, auto_attribs=True)
class LegacyLayer:
    v1_id: str
    json: bytes
    diff_id: str


def legacy_layers(record: ImageRecord) -> List[LegacyLayer]:
    """dockerd 20.10's layer directories of an image, lowest first."""
    os_name = record.config.get("os") or ""
    out: List[LegacyLayer] = []
    parent = ""
    chains = chain_ids(list(record.diff_ids))
    for i, diff_id in enumerate(record.diff_ids):
        top = i == len(record.diff_ids) - 1
        v1 = v1_config(record.config if top else None, os_name)
        layer_id = v1_id(v1, chains[i], parent)
        if not top and os_name:
            v1["os"] = os_name  # set after the ID, as dockerd does
        out.append(LegacyLayer(layer_id, v1_json(v1, layer_id, parent), diff_id))
        parent = layer_id
    return out


# -- the archive ---------------------------------------------------------------------


def _info(name: str, size: int, mtime: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.SYMTYPE:
        info.mode = 0o777
    info.mtime = mtime
    info.uname = info.gname = ""
    return info


class _ArchiveWriter:
    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write
        self.tar = TarWriter(write)
        self.dirs: set = set()

    def directory(self, name: str, mtime: int = 0) -> None:
        if name not in self.dirs:
            self.dirs.add(name)
            self.tar.header(_info(name + "/", 0, mtime, tarfile.DIRTYPE))

    def file(self, name: str, data: bytes, mtime: int = 0) -> None:
        self.tar.header(_info(name, len(data), mtime))
        self.write(data)
        self._pad(len(data))

    def symlink(self, name: str, target: str, mtime: int = 0) -> None:
        info = _info(name, 0, mtime, tarfile.SYMTYPE)
        info.linkname = target
        self.tar.header(info)

    def layer(self, name: str, layer: Layer, mtime: int) -> int:
        """Write the layer's tar as entry C{name}: its size."""
        try:
            size = tar_size(layer.tar_split)
        except SplitError as e:
            raise InternalError("cannot export layer %s: %s" % (layer.diff_id, e))
        self.tar.header(_info(name, size, mtime))
        try:
            digest, written = assemble(layer.tar_split, layer.diff_dir, self.write)
        except SplitError as e:
            raise InternalError("cannot export layer %s: %s" % (layer.diff_id, e))
        if digest != layer.diff_id or written != size:
            raise InternalError(
                "cannot export layer %s: its content changed (digest %s)" % (layer.diff_id, digest)
            )
        self._pad(size)
        return size

    def _pad(self, size: int) -> None:
        tail = size % tarfile.BLOCKSIZE
        if tail:
            self.write(b"\0" * (tarfile.BLOCKSIZE - tail))

    def close(self) -> None:
        self.tar.close()


def _created_seconds(record: ImageRecord) -> int:
    return record.created_ns // 1_000_000_000 if record.created_ns > 0 else 0


def write_archive(images: List[SavedImage], write: Callable[[bytes], None]) -> None:
    """The whole archive (see the module docstring), to C{write}."""
    out = _ArchiveWriter(write)
    manifest: List[dict] = []
    repositories: Dict[str, Dict[str, str]] = {}
    descriptors: List[dict] = []
    written_blobs: set = set()
    layer_sizes: Dict[str, int] = {}
    written_legacy: set = set()
    out.directory("blobs")
    out.directory("blobs/sha256")
    for image in images:
        record = image.record
        mtime = _created_seconds(record)
        if record.id not in written_blobs:
            written_blobs.add(record.id)
            out.file(_blob(record.id), record.raw, mtime)
        layer_descriptors = []
        for layer in image.layers:
            if layer.diff_id not in layer_sizes:
                layer_sizes[layer.diff_id] = out.layer(_blob(layer.diff_id), layer, mtime)
            layer_descriptors.append(layer.diff_id)
        oci_manifest = golang.json_marshal(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": {"mediaType": MEDIA_CONFIG, "digest": record.id, "size": len(record.raw)},
                "layers": [
                    {"mediaType": MEDIA_LAYER, "digest": d, "size": layer_sizes[d]}
                    for d in layer_descriptors
                ],
            }
        )
        manifest_digest = "sha256:" + hashlib.sha256(oci_manifest).hexdigest()
        if manifest_digest not in written_blobs:
            written_blobs.add(manifest_digest)
            out.file(_blob(manifest_digest), oci_manifest)
        legacy = legacy_layers(record)
        for entry in legacy:
            if entry.v1_id in written_legacy:
                continue
            written_legacy.add(entry.v1_id)
            directory = _hex(entry.v1_id)
            out.directory(directory, mtime)
            out.file(directory + "/VERSION", b"1.0", mtime)
            out.file(directory + "/json", entry.json, mtime)
            out.symlink(directory + "/layer.tar", "../" + _blob(entry.diff_id), mtime)
        config_link = _hex(record.id) + ".json"
        if config_link not in written_legacy:
            written_legacy.add(config_link)
            out.symlink(config_link, _blob(record.id), mtime)
        repo_tags = []
        described = {"mediaType": MEDIA_MANIFEST, "digest": manifest_digest, "size": len(oci_manifest)}
        for ref in image.refs:
            repositories.setdefault(ref.familiar_name(), {})[ref.tag or ""] = _hex(legacy[-1].v1_id)
            repo_tags.append(ref.familiar_string())
            descriptors.append(
                dict(described, annotations={ANNOTATION_IMAGE_NAME: str(ref), ANNOTATION_REF_NAME: ref.tag})
            )
        if not image.refs:
            descriptors.append(described)
        manifest.append(
            {
                "Config": _blob(record.id),
                "RepoTags": repo_tags or None,
                "Layers": [_blob(d) for d in layer_descriptors],
            }
        )
    out.file(
        "index.json",
        golang.json_marshal({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": descriptors}),
    )
    out.file("manifest.json", golang.json_marshal(manifest) + b"\n")
    out.file("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    if repositories:
        out.file("repositories", golang.json_marshal(repositories) + b"\n")
    out.close()


def _check_recorded(images: List[SavedImage]) -> None:
    """Refuse, before the stream starts, layers whose tar cannot be given out."""
    for image in images:
        for layer in image.layers:
            if not os.path.exists(layer.tar_split):
                raise InternalError(
                    "cannot export layer %s: its tar was not recorded when it was stored "
                    "(import or pull the image again)" % (layer.diff_id,)
                )


class ImageSaving:
    """The image store's save (a part of L{ImageStore}, whose state it reads)."""

    async def export_images(self, names: List[str], platforms: Sequence[dict] = ()) -> TarStream:
        """A tar stream of the images C{names} name (dockerd's parseNames:
        a name alone takes all its tags), in the order named; with
        C{platforms}, each image must be for one of them."""
        images = self._save_plan(names)
        for image in images:
            if platforms and not any(platform_matches(image.record.config, p) for p in platforms):
                raise InternalError(
                    "no suitable export target found for platform %s" % (format_platform(platforms[0]),)
                )
        await self._thread(_check_recorded, images)
        for image in images:
            self._log("save", image.record.id, image.record.id)
        # Held until the tar is written: an image deleted meanwhile keeps its
        # layers until then, as dockerd's layer references keep them.
        tops = [image.record.top for image in images]
        for top in tops:
            self._held[top] = self._held.get(top, 0) + 1

        def release():
            for top in tops:
                self._held[top] -= 1
                if not self._held[top]:
                    del self._held[top]
            return ensureDeferred(self.collect_garbage())

        return TarStream(self.reactor, lambda write: write_archive(images, write), release)

    def _save_plan(self, names: List[str]) -> List[SavedImage]:
        order: List[str] = []
        refs: Dict[str, List[Reference]] = {}

        def add(image_id: str, ref: Optional[Reference]) -> None:
            if image_id not in refs:
                order.append(image_id)
                refs[image_id] = []
            if ref is not None and not ref.digest:
                tagged = ref.tag_name_only()
                if all(str(tagged) != str(known) for known in refs[image_id]):
                    refs[image_id].append(tagged)

        for name in names:
            ref = parse_any_reference(name)
            if not ref.named:
                if ref.digest not in self._images:
                    raise NotFound("No such image: %s" % (ref.digest,))
                add(ref.digest, None)
                continue
            if ref.familiar_name() == "sha256":
                found = self._search(name)
                if found is None:
                    raise NotFound("No such image: %s" % (name,))
                add(found, None)
                continue
            if ref.tag is None and ref.digest is None:
                assocs = sorted(
                    (r for r, _ in self._refs.values() if r.name == ref.name),
                    key=str,
                )
                for assoc in assocs:
                    add(self._refs[str(assoc)][1], assoc)
                if not assocs:
                    found = self._search(name)
                    if found is None:
                        raise NotFound("No such image: %s" % (name,))
                    add(found, None)
                continue
            found_ref = self._refs.get(str(ref))
            if found_ref is None or found_ref[1] not in self._images:
                raise NotFound("reference does not exist")
            add(found_ref[1], ref)

        out: List[SavedImage] = []
        for image_id in order:
            record = self._images[image_id]
            if not record.diff_ids:
                raise InternalError("empty export - not implemented")
            os_name = record.config.get("os") or ""
            if os_name and os_name != "linux":
                raise InvalidParameter('os "%s" is not supported' % (os_name,))
            layers = tuple(self.layers.chain(record.top))
            out.append(SavedImage(record, tuple(refs[image_id]), layers))
        return out
