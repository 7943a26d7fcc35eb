"""``viommu.c`` and the vEVENTQ / fault-queue allocators of ``eventq.c``: the argument
checks and lookups the kernel makes first. Creating these objects is not simulated yet
(devices issue): past the lookups they answer ``EOPNOTSUPP``, saying so.
"""

from __future__ import annotations

import errno
from typing import NoReturn

from ioasid import uapi
from ioasid.kernel.device import Device, get_device
from ioasid.kernel.errors import fail
from ioasid.kernel.hw_pagetable import HwptNested, UserData, UserDataArray
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.pages import ULONG_MAX
from ioasid.kernel.private import Ucmd

VEVENTQ_MAX_DEPTH = 1 << 19


class Viommu(IommufdObject):
    """``struct iommufd_viommu`` (none can be created yet)."""

    TYPE = ObjType.VIOMMU

    def cache_invalidate(self, ucmd: Ucmd, array: UserDataArray) -> None:
        """``viommu->ops->cache_invalidate``: a vIOMMU without ops → EOPNOTSUPP."""
        array.entry_num = 0
        _not_simulated("vIOMMU cache invalidation")


def _not_simulated(what: str) -> NoReturn:
    fail(errno.EOPNOTSUPP, f"{what} is not simulated yet (devices issue)")


def get_viommu(ucmd: Ucmd, viommu_id: int) -> Viommu:
    return ucmd.ictx.objects.get(viommu_id, Viommu, "vIOMMU")


def viommu_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_VIOMMU_ALLOC``: flags or type DEFAULT → EOPNOTSUPP; device → ENOENT."""
    cmd = ucmd.cmd
    if cmd.flags or cmd.type == uapi.IOMMU_VIOMMU_TYPE_DEFAULT:
        fail(errno.EOPNOTSUPP, "IOMMU_VIOMMU_ALLOC: flags must be 0 and type not DEFAULT")
    get_device(ucmd, cmd.dev_id)
    _not_simulated("vIOMMU")


def vdevice_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_VDEVICE_ALLOC``: virt_id > ULONG_MAX → EINVAL; vIOMMU → ENOENT."""
    cmd = ucmd.cmd
    if cmd.virt_id > ULONG_MAX:
        fail(errno.EINVAL, f"IOMMU_VDEVICE_ALLOC: virt_id {cmd.virt_id:#x} > ULONG_MAX")
    get_viommu(ucmd, cmd.viommu_id)
    _not_simulated("vDEVICE")


def veventq_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_VEVENTQ_ALLOC``: flags, __reserved or type DEFAULT → EOPNOTSUPP; depth 0 or
    > 2^19 → EINVAL; vIOMMU → ENOENT."""
    cmd = ucmd.cmd
    if cmd.flags or cmd.reserved or cmd.type == uapi.IOMMU_VEVENTQ_TYPE_DEFAULT:
        fail(errno.EOPNOTSUPP, "IOMMU_VEVENTQ_ALLOC: flags/__reserved must be 0, type not DEFAULT")
    if not cmd.veventq_depth or cmd.veventq_depth > VEVENTQ_MAX_DEPTH:
        fail(errno.EINVAL, f"IOMMU_VEVENTQ_ALLOC: depth {cmd.veventq_depth} not in 1..2^19")
    get_viommu(ucmd, cmd.viommu_id)
    _not_simulated("vEVENTQ")


def hw_queue_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_HW_QUEUE_ALLOC``: flags or type DEFAULT → EOPNOTSUPP; length 0 → EINVAL;
    base + length overflow → EOVERFLOW; vIOMMU → ENOENT."""
    cmd = ucmd.cmd
    if cmd.flags or cmd.type == uapi.IOMMU_HW_QUEUE_TYPE_DEFAULT:
        fail(errno.EOPNOTSUPP, "IOMMU_HW_QUEUE_ALLOC: flags must be 0 and type not DEFAULT")
    if not cmd.length:
        fail(errno.EINVAL, "IOMMU_HW_QUEUE_ALLOC: length is 0")
    if cmd.nesting_parent_iova + cmd.length - 1 > ULONG_MAX:
        fail(errno.EOVERFLOW, "IOMMU_HW_QUEUE_ALLOC: nesting_parent_iova + length overflows")
    get_viommu(ucmd, cmd.viommu_id)
    _not_simulated("HW queue")


def viommu_alloc_hwpt_nested(
    ucmd: Ucmd, viommu: Viommu, idev: Device, flags: int, user_data: UserData
) -> HwptNested:
    """``IOMMU_HWPT_ALLOC`` on a vIOMMU (none can be created yet)."""
    _not_simulated("a nested HWPT on a vIOMMU")
