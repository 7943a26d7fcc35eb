"""The Pythonic layer: ``Iommufd`` and ``Ioas``.

Every method encodes the kernel struct, calls ``ioctl`` on the chosen backend and decodes
the answer: the same code runs on the embedded simulator and on a real ``/dev/iommu``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from ioasid import backends, uapi
from ioasid.api.errors import IommufdError, from_oserror
from ioasid.api.memory import Buffer
from ioasid.backends.base import Handle

S = TypeVar("S", bound=uapi.Struct)

U64_MAX = (1 << 64) - 1


@dataclass(frozen=True)
class IovaRange:
    """``struct iommu_iova_range``: ``[start, last]``, inclusive."""

    start: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.start + 1

    def __str__(self) -> str:
        return f"[{self.start:#x}, {self.last:#x}]"


@dataclass(frozen=True)
class IovaRanges:
    """What ``IOMMU_IOAS_IOVA_RANGES`` reports: usable ranges and the IOVA alignment."""

    ranges: tuple[IovaRange, ...]
    alignment: int


def call(handle: Handle, request: int, cmd: S, op: str) -> S:
    """``ioctl(handle, request, &cmd)``: the struct as the kernel left it, or
    :class:`IommufdError` naming ``op``, the rule and the values passed."""
    buf = cmd.to_bytearray()
    try:
        handle.ioctl(request, buf)
    except OSError as exc:
        raise from_oserror(exc, op, _values(cmd)) from None
    return type(cmd).from_bytes(buf)


def _values(s: uapi.Struct) -> str:
    parts = []
    for name, value in s._field_items():
        if name in ("size", "reserved") or not isinstance(value, int):
            continue
        parts.append(f"{name}={value:#x}" if value > 9 else f"{name}={value}")
    return ", ".join(parts)


class Iommufd:
    """An open iommufd (``/dev/iommu``) on the ``sim`` or ``linux`` backend.

    >>> with Iommufd() as fd:
    ...     ioas = fd.ioas_alloc()
    """

    def __init__(
        self, backend: str | ModuleType = backends.DEFAULT, path: str = "/dev/iommu"
    ) -> None:
        self.backend = backends.get(backend) if isinstance(backend, str) else backend
        self.handle: Handle = self.backend.open(path)

    # the raw door --------------------------------------------------------------------

    def ioctl(self, request: int, cmd: S, op: str) -> S:
        """Issue ``request`` with ``cmd``; return the struct as the kernel left it."""
        if not cmd.size and "size" in dict(cmd._field_items()):
            cmd.size = ctypes.sizeof(cmd)
        return call(self.handle, request, cmd, op)

    def fileno(self) -> int:
        return self.handle.fileno()

    def close(self) -> None:
        """Close the fd: the kernel destroys every object of this iommufd."""
        self.handle.close()

    def __enter__(self) -> Iommufd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # objects ---------------------------------------------------------------------------

    def ioas_alloc(self) -> Ioas:
        """``IOMMU_IOAS_ALLOC``: a new, empty I/O address space."""
        out = self.ioctl(uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc(), "IOMMU_IOAS_ALLOC")
        return Ioas(self, out.out_ioas_id)

    def destroy(self, obj_id: int) -> None:
        """``IOMMU_DESTROY``."""
        self.ioctl(uapi.IOMMU_DESTROY, uapi.iommu_destroy(id=obj_id), "IOMMU_DESTROY")

    def _option(self, option_id: int, op: int, object_id: int = 0, val64: int = 0) -> int:
        cmd = uapi.iommu_option(option_id=option_id, op=op, object_id=object_id, val64=val64)
        return int(self.ioctl(uapi.IOMMU_OPTION, cmd, "IOMMU_OPTION").val64)

    @property
    def rlimit_mode_mm(self) -> bool:
        """``IOMMU_OPTION_RLIMIT_MODE``: True = VFIO-style per-process (mm) accounting."""
        return bool(self._option(uapi.IOMMU_OPTION_RLIMIT_MODE, uapi.IOMMU_OPTION_OP_GET))

    @rlimit_mode_mm.setter
    def rlimit_mode_mm(self, value: bool) -> None:
        self._option(uapi.IOMMU_OPTION_RLIMIT_MODE, uapi.IOMMU_OPTION_OP_SET, val64=int(value))

    def change_process(self) -> None:
        """``IOMMU_IOAS_CHANGE_PROCESS``: account every (file-backed) area to this process."""
        self.ioctl(
            uapi.IOMMU_IOAS_CHANGE_PROCESS,
            uapi.iommu_ioas_change_process(),
            "IOMMU_IOAS_CHANGE_PROCESS",
        )

    def __repr__(self) -> str:
        return f"<Iommufd {self.backend.NAME} fd={self.handle.fileno()}>"


class Ioas:
    """An IOAS: a set of non-overlapping areas mapping IOVA ranges to memory."""

    def __init__(self, fd: Iommufd, ioas_id: int) -> None:
        self.fd = fd
        self.id = ioas_id

    def map(
        self,
        memory: Buffer | int,
        length: int | None = None,
        *,
        iova: int | None = None,
        readable: bool = True,
        writable: bool = True,
    ) -> int:
        """``IOMMU_IOAS_MAP``: map ``length`` bytes of user memory; returns the IOVA.

        ``memory`` is a :class:`Buffer` or a raw user address. With ``iova=None`` the
        kernel picks the IOVA (aligned like the address); otherwise ``FIXED_IOVA``.
        """
        user_va = memory.address if isinstance(memory, Buffer) else memory
        if length is None:
            if not isinstance(memory, Buffer):
                raise TypeError("length is required when mapping a raw address")
            length = memory.length
        flags = _rw_flags(readable, writable)
        if iova is not None:
            flags |= uapi.IOMMU_IOAS_MAP_FIXED_IOVA
        cmd = uapi.iommu_ioas_map(
            flags=flags, ioas_id=self.id, user_va=user_va, length=length, iova=iova or 0
        )
        return int(self.fd.ioctl(uapi.IOMMU_IOAS_MAP, cmd, "IOMMU_IOAS_MAP").iova)

    def map_file(
        self,
        file: int | Any,
        start: int,
        length: int,
        *,
        iova: int | None = None,
        readable: bool = True,
        writable: bool = True,
    ) -> int:
        """``IOMMU_IOAS_MAP_FILE``: map ``length`` bytes of a memfd from ``start``."""
        fdno = file if isinstance(file, int) else file.fileno()
        flags = _rw_flags(readable, writable)
        if iova is not None:
            flags |= uapi.IOMMU_IOAS_MAP_FIXED_IOVA
        cmd = uapi.iommu_ioas_map_file(
            flags=flags, ioas_id=self.id, fd=fdno, start=start, length=length, iova=iova or 0
        )
        return int(self.fd.ioctl(uapi.IOMMU_IOAS_MAP_FILE, cmd, "IOMMU_IOAS_MAP_FILE").iova)

    def copy_from(
        self,
        src: Ioas,
        src_iova: int,
        length: int,
        *,
        iova: int | None = None,
        readable: bool = True,
        writable: bool = True,
    ) -> int:
        """``IOMMU_IOAS_COPY``: share already-mapped pages of ``src`` into this IOAS."""
        flags = _rw_flags(readable, writable)
        if iova is not None:
            flags |= uapi.IOMMU_IOAS_MAP_FIXED_IOVA
        cmd = uapi.iommu_ioas_copy(
            flags=flags,
            dst_ioas_id=self.id,
            src_ioas_id=src.id,
            length=length,
            dst_iova=iova or 0,
            src_iova=src_iova,
        )
        return int(self.fd.ioctl(uapi.IOMMU_IOAS_COPY, cmd, "IOMMU_IOAS_COPY").dst_iova)

    def unmap(self, iova: int, length: int) -> int:
        """``IOMMU_IOAS_UNMAP``: remove the whole areas inside the range; bytes removed."""
        cmd = uapi.iommu_ioas_unmap(ioas_id=self.id, iova=iova, length=length)
        return int(self.fd.ioctl(uapi.IOMMU_IOAS_UNMAP, cmd, "IOMMU_IOAS_UNMAP").length)

    def unmap_all(self) -> int:
        return self.unmap(0, U64_MAX)

    def iova_ranges(self) -> IovaRanges:
        """``IOMMU_IOAS_IOVA_RANGES``, asking twice when the first array is too small."""
        capacity = 8
        while True:
            arr = (uapi.iommu_iova_range * capacity)()
            cmd = uapi.iommu_ioas_iova_ranges(
                ioas_id=self.id, num_iovas=capacity, allowed_iovas=ctypes.addressof(arr)
            )
            try:
                out = self.fd.ioctl(uapi.IOMMU_IOAS_IOVA_RANGES, cmd, "IOMMU_IOAS_IOVA_RANGES")
            except IommufdError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise
                capacity *= 4
                continue
            ranges = tuple(IovaRange(r.start, r.last) for r in arr[: out.num_iovas])
            return IovaRanges(ranges, int(out.out_iova_alignment))

    def allow_iovas(self, ranges: Iterable[tuple[int, int] | IovaRange]) -> None:
        """``IOMMU_IOAS_ALLOW_IOVAS``: restrict kernel-chosen IOVAs to these ``(start, last)``."""
        items = [r if isinstance(r, IovaRange) else IovaRange(*r) for r in ranges]
        arr = (uapi.iommu_iova_range * max(len(items), 1))(
            *(uapi.iommu_iova_range(start=r.start, last=r.last) for r in items)
        )
        cmd = uapi.iommu_ioas_allow_iovas(
            ioas_id=self.id, num_iovas=len(items), allowed_iovas=ctypes.addressof(arr)
        )
        self.fd.ioctl(uapi.IOMMU_IOAS_ALLOW_IOVAS, cmd, "IOMMU_IOAS_ALLOW_IOVAS")

    @property
    def huge_pages(self) -> bool:
        """``IOMMU_OPTION_HUGE_PAGES`` of this IOAS."""
        return bool(
            self.fd._option(uapi.IOMMU_OPTION_HUGE_PAGES, uapi.IOMMU_OPTION_OP_GET, self.id)
        )

    @huge_pages.setter
    def huge_pages(self, value: bool) -> None:
        self.fd._option(uapi.IOMMU_OPTION_HUGE_PAGES, uapi.IOMMU_OPTION_OP_SET, self.id, int(value))

    def destroy(self) -> None:
        self.fd.destroy(self.id)

    def __repr__(self) -> str:
        return f"<Ioas {self.id}>"


def _rw_flags(readable: bool, writable: bool) -> int:
    return (uapi.IOMMU_IOAS_MAP_READABLE if readable else 0) | (
        uapi.IOMMU_IOAS_MAP_WRITEABLE if writable else 0
    )


def memfd(name: str, length: int) -> int:
    """A memfd of ``length`` bytes, the file kind ``IOMMU_IOAS_MAP_FILE`` pins."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.ftruncate(fd, length)
    return fd
