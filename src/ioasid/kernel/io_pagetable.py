"""``io_pagetable.c``: areas, allowed and reserved IOVA ranges, IOVA allocation, domains.

Areas live in a ``SortedDict`` keyed by first IOVA (areas never overlap), so every lookup is
O(log n). Reserved ranges may overlap (several owners); allowed ranges never do.
"""

from __future__ import annotations

import errno
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from sortedcontainers import SortedDict

from ioasid.hw.memory import PAGE_SIZE
from ioasid.kernel.errors import KernelError, fail
from ioasid.kernel.pages import ULONG_MAX, IoptPages

HPAGE_SIZE = 2 << 20
"""The THP size of x86-64: the cap on kernel-chosen IOVA alignment (CONFIG_TRANSPARENT_HUGEPAGE)."""

IOMMU_READ = 1 << 0
IOMMU_WRITE = 1 << 1
IOMMU_CACHE = 1 << 2


def roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def lowest_bit(n: int) -> int:
    return n & -n


class Domain(Protocol):
    """What the io_pagetable needs from an ``iommu_domain``."""

    pgsize_bitmap: int
    aperture_start: int
    aperture_end: int

    def map_range(
        self,
        iova: int,
        pages: IoptPages,
        first_byte: int,
        length: int,
        prot: int,
        small: bool = False,
    ) -> None: ...

    def unmap_range(self, iova: int, length: int) -> None: ...


class IoptAccess(Protocol):
    """What the io_pagetable needs from an ``iommufd_access`` on its ``access_list``."""

    iova_alignment: int

    def notify_unmap(self, iova: int, length: int) -> None:
        """The driver's ``ops->unmap`` (nothing for an internal access)."""
        ...


ACCESS_LIST_MAX = (1 << 16) - 1
"""``xa_limit_16b``: the ids of ``iopt->access_list``."""

UNMAP_MAX_TRIES = 100
"""``iopt_unmap_iova_range``: notifications of one area before giving up (EDEADLOCK)."""


@dataclass(eq=False, slots=True)
class Area:
    """``struct iopt_area``: ``[iova, last]`` backed by ``pages`` from ``start_byte``.

    ``pages is None`` while the area is being created (a racing UNMAP sees EBUSY).
    """

    iova: int
    last: int
    start_byte: int
    iommu_prot: int
    pages: IoptPages | None = None
    num_accesses: int = 0
    num_locks: int = 0
    prevent_access: bool = False
    """Set by an unmap waiting for accesses to let go: new access pins/rw fail EINVAL."""
    filled: bool = False

    @property
    def length(self) -> int:
        return self.last - self.iova + 1

    @property
    def page_offset(self) -> int:
        return self.start_byte % PAGE_SIZE

    @property
    def index(self) -> int:
        """``iopt_area_index``: first page of ``pages`` this area uses."""
        return self.start_byte // PAGE_SIZE

    @property
    def last_index(self) -> int:
        return (self.start_byte + self.length - 1) // PAGE_SIZE

    def start_byte_at(self, iova: int) -> int:
        """``iopt_area_start_byte``."""
        return self.start_byte + (iova - self.iova)


@dataclass
class Reserved:
    first: int
    last: int
    owner: object


@dataclass(slots=True)
class PagesSlice:
    """``struct iopt_pages_list``: a piece of some pages to become one area."""

    pages: IoptPages
    start_byte: int
    length: int
    area: Area | None = None


def merge_spans(ranges: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Union of ``(first, last)`` ranges sorted by first; touching ranges join."""
    cur: tuple[int, int] | None = None
    for first, last in ranges:
        if cur is not None and first <= cur[1] + 1:
            if last > cur[1]:
                cur = (cur[0], last)
            continue
        if cur is not None:
            yield cur
        cur = (first, last)
    if cur is not None:
        yield cur


def holes(used: Iterator[tuple[int, int]], first: int, last: int) -> Iterator[tuple[int, int]]:
    """The holes of the (sorted, merged) ``used`` spans inside ``[first, last]``."""
    cur = first
    for ufirst, ulast in used:
        if ulast < cur:
            continue
        if ufirst > last:
            break
        if ufirst > cur:
            yield cur, ufirst - 1
        if ulast >= last:
            return
        cur = ulast + 1
    if cur <= last:
        yield cur, last


@dataclass
class IoPagetable:
    """``struct io_pagetable``."""

    areas: SortedDict = field(default_factory=SortedDict)
    allowed: SortedDict = field(default_factory=SortedDict)
    reserved: list[Reserved] = field(default_factory=list)
    domains: list[Domain] = field(default_factory=list)
    access_list: dict[int, IoptAccess] = field(default_factory=dict)
    """``iopt->access_list``: the accesses attached, by their 16-bit list id."""
    iova_alignment: int = 1
    disable_large_pages: bool = False
    should_fail: Callable[[str], bool] = lambda site: False
    """The owning context's fault point (``fail_nth``), as :class:`ObjectTable` has it."""

    def inject(self, err: int, site: str) -> None:
        """A fault point at ``site`` that fails with ``err`` before anything changed."""
        if self.should_fail(site):
            fail(err, f"fail-nth: {site} failed")

    # lookups ----------------------------------------------------------------------------

    def area_iter(self, first: int, last: int) -> Iterator[Area]:
        """``iopt_area_iter_first/next``: areas intersecting ``[first, last]`` by IOVA."""
        idx = self.areas.bisect_right(first) - 1
        if idx >= 0:
            area: Area = self.areas.peekitem(idx)[1]
            if area.last >= first:
                yield area
        for key in self.areas.irange(first, last, inclusive=(False, True)):
            yield self.areas[key]

    def area_first(self, first: int, last: int) -> Area | None:
        """The lowest area intersecting ``[first, last]`` (``area_iter``'s first, without
        the generator: this is on every MAP and UNMAP)."""
        areas = self.areas
        idx = areas.bisect_right(first) - 1
        if idx >= 0:
            area: Area = areas.peekitem(idx)[1]
            if area.last >= first:
                return area
        idx += 1
        if idx < len(areas):
            area = areas.peekitem(idx)[1]
            if area.iova <= last:
                return area
        return None

    def reserved_iter(self, first: int, last: int) -> Iterator[Reserved]:
        return (r for r in self.reserved if r.first <= last and r.last >= first)

    def reserved_first(self, first: int, last: int) -> Reserved | None:
        for r in self.reserved:
            if r.first <= last and r.last >= first:
                return r
        return None

    def allowed_first(self, first: int, last: int) -> tuple[int, int] | None:
        idx = self.allowed.bisect_right(last) - 1
        if idx >= 0:
            afirst, alast = self.allowed.peekitem(idx)
            if alast >= first:
                return afirst, alast
        return None

    def reserved_spans(self) -> Iterator[tuple[int, int]]:
        return merge_spans(iter(sorted((r.first, r.last) for r in self.reserved)))

    def usable_ranges(self) -> list[tuple[int, int]]:
        """The holes of the reserved ranges over ``[0, ULONG_MAX]``: what
        ``IOMMU_IOAS_IOVA_RANGES`` and VFIO's IOVA_RANGE capability report."""
        return list(holes(self.reserved_spans(), 0, ULONG_MAX))

    def _used_spans(self, first: int, last: int) -> Iterator[tuple[int, int]]:
        """Union of reserved ranges and areas: ``interval_tree_double_span_iter``'s used."""
        res = sorted((r.first, r.last) for r in self.reserved if r.last >= first)
        areas = ((a.iova, a.last) for a in self.area_iter(first, last))
        return merge_spans(_merge_sorted(iter(res), areas))

    # IOVA allocation ---------------------------------------------------------------------

    def alloc_iova(self, addr: int, length: int) -> int:
        """``iopt_alloc_iova``: first fit, aligned like ``addr`` to keep huge pages possible."""
        page_offset = addr % PAGE_SIZE
        if length == 0 or length >= ULONG_MAX // 2:
            fail(errno.EOVERFLOW, f"length {length:#x} is too large for a kernel-chosen IOVA")
        if not addr:
            align = roundup_pow_of_two(length)
        else:
            align = min(roundup_pow_of_two(length), lowest_bit(addr))
        max_alignment = HPAGE_SIZE
        if align >= max_alignment:
            align = max_alignment
        if align < self.iova_alignment:
            fail(
                errno.EINVAL,
                f"the alignment {align:#x} that user_va {addr:#x} allows is below the IOAS "
                f"IOVA alignment {self.iova_alignment:#x}",
            )
        lo, hi = PAGE_SIZE, ULONG_MAX - PAGE_SIZE
        if self.allowed:
            spans = list(merge_spans(iter(self.allowed.items())))
            spans = [(max(f, lo), min(l, hi)) for f, l in spans if l >= lo and f <= hi]
        else:
            spans = [(lo, hi)]
        for sfirst, slast in spans:
            start = _check_range(sfirst, slast, length, align, page_offset)
            if start is None:
                continue
            for hfirst, hlast in holes(self._used_spans(start, slast), start, slast):
                found = _check_range(hfirst, hlast, length, align, page_offset)
                if found is not None:
                    return found
        fail(
            errno.ENOSPC,
            f"no free IOVA range of {length:#x} bytes aligned to {align:#x} "
            f"(page offset {page_offset:#x}) in the allowed, unreserved IOVA space",
        )

    def check_iova(self, iova: int, length: int) -> None:
        """``iopt_check_iova``: a FIXED_IOVA placement."""
        if iova & (self.iova_alignment - 1):
            fail(
                errno.EINVAL,
                f"iova {iova:#x} is not aligned to the IOAS IOVA alignment "
                f"{self.iova_alignment:#x}",
            )
        last = iova + length - 1
        if last > ULONG_MAX:
            fail(errno.EOVERFLOW, f"iova {iova:#x} + length {length:#x} overflows")
        res = self.reserved_first(iova, last)
        if res is not None:
            fail(
                errno.EINVAL,
                f"[{iova:#x}, {last:#x}] intersects the reserved IOVA range "
                f"[{res.first:#x}, {res.last:#x}]",
            )
        area = self.area_first(iova, last)
        if area is not None:
            fail(
                errno.EEXIST,
                f"[{iova:#x}, {last:#x}] overlaps the mapped area [{area.iova:#x}, {area.last:#x}]",
            )

    # map ---------------------------------------------------------------------------------

    def _alloc_area_pages(
        self, plist: list[PagesSlice], length: int, iova: int | None, prot: int
    ) -> int:
        """``iopt_alloc_area_pages``: place the areas, pages not yet attached."""
        for _ in plist:
            self.inject(errno.ENOMEM, "iopt_area_alloc")
        if (length & (self.iova_alignment - 1)) or not length:
            fail(
                errno.EINVAL,
                f"length {length:#x} must be a non-zero multiple of the IOAS IOVA alignment "
                f"{self.iova_alignment:#x}",
            )
        if iova is None:
            elm = plist[0]
            iova = self.alloc_iova(elm.pages.address_of(elm.start_byte), length)
        else:
            self.check_iova(iova, length)
        dst = iova
        try:
            for elm in plist:
                elm.area = self._insert_area(elm, dst, prot)
                dst += elm.length
        except OSError:
            self._abort_areas(plist)
            raise
        return iova

    def _insert_area(self, elm: PagesSlice, iova: int, prot: int) -> Area:
        """``iopt_insert_area``."""
        if prot & IOMMU_WRITE and not elm.pages.writable:
            fail(errno.EPERM, "WRITEABLE requested but the source pages were mapped read-only")
        area = Area(iova, iova + elm.length - 1, elm.start_byte, prot)
        if area.page_offset & (self.iova_alignment - 1):
            fail(
                errno.EINVAL,
                f"page offset {area.page_offset:#x} of the memory is not aligned to the IOAS "
                f"IOVA alignment {self.iova_alignment:#x}",
            )
        if area.last > ULONG_MAX:
            fail(errno.EOVERFLOW, f"iova {iova:#x} + length {elm.length:#x} overflows")
        self.areas[iova] = area
        return area

    def _abort_areas(self, plist: list[PagesSlice]) -> None:
        for elm in plist:
            if elm.area is not None:
                self.areas.pop(elm.area.iova, None)
                elm.area = None

    def map_pages(self, plist: list[PagesSlice], length: int, iova: int | None, prot: int) -> int:
        """``iopt_map_pages``: place, fill every domain, then publish the pages.

        On failure nothing remains: areas removed, pins dropped.
        """
        iova = self._alloc_area_pages(plist, length, iova, prot)
        done: list[PagesSlice] = []
        try:
            for elm in plist:
                assert elm.area is not None
                self._fill_domains(elm.area, elm.pages)
                done.append(elm)
        except OSError:
            for elm in done:
                assert elm.area is not None
                self._unfill_domains(elm.area, elm.pages)
            self._abort_areas(plist)
            raise
        for elm in plist:
            assert elm.area is not None
            elm.area.pages = elm.pages.get()
            if elm.pages.dmabuf is not None:
                elm.pages.dmabuf.unmap_callbacks.append(self._revoke_notify(elm.area))
        return iova

    def _revoke_notify(self, area: Area) -> Callable[[], None]:
        """``iopt_revoke_notify`` for one area: out of every domain (and unpinned)."""

        def notify() -> None:
            if area.pages is not None and self.areas.get(area.iova) is area:
                self._unfill_domains(area, area.pages)

        return notify

    def get_pages(self, iova: int, length: int) -> list[PagesSlice]:
        """``iopt_get_pages``: the pages under ``[iova, iova+length)``, contiguous areas only."""
        if not length:
            fail(errno.EINVAL, "length is 0")
        last_iova = iova + length - 1
        if last_iova > ULONG_MAX:
            fail(errno.EOVERFLOW, f"src_iova {iova:#x} + length {length:#x} overflows")
        out: list[PagesSlice] = []
        for area, cur in self.contig_areas(iova, last_iova):
            assert area.pages is not None
            last = min(last_iova, area.last)
            self.inject(errno.ENOMEM, "iopt_get_pages")  # kzalloc(elm)
            out.append(PagesSlice(area.pages, area.start_byte_at(cur), last - cur + 1))
            if area.last >= last_iova:
                return out
        fail(
            errno.ENOENT,
            f"[{iova:#x}, {last_iova:#x}] is not fully covered by contiguous mapped areas",
        )

    def contig_areas(self, iova: int, last_iova: int) -> Iterator[tuple[Area, int]]:
        """``iopt_for_each_contig_area``: ``(area, cur_iova)`` while areas follow on."""
        cur = iova
        for area in self.area_iter(iova, last_iova):
            if area.iova > cur or area.pages is None:
                return
            yield area, cur
            if area.last >= last_iova:
                return
            cur = area.last + 1

    # unmap -------------------------------------------------------------------------------

    def unmap_iova_range(self, start: int, last: int) -> tuple[int, OSError | None]:
        """``iopt_unmap_iova_range``: remove whole areas inside ``[start, last]``.

        Returns the bytes removed and the error that stopped it, if any: areas fully
        covered below a cut area are already gone when the cut one fails with ENOENT.
        """
        unmapped = 0
        tries = 0
        while True:
            area = self.area_first(start, last)
            if area is None:
                return unmapped, None
            if area.pages is None:
                return unmapped, _err(errno.EBUSY, "the area is still being created")
            if area.num_locks:
                return unmapped, _err(
                    errno.EBUSY,
                    f"area [{area.iova:#x}, {area.last:#x}] is locked by an object using it",
                )
            if area.iova < start or area.last > last:
                return unmapped, _err(
                    errno.ENOENT,
                    f"area [{area.iova:#x}, {area.last:#x}] is only partly inside "
                    f"[{start:#x}, {last:#x}]; areas are never split",
                )
            if area.iova != start:
                tries = 0
            if area.num_accesses:
                start = area.iova
                area.prevent_access = True
                self.notify_unmap(area.iova, area.length)
                tries += 1
                if tries > UNMAP_MAX_TRIES:
                    return unmapped, _err(
                        errno.EDEADLK,
                        f"area [{area.iova:#x}, {area.last:#x}] is still used by "
                        f"{area.num_accesses} access pin(s) after {UNMAP_MAX_TRIES} unmap "
                        "notifications",
                    )
                continue
            pages = area.pages
            area.pages = None
            self._unfill_domains(area, pages)
            del self.areas[area.iova]
            pages.put()
            unmapped += area.length
            if area.last >= last:
                return unmapped, None
            start = area.last + 1

    def notify_unmap(self, iova: int, length: int) -> None:
        """``iommufd_access_notify_unmap``: every attached access's ``unmap`` op is told
        that ``[iova, iova+length)`` goes away; each must unpin what it holds there."""
        for access in list(self.access_list.values()):
            access.notify_unmap(iova, length)

    def add_access(self, access: IoptAccess) -> int:
        """``iopt_add_access``: a list id (lowest free from 0, 16 bits: EBUSY when full),
        then the IOVA alignment recomputed with the access's (EADDRINUSE, not added)."""
        new_id = next(i for i in range(len(self.access_list) + 1) if i not in self.access_list)
        if new_id > ACCESS_LIST_MAX:
            fail(errno.EBUSY, f"all {ACCESS_LIST_MAX + 1} access list ids of the IOAS are used")
        self.access_list[new_id] = access
        try:
            self.calculate_iova_alignment()
        except OSError:
            del self.access_list[new_id]
            raise
        return new_id

    def remove_access(self, access: IoptAccess, list_id: int) -> None:
        """``iopt_remove_access``."""
        assert self.access_list.get(list_id) is access, "access not on this access_list"
        del self.access_list[list_id]
        self.calculate_iova_alignment()

    def unmap_iova(self, iova: int, length: int) -> tuple[int, OSError | None]:
        """``iopt_unmap_iova``."""
        if not length:
            fail(errno.EINVAL, "length is 0")
        if iova + length - 1 > ULONG_MAX:
            fail(errno.EOVERFLOW, f"iova {iova:#x} + length {length:#x} overflows")
        return self.unmap_iova_range(iova, iova + length - 1)

    def unmap_all(self) -> tuple[int, OSError | None]:
        return self.unmap_iova_range(0, ULONG_MAX)

    # allowed / reserved ------------------------------------------------------------------

    def set_allow_iova(self, allowed: SortedDict) -> None:
        """``iopt_set_allow_iova``: swap in atomically, or keep the old list."""
        for first, last in allowed.items():
            res = next(self.reserved_iter(first, last), None)
            if res is not None:
                fail(
                    errno.EADDRINUSE,
                    f"allowed range [{first:#x}, {last:#x}] intersects the reserved range "
                    f"[{res.first:#x}, {res.last:#x}]",
                )
        self.allowed = allowed

    def reserve_iova(self, first: int, last: int, owner: object) -> None:
        """``iopt_reserve_iova``."""
        area = self.area_first(first, last)
        if area is not None:
            fail(
                errno.EADDRINUSE,
                f"cannot reserve [{first:#x}, {last:#x}]: area [{area.iova:#x}, {area.last:#x}] "
                "is mapped there",
            )
        allowed = self.allowed_first(first, last)
        if allowed is not None:
            fail(
                errno.EADDRINUSE,
                f"cannot reserve [{first:#x}, {last:#x}]: it intersects the allowed range "
                f"[{allowed[0]:#x}, {allowed[1]:#x}]",
            )
        self.inject(errno.ENOMEM, "iopt_reserve_iova")
        self.reserved.append(Reserved(first, last, owner))

    def remove_reserved_iova(self, owner: object) -> None:
        self.reserved = [r for r in self.reserved if r.owner is not owner]

    # alignment ---------------------------------------------------------------------------

    def check_iova_alignment(self, new_alignment: int) -> None:
        """``iopt_check_iova_alignment``."""
        mask = new_alignment - 1
        for area in self.areas.values():
            if (area.iova & mask) or (area.length & mask) or (area.page_offset & mask):
                fail(
                    errno.EADDRINUSE,
                    f"area [{area.iova:#x}, {area.last:#x}] (page offset {area.page_offset:#x}) "
                    f"is not aligned to the new IOVA alignment {new_alignment:#x}",
                )
        for access in self.access_list.values():
            if access.iova_alignment > new_alignment:
                fail(
                    errno.EADDRINUSE,
                    f"an attached access needs IOVA alignment {access.iova_alignment:#x} > "
                    f"{new_alignment:#x}",
                )

    def calculate_iova_alignment(self) -> None:
        """``iopt_calculate_iova_alignment``."""
        new = PAGE_SIZE if self.disable_large_pages else 1
        for d in self.domains:
            new = max(new, lowest_bit(d.pgsize_bitmap))
        for access in self.access_list.values():
            new = max(new, access.iova_alignment)
        if new > self.iova_alignment:
            self.check_iova_alignment(new)
        self.iova_alignment = new

    def enable_large_pages(self) -> None:
        self.disable_large_pages = False
        self.calculate_iova_alignment()

    def disable_large_pages_(self) -> None:
        """``iopt_disable_large_pages``."""
        if self.disable_large_pages:
            return
        if self.domains and self.areas:
            fail(
                errno.EINVAL,
                "huge pages cannot be disabled while a domain is attached and areas are mapped",
            )
        self.disable_large_pages = True
        try:
            self.calculate_iova_alignment()
        except OSError:
            self.disable_large_pages = False
            raise

    # domains -----------------------------------------------------------------------------

    def _fill_domains(self, area: Area, pages: IoptPages) -> None:
        """``iopt_area_fill_domains``: pin the area's pages and map them in every domain."""
        if not self.domains or pages.revoked:
            return
        pages.pin(area.index, area.last_index)
        mapped: list[Domain] = []
        try:
            for d in self.domains:
                d.map_range(
                    area.iova,
                    pages,
                    area.start_byte,
                    area.length,
                    area.iommu_prot,
                    self.disable_large_pages,
                )
                mapped.append(d)
        except OSError:
            for d in mapped:
                d.unmap_range(area.iova, area.length)
            pages.unpin(area.index, area.last_index)
            raise
        area.filled = True

    def _unfill_domains(self, area: Area, pages: IoptPages) -> None:
        if not area.filled:
            return
        for d in self.domains:
            d.unmap_range(area.iova, area.length)
        pages.unpin(area.index, area.last_index)
        area.filled = False

    def add_domain(self, domain: Domain) -> None:
        """``iopt_table_add_domain``: reserve outside the aperture, fill every area."""
        new_alignment = max(lowest_bit(domain.pgsize_bitmap), self.iova_alignment)
        if new_alignment > PAGE_SIZE:
            fail(
                errno.EINVAL,
                f"the domain's smallest page {lowest_bit(domain.pgsize_bitmap):#x} is larger "
                f"than PAGE_SIZE {PAGE_SIZE:#x}",
            )
        if new_alignment != self.iova_alignment:
            self.check_iova_alignment(new_alignment)
        try:
            if domain.aperture_start != 0:
                self.reserve_iova(0, domain.aperture_start - 1, domain)
            if domain.aperture_end != ULONG_MAX:
                self.reserve_iova(domain.aperture_end + 1, ULONG_MAX, domain)
            self._fill_domain(domain)
        except OSError:
            self.remove_reserved_iova(domain)
            raise
        self.iova_alignment = new_alignment
        self.domains.append(domain)

    def _fill_domain(self, domain: Domain) -> None:
        """``iopt_fill_domain``: the first domain pins every area; later ones share the pins."""
        first_domain = not self.domains
        done: list[Area] = []
        try:
            for area in self.areas.values():
                if area.pages is None or area.pages.revoked:
                    continue
                if first_domain:
                    area.pages.pin(area.index, area.last_index)
                try:
                    domain.map_range(
                        area.iova,
                        area.pages,
                        area.start_byte,
                        area.length,
                        area.iommu_prot,
                        self.disable_large_pages,
                    )
                except OSError:
                    if first_domain:
                        area.pages.unpin(area.index, area.last_index)
                    raise
                done.append(area)
        except OSError:
            for area in done:
                assert area.pages is not None
                domain.unmap_range(area.iova, area.length)
                if first_domain:
                    area.pages.unpin(area.index, area.last_index)
            raise
        if first_domain:
            for area in done:
                area.filled = True

    def remove_domain(self, domain: Domain) -> None:
        """``iopt_table_remove_domain``: the last domain out unpins everything."""
        self.domains.remove(domain)
        for area in self.areas.values():
            if not area.filled or area.pages is None:
                continue
            domain.unmap_range(area.iova, area.length)
            if not self.domains:
                area.pages.unpin(area.index, area.last_index)
                area.filled = False
        self.remove_reserved_iova(domain)
        self.calculate_iova_alignment()


def _err(err: int, rule: str) -> OSError:
    return KernelError(err, rule)


def _check_range(first: int, last: int, length: int, align: int, page_offset: int) -> int | None:
    """``__alloc_iova_check_range``: the aligned start in ``[first, last]``, if it fits."""
    aligned = first + align - 1
    if aligned > ULONG_MAX:
        return None
    aligned &= ~(align - 1)
    aligned |= page_offset
    if aligned >= last or last - aligned < length - 1:
        return None
    return aligned


def _merge_sorted(
    a: Iterator[tuple[int, int]], b: Iterator[tuple[int, int]]
) -> Iterator[tuple[int, int]]:
    return heapq.merge(a, b)


def area_split(iopt: IoPagetable, area: Area, iova: int) -> None:
    """``iopt_area_split``: ``iova`` becomes the last byte of the left part (type1 v1 unmap)."""
    if iova in (area.iova, area.last):
        return
    if area.pages is None or area.prevent_access:
        fail(errno.EBUSY, "the area is still being created or being unmapped")
    new_start = iova + 1
    alignment = iopt.iova_alignment
    if new_start & (alignment - 1) or area.start_byte_at(new_start) & (alignment - 1):
        fail(
            errno.EINVAL,
            f"cannot split area [{area.iova:#x}, {area.last:#x}] at {new_start:#x}: not aligned "
            f"to the IOVA alignment {alignment:#x}",
        )
    if area.num_accesses:
        fail(errno.EINVAL, "cannot split an area an access object is using")
    if area.filled and not iopt.disable_large_pages:
        fail(errno.EINVAL, "cannot split an area mapped in a domain with huge pages enabled")
    lhs = Area(area.iova, iova, area.start_byte, area.iommu_prot, area.pages, filled=area.filled)
    rhs = Area(
        new_start,
        area.last,
        area.start_byte_at(new_start),
        area.iommu_prot,
        area.pages.get(),
        filled=area.filled,
    )
    iopt.areas[lhs.iova] = lhs
    iopt.areas[rhs.iova] = rhs


def cut_iova(iopt: IoPagetable, iovas: list[int]) -> None:
    """``iopt_cut_iova``."""
    for iova in iovas:
        area = iopt.area_first(iova, iova)
        if area is not None:
            area_split(iopt, area, iova)


def syz_conv_iova(iopt: IoPagetable, iova: int) -> int:
    """``__iommufd_test_syz_conv_iova`` (CONFIG_IOMMUFD_TEST): ``iova`` read as
    ``{u32 nth_area; u32 offset}`` becomes the nth area's IOVA plus the offset (0 if there
    is no nth area) — how syzkaller names IOVAs it cannot know."""
    nth, offset = iova & 0xFFFFFFFF, iova >> 32
    for area in iopt.areas.values():
        if nth == 0:
            return int(area.iova) + offset
        nth -= 1
    return 0
