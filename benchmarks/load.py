#!/usr/bin/env python3
"""
Load and leaks: does the daemon answer a burst of concurrent requests, and
does its memory stay flat while containers come and go for a long time?

    python benchmarks/load.py --quick          # a short run
    python benchmarks/load.py                  # 1,000 requests; 200 containers x 10 minutes

What is measured (on a daemon of this checkout, --debug, in temporary
directories; everything it made is removed):

1. a burst of N concurrent API requests (default 1,000; 200 client
   threads), mixed: list (all), inspect, create, remove (-f): how many were
   answered without error, the latency percentiles, the daemon's RSS before
   and after;
2. a loop: C{--containers} containers created and started (8 client
   threads), then all removed (rm -f), again and again for C{--minutes};
   throughout, /_ping every 50 ms from another thread (its p50/p99 per round
   and overall), and after each round the daemon's RSS and the live bytes
   tracemalloc sees (GET /debug/pprof/heap: tracing starts after a first
   warm-up round), so that growth shows as a slope (bytes per round).

It needs root, runc, conmon and /bin/busybox.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import IMAGE, Client, OwnDaemon, busybox_tar, closing, log  # noqa: E402


class DebugDaemon(OwnDaemon):
    def command(self) -> List[str]:
        return super().command() + ["--debug"]


def rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def request(sock: str, method: str, path: str, body=None, timeout: float = 120.0):
    """(status, body, seconds); status 0 for an error without an answer."""
    started = time.monotonic()
    try:
        with closing(Client(sock, timeout)) as c:
            status, data = c.request(method, path, body)
    except Exception as e:
        return 0, str(e).encode(), time.monotonic() - started
    return status, data, time.monotonic() - started


def percentile(values: List[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def live_bytes(sock: str) -> int:
    status, data, _ = request(sock, "GET", "/debug/pprof/heap")
    found = re.search(rb"live: (\d+) bytes", data or b"")
    return int(found.group(1)) if status == 200 and found else -1


def create(sock: str, name: str, cmd=("sleep", "600")) -> str:
    status, data, _ = request(sock, "POST", "/containers/create?name=" + name,
                              {"Image": IMAGE, "Cmd": list(cmd)})
    if status != 201:
        raise RuntimeError("create %s: %s %r" % (name, status, data[:200]))
    return json.loads(data)["Id"]


def burst(daemon: OwnDaemon, total: int, threads: int) -> dict:
    sock = daemon.sock
    pool = [create(sock, "burst-pool-%d" % i) for i in range(max(10, total // 20))]
    victims = list(pool)
    lock = threading.Lock()

    def one(i: int):
        kind = ("list", "inspect", "list", "inspect", "create", "remove")[i % 6]
        if kind == "list":
            return kind, request(sock, "GET", "/containers/json?all=1")
        if kind == "inspect":
            return kind, request(sock, "GET", "/containers/%s/json" % pool[i % len(pool)])
        if kind == "create":
            return kind, request(sock, "POST", "/containers/create?name=burst-%d" % i,
                                 {"Image": IMAGE, "Cmd": ["true"]})
        with lock:
            victim = victims.pop() if victims else None
        if victim is None:
            return kind, request(sock, "GET", "/_ping")
        return kind, request(sock, "DELETE", "/containers/%s?force=1" % victim)

    before = rss_kib(daemon.proc.pid)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as executor:
        results = list(executor.map(one, range(total)))
    elapsed = time.monotonic() - started
    after = rss_kib(daemon.proc.pid)
    errors = [(k, s, b[:160].decode("utf-8", "replace")) for k, (s, b, _) in results
              if not (200 <= s < 300) and not (k == "inspect" and s == 404)]
    latencies = [t for _, (_, _, t) in results]
    # (Inspects of a pool container removed meanwhile answer 404: not an error.)
    out = {
        "requests": total, "threads": threads, "seconds": round(elapsed, 2),
        "errors": len(errors), "first_errors": errors[:5],
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "rss_kib_before": before, "rss_kib_after": after,
    }
    request(sock, "POST", "/containers/prune")
    for ident in victims:
        request(sock, "DELETE", "/containers/%s?force=1" % ident)
    return out


class Pinger(threading.Thread):
    def __init__(self, sock: str) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.samples: List[float] = []
        self.failures = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            status, _, seconds = request(self.sock, "GET", "/_ping", timeout=10)
            if status == 200:
                self.samples.append(seconds)
            else:
                self.failures += 1
            self.stopped.wait(0.05)

    def take(self) -> List[float]:
        samples, self.samples = self.samples, []
        return samples


def churn(daemon: OwnDaemon, containers: int, minutes: float, threads: int = 8) -> dict:
    sock = daemon.sock
    pinger = Pinger(sock)
    pinger.start()
    rounds = []
    all_pings: List[float] = []
    deadline = time.monotonic() + minutes * 60
    traced_first = None
    first_snapshot_round = 1
    n = 0
    try:
        while n <= first_snapshot_round or time.monotonic() < deadline:
            started = time.monotonic()

            def up(i: int) -> str:
                ident = create(sock, "churn-%d-%d" % (n, i))
                status, data, _ = request(sock, "POST", "/containers/%s/start" % ident)
                if status != 204:
                    raise RuntimeError("start: %s %r" % (status, data[:200]))
                return ident

            with concurrent.futures.ThreadPoolExecutor(threads) as executor:
                idents = list(executor.map(up, range(containers)))
                removed = list(executor.map(
                    lambda i: request(sock, "DELETE", "/containers/%s?force=1" % i)[0], idents))
            bad = [s for s in removed if s != 204]
            pings = pinger.take()
            all_pings += pings
            live = live_bytes(sock) if n >= first_snapshot_round else -1
            if n == first_snapshot_round:
                traced_first = live
            rounds.append({
                "round": n, "seconds": round(time.monotonic() - started, 1), "rm_errors": len(bad),
                "rss_kib": rss_kib(daemon.proc.pid), "traced_live_bytes": live,
                "ping_p50_ms": round(percentile(pings, 50) * 1000, 2),
                "ping_p99_ms": round(percentile(pings, 99) * 1000, 2),
            })
            log("round %(round)d: %(seconds)s s, rss %(rss_kib)d KiB, traced %(traced_live_bytes)d B, "
                "ping p99 %(ping_p99_ms)s ms" % rounds[-1])
            n += 1
    finally:
        pinger.stopped.set()
        pinger.join(15)
    traced = [r["traced_live_bytes"] for r in rounds if r["traced_live_bytes"] >= 0]
    return {
        "containers_per_round": containers, "rounds": len(rounds), "minutes": minutes,
        "ping_p50_ms": round(percentile(all_pings, 50) * 1000, 2),
        "ping_p99_ms": round(percentile(all_pings, 99) * 1000, 2),
        "ping_failures": pinger.failures,
        "rss_kib_first_last": [rounds[0]["rss_kib"], rounds[-1]["rss_kib"]],
        "traced_live_bytes_first_last": [traced_first, traced[-1] if traced else -1],
        "traced_growth_per_round_bytes": (
            round(statistics.linear_regression(range(len(traced)), traced).slope) if len(traced) > 2 else None
        ),
        "rounds_detail": rounds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 requests; 20 containers x 1 minute")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.threads, args.containers, args.minutes = 200, 50, 20, 1.0
    workdir = tempfile.mkdtemp(prefix="td-load-")
    daemon = DebugDaemon(workdir)
    figures = {}
    try:
        daemon.start()
        with closing(Client(daemon.sock)) as c:
            status, data = c.request("POST", "/images/create?fromSrc=-&repo=busybox&tag=latest",
                                     busybox_tar(), {"Content-Type": "application/x-tar"})
            if status != 200:
                raise RuntimeError("import: %s %r" % (status, data[:200]))
        log("burst of %d requests" % args.requests)
        figures["burst"] = burst(daemon, args.requests, args.threads)
        log(json.dumps(figures["burst"]))
        log("churn: %d containers a round for %.1f min" % (args.containers, args.minutes))
        figures["churn"] = churn(daemon, args.containers, args.minutes)
    finally:
        complaint = daemon.stop()
        if complaint:
            log(complaint)
        shutil.rmtree(workdir, ignore_errors=True)
    summary = dict(figures)
    if "churn" in summary:
        summary["churn"] = {k: v for k, v in summary["churn"].items() if k != "rounds_detail"}
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
