"""The pieces every uapi module is built from: the ctypes ``Struct`` base and the Linux
asm-generic ioctl number encoding (``_IO``/``_IOR``/``_IOW``/``_IOWR``).

Layouts follow the x86-64 / arm64 little-endian LP64 ABI: ``__aligned_u64`` and
``__aligned_le64`` are ``c_uint64`` with its natural 8-byte alignment.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any, ClassVar, Self, cast

__all__ = [
    "_IO",
    "_IOC",
    "_IOC_DIR",
    "_IOC_DIRBITS",
    "_IOC_DIRSHIFT",
    "_IOC_NONE",
    "_IOC_NR",
    "_IOC_NRBITS",
    "_IOC_NRSHIFT",
    "_IOC_READ",
    "_IOC_SIZE",
    "_IOC_SIZEBITS",
    "_IOC_SIZESHIFT",
    "_IOC_TYPE",
    "_IOC_TYPEBITS",
    "_IOC_TYPESHIFT",
    "_IOC_WRITE",
    "_IOR",
    "_IOW",
    "_IOWR",
    "Struct",
    "Union",
]

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_DIRBITS = 2

_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS

_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2


def _IOC(dir: int, type: int, nr: int, size: int) -> int:
    return (
        (dir << _IOC_DIRSHIFT)
        | (type << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def _IO(type: int, nr: int) -> int:
    return _IOC(_IOC_NONE, type, nr, 0)


def _IOR(type: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ, type, nr, size)


def _IOW(type: int, nr: int, size: int) -> int:
    return _IOC(_IOC_WRITE, type, nr, size)


def _IOWR(type: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type, nr, size)


def _IOC_DIR(nr: int) -> int:
    return (nr >> _IOC_DIRSHIFT) & ((1 << _IOC_DIRBITS) - 1)


def _IOC_TYPE(nr: int) -> int:
    return (nr >> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1)


def _IOC_NR(nr: int) -> int:
    return (nr >> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1)


def _IOC_SIZE(nr: int) -> int:
    return (nr >> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1)


class _Common:
    """Helpers shared by ``Struct`` and ``Union``."""

    _fields_: ClassVar[Sequence[tuple[Any, ...]]]

    def to_bytearray(self) -> bytearray:
        return bytearray(memoryview(cast(Any, self)))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | ctypes.Array[Any] | _Common) -> Self:
        """A copy of ``data`` (any C-contiguous buffer) as this type: zero-padded if short,
        truncated if long."""
        size = ctypes.sizeof(cls)  # type: ignore[arg-type]
        raw = memoryview(cast(Any, data)).cast("B")[:size].tobytes().ljust(size, b"\0")
        return cls.from_buffer_copy(raw)  # type: ignore[attr-defined, no-any-return]

    @classmethod
    def offsetof(cls, field: str) -> int:
        """``offsetof(struct, field)``; ``field`` may be dotted: ``"check_map.iova"``."""
        return _offset_size(cls, field)[0]

    @classmethod
    def sizeof_field(cls, field: str) -> int:
        """``sizeof(((struct *)0)->field)``; ``field`` may be dotted."""
        return _offset_size(cls, field)[1]

    @classmethod
    def offsetofend(cls, field: str) -> int:
        """The kernel's ``offsetofend(struct, field)``: first byte after ``field``."""
        offset, size = _offset_size(cls, field)
        return offset + size

    def _field_items(self) -> list[tuple[str, Any]]:
        items: list[tuple[str, Any]] = []
        for entry in self._fields_:
            name = entry[0]
            value = getattr(self, name)
            if name in getattr(self, "_anonymous_", ()):
                items.extend(value._field_items())
            else:
                items.append((name, list(value) if isinstance(value, ctypes.Array) else value))
        return items

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._field_items())
        return f"{type(self).__name__}({fields})"


def _offset_size(cls: Any, path: str) -> tuple[int, int]:
    offset = 0
    owner = cls
    names = path.split(".")
    for i, name in enumerate(names):
        descr = getattr(owner, name, None)
        if descr is None or not hasattr(descr, "offset"):
            raise AttributeError(f"{cls.__name__} has no field {path!r}")
        offset += descr.offset
        if i == len(names) - 1:
            return offset, int(descr.size)
        owner = _field_type(owner, name)
    raise AssertionError("unreachable")


def _field_type(owner: Any, name: str) -> Any:
    """The ctypes type of field ``name`` of ``owner``, looking through anonymous members."""
    types = {entry[0]: entry[1] for entry in owner._fields_}
    if name in types:
        return types[name]
    for anon in getattr(owner, "_anonymous_", ()):
        found = _field_type(types[anon], name)
        if found is not None:
            return found
    return None


class Struct(_Common, ctypes.Structure):
    """Base of every C ``struct``: ``to_bytearray``, ``from_bytes``, ``offsetofend``."""


class Union(_Common, ctypes.Union):
    """Base of every named C ``union``."""
