"""A fault queue polled, read and answered by a program under ``ioasid run`` (the linux
backend's raw layer: ``os.open`` and ``ioctl``, served by the bridge)."""

from __future__ import annotations

import ctypes
import os
import select
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.kernel_selftests import utils as u

from ioasid import uapi
from ioasid.backends import linux

fd = linux.open("/dev/iommu")
ioas = u._test_ioctl_ioas_alloc(fd)
stdev, _hwpt, idev = u._test_cmd_mock_domain(fd, ioas)
parent = u._test_cmd_hwpt_alloc(
    fd, idev, ioas, 0, uapi.IOMMU_HWPT_ALLOC_NEST_PARENT, uapi.IOMMU_HWPT_DATA_NONE, 0, 0
)
fault_id, fault_fd = u._test_ioctl_fault_alloc(fd)
data = uapi.iommu_hwpt_selftest(iotlb=uapi.IOMMU_TEST_IOTLB_DEFAULT)
iopf = u._test_cmd_hwpt_alloc(
    fd, idev, parent, fault_id, uapi.IOMMU_HWPT_FAULT_ID_VALID,
    uapi.IOMMU_HWPT_DATA_SELFTEST, ctypes.addressof(data), ctypes.sizeof(data),
)  # fmt: skip
u._test_cmd_mock_domain_replace(fd, stdev, iopf)


def trigger() -> None:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_TRIGGER_IOPF
    cmd.trigger_iopf.dev_id = idev
    cmd.trigger_iopf.grpid = 0x2
    cmd.trigger_iopf.perm = uapi.IOMMU_PGFAULT_PERM_READ
    cmd.trigger_iopf.addr = 0xDEADB000
    u.ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


def ready(events: list[tuple[int, int]]) -> list[tuple[str, int]]:
    return [("fault fd" if f == fault_fd else str(f), ev) for f, ev in events]


p = select.poll()
p.register(fault_fd, select.POLLIN | select.POLLOUT)
print("idle", ready(p.poll(0)))
p.modify(fault_fd, select.POLLIN)
t = time.monotonic()
print("nothing queued", ready(p.poll(300)), time.monotonic() - t >= 0.25)
trigger()
print("queued", ready(p.poll(1000)))
record = os.read(fault_fd, ctypes.sizeof(uapi.iommu_hwpt_pgfault))
fault = uapi.iommu_hwpt_pgfault.from_buffer_copy(record)
print("read", len(record), hex(fault.addr), fault.cookie)
print("after the read", ready(p.poll(0)))
got: list[object] = []
waiter = threading.Thread(target=lambda: got.append(ready(p.poll(5000))))
t = time.monotonic()
waiter.start()
time.sleep(0.2)
trigger()
waiter.join()
print("woken by another thread's fault", got, time.monotonic() - t < 4)
response = uapi.iommu_hwpt_page_response(code=uapi.IOMMUFD_PAGE_RESP_SUCCESS, cookie=fault.cookie)
print("answered", os.write(fault_fd, bytes(response)))
