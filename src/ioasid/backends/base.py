"""The backend protocol: as small as the kernel's file operations."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

IoctlArg = bytearray | memoryview | int


@runtime_checkable
class Handle(Protocol):
    """An open file of ``/dev/iommu``, ``/dev/vfio/vfio`` or a VFIO device cdev."""

    path: str

    def fileno(self) -> int: ...

    def ioctl(self, request: int, arg: IoctlArg = 0) -> int:
        """Issue ``request``; ``arg`` is updated in place. Raises ``OSError(errno)``."""
        ...

    def read(self, n: int) -> bytes: ...

    def pread(self, n: int, offset: int) -> bytes:
        """``pread(2)``: e.g. a VFIO device region at ``VFIO_PCI_INDEX_TO_OFFSET(index)``."""
        ...

    def pwrite(self, data: bytes, offset: int) -> int: ...

    def write(self, data: bytes) -> int: ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...


class Backend(Protocol):
    """A module such as ``ioasid.backends.sim``."""

    NAME: str

    def open(self, path: str, flags: int = ...) -> Handle: ...
