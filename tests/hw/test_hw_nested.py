"""Nested translation on the simulated hardware: stage 1 (VT-d first stage in guest memory,
or the mock's identity) over a stage-2 table; the IOTLB tags the combined leaves with the
nested domain's own DID; faults name their stage."""

from __future__ import annotations

import pytest

from ioasid.hw.dma import DmaEngine, DmaFault
from ioasid.hw.iommu import DomainAllocFlags, IommuCaps, IommuUnit, NestedDomain
from ioasid.hw.pagetable import Access, FaultReason, Prot, Translation, WalkFault
from ioasid.hw.pagetable.nested import MockStage1
from ioasid.hw.pagetable.vtd_fs import FS_A, FS_D, VtdFirstStage, VtdFirstStageWriter

MEM_BASE = 0x1_0000_0000
MEM_SIZE = 8 << 20
RID = 0x100
GUEST_RAM = 4 << 20  # GPA [0, 4 MiB) -> PA [MEM_BASE, +4 MiB)
TABLES_GPA = 0x300000


class ByteMemory:
    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)

    def read(self, pa: int, n: int) -> bytes:
        return bytes(self.view[pa - MEM_BASE : pa - MEM_BASE + n])

    def write(self, pa: int, data: bytes | memoryview) -> None:
        self.view[pa - MEM_BASE : pa - MEM_BASE + len(data)] = data


def _vtd_setup() -> tuple[IommuUnit, object, ByteMemory, VtdFirstStageWriter, DmaEngine]:
    mem = ByteMemory(MEM_SIZE)
    unit = IommuUnit(IommuCaps.vtd(), "dmar1")
    s2 = unit.domain_alloc_paging(DomainAllocFlags.NEST_PARENT)
    s2.map(0, MEM_BASE, GUEST_RAM, Prot.READ | Prot.WRITE)
    guest = memoryview(mem.buf)[:GUEST_RAM]
    writer = VtdFirstStageWriter(guest, 0, TABLES_GPA)
    return unit, s2, mem, writer, DmaEngine(unit, RID, mem)


def test_vtd_first_stage_dma_lands_through_both_stages() -> None:
    unit, s2, mem, writer, dma = _vtd_setup()
    writer.map(0x7000_0000, 0x10_0000, 0x2000)  # GIOVA -> GPA 1 MiB, two pages
    nested = NestedDomain(s2, VtdFirstStage(writer.root_gpa), mem)  # type: ignore[arg-type]
    unit.attach(RID, nested)
    dma.write(0x7000_0FF0, b"A" * 0x20)  # crosses the page boundary
    assert mem.read(MEM_BASE + 0x10_0FF0, 0x20) == b"A" * 0x20
    assert dma.read(0x7000_0FF0, 0x20) == b"A" * 0x20
    # hardware set A on the walk and D on the leaf written, in guest memory
    leaf = nested.pagetable.stage1.walk(
        0x7000_0000, Access.READ, nested.pagetable._fetch, nested.pagetable._store
    )
    assert isinstance(leaf, Translation) and leaf.dirty
    root = int.from_bytes(mem.read(MEM_BASE + writer.root_gpa, 8), "little")
    assert root & FS_A and not root & FS_D


def test_vtd_nested_iotlb_tag_and_invalidation() -> None:
    unit, s2, mem, writer, dma = _vtd_setup()
    writer.map(0x7000_0000, 0x10_0000, 0x1000)
    nested = NestedDomain(s2, VtdFirstStage(writer.root_gpa), mem)  # type: ignore[arg-type]
    unit.attach(RID, nested)
    dma.write(0x7000_0000, b"old")
    assert unit.domain_id(nested) is not None and unit.domain_id(s2) is None
    # the guest remaps GIOVA without invalidating: the cached combined leaf is used
    writer.unmap(0x7000_0000, 0x1000)
    writer.map(0x7000_0000, 0x20_0000, 0x1000)
    dma.write(0x7000_0000, b"new")
    assert mem.read(MEM_BASE + 0x10_0000, 3) == b"new"
    # the guest's invalidation of the GIOVA: the next DMA walks the new table
    nested.flush_iotlb(0x7000_0000, 0x1000)
    dma.write(0x7000_0000, b"NEW")
    assert mem.read(MEM_BASE + 0x20_0000, 3) == b"NEW"
    # a stage-2 unmap flushes the nested domain's entries too (domain-selective)
    s2.unmap(0x20_0000, 0x1000)
    with pytest.raises(DmaFault) as exc:
        dma.write(0x7000_0000, b"x")
    assert exc.value.record.reason is FaultReason.NOT_PRESENT


def test_vtd_nested_faults_name_their_stage() -> None:
    _, s2, mem, writer, _ = _vtd_setup()
    writer.map(0x7000_0000, 0x10_0000, 0x1000, writable=False)
    writer.map(0x7100_0000, 0x50_0000, 0x1000)  # GPA beyond the guest RAM stage 2 maps
    nested = NestedDomain(s2, VtdFirstStage(writer.root_gpa), mem)  # type: ignore[arg-type]
    pt = nested.pagetable
    s1_miss = pt.walk(0x7200_0000, Access.READ)
    assert isinstance(s1_miss, WalkFault) and s1_miss.stage == 1
    assert s1_miss.reason is FaultReason.NOT_PRESENT
    s1_ro = pt.walk(0x7000_0000, Access.WRITE)
    assert isinstance(s1_ro, WalkFault) and s1_ro.stage == 1
    assert s1_ro.reason is FaultReason.WRITE_PROTECTED
    s2_miss = pt.walk(0x7100_0000, Access.READ)
    assert isinstance(s2_miss, WalkFault) and s2_miss.stage == 2
    # a stage-1 table whose GPA stage 2 does not map: the fetch faults at stage 2
    bad = NestedDomain(s2, VtdFirstStage(0x60_0000), mem)  # type: ignore[arg-type]
    fetch = bad.pagetable.walk(0x7000_0000, Access.READ)
    assert isinstance(fetch, WalkFault) and fetch.stage == 2


def test_mock_stage1_is_identity_over_stage2() -> None:
    mem = ByteMemory(MEM_SIZE)
    unit = IommuUnit(IommuCaps.mock(), "mock_iommu")
    parent = unit.domain_alloc_paging(DomainAllocFlags.NEST_PARENT)
    parent.map(0x100_0000, MEM_BASE, 0x10_0000, Prot.READ | Prot.WRITE)
    nested = NestedDomain(parent, MockStage1(), mem)  # type: ignore[arg-type]
    unit.attach(RID, nested)
    dma = DmaEngine(unit, RID, mem)
    dma.write(0x100_0800, b"mock")
    assert mem.read(MEM_BASE + 0x800, 4) == b"mock"
    assert unit.domain_id(nested) != unit.domain_id(parent)
    nested.free()
    assert nested not in parent.nested_children
