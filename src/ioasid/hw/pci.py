"""PCI functions as the simulated host sees them: config space and BARs.

A function's DMA goes through its :class:`ioasid.hw.dma.DmaEngine` (set when an IOMMU unit
is given), so a device model only says *what* it reads and writes, at which IOVA.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ioasid.hw.dma import DmaEngine

PCI_COMMAND = 0x04
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_MASTER = 0x4


@dataclass(frozen=True, order=True)
class Bdf:
    """``DDDD:BB:DD.F``."""

    domain: int
    bus: int
    dev: int
    fn: int

    @classmethod
    def parse(cls, text: str) -> Bdf:
        try:
            dom, bus, rest = text.split(":")
            dev, fn = rest.split(".")
            return cls(int(dom, 16), int(bus, 16), int(dev, 16), int(fn, 16))
        except ValueError:
            raise ValueError(f"{text!r} is not a PCI address DDDD:BB:DD.F") from None

    @property
    def rid(self) -> int:
        """The requester id the IOMMU sees: bus << 8 | devfn."""
        return self.bus << 8 | self.dev << 3 | self.fn

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.dev:02x}.{self.fn:x}"


class PciFunction:
    """A PCI function: 4 KiB config space, memory BARs, and a DMA engine."""

    def __init__(
        self, bdf: Bdf, vendor: int, device: int, class_code: int, bar_sizes: tuple[int, ...] = ()
    ) -> None:
        self.bdf = bdf
        self.vendor = vendor
        self.device = device
        self.config = bytearray(4096)
        struct.pack_into("<HH", self.config, 0, vendor, device)
        struct.pack_into("<I", self.config, 8, class_code << 8)
        self.bar_sizes = bar_sizes
        self.dma: DmaEngine | None = None

    @property
    def bus_master(self) -> bool:
        return bool(self.config[PCI_COMMAND] & PCI_COMMAND_MASTER)

    def config_read(self, offset: int, n: int) -> bytes:
        return bytes(self.config[offset : offset + n])

    def config_write(self, offset: int, data: bytes) -> None:
        if offset <= PCI_COMMAND < offset + len(data):
            self.config[PCI_COMMAND] = data[PCI_COMMAND - offset] & 0x07
            data = data[: PCI_COMMAND - offset] + data[PCI_COMMAND - offset + 1 :]
            if not data:
                return
        end = offset + len(data)
        if offset >= 0x40 and end <= len(self.config):
            self.config[offset:end] = data

    def bar_read(self, bar: int, offset: int, n: int) -> bytes:
        return bytes(n)

    def bar_write(self, bar: int, offset: int, data: bytes) -> None:
        """Writes to unimplemented registers are dropped, as on hardware."""
