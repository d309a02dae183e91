"""C{client.checkpoints}: the checkpoint router (experimental daemons), and
twistedock's export and import of a checkpoint between daemons."""

from typing import Optional

from .api import segment
from .errors import DockerClientError

#: twistedock's headers (see its routers): on a checkpoint's answer, the
#: seconds its process had been frozen; on a restore's, the seconds the
#: restored process had run.
FROZEN_HEADER = "X-Twistedock-Frozen-For"
RESUMED_HEADER = "X-Twistedock-Running-For"


def _seconds(headers, name: str) -> Optional[float]:
    values = headers.getRawHeaders(name) if headers is not None else None
    try:
        return float(values[0]) if values else None
    except ValueError:
        return None


class Checkpoints:
    def __init__(self, client) -> None:
        self.client = client

    def _path(self, container, *rest) -> str:
        return "/containers/%s/checkpoints" % (segment(container),) + "".join("/" + segment(p) for p in rest)

    async def create(self, container, checkpoint: str, exit: bool = True,
                     checkpoint_dir: Optional[str] = None, lazy_pages: bool = False) -> Optional[float]:
        """Checkpoint a running container (stopping it, with C{exit}).  With
        C{lazy_pages} (twistedock only) the answer comes once the images
        are written, the pages left to be fetched (L{pages}).  The seconds
        the process had been frozen when the daemon answered, when it says
        (twistedock, a dump over CRIU's RPC), else None."""
        body = {"CheckpointID": checkpoint, "Exit": exit}
        if lazy_pages:
            body["LazyPages"] = True
        if checkpoint_dir:
            body["CheckpointDir"] = checkpoint_dir
        return _seconds(await self.client.call("POST", self._path(container), json=body), FROZEN_HEADER)

    async def list(self, container, checkpoint_dir: Optional[str] = None) -> list:
        """The checkpoints' names."""
        found = await self.client.json("GET", self._path(container), {"dir": checkpoint_dir})
        return [c["Name"] for c in found or []]

    async def delete(self, container, checkpoint: str, checkpoint_dir: Optional[str] = None) -> None:
        await self.client.call("DELETE", self._path(container, checkpoint), {"dir": checkpoint_dir})

    async def start(self, container, checkpoint: str, checkpoint_dir: Optional[str] = None) -> Optional[float]:
        """Restore the container from C{checkpoint}.  The seconds the
        restored process had run when the daemon answered, when it says
        (twistedock, a restore over CRIU's RPC), else None."""
        headers = await self.client.call("POST", "/containers/%s/start" % (segment(container),),
                                         {"checkpoint": checkpoint, "checkpoint-dir": checkpoint_dir})
        return _seconds(headers, RESUMED_HEADER)

    async def export(self, container, checkpoint: str, prepare: bool = False, wait: bool = False):
        """The checkpoint, the container's record and its filesystem
        changes as a tar L{BodyStream} (twistedock only).  With C{prepare}
        the record only, for L{import_} with C{prepare} on another daemon
        (the checkpoint, named already, need not exist yet).  With C{wait}
        the answer waits for the checkpoint to be taken (asked for at the
        same time, on another connection), 404 if it fails."""
        params = {"prepare": "1" if prepare else None, "wait": "1" if wait else None}
        return await self.client.stream("GET", self._path(container, checkpoint, "export"), params)

    async def export_to(self, container, checkpoint: str, file) -> int:
        """Export into C{file} (a path or a binary file, written in a
        thread); the bytes written."""
        stream = await self.export(container, checkpoint)
        return await stream.write_to(file)

    async def import_(self, tar, name: Optional[str] = None, prepare: bool = False) -> str:
        """Create a container and its checkpoint from an export (bytes, a
        binary file, a path, or an async iterator such as another daemon's
        L{export} stream); the new container's ID.  With C{prepare} (a
        C{prepare} export) the container only, its checkpoint to come with
        L{import_into}; the daemon removes it at its next start if no
        restore came."""
        params = {"name": name, "prepare": "1" if prepare else None}
        created = await self.client.json("POST", "/containers/checkpoints/import", params,
                                         body=tar, headers={"Content-Type": "application/x-tar"})
        return created["Id"]

    async def import_into(self, container, tar) -> str:
        """The checkpoint of an export (as for L{import_}) given to the
        container a prepared L{import_} made; the checkpoint's name."""
        imported = await self.client.json("POST", "/containers/%s/checkpoints/import" % (segment(container),),
                                          body=tar, headers={"Content-Type": "application/x-tar"})
        return imported["Checkpoint"]

    async def pages(self, container, checkpoint: str):
        """The page server of a lazy checkpoint, as a hijacked session
        (twistedock only): what is written to it goes to CRIU's page server,
        what it answers comes out."""
        return await self.client.hijack("POST", self._path(container, checkpoint, "pages"), multiplexed=False)

    async def page_source(self, container, checkpoint: str):
        """Give the daemon the connection (a hijacked session) over which
        its next restore from lazy checkpoint C{checkpoint} fetches its
        pages (twistedock only)."""
        return await self.client.hijack("POST", self._path(container, checkpoint, "page-source"), multiplexed=False)

    async def move(self, container, checkpoint: str, target, name: Optional[str] = None,
                   start: bool = True, remove: bool = True) -> str:
        """Move a checkpointed container to the daemon of C{target} (another
        L{DockerClient}): its export streamed straight into C{target}'s
        import (no bigger in memory than a few chunks), named C{name} (by
        default as here), started from C{checkpoint}, then removed here.
        If the start fails, the copy is removed there and this container is
        left as it was.  The new container's ID."""
        if name is None:
            name = (await self.client.containers.inspect(container))["Name"].lstrip("/")
        moved = await target.checkpoints.import_(await self.export(container, checkpoint), name=name)
        if start:
            try:
                await target.checkpoints.start(moved, checkpoint)
            except BaseException:
                try:
                    await target.containers.remove(moved, force=True)
                except DockerClientError:
                    pass
                raise
        if remove:
            await self.client.containers.remove(container, force=True)
        return moved
