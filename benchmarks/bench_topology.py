"""Scale run of the topology code: IOMMU grouping and the P2P audit on synthetic fabrics
(deep switch trees, SR-IOV VFs, multifunction endpoints, PCIe-to-PCI bridges).

    .venv/bin/python benchmarks/bench_topology.py [--sizes 1000,2500,5000,10000] [--repeat 3]

Prints a markdown table. Grouping should grow linearly with the number of functions (per-function
cost flat); the P2P audit is a union-find over the tree, also linear, and reports connected
sets rather than pairs.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from ioasid.topology import group
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,2500,5000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"best of {args.repeat}, seed {args.seed}\n"
    )
    print(
        "| functions | VFs | groups | P2P sets | build ms | group ms | µs/function "
        "| P2P ms | µs/function | full report ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base: float | None = None
    rows = []
    for n in sizes:
        tb, topo = _best(lambda n=n: synthetic_fabric(n, args.seed), args.repeat)  # type: ignore[misc]
        tg, gr = _best(lambda t=topo: group(t), args.repeat)  # type: ignore[misc]
        tp, doms = _best(lambda t=topo, g=gr: p2p_domains(t, g.acs), args.repeat)  # type: ignore[misc]
        tr, _ = _best(lambda g=gr: report(g), 1)  # type: ignore[misc]
        nf = len(topo)
        vfs = sum(1 for f in topo if f.is_virtfn)
        per = tg / nf * 1e6
        base = base or per
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
