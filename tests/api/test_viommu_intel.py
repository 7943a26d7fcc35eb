"""QEMU's Intel nesting sequence (``intel-iommu,x-flts=on`` with ``iommufd``) on the
simulator: GET_HW_INFO → NEST_PARENT HWPT → VTD_S1 HWPT → attach → invalidate → DMA, with
the DMA landing through the guest's first-stage table and the stage-2 table. The oracle's
QEMU has no VT-d nesting, so this runs on ``sim`` only (the mock driver is the reference
in the guest, as in the kernel's selftests)."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from ioasid import Buffer, Device, HwPagetable, Iommufd, IommufdError, uapi
from ioasid.api import FaultQueue, InvalidateError
from ioasid.backends import sim
from ioasid.hw.pagetable.vtd_fs import VtdFirstStageWriter

SERVER_DEV = "/dev/vfio/devices/vfio2"  # default host: a viable group behind dmar1 (NEST)
QEMU_EDU = "/dev/vfio/devices/vfio0"  # behind dmar0, QEMU's registers: no nesting
GUEST_RAM = 4 << 20
TABLES_GPA = 0x30_0000
GIOVA = 0x7F00_0000


@pytest.fixture
def vm() -> Iterator[tuple[Iommufd, Device, Buffer, HwPagetable]]:
    """A "VM": guest RAM mapped at GPA 0 of an IOAS, behind a nesting parent."""
    sim.reset()
    with Iommufd() as fd, Device(fd, SERVER_DEV) as dev, Buffer(GUEST_RAM) as ram:
        ioas = fd.ioas_alloc()
        info = dev.hw_info().vtd
        assert info is not None and info.ecap_reg >> 26 & 1  # ECAP.NEST
        s2 = dev.hwpt_alloc(ioas, uapi.IOMMU_HWPT_ALLOC_NEST_PARENT)
        # the erratum QEMU honours: a nesting parent takes no read-only mapping
        assert info.flags & uapi.IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17
        with pytest.raises(IommufdError) as e:
            dev.attach(s2)
            ioas.map(ram, iova=0, writable=False)
        assert e.value.errno == errno.EINVAL
        ioas.map(ram, iova=0)
        yield fd, dev, ram, s2


def _s1(ram: Buffer, addr_width: int = 48) -> tuple[VtdFirstStageWriter, uapi.iommu_hwpt_vtd_s1]:
    writer = VtdFirstStageWriter(ram, 0, TABLES_GPA)
    return writer, uapi.iommu_hwpt_vtd_s1(pgtbl_addr=writer.root_gpa, addr_width=addr_width)


def test_dma_lands_through_both_stages(vm: tuple[Iommufd, Device, Buffer, HwPagetable]) -> None:
    _, dev, ram, s2 = vm
    writer, data = _s1(ram)
    writer.map(GIOVA, 0x10_0000, 0x2000)
    s1 = dev.hwpt_alloc(s2, data=data)
    assert s1.nested
    dev.attach(s1)
    dev.dma_write(GIOVA + 0xFF8, b"through both stages")  # crosses a stage-1 page
    assert ram[0x10_0FF8 : 0x10_0FF8 + 19] == b"through both stages"
    assert dev.dma_read(GIOVA + 0xFF8, 19) == b"through both stages"
    # a GIOVA the guest did not map: a stage-1 fault
    with pytest.raises(IommufdError) as e:
        dev.dma_write(GIOVA + 0x10_0000, b"x")
    assert e.value.errno == errno.EIO


def test_guest_remap_needs_its_invalidation(
    vm: tuple[Iommufd, Device, Buffer, HwPagetable],
) -> None:
    _, dev, ram, s2 = vm
    writer, data = _s1(ram)
    writer.map(GIOVA, 0x10_0000, 0x1000)
    s1 = dev.hwpt_alloc(s2, data=data)
    dev.attach(s1)
    dev.dma_write(GIOVA, b"first")
    writer.unmap(GIOVA, 0x1000)
    writer.map(GIOVA, 0x20_0000, 0x1000)
    dev.dma_write(GIOVA, b"stale")  # the IOTLB still holds the old translation
    assert ram[0x10_0000:0x10_0005] == b"stale"
    inv = uapi.iommu_hwpt_vtd_s1_invalidate(addr=GIOVA, npages=1)
    assert s1.invalidate([inv]) == 1
    dev.dma_write(GIOVA, b"fresh")
    assert ram[0x20_0000:0x20_0005] == b"fresh"
    # entries are checked in order; entry_num says how many were done
    bad = uapi.iommu_hwpt_vtd_s1_invalidate(addr=GIOVA + 1, npages=1)
    with pytest.raises(InvalidateError) as e:
        s1.invalidate([inv, bad])
    assert e.value.errno == errno.EINVAL and e.value.done == 1
    flags = uapi.iommu_hwpt_vtd_s1_invalidate(addr=0, npages=1, flags=1 << 5)
    with pytest.raises(InvalidateError) as e:
        s1.invalidate([flags])
    assert e.value.errno == errno.EOPNOTSUPP and e.value.done == 0
    everything = uapi.iommu_hwpt_vtd_s1_invalidate(addr=0, npages=(1 << 64) - 1)
    assert s1.invalidate([everything]) == 1


def test_nested_alloc_and_attach_rules(vm: tuple[Iommufd, Device, Buffer, HwPagetable]) -> None:
    fd, dev, ram, s2 = vm
    writer, data = _s1(ram)
    # the parent must be a NEST_PARENT paging HWPT of this driver
    assert s2.ioas is not None
    plain = dev.hwpt_alloc(s2.ioas)
    with pytest.raises(IommufdError) as e:
        dev.hwpt_alloc(plain, data=data)
    assert e.value.errno == errno.EINVAL
    # a nested HWPT takes no NEST_PARENT / DIRTY_TRACKING flag
    with pytest.raises(IommufdError) as e:
        dev.hwpt_alloc(s2, uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, data=data)
    assert e.value.errno == errno.EOPNOTSUPP
    # another driver's data type
    with pytest.raises(IommufdError) as e:
        dev.hwpt_alloc(s2, data=uapi.iommu_hwpt_selftest(iotlb=1))
    assert e.value.errno == errno.EOPNOTSUPP
    # 5-level stage 1 without CAP.FL5LP: refused when the PASID entry is set up (attach)
    s1 = dev.hwpt_alloc(s2, data=uapi.iommu_hwpt_vtd_s1(pgtbl_addr=writer.root_gpa, addr_width=57))
    with pytest.raises(IommufdError) as e:
        dev.attach(s1)
    assert e.value.errno == errno.EINVAL
    s1.destroy()
    # a nesting parent is busy while a nested HWPT sits on it
    s1 = dev.hwpt_alloc(s2, data=data)
    with pytest.raises(IommufdError) as e:
        fd.destroy(s2.id)
    assert e.value.errno == errno.EBUSY
    s1.destroy()


def test_qemu_unit_has_no_nesting() -> None:
    sim.reset()
    with Iommufd() as fd, Device(fd, QEMU_EDU) as dev:
        ioas = fd.ioas_alloc()
        info = dev.hw_info().vtd
        assert info is not None and not info.ecap_reg >> 26 & 1
        with pytest.raises(IommufdError) as e:
            dev.hwpt_alloc(ioas, uapi.IOMMU_HWPT_ALLOC_NEST_PARENT)
        assert e.value.errno == errno.EOPNOTSUPP


def test_stage1_fault_is_a_page_request_on_a_fault_capable_hwpt(
    vm: tuple[Iommufd, Device, Buffer, HwPagetable],
) -> None:
    fd, dev, ram, s2 = vm
    writer, data = _s1(ram)
    writer.map(GIOVA, 0x10_0000, 0x1000)
    with FaultQueue.alloc(fd) as fq:
        s1 = dev.hwpt_alloc(s2, data=data, fault=fq)
        dev.attach(s1)
        with pytest.raises(IommufdError) as e:
            dev.dma_write(GIOVA + 0x5008, b"x")  # not in the guest's table: stage 1
        assert e.value.errno == errno.EIO
        (fault,) = fq.read()
        assert (fault.addr, fault.dev_id, fault.last_page) == (GIOVA + 0x5000, dev.id, True)
        assert fault.perm == uapi.IOMMU_PGFAULT_PERM_WRITE
        fq.respond(fault)
        # a stage-2 fault (a GPA the host did not map) is the host's, not a page request
        writer.map(GIOVA + 0x6000, GUEST_RAM + 0x1000, 0x1000)
        with pytest.raises(IommufdError):
            dev.dma_read(GIOVA + 0x6000, 4)
        assert fq.read() == []
        dev.detach()
        s1.destroy()
