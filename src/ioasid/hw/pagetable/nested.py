"""The nested walker: a DMA through a nested domain is translated by the guest's stage 1
(IOVA → GPA, with every stage-1 table entry itself fetched at a GPA through stage 2), then
by the parent's stage 2 (GPA → PA). The IOTLB caches the combined leaf (IOVA → PA) under
the nested domain's tag; a fault names the stage where it happened
(:attr:`WalkFault.stage`).

Stage-1 formats:

* :class:`~ioasid.hw.pagetable.vtd_fs.VtdFirstStage` — VT-d first stage
  (``IOMMU_HWPT_DATA_VTD_S1``);
* :class:`MockStage1` — the selftest mock's nested domain. 7.3's ``iommu_hwpt_selftest``
  carries no table pointer (only the ``iotlb`` tag value and a page-table type): the mock
  stage 1 is the identity, so IOVA = GPA and the walk is the parent's.
"""

from __future__ import annotations

from typing import Protocol

from .base import Access, Translation, WalkFault
from .radix import RadixPageTable
from .vtd_fs import Fetch, Store


class PhysMemory(Protocol):
    def read(self, pa: int, n: int) -> bytes: ...

    def write(self, pa: int, data: bytes | memoryview) -> None: ...


class Stage1(Protocol):
    FORMAT: str
    ad_always: bool

    def walk(
        self, iova: int, access: Access, fetch: Fetch, store: Store
    ) -> Translation | WalkFault: ...


class MockStage1:
    """The mock's stage 1: the identity (see the module docstring)."""

    FORMAT = "mock-s1"
    ad_always = False

    def walk(self, iova: int, access: Access, fetch: Fetch, store: Store) -> Translation:
        return Translation(0, 0, 1 << 64, True, True, True, -1)


class NestedPageTable:
    """What :class:`~ioasid.hw.iommu.IommuUnit` walks for a nested domain: ``stage1`` over
    the ``parent`` table, table fetches through ``memory``."""

    FORMAT = "nested"

    def __init__(self, stage1: Stage1, parent: RadixPageTable, memory: PhysMemory) -> None:
        self.stage1 = stage1
        self.parent = parent
        self.memory = memory

    @property
    def ad_enabled(self) -> bool:
        """A cached clean entry must be walked again on a write when either stage keeps
        A/D bits (VT-d first stage always does)."""
        return self.stage1.ad_always or self.parent.ad_enabled

    def _fetch(self, gpa: int) -> int | WalkFault:
        t = self.parent.walk(gpa, Access.READ)
        if isinstance(t, WalkFault):
            return t
        return int.from_bytes(self.memory.read(t.phys(gpa), 8), "little")

    def _store(self, gpa: int, value: int) -> None:
        t = self.parent.walk(gpa, Access.WRITE)
        if isinstance(t, Translation):
            self.memory.write(t.phys(gpa), value.to_bytes(8, "little"))

    def walk(self, iova: int, access: Access) -> Translation | WalkFault:
        """Stage 1, then stage 2 of the GPA; the combined leaf is the largest power of two
        inside both leaves (the smaller of the two sizes)."""
        s1 = self.stage1.walk(iova, access, self._fetch, self._store)
        if isinstance(s1, WalkFault):
            return s1
        gpa = s1.phys(iova)
        s2 = self.parent.walk(gpa, access)
        if isinstance(s2, WalkFault):
            return WalkFault(iova, access, s2.reason, s2.level, 2)
        size = min(s1.size, s2.size)
        start = iova & ~(size - 1)
        return Translation(
            iova=start,
            pa=s2.phys(gpa - (iova - start)),
            size=size,
            readable=s1.readable and s2.readable,
            writable=s1.writable and s2.writable,
            # clean until every stage that keeps a D bit has it set for this leaf
            dirty=s1.dirty and (s2.dirty or not self.parent.ad_enabled),
            level=s2.level,
        )

    def iova_to_phys(self, iova: int) -> int | None:
        t = self.walk(iova, Access.READ)
        return t.phys(iova) if isinstance(t, Translation) else None

    def is_empty(self) -> bool:
        return False
