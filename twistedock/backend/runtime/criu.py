"""
Finding CRIU and telling whether it works here, once, without blocking.

runc checkpoints and restores through CRIU (C{runc --criu PATH ...}).  The
binary used is the first of: C{--criu-path}; the wrapper that
C{scripts/install} provisions on Debian 12 (Debian 13's CRIU 4.x run through
its own loader from a private prefix, L{PROVISIONED}); C{criu} on PATH.
C{criu check} runs once, when the daemon starts; its verdict is what
C{/info} warns about and what a checkpoint or restore is refused with when
CRIU does not work.

CRIU probes the kernel's features (its "kdat", 30-40 ms) at every dump
and restore unless it finds them cached in C{/run/criu.kdat}; it saves
that cache only on a tmpfs, but loads it from anywhere (CRIU 4.1's
kerndat_try_load_cache checks its magics only).  When C{/run} is not a
tmpfs, the start-up C{criu check} therefore runs in a private mount
namespace with a fresh tmpfs on C{/run}, and the cache it saved there is
copied to C{/run/criu.kdat} (L{install_kdat_cache}).  Redone at every
daemon start: a cache on a disk outlives a reboot, and the kernel may
have changed.
"""

import os
import re
import shutil
from typing import List, Optional, Tuple

import attr
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from ...errors import InternalError
from ...logs import Logger
from .processes import Collect
from ..system import Once

log = Logger()

#: Where scripts/install puts its CRIU wrapper (Debian 12).
PROVISIONED = "/opt/twistedock/bin/criu"

#: How long C{criu check} (or C{--version}) may take.
CHECK_TIMEOUT = 60.0

INSTALL_HINT = "scripts/install provisions CRIU 4.x; --criu-path names another binary"

#: Where CRIU (run as root) caches its kernel-feature probe, and the
#: temporary file it writes first (created exclusively: one left behind
#: by a CRIU killed while writing it, or by CRIU 4.1's failed save on a
#: /run that is not a tmpfs, stops every later save).
KDAT_CACHE = "/run/criu.kdat"
KDAT_STALE_AFTER = 60.0

UNSHARE = "/usr/bin/unshare"

#: C{criu check} (C{$0}) with a fresh tmpfs on /run, its verdict on
#: stderr and the probe cache it saved on stdout.
SEED_SCRIPT = 'mount -t tmpfs -o size=1m,mode=0755 criu-kdat /run && "$0" check >&2 && exec cat /run/criu.kdat'


def _fs_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str:
    """The type of the file system mounted at C{path}, or "" when none is."""
    found = ""
    try:
        with open(mountinfo, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4 and parts[4] == path and "-" in parts:
                    found = parts[parts.index("-") + 1]
    except OSError:
        pass
    return found


def prepare_kdat_cache(cache: str = KDAT_CACHE, now: Optional[float] = None,
                       stale_after: float = KDAT_STALE_AFTER, mountinfo: str = "/proc/self/mountinfo") -> str:
    """Make CRIU's feature-probe cache possible (blocking, small): a stale
    temporary file removed.  Returns why CRIU cannot cache its probe here
    ("" when it can): CRIU keeps the cache only on a tmpfs."""
    import time

    temporary = cache + ".tmp"
    try:
        age = (time.time() if now is None else now) - os.lstat(temporary).st_mtime
        if age > stale_after:
            os.unlink(temporary)
            log.info("removed a stale {path}", path=temporary)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warn("cannot remove {path}: {e}", path=temporary, e=e)
    directory = os.path.dirname(cache)
    if _fs_type(directory, mountinfo) != "tmpfs":
        return "%s is not a tmpfs: CRIU probes the kernel at every checkpoint and restore" % (directory,)
    return ""


def install_kdat_cache(data: bytes, cache: str = KDAT_CACHE) -> None:
    """C{data} (CRIU's probe cache) written to C{cache} atomically: a
    temporary file of our own (CRIU's C{.tmp} name is its lock), synced,
    renamed over.  Blocking: call it in a thread."""
    temporary = "%s.twistedock-%d" % (cache, os.getpid())
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, cache)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def find_criu(configured: Optional[str] = None, provisioned: str = PROVISIONED) -> Tuple[Optional[str], List[str]]:
    """The CRIU binary to use, and the places looked at (for messages)."""
    looked: List[str] = []
    if configured:
        path = configured if os.path.sep in configured else (shutil.which(configured) or configured)
        return os.path.abspath(path) if os.path.sep in path else path, [configured]
    looked.append(provisioned)
    if os.access(provisioned, os.X_OK):
        return provisioned, looked
    looked.append("criu on PATH")
    found = shutil.which("criu")
    if found:
        return found, looked
    return None, looked


@attr.s(frozen=True, auto_attribs=True)
class CriuStatus:
    """What C{criu --version} and C{criu check} said."""

    path: Optional[str]
    version: str = ""
    works: bool = False
    #: Why CRIU does not work (empty when it works).
    problem: str = ""
    #: Why CRIU cannot cache its kernel-feature probe (empty when it can).
    probe_cache: str = ""

    @property
    def found(self) -> bool:
        return self.path is not None

    def describe(self) -> str:
        """One line for logs and /info."""
        if self.works:
            return "CRIU %s at %s works" % (self.version or "?", self.path)
        return self.problem


def _check_message(out: bytes, err: bytes) -> str:
    """What CRIU said went wrong: its error lines, else its last lines."""
    text = (err + b"\n" + out).decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Warn")] or lines
    errors = [line for line in lines if line.startswith("Error") or "error" in line.lower()]
    chosen = errors or lines[-3:]
    return "; ".join(re.sub(r"^Error \([^)]*\):\s*", "", line) for line in chosen)


class Criu:
    """The CRIU this daemon uses: found at once, checked once (L{status})."""

    def __init__(self, reactor, configured: Optional[str] = None, provisioned: str = PROVISIONED, timeout: float = CHECK_TIMEOUT,
                 kdat_cache: str = KDAT_CACHE) -> None:
        self.reactor = reactor
        self.kdat_cache = kdat_cache
        self.configured = configured
        self.path, self.looked = find_criu(configured, provisioned)
        self.timeout = timeout
        #: The L{CriuStatus} once checked.
        self.checked: Optional[CriuStatus] = None
        self._status = Once(self._check)

    async def _run(self, *args: str, argv: Optional[List[str]] = None) -> Tuple[bytes, bytes, int]:
        collect = Collect(None)
        argv = argv or [self.path] + list(args)
        try:
            process = self.reactor.spawnProcess(collect, argv[0], argv, env=dict(os.environ))
        except OSError as e:
            return b"", ("cannot run it: %s" % (e.strerror or e,)).encode(), 127

        def too_long() -> None:
            try:
                process.signalProcess("KILL")
            except Exception:
                pass

        timer = self.reactor.callLater(self.timeout, too_long)
        try:
            return await collect.done
        finally:
            if timer.active():
                timer.cancel()

    async def _check(self) -> CriuStatus:
        if self.path is None:
            return CriuStatus(
                None,
                problem="no criu binary found (looked at %s); %s" % (", ".join(self.looked), INSTALL_HINT),
            )
        if not os.access(self.path, os.X_OK):
            return CriuStatus(self.path, problem="%s is not an executable file; %s" % (self.path, INSTALL_HINT))
        out, err, code = await self._run("--version")
        match = re.search(r"Version: (\S+)", (out + err).decode("utf-8", "replace"))
        version = match.group(1) if match else ""
        # `criu check` leaves the probe cached for the checkpoints to come.
        cache_problem = prepare_kdat_cache(self.kdat_cache)
        code = -1
        if cache_problem:
            out, err, code = await self._seeded_check()
            if code == 0:
                cache_problem = ""
        if code != 0:
            out, err, code = await self._run("check")
        if code == 0 and b"Looks good" in out + err:
            status = CriuStatus(self.path, version, True, probe_cache=cache_problem)
        else:
            message = _check_message(out, err) or "exit status %d" % (code,)
            status = CriuStatus(
                self.path, version, False, '%s failed "criu check": %s' % (self.path, message)
            )
        self.checked = status
        if status.works:
            log.info("{status}", status=status.describe())
            if status.probe_cache:
                log.warn("CRIU's feature probe is not cached: {why}", why=status.probe_cache)
        else:
            log.warn("CRIU does not work, checkpoints are unavailable: {problem}", problem=status.problem)
        return status

    async def _seeded_check(self) -> Tuple[bytes, bytes, int]:
        """C{criu check} on a private tmpfs /run, its cache installed at
        C{self.kdat_cache}: what the check said, as L{_run} gives it
        (status not 0: the plain check is run for the verdict)."""
        out, err, code = await self._run(argv=[UNSHARE, "--mount", "--propagation", "private", "--",
                                               "/bin/sh", "-c", SEED_SCRIPT, self.path])
        if code != 0 or b"Looks good" not in err or not out:
            log.info("CRIU's probe not seeded ({why})", why=_check_message(b"", err) or "exit status %d" % code)
            return b"", err, code or 1
        try:
            await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), install_kdat_cache, out,
                                    self.kdat_cache)
        except OSError as e:
            log.warn("cannot cache CRIU's probe in {path}: {e}", path=self.kdat_cache, e=e)
            return b"", err, 1
        log.info("CRIU's probe cached in {path} (from a check on a private tmpfs /run)", path=self.kdat_cache)
        return b"", err, 0

    def status(self) -> Deferred:
        """A Deferred firing with the L{CriuStatus} (checked once)."""
        from twisted.internet.defer import ensureDeferred

        return ensureDeferred(self._status.get())

    async def require(self, what: str) -> str:
        """The path of a CRIU that works, else L{InternalError} naming what
        is missing (C{what} needs it: "checkpoint", "restore")."""
        status = await self.status()
        if not status.works:
            raise InternalError("%s needs CRIU: %s" % (what, status.problem))
        return status.path
