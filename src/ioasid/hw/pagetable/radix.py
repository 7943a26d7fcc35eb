"""The radix-tree engine shared by the formats, modelled on Linux 7.3's generic page table
(``drivers/iommu/generic_pt/iommu_pt.h``): the same page-size choice, the same per-level
leaf installation, the same unmap rules, the same dirty read-out. A format subclass only
says how an entry is encoded (:class:`RadixPageTable` hooks), exactly as ``fmt/*.h`` does
for the C template.

Every table is one 4 KiB table page of 512 little-endian u64 entries, addressed by a
simulated physical address that the parent entry encodes in its OA field, so a test can walk
the tree by the specification's bit layout alone (:meth:`RadixPageTable.read_table`). Tables
exist only where something was mapped: the structure is as sparse as the hardware's. Upper
tables are Python lists (one item read per level of a walk); level-0 tables, where the runs of
a map and the dirty bits live, are numpy ``uint64`` arrays, so a map, an unmap or a dirty
read-out writes or scans a whole run of entries at once, as the kernel's loops over one table
page do in C.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from .base import (
    Access,
    FaultReason,
    PageTableError,
    Prot,
    Translation,
    WalkFault,
    best_pgsize_lg2,
    einval,
    pgsz_count,
)

ITEMS_LG2 = 9
ITEMS = 1 << ITEMS_LG2
INDEX_MASK = ITEMS - 1
TABLE_SIZE = 4096

EMPTY = 0
TABLE = 1
LEAF = 2

LeafTable = npt.NDArray[np.uint64]
"""A level-0 table page: 512 encoded u64 entries."""

IntArray = npt.NDArray[np.int64]

DIRTY_CHUNK_BITS = 1 << 20
"""Bits of an ``IOMMU_TEST_OP_DIRTY`` bitmap turned into IOVAs at a time (bounded memory)."""

_TABLE_PA_BASE = 1 << 40
_table_pa_counter = itertools.count()


def default_table_allocator() -> int:
    """Hand out a fresh, 4 KiB-aligned simulated physical address for a table page.

    The addresses lie at 1 TiB and up: they only have to be unique and to fit every
    format's OA field; no byte of the page is stored in :class:`PhysMemory`.
    """
    return _TABLE_PA_BASE + next(_table_pa_counter) * TABLE_SIZE


class RadixPageTable:
    """A multi-level radix I/O page table of 512-entry tables.

    ``granule_lg2`` is the size of a level-0 item (12 for VT-d, 11 for the mock), level *L*
    items span ``granule_lg2 + 9*L`` bits, the top table is at ``top_level``. ``max_vasz_lg2``
    bounds the IOVA (``-ERANGE`` beyond it on map, an address-width fault on a walk).
    """

    FORMAT: ClassVar[str] = "radix"
    GRANULE_LG2: ClassVar[int] = 12
    OA_SHIFT: ClassVar[int] = 12
    OA_MASK: ClassVar[int] = ((1 << 52) - 1) & ~((1 << 12) - 1)
    R_BIT: ClassVar[int] = 0
    W_BIT: ClassVar[int] = 0
    A_BIT: ClassVar[int] = 0
    D_BIT: ClassVar[int] = 0
    LEAF_PRESENT_MASK: ClassVar[int] = (1 << 64) - 1
    """Bits of a level-0 item that make :meth:`entry_type` see a leaf (any bit: VT-d)."""

    def __init__(
        self,
        *,
        top_level: int,
        max_vasz_lg2: int,
        max_oasz_lg2: int,
        pgsize_bitmap: int,
        aperture: tuple[int, int],
        table_allocator: Callable[[], int] = default_table_allocator,
    ) -> None:
        self.top_level = top_level
        self.max_vasz_lg2 = max_vasz_lg2
        self.max_oasz_lg2 = max_oasz_lg2
        self._pgsize_bitmap = pgsize_bitmap
        self._aperture = aperture
        self._alloc_table_pa = table_allocator
        self._tables: dict[int, list[int]] = {}
        self._leaf_tables: dict[int, LeafTable] = {}
        self.root_pa = self._new_table(top_level)
        self._root = self._tables[self.root_pa]
        self.ad_enabled = False
        """Hardware Accessed/Dirty updates (VT-d SSADE in the PASID entry, AMD HAD in the
        DTE). Off by default, as after domain allocation; ``set_dirty_tracking`` turns it
        on."""

    # ---------------------------------------------------------------- format hooks

    def entry_type(self, entry: int, level: int) -> int:
        """``pt_load_entry_raw()``: EMPTY, TABLE or LEAF."""
        raise NotImplementedError

    def make_table_entry(self, table_pa: int, level: int) -> int:
        """``pt_install_table()``: the entry at ``level`` pointing at a lower table."""
        raise NotImplementedError

    def make_leaf_entry(self, oa: int, oasz_lg2: int, level: int, bits: int) -> int:
        """``pt_install_leaf_entry()``: the value of every item of one leaf."""
        raise NotImplementedError

    def prot_bits(self, prot: Prot) -> int:
        """``pt_iommu_set_prot()``: descriptor bits for ``prot`` (raises ``EINVAL``)."""
        raise NotImplementedError

    def leaf_prot(self, entry: int) -> Prot:
        raise NotImplementedError

    def entry_num_contig_lg2(self, entry: int, level: int) -> int:
        """``pt_entry_num_contig_lg2()``: items spanned by a leaf entry (lg2)."""
        return 0

    def leaf0_contig_lg2(self, entries: LeafTable) -> IntArray:
        """:meth:`entry_num_contig_lg2` of level-0 leaf entries, element-wise."""
        return np.zeros(entries.shape, dtype=np.int64)

    def leaf_oa(self, entry: int, level: int) -> int:
        """``pt_entry_oa()``: the OA at which the whole (contiguous) leaf starts."""
        return ((entry & self.OA_MASK) >> self.OA_SHIFT) << self.GRANULE_LG2

    def table_pa(self, entry: int) -> int:
        """``pt_table_pa()``: the physical address of the table an entry points to."""
        return ((entry & self.OA_MASK) >> self.OA_SHIFT) << self.GRANULE_LG2

    def reserved_fault(self, entry: int, level: int) -> bool:
        """True when the walker must stop with a reserved-bit fault on ``entry``."""
        return False

    def entry_present(self, entry: int) -> bool:
        return entry != 0

    # ------------------------------------------------------------------- geometry

    @property
    def pgsize_bitmap(self) -> int:
        return self._pgsize_bitmap

    @pgsize_bitmap.setter
    def pgsize_bitmap(self, value: int) -> None:
        """Drivers narrow ``domain->pgsize_bitmap`` after init (e.g. VT-d without 1 GiB
        super pages); map then never picks a size outside it."""
        self._pgsize_bitmap = value

    @property
    def aperture(self) -> tuple[int, int]:
        return self._aperture

    @aperture.setter
    def aperture(self, value: tuple[int, int]) -> None:
        self._aperture = value

    @property
    def min_page_size(self) -> int:
        return self._pgsize_bitmap & -self._pgsize_bitmap

    def item_lg2(self, level: int) -> int:
        return self.GRANULE_LG2 + ITEMS_LG2 * level

    def read_table(self, table_pa: int) -> list[int]:
        """A copy of the 512 u64 entries of the table page at ``table_pa`` (``KeyError`` if
        there is no such table): what the IOMMU reads from memory during a walk."""
        leaf = self._leaf_tables.get(table_pa)
        if leaf is not None:
            return [int(e) for e in leaf.tolist()]
        return list(self._tables[table_pa])

    @property
    def table_count(self) -> int:
        return len(self._tables) + len(self._leaf_tables)

    # --------------------------------------------------------------------- tables

    def _new_table(self, level: int) -> int:
        pa = self._alloc_table_pa()
        if level == 0:
            self._leaf_tables[pa] = np.zeros(ITEMS, dtype=np.uint64)
        else:
            self._tables[pa] = [0] * ITEMS
        return pa

    def _present0(self, entries: LeafTable) -> npt.NDArray[np.bool_]:
        """Which level-0 items hold a leaf (``entry_type`` is LEAF)."""
        mask = self.LEAF_PRESENT_MASK
        present: npt.NDArray[np.bool_]
        if mask == (1 << 64) - 1:
            present = entries != 0
        else:
            present = (entries & np.uint64(mask)) != 0
        return present

    def _free_subtree(self, table_pa: int, level: int) -> None:
        if level == 0:
            del self._leaf_tables[table_pa]
            return
        table = self._tables.pop(table_pa)
        for entry in table:
            if entry and self.entry_type(entry, level) == TABLE:
                self._free_subtree(self.table_pa(entry), level - 1)

    def _subtree_has_leaf(self, table_pa: int, level: int) -> bool:
        if level == 0:
            return bool(self._leaf_tables[table_pa].any())
        for entry in self._tables[table_pa]:
            if not entry:
                continue
            if self.entry_type(entry, level) != TABLE:
                return True
            if self._subtree_has_leaf(self.table_pa(entry), level - 1):
                return True
        return False

    def _table_pa_for(self, va: int, level: int) -> int:
        """Descend to the table at ``level`` covering ``va``, allocating missing tables
        (``__map_range``); a leaf on the way is ``EADDRINUSE``. Returns its address."""
        table = self._root
        pa = self.root_pa
        lvl = self.top_level
        while lvl > level:
            idx = (va >> self.item_lg2(lvl)) & INDEX_MASK
            entry = table[idx]
            if not entry:
                pa = self._new_table(lvl - 1)
                table[idx] = self.make_table_entry(pa, lvl)
            elif self.entry_type(entry, lvl) == TABLE:
                pa = self.table_pa(entry)
            else:
                raise PageTableError(
                    errno.EADDRINUSE,
                    f"IOVA {va:#x} already mapped by a level-{lvl} leaf",
                )
            lvl -= 1
            if lvl:
                table = self._tables[pa]
        return pa

    # ------------------------------------------------------------------------ map

    def map(
        self, iova: int, pa: int, size: int, prot: Prot, *, max_pgsize: int | None = None
    ) -> None:
        """``iommu_map()`` on a generic-pt domain: map ``[iova, iova+size)`` to ``pa`` with
        the largest leaves the domain's ``pgsize_bitmap`` and the VA/PA co-alignment allow
        (``pt_compute_best_pgsize``/``pt_pgsz_count``), possibly changing size along the
        range. Nothing stays mapped on failure (the core unmaps what was installed).

        ``max_pgsize`` (a power of two) leaves out the larger sizes: the same leaves as
        one ``map`` per ``max_pgsize``-aligned piece when IOVA and PA are co-aligned to
        it, written by runs."""
        if size <= 0:
            raise einval("map of length 0")
        if pa < 0 or pa >> self.max_oasz_lg2:
            raise PageTableError(
                errno.ERANGE, f"PA {pa:#x} beyond the {self.max_oasz_lg2}-bit output size"
            )
        bits = self.prot_bits(prot)
        last = iova + size - 1
        if iova < 0 or last >> self.max_vasz_lg2:
            raise PageTableError(
                errno.ERANGE,
                f"IOVA [{iova:#x}, {last:#x}] beyond the {self.max_vasz_lg2}-bit input size",
            )
        bitmap = self._pgsize_bitmap
        if max_pgsize is not None:
            bitmap &= (max_pgsize << 1) - 1
        va = iova
        oa = pa
        try:
            while va <= last:
                lg2 = best_pgsize_lg2(bitmap, va, last, oa)
                if not lg2:
                    raise PageTableError(
                        errno.ENXIO,
                        f"no page size in {bitmap:#x} fits IOVA {va:#x} / PA {oa:#x} "
                        f"/ length {last - va + 1:#x}",
                    )
                count = pgsz_count(bitmap, va, last, oa, lg2)
                level = (lg2 - self.GRANULE_LG2) // ITEMS_LG2
                self._install_leaves(va, oa, lg2, level, count, bits)
                va += count << lg2
                oa += count << lg2
        except PageTableError:
            if va > iova:
                self.unmap(iova, va - iova)
            raise

    def _install_leaves(
        self, va: int, oa: int, lg2: int, level: int, count: int, bits: int
    ) -> None:
        isz = self.item_lg2(level)
        contig = lg2 - isz
        step = 1 << contig
        while count:
            table_pa = self._table_pa_for(va, level)
            idx = (va >> isz) & INDEX_MASK
            n = min(count, (ITEMS - idx) >> contig)
            end = idx + (n << contig)
            first = self.make_leaf_entry(oa, lg2, level, bits)
            if level == 0:
                leaf = self._leaf_tables[table_pa]
                if leaf[idx:end].any():
                    self._clear_for_leaves0(leaf, idx, end, va)
                if n == 1 and not contig:
                    leaf[idx] = first
                else:
                    stride = self.make_leaf_entry(oa + (1 << lg2), lg2, level, bits) - first
                    run = np.arange(n, dtype=np.uint64) * np.uint64(stride)
                    run += np.uint64(first)
                    leaf[idx:end] = np.repeat(run, step) if contig else run
                va += n << lg2
                oa += n << lg2
                count -= n
                continue
            table = self._tables[table_pa]
            if any(table[idx:end]):
                self._clear_for_leaves(table, idx, end, level, va)
            stride = self.make_leaf_entry(oa + (1 << lg2), lg2, level, bits) - first
            if contig:
                values = range(first, first + n * stride, stride) if n > 1 else (first,)
                table[idx:end] = [v for v in values for _ in range(step)]
            elif n == 1:
                table[idx] = first
            else:
                table[idx:end] = range(first, first + n * stride, stride)
            va += n << lg2
            oa += n << lg2
            count -= n

    def _clear_for_leaves0(self, leaf: LeafTable, idx: int, end: int, va: int) -> None:
        """:meth:`_clear_for_leaves` at level 0, where every entry is a leaf."""
        at = va + (int(np.flatnonzero(leaf[idx:end])[0]) << self.GRANULE_LG2)
        raise PageTableError(errno.EADDRINUSE, f"IOVA {at:#x} is already mapped")

    def _clear_for_leaves(self, table: list[int], idx: int, end: int, level: int, va: int) -> None:
        """``clear_contig()``: empty tables under the new leaves are freed; any mapped OA
        is ``EADDRINUSE``."""
        isz = self.item_lg2(level)
        for i in range(idx, end):
            entry = table[i]
            if not entry:
                continue
            at = va + ((i - idx) << isz)
            if self.entry_type(entry, level) != TABLE:
                raise PageTableError(errno.EADDRINUSE, f"IOVA {at:#x} is already mapped")
            if self._subtree_has_leaf(self.table_pa(entry), level - 1):
                raise PageTableError(errno.EADDRINUSE, f"IOVA range at {at:#x} has mappings")
        for i in range(idx, end):
            entry = table[i]
            if entry:
                self._free_subtree(self.table_pa(entry), level - 1)
                table[i] = 0

    # ---------------------------------------------------------------------- unmap

    def unmap(self, iova: int, length: int) -> int:
        """``iommu_unmap()`` on a generic-pt domain; returns the bytes unmapped.

        As in ``__unmap_range()``: unmapping stops (and reports what it did so far) at the
        first hole; a start inside a large/contiguous leaf unmaps nothing; an end inside a
        leaf removes the whole leaf (more bytes than asked). Tables the range covers
        entirely are freed, partially covered ones stay even when empty.
        """
        if length <= 0:
            return 0
        last = iova + length - 1
        if iova < 0 or last >> self.max_vasz_lg2:
            return 0
        done = [0]
        self._unmap_level(self._root, self.top_level, iova, last, done)
        return done[0]

    def _unmap_level(
        self, table: list[int], level: int, va: int, last: int, done: list[int]
    ) -> bool:
        isz = self.item_lg2(level)
        idx = (va >> isz) & INDEX_MASK
        span = isz + ITEMS_LG2
        end = ((last >> isz) & INDEX_MASK) + 1 if (last >> span) == (va >> span) else ITEMS
        start = idx
        while idx < end:
            entry = table[idx]
            kind = self.entry_type(entry, level) if entry else EMPTY
            if kind == LEAF:
                contig = self.entry_num_contig_lg2(entry, level)
                if idx == start and va & ((1 << (isz + contig)) - 1):
                    return False
                n = 1 << contig
                table[idx : idx + n] = [0] * n
                done[0] += n << isz
                idx += n
            elif kind == TABLE:
                item_va = va if idx == start else ((va >> span) << span) | (idx << isz)
                item_last = item_va | ((1 << isz) - 1)
                fully = (item_va & ((1 << isz) - 1)) == 0 and last >= item_last
                child_pa = self.table_pa(entry)
                if level == 1:
                    ok = self._unmap_leaf_table(
                        self._leaf_tables[child_pa], item_va, min(last, item_last), done
                    )
                else:
                    ok = self._unmap_level(
                        self._tables[child_pa], level - 1, item_va, min(last, item_last), done
                    )
                if not ok:
                    return False
                if fully:
                    self._free_subtree(child_pa, level - 1)
                    table[idx] = 0
                idx += 1
            else:
                return False
        return True

    def _unmap_leaf_table(self, leaf: LeafTable, va: int, last: int, done: list[int]) -> bool:
        """:meth:`_unmap_level` at level 0 by runs: the leaves from ``va`` up to the first
        hole (which stops the unmap) or past ``last`` (the last leaf goes whole)."""
        isz = self.GRANULE_LG2
        idx = (va >> isz) & INDEX_MASK
        span = isz + ITEMS_LG2
        end = ((last >> isz) & INDEX_MASK) + 1 if (last >> span) == (va >> span) else ITEMS
        present = self._present0(leaf[idx:end])
        if not present[0]:
            return False
        if va & ((1 << (isz + self.entry_num_contig_lg2(int(leaf[idx]), 0))) - 1):
            return False
        holes = np.flatnonzero(~present)
        if holes.size:
            stop = idx + int(holes[0])
        else:
            n = 1 << self.entry_num_contig_lg2(int(leaf[end - 1]), 0)
            stop = ((end - 1) & ~(n - 1)) + n
        leaf[idx:stop] = 0
        done[0] += (stop - idx) << isz
        return not holes.size

    # ----------------------------------------------------------------------- walk

    def _leaf_lookup(self, iova: int) -> tuple[list[int] | LeafTable, int, int, int] | None:
        if iova < 0 or iova >> self.max_vasz_lg2:
            return None
        table: list[int] | LeafTable = self._root
        level = self.top_level
        while True:
            idx = (iova >> (self.GRANULE_LG2 + ITEMS_LG2 * level)) & INDEX_MASK
            entry = int(table[idx])
            if not entry:
                return None
            if self.entry_type(entry, level) == LEAF:
                return table, idx, entry, level
            level -= 1
            pa = self.table_pa(entry)
            table = self._tables[pa] if level else self._leaf_tables[pa]

    def iova_to_phys(self, iova: int) -> int | None:
        """``iova_to_phys()``: the exact PA (sub-page offset included) or ``None`` (the
        kernel returns 0) when nothing is mapped at ``iova``."""
        found = self._leaf_lookup(iova)
        if found is None:
            return None
        _, _, entry, level = found
        lg2 = self.item_lg2(level) + self.entry_num_contig_lg2(entry, level)
        return self.leaf_oa(entry, level) | (iova & ((1 << lg2) - 1))

    def walk(self, iova: int, access: Access) -> Translation | WalkFault:
        """What the IOMMU's page walker does for one DMA request: start at the root, AND
        the R/W permissions of every entry on the way, stop at the leaf and — when A/D
        updates are enabled — set Accessed on every entry used and Dirty on the leaf for a
        write (the leaf item actually hit, as hardware does for a contiguous entry)."""
        if iova < 0 or iova >> self.max_vasz_lg2:
            return WalkFault(iova, access, FaultReason.ADDRESS_WIDTH, self.top_level)
        write = access is Access.WRITE
        need = self.W_BIT if write else self.R_BIT
        ad = self.ad_enabled
        a_bit = self.A_BIT
        table: list[int] | LeafTable = self._root
        level = self.top_level
        while True:
            idx = (iova >> (self.GRANULE_LG2 + ITEMS_LG2 * level)) & INDEX_MASK
            entry = int(table[idx])
            if not self.entry_present(entry):
                return WalkFault(iova, access, FaultReason.NOT_PRESENT, level)
            if self.reserved_fault(entry, level):
                return WalkFault(iova, access, FaultReason.RESERVED, level)
            if not entry & need:
                reason = FaultReason.WRITE_PROTECTED if write else FaultReason.READ_PROTECTED
                return WalkFault(iova, access, reason, level)
            if self.entry_type(entry, level) == LEAF:
                if ad:
                    entry |= a_bit | (self.D_BIT if write else 0)
                    table[idx] = entry
                contig = self.entry_num_contig_lg2(entry, level)
                lg2 = self.item_lg2(level) + contig
                dirty = bool(entry & self.D_BIT)
                if contig and not dirty:
                    base = idx & ~((1 << contig) - 1)
                    items = table[base : base + (1 << contig)]
                    dirty = any(int(e) & self.D_BIT for e in items)
                return Translation(
                    iova=(iova >> lg2) << lg2,
                    pa=self.leaf_oa(entry, level),
                    size=1 << lg2,
                    readable=bool(entry & self.R_BIT),
                    writable=bool(entry & self.W_BIT),
                    dirty=dirty,
                    level=level,
                )
            if ad and not entry & a_bit:
                table[idx] = entry | a_bit
            level -= 1
            pa = self.table_pa(entry)
            table = self._tables[pa] if level else self._leaf_tables[pa]

    # ---------------------------------------------------------------------- dirty

    def set_dirty(self, iova: int) -> bool:
        """``set_dirty()`` of the generic pt (used by ``IOMMU_TEST_OP_DIRTY``): set D on
        the leaf item mapping ``iova``; False (``-ENOENT``) when nothing is mapped."""
        found = self._leaf_lookup(iova)
        if found is None:
            return False
        table, idx, entry, _ = found
        table[idx] = entry | self.D_BIT
        return True

    def set_dirty_bitmap(self, iova: int, page_size: int, bitmap: bytes, nbits: int) -> int:
        """``IOMMU_TEST_OP_DIRTY``'s loop: :meth:`set_dirty` at ``iova + i * page_size``
        for every set bit *i* < ``nbits`` of ``bitmap`` (little-endian bit order, as
        ``test_bit`` on a little-endian host); returns how many bits were set, mapped or
        not. Bits become IOVAs a bounded chunk at a time and the IOVAs of one level-0
        table are marked together."""
        raw = np.frombuffer(bitmap, dtype=np.uint8)
        top = 1 << self.max_vasz_lg2
        # bits whose IOVA the table can hold (the others find nothing, as set_dirty does)
        reach = 0 if iova >= top else min(nbits, (top - iova + page_size - 1) // page_size)
        g = self.GRANULE_LG2
        count = 0
        for lo in range(0, nbits, DIRTY_CHUNK_BITS):
            hi = min(nbits, lo + DIRTY_CHUNK_BITS)
            bits = np.unpackbits(raw[lo // 8 : (hi + 7) // 8], bitorder="little")[: hi - lo]
            nz = np.flatnonzero(bits)
            count += int(nz.size)
            nz = nz[nz < reach - lo] if reach < hi else nz
            if not nz.size:
                continue
            iovas = (nz + lo) * page_size + iova
            keys = iovas >> (g + ITEMS_LG2)
            cuts = (np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist()
            for s, e in zip([0, *cuts], [*cuts, int(nz.size)], strict=True):
                self._set_dirty_group(iovas[s:e])
        return count

    def _set_dirty_group(self, iovas: IntArray) -> None:
        """:meth:`set_dirty` for sorted IOVAs that all lie in one level-0 table's span."""
        table: list[int] = self._root
        level = self.top_level
        first = int(iovas[0])
        while True:
            idx = (first >> self.item_lg2(level)) & INDEX_MASK
            entry = table[idx]
            if not entry:
                return
            if self.entry_type(entry, level) == LEAF:
                table[idx] = entry | self.D_BIT
                return
            level -= 1
            if not level:
                break
            table = self._tables[self.table_pa(entry)]
        leaf = self._leaf_tables[self.table_pa(entry)]
        items = (iovas >> self.GRANULE_LG2) & INDEX_MASK
        items = items[leaf[items] != 0]
        leaf[items] |= np.uint64(self.D_BIT)

    def read_and_clear_dirty(
        self, iova: int, length: int, *, no_clear: bool = False
    ) -> list[tuple[int, int]]:
        """``read_and_clear_dirty()``: every leaf in ``[iova, iova+length)`` whose D bit is
        set (any item, for a contiguous leaf) is reported as its whole ``(start, size)``
        — a dirty 2 MiB leaf reports 2 MiB — and made clean unless ``no_clear``
        (``IOMMU_DIRTY_NO_CLEAR``). Adjacent dirty leaves are merged. The caller must
        flush the IOTLB for cleared ranges, as the kernel's gather does."""
        starts, ends = self.read_and_clear_dirty_runs(iova, length, no_clear=no_clear)
        return [(s, e - s) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]

    def read_and_clear_dirty_runs(
        self, iova: int, length: int, *, no_clear: bool = False
    ) -> tuple[IntArray, IntArray]:
        """:meth:`read_and_clear_dirty` as two arrays, the starts and the ends of the
        merged dirty ranges, in IOVA order."""
        if length <= 0:
            raise einval("dirty read of length 0")
        last = iova + length - 1
        if iova < 0 or last >> self.max_vasz_lg2:
            raise PageTableError(errno.ERANGE, f"IOVA [{iova:#x}, {last:#x}] beyond table")
        out = _DirtyRuns(self, no_clear)
        self._dirty_level(self._root, self.top_level, iova, last, out)
        return out.finish()

    def _dirty_level(
        self, table: list[int], level: int, va: int, last: int, out: _DirtyRuns
    ) -> None:
        isz = self.item_lg2(level)
        span = isz + ITEMS_LG2
        base_va = (va >> span) << span
        idx = (va >> isz) & INDEX_MASK
        end = ((last >> isz) & INDEX_MASK) + 1 if (last >> span) == (va >> span) else ITEMS
        d_bit = self.D_BIT
        while idx < end:
            entry = table[idx]
            if not entry:
                idx += 1
                continue
            if self.entry_type(entry, level) == TABLE:
                item_va = base_va | (idx << isz)
                lo, hi = max(va, item_va), min(last, item_va | ((1 << isz) - 1))
                child = self.table_pa(entry)
                if level == 1:
                    out.leaf_table(self._leaf_tables[child], lo, hi)
                else:
                    self._dirty_level(self._tables[child], level - 1, lo, hi, out)
                idx += 1
                continue
            contig = self.entry_num_contig_lg2(entry, level)
            n = 1 << contig
            first = idx & ~(n - 1)
            items = table[first : first + n]
            if any(e & d_bit for e in items):
                out.run(base_va | (first << isz), n << isz)
                if not out.no_clear:
                    table[first : first + n] = [e & ~d_bit for e in items]
            idx = first + n

    # ------------------------------------------------------------------- inspect

    def leaves(self, iova: int = 0, length: int | None = None) -> Iterator[Translation]:
        """Every leaf intersecting ``[iova, iova+length)`` in IOVA order (no A/D update):
        for tests, debugging and the kernel model's consistency checks."""
        last = (1 << self.max_vasz_lg2) - 1 if length is None else iova + length - 1
        yield from self._leaves_level(self._root, self.top_level, iova, last)

    def _leaves_level(
        self, table: list[int], level: int, va: int, last: int
    ) -> Iterator[Translation]:
        isz = self.item_lg2(level)
        span = isz + ITEMS_LG2
        base_va = (va >> span) << span
        idx = (va >> isz) & INDEX_MASK
        end = ((last >> isz) & INDEX_MASK) + 1 if (last >> span) == (va >> span) else ITEMS
        while idx < end:
            entry = table[idx]
            if not entry:
                idx += 1
                continue
            item_va = base_va | (idx << isz)
            if self.entry_type(entry, level) == TABLE:
                child = self.table_pa(entry)
                yield from self._leaves_level(
                    self._tables[child] if level > 1 else self._leaf_tables[child].tolist(),
                    level - 1,
                    max(va, item_va),
                    min(last, item_va | ((1 << isz) - 1)),
                )
                idx += 1
                continue
            contig = self.entry_num_contig_lg2(entry, level)
            n = 1 << contig
            first = idx & ~(n - 1)
            items = table[first : first + n]
            prot = self.leaf_prot(entry)
            yield Translation(
                iova=base_va | (first << isz),
                pa=self.leaf_oa(entry, level),
                size=n << isz,
                readable=bool(prot & Prot.READ),
                writable=bool(prot & Prot.WRITE),
                dirty=any(e & self.D_BIT for e in items),
                level=level,
            )
            idx = first + n

    def is_empty(self) -> bool:
        """True when no leaf is mapped anywhere (the mock WARNs on freeing otherwise)."""
        return not self._subtree_has_leaf(self.root_pa, self.top_level)


class _DirtyRuns:
    """The dirty ranges of one read-out, gathered in IOVA order: large leaves one by one,
    level-0 tables in batches scanned with numpy (D of every item at once, items grouped
    into their contiguous leaves, adjacent dirty leaves merged)."""

    def __init__(self, pt: RadixPageTable, no_clear: bool) -> None:
        self.pt = pt
        self.no_clear = no_clear
        self._pending: list[tuple[LeafTable, int]] = []
        self._starts: list[IntArray] = []
        self._ends: list[IntArray] = []

    def leaf_table(self, leaf: LeafTable, va: int, last: int) -> None:
        """Items of a level-0 table covering ``[va, last]``, widened to whole leaves."""
        pt = self.pt
        isz = pt.GRANULE_LG2
        span = isz + ITEMS_LG2
        idx = (va >> isz) & INDEX_MASK
        end = ((last >> isz) & INDEX_MASK) + 1 if (last >> span) == (va >> span) else ITEMS
        head, tail = int(leaf[idx]), int(leaf[end - 1])
        if head:
            idx &= ~((1 << pt.entry_num_contig_lg2(head, 0)) - 1)
        if tail:
            n = 1 << pt.entry_num_contig_lg2(tail, 0)
            end = ((end - 1) & ~(n - 1)) + n
        self._pending.append((leaf[idx:end], ((va >> span) << span) | (idx << isz)))

    def run(self, start: int, size: int) -> None:
        """One dirty large leaf."""
        self._flush()
        self._starts.append(np.array([start], dtype=np.int64))
        self._ends.append(np.array([start + size], dtype=np.int64))

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        pt = self.pt
        g = pt.GRANULE_LG2
        d_bit = np.uint64(pt.D_BIT)
        segs = [seg for seg, _ in pending]
        cat = np.concatenate(segs) if len(segs) > 1 else segs[0]
        pos = np.flatnonzero(cat & d_bit)
        if not pos.size:
            return
        lens = np.fromiter((len(seg) for seg in segs), dtype=np.int64, count=len(segs))
        ends = np.cumsum(lens)
        seg_of = np.searchsorted(ends, pos, side="right")
        bases = np.fromiter((base for _, base in pending), dtype=np.int64, count=len(segs))
        item_va = bases[seg_of] + ((pos - (ends - lens)[seg_of]) << g)
        size = np.left_shift(1, pt.leaf0_contig_lg2(cat[pos]) + g, dtype=np.int64)
        leaf_va = item_va & ~(size - 1)
        new = np.ones(pos.size, dtype=np.bool_)
        np.not_equal(leaf_va[1:], leaf_va[:-1], out=new[1:])
        leaf_va = leaf_va[new]
        self._starts.append(leaf_va)
        self._ends.append(leaf_va + size[new])
        if not self.no_clear:
            keep = ~d_bit
            for k in np.unique(seg_of).tolist():
                np.bitwise_and(segs[k], keep, out=segs[k])

    def finish(self) -> tuple[IntArray, IntArray]:
        self._flush()
        if not self._starts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        starts = np.concatenate(self._starts)
        ends = np.concatenate(self._ends)
        cut = np.flatnonzero(starts[1:] != ends[:-1])
        return starts[np.r_[0, cut + 1]], ends[np.r_[cut, ends.size - 1]]
