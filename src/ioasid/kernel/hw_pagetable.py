"""``hw_pagetable.c``: HWPT_PAGING objects — an IOMMU domain kept in sync with an IOAS.

A HWPT_PAGING holds a reference on its IOAS; every attached device holds one on it.
An "auto domain" (made by attaching a device straight to an IOAS) goes away with its last
device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sortedcontainers import SortedDict

from ioasid.kernel.objects import IommufdObject, ObjType

if TYPE_CHECKING:
    from ioasid.kernel.io_pagetable import Area
    from ioasid.kernel.ioas import Ioas


class IommuDomain:
    """``struct iommu_domain`` of type UNMANAGED: what the IOMMU translates with.

    Holds the IOVA → (area, byte offset) mapping the io_pagetable loaded; the hardware
    page-table formats of ``ioasid.hw`` render it for DMA.
    """

    def __init__(self, pgsize_bitmap: int, aperture_start: int, aperture_end: int) -> None:
        self.pgsize_bitmap = pgsize_bitmap
        self.aperture_start = aperture_start
        self.aperture_end = aperture_end
        self.mappings: SortedDict = SortedDict()

    def map_range(self, iova: int, area: Area, first_byte: int, length: int) -> None:
        self.mappings[iova] = (area, first_byte, length)

    def unmap_range(self, iova: int, length: int) -> None:
        self.mappings.pop(iova, None)

    def mapped_bytes(self) -> int:
        return sum(length for _, _, length in self.mappings.values())


class HwptPaging(IommufdObject):
    """``struct iommufd_hwpt_paging``."""

    TYPE = ObjType.HWPT_PAGING

    def __init__(self, ioas: Ioas, domain: IommuDomain, auto_domain: bool = False) -> None:
        super().__init__()
        self.ioas = ioas
        self.domain = domain
        self.auto_domain = auto_domain
        self.devices: list[object] = []
        self.enforce_cache_coherency = True

    def attach_to_ioas(self) -> None:
        """``iopt_table_add_domain`` then join ``ioas->hwpt_list``; takes the IOAS ref."""
        self.ioas.iopt.add_domain(self.domain)
        self.ioas.hwpt_list.append(self)
        self.ioas.users += 1

    def destroy(self) -> None:
        if self in self.ioas.hwpt_list:
            self.ioas.hwpt_list.remove(self)
            self.ioas.iopt.remove_domain(self.domain)
            self.ioas.users -= 1
