"""How the benchmarks time a call: best of several rounds, so a shared, loaded machine's
interruptions fall out. Imported by the ``bench_*.py`` scripts beside it."""

from __future__ import annotations

import time
from collections.abc import Callable


def cpu_per_call(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    """Best CPU seconds per call over ``rounds`` rounds of ``n`` calls."""
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t) / n)
    return best


def per_op(fn: Callable[[], object], min_time: float) -> float:
    """Best-of-5 wall seconds per call, each round at least ``min_time / 5`` long."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time / 5:
            break
        n *= 2
    best = dt / n
    for _ in range(4):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best
