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
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

from ioasid import uapi
from ioasid.testing.process import (
    drop_capability,
    getpid,
    restore_capabilities,
    run_in_child,
    vm_locked_kb,
    vm_pinned_kb,
)

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
        self.saved_effective = drop_capability()  # drop_cap_ipc_lock()
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
            restore_capabilities(self.saved_effective)
            raise

    def teardown(self) -> None:
        """FIXTURE_TEARDOWN(change_process), then give the capability back."""
        try:
            super().teardown()
        finally:
            restore_capabilities(self.saved_effective)


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
