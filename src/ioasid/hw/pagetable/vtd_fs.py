"""Intel VT-d first-stage (FS) paging structures: the guest-owned stage 1 of nested
translation, as QEMU's ``intel-iommu,x-flts=on`` presents it to a guest and as the host
IOMMU walks it when the guest's PASID entry is installed nested (PGTT=011b) by
``intel_pasid_setup_nested`` (``IOMMU_HWPT_DATA_VTD_S1``: ``pgtbl_addr`` is the GPA of the
root, ``addr_width`` 48 (4-level) or 57 (5-level)).

The format is IA-32e paging (VT-d spec §3.6, §9.9 "First-Stage Paging Entries")::

    bit 0      P    present
    bit 1      R/W  write allowed (at every level)
    bit 2      U/S  user
    bit 5      A    accessed, set by the IOMMU on every entry it uses
    bit 6      D    dirty, set on the leaf by a write
    bit 7      PS   leaf in a PDPE (1 GiB) or PDE (2 MiB); reserved in PML4E/PML5E
    bits 51:12 address of the next table or of the page
    bit 63     XD   execute disable

Every table entry is read from guest memory at a guest-physical address, which the IOMMU
translates through stage 2 first (the parent's second-stage table): the walk is a nested
walk, and a stage-2 fault while fetching a stage-1 entry is a stage-2 fault.
:class:`VtdFirstStageWriter` is the guest's side: it builds such tables in guest memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .base import Access, FaultReason, Translation, WalkFault

FS_P = 1 << 0
FS_RW = 1 << 1
FS_US = 1 << 2
FS_A = 1 << 5
FS_D = 1 << 6
FS_PS = 1 << 7
FS_XD = 1 << 63
FS_ADDR = ((1 << 52) - 1) & ~((1 << 12) - 1)

LEVELS_FOR_WIDTH = {48: 4, 57: 5}

Fetch = Callable[[int], "int | WalkFault"]
"""Read the u64 at a GPA through stage 2 (or the stage-2 fault)."""
Store = Callable[[int, int], None]
"""Write a u64 at a GPA (the A/D update)."""


class VtdFirstStage:
    """The stage 1 of one nested domain: the table rooted at ``root_gpa``, ``addr_width``
    48 or 57 bits, ``super_1g`` when CAP.FL1GP allows 1 GiB leaves."""

    FORMAT = "vtd-fs"
    ad_always = True
    """First-stage A/D bits are always maintained by hardware (no SSADE switch)."""

    def __init__(self, root_gpa: int, addr_width: int = 48, *, super_1g: bool = True) -> None:
        self.root_gpa = root_gpa & FS_ADDR
        self.addr_width = addr_width
        self.levels = LEVELS_FOR_WIDTH[addr_width]
        self.super_1g = super_1g

    def walk(
        self, iova: int, access: Access, fetch: Fetch, store: Store
    ) -> Translation | WalkFault:
        """Translate ``iova`` (a guest IOVA) to a GPA: every level must be present and, for
        a write, writable; A is set on each entry used and D on the leaf of a write."""
        if iova < 0 or iova >> self.addr_width:
            return WalkFault(iova, access, FaultReason.ADDRESS_WIDTH, self.levels - 1, 1)
        write = access is Access.WRITE
        table = self.root_gpa
        for level in range(self.levels - 1, -1, -1):
            shift = 12 + 9 * level
            gpa = table + ((iova >> shift) & 0x1FF) * 8
            entry = fetch(gpa)
            if isinstance(entry, WalkFault):
                return WalkFault(iova, access, entry.reason, level, 2)
            if not entry & FS_P:
                return WalkFault(iova, access, FaultReason.NOT_PRESENT, level, 1)
            leaf = level == 0 or (entry & FS_PS and level <= 2)
            if entry & FS_PS and (level > 2 or (level == 2 and not self.super_1g)):
                return WalkFault(iova, access, FaultReason.RESERVED, level, 1)
            if write and not entry & FS_RW:
                return WalkFault(iova, access, FaultReason.WRITE_PROTECTED, level, 1)
            new = entry | FS_A | (FS_D if write and leaf else 0)
            if new != entry:
                store(gpa, new)
            if leaf:
                return Translation(
                    iova=(iova >> shift) << shift,
                    pa=new & FS_ADDR & ~((1 << shift) - 1),
                    size=1 << shift,
                    readable=True,
                    writable=bool(new & FS_RW),
                    dirty=bool(new & FS_D),
                    level=level,
                )
            table = entry & FS_ADDR
        raise AssertionError("unreachable")


class GuestMemory(Protocol):
    """Byte-addressed guest memory: a ``memoryview``, an ``ioasid.Buffer``, a bytearray."""

    def __len__(self) -> int: ...

    def __getitem__(self, item: slice, /) -> Any: ...

    def __setitem__(self, item: slice, data: bytes, /) -> None: ...


class VtdFirstStageWriter:
    """The guest's IOMMU driver: builds a first-stage table in guest memory ``mem`` (it is
    guest-physical ``[gpa_base, gpa_base + len(mem))``), taking table pages from
    ``table_gpa`` upwards. ``root_gpa`` goes into ``pgtbl_addr``."""

    def __init__(self, mem: GuestMemory, gpa_base: int, table_gpa: int, addr_width: int = 48):
        self.mem = mem
        self.gpa_base = gpa_base
        self.levels = LEVELS_FOR_WIDTH[addr_width]
        self._next = table_gpa
        self.root_gpa = self._alloc()

    def _alloc(self) -> int:
        gpa = self._next
        self._next += 4096
        off = gpa - self.gpa_base
        if off < 0 or off + 4096 > len(self.mem):
            raise ValueError(f"no room for a table page at GPA {gpa:#x}")
        self.mem[off : off + 4096] = bytes(4096)
        return gpa

    def _get(self, gpa: int) -> int:
        off = gpa - self.gpa_base
        return int.from_bytes(bytes(self.mem[off : off + 8]), "little")

    def _set(self, gpa: int, value: int) -> None:
        off = gpa - self.gpa_base
        self.mem[off : off + 8] = value.to_bytes(8, "little")

    def map(self, iova: int, gpa: int, size: int, *, writable: bool = True) -> None:
        """Map ``[iova, iova+size)`` to ``gpa`` with 4 KiB, 2 MiB or 1 GiB leaves (the
        largest that alignment and length allow)."""
        done = 0
        while done < size:
            cur, out = iova + done, gpa + done
            for level in (2, 1, 0):
                page = 1 << (12 + 9 * level)
                if not (cur | out) & (page - 1) and size - done >= page:
                    break
            self._install(cur, out, level, writable)
            done += 1 << (12 + 9 * level)

    def _install(self, iova: int, gpa: int, leaf_level: int, writable: bool) -> None:
        table = self.root_gpa
        rw = FS_RW if writable else 0
        for level in range(self.levels - 1, leaf_level, -1):
            slot = table + ((iova >> (12 + 9 * level)) & 0x1FF) * 8
            entry = self._get(slot)
            if not entry & FS_P:
                entry = self._alloc() | FS_P | FS_RW | FS_US
                self._set(slot, entry)
            table = entry & FS_ADDR
        slot = table + ((iova >> (12 + 9 * leaf_level)) & 0x1FF) * 8
        self._set(slot, gpa | FS_P | FS_US | rw | (FS_PS if leaf_level else 0))

    def unmap(self, iova: int, size: int) -> None:
        """Clear the leaves of ``[iova, iova+size)`` (tables are kept)."""
        done = 0
        while done < size:
            cur = iova + done
            table = self.root_gpa
            for level in range(self.levels - 1, -1, -1):
                slot = table + ((cur >> (12 + 9 * level)) & 0x1FF) * 8
                entry = self._get(slot)
                if not entry & FS_P:
                    done += 1 << (12 + 9 * level)
                    break
                if level == 0 or entry & FS_PS:
                    self._set(slot, 0)
                    done += 1 << (12 + 9 * level)
                    break
                table = entry & FS_ADDR
