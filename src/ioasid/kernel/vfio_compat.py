"""``vfio_compat.c``: the VFIO type1 container ioctls, answered by an iommufd.

They act on the context's one "compat" IOAS (``IOMMU_VFIO_IOAS``). The arguments of
``VFIO_SET_IOMMU`` and ``VFIO_CHECK_EXTENSION`` are plain integers, not pointers.
"""

from __future__ import annotations

import ctypes
import errno

from ioasid import uapi
from ioasid.hw.memory import PAGE_SIZE
from ioasid.kernel.errors import fail
from ioasid.kernel.io_pagetable import IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE, cut_iova
from ioasid.kernel.ioas import Ioas, _map_common, get_ioas
from ioasid.kernel.pages import ULONG_MAX, IoptPages
from ioasid.kernel.private import IommufdCtx, Ucmd, check_reserved
from ioasid.kernel.process import CAP_SYS_RAWIO

VFIO_API_VERSION = 0


def get_compat_ioas(ictx: IommufdCtx) -> Ioas:
    ioas = ictx.vfio_ioas
    if ioas is None or ictx.objects.lookup(ioas.id) is not ioas:
        fail(errno.ENODEV, "no compat IOAS: set one with IOMMU_VFIO_IOAS or attach a group")
    assert isinstance(ioas, Ioas)
    return ioas


def vfio_ioas(ucmd: Ucmd) -> int:
    """``IOMMU_VFIO_IOAS``: __reserved → EOPNOTSUPP; GET (ENODEV when none), SET (ENOENT for
    a non-IOAS id), CLEAR; other op → EOPNOTSUPP."""
    cmd, ictx = ucmd.cmd, ucmd.ictx
    check_reserved(cmd.reserved)
    if cmd.op == uapi.IOMMU_VFIO_IOAS_GET:
        cmd.ioas_id = get_compat_ioas(ictx).id
        ucmd.respond()
        return 0
    if cmd.op == uapi.IOMMU_VFIO_IOAS_SET:
        ictx.vfio_ioas = get_ioas(ucmd, cmd.ioas_id)
        return 0
    if cmd.op == uapi.IOMMU_VFIO_IOAS_CLEAR:
        ictx.vfio_ioas = None
        return 0
    fail(errno.EOPNOTSUPP, f"IOMMU_VFIO_IOAS: unknown op {cmd.op}")


def _read_arg(
    ictx: IommufdCtx, arg: int, struct: type[uapi.Struct], minsz_field: str
) -> uapi.Struct:
    minsz = struct.offsetofend(minsz_field)
    return struct.from_bytes(ictx.kernel.copy_from_user(arg, minsz))


def map_dma(ictx: IommufdCtx, arg: int) -> int:
    """``VFIO_IOMMU_MAP_DMA``: argsz < minsz or unknown flags → EINVAL; no compat IOAS →
    ENODEV; then IOMMU_IOAS_MAP at a fixed IOVA, always in MM (VFIO) accounting."""
    minsz = uapi.vfio_iommu_type1_dma_map.offsetofend("size")
    m = _read_arg(ictx, arg, uapi.vfio_iommu_type1_dma_map, "size")
    supported = uapi.VFIO_DMA_MAP_FLAG_READ | uapi.VFIO_DMA_MAP_FLAG_WRITE
    if m.argsz < minsz or m.flags & ~supported:
        fail(
            errno.EINVAL,
            f"VFIO_IOMMU_MAP_DMA: argsz {m.argsz} < {minsz} or unknown flags {m.flags:#x}",
        )
    prot = IOMMU_CACHE
    if m.flags & uapi.VFIO_DMA_MAP_FLAG_READ:
        prot |= IOMMU_READ
    if m.flags & uapi.VFIO_DMA_MAP_FLAG_WRITE:
        prot |= IOMMU_WRITE
    ioas = get_compat_ioas(ictx)
    task = ictx.kernel.processes.current
    pages = IoptPages.user(task, m.vaddr, m.size, bool(prot & IOMMU_WRITE))
    ucmd = Ucmd(ictx, arg, minsz, m)
    _map_common(ucmd, ioas, pages, m.iova, m.size, m.vaddr - pages.uptr, prot)
    return 0


def unmap_dma(ictx: IommufdCtx, arg: int) -> int:
    """``VFIO_IOMMU_UNMAP_DMA``: argsz/flags → EINVAL; no compat IOAS → ENODEV; FLAG_ALL
    with iova or size → EINVAL; type1 v1 (huge pages off) cuts areas at the range ends."""
    minsz = uapi.vfio_iommu_type1_dma_unmap.offsetofend("size")
    u = _read_arg(ictx, arg, uapi.vfio_iommu_type1_dma_unmap, "size")
    if u.argsz < minsz or u.flags & ~uapi.VFIO_DMA_UNMAP_FLAG_ALL:
        fail(
            errno.EINVAL,
            f"VFIO_IOMMU_UNMAP_DMA: argsz {u.argsz} < {minsz} or unsupported flags {u.flags:#x}",
        )
    ioas = get_compat_ioas(ictx)
    err: OSError | None
    if u.flags & uapi.VFIO_DMA_UNMAP_FLAG_ALL:
        if u.iova or u.size:
            fail(errno.EINVAL, "VFIO_IOMMU_UNMAP_DMA: FLAG_ALL needs iova = size = 0")
        unmapped, err = ioas.iopt.unmap_all()
    else:
        if ioas.iopt.disable_large_pages:
            cuts = [(u.iova + u.size - 1) & ULONG_MAX, (u.iova - 1) & ULONG_MAX]
            cut_iova(ioas.iopt, cuts if u.iova else cuts[:1])
        try:
            unmapped, err = ioas.iopt.unmap_iova(u.iova, u.size)
        except OSError as e:
            unmapped, err = 0, e
    u.size = unmapped
    ictx.kernel.copy_to_user(arg, bytes(u)[:minsz])
    if err is not None:
        raise err
    return 0


def check_extension(ictx: IommufdCtx, ext: int) -> int:
    if ext in (uapi.VFIO_TYPE1_IOMMU, uapi.VFIO_TYPE1v2_IOMMU, uapi.VFIO_UNMAP_ALL):
        return int(not ictx.no_iommu_mode)
    if ext == uapi.VFIO_NOIOMMU_IOMMU:
        return 1
    if ext == uapi.VFIO_DMA_CC_IOMMU:
        get_compat_ioas(ictx)
        return 1
    return 0


def set_iommu(ictx: IommufdCtx, type_: int) -> int:
    """``VFIO_SET_IOMMU``: only TYPE1/TYPE1v2 (EINVAL); no compat IOAS → ENODEV; TYPE1 turns
    huge pages off so any range can later be unmapped."""
    if type_ == uapi.VFIO_NOIOMMU_IOMMU and ictx.no_iommu_mode:
        if not ictx.kernel.processes.current.capable(CAP_SYS_RAWIO):
            fail(errno.EPERM, "VFIO_SET_IOMMU(NOIOMMU) needs CAP_SYS_RAWIO")
        return 0
    if type_ not in (uapi.VFIO_TYPE1_IOMMU, uapi.VFIO_TYPE1v2_IOMMU) or ictx.no_iommu_mode:
        fail(
            errno.EINVAL,
            f"VFIO_SET_IOMMU: type {type_} is not VFIO_TYPE1_IOMMU or VFIO_TYPE1v2_IOMMU",
        )
    ioas = get_compat_ioas(ictx)
    if type_ == uapi.VFIO_TYPE1_IOMMU:
        ioas.iopt.disable_large_pages_()
    return 0


def get_pagesizes(ioas: Ioas) -> int:
    bitmap = ULONG_MAX
    for d in ioas.iopt.domains:
        bitmap &= d.pgsize_bitmap
    page_mask = ULONG_MAX & ~(PAGE_SIZE - 1)
    if bitmap & ~page_mask:
        bitmap &= page_mask
        bitmap |= PAGE_SIZE
    return max(bitmap, ioas.iopt.iova_alignment)


def iommu_get_info(ictx: IommufdCtx, arg: int) -> int:
    """``VFIO_IOMMU_GET_INFO``: argsz < minsz → EINVAL; no compat IOAS → ENODEV; then the
    page sizes and the DMA_AVAIL and IOVA_RANGE capabilities, as many as fit."""
    kernel = ictx.kernel
    minsz = uapi.vfio_iommu_type1_info.offsetofend("iova_pgsizes")
    info = uapi.vfio_iommu_type1_info.from_bytes(kernel.copy_from_user(arg, minsz))
    if info.argsz < minsz:
        fail(errno.EINVAL, f"VFIO_IOMMU_GET_INFO: argsz {info.argsz} < {minsz}")
    minsz = min(info.argsz, ctypes.sizeof(info))
    ioas = get_compat_ioas(ictx)
    info.flags = uapi.VFIO_IOMMU_INFO_PGSIZES
    info.iova_pgsizes = get_pagesizes(ioas)
    info.cap_offset = 0
    argsz = info.argsz
    total = ctypes.sizeof(info)

    dma = uapi.vfio_iommu_type1_info_dma_avail()
    dma.header.id = uapi.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
    dma.header.version = 1
    dma.avail = 0xFFFFFFFF
    ranges = ioas.iopt.usable_ranges()
    iova_cap = uapi.vfio_iommu_type1_info_cap_iova_range()
    iova_cap.header.id = uapi.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
    iova_cap.header.version = 1
    iova_cap.nr_iovas = len(ranges)
    rsize = ctypes.sizeof(uapi.vfio_iova_range)
    iova_blob = bytes(iova_cap) + b"".join(
        bytes(uapi.vfio_iova_range(start=f, end=l)) for f, l in ranges
    )
    last_cap: int | None = None
    for blob in (bytes(dma), iova_blob):
        avail = argsz - total if argsz > total else 0
        if blob is iova_blob:
            for i in range(len(ranges)):
                if avail >= ctypes.sizeof(iova_cap) + (i + 1) * rsize:
                    off = ctypes.sizeof(iova_cap) + i * rsize
                    kernel.copy_to_user(arg + total + off, iova_blob[off : off + rsize])
            if avail >= len(iova_blob):
                kernel.copy_to_user(arg + total, bytes(iova_cap))
        elif avail >= len(blob):
            kernel.copy_to_user(arg + total, blob)
        cap_size = (len(blob) + 7) & ~7
        if last_cap is not None and argsz >= total:
            next_off = uapi.vfio_info_cap_header.offsetof("next")
            kernel.copy_to_user(last_cap + next_off, total.to_bytes(4, "little"))
        last_cap = arg + total
        total += cap_size
    if argsz >= total:
        info.cap_offset = ctypes.sizeof(info)
    info.argsz = total
    info.flags |= uapi.VFIO_IOMMU_INFO_CAPS
    kernel.copy_to_user(arg, bytes(info)[:minsz])
    return 0


def vfio_ioctl(ictx: IommufdCtx, cmd: int, arg: int) -> int:
    """``iommufd_vfio_ioctl``: the container ioctls; anything else → ENOTTY."""
    if cmd == uapi.VFIO_GET_API_VERSION:
        return VFIO_API_VERSION
    if cmd == uapi.VFIO_SET_IOMMU:
        return set_iommu(ictx, arg)
    if cmd == uapi.VFIO_CHECK_EXTENSION:
        return check_extension(ictx, arg)
    if cmd == uapi.VFIO_IOMMU_GET_INFO:
        return iommu_get_info(ictx, arg)
    if cmd == uapi.VFIO_IOMMU_MAP_DMA:
        return map_dma(ictx, arg)
    if cmd == uapi.VFIO_IOMMU_UNMAP_DMA:
        return unmap_dma(ictx, arg)
    fail(errno.ENOTTY, f"ioctl {cmd:#x} is neither an iommufd nor a VFIO container command")
