"""``device.c``: a device bound to an iommufd, and its attachment to an IOAS or HWPT.

The binding driver (VFIO, or the selftest) holds a reference, so ``IOMMU_DESTROY`` of a
device id is always ``EBUSY``; the device goes when its driver unbinds it.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from ioasid.kernel.errors import fail
from ioasid.kernel.hw_pagetable import HwptPaging, IommuDomain
from ioasid.kernel.ioas import Ioas
from ioasid.kernel.main import IommufdCtx
from ioasid.kernel.objects import IommufdObject, ObjType

DomainFactory = Callable[[], IommuDomain]


class Device(IommufdObject):
    """``struct iommufd_device``."""

    TYPE = ObjType.DEVICE

    def __init__(self, ictx: IommufdCtx, alloc_domain: DomainFactory) -> None:
        super().__init__()
        self.ictx = ictx
        self.alloc_domain = alloc_domain
        self.hwpt: HwptPaging | None = None
        self.users += 1  # the binding driver's reference

    @classmethod
    def bind(cls, ictx: IommufdCtx, alloc_domain: DomainFactory) -> Device:
        """``iommufd_device_bind``."""
        idev = ictx.objects.alloc(cls(ictx, alloc_domain))
        ictx.objects.finalize(idev)
        return idev

    def attach(self, pt_id: int) -> int:
        """``iommufd_device_attach`` without PASID: to a HWPT_PAGING, or to an IOAS (auto
        domain: reuse an auto HWPT of the IOAS that accepts the device, else make one)."""
        objects = self.ictx.objects
        obj = objects.lookup(pt_id)
        if isinstance(obj, HwptPaging):
            self._do_attach(obj)
            return obj.id
        if not isinstance(obj, Ioas):
            if obj is None:
                fail(errno.ENOENT, f"no IOAS or HWPT with id {pt_id}")
            fail(errno.EINVAL, f"object {pt_id} is a {type(obj).__name__}, not an IOAS or HWPT")
        ioas = obj
        for hwpt in ioas.hwpt_list:
            if isinstance(hwpt, HwptPaging) and hwpt.auto_domain:
                self._do_attach(hwpt)
                return hwpt.id
        hwpt = objects.alloc(HwptPaging(ioas, self.alloc_domain(), auto_domain=True))
        try:
            hwpt.attach_to_ioas()
        except OSError:
            objects.abort(hwpt)
            raise
        self._do_attach(hwpt)
        objects.finalize(hwpt)
        return hwpt.id

    def _do_attach(self, hwpt: HwptPaging) -> None:
        if self.hwpt is not None:
            fail(errno.EINVAL, f"device {self.id} is already attached to HWPT {self.hwpt.id}")
        self.hwpt = hwpt
        hwpt.devices.append(self)
        hwpt.users += 1

    def detach(self) -> None:
        """``iommufd_device_detach``: an auto domain is destroyed with its last device."""
        hwpt = self.hwpt
        if hwpt is None:
            return
        self.hwpt = None
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
