"""One user-space program for QEMU's ``edu`` device, run unchanged on either backend.

Bind the device's VFIO cdev to an iommufd, attach it to an IOAS, look at what the kernel
made of it, map two buffers, make the device copy RAM → device → RAM by DMA through the
VT-d IOMMU, unmap. On ``linux`` this drives the real edu device of the oracle guest; on
``sim`` the simulated edu behind a simulated VT-d unit. :class:`EduRun` records every
result so the two can be compared field by field.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from dataclasses import dataclass
from types import ModuleType

from ioasid import uapi
from ioasid.api import Buffer, Device, Iommufd, IommufdError

EDU_BDF = "0000:00:10.0"
EDU_BUF = 0x40000
PATTERN = bytes((i * 7 + 3) & 0xFF for i in range(256))


@dataclass(frozen=True)
class EduRun:
    """What the program saw, in order."""

    devid: int
    ioas_id: int
    auto_hwpt_id: int
    hw_info_type: int
    hw_info_caps: int
    max_pasid_log2: int
    vtd_flags: int
    vtd_cap: int
    vtd_ecap: int
    dirty_hwpt_errno: int
    hwpt_id: int
    auto_hwpt_destroy_errno: int
    iova_ranges: tuple[tuple[int, int], ...]
    iova_alignment: int
    ident: int
    dma_ok: bool
    unmapped: int
    blocked_after_detach: bool


def cdev_path(backend: ModuleType) -> str:
    """The edu device's cdev; on the real kernel, bind it to vfio-pci first."""
    if backend.NAME == "sim":
        return "/dev/vfio/devices/vfio0"
    sysd = f"/sys/bus/pci/devices/{EDU_BDF}"
    if not os.path.exists(sysd + "/vfio-dev"):
        with open(sysd + "/driver_override", "w") as f:
            f.write("vfio-pci")
        with open("/sys/bus/pci/drivers_probe", "w") as f:
            f.write(EDU_BDF)
    return "/dev/vfio/devices/" + os.listdir(sysd + "/vfio-dev")[0]


def _errno_of(fn: object) -> int:
    try:
        fn()  # type: ignore[operator]
    except IommufdError as exc:
        return exc.errno or 0
    return 0


def run(backend: ModuleType) -> EduRun:
    """The program. Raises on anything unexpected."""
    path = cdev_path(backend)
    with Iommufd(backend) as fd, Device(fd, path) as dev:
        ioas = fd.ioas_alloc()
        auto = dev.attach(ioas)
        info = dev.hw_info()
        vtd = info.vtd
        dirty = _errno_of(lambda: dev.hwpt_alloc(ioas, uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING))
        hwpt = dev.hwpt_alloc(ioas)
        dev.attach(hwpt)
        destroy_auto = _errno_of(lambda: fd.destroy(auto.id))
        ranges = ioas.iova_ranges()

        with Buffer(4096) as src, Buffer(4096) as dst:
            src[0:256] = PATTERN
            ioas.map(src, iova=0x100000)
            ioas.map(dst, iova=0x200000)
            config = dev.region(uapi.VFIO_PCI_CONFIG_REGION_INDEX)
            bar0 = dev.region(uapi.VFIO_PCI_BAR0_REGION_INDEX)
            assert config.index == uapi.VFIO_PCI_CONFIG_REGION_INDEX
            enable_bus_master(dev)
            ident = struct.unpack("<I", dev.read(bar0.index, 0, 4))[0]
            dma(dev, 0x100000, EDU_BUF, 256, to_ram=False)
            dma(dev, EDU_BUF, 0x200000, 256, to_ram=True)
            dma_ok = dst[0:256] == PATTERN

            dev.detach()
            dst[0:256] = bytes(256)
            dma(dev, EDU_BUF, 0x200000, 256, to_ram=True)
            blocked = dst[0:256] == bytes(256)
            unmapped = ioas.unmap_all()

    return EduRun(
        devid=dev.id,
        ioas_id=ioas.id,
        auto_hwpt_id=auto.id,
        hw_info_type=info.data_type,
        hw_info_caps=info.capabilities,
        max_pasid_log2=info.max_pasid_log2,
        vtd_flags=int(vtd.flags) if vtd else -1,
        vtd_cap=int(vtd.cap_reg) if vtd else -1,
        vtd_ecap=int(vtd.ecap_reg) if vtd else -1,
        dirty_hwpt_errno=dirty,
        hwpt_id=hwpt.id,
        auto_hwpt_destroy_errno=destroy_auto,
        iova_ranges=tuple((r.start, r.last) for r in ranges.ranges),
        iova_alignment=ranges.alignment,
        ident=ident,
        dma_ok=dma_ok,
        unmapped=unmapped,
        blocked_after_detach=blocked,
    )


def enable_bus_master(dev: Device) -> None:
    """Set Memory Space and Bus Master Enable in the device's PCI command register."""
    config = uapi.VFIO_PCI_CONFIG_REGION_INDEX
    cmd = struct.unpack("<H", dev.read(config, 4, 2))[0]
    dev.write(config, 4, struct.pack("<H", cmd | 0x6))


def dma(dev: Device, src: int, dst: int, n: int, *, to_ram: bool) -> None:
    """Program edu's DMA registers (``src``, ``dst``, count, command) and wait until the
    device clears the start bit. ``to_ram``: device buffer → IOVA; else IOVA → buffer."""
    bar = uapi.VFIO_PCI_BAR0_REGION_INDEX
    dev.write(bar, 0x80, struct.pack("<Q", src))
    dev.write(bar, 0x88, struct.pack("<Q", dst))
    dev.write(bar, 0x90, struct.pack("<Q", n))
    dev.write(bar, 0x98, struct.pack("<Q", 1 | (2 if to_ram else 0)))
    deadline = time.monotonic() + 10
    while struct.unpack("<Q", dev.read(bar, 0x98, 8))[0] & 1:
        if time.monotonic() > deadline:
            raise TimeoutError(errno.ETIMEDOUT, "edu DMA did not complete")
        time.sleep(0.01)
