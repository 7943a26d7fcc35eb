"""``pages.c``: the memory behind areas, its pinning and its accounting.

An :class:`IoptPages` is what one ``IOMMU_IOAS_MAP`` or ``IOMMU_IOAS_MAP_FILE`` refers to;
``IOMMU_IOAS_COPY`` shares it between areas. Pages are pinned only when something needs
them — an area filled into a domain, or an access object — and each pinned page is counted
once per ``IoptPages`` however many users hold it, as ``pages->pinned_pfns`` does.

Accounting modes (``IOPT_PAGES_ACCOUNT_*``): NONE when the mapper had ``CAP_IPC_LOCK``;
USER (``user->locked_vm`` against ``RLIMIT_MEMLOCK``, io_uring style, the ``/dev/iommu``
default); MM (``mm->locked_vm``, VFIO type1 compatible). Every mode also moves
``mm->pinned_vm``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from enum import IntEnum

from sortedcontainers import SortedList

from ioasid.hw.memory import PAGE_SIZE, PhysMap, SelfAddressSpace
from ioasid.kernel.errors import fail
from ioasid.kernel.fail_nth import inject, recovered
from ioasid.kernel.process import CAP_IPC_LOCK, MmStruct, Task, UserStruct
from ioasid.kernel.rangecount import RangeCount

SIZE_MAX = ULONG_MAX = (1 << 64) - 1

TMPFS_MAGIC = 0x01021994
HUGETLBFS_MAGIC = 0x958458F6


class AccountMode(IntEnum):
    NONE = 0
    USER = 1
    MM = 2


class AddressType(IntEnum):
    USER = 0
    FILE = 1
    DMABUF = 2


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]


_libc = ctypes.CDLL(None, use_errno=True)
_fstatfs = _libc.fstatfs
_fstatfs.argtypes = [ctypes.c_int, ctypes.POINTER(_Statfs)]


def fs_magic(fd: int) -> int:
    buf = _Statfs()
    if _fstatfs(fd, ctypes.byref(buf)) != 0:
        return 0
    return int(buf.f_type) & 0xFFFFFFFF


FILE_PAGE_PINS: dict[tuple[tuple[int, int], int], RangeCount] = {}
"""Long-term pins taken through ``IOMMU_IOAS_MAP_FILE`` on the pages of a file, by the
file's (device, inode) and file page: the page cache pages are the host's, seen by every
mapping of the file (MD_CHECK_REFS reads them through the caller's mapping)."""


class DmaBuf:
    """A dma-buf as iommufd imports it: ``size`` bytes of the exporter's memory (a memory
    file standing for its physical ranges), ``revoked`` by the exporter, and the imports
    (``iopt_pages`` attachments) it invalidates then."""

    def __init__(self, memfd: int, size: int) -> None:
        self.memfd = memfd
        self.size = size
        self.revoked = False
        self.importers: list[DmabufImport] = []

    def invalidate_mappings(self) -> None:
        """``dma_buf_invalidate_mappings`` → ``iopt_revoke_notify`` of every import: each is
        revoked for good, whatever ``revoked`` now says (7.3 notifies on un-revoke too)."""
        for imp in self.importers:
            if imp.revoked:
                continue
            for unmap in imp.unmap_callbacks:
                unmap()
            imp.revoked = True


class DmabufImport:
    """``pages->dmabuf``: the attachment of one ``iopt_pages`` (``revoked`` once the
    exporter invalidated it) and how to take its areas out of their domains."""

    def __init__(self, dmabuf: DmaBuf) -> None:
        self.dmabuf = dmabuf
        self.revoked = False
        self.unmap_callbacks: list[Callable[[], None]] = []


temp_memory_limit = 65536
"""``TEMP_MEMORY_LIMIT``: with the selftest driver, the global ``iommufd_test_memory_limit``
that ``IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT`` sets (for every context, as in the kernel)."""


def temp_kmalloc(task: Task, size: int) -> int:
    """``temp_kmalloc`` without a backup: ``iommufd_should_fail()`` (ENOMEM), then a
    ``__GFP_NOWARN`` try whose failure falls back to one ``PAGE_SIZE``. Returns the size."""
    inject(task, errno.ENOMEM, "temp_kmalloc")
    size = min(size, temp_memory_limit)
    if recovered(task, "temp_kmalloc kmalloc"):
        size = PAGE_SIZE
    return size


def pfn_reader_fault_points(task: Task, runs: list[tuple[int, int]], npages: int) -> None:
    """The fault points of ``pfn_reader_first/next`` pinning the user pages ``runs`` of a
    fill of ``npages``: the batch's and the page list's ``temp_kmalloc``, then one
    ``pfn_reader_user_pin`` (EFAULT) per chunk of pages the list holds."""
    temp_kmalloc(task, npages * 12)  # __batch_init: a pfn and a count per entry
    unum = max(1, temp_kmalloc(task, npages * 8) // 8)  # user->upages
    for a, b in runs:
        for _ in range(-(-(b - a + 1) // unum)):
            inject(task, errno.EFAULT, "pfn_reader_user_pin")


def _xa_nodes(first: int, last: int) -> int:
    """The xarray nodes storing indexes ``[first, last]`` into an empty xarray makes: the
    64-slot nodes of every level up to the one that covers ``last``."""
    nodes, shift = 0, 6
    while True:
        nodes += (last >> shift) - (first >> shift) + 1
        if not last >> shift:
            return nodes
        shift += 6


def pages_to_xarray_fault_points(task: Task, first: int, last: int) -> None:
    """``pages_to_xarray`` of ``[first, last]``: every new node's ``GFP_NOWAIT`` try (then
    ``GFP_KERNEL``: recovered) and, half way, ``iommufd_should_fail()`` (EINVAL)."""
    half = first + (last - first + 1) // 2
    for _ in range(_xa_nodes(first, half - 1) if half > first else 0):
        recovered(task, "xas_store")
    inject(task, errno.EINVAL, "pages_to_xarray")
    for _ in range(_xa_nodes(first, last) - (_xa_nodes(first, half - 1) if half > first else 0)):
        recovered(task, "xas_store")


class IoptPages:
    """``struct iopt_pages``. Slotted, and what most mappings never use (pin counts, frames,
    accesses) made on first use: a VMM maps millions of these."""

    __slots__ = (
        "_accesses",
        "_pfn_runs",
        "_pins",
        "account_mode",
        "dmabuf",
        "file_fd",
        "kref",
        "last_npinned",
        "npages",
        "npinned",
        "pin_mm",
        "source_mm",
        "source_task",
        "source_user",
        "start",
        "type",
        "uptr",
        "writable",
    )

    def __init__(self, task: Task, start_byte: int, length: int, writable: bool) -> None:
        # iopt_alloc_pages(): protects DIV_ROUND_UP and size_t from overflow
        if length > SIZE_MAX - PAGE_SIZE or length == 0:
            fail(
                errno.EINVAL,
                f"length {length:#x} must be non-zero and at most SIZE_MAX - PAGE_SIZE",
            )
        inject(task, errno.ENOMEM, "iopt_alloc_pages")
        self.type = AddressType.USER
        self.uptr = 0
        self.file_fd = -1
        self.start = 0
        self.npages = (length + start_byte + PAGE_SIZE - 1) // PAGE_SIZE
        self.writable = writable
        self.account_mode = AccountMode.NONE if task.capable(CAP_IPC_LOCK) else AccountMode.USER
        self.source_task = task
        self.source_mm = task.mm
        self.source_user = task.user
        self.pin_mm = task.mm
        self._pins: RangeCount | None = None
        self._pfn_runs: tuple[SortedList, dict[int, tuple[int, int]]] | None = None
        self.npinned = 0
        self.last_npinned = 0
        self.kref = 1
        self._accesses: dict[tuple[int, int], int] | None = None
        self.dmabuf: DmabufImport | None = None

    @property
    def accesses(self) -> dict[tuple[int, int], int]:
        """``access_itree``: ``(start_index, last_index)`` of each in-kernel access → users."""
        if self._accesses is None:
            self._accesses = {}
        return self._accesses

    @property
    def pins(self) -> RangeCount:
        """Holders per page index (made on first use: most mappings are never pinned)."""
        if self._pins is None:
            self._pins = RangeCount()
        return self._pins

    def _pfns(self) -> tuple[SortedList, dict[int, tuple[int, int]]]:
        """Page index → (last index, first pfn): the frames behind pinned pages, with the
        indexes in a sorted list (both made on first use, both cheap to make)."""
        if self._pfn_runs is None:
            self._pfn_runs = (SortedList(), {})
        return self._pfn_runs

    @classmethod
    def user(cls, task: Task, uptr: int, length: int, writable: bool) -> IoptPages:
        """``iopt_alloc_user_pages``."""
        if uptr + length > ULONG_MAX:
            fail(errno.EOVERFLOW, f"user_va {uptr:#x} + length {length:#x} overflows")
        down = uptr - uptr % PAGE_SIZE
        pages = cls(task, uptr - down, length, writable)
        pages.uptr = down
        pages.type = AddressType.USER
        return pages

    @classmethod
    def file(cls, task: Task, fd: int, start: int, length: int, writable: bool) -> IoptPages:
        """``iopt_alloc_file_pages``: holds its own reference to the file."""
        start_byte = start % PAGE_SIZE
        pages = cls(task, start_byte, length, writable)
        pages.file_fd = os.dup(fd)
        pages.start = start - start_byte
        pages.type = AddressType.FILE
        return pages

    @classmethod
    def dma_buf(
        cls, task: Task, dmabuf: DmaBuf, start: int, length: int, writable: bool
    ) -> IoptPages:
        """``iopt_alloc_dmabuf_pages``: past the end of the dma-buf → EINVAL; then the
        exporter's map (``iopt_map_dmabuf``): a revoked dma-buf → ENODEV. The pages are the
        exporter's memory, read from its physical ranges."""
        if dmabuf.size <= start + length - 1:
            fail(
                errno.EINVAL,
                f"dma-buf range [{start:#x}, +{length:#x}) is past its size {dmabuf.size:#x}",
            )
        if dmabuf.revoked:
            fail(errno.ENODEV, "the dma-buf is revoked: its exporter maps nothing")
        pages = cls.file(task, dmabuf.memfd, start, length, writable)
        pages.type = AddressType.DMABUF
        pages.dmabuf = DmabufImport(dmabuf)
        dmabuf.importers.append(pages.dmabuf)
        return pages

    @property
    def revoked(self) -> bool:
        """``iopt_dmabuf_revoked``: the exporter revoked the dma-buf after it was mapped
        (for good: un-revoking does not bring these pages back)."""
        return self.dmabuf is not None and self.dmabuf.revoked

    def get(self) -> IoptPages:
        self.kref += 1
        return self

    def put(self) -> None:
        self.kref -= 1
        if self.kref == 0:
            assert self.npinned == 0, "pages freed while pinned"
            if self.file_fd >= 0:
                os.close(self.file_fd)
                self.file_fd = -1

    def address_of(self, start_byte: int) -> int:
        """The user VA (or file offset) at ``start_byte``: the auto-IOVA alignment hint."""
        return start_byte + (self.uptr if self.type == AddressType.USER else self.start)

    # pinning -----------------------------------------------------------------------------

    def _check_source(self, first: int, last: int) -> None:
        """What ``pin_user_pages_remote``/``memfd_pin_folios`` would refuse."""
        if self.type == AddressType.USER:
            if not self.source_mm.alive:
                fail(errno.EFAULT, "the mm that mapped these pages has exited")
            self.source_mm.aspace.check_pinnable(
                self.uptr + first * PAGE_SIZE, (last - first + 1) * PAGE_SIZE, self.writable
            )
            return
        magic = fs_magic(self.file_fd)
        if magic not in (TMPFS_MAGIC, HUGETLBFS_MAGIC):
            fail(errno.EINVAL, f"fd is not a memfd/shmem or hugetlbfs file (fs magic {magic:#x})")
        size = os.fstat(self.file_fd).st_size
        file_pages = (size + PAGE_SIZE - 1) // PAGE_SIZE
        if self.start // PAGE_SIZE + last >= file_pages:
            end = self.start + (last + 1) * PAGE_SIZE
            fail(errno.EINVAL, f"file range up to {end:#x} is beyond the file size {size:#x}")

    def pin(self, first: int, last: int, fill_xarray: bool = False) -> None:
        """Take one pin on page indexes ``[first, last]``; charge newly pinned pages.

        All or nothing: on failure no pin is taken and nothing is charged. Only pages no
        one holds yet are read from the source (the pfn_reader takes held ones from the
        access xarray or a domain), so only those can fail. ``fill_xarray``: for an access
        (``iopt_pages_fill_xarray``), whose pages also go into ``pages->pinned_pfns``.
        """
        runs = self.pins.add(first, last, +1)
        newly = sum(b - a + 1 for a, b in runs)
        if not newly and fill_xarray:
            try:
                pages_to_xarray_fault_points(self.source_task, first, last)
            except OSError:
                self.pins.add(first, last, -1)
                raise
        if newly:
            self.npinned += newly
            try:
                if fill_xarray:
                    inject(self.source_task, errno.EFAULT, "pfn_reader_user_pin")
                else:
                    pfn_reader_fault_points(self.source_task, runs, last - first + 1)
                for a, b in runs:
                    self._check_source(a, b)
                if fill_xarray:
                    pages_to_xarray_fault_points(self.source_task, first, last)
                inject(self.source_task, errno.ENOMEM, "pfn_reader_user_update_pinned")
                self.update_pinned(newly, inc=True)
            except OSError:
                self.pins.add(first, last, -1)
                self.npinned -= newly
                raise
            self._pin_pfns(runs, +1)

    def unpin(self, first: int, last: int) -> None:
        runs = self.pins.add(first, last, -1)
        gone = sum(b - a + 1 for a, b in runs)
        if gone:
            self.npinned -= gone
            self.update_pinned(gone, inc=False)
            self._pin_pfns(runs, -1)

    def phys_runs(self, phys: PhysMap, start_byte: int, length: int) -> list[tuple[int, int]]:
        """``(pa, nbytes)`` physically contiguous runs behind ``[start_byte, +length)``."""
        first, last = start_byte // PAGE_SIZE, (start_byte + length - 1) // PAGE_SIZE
        runs = self._frames(phys, first, last)
        out: list[tuple[int, int]] = []
        pos, end = start_byte, start_byte + length
        for index, pfn, n in runs:
            run_end = min((index + n) * PAGE_SIZE, end)
            pa = pfn * PAGE_SIZE + (pos - index * PAGE_SIZE)
            if out and out[-1][0] + out[-1][1] == pa:
                out[-1] = (out[-1][0], out[-1][1] + run_end - pos)
            else:
                out.append((pa, run_end - pos))
            pos = run_end
        return out

    def _frames(self, phys: PhysMap, first: int, last: int) -> list[tuple[int, int, int]]:
        """``(index, pfn, n)`` for pages ``[first, last]``, resolved once and remembered."""
        out: list[tuple[int, int, int]] = []
        cur = first
        keys, runs = self._pfns()
        idx = max(keys.bisect_right(first) - 1, 0)
        for start in list(keys.islice(idx, keys.bisect_right(last))):
            rlast, pfn = runs[start]
            if rlast < cur:
                continue
            if start > cur:
                break
            take = min(rlast, last)
            out.append((cur, pfn + cur - start, take - cur + 1))
            cur = take + 1
            if cur > last:
                return out
        if cur <= last:
            if self.type == AddressType.USER:
                aspace = self.pin_mm.aspace
                assert isinstance(aspace, SelfAddressSpace)
                base = self.uptr // PAGE_SIZE
                fresh = [
                    (vp - base, pfn, n)
                    for vp, pfn, n in phys.pin_user(
                        aspace, self.uptr + cur * PAGE_SIZE, (last - cur + 1) * PAGE_SIZE
                    )
                ]
            else:
                base = self.start // PAGE_SIZE
                fresh = [
                    (fp - base, pfn, n)
                    for fp, pfn, n in phys.pin_file(
                        self.file_fd, self.start + cur * PAGE_SIZE, (last - cur + 1) * PAGE_SIZE
                    )
                ]
            for index, pfn, n in fresh:
                if index not in runs:
                    keys.add(index)
                runs[index] = (index + n - 1, pfn)
            out.extend(fresh)
        return out

    def _pin_pfns(self, runs: list[tuple[int, int]], delta: int) -> None:
        """The physical pins (``page_ref_count``) on the mapper's pages, as MD_CHECK_REFS sees."""
        if self.type != AddressType.USER:
            st = os.fstat(self.file_fd)
            key = ((os.major(st.st_dev), os.minor(st.st_dev)), st.st_ino)
            pins = FILE_PAGE_PINS.setdefault(key, RangeCount())
            fbase = self.start // PAGE_SIZE
            for a, b in runs:
                pins.add(fbase + a, fbase + b, delta)
            return
        base = self.uptr // PAGE_SIZE
        for a, b in runs:
            self.pin_mm.page_pins.add(base + a, base + b, delta)

    # accounting --------------------------------------------------------------------------

    def update_pinned(self, npages: int, inc: bool) -> None:
        """``iopt_pages_update_pinned``."""
        charge(
            self.account_mode,
            self.source_task,
            npages,
            inc,
            mm=self.source_mm,
            user=self.source_user,
        )
        self.last_npinned = self.npinned


def charge(
    mode: AccountMode,
    task: Task,
    npages: int,
    inc: bool,
    *,
    mm: MmStruct | None = None,
    user: UserStruct | None = None,
) -> None:
    """Charge (or uncharge) ``npages`` pinned pages in ``mode`` to ``task``'s user or mm.

    USER: ``incr_user_locked_vm`` (RLIMIT_MEMLOCK of the task, no CAP_IPC_LOCK bypass);
    MM: ``__account_locked_vm`` (bypassed by CAP_IPC_LOCK). Both move ``mm->pinned_vm``.
    """
    mm = task.mm if mm is None else mm
    user = task.user if user is None else user
    if mode == AccountMode.USER:
        if inc:
            limit = task.memlock_limit() // PAGE_SIZE
            if user.locked_vm + npages > limit:
                fail(
                    errno.ENOMEM,
                    f"RLIMIT_MEMLOCK: {user.locked_vm} + {npages} pages pinned by uid "
                    f"{user.uid} would exceed the limit of {limit} pages",
                )
            user.locked_vm += npages
        else:
            user.locked_vm -= npages
    elif mode == AccountMode.MM:
        if inc:
            limit = task.memlock_limit() // PAGE_SIZE
            if mm.locked_vm + npages > limit and not task.capable(CAP_IPC_LOCK):
                fail(
                    errno.ENOMEM,
                    f"RLIMIT_MEMLOCK: locked_vm {mm.locked_vm} + {npages} pages would "
                    f"exceed the limit of {limit} pages",
                )
            mm.locked_vm += npages
        else:
            mm.locked_vm -= npages
    mm.pinned_vm += npages if inc else -npages
