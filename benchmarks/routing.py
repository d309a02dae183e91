#!/usr/bin/env python3
"""
Per-request CPU of twistedock's routing and middleware, beside a bare
twisted.web resource, in the same run.

    python3 benchmarks/routing.py                          # this checkout
    python3 benchmarks/routing.py --tree /tmp/old --tree .  # two checkouts, one run

One server process per checkout (``--serve``, started by the script) listens
on two 127.0.0.1 ports: one serves the composed root resource of the checkout
with the in-memory backends of ``tests/memory.py`` (one container created),
the other a bare ``twisted.web`` leaf resource that routes nothing and
answers each request with the status, headers and body twistedock answers it
(asked once at start-up; ``--bare minimal``: only Content-Type and
Content-Length of its headers, as this script measured before).  ``wrk`` (one thread, ``--connections`` keep-alive
connections) drives each port in turn for ``--seconds``; the server's CPU
time (user + system, from ``/proc/PID/stat``) over the requests wrk counted
gives milliseconds of CPU per 1,000 requests.  Each round measures every port
once per request, the order rotated from round to round; the table gives
medians, and the median over rounds of each round's ratio twistedock / bare
(target: at most 1.5).  It needs ``wrk`` (``apt-get install -y wrk``) and the
checkout's Python dependencies; nothing else.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
CONTAINER = "0123456789ab"
PATHS = (
    "/v1.41/_ping",
    "/v1.41/containers/%s/json" % (CONTAINER,),
    "/v1.41/containers/json",
    "/v1.41/version",
    "/v1.41/no/such/route",
)
TICKS = os.sysconf("SC_CLK_TCK")


# -- the server process -------------------------------------------------------


def serve(tree: str, bare_headers: str) -> None:
    """Listen on two ports and print them; run until killed."""
    sys.path.insert(0, tree)
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.testing import StringTransport
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from tests.memory import API

    class QuietSite(Site):
        displayTracebacks = False

        def log(self, request) -> None:
            pass

    api = API()
    ensureDeferred(api.containers.create(CONTAINER, {}, {}, {}, "1.41"))
    site = QuietSite(api.resource)

    def answer(path: str) -> Tuple[int, List[Tuple[bytes, List[bytes]]], bytes]:
        """The status, headers (but Date) and body twistedock answers."""
        channel = site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % (path.encode(),))
        head, body = transport.value().split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        headers = [tuple(line.split(b": ", 1)) for line in lines[1:]]
        return int(lines[0].split()[1]), [(k, [v]) for k, v in headers if k != b"Date"], body

    answers = {path.encode(): answer(path) for path in PATHS}
    for status, headers, body in answers.values():
        if bare_headers == "minimal":
            headers[:] = [(k, v) for k, v in headers if k in (b"Content-Type", b"Content-Length")]

    class Bare(Resource):
        """Routes nothing: the same status, headers and body, set as a
        plain twisted.web resource sets them."""

        isLeaf = True

        def render(self, request):
            status, headers, body = answers[request.path]
            request.setResponseCode(status)
            for name, values in headers:
                request.setHeader(name, values[0])
            return body

    bare = reactor.listenTCP(0, QuietSite(Bare()), interface="127.0.0.1")
    twistedock = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(json.dumps({"bare": bare.getHost().port, "twistedock": twistedock.getHost().port}), flush=True)
    reactor.run()


# -- the driver ---------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % (pid,)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line (1-based).
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk(url: str, seconds: float, connections: int, expect_error: bool = False) -> int:
    out = subprocess.run(
        ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, url],
        check=True, capture_output=True, text=True,
    ).stdout
    match = re.search(r"(\d+) requests in", out)
    if match is None or ("Non-2xx" in out) != expect_error:
        raise RuntimeError("unexpected wrk output for %s:\n%s" % (url, out))
    return int(match.group(1))


def measure(pid: int, url: str, seconds: float, connections: int) -> Tuple[float, float]:
    """(ms of server CPU per 1,000 requests, requests per second)."""
    before, started = cpu_seconds(pid), time.monotonic()
    requests = wrk(url, seconds, connections, url.endswith(PATHS[-1]))
    cpu, wall = cpu_seconds(pid) - before, time.monotonic() - started
    return cpu / requests * 1e6, requests / wall


def start_server(tree: str, bare_headers: str) -> Tuple[subprocess.Popen, Dict[str, int]]:
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", "--tree", tree, "--bare", bare_headers],
        stdout=subprocess.PIPE, text=True,
    )
    return server, json.loads(server.stdout.readline())


def run(args) -> Dict[str, Dict[str, Dict[str, List[Tuple[float, float]]]]]:
    """tree -> path -> server -> [(CPU ms per 1,000 requests, requests/s)]:
    one server process per tree, every round measuring each tree's bare
    and twistedock ports in turn, the order rotated from round to round."""
    servers = {}
    try:
        for tree in args.tree:
            servers[tree] = start_server(tree, args.bare)
        slots = [(tree, name) for tree in args.tree for name in ("bare", "twistedock")]
        paths = [path for path in PATHS if not args.only or any(part in path for part in args.only)]
        results = {tree: {path: {"bare": [], "twistedock": []} for path in paths} for tree in args.tree}
        for tree, name in slots:  # warm-up, not counted
            for path in paths:
                wrk("http://127.0.0.1:%d%s" % (servers[tree][1][name], path), 1, args.connections, path == PATHS[-1])
        for i in range(args.rounds):
            order = slots[i % len(slots):] + slots[: i % len(slots)]
            if i % 2:
                order.reverse()
            for path in paths:
                for tree, name in order:
                    server, ports = servers[tree]
                    url = "http://127.0.0.1:%d%s" % (ports[name], path)
                    results[tree][path][name].append(measure(server.pid, url, args.seconds, args.connections))
        return results
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait()


def report(results, bare_headers: str) -> None:
    """Per tree and request: median CPU per 1,000 requests of each server,
    and the median over rounds of the round's ratio twistedock / bare (a
    slow period of the machine falls on both halves of a ratio)."""
    print("routing benchmark, bare resource with %s headers, load %s" % (
        bare_headers, " ".join(open("/proc/loadavg").read().split()[:3]),
    ))
    print("| tree | request | bare CPU ms/1k req | twistedock CPU ms/1k req | ratio (median of rounds) | ratio range |")
    print("| --- | --- | --- | --- | --- | --- |")
    for tree, by_path in results.items():
        for path, by_name in by_path.items():
            bare = [cpu for cpu, _ in by_name["bare"]]
            ours = [cpu for cpu, _ in by_name["twistedock"]]
            ratios = [o / b for o, b in zip(ours, bare)]
            print("| %s | GET %s | %.1f | %.1f | %.2fx | %.2f-%.2f |" % (
                tree, path.replace(CONTAINER, "{id}"), statistics.median(bare), statistics.median(ours),
                statistics.median(ratios), min(ratios), max(ratios),
            ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tree", action="append",
        help="a checkout to measure (default: this one); repeat it to compare checkouts in one run",
    )
    parser.add_argument("--seconds", type=float, default=2, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=7, help="runs per request and server")
    parser.add_argument("--connections", type=int, default=10, help="wrk's keep-alive connections")
    parser.add_argument("--json", help="also write the samples to this file")
    parser.add_argument(
        "--bare", choices=("same", "minimal"), default="same",
        help="the bare resource sends twistedock's headers (same), or only Content-Type and Content-Length",
    )
    parser.add_argument("--only", action="append", help="measure only the requests whose path holds this")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.tree = [os.path.abspath(tree) for tree in args.tree or [CHECKOUT]]
    if args.serve:
        serve(args.tree[0], args.bare)
        return
    results = run(args)
    report(results, args.bare)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
