"""PCI functions as the simulated host sees them: config space and BARs.

A function's DMA goes through its :class:`ioasid.hw.dma.DmaEngine` (set when an IOMMU unit
is given), so a device model only says *what* it reads and writes, at which IOVA.
"""

from __future__ import annotations

import struct
from typing import Protocol

from ioasid.hw.dma import DmaBuffer, DmaEngine, check_transfer
from ioasid.topology.model import Bdf

__all__ = ["Bdf", "Fabric", "FabricDma", "PciFunction"]

PCI_COMMAND = 0x04
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_MASTER = 0x4


class DmaPort(Protocol):
    """A function's bus-master port: where its DMA reads and writes go."""

    def read(self, iova: int, length: int, pasid: int | None = None) -> bytes: ...

    def write(self, iova: int, data: bytes | memoryview, pasid: int | None = None) -> None: ...


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
        self.dma: DmaPort | None = None

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


class Fabric:
    """Where a DMA request goes before any IOMMU sees it.

    A request whose address falls in a peer's BAR is routed by switches and multifunction
    devices straight to that peer when no ACS control redirects it upstream (the P2P
    domains of :func:`ioasid.topology.audit.p2p_domains`): it is never translated. Every
    other request goes up to the root complex and through the IOMMU.
    """

    def __init__(self) -> None:
        self.functions: dict[Bdf, PciFunction] = {}
        self.bars: list[tuple[int, int, PciFunction, int]] = []
        self.p2p_domain: dict[Bdf, int] = {}
        self.log: list[tuple[Bdf, Bdf, int, int]] = []
        """Peer-to-peer writes that bypassed the IOMMU: (source, target, address, bytes)."""

    def add(self, fn: PciFunction, bar_base: int | None = None) -> None:
        self.functions[fn.bdf] = fn
        if bar_base is not None and fn.bar_sizes:
            base = bar_base
            for index, size in enumerate(fn.bar_sizes):
                self.bars.append((base, base + size, fn, index))
                struct.pack_into("<I", fn.config, 0x10 + 4 * index, base & 0xFFFFFFF0)
                base += size

    def route(self, source: Bdf, addr: int) -> tuple[PciFunction, int, int, int] | None:
        """The peer (function, BAR, offset, bytes left in the BAR) a request from
        ``source`` reaches untranslated."""
        domain = self.p2p_domain.get(source)
        if domain is None:
            return None
        for start, end, fn, index in self.bars:
            if start <= addr < end and fn.bdf != source and self.p2p_domain.get(fn.bdf) == domain:
                return fn, index, addr - start, end - addr
        return None


class FabricDma:
    """A function's bus-master port: peer-to-peer where the fabric allows, else the IOMMU."""

    def __init__(self, fabric: Fabric, fn: PciFunction, engine: DmaEngine) -> None:
        self.fabric = fabric
        self.fn = fn
        self.engine = engine

    @property
    def faults(self) -> list[object]:
        return list(self.engine.faults)

    def read(self, iova: int, length: int, pasid: int | None = None) -> bytes:
        """A read is routed piece by piece: the part inside a peer's BAR comes from the
        peer, what lies past the BAR's end is routed again (as the TLPs of a long read
        are)."""
        check_transfer(length)
        peer = self.fabric.route(self.fn.bdf, iova) if pasid is None else None
        if peer is None:
            return self.engine.read(iova, length, pasid)
        target, bar, off, room = peer
        if length <= room:
            return target.bar_read(bar, off, length)
        return target.bar_read(bar, off, room) + self.read(iova + room, length - room, pasid)

    def transfer(self, iova: int, buf: DmaBuffer, write: bool, pasid: int | None = None) -> None:
        """:meth:`write` from / :meth:`read` into ``buf`` (straight through the IOMMU
        when the address reaches no peer)."""
        check_transfer(buf.length)
        if pasid is None and self.fabric.route(self.fn.bdf, iova) is not None:
            if write:
                self.write(iova, buf.read(0, buf.length), pasid)
            else:
                buf.write(0, self.read(iova, buf.length, pasid))
            return
        self.engine.transfer(iova, buf, write, pasid)

    def write(self, iova: int, data: bytes | memoryview, pasid: int | None = None) -> None:
        check_transfer(len(data))
        peer = self.fabric.route(self.fn.bdf, iova) if pasid is None else None
        if peer is None:
            self.engine.write(iova, data, pasid)
            return
        target, bar, off, room = peer
        view = memoryview(data).cast("B")
        target.bar_write(bar, off, bytes(view[:room]))
        self.fabric.log.append((self.fn.bdf, target.bdf, iova, min(room, len(view))))
        if len(view) > room:
            self.write(iova + room, view[room:], pasid)
