#!/usr/bin/env python3
"""
docker pull from a registry, twistedock beside another daemon (the
reference dockerd) in the same run:

    python benchmarks/pull.py [--peer unix:///tmp/reference-dockerd/docker.sock]

An image of 5 layers of random data (40 MiB each by default, so about
200 MiB; gzip level 1, which random data does not shrink) is made once as
an OCI layout and copied by ``skopeo`` into a ``docker-registry`` (CNCF
distribution) this script starts on 127.0.0.1 with its storage in a
temporary directory.  Both daemons treat 127.0.0.0/8 as an insecure
registry (plain http).  Each round, on each daemon: ``POST /images/create``
of ``127.0.0.1:PORT/bench/pull:TAG`` read to its end, then the image
removed.  Wall time, MB/s (of the compressed blobs) and the daemon's CPU
seconds (twistedock's process; dockerd's and containerd's, each with its
reaped children, from /proc), medians over the rounds, and the ratios.

It starts its own twistedock (this checkout) and registry in a temporary
directory and removes everything it made (the image on the peer too).
"""

import argparse
import gzip
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import (  # noqa: E402
    API,
    BenchError,
    Client,
    OwnDaemon,
    UnixHTTPConnection,
    all_pids,
    cmdline,
    closing,
    image_config,
    log,
    pid_serving,
    random_layer,
    start_targets,
)
from save_load import cpu_seconds  # noqa: E402

REPOSITORY = "bench/pull"


def _blob(layout: str, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def make_layout(layout: str, layers: int, layer_mib: int, tag: str) -> int:
    """An OCI layout of one image of random layers: the bytes of its blobs."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    descriptors, diff_ids = [], []
    for i in range(layers):
        raw = random_layer(i, layer_mib)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        compressed = gzip.compress(raw, compresslevel=1, mtime=0)
        descriptors.append(dict(_blob(layout, compressed), mediaType="application/vnd.oci.image.layer.v1.tar+gzip"))
    config = image_config(diff_ids)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(_blob(layout, config), mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": descriptors,
    }).encode()
    entry = dict(_blob(layout, manifest), mediaType="application/vnd.oci.image.manifest.v1+json",
                 annotations={"org.opencontainers.image.ref.name": tag})
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [entry]}, f)
    return sum(d["size"] for d in descriptors) + len(config)


class OwnRegistry:
    """docker-registry on 127.0.0.1, its storage under C{workdir}."""

    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        if not binary:
            raise BenchError("docker-registry not found (Debian's docker-registry package)")
        os.makedirs(self.dir)
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                    "    rootdirectory: %s\nhttp:\n  addr: %s\n" % (os.path.join(self.dir, "storage"), self.address))
        with open(os.path.join(self.dir, "registry.log"), "ab") as out:
            self.proc = subprocess.Popen([binary, "serve", config], stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen("http://%s/v2/" % self.address, timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the registry did not start")
                time.sleep(0.1)

    def push(self, layout: str, tag: str) -> None:
        skopeo = shutil.which("skopeo")
        if not skopeo:
            raise BenchError("skopeo not found")
        result = subprocess.run(
            [skopeo, "copy", "--quiet", "--dest-tls-verify=false", "oci:%s:%s" % (layout, tag),
             "docker://%s/%s:%s" % (self.address, REPOSITORY, tag)],
            capture_output=True, text=True, timeout=600,
        )
        if result.returncode:
            raise BenchError("skopeo copy: " + result.stderr.strip())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def pull(sock: str, image: str) -> float:
    repo, tag = image.rsplit(":", 1)
    conn = UnixHTTPConnection(sock, 900)
    try:
        start = time.monotonic()
        conn.request("POST", API + "/images/create?fromImage=%s&tag=%s" % (repo, tag), body=b"",
                     headers={"X-Registry-Auth": "e30="})
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.monotonic() - start
    finally:
        conn.close()
    if resp.status != 200 or b"Downloaded newer image" not in data:
        raise BenchError("pull: %d %s" % (resp.status, data[-400:]))
    return elapsed


def containerd_of(dockerd: int) -> Optional[int]:
    """dockerd's containerd (its child), if any."""
    for pid in all_pids():
        argv = cmdline(pid)
        if not argv or os.path.basename(argv[0]) != "containerd":
            continue
        try:
            ppid = int(open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == dockerd:
            return pid
    return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", help="another daemon's unix:// address (the reference dockerd)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--layer-mib", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="tdb-pull-")
    tag = os.urandom(4).hex()
    layout = os.path.join(workdir, "layout")
    registry = OwnRegistry(os.path.join(workdir, "registry"))
    own = OwnDaemon(os.path.join(workdir, "d"))
    os.makedirs(own.dir)
    targets: Dict[str, str] = {}
    image = ""
    problems: List[str] = []
    try:
        log("making a %d-layer image of %d MiB" % (args.layers, args.layers * args.layer_mib))
        size_mb = make_layout(layout, args.layers, args.layer_mib, tag) / 1e6
        registry.start()
        registry.push(layout, tag)
        shutil.rmtree(layout)
        image = "%s/%s:%s" % (registry.address, REPOSITORY, tag)
        start_targets(own, args.peer, targets)
        results: Dict[str, Dict[str, List[float]]] = {name: {} for name in targets}
        for round_ in range(args.rounds):
            for name, sock in targets.items():
                if name == "twistedock":
                    pids = [own.proc.pid]
                else:
                    pid = pid_serving(sock)
                    if pid is None:
                        raise BenchError("no process serves %s" % sock)
                    pids = [pid] + [p for p in [containerd_of(pid)] if p]
                numbers = results[name]
                before = sum(cpu_seconds(p) for p in pids)
                numbers.setdefault("s", []).append(pull(sock, image))
                numbers.setdefault("cpu", []).append(sum(cpu_seconds(p) for p in pids) - before)
                with closing(Client(sock)) as c:
                    c.call("DELETE", "/images/" + image)
                log("round %d %s: pull %.2f s, %.2f CPU s" % (round_ + 1, name, numbers["s"][-1], numbers["cpu"][-1]))
        print()
        print("image: %d layers, %.0f MB of blobs; medians of %d rounds" % (args.layers, size_mb, args.rounds))
        print("%-12s %10s %10s %10s" % ("daemon", "pull s", "MB/s", "CPU s"))
        medians = {}
        for name, numbers in results.items():
            med = medians[name] = {k: statistics.median(v) for k, v in numbers.items()}
            print("%-12s %10.2f %10.1f %10.2f" % (name, med["s"], size_mb / med["s"], med["cpu"]))
        if "peer" in medians:
            own_m, peer_m = medians["twistedock"], medians["peer"]
            print("twistedock / peer: wall %.2f, CPU %.2f" % (
                own_m["s"] / peer_m["s"], own_m["cpu"] / peer_m["cpu"] if peer_m["cpu"] else float("nan")))
        return 0
    except (BenchError, OSError, http.client.HTTPException, subprocess.SubprocessError) as e:
        print("error: %s" % (e,), file=sys.stderr)
        return 1
    finally:
        if "peer" in targets and image:
            with closing(Client(targets["peer"])) as c:
                c.request("DELETE", "/images/" + image)
        problem = own.stop()
        if problem:
            problems.append(problem)
        registry.stop()
        for problem in problems:
            print("WARNING: " + problem, file=sys.stderr)
        if args.keep:
            print("kept " + workdir, file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
