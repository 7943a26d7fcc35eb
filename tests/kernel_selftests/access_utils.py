"""The access-object helpers of ``iommufd_utils.h`` and ``iommufd.c`` (Linux 7.3):
``_test_cmd_create_access``, ``_test_cmd_destroy_access`` (a plain ``close``),
``_test_cmd_destroy_access_pages``, ``_test_cmd_access_replace_ioas`` and
``check_access_rw``.

An access is named by the fd CREATE_ACCESS returns; ``close(fd)`` destroys it. That is a
plain ``os.close`` on both backends (the simulated kernel notices closed access fds the
next time it is entered, see ``ioasid.kernel.anon_inode``).

The kselftest harness runs every test in its own process, whose exit closes whatever
access fd a test leaves open (``access_pin_unmap`` never closes its own). The
:class:`AccessFixture` mixin does that in ``teardown`` before the iommufd is torn down.
"""

from __future__ import annotations

import ctypes
import os
import random
from typing import Any

from ioasid import uapi
from ioasid.backends.base import Handle

from .utils import BUFFER_SIZE, PAGE_SIZE, Fixture, buffer_mem, expect_errno, ioctl


def _test_cmd_create_access(fd: Handle, ioas_id: int, flags: int) -> int:
    """Returns ``create_access.out_access_fd``."""
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_CREATE_ACCESS
    cmd.id = ioas_id
    cmd.create_access.flags = flags
    ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)
    return int(cmd.create_access.out_access_fd)


def _test_cmd_destroy_access(access_id: int) -> int:
    """``close(access_id)``."""
    os.close(access_id)
    return 0


def _test_cmd_destroy_access_pages(fd: Handle, access_id: int, access_pages_id: int) -> int:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES
    cmd.id = access_id
    cmd.destroy_access_pages.access_pages_id = access_pages_id
    return ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


def _test_cmd_access_replace_ioas(fd: Handle, access_id: int, ioas_id: int) -> int:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS
    cmd.id = access_id
    cmd.access_replace_ioas.ioas_id = ioas_id
    return ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


def access_pages_cmd(access_id: int = 0, iova: int = 0, length: int = 0, uptr: int = 0) -> Any:
    """``struct iommu_test_cmd`` for IOMMU_TEST_OP_ACCESS_PAGES, as the tests declare it."""
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_ACCESS_PAGES
    cmd.id = access_id
    cmd.access_pages.iova = iova
    cmd.access_pages.length = length
    cmd.access_pages.uptr = uptr
    return cmd


class AccessFixture(Fixture):
    """The ``self->fd`` macros of the access helpers, plus the per-test process exit.
    Mix in after the concrete fixture: ``class F(IommufdIoas, AccessFixture)``."""

    access_fds: list[int]

    def test_cmd_create_access(self, ioas_id: int, flags: int) -> int:
        access_id = _test_cmd_create_access(self._fd, ioas_id, flags)
        self.access_fds.append(access_id)
        return access_id

    def test_cmd_destroy_access(self, access_id: int) -> None:
        self.access_fds.remove(access_id)
        assert _test_cmd_destroy_access(access_id) == 0

    def test_cmd_destroy_access_pages(self, access_id: int, access_pages_id: int) -> None:
        assert _test_cmd_destroy_access_pages(self._fd, access_id, access_pages_id) == 0

    def test_err_destroy_access_pages(self, err: int, access_id: int, pages_id: int) -> None:
        with expect_errno(err):
            _test_cmd_destroy_access_pages(self._fd, access_id, pages_id)

    def test_cmd_access_replace_ioas(self, access_id: int, ioas_id: int) -> None:
        assert _test_cmd_access_replace_ioas(self._fd, access_id, ioas_id) == 0

    def close_leaked_access_fds(self) -> None:
        """What the exit of the kselftest's per-test process does to open access fds."""
        while self.access_fds:
            os.close(self.access_fds.pop())


def check_access_rw(fd: Handle, access_id: int, iova: int, def_flags: int) -> None:
    """``check_access_rw()``: fill ``buffer`` with random u16s, then read and write it
    through the access at every (iova, length) around the page boundary at
    ``iova + PAGE_SIZE``, comparing with ``buffer``; then one read of all of it."""
    rng = random.Random()
    tmp = (ctypes.c_uint16 * 32)()
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_ACCESS_RW
    cmd.id = access_id
    cmd.access_rw.uptr = ctypes.addressof(tmp)

    buffer_mem[:] = rng.randbytes(BUFFER_SIZE)

    rw = cmd.access_rw
    for rw_iova in range(iova + PAGE_SIZE - 50, iova + PAGE_SIZE + 50):
        rw.iova = rw_iova
        off = rw_iova - iova
        for length in range(1, ctypes.sizeof(tmp)):
            rw.length = length
            rw.flags = def_flags
            assert ioctl(fd, uapi.IOMMU_TEST_CMD, cmd) == 0
            assert bytes(buffer_mem[off : off + length]) == bytes(tmp)[:length], (
                f"read at iova {rw_iova:#x} length {length}"
            )

            ctypes.memmove(tmp, rng.randbytes(ctypes.sizeof(tmp)), ctypes.sizeof(tmp))
            rw.flags = def_flags | uapi.MOCK_ACCESS_RW_WRITE
            assert ioctl(fd, uapi.IOMMU_TEST_CMD, cmd) == 0
            assert bytes(buffer_mem[off : off + length]) == bytes(tmp)[:length], (
                f"write at iova {rw_iova:#x} length {length}"
            )

    # Multi-page test
    tmp2 = ctypes.create_string_buffer(BUFFER_SIZE)
    rw.iova = iova
    rw.length = BUFFER_SIZE
    rw.flags = def_flags
    rw.uptr = ctypes.addressof(tmp2)
    assert ioctl(fd, uapi.IOMMU_TEST_CMD, cmd) == 0
    assert bytes(buffer_mem) == tmp2.raw
