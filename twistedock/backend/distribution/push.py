"""
A push, as dockerd's push_v2 makes it: for each tag of the repository (or
the one asked for), every layer as a gzipped tar (HEAD first: a blob the
registry has is not sent again; otherwise one monolithic upload, POST then
PUT with the digest; five layers at a time, a failed upload tried again as
dockerd does), the image config, then a Docker schema2 manifest PUT
under the tag; C{RepoDigests} recorded.

A layer's blob is the one its pull kept (L{blobs}), else its tar as it was
unpacked, rebuilt from the layer's tar-split record, gzipped; a layer stored
before such records existed is written again from its directory (overlayfs
whiteouts as C{.wh.} files).  When what is pushed does not hash to the image
config's diff IDs (only that last case), the pushed config carries the diff
IDs of what was pushed, so the pushed image is consistent but its ID differs
from the local one; C{RepoDigests} is then left alone locally.
"""

import gzip
import hashlib
import json
import os
import tempfile
from typing import Callable, Dict, List, Optional
from urllib.parse import urlencode

import attr
from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred
from twisted.web.iweb import IBodyProducer, UNKNOWN_LENGTH
from zope.interface import implementer

from ... import golang, progress
from ...errors import DockerError, InternalError, NotFound
from ...logs import Logger
from ...reference import Reference
from ...tar import DIR_FLAGS
from ...tar.layer import write_diff_dir
from ...tar.split import assemble
from ...tar.write import TarWriter
from . import auth as auth_mod
from . import blobs
from . import manifest as manifests
from .client import Session, discard
from .errors import retryable
from .pull import RETRY_STEP, countdown
from .transfer import Emit, Transfer, unlink_all

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
READ_CHUNK = 1 << 20
#: Layers sent at once by one push (dockerd's max-concurrent-uploads).
CONCURRENT_UPLOADS = 5
#: Attempts at a layer's upload (dockerd's maxUploadAttempts).
UPLOAD_ATTEMPTS = 5

log = Logger()


@attr.s(auto_attribs=True)
class _Blob:
    path: str
    digest: str
    size: int
    diff_id: str
    #: A kept blob (not ours to remove), and the repository it came from.
    kept: bool = False
    repository: str = ""


def write_layer_tar(diff_dir: str, out_path: str, split_path: str = "") -> _Blob:
    """The layer directory C{diff_dir} as a gzipped tar at C{out_path}:
    its compressed digest and size and its diff ID.  With the layer's
    tar-split record (C{split_path}), the tar it was unpacked from, byte
    for byte; otherwise one written from the directory.  Blocks."""
    uncompressed = hashlib.sha256()
    with open(out_path, "wb") as raw:
        compressed = _HashingFile(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=6) as gz:

            def write(data: bytes) -> None:
                uncompressed.update(data)
                gz.write(data)

            if split_path and os.path.exists(split_path):
                assemble(split_path, diff_dir, write)
            else:
                writer = TarWriter(write)
                fd = os.open(diff_dir, DIR_FLAGS)
                try:
                    write_diff_dir(writer, fd)
                finally:
                    os.close(fd)
                writer.close()
        raw.flush()
        os.fsync(raw.fileno())
    return _Blob(out_path, "sha256:" + compressed.hash.hexdigest(), compressed.size,
                 "sha256:" + uncompressed.hexdigest())


class _HashingFile:
    def __init__(self, f) -> None:
        self.f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


@implementer(IBodyProducer)
class _FileProducer:
    """A file as a request body, read in threads, its progress told."""

    def __init__(self, pusher: "Pusher", path: str, size: int, on_sent: Callable[[int], None]) -> None:
        self.pusher = pusher
        self.path = path
        self.length = size if size >= 0 else UNKNOWN_LENGTH
        self.on_sent = on_sent
        self._stopped = False
        self._paused: Optional[Deferred] = None

    def startProducing(self, consumer) -> Deferred:
        return ensureDeferred(self._produce(consumer))

    async def _produce(self, consumer) -> None:
        f = await self.pusher._thread(open, self.path, "rb")
        sent = 0
        try:
            while not self._stopped:
                if self._paused is not None:
                    await self._paused
                data = await self.pusher._thread(f.read, READ_CHUNK)
                if not data or self._stopped:
                    break
                consumer.write(data)
                sent += len(data)
                self.on_sent(sent)
        finally:
            await self.pusher._thread(f.close)

    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = Deferred()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self) -> None:
        self._stopped = True
        self.resumeProducing()


class Pusher(Transfer):
    async def push(self, repo: Reference, tag: str, credentials: auth_mod.AuthConfig, emit: Emit) -> None:
        # As dockerd: the first line, then whatever is wrong, streamed.
        emit(progress.message("The push refers to repository [%s]" % (repo.name,), detail=False))
        tags = [tag] if tag else self.store.tags_of(repo.name)
        if not tags:
            raise NotFound("An image does not exist locally with the tag: %s" % (repo.familiar_name(),))
        images = []
        for name in tags:
            try:
                images.append((name, self.store.get(str(repo.with_tag(name)))))
            except NotFound:
                raise NotFound(
                    "An image does not exist locally with the tag: %s" % (repo.familiar_name(),)
                )
        session = self.service.session(repo.domain, repo.path, credentials, "pull,push")
        await session.ping()
        await self._thread(os.makedirs, self.downloads, 0o700, True)
        for name, image in images:
            await self._push_tag(session, repo, name, image, emit)

    async def _push_tag(self, session: Session, repo: Reference, tag: str, image, emit: Emit) -> None:
        layers = list(image.layers)
        # As dockerd: every layer told top first, and sent that way, a few
        # at a time (max-concurrent-uploads); the same layer twice, once.
        order = list(reversed(layers))
        for layer in order:
            emit(progress.message("Preparing", id=progress.short(layer.diff_id)))
        semaphore = DeferredSemaphore(CONCURRENT_UPLOADS)
        pushing: Dict[str, Deferred] = {}
        for layer in order:
            if layer.diff_id in pushing:
                continue
            if len(pushing) >= CONCURRENT_UPLOADS:
                emit(progress.message("Waiting", id=progress.short(layer.diff_id)))
            pushing[layer.diff_id] = semaphore.run(
                lambda layer=layer: ensureDeferred(self._push_layer(session, layer, emit))
            )
        done: Dict[str, _Blob] = {}
        blobs: List[_Blob] = []
        try:
            try:
                for diff_id, d in pushing.items():
                    done[diff_id] = await d
            except BaseException:
                for d in pushing.values():
                    d.cancel()
                for diff_id, d in pushing.items():
                    if diff_id not in done:
                        try:
                            done[diff_id] = await d
                        except BaseException:
                            pass
                raise
            finally:
                blobs = list(done.values())
            blobs = [done[layer.diff_id] for layer in layers]
            config_raw = self.store.config_bytes(image.id)
            diff_ids = [blob.diff_id for blob in blobs]
            reproduced = diff_ids == list(image.diff_ids)
            if not reproduced:
                config = json.loads(config_raw.decode("utf-8"))
                config.setdefault("rootfs", {"type": "layers"})["diff_ids"] = diff_ids
                config_raw = golang.json_marshal(config)
            config_digest = "sha256:" + hashlib.sha256(config_raw).hexdigest()
            if not await self._exists(session, config_digest):
                await self._upload(session, config_digest, len(config_raw), body=config_raw)
            doc = {
                "schemaVersion": 2,
                "mediaType": manifests.DOCKER_MANIFEST,
                "config": {"mediaType": DOCKER_CONFIG, "size": len(config_raw), "digest": config_digest},
                "layers": [
                    {"mediaType": DOCKER_LAYER, "size": blob.size, "digest": blob.digest} for blob in blobs
                ],
            }
            body = json.dumps(doc, indent=3).encode("utf-8")
            url = session.repository_url("manifests/" + tag)
            answer = await session.request(
                "PUT", url, {"Content-Type": manifests.DOCKER_MANIFEST}, body=body
            )
            if answer.status not in (200, 201, 202):
                raise await session.error_of(answer)
            await discard(answer.response)
        finally:
            await self._thread(unlink_all, sorted({blob.path for blob in blobs if not blob.kept}))
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reproduced:
            await self.store.add_repo_digest(image.id, attr.evolve(repo, tag=None, digest=digest))
        emit(progress.message("%s: digest: %s size: %d" % (tag, digest, len(body)), detail=False))
        emit({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(body)}})

    async def _layer_blob(self, layer) -> _Blob:
        """The pulled blob of the layer if it was kept, else its tar
        gzipped anew (a temporary file the store removes at start if a
        crash leaves it)."""
        kept = await self._thread(blobs.find, self.blobs, layer.diff_id)
        if kept is not None and kept.media_type in blobs.GZIP_TYPES:
            return _Blob(kept.path, kept.digest, kept.size, layer.diff_id, True, kept.repository)
        path = await self._thread(_scratch_file, self.downloads)
        try:
            return await self._thread(
                write_layer_tar, layer.diff_dir, path, getattr(layer, "tar_split", "")
            )
        except BaseException:
            await self._thread(unlink_all, [path])
            raise

    async def _push_layer(self, session: Session, layer, emit: Emit) -> _Blob:
        short = progress.short(layer.diff_id)
        blob = await self._layer_blob(layer)
        path = blob.path
        try:
            if await self._exists(session, blob.digest):
                emit(progress.message("Layer already exists", id=short))
                return blob
            domain, _, source = blob.repository.partition("/")
            if domain == session.domain and source and source != session.path:
                if await self._mount(session, blob.digest, source):
                    emit(progress.message("Mounted from " + source, id=short))
                    return blob
            state = {"shown": 0}

            def on_sent(sent: int) -> None:
                if sent - state["shown"] >= (512 << 10) or sent == blob.size:
                    state["shown"] = sent
                    emit(progress.message("Pushing", id=short, current=sent, total=blob.size))

            attempt = 0
            while True:
                try:
                    await self._upload(session, blob.digest, blob.size, path=path, on_sent=on_sent)
                    break
                except DockerError as e:
                    # As dockerd's xfer: five attempts, the n-th retry
                    # after n * 5 seconds counted down.
                    attempt += 1
                    if not retryable(e) or attempt >= UPLOAD_ATTEMPTS:
                        raise
                    log.info("upload of {digest} failed, retrying ({attempt}/{attempts}): {error}",
                             digest=blob.digest, attempt=attempt, attempts=UPLOAD_ATTEMPTS, error=str(e))
                state["shown"] = 0
                await countdown(self.reactor, attempt * RETRY_STEP, short, emit)
        except BaseException:
            if not blob.kept:
                await self._thread(unlink_all, [path])
            raise
        emit(progress.message("Pushed", id=short))
        return blob

    async def _mount(self, session: Session, digest: str, source: str) -> bool:
        """A cross-repository mount: whether the registry made it (201);
        otherwise the upload it started is left to expire."""
        session.add_scope("repository:%s:pull" % (source,))
        query = urlencode({"mount": digest, "from": source})
        answer = await session.request(
            "POST", session.repository_url("blobs/uploads/?" + query), body=b""
        )
        await discard(answer.response)
        return answer.status == 201

    async def _exists(self, session: Session, digest: str) -> bool:
        answer = await session.request("HEAD", session.repository_url("blobs/" + digest))
        await discard(answer.response)
        if answer.status == 200:
            return True
        if answer.status == 404:
            return False
        raise await session.error_of(answer)

    async def _upload(self, session: Session, digest: str, size: int, body: bytes = b"",
                      path: str = "", on_sent=None) -> None:
        start = await session.request("POST", session.repository_url("blobs/uploads/"), body=b"")
        if start.status != 202:
            raise await session.error_of(start)
        await discard(start.response)
        location = start.header("Location")
        if not location:
            raise InternalError("the registry gave no upload location")
        if location.startswith("/"):
            location = session.endpoint.base + location
        location += ("&" if "?" in location else "?") + "digest=" + digest
        headers = {"Content-Type": "application/octet-stream"}
        if path and self.service.stream_bodies:
            data = _FileProducer(self, path, size, on_sent or (lambda n: None))
        elif path:
            data = await self._thread(_read, path)
        else:
            data = body
        answer = await session.request("PUT", location, headers, body=data)
        if answer.status not in (201, 204):
            raise await session.error_of(answer)
        await discard(answer.response)


def _scratch_file(directory: str) -> str:
    fd, path = tempfile.mkstemp(prefix=".tmp-push-", dir=directory)
    os.close(fd)
    return path


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()

