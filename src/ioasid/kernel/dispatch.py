"""``iommufd_ioctl_ops[]``: which handler serves which command number, and the size of its
kernel struct."""

from __future__ import annotations

import ctypes

from ioasid import uapi
from ioasid.kernel import (
    device,
    eventq,
    hw_pagetable,
    hwpt_ioctl,
    ioas,
    mock,
    vfio_compat,
    viommu,
)
from ioasid.kernel.private import Handler
from ioasid.uapi._abi import _IOC_NR

_HANDLERS: dict[str, Handler] = {
    "IOMMU_DESTROY": ioas.destroy,
    "IOMMU_GET_HW_INFO": device.get_hw_info,
    "IOMMU_HWPT_ALLOC": hwpt_ioctl.hwpt_alloc,
    "IOMMU_HWPT_SET_DIRTY_TRACKING": hw_pagetable.hwpt_set_dirty_tracking,
    "IOMMU_HWPT_GET_DIRTY_BITMAP": hw_pagetable.hwpt_get_dirty_bitmap,
    "IOMMU_HWPT_INVALIDATE": hwpt_ioctl.hwpt_invalidate,
    "IOMMU_FAULT_QUEUE_ALLOC": eventq.fault_alloc,
    "IOMMU_VIOMMU_ALLOC": viommu.viommu_alloc,
    "IOMMU_VDEVICE_ALLOC": viommu.vdevice_alloc,
    "IOMMU_VEVENTQ_ALLOC": viommu.veventq_alloc,
    "IOMMU_HW_QUEUE_ALLOC": viommu.hw_queue_alloc,
    "IOMMU_IOAS_ALLOC": ioas.ioas_alloc,
    "IOMMU_IOAS_ALLOW_IOVAS": ioas.ioas_allow_iovas,
    "IOMMU_IOAS_COPY": ioas.ioas_copy,
    "IOMMU_IOAS_IOVA_RANGES": ioas.ioas_iova_ranges,
    "IOMMU_IOAS_MAP": ioas.ioas_map,
    "IOMMU_IOAS_MAP_FILE": ioas.ioas_map_file,
    "IOMMU_IOAS_UNMAP": ioas.ioas_unmap,
    "IOMMU_IOAS_CHANGE_PROCESS": ioas.ioas_change_process,
    "IOMMU_IOAS_NOIOMMU_GET_PA": ioas.ioas_noiommu_get_pa,
    "IOMMU_OPTION": ioas.option,
    "IOMMU_VFIO_IOAS": vfio_compat.vfio_ioas,
}

_HANDLERS["IOMMU_TEST_CMD"] = mock.iommufd_test

TABLE: dict[int, tuple[uapi.IoctlDef, Handler, int]] = {
    op.nr: (op, _HANDLERS[op.name], ctypes.sizeof(op.struct))
    for op in (*uapi.IOMMUFD_IOCTLS, uapi.IOMMU_TEST_IOCTL)
    if op.name in _HANDLERS
}
TABLE_SIZE = _IOC_NR(uapi.IOMMU_TEST_CMD) - uapi.IOMMUFD_CMD_BASE + 1
"""Table entries run up to ``IOMMU_TEST_CMD`` (0xa0) in a CONFIG_IOMMUFD_TEST kernel."""
