"""Devices as user space sees them: VFIO cdevs bound to an iommufd, and HW page tables."""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass
from typing import Any

from ioasid import uapi
from ioasid.api.errors import IommufdError
from ioasid.api.hwpt import HwPagetable
from ioasid.api.iommufd import Ioas, Iommufd, S, call
from ioasid.backends.base import Handle
from ioasid.uapi import sim as simapi

VFIO_PCI_OFFSET_SHIFT = 40


@dataclass(frozen=True)
class HwInfo:
    """``IOMMU_GET_HW_INFO``: the IOMMU behind a device, as its driver describes it."""

    data_type: int
    data: bytes
    capabilities: int
    max_pasid_log2: int

    @property
    def vtd(self) -> uapi.iommu_hw_info_vtd | None:
        if self.data_type != uapi.IOMMU_HW_INFO_TYPE_INTEL_VTD:
            return None
        return uapi.iommu_hw_info_vtd.from_bytes(self.data)


@dataclass(frozen=True)
class Region:
    """``VFIO_DEVICE_GET_REGION_INFO``."""

    index: int
    flags: int
    size: int
    offset: int


class Device:
    """A VFIO device cdev (``/dev/vfio/devices/vfioN``) bound to ``fd``.

    Opening binds it (``VFIO_DEVICE_BIND_IOMMUFD``); closing unbinds it, which detaches it.
    """

    def __init__(self, fd: Iommufd, path: str) -> None:
        self.fd = fd
        self.path = path
        self.handle: Handle = fd.backend.open(path)
        bind = uapi.vfio_device_bind_iommufd(
            argsz=ctypes.sizeof(uapi.vfio_device_bind_iommufd), iommufd=fd.fileno()
        )
        try:
            out = self._ioctl(uapi.VFIO_DEVICE_BIND_IOMMUFD, bind, "VFIO_DEVICE_BIND_IOMMUFD")
        except BaseException:
            self.handle.close()
            raise
        self.id = int(out.out_devid)

    def _ioctl(self, request: int, cmd: S, op: str) -> S:
        return call(self.handle, request, cmd, op)

    def attach(self, pt: Ioas | HwPagetable | int, *, pasid: int | None = None) -> HwPagetable:
        """``VFIO_DEVICE_ATTACH_IOMMUFD_PT``: to an IOAS (the kernel finds or makes a domain)
        or to a HWPT; an attached device is moved. With ``pasid``, that PASID of the device
        is attached instead of its RID. Returns the HWPT now in use."""
        pt_id = pt if isinstance(pt, int) else pt.id
        cmd = uapi.vfio_device_attach_iommufd_pt(
            argsz=ctypes.sizeof(uapi.vfio_device_attach_iommufd_pt),
            pt_id=pt_id,
            flags=0 if pasid is None else uapi.VFIO_DEVICE_ATTACH_PASID,
            pasid=pasid or 0,
        )
        out = self._ioctl(uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, cmd, "VFIO_DEVICE_ATTACH_IOMMUFD_PT")
        return HwPagetable(self.fd, int(out.pt_id), pt if isinstance(pt, Ioas) else None)

    def detach(self, *, pasid: int | None = None) -> None:
        """``VFIO_DEVICE_DETACH_IOMMUFD_PT``: DMA (of the RID, or of ``pasid``) is blocked."""
        cmd = uapi.vfio_device_detach_iommufd_pt(
            argsz=ctypes.sizeof(uapi.vfio_device_detach_iommufd_pt),
            flags=0 if pasid is None else uapi.VFIO_DEVICE_DETACH_PASID,
            pasid=pasid or 0,
        )
        self._ioctl(uapi.VFIO_DEVICE_DETACH_IOMMUFD_PT, cmd, "VFIO_DEVICE_DETACH_IOMMUFD_PT")

    def hw_info(self) -> HwInfo:
        """``IOMMU_GET_HW_INFO`` for this device."""
        data = ctypes.create_string_buffer(256)
        cmd = uapi.iommu_hw_info(dev_id=self.id, data_len=256, data_uptr=ctypes.addressof(data))
        out = self.fd.ioctl(uapi.IOMMU_GET_HW_INFO, cmd, "IOMMU_GET_HW_INFO")
        return HwInfo(
            int(out.out_data_type),
            data.raw[: out.data_len],
            int(out.out_capabilities),
            int(out.out_max_pasid_log2),
        )

    def hwpt_alloc(self, pt: Ioas | HwPagetable, flags: int = 0, **kwargs: Any) -> HwPagetable:
        """``IOMMU_HWPT_ALLOC``: a domain of this device's IOMMU on ``pt`` (see
        :meth:`HwPagetable.alloc` for ``data``, ``data_type``, ``fault``)."""
        return HwPagetable.alloc(self.fd, self, pt, flags=flags, **kwargs)

    def region(self, index: int) -> Region:
        cmd = uapi.vfio_region_info(argsz=ctypes.sizeof(uapi.vfio_region_info), index=index)
        out = self._ioctl(uapi.VFIO_DEVICE_GET_REGION_INFO, cmd, "VFIO_DEVICE_GET_REGION_INFO")
        return Region(index, int(out.flags), int(out.size), int(out.offset))

    def read(self, index: int, offset: int, n: int) -> bytes:
        """Read ``n`` bytes of region ``index`` (a BAR, or the config space)."""
        return self.handle.pread(n, (index << VFIO_PCI_OFFSET_SHIFT) + offset)

    def write(self, index: int, offset: int, data: bytes) -> None:
        done = self.handle.pwrite(data, (index << VFIO_PCI_OFFSET_SHIFT) + offset)
        if done != len(data):
            raise OSError(errno.EIO, f"{self.path}: short write to region {index}")

    def dma_write(self, iova: int, data: bytes, *, pasid: int | None = None) -> None:
        """Make the (simulated) device write ``data`` at ``iova`` by DMA, as its hardware
        would (``IOASID_SIM_DEVICE_DMA``; ``sim`` backend only). A fault raises
        :class:`IommufdError` with ``EIO`` naming the IOVA and the reason."""
        self._sim_dma(iova, bytearray(data), write=True, pasid=pasid)

    def dma_read(self, iova: int, length: int, *, pasid: int | None = None) -> bytes:
        """Make the (simulated) device read ``length`` bytes at ``iova`` by DMA."""
        buf = bytearray(length)
        self._sim_dma(iova, buf, write=False, pasid=pasid)
        return bytes(buf)

    def _sim_dma(self, iova: int, buf: bytearray, *, write: bool, pasid: int | None) -> None:
        flags = simapi.IOASID_SIM_DMA_WRITE if write else 0
        if pasid is not None:
            flags |= simapi.IOASID_SIM_DMA_PASID
        holder = (ctypes.c_char * max(len(buf), 1)).from_buffer(buf) if buf else None
        cmd = simapi.ioasid_sim_dma(
            argsz=ctypes.sizeof(simapi.ioasid_sim_dma),
            flags=flags,
            pasid=pasid or 0,
            iova=iova,
            length=len(buf),
            uptr=ctypes.addressof(holder) if holder else 0,
        )
        try:
            self._ioctl(simapi.IOASID_SIM_DEVICE_DMA, cmd, "IOASID_SIM_DEVICE_DMA")
        except IommufdError as exc:
            if exc.errno == errno.ENOTTY:
                raise IommufdError(
                    errno.ENOTTY,
                    "IOASID_SIM_DEVICE_DMA",
                    "device DMA on demand exists only on the sim backend; on "
                    "real hardware, program the device",
                ) from None
            raise

    def close(self) -> None:
        """Close the cdev: the kernel detaches and unbinds the device."""
        self.handle.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Device {self.path} devid={self.id}>"
