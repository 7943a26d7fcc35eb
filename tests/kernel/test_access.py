"""Access objects (``IOMMU_TEST_OP_CREATE_ACCESS`` & co.) where the ported selftests are thin.

The first group is kernel behaviour, checked on both backends (``oracle``): errno order of
the mock driver's access ops, the references an access holds, the object id it takes.
The second group looks inside the simulated kernel (``sim`` only): an unmap over pinned
pages runs the driver's unpin, pins are charged once per page, ``RLIMIT_MEMLOCK`` refusals
change nothing, an access that never lets go makes the unmap fail with EDEADLK.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from ioasid import uapi
from ioasid.backends.base import Handle

PAGE = mmap.PAGESIZE
NPAGES = 8
IOVA = uapi.MOCK_APERTURE_START
RW = uapi.IOMMU_IOAS_MAP_READABLE | uapi.IOMMU_IOAS_MAP_WRITEABLE
FIXED = uapi.IOMMU_IOAS_MAP_FIXED_IOVA
PIN = uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES
EBADFD = 77


def _ioctl(fd: Handle, request: int, cmd: ctypes.Structure) -> int:
    return fd.ioctl(request, memoryview(cmd).cast("B"))


def _test_cmd(op: int, id: int = 0) -> uapi.iommu_test_cmd:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd), op=op, id=id)
    return cmd


class Env:
    """One iommufd, one IOAS, NPAGES of shared memory; helpers named after the ops."""

    def __init__(self, backend: ModuleType) -> None:
        self.backend = backend
        self.fd: Handle = backend.open("/dev/iommu")
        self.mem = mmap.mmap(-1, NPAGES * PAGE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.buf = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        self.ioas_id = self.ioas_alloc()
        self.access_fds: list[int] = []

    def close(self) -> None:
        for afd in self.access_fds:
            os.close(afd)
        self.fd.close()

    def ioas_alloc(self) -> int:
        cmd = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
        _ioctl(self.fd, uapi.IOMMU_IOAS_ALLOC, cmd)
        return int(cmd.out_ioas_id)

    def map(self, iova: int, uptr: int, length: int, flags: int = RW) -> None:
        cmd = uapi.iommu_ioas_map(
            size=ctypes.sizeof(uapi.iommu_ioas_map),
            flags=flags | FIXED,
            ioas_id=self.ioas_id,
            user_va=uptr,
            length=length,
            iova=iova,
        )
        _ioctl(self.fd, uapi.IOMMU_IOAS_MAP, cmd)

    def unmap(self, iova: int, length: int) -> int:
        cmd = uapi.iommu_ioas_unmap(
            size=ctypes.sizeof(uapi.iommu_ioas_unmap),
            ioas_id=self.ioas_id,
            iova=iova,
            length=length,
        )
        _ioctl(self.fd, uapi.IOMMU_IOAS_UNMAP, cmd)
        return int(cmd.length)

    def destroy(self, id: int) -> None:
        cmd = uapi.iommu_destroy(size=ctypes.sizeof(uapi.iommu_destroy), id=id)
        _ioctl(self.fd, uapi.IOMMU_DESTROY, cmd)

    def create_access(self, flags: int, ioas_id: int | None = None) -> int:
        cmd = _test_cmd(
            uapi.IOMMU_TEST_OP_CREATE_ACCESS, self.ioas_id if ioas_id is None else ioas_id
        )
        cmd.create_access.flags = flags
        _ioctl(self.fd, uapi.IOMMU_TEST_CMD, cmd)
        self.access_fds.append(int(cmd.create_access.out_access_fd))
        return int(cmd.create_access.out_access_fd)

    def destroy_access(self, afd: int) -> None:
        self.access_fds.remove(afd)
        os.close(afd)

    def access_pages(self, afd: int, iova: int, length: int, uptr: int = 0, flags: int = 0) -> int:
        cmd = _test_cmd(uapi.IOMMU_TEST_OP_ACCESS_PAGES, afd)
        cmd.access_pages.iova = iova
        cmd.access_pages.length = length
        cmd.access_pages.uptr = uptr
        cmd.access_pages.flags = flags
        _ioctl(self.fd, uapi.IOMMU_TEST_CMD, cmd)
        return int(cmd.access_pages.out_access_pages_id)

    def destroy_access_pages(self, afd: int, item: int) -> None:
        cmd = _test_cmd(uapi.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, afd)
        cmd.destroy_access_pages.access_pages_id = item
        _ioctl(self.fd, uapi.IOMMU_TEST_CMD, cmd)

    def access_rw(self, afd: int, iova: int, data: ctypes.Array[ctypes.c_char], flags: int) -> None:
        cmd = _test_cmd(uapi.IOMMU_TEST_OP_ACCESS_RW, afd)
        cmd.access_rw.iova = iova
        cmd.access_rw.length = len(data)
        cmd.access_rw.uptr = ctypes.addressof(data)
        cmd.access_rw.flags = flags
        _ioctl(self.fd, uapi.IOMMU_TEST_CMD, cmd)

    def replace_ioas(self, afd: int, ioas_id: int) -> None:
        cmd = _test_cmd(uapi.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, afd)
        cmd.access_replace_ioas.ioas_id = ioas_id
        _ioctl(self.fd, uapi.IOMMU_TEST_CMD, cmd)

    def mock_domain(self) -> int:
        """A mock device attached to the IOAS; the id of its (auto) HWPT."""
        cmd = _test_cmd(uapi.IOMMU_TEST_OP_MOCK_DOMAIN, self.ioas_id)
        _ioctl(self.fd, uapi.IOMMU_TEST_CMD, cmd)
        return int(cmd.mock_domain.out_hwpt_id)

    def check_map(self, hwpt_id: int, iova: int, length: int, uptr: int) -> None:
        cmd = _test_cmd(uapi.IOMMU_TEST_OP_MD_CHECK_MAP, hwpt_id)
        cmd.check_map.iova = iova
        cmd.check_map.length = length
        cmd.check_map.uptr = uptr
        _ioctl(self.fd, uapi.IOMMU_TEST_CMD, cmd)

    def check_refs(self, uptr: int, length: int, refs: int) -> None:
        cmd = _test_cmd(uapi.IOMMU_TEST_OP_MD_CHECK_REFS)
        cmd.check_refs.uptr = uptr
        cmd.check_refs.length = length
        cmd.check_refs.refs = refs
        _ioctl(self.fd, uapi.IOMMU_TEST_CMD, cmd)


def _errno(fn: object, *args: object) -> int:
    try:
        fn(*args)  # type: ignore[operator]
    except OSError as e:
        return int(e.errno or 0)
    return 0


@pytest.fixture
def env(backend: ModuleType) -> Iterator[Env]:
    e = Env(backend)
    yield e
    e.close()


# --- kernel behaviour, both backends -------------------------------------------------------


@pytest.mark.oracle
def test_access_holds_references(env: Env) -> None:
    """The driver's reference: IOMMU_DESTROY of the access's object id is EBUSY; the
    attached IOAS cannot be destroyed; the id is the next object id and is freed on close."""
    afd = env.create_access(0)
    access_id = env.ioas_id + 1
    assert _errno(env.destroy, access_id) == errno.EBUSY
    assert _errno(env.destroy, env.ioas_id) == errno.EBUSY
    env.destroy_access(afd)
    assert env.ioas_alloc() == access_id
    env.destroy(env.ioas_id)


@pytest.mark.oracle
def test_access_op_errnos(env: Env) -> None:
    """The mock driver's checks, in its order."""
    env.map(IOVA, env.buf, NPAGES * PAGE)
    plain = env.create_access(0)
    pin = env.create_access(PIN)
    # CREATE_ACCESS: flags, then the IOAS
    assert _errno(env.create_access, 1 << 5) == errno.EOPNOTSUPP
    assert _errno(env.create_access, 0, 9999) == errno.ENOENT
    # ACCESS_PAGES: length > 16 MiB, flags, fd, ops, then pin_pages
    assert _errno(env.access_pages, pin, IOVA, (16 << 20) + 1) == errno.ENOMEM
    assert _errno(env.access_pages, pin, IOVA, PAGE, 0, 1 << 3) == errno.EOPNOTSUPP
    assert _errno(env.access_pages, env.fd.fileno(), IOVA, PAGE) == EBADFD
    assert _errno(env.access_pages, 9999, IOVA, PAGE) == EBADFD
    assert _errno(env.access_pages, plain, IOVA, PAGE) == errno.EOPNOTSUPP
    assert _errno(env.access_pages, pin, IOVA, 0) == errno.EINVAL
    assert _errno(env.access_pages, pin, IOVA + 1, PAGE) == errno.EINVAL
    assert _errno(env.access_pages, pin, IOVA - PAGE, PAGE) == errno.ENOENT
    assert _errno(env.access_pages, pin, IOVA, (NPAGES + 1) * PAGE) == errno.ENOENT
    # a pinned page that is not the page at uptr
    assert _errno(env.access_pages, pin, IOVA, PAGE, env.buf + PAGE) == errno.EBADE
    env.check_refs(env.buf, NPAGES * PAGE, 0)
    # DESTROY_ACCESS_PAGES: fd, then the item
    assert _errno(env.destroy_access_pages, 9999, 0) == EBADFD
    assert _errno(env.destroy_access_pages, pin, 12345) == errno.ENOENT
    # ACCESS_RW: length, flags, fd, then access_rw
    one = ctypes.create_string_buffer(1)
    assert _errno(env.access_rw, plain, IOVA, one, 1 << 1) == errno.EOPNOTSUPP
    assert _errno(env.access_rw, 9999, IOVA, one, 0) == EBADFD
    assert _errno(env.access_rw, plain, IOVA, ctypes.create_string_buffer(0), 0) == errno.EINVAL
    assert _errno(env.access_rw, plain, IOVA + NPAGES * PAGE, one, 0) == errno.ENOENT
    # ACCESS_REPLACE_IOAS: fd, then the IOAS
    assert _errno(env.replace_ioas, 9999, env.ioas_id) == EBADFD
    assert _errno(env.replace_ioas, plain, 9999) == errno.ENOENT
    env.replace_ioas(plain, env.ioas_id)


@pytest.mark.oracle
def test_access_read_only_area(env: Env) -> None:
    """WRITE through an area mapped READABLE only: EPERM for both pin and rw."""
    env.map(IOVA, env.buf, PAGE, flags=uapi.IOMMU_IOAS_MAP_READABLE)
    pin = env.create_access(PIN)
    assert _errno(env.access_pages, pin, IOVA, PAGE, 0, uapi.MOCK_FLAGS_ACCESS_WRITE) == errno.EPERM
    env.access_pages(pin, IOVA, PAGE)
    data = ctypes.create_string_buffer(16)
    assert _errno(env.access_rw, pin, IOVA, data, uapi.MOCK_ACCESS_RW_WRITE) == errno.EPERM
    env.access_rw(pin, IOVA, data, 0)


@pytest.mark.oracle
def test_access_alignment_blocks_unaligned_area(env: Env) -> None:
    """An access that pins needs PAGE_SIZE IOVA alignment: attaching it to an IOAS with an
    area at a sub-page IOVA fails with EADDRINUSE and leaves no object behind; an access
    that only copies does not care."""
    env.map(IOVA + 0x800, env.buf + 0x800, PAGE)
    assert _errno(env.create_access, PIN) == errno.EADDRINUSE
    afd = env.create_access(0)
    data = ctypes.create_string_buffer(8)
    env.access_rw(afd, IOVA + 0x800, data, 0)
    env.destroy_access(afd)
    assert env.ioas_alloc() == env.ioas_id + 1


@pytest.mark.oracle
def test_unmap_unpins_access_items(env: Env) -> None:
    """IOMMU_IOAS_UNMAP over pinned pages: the driver's unmap op drops every item in the
    range, the unmap succeeds and the pages are unpinned."""
    env.map(IOVA, env.buf, NPAGES * PAGE)
    pin = env.create_access(PIN)
    first = env.access_pages(pin, IOVA, 2 * PAGE, env.buf)
    second = env.access_pages(pin, IOVA + 4 * PAGE, PAGE, env.buf + 4 * PAGE)
    env.check_refs(env.buf, 2 * PAGE, 1)
    env.check_refs(env.buf + 4 * PAGE, PAGE, 1)
    assert env.unmap(IOVA, NPAGES * PAGE) == NPAGES * PAGE
    env.check_refs(env.buf, NPAGES * PAGE, 0)
    assert _errno(env.destroy_access_pages, pin, first) == errno.ENOENT
    assert _errno(env.destroy_access_pages, pin, second) == errno.ENOENT


@pytest.mark.oracle
def test_close_iommufd_before_access(env: Env) -> None:
    """An access keeps its iommufd alive: pins survive the iommufd's close and go when the
    access fd is closed."""
    env.map(IOVA, env.buf, NPAGES * PAGE)
    pin = env.create_access(PIN)
    env.access_pages(pin, IOVA, NPAGES * PAGE, env.buf)
    env.fd.close()
    env.fd = env.backend.open("/dev/iommu")
    env.check_refs(env.buf, NPAGES * PAGE, 1)
    env.destroy_access(pin)
    env.check_refs(env.buf, NPAGES * PAGE, 0)


@pytest.mark.oracle
def test_check_refs_and_check_map_go_page_by_page(env: Env) -> None:
    """MD_CHECK_REFS and MD_CHECK_MAP pin one page at a time: a page that fails its check
    before an unmapped page answers EIO / EINVAL, not EFAULT (found by the devices-mode
    differential against the 7.3 kernel)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    base = libc.mmap(None, 2 * PAGE, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value)
    try:
        ctypes.memset(base, 1, PAGE)
        assert libc.munmap(base + PAGE, PAGE) == 0
        assert _errno(env.check_refs, base, 2 * PAGE, 1) == errno.EIO
        assert _errno(env.check_refs, base, 2 * PAGE, 0) == errno.EFAULT
        env.map(IOVA, env.buf, NPAGES * PAGE)
        hwpt = env.mock_domain()
        assert _errno(env.check_map, hwpt, IOVA, 2 * PAGE, base) == errno.EINVAL
        env.check_map(hwpt, IOVA, NPAGES * PAGE, env.buf)
    finally:
        libc.munmap(base, PAGE)


# --- inside the simulated kernel ------------------------------------------------------------


@pytest.fixture
def sim_env(backend: ModuleType) -> Iterator[Env]:
    # not marked oracle: collected only with --backend=sim
    assert backend.NAME == "sim", "these tests look inside the simulated kernel"
    e = Env(backend)
    yield e
    e.close()


def _task(env: Env):  # type: ignore[no-untyped-def]
    return env.backend.kernel().processes.current


def _iopt(env: Env):  # type: ignore[no-untyped-def]
    from ioasid.kernel.ioas import Ioas

    return env.fd.file.ictx.objects.get(env.ioas_id, Ioas).iopt  # type: ignore[attr-defined]


def test_access_pins_are_charged_once(sim_env: Env) -> None:
    """Without CAP_IPC_LOCK pins are charged to the user (RLIMIT_MEMLOCK) and the mm: an
    access pins each page once however many items share it, and a domain later attached
    shares the same pins."""
    env = sim_env
    task = _task(env)
    task.caps = 0
    env.map(IOVA, env.buf, NPAGES * PAGE)
    pin = env.create_access(PIN)
    a = env.access_pages(pin, IOVA, 4 * PAGE)
    b = env.access_pages(pin, IOVA, 4 * PAGE)
    c = env.access_pages(pin, IOVA + 2 * PAGE, 4 * PAGE)
    assert (task.user.locked_vm, task.mm.pinned_vm) == (6, 6)
    env.check_refs(env.buf, 6 * PAGE, 1)
    area = _iopt(env).area_first(IOVA, IOVA)
    assert area.num_accesses == 3
    env.destroy_access_pages(pin, a)
    assert task.user.locked_vm == 6
    env.destroy_access_pages(pin, b)
    assert task.user.locked_vm == 4
    env.destroy_access_pages(pin, c)
    assert (task.user.locked_vm, task.mm.pinned_vm, area.num_accesses) == (0, 0, 0)


def test_access_pin_over_rlimit_changes_nothing(sim_env: Env) -> None:
    """A pin beyond RLIMIT_MEMLOCK fails with ENOMEM and leaves no pin, no charge and no
    access record behind; within the limit it works."""
    env = sim_env
    task = _task(env)
    task.caps = 0
    task.rlimit_memlock = 3 * PAGE
    env.map(IOVA, env.buf, NPAGES * PAGE)
    pin = env.create_access(PIN)
    env.access_pages(pin, IOVA, PAGE)
    assert _errno(env.access_pages, pin, IOVA, NPAGES * PAGE) == errno.ENOMEM
    assert (task.user.locked_vm, task.mm.pinned_vm) == (1, 1)
    env.check_refs(env.buf + PAGE, (NPAGES - 1) * PAGE, 0)
    area = _iopt(env).area_first(IOVA, IOVA)
    assert area.num_accesses == 1
    assert list(area.pages.accesses) == [(0, 0)]
    env.access_pages(pin, IOVA + PAGE, 2 * PAGE)
    assert task.user.locked_vm == 3


def test_unmap_gives_up_on_an_access_that_keeps_its_pins(sim_env: Env) -> None:
    """``iopt_unmap_iova_range`` notifies at most 100 times, then fails with EDEADLK; the
    area stays mapped and refuses new access pins (``prevent_access``)."""
    from ioasid.kernel.access import AccessOps, access_create

    env = sim_env
    env.map(IOVA, env.buf, NPAGES * PAGE)
    ictx = env.fd.file.ictx  # type: ignore[attr-defined]
    calls: list[tuple[int, int]] = []
    stubborn = access_create(
        ictx, AccessOps(True, lambda iova, length: calls.append((iova, length)))
    )
    stubborn.attach(env.ioas_id)
    stubborn.pin_pages(IOVA, PAGE, 0)
    assert _errno(env.unmap, IOVA, NPAGES * PAGE) == errno.EDEADLK
    assert calls == [(IOVA, NPAGES * PAGE)] * 101
    area = _iopt(env).area_first(IOVA, IOVA)
    assert area.prevent_access
    with pytest.raises(OSError) as e:
        stubborn.pin_pages(IOVA + PAGE, PAGE, 0)
    assert e.value.errno == errno.EINVAL
    stubborn.unpin_pages(IOVA, PAGE)
    assert env.unmap(IOVA, NPAGES * PAGE) == NPAGES * PAGE


def test_replace_moves_alignment_and_references(sim_env: Env) -> None:
    """ACCESS_REPLACE_IOAS: the old IOAS loses the access (its alignment and its reference)
    after the driver unpinned everything; the new one gains both."""
    env = sim_env
    env.map(IOVA, env.buf, NPAGES * PAGE)
    pin = env.create_access(PIN)
    env.access_pages(pin, IOVA, PAGE)
    old = _iopt(env)
    assert old.iova_alignment == PAGE
    new_id = env.ioas_alloc()
    env.replace_ioas(pin, new_id)
    assert old.iova_alignment == 1 and not old.access_list
    env.check_refs(env.buf, NPAGES * PAGE, 0)
    env.destroy(env.ioas_id)
    assert _errno(env.destroy, new_id) == errno.EBUSY
