"""``selftest.c``: the ``CONFIG_IOMMUFD_TEST`` mock driver behind ``IOMMU_TEST_CMD``.

Implemented ops: ADD_RESERVED, SET_TEMP_MEMORY_LIMIT, MD_CHECK_REFS, MOCK_DOMAIN and
MOCK_DOMAIN_FLAGS (a mock device bound and attached, with the mock IOMMU's domain: 2 KiB
pages, aperture ``[MOCK_APERTURE_START, MOCK_APERTURE_LAST]``). Other ops answer
``EOPNOTSUPP`` as the kernel does for an op it does not know.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ioasid import uapi
from ioasid.hw.iommu import Driver, IommuCaps, IommuUnit
from ioasid.hw.memory import PAGE_SIZE, SelfAddressSpace
from ioasid.kernel.device import Device, IommuDriver
from ioasid.kernel.errors import fail
from ioasid.kernel.hw_pagetable import HwptPaging
from ioasid.kernel.ioas import get_ioas
from ioasid.kernel.main import Ucmd
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.pages import ULONG_MAX

if TYPE_CHECKING:
    from ioasid.kernel.machine import Kernel


class MockDriver(IommuDriver):
    """``mock_ops``: the selftest IOMMU driver of one mock device (``dev_flags``)."""

    def __init__(self, kernel: Kernel, dev_flags: int = 0) -> None:
        no_dirty = bool(dev_flags & uapi.MOCK_FLAGS_DEVICE_NO_DIRTY)
        pasid = bool(dev_flags & uapi.MOCK_FLAGS_DEVICE_PASID)
        key = (no_dirty, pasid)
        unit = kernel.mock_units.get(key)
        if unit is None:
            caps = IommuCaps.mock(dirty_tracking=not no_dirty, max_pasid_log2=20 if pasid else 0)
            unit = kernel.mock_units[key] = IommuUnit(caps, "mock_iommu")
        kernel.mock_dev_ida += 1
        super().__init__(kernel, unit, kernel.mock_dev_ida)
        self.dev_flags = dev_flags
        self.max_pasids = 1 << 20 if pasid else 0

    def hw_info(self, in_type: int) -> tuple[bytes, int]:
        """``mock_domain_hw_info``."""
        if in_type not in (uapi.IOMMU_HW_INFO_TYPE_DEFAULT, uapi.IOMMU_HW_INFO_TYPE_SELFTEST):
            fail(errno.EOPNOTSUPP, f"mock IOMMU: hw_info type {in_type:#x} is not SELFTEST")
        info = uapi.iommu_test_hw_info(test_reg=uapi.IOMMU_HW_INFO_SELFTEST_REGVAL)
        return bytes(info), uapi.IOMMU_HW_INFO_TYPE_SELFTEST

    def capable(self, cap: str) -> bool:
        """``mock_domain_capable``."""
        if cap == "CACHE_COHERENCY":
            return True
        if cap == "DIRTY_TRACKING":
            return not self.dev_flags & uapi.MOCK_FLAGS_DEVICE_NO_DIRTY
        return False


class SelftestObj(IommufdObject):
    """``struct selftest_obj`` of TYPE_IDEV: owns a mock device and its binding."""

    TYPE = ObjType.SELFTEST

    def __init__(self) -> None:
        super().__init__()
        self.idev: Device | None = None

    def destroy(self) -> None:
        if self.idev is not None:
            self.idev.unbind()
            self.idev = None


def add_reserved(ucmd: Ucmd) -> int:
    """``iommufd_test_add_reserved``: length 0 → EINVAL; overflow → EOVERFLOW; IOAS →
    ENOENT; then ``iopt_reserve_iova`` (EADDRINUSE over areas or allowed ranges)."""
    cmd = ucmd.cmd
    start, length = cmd.add_reserved.start, cmd.add_reserved.length
    if not length:
        fail(errno.EINVAL, "ADD_RESERVED: length is 0")
    if start + length - 1 > ULONG_MAX:
        fail(errno.EOVERFLOW, f"ADD_RESERVED: start {start:#x} + length {length:#x} overflows")
    ioas = get_ioas(ucmd, cmd.id)
    ioas.iopt.reserve_iova(start, start + length - 1, None)
    return 0


def md_check_refs(ucmd: Ucmd) -> int:
    """``iommufd_test_md_check_refs``: every page of ``[uptr, uptr+length)`` must have
    exactly ``refs`` long-term pins (EIO otherwise); unaligned → EINVAL; unmapped → EFAULT."""
    cmd = ucmd.cmd
    uptr, length, refs = cmd.check_refs.uptr, cmd.check_refs.length, cmd.check_refs.refs
    if length % PAGE_SIZE or uptr % PAGE_SIZE or uptr + length > ULONG_MAX:
        fail(errno.EINVAL, "MD_CHECK_REFS: uptr and length must be page aligned")
    kernel = ucmd.ictx.kernel
    mm = kernel.processes.current.mm
    mm.aspace.check_pinnable(uptr, length, False)
    for page in range(uptr // PAGE_SIZE, (uptr + length) // PAGE_SIZE):
        count = kernel.pin_count(mm, page)
        if count != refs:
            fail(
                errno.EIO,
                f"MD_CHECK_REFS: page {page * PAGE_SIZE:#x} has {count} pins, expected {refs}",
            )
    return 0


def mock_domain_cmd(ucmd: Ucmd) -> int:
    """``iommufd_test_mock_domain``: a selftest object (id), a bound mock device (id) and
    its attachment to ``cmd.id`` (an IOAS: auto domain; or a HWPT)."""
    cmd, ictx = ucmd.cmd, ucmd.ictx
    dev_flags = 0
    if cmd.op == uapi.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
        dev_flags = cmd.mock_domain_flags.dev_flags
    sobj = ictx.objects.alloc(SelftestObj())
    try:
        sobj.idev = Device.bind(ictx, MockDriver(ictx.kernel, dev_flags))
        pt_id = sobj.idev.attach(cmd.id)
        cmd.mock_domain.out_hwpt_id = pt_id
        cmd.mock_domain.out_stdev_id = sobj.id
        cmd.mock_domain.out_idev_id = sobj.idev.id
        ucmd.respond()
    except OSError:
        ictx.objects.abort(sobj)
        raise
    ictx.objects.finalize(sobj)
    return 0


def mock_domain_replace(ucmd: Ucmd) -> int:
    """``iommufd_test_mock_domain_replace``: selftest object → ENOENT; then
    ``iommufd_device_replace`` to ``pt_id`` (an IOAS: auto domain; or a HWPT_PAGING)."""
    cmd, ictx = ucmd.cmd, ucmd.ictx
    sobj = ictx.objects.get(cmd.id, SelftestObj, "selftest device")
    assert sobj.idev is not None
    cmd.mock_domain_replace.pt_id = sobj.idev.replace(cmd.mock_domain_replace.pt_id)
    ucmd.respond()
    return 0


def get_md_pagetable(ucmd: Ucmd, hwpt_id: int) -> HwptPaging:
    """``get_md_pagetable``: a HWPT_PAGING (ENOENT) whose domain is the mock driver's
    (EINVAL)."""
    hwpt = ucmd.ictx.objects.get(hwpt_id, HwptPaging, "HWPT_PAGING")
    if hwpt.domain.hw.driver is not Driver.MOCK:
        fail(errno.EINVAL, f"HWPT {hwpt_id} is not a mock IOMMU domain")
    return hwpt


def md_check_map(ucmd: Ucmd) -> int:
    """``iommufd_test_md_check_pa``: every domain page of ``[iova, iova+length)`` must
    translate to the physical page behind ``uptr`` at the same offset (EINVAL otherwise);
    iova/length/uptr not multiples of the domain's smallest page → EINVAL."""
    cmd = ucmd.cmd
    hwpt = get_md_pagetable(ucmd, cmd.id)
    iova, length, uptr = cmd.check_map.iova, cmd.check_map.length, cmd.check_map.uptr
    page_size = hwpt.domain.pgsize_bitmap & -hwpt.domain.pgsize_bitmap
    if iova % page_size or length % page_size or uptr % page_size or uptr + length > ULONG_MAX:
        fail(errno.EINVAL, f"MD_CHECK_MAP: iova/length/uptr not multiples of {page_size:#x}")
    kernel = ucmd.ictx.kernel
    aspace = kernel.processes.current.mm.aspace
    aspace.check_pinnable(uptr, length, False)
    assert isinstance(aspace, SelfAddressSpace)
    while length:
        runs = kernel.phys.pin_user(aspace, uptr, 1)
        expected = runs[0][1] * PAGE_SIZE + uptr % PAGE_SIZE
        io_phys = hwpt.domain.iova_to_phys(iova)
        if io_phys != expected:
            got = "nothing" if io_phys is None else f"{io_phys:#x}"
            fail(
                errno.EINVAL,
                f"MD_CHECK_MAP: iova {iova:#x} translates to {got}, the page at uptr "
                f"{uptr:#x} is {expected:#x}",
            )
        iova, uptr, length = iova + page_size, uptr + page_size, length - page_size
    return 0


def set_temp_memory_limit(ucmd: Ucmd) -> int:
    limit = ucmd.cmd.memory_limit.limit
    if limit < 8 + 4:
        fail(errno.EINVAL, f"SET_TEMP_MEMORY_LIMIT: {limit} is below the batch element size 12")
    ucmd.ictx.kernel.test_memory_limit = limit
    return 0


def iommufd_test(ucmd: Ucmd) -> int:
    """``IOMMU_TEST_CMD``: dispatch on ``op``; unknown op → EOPNOTSUPP."""
    op = ucmd.cmd.op
    if op == uapi.IOMMU_TEST_OP_ADD_RESERVED:
        return add_reserved(ucmd)
    if op in (uapi.IOMMU_TEST_OP_MOCK_DOMAIN, uapi.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS):
        return mock_domain_cmd(ucmd)
    if op == uapi.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE:
        return mock_domain_replace(ucmd)
    if op == uapi.IOMMU_TEST_OP_MD_CHECK_MAP:
        return md_check_map(ucmd)
    if op == uapi.IOMMU_TEST_OP_MD_CHECK_REFS:
        return md_check_refs(ucmd)
    if op == uapi.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
        return set_temp_memory_limit(ucmd)
    from ioasid.kernel.mock_access import ACCESS_OPS

    if op in ACCESS_OPS:
        return ACCESS_OPS[op](ucmd)
    fail(errno.EOPNOTSUPP, f"IOMMU_TEST_CMD: op {op} is not supported by the simulated mock driver")
