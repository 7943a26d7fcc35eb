"""Mock devices and access objects through the public API, on both backends."""

from __future__ import annotations

import errno

import pytest

from ioasid import Buffer, Iommufd, IommufdError
from ioasid.api import Access, MockDevice
from ioasid.uapi import MOCK_APERTURE_START

pytestmark = pytest.mark.oracle
P = 4096


@pytest.fixture
def fd(iommufd: Iommufd) -> Iommufd:
    """The plugin's ``iommufd`` fixture, under the short name these tests use."""
    return iommufd


def test_mock_device_gets_an_auto_domain_and_moves(fd: Iommufd) -> None:
    ioas, other = fd.ioas_alloc(), fd.ioas_alloc()
    dev = MockDevice(fd, ioas)
    assert (dev.stdev_id, dev.id, dev.hwpt.id) == (3, 4, 5)
    r = ioas.iova_ranges()
    assert r.ranges[0].start == MOCK_APERTURE_START and r.alignment == 2048
    with pytest.raises(IommufdError) as e:
        ioas.destroy()
    assert e.value.errno == errno.EBUSY
    moved = dev.replace(other)
    assert moved.id == 6
    with pytest.raises(IommufdError) as e:
        fd.destroy(5)  # the old auto domain went with its last device
    assert e.value.errno == errno.ENOENT
    dev.destroy()
    ioas.destroy()


def test_access_pins_reads_and_is_unpinned_by_unmap(fd: Iommufd) -> None:
    ioas = fd.ioas_alloc()
    MockDevice(fd, ioas)
    with Buffer(4 * P) as buf, Access(fd, ioas) as acc:
        buf[0:5] = b"hello"
        iova = ioas.map(buf, iova=MOCK_APERTURE_START)
        assert acc.read(iova, 5) == b"hello"
        acc.write(iova + P, b"from the kernel", slow_path=True)
        assert buf[P : P + 15] == b"from the kernel"
        pin = acc.pin(iova, 2 * P, buf.address)
        assert ioas.unmap(iova, 4 * P) == 4 * P  # the access is told to unpin first
        with pytest.raises(IommufdError) as e:
            acc.unpin(pin)
        assert e.value.errno == errno.ENOENT
        with pytest.raises(IommufdError) as e:
            acc.read(iova, 1)
        assert e.value.errno == errno.ENOENT
