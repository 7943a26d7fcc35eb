"""Intel VT-d second-stage (SS) paging structures, as Linux 7.3 builds them with the generic
page table (``drivers/iommu/generic_pt/fmt/vtdss.h``) and as the IOMMU walks them (VT-d
spec §3.7 "Second-Stage Translation", §9.8 "Second-Stage Paging Entries").

Entry bits (``VTDSS_FMT_*``; there is no present bit — an entry is present iff R or W)::

    bit 0      R    read permission
    bit 1      W    write permission
    bit 7      PS   page size: leaf in an SS-PDE (2 MiB) or SS-PDPTE (1 GiB)
    bit 8      A    accessed, set by hardware when SSADE=1
    bit 9      D    dirty, set by hardware on a write when SSADE=1
    bit 11     SNP  snoop (set on every leaf once the domain enforces cache coherency)
    bits 51:12 OA   output address of the leaf, or of the next table

Levels as in ``vtdss.h``: 0 SS-PTE (4 KiB), 1 SS-PDE (2 MiB), 2 SS-PDPTE (1 GiB),
3 SS-PML4E, 4 SS-PML5E; the top level is 2/3/4 for a 3/4/5-level table (AW field 1/2/3,
39/48/57-bit input). Table entries are installed with R|W set (``vtdss_pt_install_table``):
permission is decided by the leaf, though the walker still ANDs every level as the
hardware does.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import ClassVar

from .base import PageTableError, Prot, einval
from .radix import EMPTY, LEAF, TABLE, RadixPageTable, default_table_allocator

VTDSS_FMT_R = 1 << 0
VTDSS_FMT_W = 1 << 1
VTDSS_FMT_PS = 1 << 7
VTDSS_FMT_A = 1 << 8
VTDSS_FMT_D = 1 << 9
VTDSS_FMT_SNP = 1 << 11
VTDSS_FMT_OA = ((1 << 52) - 1) & ~((1 << 12) - 1)

SZ_4K = 1 << 12
SZ_2M = 1 << 21
SZ_1G = 1 << 30

_TOP_LEVEL_FOR_AW = {39: 2, 48: 3, 57: 4}
_READ, _WRITE = int(Prot.READ), int(Prot.WRITE)


class VtdSecondStage(RadixPageTable):
    """A VT-d second-stage I/O page table (``struct pt_iommu_vtdss``).

    ``address_width`` is the input width (39, 48 or 57 bits; the domain's ``max_vasz_lg2``,
    from ``compute_vasz_lg2_ss()``); ``top_level`` defaults to the smallest walk holding it
    but a driver may pick a deeper walk limited to fewer bits. ``super_pages`` is the
    ``CAP.SLLPS`` field (bit 0: 2 MiB, bit 1: 1 GiB) the driver trims ``pgsize_bitmap``
    with. ``force_writeable`` is ``PT_FEAT_VTDSS_FORCE_WRITEABLE`` (nesting parents: a
    read-only map is ``EINVAL``, erratum 772415).
    """

    FORMAT: ClassVar[str] = "vtdss"
    GRANULE_LG2: ClassVar[int] = 12
    OA_SHIFT: ClassVar[int] = 12
    OA_MASK: ClassVar[int] = VTDSS_FMT_OA
    R_BIT: ClassVar[int] = VTDSS_FMT_R
    W_BIT: ClassVar[int] = VTDSS_FMT_W
    A_BIT: ClassVar[int] = VTDSS_FMT_A
    D_BIT: ClassVar[int] = VTDSS_FMT_D

    def __init__(
        self,
        address_width: int = 48,
        *,
        top_level: int | None = None,
        super_pages: int = 0b11,
        force_writeable: bool = False,
        table_allocator: Callable[[], int] = default_table_allocator,
    ) -> None:
        if top_level is None:
            if address_width not in _TOP_LEVEL_FOR_AW:
                raise PageTableError(
                    errno.EOPNOTSUPP, f"no VT-d SS walk for a {address_width}-bit width"
                )
            top_level = _TOP_LEVEL_FOR_AW[address_width]
        if not 2 <= top_level <= 4 or address_width > 12 + 9 * (top_level + 1):
            raise PageTableError(
                errno.EOPNOTSUPP,
                f"top level {top_level} cannot hold a {address_width}-bit address width",
            )
        possible = 0
        for level in range(min(top_level, 2) + 1):
            possible |= 1 << (12 + 9 * level)
        pgsize_bitmap = possible & ((1 << (address_width - 1)) - 1)
        if not super_pages & 1:
            pgsize_bitmap &= ~SZ_2M
        if not super_pages & 2:
            pgsize_bitmap &= ~SZ_1G
        super().__init__(
            top_level=top_level,
            max_vasz_lg2=address_width,
            max_oasz_lg2=52,
            pgsize_bitmap=pgsize_bitmap,
            aperture=(0, (1 << address_width) - 1),
            table_allocator=table_allocator,
        )
        self.force_coherence = False
        """``PT_FEAT_VTDSS_FORCE_COHERENCE``: set by ``enforce_cache_coherency``; later
        maps carry SNP."""
        self.force_writeable = force_writeable

    @property
    def aw(self) -> int:
        """The PASID/context entry AW field for this table: top level - 1."""
        return self.top_level - 1

    @property
    def ssptptr(self) -> int:
        """SSPTPTR (``pt_iommu_vtdss_hw_info``): the root table's physical address."""
        return self.root_pa

    def entry_type(self, entry: int, level: int) -> int:
        if not entry:
            return EMPTY
        if level == 0 or (level <= 2 and entry & VTDSS_FMT_PS):
            return LEAF
        return TABLE

    def entry_present(self, entry: int) -> bool:
        return bool(entry & (VTDSS_FMT_R | VTDSS_FMT_W))

    def reserved_fault(self, entry: int, level: int) -> bool:
        return level > 2 and bool(entry & VTDSS_FMT_PS)

    def make_table_entry(self, table_pa: int, level: int) -> int:
        return VTDSS_FMT_R | VTDSS_FMT_W | (table_pa & VTDSS_FMT_OA)

    def make_leaf_entry(self, oa: int, oasz_lg2: int, level: int, bits: int) -> int:
        entry = (oa & VTDSS_FMT_OA) | bits
        return entry | VTDSS_FMT_PS if level else entry

    def prot_bits(self, prot: Prot) -> int:
        p = int(prot)  # plain int: enum flag operators cost a microsecond per map
        if not p & (_READ | _WRITE):
            raise einval("VT-d SS entries need R or W (there is no present bit)")
        bits = 0
        if p & _READ:
            bits |= VTDSS_FMT_R
        if p & _WRITE:
            bits |= VTDSS_FMT_W
        if self.force_coherence:
            bits |= VTDSS_FMT_SNP
        if self.force_writeable and not p & _WRITE:
            raise einval("read-only mapping on a nesting parent (ERRATA_772415_SPR17)")
        return bits

    def leaf_prot(self, entry: int) -> Prot:
        prot = Prot.NONE
        if entry & VTDSS_FMT_R:
            prot |= Prot.READ
        if entry & VTDSS_FMT_W:
            prot |= Prot.WRITE
        if entry & VTDSS_FMT_SNP:
            prot |= Prot.CACHE
        return prot
