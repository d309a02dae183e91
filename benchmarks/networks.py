#!/usr/bin/env python3
"""
Network benchmarks: the life cycle (create, start, wait, remove) of
``busybox true`` with ``--network none``, on the default bridge and on a user
network, rounds interleaved, and the throughput of a published port from the
host's loopback, on a twistedock of this checkout and optionally
on another daemon (``--peer``, e.g. a reference dockerd started with its
networking: ``REFERENCE_DOCKERD_NETWORK=1``).

    python benchmarks/networks.py --rounds 20
    python benchmarks/networks.py --peer unix:///tmp/reference-dockerd/docker.sock

It starts its own twistedock (a bridge of its own, ``tdbench0``), imports a
busybox image built from /bin/busybox, and removes what it made (containers,
its user network) at the end, on the peer too. Needs root, netavark.
"""

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lifecycle import (  # noqa: E402
    IMAGE, BenchError, Client, OwnDaemon, busybox_tar, query,
)

NETWORK = "twistedock-bench"
SUBNET = "10.250.77.0/24"


class BridgedDaemon(OwnDaemon):
    def command(self):
        return super().command() + ["--bridge", "tdbench0"]


def ensure_image(client: Client) -> None:
    status, _ = client.request("GET", "/images/%s/json" % IMAGE)
    if status == 200:
        return
    body = busybox_tar()
    client.call("POST", "/images/create?" + query(fromSrc="-", repo="busybox", tag="latest"), body,
                headers={"Content-Type": "application/x-tar"})


def lifecycle(client: Client, mode: str) -> float:
    body = {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"NetworkMode": mode}}
    t0 = time.perf_counter()
    cid = client.json("POST", "/containers/create", body, expect=(201,))["Id"]
    client.call("POST", "/containers/%s/start" % cid, expect=(204,))
    code = client.json("POST", "/containers/%s/wait" % cid)["StatusCode"]
    client.call("DELETE", "/containers/%s" % cid, expect=(204,))
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise BenchError("`true` exited %d (%s)" % (code, mode))
    return elapsed


def port_throughput(client: Client, megabytes: int) -> float:
    """MB/s from the host's loopback through a published port to a busybox
    `nc` that throws the bytes away (timed until it has them all and exits)."""
    body = {"Image": IMAGE, "Cmd": ["sh", "-c", "nc -l -p 80 > /dev/null"], "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}}
    cid = client.json("POST", "/containers/create", body, expect=(201,))["Id"]
    try:
        client.call("POST", "/containers/%s/start" % cid, expect=(204,))
        doc = client.json("GET", "/containers/%s/json" % cid)
        port = int(doc["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        block = b"\0" * (1 << 20)
        for _ in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise BenchError("the published port does not answer")
        t0 = time.perf_counter()
        with s:
            for _ in range(megabytes):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
        client.json("POST", "/containers/%s/wait" % cid)
        return megabytes / (time.perf_counter() - t0)
    finally:
        client.call("DELETE", "/containers/%s?force=1" % cid, expect=(204,))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--peer", help="another daemon, e.g. unix:///tmp/reference-dockerd/docker.sock")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--megabytes", type=int, default=256, help="sent through the published port (256)")
    args = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="tdnet-", dir="/tmp")
    own = BridgedDaemon(workdir)
    targets = []
    try:
        own.start()
        targets.append(("twistedock", Client(own.sock)))
        if args.peer:
            targets.append(("peer", Client(args.peer[len("unix://"):])))
        for _, client in targets:
            ensure_image(client)
            client.call("POST", "/networks/create",
                        {"Name": NETWORK, "IPAM": {"Config": [{"Subnet": SUBNET}]}}, expect=(201,))
        modes = ("none", "bridge", NETWORK)
        times = {(name, mode): [] for name, _ in targets for mode in modes}
        for name, client in targets:
            for mode in modes:
                lifecycle(client, mode)  # warm-up
        for _ in range(args.rounds):
            for mode in modes:
                for name, client in targets:
                    times[(name, mode)].append(lifecycle(client, mode))
        print("| daemon | network | median ms | p90 ms | vs none |")
        print("|---|---|---|---|---|")
        for name, _ in targets:
            base = statistics.median(times[(name, "none")])
            for mode in modes:
                values = sorted(times[(name, mode)])
                median = statistics.median(values)
                p90 = values[int(0.9 * (len(values) - 1))]
                print("| %s | %s | %.1f | %.1f | %.2fx |" % (name, mode if mode != NETWORK else "user network",
                                                           median * 1e3, p90 * 1e3, median / base))
        print()
        print("| daemon | published port, loopback to busybox nc, MB/s |")
        print("|---|---:|")
        for name, client in targets:
            print("| %s | %.0f |" % (name, port_throughput(client, args.megabytes)))
    finally:
        for _, client in targets:
            try:
                client.request("DELETE", "/networks/" + NETWORK)
            except OSError:
                pass
            client.close()
        own.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
