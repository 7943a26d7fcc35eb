"""The caller's mappings as the simulated kernel sees them: ``PROCMAP_QUERY`` answers what
``/proc/self/maps`` says, and pinning refuses what ``pin_user_pages`` refuses."""

from __future__ import annotations

import ctypes
import errno
import mmap

import pytest

from ioasid.hw.memory import PAGE_SIZE, SelfAddressSpace, new_syscall, procmap_vmas


def _key(v: object) -> tuple[object, ...]:
    return tuple(getattr(v, f) for f in ("start", "end", "readable", "writable", "shared",
                                          "offset", "dev", "inode"))


def test_procmap_query_lists_the_vmas_of_proc_maps() -> None:
    aspace = SelfAddressSpace()
    keep = mmap.mmap(-1, 4 * PAGE_SIZE)
    new_syscall()
    parsed = aspace.vmas()
    queried = procmap_vmas(aspace.pid, 0, 1 << 64)
    if queried is None:
        pytest.skip("no PROCMAP_QUERY (Linux < 6.11)")
    by_start = {v.start: v for v in queried}
    common = [v for v in parsed if v.start in by_start]
    # the two reads are not atomic: allow the odd VMA made in between, and [vsyscall]
    assert len(common) >= len(parsed) - 3
    for v in common:
        q = by_start[v.start]
        assert _key(q) == _key(v)
        if not v.inode:
            assert q.path == v.path
    keep.close()


def test_check_pinnable_refuses_holes_protections_and_special_mappings() -> None:
    aspace = SelfAddressSpace()
    region = mmap.mmap(-1, 3 * PAGE_SIZE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(base + PAGE_SIZE, PAGE_SIZE, mmap.PROT_READ) == 0
    assert libc.mprotect(base + 2 * PAGE_SIZE, PAGE_SIZE, 0) == 0  # PROT_NONE
    new_syscall()
    aspace.check_pinnable(base, PAGE_SIZE, True)
    aspace.check_pinnable(base, 2 * PAGE_SIZE, False)
    for addr, length, write in (
        (base, 2 * PAGE_SIZE, True),  # read-only page
        (base, 3 * PAGE_SIZE, False),  # PROT_NONE page
        (0, PAGE_SIZE, False),  # a hole
    ):
        new_syscall()
        with pytest.raises(OSError) as e:
            aspace.check_pinnable(addr, length, write)
        assert e.value.errno == errno.EFAULT
    vvar = [v for v in aspace.vmas() if v.path in ("[vvar]", "[vvar_vclock]")]
    if vvar:
        new_syscall()
        with pytest.raises(OSError):
            aspace.check_pinnable(vvar[0].start, PAGE_SIZE, False)
    del base
