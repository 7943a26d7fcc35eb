"""``FIXTURE(change_process)`` of ``tools/testing/selftests/iommu/iommufd.c`` (Linux 7.3):
variants ``account_none`` / ``account_user`` / ``account_mm``, test ``basic``.

The test forks and reads the parent's and child's ``VmPin:`` / ``VmLck:`` from
``/proc/<pid>/status``: pinned-page accounting moves to the process that issues
``IOMMU_IOAS_CHANGE_PROCESS``. On ``sim`` the child is a simulated task and the
counters are the simulated kernel's (``ioasid.testing.process``); the body is the same.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

from ioasid import uapi
from ioasid.testing.process import getpid, run_in_child, vm_locked_kb, vm_pinned_kb

from .utils import (
    IOPT_PAGES_ACCOUNT_MM,
    IOPT_PAGES_ACCOUNT_NONE,
    IOPT_PAGES_ACCOUNT_USER,
    PAGE_SIZE,
    TEST_F,
    Fixture,
    buffer,
    expect_errno,
    mfd,
)

pytestmark = pytest.mark.oracle

CAP_IPC_LOCK = 14
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _cap_user_header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _cap_user_data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def _capget() -> tuple[_cap_user_header, ctypes.Array[_cap_user_data]]:
    header = _cap_user_header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_cap_user_data * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return header, data


def _capset(header: _cap_user_header, data: ctypes.Array[_cap_user_data]) -> None:
    if _libc.capset(ctypes.byref(header), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def drop_cap_ipc_lock() -> int:
    """``drop_cap_ipc_lock()``: clear CAP_IPC_LOCK from the effective set (libcap's
    cap_set_flag + cap_set_proc). Returns the previous effective word 0, so the test
    process can restore it (the C harness runs each test in its own child)."""
    header, data = _capget()
    saved = int(data[0].effective)
    data[0].effective &= ~(1 << CAP_IPC_LOCK)
    _capset(header, data)
    return saved


def _restore_effective(saved: int) -> None:
    header, data = _capget()
    data[0].effective = saved
    _capset(header, data)


@dataclass(frozen=True)
class Variant:
    """``FIXTURE_VARIANT(change_process)``."""

    accounting: int


VARIANTS = {
    "account_none": Variant(IOPT_PAGES_ACCOUNT_NONE),
    "account_user": Variant(IOPT_PAGES_ACCOUNT_USER),
    "account_mm": Variant(IOPT_PAGES_ACCOUNT_MM),
}


class ChangeProcess(Fixture):
    """``FIXTURE(change_process)``: fd, ioas_id."""

    def __init__(self, backend: ModuleType, variant: Variant) -> None:
        super().__init__(backend)
        self.variant = variant
        # FIXTURE_SETUP(change_process)
        self.saved_effective = drop_cap_ipc_lock()
        try:
            if variant.accounting != IOPT_PAGES_ACCOUNT_NONE:
                set_limit_cmd = uapi.iommu_option(
                    size=ctypes.sizeof(uapi.iommu_option),
                    option_id=uapi.IOMMU_OPTION_RLIMIT_MODE,
                    op=uapi.IOMMU_OPTION_OP_SET,
                    val64=int(variant.accounting == IOPT_PAGES_ACCOUNT_MM),
                )
                assert self.ioctl(uapi.IOMMU_OPTION, set_limit_cmd) == 0

            self.ioas_id = self.test_ioctl_ioas_alloc()
            self.test_cmd_mock_domain(self.ioas_id)
        except BaseException:
            _restore_effective(self.saved_effective)
            raise

    def teardown(self) -> None:
        """FIXTURE_TEARDOWN(change_process), then give the capability back."""
        try:
            super().teardown()
        finally:
            _restore_effective(self.saved_effective)


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[ChangeProcess]:
    fixture = ChangeProcess(backend, request.function.variant)
    yield fixture
    fixture.teardown()


change_process = TEST_F("change_process", VARIANTS, globals())


@change_process
def basic(self: ChangeProcess) -> None:
    be = self.backend
    parent = getpid(be)
    cmd = uapi.iommu_ioas_change_process(size=ctypes.sizeof(uapi.iommu_ioas_change_process))

    # Expect failure if non-file maps exist
    iova = self.test_ioctl_ioas_map(buffer, PAGE_SIZE)
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.IOMMU_IOAS_CHANGE_PROCESS, cmd)
    self.test_ioctl_ioas_unmap(iova, PAGE_SIZE)

    # Change process works in current process.
    iova = self.test_ioctl_ioas_map_file(mfd, 0, PAGE_SIZE)
    assert self.ioctl(uapi.IOMMU_IOAS_CHANGE_PROCESS, cmd) == 0

    # Change process works in another process
    def child() -> None:
        nlock = PAGE_SIZE // 1024

        # Parent accounts for locked memory before
        assert vm_pinned_kb(be, parent) == nlock
        if self.variant.accounting == IOPT_PAGES_ACCOUNT_MM:
            assert vm_locked_kb(be, parent) == nlock
        assert vm_pinned_kb(be, getpid(be)) == 0
        assert vm_locked_kb(be, getpid(be)) == 0

        assert self.ioctl(uapi.IOMMU_IOAS_CHANGE_PROCESS, cmd) == 0

        # Child accounts for locked memory after
        assert vm_pinned_kb(be, parent) == 0
        assert vm_locked_kb(be, parent) == 0
        assert vm_pinned_kb(be, getpid(be)) == nlock
        if self.variant.accounting == IOPT_PAGES_ACCOUNT_MM:
            assert vm_locked_kb(be, getpid(be)) == nlock

    run_in_child(be, child)
