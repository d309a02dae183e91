#!/usr/bin/env python3
"""
The floor of a checkpoint and a restore: CRIU driven directly over its RPC
(``criu swrk``), nothing else, on a container that runc started.

    python benchmarks/criu_floor.py RUNC_ROOT CONTAINER_ID [--rounds N]

The dump is given what it cannot do without for a runc container (its
root, its pid, the mounts runc bound in as external mounts, its network
namespace as external when runc joined one), the restore the same mounts
back, the root bind-mounted in advance (CRIU wants a mount point), cgroups
neither dumped nor restored (the process stays in this script's; frozen
with ptrace, not through a freezer cgroup), no network lock (the container holds no TCP connection); the restored process
is this script's child.  The same options runc would give otherwise
(log level 4, the dump's ``tcp_established`` and ``file_locks``), so that
the ratio against twistedock is the cost of twistedock, not of a thinner
dump.  ``benchmarks/checkpoint.py`` imports `Floor` and runs it beside
the daemon and bare runc.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from twistedock.backend.runtime import criuopts  # noqa: E402
from twistedock.backend.runtime.criu import find_criu  # noqa: E402
from twistedock.backend.runtime.criurpc import load_messages  # noqa: E402


class Floor:
    """A runc container taken over: dumped and restored by CRIU alone."""

    def __init__(self, criu: str, runc_root: str, container_id: str, workdir: str) -> None:
        self.criu = criu
        self.m = load_messages()
        self.state = criuopts.read_state(runc_root, container_id)
        self.pid = int(self.state["init_process_pid"])
        self.workdir = workdir
        self.images = os.path.join(workdir, "floor-images")
        self.work = os.path.join(workdir, "floor-work")
        # CRIU restores into a mount point: the rootfs bound once, ahead.
        self.root = os.path.join(workdir, "floor-root")
        os.makedirs(self.root, exist_ok=True)
        subprocess.run(["mount", "--bind", self.state["config"]["rootfs"], self.root], check=True)
        self.children: List[int] = []
        # The cgroup mounts as the live container shows them (its table is
        # gone once it is dumped).
        self.cgroup_binds = {
            m["destination"]: criuopts.cgroup_binds(self.pid, m["destination"])
            for m in self.state["config"].get("mounts") or [] if m.get("device") == "cgroup"
        }

    def _call(self, request) -> object:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        worker = subprocess.Popen([self.criu, "swrk", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        try:
            ours.send(request.SerializeToString())
            while True:
                packet = ours.recv(1 << 16)
                if not packet:
                    raise RuntimeError("criu exited before answering (see %s)" % (self.work,))
                answer = self.m.Response.FromString(packet)
                if answer.type == self.m.enum("criu_req_type", "NOTIFY") and answer.success:
                    reply = self.m.Request(type=self.m.enum("criu_req_type", "NOTIFY"), notify_success=True)
                    ours.send(reply.SerializeToString())
                    continue
                if not answer.success:
                    raise RuntimeError("criu failed: errno %d: %s" % (answer.cr_errno, self._errors()))
                return answer
        finally:
            ours.close()
            worker.wait()

    def _errors(self) -> str:
        lines = []
        for name in ("dump.log", "restore.log"):
            try:
                with open(os.path.join(self.work, name), errors="replace") as f:
                    lines += [line.strip() for line in f if "Error (" in line and "RLIMIT_NOFILE" not in line]
            except OSError:
                pass
        return "; ".join(lines[:4])

    def _fresh(self, directory: str) -> int:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY)

    def checkpoint(self) -> float:
        """Dump (the process stops); seconds."""
        images, work = self._fresh(self.images), self._fresh(self.work)
        try:
            start = time.monotonic()
            state = dict(self.state, init_process_pid=self.pid)
            options = criuopts.dump_options(state, leave_running=False, tcp_established=True, file_locks=True,
                                            images_dir_fd=images, work_dir_fd=work)
            options.pop("config_file", None)
            # Restored, the process is in this script's cgroups, not runc's:
            # frozen with ptrace every time, the same each round.
            options.pop("freeze_cgroup", None)
            options["network_lock"] = self.m.enum("criu_network_lock_method", "SKIP")
            options["manage_cgroups_mode"] = self.m.enum("criu_cg_mode", "IGNORE")
            self._call(self.m.request("DUMP", **options))
            elapsed = time.monotonic() - start
        finally:
            os.close(images)
            os.close(work)
        self._reap()
        return elapsed

    def restore(self) -> float:
        """Restore what the last checkpoint dumped; seconds."""
        images = os.open(self.images, os.O_RDONLY | os.O_DIRECTORY)
        work = os.open(self.work, os.O_RDONLY | os.O_DIRECTORY)
        try:
            start = time.monotonic()
            options = self.restore_options(images, work)
            answer = self._call(self.m.request("RESTORE", **options))
            elapsed = time.monotonic() - start
        finally:
            os.close(images)
            os.close(work)
        self.pid = answer.restore.pid
        self.children.append(self.pid)
        return elapsed

    def restore_options(self, images: int, work: int) -> dict:
        """runc's restore mounts (its addCriuRestoreMount): the key is the
        place in the container, the value the host's source."""
        config = self.state["config"]
        rootfs = config["rootfs"]
        ext_mnt = []
        for m in config.get("mounts") or []:
            if m.get("device") == "bind":
                dest = "/" + os.path.normpath(m["destination"][len(rootfs):] if m["destination"].startswith(rootfs)
                                              else m["destination"]).lstrip("/")
                ext_mnt.append({"key": dest, "val": m["source"]})
            elif m.get("device") == "cgroup":
                for bind in self.cgroup_binds.get(m["destination"], []):
                    ext_mnt.append({"key": bind, "val": os.path.join("/sys/fs/cgroup", os.path.basename(bind))})
        if config.get("mask_paths"):
            ext_mnt.append({"key": "/dev/null", "val": "/dev/null"})
        for device in config.get("devices") or []:
            ext_mnt.append({"key": device["path"], "val": device["path"]})
        return {
            "images_dir_fd": images, "work_dir_fd": work, "log_level": 4, "log_file": "restore.log",
            "root": self.root, "evasive_devices": True, "tcp_established": True,
            "file_locks": True, "orphan_pts_master": True, "ext_mnt": ext_mnt,
            "manage_cgroups_mode": self.m.enum("criu_cg_mode", "IGNORE"),
        }

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.remove(pid)

    def close(self) -> None:
        for pid in self.children:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
        subprocess.run(["umount", "-l", self.root])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runc_root")
    p.add_argument("container_id")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--criu", default="")
    args = p.parse_args()
    criu: Optional[str] = args.criu or find_criu()[0]
    workdir = tempfile.mkdtemp(prefix="criu-floor-")
    floor = Floor(criu, args.runc_root, args.container_id, workdir)
    cps, rss = [], []
    try:
        for _ in range(args.rounds):
            cps.append(floor.checkpoint())
            rss.append(floor.restore())
    finally:
        floor.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print("criu rpc floor: checkpoint %.1f ms, restore %.1f ms (medians of %d)" % (
        statistics.median(cps) * 1000, statistics.median(rss) * 1000, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
