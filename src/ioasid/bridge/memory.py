"""``ProcessAddressSpace``: the memory of a program the bridge serves (DESIGN.md §Memory).

Copies go through ``process_vm_readv``/``process_vm_writev`` and pinning consults
``/proc/<pid>/maps``, exactly as :class:`~ioasid.hw.memory.SelfAddressSpace` does for this
process, so ``EFAULT`` comes where the in-process backend gives it.

What we add is the end of the mm. In the kernel a page pinned by iommufd outlives the process
that mapped it: the pin holds the page, iommufd holds the ``mm_struct`` (``mmgrab``), and a
device or an access can still reach the bytes after the process exited or exec'd, while
every new pin through the dead mm is ``EFAULT`` (the selftests' ``fork_gone``). When the
program is about to lose its mm (``exit_group``, ``execve``), :meth:`keep_pinned` copies the
pages it has pinned; from :meth:`gone` on they are what reads and writes reach, and the rest
of the old address space is unmapped.
"""

from __future__ import annotations

import ctypes
import os

from ioasid.hw.memory import (
    PAGE_SIZE,
    SelfAddressSpace,
    Vma,
    _IoVec,
    _process_vm_readv,
    _process_vm_writev,
    efault,
)
from ioasid.kernel.pages import HUGETLBFS_MAGIC, fs_magic
from ioasid.kernel.rangecount import RangeCount


class ProcessAddressSpace(SelfAddressSpace):
    """Another process's memory, by pid; after :meth:`gone`, only its pinned pages."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.alive = True
        self._kept: dict[int, bytearray] = {}
        self._pending: dict[int, bytearray] = {}
        # one preallocated iovec pair and page for the small copies of every ioctl
        self._scratch = ctypes.create_string_buffer(PAGE_SIZE)
        self._scratch_addr = ctypes.addressof(self._scratch)
        self._local = _IoVec(self._scratch_addr, 0)
        self._remote = _IoVec(0, 0)
        self._local_ref, self._remote_ref = ctypes.byref(self._local), ctypes.byref(self._remote)

    def _copy(self, addr: int, length: int, write: bool) -> bool:
        """One ``process_vm_readv``/``writev`` of the scratch page: all bytes or nothing."""
        self._local.iov_len = self._remote.iov_len = length
        self._remote.iov_base = addr
        op = _process_vm_writev if write else _process_vm_readv
        return bool(op(self.pid, self._local_ref, 1, self._remote_ref, 1, 0) == length)

    def keep_pinned(self, pins: RangeCount) -> None:
        """Copy every page ``pins`` holds (the mm's long-term pins), for after :meth:`gone`.
        A page the process cannot read any more is simply not kept."""
        kept: dict[int, bytearray] = {}
        for first, last, _count in pins.ranges():
            for vpn in range(first, last + 1):
                try:
                    kept[vpn] = bytearray(super().read(vpn * PAGE_SIZE, PAGE_SIZE))
                except OSError:
                    continue
        self._pending = kept

    def gone(self) -> None:
        """The mm is gone (the process exited or exec'd): from now on only the pages kept
        by the last :meth:`keep_pinned` are reachable."""
        self.alive = False
        self._kept, self._pending = self._pending, {}

    def _kept_range(self, addr: int, length: int, what: str) -> list[tuple[bytearray, int, int]]:
        pieces: list[tuple[bytearray, int, int]] = []
        pos, end = addr, addr + length
        while pos < end:
            vpn, off = divmod(pos, PAGE_SIZE)
            page = self._kept.get(vpn)
            if page is None:
                raise efault(what, addr, length)
            n = min(PAGE_SIZE - off, end - pos)
            pieces.append((page, off, n))
            pos += n
        return pieces

    def read(self, addr: int, length: int) -> bytes:
        if self.alive:
            if 0 < length <= PAGE_SIZE and 0 <= addr < (1 << 64) - length:
                if not self._copy(addr, length, False):
                    raise efault("read", addr, length)
                return ctypes.string_at(self._scratch_addr, length)
            return super().read(addr, length)
        return b"".join(bytes(p[o : o + n]) for p, o, n in self._kept_range(addr, length, "read"))

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        if self.alive:
            length = len(data)
            if 0 < length <= PAGE_SIZE and 0 <= addr < (1 << 64) - length:
                ctypes.memmove(self._scratch_addr, bytes(data), length)
                if not self._copy(addr, length, True):
                    raise efault("write", addr, length)
                return
            super().write(addr, data)
            return
        view = memoryview(data).cast("B")
        pos = 0
        for page, off, n in self._kept_range(addr, len(view), "write"):
            page[off : off + n] = view[pos : pos + n]
            pos += n

    def check_pinnable(self, addr: int, length: int, write: bool) -> None:
        if not self.alive:
            raise efault("pin (the process's mm is gone)", addr, length)
        super().check_pinnable(addr, length, write)

    def mapped_file(self, vma: Vma) -> int:
        """A descriptor of the file behind the shared mapping ``vma`` (``map_files``), for
        :class:`~ioasid.hw.memory.PhysMap` to reach its pages after the process is gone, as
        a pinned page stays in the page cache; -1 if it cannot be opened (``map_files``
        needs root) or is hugetlbfs (no ``pwrite``; and a reference would keep its huge
        pages from the pool after the last unmap)."""
        try:
            fd = os.open(
                f"/proc/{self.pid}/map_files/{vma.start:x}-{vma.end:x}",
                (os.O_RDWR if vma.writable else os.O_RDONLY) | os.O_CLOEXEC,
            )
        except OSError:
            return -1
        if fs_magic(fd) == HUGETLBFS_MAGIC:
            os.close(fd)
            return -1
        return fd

    def vmas(self) -> list[Vma]:
        """The process's mappings; none once its mm is gone (or it vanished, ``kill -9``)."""
        if not self.alive:
            return []
        try:
            return super().vmas()
        except OSError:
            return []
