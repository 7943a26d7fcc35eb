"""``FIXTURE(iommufd_ioas)`` of ``tools/testing/selftests/iommu/iommufd.c`` (Linux 7.3):
the tests that need access objects or ``fork()``: access_domain_destory, access_pin,
access_pin_unmap, access_rw, access_rw_unaligned, fork_gone, fork_present — for every
variant of :data:`test_iommufd_ioas.VARIANTS`.

Registered as ``test_iommufd_ioas__<variant>__<name>`` like the rest of the fixture's tests
(which live in ``test_iommufd_ioas.py``).

Differences from C, on purpose:

* ``fork()`` goes through :mod:`ioasid.testing.process`: on ``sim`` the child is a
  simulated task whose mm is gone once it has exited (``fork_gone``) or stays until the
  parent lets it go (``fork_present``).
* ``access_domain_destory`` maps a ``MAP_HUGETLB`` buffer; where the host has no huge pages
  (``nr_hugepages`` 0) the ``sim`` run uses ordinary shared memory of the same size — the
  simulated kernel pins pages the same way either way. On ``linux`` a failing mmap fails.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
from collections.abc import Iterator
from types import ModuleType

import pytest

from ioasid import uapi
from ioasid.testing import process
from ioasid.testing.libc import MAP_FAILED, MAP_HUGETLB, MAP_POPULATE

from .access_utils import AccessFixture, access_pages_cmd, check_access_rw
from .test_iommufd_ioas import MOCK_APERTURE_START, MOCK_PAGE_SIZE, VARIANTS, IommufdIoas
from .utils import (
    BUFFER_SIZE,
    HUGEPAGE_SIZE,
    PAGE_SIZE,
    TEST_F,
    buffer,
    libc_mmap,
    libc_munmap,
)

pytestmark = pytest.mark.oracle


class IommufdIoasAccess(IommufdIoas, AccessFixture):
    """``FIXTURE(iommufd_ioas)`` with the access helpers."""

    def __init__(self, backend: ModuleType, variant: object) -> None:
        self.access_fds = []
        super().__init__(backend, variant)  # type: ignore[arg-type]

    def teardown(self) -> None:
        self.close_leaked_access_fds()
        super().teardown()


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[IommufdIoasAccess]:
    fixture = IommufdIoasAccess(backend, request.function.variant)
    yield fixture
    fixture.teardown()


iommufd_ioas = TEST_F("iommufd_ioas", VARIANTS, globals())


def _access_pages(self: IommufdIoasAccess, cmd: object) -> None:
    """``ioctl(self->fd, _IOMMU_TEST_CMD(IOMMU_TEST_OP_ACCESS_PAGES), &cmd)`` == 0."""
    assert self.ioctl(uapi.IOMMU_TEST_CMD, cmd) == 0


@iommufd_ioas
def access_domain_destory(self: IommufdIoasAccess) -> None:
    access_cmd = access_pages_cmd(iova=self.base_iova + PAGE_SIZE, length=PAGE_SIZE)
    buf_size = 2 * HUGEPAGE_SIZE
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    flags = mmap.MAP_SHARED | mmap.MAP_ANONYMOUS
    buf = libc_mmap(buf_size, prot, flags | MAP_HUGETLB | MAP_POPULATE)
    if buf == MAP_FAILED and self.backend.NAME == "sim":
        buf = libc_mmap(buf_size, prot, flags | MAP_POPULATE)
    assert buf != MAP_FAILED, f"mmap(MAP_HUGETLB) failed: errno {ctypes.get_errno()}"
    try:
        self.test_ioctl_ioas_map_fixed(buf, buf_size, self.base_iova)

        access_cmd.id = self.test_cmd_create_access(
            self.ioas_id, uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES
        )
        access_cmd.access_pages.uptr = buf + PAGE_SIZE
        _access_pages(self, access_cmd)

        # Causes a complicated unpin across a huge page boundary
        if self.stdev_id:
            self.test_ioctl_destroy(self.stdev_id)

        self.test_cmd_destroy_access_pages(
            access_cmd.id, access_cmd.access_pages.out_access_pages_id
        )
        self.test_cmd_destroy_access(access_cmd.id)
    finally:
        assert libc_munmap(buf, buf_size) == 0


@iommufd_ioas
def access_pin(self: IommufdIoasAccess) -> None:
    access_cmd = access_pages_cmd(iova=MOCK_APERTURE_START, length=BUFFER_SIZE, uptr=buffer)
    check_map_cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    check_map_cmd.op = uapi.IOMMU_TEST_OP_MD_CHECK_MAP
    check_map_cmd.check_map.iova = MOCK_APERTURE_START
    check_map_cmd.check_map.length = BUFFER_SIZE
    check_map_cmd.check_map.uptr = buffer

    access_cmd.id = self.test_cmd_create_access(
        self.ioas_id, uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES
    )

    for npages in range(1, BUFFER_SIZE // PAGE_SIZE):
        access_cmd.access_pages.length = npages * PAGE_SIZE

        # Single map/unmap
        self.test_ioctl_ioas_map_fixed(buffer, BUFFER_SIZE, MOCK_APERTURE_START)
        _access_pages(self, access_cmd)
        self.test_cmd_destroy_access_pages(
            access_cmd.id, access_cmd.access_pages.out_access_pages_id
        )

        # Double user
        _access_pages(self, access_cmd)
        access_pages_id = access_cmd.access_pages.out_access_pages_id
        _access_pages(self, access_cmd)
        self.test_cmd_destroy_access_pages(
            access_cmd.id, access_cmd.access_pages.out_access_pages_id
        )
        self.test_cmd_destroy_access_pages(access_cmd.id, access_pages_id)

        # Add/remove a domain with a user
        _access_pages(self, access_cmd)
        mock_stdev_id, mock_hwpt_id, _ = self.test_cmd_mock_domain(self.ioas_id)
        check_map_cmd.id = mock_hwpt_id
        assert self.ioctl(uapi.IOMMU_TEST_CMD, check_map_cmd) == 0

        self.test_ioctl_destroy(mock_stdev_id)
        self.test_cmd_destroy_access_pages(
            access_cmd.id, access_cmd.access_pages.out_access_pages_id
        )

        self.test_ioctl_ioas_unmap(MOCK_APERTURE_START, BUFFER_SIZE)
    self.test_cmd_destroy_access(access_cmd.id)


@iommufd_ioas
def access_pin_unmap(self: IommufdIoasAccess) -> None:
    access_pages = access_pages_cmd(iova=MOCK_APERTURE_START, length=BUFFER_SIZE, uptr=buffer)

    access_pages.id = self.test_cmd_create_access(
        self.ioas_id, uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES
    )
    self.test_ioctl_ioas_map_fixed(buffer, BUFFER_SIZE, MOCK_APERTURE_START)
    _access_pages(self, access_pages)

    # Trigger the unmap op
    self.test_ioctl_ioas_unmap(MOCK_APERTURE_START, BUFFER_SIZE)

    # kernel removed the item for us
    self.test_err_destroy_access_pages(
        errno.ENOENT, access_pages.id, access_pages.access_pages.out_access_pages_id
    )


@iommufd_ioas
def access_rw(self: IommufdIoasAccess) -> None:
    access_id = self.test_cmd_create_access(self.ioas_id, 0)
    iova = self.test_ioctl_ioas_map(buffer, BUFFER_SIZE)
    check_access_rw(self._fd, access_id, iova, 0)
    check_access_rw(self._fd, access_id, iova, uapi.MOCK_ACCESS_RW_SLOW_PATH)
    self.test_ioctl_ioas_unmap(iova, BUFFER_SIZE)
    self.test_cmd_destroy_access(access_id)


@iommufd_ioas
def access_rw_unaligned(self: IommufdIoasAccess) -> None:
    access_id = self.test_cmd_create_access(self.ioas_id, 0)

    # Unaligned pages
    iova = self.base_iova + MOCK_PAGE_SIZE
    self.test_ioctl_ioas_map_fixed(buffer, BUFFER_SIZE, iova)
    check_access_rw(self._fd, access_id, iova, 0)
    self.test_ioctl_ioas_unmap(iova, BUFFER_SIZE)
    self.test_cmd_destroy_access(access_id)


@iommufd_ioas
def fork_gone(self: IommufdIoasAccess) -> None:
    access_id = self.test_cmd_create_access(self.ioas_id, 0)

    # Create a mapping with a different mm
    def child() -> None:
        self.test_ioctl_ioas_map_fixed(buffer, BUFFER_SIZE, MOCK_APERTURE_START)

    process.run_in_child(self.backend, child)

    if self.stdev_id:
        # If a domain already existed then everything was pinned within
        # the fork, so this copies from one domain to another.
        self.test_cmd_mock_domain(self.ioas_id)
        check_access_rw(self._fd, access_id, MOCK_APERTURE_START, 0)
    else:
        # Otherwise we need to actually pin pages which can't happen
        # since the fork is gone.
        self.test_err_mock_domain(errno.EFAULT, self.ioas_id)

    self.test_cmd_destroy_access(access_id)


@iommufd_ioas
def fork_present(self: IommufdIoasAccess) -> None:
    access_id = self.test_cmd_create_access(self.ioas_id, 0)

    # Create a mapping with a different mm
    def child() -> None:
        self.test_ioctl_ioas_map_fixed(buffer, BUFFER_SIZE, MOCK_APERTURE_START)

    with process.child_running(self.backend, child):
        # Read pages from the remote process
        self.test_cmd_mock_domain(self.ioas_id)
        check_access_rw(self._fd, access_id, MOCK_APERTURE_START, 0)

    self.test_cmd_destroy_access(access_id)
