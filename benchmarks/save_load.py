#!/usr/bin/env python3
"""
docker load and docker save, twistedock beside another daemon (the
reference dockerd) in the same run:

    python benchmarks/save_load.py [--peer unix:///tmp/reference-dockerd/docker.sock]

A docker-archive of one image is made once: 5 layers of random data (40 MiB
each by default, so about 200 MiB), a config naming their diff IDs.  Each
round, on each daemon: ``POST /images/load`` of the archive (the body
streamed from the file), then ``GET /images/get`` of the image read to its
end and thrown away, then the image removed.  Wall time, MB/s and the
daemon's CPU seconds (its process and children, from /proc), medians over
the rounds; for twistedock also its peak resident memory.

It starts its own twistedock (this checkout) in a temporary directory and
removes everything it made, on the peer too (the image is tagged with a
random name).
"""

import argparse
import hashlib
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
    closing,
    image_config,
    log,
    random_layer,
    serving_pid,
    start_targets,
)


def make_archive(path: str, layers: int, layer_mib: int, tag: str) -> None:
    """A docker-archive: random layers, a config, manifest.json."""
    diff_ids = []
    with tarfile.open(path, "w") as archive:
        for i in range(layers):
            raw = random_layer(i, layer_mib)
            digest = hashlib.sha256(raw).hexdigest()
            diff_ids.append("sha256:" + digest)
            info = tarfile.TarInfo("blobs/sha256/" + digest)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
        config = image_config(diff_ids)
        config_digest = hashlib.sha256(config).hexdigest()
        for name, data in (
            ("blobs/sha256/" + config_digest, config),
            (
                "manifest.json",
                json.dumps(
                    [
                        {
                            "Config": "blobs/sha256/" + config_digest,
                            "RepoTags": [tag],
                            "Layers": ["blobs/sha256/" + d.split(":")[1] for d in diff_ids],
                        }
                    ]
                ).encode(),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def cpu_seconds(pid: int) -> float:
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> Optional[int]:
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def load(sock: str, path: str) -> float:
    conn = UnixHTTPConnection(sock, 600)
    try:
        start = time.monotonic()
        with open(path, "rb") as body:
            conn.request(
                "POST",
                API + "/images/load?quiet=1",
                body=body,
                headers={"Content-Type": "application/x-tar", "Content-Length": str(os.path.getsize(path))},
            )
            resp = conn.getresponse()
            data = resp.read()
        elapsed = time.monotonic() - start
    finally:
        conn.close()
    if resp.status != 200 or b"Loaded image" not in data:
        raise BenchError("load: %d %s" % (resp.status, data[:300]))
    return elapsed


def save(sock: str, tag: str) -> float:
    conn = UnixHTTPConnection(sock, 600)
    try:
        start = time.monotonic()
        conn.request("GET", API + "/images/get?names=" + tag)
        resp = conn.getresponse()
        if resp.status != 200:
            raise BenchError("save: %d %s" % (resp.status, resp.read()[:300]))
        while resp.read(1 << 20):
            pass
        return time.monotonic() - start
    finally:
        conn.close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", help="another daemon's unix:// address (the reference dockerd)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--layer-mib", type=int, default=40)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="tdb-saveload-")
    tag = "benchsaveload:%s" % (os.urandom(4).hex(),)
    archive = os.path.join(workdir, "image.tar")
    own = OwnDaemon(os.path.join(workdir, "d"))
    os.makedirs(own.dir)
    targets: Dict[str, str] = {}
    try:
        log("making a %d-layer archive of %d MiB" % (args.layers, args.layers * args.layer_mib))
        make_archive(archive, args.layers, args.layer_mib, tag)
        size_mb = os.path.getsize(archive) / 1e6
        start_targets(own, args.peer, targets)
        results: Dict[str, Dict[str, List[float]]] = {name: {} for name in targets}
        for round_ in range(args.rounds):
            for name, sock in targets.items():
                pid = serving_pid(own, name, sock)
                numbers = results[name]
                before = cpu_seconds(pid)
                numbers.setdefault("load s", []).append(load(sock, archive))
                numbers.setdefault("load cpu s", []).append(cpu_seconds(pid) - before)
                before = cpu_seconds(pid)
                numbers.setdefault("save s", []).append(save(sock, tag))
                numbers.setdefault("save cpu s", []).append(cpu_seconds(pid) - before)
                with closing(Client(sock)) as c:
                    c.call("DELETE", "/images/" + tag)
                log("round %d %s: load %.2f s, save %.2f s" % (round_ + 1, name, numbers["load s"][-1], numbers["save s"][-1]))
        peak = peak_rss_kib(own.proc.pid)
        print()
        print("archive: %d layers, %.0f MB; medians of %d rounds" % (args.layers, size_mb, args.rounds))
        print("%-12s %10s %10s %10s %10s %10s %10s" % ("daemon", "load s", "load MB/s", "load cpu", "save s", "save MB/s", "save cpu"))
        for name, numbers in results.items():
            med = {k: statistics.median(v) for k, v in numbers.items()}
            print(
                "%-12s %10.2f %10.1f %10.2f %10.2f %10.1f %10.2f"
                % (
                    name,
                    med["load s"],
                    size_mb / med["load s"],
                    med["load cpu s"],
                    med["save s"],
                    size_mb / med["save s"],
                    med["save cpu s"],
                )
            )
        if peak is not None:
            print("twistedock peak resident memory: %.0f MiB" % (peak / 1024))
        return 0
    except (BenchError, OSError, http.client.HTTPException) as e:
        print("error: %s" % (e,), file=sys.stderr)
        return 1
    finally:
        if "peer" in targets:
            with closing(Client(targets["peer"])) as c:
                c.request("DELETE", "/images/" + tag)
        problem = own.stop()
        if problem:
            print("WARNING: " + problem, file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
