#!/usr/bin/env python3
"""
The classic builder's rebuild of an unchanged Dockerfile, twistedock beside
another daemon (the reference dockerd) in the same run:

    python benchmarks/build.py [--peer unix:///tmp/reference-dockerd/docker.sock]

A 10-step Dockerfile (FROM, ENV, ARG, WORKDIR, two COPYs, two RUNs, LABEL,
CMD) over a small context (a few files, one of 1 MiB) is built once on each
daemon (the busybox image imported under a random name), then rebuilt
``--rounds`` times: every step a cache hit.  Each rebuild is ``POST /build``
with the context tar as its body, read to its end; wall time and the
daemon's CPU seconds (its process and children), medians.  Everything made
is removed afterwards (on the peer: the images it tagged).
"""

import argparse
import http.client
import io
import json
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import (  # noqa: E402
    API,
    BenchError,
    Client,
    OwnDaemon,
    UnixHTTPConnection,
    busybox_tar,
    closing,
    log,
    query,
    serving_pid,
    start_targets,
)
from save_load import cpu_seconds  # noqa: E402

DOCKERFILE = """\
FROM {base}
ENV APP=/app MODE=bench
ARG LEVEL=3
WORKDIR /app
COPY data/ ./data/
RUN echo "level $LEVEL" > level && mkdir -p out
COPY big.bin ./
RUN ls -l /app > /app/out/listing
LABEL bench=build
CMD ["cat", "/app/level"]
"""


def context_tar(base: str) -> bytes:
    files = {
        "Dockerfile": DOCKERFILE.format(base=base).encode(),
        "data/a.txt": b"a\n" * 100,
        "data/b/c.txt": b"c\n" * 100,
        "big.bin": os.urandom(1 << 20),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(sock: str, context: bytes, tag: str) -> (float, str):
    conn = UnixHTTPConnection(sock, 600)
    try:
        start = time.monotonic()
        conn.request(
            "POST", API + "/build?" + query(t=tag, rm="1"), body=context,
            headers={"Content-Type": "application/x-tar"},
        )
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.monotonic() - start
    finally:
        conn.close()
    text = data.decode("utf-8", "replace")
    if resp.status != 200 or "Successfully tagged" not in text:
        raise BenchError("build: %d %s" % (resp.status, text[-500:]))
    return elapsed, text


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", help="another daemon's unix:// address (the reference dockerd)")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="tdb-build-")
    token = os.urandom(4).hex()
    base = "benchbuildbase:" + token
    tag = "benchbuild:" + token
    own = OwnDaemon(os.path.join(workdir, "d"))
    os.makedirs(own.dir)
    targets: Dict[str, str] = {}
    made: Dict[str, List[str]] = {}
    try:
        rootfs = busybox_tar()
        context = context_tar(base)
        start_targets(own, args.peer, targets)
        results: Dict[str, Dict[str, List[float]]] = {name: {} for name in targets}
        for name, sock in targets.items():
            with closing(Client(sock)) as c:
                repo, _, version = base.partition(":")
                c.call("POST", "/images/create?" + query(fromSrc="-", repo=repo, tag=version), body=rootfs,
                       headers={"Content-Type": "application/x-tar"})
            made[name] = []
            first, text = build(sock, context, tag)
            ids = [json.loads(line)["stream"].split()[-1] for line in text.splitlines()
                   if line.strip() and " ---> " in json.loads(line).get("stream", "")
                   and "Running in" not in json.loads(line)["stream"]]
            made[name] = ids
            log("%s: first build %.2f s" % (name, first))
        for round_ in range(args.rounds):
            for name, sock in targets.items():
                pid = serving_pid(own, name, sock)
                before = cpu_seconds(pid)
                elapsed, text = build(sock, context, tag)
                if "Running in" in text or text.count("Using cache") != 9:
                    raise BenchError("%s: the rebuild was not all cache hits:\n%s" % (name, text))
                results[name].setdefault("rebuild s", []).append(elapsed)
                results[name].setdefault("cpu s", []).append(cpu_seconds(pid) - before)
            log("round %d: %s" % (round_ + 1, ", ".join(
                "%s %.3f s" % (n, results[n]["rebuild s"][-1]) for n in targets)))
        print()
        print("rebuild of an unchanged 10-step Dockerfile (all cache hits); medians of %d rounds" % (args.rounds,))
        print("%-12s %12s %12s" % ("daemon", "rebuild s", "cpu s"))
        for name, numbers in results.items():
            print("%-12s %12.3f %12.3f" % (
                name, statistics.median(numbers["rebuild s"]), statistics.median(numbers["cpu s"])))
        return 0
    except (BenchError, OSError, http.client.HTTPException) as e:
        print("error: %s" % (e,), file=sys.stderr)
        return 1
    finally:
        if "peer" in targets:
            with closing(Client(targets["peer"])) as c:
                c.request("DELETE", "/images/" + tag)
                for image_id in reversed(made.get("peer", [])):
                    c.request("DELETE", "/images/" + image_id)
                c.request("DELETE", "/images/" + base)
        problem = own.stop()
        if problem:
            print("WARNING: " + problem, file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
