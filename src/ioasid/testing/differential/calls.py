"""One ioctl as data: :class:`Call`, its symbolic references, and the constants the
generator and the executor share."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ioasid import uapi
from ioasid.backends.base import Handle

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


KERNEL_VA = 0xFFFF888000000000
"""A kernel address as ``user_va``: with no domain it is never looked at and maps fine."""

Opener = Callable[[], Handle]
Json = dict[str, Any]


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


def struct_of(op: str) -> type[uapi.Struct] | None:
    if op.startswith("IOMMU_TEST_OP_"):
        return uapi.iommu_test_cmd
    for d in uapi.IOMMUFD_IOCTLS:
        if d.name == op:
            return d.struct
    return None


def failed(outcome: Json) -> bool:
    return "ret" not in outcome
