"""The vIOMMU helpers of ``tools/testing/selftests/iommu/iommufd_utils.h`` (Linux 7.3):
``_test_cmd_viommu_alloc``, ``_test_cmd_vdevice_alloc``, ``_test_cmd_hw_queue_alloc``,
``_test_cmd_veventq_alloc``, ``_test_cmd_trigger_vevents``, ``_test_cmd_read_vevents``,
``_test_cmd_viommu_invalidate`` and ``test_err_mmap``, in the style of :mod:`.utils`
(``_test_*`` return the outputs or raise ``OSError`` with the kernel's errno)."""

from __future__ import annotations

import ctypes
import errno
import mmap
import select
from types import ModuleType
from typing import Any

from ioasid import uapi
from ioasid.backends.base import Handle

from .utils import _sim_fault_file, addressof, fd_read, ioctl

HDR_SIZE = ctypes.sizeof(uapi.iommufd_vevent_header)
EVENT_SIZE = ctypes.sizeof(uapi.iommu_viommu_event_selftest)


def _test_cmd_viommu_alloc(
    fd: Handle, device_id: int, hwpt_id: int, flags: int, type: int, data: Any, data_len: int
) -> int:
    """Returns ``out_viommu_id``; ``data`` is a ctypes object or ``None``."""
    cmd = uapi.iommu_viommu_alloc(
        size=ctypes.sizeof(uapi.iommu_viommu_alloc),
        flags=flags,
        type=type,
        dev_id=device_id,
        hwpt_id=hwpt_id,
        data_uptr=addressof(data),
        data_len=data_len,
    )
    ioctl(fd, uapi.IOMMU_VIOMMU_ALLOC, cmd)
    return int(cmd.out_viommu_id)


def _test_cmd_vdevice_alloc(fd: Handle, viommu_id: int, idev_id: int, virt_id: int) -> int:
    cmd = uapi.iommu_vdevice_alloc(
        size=ctypes.sizeof(uapi.iommu_vdevice_alloc),
        viommu_id=viommu_id,
        dev_id=idev_id,
        virt_id=virt_id,
    )
    ioctl(fd, uapi.IOMMU_VDEVICE_ALLOC, cmd)
    return int(cmd.out_vdevice_id)


def _test_cmd_hw_queue_alloc(
    fd: Handle, viommu_id: int, type: int, idx: int, base_addr: int, length: int
) -> int:
    cmd = uapi.iommu_hw_queue_alloc(
        size=ctypes.sizeof(uapi.iommu_hw_queue_alloc),
        viommu_id=viommu_id,
        type=type,
        index=idx,
        nesting_parent_iova=base_addr,
        length=length,
    )
    ioctl(fd, uapi.IOMMU_HW_QUEUE_ALLOC, cmd)
    return int(cmd.out_hw_queue_id)


def _test_cmd_veventq_alloc(fd: Handle, viommu_id: int, type: int, depth: int) -> tuple[int, int]:
    """Returns (out_veventq_id, out_veventq_fd)."""
    cmd = uapi.iommu_veventq_alloc(
        size=ctypes.sizeof(uapi.iommu_veventq_alloc),
        type=type,
        veventq_depth=depth,
        viommu_id=viommu_id,
    )
    ioctl(fd, uapi.IOMMU_VEVENTQ_ALLOC, cmd)
    return int(cmd.out_veventq_id), int(cmd.out_veventq_fd)


def _test_cmd_trigger_vevents(fd: Handle, dev_id: int, nvevents: int) -> None:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_TRIGGER_VEVENT
    cmd.trigger_vevent.dev_id = dev_id
    for _ in range(nvevents):
        ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


def _poll(backend: ModuleType, event_fd: int, timeout_ms: int) -> int:
    """``poll(&pollfd, 1, timeout)`` for POLLIN: the sim's file answers at once (no other
    thread can queue an event while this one waits)."""
    f = _sim_fault_file(backend, event_fd)
    if f is not None:
        return 1 if f.poll() & select.POLLIN else 0
    p = select.poll()
    p.register(event_fd, select.POLLIN)
    return len(p.poll(timeout_ms))


def _test_cmd_read_vevents(
    backend: ModuleType, event_fd: int, nvevents: int, virt_id: int, prev_seq: list[int]
) -> None:
    """``_test_cmd_read_vevents``: poll, read ``nvevents`` events at once, check each header
    (LOST_EVENTS or a sequence gap → EOVERFLOW) and payload (another virt id → EINVAL). An
    empty read is the helper's EFAULT. ``prev_seq`` is the C ``int *``."""
    _poll(backend, event_fd, 1000)
    data = fd_read(backend, event_fd, nvevents * (HDR_SIZE + EVENT_SIZE))
    if not data:
        raise OSError(errno.EFAULT, "read of the vEVENTQ returned nothing")
    data = data.ljust(nvevents * (HDR_SIZE + EVENT_SIZE), b"\0")
    for i in range(nvevents):
        off = i * (HDR_SIZE + EVENT_SIZE)
        hdr = uapi.iommufd_vevent_header.from_buffer_copy(data[off : off + HDR_SIZE])
        # C: hdr->sequence (u32) - *prev_seq (int) > 1, in unsigned arithmetic
        if (
            hdr.flags & uapi.IOMMU_VEVENTQ_FLAG_LOST_EVENTS
            or (hdr.sequence - prev_seq[0]) & 0xFFFFFFFF > 1
        ):
            prev_seq[0] = hdr.sequence
            raise OSError(errno.EOVERFLOW, f"event {i}: lost events (sequence {hdr.sequence})")
        prev_seq[0] = hdr.sequence
        # the C helper reads the payload of the first event every time (data + sizeof(*hdr))
        event = uapi.iommu_viommu_event_selftest.from_buffer_copy(
            data[HDR_SIZE : HDR_SIZE + EVENT_SIZE]
        )
        if event.virt_id != virt_id:
            raise OSError(errno.EINVAL, f"event {i}: virt_id {event.virt_id:#x} != {virt_id:#x}")


def _test_cmd_viommu_invalidate(
    fd: Handle, viommu_id: int, reqs: Any, data_type: int, lreq: int, nreqs: int
) -> tuple[int, int]:
    """Returns (errno or 0, the ``entry_num`` written back)."""
    cmd = uapi.iommu_hwpt_invalidate(
        size=ctypes.sizeof(uapi.iommu_hwpt_invalidate),
        hwpt_id=viommu_id,
        data_type=data_type,
        data_uptr=addressof(reqs),
        entry_len=lreq,
        entry_num=nreqs,
    )
    try:
        ioctl(fd, uapi.IOMMU_HWPT_INVALIDATE, cmd)
    except OSError as e:
        return e.errno or 0, int(cmd.entry_num)
    return 0, int(cmd.entry_num)


def iommufd_mmap(fd: Handle, length: int, offset: int) -> mmap.mmap:
    """``mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, offset)``."""
    return fd.mmap(length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, offset)
