"""``FIXTURE(iommufd_mock_domain)`` of ``tools/testing/selftests/iommu/iommufd.c`` (Linux 7.3).

Every variant (``one_domain``, ``two_domains``, ``one_domain_hugepage``,
``two_domains_hugepage``, ``one_domain_file``, ``one_domain_file_hugepage``) and every test
but ``user_copy`` (an access-object test, ported with the other access tests).

Tests are registered per variant by :func:`utils.TEST_F` as
``test_iommufd_mock_domain__<variant>__<name>``.

The hugepage variants ``mmap`` with ``MAP_HUGETLB | MAP_POPULATE``; on a host without
reserved hugetlb pages that ``mmap`` fails, which the C test reports as a failure. Here it is
a skip (the host cannot run the test; neither backend is at fault).
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
from ioasid.testing.libc import MAP_FAILED, MAP_HUGETLB, MAP_POPULATE

from .utils import (
    HUGEPAGE_SIZE,
    PAGE_SIZE,
    TEST_F,
    Fixture,
    _test_ioctl_destroy,
    _test_ioctl_ioas_map,
    buffer,
    check_refs,
    expect_errno,
    libc_memset,
    libc_mmap,
    libc_munmap,
    mfd,
    mfd_buffer,
)

pytestmark = pytest.mark.oracle

MOCK_PAGE_SIZE = uapi.MOCK_PAGE_SIZE
PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE


@dataclass(frozen=True)
class Variant:
    """``FIXTURE_VARIANT(iommufd_mock_domain)``."""

    mock_domains: int
    hugepages: bool
    file: bool


VARIANTS = {
    "one_domain": Variant(1, False, False),
    "two_domains": Variant(2, False, False),
    "one_domain_hugepage": Variant(1, True, False),
    "two_domains_hugepage": Variant(2, True, False),
    "one_domain_file": Variant(1, False, True),
    "one_domain_file_hugepage": Variant(1, True, True),
}


class IommufdMockDomain(Fixture):
    """``FIXTURE(iommufd_mock_domain)``: fd, ioas_id, hwpt_id, hwpt_ids[2], stdev_ids[2],
    idev_ids[2], mmap_flags, mmap_buf_size."""

    def __init__(self, backend: ModuleType, variant: Variant) -> None:
        super().__init__(backend)
        self.variant = variant
        self.hwpt_ids = [0, 0]
        self.stdev_ids = [0, 0]
        self.idev_ids = [0, 0]
        # FIXTURE_SETUP(iommufd_mock_domain)
        self.ioas_id = self.test_ioctl_ioas_alloc()
        assert len(self.hwpt_ids) >= variant.mock_domains
        for i in range(variant.mock_domains):
            self.stdev_ids[i], self.hwpt_ids[i], self.idev_ids[i] = self.test_cmd_mock_domain(
                self.ioas_id
            )
            self.test_cmd_dev_check_cache_all(self.idev_ids[0], uapi.IOMMU_TEST_DEV_CACHE_DEFAULT)
        self.hwpt_id = self.hwpt_ids[0]

        self.mmap_flags = mmap.MAP_SHARED | mmap.MAP_ANONYMOUS
        self.mmap_buf_size = PAGE_SIZE * 8
        if variant.hugepages:
            # MAP_POPULATE will cause the kernel to fail mmap if THPs are not available.
            self.mmap_flags |= MAP_HUGETLB | MAP_POPULATE
            self.mmap_buf_size = HUGEPAGE_SIZE * 2

    def check_mock_iova(self, ptr: int, iova: int, length: int) -> None:
        """``check_mock_iova(_ptr, _iova, _length)``: MD_CHECK_MAP on ``hwpt_id`` and, when
        set, ``hwpt_ids[1]``."""
        cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
        cmd.op = uapi.IOMMU_TEST_OP_MD_CHECK_MAP
        cmd.id = self.hwpt_id
        cmd.check_map.iova = iova
        cmd.check_map.length = length
        cmd.check_map.uptr = ptr
        assert self.ioctl(uapi.IOMMU_TEST_CMD, cmd) == 0
        if self.hwpt_ids[1]:
            cmd.id = self.hwpt_ids[1]
            assert self.ioctl(uapi.IOMMU_TEST_CMD, cmd) == 0

    def mmap_buf(self, length: int) -> int:
        """``mmap(0, length, PROT_READ | PROT_WRITE, self->mmap_flags, -1, 0)`` that must
        succeed (skip when the host has no hugetlb pages for a hugepage variant)."""
        buf = libc_mmap(length, PROT_RW, self.mmap_flags)
        if buf == MAP_FAILED and self.mmap_flags & MAP_HUGETLB:
            pytest.skip(f"MAP_HUGETLB mmap failed: {os.strerror(ctypes.get_errno())}")
        assert buf != MAP_FAILED
        return buf


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[IommufdMockDomain]:
    fixture = IommufdMockDomain(backend, request.function.variant)
    yield fixture
    fixture.teardown()


iommufd_mock_domain = TEST_F("iommufd_mock_domain", VARIANTS, globals())


def memfd_mmap(length: int, prot: int, flags: int) -> tuple[int, int]:
    """``memfd_mmap()`` of ``iommufd_utils.h``: (address or MAP_FAILED, memfd)."""
    mfd_flags = os.MFD_HUGETLB if flags & MAP_HUGETLB else 0
    fd = os.memfd_create("buffer", mfd_flags)
    os.ftruncate(fd, length)
    return libc_mmap(length, prot, flags, fd, 0), fd


def _test_basic_mmap(self: IommufdMockDomain) -> None:
    buf_size = self.mmap_buf_size

    # Simple one page map
    iova = self.test_ioctl_ioas_map(buffer, PAGE_SIZE)
    self.check_mock_iova(buffer, iova, PAGE_SIZE)

    buf = self.mmap_buf(buf_size)

    # EFAULT half way through mapping
    assert libc_munmap(buf + buf_size // 2, buf_size // 2) == 0
    self.test_err_ioctl_ioas_map(errno.EFAULT, buf, buf_size)

    # EFAULT on first page
    assert libc_munmap(buf, buf_size // 2) == 0
    self.test_err_ioctl_ioas_map(errno.EFAULT, buf, buf_size)


def _test_basic_file(self: IommufdMockDomain) -> None:
    buf_size = self.mmap_buf_size

    # Simple one page map
    iova = self.test_ioctl_ioas_map_file(mfd, 0, PAGE_SIZE)
    self.check_mock_iova(mfd_buffer, iova, PAGE_SIZE)

    buf, mfd_tmp = memfd_mmap(buf_size, PROT_RW, mmap.MAP_SHARED)
    assert buf != MAP_FAILED

    self.test_err_ioctl_ioas_map_file(errno.EINVAL, mfd_tmp, 0, buf_size + 1)

    os.ftruncate(mfd_tmp, 0)
    self.test_err_ioctl_ioas_map_file(errno.EINVAL, mfd_tmp, 0, buf_size)

    os.close(mfd_tmp)
    libc_munmap(buf, buf_size)


@iommufd_mock_domain
def basic(self: IommufdMockDomain) -> None:
    if self.variant.file:
        _test_basic_file(self)
    else:
        _test_basic_mmap(self)


@iommufd_mock_domain
def ro_unshare(self: IommufdMockDomain) -> None:
    fd = os.open("/proc/self/exe", os.O_RDONLY)
    buf = libc_mmap(PAGE_SIZE, PROT_RW, mmap.MAP_PRIVATE, fd, 0)
    assert buf != MAP_FAILED
    os.close(fd)

    # There have been lots of changes to the "unshare" mechanism in get_user_pages(), make
    # sure it works right. The write to the page after we map it for reading should not
    # change the assigned PFN.
    iova = _test_ioctl_ioas_map(
        self._fd, self.ioas_id, buf, PAGE_SIZE, 0, uapi.IOMMU_IOAS_MAP_READABLE
    )
    self.check_mock_iova(buf, iova, PAGE_SIZE)
    libc_memset(buf, 1, PAGE_SIZE)
    self.check_mock_iova(buf, iova, PAGE_SIZE)
    assert libc_munmap(buf, PAGE_SIZE) == 0


def _aligns_buffer(self: IommufdMockDomain) -> tuple[int, int]:
    buf_size = self.mmap_buf_size
    memfd = -1
    if self.variant.file:
        buf, memfd = memfd_mmap(buf_size, PROT_RW, mmap.MAP_SHARED)
    else:
        buf = self.mmap_buf(buf_size)
    assert buf != MAP_FAILED
    if self.variant.file:
        assert memfd > 0
    check_refs(self._fd, buf, buf_size, 0)
    return buf, memfd


def _aligns(self: IommufdMockDomain) -> Iterator[tuple[int, int]]:
    """The (start, end) pairs both ``all_aligns`` tests walk: every combination of page size
    and alignment within a big region, less for the hugepage case."""
    test_step = self.mmap_buf_size // 16 if self.variant.hugepages else MOCK_PAGE_SIZE
    buf_size = self.mmap_buf_size
    for start in range(0, buf_size, test_step):
        end = buf_size if self.variant.hugepages else start + MOCK_PAGE_SIZE
        while end < buf_size:
            yield start, end
            end += MOCK_PAGE_SIZE


@iommufd_mock_domain
def all_aligns(self: IommufdMockDomain) -> None:
    buf_size = self.mmap_buf_size
    buf, memfd = _aligns_buffer(self)

    for start, end in _aligns(self):
        length = end - start
        if self.variant.file:
            iova = self.test_ioctl_ioas_map_file(memfd, start, length)
        else:
            iova = self.test_ioctl_ioas_map(buf + start, length)
        self.check_mock_iova(buf + start, iova, length)
        check_refs(
            self._fd,
            buf + start // PAGE_SIZE * PAGE_SIZE,
            end // PAGE_SIZE * PAGE_SIZE - start // PAGE_SIZE * PAGE_SIZE,
            1,
        )
        self.test_ioctl_ioas_unmap(iova, length)

    check_refs(self._fd, buf, buf_size, 0)
    assert libc_munmap(buf, buf_size) == 0
    if self.variant.file:
        os.close(memfd)


@iommufd_mock_domain
def all_aligns_copy(self: IommufdMockDomain) -> None:
    buf_size = self.mmap_buf_size
    buf, memfd = _aligns_buffer(self)

    for start, end in _aligns(self):
        length = end - start
        if self.variant.file:
            iova = self.test_ioctl_ioas_map_file(memfd, start, length)
        else:
            iova = self.test_ioctl_ioas_map(buf + start, length)

        # Add and destroy a domain while the area exists
        old_id = self.hwpt_ids[1]
        mock_stdev_id, self.hwpt_ids[1], _ = self.test_cmd_mock_domain(self.ioas_id)

        self.check_mock_iova(buf + start, iova, length)
        check_refs(
            self._fd,
            buf + start // PAGE_SIZE * PAGE_SIZE,
            end // PAGE_SIZE * PAGE_SIZE - start // PAGE_SIZE * PAGE_SIZE,
            1,
        )

        self.test_ioctl_destroy(mock_stdev_id)
        self.hwpt_ids[1] = old_id

        self.test_ioctl_ioas_unmap(iova, length)

    check_refs(self._fd, buf, buf_size, 0)
    assert libc_munmap(buf, buf_size) == 0
    if self.variant.file:
        os.close(memfd)


@iommufd_mock_domain
def replace(self: IommufdMockDomain) -> None:
    ioas_id = self.test_ioctl_ioas_alloc()

    self.test_cmd_mock_domain_replace(self.stdev_ids[0], ioas_id)

    # Replacing the IOAS causes the prior HWPT to be deallocated, thus we should get enoent
    # when we try to use it.
    if self.variant.mock_domains == 1:
        self.test_err_mock_domain_replace(errno.ENOENT, self.stdev_ids[0], self.hwpt_ids[0])

    self.test_cmd_mock_domain_replace(self.stdev_ids[0], ioas_id)
    if self.variant.mock_domains >= 2:
        self.test_cmd_mock_domain_replace(self.stdev_ids[0], self.hwpt_ids[1])
        self.test_cmd_mock_domain_replace(self.stdev_ids[0], self.hwpt_ids[1])
        self.test_cmd_mock_domain_replace(self.stdev_ids[0], self.hwpt_ids[0])

    self.test_cmd_mock_domain_replace(self.stdev_ids[0], self.ioas_id)
    self.test_ioctl_destroy(ioas_id)


@iommufd_mock_domain
def alloc_hwpt(self: IommufdMockDomain) -> None:
    for i in range(self.variant.mock_domains):
        self.test_err_hwpt_alloc(
            errno.EOPNOTSUPP,
            self.idev_ids[i],
            self.ioas_id,
            ~uapi.IOMMU_HWPT_ALLOC_NEST_PARENT & 0xFFFFFFFF,
        )
        hwpt_id0 = self.test_cmd_hwpt_alloc(self.idev_ids[i], self.ioas_id, 0)
        hwpt_id1 = self.test_cmd_hwpt_alloc(
            self.idev_ids[i], self.ioas_id, uapi.IOMMU_HWPT_ALLOC_NEST_PARENT
        )

        # Do a hw_pagetable rotation test
        self.test_cmd_mock_domain_replace(self.stdev_ids[i], hwpt_id0)
        with expect_errno(errno.EBUSY):
            _test_ioctl_destroy(self._fd, hwpt_id0)
        self.test_cmd_mock_domain_replace(self.stdev_ids[i], hwpt_id1)
        with expect_errno(errno.EBUSY):
            _test_ioctl_destroy(self._fd, hwpt_id1)
        self.test_cmd_mock_domain_replace(self.stdev_ids[i], self.ioas_id)
        self.test_ioctl_destroy(hwpt_id1)

        stddev_id, _, _ = self.test_cmd_mock_domain(hwpt_id0)
        self.test_ioctl_destroy(stddev_id)
        self.test_ioctl_destroy(hwpt_id0)
