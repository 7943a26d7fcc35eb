"""An IOMMU unit: capabilities, the paging domains its driver allocates, the attach
compatibility rules, the per-requester attachment (context / PASID table entries) and the
unit's IOTLB.

Two drivers are modelled, each as Linux 7.3 implements it:

* ``intel-iommu`` second-stage paging (``intel_iommu_domain_alloc_second_stage()`` and
  ``paging_domain_compatible_second_stage()`` in ``drivers/iommu/intel/iommu.c``): caps are
  CAP.MGAW, CAP.SAGAW, CAP.SLLPS, ECAP.SLADS (dirty), ECAP.NEST, ECAP.SC (snoop control),
  ECAP.PSS (PASID width). First-stage domains are not modelled.
* ``iommufd_selftest`` (``drivers/iommu/iommufd/selftest.c``): the mock IOMMU whose only
  attach rule is that a domain with dirty ops cannot go to a ``MOCK_FLAGS_DEVICE_NO_DIRTY``
  device; model such a device behind a unit built with ``IommuCaps.mock(dirty_tracking=False)``.

An incompatible domain makes the kernel's attach fail with ``EINVAL`` (iommufd then tries
another domain); :meth:`IommuUnit.domain_compatible` says which rule failed, with values.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass

from ioasid.uapi.iommufd_test import MOCK_IOMMUPT_DEFAULT

from .iotlb import DEFAULT_IOTLB_ENTRIES, Iotlb
from .pagetable.base import (
    Access,
    FaultReason,
    HwError,
    Prot,
    Translation,
    WalkFault,
)
from .pagetable.mock import MockPageTable, _mock_default_pgsize_bitmap
from .pagetable.nested import NestedPageTable, PhysMemory, Stage1
from .pagetable.radix import IntArray, RadixPageTable
from .pagetable.vtd import SZ_1G, SZ_2M, SZ_4K, VtdSecondStage

IOMMU_NO_PASID = 0
MOCK_PASID_WIDTH = 20


class DomainAllocFlags(enum.IntFlag):
    """``IOMMU_HWPT_ALLOC_*`` flags a driver's ``domain_alloc_paging_flags`` sees."""

    NONE = 0
    NEST_PARENT = 1 << 0
    DIRTY_TRACKING = 1 << 1
    PASID = 1 << 3


class Driver(enum.Enum):
    MOCK = "iommufd_selftest"
    VTD = "intel-iommu"


@dataclass(frozen=True)
class IommuCaps:
    """What one IOMMU unit supports.

    ``address_width`` is VT-d CAP.MGAW (max guest address width, bits); ``levels`` the
    table depths of CAP.SAGAW (3, 4, 5); ``super_pages`` CAP.SLLPS (bit 0: 2 MiB, bit 1:
    1 GiB); ``dirty_tracking`` ECAP.SLADS (+SMTS/SMPWC) or, for the mock, "not NO_DIRTY";
    ``nesting`` ECAP.NEST; ``max_pasid_log2`` the PASID width (0: no PASID support);
    ``enforce_cache_coherency`` ECAP.SC (``IOMMU_CAP_ENFORCE_CACHE_COHERENCY``).
    """

    driver: Driver
    address_width: int
    levels: frozenset[int]
    super_pages: int
    dirty_tracking: bool
    nesting: bool
    max_pasid_log2: int
    enforce_cache_coherency: bool
    iotlb_entries: int = DEFAULT_IOTLB_ENTRIES

    @property
    def pgsize_bitmap(self) -> int:
        """Page sizes the unit can walk: 4 KiB plus the super pages of SLLPS (VT-d); every
        size the mock format offers (mock)."""
        if self.driver is Driver.MOCK:
            return _mock_default_pgsize_bitmap()
        bitmap = SZ_4K
        if self.super_pages & 1:
            bitmap |= SZ_2M
        if self.super_pages & 2:
            bitmap |= SZ_1G
        return bitmap

    @classmethod
    def vtd(
        cls,
        *,
        address_width: int = 48,
        levels: tuple[int, ...] = (3, 4),
        super_pages: int = 0b11,
        dirty_tracking: bool = True,
        nesting: bool = True,
        max_pasid_log2: int = 20,
        snoop_control: bool = True,
        iotlb_entries: int = DEFAULT_IOTLB_ENTRIES,
    ) -> IommuCaps:
        """A scalable-mode VT-d unit (defaults: a Sapphire-Rapids-like 48-bit, 4-level
        unit with 2 MiB/1 GiB pages, SLADS, nesting, 20-bit PASIDs, snoop control)."""
        return cls(
            driver=Driver.VTD,
            address_width=address_width,
            levels=frozenset(levels),
            super_pages=super_pages,
            dirty_tracking=dirty_tracking,
            nesting=nesting,
            max_pasid_log2=max_pasid_log2,
            enforce_cache_coherency=snoop_control,
            iotlb_entries=iotlb_entries,
        )

    @classmethod
    def mock(
        cls,
        *,
        dirty_tracking: bool = True,
        max_pasid_log2: int = 0,
        iotlb_entries: int = DEFAULT_IOTLB_ENTRIES,
    ) -> IommuCaps:
        """The selftest mock IOMMU as one mock device sees it: ``dirty_tracking=False`` is
        a ``MOCK_FLAGS_DEVICE_NO_DIRTY`` device, ``max_pasid_log2=20`` a
        ``MOCK_FLAGS_DEVICE_PASID`` one. ``IOMMU_CAP_ENFORCE_CACHE_COHERENCY`` is false."""
        return cls(
            driver=Driver.MOCK,
            address_width=38,
            levels=frozenset({3}),
            super_pages=0,
            dirty_tracking=dirty_tracking,
            nesting=True,
            max_pasid_log2=max_pasid_log2,
            enforce_cache_coherency=False,
            iotlb_entries=iotlb_entries,
        )


def _vasz_for(caps: IommuCaps) -> tuple[int, int]:
    """``compute_vasz_lg2_ss()``: the largest table both MGAW and SAGAW support, as
    ``(max_vasz_lg2, top_level)``; a deeper walk may be limited to fewer bits."""
    sagaw = sum(1 << (lv - 2) for lv in caps.levels)
    mgaw = caps.address_width

    def ffs(x: int) -> int:
        return (x & -x).bit_length()

    if mgaw > 48 and sagaw >= 1 << 3:
        return min(57, mgaw), 4
    if mgaw > 39 and sagaw >= 1 << 2:
        return min(48, mgaw), 3 + ffs(sagaw >> 3)
    if mgaw > 30 and sagaw >= 1 << 1:
        return min(39, mgaw), 2 + ffs(sagaw >> 2)
    return 0, 0


class Domain:
    """A paging ``iommu_domain``: the page table plus what the driver attached to it
    (dirty ops, nesting-parent flag, enforced coherency) and the units it is attached to,
    so that :meth:`unmap` and the dirty read-out flush every IOTLB that may cache it —
    what ``iotlb_sync`` / ``cache_tag_flush_range()`` do in the kernel."""

    def __init__(
        self,
        driver: Driver,
        pagetable: RadixPageTable,
        flags: DomainAllocFlags = DomainAllocFlags.NONE,
    ) -> None:
        self.driver = driver
        self.pagetable = pagetable
        self.flags = flags
        self.dirty_ops = bool(flags & DomainAllocFlags.DIRTY_TRACKING)
        self.nest_parent = bool(flags & DomainAllocFlags.NEST_PARENT)
        self.force_snooping = False
        self._units: dict[IommuUnit, int] = {}
        self.nested_children: list[NestedDomain] = []
        """Nested domains on this parent: a stage-2 change flushes their IOTLB entries too
        (VT-d ``CACHE_TAG_NESTING_IOTLB``: domain-selective, the GIOVAs are unknown)."""

    def __repr__(self) -> str:
        return f"<Domain {self.driver.value} {self.pagetable.FORMAT} flags={self.flags!r}>"

    @property
    def pgsize_bitmap(self) -> int:
        return self.pagetable.pgsize_bitmap

    @property
    def aperture(self) -> tuple[int, int]:
        return self.pagetable.aperture

    @property
    def max_vasz_lg2(self) -> int:
        return self.pagetable.max_vasz_lg2

    @property
    def dirty_tracking(self) -> bool:
        """Whether hardware dirty tracking is currently enabled (``set_dirty_tracking``)."""
        return self.pagetable.ad_enabled

    @property
    def units(self) -> tuple[IommuUnit, ...]:
        return tuple(self._units)

    def map(
        self, iova: int, pa: int, size: int, prot: Prot, *, max_pgsize: int | None = None
    ) -> None:
        """``iommu_map()``: see :meth:`RadixPageTable.map`. ``max_pgsize`` maps with no
        leaf larger than it, as that many ``iommu_map()`` calls of ``max_pgsize`` each
        would (iommufd's ``batch_iommu_map_small`` with huge pages disabled)."""
        self.pagetable.map(iova, pa, size, prot, max_pgsize=max_pgsize)

    def unmap(self, iova: int, length: int) -> int:
        """``iommu_unmap()``: unmap, then invalidate the IOTLB of every attached unit for
        the range actually unmapped; returns the bytes unmapped."""
        unmapped = self.pagetable.unmap(iova, length)
        if unmapped:
            self.flush_iotlb(iova, unmapped)
        return unmapped

    def unmap_nosync(self, iova: int, length: int) -> int:
        """``iommu_unmap_fast()`` without the following ``iotlb_sync``: the IOTLBs keep
        whatever they cached until :meth:`flush_iotlb`."""
        return self.pagetable.unmap(iova, length)

    def flush_iotlb(self, iova: int, length: int) -> None:
        for unit in self._units:
            unit.invalidate(self, iova, length)
        for child in self.nested_children:
            child.flush_all()

    def flush_all(self) -> None:
        """Domain-selective invalidation on every unit the domain is attached to."""
        for unit in self._units:
            unit.invalidate_domain(self)

    def iova_to_phys(self, iova: int) -> int | None:
        return self.pagetable.iova_to_phys(iova)

    def set_dirty_tracking(self, enable: bool) -> None:
        """``set_dirty_tracking``: turn hardware A/D updates on or off (VT-d: SSADE in the
        PASID entries of every attached device). ``EINVAL`` to enable without dirty ops,
        as ``mock_domain_set_dirty_tracking()`` does."""
        if enable and not self.dirty_ops:
            raise HwError(errno.EINVAL, "domain was not allocated with DIRTY_TRACKING")
        if self.pagetable.ad_enabled != enable:
            self.pagetable.ad_enabled = enable
            for unit in self._units:
                unit.invalidate_domain(self)

    def read_and_clear_dirty(
        self, iova: int, length: int, *, no_clear: bool = False
    ) -> list[tuple[int, int]]:
        """The dirty ranges of ``[iova, iova+length)``; cleared leaves are flushed from the
        IOTLBs (so the next write walks and sets D again), as the kernel's gather does."""
        starts, ends = self.read_and_clear_dirty_runs(iova, length, no_clear=no_clear)
        return [(s, e - s) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]

    def read_and_clear_dirty_runs(
        self, iova: int, length: int, *, no_clear: bool = False
    ) -> tuple[IntArray, IntArray]:
        """:meth:`read_and_clear_dirty` as arrays of run starts and ends. The cleared
        leaves are flushed in one invalidation of the span they cover, as the kernel's
        ``iommu_iotlb_gather`` accumulates one range and syncs it once."""
        starts, ends = self.pagetable.read_and_clear_dirty_runs(iova, length, no_clear=no_clear)
        if not no_clear and starts.size:
            first = int(starts[0])
            self.flush_iotlb(first, int(ends[-1]) - first)
        return starts, ends

    def set_dirty(self, iova: int) -> bool:
        """The generic pt ``set_dirty`` behind ``IOMMU_TEST_OP_DIRTY``."""
        return self.pagetable.set_dirty(iova)

    def enforce_cache_coherency(self) -> bool:
        """The driver's ``enforce_cache_coherency`` op. VT-d second stage: succeeds when
        every attached unit has snoop control, then every later map sets SNP. The mock
        has no such op: always False."""
        if self.driver is not Driver.VTD:
            return False
        if not all(u.caps.enforce_cache_coherency for u in self._units):
            return False
        assert isinstance(self.pagetable, VtdSecondStage)
        self.pagetable.force_coherence = True
        self.force_snooping = True
        return True

    def is_empty(self) -> bool:
        return self.pagetable.is_empty()


class NestedDomain(Domain):
    """A nested domain: the guest's ``stage1`` over the ``parent`` paging domain (its
    stage 2). Attached like any domain; a DMA walks both stages
    (:class:`~ioasid.hw.pagetable.nested.NestedPageTable`) and the IOTLB caches the
    combined leaf under the nested domain's own tag (its DID)."""

    pagetable: NestedPageTable  # type: ignore[assignment]

    def __init__(self, parent: Domain, stage1: Stage1, memory: PhysMemory) -> None:
        self.driver = parent.driver
        self.pagetable = NestedPageTable(stage1, parent.pagetable, memory)
        self.flags = DomainAllocFlags.NONE
        self.dirty_ops = False
        self.nest_parent = False
        self.force_snooping = False
        self._units = {}
        self.nested_children = []
        self.parent = parent
        parent.nested_children.append(self)

    def __repr__(self) -> str:
        return f"<NestedDomain {self.pagetable.stage1.FORMAT} on {self.parent!r}>"

    def free(self) -> None:
        """The domain's ``free``: the parent forgets it."""
        if self in self.parent.nested_children:
            self.parent.nested_children.remove(self)

    def iova_to_phys(self, iova: int) -> int | None:
        return self.pagetable.iova_to_phys(iova)


class IommuUnit:
    """One IOMMU (a DMAR unit, or the mock IOMMU): caps, domain ids, attachments, IOTLB.

    Requesters are identified by ``rid`` (any int: the PCI requester id, or a mock device
    number) and optional PASID; ``pasid=None`` is the RID itself (``IOMMU_NO_PASID``).
    """

    def __init__(self, caps: IommuCaps, name: str = "dmar0") -> None:
        self.caps = caps
        self.name = name
        self.iotlb = Iotlb(caps.iotlb_entries)
        self._dids: dict[Domain, int] = {}
        self._did_users: dict[int, int] = {}
        self._attach: dict[tuple[int, int], Domain] = {}

    def __repr__(self) -> str:
        return f"<IommuUnit {self.name} {self.caps.driver.value}>"

    # ------------------------------------------------------------ domain alloc

    def domain_alloc_paging(
        self,
        flags: DomainAllocFlags | int = DomainAllocFlags.NONE,
        *,
        pagetable_type: int = MOCK_IOMMUPT_DEFAULT,
    ) -> Domain:
        """The driver's ``domain_alloc_paging_flags``. ``EOPNOTSUPP`` for flags outside
        NEST_PARENT|DIRTY_TRACKING|PASID, for DIRTY_TRACKING without dirty support, for
        NEST_PARENT without nesting (VT-d), for an unknown mock ``pagetable_type``."""
        flags = DomainAllocFlags(flags)
        allowed = (
            DomainAllocFlags.NEST_PARENT | DomainAllocFlags.DIRTY_TRACKING | DomainAllocFlags.PASID
        )
        if int(flags) & ~int(allowed):
            raise HwError(errno.EOPNOTSUPP, f"unsupported alloc flags {int(flags):#x}")
        if flags & DomainAllocFlags.DIRTY_TRACKING and not self.caps.dirty_tracking:
            raise HwError(errno.EOPNOTSUPP, f"{self.name} has no dirty tracking")
        pagetable: RadixPageTable
        if self.caps.driver is Driver.MOCK:
            pagetable = MockPageTable(pagetable_type)
        else:
            if flags & DomainAllocFlags.NEST_PARENT and not self.caps.nesting:
                raise HwError(errno.EOPNOTSUPP, f"{self.name} has no nesting (ECAP.NEST)")
            vasz, top_level = _vasz_for(self.caps)
            if not vasz:
                raise HwError(errno.EOPNOTSUPP, f"{self.name}: no usable SAGAW/MGAW")
            pagetable = VtdSecondStage(
                vasz,
                top_level=top_level,
                super_pages=self.caps.super_pages,
                force_writeable=bool(flags & DomainAllocFlags.NEST_PARENT),
            )
        return Domain(self.caps.driver, pagetable, flags)

    # --------------------------------------------------------- compatibility

    def domain_compatible(self, domain: Domain) -> str | None:
        """``None`` when ``domain`` can be attached to a device behind this unit, else the
        rule that fails (the kernel's attach returns ``EINVAL``). Checked in the order of
        ``paging_domain_compatible_second_stage()`` / ``mock_domain_nop_attach()``."""
        caps = self.caps
        if isinstance(domain, NestedDomain):
            if not caps.nesting:
                return f"nesting: {self.name} cannot walk a nested domain (no ECAP.NEST)"
            if caps.driver is Driver.MOCK:
                # mock_domain_nop_attach checks the nested domain's own dirty_ops (it has
                # none), never its parent's; VT-d checks the parent (paging_domain_compatible)
                return None
            return self.domain_compatible(domain.parent)
        if domain.driver is not caps.driver:
            return (
                f"domain belongs to {domain.driver.value}, "
                f"{self.name} is driven by {caps.driver.value}"
            )
        if domain.dirty_ops and not caps.dirty_tracking:
            return f"dirty tracking: domain has dirty ops, {self.name} has no dirty tracking"
        if caps.driver is Driver.MOCK:
            return None
        if domain.nest_parent and not caps.nesting:
            return f"nesting: domain is a nesting parent, {self.name} has no ECAP.NEST"
        if caps.address_width < domain.max_vasz_lg2:
            return (
                f"address width: domain needs {domain.max_vasz_lg2} bits, "
                f"{self.name} MGAW is {caps.address_width}"
            )
        levels = domain.pagetable.top_level + 1
        if levels not in caps.levels:
            return (
                f"table levels: domain walks {levels} levels, {self.name} SAGAW supports "
                f"{sorted(caps.levels)}"
            )
        missing = domain.pgsize_bitmap & ~caps.pgsize_bitmap
        if missing:
            return (
                f"page sizes: domain pgsize_bitmap {domain.pgsize_bitmap:#x} has "
                f"{missing:#x}, {self.name} supports {caps.pgsize_bitmap:#x}"
            )
        if domain.force_snooping and not caps.enforce_cache_coherency:
            return f"coherency: domain enforces snooping, {self.name} has no ECAP.SC"
        return None

    # -------------------------------------------------------------- attach

    def attach(self, rid: int, domain: Domain | None, pasid: int | None = None) -> None:
        """Point the context entry (``pasid=None``) or PASID entry of ``rid`` at
        ``domain`` (``None``: blocked). ``EINVAL`` when incompatible or when the PASID is
        beyond the unit's width; replacing a domain drops the old one's IOTLB entries when
        its last user on this unit goes."""
        key = (rid, IOMMU_NO_PASID if pasid is None else pasid)
        if pasid is not None and pasid != IOMMU_NO_PASID and pasid >> self.caps.max_pasid_log2:
            raise HwError(
                errno.EINVAL,
                f"PASID {pasid:#x} beyond {self.name}'s {self.caps.max_pasid_log2}-bit width",
            )
        if domain is not None:
            reason = self.domain_compatible(domain)
            if reason is not None:
                raise HwError(errno.EINVAL, reason)
            did = self._dids.get(domain)
            if did is None:
                did = 1
                while did in self._did_users:
                    did += 1
                self._dids[domain] = did
                self._did_users[did] = 0
                domain._units[self] = 0
            self._did_users[did] += 1
            domain._units[self] += 1
        old = self._attach.pop(key, None)
        if domain is not None:
            self._attach[key] = domain
        if old is not None:
            self._release(old)

    def detach(self, rid: int, pasid: int | None = None) -> Domain | None:
        """Block ``rid`` (or one of its PASIDs); returns the domain that was attached."""
        old = self._attach.pop((rid, IOMMU_NO_PASID if pasid is None else pasid), None)
        if old is not None:
            self._release(old)
        return old

    def _release(self, domain: Domain) -> None:
        did = self._dids[domain]
        self._did_users[did] -= 1
        domain._units[self] -= 1
        if not self._did_users[did]:
            self.iotlb.invalidate_domain(did)
            del self._did_users[did]
            del self._dids[domain]
            del domain._units[self]

    def attached(self, rid: int, pasid: int | None = None) -> Domain | None:
        return self._attach.get((rid, IOMMU_NO_PASID if pasid is None else pasid))

    def domain_id(self, domain: Domain) -> int | None:
        """The DID this unit tags ``domain``'s IOTLB entries with (lowest free from 1)."""
        return self._dids.get(domain)

    # ----------------------------------------------------------- translate

    def translate(
        self, rid: int, iova: int, access: Access, pasid: int | None = None
    ) -> Translation | WalkFault:
        """Translate one DMA request: attachment lookup, IOTLB, page walk on a miss (and
        on a write hitting an entry cached clean while A/D updates are on, to set D)."""
        domain = self._attach.get((rid, IOMMU_NO_PASID if pasid is None else pasid))
        if domain is None:
            return WalkFault(iova, access, FaultReason.BLOCKED, -1)
        did = self._dids[domain]
        cached = self.iotlb.lookup(did, iova)
        if cached is not None:
            if access is Access.READ:
                if cached.readable:
                    return cached
            elif cached.writable and (cached.dirty or not domain.pagetable.ad_enabled):
                return cached
        result = domain.pagetable.walk(iova, access)
        if isinstance(result, Translation):
            self.iotlb.fill(did, result)
        return result

    def translate_runs(
        self, rid: int, iova: int, length: int, access: Access, pasid: int | None = None
    ) -> tuple[list[tuple[int, int]], WalkFault | None, int]:
        """:meth:`translate` over ``[iova, iova+length)``, leaf after leaf with the same
        IOTLB probes, walks and fills: the ``(pa, n)`` runs of physically contiguous bytes
        up to the first fault, that fault (or None) and the bytes before it."""
        domain = self._attach.get((rid, IOMMU_NO_PASID if pasid is None else pasid))
        if domain is None:
            return [], WalkFault(iova, access, FaultReason.BLOCKED, -1), 0
        did = self._dids[domain]
        iotlb = self.iotlb
        stats = iotlb.stats
        entries = iotlb._entries  # the IOTLB probe of lookup(), inlined: one per leaf
        fill = iotlb.fill
        walk = domain.pagetable.walk
        read = access is Access.READ
        ad = domain.pagetable.ad_enabled
        runs: list[tuple[int, int]] = []
        done = run_pa = run_len = 0
        while done < length:
            cur = iova + done
            t = None
            for lg2 in iotlb._sizes.get(did, ()):
                t = entries.get((did, lg2, cur >> lg2))
                if t is not None:
                    break
            if t is None:
                stats.misses += 1
            else:
                stats.hits += 1
                if not (t.readable if read else t.writable and (t.dirty or not ad)):
                    t = None
            if t is None:
                result = walk(cur, access)
                if not isinstance(result, Translation):
                    if run_len:
                        runs.append((run_pa, run_len))
                    return runs, result, done
                fill(did, result)
                t = result
            pa = t.pa + (cur - t.iova)
            chunk = min(length - done, t.iova + t.size - cur)
            if run_len and run_pa + run_len == pa:
                run_len += chunk
            else:
                if run_len:
                    runs.append((run_pa, run_len))
                run_pa, run_len = pa, chunk
            done += chunk
        if run_len:
            runs.append((run_pa, run_len))
        return runs, None, done

    def invalidate(self, domain: Domain, iova: int, length: int) -> None:
        """Page-selective IOTLB invalidation for ``domain`` on this unit."""
        did = self._dids.get(domain)
        if did is not None:
            self.iotlb.invalidate(did, iova, length)

    def invalidate_domain(self, domain: Domain) -> None:
        did = self._dids.get(domain)
        if did is not None:
            self.iotlb.invalidate_domain(did)
