"""An IOTLB: the translation cache of one IOMMU unit.

Entries are tagged with the domain id (VT-d DID) the unit gave the domain and hold one
leaf :class:`~ioasid.hw.pagetable.Translation` — a 2 MiB leaf is one entry, as in
hardware. A cached translation is used until software invalidates it: after a change to a
page table the kernel must invalidate (``iotlb_sync`` → page-selective or domain-selective
IOTLB invalidation), otherwise the device keeps using the stale translation, exactly the
bug class this model exists to catch. Capacity is finite; the oldest entry is evicted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pagetable.base import Translation

DEFAULT_IOTLB_ENTRIES = 4096


@dataclass(slots=True)
class IotlbStats:
    hits: int = 0
    misses: int = 0
    fills: int = 0
    evictions: int = 0
    invalidations: int = 0
    """Invalidation requests (page-selective, domain-selective or global)."""
    entries_invalidated: int = 0


class Iotlb:
    """``(domain id, leaf size, IOVA page) → Translation`` with page-selective,
    domain-selective and global invalidation."""

    def __init__(self, capacity: int = DEFAULT_IOTLB_ENTRIES) -> None:
        self.capacity = capacity
        self._entries: dict[tuple[int, int, int], Translation] = {}
        self._sizes: dict[int, list[int]] = {}
        self.stats = IotlbStats()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, domain_id: int, iova: int) -> Translation | None:
        sizes = self._sizes.get(domain_id)
        if sizes:
            entries = self._entries
            for lg2 in sizes:
                hit = entries.get((domain_id, lg2, iova >> lg2))
                if hit is not None:
                    self.stats.hits += 1
                    return hit
        self.stats.misses += 1
        return None

    def fill(self, domain_id: int, translation: Translation) -> None:
        lg2 = translation.size.bit_length() - 1
        key = (domain_id, lg2, translation.iova >> lg2)
        entries = self._entries
        if key not in entries and len(entries) >= self.capacity:
            del entries[next(iter(entries))]
            self.stats.evictions += 1
        entries[key] = translation
        sizes = self._sizes.setdefault(domain_id, [])
        if lg2 not in sizes:
            sizes.append(lg2)
            sizes.sort(reverse=True)
        self.stats.fills += 1

    def invalidate(self, domain_id: int, iova: int, length: int) -> int:
        """Page-selective invalidation: drop every entry of ``domain_id`` that overlaps
        ``[iova, iova+length)`` (a large leaf is dropped whole). Returns entries dropped."""
        self.stats.invalidations += 1
        if length <= 0:
            return 0
        last = iova + length - 1
        entries = self._entries
        dropped = 0
        for lg2 in self._sizes.get(domain_id, ()):
            first_page = iova >> lg2
            last_page = last >> lg2
            if last_page - first_page < len(entries):
                for page in range(first_page, last_page + 1):
                    if entries.pop((domain_id, lg2, page), None) is not None:
                        dropped += 1
            else:
                doomed = [
                    k
                    for k in entries
                    if k[0] == domain_id and k[1] == lg2 and first_page <= k[2] <= last_page
                ]
                for k in doomed:
                    del entries[k]
                dropped += len(doomed)
        self.stats.entries_invalidated += dropped
        return dropped

    def invalidate_domain(self, domain_id: int) -> int:
        """Domain-selective invalidation (VT-d DSI): drop every entry tagged ``domain_id``."""
        self.stats.invalidations += 1
        doomed = [k for k in self._entries if k[0] == domain_id]
        for k in doomed:
            del self._entries[k]
        self._sizes.pop(domain_id, None)
        self.stats.entries_invalidated += len(doomed)
        return len(doomed)

    def flush_all(self) -> int:
        """Global invalidation: drop everything."""
        self.stats.invalidations += 1
        dropped = len(self._entries)
        self._entries.clear()
        self._sizes.clear()
        self.stats.entries_invalidated += dropped
        return dropped
