"""Event queues the kernel hands out as file descriptors: the IOPF fault queue
(``IOMMU_FAULT_QUEUE_ALLOC``) and the vIOMMU event queue (``IOMMU_VEVENTQ_ALLOC``).

Reads, writes and polls go through the backend's ``fd_read`` / ``fd_write`` / ``fd_poll``:
``os.read`` and ``poll(2)`` on a real kernel, the simulated file's operations on ``sim``.
"""

from __future__ import annotations

import ctypes
import os
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioasid import uapi
from ioasid.api.errors import from_oserror
from ioasid.api.iommufd import Iommufd

if TYPE_CHECKING:
    from ioasid.api.viommu import Viommu

FAULT_SIZE = ctypes.sizeof(uapi.iommu_hwpt_pgfault)
HDR_SIZE = ctypes.sizeof(uapi.iommufd_vevent_header)


@dataclass(frozen=True)
class PageFault:
    """One ``struct iommu_hwpt_pgfault`` (a page request; ``cookie`` answers its group)."""

    flags: int
    dev_id: int
    pasid: int
    grpid: int
    perm: int
    addr: int
    length: int
    cookie: int

    @property
    def last_page(self) -> bool:
        return bool(self.flags & uapi.IOMMU_PGFAULT_FLAGS_LAST_PAGE)


class _EventFd:
    def __init__(self, fd: Iommufd, obj_id: int, eventfd: int, op: str) -> None:
        self.fd = fd
        self.id = obj_id
        self.eventfd = eventfd
        self._op = op

    def fileno(self) -> int:
        return self.eventfd

    def poll(self, timeout: float | None = 0) -> bool:
        """True when something can be read, waiting up to ``timeout`` seconds (``None``:
        forever)."""
        ms = -1 if timeout is None else int(timeout * 1000)
        return bool(self.fd.backend.fd_poll(self.eventfd, select.POLLIN, ms))

    def _read(self, n: int) -> bytes:
        try:
            data: bytes = self.fd.backend.fd_read(self.eventfd, n)
            return data
        except OSError as exc:
            raise from_oserror(exc, f"read({self._op} fd)", f"count={n}") from None

    def close(self) -> None:
        """Close the fd (the object can then be destroyed)."""
        if self.eventfd >= 0:
            fdno, self.eventfd = self.eventfd, -1
            os.close(fdno)

    def destroy(self) -> None:
        """Close the fd, then ``IOMMU_DESTROY`` the object."""
        self.close()
        self.fd.destroy(self.id)

    def __enter__(self) -> _EventFd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


class FaultQueue(_EventFd):
    """An IOPF fault queue: HWPTs allocated with it deliver their devices' page requests."""

    @classmethod
    def alloc(cls, fd: Iommufd) -> FaultQueue:
        out = fd.ioctl(
            uapi.IOMMU_FAULT_QUEUE_ALLOC, uapi.iommu_fault_alloc(), "IOMMU_FAULT_QUEUE_ALLOC"
        )
        return cls(fd, int(out.out_fault_id), int(out.out_fault_fd), "fault queue")

    def read(self, max_faults: int = 64) -> list[PageFault]:
        """The queued page requests, whole groups only (an empty list when none)."""
        raw = self._read(max_faults * FAULT_SIZE)
        out = []
        for off in range(0, len(raw), FAULT_SIZE):
            f = uapi.iommu_hwpt_pgfault.from_bytes(raw[off : off + FAULT_SIZE])
            out.append(
                PageFault(
                    int(f.flags),
                    int(f.dev_id),
                    int(f.pasid),
                    int(f.grpid),
                    int(f.perm),
                    int(f.addr),
                    int(f.length),
                    int(f.cookie),
                )
            )
        return out

    def respond(self, fault: PageFault | int, code: int = uapi.IOMMUFD_PAGE_RESP_SUCCESS) -> None:
        """Answer a group (by a fault of it or its cookie) with SUCCESS or INVALID."""
        cookie = fault if isinstance(fault, int) else fault.cookie
        data = bytes(uapi.iommu_hwpt_page_response(cookie=cookie, code=code))
        try:
            self.fd.backend.fd_write(self.eventfd, data)
        except OSError as exc:
            raise from_oserror(
                exc, "write(fault queue fd)", f"cookie={cookie}, code={code}"
            ) from None

    def __repr__(self) -> str:
        return f"<FaultQueue {self.id} fd={self.eventfd}>"


@dataclass(frozen=True)
class Vevent:
    """One vEVENT: its header and the type's payload (empty for a lost-events record)."""

    flags: int
    sequence: int
    data: bytes

    @property
    def lost_events(self) -> bool:
        """``IOMMU_VEVENTQ_FLAG_LOST_EVENTS``: the queue overflowed before this point."""
        return bool(self.flags & uapi.IOMMU_VEVENTQ_FLAG_LOST_EVENTS)


class Veventq(_EventFd):
    """A vIOMMU's event queue of one type (at most ``depth`` events)."""

    def __init__(
        self, fd: Iommufd, obj_id: int, eventfd: int, veventq_type: int, event_size: int
    ) -> None:
        super().__init__(fd, obj_id, eventfd, "vEVENTQ")
        self.type = veventq_type
        self.event_size = event_size

    @classmethod
    def alloc(cls, viommu: Viommu, veventq_type: int, depth: int, event_size: int) -> Veventq:
        """``IOMMU_VEVENTQ_ALLOC``; ``event_size`` is the type's payload size (e.g. 4 for
        ``iommu_viommu_event_selftest``, 32 for ``iommu_vevent_arm_smmuv3``)."""
        cmd = uapi.iommu_veventq_alloc(viommu_id=viommu.id, type=veventq_type, veventq_depth=depth)
        out = viommu.fd.ioctl(uapi.IOMMU_VEVENTQ_ALLOC, cmd, "IOMMU_VEVENTQ_ALLOC")
        return cls(
            viommu.fd, int(out.out_veventq_id), int(out.out_veventq_fd), veventq_type, event_size
        )

    def read(self, max_events: int = 64) -> list[Vevent]:
        """The queued events (an empty list when none)."""
        raw = self._read(max_events * (HDR_SIZE + self.event_size))
        out = []
        off = 0
        while off + HDR_SIZE <= len(raw):
            hdr = uapi.iommufd_vevent_header.from_bytes(raw[off : off + HDR_SIZE])
            off += HDR_SIZE
            lost = hdr.flags & uapi.IOMMU_VEVENTQ_FLAG_LOST_EVENTS
            data = b"" if lost else raw[off : off + self.event_size]
            off += len(data)
            out.append(Vevent(int(hdr.flags), int(hdr.sequence), data))
        return out

    def events(self, timeout: float | None = None) -> Iterator[Vevent]:
        """Iterate events as they come; stops after ``timeout`` seconds without one
        (``None``: never)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.poll(left):
                return
            got = self.read()
            yield from got
            if got and deadline is not None and timeout is not None:
                deadline = time.monotonic() + timeout

    def __repr__(self) -> str:
        return f"<Veventq {self.id} type={self.type:#x} fd={self.eventfd}>"
