"""One ioctl as data: :class:`Call`, its symbolic references, and the constants the
generator and the executor share."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ioasid import uapi
from ioasid.backends.base import Handle
from ioasid.uapi import sim as simapi

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
    ``CREATE_ACCESS`` binds the fd it returned; the pseudo-op ``CLOSE`` (ref ``fd``),
    a plain ``close`` of a named fd; and ``READ`` (ref ``fd``), a ``read`` of ``scratch``
    bytes from a named event-queue fd (the records a vEVENTQ or fault queue delivers).

    The fuzzer adds: ``file``, the open file the ioctl goes to (``""`` the handle, else a
    name the executor is given: ``vfio`` for ``/dev/vfio/vfio``, ``cdev`` for a VFIO device
    cdev); ``guard``, the struct is copied to user memory ending ``guard`` bytes before a
    ``PROT_NONE`` page and passed by address (a ``size`` claiming more faults there);
    ``value``, an ``int`` argument instead of a struct (``VFIO_CHECK_EXTENSION``); ``binds``
    also for the ``out_*_fd`` of ``FAULT_QUEUE_ALLOC`` and ``VEVENTQ_ALLOC``; more refs:
    ``guard-N`` (N bytes before the guard page) and any fd name the executor holds.
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
    file: str = ""
    guard: int | None = None
    value: int | None = None

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
        if self.guard is not None:
            parts.append(f"at guard-{self.guard:#x}")
        if self.value is not None:
            parts.append(f"arg={_hex(self.value)}")
        if self.file:
            parts.append(f"on {self.file}")
        text = f"{self.op}({', '.join(parts)})"
        return f"{text}  # {self.note}" if self.note else text


def _hex(v: int) -> str:
    return str(v) if -10 < v < 10 else hex(v)


OTHER_IOCTLS: dict[str, tuple[int, type[uapi.Struct] | None]] = {
    "VFIO_GET_API_VERSION": (uapi.VFIO_GET_API_VERSION, None),
    "VFIO_CHECK_EXTENSION": (uapi.VFIO_CHECK_EXTENSION, None),
    "VFIO_SET_IOMMU": (uapi.VFIO_SET_IOMMU, None),
    "VFIO_IOMMU_GET_INFO": (uapi.VFIO_IOMMU_GET_INFO, uapi.vfio_iommu_type1_info),
    "VFIO_IOMMU_MAP_DMA": (uapi.VFIO_IOMMU_MAP_DMA, uapi.vfio_iommu_type1_dma_map),
    "VFIO_IOMMU_UNMAP_DMA": (uapi.VFIO_IOMMU_UNMAP_DMA, uapi.vfio_iommu_type1_dma_unmap),
    "VFIO_DEVICE_BIND_IOMMUFD": (uapi.VFIO_DEVICE_BIND_IOMMUFD, uapi.vfio_device_bind_iommufd),
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT": (
        uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        uapi.vfio_device_attach_iommufd_pt,
    ),
    "VFIO_DEVICE_DETACH_IOMMUFD_PT": (
        uapi.VFIO_DEVICE_DETACH_IOMMUFD_PT,
        uapi.vfio_device_detach_iommufd_pt,
    ),
    "VFIO_DEVICE_GET_INFO": (uapi.VFIO_DEVICE_GET_INFO, uapi.vfio_device_info),
    "VFIO_DEVICE_GET_REGION_INFO": (uapi.VFIO_DEVICE_GET_REGION_INFO, uapi.vfio_region_info),
    "VFIO_DEVICE_GET_IRQ_INFO": (uapi.VFIO_DEVICE_GET_IRQ_INFO, uapi.vfio_irq_info),
    "VFIO_DEVICE_RESET": (uapi.VFIO_DEVICE_RESET, None),
    "IOASID_SIM_DEVICE_DMA": (simapi.IOASID_SIM_DEVICE_DMA, simapi.ioasid_sim_dma),
}
"""The ioctls besides ``iommufd.h``'s table the simulator serves (the VFIO container on
``/dev/iommu`` and ``/dev/vfio/vfio``, the VFIO device cdev, ioasid's own device DMA), with
their structs (``None``: the argument is an ``int``)."""


def struct_of(op: str) -> type[uapi.Struct] | None:
    if op.startswith("IOMMU_TEST_OP_"):
        return uapi.iommu_test_cmd
    for d in uapi.IOMMUFD_IOCTLS:
        if d.name == op:
            return d.struct
    other = OTHER_IOCTLS.get(op)
    return None if other is None else other[1]


def failed(outcome: Json) -> bool:
    return "ret" not in outcome
