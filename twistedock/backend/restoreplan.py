"""
L{RestorePlan}: what a start needs to restore a checkpoint instead of
creating the container afresh (over CRIU's RPC or through runc), made by
L{checkpoints.CheckpointBackend} and used by the container backend's start.
"""

import os
import re
from typing import List, Optional

import attr

from ..atomic import write_atomic
from ..errors import DockerError, InternalError
from ..logs import Logger
from .containers.defaults import LAZY_PENDING_MARK, mark, unmark
from .lazypages.restore import PageFetch
from .runtime import criuopts, tmpfsmounts
from .runtime.criudriver import CGROUP_MOUNTS
from .runtime.criuopts import DESCRIPTORS

log = Logger()

#: CRIU's configuration for a restore through runc, in the bundle.
RESTORE_CONFIG = "criu-restore.conf"


@attr.s(frozen=True, auto_attribs=True)
class RestorePlan:
    """What L{ContainerBackend._run} needs to restore instead of create."""

    directory: str
    criu: str
    options: List[str] = attr.Factory(list)
    metadata: Optional[dict] = None
    #: The L{CriuDriver}, when restores may go over CRIU's RPC.
    rpc: object = None
    #: Where the pages of a lazy checkpoint come from (None: all on disk).
    pages: Optional[PageFetch] = None
    #: The tmpfs sources made for this restore, once made (L{tmpfs_sources}).
    made: list = attr.Factory(list)

    def rpc_session(self, container_id: str, bundle: str, root: str, terminal: bool, now: str):
        """A restore over CRIU's RPC of this checkpoint, prepared (blocking:
        in a thread), or None: runc restores it (L{CriuDriver.restore_session})."""
        if not self.over_rpc(terminal):
            return None
        return self.rpc.restore_session(self.criu, container_id, self.directory, bundle, root, terminal, now,
                                        lazy_pages=self.pages is not None, tmpfs_sources=self.tmpfs_sources())

    def tmpfs_sources(self) -> dict:
        """(Blocking.)  The daemon's tmpfs mounts standing for the ones the
        dump named external (L{tmpfsmounts}), made at the first call, for
        whichever restores (over the RPC, or runc's through the CRIU
        configuration file); released by L{release}.  An error when the
        images name some and no driver can make them."""
        if not self.made:
            if not os.path.exists(os.path.join(self.directory, tmpfsmounts.RECORD)):
                self.made.append({})
            elif self.rpc is None:
                raise InternalError("the checkpoint %s names tmpfs mounts external, and this daemon cannot "
                                    "make them" % (self.directory,))
            else:
                self.made.append(self.rpc.tmpfs_sources(self.directory))
        return self.made[0]

    def release(self) -> None:
        """The restore is over (done or failed): L{tmpfs_sources} detached
        (the restored container keeps its own mounts of them)."""
        if self.made and self.made[0]:
            sources = self.made.pop()
            self.rpc.run_in_thread(self.rpc.release_tmpfs, sources).addErrback(
                lambda f: log.failure("releasing a restore's tmpfs sources", f))

    def over_rpc(self, terminal: bool) -> bool:
        """Whether this restore may go over CRIU's RPC (given runc's state
        of a stopped container to go back into: kept after a dump over the
        RPC, or prepared, L{ContainerBackend.prepare_restore}): the RPC
        available, no terminal, runc's descriptors file and the dump's
        cgroup mounts beside the images (a dump over the RPC: blocking, two
        stats).  A lazy checkpoint's too: CRIU is then asked for
        C{lazy_pages} and finds C{criu lazy-pages} (L{prepare}) by its
        socket in the work directory, the bundle, as under runc."""
        return (self.rpc is not None and self.rpc.available() and not terminal
                and all(os.path.exists(os.path.join(self.directory, name)) for name in (DESCRIPTORS, CGROUP_MOUNTS)))

    async def prepare(self, bundle: str) -> None:
        """Before conmon restores: the lazy pages' fetcher started, and the
        bundle marked (L{LAZY_PENDING_MARK}) until every page arrived; the
        kernel's wait before a first cgroup migration begun meanwhile
        (L{prime})."""
        self.prime()
        if self.pages is not None:
            flag = os.path.join(bundle, LAZY_PENDING_MARK)
            mark(flag)

            def arrived(complete: bool) -> bool:
                if complete:
                    unmark(flag)
                return complete

            self.pages.done.addCallback(arrived)
            await self.pages.start(self.criu, self.directory, bundle)

    def prime(self) -> None:
        """The kernel's wait before a first cgroup migration begun now, to
        be over when CRIU's restored task is placed
        (L{criudriver.prime_cgroup_migration})."""
        prime = getattr(self.rpc, "prime_cgroups", None)
        if prime is not None:
            prime()

    def started(self, kill) -> None:
        """The restore succeeded: C{kill()} it if its pages stop arriving."""
        if self.pages is not None:
            self.pages.watch(kill)

    def abort(self) -> None:
        """The restore failed: the fetcher stopped."""
        if self.pages is not None:
            self.pages.abort()

    def failed(self, error: DockerError, bundle: str) -> DockerError:
        """The error for a restore that conmon reported failed, with what
        CRIU said (conmon runs runc restore with the bundle as its work
        directory, where CRIU leaves restore.log)."""
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        details = criu_log_errors(os.path.join(bundle, "restore.log"))
        if details and details not in message:
            message = "%s: %s" % (message, details)
        return InternalError("Cannot restore container from %s: %s" % (self.directory, message))

    def adjust_spec(self, spec: dict, bundle: str) -> None:
        """The run's OCI spec made to restore (blocking, small): runc's CRIU
        told, through the C{org.criu.config} annotation (unless the
        container names a file of its own), not to manage cgroups: runc has
        put CRIU in the container's cgroups before the restore, and the
        restored processes stay there, where the dump's cgroup paths (those
        of another container, for an imported checkpoint) do not matter.
        Written C{manage-cgroups=ignore}: CRIU reads C{manage-cgroups
        ignore} as soft.  Nothing else goes in it: a C{network-lock} line
        there crashes CRIU 4.1 (the lock's method comes from the dump),
        but the source of the masked directories a dump over the RPC named
        external (L{criuopts.MASKED_DIR_KEY}): the daemon's empty read-only
        tmpfs, and those of its tmpfs mounts (L{tmpfs_sources}).  Images
        without a network namespace (L{criuopts.NET_LEFT_OUT}) get runc's
        CRIU run in the container's (L{CRIU_IN_NETNS}, written here)."""
        join = self._net_to_join(spec)
        if join is not None:
            write_atomic(os.path.join(bundle, CRIU_IN_NETNS), criu_in_netns(self.criu, join).encode(), mode=0o700,
                         durable=False)
        annotations = spec.setdefault("annotations", {})
        if "org.criu.config" in annotations:
            if os.path.exists(os.path.join(self.directory, tmpfsmounts.RECORD)):
                raise InternalError("the checkpoint %s names tmpfs mounts external, and the container's own "
                                    "CRIU configuration (org.criu.config) leaves no place to map them"
                                    % (self.directory,))
            return
        path = os.path.join(bundle, RESTORE_CONFIG)
        text = "manage-cgroups=ignore\n"
        masked = getattr(self.rpc, "masked_source", None)
        source = masked() if masked is not None else None
        if source:
            text += "ext-mount-map=%s:%s\n" % (criuopts.MASKED_DIR_KEY, source)
        for key, tmpfs in sorted(self.tmpfs_sources().items()):
            text += "ext-mount-map=%s:%s\n" % (key, tmpfs)
        write_atomic(path, text.encode(), mode=0o600, durable=False)
        annotations["org.criu.config"] = path

    def _net_to_join(self, spec: dict) -> Optional[str]:
        """The network namespace a runc restore joins (the spec's path) when
        the images hold none (L{criuopts.NET_LEFT_OUT}), else None; an error
        when the container has none to join (the restored process would
        stay in CRIU's, the host's)."""
        if not self.net_left_out():
            return None
        for ns in (spec.get("linux") or {}).get("namespaces") or []:
            if ns.get("type") == "network" and ns.get("path"):
                return ns["path"]
        raise InternalError("the checkpoint %s holds no network namespace, and the container has none to join"
                            % (self.directory,))

    def net_left_out(self) -> bool:
        """Whether the images hold no network namespace (blocking, a stat)."""
        return os.path.exists(os.path.join(self.directory, criuopts.NET_LEFT_OUT))

    def create_arguments(self, bundle: str = "") -> dict:
        """Keyword arguments for L{Runtime.create}: conmon's restore mode,
        runc told where CRIU is (L{CRIU_IN_NETNS} in C{bundle} when the
        images hold no network namespace), and the options of the
        checkpoint."""
        criu = self.criu
        if bundle and self.net_left_out():
            criu = os.path.join(bundle, CRIU_IN_NETNS)
        return {
            "restore_from": self.directory,
            "restore_options": list(self.options) + (["--lazy-pages"] if self.pages is not None else []),
            "runtime_args": ["--criu=" + criu],
        }


#: The CRIU runc runs, in the bundle, to restore images without a network
#: namespace (L{criuopts.NET_LEFT_OUT}): CRIU in the container's namespace,
#: where it leaves the restored process (runc asks CRIU for an empty one,
#: C{empty_ns}, which CRIU makes only when the images hold one, and a
#: C{join-ns} beside it is refused; runc itself in the container's would
#: take it for the host's and refuse its net.* sysctls).
CRIU_IN_NETNS = "criu-in-netns"


def criu_in_netns(criu: str, netns: str) -> str:
    """The script L{CRIU_IN_NETNS}: C{criu} in the namespace at C{netns}."""
    import shlex

    return ("#!/bin/sh\n# runc's CRIU (twistedock): in the container's network namespace, for the\n"
            "# restore of images that hold none.\n"
            'exec nsenter --net=%s -- %s "$@"\n' % (shlex.quote(netns), shlex.quote(criu)))


def criu_log_errors(path: str, limit: int = 3) -> str:
    """The last error lines of a CRIU log (dump.log, restore.log)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    errors = [line.strip() for line in text.splitlines() if "Error (" in line]
    # "(00.123456)      1: Error (file.c:12): what" -> "Error (file.c:12): what";
    # the first errors are the cause, the later ones its consequences.
    cleaned = [re.sub(r"^\(\s*[\d.]+\)\s*(\d+:\s*)?", "", line) for line in errors[:limit]]
    return "; ".join(cleaned)
