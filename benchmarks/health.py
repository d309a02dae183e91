#!/usr/bin/env python3
"""
What healthchecks cost: N running containers (default 50), each with a
healthcheck probed every second (``CMD true``), and the CPU time (utime +
stime, from /proc/<pid>/stat) of each process involved over a window
(default 20 s), per probe and as a percentage of one core at 50 containers
probed once a second; the probes that ran (their exec_die events, followed
live in the window after the measured one: the rate is steady, and a
subscriber would cost the daemon CPU in the measured window) and the
daemon's resident memory at the window's start and end
(thousands of probes must leave it flat).

    python benchmarks/health.py                 # 50 containers, 3 windows of 20 s
    python benchmarks/health.py --containers 10 --seconds 10 --rounds 1
    python benchmarks/health.py --peer unix:///tmp/reference-dockerd/docker.sock

The target is at most 2% of one core for the daemon's own process at 50
probes a second (0.4 ms a probe).  Beside it, separately: twistedock's
probe runner (its own CPU, and that of its children: runc exec and the
probes themselves), and for a peer dockerd, dockerd's own CPU, its
containerd's, and the containerd shims of the benchmark's containers (their
own, and their children's: runc exec and the probes).  Each daemon's
containers run only while it is measured; the windows' medians are
printed.  It needs root, runc, conmon and /bin/busybox; it starts its own
twistedock from this checkout in a new /tmp/tdb-* directory and removes
everything it made (on the peer, its containers are labelled and its image
has a name of its own: only those are removed).
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import (  # noqa: E402
    BenchError,
    Client,
    OwnDaemon,
    begin_run,
    busybox_tar,
    closing,
    cmdline,
    comm,
    cpu_ns,
    cpu_split,
    descendants,
    import_busybox,
    option_value,
    log,
    pid_serving,
    query,
    all_pids,
    rss_kib,
    run_main,
    scrub,
)

LABEL = "twistedock.benchmark"
#: The image, under a name of this run's own on a shared peer.
REPO = "twistedock-health-bench"


def start_probed(client: Client, count: int, token: str, interval_ns: int) -> List[str]:
    ids = []
    for _ in range(count):
        body = {
            "Image": "%s:%s" % (REPO, token),
            "Cmd": ["sleep", "1000000"],
            "Labels": {LABEL: token},
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": interval_ns, "Timeout": 10 * 10**9},
        }
        cid = client.json("POST", "/containers/create", body, expect=(201,))["Id"]
        client.call("POST", "/containers/%s/start" % cid, expect=(204,))
        ids.append(cid)
    return ids


def statuses(client: Client, token: str) -> Dict[str, int]:
    filters = json.dumps({"label": ["%s=%s" % (LABEL, token)]})
    out: Dict[str, int] = {}
    for summary in client.json("GET", "/containers/json?" + query(filters=filters)):
        status = summary["Status"]
        key = status[status.rfind("(") + 1:-1] if status.endswith(")") else "none"
        out[key] = out.get(key, 0) + 1
    return out


def probes_during(sock: str, token: str, seconds: float) -> Tuple[int, float]:
    """(probes, seconds): the exec_die events of a window of C{seconds}
    starting now, followed live (the daemons keep only the last 256 events:
    asked afterwards, a busy window's would be cut short)."""
    filters = json.dumps({"event": ["exec_die"], "label": ["%s=%s" % (LABEL, token)]})
    since = time.time()
    until = since + seconds
    path = "/events?" + query(since="%.3f" % since, until="%.3f" % until, filters=filters)
    with closing(Client(sock, seconds + 60)) as client:
        body = client.call("GET", path)
    return sum(1 for line in body.splitlines() if line.strip()), until - since


def process_groups(name: str, pid: int, ids: List[str]) -> Dict[str, List[int]]:
    """The processes whose CPU is counted, by group: twistedock's daemon and
    probe runner; dockerd, its containerd and the shims of C{ids}."""
    if name == "twistedock":
        runner = [p for p in descendants(pid) if "twistedock.backend.proberunner" in cmdline(p)]
        return {"daemon": [pid], "runner": runner}
    wanted = set(ids)
    shims = [p for p in all_pids() if comm(p).startswith("containerd-shim")
             and option_value(cmdline(p), "-id") in wanted]
    containerd = [p for p in descendants(pid) if comm(p) == "containerd"]
    return {"daemon": [pid], "containerd": containerd, "shims": shims}


def cpu_of(groups: Dict[str, List[int]]) -> Dict[str, List[float]]:
    """{group: [own CPU seconds (schedstat, exact), reaped children's CPU
    seconds (clock ticks)]}."""
    out = {}
    for group, pids in groups.items():
        own = children = 0.0
        for pid in pids:
            own += cpu_ns(pid) / 1e9
            children += cpu_split(pid)[1]
        out[group] = [own, children]
    return out


def wait_healthy(client: Client, name: str, token: str, count: int) -> None:
    deadline = time.monotonic() + 120
    while statuses(client, token).get("healthy", 0) < count:
        if time.monotonic() > deadline:
            raise BenchError("%s: not all healthy after 120 s: %s" % (name, statuses(client, token)))
        time.sleep(0.5)


def measure(name: str, sock: str, pid: int, args, token: str) -> List[dict]:
    """One window a round, the containers started once."""
    windows = []
    with closing(Client(sock)) as client:
        log("%s: starting %d containers probed every %.1f s" % (name, args.containers, args.interval))
        ids = start_probed(client, args.containers, token, int(args.interval * 1e9))
        try:
            wait_healthy(client, name, token, len(ids))
            time.sleep(args.interval)
            for round_ in range(args.rounds):
                groups = process_groups(name, pid, ids)
                rss_before = rss_kib(pid)
                since, before = time.time(), cpu_of(groups)
                time.sleep(args.seconds)
                until, after = time.time(), cpu_of(groups)
                rss_after = rss_kib(pid)
                # The probes are counted in the next window, of the same
                # length: a subscriber to the events would cost the daemon
                # CPU in the measured one.
                counted, counted_seconds = probes_during(sock, token, until - since)
                probes = int(round(counted * (until - since) / counted_seconds))
                spent = {g: [after[g][i] - before[g][i] for i in (0, 1)] for g in groups}
                window = {
                    "daemon": name,
                    "round": round_ + 1,
                    "containers": len(ids),
                    "seconds": until - since,
                    "probes": probes,
                    "processes": {g: len(p) for g, p in groups.items()},
                    "cpu_seconds": spent,
                    "rss_kib_before": rss_before,
                    "rss_kib_after": rss_after,
                    "statuses": statuses(client, token),
                }
                log("%s round %d: %d probes, %s" % (name, round_ + 1, probes, ", ".join(
                    "%s %.2f+%.2f s" % (g, v[0], v[1]) for g, v in spent.items())))
                windows.append(window)
        finally:
            for cid in ids:
                client.request("DELETE", "/containers/%s?force=1" % cid)
    return windows


def per_probe_ms(window: dict, group: str, which: int) -> Optional[float]:
    if not window["probes"]:
        return None
    return 1000.0 * window["cpu_seconds"][group][which] / window["probes"]


def median(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(windows: List[dict]) -> None:
    """Medians over the windows, per daemon and process group."""
    print()
    print("CPU per probe (ms) and what it makes at 50 containers probed every second (% of one core);")
    print("'own' is the processes' own CPU, 'children' what their reaped children used (runc exec, the probes).")
    print("%-11s %-11s %6s %8s %10s %10s %12s %12s" % (
        "daemon", "processes", "count", "probes/s", "own ms", "own %core", "children ms", "children %"))
    for name in sorted({w["daemon"] for w in windows}, key=lambda n: n != "twistedock"):
        mine = [w for w in windows if w["daemon"] == name]
        rate = median(w["probes"] / w["seconds"] for w in mine)
        for group in mine[0]["cpu_seconds"]:
            own = median(per_probe_ms(w, group, 0) for w in mine)
            children = median(per_probe_ms(w, group, 1) for w in mine)
            count = median(w["processes"][group] for w in mine)
            print("%-11s %-11s %6d %8.1f %10s %10s %12s %12s" % (
                name, group, count, rate or 0,
                "-" if own is None else "%.3f" % own,
                "-" if own is None else "%.2f" % (own * 5.0),
                "-" if children is None else "%.3f" % children,
                "-" if children is None else "%.2f" % (children * 5.0)))
        print("%-11s RSS KiB of the daemon, first window start/last window end: %d/%d; windows: %d" % (
            name, mine[0]["rss_kib_before"], mine[-1]["rss_kib_after"], len(mine)))
    own = [w for w in windows if w["daemon"] == "twistedock"]
    daemon = median(per_probe_ms(w, "daemon", 0) for w in own)
    if daemon is not None:
        print("twistedock's daemon: %.2f%% of one core at 50 probes/s (target <= 2%%): %s" % (
            daemon * 5.0, "met" if daemon * 5.0 <= 2.0 else "NOT met"))


#: What --synthetic gives the probe runner for runc: `runc exec -d` as far
#: as the runner sees it (a process started, its pid written, runc gone),
#: the process a `sleep 0.02` (which outlives the script, so that the
#: runner, a child subreaper, is the one that reaps it, as with runc).
FAKE_RUNC = """#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in --pid-file) pidfile=$2; shift;; esac
  shift
done
sleep 0.02 &
echo $! > "$pidfile"
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3, help="measurement windows per daemon")
    parser.add_argument("--interval", type=float, default=1.0, help="probe interval, seconds")
    parser.add_argument("--peer", help="unix:///PATH of another daemon to measure the same way")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the /tmp/tdb-* directory")
    parser.add_argument("--synthetic", action="store_true",
                        help="probes by a stand-in for runc (twistedock only): the daemon's side at the full rate")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    token, workdir = begin_run()
    daemon = OwnDaemon(workdir)
    results: List[dict] = []
    leftovers: List[str] = []
    try:
        if args.synthetic:
            fake = os.path.join(workdir, "fake-runc")
            with open(fake, "w") as f:
                f.write(FAKE_RUNC)
            os.chmod(fake, 0o755)
            os.environ["TWISTEDOCK_PROBE_RUNC"] = fake
            args.peer = None
        daemon.start()
        tar_bytes = busybox_tar()
        with closing(Client(daemon.sock)) as c:
            import_busybox(c, tar_bytes, REPO, token)
        results += measure("twistedock", daemon.sock, daemon.proc.pid, args, token)
        if args.peer:
            sock = args.peer[len("unix://"):]
            pid = pid_serving(sock)
            if pid is None:
                raise BenchError("cannot find the process serving %s" % sock)
            with closing(Client(sock)) as c:
                import_busybox(c, tar_bytes, REPO, token)
            try:
                results += measure("peer", sock, pid, args, token)
            finally:
                with closing(Client(sock)) as c:
                    c.request("DELETE", "/images/%s:%s" % (REPO, token))
    finally:
        problem = daemon.stop()
        if problem:
            leftovers.append(problem)
        leftovers += scrub(workdir, [])
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if results:
        report(results)
    for problem in leftovers:
        print("WARNING: " + problem)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if leftovers else 0


if __name__ == "__main__":
    run_main(main)
