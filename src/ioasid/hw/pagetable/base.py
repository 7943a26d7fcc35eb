"""What every simulated I/O page table offers: the kernel's ``iommu_domain_ops`` for paging
(``map_pages``/``unmap_pages``/``iova_to_phys``/``read_and_clear_dirty``) plus the hardware
side (a walker that translates one IOVA and updates Accessed/Dirty like the IOMMU does).

Errors follow ``drivers/iommu/generic_pt/iommu_pt.h`` (Linux 7.3): ``map`` fails with
``EADDRINUSE`` when something is already mapped, ``ENXIO`` when no permitted page size fits
the IOVA/PA alignment, ``ERANGE`` when the IOVA or PA does not fit the table, ``EINVAL`` on
a length of 0 or a prot without READ/WRITE.
"""

from __future__ import annotations

import enum
import errno
import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


class Prot(enum.IntFlag):
    """``IOMMU_READ`` … ``IOMMU_PRIV`` from ``include/linux/iommu.h`` (same values)."""

    NONE = 0
    READ = 1 << 0
    WRITE = 1 << 1
    CACHE = 1 << 2
    NOEXEC = 1 << 3
    MMIO = 1 << 4
    PRIV = 1 << 5


class Access(enum.IntEnum):
    """Direction of one DMA access as the IOMMU sees it (a device read is a memory read)."""

    READ = 0
    WRITE = 1


class FaultReason(enum.Enum):
    """Why a translation failed; the VT-d fault-reason it corresponds to is in the value."""

    NOT_PRESENT = "not present"
    """No translation: a paging entry with R=W=0 (VT-d) / PR=0 (AMD) on the walk."""
    WRITE_PROTECTED = "write to read-only"
    """Write through an entry without W (VT-d) / IW (AMD) at some level of the walk."""
    READ_PROTECTED = "read from write-only"
    """Read through an entry without R / IR at some level of the walk."""
    ADDRESS_WIDTH = "beyond address width"
    """IOVA above the table's input address width (VT-d: above MGAW / the AW of the table)."""
    RESERVED = "reserved bit set"
    """A paging entry with a reserved bit set, e.g. PS in an SS-PML4E."""
    BLOCKED = "no domain attached"
    """The requester (RID or RID+PASID) has no translation attached: blocked DMA."""
    PASID_RANGE = "PASID beyond supported width"
    """A PASID-tagged request with a PASID the device/IOMMU cannot carry."""


@dataclass(frozen=True, slots=True)
class Translation:
    """One leaf found by a walk (what an IOTLB entry caches).

    ``iova``/``pa`` are the start of the leaf, ``size`` its span (a contiguous AMDv1 entry
    counts as one leaf of the whole contiguous size). ``dirty`` is the leaf's D bit after the
    walk: hardware that caches a clean entry must walk again on the first write.
    """

    iova: int
    pa: int
    size: int
    readable: bool
    writable: bool
    dirty: bool
    level: int

    def phys(self, iova: int) -> int:
        return self.pa + (iova - self.iova)

    def allows(self, access: Access) -> bool:
        return self.writable if access is Access.WRITE else self.readable


@dataclass(frozen=True, slots=True)
class WalkFault:
    """A failed walk: the IOVA, the access, the reason, the level it stopped at and, for a
    nested walk, the stage."""

    iova: int
    access: Access
    reason: FaultReason
    level: int
    stage: int = 0
    """Nested translation: 1 when the guest's stage 1 faulted, 2 when stage 2 did
    (including while fetching a stage-1 entry); 0 for a single-stage walk."""


class HwError(OSError):
    """A simulated-hardware or driver operation failed; ``errno`` is what the kernel's
    driver returns for the same condition, the message names the rule and the values."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(err, f"{os.strerror(err)}: {message}")


class PageTableError(HwError):
    """An op failed the way the kernel's page-table code fails it (``errno`` as there)."""


@runtime_checkable
class PageTable(Protocol):
    """The page-table operations a simulated IOMMU domain is built on."""

    @property
    def pgsize_bitmap(self) -> int: ...

    @property
    def aperture(self) -> tuple[int, int]:
        """``(aperture_start, aperture_end)``, both inclusive, as in ``domain->geometry``."""
        ...

    def map(
        self, iova: int, pa: int, size: int, prot: Prot, *, max_pgsize: int | None = None
    ) -> None: ...

    def unmap(self, iova: int, length: int) -> int: ...

    def iova_to_phys(self, iova: int) -> int | None: ...

    def walk(self, iova: int, access: Access) -> Translation | WalkFault: ...

    def read_and_clear_dirty(
        self, iova: int, length: int, *, no_clear: bool = False
    ) -> list[tuple[int, int]]: ...


def best_pgsize_lg2(pgsize_bitmap: int, va: int, last_va: int, oa: int) -> int:
    """``pt_compute_best_pgsize()``: the largest permitted page size (lg2) such that VA and
    OA are aligned to it and it fits in ``[va, last_va]``; 0 when none does."""
    length = last_va - va + 1
    mask = va | oa | (1 << (length.bit_length() - 1))
    best = (mask & -mask).bit_length() - 1
    allowed = pgsize_bitmap & ((1 << (best + 1)) - 1)
    return allowed.bit_length() - 1 if allowed else 0


def pgsz_count(pgsize_bitmap: int, va: int, last_va: int, oa: int, pgsize_lg2: int) -> int:
    """``pt_pgsz_count()``: how many ``pgsize_lg2`` leaves to install from ``va`` before the
    next larger permitted size could take over (when VA and OA are co-aligned for it)."""
    length = last_va - va + 1
    next_pgsizes = pgsize_bitmap & ~((1 << (pgsize_lg2 + 1)) - 1)
    if next_pgsizes:
        nxt = (next_pgsizes & -next_pgsizes).bit_length() - 1
        if ((va ^ oa) & ((1 << nxt) - 1)) == 0:
            length = min(length, (va | ((1 << nxt) - 1)) - va + 1)
    return length >> pgsize_lg2


def einval(message: str) -> PageTableError:
    return PageTableError(errno.EINVAL, message)


def dirty_ranges_to_bitmap(
    ranges: list[tuple[int, int]], iova: int, length: int, page_size: int
) -> npt.NDArray[np.uint8]:
    """Render dirty ``(iova, length)`` ranges as the bitmap ``IOMMU_HWPT_GET_DIRTY_BITMAP``
    fills: bit *i* (little-endian within each byte, i.e. the kernel's ``unsigned long``
    bitmap on a little-endian host) covers ``[iova + i*page_size, +page_size)``; ranges are
    clipped to ``[iova, iova + length)`` like ``iova_bitmap_set()``."""
    nbits = -(-length // page_size)
    bits = np.zeros(nbits, dtype=np.uint8)
    end = iova + length
    for start, size in ranges:
        lo = max(start, iova)
        hi = min(start + size, end)
        if lo >= hi:
            continue
        bits[(lo - iova) // page_size : (hi - 1 - iova) // page_size + 1] = 1
    packed: npt.NDArray[np.uint8] = np.packbits(bits, bitorder="little")
    return packed
