"""Device DMA on the simulated host through the real uAPI path: bind, attach, map, DMA."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator

import pytest

from ioasid import Buffer, Device, Iommufd, IommufdError, uapi
from ioasid.backends import sim

EDU = "/dev/vfio/devices/vfio0"
ACCEL = "/dev/vfio/devices/vfio4"  # default host: PASID-capable, behind an ACS root port


@pytest.fixture
def edu() -> Iterator[tuple[Iommufd, Device]]:
    sim.reset()
    with Iommufd() as fd, Device(fd, EDU) as dev:
        yield fd, dev


def test_dma_lands_in_the_callers_buffer(edu: tuple[Iommufd, Device]) -> None:
    fd, dev = edu
    ioas = fd.ioas_alloc()
    dev.attach(ioas)
    with Buffer(3 * 4096) as ram:
        iova = ioas.map(ram)
        dev.dma_write(iova + 4090, b"across a page")  # crosses a page boundary
        assert ram[4090:4103] == b"across a page"
        ram[8192:8197] = b"hello"
        assert dev.dma_read(iova + 8192, 5) == b"hello"


def test_read_only_mapping_faults_on_write(edu: tuple[Iommufd, Device]) -> None:
    fd, dev = edu
    ioas = fd.ioas_alloc()
    dev.attach(ioas)
    with Buffer(4096) as ram:
        iova = ioas.map(ram, writable=False)
        with pytest.raises(IommufdError) as e:
            dev.dma_write(iova, b"x")
        assert e.value.errno == errno.EIO and "write to read-only" in str(e.value)
        assert ram[0:1] == b"\0"


def test_no_stale_iotlb_entry_after_unmap(edu: tuple[Iommufd, Device]) -> None:
    fd, dev = edu
    ioas = fd.ioas_alloc()
    dev.attach(ioas)
    with Buffer(4096) as ram:
        iova = ioas.map(ram)
        dev.dma_write(iova, b"cached")  # the translation is now in the IOTLB
        unit = sim.kernel().vtd_units[0]
        assert unit.iotlb.stats.fills >= 1
        ioas.unmap(iova, 4096)
        with pytest.raises(IommufdError) as e:
            dev.dma_write(iova, b"stale?")
        assert "not present" in str(e.value)
        assert ram[0:6] == b"cached"


def test_detached_device_is_blocked(edu: tuple[Iommufd, Device]) -> None:
    fd, dev = edu
    ioas = fd.ioas_alloc()
    dev.attach(ioas)
    with Buffer(4096) as ram:
        iova = ioas.map(ram)
        dev.detach()
        with pytest.raises(IommufdError) as e:
            dev.dma_read(iova, 8)
        assert e.value.errno == errno.EIO and "no domain attached" in str(e.value)


def test_pasid_beyond_the_devices_width_faults() -> None:
    sim.reset()
    with Iommufd() as fd, Device(fd, ACCEL) as dev:
        assert dev.hw_info().max_pasid_log2 == 20
        dev.attach(fd.ioas_alloc())
        with pytest.raises(IommufdError) as e:
            dev.dma_read(0x1000, 4, pasid=1 << 20)
        assert "PASID" in str(e.value)


@pytest.mark.oracle
def test_dma_on_demand_is_sim_only(backend: object) -> None:
    from ioasid.testing import edu as edu_prog

    with Iommufd(backend) as fd, Device(fd, edu_prog.cdev_path(backend)) as dev:  # type: ignore[arg-type]
        dev.attach(fd.ioas_alloc())
        if getattr(backend, "NAME", "") == "sim":
            with pytest.raises(IommufdError) as e:
                dev.dma_read(0x1000, 4)  # nothing mapped: a fault, not "unsupported"
            assert e.value.errno == errno.EIO
        else:
            with pytest.raises(IommufdError) as e:
                dev.dma_read(0x1000, 4)
            assert e.value.errno == errno.ENOTTY and "sim backend" in str(e.value)


def test_pasid_attach_gives_a_pasid_its_own_address_space() -> None:
    sim.reset()
    with Iommufd() as fd, Device(fd, ACCEL) as dev, Buffer(4096) as a, Buffer(4096) as b:
        rid_ioas, pasid_ioas = fd.ioas_alloc(), fd.ioas_alloc()
        # once PASIDs are in use, the RID's HWPT must be PASID-compatible too (else EINVAL)
        dev.attach(dev.hwpt_alloc(rid_ioas, uapi.IOMMU_HWPT_ALLOC_PASID))
        hwpt = dev.hwpt_alloc(pasid_ioas, uapi.IOMMU_HWPT_ALLOC_PASID)
        dev.attach(hwpt, pasid=7)
        rid_ioas.map(a, iova=0x10000)
        pasid_ioas.map(b, iova=0x10000)
        dev.dma_write(0x10000, b"RID")
        dev.dma_write(0x10000, b"PASID 7", pasid=7)
        assert a[0:3] == b"RID" and b[0:7] == b"PASID 7"
        dev.detach(pasid=7)
        with pytest.raises(IommufdError):
            dev.dma_write(0x10000, b"again", pasid=7)


def test_pasid_attach_without_pasid_support_fails() -> None:
    sim.reset()
    with Iommufd() as fd, Device(fd, EDU) as dev:
        hwpt = dev.hwpt_alloc(fd.ioas_alloc())
        with pytest.raises(IommufdError) as e:
            dev.attach(hwpt, pasid=1)
        assert e.value.errno in (errno.EINVAL, errno.EOPNOTSUPP)


@pytest.mark.parametrize("length", [4 << 30, 1 << 45, 1 << 63])
@pytest.mark.parametrize("write", [True, False])
def test_raw_dma_of_any_length_is_bounded_and_oserror(
    edu: tuple[Iommufd, Device], length: int, write: bool
) -> None:
    """IOASID_SIM_DEVICE_DMA far longer than what is mapped: an OSError after bounded
    work (a 4 GiB, 2^45 or 2^63 byte transfer used to allocate that much, or overflow):
    the transfer stops at the first unmapped IOVA or unreadable user byte."""
    from ioasid.uapi import sim as simapi

    fd, dev = edu
    ioas = fd.ioas_alloc()
    dev.attach(ioas)
    with Buffer(4096) as ram:
        iova = ioas.map(ram)
        cmd = simapi.ioasid_sim_dma(
            argsz=ctypes.sizeof(simapi.ioasid_sim_dma),
            flags=simapi.IOASID_SIM_DMA_WRITE if write else 0,
            iova=iova,
            length=length,
            uptr=ram.address,
        )
        buf = cmd.to_bytearray()
        with pytest.raises(OSError) as e:
            dev.handle.ioctl(simapi.IOASID_SIM_DEVICE_DMA, buf)
        assert e.value.errno in (errno.EIO, errno.EFAULT)
        assert ram[0:8] == bytes(8)


def test_dma_to_pages_the_program_unmapped_is_efault_not_a_crash(
    edu: tuple[Iommufd, Device],
) -> None:
    """The kernel pinned the pages, the program then unmapped (or write-protected) them:
    the simulator's frames are the program's addresses, so the DMA must fail with EFAULT,
    never touch the address (the copy is a memmove only after PROCMAP_QUERY)."""
    import mmap

    fd, dev = edu
    ioas = fd.ioas_alloc()
    dev.attach(ioas)
    ram = Buffer(2 * 4096)
    iova = ioas.map(ram)
    dev.dma_write(iova, b"mapped")
    assert ram[0:6] == b"mapped"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(ram.address + 4096, 4096, mmap.PROT_READ) == 0
    with pytest.raises(OSError) as e:
        dev.dma_write(iova + 4096, b"read-only now")
    assert e.value.errno == errno.EFAULT
    ram.close()
    for op in (lambda: dev.dma_write(iova, b"gone"), lambda: dev.dma_read(iova, 8)):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno == errno.EFAULT
    ioas.unmap(iova, 2 * 4096)
