"""The real kernel: ``/dev/iommu`` and VFIO cdevs through ``fcntl.ioctl``."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap as _mmap
import os
import select

from ioasid.backends.base import IoctlArg

NAME = "linux"

_ioctl = ctypes.CDLL(None, use_errno=True).ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int


class LinuxHandle:
    """A real file descriptor; every call goes straight to the kernel."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError(f"{self.path}: I/O operation on a closed handle")
        return self._fd

    def ioctl(self, request: int, arg: IoctlArg = 0) -> int | bytes:
        """As ``fcntl.ioctl(fd, request, arg, True)``, except that an ``int`` is passed as a
        pointer of 64 bits (``fcntl`` takes a C ``int`` and refuses a user address above
        2^31 with ``OverflowError``); one that no pointer can be is EFAULT."""
        if isinstance(arg, int):
            if not 0 <= arg < 1 << 64:
                raise OSError(errno.EFAULT, f"{arg:#x} is not a user address")
            ret = _ioctl(self.fileno(), request, arg)
            if ret < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return int(ret)
        result: int | bytes = fcntl.ioctl(self.fileno(), request, arg, True)
        return result

    def read(self, n: int) -> bytes:
        return os.read(self.fileno(), n)

    def write(self, data: bytes) -> int:
        return os.write(self.fileno(), data)

    def pread(self, n: int, offset: int) -> bytes:
        return os.pread(self.fileno(), n, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return os.pwrite(self.fileno(), data, offset)

    def mmap(self, length: int, prot: int, flags: int, offset: int) -> _mmap.mmap:
        """``mmap(NULL, length, prot, flags, fd, offset)``."""
        return _mmap.mmap(self.fileno(), length, flags=flags, prot=prot, offset=offset)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> LinuxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<linux handle {self.path} fd={self._fd}>"


def open(path: str = "/dev/iommu", flags: int = os.O_RDWR) -> LinuxHandle:
    """Open ``path`` on the running kernel (``/dev/iommu``, ``/dev/vfio/devices/vfioN``, ...)."""
    return LinuxHandle(path, os.open(path, flags | os.O_CLOEXEC))


def fd_read(fd: int, n: int) -> bytes:
    """``read(2)`` of a file the kernel handed out (a fault queue or vEVENTQ fd)."""
    return os.read(fd, n)


def fd_write(fd: int, data: bytes) -> int:
    return os.write(fd, data)


def fd_poll(fd: int, events: int, timeout_ms: int) -> int:
    """``poll(2)`` of one fd: the events that are ready (0 on timeout)."""
    p = select.poll()
    p.register(fd, events)
    ready = p.poll(timeout_ms)
    return ready[0][1] if ready else 0
