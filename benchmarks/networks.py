#!/usr/bin/env python3
"""
Network benchmarks: the life cycle (create, start, wait, remove) of
``busybox true`` with ``--network none``, on the default bridge and on a user
network, rounds interleaved, with the time of each step; and the throughput
of a published port from the host's loopback to a busybox ``nc`` sink,
through twistedock's userland proxy and through kernel NAT
(``--userland-proxy=false``), on twistedocks of this checkout and optionally
on another daemon (``--peer``, e.g. a reference dockerd started with its
networking, ``REFERENCE_DOCKERD_NETWORK=1``: its docker-proxy).

    python benchmarks/networks.py --rounds 20
    python benchmarks/networks.py --peer unix:///tmp/reference-dockerd-net/docker.sock

It starts its own twistedocks (bridges of their own, ``tdbench0`` and
``tdbench1``, on test subnets), imports a busybox image built from
/bin/busybox, and removes what it made (containers, its user networks) at
the end, on the peer too. Needs root, netavark.
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
#: The user network's subnet on each daemon (one host: they must differ).
SUBNETS = {"twistedock": "10.250.77.0/24", "peer": "10.250.78.0/24"}


class BridgedDaemon(OwnDaemon):
    """A twistedock with a bridge and subnet of its own; C{extra} flags."""

    def __init__(self, workdir: str, bridge: str, bip: str, extra=()) -> None:
        super().__init__(workdir)
        self.bridge, self.bip, self.extra = bridge, bip, list(extra)

    def command(self):
        return super().command() + ["--bridge", self.bridge, "--bip", self.bip] + self.extra


def ensure_image(client: Client) -> None:
    status, _ = client.request("GET", "/images/%s/json" % IMAGE)
    if status == 200:
        return
    body = busybox_tar()
    client.call("POST", "/images/create?" + query(fromSrc="-", repo="busybox", tag="latest"), body,
                headers={"Content-Type": "application/x-tar"})


STEPS = ("create", "start", "wait", "rm")


def lifecycle(client: Client, mode: str):
    """The life cycle's time and each step's, in seconds."""
    body = {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"NetworkMode": mode}}
    t0 = time.perf_counter()
    cid = client.json("POST", "/containers/create", body, expect=(201,))["Id"]
    t1 = time.perf_counter()
    client.call("POST", "/containers/%s/start" % cid, expect=(204,))
    t2 = time.perf_counter()
    code = client.json("POST", "/containers/%s/wait" % cid)["StatusCode"]
    t3 = time.perf_counter()
    client.call("DELETE", "/containers/%s" % cid, expect=(204,))
    t4 = time.perf_counter()
    if code != 0:
        raise BenchError("`true` exited %d (%s)" % (code, mode))
    return t4 - t0, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)


def wait_listening(pid: int, port: int, timeout: float = 10.0) -> None:
    """Until a TCP socket listens on C{port} in the namespace of C{pid}."""
    deadline = time.monotonic() + timeout
    wanted = ":%04X" % port
    while time.monotonic() < deadline:
        lines = []
        for table in ("tcp", "tcp6"):
            try:
                with open("/proc/%d/net/%s" % (pid, table)) as f:
                    lines += f.read().splitlines()[1:]
            except OSError:
                pass
        if any(line.split()[1].endswith(wanted) and line.split()[3] == "0A" for line in lines):
            return
        time.sleep(0.02)
    raise BenchError("nothing listens on port %d in the container" % port)


def port_throughput(client: Client, megabytes: int) -> float:
    """MB/s from the host's loopback through a published port to a busybox
    `nc` that throws the bytes away (timed until it has them all and exits)."""
    # dd reads the socket itself (1 MiB reads): nc's own copy loop would
    # be the narrowest part of the path.
    body = {"Image": IMAGE, "Cmd": ["nc", "-l", "-p", "80", "-e", "dd", "of=/dev/null", "bs=1M"],
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}}
    cid = client.json("POST", "/containers/create", body, expect=(201,))["Id"]
    try:
        client.call("POST", "/containers/%s/start" % cid, expect=(204,))
        doc = client.json("GET", "/containers/%s/json" % cid)
        port = int(doc["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        block = b"\0" * (1 << 20)
        # A proxy accepts before the container listens: wait for nc's
        # listening socket in the container's namespace, then connect.
        wait_listening(doc["State"]["Pid"], 80)
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        t0 = time.perf_counter()
        with s:
            for _ in range(megabytes):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
        client.json("POST", "/containers/%s/wait" % cid)
        return megabytes / (time.perf_counter() - t0)
    finally:
        client.call("DELETE", "/containers/%s?force=1" % cid, expect=(204,))


def lifecycle_table(targets, modes, times, steps, rounds: int) -> None:
    print("Life cycle of `busybox true` (create, start, wait, rm), medians of %d interleaved rounds" % rounds)
    print()
    print("| daemon | network | median ms | p90 ms | vs its none | vs peer | create | start | wait | rm |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, _ in targets:
        base = statistics.median(times[(name, "none")])
        for mode in modes:
            values = sorted(times[(name, mode)])
            median = statistics.median(values)
            p90 = values[int(0.9 * (len(values) - 1))]
            peer = times.get(("peer", mode))
            versus = "%.2fx" % (median / statistics.median(peer)) if peer and name != "peer" else ""
            parts = " | ".join("%.0f" % (statistics.median(p[i] for p in steps[(name, mode)]) * 1e3)
                               for i in range(len(STEPS)))
            print("| %s | %s | %.1f | %.1f | %.2fx | %s | %s |" % (
                name, mode if mode != NETWORK else "user network", median * 1e3, p90 * 1e3,
                median / base, versus, parts))
    print()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--peer", help="another daemon, e.g. unix:///tmp/reference-dockerd-net/docker.sock")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--megabytes", type=int, default=256, help="sent through the published port (256)")
    p.add_argument("--port-rounds", type=int, default=3, help="throughput rounds per daemon (3)")
    p.add_argument("--ports-only", action="store_true", help="only the published port's throughput")
    args = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="tdnet-", dir="/tmp")
    own = BridgedDaemon(os.path.join(workdir, "proxy"), "tdbench0", "10.250.70.1/24")
    nat = BridgedDaemon(os.path.join(workdir, "nat"), "tdbench1", "10.250.71.1/24", ["--userland-proxy=false"])
    targets, networked = [], []
    try:
        for daemon in (own, nat):
            os.makedirs(daemon.dir)
            daemon.start()
        targets.append(("twistedock", Client(own.sock)))
        nat_client = Client(nat.sock)
        if args.peer:
            targets.append(("peer", Client(args.peer[len("unix://"):])))
        ensure_image(nat_client)
        for name, client in targets:
            ensure_image(client)
            client.call("POST", "/networks/create",
                        {"Name": NETWORK, "IPAM": {"Config": [{"Subnet": SUBNETS[name]}]}}, expect=(201,))
            networked.append(client)
        modes = ("none", "bridge", NETWORK) if not args.ports_only else ()
        times = {(name, mode): [] for name, _ in targets for mode in modes}
        steps = {(name, mode): [] for name, _ in targets for mode in modes}
        for name, client in targets:
            for mode in modes:
                lifecycle(client, mode)  # warm-up
        for _ in range(args.rounds):
            for mode in modes:
                for name, client in targets:
                    total, parts = lifecycle(client, mode)
                    times[(name, mode)].append(total)
                    steps[(name, mode)].append(parts)
        if modes:
            lifecycle_table(targets, modes, times, steps, args.rounds)
        rates = {"twistedock (userland proxy)": [], "twistedock (--userland-proxy=false)": []}
        if args.peer:
            rates["peer"] = []
        clients = {"twistedock (userland proxy)": targets[0][1],
                   "twistedock (--userland-proxy=false)": nat_client}
        if args.peer:
            clients["peer"] = targets[1][1]
        for _ in range(args.port_rounds):
            for label, client in clients.items():
                rates[label].append(port_throughput(client, args.megabytes))
        print("Published port 127.0.0.1::80, host loopback to busybox `nc -l -e dd of=/dev/null`, %d MiB, median of %d"
              % (args.megabytes, args.port_rounds))
        print()
        print("| path | MB/s | vs peer (docker-proxy) | vs kernel NAT |")
        print("|---|---:|---:|---:|")
        nat_rate = statistics.median(rates["twistedock (--userland-proxy=false)"])
        peer_rate = statistics.median(rates["peer"]) if args.peer else None
        for label, values in rates.items():
            rate = statistics.median(values)
            print("| %s | %.0f | %s | %.2fx |" % (label, rate, "%.2fx" % (rate / peer_rate) if peer_rate else "",
                                                 rate / nat_rate))
    finally:
        for client in networked:
            try:
                client.request("DELETE", "/networks/" + NETWORK)
            except OSError:
                pass
        for _, client in targets:
            client.close()
        for daemon in (own, nat):
            if daemon.proc is not None:
                daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
