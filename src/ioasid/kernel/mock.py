"""``selftest.c``: the ``CONFIG_IOMMUFD_TEST`` mock driver behind ``IOMMU_TEST_CMD``.

Implemented ops: ADD_RESERVED, SET_TEMP_MEMORY_LIMIT, MD_CHECK_REFS, MOCK_DOMAIN and
MOCK_DOMAIN_FLAGS (a mock device bound and attached, with the mock IOMMU's domain: 2 KiB
pages, aperture ``[MOCK_APERTURE_START, MOCK_APERTURE_LAST]``). Other ops answer
``EOPNOTSUPP`` as the kernel does for an op it does not know.
"""

from __future__ import annotations

import errno

from ioasid import uapi
from ioasid.hw.memory import PAGE_SIZE
from ioasid.kernel.device import Device
from ioasid.kernel.errors import fail
from ioasid.kernel.hw_pagetable import IommuDomain
from ioasid.kernel.ioas import get_ioas
from ioasid.kernel.main import Ucmd
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.pages import ULONG_MAX

MOCK_PGSIZE_BITMAP = ULONG_MAX & ~(uapi.MOCK_PAGE_SIZE - 1)


def mock_domain() -> IommuDomain:
    """``mock_domain_alloc_pgtable`` (MOCK_IOMMUPT_DEFAULT)."""
    return IommuDomain(MOCK_PGSIZE_BITMAP, uapi.MOCK_APERTURE_START, uapi.MOCK_APERTURE_LAST)


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
    sobj = ictx.objects.alloc(SelftestObj())
    try:
        sobj.idev = Device.bind(ictx, mock_domain)
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
    if op == uapi.IOMMU_TEST_OP_MD_CHECK_REFS:
        return md_check_refs(ucmd)
    if op == uapi.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
        return set_temp_memory_limit(ucmd)
    fail(errno.EOPNOTSUPP, f"IOMMU_TEST_CMD: op {op} is not supported by the simulated mock driver")
