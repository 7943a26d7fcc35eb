"""Group DMA ownership on the real kernel, next to the simulator booted from the same sysfs.

The guest's ICH9 slot 1f (LPC 1f.0, SATA 1f.2, SMBus 1f.3) is one IOMMU group without ACS.
Two of its functions are given to vfio-pci; a group has one owner: the second function binds
to the same iommufd, never to another.
"""

from __future__ import annotations

import errno
import os
from types import ModuleType

import pytest

from ioasid import Device, Iommufd, IommufdError, backends
from ioasid.topology import from_sysfs

SATA, SMBUS = "0000:00:1f.2", "0000:00:1f.3"


def _bind_to_vfio(bdf: str) -> None:
    sysd = f"/sys/bus/pci/devices/{bdf}"
    if os.path.exists(sysd + "/vfio-dev"):
        return
    if os.path.exists(sysd + "/driver"):
        with open(sysd + "/driver/unbind", "w") as f:
            f.write(bdf)
    with open(sysd + "/driver_override", "w") as f:
        f.write("vfio-pci")
    with open("/sys/bus/pci/drivers_probe", "w") as f:
        f.write(bdf)


def _cdev(backend: ModuleType, bdf: str) -> str:
    if backend.NAME == "linux":
        return "/dev/vfio/devices/" + os.listdir(f"/sys/bus/pci/devices/{bdf}/vfio-dev")[0]
    kernel = backend.kernel()
    return next(v.path for v in kernel.vfio_devices if str(v.function.bdf) == bdf)


def _ownership(backend: ModuleType) -> tuple[int, int, int]:
    with Iommufd(backend) as a, Iommufd(backend) as b:
        first = Device(a, _cdev(backend, SATA))
        try:
            Device(b, _cdev(backend, SMBUS)).close()
            other = 0
        except IommufdError as exc:
            other = exc.errno or 0
        same = Device(a, _cdev(backend, SMBUS))
        same_id = same.id
        same.close()
        first.close()
        return first.id, other, same_id


@pytest.mark.guest
def test_one_owner_per_group_real_and_simulated() -> None:
    _bind_to_vfio(SATA)
    _bind_to_vfio(SMBUS)
    real = _ownership(backends.get("linux"))
    assert real == (1, errno.EPERM, 2)
    sim = backends.get("sim")
    sim.reset(from_sysfs("/sys"))
    assert _ownership(sim) == real
