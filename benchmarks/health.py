#!/usr/bin/env python3
"""
What healthchecks cost the daemon: N running containers (default 50), each
with a healthcheck probed every second (``CMD true``), and the daemon's own
CPU time (utime + stime of its process, from /proc/<pid>/stat) over a
window (default 30 s), as a percentage of one core; the probes that ran in
the window (their exec_die events) and the daemon's resident memory at the
window's start and end (thousands of probes must leave it flat).

    python benchmarks/health.py                 # 50 containers, 30 s
    python benchmarks/health.py --containers 10 --seconds 20
    python benchmarks/health.py --peer unix:///tmp/reference-dockerd/docker.sock

The target is at most 2% of one core for 50 containers.  Only the daemon's
process is counted: conmon, runc and the probes themselves are not (nor,
for a peer dockerd, containerd and its shims).  It needs root, runc,
conmon and /bin/busybox; it starts its own twistedock from this checkout
in a new /tmp/tdb-* directory and removes everything it made (on the peer,
its containers are labelled and its image has a name of its own: only
those are removed).
"""

import argparse
import json
import os
import shutil
import sys
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import (  # noqa: E402
    BenchError,
    Client,
    OwnDaemon,
    begin_run,
    busybox_tar,
    closing,
    cpu_seconds,
    import_busybox,
    log,
    pid_serving,
    query,
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


def probes_between(client: Client, token: str, since: float, until: float) -> int:
    filters = json.dumps({"event": ["exec_die"], "label": ["%s=%s" % (LABEL, token)]})
    path = "/events?" + query(since="%.3f" % since, until="%.3f" % until, filters=filters)
    body = client.call("GET", path)
    return sum(1 for line in body.splitlines() if line.strip())


def measure(name: str, sock: str, pid: int, args, token: str) -> dict:
    with closing(Client(sock)) as client:
        log("%s: starting %d containers probed every %.1f s" % (name, args.containers, args.interval))
        ids = start_probed(client, args.containers, token, int(args.interval * 1e9))
        try:
            deadline = time.monotonic() + 60
            while statuses(client, token).get("healthy", 0) < len(ids):
                if time.monotonic() > deadline:
                    raise BenchError("%s: not all healthy after 60 s: %s" % (name, statuses(client, token)))
                time.sleep(0.5)
            time.sleep(args.interval)
            rss_before = rss_kib(pid)
            since, cpu_before = time.time(), cpu_seconds([pid])
            time.sleep(args.seconds)
            until, cpu_after = time.time(), cpu_seconds([pid])
            rss_after = rss_kib(pid)
            probes = probes_between(client, token, since, until)
            return {
                "daemon": name,
                "containers": len(ids),
                "seconds": until - since,
                "cpu_percent": 100.0 * (cpu_after - cpu_before) / (until - since),
                "probes": probes,
                "cpu_ms_per_probe": 1000.0 * (cpu_after - cpu_before) / probes if probes else None,
                "rss_kib_before": rss_before,
                "rss_kib_after": rss_after,
                "statuses": statuses(client, token),
            }
        finally:
            for cid in ids:
                client.request("DELETE", "/containers/%s?force=1" % cid)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0, help="probe interval, seconds")
    parser.add_argument("--peer", help="unix:///PATH of another daemon to measure the same way")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the /tmp/tdb-* directory")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    token, workdir = begin_run()
    daemon = OwnDaemon(workdir)
    results: List[dict] = []
    leftovers: List[str] = []
    try:
        daemon.start()
        tar_bytes = busybox_tar()
        with closing(Client(daemon.sock)) as c:
            import_busybox(c, tar_bytes, REPO, token)
        results.append(measure("twistedock", daemon.sock, daemon.proc.pid, args, token))
        if args.peer:
            sock = args.peer[len("unix://"):]
            pid = pid_serving(sock)
            if pid is None:
                raise BenchError("cannot find the process serving %s" % sock)
            with closing(Client(sock)) as c:
                import_busybox(c, tar_bytes, REPO, token)
            try:
                results.append(measure("peer", sock, pid, args, token))
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
    print()
    print("%-12s %10s %8s %8s %12s %14s %18s" % (
        "daemon", "containers", "seconds", "probes", "CPU % core", "CPU ms/probe", "RSS KiB start/end"))
    for r in results:
        per_probe = "-" if r["cpu_ms_per_probe"] is None else "%.2f" % r["cpu_ms_per_probe"]
        print("%-12s %10d %8.1f %8d %12.2f %14s %18s" % (
            r["daemon"], r["containers"], r["seconds"], r["probes"], r["cpu_percent"], per_probe,
            "%d/%d" % (r["rss_kib_before"], r["rss_kib_after"])))
    for problem in leftovers:
        print("WARNING: " + problem)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if leftovers else 0


if __name__ == "__main__":
    run_main(main)
