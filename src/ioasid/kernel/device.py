"""``device.c``: a device bound to an iommufd, and its attachment (RID or PASID) to an IOAS
or a HWPT — with the iommu core's group attach (``iommu_attach_group_handle``,
``iommu_attach_device_pasid`` …) that ``device.c`` calls, reduced to what iommufd sees.

The binding driver (VFIO, or the selftest) holds a reference on the device, and every
attachment holds one more, so ``IOMMU_DESTROY`` of a device id is always ``EBUSY``; the
device goes when its driver unbinds it.

``iommufd_group`` (one per IOMMU group with a bound device, per iommufd) keeps
``pasid_attach``: for each PASID (0 is the RID, ``IOMMU_NO_PASID``) the HWPT and the
devices attached through it. The iommu core's per-group attach handles (``pasid_array``)
live in the same object here: a simplification that is exact for the mock driver, whose
every device is its own IOMMU group.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from ioasid import uapi
from ioasid.hw.iommu import IommuUnit
from ioasid.hw.pagetable.base import HwError
from ioasid.kernel.errors import KernelError, fail
from ioasid.kernel.hw_pagetable import (
    PAGING_VALID_FLAGS,
    AnyDomain,
    HwPagetable,
    HwptPaging,
    IommuDomain,
    NestedDomain,
    UserData,
    find_hwpt_paging,
    hw_pagetable_put,
    hwpt_paging_enforce_cc,
)
from ioasid.kernel.ioas import Ioas
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.private import IommufdCtx, Machine, Ucmd

IOMMU_NO_PASID = 0


class IommuDriver:
    """A device's IOMMU driver (``struct iommu_ops``, named by ``ops``) and where the device
    sits: the IOMMU ``unit``, its requester id ``rid`` and its ``iommu_group``."""

    ops = "iommu"
    max_pasids = 0
    has_nested = False
    """``ops->domain_alloc_nested`` exists."""
    user_pasid_table = False

    def __init__(self, kernel: Machine, unit: IommuUnit, rid: int) -> None:
        self.kernel = kernel
        self.unit = unit
        self.rid = rid
        self.iommu_group: object = self

    def _hw(self, fn: Callable[[], Any], default_errno: int = errno.EINVAL) -> Any:
        try:
            return fn()
        except HwError as exc:
            raise KernelError(exc.errno or default_errno, str(exc.strerror)) from None

    def domain_alloc_paging(
        self, ucmd: Ucmd | None, flags: int, user_data: UserData | None
    ) -> IommuDomain:
        """``domain_alloc_paging_flags``: the unit's page-table format."""
        if user_data is not None:
            fail(errno.EOPNOTSUPP, f"{self.ops}: no driver data for paging domains")
        hw = self._hw(lambda: self.unit.domain_alloc_paging(flags), errno.EOPNOTSUPP)
        return IommuDomain(hw, self.kernel.phys, self.ops)

    def domain_alloc_nested(
        self, ucmd: Ucmd, parent: IommuDomain, flags: int, user_data: UserData
    ) -> NestedDomain:
        fail(errno.EOPNOTSUPP, f"{self.ops}: no nested domains")

    @property
    def iommu_dev(self) -> object:
        """``iommufd_device_get_iommu_dev``: the physical IOMMU instance (a vIOMMU and its
        vDEVICEs and nested HWPTs must all be on the same one)."""
        return self.unit

    def get_viommu_size(self, viommu_type: int) -> int:
        """``ops->get_viommu_size``: 0 when the driver has no vIOMMU of ``viommu_type``."""
        return 0

    def viommu_init(self, ucmd: Ucmd, viommu: Any, parent: IommuDomain, user_data: Any) -> Any:
        """``ops->viommu_init``: returns the vIOMMU's ops."""
        fail(errno.EOPNOTSUPP, f"{self.ops}: no vIOMMU support")

    def _program(self, domain: AnyDomain | None, pasid: int | None) -> None:
        """Point the unit's context (or PASID) entry at ``domain``; ``None`` blocks. A nested
        domain is programmed with both stages (its ``hw``)."""
        if domain is None or domain.hw is None:
            self.unit.detach(self.rid, pasid)
            return
        hw = domain.hw
        self._hw(lambda: self.unit.attach(self.rid, hw, pasid))

    def attach_dev(self, domain: AnyDomain | None) -> None:
        """``domain->ops->attach_dev`` (``None``: the blocked domain)."""
        self._program(domain, None)

    def set_dev_pasid(self, domain: AnyDomain | None, pasid: int, old: AnyDomain | None) -> None:
        """``domain->ops->set_dev_pasid`` (``None``: the blocked domain)."""
        self._program(domain, pasid)

    def resv_regions(self) -> list[tuple[int, int]]:
        """``iommu_get_resv_regions``: ``(start, last)`` IOVA ranges the device cannot use."""
        return []

    def hw_info(self, in_type: int) -> tuple[bytes, int]:
        """``ops->hw_info``: the driver's info struct and its ``iommu_hw_info_type``."""
        return b"", uapi.IOMMU_HW_INFO_TYPE_NONE

    def capable(self, cap: str) -> bool:
        return False


class AttachHandle:
    """``struct iommufd_attach_handle``: one attachment of ``idev`` (at a PASID) to the
    domain of ``hwpt``; faults are routed through it."""

    def __init__(self, idev: Device, hwpt: HwPagetable) -> None:
        self.idev = idev
        self.hwpt = hwpt
        self.domain: AnyDomain = hwpt.domain


class Attach:
    """``struct iommufd_attach``: the HWPT of one PASID of a group, and its devices."""

    def __init__(self) -> None:
        self.hwpt: HwPagetable | None = None
        self.devices: dict[int, Device] = {}


class Group:
    """``struct iommufd_group`` (plus the iommu core group's attach handles)."""

    def __init__(self, key: object) -> None:
        self.key = key
        self.devices: list[Device] = []
        self.pasid_attach: dict[int, Attach] = {}
        self.handles: dict[int, AttachHandle] = {}
        """The iommu core's ``group->pasid_array``: the handle attached at each PASID."""


class Device(IommufdObject):
    """``struct iommufd_device``."""

    TYPE = ObjType.DEVICE

    def __init__(self, ictx: IommufdCtx, driver: IommuDriver) -> None:
        super().__init__()
        self.ictx = ictx
        self.driver = driver
        self.igroup: Group = Group(driver.iommu_group)
        self.enforce_cache_coherency = False
        self.vdev: Any = None
        """``idev->vdev``: the device's vDEVICE (:class:`ioasid.kernel.viommu.Vdevice`)."""

    @classmethod
    def bind(cls, ictx: IommufdCtx, driver: IommuDriver) -> Device:
        """``iommufd_device_bind``: a driver without ``IOMMU_CAP_CACHE_COHERENCY`` → EINVAL;
        join (or make) the ``iommufd_group``; the binding driver's reference."""
        idev = ictx.objects.alloc(cls(ictx, driver))
        if not driver.capable("CACHE_COHERENCY"):
            ictx.objects.abort(idev)
            fail(errno.EINVAL, "the device's IOMMU cannot enforce IOMMU_CACHE")
        igroup = ictx.groups.get(driver.iommu_group)
        if igroup is None:
            igroup = ictx.groups[driver.iommu_group] = Group(driver.iommu_group)
        idev.igroup = igroup
        igroup.devices.append(idev)
        idev.enforce_cache_coherency = driver.capable("ENFORCE_CACHE_COHERENCY")
        idev.users += 1
        ictx.objects.finalize(idev)
        return idev

    @property
    def hwpt(self) -> HwPagetable | None:
        """The HWPT the RID is attached to."""
        attach = self.igroup.pasid_attach.get(IOMMU_NO_PASID)
        return attach.hwpt if attach is not None and self.id in attach.devices else None

    def attach(self, pt_id: int, pasid: int = IOMMU_NO_PASID) -> int:
        """``iommufd_device_attach``: returns the HWPT id (an auto domain's for an IOAS)."""
        pt_id = device_change_pt(self, pasid, pt_id, device_do_attach)
        self.users += 1
        return pt_id

    def replace(self, pt_id: int, pasid: int = IOMMU_NO_PASID) -> int:
        """``iommufd_device_replace``: if it fails, the attachment is unchanged."""
        return device_change_pt(self, pasid, pt_id, device_do_replace)

    def detach(self, pasid: int = IOMMU_NO_PASID) -> None:
        """``iommufd_device_detach``: back to blocked DMA; an auto domain goes with its last
        device."""
        if hw_pagetable_detach(self, pasid) is not None:
            self.users -= 1

    def unbind(self) -> None:
        """``iommufd_device_unbind``: the driver lets go; the id disappears."""
        for pasid in sorted(self.igroup.pasid_attach, reverse=True):
            self.detach(pasid)
        if self.vdev is not None:
            # iommufd_device_pre_destroy → iommufd_device_remove_vdev
            self.vdev.tombstone()
        self.users -= 1
        if self.ictx.objects.lookup(self.id) is self:
            self.ictx.objects.remove(self.id)

    def destroy(self) -> None:
        """``iommufd_device_destroy``: put the group."""
        igroup = self.igroup
        if self in igroup.devices:
            igroup.devices.remove(self)
            if not igroup.devices and self.ictx.groups.get(igroup.key) is igroup:
                del self.ictx.groups[igroup.key]


def get_device(ucmd: Ucmd, dev_id: int) -> Device:
    return ucmd.ictx.objects.get(dev_id, Device, "device")


# --- the iommu core: group and PASID attach -------------------------------------------------


def _group_set_domain(igroup: Group, domain: AnyDomain | None, old: AnyDomain | None) -> None:
    """``__iommu_group_set_domain``: every device of the group, rolled back on failure."""
    done: list[Device] = []
    try:
        for dev in igroup.devices:
            dev.driver.attach_dev(domain)
            done.append(dev)
    except OSError:
        for dev in done:
            dev.driver.attach_dev(old)
        raise


def _set_group_pasid(igroup: Group, domain: AnyDomain, pasid: int, old: AnyDomain | None) -> None:
    """``__iommu_set_group_pasid``: devices without PASID support are skipped; on failure
    the devices done go back to ``old`` (or are blocked)."""
    done: list[Device] = []
    try:
        for dev in igroup.devices:
            if dev.driver.max_pasids > 0:
                dev.driver.set_dev_pasid(domain, pasid, old)
                done.append(dev)
    except OSError:
        for dev in done:
            dev.driver.set_dev_pasid(old, pasid, domain)
        raise


def iommu_attach_device_pasid(domain: AnyDomain, idev: Device, pasid: int) -> None:
    """``iommu_attach_device_pasid``: a domain of another driver or PASID 0 → EINVAL; a PASID
    beyond a PASID-capable device's ``max_pasids`` → EINVAL; a PASID already attached →
    EBUSY; then ``set_dev_pasid`` on every PASID-capable device of the group."""
    if domain.owner != idev.driver.ops or pasid == IOMMU_NO_PASID:
        fail(errno.EINVAL, f"PASID {pasid}: domain of {domain.owner!r} or PASID 0")
    igroup = idev.igroup
    for dev in igroup.devices:
        if dev.driver.max_pasids > 0 and pasid >= dev.driver.max_pasids:
            fail(errno.EINVAL, f"PASID {pasid} >= max_pasids {dev.driver.max_pasids}")
    if pasid in igroup.handles:
        fail(errno.EBUSY, f"PASID {pasid} is already attached")
    _set_group_pasid(igroup, domain, pasid, None)


def iommu_replace_device_pasid(domain: AnyDomain, idev: Device, pasid: int) -> None:
    """``iommu_replace_device_pasid``: other driver or PASID 0 → EINVAL; nothing attached
    at the PASID → EINVAL; a different domain goes through ``set_dev_pasid``."""
    if domain.owner != idev.driver.ops or pasid == IOMMU_NO_PASID:
        fail(errno.EINVAL, f"PASID {pasid}: domain of {domain.owner!r} or PASID 0")
    curr = idev.igroup.handles.get(pasid)
    if curr is None:
        fail(errno.EINVAL, f"PASID {pasid} is not attached: nothing to replace")
    if curr.domain is not domain:
        _set_group_pasid(idev.igroup, domain, pasid, curr.domain)


def iommu_detach_device_pasid(idev: Device, pasid: int, domain: AnyDomain) -> None:
    """``iommu_detach_device_pasid``: the blocked domain on every PASID-capable device."""
    for dev in idev.igroup.devices:
        if dev.driver.max_pasids > 0:
            dev.driver.set_dev_pasid(None, pasid, domain)
    idev.igroup.handles.pop(pasid, None)


# --- iommufd: attach / replace / detach -----------------------------------------------------


def hwpt_pasid_compat(hwpt: HwPagetable, idev: Device, pasid: int) -> None:
    """``iommufd_hwpt_pasid_compat``: the RID only takes a non-PASID-compatible HWPT while
    no PASID is attached; a PASID only takes a PASID-compatible HWPT, and only while the RID
    (if attached) has one too. EINVAL otherwise."""
    igroup = idev.igroup
    if pasid == IOMMU_NO_PASID:
        if not hwpt.pasid_compat and any(p != IOMMU_NO_PASID for p in igroup.pasid_attach):
            fail(
                errno.EINVAL,
                f"HWPT {hwpt.id} is not PASID-compatible (IOMMU_HWPT_ALLOC_PASID) and PASIDs "
                f"{sorted(p for p in igroup.pasid_attach if p)} are attached",
            )
    else:
        if not hwpt.pasid_compat:
            fail(
                errno.EINVAL,
                f"HWPT {hwpt.id} was not allocated with IOMMU_HWPT_ALLOC_PASID: not for PASID "
                f"{pasid}",
            )
        attach = igroup.pasid_attach.get(IOMMU_NO_PASID)
        if attach is not None and attach.hwpt is not None and not attach.hwpt.pasid_compat:
            fail(
                errno.EINVAL,
                f"the RID is attached to HWPT {attach.hwpt.id}, which is not PASID-compatible",
            )


def hwpt_attach_device(hwpt: HwPagetable, idev: Device, pasid: int) -> None:
    """``iommufd_hwpt_attach_device``."""
    hwpt_pasid_compat(hwpt, idev, pasid)
    handle = AttachHandle(idev, hwpt)
    igroup = idev.igroup
    if pasid == IOMMU_NO_PASID:
        old = igroup.handles.get(IOMMU_NO_PASID)
        _group_set_domain(igroup, hwpt.domain, None if old is None else old.domain)
    else:
        iommu_attach_device_pasid(hwpt.domain, idev, pasid)
    igroup.handles[pasid] = handle


def hwpt_detach_device(hwpt: HwPagetable, idev: Device, pasid: int) -> None:
    """``iommufd_hwpt_detach_device``: blocked DMA, then pending faults answered."""
    igroup = idev.igroup
    handle = igroup.handles.get(pasid)
    if pasid == IOMMU_NO_PASID:
        _group_set_domain(igroup, None, hwpt.domain)
        igroup.handles.pop(IOMMU_NO_PASID, None)
    else:
        iommu_detach_device_pasid(idev, pasid, hwpt.domain)
    if hwpt.fault is not None and handle is not None:
        hwpt.fault.auto_response(handle)


def hwpt_replace_device(idev: Device, pasid: int, hwpt: HwPagetable, old: HwPagetable) -> None:
    """``iommufd_hwpt_replace_device``."""
    hwpt_pasid_compat(hwpt, idev, pasid)
    igroup = idev.igroup
    old_handle = igroup.handles.get(pasid)
    handle = AttachHandle(idev, hwpt)
    if pasid == IOMMU_NO_PASID:
        if old_handle is None or old_handle.domain is not hwpt.domain:
            _group_set_domain(
                igroup, hwpt.domain, None if old_handle is None else old_handle.domain
            )
    else:
        iommu_replace_device_pasid(hwpt.domain, idev, pasid)
    igroup.handles[pasid] = handle
    if old.fault is not None and old_handle is not None:
        old.fault.auto_response(old_handle)


def _attach_reserved_iova(idev: Device, hwpt_paging: HwptPaging) -> None:
    """``iommufd_device_attach_reserved_iova`` → ``iopt_table_enforce_dev_resv_regions``."""
    iopt = hwpt_paging.ioas.iopt
    try:
        iopt.inject(errno.EINVAL, "iopt_table_enforce_dev_resv_regions")
        for start, last in idev.driver.resv_regions():
            iopt.reserve_iova(start, last, idev)
    except OSError:
        iopt.remove_reserved_iova(idev)
        raise


def hw_pagetable_attach(hwpt: HwPagetable, idev: Device, pasid: int) -> None:
    """``iommufd_hw_pagetable_attach``, in its order: the device already in the PASID's
    attachment → EBUSY; the PASID attached to another HWPT → EINVAL; the device's reserved
    regions into the IOAS (RID of a paging/nested HWPT); the first device of the group
    attaches the group (``iommufd_hwpt_attach_device``: PASID compatibility → EINVAL, the
    driver's attach → its errno); a reference on the HWPT."""
    hwpt_paging = find_hwpt_paging(hwpt)
    attach_resv = hwpt_paging is not None and pasid == IOMMU_NO_PASID
    igroup = idev.igroup
    attach = igroup.pasid_attach.get(pasid)
    first = attach is None
    if attach is None:
        attach = Attach()
    old_hwpt = attach.hwpt
    if idev.id in attach.devices:
        fail(errno.EBUSY, f"device {idev.id} is already attached at PASID {pasid}")
    if old_hwpt is not None and old_hwpt is not hwpt:
        fail(
            errno.EINVAL,
            f"the group is attached to HWPT {old_hwpt.id} at PASID {pasid}, not {hwpt.id}",
        )
    if attach_resv:
        assert hwpt_paging is not None
        _attach_reserved_iova(idev, hwpt_paging)
    if first:
        try:
            hwpt_attach_device(hwpt, idev, pasid)
        except OSError:
            if attach_resv:
                assert hwpt_paging is not None
                hwpt_paging.ioas.iopt.remove_reserved_iova(idev)
            raise
        attach.hwpt = hwpt
        igroup.pasid_attach[pasid] = attach
    hwpt.users += 1
    attach.devices[idev.id] = idev


def hw_pagetable_detach(idev: Device, pasid: int) -> HwPagetable | None:
    """``iommufd_hw_pagetable_detach``: the last device of the group detaches the group;
    reserved regions leave the IOAS; the HWPT reference is put."""
    igroup = idev.igroup
    attach = igroup.pasid_attach.get(pasid)
    if attach is None:
        return None
    hwpt = attach.hwpt
    assert hwpt is not None
    hwpt_paging = find_hwpt_paging(hwpt)
    attach.devices.pop(idev.id, None)
    if not attach.devices:
        hwpt_detach_device(hwpt, idev, pasid)
        del igroup.pasid_attach[pasid]
    if hwpt_paging is not None and pasid == IOMMU_NO_PASID:
        hwpt_paging.ioas.iopt.remove_reserved_iova(idev)
    hw_pagetable_put(idev.ictx.objects, hwpt)
    return hwpt


def device_do_attach(idev: Device, pasid: int, hwpt: HwPagetable) -> HwPagetable | None:
    """``iommufd_device_do_attach``."""
    hw_pagetable_attach(hwpt, idev, pasid)
    return None


def _group_remove_reserved_iova(igroup: Group, hwpt_paging: HwptPaging) -> None:
    attach = igroup.pasid_attach.get(IOMMU_NO_PASID)
    if attach is not None:
        for cur in attach.devices.values():
            hwpt_paging.ioas.iopt.remove_reserved_iova(cur)


def _group_do_replace_reserved_iova(igroup: Group, hwpt_paging: HwptPaging) -> None:
    attach = igroup.pasid_attach[IOMMU_NO_PASID]
    old = find_hwpt_paging(attach.hwpt) if attach.hwpt is not None else None
    if old is None or hwpt_paging.ioas is not old.ioas:
        try:
            for cur in attach.devices.values():
                hwpt_paging.ioas.iopt.inject(errno.EINVAL, "iopt_table_enforce_dev_resv_regions")
                for start, last in cur.driver.resv_regions():
                    hwpt_paging.ioas.iopt.reserve_iova(start, last, cur)
        except OSError:
            _group_remove_reserved_iova(igroup, hwpt_paging)
            raise


def device_do_replace(idev: Device, pasid: int, hwpt: HwPagetable) -> HwPagetable | None:
    """``iommufd_device_do_replace``: nothing attached at the PASID, or not this device →
    EINVAL; the same HWPT → nothing; reserved regions into the new IOAS; the replace
    (compatibility → EINVAL, the driver's errno); the old IOAS's reserved regions go; the
    attachment references move to the new HWPT. Returns the old HWPT (its last reference
    is put by the caller)."""
    hwpt_paging = find_hwpt_paging(hwpt)
    attach_resv = hwpt_paging is not None and pasid == IOMMU_NO_PASID
    igroup = idev.igroup
    attach = igroup.pasid_attach.get(pasid)
    if attach is None:
        fail(errno.EINVAL, f"nothing is attached at PASID {pasid}: nothing to replace")
    old_hwpt = attach.hwpt
    assert old_hwpt is not None
    if idev.id not in attach.devices:
        fail(errno.EINVAL, f"device {idev.id} is not attached at PASID {pasid}")
    if hwpt is old_hwpt:
        return None
    if attach_resv:
        assert hwpt_paging is not None
        _group_do_replace_reserved_iova(igroup, hwpt_paging)
    try:
        hwpt_replace_device(idev, pasid, hwpt, old_hwpt)
    except OSError:
        if attach_resv:
            assert hwpt_paging is not None
            _group_remove_reserved_iova(igroup, hwpt_paging)
        raise
    old_paging = find_hwpt_paging(old_hwpt)
    if (
        old_paging is not None
        and pasid == IOMMU_NO_PASID
        and (hwpt_paging is None or hwpt_paging.ioas is not old_paging.ioas)
    ):
        _group_remove_reserved_iova(igroup, old_paging)
    attach.hwpt = hwpt
    num_devices = len(attach.devices)
    hwpt.users += num_devices
    if num_devices > 1:
        old_hwpt.users -= num_devices - 1
    return old_hwpt


AttachFn = Callable[[Device, int, HwPagetable], "HwPagetable | None"]


def hwpt_paging_alloc(
    ucmd_or_ctx: Any,
    ioas: Ioas,
    idev: Device,
    pasid: int,
    flags: int,
    immediate_attach: bool,
    user_data: UserData | None,
) -> HwptPaging:
    """``iommufd_hwpt_paging_alloc``: unknown flags → EOPNOTSUPP; DIRTY_TRACKING on a device
    without ``IOMMU_CAP_DIRTY_TRACKING`` → EOPNOTSUPP; FAULT_ID_VALID with NEST_PARENT →
    EOPNOTSUPP; then the object (IOAS ref), the driver's domain (its errors), coherency,
    the immediate attach, ``iopt_table_add_domain`` (detach and abort on failure).

    The object is returned allocated but not finalized, as in the kernel."""
    ictx = idev.ictx
    if flags & ~PAGING_VALID_FLAGS:
        fail(errno.EOPNOTSUPP, f"HWPT_ALLOC: unknown flags {flags & ~PAGING_VALID_FLAGS:#x}")
    if flags & uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING and not idev.driver.capable("DIRTY_TRACKING"):
        fail(errno.EOPNOTSUPP, f"device {idev.id} has no IOMMU_CAP_DIRTY_TRACKING")
    if flags & uapi.IOMMU_HWPT_FAULT_ID_VALID and flags & uapi.IOMMU_HWPT_ALLOC_NEST_PARENT:
        fail(errno.EOPNOTSUPP, "a NEST_PARENT HWPT cannot have a fault queue (FAULT_ID_VALID)")
    hwpt = ictx.objects.alloc(HwptPaging(ioas, flags))
    try:
        hwpt.domain = idev.driver.domain_alloc_paging(
            ucmd_or_ctx, flags & ~uapi.IOMMU_HWPT_FAULT_ID_VALID, user_data
        )
        if idev.enforce_cache_coherency:
            hwpt_paging_enforce_cc(hwpt)
        if immediate_attach:
            hw_pagetable_attach(hwpt, idev, pasid)
        try:
            hwpt.add_to_ioas()
        except OSError:
            if immediate_attach:
                hw_pagetable_detach(idev, pasid)
            raise
    except OSError:
        ictx.objects.abort(hwpt)
        raise
    return hwpt


def device_auto_get_domain(
    idev: Device, pasid: int, ioas: Ioas, do_attach: AttachFn
) -> tuple[int, HwPagetable | None]:
    """``iommufd_device_auto_get_domain``: the first auto domain of the IOAS that takes the
    device (EINVAL means incompatible: try the next; other errors fail), else a new auto
    domain (attached immediately when attaching). Returns (its id, the HWPT to put)."""
    objects = idev.ictx.objects
    immediate_attach = do_attach is device_do_attach
    for hwpt in list(ioas.hwpt_list):
        if not isinstance(hwpt, HwptPaging) or not hwpt.auto_domain:
            continue
        try:
            destroy = do_attach(idev, pasid, hwpt)
        except KernelError as exc:
            if exc.errno == errno.EINVAL:
                continue
            raise
        return hwpt.id, destroy
    new = hwpt_paging_alloc(None, ioas, idev, pasid, 0, immediate_attach, None)
    destroy = None
    if not immediate_attach:
        try:
            destroy = do_attach(idev, pasid, new)
        except OSError:
            objects.abort(new)
            raise
    new.auto_domain = True
    objects.finalize(new)
    return new.id, destroy


def device_change_pt(idev: Device, pasid: int, pt_id: int, do_attach: AttachFn) -> int:
    """``iommufd_device_change_pt``: ``pt_id`` → ENOENT; a HWPT (paging or nested), or an
    IOAS (auto domain); anything else → EINVAL. The replaced HWPT is put last."""
    objects = idev.ictx.objects
    pt = objects.lookup(pt_id)
    if pt is None:
        fail(errno.ENOENT, f"no object with id {pt_id}")
    if isinstance(pt, HwPagetable):
        destroy = do_attach(idev, pasid, pt)
    elif isinstance(pt, Ioas):
        pt_id, destroy = device_auto_get_domain(idev, pasid, pt, do_attach)
    else:
        fail(errno.EINVAL, f"object {pt_id} is a {type(pt).__name__}, not an IOAS or a HWPT")
    if destroy is not None:
        hw_pagetable_put(objects, destroy)
    return pt_id


def get_hw_info(ucmd: Ucmd) -> int:
    """``IOMMU_GET_HW_INFO``: unknown flags or __reserved → EOPNOTSUPP; device → ENOENT;
    driver info (EOPNOTSUPP for an input type it does not know); copy ``min(data_len,
    driver length)`` bytes and zero the rest of the user buffer (EFAULT); ``data_len`` out =
    the driver's length; capabilities and ``out_max_pasid_log2``."""
    cmd = ucmd.cmd
    supported = uapi.IOMMU_HW_INFO_FLAG_INPUT_TYPE
    if cmd.flags & ~supported:
        fail(errno.EOPNOTSUPP, f"IOMMU_GET_HW_INFO: unknown flags {cmd.flags & ~supported:#x}")
    if any(cmd.reserved):
        fail(errno.EOPNOTSUPP, "IOMMU_GET_HW_INFO: __reserved must be 0")
    if not cmd.flags & uapi.IOMMU_HW_INFO_FLAG_INPUT_TYPE:
        cmd.in_data_type = uapi.IOMMU_HW_INFO_TYPE_DEFAULT
    idev = get_device(ucmd, cmd.dev_id)
    data, cmd.out_data_type = idev.driver.hw_info(cmd.in_data_type)
    copy_len = min(cmd.data_len, len(data))
    kernel = ucmd.ictx.kernel
    kernel.copy_to_user(cmd.data_uptr, data[:copy_len])
    if copy_len < cmd.data_len:
        kernel.clear_user(cmd.data_uptr + copy_len, cmd.data_len - copy_len)
    cmd.data_len = len(data)
    cmd.out_capabilities = 0
    if idev.driver.capable("DIRTY_TRACKING"):
        cmd.out_capabilities |= uapi.IOMMU_HW_CAP_DIRTY_TRACKING
    if not idev.driver.capable("PCI_ATS_SUPPORTED"):
        cmd.out_capabilities |= uapi.IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED
    cmd.out_max_pasid_log2 = (
        idev.driver.max_pasids.bit_length() - 1 if idev.driver.max_pasids else 0
    )
    ucmd.respond()
    return 0
