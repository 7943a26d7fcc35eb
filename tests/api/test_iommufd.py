"""The public API: same expectations on the embedded kernel and on Linux 7.3."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from ioasid import Buffer, Iommufd, IommufdError, IovaRange, memfd
from ioasid.testing.process import capable

pytestmark = pytest.mark.oracle

P = 4096
MiB = 1 << 20
U64_MAX = (1 << 64) - 1
CAP_SYS_RESOURCE = 24


@pytest.fixture
def fd(iommufd: Iommufd) -> Iommufd:
    """The plugin's ``iommufd`` fixture, under the short name these tests use."""
    return iommufd


@pytest.fixture
def buf() -> Iterator[Buffer]:
    with Buffer(4 * MiB) as b:
        yield b


def test_ids_are_lowest_free_from_one(fd: Iommufd) -> None:
    a, b, c = fd.ioas_alloc(), fd.ioas_alloc(), fd.ioas_alloc()
    assert (a.id, b.id, c.id) == (1, 2, 3)
    b.destroy()
    assert fd.ioas_alloc().id == 2
    with pytest.raises(IommufdError) as e:
        fd.destroy(b.id + 10)
    assert e.value.errno == errno.ENOENT
    assert "IOMMU_DESTROY" in str(e.value)


def test_map_auto_iova_follows_user_va_alignment(fd: Iommufd, buf: Buffer) -> None:
    ioas = fd.ioas_alloc()
    assert ioas.map(buf) == 2 * MiB  # 4 MiB aligned to 2 MiB (THP cap), first fit above P
    assert ioas.map(buf.address + P, P) == P  # page offset 0, 4 KiB alignment
    assert ioas.map(buf.address + 0x120, 0x10) == 2 * P + 0x120  # alignment 0x10, offset kept
    assert ioas.unmap_all() == 4 * MiB + P + 0x10


def test_map_errors_leave_state_unchanged(fd: Iommufd, buf: Buffer) -> None:
    ioas = fd.ioas_alloc()
    iova = ioas.map(buf, iova=16 * MiB)
    for kwargs, err in [
        ({"iova": 16 * MiB + P}, errno.EEXIST),
        ({"iova": U64_MAX}, errno.EOVERFLOW),
        ({"readable": False, "writable": False}, errno.EINVAL),
    ]:
        with pytest.raises(IommufdError) as e:
            ioas.map(buf.address, P, **kwargs)  # type: ignore[arg-type]
        assert e.value.errno == err, kwargs
    with pytest.raises(IommufdError) as e:
        ioas.map(buf.address, 0, iova=64 * MiB)
    assert e.value.errno == errno.EINVAL
    assert ioas.unmap(iova, 4 * MiB) == 4 * MiB


def test_unmap_is_whole_areas_and_partial_on_failure(fd: Iommufd, buf: Buffer) -> None:
    ioas = fd.ioas_alloc()
    for i in range(3):
        ioas.map(buf.address, 2 * P, iova=MiB + i * 4 * P)
    with pytest.raises(IommufdError) as e:
        ioas.unmap(MiB + P, P)
    assert e.value.errno == errno.ENOENT
    # covers area 0 and 1 fully, cuts area 2: the first two are gone, the call fails
    with pytest.raises(IommufdError) as e:
        ioas.unmap(MiB, 9 * P)
    assert e.value.errno == errno.ENOENT
    with pytest.raises(IommufdError) as e:
        ioas.unmap(MiB, 8 * P)
    assert e.value.errno == errno.ENOENT  # nothing left there
    assert ioas.unmap_all() == 2 * P


def test_copy_and_read_only(fd: Iommufd, buf: Buffer) -> None:
    src, dst = fd.ioas_alloc(), fd.ioas_alloc()
    iova = src.map(buf, iova=2 * MiB, writable=False)
    with pytest.raises(IommufdError) as e:
        dst.copy_from(src, iova, P)
    assert e.value.errno == errno.EPERM
    assert dst.copy_from(src, iova + P, 2 * P, iova=8 * MiB, writable=False) == 8 * MiB
    with pytest.raises(IommufdError) as e:
        dst.copy_from(src, iova + 4 * MiB - P, 2 * P, writable=False)
    assert e.value.errno == errno.ENOENT
    assert dst.unmap_all() == 2 * P


def test_iova_ranges_and_allow(fd: Iommufd) -> None:
    ioas = fd.ioas_alloc()
    r = ioas.iova_ranges()
    assert r.ranges == (IovaRange(0, U64_MAX),) and r.alignment == 1
    ioas.allow_iovas([(16 * MiB, 32 * MiB - 1)])
    with Buffer(MiB) as b:
        iova = ioas.map(b)
        assert 16 * MiB <= iova and iova + MiB - 1 <= 32 * MiB - 1
    with pytest.raises(IommufdError) as e:
        ioas.allow_iovas([(P, P)])
    assert e.value.errno == errno.EINVAL
    with pytest.raises(IommufdError) as e:
        ioas.allow_iovas([(P, 3 * P), (2 * P, 4 * P)])
    assert e.value.errno == errno.EINVAL


def test_huge_pages_option(fd: Iommufd, buf: Buffer) -> None:
    ioas = fd.ioas_alloc()
    assert ioas.huge_pages
    ioas.map(buf.address + 0x800, P, iova=MiB + 0x800)
    with pytest.raises(IommufdError) as e:
        ioas.huge_pages = False
    assert e.value.errno == errno.EADDRINUSE
    assert ioas.huge_pages
    ioas.unmap_all()
    ioas.huge_pages = False
    assert ioas.iova_ranges().alignment == P
    with pytest.raises(IommufdError) as e:
        ioas.map(buf.address + 0x800, P)
    assert e.value.errno == errno.EINVAL


def test_map_file_memfd(fd: Iommufd) -> None:
    mfd = memfd("guest", 16 * P)
    try:
        ioas = fd.ioas_alloc()
        assert ioas.map_file(mfd, 0, 16 * P, iova=MiB) == MiB
        with pytest.raises(IommufdError) as e:
            ioas.map_file(mfd, 0, 0)
        assert e.value.errno == errno.EINVAL
        closed = os.dup(mfd)
        os.close(closed)
        with pytest.raises(IommufdError) as e:
            ioas.map_file(closed, 0, P)
        assert e.value.errno == errno.EBADF
        fd.change_process()
    finally:
        os.close(mfd)


def test_change_process_refuses_plain_maps(fd: Iommufd, buf: Buffer) -> None:
    fd.ioas_alloc().map(buf)
    with pytest.raises(IommufdError) as e:
        fd.change_process()
    assert e.value.errno == errno.EINVAL


def test_rlimit_mode_only_without_objects(fd: Iommufd, backend: ModuleType) -> None:
    assert fd.rlimit_mode_mm is False
    if not capable(backend, CAP_SYS_RESOURCE):
        with pytest.raises(IommufdError) as e:
            fd.rlimit_mode_mm = True
        assert e.value.errno == errno.EPERM
        return
    fd.rlimit_mode_mm = True
    assert fd.rlimit_mode_mm is True
    fd.ioas_alloc()
    with pytest.raises(IommufdError) as e:
        fd.rlimit_mode_mm = False
    assert e.value.errno == errno.EBUSY


def test_ioas_with_a_hwpt_cannot_be_destroyed_but_with_areas_can(fd: Iommufd, buf: Buffer) -> None:
    ioas = fd.ioas_alloc()
    ioas.map(buf)
    ioas.destroy()
    with pytest.raises(IommufdError) as e:
        ioas.unmap_all()
    assert e.value.errno == errno.ENOENT
