"""
Deleting images (C{docker rmi}: untag, then delete what nothing else
holds, refusing while children or containers use it, as dockerd's
ImageDelete) and pruning them (C{docker image prune}).
"""

import json
import os
from typing import List, Optional

from ...atomic import fsync_dir
from ...errors import Conflict, DockerError, InternalError, InvalidParameter
from ...filters import Filters
from ...logs import Logger
from ...reference import Reference, parse_normalized_named, short_id
from ...timetypes import get_timestamp
from .image import DeleteResponse, ImageRecord, PruneReport

log = Logger()


class _DeleteConflict(Conflict):
    def __init__(self, image_id: str, hard: bool, used: bool, message: str) -> None:
        super().__init__(
            "conflict: unable to delete %s (%s) - %s"
            % (short_id(image_id), "cannot be forced" if hard else "must be forced", message)
        )
        self.hard = hard
        self.used = used


_CONFLICT_CHILD = 1
_CONFLICT_RUNNING = 2
_CONFLICT_REFERENCE = 4
_CONFLICT_STOPPED = 8
_CONFLICT_HARD = _CONFLICT_CHILD | _CONFLICT_RUNNING
_CONFLICT_SOFT = _CONFLICT_REFERENCE | _CONFLICT_STOPPED

_PRUNE_FILTERS = ("dangling", "label", "label!", "until")


class ImageDeletion:
    """The image store's delete and prune (a part of L{ImageStore}, which
    holds the state they change)."""

    async def delete(
        self, name: str, force: bool = False, prune: bool = True
    ) -> List[DeleteResponse]:
        if not name.strip():
            raise InvalidParameter("image name cannot be blank")
        return await self._locked(self._delete, name, force, prune)

    async def _delete(self, name: str, force: bool, prune: bool) -> List[DeleteResponse]:
        records: List[DeleteResponse] = []
        try:
            await self._delete_into(records, name, force, prune)
        finally:
            if records:
                await self._save_state()
        await self._collect_garbage()
        return records

    async def _delete_into(
        self, records: List[DeleteResponse], name: str, force: bool, prune: bool
    ) -> None:
        """ImageDelete, as dockerd's graphdriver image service does it."""
        record = self._resolve(name)
        image_id = record.id
        refs = self._references(image_id)
        removed_repository_ref = False
        if not _is_image_id_prefix(image_id, name):
            if not force and _is_single_reference(refs):
                users = self._users(image_id)
                if users:
                    raise Conflict(
                        "conflict: unable to remove repository reference %s (must force) - "
                        "container %s is using its referenced image %s"
                        % (json.dumps(name), short_id(users[0][0]), short_id(image_id))
                    )
            parsed = parse_normalized_named(name).tag_name_only()
            self._refs.pop(str(parsed), None)
            self._log("untag", image_id, image_id)
            records.append(DeleteResponse(untagged=parsed.familiar_string()))
            refs = self._references(image_id)
            if not parsed.digest:
                if not any(not r.digest and r.name == parsed.name for r in refs):
                    remaining = []
                    for r in refs:
                        if r.digest and r.name == parsed.name:
                            self._refs.pop(str(r), None)
                            records.append(DeleteResponse(untagged=r.familiar_string()))
                        else:
                            remaining.append(r)
                    refs = remaining
            if refs:
                return
            removed_repository_ref = True
        elif _is_single_reference(refs):
            mask = _CONFLICT_HARD
            if not force:
                mask |= _CONFLICT_SOFT & ~_CONFLICT_REFERENCE
            conflict = self._conflict(image_id, mask)
            if conflict is not None:
                raise conflict
            for r in refs:
                self._refs.pop(str(r), None)
                self._log("untag", image_id, image_id)
                records.append(DeleteResponse(untagged=r.familiar_string()))
        await self._delete_helper(records, image_id, force, prune, removed_repository_ref)

    def _conflict(self, image_id: str, mask: int) -> Optional[_DeleteConflict]:
        if mask & _CONFLICT_CHILD and self._children(image_id):
            return _DeleteConflict(image_id, True, False, "image has dependent child images")
        users = self._users(image_id) if mask & (_CONFLICT_RUNNING | _CONFLICT_STOPPED) else []
        if mask & _CONFLICT_RUNNING:
            for container_id, running in users:
                if running:
                    return _DeleteConflict(
                        image_id,
                        True,
                        True,
                        "image is being used by running container %s" % (short_id(container_id),),
                    )
        if mask & _CONFLICT_REFERENCE and self._references(image_id):
            return _DeleteConflict(
                image_id, False, False, "image is referenced in multiple repositories"
            )
        if mask & _CONFLICT_STOPPED:
            for container_id, running in users:
                if not running:
                    return _DeleteConflict(
                        image_id,
                        False,
                        True,
                        "image is being used by stopped container %s" % (short_id(container_id),),
                    )
        return None

    def _is_dangling(self, image_id: str) -> bool:
        return not (self._references(image_id) or self._children(image_id))

    async def _delete_helper(
        self, records: List[DeleteResponse], image_id: str, force: bool, prune: bool, quiet: bool
    ) -> None:
        mask = _CONFLICT_HARD if force else _CONFLICT_HARD | _CONFLICT_SOFT
        conflict = self._conflict(image_id, mask)
        if conflict is not None:
            if quiet and (not self._is_dangling(image_id) or conflict.used):
                return
            raise conflict
        record = self._images[image_id]
        for r in self._references(image_id):
            self._refs.pop(str(r), None)
            self._log("untag", image_id, image_id)
            records.append(DeleteResponse(untagged=r.familiar_string()))
        removed = await self._remove_image(record)
        self._log("delete", image_id, image_id)
        records.append(DeleteResponse(deleted=image_id))
        for chain in removed:
            records.append(DeleteResponse(deleted=chain))
        if prune and record.parent and record.parent in self._images:
            await self._delete_helper(records, record.parent, False, True, True)

    async def _remove_image(self, record: ImageRecord) -> List[str]:
        """Forget an image and delete its config; the chain IDs of the layers
        that went with it (those no other image, nor a container, holds)."""
        if self._users(record.id) and record.top:
            self._retained[record.id] = record.top
        del self._images[record.id]
        self._last_tag.pop(record.id, None)
        await self._save_state()
        path = os.path.join(self.imagedb, record.id.split(":", 1)[1])
        await self._thread(_unlink, path)
        unused = [chain for chain in reversed(record.chain_ids) if chain not in self._live_layers()]
        if unused:
            await self._thread(self.layers.remove_blocking, unused)
            for chain in unused:
                self.layers.forget(chain)
        return unused

    async def prune(self, filters: Filters) -> PruneReport:
        if self._pruning:
            raise Conflict("a prune operation is already running")
        self._pruning = True
        try:
            return await self._locked(self._prune, filters)
        finally:
            self._pruning = False

    async def _prune(self, filters: Filters) -> PruneReport:
        filters.validate(_PRUNE_FILTERS)
        dangling_only = filters.get_bool_or_default("dangling", True)
        until: Optional[int] = None
        if filters.contains("until"):
            values = filters.get("until")
            if len(values) > 1:
                raise InternalError("more than one until filter specified")
            until = get_timestamp(next(iter(values)), self._now())
        layer_sizes = {chain: layer.size for chain, layer in self.layers.layers.items()}
        candidates = []
        for record in list(self._images.values()):
            if dangling_only and self._children(record.id):
                continue
            if not self._references(record.id) and self._children(record.id):
                continue
            if until is not None and record.created_ns > until:
                continue
            config = record.config.get("config")
            if config is not None and not _match_labels(filters, config.get("Labels") or {}):
                continue
            candidates.append(record)
        deleted: List[DeleteResponse] = []
        for record in candidates:
            if record.id not in self._images:
                continue
            refs = self._references(record.id)
            if refs:
                should = not dangling_only or not any(r.tag for r in refs)
                if not should:
                    continue
                for r in refs:
                    deleted.extend(await self._prune_one(str(r)))
            else:
                deleted.extend(await self._prune_one(record.id.split(":", 1)[1]))
        await self._collect_garbage()
        reclaimed = sum(layer_sizes.get(item.deleted, 0) for item in deleted if item.deleted)
        self.events.log("image", "prune", "", {"reclaimed": str(reclaimed)})
        return PruneReport(images_deleted=deleted or None, space_reclaimed=reclaimed)

    async def _prune_one(self, name: str) -> List[DeleteResponse]:
        records: List[DeleteResponse] = []
        try:
            await self._delete_into(records, name, False, True)
        except Conflict:
            return []
        except DockerError as e:
            log.warn("failed to prune image {name}: {error}", name=name, error=str(e))
            return []
        finally:
            if records:
                await self._save_state()
        return records


def _match_labels(filters: Filters, labels: dict) -> bool:
    if not filters.match_kv_list("label", labels):
        return False
    if filters.contains("label!") and filters.match_kv_list("label!", labels):
        return False
    return True


def _is_image_id_prefix(image_id: str, candidate: str) -> bool:
    if image_id.startswith(candidate):
        return True
    return image_id.split(":", 1)[-1].startswith(candidate)


def _is_single_reference(refs: List[Reference]) -> bool:
    """All references are from one repository, with at most one tag."""
    if len(refs) <= 1:
        return len(refs) == 1
    single: Optional[Reference] = None
    canonical = set()
    for ref in refs:
        if ref.digest:
            canonical.add(ref.name)
        elif single is None:
            single = ref
        else:
            return False
    if single is None:
        single = refs[0]
    return len(canonical) == 1 and single.name in canonical


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(os.path.dirname(path))
