"""``FIXTURE(iommufd_ioas)`` of ``tools/testing/selftests/iommu/iommufd.c`` (Linux 7.3):
``dmabuf_simple`` and ``dmabuf_revoke`` for every variant of
:data:`test_iommufd_ioas.VARIANTS` — the mock dma-buf exporter (``IOMMU_TEST_OP_DMABUF_GET``
/ ``_REVOKE``) and ``IOMMU_IOAS_MAP_FILE`` of a dma-buf.

The 7.3 mock has a bug: ``iommufd_test_dmabuf_get`` installs the new dma-buf fd and then
returns 0 instead of it, so the kernel's own tests map fd 0 and fail (8 FAILs in
``results.tsv``). ``test_cmd_get_dmabuf`` here checks what each backend answers: on the
real kernel the ioctl returns 0 *and* a new ``/dmabuf:`` fd appears (the bug, documented);
on ``sim`` it returns that new fd (the intended behaviour). The rest of each test then runs
on the dma-buf fd that was really created, on both backends.

Registered as ``test_iommufd_ioas__<variant>__<name>``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from ioasid import uapi

from .test_iommufd_ioas import VARIANTS, IommufdIoas
from .utils import PAGE_SIZE, TEST_F, ioctl

pytestmark = pytest.mark.oracle


def _fds() -> dict[int, str]:
    """This process's descriptors and what they are (the directory listing's own
    descriptor is gone by the time it is read, and left out)."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


class IommufdIoasDmabuf(IommufdIoas):
    """``FIXTURE(iommufd_ioas)`` with the dma-buf helpers."""

    def test_cmd_get_dmabuf(self, length: int) -> int:
        """``test_cmd_get_dmabuf(len, &dfd)`` with the kernel's answer checked (module
        docstring). Returns the dma-buf fd."""
        cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
        cmd.op = uapi.IOMMU_TEST_OP_DMABUF_GET
        cmd.dmabuf_get.length = length
        cmd.dmabuf_get.open_flags = os.O_CLOEXEC
        before = _fds()
        rc = ioctl(self._fd, uapi.IOMMU_TEST_CMD, cmd)
        after = _fds()
        new = sorted(fd for fd, what in after.items() if before.get(fd) != what)
        if self.backend.NAME == "linux":
            # Linux 7.3: the fd is installed but the ioctl answers 0
            assert rc == 0, f"DMABUF_GET returned {rc}: the 7.3 bug (returning 0) is fixed"
            dmabufs = [fd for fd in new if after[fd].startswith("/dmabuf:")]
            assert len(dmabufs) == 1, f"new fds {new}: expected one dma-buf"
            return dmabufs[0]
        assert rc > 0 and rc in new, f"DMABUF_GET returned {rc}, new fds {new}"
        return rc

    def test_cmd_revoke_dmabuf(self, dmabuf_fd: int, revoked: bool) -> None:
        cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
        cmd.op = uapi.IOMMU_TEST_OP_DMABUF_REVOKE
        cmd.dmabuf_revoke.dmabuf_fd = dmabuf_fd
        cmd.dmabuf_revoke.revoked = revoked
        assert ioctl(self._fd, uapi.IOMMU_TEST_CMD, cmd) == 0


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[IommufdIoasDmabuf]:
    fixture = IommufdIoasDmabuf(backend, request.function.variant)
    yield fixture
    fixture.teardown()


iommufd_ioas = TEST_F("iommufd_ioas", VARIANTS, globals())


@iommufd_ioas
def dmabuf_simple(self: IommufdIoasDmabuf) -> None:
    buf_size = PAGE_SIZE * 4
    dfd = self.test_cmd_get_dmabuf(buf_size)
    self.test_err_ioctl_ioas_map_file(errno.EINVAL, dfd, 0, 0)
    self.test_err_ioctl_ioas_map_file(errno.EINVAL, dfd, buf_size, buf_size)
    self.test_err_ioctl_ioas_map_file(errno.EINVAL, dfd, 0, buf_size + 1)
    self.test_ioctl_ioas_map_file(dfd, 0, buf_size)
    os.close(dfd)


@iommufd_ioas
def dmabuf_revoke(self: IommufdIoasDmabuf) -> None:
    buf_size = PAGE_SIZE * 4
    dfd = self.test_cmd_get_dmabuf(buf_size)
    iova = self.test_ioctl_ioas_map_file(dfd, 0, buf_size)
    self.test_cmd_revoke_dmabuf(dfd, True)

    if self.variant.mock_domains:
        self.test_cmd_hwpt_alloc(self.device_id, self.ioas_id, 0)

    self.test_err_ioctl_ioas_map_file(errno.ENODEV, dfd, 0, buf_size)

    self.test_cmd_revoke_dmabuf(dfd, False)
    self.test_ioctl_ioas_map_file(dfd, 0, buf_size)

    # restore the iova back
    self.test_ioctl_ioas_unmap(iova, buf_size)
    self.test_ioctl_ioas_map_fixed_file(dfd, 0, buf_size, iova)

    os.close(dfd)
