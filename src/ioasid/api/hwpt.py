"""HW page tables: paging HWPTs (an IOMMU domain kept in sync with an IOAS) and nested
HWPTs (a guest's stage 1 on a nesting parent or on a vIOMMU), with driver data,
invalidation and dirty tracking.

>>> hwpt = HwPagetable.alloc(fd, dev, ioas, flags=uapi.IOMMU_HWPT_ALLOC_NEST_PARENT)
>>> s1 = HwPagetable.alloc(fd, dev, hwpt, data=uapi.iommu_hwpt_vtd_s1(...))
>>> s1.invalidate([uapi.iommu_hwpt_vtd_s1_invalidate(addr=0, npages=(1 << 64) - 1)])
1
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from ioasid import uapi
from ioasid.api.errors import IommufdError, from_oserror
from ioasid.api.iommufd import Ioas, Iommufd

if TYPE_CHECKING:
    from ioasid.api.eventq import FaultQueue

PAGE_SIZE = 4096

DATA_TYPES: dict[type[Any], int] = {
    uapi.iommu_hwpt_vtd_s1: uapi.IOMMU_HWPT_DATA_VTD_S1,
    uapi.iommu_hwpt_arm_smmuv3: uapi.IOMMU_HWPT_DATA_ARM_SMMUV3,
    uapi.iommu_hwpt_selftest: uapi.IOMMU_HWPT_DATA_SELFTEST,
}
"""The ``data_type`` of each driver-data struct, so callers pass the struct alone."""

INVALIDATE_TYPES: dict[type[Any], int] = {
    uapi.iommu_hwpt_vtd_s1_invalidate: uapi.IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
    uapi.iommu_viommu_arm_smmuv3_invalidate: uapi.IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
    uapi.iommu_hwpt_invalidate_selftest: uapi.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
    uapi.iommu_viommu_invalidate_selftest: uapi.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
}


class HasId(Protocol):
    """A device (:class:`~ioasid.api.Device`, :class:`~ioasid.api.MockDevice`) or any
    object with a kernel id."""

    @property
    def id(self) -> int: ...


class InvalidateError(IommufdError):
    """``IOMMU_HWPT_INVALIDATE`` failed at an entry: ``done`` entries were handled first."""

    def __init__(self, err: IommufdError, done: int) -> None:
        super().__init__(err.errno or 0, err.op, err.rule, f"entries done={done}")
        self.done = done


def invalidate(
    fd: Iommufd, obj_id: int, entries: Sequence[Any], data_type: int | None = None
) -> int:
    """``IOMMU_HWPT_INVALIDATE`` of ``obj_id`` (a nested HWPT or a vIOMMU): the entries
    (driver structs, all of one type) in one array; returns how many the kernel handled.
    A failure raises :class:`InvalidateError` carrying that count."""
    if data_type is None:
        if not entries:
            raise TypeError("data_type is required for an empty entry list")
        data_type = INVALIDATE_TYPES[type(entries[0])]
    n = len(entries)
    entry_len = ctypes.sizeof(type(entries[0])) if n else 0
    raw = ctypes.create_string_buffer(b"".join(bytes(e) for e in entries), max(n * entry_len, 1))
    cmd = uapi.iommu_hwpt_invalidate(
        size=ctypes.sizeof(uapi.iommu_hwpt_invalidate),
        hwpt_id=obj_id,
        data_uptr=ctypes.addressof(raw) if n else 0,
        data_type=data_type,
        entry_len=entry_len,
        entry_num=n,
    )
    buf = cmd.to_bytearray()
    try:
        fd.handle.ioctl(uapi.IOMMU_HWPT_INVALIDATE, buf)
    except OSError as exc:
        done = int(uapi.iommu_hwpt_invalidate.from_bytes(buf).entry_num)
        err = from_oserror(exc, "IOMMU_HWPT_INVALIDATE", f"hwpt_id={obj_id}, entry_num={n}")
        raise InvalidateError(err, done) from None
    return int(uapi.iommu_hwpt_invalidate.from_bytes(buf).entry_num)


class HwPagetable:
    """A HWPT: ``IOMMU_HWPT_ALLOC`` on an IOAS (paging), on a paging HWPT allocated with
    ``IOMMU_HWPT_ALLOC_NEST_PARENT`` or on a vIOMMU (nested). ``ioas`` is the IOAS a paging
    HWPT follows; ``parent`` what a nested one sits on."""

    def __init__(
        self,
        fd: Iommufd,
        hwpt_id: int,
        ioas: Ioas | None = None,
        *,
        parent: object | None = None,
        flags: int = 0,
    ) -> None:
        self.fd = fd
        self.id = hwpt_id
        self.ioas = ioas
        self.parent = parent
        self.flags = flags

    @property
    def nested(self) -> bool:
        return self.parent is not None

    @classmethod
    def alloc(
        cls,
        fd: Iommufd,
        device: HasId,
        pt: Ioas | HwPagetable | HasId,
        *,
        flags: int = 0,
        data: Any = None,
        data_type: int | None = None,
        fault: FaultQueue | None = None,
    ) -> HwPagetable:
        """``IOMMU_HWPT_ALLOC`` for ``device`` on ``pt`` (an :class:`Ioas`, a nesting-parent
        :class:`HwPagetable` or a :class:`~ioasid.api.Viommu`). ``data`` is the driver's
        struct (``iommu_hwpt_vtd_s1``, ``iommu_hwpt_selftest`` ...; its type picks
        ``data_type``); ``fault`` a :class:`~ioasid.api.FaultQueue` for I/O page faults
        (sets ``IOMMU_HWPT_FAULT_ID_VALID``)."""
        raw = None
        if data is not None:
            if data_type is None:
                data_type = DATA_TYPES[type(data)]
            raw = ctypes.create_string_buffer(bytes(data), ctypes.sizeof(data))
        if fault is not None:
            flags |= uapi.IOMMU_HWPT_FAULT_ID_VALID
        cmd = uapi.iommu_hwpt_alloc(
            flags=flags,
            dev_id=device.id,
            pt_id=pt.id,
            data_type=data_type or uapi.IOMMU_HWPT_DATA_NONE,
            data_len=ctypes.sizeof(data) if data is not None else 0,
            data_uptr=ctypes.addressof(raw) if raw is not None else 0,
            fault_id=fault.id if fault is not None else 0,
        )
        out = fd.ioctl(uapi.IOMMU_HWPT_ALLOC, cmd, "IOMMU_HWPT_ALLOC")
        if isinstance(pt, Ioas):
            return cls(fd, int(out.out_hwpt_id), pt, flags=flags)
        return cls(fd, int(out.out_hwpt_id), parent=pt, flags=flags)

    def invalidate(self, entries: Sequence[Any], data_type: int | None = None) -> int:
        """``IOMMU_HWPT_INVALIDATE`` of this nested HWPT's caches: returns the entries
        done (:class:`InvalidateError` with ``done`` on failure)."""
        return invalidate(self.fd, self.id, entries, data_type)

    def set_dirty_tracking(self, enable: bool = True) -> None:
        """``IOMMU_HWPT_SET_DIRTY_TRACKING`` (the HWPT needs ``IOMMU_HWPT_ALLOC_DIRTY_TRACKING``);
        enabling starts from a clean bitmap."""
        cmd = uapi.iommu_hwpt_set_dirty_tracking(
            flags=uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE if enable else 0, hwpt_id=self.id
        )
        self.fd.ioctl(uapi.IOMMU_HWPT_SET_DIRTY_TRACKING, cmd, "IOMMU_HWPT_SET_DIRTY_TRACKING")

    def dirty_bitmap(
        self, iova: int, length: int, *, page_size: int = PAGE_SIZE, no_clear: bool = False
    ) -> npt.NDArray[np.bool_]:
        """``IOMMU_HWPT_GET_DIRTY_BITMAP``: one bool per ``page_size`` page of ``[iova,
        iova+length)``, True where a device wrote since the last read (which clears them
        unless ``no_clear``)."""
        npages = -(-length // page_size)
        words = np.zeros(-(-npages // 64), dtype=np.uint64)
        cmd = uapi.iommu_hwpt_get_dirty_bitmap(
            hwpt_id=self.id,
            flags=uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR if no_clear else 0,
            iova=iova,
            length=length,
            page_size=page_size,
            data=words.ctypes.data,
        )
        self.fd.ioctl(uapi.IOMMU_HWPT_GET_DIRTY_BITMAP, cmd, "IOMMU_HWPT_GET_DIRTY_BITMAP")
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:npages]
        out: npt.NDArray[np.bool_] = bits.astype(np.bool_)
        return out

    def destroy(self) -> None:
        """``IOMMU_DESTROY``."""
        self.fd.destroy(self.id)

    def __enter__(self) -> HwPagetable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        kind = "nested" if self.nested else "paging"
        return f"<HwPagetable {self.id} {kind}>"
