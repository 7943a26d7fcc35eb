"""DMA through a nested HWPT (the mock's identity stage 1 over the mock stage 2, and a VT-d
first-stage table in guest memory over a VT-d second stage), beside the same DMA through a
paging HWPT (single stage) and a ``memoryview`` copy of the same bytes, measured in the same
run. 4 KiB and 1 MiB transfers, 4 KiB pages everywhere (no super pages, so every page is
one translation), physically contiguous guest memory.

``warm``: steady state, the IOTLB holds the combined (IOVA → PA) leaves. ``cold``: the
IOTLB is flushed before each transfer, so every page walks: the paging HWPT does one
4-level walk per page, the VT-d nested one a first-stage walk whose every table fetch is
itself a second-stage walk (up to 4 + 4 x 4 entry reads per page), then the second stage of
the result.

Run: ``.venv/bin/python benchmarks/bench_nested.py``
"""

from __future__ import annotations

import argparse
import platform

from timing import per_op

from ioasid.hw.dma import DmaEngine
from ioasid.hw.iommu import Domain, DomainAllocFlags, IommuCaps, IommuUnit, NestedDomain
from ioasid.hw.pagetable import Prot
from ioasid.hw.pagetable.nested import MockStage1
from ioasid.hw.pagetable.vtd_fs import VtdFirstStage, VtdFirstStageWriter

MEM_BASE = 0x1_0000_0000
GUEST_RAM = 8 << 20
DATA_GPA = 0x10_0000
TABLES_GPA = 0x60_0000
GIOVA = 0x7F00_0000
MOCK_IOVA = 0x100_0000  # inside the mock aperture
RID = 0x100
SIZES = [4 << 10, 1 << 20]
SZ_4K = 4096


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


def _map_4k(domain: Domain, iova: int, pa: int, length: int) -> None:
    for off in range(0, length, SZ_4K):
        domain.map(iova + off, pa + off, SZ_4K, Prot.READ | Prot.WRITE)


def setups(mem: ByteMemory) -> list[tuple[str, IommuUnit, DmaEngine, int]]:
    """(name, unit, engine, iova) for each translation being compared."""
    span = max(SIZES)
    out = []
    # VT-d paging HWPT: IOVA -> PA in one 4-level second-stage walk
    vtd = IommuUnit(IommuCaps.vtd(super_pages=0), "dmar1")
    paging = vtd.domain_alloc_paging()
    _map_4k(paging, GIOVA, MEM_BASE + DATA_GPA, span)
    vtd.attach(RID, paging)
    out.append(("vtd paging", vtd, DmaEngine(vtd, RID, mem), GIOVA))
    # VT-d nested: guest first stage (in guest memory) over the second stage of GPA
    vtd2 = IommuUnit(IommuCaps.vtd(super_pages=0), "dmar2")
    s2 = vtd2.domain_alloc_paging(DomainAllocFlags.NEST_PARENT)
    _map_4k(s2, 0, MEM_BASE, GUEST_RAM)
    writer = VtdFirstStageWriter(mem.view[:GUEST_RAM], 0, TABLES_GPA)
    for off in range(0, span, SZ_4K):
        writer.map(GIOVA + off, DATA_GPA + off, SZ_4K)
    nested = NestedDomain(s2, VtdFirstStage(writer.root_gpa, super_1g=False), mem)
    vtd2.attach(RID, nested)
    out.append(("vtd nested", vtd2, DmaEngine(vtd2, RID, mem), GIOVA))
    # mock paging and mock nested (identity stage 1)
    mock = IommuUnit(IommuCaps.mock(), "mock")
    mpaging = mock.domain_alloc_paging()
    _map_4k(mpaging, MOCK_IOVA, MEM_BASE + DATA_GPA, span)
    mock.attach(RID, mpaging)
    out.append(("mock paging", mock, DmaEngine(mock, RID, mem), MOCK_IOVA))
    mock2 = IommuUnit(IommuCaps.mock(), "mock2")
    mparent = mock2.domain_alloc_paging(DomainAllocFlags.NEST_PARENT)
    _map_4k(mparent, MOCK_IOVA, MEM_BASE + DATA_GPA, span)
    mock2.attach(RID, NestedDomain(mparent, MockStage1(), mem))
    out.append(("mock nested", mock2, DmaEngine(mock2, RID, mem), MOCK_IOVA))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args()
    mem = ByteMemory(GUEST_RAM)
    span = max(SIZES)
    src = memoryview(bytes(range(256)) * (span // 256))
    dst = memoryview(bytearray(span))
    cases = setups(mem)
    print(f"python {platform.python_version()} on {platform.machine()}")
    print("command: python benchmarks/bench_nested.py")
    header = (
        f"| {'size':>6} | {'translation':<11} | {'IOTLB':<5} | {'DMA write µs':>12} | "
        f"{'memcpy µs':>9} | {'x memcpy':>8} | {'x paging':>8} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for size in SIZES:
        chunk = src[:size]

        def memcpy(chunk: memoryview = chunk, size: int = size) -> None:
            dst[:size] = chunk

        t_copy = per_op(memcpy, args.min_time)
        paging_time: dict[tuple[str, str], float] = {}
        for name, unit, dma, iova in cases:
            dma.write(iova, chunk)  # correctness: the bytes land where the table says
            assert mem.read(MEM_BASE + DATA_GPA, size) == bytes(chunk), name
            for temp in ("warm", "cold"):

                def run(
                    dma: DmaEngine = dma,
                    iova: int = iova,
                    chunk: memoryview = chunk,
                    unit: IommuUnit = unit,
                    cold: bool = temp == "cold",
                ) -> None:
                    if cold:
                        unit.iotlb.flush_all()
                    dma.write(iova, chunk)

                t = per_op(run, args.min_time)
                driver = name.split()[0]
                if name.endswith("paging"):
                    paging_time[(driver, temp)] = t
                ratio = t / paging_time[(driver, temp)]
                print(
                    f"| {size >> 10:>4}Ki | {name:<11} | {temp:<5} | {t * 1e6:>12.1f} | "
                    f"{t_copy * 1e6:>9.2f} | {t / t_copy:>7.0f}x | {ratio:>7.2f}x |"
                )


if __name__ == "__main__":
    main()
