"""The embedded kernel: ``/dev/iommu`` served by ``ioasid.kernel``, a model of Linux 7.3.

Every call crosses the same ABI as on a real kernel: the struct bytes in ``arg`` (or at the
address ``arg``) are decoded by the simulated kernel, which writes its outputs back into the
caller's memory and fails with ``OSError`` carrying the kernel's errno. The error message
also names the rule that failed, which the real kernel cannot tell you.

Each handle owns a real file descriptor (an ``eventfd``) so that its number never collides
with the process's other fds and can be passed where the kernel expects an fd.
"""

from __future__ import annotations

import errno
import mmap as _mmap
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ioasid.backends.base import IOCTL_BUFSZ, IoctlArg
from ioasid.hw.memory import buffer_address, new_syscall
from ioasid.kernel.errors import bug
from ioasid.kernel.machine import Kernel
from ioasid.kernel.private import File
from ioasid.topology import Topology

NAME = "sim"

_kernel: Kernel | None = None


TOPOLOGY_ENV = "IOASID_SIM_TOPOLOGY"
"""A topology file (YAML/JSON) the simulated host boots with instead of the default host."""


def _boot(topology: str | os.PathLike[str] | Topology | None) -> Kernel:
    from ioasid import topology as topo_mod

    if topology is None and os.environ.get(TOPOLOGY_ENV):
        topology = os.environ[TOPOLOGY_ENV]
    if topology is not None and not isinstance(topology, topo_mod.Topology):
        topology = topo_mod.load(topology)
    return Kernel(topology)


def kernel() -> Kernel:
    """The simulated host's kernel, shared by every handle of this process."""
    global _kernel
    if _kernel is None:
        _kernel = _boot(None)
    return _kernel


def reset(topology: str | os.PathLike[str] | Topology | None = None) -> Kernel:
    """Boot a fresh simulated host (open handles keep the old one): the embedded default
    host, or ``topology`` (a file or a :class:`ioasid.topology.Topology`)."""
    global _kernel
    _kernel = _boot(topology)
    return _kernel


T = TypeVar("T")

_UNTRUSTED = (1, 0)
"""An empty trusted range: every user address is probed."""


def _entry(k: Kernel, call: Callable[[], T], trusted: tuple[int, int] = _UNTRUSTED) -> T:
    """One system call into the simulated kernel: under its lock, with the caller's own
    buffer ``[lo, hi)`` as trusted user memory while it runs; an exception that is not an
    ``OSError`` is a simulator bug and leaves as one (:class:`KernelBug`)."""
    with k.lock:
        new_syscall()
        saved, k.trusted = k.trusted, trusted
        try:
            return call()
        except OSError:
            raise
        except Exception as e:
            raise bug(e) from e
        finally:
            k.trusted = saved


_local = threading.local()
_ZEROS = bytes(IOCTL_BUFSZ)


def _scratch() -> tuple[bytearray, int]:
    """This thread's ``fcntl.ioctl`` scratch buffer and its address (a ``bytearray`` that
    is never resized, so the address stays valid)."""
    got: tuple[bytearray, int] | None = getattr(_local, "scratch", None)
    if got is None:
        buf = bytearray(IOCTL_BUFSZ)
        got = _local.scratch = (buf, buffer_address(buf))
    return got


class SimHandle:
    """An open file of the simulated kernel."""

    def __init__(self, path: str, k: Kernel, file: File) -> None:
        self.path = path
        self.kernel = k
        self.file = file
        self._fd = os.eventfd(0, os.EFD_CLOEXEC)
        self._ino = os.fstat(self._fd).st_ino
        k.files[self._fd] = file

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError(f"{self.path}: I/O operation on a closed handle")
        return self._fd

    def ioctl(self, request: int, arg: IoctlArg = 0) -> int | bytes:
        """``fcntl.ioctl(fd, request, arg, True)`` on the simulated file: an ``int`` is a raw
        user pointer; a buffer of up to ``IOCTL_BUFSZ`` bytes goes through a scratch copy
        (copied back after the call, on failure too; a ``bytes`` argument gets the copy
        back as the result); a larger mutable buffer is passed as it is."""
        self.fileno()
        k, file = self.kernel, self.file
        if isinstance(arg, int):
            return _entry(k, lambda: file.ioctl(request, arg))
        view = memoryview(arg).cast("B")
        n = len(view)
        if n > IOCTL_BUFSZ:
            if view.readonly:
                raise ValueError("ioctl string arg too long")
            addr = buffer_address(view)
            return _entry(k, lambda: file.ioctl(request, addr), (addr, addr + n))
        with k.lock:  # the scratch buffer is filled and read back under the same lock
            scratch, addr = _scratch()
            scratch[:n] = view
            scratch[n:] = _ZEROS[n:]
            try:
                ret = _entry(k, lambda: file.ioctl(request, addr), (addr, addr + IOCTL_BUFSZ))
            finally:
                out = bytes(scratch[:n])
                if not view.readonly:
                    view[:] = out
        return out if view.readonly else ret

    def read(self, n: int) -> bytes:
        raise OSError(22, f"{self.path}: read is not supported")

    def write(self, data: bytes) -> int:
        raise OSError(22, f"{self.path}: write is not supported")

    def pread(self, n: int, offset: int) -> bytes:
        self.fileno()
        pread = getattr(self.file, "pread", None)
        if pread is None:
            raise OSError(22, f"{self.path}: pread is not supported")
        return bytes(_entry(self.kernel, lambda: pread(n, offset)))

    def pwrite(self, data: bytes, offset: int) -> int:
        self.fileno()
        pwrite = getattr(self.file, "pwrite", None)
        if pwrite is None:
            raise OSError(22, f"{self.path}: pwrite is not supported")
        return int(_entry(self.kernel, lambda: pwrite(data, offset)))

    def mmap(self, length: int, prot: int, flags: int, offset: int) -> _mmap.mmap:
        """``mmap(NULL, length, prot, flags, fd, offset)`` of the simulated file."""
        self.fileno()
        fops_mmap = getattr(self.file, "mmap", None)
        if fops_mmap is None:
            raise OSError(errno.ENODEV, f"{self.path}: mmap is not supported")
        if offset % _mmap.PAGESIZE:
            raise OSError(errno.EINVAL, f"mmap: offset {offset:#x} is not page aligned")
        mapping: _mmap.mmap = _entry(
            self.kernel, lambda: fops_mmap(length, prot, flags, offset // _mmap.PAGESIZE)
        )
        return mapping

    def close(self) -> None:
        """Close the fd and release the file. If the number was already closed behind our
        back (``os.close(handle.fileno())``) and reused, the new owner's fd is left alone."""
        if self._fd >= 0:
            with self.kernel.lock:
                fd, self._fd = self._fd, -1
                self.kernel.files.pop(fd, None)
                try:
                    ours = os.fstat(fd).st_ino == self._ino
                except OSError:
                    ours = False
                if ours:
                    os.close(fd)
                self.file.release()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def __repr__(self) -> str:
        return f"<sim handle {self.path} fd={self._fd}>"


def open(path: str = "/dev/iommu", flags: int = os.O_RDWR) -> SimHandle:
    """Open a device node of the simulated host (``/dev/iommu``, ``/dev/vfio/vfio``,
    ``/dev/vfio/devices/vfioN``)."""
    k = kernel()
    with k.lock:
        return SimHandle(path, k, k.open(path))


def _anon_file(fd: int) -> Any:
    k = kernel()
    f = k.anon_inodes.fget(fd)
    if f is None:
        raise OSError(errno.EBADF, f"fd {fd} is no file of the simulated kernel")
    return f.private_data


def fd_read(fd: int, n: int) -> bytes:
    """``read(2)`` of a file the simulated kernel handed out (a fault queue or vEVENTQ)."""
    return bytes(_entry(kernel(), lambda: _anon_file(fd).read(n)))


def fd_write(fd: int, data: bytes) -> int:
    return int(_entry(kernel(), lambda: _anon_file(fd).write(data)))


def fd_poll(fd: int, events: int, timeout_ms: int) -> int:
    """``poll(2)``: the ready events among ``events``, waiting up to ``timeout_ms`` (-1:
    forever) for another thread's call to queue one."""
    file = _anon_file(fd)
    deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000
    while True:
        with kernel().lock:
            ready = int(file.poll()) & events
        if ready or (deadline is not None and time.monotonic() >= deadline):
            return ready
        time.sleep(0.001)
