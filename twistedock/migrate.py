"""
twistedock-migrate: move a running container from one twistedock daemon to
another over their Engine APIs (both run with --experimental).

    twistedock-migrate SOURCE_HOST TARGET_HOST CONTAINER [--pre-copy N] [--keep-source]

Hosts are C{unix:///path/to/docker.sock} or C{tcp://host:port} (TLS with
C{--tlscacert}/C{--tlscert}/C{--tlskey}, or C{--tls}).  The steps:

 1. inspect the container on the source (it must run) and check that its
    image exists on the target (a missing image stops here, nothing done);
 2. pre-copy rounds (C{--pre-copy N}): not supported yet by the daemon's
    checkpoint API, so N > 0 is refused with a clear message;
 3. the final checkpoint on the source (C{Exit}: the process is frozen and
    stops there) - the downtime starts here;
 4. export from the source, import on the target (same name);
 5. C{start --checkpoint} on the target - the downtime ends when it answers
    and the target reports the container running;
 6. only then the container is removed from the source (kept, exited with its
    checkpoint, with C{--keep-source}).

A failure at any step leaves the container running on the source: before
the checkpoint nothing was changed; after it, what was made on the target
is removed and the container is restored on the source from its checkpoint
(if even that fails, the checkpoint is left and the command to restore it
printed).  The downtime (checkpoint start to restored start) and the bytes
moved are printed at the end.
"""

import argparse
import json
import sys
import tempfile
import time
from typing import Optional

from twisted.internet import defer
from twisted.internet.threads import deferToThread

from .client import DockerClient, DockerClientError, NotFound, NotModified, TLSConfig, parse_host


class MigrationError(Exception):
    """A step failed; the message says which and why."""


class Daemon:
    """One daemon, through the client; its failures as L{MigrationError}s
    naming the daemon."""

    def __init__(self, reactor, host: str, args) -> None:
        self.host = host
        tls = None
        if args.tls or args.tlscacert or args.tlscert:
            tls = TLSConfig(verify=True, ca_cert=args.tlscacert or None, client_cert=args.tlscert or None,
                            client_key=args.tlskey or None)
        try:
            self.client = DockerClient.for_host(reactor, parse_host(host, tls))
        except DockerClientError as e:
            raise MigrationError(str(e))

    async def __call__(self, what, *args, **kwargs):
        """C{what(*args, **kwargs)}, its failure said with this daemon's name."""
        try:
            return await what(*args, **kwargs)
        except MigrationError:
            raise
        except Exception as e:
            # The daemon's answer, or a connection that failed.
            raise MigrationError("%s: %s" % (self.host, e if isinstance(e, DockerClientError) else repr(e)))


def _say(text: str) -> None:
    sys.stdout.write("migrate: %s\n" % (text,))
    sys.stdout.flush()


async def _pause(step: str, pause_before) -> None:
    """A test hook: stop before C{step} until a line is read from stdin."""
    if pause_before == step:
        _say("paused before %s" % (step,))
        await deferToThread(sys.stdin.readline)


async def migrate(reactor, args) -> dict:
    source = Daemon(reactor, args.source, args)
    target = Daemon(reactor, args.target, args)
    try:
        return await _migrate(source, target, args)
    finally:
        await defer.gatherResults([source.client.close(), target.client.close()])


async def _migrate(source, target, args) -> dict:
    name = args.container
    info = await source(source.client.containers.inspect, name)
    cid = info["Id"]
    cname = info["Name"].lstrip("/")
    image = info["Config"].get("Image") or ""
    if not info["State"].get("Running"):
        raise MigrationError("container %s is not running on %s" % (name, args.source))
    await target(target.client.images.inspect, image)
    if args.pre_copy:
        raise MigrationError(
            "--pre-copy is not supported yet (the daemon's checkpoint API has no pre-dump, which "
            "needs a kernel with soft-dirty page tracking); nothing was done"
        )

    checkpoint = "migrate-%d" % (int(time.time() * 1000),)
    await _pause("checkpoint", args.pause_before)
    frozen = time.monotonic()
    _say("checkpointing %s (%s) on %s" % (cname, cid[:12], args.source))
    await source(source.client.checkpoints.create, cid, checkpoint, exit=True)
    checkpointed = time.monotonic()
    # From here the container is stopped on the source, its checkpoint kept.
    new_id: Optional[str] = None
    moved = 0
    spool = tempfile.TemporaryFile(prefix="twistedock-migrate-")
    try:
        try:
            await _pause("export", args.pause_before)
            moved = await source(source.client.checkpoints.export_to, cid, checkpoint, spool)
            exported = time.monotonic()
            spool.seek(0)
            await _pause("import", args.pause_before)
            new_id = await target(target.client.checkpoints.import_, spool, name=cname)
            imported = time.monotonic()
            await _pause("restore", args.pause_before)
            await target(target.client.checkpoints.start, new_id, checkpoint)
            restored = time.monotonic()
            state = await target(target.client.containers.inspect, new_id)
            if not state["State"].get("Running"):
                raise MigrationError("the restored container is not running on %s" % (args.target,))
        except BaseException as e:
            await _recover(source, target, cid, new_id, checkpoint, args, e)
            raise
    finally:
        spool.close()
    downtime = restored - frozen
    if not args.keep_source:
        try:
            await source(source.client.containers.remove, cid, force=True)
        except MigrationError as e:
            _say("warning: the container runs on the target but could not be removed from the source: %s" % (e,))
    figures = {
        "Id": new_id,
        "Downtime": downtime,
        "Checkpoint": checkpointed - frozen,
        "Transfer": imported - checkpointed,
        "Export": exported - checkpointed,
        "Restore": restored - imported,
        "Bytes": moved,
    }
    _say("%s runs on %s as %s" % (cname, args.target, new_id[:12]))
    _say("downtime: %.0f ms (checkpoint %.0f ms, export %.0f ms, import %.0f ms, restore %.0f ms)" % (
        downtime * 1000, figures["Checkpoint"] * 1000, figures["Export"] * 1000,
        (imported - exported) * 1000, figures["Restore"] * 1000))
    _say("bytes moved: %d (%.1f MiB)" % (moved, moved / 1048576.0))
    return figures


async def _recover(source, target, cid, new_id, checkpoint, args, error) -> None:
    """After a failure past the checkpoint: nothing left on the target, the
    container restored on the source."""
    _say("failed: %s" % (error,))
    if new_id is not None:
        try:
            await target.client.containers.remove(new_id, force=True)
        except NotFound:
            pass
        except Exception as e:
            _say("warning: could not remove the half-made container on the target: %s" % (e,))
    _say("restoring the container on the source from checkpoint %s" % (checkpoint,))
    try:
        try:
            await source.client.checkpoints.start(cid, checkpoint)
        except NotModified:
            pass
        _say("the container runs on the source again")
    except Exception as e:
        _say("could not restore it on the source (%s); it can be restored with: "
             "docker -H %s start --checkpoint %s %s" % (e, args.source, checkpoint, cid[:12]))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="twistedock-migrate",
        description="Move a running container between two twistedock daemons (checkpoint, transfer, restore).",
    )
    p.add_argument("source", metavar="SOURCE_HOST", help="unix:///path or tcp://host:port")
    p.add_argument("target", metavar="TARGET_HOST", help="unix:///path or tcp://host:port")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--pre-copy", type=int, default=0, metavar="N",
                   help="pre-copy rounds before the final checkpoint (not supported yet)")
    p.add_argument("--keep-source", action="store_true",
                   help="keep the (exited, checkpointed) container on the source")
    p.add_argument("--tls", action="store_true", help="use TLS for tcp:// hosts")
    p.add_argument("--tlscacert", default="")
    p.add_argument("--tlscert", default="")
    p.add_argument("--tlskey", default="")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.add_argument("--pause-before", default="", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    """The console command: 0 when the container moved, 1 when it did not
    (it is then running on the source, or restorable there: see above)."""
    from twisted.internet import reactor

    args = parser().parse_args(argv)
    outcome = {"code": 1}

    async def run():
        try:
            figures = await migrate(reactor, args)
            if args.json:
                sys.stdout.write(json.dumps(figures) + "\n")
            outcome["code"] = 0
        except MigrationError as e:
            sys.stderr.write("twistedock-migrate: %s\n" % (e,))
        except Exception as e:
            sys.stderr.write("twistedock-migrate: unexpected error: %r\n" % (e,))

    def go():
        defer.ensureDeferred(run()).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    return outcome["code"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
