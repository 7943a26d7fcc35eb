"""Differential testing: one random ioctl sequence, two backends, the first divergence.

A seed drives a :class:`Generator` that emits IOAS ioctls — valid and invalid mixed
(``IOMMU_IOAS_ALLOC``, ``IOMMU_DESTROY``, ``MAP``/``MAP_FILE``/``COPY``/``UNMAP`` with fixed
and kernel-chosen IOVAs, ``ALLOW_IOVAS``, ``IOVA_RANGES``, ``IOMMU_OPTION``, wrong struct
sizes, unknown ioctl numbers). Each call goes to both backends, each through its own fresh
``/dev/iommu`` handle and the same user memory (one 2 MiB-aligned anonymous region and one
memfd, so kernel-chosen IOVAs are identical). For every call the harness records the return
value or errno, every byte the kernel wrote back into the struct (decoded field by field),
and the user array for ``IOVA_RANGES``; after every call it probes each IOAS with ioctls only
(``IOVA_RANGES`` and ``IOMMU_OPTION_HUGE_PAGES`` get). At the end it checks every area the
generator believes mapped with a side-effect-free ``IOMMU_IOAS_COPY`` onto itself (``EEXIST``
when the source range is covered, ``ENOENT`` when not) and unmaps everything, comparing the
byte counts.

The generator adapts to what the first backend answered (the IOAS ids it handed out, the
IOVAs it chose), so the sequence is a function of the seed and of backend A's behaviour; the
recorded JSON holds the sequence itself, so :func:`replay` re-runs it anywhere. Pointers and
fds are symbolic in the record (``buf+0x2000``, ``memfd``, ``array``), so a run in the oracle
guest compares with a run of the simulator in another process.

The harness only opens handles and calls ``ioctl``: it works with any backend, and with a
wrapper around one (see ``tests/testing/test_differential.py``).
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import random
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy

from ioasid import uapi
from ioasid.backends.base import Handle
from ioasid.hw.memory import buffer_address

PAGE = 4096
HPAGE = 2 << 20
U64_MAX = (1 << 64) - 1
ULONG_MAX = U64_MAX
RW = uapi.IOMMU_IOAS_MAP_READABLE | uapi.IOMMU_IOAS_MAP_WRITEABLE
FIXED = uapi.IOMMU_IOAS_MAP_FIXED_IOVA
RANGE_SIZE = ctypes.sizeof(uapi.iommu_iova_range)
IOVA_WINDOW = 0x400000
"""Fixed IOVAs are mostly drawn from ``[IOVA_WINDOW, 9 * IOVA_WINDOW)`` so that they collide."""

HOLE_OFF = 40 << 20
HOLE_LEN = 64 << 10
"""Devices mode: the munmapped hole of the user region (``buf+HOLE_OFF``)."""

BAD_FD = 1 << 20
"""What a named fd that is not (or no longer) open resolves to: above any fd limit."""

MADV_NOHUGEPAGE = 15

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

KERNEL_VA = 0xFFFF888000000000
"""A kernel address as ``user_va``: with no domain it is never looked at and maps fine."""

Opener = Callable[[], Handle]
Json = dict[str, Any]


# ---------------------------------------------------------------------------------------
# calls


@dataclass
class Call:
    """One ioctl as data.

    ``fields`` are the struct's fields (C names minus the leading ``__``); ``refs`` name
    fields whose value is resolved at run time: ``buf+OFF`` (the shared memory region),
    ``memfd``, ``selffd`` (the handle's own fd), ``array`` (this call's range array). ``size``
    overrides the ``size`` field, ``tail`` (hex) is appended after the struct. ``array``
    holds the ranges an ``ALLOW_IOVAS`` passes in; ``capacity`` the elements of the array an
    ``IOVA_RANGES`` may fill. ``raw`` (hex) replaces the struct for unknown numbers.

    Devices mode adds: nested fields by dotted name (``access_rw.iova`` of
    ``struct iommu_test_cmd``, whose ``op`` names the union member; ``op`` is then
    ``IOMMU_TEST_OP_*``); ``scratch``, the bytes of a per-call user buffer (ref
    ``scratch``) starting with ``data`` (hex) and filled up with ``0xa5``, recorded after the
    call; fds the kernel returned, by name (ref ``access3``; a name not bound, or no longer,
    resolves to :data:`BAD_FD`); ``binds``, the name under which a successful
    ``CREATE_ACCESS`` binds the fd it returned; and the pseudo-op ``CLOSE`` (ref ``fd``),
    a plain ``close`` of a named fd.
    """

    op: str
    request: int
    fields: dict[str, int] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    size: int | None = None
    tail: str = ""
    array: list[tuple[int, int]] = field(default_factory=list)
    capacity: int = 0
    raw: str = ""
    note: str = ""
    scratch: int = 0
    data: str = ""
    binds: str = ""

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Json) -> Call:
        d = dict(data)
        d["array"] = [(int(a), int(b)) for a, b in d.get("array", [])]
        return cls(**d)

    def describe(self) -> str:
        parts = [
            f"{k}={self.refs[k] if k in self.refs else _hex(v)}" for k, v in self.fields.items()
        ]
        parts += [f"{k}={v}" for k, v in self.refs.items() if k not in self.fields]
        if self.size is not None:
            parts.append(f"size={self.size}")
        if self.tail:
            parts.append(f"tail={self.tail}")
        if self.array:
            parts.append("ranges=" + ",".join(f"[{a:#x},{b:#x}]" for a, b in self.array))
        if self.capacity:
            parts.append(f"capacity={self.capacity}")
        if self.raw:
            parts.append(f"raw={self.raw}")
        if self.scratch:
            parts.append(f"scratch={self.scratch}")
        if self.data:
            parts.append(f"data={self.data[:32]}{'...' if len(self.data) > 32 else ''}")
        if self.binds:
            parts.append(f"binds={self.binds}")
        text = f"{self.op}({', '.join(parts)})"
        return f"{text}  # {self.note}" if self.note else text


def _hex(v: int) -> str:
    return str(v) if -10 < v < 10 else hex(v)


def _struct_of(op: str) -> type[uapi.Struct] | None:
    if op.startswith("IOMMU_TEST_OP_"):
        return uapi.iommu_test_cmd
    for d in uapi.IOMMUFD_IOCTLS:
        if d.name == op:
            return d.struct
    return None


# ---------------------------------------------------------------------------------------
# user memory shared by the backends of one run


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
        self, size: int = 64 << 20, memfd_size: int = 8 << 20, *, devices: bool = False
    ) -> None:
        self.size = size
        self.devices = devices
        self._map: mmap.mmap | None = None
        self._pieces: list[tuple[int, int]] = []
        if devices:
            addr = _libc.mmap(
                None,
                size + HPAGE,
                mmap.PROT_READ | mmap.PROT_WRITE,
                mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                -1,
                0,
            )
            if addr in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), "mmap of the differential region failed")
            addr = int(addr)
            self.base = (addr + HPAGE - 1) & ~(HPAGE - 1)
            _libc.madvise(self.base, size, MADV_NOHUGEPAGE)
            fill = HOLE_OFF
            pattern = numpy.arange(0, fill, 8, dtype="<u8").tobytes()
            ctypes.memmove(self.base, pattern, fill)
            hole = self.base + HOLE_OFF
            _libc.munmap(hole, HOLE_LEN)
            self._pieces = [(addr, hole - addr), (hole + HOLE_LEN, addr + size + HPAGE - hole - HOLE_LEN)]
        else:
            self._map = mmap.mmap(-1, size + HPAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            anchor = ctypes.c_char.from_buffer(self._map)
            addr = ctypes.addressof(anchor)
            del anchor
            self.base = (addr + HPAGE - 1) & ~(HPAGE - 1)
        self.memfd = os.memfd_create("ioasid-differential", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, memfd_size)

    def close(self) -> None:
        if self.memfd >= 0:
            os.close(self.memfd)
            self.memfd = -1
        if self._map is not None:
            self._map.close()
            self._map = None
        for start, length in self._pieces:
            _libc.munmap(start, length)
        self._pieces = []

    def __enter__(self) -> UserMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------
# executing one call on one backend


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
}
"""The union member of ``struct iommu_test_cmd`` each op reads and writes."""

SCRATCH_INLINE = 256
"""Scratch buffers up to this size are recorded as hex, larger ones as a digest."""

Fds = dict[str, int]
"""The fds one backend returned, by the symbolic name the record uses."""


def execute(handle: Handle, mem: UserMemory, call: Call, fds: Fds | None = None) -> Json:
    """Run ``call`` on ``handle``; the outcome as JSON-ready data.

    ``{"ret": n}`` or ``{"errno": "ENOENT"}`` (or ``{"exception": ...}`` for anything that
    is not an ``OSError``), plus ``"out"``: the struct as written back, decoded with the
    resolved symbolic values put back as symbols, ``"tail"``: the bytes after it, for
    calls with an array, ``"array"``: its elements afterwards, and for calls with a scratch
    buffer, ``"data"``: its bytes afterwards. ``fds`` holds this backend's named fds
    (devices mode); a ``CREATE_ACCESS`` with ``binds`` adds to it, ``CLOSE`` removes.
    """
    if fds is None:
        fds = {}
    if call.op == "CLOSE":
        return _close_named(call, fds)
    resolved: dict[str, int] = {}
    array_buf: bytearray | None = None
    n_elems = max(call.capacity, len(call.array))
    if n_elems:
        array_buf = bytearray(b"\xa5" * (n_elems * RANGE_SIZE))
        for i, (start, last) in enumerate(call.array):
            r = uapi.iommu_iova_range(start=start, last=last)
            array_buf[i * RANGE_SIZE : (i + 1) * RANGE_SIZE] = bytes(r)
    scratch: bytearray | None = None
    if call.scratch:
        init = bytes.fromhex(call.data)[: call.scratch]
        scratch = bytearray(init + b"\xa5" * (call.scratch - len(init)))
    for name, sym in call.refs.items():
        resolved[name] = _resolve(sym, handle, mem, array_buf, scratch, fds)

    struct_type = _struct_of(call.op)
    if struct_type is None:
        buf = bytearray(bytes.fromhex(call.raw))
    else:
        s = struct_type()
        for name, value in {**call.fields, **resolved}.items():
            _set_field(s, name, value)
        s.size = ctypes.sizeof(struct_type) if call.size is None else call.size
        buf = bytearray(bytes(s)) + bytearray(bytes.fromhex(call.tail))

    out: Json = {}
    try:
        out["ret"] = handle.ioctl(call.request, buf)
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
            fd_name = f"{member}.out_access_fd"
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


def close_fds(fds: Fds) -> None:
    """Close every named fd a backend still holds (the end of a run)."""
    for name in sorted(fds):
        try:
            os.close(fds.pop(name))
        except OSError:
            pass


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
    array_buf: bytearray | None,
    scratch: bytearray | None = None,
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
    if sym.startswith("access"):
        return (fds or {}).get(sym, BAD_FD)
    raise ValueError(f"unknown symbolic value {sym!r}")


def failed(outcome: Json) -> bool:
    return "ret" not in outcome


# ---------------------------------------------------------------------------------------
# the generator and its model of what backend A holds


@dataclass
class ModelArea:
    last: int
    writable: bool


@dataclass
class ModelIoas:
    areas: dict[int, ModelArea] = field(default_factory=dict)
    huge: bool = True

    def sorted_areas(self) -> list[tuple[int, ModelArea]]:
        return sorted(self.areas.items())

    def covered(self, first: int, last: int) -> list[tuple[int, int, ModelArea]] | None:
        """The contiguous pieces ``(first, last, area)`` covering ``[first, last]``, or None."""
        out: list[tuple[int, int, ModelArea]] = []
        cur = first
        for iova, a in self.sorted_areas():
            if a.last < cur:
                continue
            if iova > cur:
                return None
            out.append((cur, min(a.last, last), a))
            if a.last >= last:
                return out
            cur = a.last + 1
        return None


class Generator:
    """Random ioctls for ``seed``, steered by the outcomes it is shown (:meth:`observe`).

    The model is only a guide for producing interesting calls (overlaps, cuts, stale ids);
    nothing is asserted against it.
    """

    OPS: tuple[tuple[str, int], ...] = (
        ("alloc", 6),
        ("destroy", 4),
        ("map", 24),
        ("map_file", 7),
        ("copy", 10),
        ("unmap", 18),
        ("allow", 5),
        ("ranges", 4),
        ("option", 6),
        ("bad_size", 4),
        ("unknown", 2),
    )

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ioas: dict[int, ModelIoas] = {}
        self.dead: set[int] = set()
        self.max_id = 0
        self.steps = 0
        names, weights = zip(*self.OPS, strict=True)
        self._names: Sequence[str] = names
        self._weights: Sequence[int] = weights

    # -- choosing ---------------------------------------------------------------------------

    def next_call(self) -> Call:
        self.steps += 1
        if not self.ioas and self.rng.random() < 0.7:
            kind = "alloc"
        elif len(self.ioas) >= 4 and self.rng.random() < 0.1:
            kind = "destroy"
        else:
            kind = self.rng.choices(self._names, self._weights)[0]
        call: Call = getattr(self, f"_gen_{kind}")()
        return call

    def _pick_ioas_id(self, valid: float = 0.9) -> int:
        r = self.rng.random()
        if self.ioas and r < valid:
            return self.rng.choice(sorted(self.ioas))
        r = self.rng.random()
        if self.dead and r < 0.4:
            return self.rng.choice(sorted(self.dead))
        if r < 0.6:
            return 0
        if r < 0.8:
            return self.max_id + 1
        return self.rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 20])

    def _pick_area(self, ioas_id: int) -> tuple[int, ModelArea] | None:
        m = self.ioas.get(ioas_id)
        if m is None or not m.areas:
            return None
        return self.rng.choice(m.sorted_areas())

    def _length(self) -> tuple[int, str]:
        r = self.rng.random()
        if r < 0.70:
            return self.rng.randint(1, 8) * PAGE, ""
        if r < 0.76:
            return HPAGE * self.rng.randint(1, 2), "2 MiB multiple"
        if r < 0.81:
            return self.rng.choice([0x800, 0x1800, PAGE + 1]), "unaligned length"
        if r < 0.85:
            return 0, "zero length"
        if r < 0.89:
            return self.rng.choice([ULONG_MAX, ULONG_MAX - 1]), "length >= ULONG_MAX-1"
        if r < 0.93:
            return 1 << self.rng.choice([40, 62, 63]), "huge length"
        return self.rng.randint(1, 64) * PAGE, ""

    def _fixed_iova(self, ioas_id: int, length: int) -> tuple[int, str]:
        r = self.rng.random()
        area = self._pick_area(ioas_id)
        if area is not None and r < 0.25:
            iova, a = area
            choice = self.rng.randrange(4)
            if choice == 0:
                return iova, "overlaps an area (same start)"
            if choice == 1:
                return a.last + 1, "just after an area"
            if choice == 2:
                return max(iova - length + PAGE, 0), "overlaps an area's start"
            return iova + (a.last - iova) // 2 // PAGE * PAGE, "inside an area"
        if r < 0.80:
            return IOVA_WINDOW + self.rng.randrange(0, 8 * IOVA_WINDOW, PAGE), ""
        if r < 0.86:
            return IOVA_WINDOW + self.rng.randrange(0, IOVA_WINDOW, PAGE) + 0x800, "unaligned iova"
        if r < 0.90:
            return 0, "iova 0"
        if r < 0.94:
            return ULONG_MAX - self.rng.choice([0, 1, PAGE - 1, 2 * PAGE - 1]), "iova at the top"
        if r < 0.97:
            return 0xFEE00000, "the x86 MSI window (reserved only with a device)"
        return self.rng.randrange(0, 1 << 48, PAGE), "far iova"

    def _user_va(self) -> tuple[str | None, int, str]:
        """``(ref, value, note)``: a symbolic pointer into the region, or an absolute one."""
        r = self.rng.random()
        if r < 0.55:
            return f"buf+{self.rng.randrange(0, 32 << 20, PAGE):#x}", 0, ""
        if r < 0.70:
            return (
                f"buf+{self.rng.choice([0, HPAGE, 2 * HPAGE, 5 * HPAGE]):#x}",
                0,
                "2 MiB aligned va",
            )
        if r < 0.80:
            off = self.rng.randrange(0, 8 << 20, PAGE) + self.rng.choice([0x800, 0x10, 0x1, 0xFFF])
            return f"buf+{off:#x}", 0, "sub-page va"
        if r < 0.86:
            return None, 0, "NULL user_va"
        if r < 0.92:
            return None, KERNEL_VA, "kernel address as user_va"
        return None, ULONG_MAX - self.rng.choice([0, PAGE, 0x7FFF]), "user_va near the top"

    def _map_flags(self) -> tuple[int, str]:
        r = self.rng.random()
        if r < 0.6:
            return RW, ""
        if r < 0.75:
            return uapi.IOMMU_IOAS_MAP_READABLE, "read-only"
        if r < 0.85:
            return uapi.IOMMU_IOAS_MAP_WRITEABLE, "write-only"
        if r < 0.92:
            return 0, "neither R nor W"
        return RW | (1 << self.rng.choice([3, 4, 8, 31])), "unknown flag"

    # -- generators per ioctl --------------------------------------------------------------

    def _gen_alloc(self) -> Call:
        flags = 0 if self.rng.random() < 0.93 else self.rng.choice([1, 1 << 31])
        note = "bad flags" if flags else ""
        return Call("IOMMU_IOAS_ALLOC", uapi.IOMMU_IOAS_ALLOC, {"flags": flags}, note=note)

    def _gen_destroy(self) -> Call:
        obj = self._pick_ioas_id(valid=0.7)
        note = "live IOAS" if obj in self.ioas else "stale/absent id"
        return Call("IOMMU_DESTROY", uapi.IOMMU_DESTROY, {"id": obj}, note=note)

    def _gen_map(self) -> Call:
        ioas_id = self._pick_ioas_id()
        flags, fnote = self._map_flags()
        fixed = self.rng.random() < 0.6
        length, lnote = self._length()
        ref, va, vnote = self._user_va()
        fields = {"flags": flags | (FIXED if fixed else 0), "ioas_id": ioas_id, "length": length}
        notes = [fnote, lnote, vnote]
        if fixed:
            iova, inote = self._fixed_iova(ioas_id, length)
            fields["iova"] = iova
            notes.append(inote)
        elif self.rng.random() < 0.2:
            fields["iova"] = self.rng.randrange(0, 1 << 32, PAGE)
            notes.append("iova ignored without FIXED_IOVA")
        if self.rng.random() < 0.04:
            fields["reserved"] = self.rng.choice([1, 0x80000000])
            notes.append("__reserved != 0")
        refs = {}
        if ref is not None:
            refs["user_va"] = ref
        else:
            fields["user_va"] = va
        note = ", ".join(n for n in notes if n)
        return Call("IOMMU_IOAS_MAP", uapi.IOMMU_IOAS_MAP, fields, refs, note=note)

    def _gen_map_file(self) -> Call:
        ioas_id = self._pick_ioas_id()
        flags, fnote = self._map_flags()
        fixed = self.rng.random() < 0.5
        length, lnote = self._length()
        notes = [fnote, lnote]
        r = self.rng.random()
        if r < 0.7:
            start = self.rng.randrange(0, 4 << 20, PAGE)
        elif r < 0.8:
            start = self.rng.randrange(0, 4 << 20, PAGE) + 0x800
            notes.append("sub-page start")
        elif r < 0.9:
            start = 1 << 40
            notes.append("start beyond the file end")
        else:
            start = ULONG_MAX - self.rng.choice([0, PAGE])
            notes.append("start near the top")
        fields = {
            "flags": flags | (FIXED if fixed else 0),
            "ioas_id": ioas_id,
            "start": start,
            "length": length,
        }
        refs: dict[str, str] = {}
        r = self.rng.random()
        if r < 0.8:
            refs["fd"] = "memfd"
        elif r < 0.88:
            refs["fd"] = "selffd"
            notes.append("fd is the iommufd itself")
        else:
            fields["fd"] = self.rng.choice([-1, 999_999])
            notes.append("bad fd")
        if fixed:
            iova, inote = self._fixed_iova(ioas_id, length)
            fields["iova"] = iova
            notes.append(inote)
        note = ", ".join(n for n in notes if n)
        return Call("IOMMU_IOAS_MAP_FILE", uapi.IOMMU_IOAS_MAP_FILE, fields, refs, note=note)

    def _gen_copy(self) -> Call:
        src_id = self._pick_ioas_id()
        notes: list[str] = []
        src = self.ioas.get(src_id)
        r = self.rng.random()
        if src is not None and src.areas and r < 0.8:
            items = src.sorted_areas()
            i = self.rng.randrange(len(items))
            iova, a = items[i]
            kind = self.rng.randrange(5)
            if kind == 0:
                src_iova, length = iova, a.last - iova + 1
                notes.append("whole area")
            elif kind == 1:
                npages = max((a.last - iova + 1) // PAGE, 1)
                off = self.rng.randrange(npages) * PAGE
                src_iova = iova + off
                length = max(min(self.rng.randint(1, npages) * PAGE, a.last - src_iova + 1), 1)
                notes.append("sub-range of an area")
            elif kind == 2:
                j = min(i + self.rng.randint(1, 3), len(items) - 1)
                src_iova, length = iova, items[j][1].last - iova + 1
                notes.append("from one area to the end of a later one")
            elif kind == 3:
                src_iova, length = a.last + 1 - PAGE, 2 * PAGE
                notes.append("runs past the end of an area")
            else:
                src_iova, length = iova, (a.last - iova + 1) // 2 or 1
                notes.append("first half of an area")
        else:
            length, lnote = self._length()
            src_iova = IOVA_WINDOW + self.rng.randrange(0, 8 * IOVA_WINDOW, PAGE)
            notes += ["random source range", lnote]
        dst_id = src_id if self.rng.random() < 0.35 else self._pick_ioas_id()
        flags, fnote = self._map_flags()
        notes.append(fnote)
        fields = {
            "src_ioas_id": src_id,
            "dst_ioas_id": dst_id,
            "src_iova": src_iova,
            "length": length,
        }
        if self.rng.random() < 0.5:
            dst_iova, inote = self._fixed_iova(dst_id, length)
            fields["dst_iova"] = dst_iova
            flags |= FIXED
            notes.append(inote)
        if self.rng.random() < 0.05:
            # CONFIG_IOMMUFD_TEST kernels read src_iova as {u32 nth_area; u32 offset}
            flags |= uapi.MOCK_FLAGS_ACCESS_SYZ
            fields["src_iova"] = self.rng.choice([0, PAGE]) << 32 | self.rng.randrange(0, 4)
            notes.append("MOCK_FLAGS_ACCESS_SYZ: source named by area index")
        fields["flags"] = flags
        note = ", ".join(n for n in notes if n)
        return Call("IOMMU_IOAS_COPY", uapi.IOMMU_IOAS_COPY, fields, note=note)

    def _gen_unmap(self) -> Call:
        ioas_id = self._pick_ioas_id()
        m = self.ioas.get(ioas_id)
        r = self.rng.random()
        items = m.sorted_areas() if m is not None else []
        if r < 0.08 or not items:
            if self.rng.random() < 0.5:
                iova, length, note = 0, U64_MAX, "unmap all"
            else:
                length, note = self._length()
                iova = IOVA_WINDOW + self.rng.randrange(0, 8 * IOVA_WINDOW, PAGE)
                note = "random range " + note
        else:
            i = self.rng.randrange(len(items))
            iova, a = items[i]
            kind = self.rng.randrange(7)
            if kind == 0:
                length, note = a.last - iova + 1, "exact area"
            elif kind == 1:
                j = min(i + self.rng.randint(1, 4), len(items) - 1)
                length, note = items[j][1].last - iova + 1, "several whole areas"
            elif kind == 2:
                j = min(i + self.rng.randint(1, 4), len(items) - 1)
                jiova, ja = items[j]
                cut = jiova + max((ja.last - jiova + 1) // 2, 1)
                length, note = cut - iova, "whole areas then a cut one (partial removal)"
                if cut - 1 >= ja.last:
                    length, note = ja.last - iova + 1, "several whole areas"
            elif kind == 3:
                iova, length = iova + PAGE, a.last - iova + 1
                note = "starts inside an area"
            elif kind == 4:
                iova = max(iova - 16 * PAGE, 0)
                length = a.last + 16 * PAGE - iova
                note = "area with margin on both sides"
            elif kind == 5:
                iova, length, note = a.last + 1, PAGE, "just after an area"
            else:
                iova, length, note = 0, U64_MAX - 1, "iova 0, length 2^64-2: not the wildcard"
        r = self.rng.random()
        if r < 0.04:
            iova, length, note = 0, 0, "iova 0 length 0 (not the wildcard)"
        elif r < 0.07:
            iova, length, note = ULONG_MAX - PAGE, 2 * PAGE, "overflowing range"
        elif r < 0.09:
            iova, length, note = U64_MAX, PAGE, "iova ULONG_MAX"
        return Call(
            "IOMMU_IOAS_UNMAP",
            uapi.IOMMU_IOAS_UNMAP,
            {"ioas_id": ioas_id, "iova": iova, "length": length},
            note=note,
        )

    def _gen_allow(self) -> Call:
        ioas_id = self._pick_ioas_id()
        n = self.rng.choice([0, 1, 1, 2, 2, 3])
        ranges: list[tuple[int, int]] = []
        note = "valid"
        for _ in range(n):
            start = self.rng.randrange(0, 16 * IOVA_WINDOW, PAGE)
            ranges.append((start, start + self.rng.randint(1, 2048) * PAGE - 1))
        r = self.rng.random()
        if n and r < 0.15:
            s = ranges[0][0]
            ranges[0] = (s, s)
            note = "start == last"
        elif n and r < 0.22:
            ranges[0] = (ranges[0][1], ranges[0][0])
            note = "start > last"
        elif n and r < 0.32:
            ranges.append((ranges[0][0] + PAGE, ranges[0][1] + PAGE))
            note = "overlapping"
        elif r < 0.40:
            ranges = [(0, ULONG_MAX)]
            note = "everything"
        elif r < 0.48:
            ranges = [(IOVA_WINDOW, IOVA_WINDOW + 4 * PAGE - 1)]
            note = "a tiny window"
        elif not any(self._overlap(ranges)):
            note = "valid" if n else "clear the list"
        else:
            note = "random ranges, may overlap"
        fields = {"ioas_id": ioas_id, "num_iovas": len(ranges)}
        refs = {"allowed_iovas": "array"}
        r = self.rng.random()
        if r < 0.05 and ranges:
            refs = {}
            note += ", NULL array"
        elif r < 0.09:
            fields["reserved"] = 1
            note += ", __reserved != 0"
        return Call(
            "IOMMU_IOAS_ALLOW_IOVAS",
            uapi.IOMMU_IOAS_ALLOW_IOVAS,
            fields,
            refs,
            array=ranges,
            note=note,
        )

    @staticmethod
    def _overlap(ranges: list[tuple[int, int]]) -> Iterator[bool]:
        for i, (a, b) in enumerate(ranges):
            for c, d in ranges[i + 1 :]:
                yield a <= d and c <= b

    def _gen_ranges(self) -> Call:
        ioas_id = self._pick_ioas_id()
        cap = self.rng.choice([0, 0, 1, 2, 4])
        refs = {"allowed_iovas": "array"}
        note = f"capacity {cap}"
        if cap == 0 and self.rng.random() < 0.5:
            refs = {}
            note += ", NULL array"
        fields = {"ioas_id": ioas_id, "num_iovas": cap}
        if self.rng.random() < 0.05:
            fields["reserved"] = 3
            note += ", __reserved != 0"
        return Call(
            "IOMMU_IOAS_IOVA_RANGES",
            uapi.IOMMU_IOAS_IOVA_RANGES,
            fields,
            refs,
            capacity=cap,
            note=note,
        )

    def _gen_option(self) -> Call:
        r = self.rng.random()
        fields: dict[str, int]
        if r < 0.6:
            op = self.rng.choice(
                [
                    uapi.IOMMU_OPTION_OP_GET,
                    uapi.IOMMU_OPTION_OP_SET,
                    uapi.IOMMU_OPTION_OP_SET,
                    uapi.IOMMU_OPTION_OP_SET,
                    2,
                ]
            )
            val = self.rng.choice([0, 0, 1, 1, 2]) if op == uapi.IOMMU_OPTION_OP_SET else 0
            fields = {
                "option_id": uapi.IOMMU_OPTION_HUGE_PAGES,
                "op": op,
                "object_id": self._pick_ioas_id(),
                "val64": val,
            }
            note = "HUGE_PAGES"
        elif r < 0.85:
            op = self.rng.choice([uapi.IOMMU_OPTION_OP_GET, uapi.IOMMU_OPTION_OP_SET])
            val = self.rng.choice([0, 1, 1, 7]) if op == uapi.IOMMU_OPTION_OP_SET else 0
            obj = 0 if self.rng.random() < 0.85 else 1
            fields = {
                "option_id": uapi.IOMMU_OPTION_RLIMIT_MODE,
                "op": op,
                "object_id": obj,
                "val64": val,
            }
            note = "RLIMIT_MODE"
        else:
            fields = {
                "option_id": self.rng.choice([2, 0xFFFF]),
                "op": uapi.IOMMU_OPTION_OP_GET,
                "object_id": 0,
                "val64": 0,
            }
            note = "unknown option"
        if self.rng.random() < 0.05:
            fields["reserved"] = 1
            note += ", __reserved != 0"
        return Call("IOMMU_OPTION", uapi.IOMMU_OPTION, fields, note=note)

    def _gen_bad_size(self) -> Call:
        base = self.rng.choice(
            [
                self._gen_map,
                self._gen_unmap,
                self._gen_alloc,
                self._gen_ranges,
                self._gen_option,
                self._gen_copy,
                self._gen_destroy,
            ]
        )()
        struct_type = _struct_of(base.op)
        assert struct_type is not None
        ksize = ctypes.sizeof(struct_type)
        r = self.rng.random()
        if r < 0.35:
            base.size = self.rng.choice([0, 4, ksize - 4, ksize - 1])
            base.note = f"size {base.size} below the minimum; " + base.note
        elif r < 0.7:
            extra = self.rng.choice([4, 8, 64])
            tail = bytearray(extra)
            tail[self.rng.randrange(extra)] = self.rng.randint(1, 255)
            base.tail, base.size = tail.hex(), ksize + extra
            base.note = f"size {base.size} with non-zero bytes past the struct; " + base.note
        else:
            extra = self.rng.choice([8, 64, 200])
            base.tail, base.size = bytes(extra).hex(), ksize + extra
            base.note = f"size {base.size}, zero tail (accepted); " + base.note
        return base

    def _gen_unknown(self) -> Call:
        T = uapi.IOMMUFD_TYPE
        request = self.rng.choice(
            [
                uapi._IO(T, self.rng.randint(0x96, 0x9F)),
                uapi._IO(T, self.rng.choice([0xA1, 0xB0, 0xFF])),
                uapi._IO(T, self.rng.choice([0x00, 0x40, 0x7F])),
                uapi._IOWR(T, 0x81, 12),
                uapi._IO(ord("X"), 0x81),
            ]
        )
        raw = bytearray(16)
        raw[0] = 16
        return Call("UNKNOWN", request, raw=raw.hex(), note=f"unknown ioctl {request:#x}")

    # -- probes and the final check ----------------------------------------------------------

    def probe_calls(self) -> list[Call]:
        """IOVA_RANGES and HUGE_PAGES get for every live IOAS, the lowest dead id and the
        next id (a divergence in object ids shows there)."""
        out: list[Call] = []
        ids = set(self.ioas) | {self.max_id + 1}
        if self.dead:
            ids.add(min(self.dead))
        for ioas_id in sorted(ids):
            out.append(
                Call(
                    "IOMMU_IOAS_IOVA_RANGES",
                    uapi.IOMMU_IOAS_IOVA_RANGES,
                    {"ioas_id": ioas_id, "num_iovas": 2},
                    {"allowed_iovas": "array"},
                    capacity=2,
                    note="probe",
                )
            )
            out.append(
                Call(
                    "IOMMU_OPTION",
                    uapi.IOMMU_OPTION,
                    {
                        "option_id": uapi.IOMMU_OPTION_HUGE_PAGES,
                        "op": uapi.IOMMU_OPTION_OP_GET,
                        "object_id": ioas_id,
                    },
                    note="probe",
                )
            )
        return out

    def final_calls(self) -> list[Call]:
        """A side-effect-free coverage check of every area the model holds, then unmap-all
        of every id ever seen (dead ids answer ENOENT)."""
        out: list[Call] = []
        for ioas_id, m in sorted(self.ioas.items()):
            for iova, a in m.sorted_areas():
                out.append(
                    Call(
                        "IOMMU_IOAS_COPY",
                        uapi.IOMMU_IOAS_COPY,
                        {
                            "flags": FIXED | uapi.IOMMU_IOAS_MAP_READABLE,
                            "src_ioas_id": ioas_id,
                            "dst_ioas_id": ioas_id,
                            "src_iova": iova,
                            "dst_iova": iova,
                            "length": a.last - iova + 1,
                        },
                        note="final: area present? (EEXIST if covered)",
                    )
                )
        for ioas_id in range(1, self.max_id + 2):
            out.append(
                Call(
                    "IOMMU_IOAS_UNMAP",
                    uapi.IOMMU_IOAS_UNMAP,
                    {"ioas_id": ioas_id, "iova": 0, "length": U64_MAX},
                    note="final: unmap all",
                )
            )
        return out

    # -- learning from backend A ----------------------------------------------------------

    def observe(self, call: Call, outcome: Json) -> None:
        if failed(outcome):
            if call.op == "IOMMU_IOAS_UNMAP" and outcome.get("errno") == "ENOENT":
                self._unmap_partial(call)
            return
        f = call.fields
        out = outcome.get("out", {})
        if call.op == "IOMMU_IOAS_ALLOC":
            new_id = int(out["out_ioas_id"])
            self.ioas[new_id] = ModelIoas()
            self.dead.discard(new_id)
            self.max_id = max(self.max_id, new_id)
        elif call.op == "IOMMU_DESTROY":
            obj = f.get("id", 0)
            if self.ioas.pop(obj, None) is not None:
                self.dead.add(obj)
        elif call.op in ("IOMMU_IOAS_MAP", "IOMMU_IOAS_MAP_FILE"):
            m = self.ioas.get(f.get("ioas_id", 0))
            if m is not None:
                iova = int(out["iova"])
                writable = bool(f.get("flags", 0) & uapi.IOMMU_IOAS_MAP_WRITEABLE)
                m.areas[iova] = ModelArea(iova + f["length"] - 1, writable)
        elif call.op == "IOMMU_IOAS_COPY":
            src = self.ioas.get(f.get("src_ioas_id", 0))
            dst = self.ioas.get(f.get("dst_ioas_id", 0))
            if src is None or dst is None:
                return
            pieces = src.covered(f["src_iova"], f["src_iova"] + f["length"] - 1) or []
            dst_iova = int(out["dst_iova"])
            for first, last, a in pieces:
                dst.areas[dst_iova] = ModelArea(dst_iova + last - first, a.writable)
                dst_iova += last - first + 1
        elif call.op == "IOMMU_IOAS_UNMAP":
            m = self.ioas.get(f.get("ioas_id", 0))
            if m is None:
                return
            first, length = f.get("iova", 0), f.get("length", 0)
            last = ULONG_MAX if (first, length) == (0, U64_MAX) else first + length - 1
            for iova in [i for i, a in m.areas.items() if i >= first and a.last <= last]:
                del m.areas[iova]
        elif (
            call.op == "IOMMU_OPTION"
            and f.get("option_id") == uapi.IOMMU_OPTION_HUGE_PAGES
            and f.get("op") == uapi.IOMMU_OPTION_OP_SET
        ):
            m = self.ioas.get(f.get("object_id", 0))
            if m is not None:
                m.huge = bool(f.get("val64"))

    def _unmap_partial(self, call: Call) -> None:
        """A failing UNMAP removed the whole areas below the first area it cut."""
        m = self.ioas.get(call.fields.get("ioas_id", 0))
        first, length = call.fields.get("iova", 0), call.fields.get("length", 0)
        if m is None or not length or first + length - 1 > ULONG_MAX:
            return
        last = first + length - 1
        for iova, a in m.sorted_areas():
            if a.last < first:
                continue
            if iova > last or iova < first or a.last > last:
                return
            del m.areas[iova]


# ---------------------------------------------------------------------------------------
# running, comparing, recording


@dataclass
class Step:
    """One generated call (or final check) with both backends' outcomes and probes."""

    index: int
    phase: str
    call: Call
    results: list[Json]
    probes: list[Call] = field(default_factory=list)
    probe_results: list[list[Json]] = field(default_factory=list)

    def to_json(self) -> Json:
        return {
            "index": self.index,
            "phase": self.phase,
            "call": self.call.to_json(),
            "results": self.results,
            "probes": [p.to_json() for p in self.probes],
            "probe_results": self.probe_results,
        }

    @classmethod
    def from_json(cls, d: Json) -> Step:
        return cls(
            d["index"],
            d["phase"],
            Call.from_json(d["call"]),
            d["results"],
            [Call.from_json(p) for p in d.get("probes", [])],
            d.get("probe_results", []),
        )


@dataclass
class Divergence:
    index: int
    phase: str
    call: Call
    a: Json
    b: Json
    probe: Call | None = None

    def describe(self, names: Sequence[str] = ("A", "B")) -> str:
        where = f"call #{self.index} ({self.phase})"
        what = self.call.describe()
        if self.probe is not None:
            what += f"\n    probe after it: {self.probe.describe()}"
        return (
            f"first divergence at {where}:\n    {what}\n"
            f"    {names[0]}: {json.dumps(self.a, sort_keys=True)}\n"
            f"    {names[1]}: {json.dumps(self.b, sort_keys=True)}"
        )

    def to_json(self) -> Json:
        return {
            "index": self.index,
            "phase": self.phase,
            "call": self.call.to_json(),
            "a": self.a,
            "b": self.b,
            "probe": self.probe.to_json() if self.probe else None,
        }


@dataclass
class DiffResult:
    seed: int | None
    names: tuple[str, ...]
    steps: list[Step]
    divergence: Divergence | None

    @property
    def agree(self) -> bool:
        return self.divergence is None

    def summary(self) -> str:
        n = sum(1 for s in self.steps if s.phase == "call")
        head = f"seed {self.seed}: {n} calls, {len(self.steps) - n} final checks"
        if self.divergence is None:
            return f"{head}: agree ({' vs '.join(self.names)})"
        return f"{head}: DIVERGE\n  " + self.divergence.describe(self.names).replace("\n", "\n  ")

    def errno_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for s in self.steps:
            key = f"{s.call.op}:{s.results[0].get('errno', 'ok')}"
            hist[key] = hist.get(key, 0) + 1
        return hist

    def to_json(self) -> Json:
        return {
            "seed": self.seed,
            "names": list(self.names),
            "agree": self.agree,
            "divergence": self.divergence.to_json() if self.divergence else None,
            "steps": [s.to_json() for s in self.steps],
        }

    @classmethod
    def from_json(cls, d: Json) -> DiffResult:
        div = d.get("divergence")
        divergence = None
        if div:
            probe = Call.from_json(div["probe"]) if div.get("probe") else None
            divergence = Divergence(
                div["index"], div["phase"], Call.from_json(div["call"]), div["a"], div["b"], probe
            )
        return cls(
            d.get("seed"), tuple(d["names"]), [Step.from_json(s) for s in d["steps"]], divergence
        )


def _first_difference(step: Step) -> Divergence | None:
    a, b = step.results[0], step.results[1]
    if a != b:
        return Divergence(step.index, step.phase, step.call, a, b)
    for probe, (pa, pb) in zip(step.probes, step.probe_results, strict=True):
        if pa != pb:
            return Divergence(step.index, step.phase, step.call, pa, pb, probe)
    return None


def run_differential(
    seed: int,
    openers: Sequence[Opener],
    *,
    names: Sequence[str] = ("A", "B"),
    calls: int = 300,
    probe: bool = True,
    stop_at_divergence: bool = True,
    memory: UserMemory | None = None,
) -> DiffResult:
    """Generate ``calls`` ioctls from ``seed`` and run each on every backend in lockstep.

    ``openers`` return fresh handles (two for a comparison; one just records). The generator
    follows backend A's answers. Stops after the first divergence unless told otherwise.
    """
    own_memory = memory is None
    mem = UserMemory() if memory is None else memory
    handles = [open_() for open_ in openers]
    gen = Generator(seed)
    steps: list[Step] = []
    divergence: Divergence | None = None
    try:
        for i in range(calls):
            call = gen.next_call()
            step = _run_step(i, "call", call, handles, mem)
            gen.observe(call, step.results[0])
            if probe:
                _run_probes(step, gen.probe_calls(), handles, mem)
            steps.append(step)
            if len(handles) > 1 and divergence is None:
                divergence = _first_difference(step)
                if divergence is not None and stop_at_divergence:
                    break
        if divergence is None or not stop_at_divergence:
            for j, call in enumerate(gen.final_calls()):
                step = _run_step(calls + j, "final", call, handles, mem)
                steps.append(step)
                if len(handles) > 1 and divergence is None:
                    divergence = _first_difference(step)
                    if divergence is not None and stop_at_divergence:
                        break
    finally:
        for h in handles:
            h.close()
        if own_memory:
            mem.close()
    return DiffResult(seed, tuple(names), steps, divergence)


def _run_step(
    index: int, phase: str, call: Call, handles: Sequence[Handle], mem: UserMemory
) -> Step:
    return Step(index, phase, call, [execute(h, mem, call) for h in handles])


def _run_probes(step: Step, probes: list[Call], handles: Sequence[Handle], mem: UserMemory) -> None:
    step.probes = probes
    step.probe_results = [[execute(h, mem, p) for h in handles] for p in probes]


def replay(
    recorded: DiffResult,
    opener: Opener,
    *,
    column: int = 0,
    name: str = "replay",
    memory: UserMemory | None = None,
) -> DiffResult:
    """Re-run the calls and probes of ``recorded`` on one backend and compare them with the
    recorded results of backend ``column`` (e.g. a guest run of ``linux`` against the sim
    here). The result's backend A is the recording, B the replay."""
    own_memory = memory is None
    mem = UserMemory() if memory is None else memory
    handle = opener()
    steps: list[Step] = []
    divergence: Divergence | None = None
    try:
        for old in recorded.steps:
            result = execute(handle, mem, old.call)
            step = Step(old.index, old.phase, old.call, [old.results[column], result])
            step.probes = old.probes
            step.probe_results = [
                [pr[column], execute(handle, mem, p)]
                for p, pr in zip(old.probes, old.probe_results, strict=True)
            ]
            steps.append(step)
            if divergence is None:
                divergence = _first_difference(step)
                if divergence is not None:
                    break
    finally:
        handle.close()
        if own_memory:
            mem.close()
    return DiffResult(recorded.seed, (recorded.names[column], name), steps, divergence)


def backend_opener(name: str, path: str = "/dev/iommu") -> Opener:
    """An opener for ``ioasid.backends.get(name)``: each call opens a fresh handle."""
    from ioasid import backends

    mod = backends.get(name)

    def open_() -> Handle:
        handle: Handle = mod.open(path)
        return handle

    return open_


__all__ = [
    "Call",
    "DiffResult",
    "Divergence",
    "Generator",
    "Step",
    "UserMemory",
    "backend_opener",
    "execute",
    "replay",
    "run_differential",
]
