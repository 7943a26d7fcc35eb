"""``hw_pagetable.c``, its ioctl half: ``IOMMU_HWPT_ALLOC`` and ``IOMMU_HWPT_INVALIDATE``.

These two join a device, the IOAS or parent HWPT it is allocated on, a fault queue and a
vIOMMU, so they sit above all four (:mod:`~ioasid.kernel.device`, :mod:`~ioasid.kernel.eventq`,
:mod:`~ioasid.kernel.viommu`); the HWPT objects themselves and the dirty-tracking ioctls are
in :mod:`ioasid.kernel.hw_pagetable`.
"""

from __future__ import annotations

import errno

from ioasid import uapi
from ioasid.hw.memory import PAGE_SIZE
from ioasid.kernel.device import Device, get_device, hwpt_paging_alloc
from ioasid.kernel.errors import fail
from ioasid.kernel.eventq import Fault
from ioasid.kernel.hw_pagetable import (
    HwPagetable,
    HwptNested,
    HwptPaging,
    UserData,
    UserDataArray,
)
from ioasid.kernel.ioas import Ioas
from ioasid.kernel.private import Ucmd
from ioasid.kernel.viommu import Viommu, viommu_alloc_hwpt_nested, viommu_cache_invalidate


def hwpt_nested_alloc(
    ucmd: Ucmd, parent: HwptPaging, idev: Device, flags: int, user_data: UserData
) -> HwptNested:
    """``iommufd_hwpt_nested_alloc``: flags other than FAULT_ID_VALID|PASID, no data, or a
    driver without ``domain_alloc_nested`` → EOPNOTSUPP; an auto-domain parent, a parent
    that is not NEST_PARENT, or one of another driver → EINVAL; then the driver's nested
    domain (its errors)."""
    allowed = uapi.IOMMU_HWPT_FAULT_ID_VALID | uapi.IOMMU_HWPT_ALLOC_PASID
    if flags & ~allowed or not user_data.len or not idev.driver.has_nested:
        fail(
            errno.EOPNOTSUPP,
            f"nested HWPT_ALLOC: flags {flags:#x} (allowed {allowed:#x}), data_len "
            f"{user_data.len}, driver nesting {idev.driver.has_nested}",
        )
    if parent.auto_domain or not parent.nest_parent or parent.domain.owner != idev.driver.ops:
        fail(
            errno.EINVAL,
            f"HWPT {parent.id} cannot be a nesting parent (auto_domain {parent.auto_domain}, "
            f"NEST_PARENT {parent.nest_parent}, owner {parent.domain.owner})",
        )
    objects = ucmd.ictx.objects
    hwpt = objects.alloc(HwptNested(parent, flags))
    try:
        hwpt.domain = idev.driver.domain_alloc_nested(
            ucmd, parent.domain, flags & ~uapi.IOMMU_HWPT_FAULT_ID_VALID, user_data
        )
    except OSError:
        objects.abort(hwpt)
        raise
    return hwpt


def hwpt_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_HWPT_ALLOC`` (``iommufd_hwpt_alloc``), in the kernel's order:

    1. ``__reserved`` → EOPNOTSUPP;
    2. data_type NONE with a data_len, or another type without one → EINVAL;
    3. the device → ENOENT;
    4. ``pt_id`` is no object → EINVAL;
    5. an IOAS: :func:`hwpt_paging_alloc`; a HWPT_PAGING: :func:`hwpt_nested_alloc`; a
       vIOMMU: its nested domain (EINVAL for a device of another IOMMU); anything else →
       EINVAL;
    6. FAULT_ID_VALID: the fault object → ENOENT (the new HWPT is destroyed);
    7. respond, finalize.
    """
    cmd, objects = ucmd.cmd, ucmd.ictx.objects
    if cmd.reserved:
        fail(errno.EOPNOTSUPP, "IOMMU_HWPT_ALLOC: __reserved must be 0")
    none = uapi.IOMMU_HWPT_DATA_NONE
    if (cmd.data_type == none and cmd.data_len) or (cmd.data_type != none and not cmd.data_len):
        fail(
            errno.EINVAL,
            f"IOMMU_HWPT_ALLOC: data_type {cmd.data_type:#x} does not match data_len "
            f"{cmd.data_len}",
        )
    user_data = UserData(cmd.data_type, cmd.data_uptr, cmd.data_len)
    idev = get_device(ucmd, cmd.dev_id)
    pt = objects.lookup(cmd.pt_id)
    if pt is None:
        fail(errno.EINVAL, f"IOMMU_HWPT_ALLOC: no object with pt_id {cmd.pt_id}")
    hwpt: HwPagetable
    if isinstance(pt, Ioas):
        hwpt = hwpt_paging_alloc(
            ucmd, pt, idev, 0, cmd.flags, False, user_data if user_data.len else None
        )
    elif isinstance(pt, HwptPaging):
        hwpt = hwpt_nested_alloc(ucmd, pt, idev, cmd.flags, user_data)
    else:
        if not isinstance(pt, Viommu):
            fail(
                errno.EINVAL,
                f"IOMMU_HWPT_ALLOC: pt_id {cmd.pt_id} is a {type(pt).__name__}, not an IOAS, "
                "a HWPT_PAGING or a vIOMMU",
            )
        hwpt = viommu_alloc_hwpt_nested(ucmd, pt, idev, cmd.flags, user_data)
    try:
        if cmd.flags & uapi.IOMMU_HWPT_FAULT_ID_VALID:
            fault = objects.get(cmd.fault_id, Fault, "fault queue")
            hwpt.fault = fault
            hwpt.domain.iopf_handler = True
            fault.users += 1
        cmd.out_hwpt_id = hwpt.id
        ucmd.respond()
    except OSError:
        objects.abort(hwpt)
        raise
    objects.finalize(hwpt)
    return 0


INVALIDATE_ENTRY_NUM_MAX = 1 << 19


def hwpt_invalidate(ucmd: Ucmd) -> int:
    """``IOMMU_HWPT_INVALIDATE``: __reserved → EOPNOTSUPP; entries without a pointer or with
    a length of 0 or > PAGE_SIZE, or more than 2^19 → EINVAL; hwpt_id → ENOENT; a nested
    HWPT: its domain's ``cache_invalidate_user``; a vIOMMU: its ``cache_invalidate``
    (EOPNOTSUPP without the op); anything else → EINVAL. ``entry_num`` is written back (the
    entries done) even on failure."""
    cmd = ucmd.cmd
    done = 0
    try:
        if cmd.reserved:
            fail(errno.EOPNOTSUPP, "IOMMU_HWPT_INVALIDATE: __reserved must be 0")
        if cmd.entry_num and (
            not cmd.data_uptr
            or not cmd.entry_len
            or cmd.entry_len > PAGE_SIZE
            or cmd.entry_num > INVALIDATE_ENTRY_NUM_MAX
        ):
            fail(
                errno.EINVAL,
                f"IOMMU_HWPT_INVALIDATE: {cmd.entry_num} entries of {cmd.entry_len} bytes at "
                f"{cmd.data_uptr:#x} (entry_len 1..PAGE_SIZE, at most {INVALIDATE_ENTRY_NUM_MAX})",
            )
        pt = ucmd.ictx.objects.lookup(cmd.hwpt_id)
        if pt is None:
            fail(errno.ENOENT, f"IOMMU_HWPT_INVALIDATE: no object with id {cmd.hwpt_id}")
        array = UserDataArray(cmd.data_type, cmd.data_uptr, cmd.entry_len, cmd.entry_num)
        if isinstance(pt, HwptNested):
            if not hasattr(pt.domain, "cache_invalidate_user"):
                fail(errno.EOPNOTSUPP, "the nested domain has no cache_invalidate_user op")
            try:
                pt.domain.cache_invalidate_user(ucmd, array)
            finally:
                done = array.entry_num
        elif isinstance(pt, Viommu):
            try:
                viommu_cache_invalidate(ucmd, pt, array)
            finally:
                done = array.entry_num
        else:
            fail(
                errno.EINVAL,
                f"IOMMU_HWPT_INVALIDATE: object {cmd.hwpt_id} is a {type(pt).__name__}, not a "
                "nested HWPT or a vIOMMU",
            )
    finally:
        cmd.entry_num = done
        ucmd.respond()
    return 0
