"""IOMMU groups of the simulated host and their DMA ownership (``drivers/iommu/iommu.c``).

A group is the unit the IOMMU can isolate. A member bound to an ordinary kernel driver uses
the group's default domain (``iommu_device_use_default_domain``: an owner count with no
owner); ``iommu_device_claim_dma_owner`` — what binding a device to an iommufd does — then
fails with ``EPERM``, as it does when another iommufd already owns the group. Drivers that
manage DMA themselves (vfio-pci, pci-stub, pcieport) take no such count.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from ioasid.kernel.errors import fail

DRIVER_MANAGED_DMA = frozenset({"vfio-pci", "pci-stub", "pcieport"})


@dataclass(eq=False)
class GroupState:
    """``struct iommu_group``: members, owner, and which of them are attached where."""

    id: int
    members: list[str]
    rids: list[int] = field(default_factory=list)
    kernel_users: dict[str, str] = field(default_factory=dict)
    owner: object | None = None
    owner_cnt: int = 0
    attached: dict[object, object] = field(default_factory=dict)
    """Bound device → the HWPT it is attached to (``igroup->pasid_attach``)."""

    def claim_dma_owner(self, owner: object, bdf: str) -> None:
        """``iommu_device_claim_dma_owner``: EPERM if a kernel driver or another owner
        holds the group."""
        if self.kernel_users:
            users = ", ".join(f"{b} ({d})" for b, d in sorted(self.kernel_users.items()))
            fail(
                errno.EPERM,
                f"{bdf}: IOMMU group {self.id} is in use by kernel drivers: {users}; "
                "unbind them (or bind them to vfio-pci) to give the group to user space",
            )
        if self.owner_cnt and self.owner is not owner:
            fail(
                errno.EPERM,
                f"{bdf}: IOMMU group {self.id} is owned by another iommufd; every device "
                "of a group must be bound to the same one",
            )
        self.owner = owner
        self.owner_cnt += 1

    def release_dma_owner(self) -> None:
        self.owner_cnt -= 1
        if not self.owner_cnt:
            self.owner = None

    def hwpt_of_group(self, device: object) -> object | None:
        """The HWPT the other members of this group are attached to, if any."""
        for dev, hwpt in self.attached.items():
            if dev is not device:
                return hwpt
        return None
