"""QEMU's ``edu`` educational PCI device (``hw/misc/edu.c``, 1234:11e8), register for register.

The simulated host also uses this register set, under other vendor/device ids, as the
programmable DMA engine of every endpoint it models: a test or the demo makes any device
read or write any address the way a driver would make the real one do it.

BAR0 (1 MiB): 0x00 identification ``0x010000ed``; 0x04 liveness (reads back the bitwise
inverse of what was written); 0x08 factorial; 0x80/0x88/0x90 DMA source, destination and
count; 0x98 DMA command (bit 0 start, bit 1 direction: 1 = device buffer → RAM, bit 2 raise
an interrupt). The 4 KiB DMA buffer sits at device address 0x40000. DMA runs through the
IOMMU like any bus-master access and completes before the command register reads back.
"""

from __future__ import annotations

import math

from ioasid.hw.dma import FAULT_LOG_MAX, DmaFault
from ioasid.hw.pci import Bdf, PciFunction

EDU_VENDOR, EDU_DEVICE = 0x1234, 0x11E8
DMA_START = 0x40000
DMA_SIZE = 4096
DMA_CMD_START, DMA_CMD_TO_RAM, DMA_CMD_IRQ = 1, 2, 4


class EduDevice(PciFunction):
    """The edu device; ``faults`` records DMA the IOMMU refused."""

    def __init__(
        self,
        bdf: Bdf,
        vendor: int = EDU_VENDOR,
        device: int = EDU_DEVICE,
        class_code: int = 0x00FF00,
    ) -> None:
        super().__init__(bdf, vendor, device, class_code, bar_sizes=(1 << 20,))
        self.buffer = bytearray(DMA_SIZE)
        self.regs = {0x04: 0, 0x08: 0, 0x20: 0, 0x24: 0, 0x80: 0, 0x88: 0, 0x90: 0, 0x98: 0}
        self.faults: list[DmaFault] = []

    def bar_read(self, bar: int, offset: int, n: int) -> bytes:
        if bar != 0:
            return bytes(n)
        if offset == 0x00:
            value = 0x010000ED
        elif offset == 0x04:
            value = ~self.regs[0x04] & 0xFFFFFFFF
        elif DMA_START <= offset < DMA_START + DMA_SIZE:
            off = offset - DMA_START
            return bytes(self.buffer[off : off + n]).ljust(n, b"\0")
        else:
            value = self.regs.get(offset, 0)
        return (value & ((1 << (8 * n)) - 1)).to_bytes(n, "little")

    def bar_write(self, bar: int, offset: int, data: bytes) -> None:
        if bar != 0:
            return
        if DMA_START <= offset < DMA_START + DMA_SIZE:
            off = offset - DMA_START
            self.buffer[off : off + len(data)] = data[: DMA_SIZE - off]
            return
        if offset not in self.regs:
            return
        value = int.from_bytes(data, "little")
        if offset == 0x08:
            # QEMU multiplies in uint32_t: n! mod 2^32, which is 0 from 34! on (32 factors 2)
            value = math.factorial(value) & 0xFFFFFFFF if value < 34 else 0
        self.regs[offset] = value
        if offset == 0x98 and value & DMA_CMD_START:
            self._dma()

    def _dma(self) -> None:
        src, dst, cnt = self.regs[0x80], self.regs[0x88], self.regs[0x90]
        cmd = self.regs[0x98]
        try:
            if self.dma is None or not self.bus_master:
                return
            if cmd & DMA_CMD_TO_RAM:
                off = src - DMA_START
                self.dma.write(dst, bytes(self.buffer[off : off + cnt]))
            else:
                off = dst - DMA_START
                self.buffer[off : off + cnt] = self.dma.read(src, cnt)
        except DmaFault as fault:
            self.faults.append(fault)
            if len(self.faults) > FAULT_LOG_MAX:  # a fault log, not a leak
                del self.faults[0]
        finally:
            self.regs[0x98] = cmd & ~DMA_CMD_START
