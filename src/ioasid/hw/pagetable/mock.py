"""The iommufd selftest mock domain's page table, as Linux 7.3 builds it.

In 7.3 ``drivers/iommu/iommufd/selftest.c`` no longer keeps an xarray of 2 KiB slots with
``MOCK_PFN_START_IOVA``/``LAST_IOVA``/``HUGE_IOVA`` marker bits (that was the ≤ 6.18 mock);
it instantiates the generic page table's AMDv1 format in its ``mock`` variant
(``drivers/iommu/generic_pt/fmt/iommu_mock.c``, ``AMDV1_IOMMUFD_SELFTEST``):

* granule (level-0 item) 2 KiB (``PT_GRANULE_LG2SZ = 11``), table pages still 4 KiB of 512
  u64 entries, so level items are 2 KiB / 1 MiB (``MOCK_HUGE_PAGE_SIZE``) / 512 MiB;
* ``starting_level = 2`` without dynamic top: 3 levels, a 38-bit IOVA space;
  ``hw_max_oasz_lg2 = 51``;
* ``pgsize_bitmap``: every power of two from 2 KiB to 64 GiB (AMDv1 contiguous entries),
  or exactly ``MOCK_HUGE_PAGE_SIZE | PAGE_SIZE`` for ``MOCK_IOMMUPT_HUGE``;
* the aperture is overridden to ``[MOCK_APERTURE_START, MOCK_APERTURE_LAST]`` for
  ``MOCK_IOMMUPT_DEFAULT`` only.

Entry bits (``AMDV1PT_FMT_*`` in ``fmt/amdv1.h``)::

    bit 0       PR          present
    bit 5       A           accessed (AMD IOMMU spec; set by our walker when enabled)
    bit 6       D           dirty (``AMDV1PT_FMT_D``)
    bits 11:9   NEXT_LEVEL  level of the next table; 0 = leaf of the item size,
                            7 = contiguous leaf whose size is encoded in the OA
    bits 51:12  OA          output address >> 11 (the 2 KiB granule), or the table
    bit 60      FC          force coherent
    bit 61      IR          read permission
    bit 62      IW          write permission

A contiguous leaf of 2^n bytes stores ``(oa >> 11) | (2^(n-12) - 1)`` in the OA field
(a string of ones encodes the size) and is replicated into every item it spans; a 4 KiB
map therefore is two identical level-0 entries, and its dirty state is the OR of both.

``IOMMU_TEST_OP_MD_CHECK_MAP`` needs :meth:`iova_to_phys` and the smallest page size
(:attr:`min_page_size`); ``IOMMU_TEST_OP_DIRTY`` needs :meth:`set_dirty`; the dirty
read-out is :meth:`read_and_clear_dirty`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from ioasid.uapi.iommufd_test import (
    MOCK_APERTURE_LAST,
    MOCK_APERTURE_START,
    MOCK_HUGE_PAGE_SIZE,
    MOCK_IOMMUPT_DEFAULT,
    MOCK_IOMMUPT_HUGE,
)

from .base import PageTableError, Prot, einval
from .radix import (
    EMPTY,
    LEAF,
    TABLE,
    IntArray,
    LeafTable,
    RadixPageTable,
    default_table_allocator,
)

AMDV1PT_FMT_PR = 1 << 0
AMDV1PT_FMT_A = 1 << 5
AMDV1PT_FMT_D = 1 << 6
AMDV1PT_FMT_NEXT_LEVEL_SHIFT = 9
AMDV1PT_FMT_NEXT_LEVEL = 0x7 << AMDV1PT_FMT_NEXT_LEVEL_SHIFT
AMDV1PT_FMT_NL_DEFAULT = 0
AMDV1PT_FMT_NL_SIZE = 7
AMDV1PT_FMT_OA = ((1 << 52) - 1) & ~((1 << 12) - 1)
AMDV1PT_FMT_FC = 1 << 60
AMDV1PT_FMT_IR = 1 << 61
AMDV1PT_FMT_IW = 1 << 62

MOCK_GRANULE_LG2 = 11
MOCK_TOP_LEVEL = 2
MOCK_MAX_VASZ_LG2 = MOCK_GRANULE_LG2 + 9 * (MOCK_TOP_LEVEL + 1)
MOCK_MAX_OASZ_LG2 = 51

_SZ_512G = 1 << 39
_HOST_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _mock_default_pgsize_bitmap() -> int:
    """``get_info()`` over ``amdv1pt_possible_sizes()`` of levels 0..2, minus the sizes a
    whole table spans (``log2_mod(…, max_vasz_lg2 - 1)``)."""
    bitmap = 0
    for level in range(MOCK_TOP_LEVEL + 1):
        isz = MOCK_GRANULE_LG2 + 9 * level
        hi = min(51, isz + 9 - 1)
        bitmap |= (((1 << (hi + 1)) - 1) & ~((1 << isz) - 1)) & ~_SZ_512G
    bitmap &= (1 << (MOCK_MAX_VASZ_LG2 - 1)) - 1
    return bitmap & ((1 << MOCK_MAX_OASZ_LG2) - 1)


class MockPageTable(RadixPageTable):
    """The selftest mock domain's AMDv1-"mock" table (``struct pt_iommu_amdv1`` in
    ``struct mock_iommu_domain``), for ``MOCK_IOMMUPT_DEFAULT`` or ``MOCK_IOMMUPT_HUGE``;
    any other ``pagetable_type`` is ``EOPNOTSUPP`` as in ``mock_domain_alloc_pgtable()``.
    """

    FORMAT: ClassVar[str] = "amdv1-mock"
    GRANULE_LG2: ClassVar[int] = MOCK_GRANULE_LG2
    OA_SHIFT: ClassVar[int] = 12
    OA_MASK: ClassVar[int] = AMDV1PT_FMT_OA
    R_BIT: ClassVar[int] = AMDV1PT_FMT_IR
    W_BIT: ClassVar[int] = AMDV1PT_FMT_IW
    A_BIT: ClassVar[int] = AMDV1PT_FMT_A
    D_BIT: ClassVar[int] = AMDV1PT_FMT_D
    LEAF_PRESENT_MASK: ClassVar[int] = AMDV1PT_FMT_PR

    def __init__(
        self,
        pagetable_type: int = MOCK_IOMMUPT_DEFAULT,
        *,
        table_allocator: Callable[[], int] = default_table_allocator,
    ) -> None:
        if pagetable_type == MOCK_IOMMUPT_DEFAULT:
            pgsize_bitmap = _mock_default_pgsize_bitmap()
            aperture = (MOCK_APERTURE_START, MOCK_APERTURE_LAST)
        elif pagetable_type == MOCK_IOMMUPT_HUGE:
            pgsize_bitmap = MOCK_HUGE_PAGE_SIZE | _HOST_PAGE_SIZE
            aperture = (0, (1 << MOCK_MAX_VASZ_LG2) - 1)
        else:
            raise PageTableError(errno.EOPNOTSUPP, f"unknown mock pagetable_type {pagetable_type}")
        super().__init__(
            top_level=MOCK_TOP_LEVEL,
            max_vasz_lg2=MOCK_MAX_VASZ_LG2,
            max_oasz_lg2=MOCK_MAX_OASZ_LG2,
            pgsize_bitmap=pgsize_bitmap,
            aperture=aperture,
            table_allocator=table_allocator,
        )
        self.pagetable_type = pagetable_type
        self.force_coherence = False

    def entry_type(self, entry: int, level: int) -> int:
        if not entry & AMDV1PT_FMT_PR:
            return EMPTY
        nl = (entry >> AMDV1PT_FMT_NEXT_LEVEL_SHIFT) & 7
        if level == 0 or nl in (AMDV1PT_FMT_NL_DEFAULT, AMDV1PT_FMT_NL_SIZE):
            return LEAF
        return TABLE

    def entry_present(self, entry: int) -> bool:
        return bool(entry & AMDV1PT_FMT_PR)

    def entry_num_contig_lg2(self, entry: int, level: int) -> int:
        if (entry >> AMDV1PT_FMT_NEXT_LEVEL_SHIFT) & 7 != AMDV1PT_FMT_NL_SIZE:
            return 0
        field = (entry & AMDV1PT_FMT_OA) >> 12
        ones = (~field & (field + 1)).bit_length() - 1
        return ones + 12 - (MOCK_GRANULE_LG2 + 9 * level)

    def leaf0_contig_lg2(self, entries: LeafTable) -> IntArray:
        field = (entries & np.uint64(AMDV1PT_FMT_OA)) >> np.uint64(12)
        ones = np.bitwise_count((~field & (field + np.uint64(1))) - np.uint64(1))
        nl = (entries >> np.uint64(AMDV1PT_FMT_NEXT_LEVEL_SHIFT)) & np.uint64(7)
        contig: IntArray = np.where(
            nl == AMDV1PT_FMT_NL_SIZE, ones.astype(np.int64) + (12 - MOCK_GRANULE_LG2), 0
        )
        return contig

    def leaf_oa(self, entry: int, level: int) -> int:
        field = (entry & AMDV1PT_FMT_OA) >> 12
        if (entry >> AMDV1PT_FMT_NEXT_LEVEL_SHIFT) & 7 == AMDV1PT_FMT_NL_SIZE:
            field &= field + 1
        return field << MOCK_GRANULE_LG2

    def make_table_entry(self, table_pa: int, level: int) -> int:
        return (
            AMDV1PT_FMT_PR
            | (level << AMDV1PT_FMT_NEXT_LEVEL_SHIFT)
            | (((table_pa >> MOCK_GRANULE_LG2) << 12) & AMDV1PT_FMT_OA)
            | AMDV1PT_FMT_IR
            | AMDV1PT_FMT_IW
        )

    def make_leaf_entry(self, oa: int, oasz_lg2: int, level: int, bits: int) -> int:
        field = oa >> MOCK_GRANULE_LG2
        entry = AMDV1PT_FMT_PR | bits
        if oasz_lg2 != MOCK_GRANULE_LG2 + 9 * level:
            entry |= AMDV1PT_FMT_NL_SIZE << AMDV1PT_FMT_NEXT_LEVEL_SHIFT
            field |= (1 << (oasz_lg2 - MOCK_GRANULE_LG2 - 1)) - 1
        return entry | ((field << 12) & AMDV1PT_FMT_OA)

    def prot_bits(self, prot: Prot) -> int:
        if not prot & (Prot.READ | Prot.WRITE):
            raise einval("map without IOMMU_READ or IOMMU_WRITE")
        bits = AMDV1PT_FMT_FC if self.force_coherence else 0
        if prot & Prot.READ:
            bits |= AMDV1PT_FMT_IR
        if prot & Prot.WRITE:
            bits |= AMDV1PT_FMT_IW
        return bits

    def leaf_prot(self, entry: int) -> Prot:
        prot = Prot.NONE
        if entry & AMDV1PT_FMT_IR:
            prot |= Prot.READ
        if entry & AMDV1PT_FMT_IW:
            prot |= Prot.WRITE
        if entry & AMDV1PT_FMT_FC:
            prot |= Prot.CACHE
        return prot
