"""A simulated device's DMA engine: reads and writes by IOVA (optionally PASID-tagged)
translated by the IOMMU unit the device sits behind, landing in physical memory.

What real hardware does on a fault, and what this model does: a DMA transaction is
translated page by page; when a page faults, the IOMMU records a fault (VT-d fault
recording registers / PRQ) and aborts that request (a read returns Unsupported Request /
completer abort, a write is dropped). Writes to earlier pages of the same transfer have
already been posted to memory and are not undone. This model does the same: every byte
before the faulting page has landed, nothing at or after it; the fault is appended to the
engine's :attr:`DmaEngine.faults` and :class:`DmaFault` is raised (a faulting read returns
no data). Like the fault recording registers of an IOMMU, the record is bounded: the newest
:data:`FAULT_LOG_MAX` are kept and :attr:`DmaEngine.faults_dropped` counts the others.

A transfer is translated once per run of IOVA that is contiguous in physical memory and
copied once per run, straight between the caller's buffer and the pages; a transfer longer
than :data:`DMA_MAX_TRANSFER` is refused before any work (``EINVAL``), so no length makes the
model allocate or walk more than that.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Protocol

from .iommu import IommuUnit
from .pagetable.base import Access, FaultReason, HwError

FAULT_LOG_MAX = 256
"""Fault records an engine keeps, the newest (VT-d: at most 256 fault recording
registers, CAP.NFR); older ones are dropped and counted."""

DMA_MAX_TRANSFER = 1 << 30
"""The longest single transfer a simulated device issues (1 GiB)."""


def check_transfer(length: int) -> None:
    """``EINVAL`` for a transfer no simulated device issues: negative or above
    :data:`DMA_MAX_TRANSFER`."""
    if not 0 <= length <= DMA_MAX_TRANSFER:
        raise HwError(
            errno.EINVAL,
            f"DMA of {length:#x} bytes: a transfer is 0 to {DMA_MAX_TRANSFER:#x} bytes",
        )


class PhysMemory(Protocol):
    """Physical memory as DMA sees it. In the simulator a PA is the host virtual address
    of a pinned page (``ioasid.hw.memory``)."""

    def read(self, pa: int, n: int) -> bytes: ...

    def write(self, pa: int, data: bytes | memoryview) -> None: ...


class DmaBuffer(Protocol):
    """The other end of a transfer (``ioasid.hw.memory.UserDma``): ``length`` bytes the
    device reads or fills, moved to or from physical memory a run at a time."""

    length: int

    def read(self, offset: int, n: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...

    def to_phys(self, pa: int, offset: int, n: int) -> None: ...

    def from_phys(self, pa: int, offset: int, n: int) -> None: ...


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One recorded DMA fault (what a VT-d fault record / AMD event log entry carries)."""

    rid: int
    pasid: int | None
    iova: int
    access: Access
    reason: FaultReason
    level: int


class DmaFault(Exception):
    """A DMA transfer hit a translation or permission fault at ``record.iova``;
    ``transferred`` bytes before it were completed."""

    def __init__(self, record: FaultRecord, transferred: int) -> None:
        super().__init__(
            f"DMA {record.access.name.lower()} fault at IOVA {record.iova:#x}"
            f"{'' if record.pasid is None else f' PASID {record.pasid:#x}'}: "
            f"{record.reason.value} (after {transferred} bytes)"
        )
        self.record = record
        self.transferred = transferred


class DmaEngine:
    """The DMA engine of one device (requester ``rid``) behind ``unit``.

    ``pasid_width`` is the device's PASID capability width (0: it cannot emit
    PASID-tagged requests); a request with a wider PASID faults with ``PASID_RANGE``.
    Transfers are split per leaf and physically contiguous leaves are copied in one go.
    """

    def __init__(
        self, unit: IommuUnit, rid: int, memory: PhysMemory, *, pasid_width: int = 0
    ) -> None:
        self.unit = unit
        self.rid = rid
        self.memory = memory
        self.pasid_width = pasid_width
        self.faults: list[FaultRecord] = []
        self.faults_dropped = 0
        """Faults recorded after :data:`FAULT_LOG_MAX` others (the oldest went)."""

    def _fault(
        self,
        iova: int,
        access: Access,
        pasid: int | None,
        reason: FaultReason,
        level: int,
        transferred: int,
    ) -> DmaFault:
        record = FaultRecord(self.rid, pasid, iova, access, reason, level)
        faults = self.faults
        faults.append(record)
        if len(faults) > FAULT_LOG_MAX:  # a fault log, not a leak
            del faults[0]
            self.faults_dropped += 1
        return DmaFault(record, transferred)

    def _check_pasid(self, iova: int, access: Access, pasid: int | None) -> None:
        if pasid is None:
            return
        width = min(self.pasid_width, self.unit.caps.max_pasid_log2)
        if pasid < 0 or pasid >> width:
            raise self._fault(iova, access, pasid, FaultReason.PASID_RANGE, -1, 0)

    def _runs(
        self, iova: int, length: int, access: Access, pasid: int | None
    ) -> tuple[list[tuple[int, int]], FaultRecord | None, int]:
        """Translate ``[iova, iova+length)``: the ``(pa, n)`` runs of physically
        contiguous bytes up to the first fault, the fault's record (or None) and the bytes
        before it. One translation per leaf (the IOTLB holds a leaf), none per page."""
        runs, fault, done = self.unit.translate_runs(self.rid, iova, length, access, pasid)
        if fault is None:
            return runs, None, done
        record = FaultRecord(self.rid, pasid, iova + done, access, fault.reason, fault.level)
        return runs, record, done

    def _raise(self, record: FaultRecord, transferred: int) -> DmaFault:
        return self._fault(
            record.iova, record.access, record.pasid, record.reason, record.level, transferred
        )

    def read(self, iova: int, length: int, pasid: int | None = None) -> bytes:
        """Device reads ``length`` bytes at ``iova`` (a memory read through the IOMMU)."""
        check_transfer(length)
        self._check_pasid(iova, Access.READ, pasid)
        runs, fault, done = self._runs(iova, length, Access.READ, pasid)
        if fault is not None:
            raise self._raise(fault, done)
        memory = self.memory
        if len(runs) == 1:
            return memory.read(*runs[0])
        read_into = getattr(memory, "read_into", None)
        if read_into is None:
            return b"".join([memory.read(pa, n) for pa, n in runs])
        # memory that can fill a buffer (PhysMap): one copy per run into one buffer
        out = bytearray(length)
        view = memoryview(out)
        pos = 0
        for pa, n in runs:
            read_into(pa, view[pos : pos + n])
            pos += n
        return bytes(out)

    def transfer(
        self, iova: int, buf: DmaBuffer, write: bool, pasid: int | None = None
    ) -> None:
        """:meth:`write` of ``buf``'s bytes (``write``) or :meth:`read` into ``buf``, with
        no copy on the way: the same translations, faults and partial writes."""
        length = buf.length
        check_transfer(length)
        access = Access.WRITE if write else Access.READ
        self._check_pasid(iova, access, pasid)
        runs, fault, done = self._runs(iova, length, access, pasid)
        if write or fault is None:
            move = buf.to_phys if write else buf.from_phys
            pos = 0
            for pa, n in runs:
                move(pa, pos, n)
                pos += n
        if fault is not None:
            raise self._raise(fault, done)

    def write(
        self, iova: int, data: bytes | bytearray | memoryview, pasid: int | None = None
    ) -> None:
        """Device writes ``data`` at ``iova`` (sets D in the leaves when A/D is on)."""
        src = memoryview(data).cast("B")
        length = len(src)
        check_transfer(length)
        self._check_pasid(iova, Access.WRITE, pasid)
        runs, fault, done = self._runs(iova, length, Access.WRITE, pasid)
        mem_write = self.memory.write
        pos = 0
        for pa, n in runs:
            mem_write(pa, src[pos : pos + n])
            pos += n
        if fault is not None:
            raise self._raise(fault, done)
