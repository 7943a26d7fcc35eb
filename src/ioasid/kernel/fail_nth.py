"""``lib/fault-inject.c``'s per-task ``fail-nth``: the simulator's fault injection.

Writing ``N`` to ``/proc/<pid>/task/<tid>/fail-nth`` arms the task: the N-th fault point it
reaches from then on fails, and the counter reads 0 afterwards (``should_fail_ex``: a
non-zero ``current->fail_nth`` is decremented at every fault point, the one that takes it to
0 fails). Writing 0 disarms; reading gives the counter left (``"%u\\n"``), so "0" after an
armed call means the fault fired.

The API, for fault points and for whoever arms them:

* :func:`should_fail` — called at a fault point (an allocation, an xarray insert, a pin, a
  user copy) with ``kernel.processes.current``; ``True`` means: fail here as the kernel
  would (``-ENOMEM`` for an allocation, ``-EFAULT`` for a copy), leaving the state it leaves.
  :func:`inject` is the one-line form for a point before anything changed: raise the errno.
  :func:`recovered` is a point whose failure the kernel absorbs (an xarray node's first,
  ``GFP_NOWAIT`` try, retried with ``GFP_KERNEL``; a ``__GFP_NOWARN`` allocation with a
  fallback): it counts, and nothing fails.
* :func:`arm` / :func:`armed` — the counter behind ``fail-nth`` (the bridge serves the file
  with them; Python tests arm the sim's current task directly, or with :func:`injecting`).

The counter is :attr:`ioasid.kernel.process.Task.fail_nth`. The kernel keeps it per thread;
the bridge swaps a thread's own counter in for the duration of that thread's call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ioasid.kernel.errors import fail
from ioasid.kernel.process import Task

trace: list[str] | None = None
"""When a list, every fault point reached while armed appends its site (for comparing the
sequence with the kernel's: ``FAULT_INJECTION`` stack dumps of the oracle)."""


def should_fail(task: Task, site: str = "") -> bool:
    """A fault point reached by ``task``: count down an armed counter, fail at zero."""
    n = task.fail_nth
    if not n:
        return False
    if trace is not None:
        trace.append(site)
    task.fail_nth = n - 1
    return n == 1


def inject(task: Task, err: int, site: str) -> None:
    """A fault point at ``site`` (the kernel function that fails) that fails the call with
    ``err`` before it changed anything."""
    if should_fail(task, site):
        fail(err, f"fail-nth: {site} failed")


def recovered(task: Task, site: str) -> bool:
    """A fault point whose failure the kernel recovers from (by another way that succeeds):
    it takes a count; True when it fired."""
    return should_fail(task, site)


def arm(task: Task, nth: int) -> None:
    """``proc_fail_nth_write``: the ``nth`` fault point from now fails (0 disarms)."""
    if not 0 <= nth < 1 << 32:
        raise ValueError(f"fail-nth {nth} is not an unsigned int")
    task.fail_nth = nth


def armed(task: Task) -> int:
    """``proc_fail_nth_read``: what is left of the counter (0: fired, or never armed)."""
    return task.fail_nth


@contextmanager
def injecting(task: Task, nth: int) -> Iterator[Task]:
    """Arm ``task`` for the block and disarm after it (the selftests' ``fail_nth_next``)."""
    arm(task, nth)
    try:
        yield task
    finally:
        arm(task, 0)
