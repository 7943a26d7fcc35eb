"""``FIXTURE(iommufd_dirty_tracking)`` of ``tools/testing/selftests/iommu/iommufd.c``
(Linux 7.3): every variant and every test.

Tests are registered per variant by :func:`utils.TEST_F` as
``test_iommufd_dirty_tracking__<variant>__<name>``.

The ``_huge`` variants ``mmap`` the buffer with ``MAP_HUGETLB | MAP_POPULATE``; where the host
has no hugetlb pages the C fixture dies on an ``assert``; here the test is skipped.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

from ioasid import uapi
from ioasid.testing.libc import MAP_FAILED, MAP_FIXED, MAP_HUGETLB, MAP_POPULATE

from .utils import (
    HUGEPAGE_SIZE,
    PAGE_SIZE,
    TEST_F,
    Fixture,
    _test_cmd_mock_domain_flags,
    _test_cmd_pasid_op,
    expect_errno,
    ioctl,
    libc_mmap,
    libc_munmap,
)

pytestmark = pytest.mark.oracle

MOCK_PAGE_SIZE = uapi.MOCK_PAGE_SIZE
MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE
MOCK_APERTURE_START = uapi.MOCK_APERTURE_START
MOCK_IOMMUPT_DEFAULT = 0
MOCK_IOMMUPT_HUGE = 1


@dataclass(frozen=True)
class Variant:
    """``FIXTURE_VARIANT(iommufd_dirty_tracking)``."""

    buffer_size: int
    hugepages: bool = False


_K, _M = 1024, 1024 * 1024
VARIANTS = {
    "domain_dirty8k": Variant(8 * _K),
    "domain_dirty16k": Variant(16 * _K),
    "domain_dirty64k": Variant(64 * _K),
    "domain_dirty128k": Variant(128 * _K),
    "domain_dirty320k": Variant(320 * _K),
    "domain_dirty64M": Variant(64 * _M),
    "domain_dirty64M_huge": Variant(64 * _M, True),
    "domain_dirty128M": Variant(128 * _M),
    "domain_dirty128M_huge": Variant(128 * _M, True),
}


def _aligned_mmap(length: int, align: int, prot: int, flags: int) -> tuple[int, int, int]:
    """``posix_memalign(&p, align, length)`` then ``mmap(p, length, prot, flags | MAP_FIXED)``:
    returns (address or MAP_FAILED, reservation base, reservation length)."""
    rlen = length + align
    base = libc_mmap(rlen, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    assert base != MAP_FAILED
    aligned = (base + align - 1) & ~(align - 1)
    addr = libc_mmap(length, prot, flags | MAP_FIXED, addr=aligned)
    return addr, base, rlen


class IommufdDirtyTracking(Fixture):
    """``FIXTURE(iommufd_dirty_tracking)``: fd, ioas_id, hwpt_id, stdev_id, idev_id,
    page_size, bitmap_size, bitmap, buffer."""

    def __init__(self, backend: ModuleType, variant: Variant) -> None:
        super().__init__(backend)
        self.variant = variant
        self._maps: list[tuple[int, int]] = []
        # FIXTURE_SETUP(iommufd_dirty_tracking)
        mmap_flags = mmap.MAP_SHARED | mmap.MAP_ANONYMOUS
        mmap_buffer_size = variant.buffer_size
        if variant.hugepages:
            # MAP_POPULATE will cause the kernel to fail mmap if THPs are not available.
            mmap_flags |= MAP_HUGETLB | MAP_POPULATE
            # Allocation must be aligned to the HUGEPAGE_SIZE
            mmap_buffer_size = max(mmap_buffer_size, HUGEPAGE_SIZE)

        prot = mmap.PROT_READ | mmap.PROT_WRITE
        buf, base, rlen = _aligned_mmap(mmap_buffer_size, HUGEPAGE_SIZE, prot, mmap_flags)
        self._maps.append((base, rlen))
        if buf == MAP_FAILED:
            err = os.strerror(ctypes.get_errno())
            self.teardown()
            pytest.skip(f"mmap of the {mmap_buffer_size:#x} byte buffer failed: {err}")
        assert buf % HUGEPAGE_SIZE == 0
        self.buffer = buf

        self.page_size = MOCK_PAGE_SIZE
        self.bitmap_size = variant.buffer_size // self.page_size

        # Provision with an extra (PAGE_SIZE) for the unaligned case
        size = -(-self.bitmap_size // 8)
        bitmap, base, rlen = _aligned_mmap(
            size + PAGE_SIZE, PAGE_SIZE, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        )
        self._maps.append((base, rlen))
        assert bitmap != MAP_FAILED
        self.bitmap = bitmap

        self.ioas_id = self.test_ioctl_ioas_alloc()

        # Disabling huge pages maps in PAGE_SIZE units, which can span multiple contiguous
        # MOCK_PAGE_SIZE entries. The dirty tests must expect the entire mapping to be
        # reported dirty.
        cmd = uapi.iommu_option(
            size=ctypes.sizeof(uapi.iommu_option),
            option_id=uapi.IOMMU_OPTION_HUGE_PAGES,
            op=uapi.IOMMU_OPTION_OP_SET,
            val64=0,
            object_id=self.ioas_id,
        )
        if not variant.hugepages:
            assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0

        self.stdev_id, self.hwpt_id, self.idev_id = self.test_cmd_mock_domain(self.ioas_id)

    def teardown(self) -> None:
        """FIXTURE_TEARDOWN: free buffer and bitmap, ``teardown_iommufd``."""
        super().teardown()
        for base, rlen in self._maps:
            libc_munmap(base, rlen)
        self._maps.clear()

    def test_cmd_set_dirty_tracking(self, hwpt_id: int, enabled: bool) -> None:
        cmd = uapi.iommu_hwpt_set_dirty_tracking(
            size=ctypes.sizeof(uapi.iommu_hwpt_set_dirty_tracking),
            flags=uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE if enabled else 0,
            hwpt_id=hwpt_id,
        )
        assert self.ioctl(uapi.IOMMU_HWPT_SET_DIRTY_TRACKING, cmd) == 0

    def test_cmd_get_dirty_bitmap(
        self, hwpt_id: int, length: int, iova: int, page_size: int, bitmap: int, flags: int
    ) -> None:
        cmd = uapi.iommu_hwpt_get_dirty_bitmap(
            size=ctypes.sizeof(uapi.iommu_hwpt_get_dirty_bitmap),
            hwpt_id=hwpt_id,
            flags=flags,
            iova=iova,
            length=length,
            page_size=page_size,
            data=bitmap,
        )
        assert self.ioctl(uapi.IOMMU_HWPT_GET_DIRTY_BITMAP, cmd) == 0

    def test_cmd_mock_domain_set_dirty(
        self, hwpt_id: int, length: int, iova: int, page_size: int, bitmap: int
    ) -> int:
        """Returns ``out_nr_dirty``."""
        cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
        cmd.op = uapi.IOMMU_TEST_OP_DIRTY
        cmd.id = hwpt_id
        cmd.dirty.iova = iova
        cmd.dirty.length = length
        cmd.dirty.page_size = page_size
        cmd.dirty.uptr = bitmap
        assert ioctl(self._fd, uapi.IOMMU_TEST_CMD, cmd) == 0
        return int(cmd.dirty.out_nr_dirty)

    def test_mock_dirty_bitmaps(
        self,
        hwpt_id: int,
        length: int,
        iova: int,
        page_size: int,
        pte_page_size: int,
        bitmap: int,
        nbits: int,
        flags: int,
    ) -> None:
        """``_test_mock_dirty_bitmaps``."""
        npte = pte_page_size // page_size
        pteset = 2 * npte
        nr = nbits // pteset or 1
        bitmap_size = -(-nbits // 8)
        view = (ctypes.c_uint8 * bitmap_size).from_address(bitmap)

        def test_bit(i: int) -> bool:
            return bool(view[i // 8] >> (i % 8) & 1)

        # Mark all even bits as dirty in the mock domain
        ctypes.memset(bitmap, 0, bitmap_size)
        for i in range(0, nbits, pteset):
            view[i // 8] |= 1 << (i % 8)

        out_dirty = self.test_cmd_mock_domain_set_dirty(hwpt_id, length, iova, page_size, bitmap)
        assert nr == out_dirty

        # Expect all even bits as dirty in the user bitmap
        ctypes.memset(bitmap, 0, bitmap_size)
        self.test_cmd_get_dirty_bitmap(hwpt_id, length, iova, page_size, bitmap, flags)
        for i in range(0, nbits, pteset):
            for j in range(pteset):
                assert (j < npte) == test_bit(i + j), f"bit {i + j}"
            assert (not (i % pteset)) == test_bit(i)

        ctypes.memset(bitmap, 0, bitmap_size)
        self.test_cmd_get_dirty_bitmap(hwpt_id, length, iova, page_size, bitmap, flags)

        # It as read already -- expect all zeroes
        no_clear = bool(flags & uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)
        for i in range(0, nbits, pteset):
            for j in range(pteset):
                assert ((j < npte) and no_clear) == test_bit(i + j), f"bit {i + j}"


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[IommufdDirtyTracking]:
    fixture = IommufdDirtyTracking(backend, request.function.variant)
    yield fixture
    fixture.teardown()


iommufd_dirty_tracking = TEST_F("iommufd_dirty_tracking", VARIANTS, globals())


@iommufd_dirty_tracking
def enforce_dirty(self: IommufdDirtyTracking) -> None:
    # Regular case
    dev_flags = uapi.MOCK_FLAGS_DEVICE_NO_DIRTY
    hwpt_id = self.test_cmd_hwpt_alloc(
        self.idev_id, self.ioas_id, uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
    )
    stddev_id, _, _ = self.test_cmd_mock_domain(hwpt_id)
    with expect_errno(errno.EINVAL):
        _test_cmd_mock_domain_flags(self._fd, hwpt_id, dev_flags)
    self.test_ioctl_destroy(stddev_id)
    self.test_ioctl_destroy(hwpt_id)

    # IOMMU device does not support dirty tracking
    ioas_id = self.test_ioctl_ioas_alloc()
    stddev_id, _, idev_id = self.test_cmd_mock_domain_flags(ioas_id, dev_flags)
    self.test_err_hwpt_alloc(
        errno.EOPNOTSUPP, idev_id, ioas_id, uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
    )
    self.test_ioctl_destroy(stddev_id)


@iommufd_dirty_tracking
def set_dirty_tracking(self: IommufdDirtyTracking) -> None:
    hwpt_id = self.test_cmd_hwpt_alloc(
        self.idev_id, self.ioas_id, uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
    )
    stddev_id, _, _ = self.test_cmd_mock_domain(hwpt_id)
    self.test_cmd_set_dirty_tracking(hwpt_id, True)
    self.test_cmd_set_dirty_tracking(hwpt_id, False)

    self.test_ioctl_destroy(stddev_id)
    self.test_ioctl_destroy(hwpt_id)


@iommufd_dirty_tracking
def pasid_set_dirty_tracking(self: IommufdDirtyTracking) -> None:
    pasid = 100
    dev_flags = uapi.MOCK_FLAGS_DEVICE_PASID
    ATTACH, DETACH = uapi.IOMMU_TEST_OP_PASID_ATTACH, uapi.IOMMU_TEST_OP_PASID_DETACH

    # Regular case
    hwpt_id = self.test_cmd_hwpt_alloc(
        self.idev_id,
        self.ioas_id,
        uapi.IOMMU_HWPT_ALLOC_PASID | uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    )
    stddev_id, _, _ = self.test_cmd_mock_domain_flags(hwpt_id, dev_flags)
    assert _test_cmd_pasid_op(self._fd, ATTACH, stddev_id, pasid, hwpt_id) == 0
    self.test_cmd_set_dirty_tracking(hwpt_id, True)
    self.test_cmd_set_dirty_tracking(hwpt_id, False)
    assert _test_cmd_pasid_op(self._fd, DETACH, stddev_id, pasid) == 0

    self.test_ioctl_destroy(stddev_id)

    # IOMMU device does not support dirty tracking
    dev_flags |= uapi.MOCK_FLAGS_DEVICE_NO_DIRTY
    ioas_id = self.test_ioctl_ioas_alloc()
    stddev_id, _, _ = self.test_cmd_mock_domain_flags(ioas_id, dev_flags)
    with expect_errno(errno.EINVAL):
        _test_cmd_pasid_op(self._fd, ATTACH, stddev_id, pasid, hwpt_id)

    self.test_ioctl_destroy(stddev_id)
    self.test_ioctl_destroy(hwpt_id)


@iommufd_dirty_tracking
def device_dirty_capability(self: IommufdDirtyTracking) -> None:
    hwpt_id = self.test_cmd_hwpt_alloc(self.idev_id, self.ioas_id, 0)
    stddev_id, _, _ = self.test_cmd_mock_domain(hwpt_id)
    caps = self.test_cmd_get_hw_capabilities(self.idev_id)
    assert caps & uapi.IOMMU_HW_CAP_DIRTY_TRACKING == uapi.IOMMU_HW_CAP_DIRTY_TRACKING

    self.test_ioctl_destroy(stddev_id)
    self.test_ioctl_destroy(hwpt_id)


def _get_dirty_bitmap(self: IommufdDirtyTracking, flags: int) -> None:
    """The body shared by ``get_dirty_bitmap`` and ``get_dirty_bitmap_no_clear``."""
    page_size = PAGE_SIZE
    ioas_id = self.ioas_id
    if self.variant.hugepages:
        page_size = MOCK_HUGE_PAGE_SIZE

    self.test_ioctl_ioas_map_fixed_id(
        ioas_id, self.buffer, self.variant.buffer_size, MOCK_APERTURE_START
    )

    hwpt_id = self.test_cmd_hwpt_alloc_iommupt(
        self.idev_id,
        ioas_id,
        uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
        MOCK_IOMMUPT_HUGE if self.variant.hugepages else MOCK_IOMMUPT_DEFAULT,
    )

    self.test_cmd_set_dirty_tracking(hwpt_id, True)

    size = self.variant.buffer_size
    for bitmap in (self.bitmap, self.bitmap + MOCK_PAGE_SIZE, self.bitmap + 0xFF1):
        # aligned; PAGE_SIZE unaligned; u64 unaligned
        self.test_mock_dirty_bitmaps(
            hwpt_id,
            size,
            MOCK_APERTURE_START,
            self.page_size,
            page_size,
            bitmap,
            self.bitmap_size,
            flags,
        )

    self.test_ioctl_destroy(hwpt_id)


@iommufd_dirty_tracking
def get_dirty_bitmap(self: IommufdDirtyTracking) -> None:
    _get_dirty_bitmap(self, 0)


@iommufd_dirty_tracking
def get_dirty_bitmap_no_clear(self: IommufdDirtyTracking) -> None:
    _get_dirty_bitmap(self, uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)
