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
from ioasid.kernel.device import IommuDriver
from ioasid.kernel.errors import fail
from ioasid.kernel.hw_pagetable import AnyDomain
from ioasid.kernel.ownership import GroupState
from ioasid.kernel.private import Machine

QEMU_CAP_REG = 0xD2008C222F0606
QEMU_ECAP_REG = 0x480080F00F4A

SERVER_CAP_REG = QEMU_CAP_REG
SERVER_ECAP_REG = (
    QEMU_ECAP_REG
    | 1 << 7  # SC: snoop control (enforce cache coherency)
    | 1 << 26  # NEST
    | 1 << 40  # PASID
    | 19 << 35  # PSS: 20-bit PASIDs
    | 1 << 45  # SLADS: second-stage A/D (dirty tracking)
)
"""A server-class unit (Sapphire Rapids-like): QEMU's registers plus snoop control,
nesting, 20-bit PASIDs and dirty tracking."""
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


class VtdDriver(IommuDriver):
    """``intel_iommu_ops`` for one device behind ``unit``."""

    unit: VtdUnit

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
