"""The same edu program on the simulated VT-d host and on the real kernel's edu device."""

from __future__ import annotations

import errno
import math
import struct
import time
from types import ModuleType

import pytest

from ioasid import Device, backends, uapi
from ioasid.testing import edu

QEMU_VTD_CAP = 0xD2008C222F0606
QEMU_VTD_ECAP = 0x480080F00F4A


@pytest.mark.oracle
def test_edu_program(backend: ModuleType) -> None:
    run = edu.run(backend)
    assert (run.devid, run.ioas_id, run.auto_hwpt_id, run.hwpt_id) == (1, 2, 3, 4)
    assert run.hw_info_type == 1  # IOMMU_HW_INFO_TYPE_INTEL_VTD
    assert (run.vtd_flags, run.vtd_cap, run.vtd_ecap) == (1, QEMU_VTD_CAP, QEMU_VTD_ECAP)
    assert run.hw_info_caps == 0x8 and run.max_pasid_log2 == 0
    assert run.dirty_hwpt_errno == errno.EOPNOTSUPP  # QEMU's VT-d has no SLADS
    assert run.auto_hwpt_destroy_errno == errno.ENOENT  # freed when the device moved
    assert run.iova_ranges == ((0, 0xFEDFFFFF), (0xFEF00000, 0xFFFFFFFFFFFF))
    assert run.iova_alignment == 0x1000
    assert run.ident == 0x010000ED
    assert run.dma_ok
    assert run.blocked_after_detach
    assert run.unmapped == 2 * 4096


@pytest.mark.guest
def test_edu_identical_on_sim_and_real_kernel() -> None:
    real = edu.run(backends.get("linux"))
    simulated = edu.run(backends.get("sim"))
    assert simulated == real


@pytest.mark.oracle
@pytest.mark.parametrize("n", [0, 5, 12, 13, 20, 33, 34, 100])
def test_edu_factorial_wraps_like_qemus_uint32(edu: Device, n: int) -> None:
    """``hw/misc/edu.c`` computes ``ret *= val--`` in ``uint32_t``: n! mod 2^32."""
    bar0 = uapi.VFIO_PCI_BAR0_REGION_INDEX
    edu.write(bar0, 0x08, struct.pack("<I", n))
    deadline = time.monotonic() + 30
    while struct.unpack("<I", edu.read(bar0, 0x20, 4))[0] & 0x01:  # still computing
        assert time.monotonic() < deadline
        time.sleep(0.001)
    got = struct.unpack("<I", edu.read(bar0, 0x08, 4))[0]
    assert got == math.factorial(n) % (1 << 32)
