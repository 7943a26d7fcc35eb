"""The backend protocol: as small as the kernel's file operations."""

from __future__ import annotations

import mmap
from typing import Protocol, runtime_checkable

IoctlArg = bytearray | memoryview | bytes | int
"""What ``fcntl.ioctl(fd, request, arg, True)`` takes: a mutable buffer (updated in place;
the call returns the ioctl's result), a read-only buffer (the call returns the updated
copy as ``bytes``; at most :data:`IOCTL_BUFSZ` bytes), or an ``int`` (a raw pointer)."""

IOCTL_BUFSZ = 1024
"""CPython's ``fcntl.ioctl`` scratch buffer: a buffer argument up to this size is copied in,
the kernel works on the copy (so it can never write past the caller's buffer), and the copy
is copied back, on failure too; a larger mutable buffer is passed as it is."""


@runtime_checkable
class Handle(Protocol):
    """An open file of ``/dev/iommu``, ``/dev/vfio/vfio`` or a VFIO device cdev."""

    path: str

    def fileno(self) -> int: ...

    def ioctl(self, request: int, arg: IoctlArg = 0) -> int | bytes:
        """Issue ``request`` as ``fcntl.ioctl(fd, request, arg, True)`` does: a mutable
        ``arg`` is updated in place and the result returned; a ``bytes`` one gives back the
        updated bytes. Raises ``OSError(errno)``."""
        ...

    def read(self, n: int) -> bytes: ...

    def pread(self, n: int, offset: int) -> bytes:
        """``pread(2)``: e.g. a VFIO device region at ``VFIO_PCI_INDEX_TO_OFFSET(index)``."""
        ...

    def pwrite(self, data: bytes, offset: int) -> int: ...

    def write(self, data: bytes) -> int: ...

    def mmap(self, length: int, prot: int, flags: int, offset: int) -> mmap.mmap:
        """``mmap(2)`` of the file (the iommufd's vIOMMU / HW queue regions)."""
        ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...


class Backend(Protocol):
    """A module such as ``ioasid.backends.sim``."""

    NAME: str

    def open(self, path: str, flags: int = ...) -> Handle: ...

    def fd_read(self, fd: int, n: int) -> bytes: ...

    def fd_write(self, fd: int, data: bytes) -> int: ...

    def fd_poll(self, fd: int, events: int, timeout_ms: int) -> int: ...
