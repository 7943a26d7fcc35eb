"""vIOMMU objects: failed allocations leave nothing behind (the id is given back, no
reference or pin left), destroys in the wrong order are EBUSY, mmap's own rules — on both
backends (the mock vIOMMU)."""

from __future__ import annotations

import ctypes
import errno
import mmap

import pytest

from ioasid import Buffer, Iommufd, IommufdError, uapi
from ioasid.api import HwPagetable, MockDevice, Viommu

pytestmark = pytest.mark.oracle
P = 4096
SELFTEST = uapi.IOMMU_VIOMMU_TYPE_SELFTEST


@pytest.fixture
def fd(iommufd: Iommufd) -> Iommufd:
    """The plugin's ``iommufd`` fixture, under the short name these tests use."""
    return iommufd


def _errno(fn: object, *args: object, **kwargs: object) -> int:
    try:
        fn(*args, **kwargs)  # type: ignore[operator]
    except OSError as e:
        return e.errno or 0
    raise AssertionError("the call succeeded")


def _setup(fd: Iommufd) -> tuple[MockDevice, HwPagetable]:
    ioas = fd.ioas_alloc()
    dev = MockDevice(fd, ioas)
    return dev, HwPagetable.alloc(fd, dev, ioas, flags=uapi.IOMMU_HWPT_ALLOC_NEST_PARENT)


def test_failed_viommu_alloc_gives_its_id_back(fd: Iommufd) -> None:
    dev, parent = _setup(fd)
    # driver data at an unmapped address: the mock's copy faults inside viommu_init
    cmd = uapi.iommu_viommu_alloc(
        type=SELFTEST, dev_id=dev.id, hwpt_id=parent.id, data_len=24, data_uptr=0x10
    )
    assert _errno(fd.ioctl, uapi.IOMMU_VIOMMU_ALLOC, cmd, "IOMMU_VIOMMU_ALLOC") == errno.EFAULT
    # data of the wrong size (below out_data) is EINVAL, and nothing stays either
    small = ctypes.create_string_buffer(4)
    cmd.data_len, cmd.data_uptr = 4, ctypes.addressof(small)
    assert _errno(fd.ioctl, uapi.IOMMU_VIOMMU_ALLOC, cmd, "IOMMU_VIOMMU_ALLOC") == errno.EINVAL
    viommu = Viommu.alloc(fd, dev, parent, SELFTEST)
    assert viommu.id == parent.id + 1
    # the parent is referenced once (by the live vIOMMU), not by the failed ones
    assert _errno(parent.destroy) == errno.EBUSY
    viommu.destroy()
    parent.destroy()


def test_vdevice_virt_id_taken_and_device_taken(fd: Iommufd) -> None:
    dev, parent = _setup(fd)
    assert parent.ioas is not None
    other = MockDevice(fd, parent.ioas)
    viommu = Viommu.alloc(fd, dev, parent, SELFTEST)
    vdev = viommu.vdevice_alloc(dev, 0x99)
    assert _errno(viommu.vdevice_alloc, other, 0x99) == errno.EEXIST  # virt id taken
    assert _errno(viommu.vdevice_alloc, dev, 0x98) == errno.EEXIST  # device has one
    second = viommu.vdevice_alloc(other, 0x98)
    assert second.id == vdev.id + 1  # the failed ones gave their ids back
    assert _errno(viommu.destroy) == errno.EBUSY  # vDEVICEs hold the vIOMMU
    second.destroy()
    vdev.destroy()
    viommu.destroy()


def test_veventq_and_hw_queue_failures_leave_nothing(fd: Iommufd) -> None:
    dev, parent = _setup(fd)
    assert parent.ioas is not None
    viommu = Viommu.alloc(fd, dev, parent, SELFTEST)
    q = viommu.veventq_alloc(uapi.IOMMU_VEVENTQ_TYPE_SELFTEST, 4)
    assert _errno(viommu.veventq_alloc, uapi.IOMMU_VEVENTQ_TYPE_SELFTEST, 4) == errno.EEXIST
    assert _errno(viommu.destroy) == errno.EBUSY
    assert _errno(fd.destroy, q.id) == errno.EBUSY  # its fd is open
    q.destroy()
    with Buffer(P) as buf:
        iova = parent.ioas.map(buf)
        # index 1 without index 0: the driver's EIO after the core pinned the page
        qtype = uapi.IOMMU_HW_QUEUE_TYPE_SELFTEST
        assert _errno(viommu.hw_queue_alloc, qtype, 1, iova, P) == errno.EIO
        parent.ioas.unmap(iova, P)  # the internal access let go of the page
        iova = parent.ioas.map(buf)
        hwq = viommu.hw_queue_alloc(qtype, 0, iova, P)
        assert hwq.id == q.id  # the failed queue and its access gave their ids back
        hwq.destroy()
        parent.ioas.unmap(iova, P)
    viommu.destroy()


def test_mmap_rules(fd: Iommufd) -> None:
    dev, parent = _setup(fd)
    viommu = Viommu.alloc(fd, dev, parent, SELFTEST, uapi.iommu_viommu_selftest(in_data=7))
    off, length = viommu.data.out_mmap_offset, viommu.data.out_mmap_length
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    h = fd.handle
    assert _errno(h.mmap, length, rw, mmap.MAP_PRIVATE, off) == errno.EINVAL
    assert _errno(h.mmap, length, rw | mmap.PROT_EXEC, mmap.MAP_SHARED, off) == errno.EPERM
    assert _errno(h.mmap, length, rw, mmap.MAP_SHARED, off - P) == errno.ENXIO
    m = h.mmap(length - 1, rw, mmap.MAP_SHARED, off)  # mmap(2) rounds the length up
    assert int.from_bytes(m[:4], "little") == 7
    m.close()
    viommu.destroy()
    with pytest.raises(IommufdError) as e:
        viommu.destroy()
    assert e.value.errno == errno.ENOENT


@pytest.mark.parametrize("on_viommu", [False, True], ids=["on_parent", "on_viommu"])
def test_no_dirty_device_attaches_nested_over_a_dirty_tracking_parent(
    fd: Iommufd, on_viommu: bool
) -> None:
    """The mock's attach checks the nested domain's own ``dirty_ops`` (none), never its
    parent's: a NO_DIRTY device goes onto a nested HWPT whose parent tracks dirty pages,
    though the parent itself refuses it (EINVAL). Found by the devices differential."""
    ioas = fd.ioas_alloc()
    dev = MockDevice(fd, ioas)
    flags = uapi.IOMMU_HWPT_ALLOC_NEST_PARENT | uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
    parent = HwPagetable.alloc(fd, dev, ioas, flags=flags)
    nodirty = MockDevice(fd, ioas, uapi.MOCK_FLAGS_DEVICE_NO_DIRTY)
    assert _errno(nodirty.replace, parent) == errno.EINVAL
    pt: HwPagetable | Viommu = parent
    if on_viommu:
        viommu = Viommu.alloc(fd, dev, parent, SELFTEST)
        viommu.vdevice_alloc(nodirty, 0x77)  # the mock attaches only a device it knows
        pt = viommu
    nested = HwPagetable.alloc(
        fd, nodirty, pt, data=uapi.iommu_hwpt_selftest(iotlb=uapi.IOMMU_TEST_IOTLB_DEFAULT)
    )
    nodirty.replace(nested)
    nodirty.replace(ioas)
