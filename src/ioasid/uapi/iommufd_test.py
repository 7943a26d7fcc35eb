"""``drivers/iommu/iommufd/iommufd_test.h`` of Linux 7.3, as ctypes data: the ABI of the
``CONFIG_IOMMUFD_TEST`` mock driver — ``IOMMU_TEST_CMD`` and its ops, the mock IOMMU's
constants, and the selftest driver-data structs for HW info, HWPT, vIOMMU and invalidation.

All enums of this header are anonymous in C, so their enumerators are plain ``int``
constants only.
"""

from __future__ import annotations

from ctypes import c_int32, c_uint32, c_uint64

from ._abi import _IO, Struct, Union
from .iommufd import IOMMUFD_CMD_BASE, IOMMUFD_IOCTLS, IOMMUFD_TYPE, IoctlDef

IOMMU_TEST_OP_ADD_RESERVED = 1
IOMMU_TEST_OP_MOCK_DOMAIN = 2
IOMMU_TEST_OP_MD_CHECK_MAP = 3
IOMMU_TEST_OP_MD_CHECK_REFS = 4
IOMMU_TEST_OP_CREATE_ACCESS = 5
IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6
IOMMU_TEST_OP_ACCESS_PAGES = 7
IOMMU_TEST_OP_ACCESS_RW = 8
IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9
IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10
IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11
IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12
IOMMU_TEST_OP_DIRTY = 13
IOMMU_TEST_OP_MD_CHECK_IOTLB = 14
IOMMU_TEST_OP_TRIGGER_IOPF = 15
IOMMU_TEST_OP_DEV_CHECK_CACHE = 16
IOMMU_TEST_OP_TRIGGER_VEVENT = 17
IOMMU_TEST_OP_PASID_ATTACH = 18
IOMMU_TEST_OP_PASID_REPLACE = 19
IOMMU_TEST_OP_PASID_DETACH = 20
IOMMU_TEST_OP_PASID_CHECK_HWPT = 21
IOMMU_TEST_OP_DMABUF_GET = 22
IOMMU_TEST_OP_DMABUF_REVOKE = 23

MOCK_IOMMUPT_DEFAULT = 0
MOCK_IOMMUPT_HUGE = 1

MOCK_APERTURE_START = 1 << 24
MOCK_APERTURE_LAST = (1 << 31) - 1
MOCK_PAGE_SIZE = 2048
MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE

MOCK_FLAGS_ACCESS_WRITE = 1 << 0
MOCK_FLAGS_ACCESS_SYZ = 1 << 16

MOCK_ACCESS_RW_WRITE = 1 << 0
MOCK_ACCESS_RW_SLOW_PATH = 1 << 2

MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0

MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0
MOCK_FLAGS_DEVICE_PASID = 1 << 2

MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3
MOCK_NESTED_DOMAIN_IOTLB_NUM = 4

MOCK_DEV_CACHE_ID_MAX = 3
MOCK_DEV_CACHE_NUM = 4

IOMMU_TEST_PASID_RESERVED = 1024


class _iommu_test_add_reserved(Struct):
    _fields_ = [
        ("start", c_uint64),
        ("length", c_uint64),
    ]


class _iommu_test_mock_domain(Struct):
    _fields_ = [
        ("out_stdev_id", c_uint32),
        ("out_hwpt_id", c_uint32),
        ("out_idev_id", c_uint32),
    ]


class _iommu_test_mock_domain_flags(Struct):
    _fields_ = [
        ("out_stdev_id", c_uint32),
        ("out_hwpt_id", c_uint32),
        ("out_idev_id", c_uint32),
        ("dev_flags", c_uint32),
    ]


class _iommu_test_mock_domain_replace(Struct):
    _fields_ = [
        ("pt_id", c_uint32),
    ]


class _iommu_test_check_map(Struct):
    _fields_ = [
        ("iova", c_uint64),
        ("length", c_uint64),
        ("uptr", c_uint64),
    ]


class _iommu_test_check_refs(Struct):
    _fields_ = [
        ("length", c_uint64),
        ("uptr", c_uint64),
        ("refs", c_uint32),
    ]


class _iommu_test_create_access(Struct):
    _fields_ = [
        ("out_access_fd", c_uint32),
        ("flags", c_uint32),
    ]


class _iommu_test_destroy_access_pages(Struct):
    _fields_ = [
        ("access_pages_id", c_uint32),
    ]


class _iommu_test_access_pages(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("out_access_pages_id", c_uint32),
        ("iova", c_uint64),
        ("length", c_uint64),
        ("uptr", c_uint64),
    ]


class _iommu_test_access_rw(Struct):
    _fields_ = [
        ("iova", c_uint64),
        ("length", c_uint64),
        ("uptr", c_uint64),
        ("flags", c_uint32),
    ]


class _iommu_test_memory_limit(Struct):
    _fields_ = [
        ("limit", c_uint32),
    ]


class _iommu_test_access_replace_ioas(Struct):
    _fields_ = [
        ("ioas_id", c_uint32),
    ]


class _iommu_test_dirty(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("iova", c_uint64),
        ("length", c_uint64),
        ("page_size", c_uint64),
        ("uptr", c_uint64),
        ("out_nr_dirty", c_uint64),
    ]


class _iommu_test_check_iotlb(Struct):
    _fields_ = [
        ("id", c_uint32),
        ("iotlb", c_uint32),
    ]


class _iommu_test_trigger_iopf(Struct):
    _fields_ = [
        ("dev_id", c_uint32),
        ("pasid", c_uint32),
        ("grpid", c_uint32),
        ("perm", c_uint32),
        ("addr", c_uint64),
    ]


class _iommu_test_check_dev_cache(Struct):
    _fields_ = [
        ("id", c_uint32),
        ("cache", c_uint32),
    ]


class _iommu_test_trigger_vevent(Struct):
    _fields_ = [
        ("dev_id", c_uint32),
    ]


class _iommu_test_pasid_attach(Struct):
    """``@id`` of the command is the stdev_id."""

    _fields_ = [
        ("pasid", c_uint32),
        ("pt_id", c_uint32),
    ]


class _iommu_test_pasid_replace(Struct):
    """``@id`` of the command is the stdev_id."""

    _fields_ = [
        ("pasid", c_uint32),
        ("pt_id", c_uint32),
    ]


class _iommu_test_pasid_detach(Struct):
    """``@id`` of the command is the stdev_id."""

    _fields_ = [
        ("pasid", c_uint32),
    ]


class _iommu_test_pasid_check(Struct):
    """``@id`` of the command is the stdev_id."""

    _fields_ = [
        ("pasid", c_uint32),
        ("hwpt_id", c_uint32),
    ]


class _iommu_test_dmabuf_get(Struct):
    _fields_ = [
        ("length", c_uint32),
        ("open_flags", c_uint32),
    ]


class _iommu_test_dmabuf_revoke(Struct):
    _fields_ = [
        ("dmabuf_fd", c_int32),
        ("revoked", c_uint32),
    ]


class _iommu_test_cmd_op(Union):
    _fields_ = [
        ("add_reserved", _iommu_test_add_reserved),
        ("mock_domain", _iommu_test_mock_domain),
        ("mock_domain_flags", _iommu_test_mock_domain_flags),
        ("mock_domain_replace", _iommu_test_mock_domain_replace),
        ("check_map", _iommu_test_check_map),
        ("check_refs", _iommu_test_check_refs),
        ("create_access", _iommu_test_create_access),
        ("destroy_access_pages", _iommu_test_destroy_access_pages),
        ("access_pages", _iommu_test_access_pages),
        ("access_rw", _iommu_test_access_rw),
        ("memory_limit", _iommu_test_memory_limit),
        ("access_replace_ioas", _iommu_test_access_replace_ioas),
        ("dirty", _iommu_test_dirty),
        ("check_iotlb", _iommu_test_check_iotlb),
        ("trigger_iopf", _iommu_test_trigger_iopf),
        ("check_dev_cache", _iommu_test_check_dev_cache),
        ("trigger_vevent", _iommu_test_trigger_vevent),
        ("pasid_attach", _iommu_test_pasid_attach),
        ("pasid_replace", _iommu_test_pasid_replace),
        ("pasid_detach", _iommu_test_pasid_detach),
        ("pasid_check", _iommu_test_pasid_check),
        ("dmabuf_get", _iommu_test_dmabuf_get),
        ("dmabuf_revoke", _iommu_test_dmabuf_revoke),
    ]


class iommu_test_cmd(Struct):
    _anonymous_ = ("_op",)
    _fields_ = [
        ("size", c_uint32),
        ("op", c_uint32),
        ("id", c_uint32),
        ("reserved", c_uint32),
        ("_op", _iommu_test_cmd_op),
        ("last", c_uint32),
    ]


IOMMU_TEST_CMD = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32)

IOMMU_TEST_IOCTL = IoctlDef(
    "IOMMU_TEST_CMD", IOMMU_TEST_CMD, iommu_test_cmd, iommu_test_cmd.offsetofend("last")
)
"""The ``#ifdef CONFIG_IOMMUFD_TEST`` entry at the end of ``iommufd_ioctl_ops[]``."""

IOMMUFD_IOCTLS_WITH_TEST: tuple[IoctlDef, ...] = (*IOMMUFD_IOCTLS, IOMMU_TEST_IOCTL)
"""``iommufd_ioctl_ops[]`` of a kernel built with ``CONFIG_IOMMUFD_TEST``."""

MOCK_PASID_WIDTH = 20

IOMMU_HW_INFO_TYPE_SELFTEST = 0xFEEDBEEF
IOMMU_HW_INFO_SELFTEST_REGVAL = 0xDEADBEEF


class iommu_test_hw_info(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("test_reg", c_uint32),
    ]


IOMMU_HWPT_DATA_SELFTEST = 0xDEAD
IOMMU_TEST_IOTLB_DEFAULT = 0xBADBEEF
IOMMU_TEST_DEV_CACHE_DEFAULT = 0xBADDAD


class iommu_hwpt_selftest(Struct):
    _fields_ = [
        ("iotlb", c_uint32),
        ("pagetable_type", c_uint32),
    ]


IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xDEADBEEF
IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID = 0xDADBEEF

IOMMU_TEST_INVALIDATE_FLAG_ALL = 1 << 0


class iommu_hwpt_invalidate_selftest(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("iotlb_id", c_uint32),
    ]


IOMMU_VIOMMU_TYPE_SELFTEST = 0xDEADBEEF


class iommu_viommu_selftest(Struct):
    _fields_ = [
        ("in_data", c_uint32),
        ("out_data", c_uint32),
        ("out_mmap_offset", c_uint64),
        ("out_mmap_length", c_uint64),
    ]


IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xDEADBEEF
IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID = 0xDADBEEF


class iommu_viommu_invalidate_selftest(Struct):
    _fields_ = [
        ("flags", c_uint32),
        ("vdev_id", c_uint32),
        ("cache_id", c_uint32),
    ]


IOMMU_VEVENTQ_TYPE_SELFTEST = 0xBEEFBEEF


class iommu_viommu_event_selftest(Struct):
    _fields_ = [
        ("virt_id", c_uint32),
    ]


IOMMU_HW_QUEUE_TYPE_SELFTEST = 0xDEADBEEF
IOMMU_TEST_HW_QUEUE_MAX = 2

__all__ = [
    "IOMMUFD_IOCTLS_WITH_TEST",
    "IOMMU_HWPT_DATA_SELFTEST",
    "IOMMU_HWPT_INVALIDATE_DATA_SELFTEST",
    "IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID",
    "IOMMU_HW_INFO_SELFTEST_REGVAL",
    "IOMMU_HW_INFO_TYPE_SELFTEST",
    "IOMMU_HW_QUEUE_TYPE_SELFTEST",
    "IOMMU_TEST_CMD",
    "IOMMU_TEST_DEV_CACHE_DEFAULT",
    "IOMMU_TEST_HW_QUEUE_MAX",
    "IOMMU_TEST_INVALIDATE_FLAG_ALL",
    "IOMMU_TEST_IOCTL",
    "IOMMU_TEST_IOTLB_DEFAULT",
    "IOMMU_TEST_OP_ACCESS_PAGES",
    "IOMMU_TEST_OP_ACCESS_REPLACE_IOAS",
    "IOMMU_TEST_OP_ACCESS_RW",
    "IOMMU_TEST_OP_ADD_RESERVED",
    "IOMMU_TEST_OP_CREATE_ACCESS",
    "IOMMU_TEST_OP_DESTROY_ACCESS_PAGES",
    "IOMMU_TEST_OP_DEV_CHECK_CACHE",
    "IOMMU_TEST_OP_DIRTY",
    "IOMMU_TEST_OP_DMABUF_GET",
    "IOMMU_TEST_OP_DMABUF_REVOKE",
    "IOMMU_TEST_OP_MD_CHECK_IOTLB",
    "IOMMU_TEST_OP_MD_CHECK_MAP",
    "IOMMU_TEST_OP_MD_CHECK_REFS",
    "IOMMU_TEST_OP_MOCK_DOMAIN",
    "IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS",
    "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE",
    "IOMMU_TEST_OP_PASID_ATTACH",
    "IOMMU_TEST_OP_PASID_CHECK_HWPT",
    "IOMMU_TEST_OP_PASID_DETACH",
    "IOMMU_TEST_OP_PASID_REPLACE",
    "IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT",
    "IOMMU_TEST_OP_TRIGGER_IOPF",
    "IOMMU_TEST_OP_TRIGGER_VEVENT",
    "IOMMU_TEST_PASID_RESERVED",
    "IOMMU_VEVENTQ_TYPE_SELFTEST",
    "IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST",
    "IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID",
    "IOMMU_VIOMMU_TYPE_SELFTEST",
    "MOCK_ACCESS_RW_SLOW_PATH",
    "MOCK_ACCESS_RW_WRITE",
    "MOCK_APERTURE_LAST",
    "MOCK_APERTURE_START",
    "MOCK_DEV_CACHE_ID_MAX",
    "MOCK_DEV_CACHE_NUM",
    "MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES",
    "MOCK_FLAGS_ACCESS_SYZ",
    "MOCK_FLAGS_ACCESS_WRITE",
    "MOCK_FLAGS_DEVICE_NO_DIRTY",
    "MOCK_FLAGS_DEVICE_PASID",
    "MOCK_HUGE_PAGE_SIZE",
    "MOCK_IOMMUPT_DEFAULT",
    "MOCK_IOMMUPT_HUGE",
    "MOCK_NESTED_DOMAIN_IOTLB_ID_MAX",
    "MOCK_NESTED_DOMAIN_IOTLB_NUM",
    "MOCK_PAGE_SIZE",
    "MOCK_PASID_WIDTH",
    "iommu_hwpt_invalidate_selftest",
    "iommu_hwpt_selftest",
    "iommu_test_cmd",
    "iommu_test_hw_info",
    "iommu_viommu_event_selftest",
    "iommu_viommu_invalidate_selftest",
    "iommu_viommu_selftest",
]
