"""The ``TEST_FAIL_NTH`` harness of ``tools/testing/selftests/iommu/iommufd_fail_nth.c``
(Linux 7.3), on either backend.

The C harness runs the body once unarmed, then for n = 1, 2, ...: tears the fixture down,
sets it up again, and runs the body with ``/proc/self/task/<tid>/fail-nth`` armed to n (the
body arms it itself, with ``fail_nth_enable()``, after the setup it does not want swept).
After the body it reads the counter back and disarms: "0" means the n-th fault point was
reached and failed, so there is an (n+1)-th to try; anything else means the body ran through
with fewer than n fault points and the sweep ends. The body must then have succeeded.

:class:`FailNthState` is ``struct fail_nth_state`` with ``fail_nth_first`` / ``_next`` /
``__fail_nth_enable``. The counter it reads and writes is, on ``linux``, the real
``fail-nth`` file (after the debugfs set-up of ``setup_fault_injection()``, as the C
constructor does it); on ``sim``, the simulated task's ``fail_nth`` through
:mod:`ioasid.kernel.fail_nth` -- the same ``"%u\\n"`` text either way, so
:meth:`FailNthState.next` is one piece of code.

Added to C, on purpose: after every teardown :func:`run_fail_nth` checks that the injected
failure left nothing behind (:class:`Leftovers`): no pinned page (``MD_CHECK_REFS`` 0, as
``teardown_iommufd`` checks), ``VmPin``/``VmLck`` back to what they were, no descriptor
left open; on ``sim`` also no per-user accounting, no page pin, no live kernel file and no
object the context had to force-destroy (the kernel's ``WARN_ON(!destroyed)`` in
``iommufd_fops_release``).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import pytest

from ioasid.testing.process import getpid, vm_locked_kb, vm_pinned_kb

DEBUGFS = "/sys/kernel/debug"
ITERATION_LIMIT = 1000
"""``ASSERT_GT(1000, nth_state->iteration)``: the C harness's arbitrary ceiling."""


def _writeat(path: str, val: str) -> bool:
    """``writeat()``: False when the file cannot be opened; a short write is an error."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        assert os.write(fd, val.encode()) == len(val)
    finally:
        os.close(fd)
    return True


_have_fault_injection: bool | None = None


def setup_fault_injection() -> bool:
    """``setup_fault_injection()`` (a constructor in C, once per run here): let every
    allocation be injected (``failslab`` / ``fail_page_alloc`` ``ignore-gfp-*`` N), quiet
    every ``fail*`` attribute; False when the kernel has no fault injection."""
    global _have_fault_injection
    if _have_fault_injection is not None:
        return _have_fault_injection
    _have_fault_injection = False
    if not os.path.isdir(DEBUGFS):
        return False
    if not _writeat(f"{DEBUGFS}/failslab/ignore-gfp-wait", "N"):
        return False
    _writeat(f"{DEBUGFS}/fail_page_alloc/ignore-gfp-wait", "N")
    _writeat(f"{DEBUGFS}/fail_page_alloc/ignore-gfp-highmem", "N")
    for name in sorted(os.listdir(DEBUGFS)):
        if name.startswith("fail"):
            _writeat(f"{DEBUGFS}/{name}/verbose", "0")
    _have_fault_injection = True
    return True


class _Counter(Protocol):
    def pread(self) -> bytes: ...
    def pwrite(self, data: bytes) -> int: ...


class _ProcFailNth:
    """``/proc/self/task/<tid>/fail-nth``, opened O_RDWR (``fail_nth_first``)."""

    def __init__(self) -> None:
        self.fd = os.open(f"/proc/self/task/{threading.get_native_id()}/fail-nth", os.O_RDWR)

    def pread(self) -> bytes:
        return os.pread(self.fd, 300, 0)

    def pwrite(self, data: bytes) -> int:
        return os.pwrite(self.fd, data, 0)

    def close(self) -> None:
        os.close(self.fd)


class _SimFailNth:
    """The simulated task's ``fail_nth`` with the file's text format."""

    def __init__(self, backend: ModuleType) -> None:
        from ioasid.kernel import fail_nth

        self._fail_nth = fail_nth
        self.task = backend.kernel().processes.current

    def pread(self) -> bytes:
        return f"{self._fail_nth.armed(self.task)}\n".encode()

    def pwrite(self, data: bytes) -> int:
        self._fail_nth.arm(self.task, int(data))
        return len(data)

    def close(self) -> None:
        self._fail_nth.arm(self.task, 0)


class FailNthState:
    """``struct fail_nth_state`` and the functions that use it."""

    def __init__(self, backend: ModuleType) -> None:
        """``fail_nth_first``."""
        self.iteration = 0
        self.counter: _ProcFailNth | _SimFailNth = (
            _SimFailNth(backend) if backend.NAME == "sim" else _ProcFailNth()
        )

    def enable(self) -> None:
        """``fail_nth_enable()``: arm the counter to the iteration (0: the unarmed run)."""
        if not self.iteration:
            return
        text = str(self.iteration).encode()
        assert self.counter.pwrite(text) == len(text)

    def next(self) -> bool:
        """``fail_nth_next``: after a run, read what is left of the counter and disarm;
        True if the run's fault point fired (so there may be one more)."""
        assert self.iteration < ITERATION_LIMIT, "more fault points than the C harness allows"
        if self.iteration:
            try:
                buf = self.counter.pread()
            except OSError as e:
                # "disabling the nth can also fail": the read's own copy was injected
                if e.errno != errno.EFAULT:
                    raise
                buf = b"1\n"
            try:
                written = self.counter.pwrite(b"0")
            except OSError as e:
                if e.errno != errno.EFAULT:
                    raise
                written = self.counter.pwrite(b"0")
                buf = b"1\n"
            assert written == 1
            assert len(buf) > 1
            if buf != b"0\n":
                return False
        self.iteration += 1
        return True

    def close(self) -> None:
        self.counter.close()


@dataclass(frozen=True)
class Leftovers:
    """What a run can leave behind, as seen from outside the iommufd."""

    vm_pinned_kb: int
    vm_locked_kb: int
    fds: frozenset[tuple[int, str]]
    sim: tuple[Any, ...] = ()

    @classmethod
    def now(cls, backend: ModuleType) -> Leftovers:
        pid = getpid(backend)
        pinned, locked = vm_pinned_kb(backend, pid), vm_locked_kb(backend, pid)
        fds = _kernel_fds()
        if backend.NAME != "sim":
            return cls(pinned, locked, fds)
        k = backend.kernel()
        task = k.processes.current
        sim = (
            ("user locked_vm", task.user.locked_vm),
            ("page pins", tuple(task.mm.page_pins.ranges())),
            ("kernel files", len(k.files)),
            ("anonymous inodes", len(k.anon_inodes.files)),
            ("group owners", sum(g.owner_cnt for g in k.groups.values())),
            ("forced destroys", _forced_destroys()),
        )
        return cls(pinned, locked, fds, sim)


def _kernel_fds() -> frozenset[tuple[int, str]]:
    """The descriptors of files the iommufd kernel created or opened: ``/dev/iommu``,
    anonymous inodes (access, fault, vEVENTQ; on ``sim`` also each handle's ``eventfd``) and
    the sim's memfd-backed stand-ins for them (named ``[...]``). Other descriptors come and
    go with pytest and the interpreter."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if target.startswith(("anon_inode:", "/dev/iommu", "/memfd:[")):
            found.add((int(name), target))
    return frozenset(found)


def _forced_destroys() -> int:
    from ioasid.kernel import objects

    return objects.forced_destroys


class Fixture(Protocol):
    def setup(self) -> None: ...
    def teardown(self) -> None: ...


def run_fail_nth(
    backend: ModuleType, fixture: Fixture, body: Callable[[FailNthState], None]
) -> int:
    """``TEST_FAIL_NTH``: the unarmed run must succeed; then every fault point of the body
    in turn, until one run has no n-th fault point; that run must succeed. ``body`` raises
    ``OSError`` where the C body returns -1. Returns the iterations (``nth_state.iteration``
    at the end, the number of runs after the first)."""
    if backend.NAME != "sim" and not setup_fault_injection():
        pytest.skip("fault injection is not enabled in the kernel")
    nth = FailNthState(backend)
    try:
        body(nth)
        # what the unarmed run leaves after its teardown is what every failed one must
        # leave (taken after it, not before: it may open caches, e.g. the sim's maps fd)
        before: Leftovers | None = None
        test_result = 0
        while nth.next():
            fixture.teardown()
            after = Leftovers.now(backend)
            if before is None:
                before = after
            assert after == before, (
                f"the run that failed at fault point {nth.iteration - 1} left {after}; "
                f"the unarmed run left {before}"
            )
            fixture.setup()
            try:
                body(nth)
                test_result = 0
            except OSError:
                test_result = -1
        assert test_result == 0, "the run with no fault point left failed"
        fixture.teardown()
        assert Leftovers.now(backend) == before
        return nth.iteration
    finally:
        nth.close()
