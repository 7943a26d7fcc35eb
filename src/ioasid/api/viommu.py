"""vIOMMU objects: the slice of a physical IOMMU given to a VM, its devices (vDEVICEs,
known by their guest-visible id), its event queues and HW queues, and the regions it
offers for ``mmap`` on the iommufd.

>>> parent = HwPagetable.alloc(fd, dev, ioas, flags=uapi.IOMMU_HWPT_ALLOC_NEST_PARENT)
>>> viommu = Viommu.alloc(fd, dev, parent, uapi.IOMMU_VIOMMU_TYPE_SELFTEST)
>>> vdev = viommu.vdevice_alloc(dev, virt_id=0x99)
>>> s1 = viommu.hwpt_alloc(dev, uapi.iommu_hwpt_selftest(iotlb=0xBADBEEF))
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Sequence
from typing import Any

from ioasid import uapi
from ioasid.api.eventq import FaultQueue, Veventq
from ioasid.api.hwpt import HasId, HwPagetable, invalidate
from ioasid.api.iommufd import Iommufd

EVENT_SIZES: dict[int, int] = {
    uapi.IOMMU_VEVENTQ_TYPE_SELFTEST: ctypes.sizeof(uapi.iommu_viommu_event_selftest),
    uapi.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3: 32,
    uapi.IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV: 16,
}


class Viommu:
    """``IOMMU_VIOMMU_ALLOC``: ``data`` is the driver struct as the kernel answered it
    (e.g. ``iommu_viommu_selftest`` with ``out_data`` and the mmap offset/length)."""

    def __init__(self, fd: Iommufd, viommu_id: int, parent: HwPagetable, data: Any = None):
        self.fd = fd
        self.id = viommu_id
        self.parent = parent
        self.data = data

    @classmethod
    def alloc(
        cls,
        fd: Iommufd,
        device: HasId,
        parent: HwPagetable,
        viommu_type: int,
        data: Any = None,
    ) -> Viommu:
        """A vIOMMU of ``viommu_type`` on the nesting-parent ``parent``, for the IOMMU
        instance behind ``device``; ``data`` the driver's in/out struct."""
        raw = None
        if data is not None:
            raw = ctypes.create_string_buffer(bytes(data), ctypes.sizeof(data))
        cmd = uapi.iommu_viommu_alloc(
            type=viommu_type,
            dev_id=device.id,
            hwpt_id=parent.id,
            data_len=ctypes.sizeof(data) if data is not None else 0,
            data_uptr=ctypes.addressof(raw) if raw is not None else 0,
        )
        out = fd.ioctl(uapi.IOMMU_VIOMMU_ALLOC, cmd, "IOMMU_VIOMMU_ALLOC")
        answered = type(data).from_bytes(raw.raw) if raw is not None and data is not None else None
        return cls(fd, int(out.out_viommu_id), parent, answered)

    def vdevice_alloc(self, device: HasId, virt_id: int) -> Vdevice:
        """``IOMMU_VDEVICE_ALLOC``: ``device`` is ``virt_id`` (vSID, vRID ...) in this
        vIOMMU."""
        cmd = uapi.iommu_vdevice_alloc(viommu_id=self.id, dev_id=device.id, virt_id=virt_id)
        out = self.fd.ioctl(uapi.IOMMU_VDEVICE_ALLOC, cmd, "IOMMU_VDEVICE_ALLOC")
        return Vdevice(self, int(out.out_vdevice_id), virt_id)

    def hwpt_alloc(
        self,
        device: HasId,
        data: Any,
        *,
        flags: int = 0,
        data_type: int | None = None,
        fault: FaultQueue | None = None,
    ) -> HwPagetable:
        """A nested HWPT on this vIOMMU (the guest's stage 1 in ``data``)."""
        return HwPagetable.alloc(
            self.fd, device, self, flags=flags, data=data, data_type=data_type, fault=fault
        )

    def veventq_alloc(
        self, veventq_type: int, depth: int, event_size: int | None = None
    ) -> Veventq:
        """``IOMMU_VEVENTQ_ALLOC``: one queue per type."""
        if event_size is None:
            event_size = EVENT_SIZES[veventq_type]
        return Veventq.alloc(self, veventq_type, depth, event_size)

    def hw_queue_alloc(self, queue_type: int, index: int, iova: int, length: int) -> HwQueue:
        """``IOMMU_HW_QUEUE_ALLOC``: a queue the hardware reads at ``[iova, iova+length)``
        of the parent's IOAS (pinned and locked against unmap while it exists)."""
        cmd = uapi.iommu_hw_queue_alloc(
            viommu_id=self.id, type=queue_type, index=index, nesting_parent_iova=iova, length=length
        )
        out = self.fd.ioctl(uapi.IOMMU_HW_QUEUE_ALLOC, cmd, "IOMMU_HW_QUEUE_ALLOC")
        return HwQueue(self, int(out.out_hw_queue_id), index, iova, length)

    def invalidate(self, entries: Sequence[Any], data_type: int | None = None) -> int:
        """``IOMMU_HWPT_INVALIDATE`` on the vIOMMU (device caches, by virt id): returns the
        entries done."""
        return invalidate(self.fd, self.id, entries, data_type)

    def mmap(self, offset: int | None = None, length: int | None = None) -> mmap.mmap:
        """``mmap`` of the region the driver handed back (``out_mmap_offset`` /
        ``out_mmap_length`` of ``data`` by default); the vIOMMU cannot be destroyed while
        it is mapped."""
        if offset is None or length is None:
            if self.data is None:
                raise ValueError("this vIOMMU was allocated without driver data: no region")
            offset = int(self.data.out_mmap_offset) if offset is None else offset
            length = int(self.data.out_mmap_length) if length is None else length
        return self.fd.handle.mmap(
            length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, offset
        )

    def destroy(self) -> None:
        self.fd.destroy(self.id)

    def __enter__(self) -> Viommu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<Viommu {self.id} on HWPT {self.parent.id}>"


class Vdevice:
    """A vDEVICE: destroyed with ``destroy``, or by the kernel when its device is unbound
    (its id then answers ENOENT)."""

    def __init__(self, viommu: Viommu, vdev_id: int, virt_id: int) -> None:
        self.viommu = viommu
        self.id = vdev_id
        self.virt_id = virt_id

    def destroy(self) -> None:
        self.viommu.fd.destroy(self.id)

    def __enter__(self) -> Vdevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<Vdevice {self.id} virt_id={self.virt_id:#x}>"


class HwQueue:
    """A HW queue: its guest memory ``[iova, iova+length)`` of the parent's IOAS."""

    def __init__(self, viommu: Viommu, queue_id: int, index: int, iova: int, length: int):
        self.viommu = viommu
        self.id = queue_id
        self.index = index
        self.iova = iova
        self.length = length

    def destroy(self) -> None:
        self.viommu.fd.destroy(self.id)

    def __enter__(self) -> HwQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<HwQueue {self.id} index={self.index} [{self.iova:#x}, +{self.length:#x})>"
