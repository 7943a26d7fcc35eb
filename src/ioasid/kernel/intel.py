"""The Intel VT-d driver (``drivers/iommu/intel``) as iommufd meets it.

The unit is described by its capability registers, as hardware presents it; the defaults
are those of QEMU's ``intel-iommu`` in the oracle guest (48-bit, 3/4-level, 2 MiB and 1 GiB
pages, scalable mode, no snoop control, no nesting, no dirty tracking, no PASID), so a
simulated device answers ``IOMMU_GET_HW_INFO`` as the edu device does there.
"""

from __future__ import annotations

import errno

from ioasid import uapi
from ioasid.hw.iommu import IommuCaps, IommuUnit
from ioasid.hw.iommu import NestedDomain as HwNestedDomain
from ioasid.hw.pagetable.vtd import VtdSecondStage
from ioasid.hw.pagetable.vtd_fs import VtdFirstStage
from ioasid.kernel.device import IommuDriver
from ioasid.kernel.errors import fail
from ioasid.kernel.hw_pagetable import (
    AnyDomain,
    IommuDomain,
    NestedDomain,
    UserData,
    UserDataArray,
    copy_struct_from_user,
    copy_struct_from_user_array,
)
from ioasid.kernel.ownership import GroupState
from ioasid.kernel.private import Machine, Ucmd

QEMU_CAP_REG = 0xD2008C222F0606
QEMU_ECAP_REG = 0x480080F00F4A

SERVER_CAP_REG = QEMU_CAP_REG | 1 << 56  # FL1GP: 1 GiB first-stage pages
SERVER_ECAP_REG = (
    QEMU_ECAP_REG
    | 1 << 7  # SC: snoop control (enforce cache coherency)
    | 1 << 26  # NEST
    | 1 << 40  # PASID
    | 19 << 35  # PSS: 20-bit PASIDs
    | 1 << 45  # SLADS: second-stage A/D (dirty tracking)
    | 1 << 47  # FLTS: first-stage translation
)
"""A server-class unit (Sapphire Rapids-like): QEMU's registers plus snoop control,
nesting with first-stage tables (1 GiB pages, 4-level), 20-bit PASIDs and dirty tracking."""

CAP_FL1GP = 1 << 56
CAP_FL5LP = 1 << 60
ECAP_SRS = 1 << 31
ECAP_EAFS = 1 << 34
ECAP_NEST = 1 << 26
ECAP_SMTS = 1 << 43
VTD_PAGE_SIZE = 4096
U64_MAX = (1 << 64) - 1
IOAPIC_RANGE = (0xFEE00000, 0xFEEFFFFF)


def caps_from_registers(cap: int, ecap: int) -> IommuCaps:
    """Decode CAP/ECAP: SAGAW, MGAW, SLLPS, ECAP.SC/NEST/SLADS/PASID/PSS."""
    pasid_log2 = (ecap >> 35 & 0x1F) + 1 if ecap >> 40 & 1 else 0
    sagaw = cap >> 8 & 0x1F
    levels = tuple(lv for bit, lv in ((1, 3), (2, 4), (3, 5)) if sagaw >> bit & 1)
    return IommuCaps.vtd(
        address_width=(cap >> 16 & 0x3F) + 1,
        levels=levels,
        super_pages=cap >> 34 & 0x3,
        dirty_tracking=bool(ecap >> 45 & 1),
        nesting=bool(ecap >> 26 & 1),
        max_pasid_log2=pasid_log2,
        snoop_control=bool(ecap >> 7 & 1),
    )


class VtdUnit(IommuUnit):
    """A DMAR unit with its raw capability registers."""

    def __init__(
        self, name: str = "dmar0", cap: int = QEMU_CAP_REG, ecap: int = QEMU_ECAP_REG
    ) -> None:
        super().__init__(caps_from_registers(cap, ecap), name)
        self.cap_reg = cap
        self.ecap_reg = ecap


class VtdNestedDomain(NestedDomain):
    """``struct dmar_domain`` of a nested (first-stage over ``s2_domain``) domain: the
    guest's ``iommu_hwpt_vtd_s1`` (``s1_cfg``). Its hardware view is built when the PASID
    entry is set up nested (the first attach), once ``s1_cfg`` is validated there."""

    def __init__(self, parent: IommuDomain, owner: str, s1_cfg: uapi.iommu_hwpt_vtd_s1) -> None:
        super().__init__(parent, owner)
        self.s1_cfg = s1_cfg

    def setup_nested(self, unit: VtdUnit) -> None:
        """``intel_pasid_setup_nested``'s checks: ``addr_width`` 48, or 57 with CAP.FL5LP,
        else EINVAL; SRE without ECAP.SRS, EAFE without ECAP.EAFS → EINVAL."""
        cfg = self.s1_cfg
        if cfg.addr_width not in (48, 57) or (
            cfg.addr_width == 57 and not unit.cap_reg & CAP_FL5LP
        ):
            fail(
                errno.EINVAL,
                f"VT-d nested: stage-1 address width {cfg.addr_width} (48, or 57 with "
                f"CAP.FL5LP; {unit.name} FL5LP={bool(unit.cap_reg & CAP_FL5LP)})",
            )
        if cfg.flags & uapi.IOMMU_VTD_S1_SRE and not unit.ecap_reg & ECAP_SRS:
            fail(errno.EINVAL, f"VT-d nested: SRE without ECAP.SRS on {unit.name}")
        if cfg.flags & uapi.IOMMU_VTD_S1_EAFE and not unit.ecap_reg & ECAP_EAFS:
            fail(errno.EINVAL, f"VT-d nested: EAFE without ECAP.EAFS on {unit.name}")
        if self.hw is None:
            stage1 = VtdFirstStage(
                cfg.pgtbl_addr, cfg.addr_width, super_1g=bool(unit.cap_reg & CAP_FL1GP)
            )
            self.hw = HwNestedDomain(self.parent.hw, stage1, self.parent.phys)

    def cache_invalidate_user(self, ucmd: Ucmd, array: UserDataArray) -> None:
        """``intel_nested_cache_invalidate_user``: array type other than VTD_S1 → EINVAL;
        per entry: copy (EINVAL/E2BIG/EFAULT), flags other than LEAF or ``__reserved`` →
        EOPNOTSUPP, ``addr`` not 4 KiB aligned or ``npages`` U64_MAX with an ``addr`` →
        EINVAL; then the range is flushed from the IOTLB (U64_MAX pages: everything)."""
        processed = 0
        try:
            if array.type != uapi.IOMMU_HWPT_INVALIDATE_DATA_VTD_S1:
                fail(errno.EINVAL, f"invalidation data type {array.type:#x} is not VTD_S1")
            for i in range(array.entry_num):
                inv = copy_struct_from_user_array(
                    ucmd,
                    uapi.iommu_hwpt_vtd_s1_invalidate,
                    array,
                    uapi.IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
                    i,
                    "reserved",
                )
                if inv.flags & ~uapi.IOMMU_VTD_INV_FLAGS_LEAF or inv.reserved:
                    fail(errno.EOPNOTSUPP, f"entry {i}: flags {inv.flags:#x} / __reserved")
                if inv.addr % VTD_PAGE_SIZE or (inv.npages == U64_MAX and inv.addr):
                    fail(
                        errno.EINVAL,
                        f"entry {i}: addr {inv.addr:#x} not 4 KiB aligned, or npages U64_MAX "
                        "with an addr",
                    )
                if self.hw is not None:
                    if inv.npages == U64_MAX:
                        self.hw.flush_all()
                    else:
                        self.hw.flush_iotlb(inv.addr, inv.npages * VTD_PAGE_SIZE)
                processed += 1
        finally:
            array.entry_num = processed


class VtdDriver(IommuDriver):
    """``intel_iommu_ops`` for one device behind ``unit``."""

    unit: VtdUnit
    has_nested = True

    def __init__(
        self,
        kernel: Machine,
        unit: VtdUnit,
        rid: int,
        pasid_log2: int = 0,
        group: GroupState | None = None,
    ) -> None:
        super().__init__(kernel, unit, rid)
        width = min(pasid_log2, unit.caps.max_pasid_log2)
        self.max_pasids = 1 << width if width else 0
        self.group = group

    def attach_dev(self, domain: AnyDomain | None) -> None:
        """Attach the whole IOMMU group: the first device in programs every member's
        context entry; the last one out blocks them (``iommufd_group_first_attach``).
        Another member attached elsewhere → EINVAL."""
        group = self.group
        if group is None:
            super().attach_dev(domain)
            return
        if domain is None:
            group.attached.pop(self, None)
            if not group.attached:
                for rid in group.rids:
                    self.unit.detach(rid)
            return
        other = group.hwpt_of_group(self)
        if other is not None and other is not domain:
            fail(
                errno.EINVAL,
                f"IOMMU group {group.id} is attached to another domain: every device of a "
                "group must use the same HWPT",
            )
        for rid in group.rids:
            saved, self.rid = self.rid, rid
            try:
                self._program(domain, None)
            finally:
                self.rid = saved
        group.attached[self] = domain

    def domain_alloc_nested(
        self, ucmd: Ucmd, parent: IommuDomain, flags: int, user_data: UserData
    ) -> NestedDomain:
        """``intel_iommu_domain_alloc_nested``: no scalable mode or ECAP.NEST, or flags
        other than PASID → EOPNOTSUPP; data type other than VTD_S1 → EOPNOTSUPP; a parent
        that is not a second-stage NEST_PARENT domain → EINVAL; copy
        ``iommu_hwpt_vtd_s1`` (shorter than 24 → EINVAL, a non-zero tail → E2BIG)."""
        unit = self.unit
        nested_supported = unit.ecap_reg & ECAP_SMTS and unit.ecap_reg & ECAP_NEST
        if not nested_supported or flags & ~uapi.IOMMU_HWPT_ALLOC_PASID:
            fail(
                errno.EOPNOTSUPP,
                f"intel-iommu: no nesting on {unit.name} (ECAP.SMTS/NEST) or flags {flags:#x}",
            )
        if user_data.type != uapi.IOMMU_HWPT_DATA_VTD_S1:
            fail(errno.EOPNOTSUPP, f"intel-iommu: nested data type {user_data.type:#x}")
        if not isinstance(parent.hw.pagetable, VtdSecondStage) or not parent.hw.nest_parent:
            fail(errno.EINVAL, "intel-iommu: the parent is not a second-stage NEST_PARENT domain")
        cfg: uapi.iommu_hwpt_vtd_s1 = copy_struct_from_user(
            ucmd,
            uapi.iommu_hwpt_vtd_s1,
            user_data.uptr,
            user_data.len,
            uapi.iommu_hwpt_vtd_s1.offsetofend("reserved"),
            "iommu_hwpt_vtd_s1",
        )
        return VtdNestedDomain(parent, self.ops, cfg)

    def _program(self, domain: AnyDomain | None, pasid: int | None) -> None:
        """A nested domain: ``intel_nested_attach_dev`` / ``_set_dev_pasid`` — the parent
        must suit this unit (EINVAL), then ``intel_pasid_setup_nested``'s checks."""
        if isinstance(domain, VtdNestedDomain):
            reason = self.unit.domain_compatible(domain.parent.hw)
            if reason is not None:
                fail(errno.EINVAL, f"intel-iommu: s2 domain is not compatible: {reason}")
            domain.setup_nested(self.unit)
        super()._program(domain, pasid)

    def hw_info(self, in_type: int) -> tuple[bytes, int]:
        """``intel_iommu_hw_info``."""
        if in_type not in (uapi.IOMMU_HW_INFO_TYPE_DEFAULT, uapi.IOMMU_HW_INFO_TYPE_INTEL_VTD):
            fail(errno.EOPNOTSUPP, f"intel-iommu: hw_info type {in_type:#x} is not INTEL_VTD")
        info = uapi.iommu_hw_info_vtd(
            flags=uapi.IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
            cap_reg=self.unit.cap_reg,
            ecap_reg=self.unit.ecap_reg,
        )
        return bytes(info), uapi.IOMMU_HW_INFO_TYPE_INTEL_VTD

    def capable(self, cap: str) -> bool:
        if cap == "CACHE_COHERENCY":
            return True
        if cap == "DIRTY_TRACKING":
            return self.unit.caps.dirty_tracking
        return False

    def resv_regions(self) -> list[tuple[int, int]]:
        """``intel_iommu_get_resv_regions``: the IOAPIC/MSI window (no RMRRs here)."""
        return [IOAPIC_RANGE]
