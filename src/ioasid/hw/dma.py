"""A simulated device's DMA engine: reads and writes by IOVA (optionally PASID-tagged)
translated by the IOMMU unit the device sits behind, landing in physical memory.

What real hardware does on a fault, and what this model does: a DMA transaction is
translated page by page; when a page faults, the IOMMU records a fault (VT-d fault
recording registers / PRQ) and aborts that request (a read returns Unsupported Request /
completer abort, a write is dropped). Writes to earlier pages of the same transfer have
already been posted to memory and are not undone. This model does the same: every byte
before the faulting page has landed, nothing at or after it; the fault is appended to the
engine's :attr:`DmaEngine.faults` and :class:`DmaFault` is raised (a faulting read returns
no data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .iommu import IommuUnit
from .pagetable.base import Access, FaultReason, Translation

FAULT_LOG_MAX = 256
"""Fault records an engine keeps (the newest); older ones are dropped."""


class PhysMemory(Protocol):
    """Physical memory as DMA sees it. In the simulator a PA is the host virtual address
    of a pinned page (``ioasid.hw.memory``)."""

    def read(self, pa: int, n: int) -> bytes: ...

    def write(self, pa: int, data: bytes | memoryview) -> None: ...


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
        self.faults.append(record)
        if len(self.faults) > FAULT_LOG_MAX:  # a fault log, not a leak
            del self.faults[0]
        return DmaFault(record, transferred)

    def _check_pasid(self, iova: int, access: Access, pasid: int | None) -> None:
        if pasid is None:
            return
        width = min(self.pasid_width, self.unit.caps.max_pasid_log2)
        if pasid < 0 or pasid >> width:
            raise self._fault(iova, access, pasid, FaultReason.PASID_RANGE, -1, 0)

    def read(self, iova: int, length: int, pasid: int | None = None) -> bytes:
        """Device reads ``length`` bytes at ``iova`` (a memory read through the IOMMU)."""
        self._check_pasid(iova, Access.READ, pasid)
        translate = self.unit.translate
        mem_read = self.memory.read
        rid = self.rid
        chunks: list[bytes] = []
        done = 0
        run_pa = run_len = 0
        while done < length:
            cur = iova + done
            t = translate(rid, cur, Access.READ, pasid)
            if not isinstance(t, Translation):
                raise self._fault(cur, Access.READ, pasid, t.reason, t.level, done)
            pa = t.pa + (cur - t.iova)
            chunk = min(length - done, t.iova + t.size - cur)
            if run_len and run_pa + run_len == pa:
                run_len += chunk
            else:
                if run_len:
                    chunks.append(mem_read(run_pa, run_len))
                run_pa, run_len = pa, chunk
            done += chunk
        if run_len:
            chunks.append(mem_read(run_pa, run_len))
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def write(
        self, iova: int, data: bytes | bytearray | memoryview, pasid: int | None = None
    ) -> None:
        """Device writes ``data`` at ``iova`` (sets D in the leaves when A/D is on)."""
        src = memoryview(data).cast("B")
        length = len(src)
        self._check_pasid(iova, Access.WRITE, pasid)
        translate = self.unit.translate
        mem_write = self.memory.write
        rid = self.rid
        done = 0
        run_pa = run_off = run_len = 0
        while done < length:
            cur = iova + done
            t = translate(rid, cur, Access.WRITE, pasid)
            if not isinstance(t, Translation):
                if run_len:
                    mem_write(run_pa, src[run_off : run_off + run_len])
                raise self._fault(cur, Access.WRITE, pasid, t.reason, t.level, done)
            pa = t.pa + (cur - t.iova)
            chunk = min(length - done, t.iova + t.size - cur)
            if run_len and run_pa + run_len == pa:
                run_len += chunk
            else:
                if run_len:
                    mem_write(run_pa, src[run_off : run_off + run_len])
                run_pa, run_off, run_len = pa, done, chunk
            done += chunk
        if run_len:
            mem_write(run_pa, src[run_off : run_off + run_len])
