"""
twistedock-migrate: move a running container from one twistedock daemon to
another over their Engine APIs (both run with --experimental).

    twistedock-migrate SOURCE_HOST TARGET_HOST CONTAINER [--mode plain|lazy|auto] [--lazy]
                       [--keep-source] [--tcp-established]

Hosts are C{unix:///path/to/docker.sock} or C{tcp://host:port} (TLS with
C{--tlscacert}/C{--tlscert}/C{--tlskey}, or C{--tls}).  The steps:

 1. inspect the container on the source (it must run) and check that its
    image exists on the target (a missing image stops here, nothing done);
 2. pre-copy rounds (C{--pre-copy N}): not supported yet by the daemon's
    checkpoint API, so N > 0 is refused with a clear message;
 3. the target prepared while the container runs: the source's record and
    root filesystem changes exported (C{prepare}) into the target's
    prepared import, which makes the container there (same name), marked
    until its restore; the connections of the steps below opened;
 4. the final checkpoint on the source (C{Exit}: the process is frozen and
    stops there) - the downtime starts here - and, asked for at the same
    time, its export (answered once the checkpoint is complete), streamed
    into the prepared container's import on the target: CRIU's images and
    the root filesystem's changes, unchanged files only named;
 5. C{start --checkpoint} on the target - the downtime ends when it answers
    and the target reports the container running;
 6. only then the container is removed from the source (kept, exited with its
    checkpoint, with C{--keep-source}).

With C{--lazy} (C{--mode lazy}; C{--mode auto} chooses it when the
container uses more than C{--lazy-threshold} of memory) the checkpoint is
post-copy: step 4's checkpoint answers once CRIU wrote everything but the
pages, which stay with the frozen process on the source; its export (asked
for after that answer) moves only those small images; the tool then joins
the source's page server (C{.../pages}) to the target's page source
(C{.../page-source}), both hijacked API connections (over TLS between
hosts), and step 5 restores at once; the target faults the pages in while
the process runs.  The source serves pages until the
target has them all, and only then exits the container, which step 6
removes.  If the page copy breaks off (either daemon or the tool dies, a
connection drops) the target kills its copy and the source's CRIU is
killed, which leaves the process running there again: never two live
copies.

A failure at any step leaves the container running on the source: before
the checkpoint nothing was changed but the prepared container, which is
removed (by the target's next start if the tool dies); after it, what was
made on the target is removed and the container is restored on the source from its checkpoint
(if even that fails, the checkpoint is left and the command to restore it
printed).  The downtime (checkpoint start to restored start) and the bytes
moved are printed at the end.
"""

import argparse
import json
import sys
import time
from typing import Optional

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from .client import DockerClient, DockerClientError, NotFound, NotModified, TLSConfig, parse_host
from .client.hijack import no_delay


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


async def _memory_usage(source, cid) -> int:
    """The container's memory use (bytes) as the source's stats say."""
    stats = await source(source.client.containers.stats, cid, stream=False, one_shot=True)
    memory = (stats or {}).get("memory_stats") or {}
    usage = int(memory.get("usage") or 0)
    cache = int((memory.get("stats") or {}).get("cache") or (memory.get("stats") or {}).get("inactive_file") or 0)
    return max(0, usage - cache)


async def _choose_mode(source, cid, args) -> str:
    if args.lazy:
        return "lazy"
    if args.mode != "auto":
        return args.mode
    usage = await _memory_usage(source, cid)
    mode = "lazy" if usage >= args.lazy_threshold * 1048576 else "plain"
    _say("memory in use %.1f MiB: %s migration" % (usage / 1048576.0, mode))
    return mode


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

    mode = await _choose_mode(source, cid, args)
    if mode == "lazy":
        return await _migrate_lazy(source, target, args, cid, cname, name)

    return await _migrate_plain(source, target, args, cid, cname)


async def _prepare(source, target, args, cid: str, cname: str, checkpoint: str) -> str:
    """Before the freeze: the container made on the target from the
    source's record (a prepared import, marked there until its restore),
    the two connections (TLS handshakes included) opened; its ID.  A
    failure removes what was made: nothing else was changed."""
    new_id: Optional[str] = None
    try:
        record = await source(source.client.checkpoints.export, cid, checkpoint, prepare=True)
        # A second connection to the source opened meanwhile: the
        # checkpoint and its export are asked for at once after the freeze.
        second = defer.ensureDeferred(source(source.client.system.ping))
        new_id = await target(target.client.checkpoints.import_, record, name=cname, prepare=True)
        await second
        return new_id
    except BaseException as e:
        _say("failed before the checkpoint: %s" % (e,))
        if new_id is not None:
            await _remove_target(target, new_id)
        raise MigrationError("%s; nothing was done (the container runs on %s)" % (e, args.source))


class _Counted:
    """An export stream relayed chunk by chunk (into the target's import),
    its bytes counted and the time its end was read noted."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.bytes = 0
        self.ended: Optional[float] = None

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        data = await self.stream.next()
        if data is None:
            self.ended = time.monotonic()
            raise StopAsyncIteration
        self.bytes += len(data)
        return data

    def close(self) -> None:
        self.stream.close()


async def _migrate_plain(source, target, args, cid: str, cname: str) -> dict:
    """Stop and copy: the target prepared, then the checkpoint, its export
    streamed straight into the target's import, and the restore."""
    checkpoint = "migrate-%d" % (int(time.time() * 1000),)
    await _pause("prepare", args.pause_before)
    preparing = time.monotonic()
    new_id = await _prepare(source, target, args, cid, cname, checkpoint)
    await _pause("checkpoint", args.pause_before)
    frozen = time.monotonic()
    _say("checkpointing %s (%s) on %s" % (cname, cid[:12], args.source))
    creating = defer.ensureDeferred(source(source.client.checkpoints.create, cid, checkpoint, exit=True))
    # (When its answer came: with the export asked for with it, it may be
    # read after the restore.)
    answered: list = []
    creating.addCallback(lambda result: (answered.append(time.monotonic()), result)[1])
    checkpoint_done = _settled(creating)
    if args.export_with_checkpoint:
        return await _plain_with_export(source, target, args, cid, cname, checkpoint, new_id, creating,
                                        answered, checkpoint_done, preparing, frozen)
    try:
        frozen_for = await creating
    except BaseException as e:
        # Not checkpointed: it still runs on the source; the prepared
        # container goes.
        _say("failed: %s" % (e,))
        await _remove_target(target, new_id)
        raise
    checkpointed = answered[0]
    # From here the container is stopped on the source, its checkpoint kept.
    try:
        relayed = await _move(source, target, args, cid, checkpoint, new_id, checkpoint_done)
        imported = time.monotonic()
        await _pause("restore", args.pause_before)
        running_for, restored = await _restore(target, args, new_id, checkpoint)
    except BaseException as e:
        await _recover(source, target, cid, new_id, checkpoint, args, e)
        raise
    await _remove_source(source, cid, args)
    return _plain_figures(args, cname, new_id, relayed, preparing, frozen, checkpointed, frozen_for, imported,
                          restored, running_for)


async def _plain_with_export(source, target, args, cid: str, cname: str, checkpoint: str, new_id: str,
                             creating, answered: list, checkpoint_done, preparing: float,
                             frozen: float) -> dict:
    """(The default.)  The export asked for together with the checkpoint:
    the source answers it once the checkpoint is complete and the container
    recorded as checkpointed there (never restarted), and the restore
    follows the import without waiting for the checkpoint's own answer,
    which comes once the source has also recorded the container's exit."""
    try:
        relayed = await _move(source, target, args, cid, checkpoint, new_id, checkpoint_done)
    except BaseException as e:
        try:
            await creating
        except BaseException as refused:
            # Not checkpointed (or its answer lost with the source): the
            # prepared container goes; the source has the container,
            # running, or checkpointed if it got that far.
            _say("failed: %s" % (refused,))
            await _remove_target(target, new_id)
            raise
        await _recover(source, target, cid, new_id, checkpoint, args, e)
        raise
    imported = time.monotonic()
    try:
        await _pause("restore", args.pause_before)
        running_for, restored = await _restore(target, args, new_id, checkpoint)
    except BaseException as e:
        await checkpoint_done
        await _recover(source, target, cid, new_id, checkpoint, args, e)
        raise
    frozen_for: Optional[float] = None
    checkpointed = restored
    try:
        frozen_for = await creating
        checkpointed = answered[0]
    except BaseException as e:
        # (Its export came: it was complete, and the container recorded
        # as checkpointed there.)
        _say("warning: the source's answer to the checkpoint was lost (%s); the container runs on %s" % (
            e, args.target))
    await _remove_source(source, cid, args)
    return _plain_figures(args, cname, new_id, relayed, preparing, frozen, checkpointed, frozen_for, imported,
                          restored, running_for)


async def _restore(target, args, new_id: str, checkpoint: str):
    """C{start --checkpoint} on the target, and the restored container
    reported running there: the start's answer (what the daemon says the
    process ran before it) and when it came."""
    running_for = await target(target.client.checkpoints.start, new_id, checkpoint)
    restored = time.monotonic()
    state = await target(target.client.containers.inspect, new_id)
    if not state["State"].get("Running"):
        raise MigrationError("the restored container is not running on %s" % (args.target,))
    return running_for, restored


def _plain_figures(args, cname: str, new_id: str, relayed: "_Counted", preparing: float, frozen: float,
                   checkpointed: float, frozen_for: Optional[float], imported: float, restored: float,
                   running_for: Optional[float]) -> dict:
    # (With the export asked for with the checkpoint, the checkpoint's
    # answer may come after the import, even after the restore: export and
    # transfer are counted from the answer, or from the import's end when
    # that came first, then nothing of them is left.)
    begun = min(checkpointed, imported)
    exported = max(relayed.ended or imported, begun)
    figures = {
        "Id": new_id,
        **_downtime(frozen, checkpointed, frozen_for, restored, running_for),
        "Prepare": frozen - preparing,
        "Checkpoint": checkpointed - frozen,
        "Transfer": imported - begun,
        "Export": exported - begun,
        "Restore": restored - imported,
        "Bytes": relayed.bytes,
    }
    _say("%s runs on %s as %s" % (cname, args.target, new_id[:12]))
    _say("%s (checkpoint %.0f ms, export %.0f ms, import %.0f ms, restore %.0f ms); "
         "prepared before it in %.0f ms" % (
             _downtime_text(figures), figures["Checkpoint"] * 1000, figures["Export"] * 1000,
             (imported - exported) * 1000, figures["Restore"] * 1000, figures["Prepare"] * 1000))
    _say("bytes moved: %d (%.1f MiB)" % (relayed.bytes, relayed.bytes / 1048576.0))
    return figures


async def _move(source, target, args, cid: str, checkpoint: str, new_id: str, checkpointed) -> _Counted:
    """The checkpoint's export (answered once it is complete) streamed into
    the prepared container's import on the target."""
    if args.pause_before in ("export", "import"):
        # (The test hook's steps come after the checkpoint.)
        await checkpointed
    await _pause("export", args.pause_before)
    relayed = _Counted(await source(source.client.checkpoints.export, cid, checkpoint, wait=True))
    try:
        await _pause("import", args.pause_before)
        await target(target.client.checkpoints.import_into, new_id, relayed)
    finally:
        relayed.close()
    return relayed


def _settled(d: defer.Deferred) -> defer.Deferred:
    """A Deferred fired (with None) when C{d} fires, C{d}'s result left
    to its own callbacks."""
    settled: defer.Deferred = defer.Deferred()

    def fire(result):
        if not settled.called:
            settled.callback(None)
        return result

    d.addBoth(fire)
    return settled


async def _remove_target(target, new_id: str) -> None:
    """The target's (prepared or half-made) copy removed; a failure is a
    warning (its daemon removes a prepared one when it starts again)."""
    try:
        await target.client.containers.remove(new_id, force=True)
    except NotFound:
        pass
    except Exception as e:
        _say("warning: could not remove the half-made container on the target: %s" % (e,))


async def _pump(reader, writer, counter: list, index: int, stopped: list) -> None:
    """Bytes from one hijacked session to the other until the first ends;
    then the second is closed (and C{stopped} told)."""
    try:
        while True:
            data = await reader.body.next()
            if data is None:
                break
            counter[index] += len(data)
            writer.write(data)
    finally:
        stopped.append(index)
        writer.close()
        reader.close()


async def _migrate_lazy(source, target, args, cid: str, cname: str, name: str) -> dict:
    """Post-copy: the images without the pages moved, the restore made, the
    pages fetched by the target from the source's page server through this
    tool's two API connections."""
    checkpoint = "migrate-%d" % (int(time.time() * 1000),)
    await _pause("prepare", args.pause_before)
    preparing = time.monotonic()
    new_id = await _prepare(source, target, args, cid, cname, checkpoint)
    # The target's page source joined before the freeze (the checkpoint it
    # is for comes with the import).
    try:
        fetching = await target(target.client.checkpoints.page_source, new_id, checkpoint)
    except BaseException as e:
        _say("failed before the checkpoint: %s" % (e,))
        await _remove_target(target, new_id)
        raise MigrationError("%s; nothing was done (the container runs on %s)" % (e, args.source))
    sessions = [fetching]
    await _pause("checkpoint", args.pause_before)
    frozen = time.monotonic()
    _say("checkpointing %s (%s) on %s, pages left behind (lazy)" % (cname, cid[:12], args.source))
    creating = defer.ensureDeferred(
        source(source.client.checkpoints.create, cid, checkpoint, exit=True, lazy_pages=True))
    exporting: Optional[defer.Deferred] = None
    if args.pause_before not in ("export", "import"):
        # The export asked for with the checkpoint: the source answers it
        # as soon as the images are written (the test hook's steps, when
        # asked for, come one after the other).
        exporting = defer.ensureDeferred(source(source.client.checkpoints.export, cid, checkpoint, wait=True))
    try:
        frozen_for = await creating
    except BaseException as e:
        _say("failed: %s" % (e,))
        if exporting is not None:
            exporting.addErrback(lambda _: None)
        fetching.close()
        await _remove_target(target, new_id)
        raise
    checkpointed = time.monotonic()
    # From here the process is frozen on the source and CRIU serves its
    # pages: the source gives them up (and runs the process again) if the
    # page connection ends before the target has them all.
    moved = 0
    relay = None
    counted = [0, 0]
    try:
        # The source's page server is joined while the images travel.
        serving = defer.ensureDeferred(source(source.client.checkpoints.pages, cid, checkpoint))
        serving.addCallback(lambda session: (sessions.append(session), session)[1])
        try:
            await _pause("export", args.pause_before)
            if exporting is None:
                exporting = defer.ensureDeferred(source(source.client.checkpoints.export, cid, checkpoint))
            relayed = _Counted(await exporting)
            try:
                await _pause("import", args.pause_before)
                await target(target.client.checkpoints.import_into, new_id, relayed)
            finally:
                relayed.close()
            imported = time.monotonic()
            moved = relayed.bytes
            exported = relayed.ended or imported
            await _pause("pages", args.pause_before)
        finally:
            try:
                served = await serving
            except BaseException:
                served = None
        if served is None:
            await serving
        for session in (served, fetching):
            no_delay(session.protocol.transport)
        stopped: list = []
        relay = defer.gatherResults([
            defer.ensureDeferred(_pump(served, fetching, counted, 0, stopped)),
            defer.ensureDeferred(_pump(fetching, served, counted, 1, stopped)),
        ], consumeErrors=True)
        await _pause("restore", args.pause_before)
        # A page connection that already ended (the source gone) would
        # leave the restore waiting for pages that never come.  Its end,
        # already read, ended its pump as it started (no wait needed); one
        # that ends later is the target's to see: its restore refuses a
        # page source gone, and kills a copy whose pages stop coming.
        if stopped:
            raise MigrationError("the page connection ended before the restore")
        running_for, restored = await _restore(target, args, new_id, checkpoint)
        await _pause("copy", args.pause_before)
        try:
            await relay
        except Exception as e:
            raise MigrationError("the page copy broke off: %r" % (e,))
        copied = time.monotonic()
        # The source exits the container once CRIU served every page.
        left = await _wait_source_exited(source, cid, args.copy_timeout)
        if not left:
            raise MigrationError("the source did not confirm the page copy")
        state = await target(target.client.containers.inspect, new_id)
        if not state["State"].get("Running"):
            raise MigrationError("the restored container stopped on %s during the page copy" % (args.target,))
    except BaseException as e:
        for session in sessions:
            session.close()
        await _recover_lazy(source, target, cid, new_id, checkpoint, args, e)
        raise
    await _remove_source(source, cid, args)
    figures = {
        "Id": new_id,
        "Mode": "lazy",
        **_downtime(frozen, checkpointed, frozen_for, restored, running_for),
        "Prepare": frozen - preparing,
        "Checkpoint": checkpointed - frozen,
        "Transfer": imported - checkpointed,
        "Export": exported - checkpointed,
        "Restore": restored - imported,
        "PageCopy": copied - restored,
        "Bytes": moved,
        "PageBytes": counted[0],
    }
    _say("%s runs on %s as %s" % (cname, args.target, new_id[:12]))
    _say("%s (checkpoint %.0f ms, export %.0f ms, import %.0f ms, restore %.0f ms)" % (
        _downtime_text(figures), figures["Checkpoint"] * 1000, figures["Export"] * 1000,
        (imported - exported) * 1000, figures["Restore"] * 1000))
    _say("bytes moved: %d (%.1f MiB) before the restore, %d (%.1f MiB) of pages in %.0f ms after it" % (
        moved, moved / 1048576.0, counted[0], counted[0] / 1048576.0, figures["PageCopy"] * 1000))
    return figures


def _downtime(asked: float, checkpointed: float, frozen_for: Optional[float], restored: float,
              running_for: Optional[float]) -> dict:
    """The figures of the downtime: C{Span}, from the checkpoint's request
    (C{asked}) to the restore's answer (C{restored}), both on this tool's
    clock; C{Downtime}, the same without what the daemons say was before
    the freeze (the answer came C{frozen_for} seconds after it) and after
    the restored process ran again (C{running_for} before its answer),
    C{Measured} then true.  (Durations, each measured on one daemon's
    clock: no clock is shared; what the answers spent on the way is
    counted in.)"""
    span = restored - asked
    if frozen_for is None or running_for is None:
        return {"Downtime": span, "Span": span, "Measured": False}
    froze = max(asked, checkpointed - frozen_for)
    resumed = min(restored, max(froze, restored - running_for))
    return {"Downtime": resumed - froze, "Span": span, "Measured": True}


def _downtime_text(figures: dict) -> str:
    if figures["Measured"]:
        return ("downtime: %.0f ms from the freeze to the restored process running, as the daemons measured "
                "it; %.0f ms from the checkpoint's request to the restore's answer" % (
                    figures["Downtime"] * 1000, figures["Span"] * 1000))
    return "downtime: %.0f ms from the checkpoint's request to the restore's answer" % (figures["Span"] * 1000,)


async def _wait_source_exited(source, cid: str, timeout: float) -> bool:
    """Whether the source reports the container exited (its lazy
    checkpoint complete) within C{timeout} seconds."""
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await source(source.client.containers.inspect, cid)
        if not info["State"].get("Running"):
            return True
        await deferLater(reactor, 0.02)
    return False


async def _recover_lazy(source, target, cid, new_id, checkpoint, args, error) -> None:
    """After a failure of a lazy migration: the target's copy removed; the
    source, whose CRIU is killed when its page connection ends early, runs
    the container again by itself."""
    _say("failed: %s" % (error,))
    if new_id is not None:
        await _remove_target(target, new_id)
    try:
        from twisted.internet import reactor

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = await source.client.containers.inspect(cid)
            # Running again once its lazy checkpoint was given up (removed).
            if info["State"].get("Running") and checkpoint not in await source.client.checkpoints.list(cid):
                _say("the container runs on the source again")
                return
            if not info["State"].get("Running"):
                break
            await deferLater(reactor, 0.1)
        _say("the container does not run on the source (state %s); see its logs there" % (
            info["State"].get("Status"),))
    except Exception as e:
        _say("could not ask the source about the container: %s" % (e,))



async def _remove_source(source, cid: str, args) -> None:
    """The container removed from the source once it runs on the target
    (kept with C{--keep-source}); a failure is only a warning."""
    if args.keep_source:
        return
    try:
        await source(source.client.containers.remove, cid, force=True)
    except MigrationError as e:
        _say("warning: the container runs on the target but could not be removed from the source: %s" % (e,))


async def _recover(source, target, cid, new_id, checkpoint, args, error) -> None:
    """After a failure past the checkpoint: nothing left on the target, the
    container restored on the source."""
    _say("failed: %s" % (error,))
    if new_id is not None:
        await _remove_target(target, new_id)
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
    p.add_argument("--mode", choices=("plain", "lazy", "auto"), default="plain",
                   help="plain: stop and copy (the default); lazy: post-copy, the pages fetched after the "
                        "restore; auto: lazy when the container uses more than --lazy-threshold of memory")
    p.add_argument("--lazy", action="store_true", help="the same as --mode lazy")
    p.add_argument("--lazy-threshold", type=float, default=64.0, metavar="MiB",
                   help="--mode auto: the memory use from which lazy is chosen (default 64 MiB)")
    p.add_argument("--copy-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="lazy: how long the source may take to confirm the page copy")
    p.add_argument("--tcp-established", action="store_true",
                   help="keep established TCP connections (the daemons always checkpoint them; "
                        "the container's address must be the same on the target)")
    p.add_argument("--export-with-checkpoint", action=argparse.BooleanOptionalAction, default=True,
                   help="plain: ask for the export together with the checkpoint, and restore once it is "
                        "imported, while the source still records the container's exit (the default); "
                        "--no-export-with-checkpoint asks for it once the checkpoint answered")
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
