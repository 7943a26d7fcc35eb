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

from sortedcontainers import SortedDict

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1
HUGE_PAGES = (2 << 20) // PAGE_SIZE
"""Pages in a 2 MiB huge page: physical runs are laid out co-aligned to it."""


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
        f"{os.strerror(errno.EFAULT)}: {what} [{addr:#x}, +{length:#x}) is not mapped "
        "in the caller",
    )


@dataclass(frozen=True)
class Vma:
    """One line of ``/proc/<pid>/maps``: ``[start, end)`` with its permissions and, for a
    file mapping, the file (``dev``, ``inode``) and the file offset of ``start``."""

    start: int
    end: int
    readable: bool
    writable: bool
    shared: bool
    path: str
    offset: int = 0
    dev: tuple[int, int] = (0, 0)
    inode: int = 0


class AddressSpace(Protocol):
    """What the simulated kernel needs from a process's memory."""

    def read(self, addr: int, length: int) -> bytes: ...

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None: ...

    def check_pinnable(self, addr: int, length: int, write: bool) -> None:
        """Raise ``EFAULT`` unless ``pin_user_pages`` would succeed on the whole range."""
        ...


_syscall_count = [0]


def new_syscall() -> None:
    """A system call into the simulated kernel begins: cached views of the caller's
    mappings are stale from here on."""
    _syscall_count[0] += 1


class SelfAddressSpace:
    """This process's real memory, probed and copied without touching unmapped pages."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self._maps_text = ""
        self._maps: list[Vma] = []
        self._maps_syscall = -1

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
        """The VMAs of ``/proc/<pid>/maps``: read once per system call (the caller's
        mappings do not change while its ioctl runs, as the kernel holds the mmap lock),
        re-parsed only when the text changed."""
        if self._maps_syscall == _syscall_count[0]:
            return self._maps
        self._maps_syscall = _syscall_count[0]
        with open(f"/proc/{self.pid}/maps") as f:
            text = f.read()
        if text == self._maps_text:
            return self._maps
        out: list[Vma] = []
        for line in text.splitlines():
            parts = line.split(maxsplit=5)
            lo, hi = parts[0].split("-")
            perms = parts[1]
            major, minor = parts[3].split(":")
            out.append(
                Vma(
                    int(lo, 16),
                    int(hi, 16),
                    perms[0] == "r",
                    perms[1] == "w",
                    perms[3] == "s",
                    parts[5].strip() if len(parts) > 5 else "",
                    int(parts[2], 16),
                    (int(major, 16), int(minor, 16)),
                    int(parts[4]),
                )
            )
        self._maps_text, self._maps = text, out
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


class PhysMap:
    """Simulated physical memory: a frame number for every pinned page, by identity.

    A page's identity is what the kernel's ``struct page`` is: the same for every virtual
    mapping of it. Pages of a shared file mapping (a memfd mapped twice, or mapped and also
    given to ``IOMMU_IOAS_MAP_FILE``) are keyed by (device, inode, file page); anonymous pages
    by (address space, virtual page). Frames are handed out in runs, so memory pinned in one
    go is physically contiguous and maps into large IOMMU pages. A frame is accessed through
    the mapping it was first seen in (a virtual address of this process, or the file).
    """

    FIRST_PFN = 0x100000
    """Frames start at 4 GiB, so a physical address never looks like a small IOVA."""

    def __init__(self) -> None:
        self._keys: dict[tuple[object, ...], SortedDict] = {}
        self._frames: SortedDict = SortedDict()
        self._next = self.FIRST_PFN
        self._file_fds: dict[tuple[object, ...], int] = {}

    def _frames_for(
        self, key: tuple[object, ...], first: int, last: int, access: tuple[str, object, int]
    ) -> list[tuple[int, int, int]]:
        """``(page, pfn, count)`` runs covering pages ``[first, last]`` of ``key``."""
        runs: SortedDict = self._keys.setdefault(key, SortedDict())
        out: list[tuple[int, int, int]] = []
        cur = first
        idx = max(runs.bisect_right(first) - 1, 0)
        for start in list(runs.keys()[idx:]):
            if cur > last:
                break
            rlast, pfn = runs[start]
            if rlast < cur:
                continue
            if start > cur:
                gap_last = min(start - 1, last)
                out.append(self._new_run(runs, cur, gap_last, access, first))
                cur = gap_last + 1
                if cur > last:
                    break
            take_last = min(rlast, last)
            out.append((cur, pfn + (cur - start), take_last - cur + 1))
            cur = take_last + 1
        if cur <= last:
            out.append(self._new_run(runs, cur, last, access, first))
        return out

    def _new_run(
        self,
        runs: SortedDict,
        first: int,
        last: int,
        access: tuple[str, object, int],
        base_page: int,
    ) -> tuple[int, int, int]:
        n = last - first + 1
        # co-aligned with the page index modulo 2 MiB, as huge pages are: the first
        # allocation and a run after any other give the same physical layout
        pfn = self._next + (first - self._next) % HUGE_PAGES
        self._next = pfn + n
        runs[first] = (last, pfn)
        kind, target, base = access
        self._frames[pfn] = (pfn + n - 1, kind, target, base + (first - base_page) * PAGE_SIZE)
        return first, pfn, n

    def pin_user(
        self, aspace: SelfAddressSpace, va: int, length: int
    ) -> list[tuple[int, int, int]]:
        """Frames behind ``[va, va+length)`` of ``aspace``: ``(va_page, pfn, npages)`` runs."""
        first, last = va // PAGE_SIZE, (va + length - 1) // PAGE_SIZE
        out: list[tuple[int, int, int]] = []
        cur = first
        for vma in aspace.vmas():
            if cur > last:
                break
            vfirst, vlast = vma.start // PAGE_SIZE, vma.end // PAGE_SIZE - 1
            if vlast < cur or vfirst > last:
                continue
            a, b = max(cur, vfirst), min(last, vlast)
            if vma.shared and vma.inode:
                fpage = vma.offset // PAGE_SIZE + (a - vfirst)
                key: tuple[object, ...] = ("file", vma.dev, vma.inode)
                via: tuple[str, object, int] = ("va", aspace, a * PAGE_SIZE)
                own = self._mapped_file(aspace, vma, key)
                if own is not None:
                    via = ("file", own, fpage * PAGE_SIZE)
                for page, pfn, n in self._frames_for(key, fpage, fpage + (b - a), via):
                    out.append((a + page - fpage, pfn, n))
            else:
                key = ("anon", id(aspace))
                out.extend(self._frames_for(key, a, b, ("va", aspace, a * PAGE_SIZE)))
            cur = b + 1
        return out

    def _mapped_file(
        self, aspace: SelfAddressSpace, vma: Vma, key: tuple[object, ...]
    ) -> int | None:
        """A descriptor of the file behind a shared mapping, if ``aspace`` can open one
        (``mapped_file``: another process's memory, whose mappings die with it): its frames
        keep a reference to the file and are reached through it, as the page cache keeps
        a pinned page after every mapping of it went."""
        opener = getattr(aspace, "mapped_file", None)
        if opener is None:
            return None
        own = self._file_fds.get(key)
        if own is None:
            fd = opener(vma)
            if fd < 0:
                return None
            self._file_fds[key] = own = fd
        return own

    def pin_file(self, fd: int, offset: int, length: int) -> list[tuple[int, int, int]]:
        """Frames of file pages ``[offset, offset+length)``: ``(file_page, pfn, n)`` runs."""
        st = os.fstat(fd)
        key = ("file", (os.major(st.st_dev), os.minor(st.st_dev)), st.st_ino)
        own = self._file_fds.get(key)
        if own is None:
            # the frames outlive the caller's descriptor (the page cache holds the file)
            own = self._file_fds[key] = os.dup(fd)
        first, last = offset // PAGE_SIZE, (offset + length - 1) // PAGE_SIZE
        return self._frames_for(key, first, last, ("file", own, first * PAGE_SIZE))

    def close(self) -> None:
        """Drop the file references the frames hold (the simulated host shuts down)."""
        for fd in self._file_fds.values():
            os.close(fd)
        self._file_fds.clear()

    def __del__(self) -> None:
        if getattr(self, "_file_fds", None):
            self.close()

    def _locate(self, pa: int) -> tuple[str, object, int, int]:
        pfn = pa // PAGE_SIZE
        idx = self._frames.bisect_right(pfn) - 1
        if idx < 0:
            raise efault("DMA to physical", pa, 1)
        start, (last, kind, target, base) = self._frames.peekitem(idx)
        if pfn > last:
            raise efault("DMA to physical", pa, 1)
        return kind, target, base + (pa - start * PAGE_SIZE), (last + 1) * PAGE_SIZE - pa

    def read(self, pa: int, n: int) -> bytes:
        out = bytearray()
        while n:
            kind, target, where, room = self._locate(pa)
            k = min(n, room)
            if kind == "va":
                assert isinstance(target, SelfAddressSpace)
                out += target.read(where, k)
            else:
                assert isinstance(target, int)
                out += os.pread(target, k, where).ljust(k, b"\0")
            pa, n = pa + k, n - k
        return bytes(out)

    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            kind, target, where, room = self._locate(pa)
            k = min(len(view), room)
            if kind == "va":
                assert isinstance(target, SelfAddressSpace)
                target.write(where, view[:k])
            else:
                assert isinstance(target, int)
                os.pwrite(target, view[:k], where)
            pa, view = pa + k, view[k:]


def buffer_address(buf: bytearray | memoryview) -> int:
    """The address of a writable Python buffer, as the kernel would see the pointer."""
    if len(buf) == 0:
        return 0
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
