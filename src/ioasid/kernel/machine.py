"""The simulated host's kernel: open files, processes, and user-memory access.

One :class:`Kernel` is shared by every handle the ``sim`` backend opens, as one kernel serves
every open of ``/dev/iommu`` on a real host. It is the top of the kernel package: it boots the
host (units, drivers, groups, cdevs) and implements :class:`ioasid.kernel.private.Machine`,
the interface the rest of the kernel sees.

Locking: every entry into the simulated kernel (an ioctl, read, write, release, a device's
DMA) runs under :attr:`Kernel.lock`, so each call is atomic with respect to every other and
the answers are linearizable, as the kernel's locks make them; shared per-mm and per-user
accounting stays exact across threads and, through the bridge, processes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from typing import cast

from ioasid import topology as topo_mod
from ioasid.hw.devices.edu import EDU_DEVICE, EDU_VENDOR, EduDevice
from ioasid.hw.dma import DmaEngine
from ioasid.hw.iommu import IommuUnit
from ioasid.hw.memory import PhysMap
from ioasid.hw.pci import Fabric, FabricDma, PciFunction
from ioasid.kernel.anon_inode import AnonInodes
from ioasid.kernel.device import IommuDriver
from ioasid.kernel.errors import fail
from ioasid.kernel.fail_nth import inject
from ioasid.kernel.intel import SERVER_CAP_REG, SERVER_ECAP_REG, VtdDriver, VtdUnit
from ioasid.kernel.main import open_iommufd
from ioasid.kernel.ownership import DRIVER_MANAGED_DMA, GroupState
from ioasid.kernel.private import USER_CHUNK, File
from ioasid.kernel.process import MmStruct, Processes
from ioasid.kernel.vfio_device import VfioDeviceFile, VfioPciDevice
from ioasid.topology import Bdf, Topology
from ioasid.topology.audit import p2p_domains, pasid_eligibility


class Kernel:
    """The simulated kernel's global state."""

    def __init__(self, topology: Topology | None = None) -> None:
        self.lock = threading.RLock()
        """The one lock of the simulated kernel: held for the whole of every entry."""
        self.processes = Processes()
        self.anon_inodes = AnonInodes(self.processes)
        self.trusted = (1, 0)
        """``[lo, hi)``: the caller's own ioctl buffer while its ioctl runs (set by the sim
        backend). Copies wholly inside it are a plain ``memmove`` -- it is known mapped and
        writable; every other user address is probed and can fault."""
        self.files: dict[int, File] = {}
        self.phys = PhysMap()
        self.mock_units: dict[tuple[bool, bool], IommuUnit] = {}
        """The selftest mock IOMMU, one unit per (NO_DIRTY, PASID) device kind."""
        self.mock_dev_ida = 0
        self.vtd_units: list[IommuUnit] = []
        self.vfio_devices: list[VfioPciDevice] = []
        self.groups: dict[int, GroupState] = {}
        self.functions: dict[Bdf, tuple[PciFunction, IommuDriver]] = {}
        self.boot(topology)

    def dma_engine(self, driver: IommuDriver) -> DmaEngine:
        """The DMA engine of the device ``driver`` serves: through its unit, into memory."""
        width = driver.max_pasids.bit_length() - 1 if driver.max_pasids else 0
        return DmaEngine(driver.unit, driver.rid, self.phys, pasid_width=width)

    def add_vfio_pci(self, function: PciFunction, driver: IommuDriver) -> VfioPciDevice:
        """Bind ``function`` to vfio-pci: it appears as ``/dev/vfio/devices/vfioN``."""
        vdev = VfioPciDevice(self, len(self.vfio_devices), function, driver)
        self.vfio_devices.append(vdev)
        return vdev

    def boot(self, topology: Topology | None = None) -> None:
        """Probe the host's PCI fabric as Linux does: form IOMMU groups, enable ACS, take
        kernel drivers' DMA ownership, and give every function bound to vfio-pci a cdev
        (``/dev/vfio/devices/vfioN``, in probe order). QEMU's edu device sits behind a
        VT-d unit as QEMU presents it (``dmar0``); everything else behind a server-class
        unit (``dmar1``: snoop control, nesting, 20-bit PASIDs, dirty tracking)."""
        topo = topo_mod.default_host() if topology is None else topology
        grouping = topo_mod.group(topo)
        self.topology, self.grouping = topo, grouping
        qemu_unit = VtdUnit("dmar0")
        server_unit = VtdUnit("dmar1", SERVER_CAP_REG, SERVER_ECAP_REG)
        self.vtd_units = [qemu_unit, server_unit]
        fabric = self.fabric = Fabric()
        for index, domain in enumerate(p2p_domains(topo, grouping.acs)):
            for b in domain.devices:
                fabric.p2p_domain[b] = index
        for g in grouping.groups:
            fns = [topo.functions[b] for b in g.devices]
            self.groups[g.id] = GroupState(
                g.id,
                [str(b) for b in g.devices],
                [b.rid for b in g.devices],
                {
                    str(f.bdf): f.driver
                    for f in fns
                    if f.driver and f.driver not in DRIVER_MANAGED_DMA
                },
            )
        bar = 0xE0000000
        for f in topo:
            edu_like = not f.is_bridge
            if (f.vendor, f.device) == (EDU_VENDOR, EDU_DEVICE):
                model: PciFunction = EduDevice(f.bdf)
            elif edu_like:
                model = EduDevice(f.bdf, f.vendor, f.device, f.class_code << 8)
            else:
                model = PciFunction(f.bdf, f.vendor, f.device, f.class_code << 8)
            fabric.add(model, bar if edu_like else None)
            if edu_like:
                bar += 1 << 20
            gid = grouping.group_of.get(f.bdf)
            if gid is None:
                continue
            unit = qemu_unit if model.vendor == EDU_VENDOR else server_unit
            pasid = (
                f.pasid_max_width
                if f.pasid and pasid_eligibility(grouping.acs, f.bdf).eligible
                else 0
            )
            driver = VtdDriver(self, unit, f.bdf.rid, pasid, self.groups[gid])
            model.dma = FabricDma(fabric, model, self.dma_engine(driver))
            self.functions[f.bdf] = (model, driver)
            if f.driver == "vfio-pci":
                self.add_vfio_pci(model, driver)

    def pin_count(self, mm: MmStruct, vpn: int) -> int:
        """Long-term pins held on the page at virtual page number ``vpn`` of ``mm``."""
        return mm.page_pins.get(vpn)

    def copy_from_user(self, addr: int, length: int) -> bytes:
        lo, hi = self.trusted
        if lo <= addr and addr + length <= hi and length >= 0:
            return ctypes.string_at(addr, length)
        if addr == 0 and length:
            fail(errno.EFAULT, f"NULL user pointer for {length} bytes")
        return self.processes.current.mm.aspace.read(addr, length)

    def copy_to_user(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        lo, hi = self.trusted
        if lo <= addr and addr + len(data) <= hi:
            ctypes.memmove(addr, data if type(data) is bytes else bytes(data), len(data))
            return
        if addr == 0 and data:
            fail(errno.EFAULT, f"NULL user pointer for {len(data)} bytes")
        self.processes.current.mm.aspace.write(addr, data)

    def clear_user(self, addr: int, length: int) -> None:
        zeros = bytes(min(length, USER_CHUNK))
        end = addr + length
        while addr < end:
            n = min(USER_CHUNK, end - addr)
            self.copy_to_user(addr, zeros[:n] if n < len(zeros) else zeros)
            addr += n

    def open(self, path: str) -> File:
        """``open(2)`` of one of the simulated device nodes."""
        current = self.processes.current
        inject(current, errno.ENOMEM, "do_getname")  # the path's names_cache buffer
        inject(current, errno.ENOMEM, "alloc_empty_file")  # path_openat's struct file
        if path == "/dev/iommu":
            return open_iommufd(self)
        if path == "/dev/vfio/vfio":
            return open_iommufd(self, vfio_container=True)
        if path.startswith("/dev/vfio/devices/vfio"):
            suffix = path.removeprefix("/dev/vfio/devices/vfio")
            if suffix.isdigit() and int(suffix) < len(self.vfio_devices):
                return VfioDeviceFile(self.vfio_devices[int(suffix)])
        fail(errno.ENOENT, f"{path}: no such device node on the simulated host")

    def fget(self, fd: int) -> File | None:
        """The simulated device file the caller's ``fd`` refers to, else ``None``."""
        table = self.processes.current.files
        if table is not None:
            file = table.fget(fd)
            return cast(File, file) if hasattr(file, "ioctl") else None
        return self.files.get(fd)


def strerror(err: int) -> str:
    return f"[Errno {err}] {os.strerror(err)} ({errno.errorcode.get(err, '?')})"
