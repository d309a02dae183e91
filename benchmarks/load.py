#!/usr/bin/env python3
"""
Load and leaks: does the daemon answer a burst of concurrent requests, and
does its memory stay flat while containers come and go for a long time?

    python benchmarks/load.py --quick          # a short run
    python benchmarks/load.py                  # 1,000 requests; 200 containers x 10 minutes
    python benchmarks/load.py --quick --debug-latency   # where the reactor stalls
    python benchmarks/load.py --quick --no-burst --no-leaks   # the latency phase only (A/B runs)

What is measured (on a daemon of this checkout, in temporary directories;
everything it made is removed), /_ping timed every 50 ms throughout by a
process of its own (a new connection a ping, as the docker CLI makes one a
command; its own process so that the client threads' GIL does not delay
it):

1. a burst of N concurrent API requests (default 1,000; 200 client
   threads), mixed: list (all), inspect, create, remove (-f): how many were
   answered without error, the latency percentiles, the daemon's RSS before
   and after;
2. the floor: /_ping's p50/p99/max on the idle daemon (C{--idle-seconds}),
   the same after the churn: what the churn's figures compare with;
3. latency: C{--containers} containers created and started (8 client
   threads), then all removed (rm -f), again and again for C{--minutes},
   on a daemon without --debug (no request log, no tracemalloc): /_ping's
   p50/p99/max per round, per minute and overall, the daemon's RSS after
   each round (with C{--debug-latency} on a --debug daemon, tracemalloc
   off, with its reactor stall log summed up: where the reactor stalled);
4. leaks: the same daemon restarted with --debug, C{--leak-rounds} more
   rounds: tracemalloc starts after the first (a heap profile), the
   snapshot after the third is the base, the live bytes it traces are read
   after every round from then on (a slope: bytes per round) and the top
   growth lines of the snapshot diff at the end (GET
   /debug/pprof/heap?diff=1); the pings under tracing too.

It needs root, runc, conmon and /bin/busybox.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
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


def ping_once(sock: str, timeout: float = 10.0) -> Tuple[int, float]:
    """One C{GET /_ping} on a new connection, as the docker CLI makes one
    per command: (status, seconds from connect to the answer's end)."""
    started = time.monotonic()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(sock)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        return 0, time.monotonic() - started
    finally:
        s.close()
    try:
        status = int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = 0
    return status, time.monotonic() - started


def pinger_main(sock: str, out: str, every: float) -> int:
    """The pinger process: a ping every C{every} seconds, a line each
    (monotonic time, seconds, status) appended to C{out}, until SIGTERM."""
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    with open(out, "a") as f:
        while not stopped:
            at = time.monotonic()
            status, seconds = ping_once(sock)
            f.write("%.6f %.6f %d\n" % (at, seconds, status))
            f.flush()
            time.sleep(max(0.0, every - (time.monotonic() - at)))
    return 0


class Pinger:
    """/_ping every 50 ms from a process of its own (so that neither the
    benchmark's client threads nor its GIL delay the pings), a new
    connection each time: its samples read back by time (CLOCK_MONOTONIC
    is the system's, shared by both processes)."""

    def __init__(self, sock: str, path: str, every: float = 0.05) -> None:
        self.path = path
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--pinger", sock, path,
                                      "--every", str(every)])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def samples(self, since: float = 0.0, until: float = float("inf")) -> List[Tuple[float, float, int]]:
        out = []
        try:
            with open(self.path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3:
                        at, seconds, status = float(parts[0]), float(parts[1]), int(parts[2])
                        if since <= at < until:
                            out.append((at, seconds, status))
        except OSError:
            pass
        return out


def ping_figures(samples: List[Tuple[float, float, int]]) -> dict:
    ok = [seconds for _, seconds, status in samples if status == 200]
    return {
        "pings": len(samples), "failures": len(samples) - len(ok),
        "p50_ms": round(percentile(ok, 50) * 1000, 2), "p99_ms": round(percentile(ok, 99) * 1000, 2),
        "max_ms": round(max(ok) * 1000, 2) if ok else None,
    }


def per_minute(samples: List[Tuple[float, float, int]], started: float) -> List[dict]:
    """p50, p99 and max of the pings of each minute."""
    minutes: dict = {}
    for sample in samples:
        minutes.setdefault(int((sample[0] - started) // 60), []).append(sample)
    return [dict(minute=m + 1, **ping_figures(v)) for m, v in sorted(minutes.items())]


def idle(pinger: Pinger, seconds: float) -> dict:
    """The floor: the pings of the idle daemon over C{seconds}."""
    started = time.monotonic()
    time.sleep(seconds)
    return dict(seconds=seconds, **ping_figures(pinger.samples(started)))


def traced_bytes(sock: str) -> int:
    status, data, _ = request(sock, "GET", "/debug/vars")
    if status != 200:
        return -1
    return int(json.loads(data)["memstats"].get("traced_bytes", -1))


def debug_vars(sock: str) -> dict:
    status, data, _ = request(sock, "GET", "/debug/vars")
    return json.loads(data) if status == 200 else {}


def heap(sock: str, query: str = "") -> str:
    status, data, _ = request(sock, "GET", "/debug/pprof/heap" + query)
    return data.decode("utf-8", "replace") if status == 200 else ""


def one_round(sock: str, n: int, containers: int, threads: int) -> int:
    """C{containers} containers created and started from C{threads}
    threads, then removed (rm -f): how many removals failed."""

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
    return len([s for s in removed if s != 204])


def churn(daemon: OwnDaemon, pinger: Pinger, containers: int, minutes: float, threads: int = 8) -> dict:
    """Latency: rounds of C{containers} containers started then removed,
    for C{minutes} (at least 2 rounds), tracemalloc off; /_ping's figures
    per round, per minute and overall, and the daemon's RSS after each
    round."""
    sock = daemon.sock
    rounds = []
    began = time.monotonic()
    deadline = began + minutes * 60
    n = 0
    while n < 2 or time.monotonic() < deadline:
        started = time.monotonic()
        bad = one_round(sock, n, containers, threads)
        pings = ping_figures(pinger.samples(started))
        rounds.append({"round": n, "seconds": round(time.monotonic() - started, 1), "rm_errors": bad,
                       "rss_kib": rss_kib(daemon.proc.pid), "ping": pings})
        log("round %d: %s s, rss %d KiB, ping p50 %s p99 %s max %s ms" % (
            n, rounds[-1]["seconds"], rounds[-1]["rss_kib"], pings["p50_ms"], pings["p99_ms"], pings["max_ms"]))
        n += 1
    samples = pinger.samples(began)
    rss = [r["rss_kib"] for r in rounds]
    return {
        "containers_per_round": containers, "rounds": len(rounds), "minutes": minutes,
        "ping": ping_figures(samples),
        "ping_per_minute": per_minute(samples, began),
        "rss_kib_first_last": [rss[0], rss[-1]],
        "rss_growth_per_round_kib": (
            round(statistics.linear_regression(range(len(rss) - 1), rss[1:]).slope, 1) if len(rss) > 3 else None
        ),
        "rounds_detail": rounds,
    }


def leaks(daemon: OwnDaemon, pinger: Pinger, containers: int, rounds: int, threads: int = 8) -> dict:
    """Leaks, under tracemalloc (on a --debug daemon): round 0 warms up,
    tracing starts after it (a first heap profile); round 1 fills what is
    bounded (the 256 events kept), and the snapshot after round 2 is the
    base the last one is compared with (C{GET /debug/pprof/heap?diff=1});
    the traced bytes after every round from 2 on, so that growth shows as
    a slope (bytes per round). The pings are reported too: what tracing
    costs."""
    sock = daemon.sock
    began = time.monotonic()
    traced = []
    rounds = max(rounds, 5)
    for n in range(rounds):
        bad = one_round(sock, 1000 + n, containers, threads)
        if n in (0, 2):
            heap(sock)  # round 0: tracing starts; round 2: the base snapshot
        if n >= 2:
            traced.append(traced_bytes(sock))
        log("leak round %d: rm errors %d, rss %d KiB, traced %s B" % (
            n, bad, rss_kib(daemon.proc.pid), traced[-1] if traced else "-"))
    growth = heap(sock, "?diff=1")
    return {
        "containers_per_round": containers, "rounds": rounds,
        "rss_kib_last": rss_kib(daemon.proc.pid),
        "traced_bytes_base_last": [traced[0], traced[-1]],
        "traced_growth_per_round_bytes": round(statistics.linear_regression(range(len(traced)), traced).slope),
        "heap_growth_top": growth.splitlines()[:16],
        "ping_under_tracing": ping_figures(pinger.samples(began)),
    }


def stall_sites(log_path: str, top: int = 8) -> List[str]:
    """The stall monitor's lines in the daemon's log: the innermost frame
    of each stall's stack, with their count and total milliseconds; then
    the other threads' busy frames seen during stalls, the same way."""
    sites: dict = {}
    others: dict = {}
    try:
        with open(log_path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for i, line in enumerate(lines):
        if "reactor stalled" not in line:
            continue
        try:
            ms = float(line.split("reactor stalled ")[1].split(" ms")[0])
        except (IndexError, ValueError):
            continue
        stack = []
        for follow in lines[i + 1:i + 1 + 10]:
            if not follow.startswith("\t"):  # (twistd's continuation lines)
                break
            if "other threads busy at:" in follow:
                for site in follow.split("other threads busy at:")[1].split(";"):
                    site = site.strip().rsplit(" (", 1)[0]
                    if site and site != "none":
                        count, total = others.get(site, (0, 0.0))
                        others[site] = (count + 1, total + ms)
                break
            stack.append(follow.strip())
        key = stack[-1] if stack else "?"
        count, total = sites.get(key, (0, 0.0))
        sites[key] = (count + 1, total + ms)
    ordered = sorted(sites.items(), key=lambda kv: -kv[1][1])[:top]
    busy = sorted(others.items(), key=lambda kv: -kv[1][1])[:top]
    return (["%d stalls, %.0f ms: %s" % (c, t, k) for k, (c, t) in ordered]
            + ["other threads busy in %d stalls (%.0f ms): %s" % (c, t, k) for k, (c, t) in busy])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="200 requests; 20 containers x 1 minute; 7 leak rounds")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--leak-rounds", type=int, default=10, help="rounds under tracemalloc (at least 5)")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="the idle floor's length")
    parser.add_argument("--debug-latency", action="store_true",
                        help="the latency phases on a --debug daemon (request log, stall monitor; no "
                        "tracemalloc): where the reactor stalls")
    parser.add_argument("--no-burst", action="store_true")
    parser.add_argument("--no-leaks", action="store_true", help="no leak phase (latency comparisons)")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--pinger", nargs=2, metavar=("SOCKET", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--every", type=float, default=0.05, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pinger:
        return pinger_main(args.pinger[0], args.pinger[1], args.every)
    if args.quick:
        args.requests, args.threads, args.containers, args.minutes = 200, 50, 20, 1.0
        args.leak_rounds, args.idle_seconds = 7, 10.0
    workdir = tempfile.mkdtemp(prefix="td-load-")
    # Tracing starts with the first heap profile (the leak phase's), not
    # with the daemon: it slows every allocation.
    os.environ["TWISTEDOCK_TRACEMALLOC"] = "0"
    daemon = (DebugDaemon if args.debug_latency else OwnDaemon)(workdir)
    figures: dict = {"loadavg_start": os.getloadavg()}
    pinger = None
    try:
        daemon.start()
        with closing(Client(daemon.sock)) as c:
            status, data = c.request("POST", "/images/create?fromSrc=-&repo=busybox&tag=latest",
                                     busybox_tar(), {"Content-Type": "application/x-tar"})
            if status != 200:
                raise RuntimeError("import: %s %r" % (status, data[:200]))
        if not args.no_burst:
            log("burst of %d requests" % args.requests)
            figures["burst"] = burst(daemon, args.requests, args.threads)
            log(json.dumps(figures["burst"]))
        pinger = Pinger(daemon.sock, os.path.join(workdir, "pings"))
        log("idle floor: %.0f s of pings" % args.idle_seconds)
        figures["idle_before"] = idle(pinger, args.idle_seconds)
        log(json.dumps(figures["idle_before"]))
        log("churn: %d containers a round for %.1f min" % (args.containers, args.minutes))
        figures["churn"] = churn(daemon, pinger, args.containers, args.minutes)
        figures["loadavg_churn_end"] = os.getloadavg()
        figures["idle_after"] = idle(pinger, args.idle_seconds)
        log(json.dumps(figures["idle_after"]))
        if args.debug_latency:
            figures["stalls"] = debug_vars(daemon.sock).get("reactor", {})
            figures["stall_sites"] = stall_sites(daemon.log_path)
        pinger.stop()
        pinger = None
        if not args.no_leaks:
            # Leaks: the same data root under a --debug daemon.
            complaint = daemon.stop()
            if complaint:
                log(complaint)
            daemon = DebugDaemon(workdir)
            daemon.start()
            pinger = Pinger(daemon.sock, os.path.join(workdir, "pings"))
            log("leaks: %d rounds of %d containers under tracemalloc" % (args.leak_rounds, args.containers))
            figures["leaks"] = leaks(daemon, pinger, args.containers, args.leak_rounds)
        figures["loadavg_end"] = os.getloadavg()
    finally:
        if pinger is not None:
            pinger.stop()
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
