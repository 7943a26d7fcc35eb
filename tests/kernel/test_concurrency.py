"""Eight threads at once on one simulated kernel (and, marked ``oracle``, on the real one):
each ioctl is atomic with respect to the others, so the answers are those of some serial
order. After every round the invariants hold: every successful MAP owns its IOVA alone,
every owned area unmaps, unmap-all returns exactly what is left, and pins and accounting
are back to where they started once everything is closed."""

from __future__ import annotations

import errno
import random
import threading
from collections.abc import Callable
from types import ModuleType

import pytest

from ioasid import Buffer, Iommufd, IommufdError
from ioasid.api.mock import Access, MockDevice
from ioasid.hw.memory import PAGE_SIZE
from ioasid.testing.process import getpid, vm_pinned_kb

pytestmark = pytest.mark.oracle

THREADS = 8
ROUNDS = 3
OPS = 150
SLOTS = 64
BASE = 1 << 28  # inside the mock domain's aperture [2^24, 2^31)


def _run(workers: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


def _shared_ioas_round(backend: ModuleType, seed: int, with_domain: bool) -> None:
    owners: dict[int, int] = {}
    lock = threading.Lock()
    with Iommufd(backend) as fd, Buffer(SLOTS * PAGE_SIZE) as buf:
        ioas = fd.ioas_alloc()
        mock = MockDevice(fd, ioas) if with_domain else None

        def worker(tid: int) -> None:
            rng = random.Random(seed * 100 + tid)
            mine: set[int] = set()
            for _ in range(OPS):
                slot = rng.randrange(SLOTS)
                iova = BASE + slot * PAGE_SIZE
                if slot in mine and rng.random() < 0.6:
                    with lock:
                        assert owners.pop(slot) == tid
                    mine.discard(slot)
                    assert ioas.unmap(iova, PAGE_SIZE) == PAGE_SIZE
                    continue
                try:
                    ioas.map(buf.address + slot * PAGE_SIZE, PAGE_SIZE, iova=iova)
                except IommufdError as e:
                    assert e.errno == errno.EEXIST, e
                    continue
                with lock:
                    assert slot not in owners, f"two MAPs own IOVA {iova:#x}"
                    owners[slot] = tid
                mine.add(slot)

        _run([lambda t=t: worker(t) for t in range(THREADS)])
        assert ioas.unmap_all() == len(owners) * PAGE_SIZE
        if mock is not None:
            mock.destroy()


def _separate_ioas_worker(backend: ModuleType, seed: int, fd: Iommufd, buf: Buffer) -> None:
    """An IOAS of its own with a mock domain: its pins share the mm's page counts with
    every other thread's, on the same pages."""
    rng = random.Random(seed)
    ioas = fd.ioas_alloc()
    mock = MockDevice(fd, ioas)
    live: list[int] = []
    for _ in range(OPS // 3):
        if live and rng.random() < 0.5:
            iova = live.pop(rng.randrange(len(live)))
            assert ioas.unmap(iova, PAGE_SIZE) == PAGE_SIZE
        else:
            live.append(ioas.map(buf.address + rng.randrange(SLOTS) * PAGE_SIZE, PAGE_SIZE))
    mock.destroy()
    ioas.unmap_all()
    fd.destroy(ioas.id)


def _access_worker(seed: int, fd: Iommufd, buf: Buffer) -> None:
    rng = random.Random(seed)
    ioas = fd.ioas_alloc()
    iova = ioas.map(buf)
    with Access(fd, ioas) as access:
        pins = []
        for _ in range(OPS // 3):
            if pins and rng.random() < 0.5:
                access.unpin(pins.pop())
            else:
                off = rng.randrange(SLOTS) * PAGE_SIZE
                pins.append(access.pin(iova + off, PAGE_SIZE, buf.address + off))
            data = bytes([rng.randrange(256)]) * 8
            mine = iova + (seed % SLOTS) * PAGE_SIZE  # no other thread writes this page
            access.write(mine, data)
            assert access.read(mine, 8) == data
    ioas.unmap_all()
    fd.destroy(ioas.id)


def _attach_worker(seed: int, fd: Iommufd, buf: Buffer) -> None:
    """Attach and detach a mock device while other threads map into the same IOAS."""
    rng = random.Random(seed)
    ioas = fd.ioas_alloc()
    for _ in range(OPS // 10):
        mock = MockDevice(fd, ioas)
        ioas.map(buf.address + rng.randrange(SLOTS) * PAGE_SIZE, PAGE_SIZE)
        mock.destroy()
    ioas.unmap_all()
    fd.destroy(ioas.id)


@pytest.mark.parametrize("with_domain", [False, True], ids=["no_domain", "mock_domain"])
def test_threads_share_one_ioas(backend: ModuleType, with_domain: bool) -> None:
    pinned = vm_pinned_kb(backend, getpid(backend))
    for seed in range(ROUNDS):
        _shared_ioas_round(backend, seed, with_domain)
        assert vm_pinned_kb(backend, getpid(backend)) == pinned


def test_threads_on_separate_ioases_accesses_and_attach(backend: ModuleType) -> None:
    pinned = vm_pinned_kb(backend, getpid(backend))
    for seed in range(ROUNDS):
        with Iommufd(backend) as fd, Buffer(SLOTS * PAGE_SIZE) as buf:
            workers: list[Callable[[], None]] = []
            for t in range(THREADS):
                s = seed * 100 + t
                if t % 3 == 0:
                    workers.append(lambda s=s: _separate_ioas_worker(backend, s, fd, buf))
                elif t % 3 == 1:
                    workers.append(lambda s=s: _access_worker(s, fd, buf))
                else:
                    workers.append(lambda s=s: _attach_worker(s, fd, buf))
            _run(workers)
        assert vm_pinned_kb(backend, getpid(backend)) == pinned
