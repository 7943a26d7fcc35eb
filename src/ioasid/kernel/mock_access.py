"""``selftest.c``: the mock driver's access objects (``struct selftest_access``).

``IOMMU_TEST_OP_CREATE_ACCESS`` creates an access object for a simulated in-kernel driver
and returns a file descriptor for it (not the object id): every later op names the access
by that fd, and ``close(fd)`` destroys it — after unpinning every item it still holds.
The fd is a real descriptor of this process (see :mod:`ioasid.kernel.anon_inode`), so a
plain ``os.close`` works on the simulator exactly as ``close()`` does on Linux.

Ops: CREATE_ACCESS, ACCESS_PAGES (pin, keep an item), DESTROY_ACCESS_PAGES (unpin an item),
ACCESS_RW (copy through the IOAS), ACCESS_REPLACE_IOAS.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from ioasid import uapi
from ioasid.hw.memory import PAGE_SIZE, SelfAddressSpace
from ioasid.kernel.access import Access, AccessOps, access_create, access_destroy
from ioasid.kernel.anon_inode import AnonFile
from ioasid.kernel.errors import fail
from ioasid.kernel.fail_nth import inject
from ioasid.kernel.io_pagetable import syz_conv_iova
from ioasid.kernel.pages import ULONG_MAX
from ioasid.kernel.private import IommufdCtx, Ucmd

EBADFD = 77
"""``EBADFD`` (not in Python's errno module on every platform)."""

ACCESS_MAX_LENGTH = 16 * 1024 * 1024
"""Lengths above this fail with ENOMEM (the mock driver protects ``kvzalloc``)."""


@dataclass
class AccessItem:
    """``struct selftest_access_item``: one ACCESS_PAGES pin."""

    iova: int
    length: int
    id: int


@dataclass(eq=False)
class SelftestAccess:
    """``struct selftest_access``: the driver side of one access and its pinned items."""

    ictx: IommufdCtx
    access: Access | None = None
    items: list[AccessItem] = field(default_factory=list)
    next_id: int = 0
    pin_ops: bool = False

    def unmap(self, iova: int, length: int) -> None:
        """``iommufd_test_access_unmap``: unpin and forget every item touching the range."""
        iova_last = iova + length - 1
        for item in list(self.items):
            if iova > item.iova + item.length - 1 or iova_last < item.iova:
                continue
            self.items.remove(item)
            assert self.access is not None
            self.access.unpin_pages(item.iova, item.length)

    def release(self) -> None:
        """``iommufd_test_staccess_release``: the last close of the fd."""
        if self.access is not None:
            self.unmap(0, ULONG_MAX)
            access, self.access = self.access, None
            access_destroy(self.ictx, access)


def _access_get(ucmd: Ucmd, fd: int) -> SelftestAccess:
    """``iommufd_access_get``: not an open fd, or not an access fd → EBADFD."""
    file = ucmd.ictx.kernel.anon_inodes.fget(fd)
    if file is None or not isinstance(file.private_data, SelftestAccess):
        fail(EBADFD, f"fd {fd} is not a selftest access (IOMMU_TEST_OP_CREATE_ACCESS) fd")
    staccess = file.private_data
    assert staccess.access is not None
    return staccess


def create_access(ucmd: Ucmd) -> int:
    """``iommufd_test_create_access``: flags other than NEEDS_PIN_PAGES → EOPNOTSUPP; a
    descriptor is reserved; the access object is created (it takes the next object id) and
    attached to IOAS ``id`` (ENOENT, EADDRINUSE: the object is destroyed again); the fd is
    written to ``create_access.out_access_fd`` (EFAULT: destroyed again); then installed."""
    cmd, ictx = ucmd.cmd, ucmd.ictx
    flags = cmd.create_access.flags
    if flags & ~uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES:
        fail(errno.EOPNOTSUPP, f"CREATE_ACCESS: unknown flags {flags:#x}")
    anon = ictx.kernel.anon_inodes
    pin = bool(flags & uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES)
    staccess = SelftestAccess(ictx, pin_ops=pin)
    fdno = anon.get_unused_fd("[iommufd_test_staccess]")
    try:
        access = access_create(ictx, AccessOps(needs_pin_pages=pin, unmap=staccess.unmap))
        try:
            access.attach(cmd.id)
            cmd.create_access.out_access_fd = fdno
            ucmd.respond()
        except OSError:
            access_destroy(ictx, access)
            raise
    except OSError:
        anon.put_unused_fd(fdno)
        raise
    staccess.access = access
    anon.fd_install(fdno, AnonFile("[iommufd_test_staccess]", staccess, staccess.release))
    return 0


def _syz_conv_iova(access: Access, iova: int) -> int:
    """``iommufd_test_syz_conv_iova``."""
    if access.ioas is None:
        return 0
    return syz_conv_iova(access.ioas.iopt, iova)


def _check_pages(ucmd: Ucmd, uptr: int, pfns: list[int]) -> None:
    """``iommufd_test_check_pages``: each pinned page must be the page at ``uptr`` in the
    caller's memory (EFAULT if not mapped, EBADE if another page)."""
    kernel = ucmd.ictx.kernel
    aspace = kernel.processes.current.mm.aspace
    for i, pfn in enumerate(pfns):
        va = uptr + i * PAGE_SIZE
        aspace.check_pinnable(va, 1, False)
        assert isinstance(aspace, SelfAddressSpace)
        got = kernel.phys.pin_user(aspace, va, 1)[0][1]
        if got != pfn:
            fail(
                errno.EBADE,
                f"ACCESS_PAGES: page {i} pinned is pfn {pfn:#x}, the page at uptr {va:#x} "
                f"is pfn {got:#x}",
            )


def access_pages(ucmd: Ucmd) -> int:
    """``iommufd_test_access_pages``: length > 16 MiB → ENOMEM; flags other than
    WRITE/SYZ → EOPNOTSUPP; fd → EBADFD; an access created without NEEDS_PIN_PAGES →
    EOPNOTSUPP; ``iommufd_access_pin_pages`` (see :meth:`Access.pin_pages`); ``uptr`` given
    and a pinned page is not the page there → EBADE (unpinned again); the new item id is
    written to ``access_pages.out_access_pages_id`` (EFAULT: unpinned again)."""
    cmd = ucmd.cmd
    ap = cmd.access_pages
    iova, length, uptr, flags = ap.iova, ap.length, ap.uptr, ap.flags
    if length > ACCESS_MAX_LENGTH:
        fail(errno.ENOMEM, f"ACCESS_PAGES: length {length:#x} is over 16 MiB")
    if flags & ~(uapi.MOCK_FLAGS_ACCESS_WRITE | uapi.MOCK_FLAGS_ACCESS_SYZ):
        fail(errno.EOPNOTSUPP, f"ACCESS_PAGES: unknown flags {flags:#x}")
    staccess = _access_get(ucmd, cmd.id)
    access = staccess.access
    assert access is not None
    if not staccess.pin_ops:
        fail(errno.EOPNOTSUPP, "ACCESS_PAGES: the access was created without NEEDS_PIN_PAGES")
    if flags & uapi.MOCK_FLAGS_ACCESS_SYZ:
        iova = _syz_conv_iova(access, iova)
    task = ucmd.ictx.kernel.processes.current
    inject(task, errno.ENOMEM, "iommufd_test_access_pages")  # kvzalloc(pages[npages])
    pfns = access.pin_pages(iova, length, flags & uapi.MOCK_FLAGS_ACCESS_WRITE)
    try:
        if uptr:
            _check_pages(ucmd, uptr - iova % PAGE_SIZE, pfns)
        inject(task, errno.ENOMEM, "iommufd_test_access_pages")  # kzalloc(item)
        item = AccessItem(iova, length, staccess.next_id)
        staccess.next_id = (staccess.next_id + 1) & 0xFFFFFFFF
        staccess.items.append(item)
        ap.out_access_pages_id = item.id
        try:
            ucmd.respond()
        except OSError:
            staccess.items.remove(item)
            raise
    except OSError:
        access.unpin_pages(iova, length)
        raise
    return 0


def access_rw(ucmd: Ucmd) -> int:
    """``iommufd_test_access_rw``: length > 16 MiB → ENOMEM; flags other than
    WRITE/SLOW_PATH/SYZ → EOPNOTSUPP; fd → EBADFD; WRITE: read ``uptr`` (EFAULT); then
    ``iommufd_access_rw`` (see :meth:`Access.rw`); READ: write ``uptr`` (EFAULT)."""
    cmd = ucmd.cmd
    rw = cmd.access_rw
    iova, length, uptr, flags = rw.iova, rw.length, rw.uptr, rw.flags
    if length > ACCESS_MAX_LENGTH:
        fail(errno.ENOMEM, f"ACCESS_RW: length {length:#x} is over 16 MiB")
    allowed = uapi.MOCK_ACCESS_RW_WRITE | uapi.MOCK_ACCESS_RW_SLOW_PATH | uapi.MOCK_FLAGS_ACCESS_SYZ
    if flags & ~allowed:
        fail(errno.EOPNOTSUPP, f"ACCESS_RW: unknown flags {flags:#x}")
    staccess = _access_get(ucmd, cmd.id)
    access = staccess.access
    assert access is not None
    kernel = ucmd.ictx.kernel
    if flags & uapi.MOCK_ACCESS_RW_WRITE:
        tmp = bytearray(kernel.copy_from_user(uptr, length))
    else:
        tmp = bytearray(length)
    if flags & uapi.MOCK_FLAGS_ACCESS_SYZ:
        iova = _syz_conv_iova(access, iova)
    access.rw(iova, tmp, flags)
    if not flags & uapi.MOCK_ACCESS_RW_WRITE:
        kernel.copy_to_user(uptr, bytes(tmp))
    return 0


def destroy_access_pages(ucmd: Ucmd) -> int:
    """``iommufd_test_access_item_destroy``: fd → EBADFD; no item with that id → ENOENT;
    else the item's pages are unpinned."""
    cmd = ucmd.cmd
    staccess = _access_get(ucmd, cmd.id)
    item_id = cmd.destroy_access_pages.access_pages_id
    for item in staccess.items:
        if item.id == item_id:
            staccess.items.remove(item)
            assert staccess.access is not None
            staccess.access.unpin_pages(item.iova, item.length)
            return 0
    fail(errno.ENOENT, f"DESTROY_ACCESS_PAGES: access fd {cmd.id} has no item {item_id}")


def access_replace_ioas(ucmd: Ucmd) -> int:
    """``iommufd_test_access_replace_ioas``: fd → EBADFD; then ``iommufd_access_replace``
    (not attached → ENOENT, IOAS → ENOENT, alignment → EADDRINUSE); the items pinned in the
    old IOAS are unpinned by the ``unmap`` op."""
    cmd = ucmd.cmd
    staccess = _access_get(ucmd, cmd.id)
    assert staccess.access is not None
    staccess.access.replace(cmd.access_replace_ioas.ioas_id)
    return 0


ACCESS_OPS = {
    uapi.IOMMU_TEST_OP_CREATE_ACCESS: create_access,
    uapi.IOMMU_TEST_OP_ACCESS_PAGES: access_pages,
    uapi.IOMMU_TEST_OP_ACCESS_RW: access_rw,
    uapi.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES: destroy_access_pages,
    uapi.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS: access_replace_ioas,
}
"""The ``IOMMU_TEST_CMD`` ops served here, for ``iommufd_test``'s switch."""

__all__ = [
    "ACCESS_OPS",
    "EBADFD",
    "SelftestAccess",
    "access_pages",
    "access_replace_ioas",
    "access_rw",
    "create_access",
    "destroy_access_pages",
]
