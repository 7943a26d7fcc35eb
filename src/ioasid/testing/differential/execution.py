"""Executing one :class:`~.calls.Call` on one backend: the user memory a run shares, the
struct built from the call's fields and references, and the outcome as JSON-ready data."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import importlib
import mmap
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy

from ioasid import uapi
from ioasid.backends.base import Handle
from ioasid.hw.memory import buffer_address
from ioasid.testing import libc
from ioasid.testing.differential.calls import (
    BAD_FD,
    HOLE_LEN,
    HOLE_OFF,
    HPAGE,
    PAGE,
    RANGE_SIZE,
    Call,
    Json,
    struct_of,
)


class UserMemory:
    """A 2 MiB-aligned anonymous region (never touched: no domain, nothing pinned) and a
    memfd, shared by every backend of a run so that both see the same ``user_va``.

    With ``devices=True`` (the devices mode, where domains and accesses pin and read it)
    the region is instead filled with a pattern (every 8-byte word holds its offset), so
    every page is a real, distinct anonymous page and data read through an access shows
    where it came from; transparent huge pages are refused for it (``MD_CHECK_REFS`` skips
    compound pages on the kernel); and ``[HOLE_OFF, HOLE_OFF + HOLE_LEN)`` is munmapped:
    pinning there fails with ``EFAULT``.
    """

    def __init__(
        self,
        size: int = 64 << 20,
        memfd_size: int = 8 << 20,
        *,
        devices: bool = False,
        guarded: bool = False,
    ) -> None:
        self.size = size
        self.devices = devices
        self.guarded = guarded
        """The fuzzer's: a ``PROT_NONE`` page after the region, and every buffer a call
        brings (scratch, range array) placed just before a guard page, so that a kernel
        copying as far as a field declares stops at ``EFAULT``, never in the heap."""
        self._map: mmap.mmap | None = None
        self._pieces: list[tuple[int, int]] = []
        self._zones: dict[int, list[int]] = {}
        self.memfd = -1
        if devices:
            addr = libc.mmap(
                size + HPAGE,
                mmap.PROT_READ | mmap.PROT_WRITE,
                mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
            )
            if addr == libc.MAP_FAILED:
                raise OSError(ctypes.get_errno(), "mmap of the differential region failed")
            self.base = (addr + HPAGE - 1) & ~(HPAGE - 1)
            libc.madvise(self.base, size, libc.MADV_NOHUGEPAGE)
            self.refill()
            hole = self.base + HOLE_OFF
            libc.munmap(hole, HOLE_LEN)
            self._pieces = [
                (addr, hole - addr),
                (hole + HOLE_LEN, addr + size + HPAGE - hole - HOLE_LEN),
            ]
            if guarded:
                libc.mprotect(addr + size + HPAGE - PAGE, PAGE, libc.PROT_NONE)
        else:
            self._map = mmap.mmap(-1, size + HPAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            anchor = ctypes.c_char.from_buffer(self._map)
            addr = ctypes.addressof(anchor)
            del anchor
            self.base = (addr + HPAGE - 1) & ~(HPAGE - 1)
        self.memfd = os.memfd_create("ioasid-differential", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, memfd_size)

    def refill(self) -> None:
        """Devices mode: the pattern again below the hole (a run's DMA and access writes
        change it), and the memfd zeroed, so that a sequence runs the same after others."""
        if self.devices:
            pattern = numpy.arange(0, HOLE_OFF, 8, dtype="<u8").tobytes()
            ctypes.memmove(self.base, pattern, HOLE_OFF)
        if self.memfd >= 0:
            size = os.fstat(self.memfd).st_size
            os.ftruncate(self.memfd, 0)
            os.ftruncate(self.memfd, size)

    def guard_end(self, zone: int) -> int:
        """The end of this thread's guard zone ``zone``: :data:`GUARD_SPAN` writable bytes
        before it, a ``PROT_NONE`` page at it (mapped on the thread's first use)."""
        zones = self._zones.get(threading.get_ident())
        if zones is None:
            zones = self._zones[threading.get_ident()] = []
            n = len(ZONES)
            stride = GUARD_SPAN + PAGE
            addr = libc.mmap(n * stride, mmap.PROT_READ | mmap.PROT_WRITE, _ANON)
            if addr == libc.MAP_FAILED:
                raise OSError(ctypes.get_errno(), "mmap of the guard zones failed")
            self._pieces.append((addr, n * stride))
            for i in range(n):
                end = addr + i * stride + GUARD_SPAN
                if libc.mprotect(end, PAGE, libc.PROT_NONE) != 0:
                    raise OSError(ctypes.get_errno(), "mprotect of a guard page failed")
                zones.append(end)
        return zones[zone]

    def buffer(self, zone: int, data: bytes) -> bytearray | memoryview:
        """A buffer holding ``data``: a ``bytearray``, or with ``guarded`` the last bytes
        of guard zone ``zone``."""
        if not self.guarded or len(data) > GUARD_SPAN:
            return bytearray(data)
        addr = self.guard_end(zone) - len(data)
        ctypes.memmove(addr, data, len(data))
        return memoryview((ctypes.c_char * len(data)).from_address(addr)).cast("B")

    def clear_zone(self, zone: int) -> None:
        end = self.guard_end(zone)
        libc.memset(end - GUARD_SPAN, 0, GUARD_SPAN)

    def close(self) -> None:
        self._zones = {}
        if self.memfd >= 0:
            os.close(self.memfd)
            self.memfd = -1
        if self._map is not None:
            self._map.close()
            self._map = None
        for start, length in self._pieces:
            libc.munmap(start, length)
        self._pieces = []

    def __enter__(self) -> UserMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


GUARD_SPAN = 16 * PAGE
"""The writable bytes before each guard page."""
STRUCT_ZONE, DATA_ZONE, SCRATCH_ZONE, ARRAY_ZONE = ZONES = (0, 1, 2, 3)
"""Guard zones: where a ``call.guard`` struct is placed; where ``guard-N`` refs point;
where a guarded memory's scratch buffer and range array go."""
_ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS


TEST_OP_MEMBERS: dict[int, str] = {
    uapi.IOMMU_TEST_OP_ADD_RESERVED: "add_reserved",
    uapi.IOMMU_TEST_OP_MOCK_DOMAIN: "mock_domain",
    uapi.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: "mock_domain_flags",
    uapi.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: "mock_domain_replace",
    uapi.IOMMU_TEST_OP_MD_CHECK_MAP: "check_map",
    uapi.IOMMU_TEST_OP_MD_CHECK_REFS: "check_refs",
    uapi.IOMMU_TEST_OP_CREATE_ACCESS: "create_access",
    uapi.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES: "destroy_access_pages",
    uapi.IOMMU_TEST_OP_ACCESS_PAGES: "access_pages",
    uapi.IOMMU_TEST_OP_ACCESS_RW: "access_rw",
    uapi.IOMMU_TEST_OP_DIRTY: "dirty",
    uapi.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT: "memory_limit",
    uapi.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS: "access_replace_ioas",
    uapi.IOMMU_TEST_OP_MD_CHECK_IOTLB: "check_iotlb",
    uapi.IOMMU_TEST_OP_TRIGGER_IOPF: "trigger_iopf",
    uapi.IOMMU_TEST_OP_DEV_CHECK_CACHE: "check_dev_cache",
    uapi.IOMMU_TEST_OP_TRIGGER_VEVENT: "trigger_vevent",
    uapi.IOMMU_TEST_OP_PASID_ATTACH: "pasid_attach",
    uapi.IOMMU_TEST_OP_PASID_REPLACE: "pasid_replace",
    uapi.IOMMU_TEST_OP_PASID_DETACH: "pasid_detach",
    uapi.IOMMU_TEST_OP_PASID_CHECK_HWPT: "pasid_check",
    uapi.IOMMU_TEST_OP_DMABUF_GET: "dmabuf_get",
    uapi.IOMMU_TEST_OP_DMABUF_REVOKE: "dmabuf_revoke",
}
"""The union member of ``struct iommu_test_cmd`` each op reads and writes."""

BIND_FIELDS: dict[str, str] = {
    "IOMMU_VEVENTQ_ALLOC": "out_veventq_fd",
    "IOMMU_FAULT_QUEUE_ALLOC": "out_fault_fd",
}
"""Where a call with ``binds`` finds the fd it returned (else the test command's
``out_access_fd``)."""

FD_NAMES = ("access", "veventq", "fault")
"""Prefixes of the symbolic names of fds the kernel returned."""

SCRATCH_INLINE = 256
"""Scratch buffers up to this size are recorded as hex, larger ones as a digest."""

Fds = dict[str, int]
"""The fds one backend returned, by the symbolic name the record uses."""


def execute(
    handle: Handle,
    mem: UserMemory,
    call: Call,
    fds: Fds | None = None,
    files: Mapping[str, Handle] | None = None,
) -> Json:
    """Run ``call`` on ``handle``; the outcome as JSON-ready data.

    ``{"ret": n}`` or ``{"errno": "ENOENT"}`` (or ``{"exception": ...}`` for anything that
    is not an ``OSError``), plus ``"out"``: the struct as written back, decoded with the
    resolved symbolic values put back as symbols, ``"tail"``: the bytes after it, for
    calls with an array, ``"array"``: its elements afterwards, and for calls with a scratch
    buffer, ``"data"``: its bytes afterwards. ``fds`` holds this backend's named fds
    (devices mode); a ``CREATE_ACCESS`` with ``binds`` adds to it, ``CLOSE`` removes.
    ``files`` holds the other open files a ``call.file`` may name (the fuzzer's).
    """
    if fds is None:
        fds = {}
    if call.op == "CLOSE":
        return _close_named(call, fds)
    if call.op == "READ":
        return _read_named(handle, call, fds)
    resolved: dict[str, int] = {}
    array_buf: bytearray | memoryview | None = None
    n_elems = max(call.capacity, len(call.array))
    if n_elems:
        array_buf = mem.buffer(ARRAY_ZONE, b"\xa5" * (n_elems * RANGE_SIZE))
        for i, (start, last) in enumerate(call.array):
            r = uapi.iommu_iova_range(start=start, last=last)
            array_buf[i * RANGE_SIZE : (i + 1) * RANGE_SIZE] = bytes(r)
    scratch: bytearray | memoryview | None = None
    if call.scratch:
        init = bytes.fromhex(call.data)[: call.scratch]
        scratch = mem.buffer(SCRATCH_ZONE, init + b"\xa5" * (call.scratch - len(init)))
    if any(sym.startswith("guard-") for sym in call.refs.values()):
        mem.clear_zone(DATA_ZONE)
    for name, sym in call.refs.items():
        resolved[name] = _resolve(sym, handle, mem, array_buf, scratch, fds)

    struct_type = struct_of(call.op)
    if struct_type is None:
        buf = bytearray(bytes.fromhex(call.raw))
    else:
        s = struct_type()
        for name, value in {**call.fields, **resolved}.items():
            _set_field(s, name, value)
        if struct_type._fields_[0][0] == "size":
            s.size = ctypes.sizeof(struct_type) if call.size is None else call.size
        buf = bytearray(bytes(s)) + bytearray(bytes.fromhex(call.tail))

    target = files[call.file] if call.file and files is not None else handle
    out: Json = {}
    try:
        if call.value is not None:
            out["ret"] = target.ioctl(call.request, call.value)
        elif call.guard is not None:
            addr = mem.guard_end(STRUCT_ZONE) - call.guard - len(buf)
            ctypes.memmove(addr, bytes(buf), len(buf))
            try:
                out["ret"] = target.ioctl(call.request, addr)
            finally:
                buf[:] = ctypes.string_at(addr, len(buf))
        else:
            out["ret"] = target.ioctl(call.request, buf)
    except OSError as e:
        out["errno"] = errno.errorcode.get(e.errno or 0, str(e.errno))
    except Exception as e:  # a simulator crash is a divergence, not a harness bug
        out["exception"] = f"{type(e).__name__}: {e}"

    if struct_type is not None:
        n = ctypes.sizeof(struct_type)
        decoded = struct_type.from_bytes(buf[:n])
        member = None
        if struct_type is uapi.iommu_test_cmd:
            member = TEST_OP_MEMBERS.get(int(decoded.op))
        fields: Json = {}
        for name, value in _flatten(decoded, "", member):
            if isinstance(value, int) and name in call.refs and resolved.get(name) == value:
                fields[name] = call.refs[name]
            else:
                fields[name] = value
        if call.binds and "ret" in out:
            fd_name = BIND_FIELDS.get(call.op) or next(
                k for k in fields if k.rpartition(".")[2].startswith("out_") and k.endswith("_fd")
            )
            fds[call.binds] = int(fields[fd_name])
            fields[fd_name] = call.binds
        out["out"] = fields
        if len(buf) > n:
            out["tail"] = bytes(buf[n:]).hex()
    else:
        out["out_raw"] = bytes(buf).hex()
    if array_buf is not None:
        elems = []
        for i in range(n_elems):
            r = uapi.iommu_iova_range.from_bytes(array_buf[i * RANGE_SIZE : (i + 1) * RANGE_SIZE])
            elems.append([r.start, r.last])
        out["array"] = elems
    if scratch is not None:
        if len(scratch) <= SCRATCH_INLINE:
            out["data"] = bytes(scratch).hex()
        else:
            out["data"] = f"sha256:{hashlib.sha256(scratch).hexdigest()[:32]}"
    return out


def _close_named(call: Call, fds: Fds) -> Json:
    fd = fds.pop(call.refs.get("fd", ""), None)
    if fd is None:
        return {"errno": "EBADF"}
    try:
        os.close(fd)
    except OSError as e:
        return {"errno": errno.errorcode.get(e.errno or 0, str(e.errno))}
    return {"ret": 0}


def _backend_of(handle: Handle) -> Any:
    """The backend module that made ``handle`` (it reads the fds that backend handed out);
    a handle wrapping another (the tests' fault injectors) names it ``inner``."""
    while True:
        module = importlib.import_module(type(handle).__module__)
        if hasattr(module, "fd_read") or not hasattr(handle, "inner"):
            return module
        handle = handle.inner


def _read_named(handle: Handle, call: Call, fds: Fds) -> Json:
    fd = fds.get(call.refs.get("fd", ""))
    if fd is None:
        return {"errno": "EBADF"}
    try:
        data = bytes(_backend_of(handle).fd_read(fd, call.scratch))
    except OSError as e:
        return {"errno": errno.errorcode.get(e.errno or 0, str(e.errno))}
    return {"ret": len(data), "data": data.hex()}


def close_fds(fds: Fds) -> None:
    """Close every named fd a backend still holds (the end of a run)."""
    for name in sorted(fds):
        with contextlib.suppress(OSError):
            os.close(fds.pop(name))


def _set_field(s: ctypes.Structure, name: str, value: int) -> None:
    target: Any = s
    *path, leaf = name.split(".")
    for part in path:
        target = getattr(target, part)
    setattr(target, leaf, value)


def _flatten(obj: Any, prefix: str, member: str | None) -> Iterator[tuple[str, Any]]:
    """``(dotted name, value)`` of every field of a struct; of a union only ``member`` (the
    test command's op member) or, for an anonymous union, its first member; arrays as
    hex."""
    for entry in type(obj)._fields_:
        name, ctype = entry[0], entry[1]
        value = getattr(obj, name)
        if isinstance(ctype, type) and issubclass(ctype, ctypes.Union):
            if member is not None and hasattr(value, member):
                yield from _flatten(getattr(value, member), f"{prefix}{member}.", None)
            elif member is None and name in getattr(type(obj), "_anonymous_", ()):
                first = ctype._fields_[0]
                if issubclass(first[1], ctypes._SimpleCData):
                    yield f"{prefix}{first[0]}", int(getattr(value, first[0]))
        elif isinstance(ctype, type) and issubclass(ctype, ctypes.Structure):
            yield from _flatten(value, f"{prefix}{name}.", None)
        elif isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
            yield f"{prefix}{name}", bytes(value).hex()
        else:
            yield f"{prefix}{name}", int(value)


def _resolve(
    sym: str,
    handle: Handle,
    mem: UserMemory,
    array_buf: bytearray | memoryview | None,
    scratch: bytearray | memoryview | None = None,
    fds: Fds | None = None,
) -> int:
    if sym.startswith("buf+"):
        return mem.base + int(sym[4:], 0)
    if sym == "memfd":
        return mem.memfd
    if sym == "selffd":
        return handle.fileno()
    if sym == "array":
        return buffer_address(array_buf) if array_buf is not None else 0
    if sym == "scratch":
        return buffer_address(scratch) if scratch is not None else 0
    if sym.startswith("guard-"):
        return mem.guard_end(DATA_ZONE) - int(sym[6:], 0)
    if fds and sym in fds:
        return fds[sym]
    if sym.startswith((*FD_NAMES, "fd:")):
        return BAD_FD
    raise ValueError(f"unknown symbolic value {sym!r}")
