#!/usr/bin/env python3
"""
twistedock.client beside docker-py, on the same daemon in the same run:

1. ``--inspects`` (1,000) ``GET /containers/{id}/json`` one after another:
   wall time and the client process's CPU for each client;
2. a ``--log-mb`` (50) MB container log followed to its end
   (``logs?follow=1``, stdcopy frames demultiplexed by each client): wall
   time, MB/s, and CPU per MB of the client process (and of the daemon, when
   the script started it).

    python benchmarks/client.py                      # its own twistedock from this checkout
    python benchmarks/client.py --log-mb 200         # the issue's size
    python benchmarks/client.py --host unix:///tmp/reference-dockerd/docker.sock

Without ``--host`` it starts a twistedock from this checkout in a temporary
directory (as benchmarks/lifecycle.py does) and stops it at the end; on a
``--host`` it imports a busybox image under its own tag and removes it and
its container afterwards.  Each measurement runs ``--rounds`` (2) times per
client, alternating, and the best round counts.  Needs root, runc, conmon,
/bin/busybox and docker-py.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import docker
from twisted.internet import task
from twisted.internet.defer import ensureDeferred

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lifecycle import OwnDaemon, busybox_tar  # noqa: E402

from twistedock.client import DockerClient  # noqa: E402

IMAGE = "twistedock-client-bench:latest"
LABELS = {"twistedock.benchmark": "client"}
MB = 1 << 20


def cpu() -> float:
    return time.process_time()


def daemon_cpu(pid):
    """The daemon's user+system CPU seconds (None when not ours)."""
    if pid is None:
        return None
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Measure:
    def __init__(self, pid=None):
        self.pid = pid

    def __enter__(self):
        self.wall, self.cpu, self.daemon = time.perf_counter(), cpu(), daemon_cpu(self.pid)
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu() - self.cpu
        if self.daemon is not None:
            self.daemon = daemon_cpu(self.pid) - self.daemon


def dockerpy_inspects(api, cid, n, pid):
    with Measure(pid) as m:
        for _ in range(n):
            api.inspect_container(cid)
    return m


async def client_inspects(client, cid, n, pid):
    with Measure(pid) as m:
        for _ in range(n):
            await client.containers.inspect(cid)
    return m


def dockerpy_follow(api, cid, pid):
    size = 0
    with Measure(pid) as m:
        for chunk in api.logs(cid, stream=True, follow=True):
            size += len(chunk)
    m.size = size
    return m


async def client_follow(client, cid, pid):
    size = 0
    with Measure(pid) as m:
        async for _, data in await client.containers.logs(cid, follow=True):
            size += len(data)
    m.size = size
    return m


def best(ms):
    return min(ms, key=lambda m: m.wall)


async def bench(reactor, args, host, pid):
    client = DockerClient.for_host(reactor, host)
    version = await client.api_version()
    api = docker.APIClient(base_url=host, version=version, timeout=600)
    cid = None
    try:
        await (await client.images.import_(busybox_tar(), IMAGE)).wait()
        size = args.log_mb * MB
        # Lines of 100 bytes, written by the container as fast as it can.
        line = "x" * 99
        cid = await client.containers.run(IMAGE, ["sh", "-c", "yes %s | head -c %d" % (line, size)],
                                          config={"Labels": LABELS}, host_config={"NetworkMode": "none"})
        status = await client.containers.wait(cid)
        print("  . container wrote %d MB of log (exit %s)" % (args.log_mb, status["StatusCode"]), file=sys.stderr)

        inspects = {"client": [], "docker-py": []}
        follows = {"client": [], "docker-py": []}
        for r in range(args.rounds):
            order = ["client", "docker-py"] if r % 2 == 0 else ["docker-py", "client"]
            for name in order:
                if name == "client":
                    inspects[name].append(await client_inspects(client, cid, args.inspects, pid))
                else:
                    inspects[name].append(dockerpy_inspects(api, cid, args.inspects, pid))
            for name in order:
                if name == "client":
                    follows[name].append(await client_follow(client, cid, pid))
                else:
                    follows[name].append(dockerpy_follow(api, cid, pid))
        report(args, host, version, {k: best(v) for k, v in inspects.items()},
               {k: best(v) for k, v in follows.items()})
    finally:
        if cid is not None:
            await client.containers.remove(cid, force=True)
        try:
            await client.images.remove(IMAGE)
        finally:
            api.close()
            await client.close()


def report(args, host, version, inspects, follows):
    c, d = inspects["client"], inspects["docker-py"]
    print("daemon %s, API %s, best of %d rounds" % (host, version, args.rounds))
    print()
    print("%d inspects          wall s   per call ms   client CPU s" % args.inspects)
    for name, m in (("twistedock.client", c), ("docker-py", d)):
        print("  %-18s %7.2f   %11.3f   %12.2f" % (name, m.wall, m.wall * 1000 / args.inspects, m.cpu))
    print("  docker-py / client: wall %.2fx, CPU %.2fx" % (d.wall / c.wall, d.cpu / c.cpu))
    print()
    c, d = follows["client"], follows["docker-py"]
    print("log follow (%d MB)     wall s    MB/s   client CPU s/MB   daemon CPU s/MB" % args.log_mb)
    for name, m in (("twistedock.client", c), ("docker-py", d)):
        mb = m.size / MB
        daemon = "%.4f" % (m.daemon / mb) if m.daemon is not None else "-"
        print("  %-18s %7.2f %7.1f   %15.4f   %15s" % (name, m.wall, mb / m.wall, m.cpu / mb, daemon))
    if c.size != d.size:
        print("  WARNING: the clients read %d and %d bytes" % (c.size, d.size))
    print("  docker-py / client: wall %.2fx, client CPU per MB %.2fx" % (d.wall / c.wall, d.cpu / c.cpu))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default=None, help="a daemon to use (default: start a twistedock)")
    p.add_argument("--inspects", type=int, default=1000)
    p.add_argument("--log-mb", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    own = None
    workdir = None
    host = args.host
    if host is None:
        workdir = tempfile.mkdtemp(prefix="tdc-", dir="/tmp")
        own = OwnDaemon(workdir)
        print("  . starting twistedock in %s" % workdir, file=sys.stderr)
        own.start()
        host = "unix://" + own.sock
    try:
        task.react(lambda reactor: ensureDeferred(bench(reactor, args, host, own.proc.pid if own else None)))
    finally:
        if own is not None:
            problem = own.stop()
            if problem:
                print("WARNING: " + problem, file=sys.stderr)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
