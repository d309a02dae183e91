#!/usr/bin/env python3
"""
Name resolution latency from inside a container: A queries for another
container's name sent to the embedded DNS address 127.0.0.11:53 from a
container's network namespace (a Python client under ``nsenter --net``, so
each answer is timed to the microsecond), one query at a time; median, p90
and p99 on a twistedock of this checkout and optionally on another daemon
(``--peer``, e.g. a reference dockerd started with its networking:
``REFERENCE_DOCKERD_NETWORK=1``), the daemons' rounds interleaved.

    python benchmarks/dns.py --queries 2000
    python benchmarks/dns.py --peer unix:///tmp/reference-dockerd-net/docker.sock

It starts its own twistedock (no default bridge), imports a busybox image
built from /bin/busybox, makes a user network with a server and a client
container on each daemon, and removes them at the end. Needs root, netavark.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lifecycle import IMAGE, BenchError, Client, OwnDaemon, busybox_tar, query  # noqa: E402

NETWORK = "twistedock-dnsbench"
SUBNET = "10.250.78.0/24"
SERVER = "dnsbench-server"
CLIENT = "dnsbench-client"

#: Run in the client container's network namespace: C{count} A queries for
#: argv[1], one at a time; each latency in microseconds, one per line.
QUERIES = r"""
import os, socket, struct, sys, time
name, count = sys.argv[1], int(sys.argv[2])
qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect(("127.0.0.11", 53))
out, failed = [], 0
for i in range(count):
    ident = i & 0xffff
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    t0 = time.perf_counter()
    s.send(packet)
    try:
        while True:
            answer = s.recv(512)
            if struct.unpack("!H", answer[:2])[0] == ident:
                break
    except socket.timeout:
        failed += 1
        continue
    elapsed = time.perf_counter() - t0
    rcode, answers = answer[3] & 0x0f, struct.unpack("!H", answer[6:8])[0]
    if rcode or not answers:
        failed += 1
        continue
    out.append("%d" % (elapsed * 1e6))
print("\n".join(out))
print("failed %d" % failed, file=sys.stderr)
"""


class Unbridged(OwnDaemon):
    def command(self):
        return super().command() + ["--bridge", "none"]


def ensure_image(client: Client) -> None:
    status, _ = client.request("GET", "/images/%s/json" % IMAGE)
    if status == 200:
        return
    client.call("POST", "/images/create?" + query(fromSrc="-", repo="busybox", tag="latest"), busybox_tar(),
                headers={"Content-Type": "application/x-tar"})


def run_container(client: Client, name: str) -> dict:
    body = {"Image": IMAGE, "Cmd": ["sleep", "3600"], "HostConfig": {"NetworkMode": NETWORK}}
    cid = client.json("POST", "/containers/create?" + query(name=name), body, expect=(201,))["Id"]
    client.call("POST", "/containers/%s/start" % cid, expect=(204,))
    return client.json("GET", "/containers/%s/json" % cid)


def prepare(client: Client) -> int:
    """The network and both containers; the client's pid."""
    ensure_image(client)
    client.call("POST", "/networks/create", {"Name": NETWORK, "IPAM": {"Config": [{"Subnet": SUBNET}]}},
                expect=(201,))
    run_container(client, SERVER)
    return run_container(client, CLIENT)["State"]["Pid"]


def cleanup(client: Client) -> None:
    for name in (CLIENT, SERVER):
        client.request("DELETE", "/containers/%s?force=1" % name)
    client.request("DELETE", "/networks/" + NETWORK)


def lookups(pid: int, count: int) -> list:
    argv = ["nsenter", "--net=/proc/%d/ns/net" % pid, sys.executable, "-c", QUERIES, SERVER, str(count)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60 + count)
    if done.returncode != 0:
        raise BenchError("queries failed: %s" % done.stderr.strip())
    values = [int(line) / 1e3 for line in done.stdout.split()]
    if not values:
        raise BenchError("no query answered: %s" % done.stderr.strip())
    return values


def percentile(values: list, p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--peer", help="another daemon, e.g. unix:///tmp/reference-dockerd-net/docker.sock")
    p.add_argument("--queries", type=int, default=2000, help="per daemon, in rounds of 100 (2000)")
    args = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="tddns-", dir="/tmp")
    own = Unbridged(workdir)
    targets = []
    try:
        own.start()
        targets.append(("twistedock", Client(own.sock)))
        if args.peer:
            targets.append(("peer", Client(args.peer[len("unix://"):])))
        pids = {name: prepare(client) for name, client in targets}
        for name, _ in targets:
            lookups(pids[name], 20)  # warm-up
        times = {name: [] for name, _ in targets}
        for _ in range(max(1, args.queries // 100)):
            for name, _ in targets:
                times[name] += lookups(pids[name], 100)
        print("| daemon | queries | median ms | p90 ms | p99 ms | vs twistedock |")
        print("|---|---:|---:|---:|---:|---:|")
        base = statistics.median(times["twistedock"])
        for name, _ in targets:
            values = times[name]
            median = statistics.median(values)
            print("| %s | %d | %.3f | %.3f | %.3f | %.2fx |" % (
                name, len(values), median, percentile(values, 0.9), percentile(values, 0.99), median / base))
        print(json.dumps({"load": os.getloadavg()}))
    finally:
        for _, client in targets:
            try:
                cleanup(client)
            except OSError:
                pass
            client.close()
        own.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
