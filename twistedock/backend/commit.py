"""
`docker commit`: a container's own layer (its upper directory against the
image's layers, L{twistedock.tar.layer}) and its config, merged as dockerd
merges them, stored as a child image of the container's image.
"""

import json
import os
import tempfile
from typing import BinaryIO, List

from twisted.internet.threads import deferToThreadPool

from ..deferreds import shield
from ..errors import Conflict, DockerError
from ..logs import Logger
from ..reference import repo_tag_reference
from ..routers.container import CreateImageConfig
from ..tar.layer import write_layer
from .images.changes import apply_changes
from .images.config import CONTAINER_CONFIG_ORDER
from .spec.config import merge as merge_config
from .spec.fields import strslice

log = Logger()

#: The container.Config fields a commit body may set (others are ignored).
_CONFIG_FIELDS = CONTAINER_CONFIG_ORDER
_STRSLICE_FIELDS = ("Cmd", "Entrypoint", "Shell")


class ContainerCommitter:
    """Commits containers of the container backend (its public C{overlay},
    C{pause}, C{unpause}, C{log_event}) into the image store."""

    def __init__(self, reactor, containers, images) -> None:
        self.reactor = reactor
        self.containers = containers
        self.images = images

    def _thread(self, function, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    async def commit(self, c, options: CreateImageConfig) -> str:
        """Commit container C{c} as C{options} say: the new image's ID."""
        if c.state.dead:
            raise Conflict("You cannot commit container %s which is Dead" % (c.id,))
        if c.state.removing:
            raise Conflict("You cannot commit container %s which is being removed" % (c.id,))
        ref = repo_tag_reference(options.repo, options.tag)
        container_config = {k: v for k, v in c.config.items() if k in _CONFIG_FIELDS}
        body = options.config
        if isinstance(body, dict) and any(key in body for key in _CONFIG_FIELDS):
            user_config = {k: v for k, v in body.items() if k in _CONFIG_FIELDS}
            # strslice.StrSlice: one string is a list of it.
            for key in _STRSLICE_FIELDS:
                if key in user_config:
                    user_config[key] = strslice(user_config[key])
        else:
            user_config = json.loads(json.dumps(container_config))
        new_config = apply_changes(user_config, list(options.changes))
        new_config = merge_config(new_config, container_config)
        paused_here = False
        if options.pause and c.state.running and not c.state.paused and not c.state.restarting:
            # As dockerd, a pause that fails (the process just exited, its
            # exit not yet handled) is no reason not to commit.
            try:
                await self.containers.pause(c.id)
                paused_here = True
            except DockerError as e:
                log.info("pause {id} for commit: {e}", id=c.id[:12], e=e)
        try:
            upper = self.containers.overlay(c)["UpperDir"]
            tmp_dir = os.path.dirname(upper)
            layer = shield(
                self._thread(layer_tar, upper, self.containers.layer_dirs(c), tmp_dir),
                lambda handle: handle.close(),
            )
            handle = await layer
        finally:
            if paused_here:
                try:
                    await self.containers.unpause(c.id)
                except DockerError as e:
                    log.warn("unpause {id} after commit: {e}", id=c.id[:12], e=e)
        image_id = await self.images.commit_image(
            handle,
            c.image_id,
            container_id=c.id,
            container_config=container_config,
            config=new_config,
            author=options.author,
            comment=options.comment,
            ref=ref,
        )
        self.containers.log_event(
            c,
            "commit",
            comment=options.comment,
            imageID=image_id,
            imageRef=ref.familiar_string() if ref is not None else "",
        )
        return image_id


def layer_tar(upper: str, layer_dirs: List[str], tmp_dir: str) -> BinaryIO:
    """The container's layer tar in an unlinked temporary file, rewound."""
    os.makedirs(tmp_dir, exist_ok=True)
    handle = tempfile.TemporaryFile(dir=tmp_dir)
    try:
        write_layer(upper, layer_dirs, handle.write)
        handle.flush()
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle
