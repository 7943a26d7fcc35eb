"""Hostile input at the raw layer: ``fcntl.ioctl``'s contract, sizes the caller declares but
does not have, write-backs that fault after a state change. Each answer is the kernel's
(marked ``oracle``: the same test runs in the guest) and the raw layer raises only
``OSError``."""

from __future__ import annotations

import ctypes
import errno
import mmap
import tracemalloc
from collections.abc import Iterator
from types import ModuleType

import pytest
from tests.kernel_selftests.utils import _test_cmd_mock_domain

from ioasid import Device, Ioas, Iommufd, uapi
from ioasid.hw.memory import PAGE_SIZE
from ioasid.testing import edu, libc

PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
U32_MAX = (1 << 32) - 1


@pytest.fixture
def guarded() -> Iterator[int]:
    """Four zeroed pages followed by a hole: an honest copy past them stops at EFAULT."""
    size = 4 * PAGE_SIZE
    addr = libc.mmap(size + PAGE_SIZE, PROT_RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    assert addr != libc.MAP_FAILED
    assert libc.munmap(addr + size, PAGE_SIZE) == 0
    yield addr
    libc.munmap(addr, size)


def _errno(handle: object, request: int, arg: int | bytearray | bytes | memoryview) -> int:
    try:
        handle.ioctl(request, arg)  # type: ignore[attr-defined]
    except OSError as e:
        assert type(e) is not OSError or e.errno is not None
        return e.errno or 0
    return 0


def _ioas_alloc_at(addr: int, size: int) -> None:
    cmd = uapi.iommu_ioas_alloc(size=size)
    ctypes.memmove(addr, bytes(cmd), ctypes.sizeof(cmd))


@pytest.mark.oracle
def test_short_bytearray_is_never_written_past_its_end(backend: ModuleType) -> None:
    """The struct says 12 bytes, the caller's buffer has 8: ``fcntl.ioctl`` works on its
    scratch copy and copies back 8 bytes, so the bytes after the buffer stay as they were."""
    with backend.open("/dev/iommu") as h:
        backing = bytearray(b"\xaa" * 64)
        cmd = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
        backing[:8] = bytes(cmd)[:8]
        assert h.ioctl(uapi.IOMMU_IOAS_ALLOC, memoryview(backing)[:8]) == 0
        assert backing[8:] == b"\xaa" * 56


@pytest.mark.oracle
def test_bytes_argument_returns_the_updated_struct(backend: ModuleType) -> None:
    with backend.open("/dev/iommu") as h:
        cmd = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
        out = h.ioctl(uapi.IOMMU_IOAS_ALLOC, bytes(cmd))
        assert isinstance(out, bytes) and len(out) == ctypes.sizeof(cmd)
        assert uapi.iommu_ioas_alloc.from_bytes(out).out_ioas_id == 1
        with pytest.raises(OSError) as e:
            h.ioctl(uapi.IOMMU_DESTROY, bytes(uapi.iommu_destroy(size=8, id=99)))
        assert e.value.errno == errno.ENOENT


@pytest.mark.oracle
def test_size_of_4gib_reads_only_the_memory_there(backend: ModuleType, guarded: int) -> None:
    """``check_zeroed_user`` on a tail of 4 GiB: zeros up to the hole, then EFAULT; a
    non-zero byte before the hole is E2BIG. Neither allocates what the size declares."""
    with backend.open("/dev/iommu") as h:
        _ioas_alloc_at(guarded, U32_MAX)
        tracemalloc.start()
        try:
            assert _errno(h, uapi.IOMMU_IOAS_ALLOC, guarded) == errno.EFAULT
            ctypes.memset(guarded + 3 * PAGE_SIZE + 17, 1, 1)
            assert _errno(h, uapi.IOMMU_IOAS_ALLOC, guarded) == errno.E2BIG
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, peak


@pytest.mark.oracle
def test_hw_info_data_len_of_4gib_zeroes_up_to_the_hole(backend: ModuleType, guarded: int) -> None:
    """``clear_user`` of the user buffer past the driver's data: it zeroes what is mapped,
    then faults; nothing of the declared length is allocated."""
    with backend.open("/dev/iommu") as h:
        ioas = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc)).to_bytearray()
        h.ioctl(uapi.IOMMU_IOAS_ALLOC, ioas)
        _, _, dev_id = _test_cmd_mock_domain(h, uapi.iommu_ioas_alloc.from_bytes(ioas).out_ioas_id)
        ctypes.memset(guarded, 0x5A, 4 * PAGE_SIZE)
        cmd = uapi.iommu_hw_info(
            size=ctypes.sizeof(uapi.iommu_hw_info),
            dev_id=dev_id,
            data_len=U32_MAX,
            data_uptr=guarded,
        )
        tracemalloc.start()
        try:
            assert _errno(h, uapi.IOMMU_GET_HW_INFO, cmd.to_bytearray()) == errno.EFAULT
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, peak
        tail = ctypes.string_at(guarded + PAGE_SIZE, 3 * PAGE_SIZE)
        assert tail == bytes(3 * PAGE_SIZE)


@pytest.mark.oracle
def test_bind_whose_out_devid_faults_is_undone(backend: ModuleType) -> None:
    """``vfio_df_ioctl_bind_iommufd``: the device is bound, ``out_devid`` cannot be written
    (EFAULT), ``out_close_device`` unbinds it: the cdev binds again afterwards, and the id is
    free again."""
    st = uapi.vfio_device_bind_iommufd
    size = ctypes.sizeof(st)
    page = libc.mmap(2 * PAGE_SIZE, PROT_RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        # the struct straddles the end of the page: out_devid lands in a read-only page
        addr = page + PAGE_SIZE - st.offsetof("out_devid")
        with Iommufd(backend) as fd, backend.open(edu.cdev_path(backend)) as dev:
            ctypes.memmove(addr, bytes(st(argsz=size, iommufd=fd.fileno())), size)
            assert libc.mprotect(page + PAGE_SIZE, PAGE_SIZE, mmap.PROT_READ) == 0
            assert _errno(dev, uapi.VFIO_DEVICE_BIND_IOMMUFD, addr) == errno.EFAULT
            ok = st(argsz=size, iommufd=fd.fileno()).to_bytearray()
            assert _errno(dev, uapi.VFIO_DEVICE_BIND_IOMMUFD, ok) == 0
            assert st.from_bytes(ok).out_devid == 1
    finally:
        libc.munmap(page, 2 * PAGE_SIZE)


@pytest.mark.oracle
def test_attach_whose_pt_id_faults_is_detached(backend: ModuleType) -> None:
    """``vfio_df_ioctl_attach_pt``: attached, the ``pt_id`` write-back faults, ``out_detach``
    detaches: the auto domain is gone with it and the IOAS can be destroyed."""
    st = uapi.vfio_device_attach_iommufd_pt
    page = libc.mmap(2 * PAGE_SIZE, PROT_RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        with Iommufd(backend) as fd, Device(fd, edu.cdev_path(backend)) as dev:
            ioas = fd.ioas_alloc()
            addr = page + PAGE_SIZE - st.offsetof("pt_id")
            size = ctypes.sizeof(st)
            ctypes.memmove(addr, bytes(st(argsz=size, pt_id=ioas.id)), size)
            assert libc.mprotect(page + PAGE_SIZE, PAGE_SIZE, mmap.PROT_READ) == 0
            assert _errno(dev.handle, uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, addr) == errno.EFAULT
            fd.destroy(ioas.id)  # EBUSY if the device were still attached
    finally:
        libc.munmap(page, 2 * PAGE_SIZE)


@pytest.mark.oracle
def test_access_fd_beyond_int_is_ebadfd(backend: ModuleType) -> None:
    """An access id (an ``int fd`` in the kernel) that no descriptor can have: ``fget``
    finds nothing and the mock's ``iommufd_access_get`` says EBADFD (not EBADF) -- never an
    overflow."""
    with backend.open("/dev/iommu") as h:
        for op in (
            uapi.IOMMU_TEST_OP_ACCESS_RW,
            uapi.IOMMU_TEST_OP_ACCESS_PAGES,
            uapi.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
            uapi.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS,
        ):
            for fd in (1 << 31, U32_MAX):
                cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd), op=op, id=fd)
                assert _errno(h, uapi.IOMMU_TEST_CMD, cmd.to_bytearray()) == errno.EBADFD, (op, fd)


def test_dev_check_cache_of_a_vfio_device_is_refused(backend: ModuleType) -> None:
    """7.3 reads a ``mock_dev`` that is not one (undefined); the simulator says EINVAL."""
    assert backend.NAME == "sim"
    with Iommufd(backend) as fd, Device(fd, edu.cdev_path(backend)) as dev:
        op = uapi.IOMMU_TEST_OP_DEV_CHECK_CACHE
        cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd), op=op, id=dev.id)
        assert _errno(fd.handle, uapi.IOMMU_TEST_CMD, cmd.to_bytearray()) == errno.EINVAL


def test_an_internal_exception_reaches_the_caller_as_oserror(
    backend: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulator bug is still an ``OSError`` (ENOTRECOVERABLE) at the raw layer, with the
    original exception as its cause, and the kernel's lock is released."""
    from ioasid.kernel import dispatch
    from ioasid.kernel.errors import KernelBug

    assert backend.NAME == "sim"
    nr = uapi.IOMMU_IOAS_ALLOC & 0xFF
    op, _, size = dispatch.TABLE[nr]

    def broken(ucmd: object) -> int:
        raise KeyError("boom")

    monkeypatch.setitem(dispatch.TABLE, nr, (op, broken, size))
    with backend.open("/dev/iommu") as h:
        with pytest.raises(KernelBug) as e:
            h.ioctl(op.request, uapi.iommu_ioas_alloc(size=12).to_bytearray())
        assert e.value.errno == errno.ENOTRECOVERABLE
        assert isinstance(e.value.__cause__, KeyError)
        monkeypatch.undo()
        assert h.ioctl(op.request, uapi.iommu_ioas_alloc(size=12).to_bytearray()) == 0



def test_failed_replace_onto_a_mock_hwpt_of_the_same_ioas_drops_the_msi_window(
    backend: ModuleType,
) -> None:
    """``iommufd_device_do_replace`` onto a HWPT of another driver in the same IOAS: the
    simulated replace fails (EINVAL) and, as 7.3's ``err_unresv`` does, removes the group's
    reserved regions from that IOAS -- the IOAS the device is still attached to, so its MSI
    window is no longer reserved.

    Not an oracle test: on the 7.3 guest this call never returns. The core hands the VT-d
    device to the mock domain's ``attach_dev`` (``mock_domain_nop_attach``), which takes a
    lock inside a ``mock_dev`` that is not one and spins (RCU stall in
    ``queued_spin_lock_slowpath`` under ``iommu_replace_group_handle``)."""
    assert backend.NAME == "sim"
    with Iommufd(backend) as fd, Device(fd, edu.cdev_path(backend)) as dev:
        ioas = fd.ioas_alloc()
        dev.attach(ioas)
        assert not _usable(ioas, *MSI_WINDOW)  # the device's MSI window is reserved
        stdev, mock_hwpt, _ = _test_cmd_mock_domain(fd.handle, ioas.id)
        with pytest.raises(OSError) as e:
            dev.attach(mock_hwpt)
        assert e.value.errno == errno.EINVAL
        fd.destroy(stdev)  # the mock's own reservations go with it
        assert _usable(ioas, *MSI_WINDOW)


MSI_WINDOW = (0xFEE00000, 0xFEEFFFFF)
"""x86's interrupt window, an IOMMU_RESV_MSI region of every VT-d device."""


def _usable(ioas: Ioas, first: int, last: int) -> bool:
    return any(r.start <= first and last <= r.last for r in ioas.iova_ranges().ranges)
