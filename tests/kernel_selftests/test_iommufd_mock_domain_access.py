"""``FIXTURE(iommufd_mock_domain)`` of ``tools/testing/selftests/iommu/iommufd.c``
(Linux 7.3): its access-object test, ``user_copy``, for all six variants.

Registered as ``test_iommufd_mock_domain__<variant>__user_copy``. The fixture is ported
whole (setup and ``check_mock_iova``) so the fixture's other tests can join it here.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

from ioasid import uapi

from .access_utils import AccessFixture, access_pages_cmd
from .utils import (
    BUFFER_SIZE,
    HUGEPAGE_SIZE,
    MAP_HUGETLB,
    MAP_POPULATE,
    PAGE_SIZE,
    TEST_F,
    _test_ioctl_ioas_map_file,
    buffer,
    mfd,
    mfd_buffer,
)

pytestmark = pytest.mark.oracle

MOCK_APERTURE_START = uapi.MOCK_APERTURE_START


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
"""Every ``FIXTURE_VARIANT_ADD(iommufd_mock_domain, ...)`` of 7.3, in its order."""


class IommufdMockDomain(AccessFixture):
    """``FIXTURE(iommufd_mock_domain)``: fd, ioas_id, hwpt_id, hwpt_ids[2], stdev_ids[2],
    idev_ids[2], mmap_flags, mmap_buf_size."""

    def __init__(self, backend: ModuleType, variant: Variant) -> None:
        super().__init__(backend)
        self.variant = variant
        self.access_fds = []
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

    def teardown(self) -> None:
        """FIXTURE_TEARDOWN(iommufd_mock_domain), after the per-test process exit."""
        self.close_leaked_access_fds()
        super().teardown()

    def check_mock_iova(self, ptr: int, iova: int, length: int) -> None:
        """``check_mock_iova``: the kernel checks the user pages made it to every domain."""
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

    def test_ioctl_ioas_map_id_file(self, ioas_id: int, mfd: int, start: int, length: int) -> int:
        return _test_ioctl_ioas_map_file(self._fd, ioas_id, mfd, start, length, 0, self._RW)


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[IommufdMockDomain]:
    fixture = IommufdMockDomain(backend, request.function.variant)
    yield fixture
    fixture.teardown()


iommufd_mock_domain = TEST_F("iommufd_mock_domain", VARIANTS, globals())


@iommufd_mock_domain
def user_copy(self: IommufdMockDomain) -> None:
    buf = mfd_buffer if self.variant.file else buffer
    access_cmd = access_pages_cmd(length=BUFFER_SIZE, uptr=buf)
    copy_cmd = uapi.iommu_ioas_copy(
        size=ctypes.sizeof(uapi.iommu_ioas_copy),
        flags=uapi.IOMMU_IOAS_MAP_FIXED_IOVA | uapi.IOMMU_IOAS_MAP_WRITEABLE,
        dst_ioas_id=self.ioas_id,
        dst_iova=MOCK_APERTURE_START,
        length=BUFFER_SIZE,
    )
    unmap_cmd = uapi.iommu_ioas_unmap(
        size=ctypes.sizeof(uapi.iommu_ioas_unmap),
        ioas_id=self.ioas_id,
        iova=MOCK_APERTURE_START,
        length=BUFFER_SIZE,
    )

    # Pin the pages in an IOAS with no domains then copy to an IOAS with domains
    ioas_id = self.test_ioctl_ioas_alloc()
    if self.variant.file:
        copy_cmd.src_iova = self.test_ioctl_ioas_map_id_file(ioas_id, mfd, 0, BUFFER_SIZE)
    else:
        copy_cmd.src_iova = self.test_ioctl_ioas_map_id(ioas_id, buf, BUFFER_SIZE)
    access_cmd.id = self.test_cmd_create_access(
        ioas_id, uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES
    )

    access_cmd.access_pages.iova = copy_cmd.src_iova
    assert self.ioctl(uapi.IOMMU_TEST_CMD, access_cmd) == 0
    copy_cmd.src_ioas_id = ioas_id
    assert self.ioctl(uapi.IOMMU_IOAS_COPY, copy_cmd) == 0
    self.check_mock_iova(buf, MOCK_APERTURE_START, BUFFER_SIZE)

    # Now replace the ioas with a new one
    new_ioas_id = self.test_ioctl_ioas_alloc()
    if self.variant.file:
        copy_cmd.src_iova = self.test_ioctl_ioas_map_id_file(new_ioas_id, mfd, 0, BUFFER_SIZE)
    else:
        copy_cmd.src_iova = self.test_ioctl_ioas_map_id(new_ioas_id, buf, BUFFER_SIZE)
    self.test_cmd_access_replace_ioas(access_cmd.id, new_ioas_id)

    # Destroy the old ioas and cleanup copied mapping
    assert self.ioctl(uapi.IOMMU_IOAS_UNMAP, unmap_cmd) == 0
    self.test_ioctl_destroy(ioas_id)

    # Then run the same test again with the new ioas
    access_cmd.access_pages.iova = copy_cmd.src_iova
    assert self.ioctl(uapi.IOMMU_TEST_CMD, access_cmd) == 0
    copy_cmd.src_ioas_id = new_ioas_id
    assert self.ioctl(uapi.IOMMU_IOAS_COPY, copy_cmd) == 0
    self.check_mock_iova(buf, MOCK_APERTURE_START, BUFFER_SIZE)

    self.test_cmd_destroy_access_pages(access_cmd.id, access_cmd.access_pages.out_access_pages_id)
    self.test_cmd_destroy_access(access_cmd.id)

    self.test_ioctl_destroy(new_ioas_id)
