"""
Checkpoints taken by the daemon itself over CRIU's RPC (L{criurpc}),
instead of through C{runc checkpoint}.

A dump: the C{criu swrk} worker is spawned first, so that its exec and
loading overlap the rest of the preparation (runc's state read, the
options made, the images and work directories opened); then one
C{DUMP} request with the options runc would give (L{criuopts}), the
notifications answered.  The images are what runc's would be, with
runc's C{descriptors.json} beside them, so C{runc restore} (conmon's
restore mode) restores them.

When the RPC is unavailable (no protobuf, no rpc descriptor installed,
or turned off with C{--criu-rpc=false}), L{CriuDriver.available} says
why and the checkpoint backend falls back to C{runc checkpoint}.
"""

import os
from typing import Optional

from twisted.internet.defer import ensureDeferred

from ...logs import Logger
from . import criuopts
from .criurpc import CriuError, CriuWorker, Messages, NotifyHandler, RpcUnavailable, finished, load_messages

log = Logger()

class CriuDriver:
    """CRIU over its RPC for the containers of one runc state root.

    C{criu} is the daemon's L{Criu} (which binary, whether it works);
    C{run_in_thread(f, *args)} runs blocking work; C{enabled} false is
    C{--criu-rpc=false}.
    """

    def __init__(self, reactor, criu, state_root: str, run_in_thread, *, enabled: bool = True,
                 messages: Optional[Messages] = None) -> None:
        self.reactor = reactor
        self.criu = criu
        self.state_root = state_root
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

    def worker(self, criu: str, files=None, path: Optional[str] = None) -> CriuWorker:
        """A new C{criu swrk} worker (spawned now)."""
        return CriuWorker(self.reactor, criu, self._messages, files=files, path=path)

    async def dump(self, criu: str, container_id: str, images_dir: str, work_dir: str, *,
                   leave_running: bool, tcp_established: bool = True, file_locks: bool = True,
                   extra_options: Optional[dict] = None, notify: Optional[NotifyHandler] = None) -> None:
        """Dump the container into C{images_dir} (CRIU's log in
        C{work_dir/dump.log}); raises L{CriuError} with CRIU's answer.

        C{extra_options} are more C{criu_opts} fields (e.g. C{lazy_pages},
        C{ps}: a page server), set over runc's; C{notify(script, pid)} hears
        CRIU's notifications ("network-lock", "post-dump", "status-ready"...)
        before they are answered."""
        # CRIU opens the directories through /proc/<our pid>/fd/<fd> (the
        # socket's peer): they stay open here until it answered.  No working
        # directory: the worker is spawned (posix_spawn), not forked.
        worker = self.worker(criu)
        images = work = -1
        try:
            images = os.open(images_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            work = os.open(work_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            options = await self.run_in_thread(
                self._dump_options, container_id, images_dir, images, work, leave_running, tcp_established,
                file_locks,
            )
            options.update(extra_options or {})
            request = self._messages.request("DUMP", **options)
            await worker.call(request, notify)
        except BaseException:
            worker.kill()
            raise
        finally:
            for fd in (images, work):
                if fd >= 0:
                    os.close(fd)
            ensureDeferred(finished(worker)).addErrback(lambda f: None)

    def _dump_options(self, container_id: str, images_dir: str, images_fd: int, work_fd: int,
                      leave_running: bool, tcp_established: bool, file_locks: bool) -> dict:
        """(In a thread.)"""
        try:
            state = criuopts.read_state(self.state_root, container_id)
        except (OSError, ValueError) as e:
            raise CriuError("cannot read runc's state of %s: %s" % (container_id, e))
        pid = int(state["init_process_pid"])
        lock = "NFTABLES" if criuopts.has_tcp_connections(pid) else "SKIP"
        options = criuopts.dump_options(
            state, leave_running=leave_running, tcp_established=tcp_established, file_locks=file_locks,
            images_dir_fd=images_fd, work_dir_fd=work_fd,
        )
        options["network_lock"] = self._messages.enum("criu_network_lock_method", lock)
        options["manage_cgroups_mode"] = self._messages.enum("criu_cg_mode", "IGNORE")
        criuopts.write_descriptors(state, images_dir)
        return options
