"""Access objects: in-kernel users of an IOAS without DMA (the mdev model).

Models ``iommufd_access_*`` of ``device.c`` and the access half of ``pages.c``
(``iopt_area_add_access``, ``iopt_area_remove_access``, ``iopt_pages_rw_access``) of
Linux 7.3. A driver (in the simulator: the selftest driver of :mod:`ioasid.kernel.mock_access`)
creates an :class:`Access`, attaches it to an IOAS, then either pins the pages under an
IOVA range (``pin_pages``, which needs an ``unmap`` op: an ``IOMMU_IOAS_UNMAP`` over pinned
pages calls it and waits until the pins are gone) or copies through them (``rw``).

There is no uAPI for the object itself: it has an id in the context's table because the
kernel uses the object machinery anyway, and the driver holds a reference, so
``IOMMU_DESTROY`` of that id fails with ``EBUSY``. An attached access holds a reference on
its IOAS (destroying the IOAS fails with ``EBUSY``) and on the context's file.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass

from ioasid.hw.memory import PAGE_SIZE, SelfAddressSpace
from ioasid.kernel.errors import fail
from ioasid.kernel.fail_nth import inject
from ioasid.kernel.io_pagetable import IOMMU_READ, IOMMU_WRITE, Area
from ioasid.kernel.ioas import Ioas
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.pages import ULONG_MAX, AddressType, IoptPages
from ioasid.kernel.private import IommufdCtx, Machine

IOMMUFD_ACCESS_RW_READ = 0
IOMMUFD_ACCESS_RW_WRITE = 1 << 0
IOMMUFD_ACCESS_RW_KTHREAD = 1 << 1
"""The caller is a kthread: copy with ``kthread_use_mm`` + ``copy_*_user``."""
IOMMUFD_ACCESS_RW_SLOW_PATH = 1 << 2
"""``__IOMMUFD_ACCESS_RW_SLOW_PATH`` (CONFIG_IOMMUFD_TEST): act as if ``current->mm`` differed."""


@dataclass(frozen=True)
class AccessOps:
    """``struct iommufd_access_ops``: ``needs_pin_pages`` and the ``unmap`` callback."""

    needs_pin_pages: bool
    unmap: Callable[[int, int], None] | None


class Access(IommufdObject):
    """``struct iommufd_access``.

    ``ioas`` is where new pins and copies go; ``ioas_unpin`` where unpins go (they differ
    only while the access changes IOAS). An internal access (``ictx is None``) has no ops
    and locks the areas it pins against unmap (``num_locks``) instead of being notified.
    """

    TYPE = ObjType.ACCESS

    def __init__(self, ictx: IommufdCtx | None, ops: AccessOps | None, kernel: Machine) -> None:
        super().__init__()
        self.ictx = ictx
        self.ops = ops
        self.kernel = kernel
        self.ioas: Ioas | None = None
        self.ioas_unpin: Ioas | None = None
        self.iopt_access_list_id = 0
        self.iova_alignment = PAGE_SIZE if ops is None or ops.needs_pin_pages else 1

    @property
    def internal(self) -> bool:
        """``iommufd_access_is_internal``."""
        return self.ictx is None

    # the io_pagetable's view ---------------------------------------------------------------

    def notify_unmap(self, iova: int, length: int) -> None:
        """One step of ``iommufd_access_notify_unmap``: internal accesses are skipped."""
        if self.internal or self.ops is None or self.ops.unmap is None or not self.users:
            return
        self.ops.unmap(iova, length)

    # object lifetime -------------------------------------------------------------------------

    def destroy(self) -> None:
        """``iommufd_access_destroy_object``: detach (the driver's ``unmap`` runs over all of
        IOVA first), then drop the context reference."""
        if self.ioas is not None:
            self.change_ioas(None)
        if self.ictx is not None:
            self.ictx.release()

    def change_ioas(self, new_ioas: Ioas | None) -> None:
        """``iommufd_access_change_ioas``: racing detach → EBUSY; same IOAS → nothing;
        joining ``new_ioas``'s access list can fail (EBUSY, EADDRINUSE) and changes nothing;
        then the driver unpins everything (``unmap(0, ULONG_MAX)``) and the old IOAS is left."""
        cur = self.ioas
        if cur is not self.ioas_unpin:
            fail(errno.EBUSY, "the access is being detached concurrently")
        if cur is new_ioas:
            return
        self.ioas = None
        if new_ioas is not None:
            try:
                list_id = new_ioas.iopt.add_access(self)
            except OSError:
                self.ioas = cur
                raise
            new_ioas.users += 1
        else:
            list_id = 0
        if cur is not None:
            if not self.internal and self.ops is not None and self.ops.unmap is not None:
                self.ops.unmap(0, ULONG_MAX)
            cur.iopt.remove_access(self, self.iopt_access_list_id)
            cur.users -= 1
        self.iopt_access_list_id = list_id
        self.ioas = new_ioas
        self.ioas_unpin = new_ioas

    def _change_ioas_id(self, ioas_id: int) -> None:
        assert self.ictx is not None
        ioas = self.ictx.objects.get(ioas_id, Ioas, "IOAS")
        self.change_ioas(ioas)

    def attach(self, ioas_id: int) -> None:
        """``iommufd_access_attach``: already attached → EINVAL; no IOAS ``ioas_id`` →
        ENOENT; then :meth:`change_ioas`."""
        if self.ioas is not None:
            fail(errno.EINVAL, f"access {self.id} is already attached to IOAS {self.ioas.id}")
        self._change_ioas_id(ioas_id)

    def attach_internal(self, ioas: Ioas) -> None:
        """``iommufd_access_attach_internal``."""
        if self.ioas is not None:
            fail(errno.EINVAL, f"access {self.id} is already attached to IOAS {self.ioas.id}")
        self.change_ioas(ioas)

    def replace(self, ioas_id: int) -> None:
        """``iommufd_access_replace``: not attached → ENOENT; no IOAS ``ioas_id`` → ENOENT;
        then :meth:`change_ioas` (same IOAS: nothing)."""
        if self.ioas is None:
            fail(errno.ENOENT, f"access {self.id} is not attached to an IOAS")
        self._change_ioas_id(ioas_id)

    def detach(self) -> None:
        """``iommufd_access_detach``."""
        if self.ioas is not None:
            self.change_ioas(None)

    # pin / unpin -------------------------------------------------------------------------------

    def pin_pages(self, iova: int, length: int, flags: int) -> list[int]:
        """``iommufd_access_pin_pages``: the page frame numbers of every page under
        ``[iova, iova+length)``, pinned until :meth:`unpin_pages` of the same range.

        Order: ops without ``needs_pin_pages`` or without ``unmap`` → EINVAL; length 0 →
        EINVAL; ``iova + length - 1`` overflows → EOVERFLOW; not attached → ENOENT; then per
        contiguous area from ``iova``: the area being unmapped (``prevent_access``) or the
        range not page aligned inside it → EINVAL; WRITE on an area without IOMMU_WRITE (or
        READ without IOMMU_READ) → EPERM; WRITE on read-only pages → EPERM; pinning
        (EFAULT, EINVAL for files, ENOMEM over RLIMIT_MEMLOCK); finally a hole before
        ``iova + length`` → ENOENT. A failure undoes the areas already done.
        """
        if self.iova_alignment != PAGE_SIZE or (
            not self.internal and (self.ops is None or self.ops.unmap is None)
        ):
            fail(errno.EINVAL, "the access's driver ops do not support pin_pages")
        if not length:
            fail(errno.EINVAL, "pin_pages: length is 0")
        last_iova = iova + length - 1
        if last_iova > ULONG_MAX:
            fail(errno.EOVERFLOW, f"pin_pages: iova {iova:#x} + length {length:#x} overflows")
        if self.ioas is None:
            fail(errno.ENOENT, f"access {self.id} is not attached to an IOAS")
        iopt = self.ioas.iopt
        done: list[tuple[Area, int, int]] = []
        out: list[int] = []
        covered = False
        try:
            for area, cur in iopt.contig_areas(iova, last_iova):
                last = min(last_iova, area.last)
                index = area.start_byte_at(cur) // PAGE_SIZE
                last_index = area.start_byte_at(last) // PAGE_SIZE
                covered = area.last >= last_iova
                if area.prevent_access:
                    fail(
                        errno.EINVAL,
                        f"area [{area.iova:#x}, {area.last:#x}] is being unmapped",
                    )
                if not _contig_is_aligned(area, cur, covered):
                    fail(
                        errno.EINVAL,
                        f"[{cur:#x}, {last:#x}] of area [{area.iova:#x}, {area.last:#x}] "
                        "does not start and end on page boundaries of the memory",
                    )
                _check_area_prot(area, flags)
                pfns = area_add_access(self.kernel, area, index, last_index, flags, self.internal)
                done.append((area, index, last_index))
                out.extend(pfns)
            if not covered:
                fail(
                    errno.ENOENT,
                    f"pin_pages: [{iova:#x}, {last_iova:#x}] is not fully covered by "
                    "contiguous mapped areas",
                )
        except OSError:
            for area, index, last_index in done:
                area_remove_access(area, index, last_index, self.internal)
            raise
        return out

    def unpin_pages(self, iova: int, length: int) -> None:
        """``iommufd_access_unpin_pages``: undo a :meth:`pin_pages` of exactly this range,
        in the IOAS it was pinned in (``ioas_unpin``)."""
        if not length or iova + length - 1 > ULONG_MAX:
            raise AssertionError(f"unpin_pages: bad range {iova:#x} +{length:#x}")
        if self.ioas_unpin is None:
            raise AssertionError(f"unpin_pages: access {self.id} is not attached")
        last_iova = iova + length - 1
        covered = False
        for area, cur in self.ioas_unpin.iopt.contig_areas(iova, last_iova):
            last = min(last_iova, area.last)
            area_remove_access(
                area,
                area.start_byte_at(cur) // PAGE_SIZE,
                area.start_byte_at(last) // PAGE_SIZE,
                self.internal,
            )
            covered = area.last >= last_iova
        assert covered, f"unpin_pages: [{iova:#x}, {last_iova:#x}] was not pinned"

    # copy ----------------------------------------------------------------------------------

    def rw(self, iova: int, data: bytearray, flags: int) -> None:
        """``iommufd_access_rw``: copy ``data`` to (``IOMMUFD_ACCESS_RW_WRITE``) or from the
        memory under ``[iova, iova+len(data))``.

        Order: length 0 → EINVAL; overflow → EOVERFLOW; not attached → ENOENT; then per
        contiguous area: being unmapped → EINVAL; area permission → EPERM; the pages'
        copy (:func:`pages_rw_access`: EPERM, EFAULT); finally a hole → ENOENT. Bytes
        copied before a failure stay copied.
        """
        length = len(data)
        if not length:
            fail(errno.EINVAL, "access_rw: length is 0")
        last_iova = iova + length - 1
        if last_iova > ULONG_MAX:
            fail(errno.EOVERFLOW, f"access_rw: iova {iova:#x} + length {length:#x} overflows")
        if self.ioas is None:
            fail(errno.ENOENT, f"access {self.id} is not attached to an IOAS")
        view = memoryview(data)
        pos = 0
        covered = False
        for area, cur in self.ioas.iopt.contig_areas(iova, last_iova):
            last = min(last_iova, area.last)
            nbytes = last - cur + 1
            if area.prevent_access:
                fail(errno.EINVAL, f"area [{area.iova:#x}, {area.last:#x}] is being unmapped")
            _check_area_prot(area, flags)
            assert area.pages is not None
            pages_rw_access(
                self.kernel, area.pages, area.start_byte_at(cur), view[pos : pos + nbytes], flags
            )
            pos += nbytes
            covered = area.last >= last_iova
        if not covered:
            fail(
                errno.ENOENT,
                f"access_rw: [{iova:#x}, {last_iova:#x}] is not fully covered by contiguous "
                "mapped areas",
            )


def access_create(ictx: IommufdCtx, ops: AccessOps) -> Access:
    """``iommufd_access_create``: a finalized ACCESS object the driver holds a reference
    on, aligned to PAGE_SIZE when its ops pin pages; it keeps the context alive."""
    access = ictx.objects.alloc(Access(ictx, ops, ictx.kernel))
    access.users += 1
    ictx.get_file()
    ictx.objects.finalize(access)
    return access


def access_create_internal(ictx: IommufdCtx) -> Access:
    """``iommufd_access_create_internal``: no ops, no context reference, PAGE_SIZE aligned."""
    access = ictx.objects.alloc(Access(None, None, ictx.kernel))
    access.users += 1
    ictx.objects.finalize(access)
    return access


def access_destroy(ictx: IommufdCtx, access: Access) -> None:
    """``iommufd_access_destroy`` (``iommufd_object_destroy_user``): drop the driver's
    reference and remove the object from ``ictx``; its destroy op detaches it."""
    access.users -= 1
    ictx.objects.remove(access.id)


# pages.c -----------------------------------------------------------------------------------


def _contig_is_aligned(area: Area, cur: int, done: bool) -> bool:
    """``iopt_area_contig_is_aligned``: starts on a page; an area that does not end the
    range must end on the last byte of a page."""
    if area.start_byte_at(cur) % PAGE_SIZE:
        return False
    return done or area.start_byte_at(area.last) % PAGE_SIZE == PAGE_SIZE - 1


def _check_area_prot(area: Area, flags: int) -> None:
    """``check_area_prot``: EPERM unless the area's IOMMU protection allows the access."""
    if flags & IOMMUFD_ACCESS_RW_WRITE:
        if not area.iommu_prot & IOMMU_WRITE:
            fail(errno.EPERM, f"area [{area.iova:#x}, {area.last:#x}] is not writeable")
    elif not area.iommu_prot & IOMMU_READ:
        fail(errno.EPERM, f"area [{area.iova:#x}, {area.last:#x}] is not readable")


def area_add_access(
    kernel: Machine, area: Area, start_index: int, last_index: int, flags: int, lock_area: bool
) -> list[int]:
    """``iopt_area_add_access``: WRITE on read-only pages → EPERM; a dma-buf → EINVAL; an
    access of exactly this page range already there shares its pins; otherwise the pages
    are pinned (and charged) — EFAULT/EINVAL/ENOMEM leave nothing behind. Returns the pfns."""
    pages = area.pages
    assert pages is not None
    if flags & IOMMUFD_ACCESS_RW_WRITE and not pages.writable:
        fail(errno.EPERM, "WRITE access to pages that were mapped read-only")
    if pages.type == AddressType.DMABUF:
        fail(errno.EINVAL, "a dma-buf area cannot be pinned by an access")
    key = (start_index, last_index)
    users = pages.accesses.get(key)
    if users is None:
        inject(kernel.processes.current, errno.ENOMEM, "iopt_area_add_access")
        pages.pin(start_index, last_index, fill_xarray=True)
        users = 0
    pages.accesses[key] = users + 1
    area.num_accesses += 1
    if lock_area:
        area.num_locks += 1
    return _pfns(kernel, pages, start_index, last_index)


def area_remove_access(area: Area, start_index: int, last_index: int, unlock_area: bool) -> None:
    """``iopt_area_remove_access``: the last user of an access range unpins its pages."""
    pages = area.pages
    assert pages is not None
    key = (start_index, last_index)
    users = pages.accesses.get(key)
    assert users, f"no access of pages [{start_index}, {last_index}]"
    assert area.num_accesses > 0
    if unlock_area:
        assert area.num_locks > 0
        area.num_locks -= 1
    area.num_accesses -= 1
    if users > 1:
        pages.accesses[key] = users - 1
        return
    del pages.accesses[key]
    pages.unpin(start_index, last_index)


def _pfns(kernel: Machine, pages: IoptPages, first: int, last: int) -> list[int]:
    out: list[int] = []
    for pa, nbytes in pages.phys_runs(
        kernel.phys, first * PAGE_SIZE, (last - first + 1) * PAGE_SIZE
    ):
        out.extend(range(pa // PAGE_SIZE, (pa + nbytes) // PAGE_SIZE))
    return out


def pages_rw_access(
    kernel: Machine, pages: IoptPages, start_byte: int, data: memoryview, flags: int
) -> None:
    """``iopt_pages_rw_access``: WRITE to read-only pages → EPERM; a dma-buf → EINVAL; file
    pages → the slow path; user pages from another mm (or SLOW_PATH) → one page: read
    through the mapper's live mm (``pin_user_pages_remote``, EFAULT), else the slow path;
    otherwise ``copy_{to,from}_user`` on the mapper's mm (EFAULT); a KTHREAD caller whose
    mapper's mm is gone takes the slow path."""
    length = len(data)
    start_index = start_byte // PAGE_SIZE
    last_index = (start_byte + length - 1) // PAGE_SIZE
    current = kernel.processes.current
    change_mm = current.mm is not pages.source_mm
    if flags & IOMMUFD_ACCESS_RW_SLOW_PATH:
        change_mm = True
    if flags & IOMMUFD_ACCESS_RW_WRITE and not pages.writable:
        fail(errno.EPERM, "access_rw: WRITE to pages that were mapped read-only")
    if pages.type == AddressType.DMABUF:
        fail(errno.EINVAL, "access_rw: a dma-buf area cannot be copied through")
    if pages.type != AddressType.USER:
        _rw_slow(kernel, pages, start_byte, data, flags)
        return
    if not flags & IOMMUFD_ACCESS_RW_KTHREAD and change_mm:
        if start_index == last_index:
            _rw_page(kernel, pages, start_byte, data, flags)
        else:
            _rw_slow(kernel, pages, start_byte, data, flags)
        return
    if change_mm and not pages.source_mm.alive:
        _rw_slow(kernel, pages, start_byte, data, flags)
        return
    _copy_user(pages, pages.uptr + start_byte, data, flags)


def _copy_user(pages: IoptPages, va: int, data: memoryview, flags: int) -> None:
    aspace = pages.source_mm.aspace
    try:
        if flags & IOMMUFD_ACCESS_RW_WRITE:
            aspace.write(va, data)
        else:
            data[:] = aspace.read(va, len(data))
    except OSError as e:
        fail(errno.EFAULT, f"access_rw: user memory [{va:#x}, +{len(data):#x}): {e.strerror}")


def _rw_page(
    kernel: Machine, pages: IoptPages, start_byte: int, data: memoryview, flags: int
) -> None:
    """``iopt_pages_rw_page``: one page through ``pin_user_pages_remote`` of the mapper's
    mm (``FOLL_WRITE`` for a write: EFAULT where that pin fails); a dead mm takes the
    slow path. The address space's own copy does that very pin (``process_vm_readv`` /
    ``process_vm_writev`` pin the remote page with ``FOLL_WRITE`` iff writing)."""
    if not pages.source_mm.alive:
        _rw_slow(kernel, pages, start_byte, data, flags)
        return
    _copy_user(pages, pages.uptr + start_byte, data, flags)


def _rw_slow(
    kernel: Machine, pages: IoptPages, start_byte: int, data: memoryview, flags: int
) -> None:
    """``iopt_pages_rw_slow``: the ``pfn_reader`` view, as a domain would see it. Pages
    already pinned are read from their frames; the others are pinned for the copy only
    (EFAULT from a gone or unmapped mm, EINVAL for an unusable file) and copied from the
    source. The temporary pins are never charged."""
    first = start_byte // PAGE_SIZE
    last = (start_byte + len(data) - 1) // PAGE_SIZE
    pos = 0
    for a, b, count in pages.pins.spans(first, last):
        lo = max(a * PAGE_SIZE, start_byte)
        hi = min((b + 1) * PAGE_SIZE, start_byte + len(data))
        chunk = data[pos : pos + hi - lo]
        if count:
            _copy_frames(kernel, pages, lo, chunk, flags)
        elif pages.type == AddressType.USER:
            _check_user_pinnable(pages, a, b)
            _copy_user(pages, pages.uptr + lo, chunk, flags)
        else:
            pages._check_source(a, b)
            _copy_file(pages, pages.start + lo, chunk, flags)
        pos += hi - lo


MADV_POPULATE_WRITE = 23
"""``madvise``: fault a range in writable exactly as ``FOLL_WRITE`` GUP does (Linux 5.14)."""

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


@functools.cache
def _populate_write_works() -> bool:
    """Whether this host's kernel knows ``MADV_POPULATE_WRITE`` (probed on a private page)."""
    with mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as m:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        ok = bool(_libc.madvise(addr, PAGE_SIZE, MADV_POPULATE_WRITE) == 0)
    return ok


def _check_user_pinnable(pages: IoptPages, first: int, last: int) -> None:
    """What ``pfn_reader_user_pin`` refuses for user pages ``[first, last]``: a gone mm
    (EFAULT), or a range ``pin_user_pages(FOLL_LONGTERM | (writable ? FOLL_WRITE : 0))``
    fails on (EFAULT). Pages mapped read-only need no check here: the copy that follows
    pins them the same way (``process_vm_readv``). Writable pages of this process are
    faulted in writable with ``MADV_POPULATE_WRITE``, the very fault ``FOLL_WRITE`` takes,
    instead of walking ``/proc/self/maps`` for each of ``check_access_rw``'s thousands of
    small copies."""
    if not pages.source_mm.alive:
        fail(errno.EFAULT, "the mm that mapped these pages has exited")
    if not pages.writable:
        return
    aspace = pages.source_mm.aspace
    va, length = pages.uptr + first * PAGE_SIZE, (last - first + 1) * PAGE_SIZE
    if (
        isinstance(aspace, SelfAddressSpace)
        and aspace.pid == os.getpid()
        and _populate_write_works()
    ):
        if _libc.madvise(va, length, MADV_POPULATE_WRITE) != 0:
            fail(
                errno.EFAULT,
                f"user pages [{va:#x}, +{length:#x}) cannot be pinned writable "
                f"(errno {ctypes.get_errno()})",
            )
        return
    aspace.check_pinnable(va, length, True)


def _copy_frames(
    kernel: Machine, pages: IoptPages, start_byte: int, data: memoryview, flags: int
) -> None:
    pos = 0
    for pa, nbytes in pages.phys_runs(kernel.phys, start_byte, len(data)):
        if flags & IOMMUFD_ACCESS_RW_WRITE:
            kernel.phys.write(pa, data[pos : pos + nbytes])
        else:
            data[pos : pos + nbytes] = kernel.phys.read(pa, nbytes)
        pos += nbytes


def _copy_file(pages: IoptPages, offset: int, data: memoryview, flags: int) -> None:
    if flags & IOMMUFD_ACCESS_RW_WRITE:
        os.pwrite(pages.file_fd, data, offset)
    else:
        got = os.pread(pages.file_fd, len(data), offset)
        data[:] = got.ljust(len(data), b"\0")


__all__ = [
    "IOMMUFD_ACCESS_RW_KTHREAD",
    "IOMMUFD_ACCESS_RW_READ",
    "IOMMUFD_ACCESS_RW_SLOW_PATH",
    "IOMMUFD_ACCESS_RW_WRITE",
    "Access",
    "AccessOps",
    "access_create",
    "access_create_internal",
    "access_destroy",
]
