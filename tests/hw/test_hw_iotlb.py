"""The IOTLB caches translations until invalidated, and never serves one after."""

from __future__ import annotations

from ioasid.hw.iommu import IommuCaps, IommuUnit
from ioasid.hw.iotlb import Iotlb
from ioasid.hw.pagetable import Access, FaultReason, Prot, Translation, WalkFault

RW = Prot.READ | Prot.WRITE
SZ_4K, SZ_2M = 1 << 12, 1 << 21


def test_stale_entry_never_used_after_invalidation() -> None:
    unit = IommuUnit(IommuCaps.vtd())
    domain = unit.domain_alloc_paging()
    unit.attach(0x100, domain)
    domain.map(0x1000, 0x5000, SZ_4K, RW)
    t = unit.translate(0x100, 0x1234, Access.READ)
    assert isinstance(t, Translation) and t.phys(0x1234) == 0x5234
    assert unit.iotlb.stats.misses == 1
    assert unit.translate(0x100, 0x1234, Access.READ) == t
    assert unit.iotlb.stats.hits == 1

    assert domain.unmap_nosync(0x1000, SZ_4K) == SZ_4K
    stale = unit.translate(0x100, 0x1234, Access.READ)
    assert stale == t, "hardware keeps using a cached translation until invalidated"

    domain.flush_iotlb(0x1000, SZ_4K)
    fault = unit.translate(0x100, 0x1234, Access.READ)
    assert isinstance(fault, WalkFault) and fault.reason is FaultReason.NOT_PRESENT

    domain.map(0x1000, 0x9000, SZ_4K, RW)
    t2 = unit.translate(0x100, 0x1000, Access.READ)
    assert isinstance(t2, Translation) and t2.pa == 0x9000
    assert domain.unmap(0x1000, SZ_4K) == SZ_4K
    fault = unit.translate(0x100, 0x1000, Access.READ)
    assert isinstance(fault, WalkFault)
    assert len(unit.iotlb) == 0


def test_large_leaf_is_one_entry_and_invalidated_by_any_overlap() -> None:
    tlb = Iotlb()
    t = Translation(
        iova=SZ_2M, pa=0, size=SZ_2M, readable=True, writable=True, dirty=False, level=1
    )
    tlb.fill(1, t)
    assert tlb.lookup(1, SZ_2M + 0x1234) is t
    assert tlb.lookup(1, 2 * SZ_2M) is None
    assert tlb.lookup(2, SZ_2M) is None
    assert tlb.invalidate(1, 2 * SZ_2M - SZ_4K, SZ_4K) == 1
    assert tlb.lookup(1, SZ_2M) is None
    assert tlb.stats.hits == 1 and tlb.stats.misses == 3


def test_domain_and_global_invalidation_and_capacity() -> None:
    tlb = Iotlb(capacity=4)
    for did in (1, 2):
        for i in range(2):
            tlb.fill(did, Translation(i * SZ_4K, 0, SZ_4K, True, True, False, 0))
    assert len(tlb) == 4
    tlb.fill(3, Translation(0, 0, SZ_4K, True, True, False, 0))
    assert len(tlb) == 4 and tlb.stats.evictions == 1
    assert tlb.lookup(1, 0) is None
    assert tlb.invalidate_domain(2) == 2
    assert tlb.lookup(2, SZ_4K) is None and tlb.lookup(3, 0) is not None
    assert tlb.flush_all() == 2 and len(tlb) == 0


def test_huge_range_invalidation_scans_instead_of_iterating() -> None:
    tlb = Iotlb()
    tlb.fill(1, Translation(1 << 40, 0, SZ_4K, True, True, False, 0))
    tlb.fill(1, Translation(0, 0, SZ_4K, True, True, False, 0))
    assert tlb.invalidate(1, 0, 1 << 47) == 2


def test_write_to_clean_cached_entry_rewalks_to_set_dirty() -> None:
    unit = IommuUnit(IommuCaps.vtd())
    domain = unit.domain_alloc_paging(2)
    unit.attach(1, domain)
    domain.map(0, 0x10000, SZ_4K, RW)
    domain.set_dirty_tracking(True)
    assert isinstance(unit.translate(1, 0, Access.READ), Translation)
    misses = unit.iotlb.stats.misses
    t = unit.translate(1, 0, Access.WRITE)
    assert isinstance(t, Translation) and t.dirty
    assert unit.iotlb.stats.fills == misses + 1
    assert domain.read_and_clear_dirty(0, SZ_4K) == [(0, SZ_4K)]
    t = unit.translate(1, 0, Access.WRITE)
    assert isinstance(t, Translation) and t.dirty
    assert domain.read_and_clear_dirty(0, SZ_4K) == [(0, SZ_4K)]
