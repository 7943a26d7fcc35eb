"""IOAS map/unmap scaling on the ``sim`` backend, against the in-process limits.

    python benchmarks/bench_ioas.py            # 10^3 .. 10^6 live areas, 4,194,304 pages
    python benchmarks/bench_ioas.py --quick    # 10^3 .. 10^5 live areas, 262,144 pages

Part 1: at each population N of live 4 KiB areas (FIXED_IOVA, no domain, so nothing is
pinned), the time of one ``IOMMU_IOAS_MAP`` + ``IOMMU_IOAS_UNMAP`` pair of a further 4 KiB
area at a random free IOVA, next to a bare ``sortedcontainers.SortedDict`` insert + delete
of the same keys at the same population (the data structure the areas live in) and to a
plain ``dict``. The ratio sim/SortedDict should stay flat: growth at most logarithmic.

Part 2: one IOAS filled page by page — 4,194,304 separate 4 KiB areas, a 16 GiB guest —
with the fill rate and the memory per area (RSS delta). ``user_va`` points into one big
``MAP_NORESERVE`` region that is never touched: without a domain the kernel never looks.

Everything goes through raw ioctls (``ioasid.uapi`` structs, ``handle.ioctl``), as a VMM
would issue them.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import mmap
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from sortedcontainers import SortedDict

from ioasid import uapi
from ioasid.backends import sim

PAGE = 4096
STRIDE = 2 * PAGE
"""Live areas sit at ``BASE + k * STRIDE``; the probe pairs use the gaps between them."""
BASE = 1 << 32
FLAGS = (
    uapi.IOMMU_IOAS_MAP_FIXED_IOVA | uapi.IOMMU_IOAS_MAP_READABLE | uapi.IOMMU_IOAS_MAP_WRITEABLE
)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Region:
    """A large anonymous ``MAP_NORESERVE`` mapping that is never touched."""

    def __init__(self, size: int) -> None:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
        self.map = mmap.mmap(-1, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        anchor = ctypes.c_char.from_buffer(self.map)
        self.base = ctypes.addressof(anchor)
        del anchor

    def close(self) -> None:
        self.map.close()


class Ioas:
    """One IOAS on a fresh ``/dev/iommu`` of the simulator, driven by raw ioctls."""

    def __init__(self) -> None:
        sim.reset()
        self.handle = sim.open("/dev/iommu")
        alloc = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc)).to_bytearray()
        self.handle.ioctl(uapi.IOMMU_IOAS_ALLOC, alloc)
        self.id = uapi.iommu_ioas_alloc.from_bytes(alloc).out_ioas_id
        self._map = uapi.iommu_ioas_map(
            size=ctypes.sizeof(uapi.iommu_ioas_map), flags=FLAGS, ioas_id=self.id, length=PAGE
        )
        self._unmap = uapi.iommu_ioas_unmap(
            size=ctypes.sizeof(uapi.iommu_ioas_unmap), ioas_id=self.id, length=PAGE
        )
        self._map_buf = bytearray(ctypes.sizeof(self._map))
        self._unmap_buf = bytearray(ctypes.sizeof(self._unmap))

    def map(self, iova: int, user_va: int) -> None:
        self._map.iova = iova
        self._map.user_va = user_va
        self._map_buf[:] = bytes(self._map)
        self.handle.ioctl(uapi.IOMMU_IOAS_MAP, self._map_buf)

    def unmap(self, iova: int) -> None:
        self._unmap.iova = iova
        self._unmap.length = PAGE
        self._unmap_buf[:] = bytes(self._unmap)
        self.handle.ioctl(uapi.IOMMU_IOAS_UNMAP, self._unmap_buf)

    def areas(self) -> int:
        ictx: Any = cast(Any, self.handle.file).ictx
        return len(ictx.objects.lookup(self.id).iopt.areas)

    def close(self) -> None:
        self.handle.close()


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def timed(fn: Callable[[], None]) -> float:
    """CPU seconds of this process running ``fn``: robust on a shared, loaded machine."""
    t = time.process_time()
    fn()
    return time.process_time() - t


def bench_population(sizes: list[int], pairs: int, region: Region) -> list[dict[str, float]]:
    """Part 1: per map+unmap pair at each live population, against SortedDict and dict."""
    ioas = Ioas()
    rows = []
    live = 0
    rng = random.Random(1)
    for n in sizes:
        t_fill = time.process_time()
        for k in range(live, n):
            ioas.map(BASE + k * STRIDE, region.base + k * PAGE)
        fill = time.process_time() - t_fill
        fill_rate = (n - live) / fill if n > live else float("nan")
        live = n
        assert ioas.areas() == n
        gaps = [BASE + rng.randrange(n) * STRIDE + PAGE for _ in range(pairs)]

        def sim_pairs(gaps: list[int] = gaps) -> None:
            for iova in gaps:
                ioas.map(iova, region.base)
                ioas.unmap(iova)

        sd: SortedDict = SortedDict((BASE + k * STRIDE, None) for k in range(n))
        d = dict.fromkeys(sd)

        def sd_pairs(gaps: list[int] = gaps, sd: SortedDict = sd) -> None:
            for iova in gaps:
                sd[iova] = None
                del sd[iova]

        def dict_pairs(gaps: list[int] = gaps, d: dict[int, None] = d) -> None:
            for iova in gaps:
                d[iova] = None
                del d[iova]

        t_sim = min(timed(sim_pairs) for _ in range(5)) / pairs
        t_sd = min(timed(sd_pairs) for _ in range(5)) / pairs
        t_dict = min(timed(dict_pairs) for _ in range(5)) / pairs
        row = {
            "n": n,
            "sim_us": t_sim * 1e6,
            "sd_us": t_sd * 1e6,
            "dict_us": t_dict * 1e6,
            "ratio_sd": t_sim / t_sd,
            "ratio_dict": t_sim / t_dict,
            "fill_rate": fill_rate,
        }
        rows.append(row)
        print(
            f"  N={n:>9,}  map+unmap {row['sim_us']:7.1f} us   SortedDict ins+del "
            f"{row['sd_us']:5.2f} us (x{row['ratio_sd']:6.1f})   dict {row['dict_us']:5.3f} us "
            f"(x{row['ratio_dict']:6.0f})   fill {fill_rate:8,.0f} maps/s",
            flush=True,
        )
    ioas.close()
    return rows


def bench_guest(pages: int, region: Region, min_free: int) -> dict[str, float]:
    """Part 2: ``pages`` separate 4 KiB areas in one IOAS (page by page), then unmap all.

    Stops early (and says so) if the host's MemAvailable falls below ``min_free`` bytes.
    """
    gc.collect()
    rss0 = rss_bytes()
    ioas = Ioas()
    t0 = time.perf_counter()
    c0 = time.process_time()
    report = max(pages // 16, 1)
    wanted = pages
    for k in range(pages):
        ioas.map(BASE + k * PAGE, region.base + k * PAGE)
        if (k + 1) % report == 0:
            el = time.process_time() - c0
            rss = rss_bytes() - rss0
            print(
                f"    {k + 1:>9,} areas  {el:6.1f} s CPU  {(k + 1) / el:8,.0f} maps/s  "
                f"RSS +{rss / 2**30:5.2f} GiB",
                flush=True,
            )
        if k % 65536 == 65535 and mem_available() < min_free:
            pages = k + 1
            print(
                f"    stopped at {pages:,} of {wanted:,} areas: MemAvailable below "
                f"{min_free / 2**30:.1f} GiB",
                flush=True,
            )
            break
    fill = time.process_time() - c0
    wall = time.perf_counter() - t0
    gc.collect()
    rss1 = rss_bytes()
    assert ioas.areas() == pages
    unmap = uapi.iommu_ioas_unmap(size=24, ioas_id=ioas.id, iova=0, length=(1 << 64) - 1)
    buf = unmap.to_bytearray()
    t1 = time.process_time()
    ioas.handle.ioctl(uapi.IOMMU_IOAS_UNMAP, buf)
    unmap_all = time.process_time() - t1
    unmapped = uapi.iommu_ioas_unmap.from_bytes(buf).length
    assert unmapped == pages * PAGE, unmapped
    ioas.close()
    row = {
        "pages": pages,
        "wanted": wanted,
        "fill_s": fill,
        "fill_wall_s": wall,
        "fill_rate": pages / fill,
        "bytes_per_area": (rss1 - rss0) / pages,
        "unmap_all_s": unmap_all,
    }
    print(
        f"  {pages:,} areas ({pages * PAGE >> 20} MiB page by page): fill {fill:.1f} s CPU "
        f"({wall:.1f} s wall) "
        f"({row['fill_rate']:,.0f} maps/s), {row['bytes_per_area']:,.0f} B RSS per area, "
        f"unmap-all {unmap_all:.1f} s ({unmapped >> 20} MiB)",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="10^3..10^5 areas, 262,144 pages")
    ap.add_argument("--pairs", type=int, default=2000, help="map+unmap pairs timed per size")
    ap.add_argument("--skip-guest", action="store_true", help="only part 1")
    ap.add_argument("--skip-population", action="store_true", help="only part 2")
    ap.add_argument(
        "--min-free-gb",
        type=float,
        default=3.0,
        help="stop part 2 early when MemAvailable drops below this (default 3)",
    )
    args = ap.parse_args(argv)
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    pages = 262_144 if args.quick else 4_194_304
    print(
        f"python {platform.python_version()} on {platform.machine()}, nproc {os.cpu_count()}, "
        f"{platform.platform()}"
    )
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    region = Region(pages * PAGE)
    if not args.skip_population:
        print(
            "part 1: one 4 KiB map+unmap pair at N live areas (FIXED_IOVA, no domain); "
            "CPU time, best of 5"
        )
        rows = bench_population(sizes, args.pairs, region)
        first, last = rows[0], rows[-1]
        growth = last["sim_us"] / first["sim_us"]
        print(
            f"  growth {first['n']:,} -> {last['n']:,} areas: sim x{growth:.2f}, "
            f"SortedDict x{last['sd_us'] / first['sd_us']:.2f}"
        )
    if not args.skip_guest:
        print(f"part 2: {pages:,} separate 4 KiB pages in one IOAS")
        bench_guest(pages, region, int(args.min_free_gb * 2**30))
    region.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
