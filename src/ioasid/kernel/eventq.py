"""``eventq.c``: the IOPF fault queue (``IOMMU_FAULT_QUEUE_ALLOC``) and its file.

A HWPT allocated with ``IOMMU_HWPT_FAULT_ID_VALID`` delivers the I/O page faults of the
devices attached to it (``iommu_report_device_fault`` → ``iommufd_fault_iopf_handler``) to
its fault object. User space ``read``s ``struct iommu_hwpt_pgfault`` records from the fault
fd (each group gets a cookie, lowest free from 1) and ``write``s ``struct
iommu_hwpt_page_response`` records back. Detaching or replacing the domain answers the
faults still pending on that attachment with INVALID (``iommufd_auto_response_faults``).

A vEVENTQ (``IOMMU_VEVENTQ_ALLOC``, allocated in :mod:`ioasid.kernel.viommu`) queues the
events a vIOMMU's driver reports (``iommufd_viommu_report_event``) for user space to
``read`` from its fd: each event a ``struct iommufd_vevent_header`` (flags, sequence) and
the type's payload; at most ``depth`` events, after which one lost-events header (no
payload) sits at the tail carrying the next sequence number.
"""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass, field
from typing import Any

from ioasid import uapi
from ioasid.hw.pagetable.base import Access, WalkFault
from ioasid.kernel.anon_inode import AnonFile
from ioasid.kernel.device import IOMMU_NO_PASID, AttachHandle, Device
from ioasid.kernel.errors import fail
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.private import IommufdCtx, Machine, Ucmd

FAULT_FILE_NAME = "[iommufd-pgfault]"
VEVENTQ_FILE_NAME = "[iommufd-viommu-event]"
VEVENT_HEADER_SIZE = ctypes.sizeof(uapi.iommufd_vevent_header)
INT_MAX = (1 << 31) - 1
EPOLLIN = 0x001
EPOLLOUT = 0x004
EPOLLRDNORM = 0x040
FAULT_SIZE = ctypes.sizeof(uapi.iommu_hwpt_pgfault)
RESPONSE_SIZE = ctypes.sizeof(uapi.iommu_hwpt_page_response)

IOMMU_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0
IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1


@dataclass
class IopfGroup:
    """``struct iopf_group``: the faults of one page request group, and where they came
    from (the attach handle: device, PASID, domain)."""

    faults: list[uapi.iommu_hwpt_pgfault]
    handle: AttachHandle
    cookie: int = 0
    response: int | None = field(default=None)


class Fault(IommufdObject):
    """``struct iommufd_fault``: ``deliver`` (not read yet) and ``response`` (read, waiting
    for the answer, by cookie)."""

    TYPE = ObjType.FAULT

    def __init__(self, ictx: IommufdCtx) -> None:
        super().__init__()
        self.ictx = ictx
        self.deliver: list[IopfGroup] = []
        self.response: dict[int, IopfGroup] = {}
        self.fd = -1

    def _cookie(self) -> int:
        cookie = 1
        while cookie in self.response:
            cookie += 1
        return cookie

    def iopf_handler(self, group: IopfGroup) -> None:
        """``iommufd_fault_iopf_handler``: queue the group for reading."""
        self.deliver.append(group)

    def auto_response(self, handle: AttachHandle) -> None:
        """``iommufd_auto_response_faults``: answer INVALID every group of ``handle``."""
        for group in [g for g in self.deliver if g.handle is handle]:
            self.deliver.remove(group)
            group.response = uapi.IOMMUFD_PAGE_RESP_INVALID
        for cookie, group in list(self.response.items()):
            if group.handle is handle:
                del self.response[cookie]
                group.response = uapi.IOMMUFD_PAGE_RESP_INVALID

    def destroy(self) -> None:
        """``iommufd_fault_destroy``: pending groups are answered INVALID."""
        for group in self.deliver + list(self.response.values()):
            group.response = uapi.IOMMUFD_PAGE_RESP_INVALID
        self.deliver.clear()
        self.response.clear()


class FaultFile:
    """``iommufd_fault_fops``."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault

    def read(self, count: int) -> bytes:
        """``iommufd_fault_fops_read``: ``count`` not a multiple of the record → ESPIPE;
        whole groups only (a first group that does not fit → EINVAL); nothing queued → 0
        bytes (the fd is non-blocking for the simulator: no other thread can queue one)."""
        if count % FAULT_SIZE:
            fail(errno.ESPIPE, f"fault read of {count} bytes: not a multiple of {FAULT_SIZE}")
        fault = self.fault
        out = bytearray()
        while fault.deliver:
            group = fault.deliver[0]
            if len(out) >= count or len(group.faults) * FAULT_SIZE > count - len(out):
                if not out:
                    fail(errno.EINVAL, f"fault group of {len(group.faults)} does not fit")
                break
            fault.deliver.pop(0)
            group.cookie = fault._cookie()
            fault.response[group.cookie] = group
            for rec in group.faults:
                rec.dev_id = group.handle.idev.id
                rec.cookie = group.cookie
                out += bytes(rec)
        return bytes(out)

    def write(self, data: bytes) -> int:
        """``iommufd_fault_fops_write``: length not a multiple of the response → ESPIPE;
        a code other than SUCCESS/INVALID, or an unknown cookie → EINVAL (after the
        responses before it were taken)."""
        if len(data) % RESPONSE_SIZE:
            fail(
                errno.ESPIPE, f"fault write of {len(data)} bytes: not a multiple of {RESPONSE_SIZE}"
            )
        done = 0
        fault = self.fault
        while len(data) > done:
            resp = uapi.iommu_hwpt_page_response.from_buffer_copy(data[done : done + RESPONSE_SIZE])
            rule = ""
            if resp.code not in (uapi.IOMMUFD_PAGE_RESP_SUCCESS, uapi.IOMMUFD_PAGE_RESP_INVALID):
                rule = f"response code {resp.code} is neither SUCCESS nor INVALID"
            elif resp.cookie not in fault.response:
                rule = f"no fault group waits for a response with cookie {resp.cookie}"
            if rule:
                if done:
                    break
                fail(errno.EINVAL, rule)
            group = fault.response.pop(resp.cookie)
            group.response = resp.code
            done += RESPONSE_SIZE
        return done

    def poll(self) -> int:
        """``iommufd_eventq_fops_poll``: EPOLLOUT always, EPOLLIN|EPOLLRDNORM while a group
        is queued."""
        return EPOLLOUT | (EPOLLIN | EPOLLRDNORM if self.fault.deliver else 0)

    def release(self) -> None:
        """``iommufd_eventq_fops_release``: drop the file's reference on the object."""
        self.fault.users -= 1


def fault_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_FAULT_QUEUE_ALLOC``: flags → EOPNOTSUPP; the object, its file (which holds
    a reference until the last ``close``) and an fd; respond; install the fd."""
    cmd = ucmd.cmd
    if cmd.flags:
        fail(errno.EOPNOTSUPP, "IOMMU_FAULT_QUEUE_ALLOC: flags must be 0")
    ictx = ucmd.ictx
    fault = ictx.objects.alloc(Fault(ictx))
    anon = ictx.kernel.anon_inodes
    fdno = anon.get_unused_fd(FAULT_FILE_NAME)
    file = FaultFile(fault)
    fault.users += 1
    cmd.out_fault_id = fault.id
    cmd.out_fault_fd = fdno
    try:
        ucmd.respond()
    except OSError:
        anon.put_unused_fd(fdno)
        fault.users -= 1
        ictx.objects.abort(fault)
        raise
    ictx.objects.finalize(fault)
    anon.fd_install(fdno, AnonFile(FAULT_FILE_NAME, file, file.release))
    fault.fd = fdno
    return 0


def fault_file(kernel: Machine, fd: int) -> FaultFile | VeventqFile | None:
    """The fault queue or vEVENTQ file ``fd`` refers to (for ``read``/``write``/``poll``
    on the sim backend)."""
    f = kernel.anon_inodes.fget(fd)
    if f is not None and isinstance(f.private_data, FaultFile | VeventqFile):
        return f.private_data
    return None


class Vevent:
    """``struct iommufd_vevent``: a header and the payload (``None`` for the lost-events
    header)."""

    __slots__ = ("data", "flags", "sequence")

    def __init__(self, flags: int, data: bytes | None) -> None:
        self.flags = flags
        self.sequence = 0
        self.data = data


class Veventq(IommufdObject):
    """``struct iommufd_veventq``: ``deliver`` in order, ``num_events`` of them real
    events, the next ``sequence``, and the one ``lost_events_header``."""

    TYPE = ObjType.VEVENTQ

    def __init__(self, viommu: Any, veventq_type: int, depth: int) -> None:
        super().__init__()
        self.viommu = viommu
        self.type = veventq_type
        self.depth = depth
        self.deliver: list[Vevent] = []
        self.num_events = 0
        self.sequence = 0
        self.lost_events_header = Vevent(uapi.IOMMU_VEVENTQ_FLAG_LOST_EVENTS, None)
        self.fd = -1

    def destroy(self) -> None:
        """``iommufd_veventq_destroy`` (also its abort): events freed, off the vIOMMU's
        list, the vIOMMU's reference dropped."""
        self.deliver.clear()
        if self in self.viommu.veventqs:
            self.viommu.veventqs.remove(self)
            self.viommu.users -= 1


def vevent_handler(veventq: Veventq, data: bytes | None) -> None:
    """``iommufd_vevent_handler``: a lost-events header at the tail goes, the new event (or
    the header again, for a lost one) is appended with the next sequence number (mod
    2^31)."""
    header = veventq.lost_events_header
    if veventq.deliver and veventq.deliver[-1] is header:
        veventq.deliver.pop()
    vevent = header if data is None else Vevent(0, data)
    veventq.deliver.append(vevent)
    vevent.sequence = veventq.sequence
    veventq.sequence = (veventq.sequence + 1) & INT_MAX


class VeventqFile:
    """``iommufd_veventq_fops``: read and poll; no write."""

    def __init__(self, veventq: Veventq) -> None:
        self.veventq = veventq

    def read(self, count: int) -> bytes:
        """``iommufd_veventq_fops_read``: ``count`` below a header → EINVAL; whole events
        only, in order; the first event not fitting ends the read, and when it is the first
        (a normal event whose payload does not fit) the read fails with EINVAL; an empty
        queue reads 0 bytes."""
        if count < VEVENT_HEADER_SIZE:
            fail(
                errno.EINVAL,
                f"vEVENTQ read of {count} bytes: below the {VEVENT_HEADER_SIZE}-byte header",
            )
        q = self.veventq
        out = bytearray()
        while q.deliver:
            cur = q.deliver[0]
            room = count - len(out)
            if room < VEVENT_HEADER_SIZE:
                break
            if cur.data is not None and VEVENT_HEADER_SIZE + len(cur.data) > room:
                if not out:
                    fail(
                        errno.EINVAL,
                        f"vEVENTQ read of {count} bytes: the next event needs "
                        f"{VEVENT_HEADER_SIZE + len(cur.data)}",
                    )
                break
            q.deliver.pop(0)
            out += bytes(uapi.iommufd_vevent_header(flags=cur.flags, sequence=cur.sequence))
            if cur.data is not None:
                out += cur.data
                q.num_events -= 1
        return bytes(out)

    def write(self, data: bytes) -> int:
        fail(errno.EINVAL, "a vEVENTQ fd cannot be written")

    def poll(self) -> int:
        """``iommufd_eventq_fops_poll``: EPOLLIN|EPOLLRDNORM while an event is queued."""
        return EPOLLIN | EPOLLRDNORM if self.veventq.deliver else 0

    def release(self) -> None:
        """``iommufd_eventq_fops_release``."""
        self.veventq.users -= 1


def veventq_fd_reserve(ictx: IommufdCtx) -> int:
    """``iommufd_eventq_init`` up to ``get_unused_fd_flags``."""
    return ictx.kernel.anon_inodes.get_unused_fd(VEVENTQ_FILE_NAME)


def veventq_fd_install(ictx: IommufdCtx, veventq: Veventq, fdno: int) -> None:
    """The file takes its reference on the object; ``fd_install``."""
    file = VeventqFile(veventq)
    veventq.users += 1
    ictx.kernel.anon_inodes.fd_install(fdno, AnonFile(VEVENTQ_FILE_NAME, file, file.release))
    veventq.fd = fdno


def report_device_fault(idev: Device, prm: uapi.iommu_hwpt_pgfault) -> int:
    """``iommu_report_device_fault`` for a page request that is the last of its group:
    find the attach handle (the PASID's, or — for a driver with a user-managed PASID table
    — the RID's nested domain; else the RID's); no handle or no fault handler on its domain
    → the request is answered INVALID and the result is EINVAL."""
    igroup = idev.igroup
    if prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID:
        handle = igroup.handles.get(prm.pasid)
        if handle is None:
            if not idev.driver.user_pasid_table:
                return -errno.EINVAL
            handle = igroup.handles.get(0)
            if handle is None or not handle.domain.nested:
                return -errno.EINVAL
    else:
        handle = igroup.handles.get(0)
        if handle is None:
            return -errno.EINVAL
    if not handle.domain.iopf_handler or handle.hwpt.fault is None:
        return -errno.EINVAL
    handle.hwpt.fault.iopf_handler(IopfGroup([prm], handle))
    return 0


def report_dma_page_request(idev: Device, pasid: int | None, iova: int, write: bool) -> bool:
    """A device with PRI whose DMA hit a stage-1 fault through a nested domain with a fault
    handler sends a page request (the IOMMU driver's page request queue →
    ``iommu_report_device_fault``): one LAST_PAGE request for the faulting page, with the
    access's permission. Faults of stage 2 (the host's) or of other domains are not page
    requests. Returns whether a request was queued."""
    handle = idev.igroup.handles.get(IOMMU_NO_PASID if pasid is None else pasid)
    if handle is None or handle.hwpt.fault is None or not handle.domain.nested:
        return False
    hw = getattr(handle.domain, "hw", None)
    if hw is None:
        return False
    walk = hw.pagetable.walk(iova, Access.WRITE if write else Access.READ)
    if not isinstance(walk, WalkFault) or walk.stage != 1:
        return False
    flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE
    if pasid is not None:
        flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID
    perm = uapi.IOMMU_PGFAULT_PERM_WRITE if write else uapi.IOMMU_PGFAULT_PERM_READ
    prm = uapi.iommu_hwpt_pgfault(flags=flags, pasid=pasid or 0, perm=perm, addr=iova - iova % 4096)
    return report_device_fault(idev, prm) == 0
