"""Bad input on a VFIO device cdev: the kernel's errno, on the simulator and the real kernel."""

from __future__ import annotations

import ctypes
import errno
import os
from types import ModuleType

import pytest

from ioasid import Device, Iommufd, IommufdError, uapi
from ioasid.testing import edu

pytestmark = pytest.mark.oracle


def _bind(handle: object, iommufd: int, argsz: int | None = None) -> int:
    cmd = uapi.vfio_device_bind_iommufd(
        argsz=ctypes.sizeof(uapi.vfio_device_bind_iommufd) if argsz is None else argsz,
        iommufd=iommufd,
    )
    buf = cmd.to_bytearray()
    try:
        handle.ioctl(uapi.VFIO_DEVICE_BIND_IOMMUFD, buf)  # type: ignore[attr-defined]
    except OSError as exc:
        return exc.errno or 0
    return 0


def test_bind_checks(backend: ModuleType) -> None:
    path = edu.cdev_path(backend)
    fd = Iommufd(backend)
    dev = backend.open(path)
    try:
        attach = uapi.vfio_device_attach_iommufd_pt(
            argsz=ctypes.sizeof(uapi.vfio_device_attach_iommufd_pt), pt_id=1
        ).to_bytearray()
        with pytest.raises(OSError) as e:  # nothing but BIND before BIND
            dev.ioctl(uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach)
        assert e.value.errno == errno.EINVAL
        assert _bind(dev, fd.fileno(), argsz=8) == errno.EINVAL  # below offsetofend(out_devid)
        assert _bind(dev, -1) == errno.EINVAL
        closed = os.dup(fd.fileno())
        os.close(closed)
        assert _bind(dev, closed) == errno.EBADF
        with open("/dev/null") as f:
            assert _bind(dev, f.fileno()) == errno.EBADFD  # an fd, but not an iommufd
        assert _bind(dev, fd.fileno()) == 0
        assert _bind(dev, fd.fileno()) == errno.EINVAL  # bound already
    finally:
        dev.close()
        fd.close()


def test_attach_checks(backend: ModuleType) -> None:
    with Iommufd(backend) as fd, Device(fd, edu.cdev_path(backend)) as dev:
        ioas = fd.ioas_alloc()
        for pt, err in ((ioas.id + 100, errno.ENOENT), (dev.id, errno.EINVAL), (0, errno.ENOENT)):
            with pytest.raises(IommufdError) as e:
                dev.attach(pt)
            assert e.value.errno == err, pt
        hwpt = dev.attach(ioas)
        with pytest.raises(IommufdError) as e:
            fd.destroy(ioas.id)  # the HWPT holds the IOAS
        assert e.value.errno == errno.EBUSY
        with pytest.raises(IommufdError) as e:
            fd.destroy(dev.id)  # the driver holds the device
        assert e.value.errno == errno.EBUSY
        with pytest.raises(IommufdError) as e:
            fd.destroy(hwpt.id)  # an auto domain in use
        assert e.value.errno == errno.EBUSY
        dev.detach()
        with pytest.raises(IommufdError) as e:
            fd.destroy(hwpt.id)  # gone with its last device
        assert e.value.errno == errno.ENOENT
        fd.destroy(ioas.id)


def test_closing_the_iommufd_first_keeps_the_device_bound(backend: ModuleType) -> None:
    fd = Iommufd(backend)
    dev = Device(fd, edu.cdev_path(backend))
    ioas = fd.ioas_alloc()
    dev.attach(ioas)
    fd.close()  # the bound device holds the iommufd's file: nothing is destroyed yet
    dev.detach()
    dev.close()  # last reference: the context goes now
    with Iommufd(backend) as again, Device(again, edu.cdev_path(backend)) as dev2:
        assert dev2.id == 1
