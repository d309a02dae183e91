"""
docker load (C{POST /images/load}): a docker-archive (C{manifest.json},
as every dockerd writes it) or an OCI image layout (C{index.json}),
uncompressed or compressed as dockerd accepts it.

All or nothing: the tar is unpacked into a private directory (entries that
would escape it, by name or through a link, refuse the whole archive), each
new layer is unpacked into the layer store's staging area and checked
against the diff ID its config names (and, for an OCI layout, every blob
against its descriptor's digest, the config included), and only when every
image checks out are the layers committed, the configs written and the
tags moved, under the store's lock.  A refused archive leaves nothing.

What the client is told is dockerd's: C{Loading layer} progress per new
layer (unless quiet), C{The image X already exists, renaming the old one
with ID ... to empty string}, C{Loaded image: X}, or C{Loaded image ID:
sha256:...} when the images have no tags.
"""

import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple

import attr

from ... import golang, progress
from ...errors import DockerError, InternalError, InvalidParameter
from ...reference import Reference, parse_normalized_named
from ...tar import DIR_FLAGS
from ...tar.extract import Extractor
from ...tar.read import (
    ArchiveError,
    BreakoutError,
    DigestReader,
    ReadThrough,
    decompressed,
    entry_path,
    os_error,
    read_members,
)
from .image import ImageRecord, read_record
from .layers import StagedLayer, chain_id
from .save import platform_matches

MANIFEST = "manifest.json"
INDEX = "index.json"
LOAD_PREFIX = ".tmp-load-"
_DIGEST_NAME = re.compile(r"^([a-f0-9]{64})(\.json)?$")
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
#: As dockerd's progress reader: at most one update per this many seconds.
PROGRESS_INTERVAL = 0.1


@attr.s(frozen=True, auto_attribs=True)
class LoadProgress:
    """A C{Loading layer} progress line."""

    id: str
    current: int
    total: int


@attr.s(frozen=True, auto_attribs=True)
class LoadText:
    """A line of text (a C{stream} message)."""

    text: str


class LoadError(Exception):
    """The archive is refused (the message is the client's)."""


@attr.s(auto_attribs=True)
class _Planned:
    record: ImageRecord
    refs: List[Reference]


@attr.s(auto_attribs=True)
class _Plan:
    images: List[_Planned] = attr.Factory(list)
    #: chain ID -> staged layer, parents first.
    staged: Dict[str, StagedLayer] = attr.Factory(dict)


# -- the archive, unpacked ------------------------------------------------------------


class _ArchiveExtractor(Extractor):
    """Unpacks an image archive: directories, files, and links that stay
    inside it; anything else is no part of one and is skipped."""

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        path = entry_path(member.name)
        if path == ".":
            return
        if member.issym():
            target = member.linkname
            resolved = golang.clean(golang.split(path)[0] + "/" + target) if target else ""
            if not target or target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise BreakoutError(
                    "invalid symlink %s -> %s" % (golang.quote(path), golang.quote(target))
                )
        elif not (member.isdir() or member.isreg() or member.islnk()):
            return
        # Ours to read, whoever owned it where it was made.
        member.uid, member.gid = os.getuid(), os.getgid()
        member.mode = (member.mode & 0o777) | (0o700 if member.isdir() else 0o600)
        member.pax_headers = {k: v for k, v in member.pax_headers.items() if not k.startswith("SCHILY.xattr.")}
        parts = path.split("/")
        parent_fd = self.open_dir(parts[:-1], create=True, shown=path)
        try:
            self.create(tar, member, parent_fd, parts[-1], path)
        finally:
            os.close(parent_fd)


def unpack_archive(source: BinaryIO, dest: str) -> None:
    """Unpack the (possibly compressed) archive C{source} into C{dest}."""
    root_fd = os.open(dest, DIR_FLAGS)
    try:
        extractor = _ArchiveExtractor(root_fd)
        # DigestReader: a damaged compressed stream is an ArchiveError.
        for tar, member in read_members(DigestReader(decompressed(source))):  # type: ignore[arg-type]
            extractor.extract(tar, member)
    except OSError as e:
        raise ArchiveError(str(e))
    finally:
        os.close(root_fd)


def open_in_scope(root: str, name: str) -> BinaryIO:
    """Open the file C{name} of the unpacked archive, links followed inside
    it (dockerd's FollowSymlinkInScope)."""
    try:
        path = entry_path(name)
    except BreakoutError:
        raise LoadError("invalid archive: %s is outside of the archive" % (golang.quote(name),))
    root_fd = os.open(root, DIR_FLAGS)
    try:
        extractor = Extractor(root_fd)
        for _ in range(40):
            parts = path.split("/")
            found = extractor.lookup(parts, shown=path)
            if found is None:
                raise LoadError("invalid archive: open %s: no such file or directory" % (name,))
            parent, st = found
            try:
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(parts[-1], dir_fd=parent)
                    path = golang.clean(golang.split(path)[0] + "/" + target).lstrip("/")
                    if path.startswith("../") or path == "..":
                        raise LoadError("invalid archive: %s is outside of the archive" % (name,))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    raise LoadError("invalid archive: %s is not a file" % (name,))
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                return os.fdopen(fd, "rb")
            finally:
                os.close(parent)
        raise LoadError("invalid archive: open %s: too many levels of symbolic links" % (name,))
    finally:
        os.close(root_fd)


def _read_small(root: str, name: str, limit: int = 64 << 20) -> bytes:
    with open_in_scope(root, name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise LoadError("invalid archive: %s is too large" % (name,))
    return data


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise LoadError("invalid archive: failed to decode %s: %s" % (name, e))


# -- reading layers ---------------------------------------------------------------------


class _Reading(ReadThrough):
    """Reads through a layer file: its sha256 (if C{hashed}: a blob's digest
    is not its diff ID when compressed), and progress as dockerd's
    progress reader reports it (every 1% or 512 kB, at most ten a second,
    and at the end)."""

    def __init__(
        self, f: BinaryIO, total: int, report: Optional[Callable[[int, int], None]], hashed: bool
    ) -> None:
        self._f = f
        self.total = total
        self.current = 0
        self._last_update = 0
        self._last_time: Optional[float] = None
        self._report = report
        self._hash = hashlib.sha256() if hashed else None
        self._every = min(512 * 1024, int(0.01 * total)) if total > 0 else 512 * 1024

    @property
    def digest(self) -> str:
        assert self._hash is not None
        return "sha256:" + self._hash.hexdigest()

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        if self._hash is not None:
            self._hash.update(data)
        self.current += len(data)
        if self._report is not None and (self.current - self._last_update > self._every or not data):
            self._update(not data)
            self._last_update = self.current
        return data

    def _update(self, last: bool) -> None:
        now = time.monotonic()
        allowed = self._last_time is None or now - self._last_time >= PROGRESS_INTERVAL
        if last or self.current == self.total or allowed:
            if allowed:
                self._last_time = now
            self._report(self.current, self.total)  # type: ignore[misc]


class _Loader:
    """The blocking part of a load: unpack, read, check, stage."""

    def __init__(
        self,
        store,
        tmp: str,
        existing: frozenset,
        output: Callable[[Any], None],
        quiet: bool,
        platforms: Sequence[dict],
    ) -> None:
        self.store = store
        self.platforms = list(platforms)
        self.layers = store.layers
        self.tmp = tmp
        self.existing = existing
        self.output = output
        self.quiet = quiet
        self.plan = _Plan()

    def run(self, source: BinaryIO) -> _Plan:
        try:
            unpack_archive(source, self.tmp)
        finally:
            source.close()
        if self._exists(MANIFEST):
            self._docker_archive()
        elif self._exists(INDEX):
            self._oci_layout()
        else:
            raise LoadError("invalid archive: does not contain a manifest.json")
        return self.plan

    def _exists(self, name: str) -> bool:
        try:
            open_in_scope(self.tmp, name).close()
        except LoadError:
            return False
        return True

    # -- docker-archive ------------------------------------------------------------

    def _docker_archive(self) -> None:
        manifest = _json(_read_small(self.tmp, MANIFEST), MANIFEST)
        if manifest is None:
            raise LoadError("invalid manifest, manifest cannot be null (but can be [])")
        if not isinstance(manifest, list) or not all(isinstance(m, dict) for m in manifest):
            raise LoadError("invalid archive: failed to decode manifest.json: not a list of images")
        for item in manifest:
            config_name = str(item.get("Config") or "")
            raw = _read_small(self.tmp, config_name)
            found = _DIGEST_NAME.match(golang.base(config_name))
            if found and hashlib.sha256(raw).hexdigest() != found.group(1):
                raise LoadError(
                    "invalid archive: config %s does not match its digest (got sha256:%s)"
                    % (config_name, hashlib.sha256(raw).hexdigest())
                )
            record = self._record(raw)
            if not self._wanted(record.config):
                continue
            self._layers(record, item.get("Layers") or [], lambda layer: (str(layer), None))
            refs = []
            for text in item.get("RepoTags") or []:
                try:
                    ref = parse_normalized_named(str(text))
                except DockerError as e:
                    raise LoadError(str(e))
                if ref.tag is None or ref.digest:
                    raise LoadError("invalid tag %s" % (golang.quote(str(text)),))
                refs.append(ref)
            self.plan.images.append(_Planned(record, refs))

    def _record(self, raw: bytes) -> ImageRecord:
        try:
            record = read_record(raw)
        except (UnicodeDecodeError, ValueError) as e:
            raise LoadError("invalid image config: %s" % (e,))
        os_name = record.config.get("os") or ""
        if os_name and os_name != "linux":
            raise LoadError("cannot load %s image on linux" % (os_name,))
        rootfs = record.config.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise LoadError("invalid image config: no rootfs of type layers")
        return record

    def _layers(self, record: ImageRecord, layers: List[Any],
                located: Callable[[Any], Tuple[str, Optional[str]]]) -> None:
        """Stage an image's layers, bottom first: C{located} gives a layer's
        file in the archive and the digest it must have (or None)."""
        if len(layers) != len(record.diff_ids):
            raise LoadError(
                "invalid manifest, layers length mismatch: expected %d, got %d"
                % (len(layers), len(record.diff_ids))
            )
        parent = ""
        for i, diff_id in enumerate(record.diff_ids):
            name, blob = located(layers[i])
            parent = self._layer(i, name, diff_id, parent, blob)

    def _layer(self, index: int, name: str, diff_id: str, parent: str, blob: Optional[str]) -> str:
        """Stage layer C{name} on top of chain C{parent} unless the store
        has it: its chain ID."""
        chain = chain_id(parent, diff_id)
        if chain in self.existing or chain in self.plan.staged:
            return chain
        with open_in_scope(self.tmp, name) as f:
            total = os.fstat(f.fileno()).st_size
            report = None
            if not self.quiet:
                short = progress.short(diff_id)
                report = lambda current, size: self.output(LoadProgress(short, current, size))  # noqa: E731
            reading = _Reading(f, total, report, blob is not None)
            try:
                staged = self.layers.stage_blocking(reading, parent)
            except ArchiveError as e:
                raise LoadError("Error processing tar file(exit status 1): %s" % (e,))
            reading.drain()
        if blob is not None and reading.digest != blob:
            self.layers.discard_blocking(staged)
            raise LoadError("invalid archive: blob %s does not match its digest (got %s)" % (blob, reading.digest))
        if staged.layer.diff_id != diff_id:
            self.layers.discard_blocking(staged)
            raise LoadError(
                "invalid diffID for layer %d: expected %s, got %s"
                % (index, json.dumps(diff_id), json.dumps(staged.layer.diff_id))
            )
        self.plan.staged[chain] = staged
        return chain

    # -- OCI layout -------------------------------------------------------------------

    def _blob(self, descriptor: Any) -> Tuple[str, str]:
        """The digest and path of a descriptor's blob."""
        if not isinstance(descriptor, dict):
            raise LoadError("invalid archive: a descriptor is not an object")
        digest = str(descriptor.get("digest") or "")
        algorithm, _, encoded = digest.partition(":")
        if algorithm != "sha256" or not re.match(r"^[a-f0-9]{64}$", encoded):
            raise LoadError("invalid archive: unsupported digest %s" % (golang.quote(digest),))
        return digest, "blobs/sha256/" + encoded

    def _blob_path(self, descriptor: Any) -> Tuple[str, str]:
        """The path and digest of a descriptor's blob."""
        digest, path = self._blob(descriptor)
        return path, digest

    def _verified(self, descriptor: Any) -> bytes:
        digest, path = self._blob(descriptor)
        data = _read_small(self.tmp, path)
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise LoadError("invalid archive: blob %s does not match its digest (got %s)" % (digest, actual))
        return data

    def _oci_layout(self) -> None:
        index = _json(_read_small(self.tmp, INDEX), INDEX)
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise LoadError("invalid archive: index.json lists no manifests")
        for descriptor in index["manifests"]:
            annotations = (descriptor or {}).get("annotations") or {}
            name = annotations.get(ANNOTATION_IMAGE_NAME) or ""
            if not name:
                ref_name = annotations.get(ANNOTATION_REF_NAME) or ""
                # A bare tag ("latest") names no repository.
                if "/" in ref_name or ":" in ref_name:
                    name = ref_name
            refs = []
            if name:
                try:
                    ref = parse_normalized_named(name)
                except DockerError:
                    ref = None
                if ref is not None and not ref.digest:
                    refs.append(ref.tag_name_only())
            manifest = self._manifest_of(descriptor)
            if manifest is None:
                continue
            raw = self._verified(manifest.get("config"))
            record = self._record(raw)
            if not self._wanted(record.config):
                continue
            self._layers(record, manifest.get("layers") or [], self._blob_path)
            self.plan.images.append(_Planned(record, refs))
        if not self.plan.images and not self.platforms:
            raise LoadError("invalid archive: no image for linux/%s in index.json" % (golang.goarch(),))

    def _wanted(self, platform: dict) -> bool:
        """Whether an image for C{platform} is to be loaded: all are, unless
        platforms were asked for."""
        return not self.platforms or any(platform_matches(platform, p) for p in self.platforms)

    def _manifest_of(self, descriptor: Any, depth: int = 0) -> Optional[dict]:
        """The image manifest a descriptor leads to (an index: the host
        platform's), or None (not an image)."""
        if depth > 4:
            raise LoadError("invalid archive: indexes nested too deep")
        doc = _json(self._verified(descriptor), "manifest")
        if not isinstance(doc, dict):
            raise LoadError("invalid archive: a manifest is not an object")
        media = doc.get("mediaType") or descriptor.get("mediaType") or ""
        if media in _INDEX_TYPES or "manifests" in doc:
            wanted = self.platforms or [{"os": "linux", "architecture": golang.goarch()}]
            for child in doc.get("manifests") or []:
                platform = (child or {}).get("platform") or {}
                if platform and not any(platform_matches(platform, p) for p in wanted):
                    continue
                found = self._manifest_of(child, depth + 1)
                if found is not None:
                    return found
            return None
        if media and media not in _MANIFEST_TYPES:
            return None
        if "config" not in doc:
            return None
        return doc


# -- the store's part ---------------------------------------------------------------


class ImageLoading:
    """The image store's load (a part of L{ImageStore}, which holds the
    state it changes)."""

    async def load_images(
        self,
        source: BinaryIO,
        quiet: bool,
        platforms: Sequence[dict],
        output: Callable[[Any], None],
    ) -> None:
        """Load the archive C{source} (closed once read), only its images for
        C{platforms} if any: C{output} is given L{LoadProgress} and
        L{LoadText} values as dockerd writes its lines."""
        existing = frozenset(self.layers.layers)

        def from_thread(item: Any) -> None:
            self.reactor.callFromThread(output, item)

        def work() -> _Plan:
            os.makedirs(self.layers.root, mode=0o700, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=LOAD_PREFIX, dir=self.layers.root)
            loader = _Loader(self, tmp, existing, from_thread, quiet, platforms)
            try:
                return loader.run(source)
            except BaseException:
                for staged in loader.plan.staged.values():
                    self.layers.discard_blocking(staged)
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

        def abandoned(plan: _Plan) -> None:
            for staged in plan.staged.values():
                self.layers.discard_blocking(staged)

        try:
            plan = await self._thread(work, on_abandon=abandoned)
        except LoadError as e:
            raise InvalidParameter(str(e))
        except BreakoutError as e:
            raise InvalidParameter("Error processing tar file(exit status 1): %s" % (e,))
        except ArchiveError as e:
            raise InternalError("Error processing tar file(exit status 1): %s" % (e,))
        except OSError as e:
            raise InternalError(os_error(e))
        await self._locked(self._commit_load, plan, output)

    async def _commit_load(self, plan: _Plan, output: Callable[[Any], None]) -> None:
        pending = dict(plan.staged)
        try:
            for chain in list(pending):
                staged = pending.pop(chain)
                if self.layers.get(chain) is not None:
                    await self._thread(self.layers.discard_blocking, staged)
                    continue
                layer = await self._thread(self.layers.commit_blocking, staged)
                self.layers.add(layer)
        finally:
            for staged in pending.values():
                await self._thread(self.layers.discard_blocking, staged)
        for image in plan.images:
            try:
                self.layers.chain(image.record.top) if image.record.top else None
            except KeyError:
                raise InternalError("a layer of image %s was removed while it loaded: load it again" % (image.record.id,))
        ids_text = ""
        tagged = 0
        try:
            for image in plan.images:
                record = image.record
                if record.id not in self._images:
                    await self._thread(
                        _write_config, os.path.join(self.imagedb, record.id.split(":", 1)[1]), record.raw
                    )
                    self._images[record.id] = record
                self._retained.pop(record.id, None)
                ids_text += "Loaded image ID: %s\n" % (record.id,)
                tagged = 0
                for ref in image.refs:
                    previous = self._refs.get(str(ref))
                    if previous is not None and previous[1] != record.id:
                        output(
                            LoadText(
                                "The image %s already exists, renaming the old one with ID %s to empty string\n"
                                % (ref.familiar_string(), previous[1])
                            )
                        )
                    # As dockerd's refstore: no LastTagTime for a loaded tag.
                    self._refs[str(ref)] = (ref, record.id)
                    output(LoadText("Loaded image: %s\n" % (ref.familiar_string(),)))
                    tagged += 1
                self._log("load", record.id, record.id)
        finally:
            await self._save_state()
        if tagged == 0 and ids_text:
            output(LoadText(ids_text))


def _write_config(path: str, raw: bytes) -> None:
    from ...atomic import write_atomic

    write_atomic(path, raw, 0o600)
