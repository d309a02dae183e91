#!/usr/bin/env python3
"""
``docker stats --no-stream`` over many running containers: twistedock beside
another Engine-API daemon (the reference dockerd) in the same run.

    python3 benchmarks/stats.py                 # 50 containers, the reference if it answers
    python3 benchmarks/stats.py -n 20 --rounds 3
    python3 benchmarks/stats.py -n 20 --poll    # the kubelet's relist and stats, once a second

It starts its own twistedock (this checkout, temporary directories under
/tmp), imports the busybox image, starts N ``sleep`` containers on each
daemon (labelled; one busy loop among them, so CPU figures are not all
zero), then times ``docker stats --no-stream ID...`` (the real CLI, naming
only its own containers: the CLI asks ``stats?stream=false`` of each at
once) for ``--rounds`` rounds, the daemons alternating.  Per daemon it
reports the wall time of the command and the CPU time the daemon's
processes spent meanwhile (twistd for twistedock; dockerd, containerd and
the shims of our containers for dockerd), medians, and their ratios
(twistedock / other: below 1 is better for twistedock).  At the end it
removes what it made, on the peer too.  It needs root, runc, conmon,
/bin/busybox and the docker CLI.

With ``--poll`` each round is instead what cri-dockerd asks of a node once a
second: one relist (``/containers/json`` filtered by label) and a one-shot
sample of every container (``stats?stream=0&one-shot=1``), four at a time;
the round's wall time and the daemon's CPU time are reported the same way.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import (  # noqa: E402
    BenchError,
    MemoryProbe,
    OwnDaemon,
    Target,
    cmdline,
    begin_run,
    busybox_tar,
    closing,
    cpu_seconds,
    daemon_name,
    end_run,
    ensure_busybox,
    import_busybox,
    log,
    option_value,
    parallel,
    pid_serving,
    remove_busybox,
    run_main,
    scrub,
    table,
    heading,
)

REFERENCE = "unix:///tmp/reference-dockerd/docker.sock"


def docker_stats(target: Target, ids: List[str], probe: Optional[MemoryProbe]) -> Dict[str, float]:
    pids = probe.processes() if probe else []
    before = cpu_seconds(pids)
    t0 = time.perf_counter()
    result = subprocess.run(
        ["docker", "-H", "unix://" + target.sock, "stats", "--no-stream", "--format",
         "{{.ID}} {{.CPUPerc}} {{.MemUsage}}"] + ids,
        capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")},
    )
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pids) - before
    if result.returncode != 0:
        raise BenchError("%s: docker stats failed: %s" % (target.name, result.stderr.strip()))
    rows = result.stdout.splitlines()
    if len(rows) != len(ids):
        raise BenchError("%s: docker stats showed %d rows for %d containers" % (target.name, len(rows), len(ids)))
    return {"wall": wall, "cpu": cpu, "busiest": max(float(r.split()[1].rstrip("%")) for r in rows)}


def poll_round(target: Target, ids: List[str], probe: Optional[MemoryProbe]) -> Dict[str, float]:
    """One second's worth of cri-dockerd's questions: a relist, then a
    one-shot sample of each container."""
    pids = probe.processes() if probe else []
    before = cpu_seconds(pids)
    t0 = time.perf_counter()
    with closing(target.client()) as c:
        target.mine(c, group="stats")
    samples = parallel(4, ids, lambda c, cid: c.json("GET", "/containers/%s/stats?stream=0&one-shot=1" % cid), target)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pids) - before
    if any(not s.get("read") or s["read"].startswith("0001-") for s in samples):
        raise BenchError("%s: a one-shot sample of a running container was empty" % target.name)
    return {"wall": wall, "cpu": cpu, "busiest": 0.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--containers", type=int, default=50, help="running containers per daemon (50)")
    p.add_argument("--rounds", type=int, default=5, help="timed `docker stats --no-stream` per daemon (5)")
    p.add_argument("--poll", action="store_true",
                   help="time cri-dockerd's once-a-second relist and one-shot stats instead")
    p.add_argument("--peer", default=REFERENCE, help="the daemon to compare with (default: the reference dockerd)")
    p.add_argument("--no-peer", action="store_true", help="twistedock alone")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (daemon log) at the end")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    token, workdir = begin_run("tdb-stats-")
    own = OwnDaemon(workdir)
    td = Target("twistedock", own.sock, token)
    targets = [td]
    probes: Dict[str, Optional[MemoryProbe]] = {}
    imported_into_peer = False
    peer: Optional[Target] = None
    problems: List[str] = []
    try:
        tar_bytes = busybox_tar()
        log("starting twistedock in %s" % workdir)
        own.start()
        probes[td.name] = MemoryProbe(own.proc.pid, None)
        with closing(td.client()) as c:
            import_busybox(c, tar_bytes)
        if not args.no_peer:
            sock = args.peer[len("unix://"):] if args.peer.startswith("unix://") else args.peer
            candidate = Target("peer", sock, token)
            try:
                with closing(candidate.client()) as c:
                    candidate.name = daemon_name(c)
                    imported_into_peer = ensure_busybox(c, tar_bytes)
                peer = candidate
            except (OSError, BenchError) as e:
                log("no peer at %s (%s): twistedock alone" % (args.peer, e))
        if peer is not None:
            pid = pid_serving(peer.sock)
            exec_root = (option_value(cmdline(pid), "--exec-root") if pid else None) or "/var/run/docker"
            probes[peer.name] = (MemoryProbe(pid, exec_root, ours=lambda: list(peer.created_ids))
                                 if pid else None)
            targets.append(peer)
        ids: Dict[str, List[str]] = {}
        for t in targets:
            log("starting %d containers on %s" % (args.containers, t.name))

            def run(c, i, t=t):
                cmd = ["sh", "-c", "while :; do :; done"] if i == 0 else ["sleep", "3600"]
                cid = t.create(c, cmd, "stats")
                t.start(c, cid)
                return cid

            ids[t.name] = parallel(4, list(range(args.containers)), run, t)
        samples: Dict[str, List[Dict[str, float]]] = {t.name: [] for t in targets}
        measure = poll_round if args.poll else docker_stats
        measure(td, ids[td.name], None)  # warm-up: the CLI and the daemon's first sample
        for r in range(args.rounds):
            order = targets if r % 2 == 0 else targets[::-1]
            for t in order:
                samples[t.name].append(measure(t, ids[t.name], probes.get(t.name)))
                if args.poll:
                    time.sleep(1)
            log("round %d: %s" % (r + 1, ", ".join(
                "%s %.2f s" % (t.name, samples[t.name][-1]["wall"]) for t in targets)))
        report(args, targets, samples)
        return 0
    finally:
        for t in targets:
            try:
                t.remove_mine()
            except Exception as e:  # noqa: B902
                problems.append("removing the containers of %s: %s" % (t.name, e))
        if peer is not None and imported_into_peer:
            with closing(peer.client()) as c:
                remove_busybox(c, problems)
        complaint = own.stop()
        if complaint:
            problems.append(complaint)
        leftovers = scrub(workdir, td.created_ids)
        if leftovers:
            problems.append("left behind by twistedock (now removed): " + "; ".join(leftovers))
        end_run(workdir, args.keep, problems)


def report(args, targets: List[Target], samples) -> None:
    what = "relist + one-shot stats of each" if args.poll else "docker stats --no-stream over"
    heading("%s %d running containers, %d rounds (load %.1f)"
            % (what, args.containers, args.rounds, os.getloadavg()[0]))
    med = {name: {k: statistics.median(s[k] for s in runs) for k in ("wall", "cpu", "busiest")}
           for name, runs in samples.items()}
    rows = []
    for t in targets:
        m = med[t.name]
        walls = [s["wall"] for s in samples[t.name]]
        rows.append([t.name, "%.2f" % m["wall"], "%.2f-%.2f" % (min(walls), max(walls)),
                     "%.2f" % m["cpu"], "%.1f%%" % m["busiest"]])
    table(rows, ["daemon", "wall s (median)", "range", "daemon CPU s (median)", "busy container CPU"])
    if len(targets) > 1:
        a, b = med[targets[0].name], med[targets[1].name]
        print()
        print("twistedock / %s: wall %.2fx, daemon CPU %s (target: wall <= 1x)" % (
            targets[1].name, a["wall"] / b["wall"],
            "%.2fx" % (a["cpu"] / b["cpu"]) if b["cpu"] else "n/a"))


if __name__ == "__main__":
    run_main(main)
