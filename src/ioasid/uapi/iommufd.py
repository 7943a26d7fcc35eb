"""``include/uapi/linux/iommufd.h`` of Linux 7.3, as ctypes data: every struct, enum,
ioctl number, and the kernel's ioctl dispatch table (``iommufd_ioctl_ops[]`` in
``drivers/iommu/iommufd/main.c``) with the minimum accepted ``size`` of each ioctl.

Enumerators are module-level ``int`` constants under their C names; each tagged C enum is
also an ``enum.IntEnum``/``enum.IntFlag`` named by its tag whose members take their values
from those constants.
"""

from __future__ import annotations

import enum
from ctypes import c_int32, c_uint8, c_uint16, c_uint32, c_uint64
from dataclasses import dataclass

from ._abi import _IO, _IOC_NR, Struct, Union

IOMMUFD_TYPE = ord(";")

IOMMUFD_CMD_BASE = 0x80
IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE
IOMMUFD_CMD_IOAS_ALLOC = 0x81
IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82
IOMMUFD_CMD_IOAS_COPY = 0x83
IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84
IOMMUFD_CMD_IOAS_MAP = 0x85
IOMMUFD_CMD_IOAS_UNMAP = 0x86
IOMMUFD_CMD_OPTION = 0x87
IOMMUFD_CMD_VFIO_IOAS = 0x88
IOMMUFD_CMD_HWPT_ALLOC = 0x89
IOMMUFD_CMD_GET_HW_INFO = 0x8A
IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8B
IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8C
IOMMUFD_CMD_HWPT_INVALIDATE = 0x8D
IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8E
IOMMUFD_CMD_IOAS_MAP_FILE = 0x8F
IOMMUFD_CMD_VIOMMU_ALLOC = 0x90
IOMMUFD_CMD_VDEVICE_ALLOC = 0x91
IOMMUFD_CMD_IOAS_CHANGE_PROCESS = 0x92
IOMMUFD_CMD_VEVENTQ_ALLOC = 0x93
IOMMUFD_CMD_HW_QUEUE_ALLOC = 0x94
IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA = 0x95


class iommu_destroy(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("id", c_uint32),
    ]


IOMMU_DESTROY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)


class iommu_ioas_alloc(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("out_ioas_id", c_uint32),
    ]


IOMMU_IOAS_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)


class iommu_iova_range(Struct):
    _fields_ = [
        ("start", c_uint64),
        ("last", c_uint64),
    ]


class iommu_ioas_iova_ranges(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("ioas_id", c_uint32),
        ("num_iovas", c_uint32),
        ("reserved", c_uint32),
        ("allowed_iovas", c_uint64),
        ("out_iova_alignment", c_uint64),
    ]


IOMMU_IOAS_IOVA_RANGES = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES)


class iommu_ioas_allow_iovas(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("ioas_id", c_uint32),
        ("num_iovas", c_uint32),
        ("reserved", c_uint32),
        ("allowed_iovas", c_uint64),
    ]


IOMMU_IOAS_ALLOW_IOVAS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS)

IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0
IOMMU_IOAS_MAP_WRITEABLE = 1 << 1
IOMMU_IOAS_MAP_READABLE = 1 << 2


class iommufd_ioas_map_flags(enum.IntFlag):
    IOMMU_IOAS_MAP_FIXED_IOVA = IOMMU_IOAS_MAP_FIXED_IOVA
    IOMMU_IOAS_MAP_WRITEABLE = IOMMU_IOAS_MAP_WRITEABLE
    IOMMU_IOAS_MAP_READABLE = IOMMU_IOAS_MAP_READABLE


class iommu_ioas_map(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("ioas_id", c_uint32),
        ("reserved", c_uint32),
        ("user_va", c_uint64),
        ("length", c_uint64),
        ("iova", c_uint64),
    ]


IOMMU_IOAS_MAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)


class iommu_ioas_noiommu_get_pa(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("ioas_id", c_uint32),
        ("reserved", c_uint32),
        ("iova", c_uint64),
        ("length", c_uint64),
        ("out_phys", c_uint64),
    ]


IOMMU_IOAS_NOIOMMU_GET_PA = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA)


class iommu_ioas_map_file(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("ioas_id", c_uint32),
        ("fd", c_int32),
        ("start", c_uint64),
        ("length", c_uint64),
        ("iova", c_uint64),
    ]


IOMMU_IOAS_MAP_FILE = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_FILE)


class iommu_ioas_copy(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("dst_ioas_id", c_uint32),
        ("src_ioas_id", c_uint32),
        ("length", c_uint64),
        ("dst_iova", c_uint64),
        ("src_iova", c_uint64),
    ]


IOMMU_IOAS_COPY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY)


class iommu_ioas_unmap(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("ioas_id", c_uint32),
        ("iova", c_uint64),
        ("length", c_uint64),
    ]


IOMMU_IOAS_UNMAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)

IOMMU_OPTION_RLIMIT_MODE = 0
IOMMU_OPTION_HUGE_PAGES = 1


class iommufd_option(enum.IntEnum):
    IOMMU_OPTION_RLIMIT_MODE = IOMMU_OPTION_RLIMIT_MODE
    IOMMU_OPTION_HUGE_PAGES = IOMMU_OPTION_HUGE_PAGES


IOMMU_OPTION_OP_SET = 0
IOMMU_OPTION_OP_GET = 1


class iommufd_option_ops(enum.IntEnum):
    IOMMU_OPTION_OP_SET = IOMMU_OPTION_OP_SET
    IOMMU_OPTION_OP_GET = IOMMU_OPTION_OP_GET


class iommu_option(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("option_id", c_uint32),
        ("op", c_uint16),
        ("reserved", c_uint16),
        ("object_id", c_uint32),
        ("val64", c_uint64),
    ]


IOMMU_OPTION = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION)

IOMMU_VFIO_IOAS_GET = 0
IOMMU_VFIO_IOAS_SET = 1
IOMMU_VFIO_IOAS_CLEAR = 2


class iommufd_vfio_ioas_op(enum.IntEnum):
    IOMMU_VFIO_IOAS_GET = IOMMU_VFIO_IOAS_GET
    IOMMU_VFIO_IOAS_SET = IOMMU_VFIO_IOAS_SET
    IOMMU_VFIO_IOAS_CLEAR = IOMMU_VFIO_IOAS_CLEAR


class iommu_vfio_ioas(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("ioas_id", c_uint32),
        ("op", c_uint16),
        ("reserved", c_uint16),
    ]


IOMMU_VFIO_IOAS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VFIO_IOAS)

IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0
IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1
IOMMU_HWPT_FAULT_ID_VALID = 1 << 2
IOMMU_HWPT_ALLOC_PASID = 1 << 3


class iommufd_hwpt_alloc_flags(enum.IntFlag):
    IOMMU_HWPT_ALLOC_NEST_PARENT = IOMMU_HWPT_ALLOC_NEST_PARENT
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING = IOMMU_HWPT_ALLOC_DIRTY_TRACKING
    IOMMU_HWPT_FAULT_ID_VALID = IOMMU_HWPT_FAULT_ID_VALID
    IOMMU_HWPT_ALLOC_PASID = IOMMU_HWPT_ALLOC_PASID


IOMMU_VTD_S1_SRE = 1 << 0
IOMMU_VTD_S1_EAFE = 1 << 1
IOMMU_VTD_S1_WPE = 1 << 2


class iommu_hwpt_vtd_s1_flags(enum.IntFlag):
    IOMMU_VTD_S1_SRE = IOMMU_VTD_S1_SRE
    IOMMU_VTD_S1_EAFE = IOMMU_VTD_S1_EAFE
    IOMMU_VTD_S1_WPE = IOMMU_VTD_S1_WPE


class iommu_hwpt_vtd_s1(Struct):
    _fields_ = [
        ("flags", c_uint64),
        ("pgtbl_addr", c_uint64),
        ("addr_width", c_uint32),
        ("reserved", c_uint32),
    ]


class iommu_hwpt_arm_smmuv3(Struct):
    _fields_ = [
        ("ste", c_uint64 * 2),
    ]


class iommu_hwpt_amd_guest(Struct):
    _fields_ = [
        ("dte", c_uint64 * 4),
    ]


IOMMU_HWPT_DATA_NONE = 0
IOMMU_HWPT_DATA_VTD_S1 = 1
IOMMU_HWPT_DATA_ARM_SMMUV3 = 2
IOMMU_HWPT_DATA_AMD_GUEST = 3


class iommu_hwpt_data_type(enum.IntEnum):
    IOMMU_HWPT_DATA_NONE = IOMMU_HWPT_DATA_NONE
    IOMMU_HWPT_DATA_VTD_S1 = IOMMU_HWPT_DATA_VTD_S1
    IOMMU_HWPT_DATA_ARM_SMMUV3 = IOMMU_HWPT_DATA_ARM_SMMUV3
    IOMMU_HWPT_DATA_AMD_GUEST = IOMMU_HWPT_DATA_AMD_GUEST


class iommu_hwpt_alloc(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("dev_id", c_uint32),
        ("pt_id", c_uint32),
        ("out_hwpt_id", c_uint32),
        ("reserved", c_uint32),
        ("data_type", c_uint32),
        ("data_len", c_uint32),
        ("data_uptr", c_uint64),
        ("fault_id", c_uint32),
        ("reserved2", c_uint32),
    ]


IOMMU_HWPT_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)

IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0


class iommu_hw_info_vtd_flags(enum.IntFlag):
    IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17


class iommu_hw_info_vtd(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("reserved", c_uint32),
        ("cap_reg", c_uint64),
        ("ecap_reg", c_uint64),
    ]


IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI = 1 << 0


class iommu_hw_info_arm_smmuv3_flags(enum.IntFlag):
    IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI = (
        IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI
    )


class iommu_hw_info_arm_smmuv3(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("reserved", c_uint32),
        ("idr", c_uint32 * 6),
        ("iidr", c_uint32),
        ("aidr", c_uint32),
    ]


class iommu_hw_info_tegra241_cmdqv(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("version", c_uint8),
        ("log2vcmdqs", c_uint8),
        ("log2vsids", c_uint8),
        ("reserved", c_uint8),
    ]


class iommu_hw_info_amd(Struct):
    _fields_ = [
        ("efr", c_uint64),
        ("efr2", c_uint64),
    ]


IOMMU_HW_INFO_TYPE_NONE = 0
IOMMU_HW_INFO_TYPE_DEFAULT = 0
IOMMU_HW_INFO_TYPE_INTEL_VTD = 1
IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2
IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3
IOMMU_HW_INFO_TYPE_AMD = 4


class iommu_hw_info_type(enum.IntEnum):
    IOMMU_HW_INFO_TYPE_NONE = IOMMU_HW_INFO_TYPE_NONE
    IOMMU_HW_INFO_TYPE_DEFAULT = IOMMU_HW_INFO_TYPE_DEFAULT
    IOMMU_HW_INFO_TYPE_INTEL_VTD = IOMMU_HW_INFO_TYPE_INTEL_VTD
    IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = IOMMU_HW_INFO_TYPE_ARM_SMMUV3
    IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV
    IOMMU_HW_INFO_TYPE_AMD = IOMMU_HW_INFO_TYPE_AMD


IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0
IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1
IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2
IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3


class iommufd_hw_capabilities(enum.IntFlag):
    IOMMU_HW_CAP_DIRTY_TRACKING = IOMMU_HW_CAP_DIRTY_TRACKING
    IOMMU_HW_CAP_PCI_PASID_EXEC = IOMMU_HW_CAP_PCI_PASID_EXEC
    IOMMU_HW_CAP_PCI_PASID_PRIV = IOMMU_HW_CAP_PCI_PASID_PRIV
    IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED


IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0


class iommufd_hw_info_flags(enum.IntFlag):
    IOMMU_HW_INFO_FLAG_INPUT_TYPE = IOMMU_HW_INFO_FLAG_INPUT_TYPE


class _iommu_hw_info_data_type(Union):
    _fields_ = [
        ("in_data_type", c_uint32),
        ("out_data_type", c_uint32),
    ]


class iommu_hw_info(Struct):
    _anonymous_ = ("_data_type",)
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("dev_id", c_uint32),
        ("data_len", c_uint32),
        ("data_uptr", c_uint64),
        ("_data_type", _iommu_hw_info_data_type),
        ("out_max_pasid_log2", c_uint8),
        ("reserved", c_uint8 * 3),
        ("out_capabilities", c_uint64),
    ]


IOMMU_GET_HW_INFO = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO)

IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1


class iommufd_hwpt_set_dirty_tracking_flags(enum.IntFlag):
    IOMMU_HWPT_DIRTY_TRACKING_ENABLE = IOMMU_HWPT_DIRTY_TRACKING_ENABLE


class iommu_hwpt_set_dirty_tracking(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("hwpt_id", c_uint32),
        ("reserved", c_uint32),
    ]


IOMMU_HWPT_SET_DIRTY_TRACKING = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING)

IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1


class iommufd_hwpt_get_dirty_bitmap_flags(enum.IntFlag):
    IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR


class iommu_hwpt_get_dirty_bitmap(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("hwpt_id", c_uint32),
        ("flags", c_uint32),
        ("reserved", c_uint32),
        ("iova", c_uint64),
        ("length", c_uint64),
        ("page_size", c_uint64),
        ("data", c_uint64),
    ]


IOMMU_HWPT_GET_DIRTY_BITMAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP)

IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0
IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1


class iommu_hwpt_invalidate_data_type(enum.IntEnum):
    IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = IOMMU_HWPT_INVALIDATE_DATA_VTD_S1
    IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3


IOMMU_VTD_INV_FLAGS_LEAF = 1 << 0


class iommu_hwpt_vtd_s1_invalidate_flags(enum.IntFlag):
    IOMMU_VTD_INV_FLAGS_LEAF = IOMMU_VTD_INV_FLAGS_LEAF


class iommu_hwpt_vtd_s1_invalidate(Struct):
    _fields_ = [
        ("addr", c_uint64),
        ("npages", c_uint64),
        ("flags", c_uint32),
        ("reserved", c_uint32),
    ]


class iommu_viommu_arm_smmuv3_invalidate(Struct):
    _fields_ = [
        ("cmd", c_uint64 * 2),
    ]


class iommu_hwpt_invalidate(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("hwpt_id", c_uint32),
        ("data_uptr", c_uint64),
        ("data_type", c_uint32),
        ("entry_len", c_uint32),
        ("entry_num", c_uint32),
        ("reserved", c_uint32),
    ]


IOMMU_HWPT_INVALIDATE = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_INVALIDATE)

IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0
IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1


class iommu_hwpt_pgfault_flags(enum.IntFlag):
    IOMMU_PGFAULT_FLAGS_PASID_VALID = IOMMU_PGFAULT_FLAGS_PASID_VALID
    IOMMU_PGFAULT_FLAGS_LAST_PAGE = IOMMU_PGFAULT_FLAGS_LAST_PAGE


IOMMU_PGFAULT_PERM_READ = 1 << 0
IOMMU_PGFAULT_PERM_WRITE = 1 << 1
IOMMU_PGFAULT_PERM_EXEC = 1 << 2
IOMMU_PGFAULT_PERM_PRIV = 1 << 3


class iommu_hwpt_pgfault_perm(enum.IntFlag):
    IOMMU_PGFAULT_PERM_READ = IOMMU_PGFAULT_PERM_READ
    IOMMU_PGFAULT_PERM_WRITE = IOMMU_PGFAULT_PERM_WRITE
    IOMMU_PGFAULT_PERM_EXEC = IOMMU_PGFAULT_PERM_EXEC
    IOMMU_PGFAULT_PERM_PRIV = IOMMU_PGFAULT_PERM_PRIV


class iommu_hwpt_pgfault(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("dev_id", c_uint32),
        ("pasid", c_uint32),
        ("grpid", c_uint32),
        ("perm", c_uint32),
        ("reserved", c_uint32),
        ("addr", c_uint64),
        ("length", c_uint32),
        ("cookie", c_uint32),
    ]


IOMMUFD_PAGE_RESP_SUCCESS = 0
IOMMUFD_PAGE_RESP_INVALID = 1


class iommufd_page_response_code(enum.IntEnum):
    IOMMUFD_PAGE_RESP_SUCCESS = IOMMUFD_PAGE_RESP_SUCCESS
    IOMMUFD_PAGE_RESP_INVALID = IOMMUFD_PAGE_RESP_INVALID


class iommu_hwpt_page_response(Struct):
    _fields_ = [
        ("cookie", c_uint32),
        ("code", c_uint32),
    ]


class iommu_fault_alloc(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("out_fault_id", c_uint32),
        ("out_fault_fd", c_uint32),
    ]


IOMMU_FAULT_QUEUE_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_FAULT_QUEUE_ALLOC)

IOMMU_VIOMMU_TYPE_DEFAULT = 0
IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1
IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = 2


class iommu_viommu_type(enum.IntEnum):
    IOMMU_VIOMMU_TYPE_DEFAULT = IOMMU_VIOMMU_TYPE_DEFAULT
    IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = IOMMU_VIOMMU_TYPE_ARM_SMMUV3
    IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV


class iommu_viommu_tegra241_cmdqv(Struct):
    _fields_ = [
        ("out_vintf_mmap_offset", c_uint64),
        ("out_vintf_mmap_length", c_uint64),
    ]


class iommu_viommu_alloc(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("type", c_uint32),
        ("dev_id", c_uint32),
        ("hwpt_id", c_uint32),
        ("out_viommu_id", c_uint32),
        ("data_len", c_uint32),
        ("reserved", c_uint32),
        ("data_uptr", c_uint64),
    ]


IOMMU_VIOMMU_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VIOMMU_ALLOC)


class iommu_vdevice_alloc(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("viommu_id", c_uint32),
        ("dev_id", c_uint32),
        ("out_vdevice_id", c_uint32),
        ("virt_id", c_uint64),
    ]


IOMMU_VDEVICE_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VDEVICE_ALLOC)


class iommu_ioas_change_process(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("reserved", c_uint32),
    ]


IOMMU_IOAS_CHANGE_PROCESS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_CHANGE_PROCESS)

IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0


class iommu_veventq_flag(enum.IntFlag):
    IOMMU_VEVENTQ_FLAG_LOST_EVENTS = IOMMU_VEVENTQ_FLAG_LOST_EVENTS


class iommufd_vevent_header(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("sequence", c_uint32),
    ]


IOMMU_VEVENTQ_TYPE_DEFAULT = 0
IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1
IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2


class iommu_veventq_type(enum.IntEnum):
    IOMMU_VEVENTQ_TYPE_DEFAULT = IOMMU_VEVENTQ_TYPE_DEFAULT
    IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3
    IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV


class iommu_vevent_arm_smmuv3(Struct):
    _fields_ = [
        ("evt", c_uint64 * 4),
    ]


class iommu_vevent_tegra241_cmdqv(Struct):
    _fields_ = [
        ("lvcmdq_err_map", c_uint64 * 2),
    ]


class iommu_veventq_alloc(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("viommu_id", c_uint32),
        ("type", c_uint32),
        ("veventq_depth", c_uint32),
        ("out_veventq_id", c_uint32),
        ("out_veventq_fd", c_uint32),
        ("reserved", c_uint32),
    ]


IOMMU_VEVENTQ_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VEVENTQ_ALLOC)

IOMMU_HW_QUEUE_TYPE_DEFAULT = 0
IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV = 1


class iommu_hw_queue_type(enum.IntEnum):
    IOMMU_HW_QUEUE_TYPE_DEFAULT = IOMMU_HW_QUEUE_TYPE_DEFAULT
    IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV = IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV


class iommu_hw_queue_alloc(Struct):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("viommu_id", c_uint32),
        ("type", c_uint32),
        ("index", c_uint32),
        ("out_hw_queue_id", c_uint32),
        ("nesting_parent_iova", c_uint64),
        ("length", c_uint64),
    ]


IOMMU_HW_QUEUE_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HW_QUEUE_ALLOC)


@dataclass(frozen=True)
class IoctlDef:
    """One entry of the kernel's ``iommufd_ioctl_ops[]``.

    ``min_size`` is ``offsetofend(struct, last)`` for the ``last`` field the kernel's
    ``IOCTL_OP()`` names: a caller's ``size`` below it fails with ``EINVAL``.
    """

    name: str
    request: int
    struct: type[Struct]
    min_size: int

    @property
    def nr(self) -> int:
        return _IOC_NR(self.request)


def _op(name: str, request: int, struct: type[Struct], last: str) -> IoctlDef:
    return IoctlDef(name, request, struct, struct.offsetofend(last))


IOMMUFD_IOCTLS: tuple[IoctlDef, ...] = (
    _op("IOMMU_DESTROY", IOMMU_DESTROY, iommu_destroy, "id"),
    _op("IOMMU_FAULT_QUEUE_ALLOC", IOMMU_FAULT_QUEUE_ALLOC, iommu_fault_alloc, "out_fault_fd"),
    _op("IOMMU_GET_HW_INFO", IOMMU_GET_HW_INFO, iommu_hw_info, "reserved"),
    _op("IOMMU_HW_QUEUE_ALLOC", IOMMU_HW_QUEUE_ALLOC, iommu_hw_queue_alloc, "length"),
    _op("IOMMU_HWPT_ALLOC", IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, "reserved"),
    _op(
        "IOMMU_HWPT_GET_DIRTY_BITMAP",
        IOMMU_HWPT_GET_DIRTY_BITMAP,
        iommu_hwpt_get_dirty_bitmap,
        "data",
    ),
    _op("IOMMU_HWPT_INVALIDATE", IOMMU_HWPT_INVALIDATE, iommu_hwpt_invalidate, "reserved"),
    _op(
        "IOMMU_HWPT_SET_DIRTY_TRACKING",
        IOMMU_HWPT_SET_DIRTY_TRACKING,
        iommu_hwpt_set_dirty_tracking,
        "reserved",
    ),
    _op("IOMMU_IOAS_ALLOC", IOMMU_IOAS_ALLOC, iommu_ioas_alloc, "out_ioas_id"),
    _op("IOMMU_IOAS_ALLOW_IOVAS", IOMMU_IOAS_ALLOW_IOVAS, iommu_ioas_allow_iovas, "allowed_iovas"),
    _op(
        "IOMMU_IOAS_CHANGE_PROCESS",
        IOMMU_IOAS_CHANGE_PROCESS,
        iommu_ioas_change_process,
        "reserved",
    ),
    _op("IOMMU_IOAS_COPY", IOMMU_IOAS_COPY, iommu_ioas_copy, "src_iova"),
    _op(
        "IOMMU_IOAS_IOVA_RANGES",
        IOMMU_IOAS_IOVA_RANGES,
        iommu_ioas_iova_ranges,
        "out_iova_alignment",
    ),
    _op("IOMMU_IOAS_MAP", IOMMU_IOAS_MAP, iommu_ioas_map, "iova"),
    _op("IOMMU_IOAS_MAP_FILE", IOMMU_IOAS_MAP_FILE, iommu_ioas_map_file, "iova"),
    _op(
        "IOMMU_IOAS_NOIOMMU_GET_PA",
        IOMMU_IOAS_NOIOMMU_GET_PA,
        iommu_ioas_noiommu_get_pa,
        "out_phys",
    ),
    _op("IOMMU_IOAS_UNMAP", IOMMU_IOAS_UNMAP, iommu_ioas_unmap, "length"),
    _op("IOMMU_OPTION", IOMMU_OPTION, iommu_option, "val64"),
    _op("IOMMU_VDEVICE_ALLOC", IOMMU_VDEVICE_ALLOC, iommu_vdevice_alloc, "virt_id"),
    _op("IOMMU_VEVENTQ_ALLOC", IOMMU_VEVENTQ_ALLOC, iommu_veventq_alloc, "out_veventq_fd"),
    _op("IOMMU_VFIO_IOAS", IOMMU_VFIO_IOAS, iommu_vfio_ioas, "reserved"),
    _op("IOMMU_VIOMMU_ALLOC", IOMMU_VIOMMU_ALLOC, iommu_viommu_alloc, "out_viommu_id"),
)
"""``iommufd_ioctl_ops[]`` in kernel table order, without the CONFIG_IOMMUFD_TEST entry
(that one is ``ioasid.uapi.iommufd_test.IOMMU_TEST_IOCTL``)."""

IOCTL_BY_REQUEST: dict[int, IoctlDef] = {op.request: op for op in IOMMUFD_IOCTLS}
"""``IOMMUFD_IOCTLS`` keyed by ioctl request number."""

__all__ = [
    "IOCTL_BY_REQUEST",
    "IOMMUFD_CMD_BASE",
    "IOMMUFD_CMD_DESTROY",
    "IOMMUFD_CMD_FAULT_QUEUE_ALLOC",
    "IOMMUFD_CMD_GET_HW_INFO",
    "IOMMUFD_CMD_HWPT_ALLOC",
    "IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP",
    "IOMMUFD_CMD_HWPT_INVALIDATE",
    "IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING",
    "IOMMUFD_CMD_HW_QUEUE_ALLOC",
    "IOMMUFD_CMD_IOAS_ALLOC",
    "IOMMUFD_CMD_IOAS_ALLOW_IOVAS",
    "IOMMUFD_CMD_IOAS_CHANGE_PROCESS",
    "IOMMUFD_CMD_IOAS_COPY",
    "IOMMUFD_CMD_IOAS_IOVA_RANGES",
    "IOMMUFD_CMD_IOAS_MAP",
    "IOMMUFD_CMD_IOAS_MAP_FILE",
    "IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA",
    "IOMMUFD_CMD_IOAS_UNMAP",
    "IOMMUFD_CMD_OPTION",
    "IOMMUFD_CMD_VDEVICE_ALLOC",
    "IOMMUFD_CMD_VEVENTQ_ALLOC",
    "IOMMUFD_CMD_VFIO_IOAS",
    "IOMMUFD_CMD_VIOMMU_ALLOC",
    "IOMMUFD_IOCTLS",
    "IOMMUFD_PAGE_RESP_INVALID",
    "IOMMUFD_PAGE_RESP_SUCCESS",
    "IOMMUFD_TYPE",
    "IOMMU_DESTROY",
    "IOMMU_FAULT_QUEUE_ALLOC",
    "IOMMU_GET_HW_INFO",
    "IOMMU_HWPT_ALLOC",
    "IOMMU_HWPT_ALLOC_DIRTY_TRACKING",
    "IOMMU_HWPT_ALLOC_NEST_PARENT",
    "IOMMU_HWPT_ALLOC_PASID",
    "IOMMU_HWPT_DATA_AMD_GUEST",
    "IOMMU_HWPT_DATA_ARM_SMMUV3",
    "IOMMU_HWPT_DATA_NONE",
    "IOMMU_HWPT_DATA_VTD_S1",
    "IOMMU_HWPT_DIRTY_TRACKING_ENABLE",
    "IOMMU_HWPT_FAULT_ID_VALID",
    "IOMMU_HWPT_GET_DIRTY_BITMAP",
    "IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR",
    "IOMMU_HWPT_INVALIDATE",
    "IOMMU_HWPT_INVALIDATE_DATA_VTD_S1",
    "IOMMU_HWPT_SET_DIRTY_TRACKING",
    "IOMMU_HW_CAP_DIRTY_TRACKING",
    "IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED",
    "IOMMU_HW_CAP_PCI_PASID_EXEC",
    "IOMMU_HW_CAP_PCI_PASID_PRIV",
    "IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI",
    "IOMMU_HW_INFO_FLAG_INPUT_TYPE",
    "IOMMU_HW_INFO_TYPE_AMD",
    "IOMMU_HW_INFO_TYPE_ARM_SMMUV3",
    "IOMMU_HW_INFO_TYPE_DEFAULT",
    "IOMMU_HW_INFO_TYPE_INTEL_VTD",
    "IOMMU_HW_INFO_TYPE_NONE",
    "IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV",
    "IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17",
    "IOMMU_HW_QUEUE_ALLOC",
    "IOMMU_HW_QUEUE_TYPE_DEFAULT",
    "IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV",
    "IOMMU_IOAS_ALLOC",
    "IOMMU_IOAS_ALLOW_IOVAS",
    "IOMMU_IOAS_CHANGE_PROCESS",
    "IOMMU_IOAS_COPY",
    "IOMMU_IOAS_IOVA_RANGES",
    "IOMMU_IOAS_MAP",
    "IOMMU_IOAS_MAP_FILE",
    "IOMMU_IOAS_MAP_FIXED_IOVA",
    "IOMMU_IOAS_MAP_READABLE",
    "IOMMU_IOAS_MAP_WRITEABLE",
    "IOMMU_IOAS_NOIOMMU_GET_PA",
    "IOMMU_IOAS_UNMAP",
    "IOMMU_OPTION",
    "IOMMU_OPTION_HUGE_PAGES",
    "IOMMU_OPTION_OP_GET",
    "IOMMU_OPTION_OP_SET",
    "IOMMU_OPTION_RLIMIT_MODE",
    "IOMMU_PGFAULT_FLAGS_LAST_PAGE",
    "IOMMU_PGFAULT_FLAGS_PASID_VALID",
    "IOMMU_PGFAULT_PERM_EXEC",
    "IOMMU_PGFAULT_PERM_PRIV",
    "IOMMU_PGFAULT_PERM_READ",
    "IOMMU_PGFAULT_PERM_WRITE",
    "IOMMU_VDEVICE_ALLOC",
    "IOMMU_VEVENTQ_ALLOC",
    "IOMMU_VEVENTQ_FLAG_LOST_EVENTS",
    "IOMMU_VEVENTQ_TYPE_ARM_SMMUV3",
    "IOMMU_VEVENTQ_TYPE_DEFAULT",
    "IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV",
    "IOMMU_VFIO_IOAS",
    "IOMMU_VFIO_IOAS_CLEAR",
    "IOMMU_VFIO_IOAS_GET",
    "IOMMU_VFIO_IOAS_SET",
    "IOMMU_VIOMMU_ALLOC",
    "IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3",
    "IOMMU_VIOMMU_TYPE_ARM_SMMUV3",
    "IOMMU_VIOMMU_TYPE_DEFAULT",
    "IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV",
    "IOMMU_VTD_INV_FLAGS_LEAF",
    "IOMMU_VTD_S1_EAFE",
    "IOMMU_VTD_S1_SRE",
    "IOMMU_VTD_S1_WPE",
    "IoctlDef",
    "iommu_destroy",
    "iommu_fault_alloc",
    "iommu_hw_info",
    "iommu_hw_info_amd",
    "iommu_hw_info_arm_smmuv3",
    "iommu_hw_info_arm_smmuv3_flags",
    "iommu_hw_info_tegra241_cmdqv",
    "iommu_hw_info_type",
    "iommu_hw_info_vtd",
    "iommu_hw_info_vtd_flags",
    "iommu_hw_queue_alloc",
    "iommu_hw_queue_type",
    "iommu_hwpt_alloc",
    "iommu_hwpt_amd_guest",
    "iommu_hwpt_arm_smmuv3",
    "iommu_hwpt_data_type",
    "iommu_hwpt_get_dirty_bitmap",
    "iommu_hwpt_invalidate",
    "iommu_hwpt_invalidate_data_type",
    "iommu_hwpt_page_response",
    "iommu_hwpt_pgfault",
    "iommu_hwpt_pgfault_flags",
    "iommu_hwpt_pgfault_perm",
    "iommu_hwpt_set_dirty_tracking",
    "iommu_hwpt_vtd_s1",
    "iommu_hwpt_vtd_s1_flags",
    "iommu_hwpt_vtd_s1_invalidate",
    "iommu_hwpt_vtd_s1_invalidate_flags",
    "iommu_ioas_alloc",
    "iommu_ioas_allow_iovas",
    "iommu_ioas_change_process",
    "iommu_ioas_copy",
    "iommu_ioas_iova_ranges",
    "iommu_ioas_map",
    "iommu_ioas_map_file",
    "iommu_ioas_noiommu_get_pa",
    "iommu_ioas_unmap",
    "iommu_iova_range",
    "iommu_option",
    "iommu_vdevice_alloc",
    "iommu_vevent_arm_smmuv3",
    "iommu_vevent_tegra241_cmdqv",
    "iommu_veventq_alloc",
    "iommu_veventq_flag",
    "iommu_veventq_type",
    "iommu_vfio_ioas",
    "iommu_viommu_alloc",
    "iommu_viommu_arm_smmuv3_invalidate",
    "iommu_viommu_tegra241_cmdqv",
    "iommu_viommu_type",
    "iommufd_hw_capabilities",
    "iommufd_hw_info_flags",
    "iommufd_hwpt_alloc_flags",
    "iommufd_hwpt_get_dirty_bitmap_flags",
    "iommufd_hwpt_set_dirty_tracking_flags",
    "iommufd_ioas_map_flags",
    "iommufd_option",
    "iommufd_option_ops",
    "iommufd_page_response_code",
    "iommufd_vevent_header",
    "iommufd_vfio_ioas_op",
]
