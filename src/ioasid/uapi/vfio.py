"""``include/uapi/linux/vfio.h`` of Linux 7.3 as ctypes data, the parts iommufd meets: the
container (``/dev/vfio/vfio``) and type1 IOMMU ioctls that iommufd's VFIO compatibility
emulates, the group ioctls, the device cdev ioctls that bind to an iommufd and attach to
its page tables, device info/region/IRQ/feature basics, and the capability chains.

Not declared: the SPAPR TCE and EEH (POWER) ioctls, the deprecated v1 migration region,
the gfx plane/EDID and NVLink2 region structs — none of them involves iommufd.
"""

from __future__ import annotations

import enum
from ctypes import c_int32, c_uint8, c_uint16, c_uint32, c_uint64

from ._abi import _IO, Struct, Union

VFIO_API_VERSION = 0

VFIO_TYPE1_IOMMU = 1
VFIO_SPAPR_TCE_IOMMU = 2
VFIO_TYPE1v2_IOMMU = 3
VFIO_DMA_CC_IOMMU = 4
VFIO_EEH = 5
__VFIO_RESERVED_TYPE1_NESTING_IOMMU = 6
VFIO_SPAPR_TCE_v2_IOMMU = 7
VFIO_NOIOMMU_IOMMU = 8
VFIO_UNMAP_ALL = 9
VFIO_UPDATE_VADDR = 10

VFIO_TYPE = ord(";")
VFIO_BASE = 100


class vfio_info_cap_header(Struct):
    _fields_ = [
        ("id", c_uint16),
        ("version", c_uint16),
        ("next", c_uint32),
    ]


VFIO_GET_API_VERSION = _IO(VFIO_TYPE, VFIO_BASE + 0)
VFIO_CHECK_EXTENSION = _IO(VFIO_TYPE, VFIO_BASE + 1)
VFIO_SET_IOMMU = _IO(VFIO_TYPE, VFIO_BASE + 2)

VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1


class vfio_group_status(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
    ]


VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3)
VFIO_GROUP_SET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 4)
VFIO_GROUP_UNSET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 5)
VFIO_GROUP_GET_DEVICE_FD = _IO(VFIO_TYPE, VFIO_BASE + 6)

VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1
VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2
VFIO_DEVICE_FLAGS_AMBA = 1 << 3
VFIO_DEVICE_FLAGS_CCW = 1 << 4
VFIO_DEVICE_FLAGS_AP = 1 << 5
VFIO_DEVICE_FLAGS_FSL_MC = 1 << 6
VFIO_DEVICE_FLAGS_CAPS = 1 << 7
VFIO_DEVICE_FLAGS_CDX = 1 << 8


class vfio_device_info(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("num_regions", c_uint32),
        ("num_irqs", c_uint32),
        ("cap_offset", c_uint32),
        ("pad", c_uint32),
    ]


VFIO_DEVICE_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 7)

VFIO_DEVICE_API_PCI_STRING = "vfio-pci"
VFIO_DEVICE_API_PLATFORM_STRING = "vfio-platform"
VFIO_DEVICE_API_AMBA_STRING = "vfio-amba"
VFIO_DEVICE_API_CCW_STRING = "vfio-ccw"
VFIO_DEVICE_API_AP_STRING = "vfio-ap"

VFIO_DEVICE_INFO_CAP_ZPCI_BASE = 1
VFIO_DEVICE_INFO_CAP_ZPCI_GROUP = 2
VFIO_DEVICE_INFO_CAP_ZPCI_UTIL = 3
VFIO_DEVICE_INFO_CAP_ZPCI_PFIP = 4

VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP = 5

VFIO_PCI_ATOMIC_COMP32 = 1 << 0
VFIO_PCI_ATOMIC_COMP64 = 1 << 1
VFIO_PCI_ATOMIC_COMP128 = 1 << 2


class vfio_device_info_cap_pci_atomic_comp(Struct):
    _fields_ = [
        ("header", vfio_info_cap_header),
        ("flags", c_uint32),
        ("reserved", c_uint32),
    ]


VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3


class vfio_region_info(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("index", c_uint32),
        ("cap_offset", c_uint32),
        ("size", c_uint64),
        ("offset", c_uint64),
    ]


VFIO_DEVICE_GET_REGION_INFO = _IO(VFIO_TYPE, VFIO_BASE + 8)

VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1


class vfio_region_sparse_mmap_area(Struct):
    _fields_ = [
        ("offset", c_uint64),
        ("size", c_uint64),
    ]


class vfio_region_info_cap_sparse_mmap(Struct):
    _fields_ = [
        ("header", vfio_info_cap_header),
        ("nr_areas", c_uint32),
        ("reserved", c_uint32),
        ("areas", vfio_region_sparse_mmap_area * 0),
    ]


VFIO_REGION_INFO_CAP_TYPE = 2


class vfio_region_info_cap_type(Struct):
    _fields_ = [
        ("header", vfio_info_cap_header),
        ("type", c_uint32),
        ("subtype", c_uint32),
    ]


VFIO_REGION_TYPE_PCI_VENDOR_TYPE = 1 << 31
VFIO_REGION_TYPE_PCI_VENDOR_MASK = 0xFFFF
VFIO_REGION_TYPE_GFX = 1
VFIO_REGION_TYPE_CCW = 2
VFIO_REGION_TYPE_MIGRATION_DEPRECATED = 3

VFIO_REGION_SUBTYPE_INTEL_IGD_OPREGION = 1
VFIO_REGION_SUBTYPE_INTEL_IGD_HOST_CFG = 2
VFIO_REGION_SUBTYPE_INTEL_IGD_LPC_CFG = 3
VFIO_REGION_SUBTYPE_NVIDIA_NVLINK2_RAM = 1
VFIO_REGION_SUBTYPE_IBM_NVLINK2_ATSD = 1
VFIO_REGION_SUBTYPE_GFX_EDID = 1
VFIO_DEVICE_GFX_LINK_STATE_UP = 1
VFIO_DEVICE_GFX_LINK_STATE_DOWN = 2
VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD = 1
VFIO_REGION_SUBTYPE_CCW_SCHIB = 2
VFIO_REGION_SUBTYPE_CCW_CRW = 3
VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED = 1

VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3
VFIO_REGION_INFO_CAP_NVLINK2_SSATGT = 4
VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD = 5

VFIO_IRQ_INFO_EVENTFD = 1 << 0
VFIO_IRQ_INFO_MASKABLE = 1 << 1
VFIO_IRQ_INFO_AUTOMASKED = 1 << 2
VFIO_IRQ_INFO_NORESIZE = 1 << 3


class vfio_irq_info(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("index", c_uint32),
        ("count", c_uint32),
    ]


VFIO_DEVICE_GET_IRQ_INFO = _IO(VFIO_TYPE, VFIO_BASE + 9)

VFIO_IRQ_SET_DATA_NONE = 1 << 0
VFIO_IRQ_SET_DATA_BOOL = 1 << 1
VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2
VFIO_IRQ_SET_ACTION_MASK = 1 << 3
VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4
VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5


class vfio_irq_set(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("index", c_uint32),
        ("start", c_uint32),
        ("count", c_uint32),
        ("data", c_uint8 * 0),
    ]


VFIO_DEVICE_SET_IRQS = _IO(VFIO_TYPE, VFIO_BASE + 10)

VFIO_IRQ_SET_DATA_TYPE_MASK = (
    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD
)
VFIO_IRQ_SET_ACTION_TYPE_MASK = (
    VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER
)

VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11)

VFIO_PCI_BAR0_REGION_INDEX = 0
VFIO_PCI_BAR1_REGION_INDEX = 1
VFIO_PCI_BAR2_REGION_INDEX = 2
VFIO_PCI_BAR3_REGION_INDEX = 3
VFIO_PCI_BAR4_REGION_INDEX = 4
VFIO_PCI_BAR5_REGION_INDEX = 5
VFIO_PCI_ROM_REGION_INDEX = 6
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_PCI_VGA_REGION_INDEX = 8
VFIO_PCI_NUM_REGIONS = 9

VFIO_PCI_INTX_IRQ_INDEX = 0
VFIO_PCI_MSI_IRQ_INDEX = 1
VFIO_PCI_MSIX_IRQ_INDEX = 2
VFIO_PCI_ERR_IRQ_INDEX = 3
VFIO_PCI_REQ_IRQ_INDEX = 4
VFIO_PCI_NUM_IRQS = 5

VFIO_CCW_CONFIG_REGION_INDEX = 0
VFIO_CCW_NUM_REGIONS = 1

VFIO_CCW_IO_IRQ_INDEX = 0
VFIO_CCW_CRW_IRQ_INDEX = 1
VFIO_CCW_REQ_IRQ_INDEX = 2
VFIO_CCW_NUM_IRQS = 3

VFIO_AP_REQ_IRQ_INDEX = 0
VFIO_AP_CFG_CHG_IRQ_INDEX = 1
VFIO_AP_NUM_IRQS = 2

VFIO_PCI_DEVID_OWNED = 0
VFIO_PCI_DEVID_NOT_OWNED = -1


class _vfio_pci_dependent_device_id(Union):
    _fields_ = [
        ("group_id", c_uint32),
        ("devid", c_uint32),
    ]


class vfio_pci_dependent_device(Struct):
    _anonymous_ = ("_id",)
    _fields_ = [
        ("_id", _vfio_pci_dependent_device_id),
        ("segment", c_uint16),
        ("bus", c_uint8),
        ("devfn", c_uint8),
    ]


VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0
VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1


class vfio_pci_hot_reset_info(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("count", c_uint32),
        ("devices", vfio_pci_dependent_device * 0),
    ]


VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12)


class vfio_pci_hot_reset(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("count", c_uint32),
        ("group_fds", c_int32 * 0),
    ]


VFIO_DEVICE_PCI_HOT_RESET = _IO(VFIO_TYPE, VFIO_BASE + 13)

VFIO_GFX_PLANE_TYPE_PROBE = 1 << 0
VFIO_GFX_PLANE_TYPE_DMABUF = 1 << 1
VFIO_GFX_PLANE_TYPE_REGION = 1 << 2

VFIO_DEVICE_QUERY_GFX_PLANE = _IO(VFIO_TYPE, VFIO_BASE + 14)
VFIO_DEVICE_GET_GFX_DMABUF = _IO(VFIO_TYPE, VFIO_BASE + 15)

VFIO_DEVICE_IOEVENTFD_8 = 1 << 0
VFIO_DEVICE_IOEVENTFD_16 = 1 << 1
VFIO_DEVICE_IOEVENTFD_32 = 1 << 2
VFIO_DEVICE_IOEVENTFD_64 = 1 << 3
VFIO_DEVICE_IOEVENTFD_SIZE_MASK = 0xF


class vfio_device_ioeventfd(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("offset", c_uint64),
        ("data", c_uint64),
        ("fd", c_int32),
        ("reserved", c_uint32),
    ]


VFIO_DEVICE_IOEVENTFD = _IO(VFIO_TYPE, VFIO_BASE + 16)

VFIO_DEVICE_FEATURE_MASK = 0xFFFF
VFIO_DEVICE_FEATURE_GET = 1 << 16
VFIO_DEVICE_FEATURE_SET = 1 << 17
VFIO_DEVICE_FEATURE_PROBE = 1 << 18


class vfio_device_feature(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("data", c_uint8 * 0),
    ]


VFIO_DEVICE_FEATURE = _IO(VFIO_TYPE, VFIO_BASE + 17)

VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0


class vfio_device_bind_iommufd(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("iommufd", c_int32),
        ("out_devid", c_uint32),
        ("token_uuid_ptr", c_uint64),
    ]


VFIO_DEVICE_BIND_IOMMUFD = _IO(VFIO_TYPE, VFIO_BASE + 18)

VFIO_DEVICE_ATTACH_PASID = 1 << 0


class vfio_device_attach_iommufd_pt(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("pt_id", c_uint32),
        ("pasid", c_uint32),
    ]


VFIO_DEVICE_ATTACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 19)

VFIO_DEVICE_DETACH_PASID = 1 << 0


class vfio_device_detach_iommufd_pt(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("pasid", c_uint32),
    ]


VFIO_DEVICE_DETACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 20)

VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0

VFIO_MIGRATION_STOP_COPY = 1 << 0
VFIO_MIGRATION_P2P = 1 << 1
VFIO_MIGRATION_PRE_COPY = 1 << 2


class vfio_device_feature_migration(Struct):
    _fields_ = [
        ("flags", c_uint64),
    ]


VFIO_DEVICE_FEATURE_MIGRATION = 1


class vfio_device_feature_mig_state(Struct):
    _fields_ = [
        ("device_state", c_uint32),
        ("data_fd", c_int32),
    ]


VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2

VFIO_DEVICE_STATE_ERROR = 0
VFIO_DEVICE_STATE_STOP = 1
VFIO_DEVICE_STATE_RUNNING = 2
VFIO_DEVICE_STATE_STOP_COPY = 3
VFIO_DEVICE_STATE_RESUMING = 4
VFIO_DEVICE_STATE_RUNNING_P2P = 5
VFIO_DEVICE_STATE_PRE_COPY = 6
VFIO_DEVICE_STATE_PRE_COPY_P2P = 7
VFIO_DEVICE_STATE_NR = 8


class vfio_device_mig_state(enum.IntEnum):
    VFIO_DEVICE_STATE_ERROR = VFIO_DEVICE_STATE_ERROR
    VFIO_DEVICE_STATE_STOP = VFIO_DEVICE_STATE_STOP
    VFIO_DEVICE_STATE_RUNNING = VFIO_DEVICE_STATE_RUNNING
    VFIO_DEVICE_STATE_STOP_COPY = VFIO_DEVICE_STATE_STOP_COPY
    VFIO_DEVICE_STATE_RESUMING = VFIO_DEVICE_STATE_RESUMING
    VFIO_DEVICE_STATE_RUNNING_P2P = VFIO_DEVICE_STATE_RUNNING_P2P
    VFIO_DEVICE_STATE_PRE_COPY = VFIO_DEVICE_STATE_PRE_COPY
    VFIO_DEVICE_STATE_PRE_COPY_P2P = VFIO_DEVICE_STATE_PRE_COPY_P2P
    VFIO_DEVICE_STATE_NR = VFIO_DEVICE_STATE_NR


VFIO_PRECOPY_INFO_REINIT = 1 << 0


class vfio_precopy_info(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("initial_bytes", c_uint64),
        ("dirty_bytes", c_uint64),
    ]


VFIO_MIG_GET_PRECOPY_INFO = _IO(VFIO_TYPE, VFIO_BASE + 21)

VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3


class vfio_device_low_power_entry_with_wakeup(Struct):
    _fields_ = [
        ("wakeup_eventfd", c_int32),
        ("reserved", c_uint32),
    ]


VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4
VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5


class vfio_device_feature_dma_logging_control(Struct):
    _fields_ = [
        ("page_size", c_uint64),
        ("num_ranges", c_uint32),
        ("reserved", c_uint32),
        ("ranges", c_uint64),
    ]


class vfio_device_feature_dma_logging_range(Struct):
    _fields_ = [
        ("iova", c_uint64),
        ("length", c_uint64),
    ]


VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6
VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7


class vfio_device_feature_dma_logging_report(Struct):
    _fields_ = [
        ("iova", c_uint64),
        ("length", c_uint64),
        ("page_size", c_uint64),
        ("bitmap", c_uint64),
    ]


VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8


class vfio_device_feature_mig_data_size(Struct):
    _fields_ = [
        ("stop_copy_length", c_uint64),
    ]


VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9

VFIO_DEVICE_FEATURE_CLEAR_MASTER = 0
VFIO_DEVICE_FEATURE_SET_MASTER = 1


class vfio_device_feature_bus_master(Struct):
    _fields_ = [
        ("op", c_uint32),
    ]


VFIO_DEVICE_FEATURE_BUS_MASTER = 10
VFIO_DEVICE_FEATURE_DMA_BUF = 11


class vfio_region_dma_range(Struct):
    _fields_ = [
        ("offset", c_uint64),
        ("length", c_uint64),
    ]


class vfio_device_feature_dma_buf(Struct):
    _fields_ = [
        ("region_index", c_uint32),
        ("open_flags", c_uint32),
        ("flags", c_uint32),
        ("nr_ranges", c_uint32),
        ("dma_ranges", vfio_region_dma_range * 0),
    ]


VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 = 12


class vfio_device_feature_zpci_err(Struct):
    _fields_ = [
        ("data", c_uint64),
    ]


VFIO_DEVICE_FEATURE_ZPCI_ERROR = 13

VFIO_IOMMU_INFO_PGSIZES = 1 << 0
VFIO_IOMMU_INFO_CAPS = 1 << 1


class vfio_iommu_type1_info(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("iova_pgsizes", c_uint64),
        ("cap_offset", c_uint32),
        ("pad", c_uint32),
    ]


VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1


class vfio_iova_range(Struct):
    _fields_ = [
        ("start", c_uint64),
        ("end", c_uint64),
    ]


class vfio_iommu_type1_info_cap_iova_range(Struct):
    _fields_ = [
        ("header", vfio_info_cap_header),
        ("nr_iovas", c_uint32),
        ("reserved", c_uint32),
        ("iova_ranges", vfio_iova_range * 0),
    ]


VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2


class vfio_iommu_type1_info_cap_migration(Struct):
    _fields_ = [
        ("header", vfio_info_cap_header),
        ("flags", c_uint32),
        ("pgsize_bitmap", c_uint64),
        ("max_dirty_bitmap_size", c_uint64),
    ]


VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3


class vfio_iommu_type1_info_dma_avail(Struct):
    _fields_ = [
        ("header", vfio_info_cap_header),
        ("avail", c_uint32),
    ]


VFIO_IOMMU_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12)

VFIO_DMA_MAP_FLAG_READ = 1 << 0
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1
VFIO_DMA_MAP_FLAG_VADDR = 1 << 2


class vfio_iommu_type1_dma_map(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("vaddr", c_uint64),
        ("iova", c_uint64),
        ("size", c_uint64),
    ]


VFIO_IOMMU_MAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 13)


class vfio_bitmap(Struct):
    """``data`` is a user pointer (``__u64 *``), held as its 64-bit address."""

    _fields_ = [
        ("pgsize", c_uint64),
        ("size", c_uint64),
        ("data", c_uint64),
    ]


VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0
VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1
VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2


class vfio_iommu_type1_dma_unmap(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("iova", c_uint64),
        ("size", c_uint64),
        ("data", c_uint8 * 0),
    ]


VFIO_IOMMU_UNMAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 14)

VFIO_IOMMU_ENABLE = _IO(VFIO_TYPE, VFIO_BASE + 15)
VFIO_IOMMU_DISABLE = _IO(VFIO_TYPE, VFIO_BASE + 16)

VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0
VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1
VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2


class vfio_iommu_type1_dirty_bitmap(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("data", c_uint8 * 0),
    ]


class vfio_iommu_type1_dirty_bitmap_get(Struct):
    _fields_ = [
        ("iova", c_uint64),
        ("size", c_uint64),
        ("bitmap", vfio_bitmap),
    ]


VFIO_IOMMU_DIRTY_PAGES = _IO(VFIO_TYPE, VFIO_BASE + 17)

__all__ = [
    "VFIO_API_VERSION",
    "VFIO_AP_CFG_CHG_IRQ_INDEX",
    "VFIO_AP_NUM_IRQS",
    "VFIO_AP_REQ_IRQ_INDEX",
    "VFIO_BASE",
    "VFIO_CCW_CONFIG_REGION_INDEX",
    "VFIO_CCW_CRW_IRQ_INDEX",
    "VFIO_CCW_IO_IRQ_INDEX",
    "VFIO_CCW_NUM_IRQS",
    "VFIO_CCW_NUM_REGIONS",
    "VFIO_CCW_REQ_IRQ_INDEX",
    "VFIO_CHECK_EXTENSION",
    "VFIO_DEVICE_API_AMBA_STRING",
    "VFIO_DEVICE_API_AP_STRING",
    "VFIO_DEVICE_API_CCW_STRING",
    "VFIO_DEVICE_API_PCI_STRING",
    "VFIO_DEVICE_API_PLATFORM_STRING",
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    "VFIO_DEVICE_ATTACH_PASID",
    "VFIO_DEVICE_BIND_FLAG_TOKEN",
    "VFIO_DEVICE_BIND_IOMMUFD",
    "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    "VFIO_DEVICE_DETACH_PASID",
    "VFIO_DEVICE_FEATURE",
    "VFIO_DEVICE_FEATURE_BUS_MASTER",
    "VFIO_DEVICE_FEATURE_CLEAR_MASTER",
    "VFIO_DEVICE_FEATURE_DMA_BUF",
    "VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT",
    "VFIO_DEVICE_FEATURE_DMA_LOGGING_START",
    "VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP",
    "VFIO_DEVICE_FEATURE_GET",
    "VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY",
    "VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP",
    "VFIO_DEVICE_FEATURE_LOW_POWER_EXIT",
    "VFIO_DEVICE_FEATURE_MASK",
    "VFIO_DEVICE_FEATURE_MIGRATION",
    "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE",
    "VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE",
    "VFIO_DEVICE_FEATURE_PCI_VF_TOKEN",
    "VFIO_DEVICE_FEATURE_PROBE",
    "VFIO_DEVICE_FEATURE_SET",
    "VFIO_DEVICE_FEATURE_SET_MASTER",
    "VFIO_DEVICE_FEATURE_ZPCI_ERROR",
    "VFIO_DEVICE_FLAGS_AMBA",
    "VFIO_DEVICE_FLAGS_AP",
    "VFIO_DEVICE_FLAGS_CAPS",
    "VFIO_DEVICE_FLAGS_CCW",
    "VFIO_DEVICE_FLAGS_CDX",
    "VFIO_DEVICE_FLAGS_FSL_MC",
    "VFIO_DEVICE_FLAGS_PCI",
    "VFIO_DEVICE_FLAGS_PLATFORM",
    "VFIO_DEVICE_FLAGS_RESET",
    "VFIO_DEVICE_GET_GFX_DMABUF",
    "VFIO_DEVICE_GET_INFO",
    "VFIO_DEVICE_GET_IRQ_INFO",
    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
    "VFIO_DEVICE_GET_REGION_INFO",
    "VFIO_DEVICE_GFX_LINK_STATE_DOWN",
    "VFIO_DEVICE_GFX_LINK_STATE_UP",
    "VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP",
    "VFIO_DEVICE_INFO_CAP_ZPCI_BASE",
    "VFIO_DEVICE_INFO_CAP_ZPCI_GROUP",
    "VFIO_DEVICE_INFO_CAP_ZPCI_PFIP",
    "VFIO_DEVICE_INFO_CAP_ZPCI_UTIL",
    "VFIO_DEVICE_IOEVENTFD",
    "VFIO_DEVICE_IOEVENTFD_8",
    "VFIO_DEVICE_IOEVENTFD_16",
    "VFIO_DEVICE_IOEVENTFD_32",
    "VFIO_DEVICE_IOEVENTFD_64",
    "VFIO_DEVICE_IOEVENTFD_SIZE_MASK",
    "VFIO_DEVICE_PCI_HOT_RESET",
    "VFIO_DEVICE_QUERY_GFX_PLANE",
    "VFIO_DEVICE_RESET",
    "VFIO_DEVICE_SET_IRQS",
    "VFIO_DEVICE_STATE_ERROR",
    "VFIO_DEVICE_STATE_NR",
    "VFIO_DEVICE_STATE_PRE_COPY",
    "VFIO_DEVICE_STATE_PRE_COPY_P2P",
    "VFIO_DEVICE_STATE_RESUMING",
    "VFIO_DEVICE_STATE_RUNNING",
    "VFIO_DEVICE_STATE_RUNNING_P2P",
    "VFIO_DEVICE_STATE_STOP",
    "VFIO_DEVICE_STATE_STOP_COPY",
    "VFIO_DMA_CC_IOMMU",
    "VFIO_DMA_MAP_FLAG_READ",
    "VFIO_DMA_MAP_FLAG_VADDR",
    "VFIO_DMA_MAP_FLAG_WRITE",
    "VFIO_DMA_UNMAP_FLAG_ALL",
    "VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP",
    "VFIO_DMA_UNMAP_FLAG_VADDR",
    "VFIO_EEH",
    "VFIO_GET_API_VERSION",
    "VFIO_GFX_PLANE_TYPE_DMABUF",
    "VFIO_GFX_PLANE_TYPE_PROBE",
    "VFIO_GFX_PLANE_TYPE_REGION",
    "VFIO_GROUP_FLAGS_CONTAINER_SET",
    "VFIO_GROUP_FLAGS_VIABLE",
    "VFIO_GROUP_GET_DEVICE_FD",
    "VFIO_GROUP_GET_STATUS",
    "VFIO_GROUP_SET_CONTAINER",
    "VFIO_GROUP_UNSET_CONTAINER",
    "VFIO_IOMMU_DIRTY_PAGES",
    "VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP",
    "VFIO_IOMMU_DIRTY_PAGES_FLAG_START",
    "VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP",
    "VFIO_IOMMU_DISABLE",
    "VFIO_IOMMU_ENABLE",
    "VFIO_IOMMU_GET_INFO",
    "VFIO_IOMMU_INFO_CAPS",
    "VFIO_IOMMU_INFO_PGSIZES",
    "VFIO_IOMMU_MAP_DMA",
    "VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE",
    "VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION",
    "VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL",
    "VFIO_IOMMU_UNMAP_DMA",
    "VFIO_IRQ_INFO_AUTOMASKED",
    "VFIO_IRQ_INFO_EVENTFD",
    "VFIO_IRQ_INFO_MASKABLE",
    "VFIO_IRQ_INFO_NORESIZE",
    "VFIO_IRQ_SET_ACTION_MASK",
    "VFIO_IRQ_SET_ACTION_TRIGGER",
    "VFIO_IRQ_SET_ACTION_TYPE_MASK",
    "VFIO_IRQ_SET_ACTION_UNMASK",
    "VFIO_IRQ_SET_DATA_BOOL",
    "VFIO_IRQ_SET_DATA_EVENTFD",
    "VFIO_IRQ_SET_DATA_NONE",
    "VFIO_IRQ_SET_DATA_TYPE_MASK",
    "VFIO_MIGRATION_P2P",
    "VFIO_MIGRATION_PRE_COPY",
    "VFIO_MIGRATION_STOP_COPY",
    "VFIO_MIG_GET_PRECOPY_INFO",
    "VFIO_NOIOMMU_IOMMU",
    "VFIO_PCI_ATOMIC_COMP32",
    "VFIO_PCI_ATOMIC_COMP64",
    "VFIO_PCI_ATOMIC_COMP128",
    "VFIO_PCI_BAR0_REGION_INDEX",
    "VFIO_PCI_BAR1_REGION_INDEX",
    "VFIO_PCI_BAR2_REGION_INDEX",
    "VFIO_PCI_BAR3_REGION_INDEX",
    "VFIO_PCI_BAR4_REGION_INDEX",
    "VFIO_PCI_BAR5_REGION_INDEX",
    "VFIO_PCI_CONFIG_REGION_INDEX",
    "VFIO_PCI_DEVID_NOT_OWNED",
    "VFIO_PCI_DEVID_OWNED",
    "VFIO_PCI_ERR_IRQ_INDEX",
    "VFIO_PCI_HOT_RESET_FLAG_DEV_ID",
    "VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED",
    "VFIO_PCI_INTX_IRQ_INDEX",
    "VFIO_PCI_MSIX_IRQ_INDEX",
    "VFIO_PCI_MSI_IRQ_INDEX",
    "VFIO_PCI_NUM_IRQS",
    "VFIO_PCI_NUM_REGIONS",
    "VFIO_PCI_REQ_IRQ_INDEX",
    "VFIO_PCI_ROM_REGION_INDEX",
    "VFIO_PCI_VGA_REGION_INDEX",
    "VFIO_PRECOPY_INFO_REINIT",
    "VFIO_REGION_INFO_CAP_MSIX_MAPPABLE",
    "VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD",
    "VFIO_REGION_INFO_CAP_NVLINK2_SSATGT",
    "VFIO_REGION_INFO_CAP_SPARSE_MMAP",
    "VFIO_REGION_INFO_CAP_TYPE",
    "VFIO_REGION_INFO_FLAG_CAPS",
    "VFIO_REGION_INFO_FLAG_MMAP",
    "VFIO_REGION_INFO_FLAG_READ",
    "VFIO_REGION_INFO_FLAG_WRITE",
    "VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD",
    "VFIO_REGION_SUBTYPE_CCW_CRW",
    "VFIO_REGION_SUBTYPE_CCW_SCHIB",
    "VFIO_REGION_SUBTYPE_GFX_EDID",
    "VFIO_REGION_SUBTYPE_IBM_NVLINK2_ATSD",
    "VFIO_REGION_SUBTYPE_INTEL_IGD_HOST_CFG",
    "VFIO_REGION_SUBTYPE_INTEL_IGD_LPC_CFG",
    "VFIO_REGION_SUBTYPE_INTEL_IGD_OPREGION",
    "VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED",
    "VFIO_REGION_SUBTYPE_NVIDIA_NVLINK2_RAM",
    "VFIO_REGION_TYPE_CCW",
    "VFIO_REGION_TYPE_GFX",
    "VFIO_REGION_TYPE_MIGRATION_DEPRECATED",
    "VFIO_REGION_TYPE_PCI_VENDOR_MASK",
    "VFIO_REGION_TYPE_PCI_VENDOR_TYPE",
    "VFIO_SET_IOMMU",
    "VFIO_SPAPR_TCE_IOMMU",
    "VFIO_TYPE",
    "VFIO_TYPE1_IOMMU",
    "VFIO_UNMAP_ALL",
    "VFIO_UPDATE_VADDR",
    "VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2",
    "VFIO_SPAPR_TCE_v2_IOMMU",
    "VFIO_TYPE1v2_IOMMU",
    "vfio_bitmap",
    "vfio_device_attach_iommufd_pt",
    "vfio_device_bind_iommufd",
    "vfio_device_detach_iommufd_pt",
    "vfio_device_feature",
    "vfio_device_feature_bus_master",
    "vfio_device_feature_dma_buf",
    "vfio_device_feature_dma_logging_control",
    "vfio_device_feature_dma_logging_range",
    "vfio_device_feature_dma_logging_report",
    "vfio_device_feature_mig_data_size",
    "vfio_device_feature_mig_state",
    "vfio_device_feature_migration",
    "vfio_device_feature_zpci_err",
    "vfio_device_info",
    "vfio_device_info_cap_pci_atomic_comp",
    "vfio_device_ioeventfd",
    "vfio_device_low_power_entry_with_wakeup",
    "vfio_device_mig_state",
    "vfio_group_status",
    "vfio_info_cap_header",
    "vfio_iommu_type1_dirty_bitmap",
    "vfio_iommu_type1_dirty_bitmap_get",
    "vfio_iommu_type1_dma_map",
    "vfio_iommu_type1_dma_unmap",
    "vfio_iommu_type1_info",
    "vfio_iommu_type1_info_cap_iova_range",
    "vfio_iommu_type1_info_cap_migration",
    "vfio_iommu_type1_info_dma_avail",
    "vfio_iova_range",
    "vfio_irq_info",
    "vfio_irq_set",
    "vfio_pci_dependent_device",
    "vfio_pci_hot_reset",
    "vfio_pci_hot_reset_info",
    "vfio_precopy_info",
    "vfio_region_dma_range",
    "vfio_region_info",
    "vfio_region_info_cap_sparse_mmap",
    "vfio_region_info_cap_type",
    "vfio_region_sparse_mmap_area",
]
