"""The few libc memory calls tests need that :mod:`mmap` cannot make: mappings at a chosen
address, partial ``munmap``, ``madvise`` — the way the kernel selftests use them."""

from __future__ import annotations

import ctypes

PROT_NONE = 0
MAP_FIXED = 0x10
MAP_POPULATE = 0x8000
MAP_HUGETLB = 0x40000
MAP_FAILED = -1
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
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


def mmap(
    length: int, prot: int, flags: int, fd: int = -1, offset: int = 0, addr: int | None = None
) -> int:
    """``mmap(addr, length, prot, flags, fd, offset)``: the address, or ``MAP_FAILED`` (-1)
    with ``ctypes.get_errno()`` set."""
    got = _libc.mmap(addr, length, prot, flags, fd, offset)
    return MAP_FAILED if got in (None, ctypes.c_void_p(-1).value) else int(got)


def munmap(addr: int, length: int) -> int:
    """``munmap(addr, length)``: 0, or -1 with ``ctypes.get_errno()`` set."""
    return int(_libc.munmap(addr, length))


def mprotect(addr: int, length: int, prot: int) -> int:
    """``mprotect(addr, length, prot)``: 0, or -1 with ``ctypes.get_errno()`` set."""
    return int(_libc.mprotect(addr, length, prot))


def madvise(addr: int, length: int, advice: int) -> int:
    return int(_libc.madvise(addr, length, advice))


def memset(addr: int, value: int, length: int) -> None:
    _libc.memset(addr, value, length)
