"""
Images made by a build step (L{twistedock.backend.build}): a child of an
image (or of nothing, FROM scratch) with or without a new layer, and the
look-up of the classic builder's cache among an image's children.
"""

from typing import Any, BinaryIO, Dict, Optional

from ... import __version__, golang
from ...errors import InternalError, NotFound
from ...tar.read import ArchiveError
from .config import ordered_container_config

#: The container.Config fields dockerd's image cache compares (moby's
#: image/cache compare()), besides which nothing decides a cache hit.
_CACHE_FIELDS = (
    "Cmd", "Entrypoint", "Env", "Labels", "ExposedPorts", "Volumes", "WorkingDir",
    "User", "OnBuild", "Shell", "StopSignal", "Healthcheck", "ArgsEscaped",
)


def cache_key(container_config: Optional[dict]) -> str:
    """What two build steps share when one may stand for the other."""
    config = ordered_container_config(container_config)
    picked = {k: (config.get(k) or None) for k in _CACHE_FIELDS}
    return golang.json_marshal(picked).decode("utf-8")


def history_entry(
    created: str, author: str, container_config: dict, empty: bool, comment: str = ""
) -> Dict[str, Any]:
    """The image config's history entry of a child made at C{created} by
    C{container_config}'s Cmd (a layer of its own unless C{empty})."""
    entry: Dict[str, Any] = {"created": created}
    if author:
        entry["author"] = author
    created_by = " ".join(container_config.get("Cmd") or [])
    if created_by:
        entry["created_by"] = created_by
    if comment:
        entry["comment"] = comment
    if empty:
        entry["empty_layer"] = True
    return entry


class ChildImages:
    """The build part of L{ImageStore}."""

    async def _keep_layer(self, staged, diff_ids: list, empty: bool) -> None:
        """Discard C{staged} when C{empty}; else add its layer to the layer
        store and its diff ID to C{diff_ids}."""
        if empty:
            await self._thread(self.layers.discard_blocking, staged)
        else:
            layer = await self._thread(self.layers.commit_blocking, staged)
            self.layers.add(layer)
            diff_ids.append(layer.diff_id)

    def cached_child(self, parent_id: str, container_config: dict) -> Optional[str]:
        """The newest image made from C{parent_id} ("" for scratch) by a step
        of the same container config, as the classic builder's cache finds
        it; None."""
        want = cache_key(container_config)
        best = None
        for record in self._images.values():
            if record.parent != parent_id:
                continue
            if parent_id == "" and not record.config.get("container_config"):
                continue
            if cache_key(record.config.get("container_config")) != want:
                continue
            if best is None or record.created_ns > best.created_ns:
                best = record
        return best.id if best is not None else None

    async def add_child(
        self,
        parent_id: str,
        source: Optional[BinaryIO],
        *,
        container_config: dict,
        config: dict,
        container_id: str = "",
        base: Optional[dict] = None,
        author: str = "",
    ) -> str:
        """A build step's image: the layer tar C{source} (None: no layer)
        on image C{parent_id}'s ("" for scratch), with C{config} and the
        step's C{container_config}, its history entry from the latter's
        Cmd.  C{base} gives os/architecture for a first image.  Its ID."""
        parent = self._images.get(parent_id) if parent_id else None
        if parent_id and parent is None:
            if source is not None:
                source.close()
            raise NotFound("No such image: %s" % (parent_id,))
        staged = None
        if source is not None:
            try:
                staged = await self._stage(source, parent.top if parent is not None else "")
            except ArchiveError as e:
                raise InternalError("failed to export layer: %s" % (e,))
        return await self._locked(
            self._add_child, staged, parent, container_config, config, container_id, base or {}, author
        )

    async def _add_child(self, staged, parent, container_config, config, container_id, base, author) -> str:
        from .store import EMPTY_LAYER_DIFF_ID

        diff_ids = list(parent.diff_ids) if parent is not None else []
        empty = staged is None
        if staged is not None:
            empty = staged.layer.diff_id == EMPTY_LAYER_DIFF_ID and parent is not None
            await self._keep_layer(staged, diff_ids, empty)
        created = golang.rfc3339_nano(self._now())
        entry = history_entry(created, author, container_config, empty)
        source = parent.config if parent is not None else base
        image: Dict[str, Any] = {
            "architecture": source.get("architecture") or golang.goarch(),
            "config": config,
            "container": container_id,
            "container_config": container_config,
            "created": created,
            "docker_version": __version__,
            "history": list((parent.config.get("history") if parent else None) or []) + [entry],
            "os": source.get("os") or "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        if parent is not None:
            image["parent"] = parent.id
        if author:
            image["author"] = author
        if source.get("variant"):
            image["variant"] = source["variant"]
        record = await self._store_config(image, None)
        return record.id

    def image_config(self, image_id: str) -> dict:
        """The whole image config of C{image_id}, parsed (do not change it)."""
        return self._images[image_id].config

    def history_cache(self, parent_id: str, container_config: dict, sources) -> Optional[dict]:
        """dockerd's ImageCache over --cache-from images that came without
        their parents (pulled, loaded): the first of C{sources} (image IDs)
        whose layers and history begin with the parent's and whose next
        history entry was made by this step (its Cmd).  None, or
        C{{"id": ...}} when that entry is the source's last, or
        C{{"restore": (target, index)}} for L{restore_cached}."""
        parent = self._images.get(parent_id) if parent_id else None
        parent_history = list((parent.config.get("history") if parent else None) or [])
        created_by = " ".join(container_config.get("Cmd") or [])
        for source_id in sources:
            target = self._images.get(source_id)
            if target is None:
                continue
            history = list(target.config.get("history") or [])
            n = len(parent_history)
            if len(history) <= n or history[:n] != parent_history:
                continue
            if parent is not None and list(target.diff_ids[: len(parent.diff_ids)]) != list(parent.diff_ids):
                continue
            if (history[n].get("created_by") or "") != created_by:
                continue
            if len(history) - 1 == n:
                return {"id": target.id}
            return {"restore": (target.id, n)}
        return None

    async def restore_cached(self, parent_id: str, target_id: str, index: int, config: dict) -> str:
        """dockerd's restoreCachedImage: an image of the parent's layers and
        history plus the target's entry C{index} (and its layer, already
        stored), with C{config}.  Its ID."""
        return await self._locked(self._restore_cached, parent_id, target_id, index, config)

    async def _restore_cached(self, parent_id, target_id, index, config) -> str:
        parent = self._images.get(parent_id) if parent_id else None
        target = self._images[target_id]
        history = list((parent.config.get("history") if parent else None) or [])
        diff_ids = list(parent.diff_ids) if parent is not None else []
        entry = (target.config.get("history") or [])[index]
        history.append(entry)
        if not entry.get("empty_layer"):
            layer_index = sum(
                1 for h in (target.config.get("history") or [])[:index] if not h.get("empty_layer")
            )
            if layer_index < len(target.diff_ids):
                diff_ids.append(target.diff_ids[layer_index])
        image: Dict[str, Any] = {
            "architecture": target.config.get("architecture") or golang.goarch(),
            "config": config,
            "container_config": {},
            "created": entry.get("created") or golang.rfc3339_nano(self._now()),
            "docker_version": __version__,
            "history": history,
            "os": target.config.get("os") or "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        if target.config.get("author"):
            image["author"] = target.config["author"]
        if parent is not None:
            image["parent"] = parent.id
        record = await self._store_config(image, None)
        return record.id
