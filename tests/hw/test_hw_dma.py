"""Device DMA through the IOMMU into physical memory: splitting, faults, dirty bits."""

from __future__ import annotations

import pytest

from ioasid.hw.dma import DmaEngine, DmaFault, PhysMemory
from ioasid.hw.iommu import Domain, DomainAllocFlags, IommuCaps, IommuUnit
from ioasid.hw.pagetable import (
    MOCK_APERTURE_START,
    Access,
    FaultReason,
    Prot,
)

RW = Prot.READ | Prot.WRITE
SZ_4K, SZ_2M = 1 << 12, 1 << 21
MEM_BASE = 0x1_0000_0000
RID = 0x0300


class ByteMemory:
    """``PhysMemory`` over a bytearray: PA ``MEM_BASE + i`` is byte ``i``."""

    def __init__(self, size: int = 8 << 20) -> None:
        self.buf = bytearray(size)
        self.reads = 0
        self.writes = 0

    def read(self, pa: int, n: int) -> bytes:
        off = pa - MEM_BASE
        assert off >= 0 and off + n <= len(self.buf)
        self.reads += 1
        return bytes(self.buf[off : off + n])

    def write(self, pa: int, data: bytes | memoryview) -> None:
        off = pa - MEM_BASE
        assert off >= 0 and off + len(data) <= len(self.buf)
        self.writes += 1
        self.buf[off : off + len(data)] = data


def setup(
    caps: IommuCaps | None = None, flags: int = 0, pasid_width: int = 0
) -> tuple[IommuUnit, Domain, ByteMemory, DmaEngine]:
    unit = IommuUnit(caps or IommuCaps.vtd())
    domain = unit.domain_alloc_paging(flags)
    unit.attach(RID, domain)
    mem = ByteMemory()
    mem_proto: PhysMemory = mem
    return unit, domain, mem, DmaEngine(unit, RID, mem_proto, pasid_width=pasid_width)


def test_write_read_across_scattered_pages() -> None:
    _, domain, mem, dma = setup()
    order = [5, 2, 7, 0, 3]
    for i, page in enumerate(order):
        domain.map(0x10_0000 + i * SZ_4K, MEM_BASE + page * SZ_4K, SZ_4K, RW)
    data = bytes(range(256)) * (len(order) * SZ_4K // 256 - 1) + b"x" * 100
    dma.write(0x10_0000 + 100, data)
    for i, page in enumerate(order):
        chunk = data[max(0, i * SZ_4K - 100) : (i + 1) * SZ_4K - 100]
        off = page * SZ_4K + (100 if i == 0 else 0)
        assert mem.buf[off : off + len(chunk)] == chunk
    assert dma.read(0x10_0000 + 100, len(data)) == data
    assert dma.faults == []


def test_contiguous_leaves_are_one_copy() -> None:
    _, domain, mem, dma = setup()
    domain.map(0, MEM_BASE + SZ_4K, 64 * SZ_4K, RW)
    dma.write(0, b"\xab" * (64 * SZ_4K))
    assert mem.writes == 1
    assert dma.read(10, 64 * SZ_4K - 10) == b"\xab" * (64 * SZ_4K - 10)
    assert mem.reads == 1


def test_write_fault_lands_bytes_before_fault_only() -> None:
    _, domain, mem, dma = setup()
    domain.map(0x2000, MEM_BASE, 2 * SZ_4K, RW)
    with pytest.raises(DmaFault) as e:
        dma.write(0x2800, b"\x11" * (3 * SZ_4K))
    assert e.value.transferred == 0x1800
    assert e.value.record.iova == 0x4000
    assert e.value.record.reason is FaultReason.NOT_PRESENT
    assert e.value.record.access is Access.WRITE
    assert mem.buf[0x800:0x2000] == b"\x11" * 0x1800
    assert mem.buf[0x2000:0x5000] == bytes(0x3000)
    assert dma.faults == [e.value.record]


def test_permission_faults() -> None:
    _, domain, mem, dma = setup()
    domain.map(0, MEM_BASE, SZ_4K, Prot.READ)
    domain.map(SZ_4K, MEM_BASE + SZ_4K, SZ_4K, Prot.WRITE)
    with pytest.raises(DmaFault) as e:
        dma.write(0, b"x")
    assert e.value.record.reason is FaultReason.WRITE_PROTECTED
    assert mem.buf[0] == 0
    with pytest.raises(DmaFault) as e:
        dma.read(SZ_4K, 1)
    assert e.value.record.reason is FaultReason.READ_PROTECTED
    with pytest.raises(DmaFault) as e:
        dma.read(SZ_4K - 1, 2)
    assert e.value.transferred == 1 and e.value.record.iova == SZ_4K
    assert [f.reason for f in dma.faults] == [
        FaultReason.WRITE_PROTECTED,
        FaultReason.READ_PROTECTED,
        FaultReason.READ_PROTECTED,
    ]


def test_blocked_and_pasid() -> None:
    unit, domain, mem, dma = setup(IommuCaps.vtd(max_pasid_log2=20), pasid_width=8)
    domain.map(0, MEM_BASE, SZ_4K, RW)
    other = unit.domain_alloc_paging()
    other.map(0, MEM_BASE + SZ_4K, SZ_4K, RW)
    unit.attach(RID, other, pasid=7)
    dma.write(0, b"rid")
    dma.write(0, b"pasid", pasid=7)
    assert mem.buf[:3] == b"rid" and mem.buf[SZ_4K : SZ_4K + 5] == b"pasid"
    with pytest.raises(DmaFault) as e:
        dma.read(0, 1, pasid=8)
    assert e.value.record.reason is FaultReason.BLOCKED and e.value.record.pasid == 8
    with pytest.raises(DmaFault) as e:
        dma.read(0, 1, pasid=256)
    assert e.value.record.reason is FaultReason.PASID_RANGE
    unit.detach(RID)
    with pytest.raises(DmaFault) as e:
        dma.read(0, 1)
    assert e.value.record.reason is FaultReason.BLOCKED


def test_dma_writes_drive_dirty_tracking() -> None:
    _, domain, _, dma = setup(flags=DomainAllocFlags.DIRTY_TRACKING)
    domain.map(0, MEM_BASE, SZ_2M + 8 * SZ_4K, RW)
    dma.write(SZ_4K, b"clean before tracking")
    domain.set_dirty_tracking(True)
    assert domain.read_and_clear_dirty(0, 4 << 20) == []
    dma.read(SZ_2M, 16)
    dma.write(SZ_2M + 3 * SZ_4K + 10, b"y" * SZ_4K)
    dma.write(100, b"z")
    assert domain.read_and_clear_dirty(0, 4 << 20) == [
        (0, SZ_2M),
        (SZ_2M + 3 * SZ_4K, 2 * SZ_4K),
    ]
    assert domain.read_and_clear_dirty(0, 4 << 20) == []
    dma.write(SZ_2M + 3 * SZ_4K, b"again")
    assert domain.read_and_clear_dirty(0, 4 << 20) == [(SZ_2M + 3 * SZ_4K, SZ_4K)]


def test_stale_iotlb_after_unmap_without_sync_is_visible_to_dma() -> None:
    _, domain, mem, dma = setup()
    domain.map(0, MEM_BASE, SZ_4K, RW)
    dma.read(0, 1)
    domain.unmap_nosync(0, SZ_4K)
    dma.write(0, b"stale")
    assert mem.buf[:5] == b"stale"
    domain.flush_iotlb(0, SZ_4K)
    with pytest.raises(DmaFault):
        dma.write(0, b"never")
    assert mem.buf[:5] == b"stale"


def test_mock_device_dma() -> None:
    unit, domain, mem, dma = setup(IommuCaps.mock(), flags=DomainAllocFlags.DIRTY_TRACKING)
    domain.map(MOCK_APERTURE_START, MEM_BASE, 3 * 2048, RW)
    domain.set_dirty_tracking(True)
    dma.write(MOCK_APERTURE_START + 2048, b"m" * 2048)
    assert mem.buf[2048:4096] == b"m" * 2048
    assert domain.read_and_clear_dirty(MOCK_APERTURE_START, 3 * 2048) == [
        (MOCK_APERTURE_START, 4096)
    ]
    assert unit.iotlb.stats.fills >= 1


def test_fault_records_are_bounded_newest_kept() -> None:
    from ioasid.hw.dma import FAULT_LOG_MAX

    _, _, _, dma = setup()
    extra = 40
    for i in range(FAULT_LOG_MAX + extra):
        with pytest.raises(DmaFault):
            dma.read(0x4000_0000 + i * SZ_4K, 8)
    assert len(dma.faults) == FAULT_LOG_MAX
    assert dma.faults_dropped == extra
    assert dma.faults[-1].iova == 0x4000_0000 + (FAULT_LOG_MAX + extra - 1) * SZ_4K
    assert dma.faults[0].iova == 0x4000_0000 + extra * SZ_4K


@pytest.mark.parametrize("length", [(1 << 30) + 1, 4 << 30, 1 << 45, 1 << 63, -1])
def test_transfer_longer_than_any_device_issues_is_einval(length: int) -> None:
    import errno

    _, domain, _, dma = setup()
    domain.map(0, MEM_BASE, SZ_2M, RW)
    with pytest.raises(OSError) as e:
        dma.read(0, length)
    assert e.value.errno == errno.EINVAL and "transfer" in str(e.value)
    assert dma.faults == []


def test_transfer_stops_at_the_first_unmapped_page_whatever_its_length() -> None:
    _, domain, mem, dma = setup()
    domain.map(0, MEM_BASE, 3 * SZ_4K, RW)
    with pytest.raises(DmaFault) as e:
        dma.read(0, 1 << 30)
    assert e.value.transferred == 3 * SZ_4K and e.value.record.iova == 3 * SZ_4K
    assert mem.reads == 0


def test_one_read_per_physical_run() -> None:
    _, domain, mem, dma = setup()
    domain.map(0, MEM_BASE, 64 * SZ_4K, RW)
    domain.map(64 * SZ_4K, MEM_BASE + (1 << 20), 64 * SZ_4K, RW)
    mem.buf[0 : 64 * SZ_4K] = b"a" * (64 * SZ_4K)
    mem.buf[1 << 20 : (1 << 20) + 64 * SZ_4K] = b"b" * (64 * SZ_4K)
    assert dma.read(SZ_4K, 126 * SZ_4K) == b"a" * (63 * SZ_4K) + b"b" * (63 * SZ_4K)
    assert mem.reads == 2


def test_p2p_read_is_bounded_by_the_peers_bar() -> None:
    """A peer-to-peer read of 2^40 bytes is refused (EINVAL, no allocation); one running
    past the peer's BAR takes the BAR's bytes from the peer and routes the rest again
    (here up to the IOMMU, which faults)."""
    import errno

    from ioasid.hw.pci import Fabric, FabricDma, PciFunction
    from ioasid.topology.model import Bdf

    _, _, _, engine = setup()
    fabric = Fabric()
    a = PciFunction(Bdf.parse("0000:01:00.0"), 0x1234, 1, 0, bar_sizes=(SZ_4K,))
    b = PciFunction(Bdf.parse("0000:01:00.1"), 0x1234, 2, 0, bar_sizes=(SZ_4K,))
    fabric.add(a, 0xE000_0000)
    fabric.add(b, 0xE010_0000)
    fabric.p2p_domain[a.bdf] = fabric.p2p_domain[b.bdf] = 0
    port = FabricDma(fabric, a, engine)
    assert port.read(0xE010_0000, SZ_4K) == bytes(SZ_4K)
    with pytest.raises(OSError) as e:
        port.read(0xE010_0000, 1 << 40)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(DmaFault) as f:
        port.read(0xE010_0000, 2 * SZ_4K)
    assert f.value.record.iova == 0xE010_0000 + SZ_4K
