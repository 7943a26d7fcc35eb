"""Scale run of the topology code: IOMMU grouping and the P2P audit on synthetic fabrics
(deep switch trees, SR-IOV VFs, multifunction endpoints, PCIe-to-PCI bridges).

    .venv/bin/python benchmarks/bench_topology.py [--sizes 1000,2500,5000,10000] [--repeat 3]
        [--cli-devices 50000] [--skip-cli]

Part 1 prints a markdown table: grouping should grow linearly with the number of functions
(per-function cost flat); the P2P audit is a union-find over the tree, also linear.

Part 2 (issue 9): ``group()`` of 10^4 functions against the bare upstream-path walk over the
same fabric (every function to its root, as ``Topology.upstream_bridge`` climbs), measured in
the same run. Goal: 150 ms where the walk takes 12 ms, i.e. a ratio of at most 12.5.

Part 3 (issue 12): ``ioasid groups --topology big.{yaml,json} --json`` on 50,000 functions, a
fresh interpreter each time (CPU time of the child and wall time), against the in-process
limit of reading the same JSON file and writing a JSON document as large as the output.
Goal: at most 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from ioasid.topology import Topology, dump, group
from ioasid.topology.audit import p2p_domains, report
from ioasid.topology.synthetic import synthetic_fabric

T = TypeVar("T")


def _best(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    best = float("inf")
    out: T | None = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return best, out


def upstream_walk(topo: Topology) -> int:
    """Every function's path to its root bus, bridge by bridge, the way
    ``Topology.upstream_bridge`` climbs (a frozen copy: the limit must not move with the
    code it measures)."""
    buses = topo.buses
    steps = 0
    for b in topo.order:
        cur: object = b
        while cur is not None:
            bus = buses[(cur.domain, cur.bus)]  # type: ignore[attr-defined]
            up = None
            while bus is not None and not bus.is_root:
                if bus.self_dev is not None:
                    up = bus.self_dev
                    break
                bus = buses[bus.parent] if bus.parent else None
            cur = up
            steps += 1
    return steps


def part1(sizes: list[int], repeat: int, seed: int) -> None:
    print(
        "| functions | VFs | groups | P2P sets | build ms | group ms | µs/function "
        "| P2P ms | µs/function | full report ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for n in sizes:
        tb, topo = _best(lambda n=n: synthetic_fabric(n, seed), repeat)  # type: ignore[misc]
        tg, gr = _best(lambda t=topo: group(t), repeat)  # type: ignore[misc]
        tp, doms = _best(lambda t=topo, g=gr: p2p_domains(t, g.acs), repeat)  # type: ignore[misc]
        tr, _ = _best(lambda g=gr: report(g), 1)  # type: ignore[misc]
        nf = len(topo)
        vfs = sum(1 for f in topo if f.is_virtfn)
        per = tg / nf * 1e6
        rows.append((nf, per))
        print(
            f"| {nf} | {vfs} | {len(gr.groups)} | {len(doms)} | {tb * 1e3:.1f} | "
            f"{tg * 1e3:.1f} | {per:.1f} | {tp * 1e3:.1f} | {tp / nf * 1e6:.1f} | "
            f"{tr * 1e3:.1f} |"
        )
    if len(rows) > 1:
        (n0, p0), (n1, p1) = rows[0], rows[-1]
        print(
            f"\nGrouping cost per function at {n1} vs {n0} functions: {p1 / p0:.2f}x (1.0 = linear)"
        )


def part2(repeat: int, seed: int) -> None:
    topo = synthetic_fabric(10_000, seed)
    tw = tg = float("inf")
    for _ in range(max(repeat, 5)):  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        upstream_walk(topo)
        tw = min(tw, time.perf_counter() - t0)
        t0 = time.perf_counter()
        group(topo)
        tg = min(tg, time.perf_counter() - t0)
    print(
        f"\ngroup() of {len(topo)} functions: {tg * 1e3:.1f} ms; upstream-path walk "
        f"{tw * 1e3:.1f} ms; ratio x{tg / tw:.1f} (goal <= x12.5: 150 ms at a 12 ms walk)"
    )


def _child_run(argv: list[str]) -> tuple[float, float, bytes]:
    """(wall s, child CPU s, stdout) of one fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out


def part3(n: int, repeat: int, seed: int) -> None:
    topo = synthetic_fabric(n, seed)
    data = dump(topo)
    with tempfile.TemporaryDirectory() as d:
        ypath, jpath = Path(d) / "big.yaml", Path(d) / "big.json"
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        with open(ypath, "w") as fh:
            yaml.dump(data, fh, Dumper=dumper, sort_keys=False)
        jpath.write_text(json.dumps(data))
        print(
            f"\n`ioasid groups --topology FILE --json`, {len(topo)} functions "
            f"({ypath.stat().st_size / 1e6:.1f} MB YAML, {jpath.stat().st_size / 1e6:.1f} MB "
            f"JSON), fresh interpreter, best of {repeat}:"
        )
        out = b""
        for path in (ypath, jpath):
            argv = [sys.executable, "-m", "ioasid.cli.groups", "groups", "--topology", str(path)]
            best = (float("inf"), float("inf"))
            for _ in range(repeat):
                wall, cpu, out = _child_run([*argv, "--json"])
                best = (min(best[0], wall), min(best[1], cpu))
            print(
                f"  {path.suffix[1:]:4} {best[1]:.2f} s CPU, {best[0]:.2f} s wall "
                f"({len(out) / 1e6:.0f} MB of JSON out)"
            )
        result = json.loads(out)

        def limit() -> int:
            json.loads(jpath.read_text())
            return len(json.dumps(result, separators=(",", ":")))

        tl, _ = _best(limit, repeat)
        print(
            f"  in-process limit: json.loads of the input file + json.dumps of the output "
            f"{tl:.2f} s (goal: the command <= 5 s)"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="1000,2500,5000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cli-devices", type=int, default=50_000)
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"Python {platform.python_version()} on {platform.machine()}, nproc {os.cpu_count()}, "
        f"load {os.getloadavg()[0]:.1f}, best of {args.repeat}, seed {args.seed}\n"
    )
    part1(sizes, args.repeat, args.seed)
    part2(args.repeat, args.seed)
    if not args.skip_cli:
        part3(args.cli_devices, args.repeat, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
