"""vIOMMU, vDEVICE, vEVENTQ, HW queue, nested HWPTs, fault queues and dirty tracking
through the public API, on the mock driver — on both backends."""

from __future__ import annotations

import ctypes
import errno

import numpy as np
import pytest

from ioasid import Buffer, Iommufd, IommufdError, uapi
from ioasid.api import FaultQueue, HwPagetable, InvalidateError, MockDevice, Viommu
from ioasid.uapi import MOCK_APERTURE_START

pytestmark = pytest.mark.oracle
P = 4096
SELFTEST = uapi.IOMMU_VIOMMU_TYPE_SELFTEST


@pytest.fixture
def fd(iommufd: Iommufd) -> Iommufd:
    """The plugin's ``iommufd`` fixture, under the short name these tests use."""
    return iommufd


def _test_cmd(fd: Iommufd, op: int, name: str, obj_id: int = 0, **fields: int) -> None:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd), op=op, id=obj_id)
    for path, value in fields.items():
        member, _, field = path.partition("__")
        setattr(getattr(cmd, member), field, value)
    fd.ioctl(uapi.IOMMU_TEST_CMD, cmd, name)


def _setup(fd: Iommufd) -> tuple[MockDevice, HwPagetable, Viommu]:
    ioas = fd.ioas_alloc()
    dev = MockDevice(fd, ioas)
    parent = HwPagetable.alloc(fd, dev, ioas, flags=uapi.IOMMU_HWPT_ALLOC_NEST_PARENT)
    viommu = Viommu.alloc(fd, dev, parent, SELFTEST, uapi.iommu_viommu_selftest(in_data=0xBEEF))
    return dev, parent, viommu


def test_viommu_with_data_maps_its_page_and_pins_itself(fd: Iommufd) -> None:
    _, parent, viommu = _setup(fd)
    assert viommu.data.out_data == 0xBEEF and viommu.data.out_mmap_length == 2 * P
    page = viommu.mmap()
    assert int.from_bytes(page[:4], "little") == 0xBEEF
    with pytest.raises(IommufdError) as e:
        viommu.destroy()
    assert e.value.errno == errno.EBUSY
    with pytest.raises(OSError) as os_e:
        viommu.mmap(viommu.data.out_mmap_offset + P)
    assert os_e.value.errno == errno.ENXIO
    page.close()
    viommu.destroy()
    parent.destroy()


def test_vdevice_nested_attach_and_vevents(fd: Iommufd) -> None:
    dev, parent, viommu = _setup(fd)
    s1 = viommu.hwpt_alloc(dev, uapi.iommu_hwpt_selftest(iotlb=uapi.IOMMU_TEST_IOTLB_DEFAULT))
    assert s1.nested and parent.ioas is not None
    with pytest.raises(IommufdError) as e:
        dev.replace(s1)  # no vDEVICE yet
    assert e.value.errno == errno.ENOENT
    q = viommu.veventq_alloc(uapi.IOMMU_VEVENTQ_TYPE_SELFTEST, depth=2)
    vdev = viommu.vdevice_alloc(dev, 0x42)
    dev.replace(s1)
    assert not q.poll(0)
    for _ in range(3):
        _test_cmd(
            fd, uapi.IOMMU_TEST_OP_TRIGGER_VEVENT, "TRIGGER_VEVENT", trigger_vevent__dev_id=dev.id
        )
    assert q.poll(1.0)
    events = list(q.events(timeout=0))
    assert [ev.lost_events for ev in events] == [False, False, True]
    assert [ev.sequence for ev in events] == [0, 1, 2]
    payload = uapi.iommu_viommu_event_selftest.from_bytes(events[0].data)
    assert payload.virt_id == 0x42
    with pytest.raises(IommufdError) as e:
        viommu.vdevice_alloc(dev, 0x43)  # one vDEVICE per device
    assert e.value.errno == errno.EEXIST
    q.destroy()
    dev.replace(parent.ioas)
    vdev.destroy()


def test_invalidate_reports_entries_done(fd: Iommufd) -> None:
    dev, _, viommu = _setup(fd)
    viommu.vdevice_alloc(dev, 0x99)
    good = uapi.iommu_viommu_invalidate_selftest(vdev_id=0x99, cache_id=0)
    bad = uapi.iommu_viommu_invalidate_selftest(vdev_id=0x99, cache_id=7)
    assert viommu.invalidate([good]) == 1
    with pytest.raises(InvalidateError) as e:
        viommu.invalidate([good, bad, good])
    assert e.value.errno == errno.EINVAL and e.value.done == 1
    assert viommu.invalidate([], uapi.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) == 0


def test_hw_queue_locks_its_memory(fd: Iommufd) -> None:
    _, parent, viommu = _setup(fd)
    assert parent.ioas is not None
    with Buffer(P) as buf:
        iova = parent.ioas.map(buf)
        q = viommu.hw_queue_alloc(uapi.IOMMU_HW_QUEUE_TYPE_SELFTEST, 0, iova, P)
        with pytest.raises(IommufdError) as e:
            parent.ioas.unmap(iova, P)
        assert e.value.errno == errno.EBUSY
        q.destroy()
        parent.ioas.unmap(iova, P)


def test_fault_queue_reads_and_answers_page_requests(fd: Iommufd) -> None:
    dev, parent, viommu = _setup(fd)
    assert parent.ioas is not None
    viommu.vdevice_alloc(dev, 0x99)
    with FaultQueue.alloc(fd) as fq:
        s1 = viommu.hwpt_alloc(
            dev, uapi.iommu_hwpt_selftest(iotlb=uapi.IOMMU_TEST_IOTLB_DEFAULT), fault=fq
        )
        dev.replace(s1)
        assert fq.read() == []
        _test_cmd(
            fd,
            uapi.IOMMU_TEST_OP_TRIGGER_IOPF,
            "TRIGGER_IOPF",
            trigger_iopf__dev_id=dev.id,
            trigger_iopf__grpid=3,
            trigger_iopf__perm=uapi.IOMMU_PGFAULT_PERM_READ,
            trigger_iopf__addr=0x1000,
        )
        (fault,) = fq.read()
        assert (fault.dev_id, fault.grpid, fault.addr, fault.last_page) == (dev.id, 3, 0x1000, True)
        fq.respond(fault)
        with pytest.raises(IommufdError) as e:
            fq.respond(fault)  # answered already
        assert e.value.errno == errno.EINVAL
        dev.replace(parent.ioas)
        s1.destroy()


def test_dirty_tracking_migration_loop(fd: Iommufd) -> None:
    ioas = fd.ioas_alloc()
    ioas.huge_pages = False  # one IOPTE per page, whatever the memory's physical layout
    dev = MockDevice(fd, ioas)
    hwpt = HwPagetable.alloc(fd, dev, ioas, flags=uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
    dev.replace(hwpt)
    with Buffer(16 * P) as buf:
        iova = ioas.map(buf, iova=MOCK_APERTURE_START)
        hwpt.set_dirty_tracking(True)
        assert not hwpt.dirty_bitmap(iova, 16 * P).any()
        # the "device" dirties pages 1 and 5 (IOMMU_TEST_OP_DIRTY sets the IOPTE D bits)
        bits = np.zeros(2, dtype=np.uint8)
        bits[0] = 0b0010_0010
        _test_cmd(
            fd,
            uapi.IOMMU_TEST_OP_DIRTY,
            "DIRTY",
            hwpt.id,
            dirty__iova=iova,
            dirty__length=16 * P,
            dirty__page_size=P,
            dirty__uptr=bits.ctypes.data,
        )
        dirty = hwpt.dirty_bitmap(iova, 16 * P, no_clear=True)
        assert list(np.flatnonzero(dirty)) == [1, 5]
        assert list(np.flatnonzero(hwpt.dirty_bitmap(iova, 16 * P))) == [1, 5]
        assert not hwpt.dirty_bitmap(iova, 16 * P).any()  # read-and-clear
        hwpt.set_dirty_tracking(False)
        dev.replace(ioas)
        ioas.unmap_all()
