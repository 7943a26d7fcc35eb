"""DMA throughput through a 4-level VT-d second-stage table, as a ratio to a plain
``memoryview`` copy of the same bytes measured in the same run.

Two physical layouts: ``contig`` maps the IOVA range onto physically contiguous 4 KiB
pages (the engine coalesces adjacent leaves into one copy, as a DMA engine bursting
across page boundaries does), ``scatter`` maps every 4 KiB page to a non-adjacent
physical page (one translation and one copy per page: the worst case). The IOTLB is warm
(steady state); ``cold`` flushes it before every transfer (every page walks the table).
The baseline for writes is ``dst[:n] = src[:n]`` into an existing buffer; for reads, which
return a new ``bytes``, it is ``src[:n].tobytes()`` (allocation included, as in the DMA
read).

Then the whole path on the ``sim`` backend: ``Device.dma_write``/``dma_read`` of the edu
device (API + ``IOASID_SIM_DEVICE_DMA`` + the kernel + this engine + the caller's pages),
and the raw ioctl into a buffer reused between calls (the part below the API), against
``dst[:] = src`` of the same size.

Run: ``.venv/bin/python benchmarks/bench_dma.py [--skip-engine]``
"""

from __future__ import annotations

import argparse
import ctypes
from collections.abc import Callable

from timing import cpu_per_call, per_op

from ioasid import Buffer, Device, Iommufd
from ioasid.backends import sim
from ioasid.hw.dma import DmaEngine
from ioasid.hw.iommu import IommuCaps, IommuUnit
from ioasid.hw.pagetable import Prot
from ioasid.uapi import sim as simapi

MEM_BASE = 0x1_0000_0000
SZ_4K = 4096
RID = 0x0100
SIZES = [4 << 10, 64 << 10, 1 << 20]


class ByteMemory:
    """``PhysMemory`` over one bytearray (PA ``MEM_BASE + i`` is byte ``i``)."""

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)

    def read(self, pa: int, n: int) -> bytes:
        off = pa - MEM_BASE
        return self.view[off : off + n].tobytes()

    def write(self, pa: int, data: bytes | memoryview) -> None:
        off = pa - MEM_BASE
        self.view[off : off + len(data)] = data

    def read_into(self, pa: int, dst: memoryview) -> None:
        off = pa - MEM_BASE
        dst[:] = self.view[off : off + len(dst)]


def bench_device() -> None:
    """Device.dma_write/dma_read and the raw ioctl through the sim backend."""
    sim.reset()
    print("| size | op | memoryview copy µs | sim µs | ratio |")
    print("|---|---|---|---|---|")
    with (
        Iommufd() as fd,
        Device(fd, "/dev/vfio/devices/vfio0") as dev,
        Buffer(2 << 20) as ram,
    ):
        ioas = fd.ioas_alloc()
        dev.attach(ioas)
        iova = ioas.map(ram)
        for size, n in ((4 << 10, 2000), (1 << 20, 40)):
            data = bytes(range(256)) * (size // 256)
            dst, src = bytearray(size), memoryview(data)

            def copy(dst: bytearray = dst, src: memoryview = src) -> None:
                dst[:] = src

            t_copy = cpu_per_call(copy, 20 * n)
            user = bytearray(size)
            holder = (ctypes.c_char * size).from_buffer(user)
            raw = {
                write: simapi.ioasid_sim_dma(
                    argsz=ctypes.sizeof(simapi.ioasid_sim_dma),
                    flags=simapi.IOASID_SIM_DMA_WRITE if write else 0,
                    iova=iova,
                    length=size,
                    uptr=ctypes.addressof(holder),
                ).to_bytearray()
                for write in (True, False)
            }
            cases: list[tuple[str, Callable[[], object]]] = [
                ("Device.dma_write", lambda data=data: dev.dma_write(iova, data)),
                ("Device.dma_read", lambda size=size: dev.dma_read(iova, size)),
                (
                    "raw ioctl write",
                    lambda b=raw[True]: dev.handle.ioctl(simapi.IOASID_SIM_DEVICE_DMA, b),
                ),
                (
                    "raw ioctl read",
                    lambda b=raw[False]: dev.handle.ioctl(simapi.IOASID_SIM_DEVICE_DMA, b),
                ),
            ]
            for op, fn in cases:
                t = cpu_per_call(fn, n)
                print(
                    f"| {size >> 10} KiB | {op} | {t_copy * 1e6:.2f} | {t * 1e6:.1f} | "
                    f"x{t / t_copy:.1f} |"
                )
            assert dev.dma_read(iova, size) == bytes(user)  # the raw read filled it
            del holder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--skip-engine", action="store_true", help="only the sim backend")
    args = parser.parse_args()
    if not args.skip_engine:
        bench_engine(args.min_time)
        print()
    bench_device()


def bench_engine(min_time: float) -> None:

    span = max(SIZES)
    mem = ByteMemory(4 * span)
    src = memoryview(bytes(range(256)) * (span // 256))
    dst = memoryview(bytearray(span))

    unit = IommuUnit(IommuCaps.vtd(address_width=48, levels=(4,), super_pages=0))
    domain = unit.domain_alloc_paging()
    assert domain.pagetable.top_level == 3
    unit.attach(RID, domain)
    contig_iova, scatter_iova = 0x10_0000_0000, 0x20_0000_0000
    domain.map(contig_iova, MEM_BASE, span, Prot.READ | Prot.WRITE)
    npages = span // SZ_4K
    for i in range(npages):
        pa = MEM_BASE + 2 * span + ((i * 7) % npages) * 2 * SZ_4K % (2 * span)
        domain.map(scatter_iova + i * SZ_4K, pa, SZ_4K, Prot.READ | Prot.WRITE)
    dma = DmaEngine(unit, RID, mem)

    rows: list[str] = []
    header = (
        f"| {'size':>7} | {'layout':<7} | {'op':<5} | {'memcpy GB/s':>11} | "
        f"{'DMA GB/s':>8} | {'DMA µs':>8} | {'slowdown':>8} |"
    )
    rows.append(header)
    rows.append("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for size in SIZES:
        chunk = src[:size]

        def memcpy(chunk: memoryview = chunk, size: int = size) -> None:
            dst[:size] = chunk

        t_copy = per_op(memcpy, min_time)
        t_tobytes = per_op(lambda chunk=chunk: chunk.tobytes(), min_time)
        for layout, iova in (("contig", contig_iova), ("scatter", scatter_iova)):
            cases: list[tuple[str, Callable[[], object]]] = [
                ("write", lambda iova=iova, chunk=chunk: dma.write(iova, chunk)),
                ("read", lambda iova=iova, size=size: dma.read(iova, size)),
            ]
            if layout == "scatter":

                def cold(iova: int = iova, chunk: memoryview = chunk) -> None:
                    unit.iotlb.flush_all()
                    dma.write(iova, chunk)

                cases.append(("cold", cold))
            for op, fn in cases:
                t_dma = per_op(fn, min_time)
                t_base = t_tobytes if op == "read" else t_copy
                rows.append(
                    f"| {size >> 10:>5}Ki | {layout:<7} | {op:<5} | "
                    f"{size / t_base / 1e9:>11.2f} | {size / t_dma / 1e9:>8.3f} | "
                    f"{t_dma * 1e6:>8.1f} | {t_dma / t_base:>7.1f}x |"
                )
    print("\n".join(rows))
    stats = unit.iotlb.stats
    print(f"\nIOTLB: hits={stats.hits} misses={stats.misses} fills={stats.fills}")


if __name__ == "__main__":
    main()
