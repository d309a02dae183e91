#!/usr/bin/env python3
"""
Migration downtime with ``twistedock-migrate``: the time a process does not
run, measured by the process itself.

    python benchmarks/migrate.py [--rounds 3] [--quick]

The workload is a tiny static C program (compiled here with ``gcc -static``,
copied into a busybox container) that writes a line ``N SECONDS.NANOSECONDS``
(CLOCK_REALTIME) every millisecond; for the ``256MiB`` workload it first
touches 256 MiB and then keeps writing one byte of it per line, spread over
the whole range, so that a post-copy restore faults pages in while it runs.
The downtime is the longest gap between two successive lines around the
move, the source's and the target's merged (the clock is the one kernel's;
lines still in the stdout pipe at the freeze travel in the checkpoint, CRIU
keeping a pipe's contents, and show in the target's log): resolution about 1 ms (the writing period), reported as measured (the
period included).  The tool's own figure (``Downtime`` of its ``--json``:
the freeze to the restored process running, as the daemons measured it, or
its span from the checkpoint's request to the restore's answer when they do
not say) is printed beside it.

Measured for both workloads, plain (stop and copy) and lazy (post-copy), on
the same host (two daemons on unix sockets) and across two network
namespaces joined by a veth pair, the daemons serving TLS with client
certificates (``tests/e2e/netns.py``; the tool runs in the source's
namespace).  Each round moves the container from one daemon to the other
and the next moves it back; medians of the rounds.  Targets: small process
< 100 ms and 256 MiB lazy < 150 ms, across namespaces over TLS.

It needs root, runc, conmon, gcc, busybox and a working CRIU; it starts its
own daemons (this checkout, ``--experimental``) in temporary directories and
removes everything it made.  The machine may be loaded by other work: the
figures are medians, and the load average is printed.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.e2e.conftest import DockerDaemon  # noqa: E402
from tests.e2e.netns import NamespacedDaemon, NamespacePair, make_certificates, tls_arguments  # noqa: E402
from tests.e2e.test_containers import busybox_rootfs_tar  # noqa: E402
from twistedock.backend.runtime.criu import find_criu  # noqa: E402

TICKER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t size = (size_t)atol(argc > 1 ? argv[1] : "0") << 20;
    char *mem = size ? malloc(size) : NULL;
    size_t i, page = 0;
    for (i = 0; i < size; i += 4096) mem[i] = (char)(i >> 12) | 1;
    unsigned long n = 0;
    struct timespec ts, delay = {0, 1000000};
    char line[64];
    for (;;) {
        clock_gettime(CLOCK_REALTIME, &ts);
        int len = snprintf(line, sizeof line, "%lu %ld.%09ld\n", n++, (long)ts.tv_sec, ts.tv_nsec);
        if (write(1, line, len) < 0) return 1;
        if (size) { mem[page] += 1; page = (page + 4096 * 97) % size; }
        nanosleep(&delay, NULL);
    }
}
"""

WORKLOADS = {"small": 0, "256MiB": 256}
#: More arguments for twistedock-migrate (--tool-args).
TOOL_ARGS: List[str] = []
# The tool's own split of its downtime (``--json``), printed under each line
# (export and transfer: what is left of them once the checkpoint answered),
# and the preparation of the target before the freeze (outside the downtime)
# and the bytes moved inside it.
PHASES = ("Checkpoint", "Export", "Transfer", "Restore", "Prepare")


def compile_ticker(directory: Path) -> Path:
    source = directory / "ticker.c"
    source.write_text(TICKER_C)
    binary = directory / "ticker"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def ticks(daemon, name: str, tail: Optional[int] = None) -> Dict[int, float]:
    args = ["logs"] + (["--tail", str(tail)] if tail else []) + [name]
    out = daemon.docker(*args, timeout=120).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            try:
                found[int(parts[0])] = float(parts[1])
            except ValueError:
                pass
    return found


class Place:
    """Two daemons and how the tool reaches them."""

    def __init__(self, name: str, a, b, tool_prefix: List[str], hosts, tls: List[str]) -> None:
        self.name, self.daemons, self.tool_prefix, self.hosts, self.tls = name, [a, b], tool_prefix, hosts, tls

    def migrate(self, source: int, container: str, mode: str) -> dict:
        target = 1 - source
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT
        argv = self.tool_prefix + [sys.executable, "-m", "twistedock.migrate", self.hosts[source],
                                   self.hosts[target], container, "--mode", mode, "--keep-source", "--json",
                                   *self.tls] + TOOL_ARGS
        try:
            result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError("migration took more than 600 s: %s" % (e.stdout,))
        if result.returncode != 0:
            raise RuntimeError("migration failed: %s %s" % (result.stdout, result.stderr))
        return json.loads(result.stdout.strip().splitlines()[-1])


def start_ticker(daemon, name: str, binary: Path, mib: int) -> None:
    daemon.docker("rm", "-f", name, check=False)
    daemon.docker("create", "--name", name, "--network", "none", "busybox", "/ticker", str(mib))
    daemon.docker("cp", str(binary), "%s:/ticker" % (name,))
    daemon.docker("start", name)
    deadline = time.monotonic() + 120
    while len(ticks(daemon, name, 50)) < 20:
        if time.monotonic() > deadline:
            raise RuntimeError("the ticker did not start")
        time.sleep(0.2)


def downtime_of(before: Dict[int, float], after: Dict[int, float], last: int, around: int = 1000) -> float:
    """The longest pause between two successive lines of the ticker near
    line C{last} (the source's last), the lines of both sides merged: the
    lines the process wrote on the source that its conmon had not read yet
    when it froze travel in the checkpoint (CRIU keeps a pipe's contents)
    and appear in the target's log, so the target's first line may have been
    written before the freeze."""
    lines = dict(before)
    lines.update(after)
    numbers = sorted(n for n in lines if last - around <= n <= last + around)
    return max(lines[b] - lines[a] for a, b in zip(numbers, numbers[1:]))


def measure(place: Place, workload: str, mode: str, rounds: int, binary: Path) -> List[dict]:
    name = "tick-%s-%s" % (workload.lower(), mode)
    here = 0
    start_ticker(place.daemons[here], name, binary, WORKLOADS[workload])
    results = []
    try:
        for _ in range(rounds):
            time.sleep(0.5)
            figures = place.migrate(here, name, mode)
            source, target = place.daemons[here], place.daemons[1 - here]
            time.sleep(0.3)
            before = ticks(source, name, 3000)
            after = ticks(target, name)
            last = max(before)
            following = min(n for n in after if n > last) if any(n > last for n in after) else None
            if following is None:
                raise RuntimeError("no line after the migration on the target (last on the source %d, the target's %s to %s)" % (
                    last, min(after, default=None), max(after, default=None)))
            gap = downtime_of(before, after, last)
            # The process runs on the target from there: its longest pause
            # since (a post-copy restore's faults wait for their pages).
            times = [after[n] for n in sorted(after) if n >= following]
            stall = max((b - a for a, b in zip(times, times[1:])), default=None)
            results.append({"gap": gap, "tool": figures["Downtime"], "lost": following - last - 1,
                            "pages": figures.get("PageCopy"),
                            "phases": {k: figures[k] for k in PHASES if figures.get(k) is not None},
                            "bytes": figures.get("Bytes"), "copy": _copy_note(target), "stall": stall})
            source.docker("rm", "-f", name)
            here = 1 - here
    finally:
        for daemon in place.daemons:
            daemon.docker("rm", "-f", name, check=False)
    return results


def _copy_note(daemon) -> str:
    """What the target's daemon said of its last lazy page copy (how many
    pages it fetched ahead, how many of CRIU's requests they answered)."""
    lines = [line for line in daemon.log_text().splitlines() if "lazy pages complete" in line
             or "lazy pages broken off" in line]
    return lines[-1].split("lazy pages", 1)[1].strip() if lines else ""


def start_daemon(daemon, busybox_tar: str) -> None:
    daemon.start(timeout=120)
    with open(busybox_tar, "rb") as f:
        subprocess.run(["docker", "import", "-", "busybox:latest"], stdin=f, env=daemon.cli_env(),
                       capture_output=True, check=True, timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round each")
    parser.add_argument("--criu", default=None)
    parser.add_argument("--only", default="", help="same-host or namespaces")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="small,256MiB")
    parser.add_argument("--modes", default="plain,lazy")
    parser.add_argument("--daemon-flag", action="append", default=[],
                        help="more daemon flags (e.g. --daemon-flag=--criu-rpc=false: dumps through runc)")
    parser.add_argument("--tool-args", default="", help="more arguments for twistedock-migrate, e.g. "
                        "--tool-args=--export-with-checkpoint")
    args = parser.parse_args()
    TOOL_ARGS.extend(args.tool_args.split())
    rounds = 1 if args.quick else args.rounds
    criu, _ = find_criu(args.criu)
    if criu is None:
        print("no CRIU found", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tdk-bench-migrate-", dir="/tmp"))
    cli_config = work / "cli"
    cli_config.mkdir()
    daemons: List[DockerDaemon] = []
    pair = None
    places: List[Place] = []
    try:
        binary = compile_ticker(work)
        tar = busybox_rootfs_tar(work)
        flags = ("--experimental", "--criu-path", criu) + tuple(args.daemon_flag)
        if args.only in ("", "same-host"):
            a = DockerDaemon(work / "a", cli_config, flags)
            b = DockerDaemon(work / "b", cli_config, flags)
            daemons += [a, b]
            for d in (a, b):
                start_daemon(d, tar)
            places.append(Place("same host, unix sockets", a, b, [], [a.host, b.host], []))
        if args.only in ("", "namespaces"):
            pair = NamespacePair().create()
            certs = make_certificates(work / "certs", pair.addresses)
            c = NamespacedDaemon(work / "c", cli_config, pair.names[0], pair.addresses[0], certs, flags)
            d = NamespacedDaemon(work / "d", cli_config, pair.names[1], pair.addresses[1], certs, flags)
            daemons += [c, d]
            for daemon in (c, d):
                start_daemon(daemon, tar)
            # The tool runs in the namespace of the daemon it moves from:
            # both directions, so both namespaces (the other daemon by TCP).
            places.append(NamespacesPlace("two namespaces, veth, TLS with client certificates", c, d, certs))
        print("load average before: %s" % (" ".join("%.2f" % x for x in os.getloadavg()),))
        print("downtime = longest gap between successive lines around the move, source's and target's merged "
              "(1 ms writing period: resolution ~1 ms); medians of %d round(s)" % (rounds,))
        summary = {}
        for place in places:
            for workload in args.workloads.split(","):
                for mode in args.modes.split(","):
                    try:
                        results = measure(place, workload, mode, rounds, binary)
                    except RuntimeError as e:
                        print("%-52s %-6s %-5s FAILED: %s" % (place.name, workload, mode, e))
                        for daemon in place.daemons:
                            lines = [line for line in daemon.log_text().splitlines()
                                     if "warn" in line.lower() or "lazy" in line.lower()]
                            print("  daemon log:\n    " + "\n    ".join(lines[-8:]))
                        continue
                    gap = statistics.median(r["gap"] for r in results) * 1000
                    tool = statistics.median(r["tool"] for r in results) * 1000
                    pages = [r["pages"] for r in results if r["pages"] is not None]
                    summary[(place.name, workload, mode)] = gap
                    print("%-52s %-6s %-5s downtime %7.1f ms (tool says %7.1f ms)%s  rounds: %s" % (
                        place.name, workload, mode, gap, tool,
                        "  pages after restore %.0f ms" % (statistics.median(pages) * 1000,) if pages else "",
                        ", ".join("%.1f" % (r["gap"] * 1000) for r in results)))
                    phases = [(k, [r["phases"][k] for r in results if k in r["phases"]]) for k in PHASES]
                    moved = [r["bytes"] for r in results if r.get("bytes") is not None]
                    print("%52s tool's split (medians): %s%s" % ("", ", ".join(
                        "%s %.0f ms" % (k.lower() if k != "Prepare" else "prepared before the freeze in",
                                        statistics.median(v) * 1000) for k, v in phases if v),
                        "; %.0f KiB moved in the downtime" % (statistics.median(moved) / 1024.0,) if moved else ""))
                    stalls = [r["stall"] for r in results if r.get("stall") is not None]
                    if stalls:
                        print("%52s longest pause after the resume (median): %.0f ms" % (
                            "", statistics.median(stalls) * 1000))
                    notes = [r["copy"] for r in results if r.get("copy")]
                    if notes:
                        print("%52s page copy (last round): %s" % ("", notes[-1]))
        print("load average after: %s" % (" ".join("%.2f" % x for x in os.getloadavg()),))
        cross = "two namespaces, veth, TLS with client certificates"
        for (workload, mode, target) in (("small", "plain", 100.0), ("small", "lazy", 100.0),
                                         ("256MiB", "lazy", 150.0)):
            value = summary.get((cross, workload, mode))
            if value is not None:
                print("target %s %s across namespaces < %.0f ms: %.1f ms (%.2fx the target) %s" % (
                    workload, mode, target, value, value / target, "met" if value < target else "NOT met"))
        small = summary.get((cross, "256MiB", "plain"))
        lazy = summary.get((cross, "256MiB", "lazy"))
        if small and lazy:
            print("256MiB across namespaces: lazy downtime is %.2fx plain's" % (lazy / small,))
        return 0
    finally:
        for daemon in daemons:
            try:
                ids = daemon.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    daemon.docker("rm", "-f", *ids, check=False)
                daemon.stop()
            except Exception as e:
                print("stopping a daemon: %s" % (e,), file=sys.stderr)
        if pair is not None:
            pair.remove()
        shutil.rmtree(work, ignore_errors=True)


class NamespacesPlace(Place):
    def __init__(self, name: str, a, b, certs) -> None:
        super().__init__(name, a, b, [], [a.tcp, b.tcp], tls_arguments(certs))

    def migrate(self, source: int, container: str, mode: str) -> dict:
        self.tool_prefix = NamespacePair.enter(self.daemons[source].namespace)
        return super().migrate(source, container, mode)


if __name__ == "__main__":
    sys.exit(main())
