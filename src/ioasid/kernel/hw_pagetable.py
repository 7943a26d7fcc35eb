"""``hw_pagetable.c``: HWPT_PAGING objects — an IOMMU domain kept in sync with an IOAS.

A HWPT_PAGING holds a reference on its IOAS; every attached device holds one on it.
An "auto domain" (made by attaching a device straight to an IOAS) goes away with its last
device.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, NoReturn

from ioasid import uapi
from ioasid.hw.iommu import Domain as HwDomain
from ioasid.hw.memory import PAGE_SIZE, PhysMap
from ioasid.hw.pagetable.base import HwError, Prot
from ioasid.kernel.errors import KernelError, fail
from ioasid.kernel.main import Ucmd
from ioasid.kernel.objects import IommufdObject, ObjType

if TYPE_CHECKING:
    from ioasid.kernel.ioas import Ioas
    from ioasid.kernel.pages import IoptPages


class IommuDomain:
    """``struct iommu_domain`` of type UNMANAGED: a hardware page table (``ioasid.hw``)
    that the io_pagetable fills from pinned pages, as ``iopt_area_fill_domain`` does.

    Pages are mapped by physically contiguous runs (``batch_to_domain``), or one
    ``PAGE_SIZE`` at a time when the IOAS has huge pages disabled.
    """

    def __init__(self, hw: HwDomain, phys: PhysMap) -> None:
        self.hw = hw
        self.phys = phys
        self.pgsize_bitmap = hw.pgsize_bitmap
        self.aperture_start, self.aperture_end = hw.aperture

    def map_range(
        self,
        iova: int,
        pages: IoptPages,
        first_byte: int,
        length: int,
        prot: int,
        small: bool = False,
    ) -> None:
        done = 0
        try:
            for pa, n in pages.phys_runs(self.phys, first_byte, length):
                if small:
                    for off in range(0, n, PAGE_SIZE):
                        k = min(PAGE_SIZE - (pa + off) % PAGE_SIZE, n - off)
                        self.hw.map(iova + done + off, pa + off, k, Prot(prot))
                else:
                    self.hw.map(iova + done, pa, n, Prot(prot))
                done += n
        except HwError as exc:
            if done:
                self.hw.unmap(iova, done)
            raise KernelError(exc.errno or errno.EINVAL, str(exc.strerror)) from None

    def unmap_range(self, iova: int, length: int) -> None:
        self.hw.unmap(iova, length)

    def iova_to_phys(self, iova: int) -> int | None:
        return self.hw.iova_to_phys(iova)


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


def _not_simulated(what: str) -> NoReturn:
    fail(errno.EOPNOTSUPP, f"{what} is not simulated yet (devices issue)")


def get_hwpt_paging(ucmd: Ucmd, hwpt_id: int) -> HwptPaging:
    return ucmd.ictx.objects.get(hwpt_id, HwptPaging, "HWPT_PAGING")


def hwpt_set_dirty_tracking(ucmd: Ucmd) -> int:
    """``IOMMU_HWPT_SET_DIRTY_TRACKING``: unknown flags → EOPNOTSUPP; HWPT_PAGING → ENOENT."""
    cmd = ucmd.cmd
    if cmd.flags & ~uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE:
        fail(errno.EOPNOTSUPP, f"IOMMU_HWPT_SET_DIRTY_TRACKING: unknown flags {cmd.flags:#x}")
    get_hwpt_paging(ucmd, cmd.hwpt_id)
    _not_simulated("dirty tracking")


def hwpt_get_dirty_bitmap(ucmd: Ucmd) -> int:
    """``IOMMU_HWPT_GET_DIRTY_BITMAP``: unknown flags or __reserved → EOPNOTSUPP; HWPT_PAGING
    → ENOENT."""
    cmd = ucmd.cmd
    if cmd.flags & ~uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR or cmd.reserved:
        fail(errno.EOPNOTSUPP, "IOMMU_HWPT_GET_DIRTY_BITMAP: unknown flags or __reserved != 0")
    get_hwpt_paging(ucmd, cmd.hwpt_id)
    _not_simulated("dirty tracking")


INVALIDATE_ENTRY_NUM_MAX = 1 << 19


def hwpt_invalidate(ucmd: Ucmd) -> int:
    """``IOMMU_HWPT_INVALIDATE``: __reserved → EOPNOTSUPP; entries without a pointer or with
    a length of 0 or > PAGE_SIZE, or more than 2^19 → EINVAL; hwpt_id → ENOENT; not a nested
    HWPT or vIOMMU → EINVAL. ``entry_num`` is written back (entries done) even on failure."""
    cmd = ucmd.cmd
    try:
        if cmd.reserved:
            fail(errno.EOPNOTSUPP, "IOMMU_HWPT_INVALIDATE: __reserved must be 0")
        if cmd.entry_num and (
            not cmd.data_uptr
            or not cmd.entry_len
            or cmd.entry_len > PAGE_SIZE
            or cmd.entry_num > INVALIDATE_ENTRY_NUM_MAX
        ):
            fail(
                errno.EINVAL,
                f"IOMMU_HWPT_INVALIDATE: {cmd.entry_num} entries of {cmd.entry_len} bytes at "
                f"{cmd.data_uptr:#x} (entry_len 1..PAGE_SIZE, at most {INVALIDATE_ENTRY_NUM_MAX})",
            )
        pt = ucmd.ictx.objects.lookup(cmd.hwpt_id)
        if pt is None:
            fail(errno.ENOENT, f"IOMMU_HWPT_INVALIDATE: no object with id {cmd.hwpt_id}")
        fail(
            errno.EINVAL,
            f"IOMMU_HWPT_INVALIDATE: object {cmd.hwpt_id} is a {type(pt).__name__}, not a "
            "nested HWPT or a vIOMMU",
        )
    finally:
        cmd.entry_num = 0
        ucmd.respond()
