"""``FIXTURE(basic_fail_nth)`` of ``tools/testing/selftests/iommu/iommufd_fail_nth.c``
(Linux 7.3): every ``TEST_FAIL_NTH`` by its kernel name, as
``test_basic_fail_nth__<name>``, swept by :func:`fail_nth_utils.run_fail_nth`.

The C test only looks for kernel splats; the port also checks after every injected failure
that nothing was left behind (:class:`fail_nth_utils.Leftovers`), and records how many
iterations the sweep took (:data:`KERNEL_ITERATIONS` are the oracle kernel's: a different
count on ``sim`` means the simulator's fault points are not the kernel's).

Differences from C, on purpose: the global buffers are this module's (2 MiB of
``MAP_SHARED|MAP_ANONYMOUS`` memory and a 2 MiB memfd, as ``setup_buffer()`` maps them);
a body raises ``OSError`` where C returns -1.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from ioasid import uapi
from ioasid.backends.base import Handle

from .access_utils import (
    _test_cmd_create_access,
    _test_cmd_destroy_access,
    _test_cmd_destroy_access_pages,
    access_pages_cmd,
)
from .fail_nth_utils import FailNthState, run_fail_nth
from .utils import (
    PAGE_SIZE,
    _addressof,
    _test_cmd_get_hw_info,
    _test_cmd_hwpt_alloc,
    _test_cmd_mock_domain,
    _test_cmd_mock_domain_flags,
    _test_cmd_mock_domain_replace,
    _test_cmd_pasid_op,
    _test_ioctl_destroy,
    _test_ioctl_fault_alloc,
    _test_ioctl_ioas_alloc,
    _test_ioctl_ioas_map,
    _test_ioctl_ioas_map_file,
    _test_ioctl_ioas_unmap,
    _test_ioctl_set_temp_memory_limit,
    check_refs,
    ioctl,
    memfd_mmap,
)
from .viommu_utils import (
    _test_cmd_hw_queue_alloc,
    _test_cmd_vdevice_alloc,
    _test_cmd_veventq_alloc,
    _test_cmd_viommu_alloc,
)

pytestmark = pytest.mark.oracle

BUFFER_SIZE = 2 * 1024 * 1024
"""``setup_buffer()``: this test's ``BUFFER_SIZE``."""

_buffer_mem = mmap.mmap(
    -1,
    BUFFER_SIZE,
    flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS,
    prot=mmap.PROT_READ | mmap.PROT_WRITE,
)
buffer = _addressof(_buffer_mem)
_mfd_buffer_mem, mfd = memfd_mmap(BUFFER_SIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED)

RW = uapi.IOMMU_IOAS_MAP_WRITEABLE | uapi.IOMMU_IOAS_MAP_READABLE

KERNEL_ITERATIONS = {
    "basic": 18,
    "map_domain": 172,
    "map_file_domain": 172,
    "map_two_domains": 219,
    "access_rw": 19,
    "access_pin": 17,
    "access_pin_domain": 19,
    "device": 150,
}
"""``nth_state.iteration`` at the end of each sweep of the C binary in the oracle guest (7.3.4,
786 in all)."""

SIM_MATCHES_KERNEL = {"basic"}
"""Sweeps whose every fault point the simulator has (the others also reach the driver core's
allocations under the mock device -- kernfs, kobject, software nodes, iommu groups -- and
the mock domain's, which the simulator does not count)."""


class BasicFailNth:
    """``FIXTURE(basic_fail_nth)``: ``fd``, ``access_id``, ``stdev_id``, ``pasid``."""

    def __init__(self, backend: ModuleType) -> None:
        self.backend = backend
        self.setup()

    def setup(self) -> None:
        self.fd: Handle | None = None
        self.access_id = 0
        self.stdev_id = 0
        self.pasid = 0

    def teardown(self) -> None:
        if self.access_id:
            # the access fd holds the iommufd open until it closes
            _test_cmd_destroy_access(self.access_id)
        if self.pasid and self.stdev_id:
            assert self.fd is not None
            # _test_cmd_pasid_detach()'s result is ignored
            with contextlib.suppress(OSError):
                _test_cmd_pasid_op(
                    self.fd, uapi.IOMMU_TEST_OP_PASID_DETACH, self.stdev_id, self.pasid
                )
        # teardown_iommufd(): close, then no page of the buffer may still be pinned
        if self.fd is not None:
            self.fd.close()
            fd = self.backend.open("/dev/iommu")
            try:
                check_refs(fd, buffer, BUFFER_SIZE, 0)
            finally:
                fd.close()
        self.fd = None

    def open(self) -> Handle:
        self.fd = self.backend.open("/dev/iommu")
        return self.fd


@pytest.fixture
def self(backend: ModuleType) -> Iterator[BasicFailNth]:
    fixture = BasicFailNth(backend)
    yield fixture
    fixture.teardown()


def _sweep(backend: ModuleType, self: BasicFailNth, name: str) -> None:
    body = BODIES[name]
    iterations = run_fail_nth(backend, self, lambda nth: body(self, nth))
    print(f"basic_fail_nth.{name}: {iterations} iterations on {backend.NAME}")
    if backend.NAME != "sim" or name in SIM_MATCHES_KERNEL:
        # on the kernel: the port reaches exactly the C binary's fault points
        assert iterations == KERNEL_ITERATIONS[name], (iterations, KERNEL_ITERATIONS[name])


def basic(self: BasicFailNth, nth: FailNthState) -> None:
    """Cover ioas.c."""
    nth.enable()
    fd = self.open()
    ioas_id = _test_ioctl_ioas_alloc(fd)
    ranges = (uapi.iommu_iova_range * 10)()
    ranges_cmd = uapi.iommu_ioas_iova_ranges(
        size=ctypes.sizeof(uapi.iommu_ioas_iova_ranges),
        num_iovas=len(ranges),
        ioas_id=ioas_id,
        allowed_iovas=ctypes.addressof(ranges),
    )
    ioctl(fd, uapi.IOMMU_IOAS_IOVA_RANGES, ranges_cmd)
    allow_cmd = uapi.iommu_ioas_allow_iovas(
        size=ctypes.sizeof(uapi.iommu_ioas_allow_iovas),
        ioas_id=ioas_id,
        num_iovas=1,
        allowed_iovas=ctypes.addressof(ranges),
    )
    ranges[0].start = 16 * 1024
    ranges[0].last = BUFFER_SIZE + 16 * 1024 * 600 - 1
    ioctl(fd, uapi.IOMMU_IOAS_ALLOW_IOVAS, allow_cmd)
    iova = _test_ioctl_ioas_map(fd, ioas_id, buffer, BUFFER_SIZE, 0, RW)
    copy_cmd = uapi.iommu_ioas_copy(
        size=ctypes.sizeof(uapi.iommu_ioas_copy),
        flags=RW,
        dst_ioas_id=ioas_id,
        src_ioas_id=ioas_id,
        src_iova=iova,
        length=ctypes.sizeof(ranges),
    )
    ioctl(fd, uapi.IOMMU_IOAS_COPY, copy_cmd)
    _test_ioctl_ioas_unmap(fd, ioas_id, iova, BUFFER_SIZE)
    # failure path of no IOVA to unmap
    with contextlib.suppress(OSError):
        _test_ioctl_ioas_unmap(fd, ioas_id, iova, BUFFER_SIZE)


def map_domain(self: BasicFailNth, nth: FailNthState) -> None:
    """``iopt_area_fill_domains()`` and ``iopt_area_fill_domain()``."""
    fd = self.open()
    ioas_id = _test_ioctl_ioas_alloc(fd)
    _test_ioctl_set_temp_memory_limit(fd, 32)
    nth.enable()
    stdev_id, _, _ = _test_cmd_mock_domain(fd, ioas_id)
    _test_ioctl_ioas_map(fd, ioas_id, buffer, 262144, 0, RW)
    _test_ioctl_destroy(fd, stdev_id)
    _test_cmd_mock_domain(fd, ioas_id)


def map_file_domain(self: BasicFailNth, nth: FailNthState) -> None:
    """``iopt_area_fill_domains()`` and ``iopt_area_fill_domain()``, of a memfd."""
    fd = self.open()
    ioas_id = _test_ioctl_ioas_alloc(fd)
    _test_ioctl_set_temp_memory_limit(fd, 32)
    nth.enable()
    stdev_id, _, _ = _test_cmd_mock_domain(fd, ioas_id)
    _test_ioctl_ioas_map_file(fd, ioas_id, mfd, 0, 262144, 0, RW)
    _test_ioctl_destroy(fd, stdev_id)
    _test_cmd_mock_domain(fd, ioas_id)


def map_two_domains(self: BasicFailNth, nth: FailNthState) -> None:
    fd = self.open()
    ioas_id = _test_ioctl_ioas_alloc(fd)
    _test_ioctl_set_temp_memory_limit(fd, 32)
    stdev_id, _, _ = _test_cmd_mock_domain(fd, ioas_id)
    nth.enable()
    stdev_id2, _, _ = _test_cmd_mock_domain(fd, ioas_id)
    _test_ioctl_ioas_map(fd, ioas_id, buffer, 262144, 0, RW)
    _test_ioctl_destroy(fd, stdev_id)
    _test_ioctl_destroy(fd, stdev_id2)
    _test_cmd_mock_domain(fd, ioas_id)
    _test_cmd_mock_domain(fd, ioas_id)


def _access_rw(fd: Handle, access_id: int, iova: int, flags: int, tmp: ctypes.Array) -> None:  # type: ignore[type-arg]
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_ACCESS_RW
    cmd.id = access_id
    cmd.access_rw.iova = iova
    cmd.access_rw.flags = flags
    cmd.access_rw.length = ctypes.sizeof(tmp)
    cmd.access_rw.uptr = ctypes.addressof(tmp)
    ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


def access_rw(self: BasicFailNth, nth: FailNthState) -> None:
    tmp_big = (ctypes.c_uint64 * 4096)()
    tmp = (ctypes.c_uint16 * 32)()
    fd = self.open()
    ioas_id = _test_ioctl_ioas_alloc(fd)
    _test_ioctl_set_temp_memory_limit(fd, 32)
    iova = _test_ioctl_ioas_map(fd, ioas_id, buffer, 262144, 0, RW)
    nth.enable()
    self.access_id = _test_cmd_create_access(fd, ioas_id, 0)
    _access_rw(fd, self.access_id, iova, 0, tmp)  # READ
    _access_rw(fd, self.access_id, iova, uapi.MOCK_ACCESS_RW_WRITE, tmp)
    _access_rw(fd, self.access_id, iova, uapi.MOCK_ACCESS_RW_SLOW_PATH, tmp)
    _access_rw(
        fd, self.access_id, iova, uapi.MOCK_ACCESS_RW_SLOW_PATH | uapi.MOCK_ACCESS_RW_WRITE, tmp
    )
    _access_rw(fd, self.access_id, iova, uapi.MOCK_ACCESS_RW_SLOW_PATH, tmp_big)
    _test_cmd_destroy_access(self.access_id)
    self.access_id = 0


def _access_pages(fd: Handle, access_id: int, iova: int) -> int:
    """IOMMU_TEST_OP_ACCESS_PAGES of the whole buffer; returns ``out_access_pages_id``."""
    cmd = access_pages_cmd(access_id, iova, BUFFER_SIZE, buffer)
    ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)
    return int(cmd.access_pages.out_access_pages_id)


def access_pin(self: BasicFailNth, nth: FailNthState) -> None:
    """pages.c access functions."""
    fd = self.open()
    ioas_id = _test_ioctl_ioas_alloc(fd)
    _test_ioctl_set_temp_memory_limit(fd, 32)
    iova = _test_ioctl_ioas_map(fd, ioas_id, buffer, BUFFER_SIZE, 0, RW)
    self.access_id = _test_cmd_create_access(
        fd, ioas_id, uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES
    )
    nth.enable()
    access_pages_id = _access_pages(fd, self.access_id, iova)
    _test_cmd_destroy_access_pages(fd, self.access_id, access_pages_id)
    _test_cmd_destroy_access(self.access_id)
    self.access_id = 0


def access_pin_domain(self: BasicFailNth, nth: FailNthState) -> None:
    """``iopt_pages_fill_xarray()``."""
    fd = self.open()
    ioas_id = _test_ioctl_ioas_alloc(fd)
    _test_ioctl_set_temp_memory_limit(fd, 32)
    stdev_id, _, _ = _test_cmd_mock_domain(fd, ioas_id)
    iova = _test_ioctl_ioas_map(fd, ioas_id, buffer, BUFFER_SIZE, 0, RW)
    self.access_id = _test_cmd_create_access(
        fd, ioas_id, uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES
    )
    nth.enable()
    access_pages_id = _access_pages(fd, self.access_id, iova)
    _test_cmd_destroy_access_pages(fd, self.access_id, access_pages_id)
    _test_cmd_destroy_access(self.access_id)
    self.access_id = 0
    _test_ioctl_destroy(fd, stdev_id)


def device(self: BasicFailNth, nth: FailNthState) -> None:
    """device.c."""
    data = uapi.iommu_hwpt_selftest(iotlb=uapi.IOMMU_TEST_IOTLB_DEFAULT)
    info = uapi.iommu_test_hw_info()
    fd = self.open()
    ioas_id = _test_ioctl_ioas_alloc(fd)
    ioas_id2 = _test_ioctl_ioas_alloc(fd)
    fixed = RW | uapi.IOMMU_IOAS_MAP_FIXED_IOVA
    iova = uapi.MOCK_APERTURE_START
    _test_ioctl_ioas_map(fd, ioas_id, buffer, PAGE_SIZE, iova, fixed)
    _test_ioctl_ioas_map(fd, ioas_id2, buffer, PAGE_SIZE, iova, fixed)
    nth.enable()
    self.stdev_id, _, idev_id = _test_cmd_mock_domain_flags(
        fd, ioas_id, uapi.MOCK_FLAGS_DEVICE_PASID
    )
    _test_cmd_get_hw_info(fd, idev_id, uapi.IOMMU_HW_INFO_TYPE_DEFAULT, info, ctypes.sizeof(info))
    hwpt_id = _test_cmd_hwpt_alloc(
        fd, idev_id, ioas_id, 0, uapi.IOMMU_HWPT_ALLOC_PASID, uapi.IOMMU_HWPT_DATA_NONE, 0, 0
    )
    _test_cmd_mock_domain_replace(fd, self.stdev_id, ioas_id2)
    _test_cmd_mock_domain_replace(fd, self.stdev_id, hwpt_id)
    hwpt_id = _test_cmd_hwpt_alloc(
        fd,
        idev_id,
        ioas_id,
        0,
        uapi.IOMMU_HWPT_ALLOC_NEST_PARENT | uapi.IOMMU_HWPT_ALLOC_PASID,
        uapi.IOMMU_HWPT_DATA_NONE,
        0,
        0,
    )
    viommu_id = _test_cmd_viommu_alloc(
        fd, idev_id, hwpt_id, 0, uapi.IOMMU_VIOMMU_TYPE_SELFTEST, None, 0
    )
    _test_cmd_vdevice_alloc(fd, viommu_id, idev_id, 0)
    _test_cmd_hw_queue_alloc(fd, viommu_id, uapi.IOMMU_HW_QUEUE_TYPE_SELFTEST, 0, iova, PAGE_SIZE)
    fault_id, fault_fd = _test_ioctl_fault_alloc(fd)
    os.close(fault_fd)
    _test_cmd_hwpt_alloc(
        fd,
        idev_id,
        hwpt_id,
        fault_id,
        uapi.IOMMU_HWPT_FAULT_ID_VALID,
        uapi.IOMMU_HWPT_DATA_SELFTEST,
        ctypes.addressof(data),
        ctypes.sizeof(data),
    )
    _, veventq_fd = _test_cmd_veventq_alloc(fd, viommu_id, uapi.IOMMU_VEVENTQ_TYPE_SELFTEST, 2)
    os.close(veventq_fd)
    test_hwpt_id = _test_cmd_hwpt_alloc(
        fd, idev_id, ioas_id, 0, uapi.IOMMU_HWPT_ALLOC_PASID, uapi.IOMMU_HWPT_DATA_NONE, 0, 0
    )
    # pasid attach/replace/detach
    self.pasid = 200
    try:
        _test_cmd_pasid_op(fd, uapi.IOMMU_TEST_OP_PASID_ATTACH, self.stdev_id, self.pasid, hwpt_id)
    except OSError:
        self.pasid = 0
        raise
    _test_cmd_pasid_op(
        fd, uapi.IOMMU_TEST_OP_PASID_REPLACE, self.stdev_id, self.pasid, test_hwpt_id
    )
    _test_cmd_pasid_op(fd, uapi.IOMMU_TEST_OP_PASID_DETACH, self.stdev_id, self.pasid)
    self.pasid = 0


BODIES = {
    f.__name__: f
    for f in (
        basic,
        map_domain,
        map_file_domain,
        map_two_domains,
        access_rw,
        access_pin,
        access_pin_domain,
        device,
    )
}


def test_basic_fail_nth__basic(backend: ModuleType, self: BasicFailNth) -> None:
    _sweep(backend, self, "basic")


def test_basic_fail_nth__map_domain(backend: ModuleType, self: BasicFailNth) -> None:
    _sweep(backend, self, "map_domain")


def test_basic_fail_nth__map_file_domain(backend: ModuleType, self: BasicFailNth) -> None:
    _sweep(backend, self, "map_file_domain")


def test_basic_fail_nth__map_two_domains(backend: ModuleType, self: BasicFailNth) -> None:
    _sweep(backend, self, "map_two_domains")


def test_basic_fail_nth__access_rw(backend: ModuleType, self: BasicFailNth) -> None:
    _sweep(backend, self, "access_rw")


def test_basic_fail_nth__access_pin(backend: ModuleType, self: BasicFailNth) -> None:
    _sweep(backend, self, "access_pin")


def test_basic_fail_nth__access_pin_domain(backend: ModuleType, self: BasicFailNth) -> None:
    _sweep(backend, self, "access_pin_domain")


def test_basic_fail_nth__device(backend: ModuleType, self: BasicFailNth) -> None:
    _sweep(backend, self, "device")
