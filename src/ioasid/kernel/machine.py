"""The simulated host's kernel: open files, processes, and user-memory access.

One :class:`Kernel` is shared by every handle the ``sim`` backend opens, as one kernel serves
every open of ``/dev/iommu`` on a real host.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Protocol

from ioasid.hw.dma import DmaEngine
from ioasid.hw.iommu import IommuUnit
from ioasid.hw.memory import PhysMap
from ioasid.hw.pci import PciFunction
from ioasid.kernel.errors import fail
from ioasid.kernel.process import MmStruct, Processes

if TYPE_CHECKING:
    from ioasid.kernel.device import IommuDriver
    from ioasid.kernel.vfio_device import VfioPciDevice


class File(Protocol):
    """What ``struct file_operations`` a simulated character device offers."""

    def ioctl(self, cmd: int, arg: int) -> int: ...

    def release(self) -> None: ...


class Kernel:
    """The simulated kernel's global state."""

    def __init__(self) -> None:
        self.processes = Processes()
        self.files: dict[int, File] = {}
        self.phys = PhysMap()
        self.mock_units: dict[tuple[bool, bool], IommuUnit] = {}
        """The selftest mock IOMMU, one unit per (NO_DIRTY, PASID) device kind."""
        self.mock_dev_ida = 0
        self.vtd_units: list[IommuUnit] = []
        self.vfio_devices: list[VfioPciDevice] = []
        self.boot_default_host()
        self.test_memory_limit = 65536
        """``iommufd_test_memory_limit``: the mock driver's batch memory limit."""

    def dma_engine(self, driver: IommuDriver) -> DmaEngine:
        """The DMA engine of the device ``driver`` serves: through its unit, into memory."""
        return DmaEngine(driver.unit, driver.rid, self.phys)

    def add_vfio_pci(self, function: PciFunction, driver: IommuDriver) -> VfioPciDevice:
        """Bind ``function`` to vfio-pci: it appears as ``/dev/vfio/devices/vfioN``."""
        from ioasid.kernel.vfio_device import VfioPciDevice

        vdev = VfioPciDevice(self, len(self.vfio_devices), function, driver)
        self.vfio_devices.append(vdev)
        return vdev

    def boot_default_host(self) -> None:
        """The default simulated host: one VT-d unit (as QEMU's intel-iommu presents it) and
        QEMU's edu device at 0000:00:10.0, bound to vfio-pci as ``/dev/vfio/devices/vfio0``
        — the oracle guest's layout."""
        from ioasid.hw.devices.edu import EduDevice
        from ioasid.hw.pci import Bdf
        from ioasid.kernel.intel import VtdDriver, VtdUnit

        unit = VtdUnit("dmar0")
        self.vtd_units.append(unit)
        edu = EduDevice(Bdf(0, 0, 0x10, 0))
        self.add_vfio_pci(edu, VtdDriver(self, unit, edu.bdf.rid))

    def pin_count(self, mm: MmStruct, vpn: int) -> int:
        """Long-term pins held on the page at virtual page number ``vpn`` of ``mm``."""
        return mm.page_pins.get(vpn)

    def copy_from_user(self, addr: int, length: int) -> bytes:
        if addr == 0 and length:
            fail(errno.EFAULT, f"NULL user pointer for {length} bytes")
        return self.processes.current.mm.aspace.read(addr, length)

    def copy_to_user(self, addr: int, data: bytes) -> None:
        if addr == 0 and data:
            fail(errno.EFAULT, f"NULL user pointer for {len(data)} bytes")
        self.processes.current.mm.aspace.write(addr, data)

    def open(self, path: str) -> File:
        """``open(2)`` of one of the simulated device nodes."""
        from ioasid.kernel.main import IommufdCtx

        if path == "/dev/iommu":
            return IommufdFile(IommufdCtx(self))
        if path == "/dev/vfio/vfio":
            return IommufdFile(IommufdCtx(self, vfio_container=True))
        if path.startswith("/dev/vfio/devices/vfio"):
            from ioasid.kernel.vfio_device import VfioDeviceFile

            suffix = path.removeprefix("/dev/vfio/devices/vfio")
            if suffix.isdigit() and int(suffix) < len(self.vfio_devices):
                return VfioDeviceFile(self.vfio_devices[int(suffix)])
        fail(errno.ENOENT, f"{path}: no such device node on the simulated host")

    def fget(self, fd: int) -> File | None:
        return self.files.get(fd)


class IommufdFile:
    """``iommufd_fops``: ioctl goes to the context, release destroys its objects."""

    def __init__(self, ictx: object) -> None:
        from ioasid.kernel.main import IommufdCtx

        assert isinstance(ictx, IommufdCtx)
        self.ictx = ictx

    def ioctl(self, cmd: int, arg: int) -> int:
        return self.ictx.ioctl(cmd, arg)

    def release(self) -> None:
        self.ictx.release()


def strerror(err: int) -> str:
    return f"[Errno {err}] {os.strerror(err)} ({errno.errorcode.get(err, '?')})"
