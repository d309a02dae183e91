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
    layers/                 the layer store (see twistedock.backend.images.layers)

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
- C{ImageStore(..., containers=store)}: the L{IContainerStore} (made before
  both backends, as moby's container store) that says which containers use
  an image; without one no container uses any image.  Deleting an image a
  container uses is refused (409) as dockerd refuses it.
- C{await store.collect_garbage()}: call after removing a container, so the
  layers of an image deleted while that container used it go too.
- As an C{IInventory} for the system backend: C{counts()} and
  C{disk_usage(types)}.

Blocking work (unpacking, hashing, directory sizes, every file write) runs
in the reactor's thread pool; the reactor thread only orchestrates, and
changes to the store are serialised by one lock.
"""

import json
import os
import time
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple

import attr
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.internet.threads import deferToThreadPool
from zope.interface import Interface, implementer

from ... import __version__, golang
from ...atomic import write_atomic
from ...deferreds import shield
from ...errors import (
    DockerError,
    Forbidden,
    InternalError,
    InvalidParameter,
    NotFound,
    NotImplementedYet,
)
from ...filters import Filters
from ...logs import Logger
from ...reference import (
    ANCHORED_ID_RE,
    Reference,
    parse_any_reference,
    parse_normalized_named,
    repo_tag_reference,
    validate_digest,
)
from ...routers.image import IImageBackend
from ...tar.read import ArchiveError, BreakoutError
from ...timetypes import get_timestamp
from ..distribution.manifest import split_platform
from ..events import EventLog
from ..system import IInventory
from .changes import apply_changes
from .children import ChildImages, history_entry
from .config import empty_container_config, encode_image_config
from .delete import ImageDeletion
from .image import HistoryItem, Image, ImageRecord, ImageSummary, read_record
from .layers import LayerStore, StagedLayer
from .load import ImageLoading
from .save import ImageSaving

log = Logger()

IMAGE_DIR = "image"
IMAGEDB_DIR = "imagedb"
LAYERS_DIR = "layers"
STATE_FILE = "repositories.json"
#: Verified blobs of pulls not finished yet.
DOWNLOADS_DIR = "downloads"
#: Pulled layers' compressed blobs, kept for a push.
BLOBS_DIR = "blobs"
#: The diff ID of an empty layer (Go's empty tar: 1024 zero bytes).
EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


_LIST_FILTERS = ("dangling", "label", "before", "since", "reference", "until")


class IContainerStore(Interface):
    """What the image store asks of the daemon's containers."""

    def image_users(image_id):
        """The containers using the image: C{[(container_id, running)]}."""


@implementer(IImageBackend, IInventory)
class ImageStore(ImageDeletion, ImageSaving, ImageLoading, ChildImages):
    def __init__(
        self,
        reactor,
        data_root: str,
        events: EventLog,
        now: Callable[[], int] = time.time_ns,
        containers: Optional[IContainerStore] = None,
        registry: Any = None,
    ) -> None:
        self.reactor = reactor
        self.events = events
        self.root = os.path.join(os.path.abspath(data_root), IMAGE_DIR)
        self.imagedb = os.path.join(self.root, IMAGEDB_DIR)
        self.state_path = os.path.join(self.root, STATE_FILE)
        self.layers = LayerStore(os.path.join(self.root, LAYERS_DIR))
        self._now = now
        self._images: Dict[str, ImageRecord] = {}
        #: str(reference) -> (reference, image ID)
        self._refs: Dict[str, Tuple[Reference, str]] = {}
        self._last_tag: Dict[str, str] = {}
        #: Images deleted while containers used them: ID -> top chain ID.
        self._retained: Dict[str, str] = {}
        #: Layer chains a save is reading (top chain ID -> how many saves).
        self._held: Dict[str, int] = {}
        self._containers = containers
        #: The registry client a pull uses (a RegistryService), if any.
        self._registry = registry
        self._lock = DeferredLock()
        self._pruning = False

    # -- plumbing --------------------------------------------------------

    def _thread(self, function, *args, on_abandon=None) -> Deferred:
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)
        return shield(d, on_abandon, "image operation", (DockerError, ArchiveError))

    def _locked(self, function, *args) -> Deferred:
        """Run the coroutine function under the store's lock, to its end even
        if the caller goes away."""
        d = self._lock.run(lambda: ensureDeferred(function(*args)))
        return shield(d, None, "image operation", (DockerError, ArchiveError))

    def _users(self, image_id: str) -> List[Tuple[str, bool]]:
        if self._containers is None:
            return []
        return list(self._containers.image_users(image_id) or [])

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
        from ..distribution.transfer import sweep_downloads

        for directory in (
            self.root, self.imagedb, os.path.join(self.root, DOWNLOADS_DIR),
            os.path.join(self.root, BLOBS_DIR),
        ):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            if directory == os.path.join(self.root, DOWNLOADS_DIR):
                sweep_downloads(directory)
            for name in os.listdir(directory):
                if name.startswith(".tmp-"):
                    try:
                        os.unlink(os.path.join(directory, name))
                    except OSError:
                        pass
        layers = self.layers.load_blocking()
        images: Dict[str, ImageRecord] = {}
        for name in os.listdir(self.imagedb):
            if not ANCHORED_ID_RE.match(name):
                continue
            path = os.path.join(self.imagedb, name)
            try:
                with open(path, "rb") as f:
                    raw = f.read()
                record = read_record(raw)
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

    def _resolve(self, name: str) -> ImageRecord:
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

    def _image(self, record: ImageRecord) -> Image:
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

    async def search_images(self, term: str, limit: int, filters) -> list:
        """docker search (L{distribution.search})."""
        if self._registry is None:
            raise NotImplementedYet("GET /images/search is not implemented yet")
        from ..distribution.search import search

        return await search(self._registry, term, limit, filters)

    async def pull_image(
        self, image: str, tag: str, platform: str, auth: Any = None, emit: Any = None
    ) -> None:
        """docker pull: C{emit(doc)} is given each progress message."""
        ref = parse_normalized_named(image[:-1] if image.endswith(":") else image)
        if tag:
            if validate_digest(tag) is None:
                ref = attr.evolve(ref.trimmed(), digest=tag)
            else:
                ref = ref.with_tag(tag)
        if ref.familiar_name() == "scratch":
            raise Forbidden("'scratch' is a reserved name")
        if self._registry is None:
            raise NotImplementedYet(
                "pull is not implemented yet: twistedock has no registry client; "
                "import a root filesystem with docker import instead"
            )
        from ..distribution.auth import from_json
        from ..distribution.pull import Puller

        puller = Puller(self.reactor, self, self._registry, os.path.join(self.root, DOWNLOADS_DIR))
        # Without a tag or digest: every tag (docker pull --all-tags).
        await puller.pull(ref, platform, from_json(auth or {}), emit or (lambda doc: None))

    async def push_image(self, name: str, tag: str, auth: Any = None, emit: Any = None) -> None:
        """docker push: C{emit(doc)} is given each progress message."""
        ref = parse_normalized_named(name)
        if ref.digest:
            raise InvalidParameter("cannot push a digest reference")
        if ref.tag and not tag:
            tag = ref.tag
        if tag:
            ref.with_tag(tag)
        if self._registry is None:
            raise NotImplementedYet("push is not implemented yet: twistedock has no registry client")
        from ..distribution.auth import from_json
        from ..distribution.push import Pusher

        pusher = Pusher(self.reactor, self, self._registry, os.path.join(self.root, DOWNLOADS_DIR))
        await pusher.push(ref.trimmed(), tag, from_json(auth or {}), emit or (lambda doc: None))
        pushed = ref.trimmed().with_tag(tag) if tag else ref.trimmed()
        self._log("push", pushed.familiar_string(), pushed.familiar_name())

    def tags_of(self, name: str) -> List[str]:
        """The tags of repository C{name} (its full name), sorted."""
        return sorted(
            ref.tag for ref, _ in self._refs.values() if ref.name == name and ref.tag
        )

    def live_diff_ids(self) -> set:
        """The diff IDs of every layer in the store."""
        return {layer.diff_id for layer in self.layers.layers.values()}

    def config_bytes(self, image_id: str) -> bytes:
        return self._images[image_id].raw

    async def add_repo_digest(self, image_id: str, ref: Reference) -> None:
        """Record C{repo@digest} (a push's manifest) for the image."""
        await self._locked(self._tag_locked, image_id, ref)

    # -- for a pull (twistedock.backend.distribution.pull) -------------------

    def image_exists(self, image_id: str) -> bool:
        return image_id in self._images

    def layer_exists(self, chain: str) -> bool:
        return self.layers.get(chain) is not None

    async def stage_layer(self, source: BinaryIO, parent: str) -> StagedLayer:
        """Unpack a layer tar (compressed or not) on top of the chain
        C{parent}, out of sight until L{add_pulled}; C{source} is closed."""
        try:
            return await self._stage(source, parent)
        except ArchiveError as e:
            raise InternalError("failed to register layer: %s" % (e,))

    async def discard_staged(self, staged: Sequence[StagedLayer]) -> None:
        for item in staged:
            await self._thread(self.layers.discard_blocking, item)

    async def add_pulled(
        self, raw: bytes, staged: Sequence[StagedLayer], refs: Sequence[Reference], top: str
    ) -> bool:
        """Register a pulled image: the C{staged} layers on the existing
        chain C{top}, the config C{raw} as it came (its digest is the ID),
        and C{refs}.  Whether the first reference moved to this image."""
        return await self._locked(self._add_pulled, raw, list(staged), list(refs), top)

    async def _add_pulled(self, raw, staged, refs, top) -> bool:
        if top and self.layers.get(top) is None:
            await self.discard_staged(staged)
            raise InternalError("layer %s was removed during the pull: pull again" % (top,))
        for item in staged:
            layer = await self._thread(self.layers.commit_blocking, item)
            self.layers.add(layer)
        record = read_record(raw)
        if record.id not in self._images:
            if record.top and self.layers.get(record.top) is None:
                raise InternalError("the layers of %s are incomplete" % (record.id,))
            await self._thread(
                write_atomic, os.path.join(self.imagedb, record.id.split(":", 1)[1]), raw, 0o600
            )
            self._images[record.id] = record
            self._retained.pop(record.id, None)
        updated = False
        for index, ref in enumerate(refs):
            current = self._refs.get(str(ref))
            if current is not None and current[1] == record.id:
                continue
            if index == 0:
                updated = True
            await self._add_reference(record.id, ref)
        if refs:
            self._log("pull", refs[0].familiar_string(), refs[0].familiar_name())
        return updated

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
        try:
            staged = await self._stage(source, "")
        except BreakoutError as e:
            raise InvalidParameter("Error processing tar file(exit status 1): %s" % (e,))
        except ArchiveError as e:
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
        record = await self._store_config(config, ref)
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
        try:
            staged = await self._stage(source, parent.top)
        except ArchiveError as e:
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
        parent: ImageRecord,
        container_id: str,
        container_config: dict,
        config: dict,
        author: str,
        comment: str,
        ref: Optional[Reference],
    ) -> str:
        empty = staged.layer.diff_id == EMPTY_LAYER_DIFF_ID
        diff_ids = list(parent.diff_ids)
        await self._keep_layer(staged, diff_ids, empty)
        created = golang.rfc3339_nano(self._now())
        entry = history_entry(created, author, container_config, empty, comment)
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
        record = await self._store_config(image, ref)
        return record.id

    async def _stage(self, source: BinaryIO, parent_top: str) -> StagedLayer:
        """Unpack the layer tar C{source} on top of C{parent_top} in a
        thread (C{source} is closed after)."""

        def stage() -> StagedLayer:
            try:
                return self.layers.stage_blocking(source, parent_top)
            finally:
                source.close()

        return await self._thread(stage, on_abandon=self.layers.discard_blocking)

    async def _store_config(self, config: dict, ref: Optional[Reference]) -> ImageRecord:
        """Write the image config C{config} (its digest is the image's ID)
        and tag it C{ref}."""
        raw = encode_image_config(config)
        record = read_record(raw)
        await self._thread(
            write_atomic, os.path.join(self.imagedb, record.id.split(":", 1)[1]), raw, 0o600
        )
        self._images[record.id] = record
        self._retained.pop(record.id, None)
        if ref is not None:
            await self._add_reference(record.id, ref)
        return record

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
        current: Optional[ImageRecord] = record
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

    def _created_bounds(self, filters: Filters) -> Tuple[Optional[int], Optional[int]]:
        """The (before, since) creation times, in nanoseconds, that the
        before, until and since filters ask for (None: no bound)."""
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
        return before, since

    def _list(
        self, filters: Filters, all_images: bool, shared_size: bool, container_count: bool
    ) -> List[ImageSummary]:
        filters.validate(_LIST_FILTERS)
        dangling_only = filters.get_bool_or_default("dangling", False)
        before, since = self._created_bounds(filters)
        patterns = sorted(filters.get("reference"))
        summaries: List[Tuple[ImageSummary, ImageRecord]] = []
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

    def _live_layers(self) -> set:
        live = set()
        tops = [record.top for record in self._images.values() if record.top]
        tops.extend(self._retained.values())
        tops.extend(self._held)
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
        if drop_retained and self._containers is not None:
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

    # -- IInventory ------------------------------------------------------

    def counts(self) -> Dict[str, int]:
        return {"Images": len(self._images)}

    async def disk_usage(self, types) -> dict:
        if "image" not in types:
            return {}
        summaries = self._list(Filters(), False, True, container_count=True)
        return {
            "LayersSize": self.layers.total_size(),
            "Images": summaries,
        }


def _familiar_match(pattern: str, ref: Reference) -> bool:
    try:
        if golang.path_match(pattern, ref.familiar_string()):
            return True
        return golang.path_match(pattern, ref.familiar_name())
    except golang.BadPattern as e:
        raise InternalError(str(e))


def _platform_of(text: str) -> Tuple[str, str, str]:
    """The (os, architecture, variant) an import is for: the host's, or
    the C{platform} form value's."""
    if not text:
        return "linux", golang.goarch(), ""
    return split_platform(text)
