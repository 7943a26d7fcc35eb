"""``ioas.c``: the IOAS object and the ioctls that act on it.

Each handler validates in the kernel's order (listed in its docstring), then acts, then
fills its outputs.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

from sortedcontainers import SortedDict

from ioasid import uapi
from ioasid.kernel.errors import KernelError, fail
from ioasid.kernel.fail_nth import inject
from ioasid.kernel.io_pagetable import (
    IOMMU_CACHE,
    IOMMU_READ,
    IOMMU_WRITE,
    IoPagetable,
    PagesSlice,
    syz_conv_iova,
)
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.pages import ULONG_MAX, AccountMode, AddressType, DmaBuf, IoptPages, charge
from ioasid.kernel.private import USER_CHUNK, Ucmd, check_reserved
from ioasid.kernel.process import CAP_SYS_RAWIO, CAP_SYS_RESOURCE, Task

U64_MAX = (1 << 64) - 1
MAP_FLAGS = (
    uapi.IOMMU_IOAS_MAP_FIXED_IOVA | uapi.IOMMU_IOAS_MAP_WRITEABLE | uapi.IOMMU_IOAS_MAP_READABLE
)
RW_FLAGS = uapi.IOMMU_IOAS_MAP_WRITEABLE | uapi.IOMMU_IOAS_MAP_READABLE


class Ioas(IommufdObject):
    """``struct iommufd_ioas``: an I/O address space and the HWPTs built on it."""

    TYPE = ObjType.IOAS

    def __init__(self) -> None:
        super().__init__()
        self.iopt = IoPagetable()
        self.hwpt_list: list[object] = []

    def destroy(self) -> None:
        self.iopt.unmap_all()
        self.iopt.remove_reserved_iova(None)


def conv_iommu_prot(flags: int) -> int:
    prot = IOMMU_CACHE
    if flags & uapi.IOMMU_IOAS_MAP_WRITEABLE:
        prot |= IOMMU_WRITE
    if flags & uapi.IOMMU_IOAS_MAP_READABLE:
        prot |= IOMMU_READ
    return prot


def _check_map_flags(flags: int, name: str) -> None:
    if flags & ~MAP_FLAGS:
        fail(errno.EOPNOTSUPP, f"{name}: unknown flags {flags & ~MAP_FLAGS:#x}")


def _check_rw(flags: int, name: str) -> None:
    if not flags & RW_FLAGS:
        fail(errno.EINVAL, f"{name}: flags must include READABLE or WRITEABLE")


def get_ioas(ucmd: Ucmd, ioas_id: int) -> Ioas:
    return ucmd.ictx.objects.get(ioas_id, Ioas, "IOAS")


def ioas_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_IOAS_ALLOC``: flags → EOPNOTSUPP; then a new IOAS, its id written back.

    If writing the answer faults, the IOAS is destroyed again (EFAULT).
    """
    cmd = ucmd.cmd
    if cmd.flags:
        fail(errno.EOPNOTSUPP, f"IOMMU_IOAS_ALLOC: flags must be 0, not {cmd.flags:#x}")
    table = ucmd.ictx.objects
    ioas = table.alloc(Ioas())
    ioas.iopt.should_fail = table.should_fail
    cmd.out_ioas_id = ioas.id
    try:
        ucmd.respond()
    except OSError:
        table.abort(ioas)
        raise
    table.finalize(ioas)
    return 0


def ioas_iova_ranges(ucmd: Ucmd) -> int:
    """``IOMMU_IOAS_IOVA_RANGES``: __reserved → EOPNOTSUPP; IOAS → ENOENT; each range that
    fits is copied (EFAULT); the struct is written back; then EMSGSIZE if some did not fit."""
    cmd = ucmd.cmd
    check_reserved(cmd.reserved)
    ioas = get_ioas(ucmd, cmd.ioas_id)
    max_iovas = cmd.num_iovas
    cmd.num_iovas = 0
    cmd.out_iova_alignment = ioas.iopt.iova_alignment
    kernel = ucmd.ictx.kernel
    for first, last in ioas.iopt.usable_ranges():
        if cmd.num_iovas < max_iovas:
            elm = uapi.iommu_iova_range(start=first, last=last)
            kernel.copy_to_user(cmd.allowed_iovas + cmd.num_iovas * ctypes.sizeof(elm), bytes(elm))
        cmd.num_iovas += 1
    ucmd.respond()
    if cmd.num_iovas > max_iovas:
        fail(
            errno.EMSGSIZE,
            f"IOMMU_IOAS_IOVA_RANGES: {cmd.num_iovas} ranges do not fit in num_iovas={max_iovas}; "
            "num_iovas now holds the count needed",
        )
    return 0


def ioas_allow_iovas(ucmd: Ucmd) -> int:
    """``IOMMU_IOAS_ALLOW_IOVAS``: __reserved → EOPNOTSUPP; IOAS → ENOENT; per range: read
    (EFAULT), start >= last → EINVAL, overlap with an earlier one → EINVAL; then the swap:
    any range intersecting a reserved one → EADDRINUSE, old list kept."""
    cmd = ucmd.cmd
    check_reserved(cmd.reserved)
    ioas = get_ioas(ucmd, cmd.ioas_id)
    kernel = ucmd.ictx.kernel
    size = ctypes.sizeof(uapi.iommu_iova_range)
    allowed: SortedDict = SortedDict()
    per_copy = USER_CHUNK // size
    raw = b""
    for i in range(cmd.num_iovas):
        j = i % per_copy
        if j == 0:
            # the ranges a copy at a time; a fault inside one: range by range up to it
            n = min(per_copy, cmd.num_iovas - i)
            try:
                raw = kernel.copy_from_user(cmd.allowed_iovas + i * size, n * size)
            except OSError:
                raw = b""
        if raw:
            r = uapi.iommu_iova_range.from_buffer_copy(raw, j * size)
        else:
            r = uapi.iommu_iova_range.from_bytes(
                kernel.copy_from_user(cmd.allowed_iovas + i * size, size)
            )
        if r.start >= r.last:
            fail(
                errno.EINVAL,
                f"IOMMU_IOAS_ALLOW_IOVAS: range {i} has start {r.start:#x} >= last {r.last:#x}",
            )
        idx = allowed.bisect_right(r.last) - 1
        if idx >= 0 and allowed.peekitem(idx)[1] >= r.start:
            f, l = allowed.peekitem(idx)
            fail(
                errno.EINVAL,
                f"IOMMU_IOAS_ALLOW_IOVAS: range {i} [{r.start:#x}, {r.last:#x}] overlaps "
                f"[{f:#x}, {l:#x}]",
            )
        inject(kernel.processes.current, errno.ENOMEM, "iommufd_ioas_allow_iovas")
        allowed[r.start] = r.last
    ioas.iopt.set_allow_iova(allowed)
    return 0


def _map_common(
    ucmd: Ucmd,
    ioas: Ioas,
    pages: IoptPages,
    iova: int | None,
    length: int,
    start_byte: int,
    prot: int,
) -> int:
    """``iopt_map_common``: a context in MM mode turns USER accounting into MM."""
    if ucmd.ictx.account_mode == AccountMode.MM and pages.account_mode == AccountMode.USER:
        pages.account_mode = AccountMode.MM
    try:
        return ioas.iopt.map_pages([PagesSlice(pages, start_byte, length)], length, iova, prot)
    finally:
        pages.put()


def _map_and_respond(
    ucmd: Ucmd, ioas: Ioas, alloc: Callable[[Task, bool], tuple[IoptPages, int]]
) -> int:
    """The shared tail of MAP and MAP_FILE: make the pages (``alloc(task, writable)`` →
    pages and the start byte in them), place and fill the area, answer the IOVA."""
    cmd = ucmd.cmd
    fixed = cmd.flags & uapi.IOMMU_IOAS_MAP_FIXED_IOVA
    prot = conv_iommu_prot(cmd.flags)
    pages, start_byte = alloc(ucmd.ictx.kernel.processes.current, bool(prot & IOMMU_WRITE))
    cmd.iova = _map_common(
        ucmd, ioas, pages, cmd.iova if fixed else None, cmd.length, start_byte, prot
    )
    ucmd.respond()
    return 0


def ioas_map(ucmd: Ucmd) -> int:
    """``IOMMU_IOAS_MAP``: flags/__reserved → EOPNOTSUPP; iova or length ≥ ULONG_MAX →
    EOVERFLOW; no READABLE/WRITEABLE → EINVAL; IOAS → ENOENT; user_va + length overflow →
    EOVERFLOW; length 0 or > SIZE_MAX - PAGE_SIZE → EINVAL; length vs alignment → EINVAL;
    placement (auto: EOVERFLOW/EINVAL/ENOSPC; fixed: EINVAL/EOVERFLOW/EINVAL/EEXIST); page
    offset vs alignment → EINVAL; with a domain, pinning → EFAULT/ENOMEM. The answer is
    written after the area exists (a faulting write-back leaves it mapped)."""
    cmd = ucmd.cmd
    if cmd.flags & ~MAP_FLAGS or cmd.reserved:
        fail(
            errno.EOPNOTSUPP,
            f"IOMMU_IOAS_MAP: unknown flags {cmd.flags & ~MAP_FLAGS:#x} or non-zero __reserved "
            f"{cmd.reserved:#x}",
        )
    _check_overflow("IOMMU_IOAS_MAP", iova=cmd.iova, length=cmd.length)
    _check_rw(cmd.flags, "IOMMU_IOAS_MAP")
    ioas = get_ioas(ucmd, cmd.ioas_id)

    def alloc(task: Task, writable: bool) -> tuple[IoptPages, int]:
        pages = IoptPages.user(task, cmd.user_va, cmd.length, writable)
        return pages, cmd.user_va - pages.uptr

    return _map_and_respond(ucmd, ioas, alloc)


def ioas_map_file(ucmd: Ucmd) -> int:
    """``IOMMU_IOAS_MAP_FILE``: flags → EOPNOTSUPP; iova/length ≥ ULONG_MAX → EOVERFLOW; no
    R/W → EINVAL; IOAS → ENOENT; length 0 → EINVAL; start + length - 1 overflow → EOVERFLOW;
    fd → EBADF; then as MAP (auto-IOVA hint: the file offset). Any file maps; only pinning
    (a domain or an access) insists on memfd/shmem or hugetlbfs."""
    cmd = ucmd.cmd
    _check_map_flags(cmd.flags, "IOMMU_IOAS_MAP_FILE")
    _check_overflow("IOMMU_IOAS_MAP_FILE", iova=cmd.iova, length=cmd.length)
    _check_rw(cmd.flags, "IOMMU_IOAS_MAP_FILE")
    ioas = get_ioas(ucmd, cmd.ioas_id)
    if not cmd.length:
        fail(errno.EINVAL, "IOMMU_IOAS_MAP_FILE: length is 0")
    if cmd.start + cmd.length - 1 > ULONG_MAX:
        fail(errno.EOVERFLOW, f"IOMMU_IOAS_MAP_FILE: start {cmd.start:#x} + length overflows")
    # dma_buf_get(fd): a dma-buf maps the exporter's memory
    anon = ucmd.ictx.kernel.anon_inodes.fget(cmd.fd)
    dmabuf = getattr(anon.private_data, "dma_buf", None) if anon is not None else None
    file = -1
    if not isinstance(dmabuf, DmaBuf):
        file = ucmd.ictx.kernel.anon_inodes.fget_raw(cmd.fd)
        if file < 0:
            fail(errno.EBADF, f"IOMMU_IOAS_MAP_FILE: fd {cmd.fd} is not an open file")

    def alloc(task: Task, writable: bool) -> tuple[IoptPages, int]:
        if isinstance(dmabuf, DmaBuf):
            pages = IoptPages.dma_buf(task, dmabuf, cmd.start, cmd.length, writable)
        else:
            pages = IoptPages.file(task, file, cmd.start, cmd.length, writable)
        return pages, cmd.start - pages.start

    try:
        return _map_and_respond(ucmd, ioas, alloc)
    finally:
        if file >= 0:
            os.close(file)


def ioas_copy(ucmd: Ucmd) -> int:
    """``IOMMU_IOAS_COPY``: flags → EOPNOTSUPP; length/src_iova/dst_iova ≥ ULONG_MAX →
    EOVERFLOW; no R/W → EINVAL; source IOAS → ENOENT; length 0 → EINVAL; source range
    overflow → EOVERFLOW; not fully covered by contiguous areas → ENOENT; destination IOAS →
    ENOENT; then as MAP on the destination, WRITEABLE from read-only pages → EPERM."""
    cmd = ucmd.cmd
    _syz_conv_iova_id(ucmd, cmd)
    _check_map_flags(cmd.flags, "IOMMU_IOAS_COPY")
    _check_overflow(
        "IOMMU_IOAS_COPY", length=cmd.length, src_iova=cmd.src_iova, dst_iova=cmd.dst_iova
    )
    _check_rw(cmd.flags, "IOMMU_IOAS_COPY")
    src = get_ioas(ucmd, cmd.src_ioas_id)
    plist = src.iopt.get_pages(cmd.src_iova, cmd.length)
    dst = get_ioas(ucmd, cmd.dst_ioas_id)
    fixed = cmd.flags & uapi.IOMMU_IOAS_MAP_FIXED_IOVA
    cmd.dst_iova = dst.iopt.map_pages(
        plist, cmd.length, cmd.dst_iova if fixed else None, conv_iommu_prot(cmd.flags)
    )
    ucmd.respond()
    return 0


def ioas_unmap(ucmd: Ucmd) -> int:
    """``IOMMU_IOAS_UNMAP``: IOAS → ENOENT; ``iova=0, length=U64_MAX`` unmaps all; else
    iova/length ≥ ULONG_MAX → EOVERFLOW, length 0 → EINVAL, overflow → EOVERFLOW; then whole
    areas from the lowest up: being created or locked → EBUSY, cut → ENOENT (areas below
    already removed), nothing at all → ENOENT. ``length`` out = bytes unmapped."""
    cmd = ucmd.cmd
    ioas = get_ioas(ucmd, cmd.ioas_id)
    if cmd.iova == 0 and cmd.length == U64_MAX:
        unmapped, err = ioas.iopt.unmap_all()
        if err is not None:
            raise err
    else:
        _check_overflow("IOMMU_IOAS_UNMAP", iova=cmd.iova, length=cmd.length)
        unmapped, err = ioas.iopt.unmap_iova(cmd.iova, cmd.length)
        if err is not None:
            raise err
        if not unmapped:
            fail(
                errno.ENOENT,
                f"IOMMU_IOAS_UNMAP: no area inside [{cmd.iova:#x}, +{cmd.length:#x})",
            )
    cmd.length = unmapped
    ucmd.respond()
    return 0


def _syz_conv_iova_id(ucmd: Ucmd, cmd: uapi.iommu_ioas_copy) -> None:
    """``iommufd_test_syz_conv_iova_id`` (CONFIG_IOMMUFD_TEST, as the oracle kernel): flag
    bit 16 (``MOCK_FLAGS_ACCESS_SYZ``) is stripped and ``src_iova`` converted from
    ``{nth area, offset}`` when the source IOAS exists."""
    if not cmd.flags & uapi.MOCK_FLAGS_ACCESS_SYZ:
        return
    cmd.flags &= ~uapi.MOCK_FLAGS_ACCESS_SYZ
    ioas = ucmd.ictx.objects.lookup(cmd.src_ioas_id)
    if isinstance(ioas, Ioas):
        cmd.src_iova = syz_conv_iova(ioas.iopt, cmd.src_iova)


def ioas_change_process(ucmd: Ucmd) -> int:
    """``IOMMU_IOAS_CHANGE_PROCESS``: __reserved → EOPNOTSUPP; an area being created →
    EBUSY; an area not from MAP_FILE → EINVAL; charging the caller fails → ENOMEM (nothing
    changed). Then every area's pages are accounted to the calling process."""
    cmd = ucmd.cmd
    check_reserved(cmd.reserved)
    ictx = ucmd.ictx
    current = ictx.kernel.processes.current
    ioases = [o for o in ictx.objects.objects() if isinstance(o, Ioas)]
    areas = [a for ioas in ioases for a in ioas.iopt.areas.values()]
    for area in areas:
        if area.pages is None:
            fail(errno.EBUSY, "IOMMU_IOAS_CHANGE_PROCESS: an area is still being created")
        if area.pages.type != AddressType.FILE:
            fail(
                errno.EINVAL,
                f"IOMMU_IOAS_CHANGE_PROCESS: area [{area.iova:#x}, {area.last:#x}] was not "
                "mapped from a file (IOMMU_IOAS_MAP_FILE); only file areas can move",
            )
    all_pages = list({id(a.pages): a.pages for a in areas if a.pages is not None}.values())

    def need_charge_update(p: IoptPages) -> bool:
        if p.account_mode == AccountMode.NONE:
            return False
        if p.account_mode == AccountMode.MM:
            return p.source_mm is not current.mm
        return p.source_user is not current.user or p.source_mm is not current.mm

    moving = [p for p in all_pages if need_charge_update(p)]
    totals = {
        mode: sum(p.npinned for p in moving if p.account_mode == mode) for mode in AccountMode
    }
    charged: list[AccountMode] = []
    try:
        for mode, npages in totals.items():
            if npages:
                charge(mode, current, npages, inc=True)
                charged.append(mode)
    except OSError:
        for mode in charged:
            charge(mode, current, totals[mode], inc=False)
        raise
    for p in moving:
        if p.npinned:
            p.update_pinned(p.npinned, inc=False)
    for p in all_pages:
        p.source_task, p.source_mm, p.source_user = current, current.mm, current.user
    return 0


def option_rlimit_mode(ucmd: Ucmd) -> None:
    """``iommufd_option_rlimit_mode``: object_id → EOPNOTSUPP; SET: no CAP_SYS_RESOURCE →
    EPERM, any object → EBUSY, value not 0/1 → EINVAL; other op → EOPNOTSUPP."""
    cmd, ictx = ucmd.cmd, ucmd.ictx
    if cmd.object_id:
        fail(errno.EOPNOTSUPP, "IOMMU_OPTION_RLIMIT_MODE is global: object_id must be 0")
    if cmd.op == uapi.IOMMU_OPTION_OP_GET:
        cmd.val64 = int(ictx.account_mode == AccountMode.MM)
        return
    if cmd.op == uapi.IOMMU_OPTION_OP_SET:
        if not ictx.kernel.processes.current.capable(CAP_SYS_RESOURCE):
            fail(errno.EPERM, "IOMMU_OPTION_RLIMIT_MODE: setting it needs CAP_SYS_RESOURCE")
        if len(ictx.objects):
            fail(
                errno.EBUSY,
                f"IOMMU_OPTION_RLIMIT_MODE: {len(ictx.objects)} object(s) exist; set it first",
            )
        if cmd.val64 == 0:
            ictx.account_mode = AccountMode.USER
        elif cmd.val64 == 1:
            ictx.account_mode = AccountMode.MM
        else:
            fail(errno.EINVAL, f"IOMMU_OPTION_RLIMIT_MODE: value {cmd.val64} is not 0 or 1")
        return
    fail(errno.EOPNOTSUPP, f"IOMMU_OPTION: unknown op {cmd.op}")


def option_huge_pages(ucmd: Ucmd) -> None:
    """``iommufd_ioas_option``: __reserved → EOPNOTSUPP; IOAS → ENOENT; then GET, or SET 0
    (EINVAL with domains and areas, EADDRINUSE for unaligned areas), SET 1, else EINVAL;
    unknown op → EOPNOTSUPP."""
    cmd = ucmd.cmd
    check_reserved(cmd.reserved)
    ioas = get_ioas(ucmd, cmd.object_id)
    iopt = ioas.iopt
    if cmd.op == uapi.IOMMU_OPTION_OP_GET:
        cmd.val64 = int(not iopt.disable_large_pages)
        return
    if cmd.op == uapi.IOMMU_OPTION_OP_SET:
        if cmd.val64 == 0:
            iopt.disable_large_pages_()
        elif cmd.val64 == 1:
            iopt.enable_large_pages()
        else:
            fail(errno.EINVAL, f"IOMMU_OPTION_HUGE_PAGES: value {cmd.val64} is not 0 or 1")
        return
    fail(errno.EOPNOTSUPP, f"IOMMU_OPTION: unknown op {cmd.op}")


def option(ucmd: Ucmd) -> int:
    """``IOMMU_OPTION``: __reserved → EOPNOTSUPP; unknown option_id → EOPNOTSUPP; the
    option's own checks; on success only ``val64`` is written back."""
    cmd = ucmd.cmd
    check_reserved(cmd.reserved)
    if cmd.option_id == uapi.IOMMU_OPTION_RLIMIT_MODE:
        option_rlimit_mode(ucmd)
    elif cmd.option_id == uapi.IOMMU_OPTION_HUGE_PAGES:
        option_huge_pages(ucmd)
    else:
        fail(errno.EOPNOTSUPP, f"IOMMU_OPTION: unknown option_id {cmd.option_id}")
    off = type(cmd).offsetof("val64")
    ucmd.ictx.kernel.copy_to_user(ucmd.ubuffer + off, cmd.val64.to_bytes(8, "little"))
    return 0


def destroy(ucmd: Ucmd) -> int:
    """``IOMMU_DESTROY``: missing id → ENOENT; referenced → EBUSY."""
    ucmd.ictx.objects.remove(ucmd.cmd.id)
    return 0


def _check_overflow(name: str, **fields: int) -> None:
    if max(fields.values()) < ULONG_MAX:
        return
    for field, value in fields.items():
        if value >= ULONG_MAX:
            fail(errno.EOVERFLOW, f"{name}: {field} {value:#x} must be below ULONG_MAX")


__all__ = ["Ioas", "KernelError"]


def ioas_noiommu_get_pa(ucmd: Ucmd) -> int:
    """``IOMMU_IOAS_NOIOMMU_GET_PA``: no CAP_SYS_RAWIO → EPERM; flags/__reserved →
    EOPNOTSUPP; length 0 → EINVAL; iova ≥ ULONG_MAX → EOVERFLOW; IOAS → ENOENT; no area at
    iova → ENOENT; an area not backed by a no-IOMMU domain → EOPNOTSUPP (the simulated host
    has no no-IOMMU devices, so that is where every lookup ends)."""
    cmd = ucmd.cmd
    if not ucmd.ictx.kernel.processes.current.capable(CAP_SYS_RAWIO):
        fail(errno.EPERM, "IOMMU_IOAS_NOIOMMU_GET_PA needs CAP_SYS_RAWIO")
    if cmd.flags or cmd.reserved:
        fail(errno.EOPNOTSUPP, "IOMMU_IOAS_NOIOMMU_GET_PA: flags and __reserved must be 0")
    if not cmd.length:
        fail(errno.EINVAL, "IOMMU_IOAS_NOIOMMU_GET_PA: length is 0")
    _check_overflow("IOMMU_IOAS_NOIOMMU_GET_PA", iova=cmd.iova)
    ioas = get_ioas(ucmd, cmd.ioas_id)
    area = ioas.iopt.area_first(cmd.iova, cmd.iova)
    if area is None or area.pages is None:
        fail(errno.ENOENT, f"IOMMU_IOAS_NOIOMMU_GET_PA: no area at iova {cmd.iova:#x}")
    fail(errno.EOPNOTSUPP, "IOMMU_IOAS_NOIOMMU_GET_PA: the area is not in a no-IOMMU domain")
