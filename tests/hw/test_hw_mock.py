"""The iommufd selftest mock domain (Linux 7.3: generic-pt AMDv1 "mock", 2 KiB granule),
checked the way the kernel selftests check it: ``MD_CHECK_MAP`` translations and the
``_test_mock_dirty_bitmaps`` oracle; entries decoded by the AMDv1 bit layout."""

from __future__ import annotations

import errno
import os

import pytest

from ioasid.hw.pagetable import (
    MOCK_APERTURE_LAST,
    MOCK_APERTURE_START,
    MOCK_HUGE_PAGE_SIZE,
    MOCK_IOMMUPT_DEFAULT,
    MOCK_IOMMUPT_HUGE,
    MOCK_PAGE_SIZE,
    Access,
    MockPageTable,
    Prot,
    Translation,
    dirty_ranges_to_bitmap,
)
from ioasid.hw.pagetable.base import PageTableError

RW = Prot.READ | Prot.WRITE
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

PR, AMD_A, AMD_D = 1 << 0, 1 << 5, 1 << 6
IR, IW = 1 << 61, 1 << 62
OA = ((1 << 52) - 1) & ~0xFFF


def nl(entry: int) -> int:
    return (entry >> 9) & 7


def raw_leaf(pt: MockPageTable, iova: int) -> tuple[int, int]:
    """(level, entry) for ``iova`` by the AMDv1 layout: NL 0/7 = leaf, else next table."""
    table = pt.read_table(pt.root_pa)
    for level in range(2, -1, -1):
        entry = table[(iova >> (11 + 9 * level)) & 0x1FF]
        if not entry & PR or level == 0 or nl(entry) in (0, 7):
            return level, entry
        assert nl(entry) == level
        table = pt.read_table(((entry & OA) >> 12) << 11)
    raise AssertionError


def test_geometry() -> None:
    pt = MockPageTable()
    assert pt.pgsize_bitmap == ((1 << 37) - 1) & ~((1 << 11) - 1)
    assert pt.min_page_size == MOCK_PAGE_SIZE
    assert pt.aperture == (MOCK_APERTURE_START, MOCK_APERTURE_LAST)
    assert pt.max_vasz_lg2 == 38
    huge = MockPageTable(MOCK_IOMMUPT_HUGE)
    assert huge.pgsize_bitmap == MOCK_HUGE_PAGE_SIZE | PAGE_SIZE
    assert huge.aperture == (0, (1 << 38) - 1)
    with pytest.raises(PageTableError) as e:
        MockPageTable(2)
    assert e.value.errno == errno.EOPNOTSUPP


def test_entry_encoding() -> None:
    pt = MockPageTable()
    base = MOCK_APERTURE_START
    pt.map(base, 0x10_0800, MOCK_PAGE_SIZE, Prot.READ)
    lv, e = raw_leaf(pt, base)
    assert lv == 0 and e & PR and nl(e) == 0 and e & IR and not e & IW
    assert ((e & OA) >> 12) << 11 == 0x10_0800
    pt.map(base + 0x1000, 0x20_0000, 0x1000, RW)
    lv0, e0 = raw_leaf(pt, base + 0x1000)
    lv1, e1 = raw_leaf(pt, base + 0x1800)
    assert lv0 == lv1 == 0 and e0 == e1 and nl(e0) == 7 and e0 & IR and e0 & IW
    assert ((e0 & OA) >> 12) << 11 == 0x20_0000
    pt.map(base + MOCK_HUGE_PAGE_SIZE, 0x4010_0000, MOCK_HUGE_PAGE_SIZE, RW)
    lv, e = raw_leaf(pt, base + MOCK_HUGE_PAGE_SIZE)
    assert lv == 1 and nl(e) == 0 and ((e & OA) >> 12) << 11 == 0x4010_0000
    pt.map(base + 4 * MOCK_HUGE_PAGE_SIZE, 0x4020_0000, 2 * MOCK_HUGE_PAGE_SIZE, RW)
    lv, e = raw_leaf(pt, base + 4 * MOCK_HUGE_PAGE_SIZE)
    lv2, e2 = raw_leaf(pt, base + 5 * MOCK_HUGE_PAGE_SIZE)
    assert lv == lv2 == 1 and e == e2 and nl(e) == 7
    field = (e & OA) >> 12
    assert field == (0x4020_0000 >> 11) | ((1 << (21 - 12)) - 1)
    sizes = [(t.size, t.level) for t in pt.leaves()]
    assert sizes == [(2048, 0), (4096, 0), (1 << 20, 1), (2 << 20, 1)]


def md_check_map(pt: MockPageTable, iova: int, pas: list[int], length: int) -> bool:
    """``iommufd_test_md_check_pa()``: every MOCK_PAGE_SIZE chunk translates to the byte
    the user VA is backed by (``pas[i]`` backs CPU page ``i`` of the buffer)."""
    page = pt.min_page_size
    if iova % page or length % page:
        return False
    for off in range(0, length, page):
        expect = pas[off // PAGE_SIZE] + off % PAGE_SIZE
        if pt.iova_to_phys(iova + off) != expect:
            return False
    return True


def test_md_check_map_scattered_pages() -> None:
    pt = MockPageTable()
    npages = 64
    pas = [0x8000_0000 + ((i * 37) % npages) * 2 * PAGE_SIZE for i in range(npages)]
    for i, pa in enumerate(pas):
        pt.map(MOCK_APERTURE_START + i * PAGE_SIZE, pa, PAGE_SIZE, RW)
    assert md_check_map(pt, MOCK_APERTURE_START, pas, npages * PAGE_SIZE)
    assert not md_check_map(pt, MOCK_APERTURE_START, pas[1:] + pas[:1], npages * PAGE_SIZE)
    assert pt.iova_to_phys(MOCK_APERTURE_START + npages * PAGE_SIZE) is None
    assert pt.unmap(MOCK_APERTURE_START, npages * PAGE_SIZE) == npages * PAGE_SIZE
    assert pt.is_empty()


def test_unmap_cannot_split_contiguous_entry() -> None:
    pt = MockPageTable()
    pt.map(MOCK_APERTURE_START, 0x10_0000, 0x1000, RW)
    assert pt.unmap(MOCK_APERTURE_START + MOCK_PAGE_SIZE, MOCK_PAGE_SIZE) == 0
    assert pt.unmap(MOCK_APERTURE_START, MOCK_PAGE_SIZE) == 0x1000
    assert pt.is_empty()


def mock_dirty_oracle(
    pt: MockPageTable, iova: int, length: int, pte_page_size: int, no_clear: bool
) -> None:
    """``_test_mock_dirty_bitmaps()`` with ``page_size = MOCK_PAGE_SIZE``."""
    page_size = MOCK_PAGE_SIZE
    nbits = length // page_size
    npte = pte_page_size // page_size
    pteset = 2 * npte
    count = 0
    for i in range(0, nbits, pteset):
        pt.set_dirty(iova + i * page_size)
        count += 1
    assert count == (nbits // pteset or 1)
    for second in (False, True):
        ranges = pt.read_and_clear_dirty(iova, length, no_clear=no_clear)
        bitmap = dirty_ranges_to_bitmap(ranges, iova, length, page_size)
        for i in range(0, nbits, pteset):
            for j in range(pteset):
                bit = bool(bitmap[(i + j) // 8] >> ((i + j) % 8) & 1)
                expect = j < npte and (not second or no_clear)
                assert bit == expect, (second, i, j)


@pytest.mark.parametrize("no_clear", [False, True])
@pytest.mark.parametrize("buffer_size", [8 << 10, 64 << 10, 320 << 10, 4 << 20])
def test_dirty_oracle_default(buffer_size: int, no_clear: bool) -> None:
    pt = MockPageTable(MOCK_IOMMUPT_DEFAULT)
    pt.ad_enabled = True
    for off in range(0, buffer_size, PAGE_SIZE):
        pt.map(MOCK_APERTURE_START + off, 0x4000_0000 + off, PAGE_SIZE, RW)
    mock_dirty_oracle(pt, MOCK_APERTURE_START, buffer_size, PAGE_SIZE, no_clear)


@pytest.mark.parametrize("no_clear", [False, True])
def test_dirty_oracle_huge(no_clear: bool) -> None:
    pt = MockPageTable(MOCK_IOMMUPT_HUGE)
    size = 64 << 20
    pt.map(MOCK_APERTURE_START, 0x4000_0000, size, RW)
    assert {t.size for t in pt.leaves()} == {MOCK_HUGE_PAGE_SIZE}
    mock_dirty_oracle(pt, MOCK_APERTURE_START, size, MOCK_HUGE_PAGE_SIZE, no_clear)


def test_dma_walk_sets_accessed_dirty_on_the_item_hit() -> None:
    pt = MockPageTable()
    pt.map(MOCK_APERTURE_START, 0x10_0000, 0x1000, RW)
    pt.ad_enabled = True
    t = pt.walk(MOCK_APERTURE_START + 0x900, Access.WRITE)
    assert isinstance(t, Translation) and t.size == 0x1000 and t.dirty
    _, first = raw_leaf(pt, MOCK_APERTURE_START)
    _, second = raw_leaf(pt, MOCK_APERTURE_START + 0x800)
    assert not first & (AMD_A | AMD_D) and second & AMD_A and second & AMD_D
    assert pt.read_and_clear_dirty(MOCK_APERTURE_START, 0x1000) == [(MOCK_APERTURE_START, 0x1000)]
    _, second = raw_leaf(pt, MOCK_APERTURE_START + 0x800)
    assert not second & AMD_D
    assert not pt.set_dirty(MOCK_APERTURE_START + 0x1000)


@pytest.mark.parametrize("seed", range(4))
def test_set_dirty_bitmap_is_set_dirty_per_bit(seed: int) -> None:
    """IOMMU_TEST_OP_DIRTY's vectorised loop marks exactly what set_dirty would, bit by bit,
    over contiguous and 4 KiB leaves, holes and a range running past the table."""
    import random

    rnd = random.Random(seed)
    one, many = MockPageTable(), MockPageTable()
    base = MOCK_APERTURE_START
    for pt in (one, many):
        pt.map(base, 1 << 32, 1 << 21, RW)
        pt.map(base + (3 << 20), (1 << 32) + (8 << 20), 5 * 4096, RW)
        pt.map(base + (6 << 20) + 2048, (1 << 33) + 2048, 2048, RW)
    for page_size in (2048, 4096, 1 << 16):
        nbits = rnd.randrange(1, 4000)
        bitmap = bytes(rnd.choice([0, 255, rnd.randrange(256)]) for _ in range(nbits // 8 + 1))
        count = 0
        for i in range(nbits):
            if bitmap[i // 8] >> (i % 8) & 1:
                one.set_dirty(base + i * page_size)
                count += 1
        assert many.set_dirty_bitmap(base, page_size, bitmap, nbits) == count
    assert [(t.iova, t.size, t.dirty) for t in one.leaves()] == [
        (t.iova, t.size, t.dirty) for t in many.leaves()
    ]
    assert many.read_and_clear_dirty(base, 8 << 20) == one.read_and_clear_dirty(base, 8 << 20)
    assert many.set_dirty_bitmap((1 << 38) - 4096, 4096, b"\xff", 8) == 8


def test_set_dirty_bitmap_of_2_24_pages_is_bounded() -> None:
    pt = MockPageTable()
    pt.map(MOCK_APERTURE_START, 1 << 32, 4096, RW)
    bits = 1 << 24
    assert pt.set_dirty_bitmap(MOCK_APERTURE_START, 4096, b"\xff" * (bits // 8), bits) == bits
    assert pt.read_and_clear_dirty(MOCK_APERTURE_START, 4096) == [(MOCK_APERTURE_START, 4096)]
