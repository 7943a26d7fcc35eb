"""``FIXTURE(iommufd_viommu)`` of ``tools/testing/selftests/iommu/iommufd.c`` (Linux 7.3):
every test of both variants (``no_viommu``, ``mock_viommu``). The five tests the kernel
skips on ``no_viommu`` skip here too, with the kernel's message.

Tests are ``test_iommufd_viommu__<variant>__<name>``.
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
    PAGE_SIZE,
    TEST_F,
    UINT32_MAX,
    Fixture,
    _test_ioctl_destroy,
    buffer,
    expect_errno,
    fd_read,
)
from .viommu_utils import (
    HDR_SIZE,
    _test_cmd_hw_queue_alloc,
    _test_cmd_read_vevents,
    _test_cmd_trigger_vevents,
    _test_cmd_vdevice_alloc,
    _test_cmd_veventq_alloc,
    _test_cmd_viommu_alloc,
    _test_cmd_viommu_invalidate,
    iommufd_mmap,
)

pytestmark = pytest.mark.oracle

MOCK_APERTURE_START = uapi.MOCK_APERTURE_START
SELFTEST = uapi.IOMMU_VIOMMU_TYPE_SELFTEST
INV_SELFTEST = uapi.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST
Q_SELFTEST = uapi.IOMMU_HW_QUEUE_TYPE_SELFTEST
VEVENTQ_MAX_DEPTH = 1 << 19


@dataclass(frozen=True)
class Variant:
    viommu: int


VARIANTS = {"no_viommu": Variant(0), "mock_viommu": Variant(1)}


class IommufdViommu(Fixture):
    """``FIXTURE(iommufd_viommu)``: ioas_id, stdev_id, hwpt_id, nested_hwpt_id, device_id,
    viommu_id."""

    nested_hwpt_id = 0
    viommu_id = 0

    def __init__(self, backend: ModuleType, variant: Variant) -> None:
        super().__init__(backend)
        self.ioas_id = self.test_ioctl_ioas_alloc()
        self.test_ioctl_set_default_memory_limit()
        if variant.viommu:
            data = uapi.iommu_hwpt_selftest(iotlb=uapi.IOMMU_TEST_IOTLB_DEFAULT)
            self.stdev_id, _, self.device_id = self.test_cmd_mock_domain(self.ioas_id)
            # a nesting parent HWPT
            self.hwpt_id = self.test_cmd_hwpt_alloc(
                self.device_id, self.ioas_id, uapi.IOMMU_HWPT_ALLOC_NEST_PARENT
            )
            # a vIOMMU taking a reference on the parent
            self.viommu_id = self.test_cmd_viommu_alloc(self.device_id, self.hwpt_id, SELFTEST)
            # a regular nested HWPT
            self.nested_hwpt_id = self.test_cmd_hwpt_alloc_nested(
                self.device_id,
                self.viommu_id,
                0,
                uapi.IOMMU_HWPT_DATA_SELFTEST,
                data,
                ctypes.sizeof(data),
            )

    # iommufd_utils.h macros on self->fd
    def test_cmd_viommu_alloc(
        self, device_id: int, hwpt_id: int, type: int, data: object = None, data_len: int = 0
    ) -> int:
        return _test_cmd_viommu_alloc(self._fd, device_id, hwpt_id, 0, type, data, data_len)

    def test_err_viommu_alloc(self, err: int, device_id: int, hwpt_id: int, type: int) -> None:
        with expect_errno(err):
            _test_cmd_viommu_alloc(self._fd, device_id, hwpt_id, 0, type, None, 0)

    def test_cmd_vdevice_alloc(self, viommu_id: int, idev_id: int, virt_id: int) -> int:
        return _test_cmd_vdevice_alloc(self._fd, viommu_id, idev_id, virt_id)

    def test_err_vdevice_alloc(self, err: int, viommu_id: int, idev_id: int, virt_id: int) -> None:
        with expect_errno(err):
            _test_cmd_vdevice_alloc(self._fd, viommu_id, idev_id, virt_id)

    def test_err_hw_queue_alloc(
        self, err: int, viommu_id: int, type: int, idx: int, base: int, length: int
    ) -> None:
        with expect_errno(err):
            _test_cmd_hw_queue_alloc(self._fd, viommu_id, type, idx, base, length)

    def test_err_veventq_alloc(self, err: int, viommu_id: int, type: int, depth: int) -> None:
        with expect_errno(err):
            _test_cmd_veventq_alloc(self._fd, viommu_id, type, depth)

    def test_err_mmap(self, err: int, length: int, offset: int) -> None:
        with expect_errno(err):
            iommufd_mmap(self._fd, length, offset).close()

    def test_cmd_viommu_invalidate(self, viommu_id: int, reqs: object, lreq: int, n: int) -> int:
        rc, num = _test_cmd_viommu_invalidate(self._fd, viommu_id, reqs, INV_SELFTEST, lreq, n)
        assert rc == 0, errno.errorcode.get(rc, rc)
        return num

    def test_err_viommu_invalidate(
        self, err: int, viommu_id: int, reqs: object, data_type: int, lreq: int, n: int
    ) -> int:
        rc, num = _test_cmd_viommu_invalidate(self._fd, viommu_id, reqs, data_type, lreq, n)
        assert rc == err, f"expected {errno.errorcode[err]}, got {errno.errorcode.get(rc, rc)}"
        return num


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[IommufdViommu]:
    fixture = IommufdViommu(backend, request.function.variant)
    yield fixture
    fixture.teardown()


iommufd_viommu = TEST_F("iommufd_viommu", VARIANTS, globals())


def _skip_no_viommu() -> None:
    pytest.skip("Skipping test for variant no_viommu")


@iommufd_viommu
def viommu_auto_destroy(self: IommufdViommu) -> None:
    pass


@iommufd_viommu
def viommu_negative_tests(self: IommufdViommu) -> None:
    device_id, ioas_id = self.device_id, self.ioas_id
    if self.device_id:
        # invalid hwpt (hwpt_id=0)
        self.test_err_viommu_alloc(errno.ENOENT, device_id, 0, SELFTEST)
        # not a nesting parent hwpt
        hwpt_id = self.test_cmd_hwpt_alloc(device_id, ioas_id, 0)
        self.test_err_viommu_alloc(errno.EINVAL, device_id, hwpt_id, SELFTEST)
        self.test_ioctl_destroy(hwpt_id)
        # unsupported viommu type
        self.test_err_viommu_alloc(errno.EOPNOTSUPP, device_id, self.hwpt_id, 0xDEAD)
        with expect_errno(errno.EBUSY):
            _test_ioctl_destroy(self._fd, self.hwpt_id)
        with expect_errno(errno.EBUSY):
            _test_ioctl_destroy(self._fd, self.viommu_id)
    else:
        self.test_err_viommu_alloc(errno.ENOENT, self.device_id, self.hwpt_id, SELFTEST)


@iommufd_viommu
def viommu_alloc_nested_iopf(self: IommufdViommu) -> None:
    data = uapi.iommu_hwpt_selftest(iotlb=uapi.IOMMU_TEST_IOTLB_DEFAULT)
    viommu_id, dev_id = self.viommu_id, self.device_id
    if not dev_id:
        _skip_no_viommu()
    fault_id, fault_fd = self.test_ioctl_fault_alloc()
    args = (uapi.IOMMU_HWPT_DATA_SELFTEST, data, ctypes.sizeof(data))
    self.test_err_hwpt_alloc_iopf(
        errno.ENOENT, dev_id, viommu_id, UINT32_MAX, uapi.IOMMU_HWPT_FAULT_ID_VALID, *args
    )
    self.test_err_hwpt_alloc_iopf(
        errno.EOPNOTSUPP,
        dev_id,
        viommu_id,
        fault_id,
        uapi.IOMMU_HWPT_FAULT_ID_VALID | (1 << 31),
        *args,
    )
    iopf_hwpt_id = self.test_cmd_hwpt_alloc_iopf(
        dev_id, viommu_id, fault_id, uapi.IOMMU_HWPT_FAULT_ID_VALID, *args
    )
    # must allocate a vdevice before attaching to a nested hwpt
    self.test_err_mock_domain_replace(errno.ENOENT, self.stdev_id, iopf_hwpt_id)
    self.test_cmd_vdevice_alloc(viommu_id, dev_id, 0x99)
    self.test_cmd_mock_domain_replace(self.stdev_id, iopf_hwpt_id)
    with expect_errno(errno.EBUSY):
        _test_ioctl_destroy(self._fd, iopf_hwpt_id)
    self.test_cmd_trigger_iopf(dev_id, fault_fd)

    self.test_cmd_mock_domain_replace(self.stdev_id, self.ioas_id)
    self.test_ioctl_destroy(iopf_hwpt_id)
    os.close(fault_fd)
    self.test_ioctl_destroy(fault_id)


@iommufd_viommu
def viommu_alloc_with_data(self: IommufdViommu) -> None:
    data = uapi.iommu_viommu_selftest(in_data=0xBEEF)
    if not self.device_id:
        _skip_no_viommu()
    self.viommu_id = self.test_cmd_viommu_alloc(
        self.device_id, self.hwpt_id, SELFTEST, data, ctypes.sizeof(data)
    )
    assert data.out_data == data.in_data

    # negative mmap tests: offset and length cannot be changed
    self.test_err_mmap(errno.ENXIO, data.out_mmap_length, data.out_mmap_offset + PAGE_SIZE)
    self.test_err_mmap(errno.ENXIO, data.out_mmap_length, data.out_mmap_offset + PAGE_SIZE * 2)
    self.test_err_mmap(errno.ENXIO, data.out_mmap_length // 2, data.out_mmap_offset)
    self.test_err_mmap(errno.ENXIO, data.out_mmap_length * 2, data.out_mmap_offset)

    # a correct mmap for a loopback test
    test = iommufd_mmap(self._fd, data.out_mmap_length, data.out_mmap_offset)
    assert int.from_bytes(test[:4], "little") == data.in_data

    # the owner of the mmap region is blocked
    with expect_errno(errno.EBUSY):
        _test_ioctl_destroy(self._fd, self.viommu_id)
    test.close()


@iommufd_viommu
def vdevice_alloc(self: IommufdViommu) -> None:
    viommu_id, dev_id = self.viommu_id, self.device_id
    prev_seq = [-1]
    VQ = uapi.IOMMU_VEVENTQ_TYPE_SELFTEST
    if dev_id:
        # must allocate a vdevice before attaching to a nested hwpt
        self.test_err_mock_domain_replace(errno.ENOENT, self.stdev_id, self.nested_hwpt_id)

        # depth lower and upper bounds (mirrors the kernel cap)
        self.test_err_veventq_alloc(errno.EINVAL, viommu_id, VQ, 0)
        self.test_err_veventq_alloc(errno.EINVAL, viommu_id, VQ, VEVENTQ_MAX_DEPTH + 1)
        veventq_id, veventq_fd = _test_cmd_veventq_alloc(self._fd, viommu_id, VQ, VEVENTQ_MAX_DEPTH)
        os.close(veventq_fd)
        self.test_ioctl_destroy(veventq_id)

        # a vEVENTQ with veventq_depth=2
        veventq_id, veventq_fd = _test_cmd_veventq_alloc(self._fd, viommu_id, VQ, 2)
        self.test_err_veventq_alloc(errno.EEXIST, viommu_id, VQ, 2)

        # invalid read counts on an empty vEVENTQ
        with expect_errno(errno.EINVAL):
            fd_read(self.backend, veventq_fd, 0)
        with expect_errno(errno.EINVAL):
            fd_read(self.backend, veventq_fd, HDR_SIZE - 1)

        # set vdev_id to 0x99, unset it, and set to 0x88
        vdev_id = self.test_cmd_vdevice_alloc(viommu_id, dev_id, 0x99)
        self.test_cmd_mock_domain_replace(self.stdev_id, self.nested_hwpt_id)
        _test_cmd_trigger_vevents(self._fd, dev_id, 1)

        # invalid read counts on a non-empty vEVENTQ
        with expect_errno(errno.EINVAL):
            fd_read(self.backend, veventq_fd, 0)
        # the header fits but the event's payload does not
        with expect_errno(errno.EINVAL):
            fd_read(self.backend, veventq_fd, HDR_SIZE)

        _test_cmd_read_vevents(self.backend, veventq_fd, 1, 0x99, prev_seq)
        self.test_err_vdevice_alloc(errno.EEXIST, viommu_id, dev_id, 0x99)
        self.test_cmd_mock_domain_replace(self.stdev_id, self.ioas_id)
        self.test_ioctl_destroy(vdev_id)

        # again with 0x88
        vdev_id = self.test_cmd_vdevice_alloc(viommu_id, dev_id, 0x88)
        self.test_cmd_mock_domain_replace(self.stdev_id, self.nested_hwpt_id)
        # an overflow with three events
        _test_cmd_trigger_vevents(self._fd, dev_id, 3)
        with expect_errno(errno.EOVERFLOW):
            _test_cmd_read_vevents(self.backend, veventq_fd, 3, 0x88, prev_seq)
        # the overflow is gone after the previous reads
        _test_cmd_trigger_vevents(self._fd, dev_id, 1)
        _test_cmd_read_vevents(self.backend, veventq_fd, 1, 0x88, prev_seq)
        os.close(veventq_fd)
        self.test_cmd_mock_domain_replace(self.stdev_id, self.ioas_id)
        self.test_ioctl_destroy(vdev_id)
        self.test_ioctl_destroy(veventq_id)
    else:
        self.test_err_vdevice_alloc(errno.ENOENT, viommu_id, dev_id, 0x99)


@iommufd_viommu
def vdevice_cache(self: IommufdViommu) -> None:
    inv_reqs = (uapi.iommu_viommu_invalidate_selftest * 2)()
    lreq = ctypes.sizeof(uapi.iommu_viommu_invalidate_selftest)
    viommu_id, dev_id = self.viommu_id, self.device_id
    DEFAULT = uapi.IOMMU_TEST_DEV_CACHE_DEFAULT
    if not dev_id:
        _skip_no_viommu()

    vdev_id = self.test_cmd_vdevice_alloc(viommu_id, dev_id, 0x99)
    self.test_cmd_dev_check_cache_all(dev_id, DEFAULT)

    # data_type checked by a zero-length array
    assert self.test_cmd_viommu_invalidate(viommu_id, inv_reqs, lreq, 0) == 0

    # invalid data_type
    invalid = uapi.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID
    assert self.test_err_viommu_invalidate(errno.EINVAL, viommu_id, inv_reqs, invalid, lreq, 1) == 0

    # structure size sanity
    assert (
        self.test_err_viommu_invalidate(
            errno.EINVAL, viommu_id, inv_reqs, INV_SELFTEST, lreq + 1, 1
        )
        == 0
    )
    assert (
        self.test_err_viommu_invalidate(errno.EINVAL, viommu_id, inv_reqs, INV_SELFTEST, 1, 1) == 0
    )

    # invalid flag
    inv_reqs[0].flags = 0xFFFFFFFF
    inv_reqs[0].vdev_id = 0x99
    assert (
        self.test_err_viommu_invalidate(
            errno.EOPNOTSUPP, viommu_id, inv_reqs, INV_SELFTEST, lreq, 1
        )
        == 0
    )

    # invalid data_uptr when the array is not empty
    inv_reqs[0].flags = 0
    inv_reqs[0].vdev_id = 0x99
    assert (
        self.test_err_viommu_invalidate(errno.EINVAL, viommu_id, None, INV_SELFTEST, lreq, 1) == 0
    )

    # invalid entry_len when the array is not empty
    assert (
        self.test_err_viommu_invalidate(errno.EINVAL, viommu_id, inv_reqs, INV_SELFTEST, 0, 1) == 0
    )

    # invalid cache_id
    inv_reqs[0].cache_id = uapi.MOCK_DEV_CACHE_ID_MAX + 1
    assert (
        self.test_err_viommu_invalidate(errno.EINVAL, viommu_id, inv_reqs, INV_SELFTEST, lreq, 1)
        == 0
    )

    # invalid vdev_id
    inv_reqs[0].vdev_id = 0x9
    inv_reqs[0].cache_id = 0
    assert (
        self.test_err_viommu_invalidate(errno.EINVAL, viommu_id, inv_reqs, INV_SELFTEST, lreq, 1)
        == 0
    )

    # the 1st entry invalidated, the 2nd fails on its flags
    inv_reqs[0].flags, inv_reqs[0].vdev_id, inv_reqs[0].cache_id = 0, 0x99, 0
    inv_reqs[1].flags, inv_reqs[1].vdev_id, inv_reqs[1].cache_id = 0xFFFFFFFF, 0x99, 1
    assert (
        self.test_err_viommu_invalidate(
            errno.EOPNOTSUPP, viommu_id, inv_reqs, INV_SELFTEST, lreq, 2
        )
        == 1
    )
    self.test_cmd_dev_check_cache(dev_id, 0, 0)
    for i in (1, 2, 3):
        self.test_cmd_dev_check_cache(dev_id, i, DEFAULT)

    # the 1st entry invalidated, the 2nd fails on its cache_id
    inv_reqs[0].flags, inv_reqs[0].vdev_id, inv_reqs[0].cache_id = 0, 0x99, 0
    inv_reqs[1].flags, inv_reqs[1].vdev_id = 0, 0x99
    inv_reqs[1].cache_id = uapi.MOCK_DEV_CACHE_ID_MAX + 1
    assert (
        self.test_err_viommu_invalidate(errno.EINVAL, viommu_id, inv_reqs, INV_SELFTEST, lreq, 2)
        == 1
    )
    self.test_cmd_dev_check_cache(dev_id, 0, 0)
    for i in (1, 2, 3):
        self.test_cmd_dev_check_cache(dev_id, i, DEFAULT)

    # invalidate the 2nd entry
    inv_reqs[0].flags, inv_reqs[0].vdev_id, inv_reqs[0].cache_id = 0, 0x99, 1
    assert self.test_cmd_viommu_invalidate(viommu_id, inv_reqs, lreq, 1) == 1
    self.test_cmd_dev_check_cache(dev_id, 0, 0)
    self.test_cmd_dev_check_cache(dev_id, 1, 0)
    self.test_cmd_dev_check_cache(dev_id, 2, DEFAULT)
    self.test_cmd_dev_check_cache(dev_id, 3, DEFAULT)

    # invalidate the 3rd and 4th entries
    inv_reqs[0].flags, inv_reqs[0].vdev_id, inv_reqs[0].cache_id = 0, 0x99, 2
    inv_reqs[1].flags, inv_reqs[1].vdev_id, inv_reqs[1].cache_id = 0, 0x99, 3
    assert self.test_cmd_viommu_invalidate(viommu_id, inv_reqs, lreq, 2) == 2
    self.test_cmd_dev_check_cache_all(dev_id, 0)

    # invalidate all entries
    inv_reqs[0].vdev_id = 0x99
    inv_reqs[0].flags = uapi.IOMMU_TEST_INVALIDATE_FLAG_ALL
    assert self.test_cmd_viommu_invalidate(viommu_id, inv_reqs, lreq, 1) == 1
    self.test_cmd_dev_check_cache_all(dev_id, 0)
    self.test_ioctl_destroy(vdev_id)


@iommufd_viommu
def hw_queue(self: IommufdViommu) -> None:
    iova = MOCK_APERTURE_START
    viommu_id = self.viommu_id
    if not viommu_id:
        _skip_no_viommu()

    # IOMMU_HW_QUEUE_TYPE_DEFAULT fails
    self.test_err_hw_queue_alloc(
        errno.EOPNOTSUPP, viommu_id, uapi.IOMMU_HW_QUEUE_TYPE_DEFAULT, 0, iova, PAGE_SIZE
    )
    # queue addr and length
    self.test_err_hw_queue_alloc(errno.EINVAL, viommu_id, Q_SELFTEST, 0, iova, 0)
    self.test_err_hw_queue_alloc(
        errno.EOVERFLOW, viommu_id, Q_SELFTEST, 0, (1 << 64) - 1, PAGE_SIZE
    )
    # missing iova
    self.test_err_hw_queue_alloc(errno.ENOENT, viommu_id, Q_SELFTEST, 0, iova, PAGE_SIZE)

    # map iova
    iova = self.test_ioctl_ioas_map(buffer, PAGE_SIZE)
    iova2 = self.test_ioctl_ioas_map(buffer + PAGE_SIZE, PAGE_SIZE)

    # index=1 and =MAX fail; must start from index=0
    self.test_err_hw_queue_alloc(errno.EIO, viommu_id, Q_SELFTEST, 1, iova, PAGE_SIZE)
    self.test_err_hw_queue_alloc(
        errno.EINVAL, viommu_id, Q_SELFTEST, uapi.IOMMU_TEST_HW_QUEUE_MAX, iova, PAGE_SIZE
    )

    # index=0, taking ownership of the iova
    q0 = _test_cmd_hw_queue_alloc(self._fd, viommu_id, Q_SELFTEST, 0, iova, PAGE_SIZE)
    # duplicated index
    self.test_err_hw_queue_alloc(errno.EEXIST, viommu_id, Q_SELFTEST, 0, iova, PAGE_SIZE)
    # unmap fails: the iova is owned
    self.test_err_ioctl_ioas_unmap(errno.EBUSY, iova, PAGE_SIZE)
    # the 2nd page is not pinned, so it can be unmapped
    self.test_ioctl_ioas_unmap(iova2, PAGE_SIZE)

    # index=1, unaligned
    q1 = _test_cmd_hw_queue_alloc(
        self._fd, viommu_id, Q_SELFTEST, 1, iova + PAGE_SIZE // 2, PAGE_SIZE // 2
    )
    # destroy fails on the dependency
    with expect_errno(errno.EBUSY):
        _test_ioctl_destroy(self._fd, q0)

    # destroy in descending order
    self.test_ioctl_destroy(q1)
    self.test_ioctl_destroy(q0)
    # now the first page can be unmapped
    self.test_ioctl_ioas_unmap(iova, PAGE_SIZE)


@iommufd_viommu
def vdevice_tombstone(self: IommufdViommu) -> None:
    viommu_id, dev_id = self.viommu_id, self.device_id
    if not dev_id:
        _skip_no_viommu()
    vdev_id = self.test_cmd_vdevice_alloc(viommu_id, dev_id, 0x99)
    self.test_ioctl_destroy(self.stdev_id)
    with expect_errno(errno.ENOENT):
        _test_ioctl_destroy(self._fd, vdev_id)
