"""Memory that simulated devices and the simulated kernel read and write.

The kernel reaches user memory in two ways: ``copy_from_user``/``copy_to_user`` for ioctl
arguments, and ``pin_user_pages`` for DMA. :class:`SelfAddressSpace` does both on this
process's real memory without ever touching an unmapped address: copies go through
``process_vm_readv``/``process_vm_writev`` on our own pid (an unmapped address is ``EFAULT``,
never a crash) and pinning consults ``/proc/self/maps`` for the VMA and its permissions.
:class:`SyntheticAddressSpace` is a modelled address space of any size for scale runs.
"""

from __future__ import annotations

import ctypes
import errno
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Protocol

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.restype = ctypes.c_ssize_t
_process_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_process_vm_writev = _libc.process_vm_writev
_process_vm_writev.restype = ctypes.c_ssize_t
_process_vm_writev.argtypes = _process_vm_readv.argtypes


def efault(what: str, addr: int, length: int) -> OSError:
    return OSError(
        errno.EFAULT,
        f"{os.strerror(errno.EFAULT)}: {what} [{addr:#x}, +{length:#x}) is not mapped in the caller",
    )


@dataclass(frozen=True)
class Vma:
    """One line of ``/proc/<pid>/maps``: ``[start, end)`` with its permissions."""

    start: int
    end: int
    readable: bool
    writable: bool
    shared: bool
    path: str


class AddressSpace(Protocol):
    """What the simulated kernel needs from a process's memory."""

    def read(self, addr: int, length: int) -> bytes: ...

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None: ...

    def check_pinnable(self, addr: int, length: int, write: bool) -> None:
        """Raise ``EFAULT`` unless ``pin_user_pages`` would succeed on the whole range."""
        ...


class SelfAddressSpace:
    """This process's real memory, probed and copied without touching unmapped pages."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid

    def read(self, addr: int, length: int) -> bytes:
        if length == 0:
            return b""
        if addr < 0 or addr + length > 1 << 64:
            raise efault("read", addr, length)
        buf = ctypes.create_string_buffer(length)
        local = _IoVec(ctypes.cast(buf, ctypes.c_void_p), length)
        remote = _IoVec(addr, length)
        n = _process_vm_readv(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if n != length:
            raise efault("read", addr, length)
        return buf.raw

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        length = len(data)
        if length == 0:
            return
        if addr < 0 or addr + length > 1 << 64:
            raise efault("write", addr, length)
        src = ctypes.create_string_buffer(bytes(data), length)
        local = _IoVec(ctypes.cast(src, ctypes.c_void_p), length)
        remote = _IoVec(addr, length)
        n = _process_vm_writev(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if n != length:
            raise efault("write", addr, length)

    def vmas(self) -> list[Vma]:
        out: list[Vma] = []
        with open(f"/proc/{self.pid}/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                lo, hi = parts[0].split("-")
                perms = parts[1]
                out.append(
                    Vma(
                        int(lo, 16),
                        int(hi, 16),
                        perms[0] == "r",
                        perms[1] == "w",
                        perms[3] == "s",
                        parts[5].strip() if len(parts) > 5 else "",
                    )
                )
        return out

    def check_pinnable(self, addr: int, length: int, write: bool) -> None:
        """``pin_user_pages(FOLL_LONGTERM | (write ? FOLL_WRITE : 0))`` on every page.

        Fails with ``EFAULT`` on a hole, on a VMA without read (or write, when asked)
        permission, and on special mappings GUP refuses (``[vvar]``, ``[vsyscall]``).
        """
        start = addr - addr % PAGE_SIZE
        end = addr + length
        cur = start
        for vma in self.vmas():
            if vma.end <= cur:
                continue
            if vma.start > cur:
                break
            if vma.path in ("[vvar]", "[vsyscall]", "[vvar_vclock]") or not vma.readable:
                break
            if write and not vma.writable:
                break
            cur = vma.end
            if cur >= end:
                return
        raise efault("pin", addr, length)


@dataclass
class SyntheticAddressSpace:
    """A modelled address space: VMAs declared by the caller, only touched bytes stored.

    Lets a scale run map a 1 TiB guest or 4 M separate pages without owning that memory.
    """

    vmas: list[Vma] = field(default_factory=list)
    _pages: dict[int, bytearray] = field(default_factory=dict)

    def add_vma(self, start: int, length: int, *, writable: bool = True) -> Vma:
        vma = Vma(start, start + length, True, writable, False, "[synthetic]")
        self.vmas.append(vma)
        self.vmas.sort(key=lambda v: v.start)
        return vma

    def _vma_covering(self, addr: int, length: int, write: bool) -> bool:
        starts = [v.start for v in self.vmas]
        cur, end = addr, addr + length
        i = bisect_right(starts, cur) - 1
        while cur < end:
            if i < 0 or i >= len(self.vmas):
                return False
            vma = self.vmas[i]
            if not vma.start <= cur < vma.end or (write and not vma.writable):
                return False
            cur = vma.end
            i += 1
        return True

    def check_pinnable(self, addr: int, length: int, write: bool) -> None:
        if not self._vma_covering(addr - addr % PAGE_SIZE, length + addr % PAGE_SIZE, write):
            raise efault("pin", addr, length)

    def read(self, addr: int, length: int) -> bytes:
        if not self._vma_covering(addr, length, False):
            raise efault("read", addr, length)
        out = bytearray(length)
        pos = 0
        while pos < length:
            page, off = divmod(addr + pos, PAGE_SIZE)
            n = min(PAGE_SIZE - off, length - pos)
            stored = self._pages.get(page)
            if stored is not None:
                out[pos : pos + n] = stored[off : off + n]
            pos += n
        return bytes(out)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        length = len(data)
        if not self._vma_covering(addr, length, True):
            raise efault("write", addr, length)
        view = memoryview(data).cast("B")
        pos = 0
        while pos < length:
            page, off = divmod(addr + pos, PAGE_SIZE)
            n = min(PAGE_SIZE - off, length - pos)
            stored = self._pages.setdefault(page, bytearray(PAGE_SIZE))
            stored[off : off + n] = view[pos : pos + n]
            pos += n


def buffer_address(buf: bytearray | memoryview) -> int:
    """The address of a writable Python buffer, as the kernel would see the pointer."""
    if len(buf) == 0:
        return 0
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
