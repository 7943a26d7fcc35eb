"""``device.c``: a device bound to an iommufd, and its attachment to an IOAS or HWPT.

The binding driver (VFIO, or the selftest) holds a reference, so ``IOMMU_DESTROY`` of a
device id is always ``EBUSY``; the device goes when its driver unbinds it.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from ioasid import uapi
from ioasid.hw.iommu import IommuUnit
from ioasid.hw.pagetable.base import HwError
from ioasid.kernel.errors import KernelError, fail
from ioasid.kernel.hw_pagetable import HwptPaging, IommuDomain
from ioasid.kernel.ioas import Ioas
from ioasid.kernel.main import IommufdCtx, Ucmd
from ioasid.kernel.objects import IommufdObject, ObjType

if TYPE_CHECKING:
    from ioasid.kernel.machine import Kernel

DomainFactory = Callable[[], IommuDomain]


class IommuDriver:
    """A device's IOMMU driver (``struct iommu_ops``) and where the device sits: the IOMMU
    ``unit`` and its requester id ``rid``."""

    max_pasids = 0

    def __init__(self, kernel: Kernel, unit: IommuUnit, rid: int) -> None:
        self.kernel = kernel
        self.unit = unit
        self.rid = rid

    def domain_alloc_paging(self, flags: int) -> IommuDomain:
        """``domain_alloc_paging_flags``: the unit's page-table format."""
        try:
            hw = self.unit.domain_alloc_paging(flags)
        except HwError as exc:
            raise KernelError(exc.errno or errno.EOPNOTSUPP, str(exc.strerror)) from None
        return IommuDomain(hw, self.kernel.phys)

    def resv_regions(self) -> list[tuple[int, int]]:
        """``iommu_get_resv_regions``: IOVA ranges the device cannot use (``[first, last]``)."""
        return []

    def attach_dev(self, domain: IommuDomain | None, pasid: int | None = None) -> None:
        """``attach_dev``: program the unit; an incompatible domain is EINVAL."""
        try:
            self.unit.attach(self.rid, None if domain is None else domain.hw, pasid)
        except HwError as exc:
            raise KernelError(exc.errno or errno.EINVAL, str(exc.strerror)) from None

    def hw_info(self, in_type: int) -> tuple[bytes, int]:
        """``ops->hw_info``: the driver's info struct and its ``iommu_hw_info_type``."""
        return b"", uapi.IOMMU_HW_INFO_TYPE_NONE

    def capable(self, cap: str) -> bool:
        return False


class Device(IommufdObject):
    """``struct iommufd_device``."""

    TYPE = ObjType.DEVICE

    def __init__(self, ictx: IommufdCtx, driver: IommuDriver) -> None:
        super().__init__()
        self.ictx = ictx
        self.driver = driver
        self.hwpt: HwptPaging | None = None
        self.users += 1  # the binding driver's reference

    @classmethod
    def bind(cls, ictx: IommufdCtx, driver: IommuDriver) -> Device:
        """``iommufd_device_bind``."""
        idev = ictx.objects.alloc(cls(ictx, driver))
        ictx.objects.finalize(idev)
        return idev

    def attach(self, pt_id: int) -> int:
        """``iommufd_device_attach`` without PASID: to a HWPT_PAGING, or to an IOAS (auto
        domain: reuse an auto HWPT of the IOAS that accepts the device, else make one)."""
        if self.hwpt is not None:
            fail(errno.EINVAL, f"device {self.id} is already attached to HWPT {self.hwpt.id}")
        return self._attach(pt_id)

    def replace(self, pt_id: int) -> int:
        """``iommufd_device_replace``: move an attached device to another HWPT or IOAS."""
        old = self.hwpt
        if old is None:
            fail(errno.EINVAL, f"device {self.id} is not attached; nothing to replace")
        new_id = self._attach(pt_id, old)
        if old is not self.hwpt:
            old.devices.remove(self)
            old.users -= 1
            if old.auto_domain and not old.devices:
                self.ictx.objects.remove(old.id)
        return new_id

    def _attach(self, pt_id: int, old: HwptPaging | None = None) -> int:
        objects = self.ictx.objects
        obj = objects.lookup(pt_id)
        if isinstance(obj, HwptPaging):
            self._do_attach(obj, old)
            return obj.id
        if not isinstance(obj, Ioas):
            if obj is None:
                fail(errno.ENOENT, f"no IOAS or HWPT with id {pt_id}")
            fail(errno.EINVAL, f"object {pt_id} is a {type(obj).__name__}, not an IOAS or HWPT")
        ioas = obj
        for hwpt in ioas.hwpt_list:
            if isinstance(hwpt, HwptPaging) and hwpt.auto_domain:
                try:
                    self._do_attach(hwpt, old)
                except KernelError as exc:
                    if exc.errno == errno.EINVAL:
                        continue
                    raise
                return hwpt.id
        hwpt = objects.alloc(HwptPaging(ioas, self.driver.domain_alloc_paging(0), auto_domain=True))
        # iommufd_hwpt_paging_alloc(immediate_attach): attach first, then add the domain
        try:
            self._do_attach(hwpt, old)
        except OSError:
            objects.abort(hwpt)
            raise
        try:
            hwpt.attach_to_ioas()
        except OSError:
            self._undo_attach(hwpt, old)
            objects.abort(hwpt)
            raise
        objects.finalize(hwpt)
        return hwpt.id

    def _do_attach(self, hwpt: HwptPaging, old: HwptPaging | None) -> None:
        """``iommufd_hw_pagetable_attach``: reserve the device's reserved regions in the
        IOAS (EADDRINUSE over areas or allowed ranges), then program the IOMMU (EINVAL when
        the domain does not suit it)."""
        if hwpt is old:
            return
        iopt = hwpt.ioas.iopt
        moved = old is None or old.ioas is not hwpt.ioas
        if moved:
            try:
                for first, last in self.driver.resv_regions():
                    iopt.reserve_iova(first, last, self)
            except OSError:
                iopt.remove_reserved_iova(self)
                raise
        try:
            self.driver.attach_dev(hwpt.domain)
        except OSError:
            if moved:
                iopt.remove_reserved_iova(self)
            raise
        if moved and old is not None:
            old.ioas.iopt.remove_reserved_iova(self)
        self.hwpt = hwpt
        hwpt.devices.append(self)
        hwpt.users += 1

    def _undo_attach(self, hwpt: HwptPaging, old: HwptPaging | None) -> None:
        hwpt.devices.remove(self)
        hwpt.users -= 1
        hwpt.ioas.iopt.remove_reserved_iova(self)
        self.hwpt = old
        self.driver.attach_dev(None if old is None else old.domain)
        if old is not None and old.ioas is not hwpt.ioas:
            for first, last in self.driver.resv_regions():
                old.ioas.iopt.reserve_iova(first, last, self)

    def detach(self) -> None:
        """``iommufd_device_detach``: an auto domain is destroyed with its last device."""
        hwpt = self.hwpt
        if hwpt is None:
            return
        self.hwpt = None
        self.driver.attach_dev(None)
        hwpt.ioas.iopt.remove_reserved_iova(self)
        hwpt.devices.remove(self)
        hwpt.users -= 1
        if hwpt.auto_domain and not hwpt.devices:
            self.ictx.objects.remove(hwpt.id)

    def unbind(self) -> None:
        """``iommufd_device_unbind``: the driver lets go; the id disappears."""
        self.detach()
        self.users -= 1
        if self.ictx.objects.lookup(self.id) is self:
            self.ictx.objects.remove(self.id)


def get_device(ucmd: Ucmd, dev_id: int) -> Device:
    return ucmd.ictx.objects.get(dev_id, Device, "device")


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
        kernel.copy_to_user(cmd.data_uptr + copy_len, bytes(cmd.data_len - copy_len))
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


def hwpt_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_HWPT_ALLOC``: __reserved → EOPNOTSUPP; data_type NONE with data_len, or a
    type without data_len → EINVAL; device → ENOENT; pt_id missing → EINVAL; on an IOAS: a
    paging HWPT from the device's driver (flags it cannot do → EOPNOTSUPP), added to the IOAS.

    Nested HWPTs (pt_id a HWPT_PAGING or vIOMMU) are not simulated yet: EOPNOTSUPP.
    """
    cmd, objects = ucmd.cmd, ucmd.ictx.objects
    if cmd.reserved:
        fail(errno.EOPNOTSUPP, "IOMMU_HWPT_ALLOC: __reserved must be 0")
    none = uapi.IOMMU_HWPT_DATA_NONE
    if (cmd.data_type == none and cmd.data_len) or (cmd.data_type != none and not cmd.data_len):
        fail(
            errno.EINVAL,
            f"IOMMU_HWPT_ALLOC: data_type {cmd.data_type} does not match data_len {cmd.data_len}",
        )
    idev = get_device(ucmd, cmd.dev_id)
    pt = objects.lookup(cmd.pt_id)
    if pt is None:
        fail(errno.EINVAL, f"IOMMU_HWPT_ALLOC: no object with pt_id {cmd.pt_id}")
    if not isinstance(pt, Ioas):
        fail(
            errno.EOPNOTSUPP,
            f"IOMMU_HWPT_ALLOC: nested HWPTs on a {type(pt).__name__} are not simulated yet",
        )
    if cmd.data_len:
        fail(
            errno.EOPNOTSUPP, "IOMMU_HWPT_ALLOC: driver data for paging HWPTs is not simulated yet"
        )
    hwpt = objects.alloc(HwptPaging(pt, idev.driver.domain_alloc_paging(cmd.flags)))
    try:
        hwpt.attach_to_ioas()
        cmd.out_hwpt_id = hwpt.id
        ucmd.respond()
    except OSError:
        objects.abort(hwpt)
        raise
    objects.finalize(hwpt)
    return 0
