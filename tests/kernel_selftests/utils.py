"""Port of ``tools/testing/selftests/iommu/iommufd_utils.h`` (Linux 7.3) and of the global
state ``iommufd.c`` builds in its constructor (``setup_sizes``).

Naming follows the C helpers:

* ``_test_*(fd, ...)`` issue the ioctl and return its output (the C versions return the
  ioctl's rc and write outputs through pointers); a failure raises ``OSError`` with the
  kernel's errno, as the ioctl does.
* The ``test_*`` / ``test_err_*`` macros use ``self->fd`` and ``self->ioas_id``; here they
  are methods of :class:`Fixture`, which holds ``fd`` and ``ioas_id``. ``test_*`` asserts
  success (``ASSERT_EQ(0, ...)``), ``test_err_*`` asserts failure with an errno
  (``EXPECT_ERRNO``).

Pointers are plain ``int`` addresses, as in C: ``buffer`` is the address of the global
buffer, ``buffer + MOCK_PAGE_SIZE`` a pointer into it. ``buffer_mem`` is its memory.

Differences from C, on purpose: ``EXPECT_*`` (record and continue) are hard assertions
here, like ``ASSERT_*``; a test fails at its first broken expectation.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

from ioasid import uapi
from ioasid.backends.base import Handle
from ioasid.testing import libc

# --- iommufd_utils.h enum and iommufd.c globals ------------------------------------------

IOPT_PAGES_ACCOUNT_NONE = 0
IOPT_PAGES_ACCOUNT_USER = 1
IOPT_PAGES_ACCOUNT_MM = 2

UINT64_MAX = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1
SIZE_MAX = UINT64_MAX


def get_huge_page_size() -> int:
    """``get_huge_page_size()``: the THP PMD size, 2 MiB when it cannot be read."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "rb") as f:
            raw = f.read(80)
    except OSError:
        return 2 * 1024 * 1024
    if not raw or len(raw) == 80:
        return 2 * 1024 * 1024
    digits = raw.split()[0] if raw.split() else b""
    return int(digits) if digits.isdigit() else 0


PAGE_SIZE: int = os.sysconf("SC_PAGE_SIZE")
HUGEPAGE_SIZE: int = get_huge_page_size()
BUFFER_SIZE: int = PAGE_SIZE * 16


def _addressof(mm: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(mm))


def _setup_buffer() -> tuple[mmap.mmap, int]:
    """``setup_sizes()``: a HUGEPAGE_SIZE-aligned, MAP_SHARED|MAP_ANONYMOUS buffer.

    C re-mmaps a ``posix_memalign`` block MAP_FIXED; we over-allocate a shared anonymous
    mapping and take its aligned part, which is the same kind of memory at the same
    alignment.
    """
    region = mmap.mmap(
        -1,
        HUGEPAGE_SIZE + BUFFER_SIZE,
        flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS,
        prot=mmap.PROT_READ | mmap.PROT_WRITE,
    )
    base = _addressof(region)
    aligned = (base + HUGEPAGE_SIZE - 1) & ~(HUGEPAGE_SIZE - 1)
    assert aligned % HUGEPAGE_SIZE == 0
    return region, aligned


def memfd_mmap(length: int, prot: int, flags: int) -> tuple[mmap.mmap, int]:
    """``memfd_mmap()``: a memfd named "buffer" of ``length`` bytes, mapped; returns
    (mapping, fd)."""
    mfd_flags = os.MFD_HUGETLB if flags & getattr(mmap, "MAP_HUGETLB", 0x40000) else 0
    fd = os.memfd_create("buffer", mfd_flags)
    try:
        os.ftruncate(fd, length)
        mem = mmap.mmap(fd, length, flags=flags, prot=prot)
    except OSError:
        os.close(fd)
        raise
    return mem, fd


libc_mmap = libc.mmap
libc_munmap = libc.munmap
libc_memset = libc.memset


_buffer_region, buffer = _setup_buffer()
buffer_mem: memoryview = memoryview(_buffer_region)[
    buffer - _addressof(_buffer_region) : buffer - _addressof(_buffer_region) + BUFFER_SIZE
]
"""The ``BUFFER_SIZE`` bytes at ``buffer``."""

mfd_buffer_mem, mfd = memfd_mmap(BUFFER_SIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED)
mfd_buffer: int = _addressof(mfd_buffer_mem)
assert mfd > 0


# --- EXPECT_ERRNO -------------------------------------------------------------------------


@contextmanager
def expect_errno(expected: int) -> Iterator[None]:
    """``EXPECT_ERRNO(expected, cmd)``: the body must fail (``ASSERT_EQ(-1, cmd)``) with
    exactly ``errno == expected``."""
    name = errno.errorcode.get(expected, str(expected))
    try:
        yield
    except OSError as e:
        got = errno.errorcode.get(e.errno or 0, str(e.errno))
        assert e.errno == expected, f"expected errno {name}, got {got}: {e}"
        return
    raise AssertionError(f"expected failure with errno {name}, but the call succeeded")


def EXPECT_ERRNO(expected: int, fn: Callable[..., Any], *args: Any) -> None:
    """Function form of :func:`expect_errno`: ``fn(*args)`` must fail with ``expected``."""
    with expect_errno(expected):
        fn(*args)


# --- raw ioctl ------------------------------------------------------------------------------


def ioctl(fd: Handle, request: int, arg: Any = 0) -> int:
    """``ioctl(fd, request, arg)``: ``arg`` is a ctypes struct/array (updated in place with
    the kernel's outputs), a bytearray, or an int (a raw pointer or value; 0 is NULL)."""
    if isinstance(arg, ctypes.Structure | ctypes.Union | ctypes.Array):
        return fd.ioctl(request, memoryview(arg).cast("B"))
    return fd.ioctl(request, arg)


def addressof(obj: Any) -> int:
    """``(uintptr_t)&obj`` for a ctypes object; 0 for ``None`` (NULL)."""
    return 0 if obj is None else ctypes.addressof(obj)


# --- check_refs / teardown_iommufd ---------------------------------------------------------


def check_refs(fd: Handle, ptr: int, length: int, refs: int) -> None:
    """``check_refs(ptr, length, refs)``: MD_CHECK_REFS must succeed."""
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_MD_CHECK_REFS
    cmd.check_refs.length = length
    cmd.check_refs.uptr = ptr
    cmd.check_refs.refs = refs
    assert ioctl(fd, uapi.IOMMU_TEST_CMD, cmd) == 0


def teardown_iommufd(backend: ModuleType, fd: Handle | None) -> None:
    """``teardown_iommufd()``: close the iommufd, then on a fresh one check that no page of
    the global ``buffer`` is still pinned (MD_CHECK_REFS with refs 0)."""
    if fd is None:
        return
    fd.close()
    fd = backend.open("/dev/iommu")
    try:
        check_refs(fd, buffer, BUFFER_SIZE, 0)
    finally:
        fd.close()


# --- objects / IOAS (raw) --------------------------------------------------------------------


def _test_ioctl_destroy(fd: Handle, id: int) -> int:
    cmd = uapi.iommu_destroy(size=ctypes.sizeof(uapi.iommu_destroy), id=id)
    return ioctl(fd, uapi.IOMMU_DESTROY, cmd)


def _test_ioctl_ioas_alloc(fd: Handle) -> int:
    """Returns ``out_ioas_id``."""
    cmd = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
    ioctl(fd, uapi.IOMMU_IOAS_ALLOC, cmd)
    return int(cmd.out_ioas_id)


def _test_ioctl_ioas_map(
    fd: Handle, ioas_id: int, buffer: int, length: int, iova: int, flags: int
) -> int:
    """Sends ``iova`` only with ``FIXED_IOVA``; returns the ``iova`` the kernel wrote back."""
    cmd = uapi.iommu_ioas_map(
        size=ctypes.sizeof(uapi.iommu_ioas_map),
        flags=flags,
        ioas_id=ioas_id,
        user_va=buffer,
        length=length,
    )
    if flags & uapi.IOMMU_IOAS_MAP_FIXED_IOVA:
        cmd.iova = iova
    ioctl(fd, uapi.IOMMU_IOAS_MAP, cmd)
    return int(cmd.iova)


def _test_ioctl_ioas_unmap(fd: Handle, ioas_id: int, iova: int, length: int) -> int:
    """Returns the unmapped length the kernel wrote back."""
    cmd = uapi.iommu_ioas_unmap(
        size=ctypes.sizeof(uapi.iommu_ioas_unmap), ioas_id=ioas_id, iova=iova, length=length
    )
    ioctl(fd, uapi.IOMMU_IOAS_UNMAP, cmd)
    return int(cmd.length)


def _test_ioctl_ioas_map_file(
    fd: Handle, ioas_id: int, mfd: int, start: int, length: int, iova: int, flags: int
) -> int:
    cmd = uapi.iommu_ioas_map_file(
        size=ctypes.sizeof(uapi.iommu_ioas_map_file),
        flags=flags,
        ioas_id=ioas_id,
        fd=mfd,
        start=start,
        length=length,
    )
    if flags & uapi.IOMMU_IOAS_MAP_FIXED_IOVA:
        cmd.iova = iova
    ioctl(fd, uapi.IOMMU_IOAS_MAP_FILE, cmd)
    return int(cmd.iova)


def _test_ioctl_set_temp_memory_limit(fd: Handle, limit: int) -> int:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT
    cmd.memory_limit.limit = limit
    return ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


def _test_cmd_add_reserved(fd: Handle, ioas_id: int, start: int, length: int) -> int:
    """IOMMU_TEST_OP_ADD_RESERVED, as the tests spell it inline."""
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_ADD_RESERVED
    cmd.id = ioas_id
    cmd.add_reserved.start = start
    cmd.add_reserved.length = length
    return ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


# --- mock devices / HWPT (raw) ----------------------------------------------------------------


def _test_cmd_mock_domain(fd: Handle, ioas_id: int) -> tuple[int, int, int]:
    """Returns (stdev_id, hwpt_id, idev_id)."""
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_MOCK_DOMAIN
    cmd.id = ioas_id
    ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)
    assert cmd.id != 0
    md = cmd.mock_domain
    return int(md.out_stdev_id), int(md.out_hwpt_id), int(md.out_idev_id)


def _test_cmd_mock_domain_flags(fd: Handle, ioas_id: int, stdev_flags: int) -> tuple[int, int, int]:
    """Returns (stdev_id, hwpt_id, idev_id)."""
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS
    cmd.id = ioas_id
    cmd.mock_domain_flags.dev_flags = stdev_flags
    ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)
    assert cmd.id != 0
    md = cmd.mock_domain_flags
    return int(md.out_stdev_id), int(md.out_hwpt_id), int(md.out_idev_id)


def _test_cmd_dev_check_cache(fd: Handle, device_id: int, cache_id: int, expected: int) -> int:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_DEV_CHECK_CACHE
    cmd.id = device_id
    cmd.check_dev_cache.id = cache_id
    cmd.check_dev_cache.cache = expected
    return ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


def _test_cmd_mock_domain_replace(fd: Handle, stdev_id: int, pt_id: int) -> int:
    """Returns the ``pt_id`` the kernel wrote back."""
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE
    cmd.id = stdev_id
    cmd.mock_domain_replace.pt_id = pt_id
    ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)
    return int(cmd.mock_domain_replace.pt_id)


def _test_cmd_hwpt_alloc(
    fd: Handle,
    device_id: int,
    pt_id: int,
    ft_id: int,
    flags: int,
    data_type: int,
    data: int,
    data_len: int,
) -> int:
    """``data`` is a user pointer (0 = NULL). Returns ``out_hwpt_id``."""
    cmd = uapi.iommu_hwpt_alloc(
        size=ctypes.sizeof(uapi.iommu_hwpt_alloc),
        flags=flags,
        dev_id=device_id,
        pt_id=pt_id,
        data_type=data_type,
        data_len=data_len,
        data_uptr=data,
        fault_id=ft_id,
    )
    ioctl(fd, uapi.IOMMU_HWPT_ALLOC, cmd)
    return int(cmd.out_hwpt_id)


def _test_cmd_get_hw_info(
    fd: Handle, device_id: int, data_type: int, data: Any, data_len: int
) -> tuple[int, int]:
    """``data`` is a ctypes object or ``None``. On success checks what the C helper asserts
    and returns (out_capabilities, out_max_pasid_log2)."""
    cmd = uapi.iommu_hw_info(
        size=ctypes.sizeof(uapi.iommu_hw_info),
        dev_id=device_id,
        data_len=data_len,
        in_data_type=data_type,
        data_uptr=addressof(data),
        out_capabilities=0,
    )
    if data_type != uapi.IOMMU_HW_INFO_TYPE_DEFAULT:
        cmd.flags |= uapi.IOMMU_HW_INFO_FLAG_INPUT_TYPE
    ioctl(fd, uapi.IOMMU_GET_HW_INFO, cmd)
    assert cmd.out_data_type == uapi.IOMMU_HW_INFO_TYPE_SELFTEST
    assert cmd.data_len == ctypes.sizeof(uapi.iommu_test_hw_info)
    if data is not None:
        raw = ctypes.string_at(ctypes.addressof(data), data_len)
        if data_len > cmd.data_len:
            assert not any(raw[cmd.data_len :])
        info = uapi.iommu_test_hw_info.from_bytes(raw)
        if data_len >= uapi.iommu_test_hw_info.offsetofend("test_reg"):
            assert info.test_reg == uapi.IOMMU_HW_INFO_SELFTEST_REGVAL
        if data_len >= uapi.iommu_test_hw_info.offsetofend("flags"):
            assert not info.flags
    return int(cmd.out_capabilities), int(cmd.out_max_pasid_log2)


def _test_cmd_hwpt_invalidate(
    fd: Handle, hwpt_id: int, reqs: Any, data_type: int, lreq: int, nreqs: int
) -> tuple[int, int]:
    """``_test_cmd_hwpt_invalidate``: ``reqs`` is a ctypes object or ``None`` (NULL). Returns
    (errno or 0, ``entry_num`` the kernel wrote back — written even on failure)."""
    cmd = uapi.iommu_hwpt_invalidate(
        size=ctypes.sizeof(uapi.iommu_hwpt_invalidate),
        hwpt_id=hwpt_id,
        data_type=data_type,
        data_uptr=addressof(reqs),
        entry_len=lreq,
        entry_num=nreqs,
    )
    try:
        ioctl(fd, uapi.IOMMU_HWPT_INVALIDATE, cmd)
    except OSError as e:
        return e.errno or 0, int(cmd.entry_num)
    return 0, int(cmd.entry_num)


def _test_cmd_hwpt_check_iotlb(fd: Handle, hwpt_id: int, iotlb_id: int, expected: int) -> int:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_MD_CHECK_IOTLB
    cmd.id = hwpt_id
    cmd.check_iotlb.id = iotlb_id
    cmd.check_iotlb.iotlb = expected
    return ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


def _test_ioctl_fault_alloc(fd: Handle) -> tuple[int, int]:
    """Returns (out_fault_id, out_fault_fd)."""
    cmd = uapi.iommu_fault_alloc(size=ctypes.sizeof(uapi.iommu_fault_alloc))
    ioctl(fd, uapi.IOMMU_FAULT_QUEUE_ALLOC, cmd)
    return int(cmd.out_fault_id), int(cmd.out_fault_fd)


# read(2) / write(2) on a file descriptor the kernel hands out (the fault queue's). On a real
# kernel it is a plain fd; the sim backend's kernel serves the fd's file operations itself
# (the fd is real, see ``ioasid.kernel.anon_inode``; ``close`` is a plain ``os.close``).


def _sim_fault_file(backend: ModuleType, fd: int) -> Any:
    kernel = getattr(backend, "kernel", None)
    if kernel is None:
        return None
    from ioasid.kernel.eventq import fault_file

    return fault_file(kernel(), fd)


def fd_read(backend: ModuleType, fd: int, n: int) -> bytes:
    """``read(fd, buf, n)``."""
    f = _sim_fault_file(backend, fd)
    return os.read(fd, n) if f is None else bytes(f.read(n))


def fd_write(backend: ModuleType, fd: int, data: bytes) -> int:
    """``write(fd, data, len)``."""
    f = _sim_fault_file(backend, fd)
    return os.write(fd, data) if f is None else int(f.write(data))


def _test_cmd_trigger_iopf(
    fd: Handle, backend: ModuleType, device_id: int, pasid: int, fault_fd: int
) -> None:
    """``_test_cmd_trigger_iopf``: TRIGGER_IOPF, read the fault from ``fault_fd``, answer it
    with SUCCESS. A short read/write is the C helper's -EIO: an assertion here."""
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = uapi.IOMMU_TEST_OP_TRIGGER_IOPF
    cmd.trigger_iopf.dev_id = device_id
    cmd.trigger_iopf.pasid = pasid
    cmd.trigger_iopf.grpid = 0x2
    cmd.trigger_iopf.perm = uapi.IOMMU_PGFAULT_PERM_READ | uapi.IOMMU_PGFAULT_PERM_WRITE
    cmd.trigger_iopf.addr = 0xDEADBEAF
    ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)
    raw = fd_read(backend, fault_fd, ctypes.sizeof(uapi.iommu_hwpt_pgfault))
    assert len(raw) > 0, "read of the fault fd returned nothing (-EIO)"
    fault = uapi.iommu_hwpt_pgfault.from_buffer_copy(
        raw.ljust(ctypes.sizeof(uapi.iommu_hwpt_pgfault), b"\0")
    )
    response = uapi.iommu_hwpt_page_response(
        code=uapi.IOMMUFD_PAGE_RESP_SUCCESS, cookie=fault.cookie
    )
    assert fd_write(backend, fault_fd, bytes(response)) > 0, "write of the response (-EIO)"


def _test_cmd_pasid_op(fd: Handle, op: int, stdev_id: int, pasid: int, pt_id: int = 0) -> int:
    """``_test_cmd_pasid_attach`` / ``_replace`` / ``_detach`` / ``test_cmd_pasid_check_hwpt``
    (for CHECK_HWPT ``pt_id`` is the ``hwpt_id``; 0 checks that nothing is attached)."""
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd))
    cmd.op = op
    cmd.id = stdev_id
    if op == uapi.IOMMU_TEST_OP_PASID_CHECK_HWPT:
        cmd.pasid_check.pasid = pasid
        cmd.pasid_check.hwpt_id = pt_id
    else:
        cmd.pasid_attach.pasid = pasid
        cmd.pasid_attach.pt_id = pt_id
    return ioctl(fd, uapi.IOMMU_TEST_CMD, cmd)


def test_cmd_pasid_check_hwpt(fd: Handle, stdev_id: int, pasid: int, hwpt_id: int) -> int:
    """``test_cmd_pasid_check_hwpt()``: returns 0, or raises with the errno."""
    return _test_cmd_pasid_op(fd, uapi.IOMMU_TEST_OP_PASID_CHECK_HWPT, stdev_id, pasid, hwpt_id)


# --- the fixture: self->fd, self->ioas_id and the macros that use them -------------------------


class Fixture:
    """``FIXTURE(iommufd)``: opens ``/dev/iommu``; :meth:`teardown` is ``teardown_iommufd``.

    Subclasses add fields (``ioas_id`` ...) and setup, as the C fixtures do. The methods are
    the ``iommufd_utils.h`` macros that use ``self->fd`` / ``self->ioas_id``.
    """

    ioas_id: int = 0
    stdev_id: int = 0
    hwpt_id: int = 0
    device_id: int = 0
    base_iova: int = 0

    def __init__(self, backend: ModuleType) -> None:
        self.backend = backend
        self.fd: Handle | None = backend.open("/dev/iommu")
        assert self.fd is not None

    def teardown(self) -> None:
        fd, self.fd = self.fd, None
        teardown_iommufd(self.backend, fd)

    @property
    def _fd(self) -> Handle:
        assert self.fd is not None
        return self.fd

    def ioctl(self, request: int, arg: Any = 0) -> int:
        """``ioctl(self->fd, request, arg)``."""
        return ioctl(self._fd, request, arg)

    # objects
    def test_ioctl_destroy(self, id: int) -> None:
        assert _test_ioctl_destroy(self._fd, id) == 0

    def test_ioctl_ioas_alloc(self) -> int:
        id = _test_ioctl_ioas_alloc(self._fd)
        assert id != 0
        return id

    # IOAS_MAP
    _RW = uapi.IOMMU_IOAS_MAP_WRITEABLE | uapi.IOMMU_IOAS_MAP_READABLE
    _FIXED_RW = uapi.IOMMU_IOAS_MAP_FIXED_IOVA | _RW

    def test_ioctl_ioas_map(self, buffer: int, length: int) -> int:
        """Returns the kernel-chosen IOVA."""
        return _test_ioctl_ioas_map(self._fd, self.ioas_id, buffer, length, 0, self._RW)

    def test_err_ioctl_ioas_map(self, err: int, buffer: int, length: int) -> None:
        with expect_errno(err):
            _test_ioctl_ioas_map(self._fd, self.ioas_id, buffer, length, 0, self._RW)

    def test_ioctl_ioas_map_id(self, ioas_id: int, buffer: int, length: int) -> int:
        return _test_ioctl_ioas_map(self._fd, ioas_id, buffer, length, 0, self._RW)

    def test_ioctl_ioas_map_fixed(self, buffer: int, length: int, iova: int) -> None:
        _test_ioctl_ioas_map(self._fd, self.ioas_id, buffer, length, iova, self._FIXED_RW)

    def test_ioctl_ioas_map_fixed_id(
        self, ioas_id: int, buffer: int, length: int, iova: int
    ) -> None:
        _test_ioctl_ioas_map(self._fd, ioas_id, buffer, length, iova, self._FIXED_RW)

    def test_err_ioctl_ioas_map_fixed(self, err: int, buffer: int, length: int, iova: int) -> None:
        with expect_errno(err):
            _test_ioctl_ioas_map(self._fd, self.ioas_id, buffer, length, iova, self._FIXED_RW)

    # IOAS_UNMAP
    def test_ioctl_ioas_unmap(self, iova: int, length: int) -> None:
        _test_ioctl_ioas_unmap(self._fd, self.ioas_id, iova, length)

    def test_ioctl_ioas_unmap_id(self, ioas_id: int, iova: int, length: int) -> None:
        _test_ioctl_ioas_unmap(self._fd, ioas_id, iova, length)

    def test_err_ioctl_ioas_unmap(self, err: int, iova: int, length: int) -> None:
        with expect_errno(err):
            _test_ioctl_ioas_unmap(self._fd, self.ioas_id, iova, length)

    # IOAS_MAP_FILE
    def test_ioctl_ioas_map_file(self, mfd: int, start: int, length: int) -> int:
        return _test_ioctl_ioas_map_file(self._fd, self.ioas_id, mfd, start, length, 0, self._RW)

    def test_err_ioctl_ioas_map_file(self, err: int, mfd: int, start: int, length: int) -> None:
        with expect_errno(err):
            _test_ioctl_ioas_map_file(self._fd, self.ioas_id, mfd, start, length, 0, self._RW)

    def test_ioctl_ioas_map_fixed_file(self, mfd: int, start: int, length: int, iova: int) -> None:
        _test_ioctl_ioas_map_file(self._fd, self.ioas_id, mfd, start, length, iova, self._FIXED_RW)

    # memory limit
    def test_ioctl_set_temp_memory_limit(self, limit: int) -> None:
        assert _test_ioctl_set_temp_memory_limit(self._fd, limit) == 0

    def test_ioctl_set_default_memory_limit(self) -> None:
        self.test_ioctl_set_temp_memory_limit(65536)

    # mock devices / HWPT
    def test_cmd_mock_domain(self, ioas_id: int) -> tuple[int, int, int]:
        """Returns (stdev_id, hwpt_id, idev_id)."""
        return _test_cmd_mock_domain(self._fd, ioas_id)

    def test_err_mock_domain(self, err: int, ioas_id: int) -> None:
        with expect_errno(err):
            _test_cmd_mock_domain(self._fd, ioas_id)

    def test_cmd_mock_domain_flags(self, ioas_id: int, flags: int) -> tuple[int, int, int]:
        """Returns (stdev_id, hwpt_id, idev_id)."""
        return _test_cmd_mock_domain_flags(self._fd, ioas_id, flags)

    def test_cmd_dev_check_cache(self, device_id: int, cache_id: int, expected: int) -> None:
        assert _test_cmd_dev_check_cache(self._fd, device_id, cache_id, expected) == 0

    def test_cmd_dev_check_cache_all(self, device_id: int, expected: int) -> None:
        for c in range(uapi.MOCK_DEV_CACHE_NUM):
            self.test_cmd_dev_check_cache(device_id, c, expected)

    def test_err_mock_domain_replace(self, err: int, stdev_id: int, pt_id: int) -> None:
        with expect_errno(err):
            _test_cmd_mock_domain_replace(self._fd, stdev_id, pt_id)

    def test_cmd_mock_domain_replace(self, stdev_id: int, pt_id: int) -> int:
        return _test_cmd_mock_domain_replace(self._fd, stdev_id, pt_id)

    def test_cmd_hwpt_alloc(self, device_id: int, pt_id: int, flags: int) -> int:
        """Returns the new hwpt_id."""
        return _test_cmd_hwpt_alloc(
            self._fd, device_id, pt_id, 0, flags, uapi.IOMMU_HWPT_DATA_NONE, 0, 0
        )

    def test_cmd_hwpt_alloc_iommupt(
        self, device_id: int, pt_id: int, flags: int, iommupt_type: int
    ) -> int:
        user_cfg = uapi.iommu_hwpt_selftest(pagetable_type=iommupt_type)
        return _test_cmd_hwpt_alloc(
            self._fd,
            device_id,
            pt_id,
            0,
            flags,
            uapi.IOMMU_HWPT_DATA_SELFTEST,
            addressof(user_cfg),
            ctypes.sizeof(user_cfg),
        )

    def test_cmd_hwpt_alloc_nested(
        self, device_id: int, pt_id: int, flags: int, data_type: int, data: Any, data_len: int
    ) -> int:
        return _test_cmd_hwpt_alloc(
            self._fd, device_id, pt_id, 0, flags, data_type, addressof(data), data_len
        )

    def test_cmd_hwpt_alloc_iopf(
        self,
        device_id: int,
        pt_id: int,
        fault_id: int,
        flags: int,
        data_type: int,
        data: Any,
        data_len: int,
    ) -> int:
        return _test_cmd_hwpt_alloc(
            self._fd, device_id, pt_id, fault_id, flags, data_type, addressof(data), data_len
        )

    def test_err_hwpt_alloc_iopf(
        self,
        err: int,
        device_id: int,
        pt_id: int,
        fault_id: int,
        flags: int,
        data_type: int,
        data: Any,
        data_len: int,
    ) -> None:
        with expect_errno(err):
            _test_cmd_hwpt_alloc(
                self._fd, device_id, pt_id, fault_id, flags, data_type, addressof(data), data_len
            )

    def test_cmd_hwpt_check_iotlb(self, hwpt_id: int, iotlb_id: int, expected: int) -> None:
        assert _test_cmd_hwpt_check_iotlb(self._fd, hwpt_id, iotlb_id, expected) == 0

    def test_cmd_hwpt_check_iotlb_all(self, hwpt_id: int, expected: int) -> None:
        for i in range(uapi.MOCK_NESTED_DOMAIN_IOTLB_NUM):
            self.test_cmd_hwpt_check_iotlb(hwpt_id, i, expected)

    def test_cmd_hwpt_invalidate(
        self, hwpt_id: int, reqs: Any, data_type: int, lreq: int, nreqs: int
    ) -> int:
        """Returns the ``entry_num`` written back."""
        err, num = _test_cmd_hwpt_invalidate(self._fd, hwpt_id, reqs, data_type, lreq, nreqs)
        assert err == 0, f"IOMMU_HWPT_INVALIDATE failed: {errno.errorcode.get(err, err)}"
        return num

    def test_err_hwpt_invalidate(
        self, expected: int, hwpt_id: int, reqs: Any, data_type: int, lreq: int, nreqs: int
    ) -> int:
        """Returns the ``entry_num`` written back."""
        err, num = _test_cmd_hwpt_invalidate(self._fd, hwpt_id, reqs, data_type, lreq, nreqs)
        assert err == expected, (
            f"expected errno {errno.errorcode.get(expected, expected)}, got "
            f"{errno.errorcode.get(err, err) if err else 'success'}"
        )
        return num

    def test_ioctl_fault_alloc(self) -> tuple[int, int]:
        """Returns (fault_id, fault_fd)."""
        fault_id, fault_fd = _test_ioctl_fault_alloc(self._fd)
        assert fault_id != 0
        return fault_id, fault_fd

    def test_cmd_trigger_iopf(self, device_id: int, fault_fd: int) -> None:
        _test_cmd_trigger_iopf(self._fd, self.backend, device_id, 0x1, fault_fd)

    def test_cmd_trigger_iopf_pasid(self, device_id: int, pasid: int, fault_fd: int) -> None:
        _test_cmd_trigger_iopf(self._fd, self.backend, device_id, pasid, fault_fd)

    def test_cmd_get_hw_info(
        self, device_id: int, data_type: int, data: Any, data_len: int
    ) -> None:
        _test_cmd_get_hw_info(self._fd, device_id, data_type, data, data_len)

    def test_cmd_get_hw_info_pasid(self, device_id: int) -> int:
        """Returns ``out_max_pasid_log2``."""
        return _test_cmd_get_hw_info(self._fd, device_id, uapi.IOMMU_HW_INFO_TYPE_DEFAULT, None, 0)[
            1
        ]

    def test_cmd_get_hw_capabilities(self, device_id: int) -> int:
        return _test_cmd_get_hw_info(self._fd, device_id, uapi.IOMMU_HW_INFO_TYPE_DEFAULT, None, 0)[
            0
        ]

    # PASID (self->stdev_id)
    def test_cmd_pasid_attach(self, pasid: int, hwpt_id: int) -> None:
        _test_cmd_pasid_op(self._fd, uapi.IOMMU_TEST_OP_PASID_ATTACH, self.stdev_id, pasid, hwpt_id)

    def test_err_pasid_attach(self, err: int, pasid: int, hwpt_id: int) -> None:
        with expect_errno(err):
            self.test_cmd_pasid_attach(pasid, hwpt_id)

    def test_cmd_pasid_replace(self, pasid: int, hwpt_id: int) -> None:
        _test_cmd_pasid_op(
            self._fd, uapi.IOMMU_TEST_OP_PASID_REPLACE, self.stdev_id, pasid, hwpt_id
        )

    def test_err_pasid_replace(self, err: int, pasid: int, hwpt_id: int) -> None:
        with expect_errno(err):
            self.test_cmd_pasid_replace(pasid, hwpt_id)

    def test_cmd_pasid_detach(self, pasid: int) -> None:
        _test_cmd_pasid_op(self._fd, uapi.IOMMU_TEST_OP_PASID_DETACH, self.stdev_id, pasid)

    def test_err_hwpt_alloc(self, err: int, device_id: int, pt_id: int, flags: int) -> None:
        with expect_errno(err):
            _test_cmd_hwpt_alloc(
                self._fd, device_id, pt_id, 0, flags, uapi.IOMMU_HWPT_DATA_NONE, 0, 0
            )

    def test_err_hwpt_alloc_nested(
        self,
        err: int,
        device_id: int,
        pt_id: int,
        flags: int,
        data_type: int,
        data: Any,
        data_len: int,
    ) -> None:
        with expect_errno(err):
            _test_cmd_hwpt_alloc(
                self._fd, device_id, pt_id, 0, flags, data_type, addressof(data), data_len
            )

    def test_err_get_hw_info(
        self, err: int, device_id: int, data_type: int, data: Any, data_len: int
    ) -> None:
        with expect_errno(err):
            _test_cmd_get_hw_info(self._fd, device_id, data_type, data, data_len)


# --- kselftest harness: FIXTURE_VARIANT / TEST_F ------------------------------------------------

F = TypeVar("F", bound=Callable[..., None])


def TEST_F(fixture: str, variants: dict[str, Any], namespace: dict[str, Any]) -> Callable[[F], F]:
    """``TEST_F(fixture, name)`` for every ``FIXTURE_VARIANT_ADD``: registers one pytest test
    per variant in ``namespace`` (the test module's ``globals()``), named by the kernel's
    test id ``fixture.variant.name`` as ``test_<fixture>__<variant>__<name>``. Each test
    receives the ``self`` fixture, whose ``variant`` attribute is set from the test's
    ``variant`` (read it with ``request.function.variant``)."""

    def register(body: F) -> F:
        for variant_name, variant in variants.items():
            name = f"test_{fixture}__{variant_name}__{body.__name__}"

            def test(self: Any, _body: F = body) -> None:
                _body(self)

            test.__name__ = test.__qualname__ = name
            test.__doc__ = f"{fixture}.{variant_name}.{body.__name__}"
            test.variant = variant  # type: ignore[attr-defined]
            namespace[name] = test
        return body

    return register
