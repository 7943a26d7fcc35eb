"""VFIO device cdevs (``/dev/vfio/devices/vfioN``) of the simulated host, iommufd mode.

``drivers/vfio/device_cdev.c`` and ``vfio_main.c``: ``VFIO_DEVICE_BIND_IOMMUFD`` must come
first (any other ioctl before it → EINVAL); binding twice → EINVAL; ``ATTACH``/``DETACH``
``_IOMMUFD_PT`` (an attached device is *replaced*); closing the fd unbinds the device,
detaching it. Regions are read and written with ``pread``/``pwrite`` at
``VFIO_PCI_INDEX_TO_OFFSET(index)``, as ``vfio-pci`` lays them out.
"""

from __future__ import annotations

import ctypes
import errno

from ioasid import uapi
from ioasid.hw.dma import DMA_MAX_TRANSFER, DmaFault
from ioasid.hw.memory import UserDma
from ioasid.hw.pagetable.base import FaultReason
from ioasid.hw.pci import FabricDma, PciFunction
from ioasid.kernel.device import Device, IommuDriver
from ioasid.kernel.errors import fail
from ioasid.kernel.eventq import report_dma_page_request
from ioasid.kernel.private import (
    USER_CHUNK,
    IommufdCtx,
    Machine,
    check_zeroed_user,
    iommufd_ctx_from_file,
)
from ioasid.uapi import sim as simapi

VFIO_PCI_OFFSET_SHIFT = 40
_FAULT_CODES = {
    FaultReason.NOT_PRESENT: simapi.IOASID_SIM_FAULT_NOT_PRESENT,
    FaultReason.WRITE_PROTECTED: simapi.IOASID_SIM_FAULT_WRITE_PROTECTED,
    FaultReason.READ_PROTECTED: simapi.IOASID_SIM_FAULT_READ_PROTECTED,
    FaultReason.ADDRESS_WIDTH: simapi.IOASID_SIM_FAULT_ADDRESS_WIDTH,
    FaultReason.RESERVED: simapi.IOASID_SIM_FAULT_RESERVED,
    FaultReason.BLOCKED: simapi.IOASID_SIM_FAULT_BLOCKED,
    FaultReason.PASID_RANGE: simapi.IOASID_SIM_FAULT_PASID_RANGE,
}
NUM_REGIONS = 9
NUM_IRQS = 5


class VfioPciDevice:
    """A PCI function bound to ``vfio-pci``: what every open of its cdev shares."""

    def __init__(
        self, kernel: Machine, index: int, function: PciFunction, driver: IommuDriver
    ) -> None:
        self.kernel = kernel
        self.index = index
        self.function = function
        self.driver = driver
        self.bound: VfioDeviceFile | None = None

    @property
    def path(self) -> str:
        return f"/dev/vfio/devices/vfio{self.index}"


class VfioDeviceFile:
    """One open of a device cdev (``struct vfio_device_file``)."""

    def __init__(self, vdev: VfioPciDevice) -> None:
        self.vdev = vdev
        self.kernel = vdev.kernel
        self.idev: Device | None = None
        self.ictx: IommufdCtx | None = None
        """The iommufd the device is bound to: its file is held while bound."""

    # ioctl ------------------------------------------------------------------------------

    def ioctl(self, cmd: int, arg: int) -> int:
        if cmd == uapi.VFIO_DEVICE_BIND_IOMMUFD:
            return self.bind_iommufd(arg)
        if self.idev is None:
            fail(
                errno.EINVAL, "VFIO device: bind it to an iommufd (VFIO_DEVICE_BIND_IOMMUFD) first"
            )
        if cmd == uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT:
            return self.attach_pt(arg)
        if cmd == uapi.VFIO_DEVICE_DETACH_IOMMUFD_PT:
            return self.detach_pt(arg)
        if cmd == uapi.VFIO_DEVICE_GET_INFO:
            return self.get_info(arg)
        if cmd == uapi.VFIO_DEVICE_GET_REGION_INFO:
            return self.get_region_info(arg)
        if cmd == simapi.IOASID_SIM_DEVICE_DMA:
            return self.sim_dma(arg)
        fail(
            errno.EINVAL, f"VFIO device: ioctl {cmd:#x} is not supported by the simulated vfio-pci"
        )

    def _read(self, arg: int, struct_t: type[uapi.Struct], minsz: int) -> uapi.Struct:
        return struct_t.from_bytes(self.kernel.copy_from_user(arg, minsz))

    def bind_iommufd(self, arg: int) -> int:
        """``vfio_df_ioctl_bind_iommufd``: argsz < minsz → EINVAL; bytes past the struct
        non-zero → E2BIG; iommufd < 0 or unknown flags → EINVAL; already bound → EINVAL;
        not an iommufd → EBADF/EINVAL; then ``iommufd_device_bind``; ``out_devid``."""
        st = uapi.vfio_device_bind_iommufd
        minsz = st.offsetofend("out_devid")
        argsz = int.from_bytes(self.kernel.copy_from_user(arg, 4), "little")
        if argsz < minsz:
            fail(errno.EINVAL, f"VFIO_DEVICE_BIND_IOMMUFD: argsz {argsz} < {minsz}")
        ksize = ctypes.sizeof(st)
        raw = self.kernel.copy_from_user(arg, min(argsz, ksize))
        if argsz > ksize and not check_zeroed_user(self.kernel, arg + ksize, argsz - ksize):
            fail(errno.E2BIG, "VFIO_DEVICE_BIND_IOMMUFD: bytes past the struct are not zero")
        bind = st.from_bytes(raw)
        if bind.iommufd < 0 or bind.flags & ~uapi.VFIO_DEVICE_BIND_FLAG_TOKEN:
            fail(errno.EINVAL, f"VFIO_DEVICE_BIND_IOMMUFD: bad iommufd {bind.iommufd} or flags")
        if self.idev is not None or self.vdev.bound is not None:
            fail(errno.EINVAL, "VFIO_DEVICE_BIND_IOMMUFD: the device is already bound")
        file = self.kernel.fget(bind.iommufd)
        if file is None and not self.kernel.anon_inodes.is_open(bind.iommufd):
            fail(errno.EBADF, f"VFIO_DEVICE_BIND_IOMMUFD: fd {bind.iommufd} is not open")
        ictx = iommufd_ctx_from_file(file)
        if ictx is None:
            fail(errno.EBADFD, f"VFIO_DEVICE_BIND_IOMMUFD: fd {bind.iommufd} is not an iommufd")
        group = getattr(self.vdev.driver, "group", None)
        # iommufd_ctx_from_fd holds the iommufd file until the device is unbound
        ictx.get_file()
        try:
            if group is not None:
                group.claim_dma_owner(ictx, str(self.vdev.function.bdf))
            try:
                idev = Device.bind(ictx, self.vdev.driver)
            except OSError:
                if group is not None:
                    group.release_dma_owner()
                raise
            off = st.offsetof("out_devid")
            try:
                self.kernel.copy_to_user(arg + off, idev.id.to_bytes(4, "little"))
            except OSError:
                # out_close_device: vfio_df_close() unbinds again
                idev.unbind()
                if group is not None:
                    group.release_dma_owner()
                raise
        except OSError:
            ictx.release()
            raise
        self.idev = idev
        self.ictx = ictx
        self.vdev.bound = self
        return 0

    def _read_pt(
        self, arg: int, st: type[uapi.Struct], minsz_field: str, pasid_flag: int, name: str
    ) -> tuple[uapi.Struct, int | None]:
        """The argsz/flags checks ATTACH and DETACH share; the PASID field is read only when
        the flag asks for it (and then must fit in ``argsz``)."""
        minsz = st.offsetofend(minsz_field)
        cmd = self._read(arg, st, minsz)
        if cmd.argsz < minsz:
            fail(errno.EINVAL, f"{name}: argsz {cmd.argsz} < {minsz}")
        if cmd.flags & ~pasid_flag:
            fail(errno.EINVAL, f"{name}: unknown flags {cmd.flags & ~pasid_flag:#x}")
        if not cmd.flags & pasid_flag:
            return cmd, None
        xend = st.offsetofend("pasid")
        if cmd.argsz < xend:
            fail(errno.EINVAL, f"{name}: argsz {cmd.argsz} < {xend} with the PASID flag")
        cmd = self._read(arg, st, xend)
        return cmd, int(cmd.pasid)

    def attach_pt(self, arg: int) -> int:
        """``vfio_df_ioctl_attach_pt``: argsz/flags → EINVAL; with ``VFIO_DEVICE_ATTACH_PASID``
        the device's PASID is attached instead of its RID; attach (or replace, when
        attached) to ``pt_id``; ``pt_id`` out -- when that copy faults (EFAULT) the RID is
        detached (``out_detach``), also after a replace, and also after a PASID attach,
        whose PASID stays attached: 7.3's unwind calls ``detach_ioas``, never the PASID's."""
        st = uapi.vfio_device_attach_iommufd_pt
        at, pasid = self._read_pt(
            arg, st, "pt_id", uapi.VFIO_DEVICE_ATTACH_PASID, "VFIO_DEVICE_ATTACH_IOMMUFD_PT"
        )
        assert self.idev is not None
        if pasid is None:
            pt_id = self.idev.replace(at.pt_id) if self.idev.hwpt else self.idev.attach(at.pt_id)
        else:
            pt_id = self.idev.attach(at.pt_id, pasid)
        off = st.offsetof("pt_id")
        try:
            self.kernel.copy_to_user(arg + off, pt_id.to_bytes(4, "little"))
        except OSError:
            # out_detach: 7.3 calls detach_ioas() -- the RID's, even after a PASID attach
            if self.idev.hwpt is not None:
                self.idev.detach()
            raise
        return 0

    def detach_pt(self, arg: int) -> int:
        """``vfio_df_ioctl_detach_pt``: argsz/flags → EINVAL; detach the RID (or the PASID):
        its DMA is blocked."""
        _, pasid = self._read_pt(
            arg,
            uapi.vfio_device_detach_iommufd_pt,
            "flags",
            uapi.VFIO_DEVICE_DETACH_PASID,
            "VFIO_DEVICE_DETACH_IOMMUFD_PT",
        )
        assert self.idev is not None
        if pasid is None:
            self.idev.detach()
        else:
            self.idev.detach(pasid)
        return 0

    def sim_dma(self, arg: int) -> int:
        """``IOASID_SIM_DEVICE_DMA`` (ioasid's own): the device reads or writes ``length``
        bytes at ``iova`` as its hardware would. A fault → EIO with ``out_fault`` and
        ``out_done`` written back."""
        st = simapi.ioasid_sim_dma
        minsz = ctypes.sizeof(st)
        req = self._read(arg, st, minsz)
        known = simapi.IOASID_SIM_DMA_WRITE | simapi.IOASID_SIM_DMA_PASID
        if req.argsz < minsz or req.flags & ~known:
            fail(
                errno.EINVAL, f"IOASID_SIM_DEVICE_DMA: argsz {req.argsz} < {minsz} or unknown flags"
            )
        port = self.vdev.function.dma
        if port is None:
            fail(errno.ENODEV, "IOASID_SIM_DEVICE_DMA: the device has no DMA engine")
        pasid = req.pasid if req.flags & simapi.IOASID_SIM_DMA_PASID else None
        write = req.flags & simapi.IOASID_SIM_DMA_WRITE
        done = 0
        aspace = self.kernel.processes.current.mm.aspace
        direct = (
            UserDma.of(self.kernel.phys, aspace, req.uptr, req.length, to_device=bool(write))
            if req.length <= DMA_MAX_TRANSFER and isinstance(port, FabricDma)
            else None
        )
        try:
            if direct is not None and isinstance(port, FabricDma):
                # the caller's own, mapped buffer: straight between it and the pages
                port.transfer(req.iova, direct, bool(write), pasid)
            # USER_CHUNK at a time: no length makes this allocate more, and a transfer
            # stops at its first fault as the device's would
            while direct is None and done < req.length:
                n = min(USER_CHUNK, req.length - done)
                if write:
                    port.write(
                        req.iova + done, self.kernel.copy_from_user(req.uptr + done, n), pasid
                    )
                else:
                    self.kernel.copy_to_user(req.uptr + done, port.read(req.iova + done, n, pasid))
                done += n
        except DmaFault as fault:
            if self.idev is not None:
                report_dma_page_request(self.idev, pasid, fault.record.iova, bool(write))
            req.out_fault = _FAULT_CODES[fault.record.reason]
            req.out_done = done + fault.transferred
            self.kernel.copy_to_user(arg, bytes(req))
            fail(errno.EIO, str(DmaFault(fault.record, req.out_done)))
        req.out_fault, req.out_done = simapi.IOASID_SIM_FAULT_NONE, req.length
        self.kernel.copy_to_user(arg, bytes(req))
        return 0

    def get_info(self, arg: int) -> int:
        """``vfio_pci_ioctl_get_info`` (no capabilities chained)."""
        st = uapi.vfio_device_info
        minsz = st.offsetofend("num_irqs")
        info = self._read(arg, st, minsz)
        if info.argsz < minsz:
            fail(errno.EINVAL, f"VFIO_DEVICE_GET_INFO: argsz {info.argsz} < {minsz}")
        info.flags = uapi.VFIO_DEVICE_FLAGS_PCI
        info.num_regions = NUM_REGIONS
        info.num_irqs = NUM_IRQS
        self.kernel.copy_to_user(arg, bytes(info)[:minsz])
        return 0

    def get_region_info(self, arg: int) -> int:
        """``vfio_pci_ioctl_get_region_info``: BARs and the config space."""
        st = uapi.vfio_region_info
        minsz = st.offsetofend("offset")
        info = self._read(arg, st, minsz)
        if info.argsz < minsz:
            fail(errno.EINVAL, f"VFIO_DEVICE_GET_REGION_INFO: argsz {info.argsz} < {minsz}")
        fn = self.vdev.function
        index = info.index
        info.offset = index << VFIO_PCI_OFFSET_SHIFT
        rw = uapi.VFIO_REGION_INFO_FLAG_READ | uapi.VFIO_REGION_INFO_FLAG_WRITE
        if index == uapi.VFIO_PCI_CONFIG_REGION_INDEX:
            info.size, info.flags = len(fn.config), rw
        elif index < len(fn.bar_sizes):
            info.size, info.flags = fn.bar_sizes[index], rw
        elif index < NUM_REGIONS:
            info.size, info.flags = 0, 0
        else:
            fail(errno.EINVAL, f"VFIO_DEVICE_GET_REGION_INFO: no region {index}")
        self.kernel.copy_to_user(arg, bytes(info)[:minsz])
        return 0

    # read / write -------------------------------------------------------------------------

    def _region(self, offset: int) -> tuple[int, int]:
        if self.idev is None:
            fail(errno.EINVAL, "VFIO device: bind it to an iommufd first")
        return offset >> VFIO_PCI_OFFSET_SHIFT, offset & ((1 << VFIO_PCI_OFFSET_SHIFT) - 1)

    def pread(self, n: int, offset: int) -> bytes:
        """``vfio_pci_rw``: config space past ``cfg_size`` → EFAULT; a BAR read from its
        end on → EINVAL, else cut at the end (``vfio_pci_bar_rw``)."""
        index, off = self._region(offset)
        fn = self.vdev.function
        if index == uapi.VFIO_PCI_CONFIG_REGION_INDEX:
            self._check_config(off, n)
            return fn.config_read(off, n)
        if index < len(fn.bar_sizes):
            return fn.bar_read(index, off, self._bar_count(index, off, n))
        fail(errno.EINVAL, f"VFIO device: region {index} cannot be read")

    def pwrite(self, data: bytes, offset: int) -> int:
        index, off = self._region(offset)
        fn = self.vdev.function
        if index == uapi.VFIO_PCI_CONFIG_REGION_INDEX:
            self._check_config(off, len(data))
            fn.config_write(off, data)
        elif index < len(fn.bar_sizes):
            n = self._bar_count(index, off, len(data))
            fn.bar_write(index, off, data[:n])
            return n
        else:
            fail(errno.EINVAL, f"VFIO device: region {index} cannot be written")
        return len(data)

    def _check_config(self, off: int, n: int) -> None:
        size = len(self.vdev.function.config)
        if off + n > size:
            fail(errno.EFAULT, f"VFIO device: config space [{off:#x}, +{n:#x}) is past {size:#x}")

    def _bar_count(self, index: int, off: int, n: int) -> int:
        end = self.vdev.function.bar_sizes[index]
        if off >= end:
            fail(errno.EINVAL, f"VFIO device: offset {off:#x} is past BAR{index}'s {end:#x} bytes")
        return min(n, end - off)

    def release(self) -> None:
        """``vfio_df_unbind_iommufd``: closing the cdev detaches and unbinds the device."""
        if self.idev is not None:
            self.idev.unbind()
            self.idev = None
            self.vdev.bound = None
            group = getattr(self.vdev.driver, "group", None)
            if group is not None:
                group.release_dma_owner()
            ictx, self.ictx = self.ictx, None
            if ictx is not None:
                ictx.release()
