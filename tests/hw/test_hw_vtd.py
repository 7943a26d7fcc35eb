"""VT-d second-stage tables, checked by decoding the raw u64 entries with the
specification's bit layout (VT-d spec §9.8), independently of the implementation."""

from __future__ import annotations

import errno

import pytest

from ioasid.hw.pagetable import Access, FaultReason, Prot, Translation, VtdSecondStage, WalkFault
from ioasid.hw.pagetable.base import PageTableError

RW = Prot.READ | Prot.WRITE
SZ_4K, SZ_2M, SZ_1G = 1 << 12, 1 << 21, 1 << 30

# Spec bit positions, written out independently of ioasid.hw.pagetable.vtd
R, W, PS, A, D, SNP = 1 << 0, 1 << 1, 1 << 7, 1 << 8, 1 << 9, 1 << 11
OA = ((1 << 52) - 1) & ~0xFFF


def spec_walk(pt: VtdSecondStage, iova: int) -> list[tuple[int, int]]:
    """The (level, entry) path a VT-d walker follows for ``iova``, by the spec alone."""
    path = []
    table = pt.read_table(pt.root_pa)
    for level in range(pt.top_level, -1, -1):
        entry = table[(iova >> (12 + 9 * level)) & 0x1FF]
        path.append((level, entry))
        if not entry & (R | W):
            break
        if level == 0 or (level in (1, 2) and entry & PS):
            break
        table = pt.read_table(entry & OA)
    return path


def leaf(pt: VtdSecondStage, iova: int) -> tuple[int, int]:
    level, entry = spec_walk(pt, iova)[-1]
    return level, entry


@pytest.mark.parametrize(("aw", "top", "levels"), [(39, 2, 3), (48, 3, 4), (57, 4, 5)])
def test_levels_and_aperture(aw: int, top: int, levels: int) -> None:
    pt = VtdSecondStage(aw)
    assert pt.top_level == top and pt.aw == levels - 2
    assert pt.aperture == (0, (1 << aw) - 1)
    assert pt.pgsize_bitmap == SZ_4K | SZ_2M | SZ_1G
    iova = (1 << aw) - SZ_4K
    pt.map(iova, 0x1234000, SZ_4K, RW)
    path = spec_walk(pt, iova)
    assert len(path) == levels
    assert [lv for lv, _ in path] == list(range(top, -1, -1))
    for _, entry in path[:-1]:
        assert entry & (R | W) == R | W and not entry & PS
    assert path[-1][1] & OA == 0x1234000
    with pytest.raises(PageTableError) as e:
        pt.map(1 << aw, 0, SZ_4K, RW)
    assert e.value.errno == errno.ERANGE
    fault = pt.walk(1 << aw, Access.READ)
    assert isinstance(fault, WalkFault) and fault.reason is FaultReason.ADDRESS_WIDTH


def test_leaf_sizes_encoded_by_spec() -> None:
    pt = VtdSecondStage(48)
    pt.map(0x4000_0000, 0x8000_0000, SZ_1G, RW)
    pt.map(0x20_0000, 0x60_0000, SZ_2M, Prot.READ)
    pt.map(0x1000, 0x7000, SZ_4K, Prot.WRITE)
    lv, e = leaf(pt, 0x4000_0000 + 0x1234)
    assert lv == 2 and e & PS and e & OA == 0x8000_0000 and e & (R | W) == R | W
    lv, e = leaf(pt, 0x20_0000 + 0x5000)
    assert lv == 1 and e & PS and e & OA == 0x60_0000 and e & (R | W) == R
    lv, e = leaf(pt, 0x1000)
    assert lv == 0 and not e & PS and e & OA == 0x7000 and e & (R | W) == W
    assert not e & (A | D | SNP)
    assert pt.iova_to_phys(0x4000_0000 + 0x1234) == 0x8000_1234
    assert pt.iova_to_phys(0x20_0000 + 0x1_2345) == 0x61_2345
    assert pt.iova_to_phys(0x3000) is None


def test_range_split_into_largest_leaves() -> None:
    pt = VtdSecondStage(48)
    iova, pa = SZ_2M - 2 * SZ_4K, 0x4000_0000 - 2 * SZ_4K
    length = 2 * SZ_4K + 2 * SZ_2M + 3 * SZ_4K
    pt.map(iova, pa, length, RW)
    sizes = [(t.iova, t.size, t.level) for t in pt.leaves()]
    assert sizes == [
        (SZ_2M - 2 * SZ_4K, SZ_4K, 0),
        (SZ_2M - SZ_4K, SZ_4K, 0),
        (SZ_2M, SZ_2M, 1),
        (2 * SZ_2M, SZ_2M, 1),
        (3 * SZ_2M, SZ_4K, 0),
        (3 * SZ_2M + SZ_4K, SZ_4K, 0),
        (3 * SZ_2M + 2 * SZ_4K, SZ_4K, 0),
    ]
    for t in pt.leaves():
        assert t.pa == pa + (t.iova - iova)


def test_misaligned_pa_or_no_superpages_uses_4k() -> None:
    pt = VtdSecondStage(48)
    pt.map(0, SZ_4K, SZ_2M, RW)
    assert {t.size for t in pt.leaves()} == {SZ_4K}
    pt2 = VtdSecondStage(48, super_pages=0)
    assert pt2.pgsize_bitmap == SZ_4K
    pt2.map(0, 0, SZ_1G, RW)
    lv, _ = leaf(pt2, SZ_1G - 1)
    assert lv == 0


def test_map_errors_and_rollback() -> None:
    pt = VtdSecondStage(48)
    for args, err in [
        ((0x1000, 0x1000, 0, RW), errno.EINVAL),
        ((0x1000, 0x1000, SZ_4K, Prot.NONE), errno.EINVAL),
        ((0x1000, 0x1000, SZ_4K, Prot.CACHE), errno.EINVAL),
        ((0x1800, 0x1000, SZ_4K, RW), errno.ENXIO),
        ((0x1000, 1 << 52, SZ_4K, RW), errno.ERANGE),
    ]:
        with pytest.raises(PageTableError) as e:
            pt.map(*args)
        assert e.value.errno == err, args
    pt.map(0x10_0000, 0, SZ_4K, RW)
    with pytest.raises(PageTableError) as e:
        pt.map(0, 0x4000_0000, SZ_2M, RW)
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(PageTableError) as e:
        pt.map(0xF_0000, 0x4000_0000, 0x20_0000, RW)
    assert e.value.errno == errno.EADDRINUSE
    assert [(t.iova, t.size) for t in pt.leaves()] == [(0x10_0000, SZ_4K)]


def test_large_leaf_replaces_empty_table() -> None:
    pt = VtdSecondStage(48)
    pt.map(SZ_4K, 0, SZ_4K, RW)
    pt.unmap(SZ_4K, SZ_4K)
    lv, e = spec_walk(pt, 0)[-1]
    assert lv == 0 and e == 0
    pt.map(0, SZ_2M, SZ_2M, RW)
    assert leaf(pt, 0)[0] == 1


def test_unmap_semantics() -> None:
    pt = VtdSecondStage(48)
    pt.map(0, 0, 4 * SZ_4K, RW)
    pt.map(SZ_2M, SZ_2M, SZ_2M, RW)
    assert pt.unmap(SZ_2M + SZ_4K, SZ_4K) == 0
    assert pt.unmap(SZ_2M, SZ_4K) == SZ_2M
    assert pt.iova_to_phys(SZ_2M) is None
    assert pt.unmap(SZ_4K, 8 * SZ_4K) == 3 * SZ_4K
    assert pt.unmap(0, SZ_4K) == SZ_4K
    assert pt.unmap(0, SZ_4K) == 0
    assert pt.is_empty()


def test_unmap_frees_fully_covered_tables() -> None:
    pt = VtdSecondStage(48)
    base = pt.table_count
    pt.map(SZ_1G, 0, SZ_2M, RW)
    pt.map(SZ_1G + SZ_2M, SZ_4K, SZ_2M, RW)
    assert pt.table_count == base + 3
    assert pt.unmap(SZ_1G, 2 * SZ_2M) == 2 * SZ_2M
    assert pt.table_count == base + 2
    pt.map(SZ_1G, 0, SZ_1G, RW)
    assert pt.unmap(SZ_1G, SZ_1G) == SZ_1G


def test_walk_sets_accessed_and_dirty_only_with_ssade() -> None:
    pt = VtdSecondStage(48)
    pt.map(0x20_0000, 0x40_0000, SZ_2M, RW)
    pt.map(0x1000, 0x5000, SZ_4K, Prot.READ)
    t = pt.walk(0x20_0010, Access.WRITE)
    assert isinstance(t, Translation) and t.phys(0x20_0010) == 0x40_0010
    assert all(not e & (A | D) for _, e in spec_walk(pt, 0x20_0000))
    pt.ad_enabled = True
    t = pt.walk(0x20_0010, Access.READ)
    assert isinstance(t, Translation) and not t.dirty
    path = spec_walk(pt, 0x20_0000)
    assert all(e & A for _, e in path) and not path[-1][1] & D
    t = pt.walk(0x20_0010, Access.WRITE)
    assert isinstance(t, Translation) and t.dirty
    assert spec_walk(pt, 0x20_0000)[-1][1] & D
    fault = pt.walk(0x1000, Access.WRITE)
    assert isinstance(fault, WalkFault) and fault.reason is FaultReason.WRITE_PROTECTED
    assert not leaf(pt, 0x1000)[1] & D
    fault = pt.walk(0x3000, Access.READ)
    assert isinstance(fault, WalkFault) and fault.reason is FaultReason.NOT_PRESENT
    assert fault.level == 0
    fault = pt.walk(0x8000_0000, Access.READ)
    assert isinstance(fault, WalkFault) and fault.level == 2


def test_write_only_entry_faults_reads() -> None:
    pt = VtdSecondStage(48)
    pt.map(0, 0, SZ_4K, Prot.WRITE)
    fault = pt.walk(0, Access.READ)
    assert isinstance(fault, WalkFault) and fault.reason is FaultReason.READ_PROTECTED


def test_reserved_ps_above_pdpte_faults() -> None:
    pt = VtdSecondStage(48)
    pt.map(0, 0, SZ_4K, RW)
    pt._root[0] |= PS
    fault = pt.walk(0, Access.READ)
    assert isinstance(fault, WalkFault) and fault.reason is FaultReason.RESERVED


def test_read_and_clear_dirty_reports_whole_leaf() -> None:
    pt = VtdSecondStage(48)
    pt.map(0, 0, SZ_2M + 4 * SZ_4K, RW)
    pt.ad_enabled = True
    pt.walk(SZ_4K, Access.WRITE)
    pt.walk(SZ_2M + 2 * SZ_4K, Access.WRITE)
    pt.walk(SZ_2M + 3 * SZ_4K, Access.WRITE)
    assert pt.read_and_clear_dirty(0, 1 << 30, no_clear=True) == [
        (0, SZ_2M),
        (SZ_2M + 2 * SZ_4K, 2 * SZ_4K),
    ]
    assert pt.read_and_clear_dirty(0, 1 << 30) == [(0, SZ_2M), (SZ_2M + 2 * SZ_4K, 2 * SZ_4K)]
    assert pt.read_and_clear_dirty(0, 1 << 30) == []
    assert not leaf(pt, 0)[1] & D
    pt.set_dirty(SZ_2M)
    assert pt.read_and_clear_dirty(SZ_2M, SZ_4K) == [(SZ_2M, SZ_4K)]


def test_snoop_and_force_writeable() -> None:
    pt = VtdSecondStage(48)
    pt.force_coherence = True
    pt.map(0, 0, SZ_4K, RW)
    assert leaf(pt, 0)[1] & SNP
    nest = VtdSecondStage(48, force_writeable=True)
    with pytest.raises(PageTableError) as e:
        nest.map(0, 0, SZ_4K, Prot.READ)
    assert e.value.errno == errno.EINVAL


def test_sparse_tables() -> None:
    pt = VtdSecondStage(57)
    pt.map(0, 0, SZ_4K, RW)
    pt.map((1 << 57) - SZ_4K, 0, SZ_4K, RW)
    assert pt.table_count == 1 + 2 * 4


def test_large_map_is_batched() -> None:
    pt = VtdSecondStage(48)
    pt.map(0, SZ_4K, 256 << 20, RW)
    assert pt.iova_to_phys((256 << 20) - 1) == (256 << 20) + SZ_4K - 1
    assert pt.unmap(0, 256 << 20) == 256 << 20
    assert pt.is_empty()


def test_formats_satisfy_pagetable_protocol() -> None:
    from ioasid.hw.pagetable import MockPageTable, PageTable

    tables: list[PageTable] = [VtdSecondStage(48), MockPageTable()]
    assert all(isinstance(t, PageTable) for t in tables)
