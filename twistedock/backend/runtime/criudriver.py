"""
Checkpoints taken by the daemon itself over CRIU's RPC (L{criurpc}),
instead of through C{runc checkpoint}.

A dump: runc's state read and the network lock chosen (which say
whether the C{criu swrk} worker starts in the container's network
namespace, L{criuopts.NET_LEFT_OUT}), then the worker spawned while the
options are made in a thread, so that its exec and loading overlap
them; then one C{DUMP} request with the options runc would give
(L{criuopts}), the notifications answered.  The images are what runc's
would be, with runc's C{descriptors.json} beside them, so C{runc
restore} (conmon's restore mode) restores them.

When the RPC is unavailable (no protobuf, no rpc descriptor installed,
or turned off with C{--criu-rpc=false}), L{CriuDriver.available} says
why and the checkpoint backend falls back to C{runc checkpoint}.
"""

import json
import os
import shutil
import time
from typing import Optional

from twisted.internet.defer import Deferred, ensureDeferred

from ...logs import Logger
from . import criuopts, rootfs, tmpfsmounts
from .driver import process_dead
from .criurpc import CriuError, CriuWorker, Messages, NotifyHandler, RpcUnavailable, finished, load_messages

log = Logger()

class CriuDriver:
    """CRIU over its RPC for the containers of one runc state root.

    C{criu} is the daemon's L{Criu} (which binary, whether it works);
    C{run_in_thread(f, *args)} runs blocking work; C{enabled} false is
    C{--criu-rpc=false}.
    """

    def __init__(self, reactor, criu, state_root: str, run_in_thread, *, enabled: bool = True,
                 messages: Optional[Messages] = None, shim_dir: Optional[str] = None) -> None:
        self.reactor = reactor
        self.criu = criu
        self.state_root = state_root
        #: Where the restore's conmon runtime (L{SHIM}) is written.
        self.shim_dir = shim_dir or os.path.join(os.path.dirname(os.path.abspath(state_root)), "criu")
        self.criu_binary = ""
        #: util-linux's nsenter, which starts a dump's CRIU in the
        #: container's network namespace (see L{_dump_plan}), or "".
        self.nsenter = shutil.which("nsenter") or ""
        #: Whether the host's cgroups are v2's unified hierarchy (read at the
        #: first dump: the daemon's mount table, which grows with its
        #: containers, read once).
        self._unified: Optional[bool] = None
        self.run_in_thread = run_in_thread
        self.enabled = enabled
        self._messages = messages
        self.problem = "" if enabled else "turned off (--criu-rpc=false)"
        if enabled and messages is None:
            try:
                self._messages = load_messages()
            except RpcUnavailable as e:
                self.problem = str(e)
                log.warn("CRIU's RPC is unavailable, checkpoints go through runc: {e}", e=e)

    @property
    def messages(self) -> Optional[Messages]:
        return self._messages

    def available(self) -> bool:
        """Whether dumps go over the RPC (else through runc)."""
        return self.enabled and self._messages is not None

    def describe(self) -> str:
        if self.available():
            return "CRIU RPC (criu swrk, %s)" % (self._messages.origin,)
        return "runc checkpoint (CRIU RPC %s)" % (self.problem,)

    def shim(self, criu: str) -> str:
        """The path of L{SHIM}, written once (blocking, small)."""
        self.criu_binary = criu
        return self._write_shim()

    def ready(self) -> None:
        """(Blocking, as the daemon starts.)  The tmpfs sources of restores a
        crash interrupted unmounted (L{sweep_tmpfs}); L{SHIM} written, so
        that the first restore's downtime does not count its synced write."""
        self.sweep_tmpfs()
        if self.available():
            self._write_shim()

    def _write_shim(self) -> str:
        path = os.path.join(self.shim_dir, "criu-swrk")
        try:
            with open(path) as f:
                if f.read() == SHIM:
                    return path
        except OSError:
            pass
        from ...atomic import write_atomic

        os.makedirs(self.shim_dir, mode=0o711, exist_ok=True)
        write_atomic(path, SHIM.encode(), mode=0o755)
        return path

    def prime_cgroups(self) -> None:
        """L{prime_cgroup_migration} started in a thread (not awaited)."""
        self.run_in_thread(prime_cgroup_migration).addErrback(lambda f: None)

    @property
    def masked_path(self) -> str:
        return os.path.join(self.shim_dir, "masked")

    def masked_source(self) -> Optional[str]:
        """The daemon's empty read-only tmpfs a restore binds on the masked
        directories a dump named external (mounted at the first need;
        blocking), or None when it cannot be (the dumps then tar runc's)."""
        try:
            os.makedirs(self.shim_dir, mode=0o711, exist_ok=True)
            rootfs.mount_empty_readonly(self.masked_path)
        except OSError as e:
            log.warn("no empty tmpfs for masked directories: {e}", e=e)
            return None
        return self.masked_path

    def release(self) -> None:
        """L{masked_source} unmounted, and the tmpfs sources of restores
        (the daemon stops; blocking)."""
        try:
            rootfs.unmount(self.masked_path)
            os.rmdir(self.masked_path)
        except OSError:
            pass
        self.sweep_tmpfs()

    @property
    def tmpfs_base(self) -> str:
        return os.path.join(self.shim_dir, "tmpfs")

    def tmpfs_sources(self, images_dir: str) -> dict:
        """A new tmpfs of the daemon's for each tmpfs mount the dump in
        C{images_dir} named external, its content made again: {key: path}
        (L{tmpfsmounts.make_sources}; blocking)."""
        return tmpfsmounts.make_sources(images_dir, self.tmpfs_base)

    def release_tmpfs(self, sources: dict) -> None:
        """L{tmpfs_sources}'s mounts detached once CRIU bound them (blocking)."""
        tmpfsmounts.release(sources.values())

    def sweep_tmpfs(self) -> None:
        """The tmpfs sources a crash left, unmounted (blocking)."""
        tmpfsmounts.sweep(self.tmpfs_base)

    def restore_session(self, criu: str, container_id: str, images_dir: str, bundle: str, root: str,
                        terminal: bool, now: str, lazy_pages: bool = False,
                        tmpfs_sources: Optional[dict] = None) -> Optional["RestoreSession"]:
        """A restore over the RPC of the container's last dump, prepared
        (blocking: call it in a thread), or None when runc must restore it:
        the RPC unavailable, a terminal (CRIU hands its pty master to
        runc's console socket), runc's state of the dumped run not kept, no
        runc descriptors file.  C{lazy_pages}: the dump left its pages
        behind, CRIU hands each restored task's userfaultfd to the
        C{criu lazy-pages} listening in C{bundle} (the work directory).
        C{tmpfs_sources}: L{tmpfs_sources} of the images (the caller's to
        release)."""
        if not self.available() or terminal:
            return None
        if not os.path.exists(os.path.join(images_dir, criuopts.DESCRIPTORS)):
            return None
        state = restorable_state(self.state_root, container_id)
        if state is None or state["config"].get("rootfs") != root:
            return None
        if not os.path.exists(os.path.join(images_dir, CGROUP_MOUNTS)) and any(
            m.get("device") == "cgroup" for m in state["config"].get("mounts") or []
        ):
            return None  # (a dump by runc: where its cgroup mounts were is not known)
        try:
            with open(os.path.join(images_dir, criuopts.DESCRIPTORS)) as f:
                descriptors = json.load(f)
        except (OSError, ValueError):
            return None
        # The dumped process's pipes, as runc restore maps them: the kept
        # state's are the same, a prepared state's are runc create's.
        state["external_descriptors"] = [str(d) for d in descriptors] if isinstance(descriptors, list) else []
        cgroup_mounts = [m["key"] for m in _dumped_cgroup_mounts(images_dir, state)]
        return RestoreSession(self, criu, container_id, state, images_dir, bundle, root, cgroup_mounts, now,
                              lazy_pages=lazy_pages, tmpfs_sources=tmpfs_sources)

    def worker(self, criu: str, files=None, path: Optional[str] = None, prefix=()) -> CriuWorker:
        """A new C{criu swrk} worker (spawned now)."""
        return CriuWorker(self.reactor, criu, self._messages, files=files, path=path, prefix=prefix)

    async def dump(self, criu: str, container_id: str, images_dir: str, work_dir: str, *,
                   leave_running: bool, tcp_established: bool = True, file_locks: bool = True,
                   extra_options: Optional[dict] = None, notify: Optional[NotifyHandler] = None,
                   on_worker=None, tmpfs_external: bool = False, timing: Optional[dict] = None) -> None:
        """Dump the container into C{images_dir} (CRIU's log in
        C{work_dir/dump.log}); raises L{CriuError} with CRIU's answer.
        C{timing}, when given, gets C{"Frozen"}: when (C{time.monotonic})
        the tasks were frozen (CRIU's C{pre-dump}).

        C{extra_options} are more C{criu_opts} fields (e.g. C{lazy_pages},
        C{ps}: a page server), set over runc's; C{notify(script, pid)} hears
        CRIU's notifications ("network-lock", "post-dump", "status-ready"...)
        before they are answered; C{on_worker(worker, netns)} is told of the
        C{criu swrk} process once it is spawned, and of the network
        namespace it runs in or None (a lazy dump's guard, which reaches
        the page server there); the request waits for the Deferred it may
        return (its failure fails the dump).
        C{tmpfs_external}: the tmpfs mounts a listing makes again named
        external (L{tmpfsmounts}: for images the daemon restores); if one
        of them changed before the freeze (seen with the tasks frozen, at
        C{post-dump}), CRIU gives the dump up and resumes them, and it is
        taken again with CRIU's tar.  A lazy dump's CRIU would serve its
        pages all the same after a failed C{post-dump}: it is killed there
        instead (the tasks, frozen and dumped, are thawed and run on) and
        the dump fails, to be asked again (its page server and guard are
        the caller's, made once)."""
        lazy = bool(extra_options and extra_options.get("lazy_pages"))
        tmpfs = tmpfs_external and (lazy or not extra_options)
        changed = []
        try:
            await self._dump(criu, container_id, images_dir, work_dir, leave_running, tcp_established,
                             file_locks, extra_options, notify, on_worker, tmpfs, changed, timing)
        except Exception:
            if not changed:
                raise
            if lazy:
                raise CriuError("tmpfs %s changed while the checkpoint began: it was given up and the "
                                "container runs on; ask again" % (", ".join(changed),))
            log.info("tmpfs {places} of {id} changed before the freeze: dumped again with CRIU's tar",
                     places=", ".join(changed), id=container_id[:12])
            await self.run_in_thread(_forget_images, images_dir)
            await self._dump(criu, container_id, images_dir, work_dir, leave_running, tcp_established,
                             file_locks, extra_options, notify, on_worker, False, [], timing)

    async def _dump(self, criu: str, container_id: str, images_dir: str, work_dir: str, leave_running: bool,
                    tcp_established: bool, file_locks: bool, extra_options: Optional[dict],
                    notify: Optional[NotifyHandler], on_worker, tmpfs: bool, changed: list,
                    timing: Optional[dict] = None) -> None:
        """One dump (see L{dump}); C{changed} told the places of the
        external tmpfs mounts found changed at C{post-dump}."""
        # CRIU opens the directories through /proc/<our pid>/fd/<fd> (the
        # socket's peer): they stay open here until it answered.  No working
        # directory: the worker is spawned (posix_spawn), not forked.
        worker = None
        images = work = -1
        freezer = None
        froze = []
        try:
            state, lock, netns = await self.run_in_thread(self._dump_plan, container_id, extra_options)
            images = os.open(images_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            work = os.open(work_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            # The options made in a thread while the worker is spawned here,
            # its exec and loading overlapping them.
            making = self.run_in_thread(
                self._dump_options, state, lock, netns is not None, images_dir, images, work, leave_running,
                tcp_established, file_locks, tmpfs,
            )
            helper = None
            try:
                worker = self.worker(criu, prefix=[self.nsenter, "--net=" + netns, "--"] if netns else ())
                if on_worker is not None:
                    helper = on_worker(worker, netns)
            except BaseException:
                # (The thread's files written before the directory may go.)
                await making.addErrback(lambda f: None)
                raise
            try:
                options, records = await making
            except BaseException:
                if helper is not None:
                    helper.addErrback(lambda f: None)
                raise
            if helper is not None:
                await helper
            options.update(extra_options or {})
            request = self._messages.request("DUMP", **options)
            freezer = options.get("freeze_cgroup")

            def notified(script: str, pid: int):
                if script == "pre-dump" and timing is not None:
                    timing["Frozen"] = time.monotonic()
                if script == "pre-dump" and freezer:
                    # CRIU freezes a thawed cgroup itself, then sleeps 100 ms
                    # before looking again; frozen here (looked at every
                    # millisecond) it goes straight on.  Right before
                    # CRIU's own freeze: the downtime starts no earlier.
                    return self.run_in_thread(freeze, freezer).addCallback(froze.append)
                if script == "post-dump" and records:
                    # (The tasks frozen still.)
                    return self.run_in_thread(tmpfsmounts.changed, options["pid"], records).addCallback(
                        unchanged, script, pid)
                return notify(script, pid) if notify is not None else None

            def unchanged(places, script: str, pid: int):
                if places:
                    changed.extend(places)
                    if extra_options and extra_options.get("lazy_pages"):
                        # (Before it hears the answer: see L{dump}.)
                        worker.kill()
                    raise CriuError("changed before the freeze: " + ", ".join(places))
                return notify(script, pid) if notify is not None else None

            await worker.call(request, notified)
        except BaseException:
            if worker is not None:
                worker.kill()
            if any(froze):
                await self.run_in_thread(thaw, freezer)
            raise
        else:
            if leave_running and any(froze):
                # CRIU puts the cgroup back as it found it: frozen by us.
                await self.run_in_thread(thaw, freezer)
        finally:
            for fd in (images, work):
                if fd >= 0:
                    os.close(fd)
            if worker is not None:
                ensureDeferred(finished(worker)).addErrback(lambda f: None)

    def _dump_plan(self, container_id: str, extra_options: Optional[dict]):
        """(In a thread.)  runc's state of the container, the network lock
        its dump needs (none without a TCP connection to preserve), and the
        network namespace CRIU runs in, or None (see L{criuopts.NET_LEFT_OUT}):
        the container's joined one, when nothing needs CRIU outside it (no
        connection to lock, no option but a lazy dump's page server that
        can listen there: L{_page_server_fits}) and C{nsenter} is
        there."""
        try:
            state = criuopts.read_state(self.state_root, container_id)
        except (OSError, ValueError) as e:
            raise CriuError("cannot read runc's state of %s: %s" % (container_id, e))
        lock = "NFTABLES" if criuopts.has_tcp_connections(int(state["init_process_pid"])) else "SKIP"
        netns = criuopts.joined_netns(state)
        if lock != "SKIP" or not self.nsenter or not netns or not _page_server_fits(netns, extra_options):
            netns = None
        return state, lock, netns

    def _dump_options(self, state: dict, lock: str, net_left_out: bool, images_dir: str, images_fd: int,
                      work_fd: int, leave_running: bool, tcp_established: bool, file_locks: bool, tmpfs: bool):
        """(In a thread.)  The options, and the records of the tmpfs mounts
        named external (L{tmpfsmounts.plan}; C{tmpfs} false: none)."""
        if self._unified is None:
            self._unified = criuopts.unified_cgroups()
        options = criuopts.dump_options(
            state, leave_running=leave_running, tcp_established=tcp_established, file_locks=file_locks,
            images_dir_fd=images_fd, work_dir_fd=work_fd, unified=self._unified,
            masked_dirs=self.masked_source() is not None, net_left_out=net_left_out,
        )
        options["network_lock"] = self._messages.enum("criu_network_lock_method", lock)
        options["manage_cgroups_mode"] = self._messages.enum("criu_cg_mode", "IGNORE")
        criuopts.write_descriptors(state, images_dir)
        places = [m["key"] for m in options["ext_mnt"] if m["key"].startswith("/sys/fs/cgroup/")]
        with open(os.path.join(images_dir, CGROUP_MOUNTS), "w") as f:
            json.dump(places, f)
        if net_left_out:
            with open(os.path.join(images_dir, criuopts.NET_LEFT_OUT), "w"):
                pass
        records = []
        if tmpfs and criuopts.masks_externally(state["config"]):
            records = tmpfsmounts.plan(options["pid"], [m["key"] for m in options["ext_mnt"]])
        if records:
            tmpfsmounts.write_record(images_dir, records)
            options["ext_mnt"] += tmpfsmounts.names_external(records)
        return options, records


#: The C{criu_opts} of a lazy dump (L{lazypages.dump.LazyRpcDump}): the
#: page server's port, and the configuration file that binds it to
#: loopback (in lazy mode CRIU 4.1 takes no address over the RPC).
LAZY_DUMP_OPTIONS = frozenset(("lazy_pages", "ps", "config_file"))


def _page_server_fits(netns: str, extra_options: Optional[dict]) -> bool:
    """(Blocking.)  Whether a dump with C{extra_options} may run in the
    network namespace at C{netns}: with none, or with only a lazy dump's
    (L{LAZY_DUMP_OPTIONS}) whose page server can listen on that
    namespace's loopback: up, its port free (L{loopback_port_free});
    else it stays in the daemon's, where the port was chosen free."""
    if not extra_options:
        return True
    if set(extra_options) - LAZY_DUMP_OPTIONS:
        return False
    port = (extra_options.get("ps") or {}).get("port")
    return bool(port) and loopback_port_free(netns, port)


# -- restores ----------------------------------------------------------------------

#: conmon's runtime for a restore over the RPC: CRIU itself, serving the
#: socket the daemon passed down through conmon (its environment names
#: both; the arguments conmon gives a runtime are not CRIU's business).
SHIM = """#!/bin/sh
# conmon's runtime for a restore over CRIU's RPC (twistedock): CRIU itself,
# serving the RPC socket the daemon handed down through conmon.
exec "$TWISTEDOCK_CRIU" swrk "$TWISTEDOCK_CRIU_FD"
"""

#: The descriptors conmon (and so CRIU) gets: the RPC socket, the
#: container's network namespace.
SWRK_FD, NETNS_FD = 6, 7


def restorable_state(state_root: str, container_id: str) -> Optional[dict]:
    """runc's state of a stopped container whose cgroups (their limits and
    device rules) are still there, or None (then runc restores): a run that
    ended in a dump over the RPC and was kept, or a container prepared for
    a restore (L{Runtime.create_stopped}: created, its init killed)."""
    try:
        state = criuopts.read_state(state_root, container_id)
    except (OSError, ValueError):
        return None
    config = state.get("config") or {}
    for ns in config.get("namespaces") or []:
        if ns.get("type") in ("NEWPID", "NEWCGROUP") and ns.get("path"):
            return None
    pid = int(state.get("init_process_pid") or 0)
    if pid and os.path.exists("/proc/%d" % (pid,)):
        try:
            if criuopts.start_time(pid) == int(state.get("init_process_start") or 0) and not process_dead(pid):
                return None  # still running
        except (OSError, ValueError):
            pass
    if os.path.exists(os.path.join(state_root, container_id, "exec.fifo")):
        return None  # runc would call the restored container created
    for path in (state.get("cgroup_paths") or {}).values():
        if path and not os.path.isdir(path):
            return None
    return state


class RestoreSession:
    """One restore over CRIU's RPC, CRIU run by conmon (see L{CriuDriver.restore_session}).

    L{conmon_options} are what L{Runtime.create} gives conmon (its runtime
    the L{SHIM}, the socket and namespace descriptors, the environment);
    L{start} sends the request at once (it waits in the socket for CRIU)
    and fires once CRIU answered, with the restored pid, after it wrote
    the pid file conmon reads and runc's state (runc knows the container).
    """

    def __init__(self, driver: "CriuDriver", criu: str, container_id: str, state: dict, images_dir: str,
                 bundle: str, root: str, cgroup_mounts, now: str, lazy_pages: bool = False,
                 tmpfs_sources: Optional[dict] = None) -> None:
        self.driver = driver
        self.container_id = container_id
        self.state = state
        self.bundle = bundle
        self.now = now
        self.pid: Optional[int] = None
        self._fds = []
        self.worker = CriuWorker(driver.reactor, criu, driver.messages, spawn=False)
        try:
            images = self._open(images_dir, os.O_RDONLY | os.O_DIRECTORY)
            work = self._open(bundle, os.O_RDONLY | os.O_DIRECTORY)
            netns = None
            net_left_out = os.path.exists(os.path.join(images_dir, criuopts.NET_LEFT_OUT))
            for ns in state["config"].get("namespaces") or []:
                if ns.get("type") == "NEWNET" and ns.get("path") and not net_left_out:
                    netns = self._open(ns["path"], os.O_RDONLY)
            self.netns = netns
            self.options = criuopts.restore_options(
                state, cgroup_mounts, images_dir_fd=images, work_dir_fd=work, root=root,
                netns_fd=NETNS_FD if netns is not None else None, tcp_established=True, file_locks=True,
                masked_source=driver.masked_source(), lazy_pages=lazy_pages, net_left_out=net_left_out,
                tmpfs_sources=tmpfs_sources,
            )
        except BaseException:
            self.close()
            raise
        m = driver.messages
        self.options["manage_cgroups_mode"] = m.enum("criu_cg_mode", "IGNORE")
        #: A network namespace of its own (network "none"): made empty, as
        #: runc restore makes it (its empty_ns), not restored (links,
        #: addresses, routes, rules, four iptables-restore: some 30 ms),
        #: its loopback brought up here (L{loopback_up}).
        self.own_netns = any(ns.get("type") == "NEWNET" and not ns.get("path")
                             for ns in state["config"].get("namespaces") or [])
        if self.own_netns:
            self.options["empty_ns"] = CLONE_NEWNET
        self.shim = driver.shim(criu)
        self._written = None
        #: When (C{time.monotonic}) the restored tasks ran again (CRIU's
        #: C{post-resume}), once they did.
        self.resumed: Optional[float] = None

    def _open(self, path: str, flags: int) -> int:
        fd = os.open(path, flags | os.O_CLOEXEC)
        self._fds.append(fd)
        return fd

    def conmon_options(self) -> dict:
        fds = {SWRK_FD: self.worker.peer.fileno()}
        if self.netns is not None:
            fds[NETNS_FD] = self.netns
        return {
            "runtime_path": self.shim,
            "on_spawned": self.release_peer,
            "extra_fds": fds,
            "extra_env": {"TWISTEDOCK_CRIU": self.driver.criu_binary, "TWISTEDOCK_CRIU_FD": str(SWRK_FD)},
        }

    async def start(self, ready: Optional[Deferred] = None) -> int:
        """C{ready}, when given, fires once CRIU may be asked (a lazy
        restore's C{criu lazy-pages} listening: CRIU connects to it as the
        restore begins); until then CRIU, started by conmon meanwhile,
        waits for the request (its failure ends CRIU: no request, the
        socket closed)."""
        request = self.driver.messages.request("RESTORE", **self.options)
        # (It waits in the socket until conmon has started CRIU; our copy of
        # CRIU's end goes once conmon holds it: L{release_peer}.)
        try:
            if ready is not None:
                await ready
            answer = await self.worker.call(request, self._notified)
            if self._written is not None:
                await self._written
        finally:
            ensureDeferred(finished(self.worker)).addErrback(lambda f: None)
            self.close()
        return self.pid or answer.restore.pid

    def _notified(self, script: str, pid: int):
        if script == "pre-restore":
            # (Again: the grace period started when the restore began may
            # be over by the time the process is placed.)
            self.driver.prime_cgroups()
            return None
        if script == "setup-namespaces":
            # The restored root task exists, its children not yet: in the
            # container's cgroups, they are born there.
            return self.driver.run_in_thread(self._namespaces_made, pid)
        if script == "post-restore":
            # Written while CRIU goes on (its tasks resume meanwhile);
            # done before it exits (post-resume, its last question): conmon
            # reads the pid file then.
            self.pid = pid
            self._written = self.driver.run_in_thread(self._restored, pid)
            return None
        if script == "post-resume":
            self.resumed = time.monotonic()
        if script == "post-resume" and self._written is not None:
            written, self._written = self._written, None
            return written
        return None

    def _namespaces_made(self, pid: int) -> None:
        """(In a thread.)"""
        place_in_cgroups(self.state, pid)
        if self.own_netns:
            loopback_up(pid)

    def _restored(self, pid: int) -> None:
        """(In a thread.)  The pid file conmon reads once CRIU exits, and
        runc's state of the restored container."""
        from ...atomic import write_atomic

        # (Not synced: CRIU waits for this answer before the process runs
        # again, and a power loss ends the process these files describe.)
        write_atomic(os.path.join(self.bundle, "pidfile"), b"%d" % (pid,), mode=0o600, durable=False)
        fresh = criuopts.restored_state(self.state, pid, self.now)
        write_atomic(os.path.join(self.driver.state_root, self.container_id, "state.json"),
                     json.dumps(fresh).encode(), mode=0o600, durable=False)

    def release_peer(self) -> None:
        """Our copy of CRIU's end of the socket closed: once conmon was
        spawned with it (its runtime, CRIU, holds it then), or once conmon
        could not be (CRIU's silence is then an end, not a wait)."""
        try:
            self.worker.peer.close()
        except OSError:
            pass

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        try:
            self.worker.peer.close()
        except OSError:
            pass


#: Where L{prime_cgroup_migration} last succeeded.
_primed = []


def prime_cgroup_migration(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> bool:
    """(Blocking.)  This process moved into the cgroup it is in (nothing
    changes), to start the RCU grace period the kernel waits for before
    the first cgroup migration after a quiet while (its global
    cgroup_threadgroup_rwsem taken for writing: 7-15 ms measured here,
    0.05 ms for the migrations that follow within about one grace
    period).  Done as a restore begins, that wait overlaps conmon's and
    CRIU's start instead of delaying the restored process's move into
    its cgroups (L{place_in_cgroups}, or runc's move of CRIU).  Whether a
    write was made."""
    candidates = list(_primed)
    try:
        with open(proc_cgroup) as f:
            for line in f:
                _, names, path = line.rstrip("\n").split(":", 2)
                names = names[len("name="):] if names.startswith("name=") else names
                for mount in ((names,) if names else ("unified", "")):
                    candidates.append(os.path.join(root, mount, path.lstrip("/"), "cgroup.procs"))
    except (OSError, ValueError):
        pass
    for procs in candidates:
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            continue
        _primed[:] = [procs]
        return True
    return False


#: The network namespace flag (C{empty_ns}: made, not restored).
CLONE_NEWNET = 0x40000000


def in_netns(path: str, work):
    """(Blocking.)  C{work()} run in a thread of its own that enters the
    network namespace at C{path} first (and ends there: no pool thread is
    ever left in a container's namespace); its result, or its error."""
    import threading

    outcome = []

    def run() -> None:
        try:
            _enter_netns(path)
            outcome.append((True, work()))
        except BaseException as e:
            outcome.append((False, e))

    thread = threading.Thread(target=run, name="in-netns")
    thread.start()
    thread.join()
    done, value = outcome[0]
    if not done:
        raise value
    return value


def _enter_netns(path: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the network namespace %s" % (path,))
    finally:
        os.close(target)


def loopback_up(pid: int) -> None:
    """(Blocking.)  The loopback of C{pid}'s network namespace up, as it was
    dumped (a namespace made empty has it down), set from inside it
    (L{in_netns})."""
    in_netns("/proc/%d/ns/net" % (pid,), _loopback_up)


def loopback_port_free(path: str, port: int) -> bool:
    """(Blocking.)  Whether a server can listen on 127.0.0.1:C{port} in the
    network namespace at C{path} and be reached there: its loopback up and
    the port bindable as CRIU's page server binds it (C{SO_REUSEADDR}),
    tried from inside it (L{in_netns}); False when the namespace cannot be
    entered.  (A bind, not a read of the namespace's socket tables, which
    the kernel prints by walking the host-wide hash: milliseconds.)"""
    import socket

    def try_bind() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if not _loopback_flags(s) & IFF_UP:
                return False
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    try:
        return in_netns(path, try_bind)
    except OSError:
        return False


def _loopback_flags(s) -> int:
    """The interface flags of this namespace's C{lo}, asked through the
    socket C{s}."""
    import fcntl
    import struct

    request = struct.pack("16sH14x", b"lo", 0)
    return struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, request))[1]


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = _loopback_flags(s)
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def place_in_cgroups(state: dict, pid: int) -> None:
    """Move C{pid} into the container's cgroups (runc kept them, limits and
    device rules set), thawed (CRIU froze the freezer cgroup to dump)."""
    for controller, path in (state.get("cgroup_paths") or {}).items():
        if not path:
            continue
        if controller == "freezer":
            try:
                with open(os.path.join(path, "freezer.state"), "w") as f:
                    f.write("THAWED")
            except OSError:
                pass
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(pid))


def _dumped_cgroup_mounts(images_dir: str, state: dict):
    """The cgroup v1 mounts the dump named external (saved beside the
    images at dump time: the container's mount table is gone)."""
    try:
        with open(os.path.join(images_dir, CGROUP_MOUNTS)) as f:
            return [{"key": place} for place in json.load(f)]
    except (OSError, ValueError):
        return []


#: The cgroup v1 mounts of a dump, beside its images (for the restore).
CGROUP_MOUNTS = "cgroup-mounts.json"


def _forget_images(images_dir: str) -> None:
    """(Blocking.)  What a dump given up wrote that the next would not
    overwrite: CRIU's images and the tmpfs record."""
    for name in os.listdir(images_dir):
        if name.endswith(".img") or name == tmpfsmounts.RECORD:
            os.unlink(os.path.join(images_dir, name))


#: How long a freezer cgroup may take to freeze.
FREEZE_TIMEOUT = 10.0


def _freezer_files(path: str):
    """(the file to write, what to write to freeze, to thaw, how to tell
    frozen) of a v1 freezer cgroup or a v2 cgroup."""
    if os.path.exists(os.path.join(path, "freezer.state")):
        state = os.path.join(path, "freezer.state")
        return state, "FROZEN", "THAWED", lambda: _read(state).strip() == "FROZEN"
    events = os.path.join(path, "cgroup.events")
    return os.path.join(path, "cgroup.freeze"), "1", "0", lambda: "frozen 1" in _read(events)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def freeze(path: str, timeout: float = FREEZE_TIMEOUT) -> bool:
    """Freeze the cgroup at C{path} and wait until it is (blocking: in a
    thread), looking after 0.1 ms, then less and less often, up to every
    millisecond (a small process is frozen within a fraction of a
    millisecond, and every moment waited here is a moment it is frozen
    for nothing); False when it already was (a paused container: it is
    left as it is)."""

    control, frozen, thawed, is_frozen = _freezer_files(path)
    if is_frozen():
        return False
    with open(control, "w") as f:
        f.write(frozen)
    deadline = time.monotonic() + timeout
    pause = 0.0001
    while not is_frozen():
        if time.monotonic() > deadline:
            thaw(path)
            raise CriuError("cannot freeze %s in %.0f s" % (path, timeout))
        time.sleep(pause)
        pause = min(pause * 2, 0.001)
    return True


def thaw(path: str) -> None:
    """Thaw the cgroup at C{path} (blocking, small); quietly when it is gone."""
    try:
        control, _, thawed, _ = _freezer_files(path)
        with open(control, "w") as f:
            f.write(thawed)
    except OSError:
        pass
