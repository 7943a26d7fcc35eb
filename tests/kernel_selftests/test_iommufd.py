"""``FIXTURE(iommufd)`` of ``tools/testing/selftests/iommu/iommufd.c`` (Linux 7.3), every test.

Setup opens ``/dev/iommu``; teardown is ``teardown_iommufd``.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator
from types import ModuleType

import pytest

from ioasid import uapi
from ioasid.uapi._abi import _IO

from .utils import (
    PAGE_SIZE,
    Fixture,
    _test_ioctl_destroy,
    buffer,
    expect_errno,
)

pytestmark = pytest.mark.oracle


@pytest.fixture
def self(backend: ModuleType) -> Iterator[Fixture]:
    """FIXTURE_SETUP(iommufd) / FIXTURE_TEARDOWN(iommufd)."""
    fixture = Fixture(backend)
    yield fixture
    fixture.teardown()


def test_iommufd__simple_close(self: Fixture) -> None:
    pass


def test_iommufd__cmd_fail(self: Fixture) -> None:
    cmd = uapi.iommu_destroy(size=ctypes.sizeof(uapi.iommu_destroy), id=0)

    # object id is invalid
    with expect_errno(errno.ENOENT):
        _test_ioctl_destroy(self._fd, 0)
    # Bad pointer
    with expect_errno(errno.EFAULT):
        self.ioctl(uapi.IOMMU_DESTROY, 0)
    # Unknown ioctl
    with expect_errno(errno.ENOTTY):
        self.ioctl(_IO(uapi.IOMMUFD_TYPE, uapi.IOMMUFD_CMD_BASE - 1), cmd)


def _test_length(self: Fixture, struct: type[uapi.Struct], request: int, last: str) -> None:
    """``TEST_LENGTH(_struct, _ioctl, _last)``: the command is ``struct _struct`` followed
    by one byte ``extra``."""
    min_size = struct.offsetofend(last)
    size = ctypes.sizeof(struct)
    cmd = bytearray(size + 1)

    def set_size(n: int) -> None:
        cmd[0:4] = n.to_bytes(4, "little")

    set_size(min_size - 1)
    cmd[size] = 0xFF  # extra = UINT8_MAX
    with expect_errno(errno.EINVAL):
        self.ioctl(request, cmd)
    set_size(size + 1)
    with expect_errno(errno.E2BIG):
        self.ioctl(request, cmd)
    set_size(size)
    old_errno = 0
    try:
        rc = self.ioctl(request, cmd)
    except OSError as e:
        rc, old_errno = -1, e.errno or 0
    set_size(size + 1)
    cmd[size] = 0
    if rc:
        with expect_errno(old_errno):
            self.ioctl(request, cmd)
    else:
        assert self.ioctl(request, cmd) == 0


def test_iommufd__cmd_length(self: Fixture) -> None:
    _test_length(self, uapi.iommu_destroy, uapi.IOMMU_DESTROY, "id")
    _test_length(self, uapi.iommu_hw_info, uapi.IOMMU_GET_HW_INFO, "reserved")
    _test_length(self, uapi.iommu_hwpt_alloc, uapi.IOMMU_HWPT_ALLOC, "reserved")
    _test_length(self, uapi.iommu_hwpt_invalidate, uapi.IOMMU_HWPT_INVALIDATE, "reserved")
    _test_length(self, uapi.iommu_ioas_alloc, uapi.IOMMU_IOAS_ALLOC, "out_ioas_id")
    _test_length(
        self, uapi.iommu_ioas_iova_ranges, uapi.IOMMU_IOAS_IOVA_RANGES, "out_iova_alignment"
    )
    _test_length(self, uapi.iommu_ioas_allow_iovas, uapi.IOMMU_IOAS_ALLOW_IOVAS, "allowed_iovas")
    _test_length(self, uapi.iommu_ioas_map, uapi.IOMMU_IOAS_MAP, "iova")
    _test_length(self, uapi.iommu_ioas_copy, uapi.IOMMU_IOAS_COPY, "src_iova")
    _test_length(self, uapi.iommu_ioas_unmap, uapi.IOMMU_IOAS_UNMAP, "length")
    _test_length(self, uapi.iommu_option, uapi.IOMMU_OPTION, "val64")
    _test_length(self, uapi.iommu_vfio_ioas, uapi.IOMMU_VFIO_IOAS, "reserved")
    _test_length(self, uapi.iommu_ioas_map_file, uapi.IOMMU_IOAS_MAP_FILE, "iova")
    _test_length(self, uapi.iommu_viommu_alloc, uapi.IOMMU_VIOMMU_ALLOC, "out_viommu_id")
    _test_length(self, uapi.iommu_vdevice_alloc, uapi.IOMMU_VDEVICE_ALLOC, "virt_id")
    _test_length(self, uapi.iommu_ioas_change_process, uapi.IOMMU_IOAS_CHANGE_PROCESS, "reserved")


class _destroy_ex(uapi.Struct):
    """``struct { struct iommu_destroy cmd; __u64 future; }``."""

    _fields_ = [("cmd", uapi.iommu_destroy), ("future", ctypes.c_uint64)]


def test_iommufd__cmd_ex_fail(self: Fixture) -> None:
    cmd = _destroy_ex()
    cmd.cmd.size = ctypes.sizeof(cmd)
    cmd.cmd.id = 0

    # object id is invalid and command is longer
    with expect_errno(errno.ENOENT):
        self.ioctl(uapi.IOMMU_DESTROY, cmd)
    # future area is non-zero
    cmd.future = 1
    with expect_errno(errno.E2BIG):
        self.ioctl(uapi.IOMMU_DESTROY, cmd)
    # Original command "works"
    cmd.cmd.size = ctypes.sizeof(cmd.cmd)
    with expect_errno(errno.ENOENT):
        self.ioctl(uapi.IOMMU_DESTROY, cmd)
    # Short command fails
    cmd.cmd.size = ctypes.sizeof(cmd.cmd) - 1
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.IOMMU_DESTROY, cmd)


def test_iommufd__global_options(self: Fixture) -> None:
    cmd = uapi.iommu_option(
        size=ctypes.sizeof(uapi.iommu_option),
        option_id=uapi.IOMMU_OPTION_RLIMIT_MODE,
        op=uapi.IOMMU_OPTION_OP_GET,
        val64=1,
    )

    cmd.option_id = uapi.IOMMU_OPTION_RLIMIT_MODE
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0
    assert cmd.val64 == 0

    # This requires root
    cmd.op = uapi.IOMMU_OPTION_OP_SET
    cmd.val64 = 1
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0
    cmd.val64 = 2
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.IOMMU_OPTION, cmd)

    cmd.op = uapi.IOMMU_OPTION_OP_GET
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0
    assert cmd.val64 == 1

    cmd.op = uapi.IOMMU_OPTION_OP_SET
    cmd.val64 = 0
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0

    cmd.op = uapi.IOMMU_OPTION_OP_GET
    cmd.option_id = uapi.IOMMU_OPTION_HUGE_PAGES
    with expect_errno(errno.ENOENT):
        self.ioctl(uapi.IOMMU_OPTION, cmd)
    cmd.op = uapi.IOMMU_OPTION_OP_SET
    with expect_errno(errno.ENOENT):
        self.ioctl(uapi.IOMMU_OPTION, cmd)


# VFIO compatibility IOCTLs


def test_iommufd__simple_ioctls(self: Fixture) -> None:
    assert self.ioctl(uapi.VFIO_GET_API_VERSION) == uapi.VFIO_API_VERSION
    assert self.ioctl(uapi.VFIO_CHECK_EXTENSION, uapi.VFIO_TYPE1v2_IOMMU) == 1


def test_iommufd__unmap_cmd(self: Fixture) -> None:
    unmap_cmd = uapi.vfio_iommu_type1_dma_unmap(iova=uapi.MOCK_APERTURE_START, size=PAGE_SIZE)

    unmap_cmd.argsz = 1
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd)

    unmap_cmd.argsz = ctypes.sizeof(unmap_cmd)
    unmap_cmd.flags = 1 << 31
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd)

    unmap_cmd.flags = 0
    with expect_errno(errno.ENODEV):
        self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd)


def test_iommufd__map_cmd(self: Fixture) -> None:
    map_cmd = uapi.vfio_iommu_type1_dma_map(
        iova=uapi.MOCK_APERTURE_START, size=PAGE_SIZE, vaddr=buffer
    )

    map_cmd.argsz = 1
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.VFIO_IOMMU_MAP_DMA, map_cmd)

    map_cmd.argsz = ctypes.sizeof(map_cmd)
    map_cmd.flags = 1 << 31
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.VFIO_IOMMU_MAP_DMA, map_cmd)

    # Requires a domain to be attached
    map_cmd.flags = uapi.VFIO_DMA_MAP_FLAG_READ | uapi.VFIO_DMA_MAP_FLAG_WRITE
    with expect_errno(errno.ENODEV):
        self.ioctl(uapi.VFIO_IOMMU_MAP_DMA, map_cmd)


def test_iommufd__info_cmd(self: Fixture) -> None:
    info_cmd = uapi.vfio_iommu_type1_info()

    # Invalid argsz
    info_cmd.argsz = 1
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.VFIO_IOMMU_GET_INFO, info_cmd)

    info_cmd.argsz = ctypes.sizeof(info_cmd)
    with expect_errno(errno.ENODEV):
        self.ioctl(uapi.VFIO_IOMMU_GET_INFO, info_cmd)


def test_iommufd__set_iommu_cmd(self: Fixture) -> None:
    # Requires a domain to be attached
    with expect_errno(errno.ENODEV):
        self.ioctl(uapi.VFIO_SET_IOMMU, uapi.VFIO_TYPE1v2_IOMMU)
    with expect_errno(errno.ENODEV):
        self.ioctl(uapi.VFIO_SET_IOMMU, uapi.VFIO_TYPE1_IOMMU)


def test_iommufd__vfio_ioas(self: Fixture) -> None:
    vfio_ioas_cmd = uapi.iommu_vfio_ioas(
        size=ctypes.sizeof(uapi.iommu_vfio_ioas), op=uapi.IOMMU_VFIO_IOAS_GET
    )

    # ENODEV if there is no compat ioas
    with expect_errno(errno.ENODEV):
        self.ioctl(uapi.IOMMU_VFIO_IOAS, vfio_ioas_cmd)

    # Invalid id for set
    vfio_ioas_cmd.op = uapi.IOMMU_VFIO_IOAS_SET
    with expect_errno(errno.ENOENT):
        self.ioctl(uapi.IOMMU_VFIO_IOAS, vfio_ioas_cmd)

    # Valid id for set
    ioas_id = self.test_ioctl_ioas_alloc()
    vfio_ioas_cmd.ioas_id = ioas_id
    assert self.ioctl(uapi.IOMMU_VFIO_IOAS, vfio_ioas_cmd) == 0

    # Same id comes back from get
    vfio_ioas_cmd.op = uapi.IOMMU_VFIO_IOAS_GET
    assert self.ioctl(uapi.IOMMU_VFIO_IOAS, vfio_ioas_cmd) == 0
    assert vfio_ioas_cmd.ioas_id == ioas_id

    # Clear works
    vfio_ioas_cmd.op = uapi.IOMMU_VFIO_IOAS_CLEAR
    assert self.ioctl(uapi.IOMMU_VFIO_IOAS, vfio_ioas_cmd) == 0
    vfio_ioas_cmd.op = uapi.IOMMU_VFIO_IOAS_GET
    with expect_errno(errno.ENODEV):
        self.ioctl(uapi.IOMMU_VFIO_IOAS, vfio_ioas_cmd)
