"""``hw_pagetable.c``: HWPT objects — HWPT_PAGING (an IOMMU domain kept in sync with an
IOAS) and HWPT_NESTED (a driver's stage-1 domain on top of a NEST_PARENT paging HWPT) — and
the ioctls that act on them: HWPT_ALLOC, SET_DIRTY_TRACKING, GET_DIRTY_BITMAP, INVALIDATE.

References, as in the kernel: a HWPT_PAGING holds one on its IOAS from allocation until
destroy; a HWPT_NESTED one on its parent; a HWPT with a fault queue one on the fault object;
every device attachment one on the HWPT. An "auto domain" (made by attaching a device
straight to an IOAS) goes away with its last attachment.
"""

from __future__ import annotations

import ctypes
import errno
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ioasid import uapi
from ioasid.hw.iommu import Domain as HwDomain
from ioasid.hw.iommu import NestedDomain as HwNestedDomain
from ioasid.hw.memory import PAGE_SIZE, PhysMap
from ioasid.hw.pagetable.base import HwError, Prot
from ioasid.kernel.errors import KernelError, fail
from ioasid.kernel.ioas import Ioas
from ioasid.kernel.objects import IommufdObject, ObjectTable, ObjType
from ioasid.kernel.pages import ULONG_MAX, IoptPages
from ioasid.kernel.private import Ucmd


class IommuDomain:
    """``struct iommu_domain`` of type UNMANAGED: a hardware page table (``ioasid.hw``)
    that the io_pagetable fills from pinned pages, as ``iopt_area_fill_domain`` does.

    Pages are mapped by physically contiguous runs (``batch_to_domain``), or one
    ``PAGE_SIZE`` at a time when the IOAS has huge pages disabled. ``owner`` is the
    driver's ``iommu_ops`` (a name here); ``iopf_handler`` is set when the HWPT has a fault
    queue.
    """

    nested = False

    def __init__(self, hw: HwDomain, phys: PhysMap, owner: str = "") -> None:
        self.hw = hw
        self.phys = phys
        self.owner = owner
        self.pgsize_bitmap = hw.pgsize_bitmap
        self.aperture_start, self.aperture_end = hw.aperture
        self.iopf_handler = False

    @property
    def dirty_ops(self) -> bool:
        """``domain->dirty_ops != NULL``: allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING."""
        return self.hw.dirty_ops

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
        hw_prot = Prot(prot)
        try:
            for pa, n in pages.phys_runs(self.phys, first_byte, length):
                if not small:
                    self.hw.map(iova + done, pa, n, hw_prot)
                elif (iova + done) % PAGE_SIZE == 0 and pa % PAGE_SIZE == 0:
                    # batch_iommu_map_small: one iommu_map per PAGE_SIZE, written by runs
                    self.hw.map(iova + done, pa, n, hw_prot, max_pgsize=PAGE_SIZE)
                else:
                    for off in range(0, n, PAGE_SIZE):
                        k = min(PAGE_SIZE - (pa + off) % PAGE_SIZE, n - off)
                        self.hw.map(iova + done + off, pa + off, k, hw_prot)
                done += n
        except HwError as exc:
            if done:
                self.hw.unmap(iova, done)
            raise KernelError(exc.errno or errno.EINVAL, str(exc.strerror)) from None

    def unmap_range(self, iova: int, length: int) -> None:
        self.hw.unmap(iova, length)

    def iova_to_phys(self, iova: int) -> int | None:
        return self.hw.iova_to_phys(iova)


class NestedDomain:
    """``struct iommu_domain`` of type NESTED: a driver's stage-1 configuration over a
    paging parent. Subclasses implement ``cache_invalidate_user``."""

    nested = True
    dirty_ops = False

    def __init__(self, parent: IommuDomain, owner: str) -> None:
        self.parent = parent
        self.owner = owner
        self.iopf_handler = False
        self.hw: HwNestedDomain | None = None
        """The hardware's view: the driver's stage 1 over the parent's table (``None``:
        the device is blocked while attached)."""

    def free(self) -> None:
        """``domain->ops->free``."""
        if self.hw is not None:
            self.hw.free()
            self.hw = None

    def cache_invalidate_user(self, ucmd: Ucmd, array: UserDataArray) -> None:
        """``ops->cache_invalidate_user``: sets ``array.entry_num`` to the entries done."""
        array.entry_num = 0
        fail(errno.EOPNOTSUPP, "this nested domain has no cache_invalidate_user op")


AnyDomain = IommuDomain | NestedDomain


class UserDataArray:
    """``struct iommu_user_data_array``."""

    def __init__(self, type: int, uptr: int, entry_len: int, entry_num: int) -> None:
        self.type = type
        self.uptr = uptr
        self.entry_len = entry_len
        self.entry_num = entry_num


def copy_struct_from_user(
    ucmd: Ucmd, struct: type[Any], uptr: int, usize: int, min_len: int, what: str
) -> Any:
    """``__iommu_copy_struct_from_user`` after its type check: ``usize`` below the first
    version's size or above the kernel's → EINVAL; then ``copy_struct_from_user``
    (non-zero bytes past the kernel struct → E2BIG, an unreadable pointer → EFAULT)."""
    ksize = ctypes.sizeof(struct)
    if usize < min_len or ksize < usize:
        fail(errno.EINVAL, f"{what}: length {usize} not in [{min_len}, {ksize}]")
    kernel = ucmd.ictx.kernel
    raw = kernel.copy_from_user(uptr, usize) if usize else b""
    return struct.from_buffer_copy(raw[:ksize].ljust(ksize, b"\0"))


def copy_struct_from_user_array(
    ucmd: Ucmd, struct: type[Any], array: UserDataArray, data_type: int, index: int, min_last: str
) -> Any:
    """``iommu_copy_struct_from_user_array``: entry ``index`` of ``array``; a type other
    than ``data_type`` → EINVAL."""
    if not array.entry_num:
        fail(errno.EINVAL, "user data array is empty")
    if array.type != data_type:
        fail(errno.EINVAL, f"user data array type {array.type:#x} is not {data_type:#x}")
    return copy_struct_from_user(
        ucmd,
        struct,
        array.uptr + array.entry_len * index,
        array.entry_len,
        struct.offsetofend(min_last),
        f"entry {index}",
    )


class FaultQueue(Protocol):
    """What a HWPT needs of its ``iommufd_fault`` (``eventq.Fault``, which sits above):
    a reference count, the handler that queues a page request, and the auto-response of
    pending requests when a device leaves the HWPT."""

    users: int

    def auto_response(self, handle: Any) -> None: ...

    def iopf_handler(self, group: Any) -> None: ...


class HwPagetable(IommufdObject):
    """``struct iommufd_hw_pagetable``: the common part of PAGING and NESTED HWPTs."""

    domain: AnyDomain

    def __init__(self, pasid_compat: bool) -> None:
        super().__init__()
        self.pasid_compat = pasid_compat
        self.fault: FaultQueue | None = None

    def destroy(self) -> None:
        """``__iommufd_hwpt_destroy``: drop the fault queue's reference."""
        if self.fault is not None:
            self.fault.users -= 1
            self.fault = None


class HwptPaging(HwPagetable):
    """``struct iommufd_hwpt_paging``."""

    TYPE = ObjType.HWPT_PAGING
    domain: IommuDomain

    def __init__(self, ioas: Ioas, flags: int) -> None:
        super().__init__(bool(flags & uapi.IOMMU_HWPT_ALLOC_PASID))
        self.ioas = ioas
        ioas.users += 1
        self.nest_parent = bool(flags & uapi.IOMMU_HWPT_ALLOC_NEST_PARENT)
        self.auto_domain = False
        self.enforce_cache_coherency = False
        self.listed = False

    def add_to_ioas(self) -> None:
        """``iopt_table_add_domain`` then ``list_add_tail(&hwpt_item, &ioas->hwpt_list)``."""
        self.ioas.iopt.add_domain(self.domain)
        self.ioas.hwpt_list.append(self)
        self.listed = True

    def destroy(self) -> None:
        """``iommufd_hwpt_paging_destroy`` (also its abort)."""
        if self.listed:
            self.listed = False
            self.ioas.hwpt_list.remove(self)
            self.ioas.iopt.remove_domain(self.domain)
        super().destroy()
        self.ioas.users -= 1


class HwptNested(HwPagetable):
    """``struct iommufd_hwpt_nested``: a nested domain on ``parent`` (or on a vIOMMU)."""

    TYPE = ObjType.HWPT_NESTED
    domain: NestedDomain

    def __init__(self, parent: HwptPaging, flags: int, viommu: IommufdObject | None = None):
        super().__init__(bool(flags & uapi.IOMMU_HWPT_ALLOC_PASID))
        self.parent = parent
        self.viommu = viommu
        (viommu if viommu is not None else parent).users += 1

    def destroy(self) -> None:
        """``iommufd_hwpt_nested_destroy``: free the domain, drop the references."""
        domain = getattr(self, "domain", None)
        if domain is not None:
            domain.free()
        super().destroy()
        (self.viommu if self.viommu is not None else self.parent).users -= 1


def find_hwpt_paging(hwpt: HwPagetable) -> HwptPaging | None:
    """``find_hwpt_paging``: the paging HWPT itself, or a nested HWPT's parent."""
    if isinstance(hwpt, HwptPaging):
        return hwpt
    if isinstance(hwpt, HwptNested):
        return hwpt.parent
    return None


def hw_pagetable_put(objects: ObjectTable, hwpt: HwPagetable) -> None:
    """``iommufd_hw_pagetable_put``: an auto domain is destroyed with its last user
    (``iommufd_object_put_and_try_destroy``)."""
    if isinstance(hwpt, HwptPaging) and hwpt.auto_domain:
        hwpt.users -= 1
        if hwpt.users == 1 and objects.lookup(hwpt.id) is hwpt:
            objects.remove(hwpt.id)
        return
    hwpt.users -= 1


def get_hwpt_paging(ucmd: Ucmd, hwpt_id: int) -> HwptPaging:
    return ucmd.ictx.objects.get(hwpt_id, HwptPaging, "HWPT_PAGING")


# --- allocation -----------------------------------------------------------------------------

PAGING_VALID_FLAGS = (
    uapi.IOMMU_HWPT_ALLOC_NEST_PARENT
    | uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
    | uapi.IOMMU_HWPT_FAULT_ID_VALID
    | uapi.IOMMU_HWPT_ALLOC_PASID
)


class UserData:
    """``struct iommu_user_data``."""

    def __init__(self, type: int, uptr: int, len: int) -> None:
        self.type = type
        self.uptr = uptr
        self.len = len


def hwpt_paging_enforce_cc(hwpt: HwptPaging) -> None:
    """``iommufd_hwpt_paging_enforce_cc``: EINVAL when the domain cannot enforce it."""
    if hwpt.enforce_cache_coherency:
        return
    hwpt.enforce_cache_coherency = hwpt.domain.hw.enforce_cache_coherency()
    if not hwpt.enforce_cache_coherency:
        fail(errno.EINVAL, f"HWPT {hwpt.id}: the domain cannot enforce cache coherency")


# --- dirty tracking -------------------------------------------------------------------------


def hwpt_set_dirty_tracking(ucmd: Ucmd) -> int:
    """``IOMMU_HWPT_SET_DIRTY_TRACKING``: unknown flags → EOPNOTSUPP; HWPT_PAGING → ENOENT;
    ``iopt_set_dirty_tracking``: a domain without dirty ops → EOPNOTSUPP; enabling first
    clears every area's dirty bits (a clean snapshot), then the driver's
    ``set_dirty_tracking``."""
    cmd = ucmd.cmd
    if cmd.flags & ~uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE:
        fail(errno.EOPNOTSUPP, f"IOMMU_HWPT_SET_DIRTY_TRACKING: unknown flags {cmd.flags:#x}")
    hwpt = get_hwpt_paging(ucmd, cmd.hwpt_id)
    domain = hwpt.domain
    enable = bool(cmd.flags & uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
    if not domain.dirty_ops:
        fail(errno.EOPNOTSUPP, f"HWPT {hwpt.id} was not allocated with DIRTY_TRACKING")
    if enable:
        for area in hwpt.ioas.iopt.areas.values():
            if area.pages is not None:
                domain.hw.read_and_clear_dirty(area.iova, area.length)
    try:
        domain.hw.set_dirty_tracking(enable)
    except HwError as exc:
        raise KernelError(exc.errno or errno.EINVAL, str(exc.strerror)) from None
    return 0


def check_iova_range(iova_alignment: int, cmd: Any) -> None:
    """``iommufd_check_iova_range``."""
    if not cmd.length:
        fail(errno.EINVAL, "GET_DIRTY_BITMAP: length is 0")
    last_iova = cmd.iova + cmd.length - 1
    if last_iova > (1 << 64) - 1 or cmd.iova > ULONG_MAX or last_iova > ULONG_MAX:
        fail(errno.EOVERFLOW, f"GET_DIRTY_BITMAP: iova {cmd.iova:#x} + length overflows")
    mask = iova_alignment - 1
    if cmd.iova & mask or (last_iova + 1) & mask:
        fail(
            errno.EINVAL,
            f"GET_DIRTY_BITMAP: [{cmd.iova:#x}, {last_iova:#x}] not aligned to the IOAS "
            f"alignment {iova_alignment:#x}",
        )
    if not cmd.page_size:
        fail(errno.EINVAL, "GET_DIRTY_BITMAP: page_size is 0")
    pmask = cmd.page_size - 1
    if cmd.iova & pmask or (last_iova + 1) & pmask:
        fail(
            errno.EINVAL,
            f"GET_DIRTY_BITMAP: [{cmd.iova:#x}, {last_iova:#x}] not aligned to page_size "
            f"{cmd.page_size:#x}",
        )


def hwpt_get_dirty_bitmap(ucmd: Ucmd) -> int:
    """``IOMMU_HWPT_GET_DIRTY_BITMAP``: unknown flags or __reserved → EOPNOTSUPP; HWPT_PAGING
    → ENOENT; ``iommufd_check_iova_range`` (EINVAL / EOVERFLOW); a domain without dirty ops
    → EOPNOTSUPP. Then, for each run of contiguous areas in the range, the domain's
    ``read_and_clear_dirty`` (NO_CLEAR keeps the bits) sets bits in the user bitmap (bits
    already set stay set). As in 7.3, a hole in the areas or an unwritable bitmap ends the
    walk without failing the ioctl (``iova_bitmap_for_each``'s result is not returned)."""
    cmd = ucmd.cmd
    if cmd.flags & ~uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR or cmd.reserved:
        fail(errno.EOPNOTSUPP, "IOMMU_HWPT_GET_DIRTY_BITMAP: unknown flags or __reserved != 0")
    hwpt = get_hwpt_paging(ucmd, cmd.hwpt_id)
    iopt = hwpt.ioas.iopt
    check_iova_range(iopt.iova_alignment, cmd)
    domain = hwpt.domain
    if not domain.dirty_ops:
        fail(errno.EOPNOTSUPP, f"HWPT {hwpt.id} has no dirty ops")
    no_clear = bool(cmd.flags & uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)
    last_iova = cmd.iova + cmd.length - 1
    starts: list[npt.NDArray[np.int64]] = []
    ends: list[npt.NDArray[np.int64]] = []
    cur = cmd.iova
    for area in iopt.area_iter(cmd.iova, last_iova):
        if area.iova > cur or area.pages is None:
            break
        last = min(last_iova, area.last)
        runs = domain.hw.read_and_clear_dirty_runs(cur, last - cur + 1, no_clear=no_clear)
        starts.append(runs[0])
        ends.append(runs[1])
        cur = last + 1
        if cur > last_iova:
            break
    if starts:
        dirty_starts, dirty_ends = np.concatenate(starts), np.concatenate(ends)
        _bitmap_set(ucmd, cmd.data, cmd.iova, cmd.length, cmd.page_size, dirty_starts, dirty_ends)
    return 0


def _bitmap_set(
    ucmd: Ucmd,
    data: int,
    iova: int,
    length: int,
    page_size: int,
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
) -> None:
    """``iova_bitmap_set`` for each dirty range ``[starts[k], ends[k])`` the driver
    reported (a whole leaf, which may start before ``iova`` or end past the requested
    length), as 7.3 does it:

    * a range starting below ``iova`` is dropped (``iova_bitmap_advance_to`` fails);
    * a range starting at or past the bitmap's last u64 word is dropped too;
    * otherwise its bits are set up to its end, clamped only by the end of the last page of
      user memory holding the bitmap — bits past ``length`` in that page get set.

    Bit *i* of the little-endian u64 array covers ``iova + i * page_size``. All ranges at
    once: one read and one write of the bitmap bytes they touch.
    """
    if not starts.size or iova > int(starts.max()):
        return
    pgshift = page_size.bit_length() - 1
    total_words = ((length - 1) >> pgshift) // 64 + 1
    end = data + total_words * 8
    max_bit = ((end + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE - data) * 8 - 1
    max_bit = min(max_bit, 1 << 62)  # no range reaches it; keeps the clamp in int64
    keep = starts >= iova
    first = (starts[keep] - iova) >> pgshift
    last = (ends[keep] - 1 - iova) >> pgshift
    inside = first // 64 < total_words
    first, last = first[inside], np.minimum(last[inside], max_bit)
    if not first.size:
        return
    lo_byte = int(first.min()) // 8
    hi_byte = int(last.max()) // 8 + 1
    kernel = ucmd.ictx.kernel
    try:
        buf = np.frombuffer(
            kernel.copy_from_user(data + lo_byte, hi_byte - lo_byte), dtype=np.uint8
        ).copy()
        # +1 where a range begins, -1 past where it ends: covered bits have a positive sum
        step = np.zeros((hi_byte - lo_byte) * 8 + 1, dtype=np.int8)
        np.add.at(step, first - lo_byte * 8, 1)
        np.add.at(step, last - lo_byte * 8 + 1, -1)
        buf |= np.packbits(np.cumsum(step[:-1], dtype=np.int8) > 0, bitorder="little")
        kernel.copy_to_user(data + lo_byte, buf.tobytes())
    except OSError:
        return
