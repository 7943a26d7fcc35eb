"""A fuzz campaign on the simulated kernel: seeded sequences from the shared generator in
fuzz mode, every call checked, every sequence torn down and checked.

After each call: the raw layer raised nothing but ``OSError``, and not ``ENOTRECOVERABLE``
(a :class:`~ioasid.kernel.errors.KernelBug`: a simulator exception turned into an errno); the
call finished within the time budget and its traced allocations (``tracemalloc`` peak) within
the memory budget — a call whose work follows a size the user merely declared breaks one of
them. After each sequence, with every fd closed: no object left in any context, no page
pinned, ``locked_vm``/``pinned_vm`` of the mm and of every user back to where they started,
every IOMMU group's DMA ownership and every cdev's binding as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ioasid.backends import sim
from ioasid.kernel.machine import Kernel
from ioasid.testing.differential import Call, Generator, UserMemory, execute
from ioasid.testing.differential.execution import Fds, close_fds

CDEV = "/dev/vfio/devices/vfio0"
TIME_BUDGET = 2.0
"""CPU seconds of its thread one call may take (CPU time, so that a loaded machine does not
count; a call that loops over a declared size of 2^32 or more takes minutes)."""
MEMORY_BUDGET = 32 << 20
"""Bytes one call may allocate (traced peak): far above any honest struct, far below a
declared 4 GiB."""


@dataclass
class Finding:
    """One class of failure, with the first call that showed it."""

    kind: str
    """``exception``, ``kernel-bug``, ``slow``, ``memory``, ``leak`` or ``harness``."""
    op: str
    detail: str
    seed: int
    index: int
    call: dict[str, Any]
    count: int = 1

    def key(self) -> tuple[str, str, str]:
        if self.kind in ("slow", "memory") or not self.detail:
            return self.kind, self.op, ""
        return self.kind, self.op, self.detail.splitlines()[0][:120]

    def describe(self) -> str:
        return (
            f"[{self.kind}] {self.op} x{self.count} (first: seed {self.seed} call #{self.index})\n"
            f"    {Call.from_json(self.call).describe()}\n    "
            + self.detail.replace("\n", "\n    ")
        )


@dataclass
class FuzzResult:
    calls: int = 0
    sequences: int = 0
    seconds: float = 0.0
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    errnos: dict[str, int] = field(default_factory=dict)
    slowest: tuple[float, str] = (0.0, "")
    peak: tuple[int, str] = (0, "")
    verbose: bool = False
    """Print each new finding as it is found (the CLI's long runs)."""

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, finding: Finding) -> None:
        got = self.findings.get(finding.key())
        if got is None:
            self.findings[finding.key()] = finding
            if self.verbose:
                print(finding.describe(), flush=True)
        else:
            got.count += 1

    def summary(self) -> str:
        lines = [
            f"{self.calls} calls in {self.sequences} sequences, {self.seconds:.1f} s; "
            f"slowest {self.slowest[0] * 1000:.1f} ms ({self.slowest[1]}), "
            f"peak {self.peak[0] >> 10} KiB ({self.peak[1]}); "
            f"{len(self.findings)} finding(s)"
        ]
        lines += [f.describe() for f in self.findings.values()]
        return "\n".join(lines)


class _BugLog(logging.Handler):
    """Keeps the traceback of the last simulator bug the kernel logged, per thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frames = traceback.extract_tb(exc.__traceback__)[-3:]
            where = "; ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in frames)
            self.last.text = f"{type(exc).__name__}: {exc}\n{where}"

    def take(self) -> str:
        text: str = getattr(self.last, "text", "")
        self.last.text = ""
        return text


@contextlib.contextmanager
def _bug_log() -> Iterator[_BugLog]:
    logger = logging.getLogger("ioasid.kernel")
    handler = _BugLog()
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def accounting(k: Kernel) -> dict[str, Any]:
    """What must be back as it was once every fd of a sequence is closed."""
    mm = k.processes.current.mm
    return {
        "mm.locked_vm": mm.locked_vm,
        "mm.pinned_vm": mm.pinned_vm,
        "mm.page_pins": mm.page_pins.ranges(),
        "users.locked_vm": {u: s.locked_vm for u, s in k.processes.users.items()},
        "groups.owner_cnt": {g: s.owner_cnt for g, s in k.groups.items()},
        "groups.attached": {g: len(s.attached) for g, s in k.groups.items()},
        "cdevs.bound": [v.bound is not None for v in k.vfio_devices],
        "anon_inodes": sorted(f.name for f in k.anon_inodes.files.values()),
    }


class Env:
    """The open files of one sequence: ``/dev/iommu`` (the handle the calls go to), a
    second iommufd, ``/dev/vfio/vfio``, the device cdev, and fds of other kinds."""

    def __init__(self, k: Kernel) -> None:
        self.kernel = k
        self.handle = sim.open("/dev/iommu")
        self.other = sim.open("/dev/iommu")
        self.files = {"vfio": sim.open("/dev/vfio/vfio"), "cdev": sim.open(CDEV)}
        self.plain: list[int] = [
            os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC),
            os.eventfd(0, os.EFD_CLOEXEC),
        ]
        closed = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        os.close(closed)
        self.base: Fds = {
            "fd:null": self.plain[0],
            "fd:eventfd": self.plain[1],
            "fd:closed": closed,
            "fd:iommufd2": self.other.fileno(),
            "fd:vfio": self.files["vfio"].fileno(),
            "fd:cdev": self.files["cdev"].fileno(),
        }

    def fds(self) -> Fds:
        return dict(self.base)

    def close(self) -> list[tuple[str, int]]:
        """Close everything; the objects each context still held just before."""
        ictxs = []
        for name, h in [("iommufd", self.handle), ("iommufd2", self.other), *self.files.items()]:
            ictxs.append((name, getattr(h.file, "ictx", None)))
            h.close()
        for fd in self.plain:
            os.close(fd)
        with self.kernel.lock:
            self.kernel.anon_inodes.reap()
        return [(name, len(c.objects)) for name, c in ictxs if c is not None and len(c.objects)]


def _outcome_key(out: dict[str, Any]) -> str:
    return "ok" if "ret" in out else str(out.get("errno", "exception"))


def _run_thread(
    gen: Generator,
    env: Env,
    mem: UserMemory,
    calls: int,
    seed: int,
    result: FuzzResult,
    lock: threading.Lock,
    bugs: _BugLog,
    trace: bool,
) -> None:
    fds = env.fds()
    try:
        for i in range(calls):
            call = gen.next_call()
            if trace:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
            # this thread's CPU time: waiting for the kernel lock held by another thread, or
            # for a loaded machine, is not work the call did
            t0 = time.thread_time()
            out = execute(env.handle, mem, call, fds, env.files)
            dt = time.thread_time() - t0
            peak = tracemalloc.get_traced_memory()[1] - base if trace else 0
            findings = []
            if "exception" in out:
                findings.append(Finding("exception", call.op, out["exception"], seed, i, {}))
            elif out.get("errno") == "ENOTRECOVERABLE":
                findings.append(Finding("kernel-bug", call.op, bugs.take(), seed, i, {}))
            if dt > TIME_BUDGET:
                findings.append(Finding("slow", call.op, f"{dt:.2f} s", seed, i, {}))
            if peak > MEMORY_BUDGET:
                findings.append(Finding("memory", call.op, f"{peak >> 20} MiB", seed, i, {}))
            if call.op == "IOMMU_TEST_OP_DMABUF_GET" and isinstance(out.get("ret"), int):
                fds[f"dmabuf{i}"] = out["ret"]  # the fd is the return value: close it later
            try:
                gen.observe(call, out)
            except Exception as e:  # the model's bug, not the kernel's: keep going
                findings.append(
                    Finding("harness", call.op, f"{type(e).__name__}: {e}", seed, i, {})
                )
            with lock:
                result.calls += 1
                key = f"{call.op}:{_outcome_key(out)}"
                result.errnos[key] = result.errnos.get(key, 0) + 1
                if dt > result.slowest[0]:
                    result.slowest = (dt, call.op)
                if peak > result.peak[0]:
                    result.peak = (peak, call.op)
                for f in findings:
                    f.call = call.to_json()
                    result.add(f)
    finally:
        close_fds({k: v for k, v in fds.items() if k not in env.base})


def run_sequence(
    seed: int,
    calls: int,
    mem: UserMemory,
    result: FuzzResult,
    *,
    threads: int = 1,
    trace: bool = True,
) -> None:
    """One seeded sequence of ``calls`` calls (split over ``threads`` threads sharing the
    files), then teardown and the accounting check."""
    k = sim.kernel()
    mem.refill()
    with k.lock:
        k.anon_inodes.reap()
        before = accounting(k)
    env = Env(k)
    lock = threading.Lock()
    with _bug_log() as bugs:
        gens = [Generator(seed * 1000 + t, devices=True, fuzz=True) for t in range(threads)]
        share = max(calls // threads, 1)
        if threads == 1:
            _run_thread(gens[0], env, mem, share, seed, result, lock, bugs, trace)
        else:
            workers = [
                threading.Thread(
                    target=_run_thread,
                    args=(g, env, mem, share, seed, result, lock, bugs, trace),
                    name=f"fuzz-{seed}-{t}",
                )
                for t, g in enumerate(gens)
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        try:
            left = env.close()
        except Exception as e:
            left = [(f"close raised {type(e).__name__}: {e}", 0)]
    with k.lock:
        after = accounting(k)
    result.sequences += 1
    if left or after != before:
        diff = {n: (before[n], after[n]) for n in before if before[n] != after[n]}
        detail = f"objects left: {left}; accounting (before, after): {diff}"
        result.add(
            Finding("leak", "teardown", detail, seed, calls, {"op": "TEARDOWN", "request": 0})
        )
        sim.reset()


def run_fuzz(
    n: int,
    *,
    seed: int = 0,
    threads: int = 1,
    sequence: int = 200,
    trace: bool = True,
    progress: bool = False,
) -> FuzzResult:
    """``n`` calls in seeded sequences of ``sequence`` calls on a fresh simulated host."""
    sim.reset()
    result = FuzzResult(verbose=progress)
    t0 = time.perf_counter()
    if trace:
        tracemalloc.start()
    try:
        with UserMemory(devices=True, guarded=True) as mem:
            s = seed
            while result.calls < n:
                run_sequence(
                    s, min(sequence, n - result.calls), mem, result, threads=threads, trace=trace
                )
                s += 1
                if progress and result.sequences % 50 == 0:
                    print(
                        f"  {result.calls} calls, {len(result.findings)} findings, "
                        f"{time.perf_counter() - t0:.0f} s",
                        flush=True,
                    )
    finally:
        if trace:
            tracemalloc.stop()
    result.seconds = time.perf_counter() - t0
    return result
