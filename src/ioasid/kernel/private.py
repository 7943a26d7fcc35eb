"""``iommufd_private.h``: what every part of the simulated kernel shares.

The bottom of the kernel package. It holds the iommufd context (``struct iommufd_ctx``), the
decoded command (``struct iommufd_ucmd``), the handler signature, and :class:`Machine` — the
interface the simulated host offers its iommufd (user copies, processes, physical memory,
files, the mock driver's units) — declared here as the header declares the kernel services
iommufd calls. Object types, page handling and the handlers sit above; the ioctl table,
the entry (:mod:`ioasid.kernel.main`) and the host (:mod:`ioasid.kernel.machine`) on top.

The order of every module is :data:`ioasid.kernel.LAYERS`.
"""

from __future__ import annotations

import ctypes
import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ioasid.hw.dma import DmaEngine
from ioasid.hw.iommu import IommuUnit
from ioasid.hw.memory import PAGE_SIZE, PhysMap
from ioasid.kernel.anon_inode import AnonInodes
from ioasid.kernel.errors import fail
from ioasid.kernel.fail_nth import should_fail
from ioasid.kernel.objects import ObjectTable
from ioasid.kernel.pages import AccountMode
from ioasid.kernel.process import MmStruct, Processes

U32_MAX = (1 << 32) - 1


class File(Protocol):
    """What ``struct file_operations`` a simulated character device offers."""

    def ioctl(self, cmd: int, arg: int) -> int: ...

    def release(self) -> None: ...


class Machine(Protocol):
    """The simulated host as its iommufd sees it (implemented by ``machine.Kernel``)."""

    processes: Processes
    phys: PhysMap
    anon_inodes: AnonInodes
    lock: threading.RLock
    mock_units: dict[tuple[bool, bool], IommuUnit]
    mock_dev_ida: int

    def copy_from_user(self, addr: int, length: int) -> bytes: ...

    def copy_to_user(self, addr: int, data: bytes | bytearray | memoryview) -> None: ...

    def clear_user(self, addr: int, length: int) -> None:
        """``clear_user``: zero ``length`` bytes, in bounded chunks; ``EFAULT`` at the first
        unmapped byte, with the bytes before it zeroed."""
        ...

    def pin_count(self, mm: MmStruct, vpn: int) -> int: ...

    def fget(self, fd: int) -> File | None: ...

    def dma_engine(self, driver: Any) -> DmaEngine: ...


@dataclass(slots=True)
class Ucmd:
    """``struct iommufd_ucmd``: the decoded command and where to write the answer."""

    ictx: IommufdCtx
    ubuffer: int
    user_size: int
    cmd: Any

    def respond(self, length: int | None = None) -> None:
        """``iommufd_ucmd_respond``: copy back ``min(user size, struct size)`` bytes."""
        size = ctypes.sizeof(self.cmd) if length is None else length
        n = min(self.user_size, size)
        self.ictx.kernel.copy_to_user(self.ubuffer, ctypes.string_at(ctypes.addressof(self.cmd), n))


Handler = Callable[[Ucmd], int]


class IommufdCtx:
    """``struct iommufd_ctx``: one open of ``/dev/iommu`` (or of ``/dev/vfio/vfio``)."""

    def __init__(self, kernel: Machine, vfio_container: bool = False) -> None:
        self.kernel = kernel
        self.objects = ObjectTable(lambda site: should_fail(kernel.processes.current, site))
        # iommufd_fops_open(): /dev/vfio/vfio defaults to VFIO's MM accounting
        self.account_mode = AccountMode.MM if vfio_container else AccountMode.NONE
        self.vfio_ioas: Any = None
        self.groups: dict[object, Any] = {}
        """``ictx->groups``: the ``iommufd_group`` of each IOMMU group with a bound device."""
        self.no_iommu_mode = False
        self.closed = False
        self.mt_mmap: dict[int, Any] = {}
        """``ictx->mt_mmap``: mmap regions by offset (``viommu.Immap``)."""
        self.vmas: list[Any] = []
        """Live user mappings of those regions (``viommu.Vma``)."""
        self.file_refs = 1
        """References to the ``/dev/iommu`` file: the open itself, plus one per access
        object a driver created (``iommufd_ctx_get``); the last one out releases."""

    def get_file(self) -> None:
        """``iommufd_ctx_get``: keep the context alive past the close of its fd."""
        self.file_refs += 1

    def release(self) -> None:
        """``fput`` of the context's file; the last one runs ``iommufd_fops_release``:
        destroy every object, leaf first."""
        if self.closed:
            return
        self.file_refs -= 1
        if self.file_refs > 0:
            return
        self.closed = True
        self.objects.destroy_all()

    def __repr__(self) -> str:
        return f"<IommufdCtx objects={len(self.objects)}>"


def iommufd_ctx_from_file(file: object) -> IommufdCtx | None:
    """``iommufd_ctx_from_file``: the context of an open ``/dev/iommu``, else ``None``."""
    ictx = getattr(file, "ictx", None)
    return ictx if isinstance(ictx, IommufdCtx) else None


USER_CHUNK = 1 << 16
"""``check_zeroed_user`` and ``clear_user`` work this many bytes at a time: a declared size
of 4 GiB costs time in proportion to the memory really there, never an allocation of it."""


def check_zeroed_user(kernel: Machine, addr: int, length: int) -> bool:
    """``check_zeroed_user``: ``True`` if ``[addr, addr+length)`` is all zero, ``False`` at
    the first non-zero byte; ``EFAULT`` for an unmapped page reached before that."""
    end = addr + length
    while addr < end:
        n = min(USER_CHUNK, end - addr)
        try:
            chunk = kernel.copy_from_user(addr, n)
        except OSError as e:
            if e.errno != errno.EFAULT:
                raise
            # find the page that faults: a non-zero byte before it wins
            page_end = min(end, (addr // PAGE_SIZE + 1) * PAGE_SIZE)
            while addr < end:
                if any(kernel.copy_from_user(addr, page_end - addr)):
                    return False
                addr, page_end = page_end, min(end, page_end + PAGE_SIZE)
            return True
        if any(chunk):
            return False
        addr += n
    return True


def check_reserved(value: int, what: str = "__reserved") -> None:
    if value:
        fail(errno.EOPNOTSUPP, f"{what} must be 0, not {value:#x}")


__all__ = [
    "U32_MAX",
    "USER_CHUNK",
    "File",
    "Handler",
    "IommufdCtx",
    "Machine",
    "Ucmd",
    "check_reserved",
    "check_zeroed_user",
    "iommufd_ctx_from_file",
]
