"""Simulated I/O page-table formats: the iommufd selftest mock (AMDv1 "mock" variant with
2 KiB pages) and Intel VT-d second stage, both on the generic-pt radix engine."""

from ioasid.uapi.iommufd_test import (
    MOCK_APERTURE_LAST,
    MOCK_APERTURE_START,
    MOCK_HUGE_PAGE_SIZE,
    MOCK_IOMMUPT_DEFAULT,
    MOCK_IOMMUPT_HUGE,
    MOCK_PAGE_SIZE,
)

from .base import (
    Access,
    FaultReason,
    HwError,
    PageTable,
    PageTableError,
    Prot,
    Translation,
    WalkFault,
    best_pgsize_lg2,
    dirty_ranges_to_bitmap,
    pgsz_count,
)
from .mock import MockPageTable
from .radix import RadixPageTable, default_table_allocator
from .vtd import VtdSecondStage

__all__ = [
    "MOCK_APERTURE_LAST",
    "MOCK_APERTURE_START",
    "MOCK_HUGE_PAGE_SIZE",
    "MOCK_IOMMUPT_DEFAULT",
    "MOCK_IOMMUPT_HUGE",
    "MOCK_PAGE_SIZE",
    "Access",
    "FaultReason",
    "HwError",
    "MockPageTable",
    "PageTable",
    "PageTableError",
    "Prot",
    "RadixPageTable",
    "Translation",
    "VtdSecondStage",
    "WalkFault",
    "best_pgsize_lg2",
    "default_table_allocator",
    "dirty_ranges_to_bitmap",
    "pgsz_count",
]
