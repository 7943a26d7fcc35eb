"""IOMMU units: domain allocation and the attach-compatibility rules of the drivers."""

from __future__ import annotations

import errno

import pytest

from ioasid.hw.iommu import DomainAllocFlags, Driver, IommuCaps, IommuUnit
from ioasid.hw.pagetable import MOCK_IOMMUPT_HUGE, HwError, Prot
from ioasid.hw.pagetable.radix import RadixPageTable

SZ_4K, SZ_2M, SZ_1G = 1 << 12, 1 << 21, 1 << 30
SNP, PS, OA = 1 << 11, 1 << 7, ((1 << 52) - 1) & ~0xFFF


def vtd_leaf_entry(pt: RadixPageTable, iova: int) -> int:
    table = pt.read_table(pt.root_pa)
    for level in range(pt.top_level, -1, -1):
        entry = table[(iova >> (12 + 9 * level)) & 0x1FF]
        if level == 0 or entry & PS:
            return entry
        table = pt.read_table(entry & OA)
    raise AssertionError


def test_vtd_domain_follows_caps() -> None:
    unit = IommuUnit(IommuCaps.vtd(address_width=39, levels=(3,), super_pages=0b01))
    d = unit.domain_alloc_paging()
    assert d.max_vasz_lg2 == 39 and d.pagetable.top_level == 2
    assert d.pgsize_bitmap == SZ_4K | SZ_2M
    assert unit.domain_compatible(d) is None
    deep = IommuUnit(IommuCaps.vtd(address_width=48, levels=(5,)))
    d5 = deep.domain_alloc_paging()
    assert d5.max_vasz_lg2 == 48 and d5.pagetable.top_level == 4
    big = IommuUnit(IommuCaps.vtd(address_width=57, levels=(4, 5)))
    assert big.domain_alloc_paging().max_vasz_lg2 == 57


@pytest.mark.parametrize(
    ("caps", "flags"),
    [
        (IommuCaps.vtd(dirty_tracking=False), DomainAllocFlags.DIRTY_TRACKING),
        (IommuCaps.vtd(nesting=False), DomainAllocFlags.NEST_PARENT),
        (IommuCaps.vtd(), 1 << 2),
        (IommuCaps.mock(dirty_tracking=False), DomainAllocFlags.DIRTY_TRACKING),
        (IommuCaps.mock(), 1 << 4),
    ],
)
def test_alloc_eopnotsupp(caps: IommuCaps, flags: int) -> None:
    with pytest.raises(HwError) as e:
        IommuUnit(caps).domain_alloc_paging(flags)
    assert e.value.errno == errno.EOPNOTSUPP


def test_mock_alloc_types() -> None:
    unit = IommuUnit(IommuCaps.mock())
    assert unit.domain_alloc_paging(pagetable_type=MOCK_IOMMUPT_HUGE).pgsize_bitmap & (1 << 20)
    with pytest.raises(HwError) as e:
        unit.domain_alloc_paging(pagetable_type=7)
    assert e.value.errno == errno.EOPNOTSUPP


def rule(unit: IommuUnit, domain: object) -> str:
    from ioasid.hw.iommu import Domain

    assert isinstance(domain, Domain)
    reason = unit.domain_compatible(domain)
    assert reason is not None
    with pytest.raises(HwError) as e:
        unit.attach(1, domain)
    assert e.value.errno == errno.EINVAL
    return reason


def test_compat_rules_vtd() -> None:
    full = IommuUnit(IommuCaps.vtd(address_width=57, levels=(3, 4, 5)), "dmar0")
    assert "dirty tracking" in rule(
        IommuUnit(IommuCaps.vtd(dirty_tracking=False)),
        full.domain_alloc_paging(DomainAllocFlags.DIRTY_TRACKING),
    )
    assert "nesting" in rule(
        IommuUnit(IommuCaps.vtd(nesting=False)),
        full.domain_alloc_paging(DomainAllocFlags.NEST_PARENT),
    )
    reason = rule(IommuUnit(IommuCaps.vtd(address_width=48)), full.domain_alloc_paging())
    assert "address width" in reason and "57" in reason and "48" in reason
    narrow = IommuUnit(IommuCaps.vtd(address_width=48, levels=(5,)))
    reason = rule(
        IommuUnit(IommuCaps.vtd(address_width=48, levels=(4,))), narrow.domain_alloc_paging()
    )
    assert "levels" in reason and "5" in reason
    reason = rule(
        IommuUnit(IommuCaps.vtd(super_pages=0b01)), IommuUnit(IommuCaps.vtd()).domain_alloc_paging()
    )
    assert "page sizes" in reason and hex(SZ_1G) in reason
    snoop = IommuUnit(IommuCaps.vtd())
    d = snoop.domain_alloc_paging()
    assert d.enforce_cache_coherency()
    assert "coherency" in rule(IommuUnit(IommuCaps.vtd(snoop_control=False)), d)
    assert "driven by" in rule(IommuUnit(IommuCaps.mock()), d)


def test_compat_rules_mock_no_dirty() -> None:
    unit = IommuUnit(IommuCaps.mock())
    d = unit.domain_alloc_paging(DomainAllocFlags.DIRTY_TRACKING)
    assert unit.domain_compatible(d) is None
    no_dirty = IommuUnit(IommuCaps.mock(dirty_tracking=False))
    assert "dirty" in rule(no_dirty, d)
    assert no_dirty.domain_compatible(unit.domain_alloc_paging()) is None


def test_enforce_cache_coherency_sets_snp_on_later_maps() -> None:
    unit = IommuUnit(IommuCaps.vtd())
    d = unit.domain_alloc_paging()
    unit.attach(1, d)
    d.map(0, 0, SZ_4K, Prot.READ | Prot.WRITE)
    assert d.enforce_cache_coherency() and d.force_snooping
    d.map(SZ_4K, 0, SZ_4K, Prot.READ | Prot.WRITE)
    assert not vtd_leaf_entry(d.pagetable, 0) & SNP
    assert vtd_leaf_entry(d.pagetable, SZ_4K) & SNP
    no_sc = IommuUnit(IommuCaps.vtd(snoop_control=False))
    d2 = no_sc.domain_alloc_paging()
    no_sc.attach(1, d2)
    assert not d2.enforce_cache_coherency()
    mock = IommuUnit(IommuCaps.mock()).domain_alloc_paging()
    assert mock.driver is Driver.MOCK and not mock.enforce_cache_coherency()


def test_domain_ids_and_attachments() -> None:
    unit = IommuUnit(IommuCaps.vtd(max_pasid_log2=8))
    a, b = unit.domain_alloc_paging(), unit.domain_alloc_paging()
    unit.attach(0x10, a)
    unit.attach(0x11, b)
    unit.attach(0x12, a, pasid=5)
    assert unit.domain_id(a) == 1 and unit.domain_id(b) == 2
    assert unit.attached(0x12, 5) is a and unit.attached(0x12) is None
    assert a.units == (unit,)
    with pytest.raises(HwError) as e:
        unit.attach(0x10, a, pasid=256)
    assert e.value.errno == errno.EINVAL
    unit.attach(0x11, a)
    assert unit.domain_id(b) is None and b.units == ()
    c = unit.domain_alloc_paging()
    unit.attach(0x13, c)
    assert unit.domain_id(c) == 2
    assert unit.detach(0x10) is a and unit.detach(0x10) is None
    assert unit.domain_id(a) == 1


def test_set_dirty_tracking_requires_dirty_ops() -> None:
    unit = IommuUnit(IommuCaps.mock())
    d = unit.domain_alloc_paging()
    with pytest.raises(HwError) as e:
        d.set_dirty_tracking(True)
    assert e.value.errno == errno.EINVAL
    d.set_dirty_tracking(False)
    dd = unit.domain_alloc_paging(DomainAllocFlags.DIRTY_TRACKING)
    dd.set_dirty_tracking(True)
    assert dd.dirty_tracking
