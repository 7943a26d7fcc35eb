"""``FIXTURE(iommufd_ioas)`` of ``tools/testing/selftests/iommu/iommufd.c`` (Linux 7.3).

Ported here: every variant (``no_domain``, ``mock_domain``, ``two_mock_domain``,
``mock_domain_limit``), every test that needs no access object and no fork; the access and
fork tests are in ``test_iommufd_ioas_access.py`` (they reuse :class:`IommufdIoas` and
``VARIANTS``), the dmabuf tests in ``test_iommufd_ioas_dmabuf.py`` (7.3's mock has a bug
there, which those tests document).

Tests are registered per variant by :func:`utils.TEST_F` as
``test_iommufd_ioas__<variant>__<name>``, e.g. ``test_iommufd_ioas__no_domain__area``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

from ioasid import uapi

from .utils import (
    BUFFER_SIZE,
    PAGE_SIZE,
    SIZE_MAX,
    TEST_F,
    UINT32_MAX,
    UINT64_MAX,
    Fixture,
    _test_cmd_add_reserved,
    _test_ioctl_destroy,
    _test_ioctl_ioas_unmap,
    buffer,
    expect_errno,
)

pytestmark = pytest.mark.oracle

MOCK_APERTURE_START = uapi.MOCK_APERTURE_START
MOCK_APERTURE_LAST = uapi.MOCK_APERTURE_LAST
MOCK_PAGE_SIZE = uapi.MOCK_PAGE_SIZE


@dataclass(frozen=True)
class Variant:
    """``FIXTURE_VARIANT(iommufd_ioas)``."""

    mock_domains: int = 0
    memory_limit: int = 0
    pasid_capable: bool = False


no_domain = Variant()
mock_domain = Variant(mock_domains=1, pasid_capable=True)
two_mock_domain = Variant(mock_domains=2)
mock_domain_limit = Variant(mock_domains=1, memory_limit=16)

VARIANTS = {
    "no_domain": no_domain,
    "mock_domain": mock_domain,
    "two_mock_domain": two_mock_domain,
    "mock_domain_limit": mock_domain_limit,
}
"""Every ``FIXTURE_VARIANT_ADD(iommufd_ioas, ...)`` of 7.3, in its order."""


class IommufdIoas(Fixture):
    """``FIXTURE(iommufd_ioas)``: fd, ioas_id, stdev_id, hwpt_id, device_id, base_iova,
    device_pasid_id."""

    def __init__(self, backend: ModuleType, variant: Variant) -> None:
        super().__init__(backend)
        self.variant = variant
        self.device_pasid_id = 0
        # FIXTURE_SETUP(iommufd_ioas)
        self.ioas_id = self.test_ioctl_ioas_alloc()

        if not variant.memory_limit:
            self.test_ioctl_set_default_memory_limit()
        else:
            self.test_ioctl_set_temp_memory_limit(variant.memory_limit)

        for _ in range(variant.mock_domains):
            self.stdev_id, self.hwpt_id, self.device_id = self.test_cmd_mock_domain(self.ioas_id)
            self.test_cmd_dev_check_cache_all(self.device_id, uapi.IOMMU_TEST_DEV_CACHE_DEFAULT)
            self.base_iova = MOCK_APERTURE_START

        if variant.pasid_capable:
            _, _, self.device_pasid_id = self.test_cmd_mock_domain_flags(
                self.ioas_id, uapi.MOCK_FLAGS_DEVICE_PASID
            )

    def teardown(self) -> None:
        """FIXTURE_TEARDOWN(iommufd_ioas)."""
        self.test_ioctl_set_default_memory_limit()
        super().teardown()


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[IommufdIoas]:
    fixture = IommufdIoas(backend, request.function.variant)
    yield fixture
    fixture.teardown()


iommufd_ioas = TEST_F("iommufd_ioas", VARIANTS, globals())


def _allow_iovas(ioas_id: int, ranges: ctypes.Array[uapi.iommu_iova_range]) -> uapi.Struct:
    return uapi.iommu_ioas_allow_iovas(
        size=ctypes.sizeof(uapi.iommu_ioas_allow_iovas),
        ioas_id=ioas_id,
        num_iovas=1,
        allowed_iovas=ctypes.addressof(ranges),
    )


def _lowest_bit(length: int) -> int:
    """``1UL << (ffs(length) - 1)``."""
    return length & -length


@iommufd_ioas
def ioas_auto_destroy(self: IommufdIoas) -> None:
    pass


@iommufd_ioas
def ioas_destroy(self: IommufdIoas) -> None:
    if self.stdev_id:
        # IOAS cannot be freed while a device has a HWPT using it
        with expect_errno(errno.EBUSY):
            _test_ioctl_destroy(self._fd, self.ioas_id)
    else:
        # Can allocate and manually free an IOAS table
        self.test_ioctl_destroy(self.ioas_id)


@iommufd_ioas
def alloc_hwpt_nested(self: IommufdIoas) -> None:
    data = uapi.iommu_hwpt_selftest(iotlb=uapi.IOMMU_TEST_IOTLB_DEFAULT)
    nested_hwpt_id = [0, 0]
    parent_hwpt_id = 0

    if self.device_id:
        _alloc_hwpt_nested_device(self, data, nested_hwpt_id)
        return
    self.test_err_hwpt_alloc(errno.ENOENT, self.device_id, self.ioas_id, 0)
    self.test_err_hwpt_alloc_nested(
        errno.ENOENT,
        self.device_id,
        parent_hwpt_id,
        0,
        uapi.IOMMU_HWPT_DATA_SELFTEST,
        data,
        ctypes.sizeof(data),
    )
    self.test_err_hwpt_alloc_nested(
        errno.ENOENT,
        self.device_id,
        parent_hwpt_id,
        0,
        uapi.IOMMU_HWPT_DATA_SELFTEST,
        data,
        ctypes.sizeof(data),
    )
    self.test_err_mock_domain_replace(errno.ENOENT, self.stdev_id, nested_hwpt_id[0])
    self.test_err_mock_domain_replace(errno.ENOENT, self.stdev_id, nested_hwpt_id[1])


IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX = 1 << 19


def _alloc_hwpt_nested_device(
    self: IommufdIoas, data: uapi.iommu_hwpt_selftest, nested_hwpt_id: list[int]
) -> None:
    """The ``if (self->device_id)`` branch of ``alloc_hwpt_nested``."""
    min_data_len = uapi.iommu_hwpt_selftest.offsetofend("iotlb")
    inv_reqs = (uapi.iommu_hwpt_invalidate_selftest * 2)()
    inv_size = ctypes.sizeof(uapi.iommu_hwpt_invalidate_selftest)
    SELFTEST = uapi.IOMMU_HWPT_DATA_SELFTEST
    INV_SELFTEST = uapi.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST
    DEFAULT = uapi.IOMMU_TEST_IOTLB_DEFAULT
    size = ctypes.sizeof(data)

    # Negative tests
    self.test_err_hwpt_alloc(errno.ENOENT, self.ioas_id, self.device_id, 0)
    self.test_err_hwpt_alloc(errno.EINVAL, self.device_id, self.device_id, 0)
    self.test_err_hwpt_alloc(
        errno.EOPNOTSUPP,
        self.device_id,
        self.ioas_id,
        uapi.IOMMU_HWPT_ALLOC_NEST_PARENT | uapi.IOMMU_HWPT_FAULT_ID_VALID,
    )

    parent_hwpt_id = self.test_cmd_hwpt_alloc(
        self.device_id, self.ioas_id, uapi.IOMMU_HWPT_ALLOC_NEST_PARENT
    )
    parent_hwpt_id_not_work = self.test_cmd_hwpt_alloc(self.device_id, self.ioas_id, 0)

    # Negative nested tests
    self.test_err_hwpt_alloc_nested(
        errno.EINVAL, self.device_id, parent_hwpt_id, 0, uapi.IOMMU_HWPT_DATA_NONE, data, size
    )
    self.test_err_hwpt_alloc_nested(
        errno.EOPNOTSUPP, self.device_id, parent_hwpt_id, 0, SELFTEST + 1, data, size
    )
    self.test_err_hwpt_alloc_nested(
        errno.EINVAL, self.device_id, parent_hwpt_id, 0, SELFTEST, data, min_data_len - 1
    )
    self.test_err_hwpt_alloc_nested(
        errno.EFAULT, self.device_id, parent_hwpt_id, 0, SELFTEST, None, size
    )
    self.test_err_hwpt_alloc_nested(
        errno.EOPNOTSUPP,
        self.device_id,
        parent_hwpt_id,
        uapi.IOMMU_HWPT_ALLOC_NEST_PARENT,
        SELFTEST,
        data,
        size,
    )
    self.test_err_hwpt_alloc_nested(
        errno.EINVAL, self.device_id, parent_hwpt_id_not_work, 0, SELFTEST, data, size
    )

    # Allocate two nested hwpts sharing one common parent hwpt
    fault_id, fault_fd = self.test_ioctl_fault_alloc()
    nested_hwpt_id[0] = self.test_cmd_hwpt_alloc_nested(
        self.device_id, parent_hwpt_id, 0, SELFTEST, data, size
    )
    nested_hwpt_id[1] = self.test_cmd_hwpt_alloc_nested(
        self.device_id, parent_hwpt_id, 0, SELFTEST, data, size
    )
    self.test_err_hwpt_alloc_iopf(
        errno.ENOENT,
        self.device_id,
        parent_hwpt_id,
        UINT32_MAX,
        uapi.IOMMU_HWPT_FAULT_ID_VALID,
        SELFTEST,
        data,
        size,
    )
    iopf_hwpt_id = self.test_cmd_hwpt_alloc_iopf(
        self.device_id,
        parent_hwpt_id,
        fault_id,
        uapi.IOMMU_HWPT_FAULT_ID_VALID,
        SELFTEST,
        data,
        size,
    )
    self.test_cmd_hwpt_check_iotlb_all(nested_hwpt_id[0], DEFAULT)
    self.test_cmd_hwpt_check_iotlb_all(nested_hwpt_id[1], DEFAULT)

    # Negative test: a nested hwpt on top of a nested hwpt
    self.test_err_hwpt_alloc_nested(
        errno.EINVAL, self.device_id, nested_hwpt_id[0], 0, SELFTEST, data, size
    )
    # Negative test: parent hwpt now cannot be freed
    with expect_errno(errno.EBUSY):
        _test_ioctl_destroy(self._fd, parent_hwpt_id)

    # hwpt_invalidate does not support a parent hwpt
    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL, parent_hwpt_id, inv_reqs, INV_SELFTEST, inv_size, 1
    )
    assert not num_inv

    # Check data_type by passing zero-length array
    num_inv = self.test_cmd_hwpt_invalidate(nested_hwpt_id[0], inv_reqs, INV_SELFTEST, inv_size, 0)
    assert not num_inv

    # Negative test: Invalid data_type
    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL,
        nested_hwpt_id[0],
        inv_reqs,
        uapi.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
        inv_size,
        1,
    )
    assert not num_inv

    # Negative test: structure size sanity
    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL, nested_hwpt_id[0], inv_reqs, INV_SELFTEST, inv_size + 1, 1
    )
    assert not num_inv

    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL, nested_hwpt_id[0], inv_reqs, INV_SELFTEST, 1, 1
    )
    assert not num_inv

    # Negative test: entry_len is bounded by PAGE_SIZE
    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL, nested_hwpt_id[0], inv_reqs, INV_SELFTEST, PAGE_SIZE + 1, 1
    )
    assert not num_inv

    # Negative test: entry_num is bounded
    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL,
        nested_hwpt_id[0],
        inv_reqs,
        INV_SELFTEST,
        inv_size,
        IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX + 1,
    )
    assert not num_inv

    # Negative test: invalid flag is passed
    inv_reqs[0].flags = 0xFFFFFFFF
    num_inv = self.test_err_hwpt_invalidate(
        errno.EOPNOTSUPP, nested_hwpt_id[0], inv_reqs, INV_SELFTEST, inv_size, 1
    )
    assert not num_inv

    # Negative test: invalid data_uptr when array is not empty
    inv_reqs[0].flags = 0
    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL, nested_hwpt_id[0], None, INV_SELFTEST, inv_size, 1
    )
    assert not num_inv

    # Negative test: invalid entry_len when array is not empty
    inv_reqs[0].flags = 0
    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL, nested_hwpt_id[0], inv_reqs, INV_SELFTEST, 0, 1
    )
    assert not num_inv

    # Negative test: invalid iotlb_id
    inv_reqs[0].flags = 0
    inv_reqs[0].iotlb_id = uapi.MOCK_NESTED_DOMAIN_IOTLB_ID_MAX + 1
    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL, nested_hwpt_id[0], inv_reqs, INV_SELFTEST, inv_size, 1
    )
    assert not num_inv

    # Invalidate the 1st iotlb entry but fail the 2nd request
    # due to invalid flags configuration in the 2nd request.
    inv_reqs[0].flags = 0
    inv_reqs[0].iotlb_id = 0
    inv_reqs[1].flags = 0xFFFFFFFF
    inv_reqs[1].iotlb_id = 1
    num_inv = self.test_err_hwpt_invalidate(
        errno.EOPNOTSUPP, nested_hwpt_id[0], inv_reqs, INV_SELFTEST, inv_size, 2
    )
    assert num_inv == 1
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 0, 0)
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 1, DEFAULT)
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 2, DEFAULT)
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 3, DEFAULT)

    # Invalidate the 1st iotlb entry but fail the 2nd request
    # due to invalid iotlb_id configuration in the 2nd request.
    inv_reqs[0].flags = 0
    inv_reqs[0].iotlb_id = 0
    inv_reqs[1].flags = 0
    inv_reqs[1].iotlb_id = uapi.MOCK_NESTED_DOMAIN_IOTLB_ID_MAX + 1
    num_inv = self.test_err_hwpt_invalidate(
        errno.EINVAL, nested_hwpt_id[0], inv_reqs, INV_SELFTEST, inv_size, 2
    )
    assert num_inv == 1
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 0, 0)
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 1, DEFAULT)
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 2, DEFAULT)
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 3, DEFAULT)

    # Invalidate the 2nd iotlb entry and verify
    inv_reqs[0].flags = 0
    inv_reqs[0].iotlb_id = 1
    num_inv = self.test_cmd_hwpt_invalidate(nested_hwpt_id[0], inv_reqs, INV_SELFTEST, inv_size, 1)
    assert num_inv == 1
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 0, 0)
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 1, 0)
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 2, DEFAULT)
    self.test_cmd_hwpt_check_iotlb(nested_hwpt_id[0], 3, DEFAULT)

    # Invalidate the 3rd and 4th iotlb entries and verify
    inv_reqs[0].flags = 0
    inv_reqs[0].iotlb_id = 2
    inv_reqs[1].flags = 0
    inv_reqs[1].iotlb_id = 3
    num_inv = self.test_cmd_hwpt_invalidate(nested_hwpt_id[0], inv_reqs, INV_SELFTEST, inv_size, 2)
    assert num_inv == 2
    self.test_cmd_hwpt_check_iotlb_all(nested_hwpt_id[0], 0)

    # Invalidate all iotlb entries for nested_hwpt_id[1] and verify
    inv_reqs[0].flags = uapi.IOMMU_TEST_INVALIDATE_FLAG_ALL
    num_inv = self.test_cmd_hwpt_invalidate(nested_hwpt_id[1], inv_reqs, INV_SELFTEST, inv_size, 1)
    assert num_inv == 1
    self.test_cmd_hwpt_check_iotlb_all(nested_hwpt_id[1], 0)

    # Attach device to nested_hwpt_id[0] that then will be busy
    self.test_cmd_mock_domain_replace(self.stdev_id, nested_hwpt_id[0])
    with expect_errno(errno.EBUSY):
        _test_ioctl_destroy(self._fd, nested_hwpt_id[0])

    # Switch from nested_hwpt_id[0] to nested_hwpt_id[1]
    self.test_cmd_mock_domain_replace(self.stdev_id, nested_hwpt_id[1])
    with expect_errno(errno.EBUSY):
        _test_ioctl_destroy(self._fd, nested_hwpt_id[1])
    self.test_ioctl_destroy(nested_hwpt_id[0])

    # Switch from nested_hwpt_id[1] to iopf_hwpt_id
    self.test_cmd_mock_domain_replace(self.stdev_id, iopf_hwpt_id)
    with expect_errno(errno.EBUSY):
        _test_ioctl_destroy(self._fd, iopf_hwpt_id)
    # Trigger an IOPF on the device
    self.test_cmd_trigger_iopf(self.device_id, fault_fd)

    # Detach from nested_hwpt_id[1] and destroy it
    self.test_cmd_mock_domain_replace(self.stdev_id, parent_hwpt_id)
    self.test_ioctl_destroy(nested_hwpt_id[1])
    self.test_ioctl_destroy(iopf_hwpt_id)

    # Detach from the parent hw_pagetable and destroy it
    self.test_cmd_mock_domain_replace(self.stdev_id, self.ioas_id)
    self.test_ioctl_destroy(parent_hwpt_id)
    self.test_ioctl_destroy(parent_hwpt_id_not_work)
    os.close(fault_fd)
    self.test_ioctl_destroy(fault_id)


@iommufd_ioas
def hwpt_attach(self: IommufdIoas) -> None:
    # Create a device attached directly to a hwpt
    if self.stdev_id:
        self.test_cmd_mock_domain(self.hwpt_id)
    else:
        self.test_err_mock_domain(errno.ENOENT, self.hwpt_id)


@iommufd_ioas
def ioas_area_destroy(self: IommufdIoas) -> None:
    # Adding an area does not change ability to destroy
    self.test_ioctl_ioas_map_fixed(buffer, PAGE_SIZE, self.base_iova)
    if self.stdev_id:
        with expect_errno(errno.EBUSY):
            _test_ioctl_destroy(self._fd, self.ioas_id)
    else:
        self.test_ioctl_destroy(self.ioas_id)


@iommufd_ioas
def ioas_area_auto_destroy(self: IommufdIoas) -> None:
    # Can allocate and automatically free an IOAS table with many areas
    for i in range(10):
        self.test_ioctl_ioas_map_fixed(buffer, PAGE_SIZE, self.base_iova + i * PAGE_SIZE)


class _buffer_larger(uapi.Struct):
    """``struct iommu_test_hw_info_buffer_larger``."""

    _fields_ = [("info", uapi.iommu_test_hw_info), ("trailing_bytes", ctypes.c_uint64)]


@iommufd_ioas
def get_hw_info(self: IommufdIoas) -> None:
    buffer_exact = uapi.iommu_test_hw_info()
    buffer_larger = _buffer_larger()

    if self.device_id:
        DEFAULT = uapi.IOMMU_HW_INFO_TYPE_DEFAULT
        exact = ctypes.sizeof(buffer_exact)
        # Provide a zero-size user_buffer
        self.test_cmd_get_hw_info(self.device_id, DEFAULT, None, 0)
        # Provide a user_buffer with exact size
        self.test_cmd_get_hw_info(self.device_id, DEFAULT, buffer_exact, exact)

        # Request for a wrong data_type, and a correct one
        self.test_err_get_hw_info(
            errno.EOPNOTSUPP,
            self.device_id,
            uapi.IOMMU_HW_INFO_TYPE_SELFTEST + 1,
            buffer_exact,
            exact,
        )
        self.test_cmd_get_hw_info(
            self.device_id, uapi.IOMMU_HW_INFO_TYPE_SELFTEST, buffer_exact, exact
        )
        # Provide a user_buffer with size larger than the exact size to check if
        # kernel zero the trailing bytes.
        self.test_cmd_get_hw_info(
            self.device_id, DEFAULT, buffer_larger, ctypes.sizeof(buffer_larger)
        )
        # Provide a user_buffer with size smaller than the exact size to check if
        # the fields within the size range still gets updated.
        self.test_cmd_get_hw_info(
            self.device_id, DEFAULT, buffer_exact, uapi.iommu_test_hw_info.offsetofend("flags")
        )
        max_pasid = self.test_cmd_get_hw_info_pasid(self.device_id)
        assert max_pasid == 0
        if self.variant.pasid_capable:
            max_pasid = self.test_cmd_get_hw_info_pasid(self.device_pasid_id)
            assert max_pasid == uapi.MOCK_PASID_WIDTH
        return
    self.test_err_get_hw_info(
        errno.ENOENT,
        self.device_id,
        uapi.IOMMU_HW_INFO_TYPE_DEFAULT,
        buffer_exact,
        ctypes.sizeof(buffer_exact),
    )
    self.test_err_get_hw_info(
        errno.ENOENT,
        self.device_id,
        uapi.IOMMU_HW_INFO_TYPE_DEFAULT,
        buffer_larger,
        ctypes.sizeof(buffer_larger),
    )


@iommufd_ioas
def area(self: IommufdIoas) -> None:
    # Unmap fails if nothing is mapped
    for i in range(10):
        self.test_err_ioctl_ioas_unmap(errno.ENOENT, i * PAGE_SIZE, PAGE_SIZE)

    # Unmap works
    for i in range(10):
        self.test_ioctl_ioas_map_fixed(buffer, PAGE_SIZE, self.base_iova + i * PAGE_SIZE)
    for i in range(10):
        self.test_ioctl_ioas_unmap(self.base_iova + i * PAGE_SIZE, PAGE_SIZE)

    # Split fails
    self.test_ioctl_ioas_map_fixed(buffer, PAGE_SIZE * 2, self.base_iova + 16 * PAGE_SIZE)
    self.test_err_ioctl_ioas_unmap(errno.ENOENT, self.base_iova + 16 * PAGE_SIZE, PAGE_SIZE)
    self.test_err_ioctl_ioas_unmap(errno.ENOENT, self.base_iova + 17 * PAGE_SIZE, PAGE_SIZE)

    # Over map fails
    self.test_err_ioctl_ioas_map_fixed(
        errno.EEXIST, buffer, PAGE_SIZE * 2, self.base_iova + 16 * PAGE_SIZE
    )
    self.test_err_ioctl_ioas_map_fixed(
        errno.EEXIST, buffer, PAGE_SIZE, self.base_iova + 16 * PAGE_SIZE
    )
    self.test_err_ioctl_ioas_map_fixed(
        errno.EEXIST, buffer, PAGE_SIZE, self.base_iova + 17 * PAGE_SIZE
    )
    self.test_err_ioctl_ioas_map_fixed(
        errno.EEXIST, buffer, PAGE_SIZE * 2, self.base_iova + 15 * PAGE_SIZE
    )
    self.test_err_ioctl_ioas_map_fixed(
        errno.EEXIST, buffer, PAGE_SIZE * 3, self.base_iova + 15 * PAGE_SIZE
    )

    # unmap all works
    self.test_ioctl_ioas_unmap(0, UINT64_MAX)

    # Unmap all succeeds on an empty IOAS
    self.test_ioctl_ioas_unmap(0, UINT64_MAX)


@iommufd_ioas
def unmap_fully_contained_areas(self: IommufdIoas) -> None:
    # Give no_domain some space to rewind base_iova
    self.base_iova += 4 * PAGE_SIZE

    for i in range(4):
        self.test_ioctl_ioas_map_fixed(buffer, 8 * PAGE_SIZE, self.base_iova + i * 16 * PAGE_SIZE)

    # Unmap not fully contained area doesn't work
    self.test_err_ioctl_ioas_unmap(errno.ENOENT, self.base_iova - 4 * PAGE_SIZE, 8 * PAGE_SIZE)
    self.test_err_ioctl_ioas_unmap(
        errno.ENOENT,
        self.base_iova + 3 * 16 * PAGE_SIZE + 8 * PAGE_SIZE - 4 * PAGE_SIZE,
        8 * PAGE_SIZE,
    )

    # Unmap fully contained areas works
    unmap_len = _test_ioctl_ioas_unmap(
        self._fd,
        self.ioas_id,
        self.base_iova - 4 * PAGE_SIZE,
        3 * 16 * PAGE_SIZE + 8 * PAGE_SIZE + 4 * PAGE_SIZE,
    )
    assert unmap_len == 32 * PAGE_SIZE


@iommufd_ioas
def area_auto_iova(self: IommufdIoas) -> None:
    reserved_start, reserved_length = PAGE_SIZE * 4, PAGE_SIZE * 100
    ranges = (uapi.iommu_iova_range * 1)()
    allow_cmd = _allow_iovas(self.ioas_id, ranges)
    iovas = [0] * 10

    # Simple 4k pages
    for i in range(10):
        iovas[i] = self.test_ioctl_ioas_map(buffer, PAGE_SIZE)
    for i in range(10):
        self.test_ioctl_ioas_unmap(iovas[i], PAGE_SIZE)

    # Kernel automatically aligns IOVAs properly
    for i in range(10):
        length = PAGE_SIZE * (i + 1)
        if self.stdev_id:
            iovas[i] = self.test_ioctl_ioas_map(buffer, length)
        else:
            iovas[i] = self.test_ioctl_ioas_map(1 << 31, length)
        assert iovas[i] % _lowest_bit(length) == 0
    for i in range(10):
        self.test_ioctl_ioas_unmap(iovas[i], PAGE_SIZE * (i + 1))

    # Avoids a reserved region
    assert _test_cmd_add_reserved(self._fd, self.ioas_id, reserved_start, reserved_length) == 0
    for i in range(10):
        length = PAGE_SIZE * (i + 1)
        iovas[i] = self.test_ioctl_ioas_map(buffer, length)
        assert iovas[i] % _lowest_bit(length) == 0
        assert not (reserved_start < iovas[i] < reserved_start + reserved_length)
    for i in range(10):
        self.test_ioctl_ioas_unmap(iovas[i], PAGE_SIZE * (i + 1))

    # Allowed region intersects with a reserved region
    ranges[0].start = PAGE_SIZE
    ranges[0].last = PAGE_SIZE * 600
    with expect_errno(errno.EADDRINUSE):
        self.ioctl(uapi.IOMMU_IOAS_ALLOW_IOVAS, allow_cmd)

    # Allocate from an allowed region
    if self.stdev_id:
        ranges[0].start = MOCK_APERTURE_START + PAGE_SIZE
        ranges[0].last = MOCK_APERTURE_START + PAGE_SIZE * 600 - 1
    else:
        ranges[0].start = PAGE_SIZE * 200
        ranges[0].last = PAGE_SIZE * 600 - 1
    assert self.ioctl(uapi.IOMMU_IOAS_ALLOW_IOVAS, allow_cmd) == 0
    for i in range(10):
        length = PAGE_SIZE * (i + 1)
        iovas[i] = self.test_ioctl_ioas_map(buffer, length)
        assert iovas[i] % _lowest_bit(length) == 0
        assert iovas[i] >= ranges[0].start
        assert iovas[i] <= ranges[0].last
        assert iovas[i] + length > ranges[0].start
        assert iovas[i] + length <= ranges[0].last + 1
    for i in range(10):
        self.test_ioctl_ioas_unmap(iovas[i], PAGE_SIZE * (i + 1))


@iommufd_ioas
def reserved_overflow(self: IommufdIoas) -> None:
    """https://lore.kernel.org/r/685af644.a00a0220.2e5631.0094.GAE@google.com"""
    start = 6
    if PAGE_SIZE == 4096:
        length = 0xFFFFFFFFFFFF8001
        map_len = 0x5000
    else:
        length = 0xFFFFFFFFFFFFFFFF - MOCK_PAGE_SIZE * 16
        map_len = MOCK_PAGE_SIZE * 10

    assert _test_cmd_add_reserved(self._fd, self.ioas_id, start, length) == 0
    self.test_err_ioctl_ioas_map(errno.ENOSPC, buffer, map_len)


@iommufd_ioas
def area_allowed(self: IommufdIoas) -> None:
    reserved_start, reserved_length = PAGE_SIZE * 4, PAGE_SIZE * 100
    ranges = (uapi.iommu_iova_range * 1)()
    allow_cmd = _allow_iovas(self.ioas_id, ranges)

    # Reserved intersects an allowed
    allow_cmd.num_iovas = 1
    ranges[0].start = self.base_iova
    ranges[0].last = ranges[0].start + PAGE_SIZE * 600
    assert self.ioctl(uapi.IOMMU_IOAS_ALLOW_IOVAS, allow_cmd) == 0
    reserved_start = ranges[0].start + PAGE_SIZE
    reserved_length = PAGE_SIZE
    with expect_errno(errno.EADDRINUSE):
        _test_cmd_add_reserved(self._fd, self.ioas_id, reserved_start, reserved_length)
    allow_cmd.num_iovas = 0
    assert self.ioctl(uapi.IOMMU_IOAS_ALLOW_IOVAS, allow_cmd) == 0

    # Allowed intersects a reserved
    assert _test_cmd_add_reserved(self._fd, self.ioas_id, reserved_start, reserved_length) == 0
    allow_cmd.num_iovas = 1
    ranges[0].start = self.base_iova
    ranges[0].last = ranges[0].start + PAGE_SIZE * 600
    with expect_errno(errno.EADDRINUSE):
        self.ioctl(uapi.IOMMU_IOAS_ALLOW_IOVAS, allow_cmd)


@iommufd_ioas
def copy_area(self: IommufdIoas) -> None:
    copy_cmd = uapi.iommu_ioas_copy(
        size=ctypes.sizeof(uapi.iommu_ioas_copy),
        flags=uapi.IOMMU_IOAS_MAP_FIXED_IOVA | uapi.IOMMU_IOAS_MAP_WRITEABLE,
        dst_ioas_id=self.ioas_id,
        src_ioas_id=self.ioas_id,
        length=PAGE_SIZE,
    )

    self.test_ioctl_ioas_map_fixed(buffer, PAGE_SIZE, self.base_iova)

    # Copy inside a single IOAS
    copy_cmd.src_iova = self.base_iova
    copy_cmd.dst_iova = self.base_iova + PAGE_SIZE
    assert self.ioctl(uapi.IOMMU_IOAS_COPY, copy_cmd) == 0

    # Copy between IOAS's
    copy_cmd.src_iova = self.base_iova
    copy_cmd.dst_iova = 0
    copy_cmd.dst_ioas_id = self.test_ioctl_ioas_alloc()
    assert self.ioctl(uapi.IOMMU_IOAS_COPY, copy_cmd) == 0


@iommufd_ioas
def iova_ranges(self: IommufdIoas) -> None:
    nranges = BUFFER_SIZE // ctypes.sizeof(uapi.iommu_iova_range)
    ranges = (uapi.iommu_iova_range * nranges).from_address(buffer)
    ranges_cmd = uapi.iommu_ioas_iova_ranges(
        size=ctypes.sizeof(uapi.iommu_ioas_iova_ranges),
        ioas_id=self.ioas_id,
        num_iovas=nranges,
        allowed_iovas=buffer,
    )

    # Range can be read
    assert self.ioctl(uapi.IOMMU_IOAS_IOVA_RANGES, ranges_cmd) == 0
    assert ranges_cmd.num_iovas == 1
    if not self.stdev_id:
        assert ranges[0].start == 0
        assert ranges[0].last == SIZE_MAX
        assert ranges_cmd.out_iova_alignment == 1
    else:
        assert ranges[0].start == MOCK_APERTURE_START
        assert ranges[0].last == MOCK_APERTURE_LAST
        assert ranges_cmd.out_iova_alignment == MOCK_PAGE_SIZE

    # Buffer too small
    ctypes.memset(buffer, 0, BUFFER_SIZE)
    ranges_cmd.num_iovas = 0
    with expect_errno(errno.EMSGSIZE):
        self.ioctl(uapi.IOMMU_IOAS_IOVA_RANGES, ranges_cmd)
    assert ranges_cmd.num_iovas == 1
    assert ranges[0].start == 0
    assert ranges[0].last == 0

    # 2 ranges
    assert _test_cmd_add_reserved(self._fd, self.ioas_id, PAGE_SIZE, PAGE_SIZE) == 0
    ranges_cmd.num_iovas = nranges
    assert self.ioctl(uapi.IOMMU_IOAS_IOVA_RANGES, ranges_cmd) == 0
    if not self.stdev_id:
        assert ranges_cmd.num_iovas == 2
        assert ranges[0].start == 0
        assert ranges[0].last == PAGE_SIZE - 1
        assert ranges[1].start == PAGE_SIZE * 2
        assert ranges[1].last == SIZE_MAX
    else:
        assert ranges_cmd.num_iovas == 1
        assert ranges[0].start == MOCK_APERTURE_START
        assert ranges[0].last == MOCK_APERTURE_LAST

    # Buffer too small
    ctypes.memset(buffer, 0, BUFFER_SIZE)
    ranges_cmd.num_iovas = 1
    if not self.stdev_id:
        with expect_errno(errno.EMSGSIZE):
            self.ioctl(uapi.IOMMU_IOAS_IOVA_RANGES, ranges_cmd)
        assert ranges_cmd.num_iovas == 2
        assert ranges[0].start == 0
        assert ranges[0].last == PAGE_SIZE - 1
    else:
        assert self.ioctl(uapi.IOMMU_IOAS_IOVA_RANGES, ranges_cmd) == 0
        assert ranges_cmd.num_iovas == 1
        assert ranges[0].start == MOCK_APERTURE_START
        assert ranges[0].last == MOCK_APERTURE_LAST
    assert ranges[1].start == 0
    assert ranges[1].last == 0


@iommufd_ioas
def ioas_option_huge_pages(self: IommufdIoas) -> None:
    cmd = uapi.iommu_option(
        size=ctypes.sizeof(uapi.iommu_option),
        option_id=uapi.IOMMU_OPTION_HUGE_PAGES,
        op=uapi.IOMMU_OPTION_OP_GET,
        val64=3,
        object_id=self.ioas_id,
    )

    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0
    assert cmd.val64 == 1

    cmd.op = uapi.IOMMU_OPTION_OP_SET
    cmd.val64 = 0
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0

    cmd.op = uapi.IOMMU_OPTION_OP_GET
    cmd.val64 = 3
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0
    assert cmd.val64 == 0

    cmd.op = uapi.IOMMU_OPTION_OP_SET
    cmd.val64 = 2
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.IOMMU_OPTION, cmd)

    cmd.op = uapi.IOMMU_OPTION_OP_SET
    cmd.val64 = 1
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0


@iommufd_ioas
def ioas_iova_alloc(self: IommufdIoas) -> None:
    for length in range(1, PAGE_SIZE * 2):
        if self.variant.mock_domains and length % MOCK_PAGE_SIZE:
            self.test_err_ioctl_ioas_map(errno.EINVAL, buffer, length)
        else:
            iova = self.test_ioctl_ioas_map(buffer, length)
            self.test_ioctl_ioas_unmap(iova, length)


@iommufd_ioas
def ioas_align_change(self: IommufdIoas) -> None:
    cmd = uapi.iommu_option(
        size=ctypes.sizeof(uapi.iommu_option),
        option_id=uapi.IOMMU_OPTION_HUGE_PAGES,
        op=uapi.IOMMU_OPTION_OP_SET,
        object_id=self.ioas_id,
        # 0 means everything must be aligned to PAGE_SIZE
        val64=0,
    )

    # We cannot upgrade the alignment using OPTION_HUGE_PAGES when a domain
    # and map are present.
    if self.variant.mock_domains:
        return

    # We can upgrade to PAGE_SIZE alignment when things are aligned right
    self.test_ioctl_ioas_map_fixed(buffer, PAGE_SIZE, MOCK_APERTURE_START)
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0

    # Misalignment is rejected at map time
    self.test_err_ioctl_ioas_map_fixed(
        errno.EINVAL, buffer + MOCK_PAGE_SIZE, PAGE_SIZE, MOCK_APERTURE_START + PAGE_SIZE
    )
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0

    # Reduce alignment
    cmd.val64 = 1
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0

    # Confirm misalignment is rejected during alignment upgrade
    self.test_ioctl_ioas_map_fixed(
        buffer + MOCK_PAGE_SIZE, PAGE_SIZE, MOCK_APERTURE_START + PAGE_SIZE
    )
    cmd.val64 = 0
    with expect_errno(errno.EADDRINUSE):
        self.ioctl(uapi.IOMMU_OPTION, cmd)

    self.test_ioctl_ioas_unmap(MOCK_APERTURE_START + PAGE_SIZE, PAGE_SIZE)
    self.test_ioctl_ioas_unmap(MOCK_APERTURE_START, PAGE_SIZE)


@iommufd_ioas
def copy_sweep(self: IommufdIoas) -> None:
    copy_cmd = uapi.iommu_ioas_copy(
        size=ctypes.sizeof(uapi.iommu_ioas_copy),
        flags=uapi.IOMMU_IOAS_MAP_FIXED_IOVA | uapi.IOMMU_IOAS_MAP_WRITEABLE,
        src_ioas_id=self.ioas_id,
        dst_iova=MOCK_APERTURE_START,
        length=MOCK_PAGE_SIZE,
    )

    dst_ioas_id = self.test_ioctl_ioas_alloc()
    copy_cmd.dst_ioas_id = dst_ioas_id

    if self.variant.mock_domains:
        last_iova = MOCK_APERTURE_START + BUFFER_SIZE - 1
    else:
        last_iova = MOCK_APERTURE_START + BUFFER_SIZE - 2

    self.test_ioctl_ioas_map_fixed(buffer, last_iova - MOCK_APERTURE_START + 1, MOCK_APERTURE_START)

    for iova in range(MOCK_APERTURE_START - PAGE_SIZE, last_iova + 1, 511):
        copy_cmd.src_iova = iova
        if iova < MOCK_APERTURE_START or iova + copy_cmd.length - 1 > last_iova:
            with expect_errno(errno.ENOENT):
                self.ioctl(uapi.IOMMU_IOAS_COPY, copy_cmd)
        else:
            assert self.ioctl(uapi.IOMMU_IOAS_COPY, copy_cmd) == 0
            self.test_ioctl_ioas_unmap_id(dst_ioas_id, copy_cmd.dst_iova, copy_cmd.length)

    self.test_ioctl_destroy(dst_ioas_id)
