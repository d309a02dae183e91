"""
A pull, as dockerd's pull_v2 makes it: the manifest (an index or manifest
list resolved to the platform asked for, the host's by default), the image
config (its digest is the image ID), then every layer the layer store lacks,
downloaded a few at a time (three, as dockerd) and hashed while it streams
to a file, so that no blob whose digest does not match is ever unpacked;
the layers are unpacked in order and registered with the image config in
one step under the image store's lock, with the tag and the repository
digest (C{RepoDigests}).

Verified blobs wait in C{<image root>/downloads/<hex>} until the image they
belong to is registered (then they move to the blob cache, L{blobs}): an
interrupted pull, tried again, downloads only what it had not verified yet.
A download cut off midway is set aside as C{<hex>.partial} and resumed with
a Range request (its kept part hashed first), and a failed download is
tried again (five attempts, as dockerd).  At start the image store removes
temporary files (C{.tmp-*}) and what an interrupted pull left untouched for
a day (L{transfer.sweep_downloads}).

The progress lines go through C{emit(doc)}: the router writes the first one
as the start of a 200 stream, so an error before it (an unknown manifest,
refused credentials) is still an error status.
"""

import hashlib
import os
import tempfile
import time
from typing import Callable, Dict, List, Optional

from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from ... import progress
from ...errors import DockerError, InternalError
from ...logs import Logger
from ...reference import Reference
from . import auth as auth_mod
from . import blobs
from . import manifest as manifests
from .client import Session, discard
from .errors import TransportError, retryable, transport_reason, translate_pull_error
from .transfer import Emit, Transfer, unlink_all

log = Logger()

#: Concurrent layer downloads of one pull (dockerd's max-concurrent-downloads).
CONCURRENT_DOWNLOADS = 3
#: Bytes handed to a thread per write.
WRITE_CHUNK = 1 << 20
#: Unwritten bytes at which the download is paused.
HIGH_WATER = 8 << 20
#: The suffix of an interrupted download kept for a Range request.
PARTIAL = ".partial"
#: Attempts at a layer's download (dockerd 20.10's maxDownloadAttempts), the
#: n-th retry after n * RETRY_STEP seconds counted down a second at a time.
DOWNLOAD_ATTEMPTS = 5
RETRY_STEP = 5
#: Progress lines at most every this many bytes (and at the end), or
#: after this many seconds with bytes moved (progress.Pace).
PROGRESS_STEP = 512 << 10
PROGRESS_INTERVAL = 5.0


def _hex(digest: str) -> str:
    return digest.split(":", 1)[-1]


class _BlobReceiver(Protocol):
    """A blob's body into a temporary file, hashed on the way, the file
    work in threads, one write at a time and in order."""

    def __init__(self, puller: "Puller", path: str, on_bytes: Callable[[int], None],
                 hash=None, offset: int = 0) -> None:
        """C{offset}: the bytes already in the file (hashed into C{hash}),
        when a download resumes."""
        self.puller = puller
        self.path = path
        self.on_bytes = on_bytes
        self.hash = hash if hash is not None else hashlib.sha256()
        self.offset = offset
        self.buffer: List[bytes] = []
        self.buffered = 0
        self.unwritten = 0
        self.received = offset
        self.paused = False
        self.file = None
        self.tail: Deferred = puller._thread(self._open)
        self.done: Deferred = Deferred(self._cancel)

    def _open(self) -> None:
        self.file = open(self.path, "ab" if self.offset else "wb")
        if not self.offset:
            self.file.truncate(0)

    def _write(self, data: bytes) -> None:
        self.hash.update(data)
        self.file.write(data)

    def _flush(self) -> None:
        if not self.buffered:
            return
        data = b"".join(self.buffer)
        self.buffer, self.buffered = [], 0

        def write(_):
            return self.puller._thread(self._write, data)

        def written(result):
            self.unwritten -= len(data)
            if self.paused and self.unwritten < HIGH_WATER // 2 and self.transport is not None:
                self.paused = False
                self.transport.resumeProducing()
            return result

        self.tail.addCallback(write)
        self.tail.addBoth(written)

    def dataReceived(self, data: bytes) -> None:
        self.buffer.append(data)
        self.buffered += len(data)
        self.unwritten += len(data)
        self.received += len(data)
        self.on_bytes(self.received)
        if self.buffered >= WRITE_CHUNK:
            self._flush()
        if self.unwritten >= HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()

    def _cancel(self, _) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason) -> None:
        self._flush()
        complete = reason.check(ResponseDone) is not None

        def finish(result):
            closing = self.puller._thread(self._close)

            def closed(_):
                if self.done.called:
                    return
                if isinstance(result, Failure):
                    self.done.errback(result)
                elif not complete:
                    self.done.errback(reason)
                else:
                    self.done.callback(None)

            closing.addBoth(closed)

        self.tail.addBoth(finish)


class _Layer:
    def __init__(self, index: int, descriptor: manifests.Descriptor, diff_id: str, chain_id: str) -> None:
        self.index = index
        self.descriptor = descriptor
        self.diff_id = diff_id
        self.chain_id = chain_id
        self.id = progress.short(descriptor.digest)
        self.path = ""
        self.downloaded: Optional[Deferred] = None


class Puller(Transfer):
    def _prepare_blocking(self) -> None:
        # What a crash left is swept by the store at start.
        os.makedirs(self.downloads, mode=0o700, exist_ok=True)

    async def pull(self, ref: Reference, platform_text: str, credentials: auth_mod.AuthConfig, emit: Emit) -> None:
        """Pull C{ref}: tagged or by digest, or without either every tag of
        the repository (as dockerd); errors in dockerd's words."""
        wanted = manifests.parse_platform(platform_text)
        try:
            session = await self._session(ref, credentials)
            if ref.tag or ref.digest:
                updated = await self._pull_one(session, ref, wanted, bool(platform_text), emit)
            else:
                updated = False
                for tag in await session.list_tags():
                    tagged = ref.with_tag(tag)
                    try:
                        updated |= await self._pull_one(session, tagged, wanted, bool(platform_text), emit)
                    except DockerError as e:
                        raise translate_pull_error(e, tagged.familiar_string(), ref.familiar_name())
        except DockerError as e:
            raise translate_pull_error(e, ref.familiar_string(), ref.familiar_name())
        shown = ref.familiar_string()
        if updated:
            emit(progress.message("Status: Downloaded newer image for " + shown, detail=False))
        else:
            emit(progress.message("Status: Image is up to date for " + shown, detail=False))

    async def _session(self, ref: Reference, credentials: auth_mod.AuthConfig) -> Session:
        """The session to pull from: the first mirror (Docker Hub's) that
        has the manifest, else the registry itself."""
        sessions = self.service.pull_sessions(ref.domain, ref.path, credentials)
        for session in sessions[:-1]:
            try:
                if ref.tag or ref.digest:
                    await session.get_manifest(ref.digest or ref.tag)
                else:
                    await session.list_tags()
            except DockerError as e:
                log.info("mirror {url} cannot serve {ref}: {error}",
                         url=session.endpoint.base if session.endpoint else "?", ref=str(ref), error=str(e))
                continue
            return session
        return sessions[-1]

    async def _pull_one(self, session: Session, ref: Reference, wanted, explicit: bool, emit: Emit) -> bool:
        """Pull one tag or digest: whether its reference moved."""
        tag_or_digest = ref.digest or ref.tag or "latest"
        body, digest, content_type = await session.get_manifest(tag_or_digest)
        emit(progress.message("Pulling from " + ref.path, id=tag_or_digest, detail=False))
        manifest = manifests.parse(body, content_type)
        from_index = manifest.is_index
        if from_index:
            chosen = manifests.select(manifest, wanted)
            body, _, content_type = await session.get_manifest(chosen.digest)
            manifest = manifests.parse(body, content_type or chosen.media_type)
            if manifest.is_index:
                raise InternalError("unsupported media type %s" % (manifest.media_type,))
        config_raw = await session.get_blob(manifest.config.digest)
        image_id = manifest.config.digest
        config = _config(config_raw)
        if explicit and not from_index:
            actual = manifests.platform_of(config)
            if not manifests.matches(wanted, actual):
                raise InternalError(
                    "image with reference %s was found but does not match the specified "
                    "platform: wanted %s, actual: %s" % (ref.familiar_string(), wanted, actual)
                )
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(manifest.layers):
            raise InternalError("layers from manifest don't match image configuration")
        refs = [ref] if ref.digest else [ref, _with_digest(ref, digest)]
        if self.store.image_exists(image_id):
            updated = await self.store.add_pulled(config_raw, [], refs, "")
        else:
            updated = await self._layers(session, manifest, config_raw, diff_ids, refs, emit)
        emit(progress.message("Digest: " + digest, detail=False))
        return updated

    async def _layers(self, session: Session, manifest, config_raw: bytes, diff_ids, refs, emit: Emit) -> bool:
        from ..images.layers import chain_ids

        chains = chain_ids(diff_ids)
        layers = [
            _Layer(i, descriptor, diff_ids[i], chains[i])
            for i, descriptor in enumerate(manifest.layers)
        ]
        present = 0
        while present < len(layers) and self.store.layer_exists(layers[present].chain_id):
            present += 1
        for layer in layers[:present]:
            emit(progress.message("Already exists", id=layer.id))
        wanted = layers[present:]
        await self._thread(self._prepare_blocking)
        semaphore = DeferredSemaphore(CONCURRENT_DOWNLOADS)
        by_digest: Dict[str, Deferred] = {}
        for layer in wanted:
            emit(progress.message("Pulling fs layer", id=layer.id))
        for position, layer in enumerate(wanted):
            if position >= CONCURRENT_DOWNLOADS:
                emit(progress.message("Waiting", id=layer.id))
        for layer in wanted:
            digest = layer.descriptor.digest
            if digest not in by_digest:
                by_digest[digest] = semaphore.run(
                    lambda layer=layer: ensureDeferred(self._download(session, layer, emit))
                )
            layer.downloaded = by_digest[digest]
        staged = []
        parent = layers[present - 1].chain_id if present else ""
        try:
            for layer in wanted:
                layer.path = await _shared(layer.downloaded)
                staged.append(await self._extract(layer, parent, emit))
                parent = layer.chain_id
            top = layers[present - 1].chain_id if present else ""
            updated = await self.store.add_pulled(config_raw, staged, refs, top)
            staged = []
        except BaseException:
            for d in by_digest.values():
                # A download under way is a Deferred chained to the
                # semaphore's: cancel() reaches it (a finished one ignores it).
                d.cancel()
                d.addErrback(lambda _: None)
            raise
        finally:
            if staged:
                await self.store.discard_staged(staged)
        kept = {}
        for layer in wanted:
            if layer.path and layer.path not in kept:
                kept[layer.path] = layer
        await self._thread(
            self._keep_blobs, list(kept.values()), "%s/%s" % (session.domain, session.path),
            self.store.live_diff_ids(),
        )
        return updated

    def _keep_blobs(self, layers, repository: str, live) -> None:
        """The verified blobs move from the downloads to the blob cache
        (for a later push); the cache loses what no layer uses."""
        for layer in layers:
            d = layer.descriptor
            try:
                blobs.keep(self.blobs, layer.path, layer.diff_id, d.digest, d.media_type,
                           d.size, repository)
            except OSError as e:
                log.warn("cannot keep blob {digest}: {error}", digest=d.digest, error=str(e))
                unlink_all([layer.path])
        blobs.prune(self.blobs, live)

    async def _download(self, session: Session, layer: _Layer, emit: Emit) -> str:
        """The layer's blob in the downloads directory, verified: its path;
        a failed transfer tried again as dockerd's xfer does (what it got
        so far kept and resumed)."""
        attempt = 0
        while True:
            try:
                return await self._download_once(session, layer, emit)
            except DockerError as e:
                attempt += 1
                if not retryable(e) or attempt >= DOWNLOAD_ATTEMPTS:
                    raise
                log.info("download of {digest} failed, retrying ({attempt}/{attempts}): {error}",
                         digest=layer.descriptor.digest, attempt=attempt, attempts=DOWNLOAD_ATTEMPTS,
                         error=str(e))
            await countdown(self.reactor, attempt * RETRY_STEP, layer.id, emit)

    async def _download_once(self, session: Session, layer: _Layer, emit: Emit) -> str:
        digest = layer.descriptor.digest
        if not digest.startswith("sha256:"):
            raise InternalError("unsupported digest algorithm: %s" % (digest,))
        final = os.path.join(self.downloads, _hex(digest))
        if await self._thread(os.path.exists, final):
            emit(progress.message("Download complete", id=layer.id))
            return final
        url = session.repository_url("blobs/" + digest)
        # What an interrupted download of this blob left: resumed with a
        # Range request if the registry honours it.
        tmp, offset, hashed = await self._thread(self._claim_partial, _hex(digest))
        try:
            answer = await session.request(
                "GET", url, {"Range": "bytes=%d-" % (offset,)} if offset else None, stream=True
            )
            if offset and answer.status == 200:
                offset, hashed = 0, None  # the whole blob again
            elif offset and not (
                answer.status == 206
                and answer.header("Content-Range").startswith("bytes %d-" % (offset,))
            ):
                await discard(answer.response)
                offset, hashed = 0, None
                answer = await session.request("GET", url, stream=True)
            if answer.status not in (200, 206) or (answer.status == 206 and not offset):
                raise await session.error_of(answer)
        except BaseException:
            await self._thread(_set_aside, tmp, offset, os.path.join(self.downloads, _hex(digest) + PARTIAL))
            raise
        total = layer.descriptor.size or (offset + int(answer.header("Content-Length") or 0))
        pace = progress.Pace(self.reactor.seconds, total, PROGRESS_STEP, PROGRESS_INTERVAL)

        def on_bytes(received: int) -> None:
            if pace.due(received):
                emit(progress.message("Downloading", id=layer.id, current=received, total=total))

        receiver = _BlobReceiver(self, tmp, on_bytes, hashed, offset)
        answer.response.deliverBody(receiver)
        try:
            try:
                await receiver.done
            except DockerError:
                raise
            except Exception as e:
                raise TransportError(
                    "failed to download layer %s: %s"
                    % (digest, transport_reason(e, session.endpoint.netloc))
                )
        except BaseException:
            # Kept for the next try, which asks for the rest only.
            await self._thread(
                _set_aside, tmp, receiver.received, os.path.join(self.downloads, _hex(digest) + PARTIAL)
            )
            raise
        try:
            emit(progress.message("Verifying Checksum", id=layer.id))
            if "sha256:" + receiver.hash.hexdigest() != digest:
                raise InternalError("filesystem layer verification failed for digest %s" % (digest,))
            await self._thread(os.rename, tmp, final)
        except BaseException:
            await self._thread(unlink_all, [tmp])
            raise
        emit(progress.message("Download complete", id=layer.id))
        return final

    def _claim_partial(self, hex_digest: str):
        """A temporary file for a blob's download: what an interrupted one
        left if any (taken, so no other pull uses it), its size and hash."""
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.downloads)
        os.close(fd)
        hashed = hashlib.sha256()
        try:
            os.replace(os.path.join(self.downloads, hex_digest + PARTIAL), tmp)
        except FileNotFoundError:
            return tmp, 0, None
        size = 0
        with open(tmp, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                hashed.update(chunk)
                size += len(chunk)
        return tmp, size, (hashed if size else None)

    async def _extract(self, layer: _Layer, parent: str, emit: Emit):
        size = layer.descriptor.size or 0
        # (read in a thread: the wall clock, not the reactor's)
        pace = progress.Pace(time.monotonic, size, PROGRESS_STEP, PROGRESS_INTERVAL)

        def report(read: int) -> None:
            emit(progress.message("Extracting", id=layer.id, current=read, total=size))

        def on_read(read: int) -> None:
            if pace.due(read):
                self.reactor.callFromThread(report, read)

        source = _CountingFile(await self._thread(open, layer.path, "rb"), on_read)
        staged = await self.store.stage_layer(source, parent)
        if staged.layer.diff_id != layer.diff_id:
            await self.store.discard_staged([staged])
            raise InternalError(
                "failed to register layer: layer %s has diff ID %s, the image config says %s"
                % (layer.descriptor.digest, staged.layer.diff_id, layer.diff_id)
            )
        emit(progress.message("Pull complete", id=layer.id))
        return staged


class _CountingFile:
    """A file read in a thread, its progress told as it goes."""

    def __init__(self, f, on_read: Callable[[int], None]) -> None:
        self.f = f
        self.count = 0
        self.on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.count += len(data)
        self.on_read(self.count)
        return data

    def readinto(self, buffer) -> int:
        n = self.f.readinto(buffer)
        self.count += n or 0
        self.on_read(self.count)
        return n

    def close(self) -> None:
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


async def countdown(clock, seconds: int, layer_id: str, emit: Emit) -> None:
    """dockerd's "Retrying in N seconds" lines, one a second (on
    C{clock}), down to 1; cancelling the pull ends the wait."""
    for left in range(seconds, 0, -1):
        emit(progress.message("Retrying in %d second%s" % (left, "s" if left != 1 else ""), id=layer_id))
        await deferLater(clock, 1.0, lambda: None)


def _shared(d: Deferred) -> Deferred:
    """A Deferred of the same result, leaving C{d}'s for other waiters."""
    out: Deferred = Deferred()

    def passed(result):
        if hasattr(result, "raiseException"):
            out.errback(result)
        else:
            out.callback(result)
        return result

    d.addBoth(passed)
    return out


def _set_aside(tmp: str, size: int, partial: str) -> None:
    """Keep an interrupted download for a later Range request (nothing
    when it holds nothing)."""
    if size > 0:
        try:
            os.replace(tmp, partial)
            return
        except OSError:
            pass
    unlink_all([tmp])


def _config(raw: bytes) -> dict:
    import json

    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InternalError("invalid image config: %s" % (e,))
    if not isinstance(doc, dict):
        raise InternalError("invalid image config: not an object")
    return doc


def _with_digest(ref: Reference, digest: str) -> Reference:
    import attr

    return attr.evolve(ref, tag=None, digest=digest)
