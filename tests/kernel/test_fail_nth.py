"""The simulator's ``fail_nth``: the n-th fault point a task reaches fails, for n = 1, 2, ...
until the whole sequence succeeds (the sweep of ``iommufd_fail_nth``). Every injected failure
must leave nothing behind: after closing, no pins and no accounting remain, and a second
run of the sequence in the same context still works."""

from __future__ import annotations

import errno
from collections.abc import Callable
from types import ModuleType

import pytest

from ioasid import Buffer, Iommufd, IommufdError
from ioasid.api.mock import Access, MockDevice
from ioasid.hw.memory import PAGE_SIZE
from ioasid.kernel.fail_nth import armed, injecting
from ioasid.testing.process import getpid, vm_pinned_kb

BASE = 1 << 28  # inside the mock domain's aperture


def _basic(fd: Iommufd, buf: Buffer) -> None:
    """``basic_fail_nth.basic`` and ``map_domain`` in one: IOAS, maps, a mock domain,
    unmap, an access that pins and reads, destroy."""
    ioas = fd.ioas_alloc()
    ioas.map(buf.address, 16 * PAGE_SIZE, iova=BASE)
    mock = MockDevice(fd, ioas)
    iova = ioas.map(buf.address + 16 * PAGE_SIZE, 16 * PAGE_SIZE)
    with Access(fd, ioas) as access:
        pin = access.pin(BASE, PAGE_SIZE, buf.address)
        assert access.read(BASE, 8) == bytes(buf[0:8])
        access.unpin(pin)
    ioas.unmap(iova, 16 * PAGE_SIZE)
    mock.destroy()
    ioas.unmap_all()
    fd.destroy(ioas.id)


def _sweep(backend: ModuleType, body: Callable[[Iommufd, Buffer], None]) -> tuple[int, set[int]]:
    pid = getpid(backend)
    pinned = vm_pinned_kb(backend, pid)
    task = backend.kernel().processes.current
    errnos: set[int] = set()
    for nth in range(1, 2000):
        with Buffer(64 * PAGE_SIZE) as buf:
            fd = Iommufd(backend)
            try:
                with injecting(task, nth):
                    body(fd, buf)
                    fired = armed(task) == 0
            except IommufdError as e:
                errnos.add(e.errno or 0)
                fired = True
            else:
                if not fired:
                    return nth, errnos
            finally:
                fd.close()
            assert fired
            assert vm_pinned_kb(backend, pid) == pinned, f"pins left after failing at {nth}"
    raise AssertionError("the sequence never succeeded")


def test_every_fault_point_of_the_basic_sequence_unwinds(backend: ModuleType) -> None:
    assert backend.NAME == "sim"
    runs, errnos = _sweep(backend, _basic)
    # lookups (ENOENT), allocations (ENOMEM), pins (EFAULT, ENOMEM) all fired
    assert runs > 10, runs
    assert {errno.ENOENT, errno.ENOMEM, errno.EFAULT} <= errnos, errnos
    with Iommufd(backend) as fd, Buffer(64 * PAGE_SIZE) as buf:
        _basic(fd, buf)  # and the simulator still works


def test_arm_refuses_what_fail_nth_cannot_hold(backend: ModuleType) -> None:
    from ioasid.kernel.fail_nth import arm

    assert backend.NAME == "sim"
    with pytest.raises(ValueError):
        arm(backend.kernel().processes.current, 1 << 32)
