"""IOMMU groups on the simulated host: DMA ownership, one HWPT per group, PASID, and DMA
that the PCI fabric routes peer to peer without the IOMMU."""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioasid import Buffer, Device, Iommufd, IommufdError, uapi
from ioasid.backends import sim
from ioasid.kernel.machine import Kernel
from ioasid.testing.edu import dma, enable_bus_master
from ioasid.topology import Bdf

# Root port 1 (ACS) → switch whose downstream ports have no ACS → two accelerators.
# Root port 2 (ACS) → a two-function card without ACS, both functions for user space.
# Root port 3 (ACS) → a PASID-capable accelerator.
TOPOLOGY = """
devices:
  - {bdf: "0000:00:01.0", id: "8086:2030", class: "0604", pcie_type: root_port,
     parent: root_bus, acs: {cap: 0x5f, ctl: 0}, driver: pcieport}
  - {bdf: "0000:00:02.0", id: "8086:2031", class: "0604", pcie_type: root_port,
     parent: root_bus, acs: {cap: 0x5f, ctl: 0}, driver: pcieport}
  - {bdf: "0000:00:03.0", id: "8086:2032", class: "0604", pcie_type: root_port,
     parent: root_bus, acs: {cap: 0x5f, ctl: 0}, driver: pcieport}
  - {bdf: "0000:01:00.0", id: "1b21:1184", class: "0604", pcie_type: upstream_port,
     parent: "0000:00:01.0", driver: pcieport}
  - {bdf: "0000:02:01.0", id: "1b21:1184", class: "0604", pcie_type: downstream_port,
     parent: "0000:01:00.0", driver: pcieport}
  - {bdf: "0000:02:02.0", id: "1b21:1184", class: "0604", pcie_type: downstream_port,
     parent: "0000:01:00.0", driver: pcieport}
  - {bdf: "0000:03:00.0", id: "10ee:9038", class: "1200", pcie_type: endpoint,
     parent: "0000:02:01.0", driver: vfio-pci}
  - {bdf: "0000:04:00.0", id: "10ee:9038", class: "1200", pcie_type: endpoint,
     parent: "0000:02:02.0", driver: vfio-pci}
  - {bdf: "0000:05:00.0", id: "15b3:1017", class: "0200", pcie_type: endpoint,
     parent: "0000:00:02.0", multifunction: true, driver: vfio-pci}
  - {bdf: "0000:05:00.1", id: "15b3:1017", class: "0200", pcie_type: endpoint,
     parent: "0000:00:02.0", multifunction: true, driver: vfio-pci}
  - {bdf: "0000:06:00.0", id: "8086:0b25", class: "0880", pcie_type: endpoint,
     parent: "0000:00:03.0", driver: vfio-pci, pasid: {max_width: 20}}
"""
# vfio0 = 03:00.0, vfio1 = 04:00.0, vfio2 = 05:00.0, vfio3 = 05:00.1, vfio4 = 06:00.0
BAR0 = uapi.VFIO_PCI_BAR0_REGION_INDEX
CONFIG = uapi.VFIO_PCI_CONFIG_REGION_INDEX


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Kernel]:
    path = tmp_path / "host.yaml"
    path.write_text(TOPOLOGY)
    yield sim.reset(path)


def dev_path(n: int) -> str:
    return f"/dev/vfio/devices/vfio{n}"


def bar0_address(dev: Device) -> int:
    return int(struct.unpack("<I", dev.read(CONFIG, 0x10, 4))[0]) & ~0xF


def test_groups_follow_the_kernel(host: Kernel) -> None:
    groups = {tuple(g.members) for g in host.groups.values()}
    # each downstream port takes its endpoint into its group (the ports lack ACS) ...
    assert ("0000:02:01.0", "0000:03:00.0") in groups
    assert ("0000:02:02.0", "0000:04:00.0") in groups
    # ... the two functions of a card without ACS share one, the PASID device is alone
    assert ("0000:05:00.0", "0000:05:00.1") in groups
    assert ("0000:06:00.0",) in groups


def test_kernel_driver_in_the_group_blocks_binding() -> None:
    sim.reset()  # default host: the T4 (vfio1) shares its group with snd_hda_intel audio
    with Iommufd() as fd, pytest.raises(IommufdError) as e:
        Device(fd, dev_path(1))
    assert e.value.errno == errno.EPERM
    assert "snd_hda_intel" in str(e.value)
    with Iommufd() as fd, Device(fd, dev_path(0)) as edu:
        assert edu.id == 1  # the failed bind left no object behind


def test_a_group_has_one_owner(host: Kernel) -> None:
    with Iommufd() as fd1, Iommufd() as fd2:
        a = Device(fd1, dev_path(2))
        with pytest.raises(IommufdError) as e:
            Device(fd2, dev_path(3))
        assert e.value.errno == errno.EPERM
        b = Device(fd1, dev_path(3))  # same iommufd: shared ownership
        a.close()
        with pytest.raises(IommufdError):
            Device(fd2, dev_path(2))  # b still holds the group for fd1
        b.close()
        Device(fd2, dev_path(2)).close()  # released: another iommufd may take it now


def test_a_group_uses_one_hwpt(host: Kernel) -> None:
    with Iommufd() as fd, Device(fd, dev_path(2)) as a, Device(fd, dev_path(3)) as b:
        ioas, other = fd.ioas_alloc(), fd.ioas_alloc()
        hwpt = a.attach(ioas)
        assert b.attach(ioas).id == hwpt.id  # the group's auto domain is reused
        with pytest.raises(IommufdError) as e:
            b.attach(other)
        assert e.value.errno == errno.EINVAL
        assert b.attach(hwpt).id == hwpt.id


def test_pasid_needs_an_acs_path(host: Kernel) -> None:
    with Iommufd() as fd, Device(fd, dev_path(4)) as acc, Device(fd, dev_path(0)) as behind:
        assert acc.hw_info().max_pasid_log2 == 20
        assert behind.hw_info().max_pasid_log2 == 0  # no PASID capability, no ACS path


def test_p2p_through_a_switch_without_acs_bypasses_the_iommu(host: Kernel) -> None:
    with (
        Iommufd() as fd,
        Device(fd, dev_path(0)) as a,
        Device(fd, dev_path(1)) as b,
        Buffer(4096) as ram,
    ):
        ioas = fd.ioas_alloc()
        a.attach(ioas)
        b.attach(ioas)
        ram[0:8] = b"from RAM"
        iova = ioas.map(ram, iova=0x100000)
        enable_bus_master(a)
        dma(a, iova, 0x40000, 8, to_ram=False)  # RAM → a's buffer, through the IOMMU
        assert a.read(BAR0, 0x40000, 8) == b"from RAM"
        peer = bar0_address(b) + 0x40000
        dma(a, 0x40000, peer, 8, to_ram=True)  # a → b's BAR: an address nobody mapped
        assert b.read(BAR0, 0x40000, 8) == b"from RAM"
        assert host.fabric.log[-1][:2] == (
            host.fabric.functions[a_bdf()].bdf,
            host.fabric.functions[b_bdf()].bdf,
        )


def test_p2p_across_acs_root_ports_is_translated_and_faults(host: Kernel) -> None:
    with Iommufd() as fd, Device(fd, dev_path(4)) as acc, Device(fd, dev_path(0)) as a:
        ioas = fd.ioas_alloc()
        acc.attach(ioas)
        a.attach(ioas)
        acc.write(BAR0, 0x40000, b"secret!!")
        peer = bar0_address(a) + 0x40000
        enable_bus_master(acc)
        dma(acc, 0x40000, peer, 8, to_ram=True)  # goes up to the IOMMU: not mapped
        assert a.read(BAR0, 0x40000, 8) == bytes(8)
        model = host.fabric.functions[acc_bdf()]
        assert model.faults and model.faults[-1].record.iova == peer


def a_bdf() -> Bdf:
    return Bdf.parse("0000:03:00.0")


def b_bdf() -> Bdf:
    return Bdf.parse("0000:04:00.0")


def acc_bdf() -> Bdf:
    return Bdf.parse("0000:06:00.0")
