#!/usr/bin/env python3
"""
``docker start --checkpoint`` of an imported checkpoint (a container that
never ran on the daemon restoring it: a migration's target), through
``runc restore`` against over CRIU's RPC, in the same run.

    python benchmarks/restore_import.py --rounds 9

Three daemons of this checkout: A runs a busybox counter, checkpoints it
(over CRIU's RPC) and exports the checkpoint once; B (CRIU's RPC) and C
(``--criu-rpc=false``: runc restore under conmon) import it under a new
name and start it from the checkpoint, round after round, in alternating
order, the restored copies removed after each round.  Printed, medians:
the start request (client side); on B the time spent preparing runc's
state (``runc create`` and its init killed, from B's log; it overlaps the
network's set-up, so the start minus it is only a hint of a start prepared
ahead, ``ContainerBackend.prepare_restore``, which no API calls yet);
CRIU's own time (the last timestamp of ``restore.log`` in the bundle); the
load average.  ``--keep-logs DIR`` keeps CRIU's logs.  Needs root, runc, conmon, /bin/busybox and a
working CRIU.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from typing import List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import (  # noqa: E402
    IMAGE,
    REPO_ROOT,
    BenchError,
    Client,
    OwnDaemon,
    busybox_tar,
    closing,
    import_busybox,
    log,
)

sys.path.insert(0, REPO_ROOT)
from twistedock.backend.runtime.criu import find_criu  # noqa: E402

COMMAND = ["sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"]
#: Where CRIU's restore logs are copied (--keep-logs).
KEEP_LOGS = ""
PREPARED = re.compile(r"runc's state of ([0-9a-f]{12}) prepared for a restore over CRIU's RPC in (\d+) ms")


class Daemon(OwnDaemon):
    def __init__(self, workdir: str, extra: List[str]) -> None:
        super().__init__(workdir)
        self.extra = extra

    def command(self) -> List[str]:
        return super().command() + ["--experimental"] + self.extra


def criu_seconds(path: str) -> float:
    """The last timestamp of a CRIU log: CRIU's own time."""
    last = 0.0
    with open(path, errors="replace") as f:
        for line in f:
            found = re.match(r"\((\d+\.\d+)\)", line)
            if found:
                last = float(found.group(1))
    return last


def prepared_ms(daemon: Daemon, short_id: str) -> float:
    with open(daemon.log_path, errors="replace") as f:
        found = [float(m.group(2)) for m in PREPARED.finditer(f.read()) if m.group(1) == short_id]
    return found[-1] if found else float("nan")


def restore(daemon: Daemon, body: bytes, name: str, checkpoint: str) -> dict:
    with closing(Client(daemon.sock, 120)) as c:
        status, data = c.request("POST", "/containers/checkpoints/import?name=" + name, body,
                                 {"Content-Type": "application/x-tar"})
        if status != 201:
            raise BenchError("import into %s: %d %s" % (daemon.dir, status, data[:300]))
        answer = json.loads(data)
        cid = answer["Id"]
        start = time.monotonic()
        c.call("POST", "/containers/%s/start?checkpoint=%s" % (cid, checkpoint), expect=(204,))
        elapsed = time.monotonic() - start
        criu = criu_seconds(os.path.join(daemon.exec_root, cid, "restore.log"))
        if KEEP_LOGS:
            shutil.copy(os.path.join(daemon.exec_root, cid, "restore.log"),
                        os.path.join(KEEP_LOGS, "%s-%s.log" % (os.path.basename(daemon.dir), name)))
        with open(os.path.join(daemon.exec_root, cid, "conmon.pid")) as f:
            conmon = f.read().strip()
        with open("/proc/%s/cmdline" % (conmon,), "rb") as f:
            argv = f.read().split(b"\0")
        over_rpc = argv[argv.index(b"-r") + 1].endswith(b"/criu-swrk")
        c.call("DELETE", "/containers/%s?force=1" % (cid,), expect=(204,))
        return {"start": elapsed, "criu": criu, "rpc": over_rpc, "id": cid}


def ms(values: List[float]) -> str:
    values = [v for v in values if v == v]
    return "%.0f" % (statistics.median(values) * 1000.0) if values else "-"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--criu", default="")
    p.add_argument("--network", default="none", help="the counter's network (none, bridge)")
    p.add_argument("--keep-logs", default="", help="a directory where CRIU's restore logs are copied")
    args = p.parse_args()
    global KEEP_LOGS
    KEEP_LOGS = args.keep_logs
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    criu = args.criu or find_criu()[0]
    if not criu:
        print("no CRIU found", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="rsbench-", dir="/tmp")
    a = Daemon(os.path.join(workdir, "a"), ["--criu-path", criu])
    b = Daemon(os.path.join(workdir, "b"), ["--criu-path", criu])
    c = Daemon(os.path.join(workdir, "c"), ["--criu-path", criu, "--criu-rpc=false"])
    daemons = [a, b, c]
    rpc, runc = [], []
    try:
        tar_bytes = busybox_tar()
        for d in daemons:
            os.makedirs(d.dir)
            d.start()
            with closing(Client(d.sock)) as client:
                import_busybox(client, tar_bytes)
        with closing(Client(a.sock, 120)) as client:
            body = {"Image": IMAGE, "Cmd": COMMAND, "HostConfig": {"NetworkMode": args.network}}
            cid = client.json("POST", "/containers/create?name=travel", body, expect=(201,))["Id"]
            client.call("POST", "/containers/%s/start" % cid, expect=(204,))
            time.sleep(1)
            client.call("POST", "/containers/%s/checkpoints" % cid, {"CheckpointID": "cp", "Exit": True},
                        expect=(201,))
            export = client.call("GET", "/containers/%s/checkpoints/cp/export" % cid)
        for i in range(args.rounds):
            order = [(b, rpc), (c, runc)] if i % 2 == 0 else [(c, runc), (b, rpc)]
            for daemon, results in order:
                result = restore(daemon, export, "r%d" % i, "cp")
                if daemon is b:
                    result["prepare"] = prepared_ms(b, result["id"][:12]) / 1000.0
                results.append(result)
            log("round %d/%d: rpc %.0f ms (%s), runc %.0f ms" % (
                i + 1, args.rounds, rpc[-1]["start"] * 1000, "rpc" if rpc[-1]["rpc"] else "runc!",
                runc[-1]["start"] * 1000))
    except BenchError as e:
        print("benchmark failed: %s" % e, file=sys.stderr)
        for d in daemons:
            print(d.log_tail(), file=sys.stderr)
        return 1
    finally:
        for d in daemons:
            d.remove_all_and_stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("start --checkpoint of an imported checkpoint, %d rounds, network %s, CRIU %s" % (
        args.rounds, args.network, criu))
    print("(load average at the end: %s)" % (" ".join(open("/proc/loadavg").read().split()[:3]),))
    print("%-34s %9s %9s" % ("median ms", "start", "CRIU log"))
    print("%-34s %9s %9s" % ("runc restore (--criu-rpc=false)", ms([r["start"] for r in runc]),
                             ms([r["criu"] for r in runc])))
    print("%-34s %9s %9s" % ("prepare + RPC restore", ms([r["start"] for r in rpc]), ms([r["criu"] for r in rpc])))
    print("%-34s %9s" % ("  of which prepare (runc create)", ms([r["prepare"] for r in rpc])))
    # (The preparation overlaps the network's set-up: no more than a hint
    # of a start prepared ahead.)
    print("%-34s %9s" % ("  start minus prepare", ms([r["start"] - r["prepare"] for r in rpc])))
    if not all(r["rpc"] for r in rpc):
        print("(some restores on B went through runc)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
