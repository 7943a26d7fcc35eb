"""Attach cost: devices joining an IOAS that already holds 10^4 areas.

Two cases on the sim backend, with the kernel's mock driver (``IOMMU_TEST_CMD``):

* 100 mock devices attached to the IOAS: the first creates the auto domain and fills it
  with every area (pins + page-table writes); the other 99 reuse it (the kernel's
  ``iommufd_device_auto_get_domain``), so they cost almost nothing.
* 100 HWPTs allocated on the IOAS (``IOMMU_HWPT_ALLOC``): each is a new domain that must be
  filled with all 10^4 areas — the real cost of filling domains.

Reference: a bare ``SortedDict`` insert of the same 10^4 keys, measured in the same run.

Then the domain side of the ioctls, each as a ratio to an in-process limit of the same run
(CPU time, best of several rounds):

* raw ``IOMMU_IOAS_MAP`` + ``IOMMU_IOAS_UNMAP`` of 4 KiB with a mock domain attached, at
  ``--areas`` live areas, against a ``SortedDict`` insert+delete plus one list PTE write;
* a 2 MiB map with huge pages off (``IOMMU_OPTION_HUGE_PAGES`` = 0), per 4 KiB PTE,
  against a one-element numpy slice write;
* ``IOMMU_HWPT_GET_DIRTY_BITMAP`` over 1 GiB of 4 KiB pages, every other page dirty,
  against a numpy scan of the same entries' dirty bits packed into a bitmap;
* ``IOMMU_TEST_OP_DIRTY`` over 2^27 pages (a 16 MiB bitmap, every other bit set).

    python benchmarks/bench_devices.py [--areas 10000] [--devices 100] [--skip-attach]
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import time

import numpy as np
from sortedcontainers import SortedDict
from timing import cpu_per_call

from ioasid import uapi
from ioasid.backends import sim

PAGE = 4096
MAP_NORESERVE = 0x4000  # not exported by the mmap module


def ioctl(h: sim.SimHandle, req: int, s: uapi.Struct) -> uapi.Struct:
    b = s.to_bytearray()
    h.ioctl(req, b)
    return type(s).from_bytes(b)


def mock_domain(h: sim.SimHandle, ioas: int) -> tuple[int, int]:
    """A mock device attached to ``ioas``: ``(device id, hwpt id)``."""
    cmd = uapi.iommu_test_cmd(
        size=ctypes.sizeof(uapi.iommu_test_cmd), op=uapi.IOMMU_TEST_OP_MOCK_DOMAIN, id=ioas
    )
    out = ioctl(h, uapi.IOMMU_TEST_CMD, cmd).mock_domain
    return int(out.out_idev_id), int(out.out_hwpt_id)


def map_cmd(ioas: int, va: int, iova: int, length: int) -> bytearray:
    return uapi.iommu_ioas_map(
        size=40, flags=7, ioas_id=ioas, user_va=va, length=length, iova=iova
    ).to_bytearray()


def unmap_cmd(ioas: int, iova: int, length: int) -> bytearray:
    return uapi.iommu_ioas_unmap(
        size=ctypes.sizeof(uapi.iommu_ioas_unmap), ioas_id=ioas, iova=iova, length=length
    ).to_bytearray()


def huge_pages_off(h: sim.SimHandle, ioas: int) -> None:
    ioctl(
        h,
        uapi.IOMMU_OPTION,
        uapi.iommu_option(
            size=ctypes.sizeof(uapi.iommu_option),
            option_id=uapi.IOMMU_OPTION_HUGE_PAGES,
            op=uapi.IOMMU_OPTION_OP_SET,
            object_id=ioas,
            val64=0,
        ),
    )


def bench_domain_map_unmap(n: int) -> None:
    """Raw MAP+UNMAP of 4 KiB with a mock domain, at ``n`` live areas."""
    sim.reset()
    h = sim.open()
    buf = mmap.mmap(-1, (n + 1) * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    start = uapi.MOCK_APERTURE_START
    iova = start + (2 * n + 1) * PAGE
    times = []
    for with_domain in (False, True):
        ioas = ioctl(h, uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc(size=12)).out_ioas_id
        if with_domain:
            mock_domain(h, ioas)
        for i in range(n):
            cmd = map_cmd(ioas, base + i * PAGE, start + 2 * i * PAGE, PAGE)
            h.ioctl(uapi.IOMMU_IOAS_MAP, cmd)
        m, u = map_cmd(ioas, base + n * PAGE, iova, PAGE), unmap_cmd(ioas, iova, PAGE)

        def pair(m: bytearray = m, u: bytearray = u) -> None:
            h.ioctl(uapi.IOMMU_IOAS_MAP, m)
            h.ioctl(uapi.IOMMU_IOAS_UNMAP, u)

        times.append(cpu_per_call(pair, 2000))
    t_bare, t_sim = times
    sd: SortedDict = SortedDict({start + 2 * i * PAGE: i for i in range(n)})
    table = [0] * 512

    def limit() -> None:
        sd[iova] = 1
        table[7] = 0x6000_0000_0000_1001
        del sd[iova]
        table[7] = 0

    t_ref = cpu_per_call(limit, 20000)
    print(
        f"| raw MAP+UNMAP 4 KiB, mock domain, {n} live areas | {t_sim * 1e6:.1f} µs | "
        f"SortedDict ins+del + list PTE write {t_ref * 1e6:.2f} µs | x{t_sim / t_ref:.0f} |"
    )
    print(
        f"| the same without a domain (the ioctl path alone) | {t_bare * 1e6:.1f} µs | "
        f"same | x{t_bare / t_ref:.0f} |"
    )
    print(
        f"| the domain's part (pin, frames, PTE write, unpin) | "
        f"{(t_sim - t_bare) * 1e6:.1f} µs | same | x{(t_sim - t_bare) / t_ref:.0f} |"
    )
    h.close()


def bench_huge_pages_off() -> None:
    """A 2 MiB map into a mock domain with huge pages off: per 4 KiB PTE."""
    sim.reset()
    h = sim.open()
    size = 2 << 20
    buf = mmap.mmap(-1, size)
    va = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    ioas = ioctl(h, uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc(size=12)).out_ioas_id
    huge_pages_off(h, ioas)
    mock_domain(h, ioas)
    iova = uapi.MOCK_APERTURE_START
    m, u = map_cmd(ioas, va, iova, size), unmap_cmd(ioas, iova, size)
    h.ioctl(uapi.IOMMU_IOAS_MAP, m)
    h.ioctl(uapi.IOMMU_IOAS_UNMAP, u)
    times: dict[str, float] = {"map": float("inf"), "unmap": float("inf")}
    for _ in range(20):
        t = time.process_time()
        h.ioctl(uapi.IOMMU_IOAS_MAP, m)
        t1 = time.process_time()
        h.ioctl(uapi.IOMMU_IOAS_UNMAP, u)
        t2 = time.process_time()
        times["map"] = min(times["map"], t1 - t)
        times["unmap"] = min(times["unmap"], t2 - t1)
    ptes = size // PAGE
    arr = np.zeros(512, dtype=np.uint64)

    def slice_write() -> None:
        arr[7:8] = 0x6000_0000_0000_1001

    t_ref = cpu_per_call(slice_write, 100000)
    for what, t in times.items():
        print(
            f"| 2 MiB {what}, huge pages off: {ptes} PTEs | {t * 1e6:.0f} µs = "
            f"{t / ptes * 1e9:.0f} ns/PTE | numpy slice write {t_ref * 1e9:.0f} ns | "
            f"x{t / ptes / t_ref:.1f} per PTE |"
        )
    h.close()


def bench_dirty() -> None:
    """GET_DIRTY_BITMAP over 1 GiB (4 KiB PTEs, every other page dirty), then
    IOMMU_TEST_OP_DIRTY over 2^27 pages."""
    sim.reset()
    h = sim.open()
    size = 1 << 30
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
    va = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    ioas = ioctl(h, uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc(size=12)).out_ioas_id
    huge_pages_off(h, ioas)
    dev_id, _ = mock_domain(h, ioas)
    hwpt = ioctl(
        h,
        uapi.IOMMU_HWPT_ALLOC,
        uapi.iommu_hwpt_alloc(
            size=ctypes.sizeof(uapi.iommu_hwpt_alloc),
            flags=uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
            dev_id=dev_id,
            pt_id=ioas,
        ),
    ).out_hwpt_id
    iova = uapi.MOCK_APERTURE_START
    t = time.process_time()
    h.ioctl(uapi.IOMMU_IOAS_MAP, map_cmd(ioas, va, iova, size))
    t_map = time.process_time() - t
    ioctl(
        h,
        uapi.IOMMU_HWPT_SET_DIRTY_TRACKING,
        uapi.iommu_hwpt_set_dirty_tracking(
            size=ctypes.sizeof(uapi.iommu_hwpt_set_dirty_tracking),
            flags=uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
            hwpt_id=hwpt,
        ),
    )
    pages = size // PAGE

    def test_dirty(length: int, page_size: int, bits: bytearray) -> tuple[float, int]:
        cmd = uapi.iommu_test_cmd(
            size=ctypes.sizeof(uapi.iommu_test_cmd), op=uapi.IOMMU_TEST_OP_DIRTY, id=hwpt
        )
        holder = (ctypes.c_char * len(bits)).from_buffer(bits)
        cmd.dirty.iova, cmd.dirty.length = iova, length
        cmd.dirty.page_size, cmd.dirty.uptr = page_size, ctypes.addressof(holder)
        t = time.process_time()
        out = ioctl(h, uapi.IOMMU_TEST_CMD, cmd)
        return time.process_time() - t, int(out.dirty.out_nr_dirty)

    half = bytearray(b"\x55" * (pages // 8))
    t_set, nr = test_dirty(size, PAGE, half)
    bitmap = bytearray(pages // 8)
    holder = (ctypes.c_char * len(bitmap)).from_buffer(bitmap)
    get = uapi.iommu_hwpt_get_dirty_bitmap(
        size=ctypes.sizeof(uapi.iommu_hwpt_get_dirty_bitmap),
        hwpt_id=hwpt,
        flags=uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
        iova=iova,
        length=size,
        page_size=PAGE,
        data=ctypes.addressof(holder),
    ).to_bytearray()
    t_get = cpu_per_call(lambda: h.ioctl(uapi.IOMMU_HWPT_GET_DIRTY_BITMAP, get), 5)
    assert bytes(bitmap) == bytes(half), "GET_DIRTY_BITMAP does not read back what was set"
    # the same bits as a numpy scan: the 2 KiB items' D bit, one bit per 4 KiB page
    items = np.zeros(2 * pages, dtype=np.uint64)
    items[::4] = items[1::4] = 1 << 6

    def scan() -> object:
        dirty = ((items & np.uint64(1 << 6)) != 0).reshape(-1, 2).any(axis=1)
        return np.packbits(dirty, bitorder="little")

    t_ref = cpu_per_call(scan, 20)
    print(
        f"| GET_DIRTY_BITMAP 1 GiB, {pages} PTEs, {nr} dirty | {t_get * 1e3:.2f} ms | "
        f"numpy scan+pack of the same entries {t_ref * 1e3:.2f} ms | x{t_get / t_ref:.1f} |"
    )
    print(f"| (map of that 1 GiB, huge pages off, first pin) | {t_map * 1e3:.0f} ms | - | - |")
    print(f"| IOMMU_TEST_OP_DIRTY 1 GiB, {pages} bits, half set | {t_set * 1e3:.1f} ms | - | - |")
    big = 1 << 27
    t_big, nr_big = test_dirty(big * 2048, 2048, bytearray(b"\x55" * (big // 8)))
    print(
        f"| IOMMU_TEST_OP_DIRTY 2^27 pages of 2 KiB ({nr_big} bits set) | {t_big:.2f} s | "
        "- | - |"
    )
    h.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--areas", type=int, default=10_000)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--skip-attach", action="store_true", help="only the domain ioctls")
    args = ap.parse_args()
    if not args.skip_attach:
        bench_attach(args.areas, args.devices)
    print()
    print("| workload | sim | in-process limit | ratio |")
    print("|---|---|---|---|")
    bench_domain_map_unmap(args.areas)
    bench_huge_pages_off()
    bench_dirty()


def bench_attach(n: int, ndev: int) -> None:

    sim.reset()
    buf = mmap.mmap(-1, n * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    h = sim.open()
    ioas = ioctl(h, uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc(size=12)).out_ioas_id
    t = time.process_time()
    for i in range(n):
        ioctl(
            h,
            uapi.IOMMU_IOAS_MAP,
            uapi.iommu_ioas_map(
                size=40,
                flags=7,
                ioas_id=ioas,
                user_va=base + i * PAGE,
                length=PAGE,
                iova=uapi.MOCK_APERTURE_START + 2 * i * PAGE,
            ),
        )
    t_map = time.process_time() - t

    cmd = uapi.iommu_test_cmd(
        size=ctypes.sizeof(uapi.iommu_test_cmd), op=uapi.IOMMU_TEST_OP_MOCK_DOMAIN, id=ioas
    )
    t = time.process_time()
    first = ioctl(h, uapi.IOMMU_TEST_CMD, cmd)
    t_first = time.process_time() - t
    t = time.process_time()
    for _ in range(ndev - 1):
        ioctl(h, uapi.IOMMU_TEST_CMD, cmd)
    t_rest = time.process_time() - t

    t = time.process_time()
    for _ in range(ndev):
        ioctl(
            h,
            uapi.IOMMU_HWPT_ALLOC,
            uapi.iommu_hwpt_alloc(
                size=ctypes.sizeof(uapi.iommu_hwpt_alloc),
                dev_id=first.mock_domain.out_idev_id,
                pt_id=ioas,
            ),
        )
    t_hwpt = time.process_time() - t

    t = time.process_time()
    sd: SortedDict = SortedDict()
    for i in range(n):
        sd[i * 2 * PAGE] = i
    t_ref = time.process_time() - t
    h.close()

    print(f"| what | total | per item | ratio to SortedDict insert of {n} keys |")
    print("|---|---|---|---|")
    print(
        f"| map {n} x 4 KiB areas (no domain yet) | {t_map:.3f} s | {t_map / n * 1e6:.1f} µs/area"
        f" | {t_map / t_ref:.0f}x |"
    )
    print(
        f"| 1st device attach: auto domain filled with {n} areas | {t_first:.3f} s | "
        f"{t_first / n * 1e6:.1f} µs/area | {t_first / t_ref:.0f}x |"
    )
    print(
        f"| {ndev - 1} more devices (reuse the domain) | {t_rest:.3f} s | "
        f"{t_rest / max(ndev - 1, 1) * 1e3:.2f} ms/device | - |"
    )
    print(
        f"| {ndev} HWPT_ALLOC (each domain filled with {n} areas) | {t_hwpt:.3f} s | "
        f"{t_hwpt / ndev * 1e3:.1f} ms/domain = {t_hwpt / ndev / n * 1e6:.1f} µs/area | "
        f"{t_hwpt / ndev / t_ref:.0f}x per domain |"
    )


if __name__ == "__main__":
    main()
