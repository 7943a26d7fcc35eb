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
import fcntl
import os
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
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


def _vma_end(vma: Vma) -> int:
    return vma.end


def efault(what: str, addr: int, length: int) -> OSError:
    return OSError(
        errno.EFAULT,
        f"{os.strerror(errno.EFAULT)}: {what} [{addr:#x}, +{length:#x}) is not mapped "
        "in the caller",
    )


class _ProcmapQuery(ctypes.Structure):
    """``struct procmap_query`` (``include/uapi/linux/fs.h``)."""

    _fields_ = [
        ("size", ctypes.c_uint64),
        ("query_flags", ctypes.c_uint64),
        ("query_addr", ctypes.c_uint64),
        ("vma_start", ctypes.c_uint64),
        ("vma_end", ctypes.c_uint64),
        ("vma_flags", ctypes.c_uint64),
        ("vma_page_size", ctypes.c_uint64),
        ("vma_offset", ctypes.c_uint64),
        ("inode", ctypes.c_uint64),
        ("dev_major", ctypes.c_uint32),
        ("dev_minor", ctypes.c_uint32),
        ("vma_name_size", ctypes.c_uint32),
        ("build_id_size", ctypes.c_uint32),
        ("vma_name_addr", ctypes.c_uint64),
        ("build_id_addr", ctypes.c_uint64),
    ]


PROCMAP_QUERY = (3 << 30) | (ctypes.sizeof(_ProcmapQuery) << 16) | (ord("f") << 8) | 17
PROCMAP_QUERY_VMA_READABLE = 0x01
PROCMAP_QUERY_VMA_WRITABLE = 0x02
PROCMAP_QUERY_VMA_SHARED = 0x08
PROCMAP_QUERY_COVERING_OR_NEXT_VMA = 0x10

PROCMAP_QUERIES_PER_SYSCALL = 8
"""Range look-ups by ``PROCMAP_QUERY`` in one system call before reading the whole file
(a query costs ~1/30 of a read of ``/proc/<pid>/maps``)."""

_procmap_fds: dict[tuple[int, int], int] = {}
_procmap_lock = threading.Lock()
_procmap_missing = [False]
_procmap_scratch = _ProcmapQuery()


def _procmap_fd(pid: int) -> int | None:
    key = (os.getpid(), pid)  # a forked child must not ask through its parent's file
    fd = _procmap_fds.get(key)
    if fd is None:
        try:
            fd = os.open(f"/proc/{pid}/maps", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        _procmap_fds[key] = fd
    return fd


def procmap_vmas(pid: int, start: int, end: int) -> list[Vma] | None:
    """The VMAs of ``pid`` intersecting ``[start, end)`` by ``PROCMAP_QUERY``; None when the
    kernel has no such ioctl (then read ``/proc/<pid>/maps``)."""
    if _procmap_missing[0]:
        return None
    out: list[Vma] = []
    name = ctypes.create_string_buffer(64)
    with _procmap_lock:
        fd = _procmap_fd(pid)
        if fd is None:
            return None
        q = _ProcmapQuery()
        addr = start
        while addr < end:
            q.size = ctypes.sizeof(q)
            q.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA
            q.query_addr = addr
            q.vma_name_size = q.vma_name_addr = 0  # both or neither, or EINVAL
            q.build_id_size = 0
            try:
                fcntl.ioctl(fd, PROCMAP_QUERY, q)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    break
                if exc.errno in (errno.ENOTTY, errno.EINVAL):
                    _procmap_missing[0] = True
                return None
            if q.vma_start >= end:
                break
            path = ""
            if not q.inode:
                # anonymous or special ([heap], [vvar], ...): its name is short and cheap
                q.query_flags = 0
                q.query_addr = q.vma_start
                q.vma_name_size = len(name)
                q.vma_name_addr = ctypes.addressof(name)
                try:
                    fcntl.ioctl(fd, PROCMAP_QUERY, q)
                    path = name.value.decode(errors="replace") if q.vma_name_size else ""
                except OSError:
                    path = "?"
            flags = q.vma_flags
            out.append(
                Vma(
                    q.vma_start,
                    q.vma_end,
                    bool(flags & PROCMAP_QUERY_VMA_READABLE),
                    bool(flags & PROCMAP_QUERY_VMA_WRITABLE),
                    bool(flags & PROCMAP_QUERY_VMA_SHARED),
                    path,
                    q.vma_offset,
                    (q.dev_major, q.dev_minor),
                    q.inode,
                )
            )
            addr = q.vma_end
    return out


def procmap_allows(pid: int, addr: int, length: int, write: bool) -> bool:
    """True when ``[addr, addr+length)`` of ``pid`` lies in VMAs that allow reading (and
    writing, when asked), by ``PROCMAP_QUERY``; False when not or when it cannot tell."""
    if _procmap_missing[0]:
        return False
    want = PROCMAP_QUERY_VMA_READABLE | (PROCMAP_QUERY_VMA_WRITABLE if write else 0)
    end = addr + length
    with _procmap_lock:
        fd = _procmap_fd(pid)
        if fd is None:
            return False
        q = _procmap_scratch
        while addr < end:
            q.size = ctypes.sizeof(q)
            q.query_flags = want
            q.query_addr = addr
            q.vma_name_size = q.vma_name_addr = q.build_id_size = 0
            try:
                fcntl.ioctl(fd, PROCMAP_QUERY, q)
            except OSError:
                return False
            addr = q.vma_end
    return True


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
        self._queries_syscall = -1
        self._queries = 0
        self._last_query: tuple[int, int, int, list[Vma]] | None = None

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

    def vmas_in(self, start: int, end: int) -> list[Vma]:
        """The VMAs that intersect ``[start, end)``, in address order, as :meth:`vmas`
        lists them. Asked of the kernel one VMA at a time with ``PROCMAP_QUERY`` (Linux
        ≥ 6.11: a few µs each, where reading ``/proc/<pid>/maps`` costs ~200 µs), from the
        parsed file when that ioctl is missing or :meth:`vmas` is overridden. File VMAs
        carry no ``path`` on the first way (nothing that pins needs it)."""
        if type(self).vmas is SelfAddressSpace.vmas and self._maps_syscall != _syscall_count[0]:
            # a system call that pins many ranges (a domain fill) reads the file once
            if self._queries_syscall != _syscall_count[0]:
                self._queries_syscall, self._queries = _syscall_count[0], 0
            last = self._last_query
            # the pin after its check_pinnable in one system call: the same VMAs
            now = _syscall_count[0]
            if last is not None and last[0] == now and last[1] <= start < end <= last[2]:
                return [v for v in last[3] if v.start < end and v.end > start]
            self._queries += 1
            if self._queries <= PROCMAP_QUERIES_PER_SYSCALL:
                found = procmap_vmas(self.pid, start, end)
                if found is not None:
                    self._last_query = (_syscall_count[0], start, end, found)
                    return found
        vmas = self.vmas()
        i = bisect_right(vmas, start, key=_vma_end)
        out: list[Vma] = []
        while i < len(vmas) and vmas[i].start < end:
            out.append(vmas[i])
            i += 1
        return out

    def check_pinnable(self, addr: int, length: int, write: bool) -> None:
        """``pin_user_pages(FOLL_LONGTERM | (write ? FOLL_WRITE : 0))`` on every page.

        Fails with ``EFAULT`` on a hole, on a VMA without read (or write, when asked)
        permission, and on special mappings GUP refuses (``[vvar]``, ``[vsyscall]``).
        """
        start = addr - addr % PAGE_SIZE
        end = addr + length
        cur = start
        for vma in self.vmas_in(cur, end):
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
        runs: SortedDict | None = self._keys.get(key)
        if runs is None:
            runs = self._keys[key] = SortedDict()
        out: list[tuple[int, int, int]] = []
        cur = first
        idx = max(runs.bisect_right(first) - 1, 0)
        for start in list(runs.islice(idx, runs.bisect_right(last))):
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
        for vma in aspace.vmas_in(first * PAGE_SIZE, (last + 1) * PAGE_SIZE):
            if cur > last:
                break
            vfirst, vlast = vma.start // PAGE_SIZE, vma.end // PAGE_SIZE - 1
            if vfirst > last:
                break
            if vlast < cur:
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
        out = bytearray(n)
        self.read_into(pa, memoryview(out))
        return bytes(out)

    def read_into(self, pa: int, dst: memoryview) -> None:
        """Read ``len(dst)`` bytes at ``pa`` straight into ``dst`` (a writable byte view):
        one copy per frame run. A frame in this process's memory is copied with
        ``memmove`` once ``PROCMAP_QUERY`` shows its VMA still mapped with the access
        (the program may have unmapped or protected a page the kernel pinned: a pinned page
        outlives its mapping, ours does not), else by ``process_vm_readv`` or the address
        space's own read (an unmapped page is ``EFAULT``, never a crash); a file frame by
        ``preadv``."""
        n = len(dst)
        pos = 0
        while pos < n:
            kind, target, where, room = self._locate(pa + pos)
            k = min(n - pos, room)
            piece = dst[pos : pos + k]
            if kind == "va":
                assert isinstance(target, SelfAddressSpace)
                if type(target) is not SelfAddressSpace:
                    piece[:] = target.read(where, k)
                elif target.pid == os.getpid() and procmap_allows(target.pid, where, k, False):
                    ctypes.memmove(_buffer_ptr(piece), where, k)
                elif not _vm_copy(target.pid, _buffer_ptr(piece), where, k, write=False):
                    piece[:] = target.read(where, k)
            else:
                assert isinstance(target, int)
                got = os.preadv(target, [piece], where)
                if got < k:
                    piece[got:] = bytes(k - got)
            pos += k

    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``pa``: one copy per frame run, as :meth:`read_into`."""
        view = memoryview(data).cast("B")
        n = len(view)
        pos = 0
        while pos < n:
            kind, target, where, room = self._locate(pa + pos)
            k = min(n - pos, room)
            piece = view[pos : pos + k]
            if kind == "va":
                assert isinstance(target, SelfAddressSpace)
                if type(target) is not SelfAddressSpace:
                    target.write(where, piece)
                elif target.pid == os.getpid() and procmap_allows(target.pid, where, k, True):
                    ctypes.memmove(where, _buffer_ptr(piece), k)
                elif not _vm_copy(target.pid, _buffer_ptr(piece), where, k, write=True):
                    target.write(where, piece)
            else:
                assert isinstance(target, int)
                os.pwrite(target, piece, where)
            pos += k


    def move(self, pa: int, uaddr: int, n: int, *, to_phys: bool) -> None:
        """Copy ``n`` bytes between ``pa`` and ``uaddr``, an address of this process that
        the caller checked mapped with the access (:class:`UserDma`): ``memmove`` for
        frames of this process whose VMA still allows it, else as :meth:`write` /
        :meth:`read` do."""
        pos = 0
        while pos < n:
            kind, target, where, room = self._locate(pa + pos)
            k = min(n - pos, room)
            if (
                kind == "va"
                and type(target) is SelfAddressSpace
                and target.pid == os.getpid()
                and procmap_allows(target.pid, where, k, to_phys)
            ):
                if to_phys:
                    ctypes.memmove(where, uaddr + pos, k)
                else:
                    ctypes.memmove(uaddr + pos, where, k)
            elif to_phys:
                self.write(pa + pos, ctypes.string_at(uaddr + pos, k))
            else:
                data = self.read(pa + pos, k)
                ctypes.memmove(uaddr + pos, data, k)
            pos += k


class UserDma:
    """The caller's buffer of a simulated DMA, ``[addr, addr+length)`` of this very
    process, checked (``PROCMAP_QUERY``) to be mapped with the access the transfer needs
    before anything moves: the device's bytes then go between it and the pages in one
    ``memmove`` per physical run, with no copy in between."""

    def __init__(self, phys: PhysMap, addr: int, length: int) -> None:
        self.phys = phys
        self.addr = addr
        self.length = length

    @classmethod
    def of(
        cls, phys: PhysMap, aspace: object, addr: int, length: int, *, to_device: bool
    ) -> UserDma | None:
        """The buffer, when ``aspace`` is this process's own and the whole range allows
        reading (``to_device``: the device writes memory from it) or writing; None when
        the transfer must take the checked copies (another process, a hole, ...)."""
        if type(aspace) is not SelfAddressSpace or aspace.pid != os.getpid():
            return None
        if length <= 0 or addr <= 0 or addr + length > 1 << 64:
            return None
        if not procmap_allows(aspace.pid, addr, length, not to_device):
            return None
        return cls(phys, addr, length)

    def read(self, offset: int, n: int) -> bytes:
        return ctypes.string_at(self.addr + offset, n)

    def write(self, offset: int, data: bytes) -> None:
        ctypes.memmove(self.addr + offset, data, len(data))

    def to_phys(self, pa: int, offset: int, n: int) -> None:
        self.phys.move(pa, self.addr + offset, n, to_phys=True)

    def from_phys(self, pa: int, offset: int, n: int) -> None:
        self.phys.move(pa, self.addr + offset, n, to_phys=False)


_local_iov = _IoVec(0, 0)
_remote_iov = _IoVec(0, 0)
_local_ref, _remote_ref = ctypes.byref(_local_iov), ctypes.byref(_remote_iov)
_copy_lock = threading.Lock()


def _vm_copy(pid: int, local: int, remote: int, n: int, *, write: bool) -> bool:
    """One ``process_vm_writev`` (``write``) or ``process_vm_readv`` of ``n`` bytes between
    our buffer at ``local`` and ``remote`` in ``pid``; True when every byte was copied.
    The kernel checks both sides: nothing is ever touched that is not mapped."""
    with _copy_lock:
        _local_iov.iov_base, _local_iov.iov_len = local, n
        _remote_iov.iov_base, _remote_iov.iov_len = remote, n
        op = _process_vm_writev if write else _process_vm_readv
        return bool(op(pid, _local_ref, 1, _remote_ref, 1, 0) == n)


def _buffer_ptr(view: memoryview) -> int:
    """The address of the bytes of a (possibly read-only) contiguous byte view."""
    ptr: int = np.frombuffer(view, dtype=np.uint8).ctypes.data
    return ptr


def buffer_address(buf: bytearray | memoryview) -> int:
    """The address of a writable Python buffer, as the kernel would see the pointer."""
    if len(buf) == 0:
        return 0
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
