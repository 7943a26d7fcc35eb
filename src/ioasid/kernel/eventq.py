"""``eventq.c``: the IOPF fault queue (``IOMMU_FAULT_QUEUE_ALLOC``) and its file.

A HWPT allocated with ``IOMMU_HWPT_FAULT_ID_VALID`` delivers the I/O page faults of the
devices attached to it (``iommu_report_device_fault`` → ``iommufd_fault_iopf_handler``) to
its fault object. User space ``read``s ``struct iommu_hwpt_pgfault`` records from the fault
fd (each group gets a cookie, lowest free from 1) and ``write``s ``struct
iommu_hwpt_page_response`` records back. Detaching or replacing the domain answers the
faults still pending on that attachment with INVALID (``iommufd_auto_response_faults``).

vEVENTQs are not simulated yet.
"""

from __future__ import annotations

import ctypes
import errno
import select
from dataclasses import dataclass, field

from ioasid import uapi
from ioasid.kernel.anon_inode import AnonFile
from ioasid.kernel.device import AttachHandle, Device
from ioasid.kernel.errors import fail
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.private import IommufdCtx, Machine, Ucmd

FAULT_FILE_NAME = "[iommufd-pgfault]"
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
        """``iommufd_eventq_fops_poll``: always writable; readable while a group waits to
        be read."""
        return select.POLLOUT | (select.POLLIN | select.POLLRDNORM if self.fault.deliver else 0)

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


def fault_file(kernel: Machine, fd: int) -> FaultFile | None:
    """The fault queue file ``fd`` refers to (for ``read``/``write`` on the sim backend)."""
    f = kernel.anon_inodes.fget(fd)
    return f.private_data if f is not None and isinstance(f.private_data, FaultFile) else None


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
