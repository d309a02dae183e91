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
   warm-up round), so that growth shows as a slope (bytes per round), and
   the top growth lines of a tracemalloc snapshot diff (the base taken after
   the second round, GET /debug/pprof/heap?diff=1 at the end); /_ping's
   p50/p99/max per minute.

It needs root, runc, conmon and /bin/busybox.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import List, Tuple

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
    """/_ping every 50 ms (a new connection each time, as a CLI would):
    (seconds since the start, latency) of each answer."""

    def __init__(self, sock: str) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.started = time.monotonic()
        self.samples: List[Tuple[float, float]] = []
        self.failures = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            status, _, seconds = request(self.sock, "GET", "/_ping", timeout=10)
            if status == 200:
                self.samples.append((time.monotonic() - self.started, seconds))
            else:
                self.failures += 1
            self.stopped.wait(0.05)

    def since(self, index: int) -> List[float]:
        return [latency for _, latency in self.samples[index:]]


def per_minute(samples: List[Tuple[float, float]]) -> List[dict]:
    """p50, p99 and max of the pings of each minute."""
    minutes: dict = {}
    for at, latency in samples:
        minutes.setdefault(int(at // 60), []).append(latency)
    return [
        {"minute": m + 1, "pings": len(v), "p50_ms": round(percentile(v, 50) * 1000, 2),
         "p99_ms": round(percentile(v, 99) * 1000, 2), "max_ms": round(max(v) * 1000, 2)}
        for m, v in sorted(minutes.items())
    ]


def traced_bytes(sock: str) -> int:
    status, data, _ = request(sock, "GET", "/debug/vars")
    if status != 200:
        return -1
    return int(json.loads(data)["memstats"].get("traced_bytes", -1))


def heap(sock: str, query: str = "") -> str:
    status, data, _ = request(sock, "GET", "/debug/pprof/heap" + query)
    return data.decode("utf-8", "replace") if status == 200 else ""


def churn(daemon: OwnDaemon, containers: int, minutes: float, threads: int = 8) -> dict:
    """Rounds of C{containers} containers started then removed, for
    C{minutes}.  Round 0 warms up; tracemalloc starts after it (a first heap
    profile) and the snapshot after round 1 is the base that the last one
    is compared with (C{GET /debug/pprof/heap?diff=1}); every round reads
    the traced bytes and the RSS in between."""
    sock = daemon.sock
    pinger = Pinger(sock)
    pinger.start()
    rounds = []
    deadline = time.monotonic() + minutes * 60
    base_round = 1
    n = 0
    try:
        while n <= base_round + 1 or time.monotonic() < deadline:
            started = time.monotonic()
            first_ping = len(pinger.samples)

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
            pings = pinger.since(first_ping)
            if n == 0:
                heap(sock)  # tracing starts
            elif n == base_round:
                heap(sock)  # the base snapshot
            rounds.append({
                "round": n, "seconds": round(time.monotonic() - started, 1), "rm_errors": len(bad),
                "rss_kib": rss_kib(daemon.proc.pid), "traced_bytes": traced_bytes(sock) if n >= base_round else -1,
                "ping_p50_ms": round(percentile(pings, 50) * 1000, 2),
                "ping_p99_ms": round(percentile(pings, 99) * 1000, 2),
                "ping_max_ms": round(max(pings) * 1000, 2) if pings else None,
            })
            log("round %(round)d: %(seconds)s s, rss %(rss_kib)d KiB, traced %(traced_bytes)d B, "
                "ping p50 %(ping_p50_ms)s p99 %(ping_p99_ms)s max %(ping_max_ms)s ms" % rounds[-1])
            n += 1
    finally:
        pinger.stopped.set()
        pinger.join(15)
    growth = heap(sock, "?diff=1")
    all_pings = pinger.since(0)
    traced = [r["traced_bytes"] for r in rounds if r["round"] >= base_round and r["traced_bytes"] >= 0]
    return {
        "containers_per_round": containers, "rounds": len(rounds), "minutes": minutes,
        "ping_p50_ms": round(percentile(all_pings, 50) * 1000, 2),
        "ping_p99_ms": round(percentile(all_pings, 99) * 1000, 2),
        "ping_max_ms": round(max(all_pings) * 1000, 2) if all_pings else None,
        "ping_failures": pinger.failures,
        "ping_per_minute": per_minute(pinger.samples),
        "rss_kib_first_last": [rounds[0]["rss_kib"], rounds[-1]["rss_kib"]],
        "traced_bytes_base_last": [traced[0] if traced else -1, traced[-1] if traced else -1],
        "traced_growth_per_round_bytes": (
            round(statistics.linear_regression(range(len(traced)), traced).slope) if len(traced) > 2 else None
        ),
        "heap_growth_top": growth.splitlines()[:16],
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
