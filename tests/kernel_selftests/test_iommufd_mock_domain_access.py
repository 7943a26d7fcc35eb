"""``FIXTURE(iommufd_mock_domain)`` of ``tools/testing/selftests/iommu/iommufd.c``
(Linux 7.3): its access-object test, ``user_copy``, for every variant of
:data:`test_iommufd_mock_domain.VARIANTS` (whose fixture it reuses).

Registered as ``test_iommufd_mock_domain__<variant>__user_copy``, next to the fixture's
other tests in ``test_iommufd_mock_domain.py``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from types import ModuleType

import pytest

from ioasid import uapi

from .access_utils import AccessFixture, access_pages_cmd
from .test_iommufd_mock_domain import VARIANTS, IommufdMockDomain, Variant
from .utils import BUFFER_SIZE, TEST_F, _test_ioctl_ioas_map_file, buffer, mfd, mfd_buffer

pytestmark = pytest.mark.oracle

MOCK_APERTURE_START = uapi.MOCK_APERTURE_START


class IommufdMockDomainAccess(IommufdMockDomain, AccessFixture):
    """``FIXTURE(iommufd_mock_domain)`` with the access helpers."""

    def __init__(self, backend: ModuleType, variant: Variant) -> None:
        self.access_fds = []
        super().__init__(backend, variant)

    def teardown(self) -> None:
        """FIXTURE_TEARDOWN(iommufd_mock_domain), after the per-test process exit."""
        self.close_leaked_access_fds()
        super().teardown()

    def test_ioctl_ioas_map_id_file(self, ioas_id: int, mfd: int, start: int, length: int) -> int:
        return _test_ioctl_ioas_map_file(self._fd, ioas_id, mfd, start, length, 0, self._RW)


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[IommufdMockDomainAccess]:
    fixture = IommufdMockDomainAccess(backend, request.function.variant)
    yield fixture
    fixture.teardown()


iommufd_mock_domain = TEST_F("iommufd_mock_domain", VARIANTS, globals())


@iommufd_mock_domain
def user_copy(self: IommufdMockDomainAccess) -> None:
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
