"""``main.c``: the ioctl entry of ``/dev/iommu`` and its generic checks.

``iommufd_fops_ioctl`` order, reproduced in :func:`iommufd_fops_ioctl`:

1. ``_IOC_NR(cmd)`` outside ``[0x80, 0x80 + table size)`` → the VFIO compat handler
   (``ENOTTY`` for what it does not know);
2. read the ``u32 size`` at the user pointer → ``EFAULT``;
3. the table entry's full number differs from ``cmd`` (a hole in the table, other size or
   direction bits) → ``ENOTTY``;
4. ``size`` < the entry's minimum → ``EINVAL``;
5. ``copy_struct_from_user``: bytes past the kernel struct must be zero → ``E2BIG``
   (``check_zeroed_user``: read in bounded chunks, a fault after a non-zero byte is not
   reached, a fault before one is ``EFAULT``);
6. the handler; a created object is finalized on success, destroyed on failure.

The context itself (``struct iommufd_ctx``) and :class:`~ioasid.kernel.private.Ucmd` are in
:mod:`ioasid.kernel.private`; this module sits on top with the ioctl table.
"""

from __future__ import annotations

import errno
import mmap

from ioasid import uapi
from ioasid.hw.memory import PAGE_SIZE
from ioasid.kernel.dispatch import TABLE, TABLE_SIZE
from ioasid.kernel.errors import KernelError, fail
from ioasid.kernel.fail_nth import inject
from ioasid.kernel.private import IommufdCtx, Machine, Ucmd, check_zeroed_user
from ioasid.kernel.vfio_compat import vfio_ioctl
from ioasid.kernel.viommu import fops_mmap, reap_vmas
from ioasid.uapi._abi import _IOC_NR


def iommufd_fops_ioctl(ictx: IommufdCtx, cmd: int, arg: int) -> int:
    """``iommufd_fops_ioctl``: decode the command in the kernel's order and run its handler."""
    kernel = ictx.kernel
    kernel.anon_inodes.reap()
    reap_vmas(ictx)
    nr = _IOC_NR(cmd)
    if nr < uapi.IOMMUFD_CMD_BASE or nr - uapi.IOMMUFD_CMD_BASE >= TABLE_SIZE:
        return vfio_ioctl(ictx, cmd, arg)
    user_size = int.from_bytes(kernel.copy_from_user(arg, 4), "little")
    entry = TABLE.get(nr)
    if entry is None or entry[0].request != cmd:
        fail(errno.ENOTTY, f"ioctl {cmd:#x} is not an iommufd command")
    op, handler, ksize = entry
    if user_size < op.min_size:
        fail(
            errno.EINVAL,
            f"{op.name}: size {user_size} is below the minimum {op.min_size} "
            f"(sizeof(struct {op.struct.__name__}) is {ksize})",
        )
    raw = kernel.copy_from_user(arg, min(user_size, ksize))
    if user_size > ksize and not check_zeroed_user(kernel, arg + ksize, user_size - ksize):
        fail(
            errno.E2BIG,
            f"{op.name}: bytes {ksize}..{user_size - 1} past struct "
            f"{op.struct.__name__} are not zero",
        )
    if len(raw) < ksize:
        raw = raw.ljust(ksize, b"\0")
    ucmd = Ucmd(ictx, arg, user_size, op.struct.from_buffer_copy(raw))
    return handler(ucmd)


class IommufdFile:
    """``iommufd_fops``: ioctl goes to the context, release destroys its objects."""

    def __init__(self, ictx: IommufdCtx) -> None:
        self.ictx = ictx

    def ioctl(self, cmd: int, arg: int) -> int:
        return iommufd_fops_ioctl(self.ictx, cmd, arg)

    def mmap(self, length: int, prot: int, flags: int, pgoff: int) -> mmap.mmap:
        """``iommufd_fops_mmap`` of ``vma->vm_pgoff`` (the file offset in pages)."""
        return fops_mmap(self.ictx, length, prot, flags, pgoff * PAGE_SIZE)

    def release(self) -> None:
        self.ictx.release()


def open_iommufd(kernel: Machine, vfio_container: bool = False) -> IommufdFile:
    """``iommufd_fops_open``: a new context (``/dev/vfio/vfio`` opens one in VFIO mode)."""
    inject(kernel.processes.current, errno.ENOMEM, "iommufd_fops_open")  # kzalloc(ictx)
    return IommufdFile(IommufdCtx(kernel, vfio_container))


__all__ = ["IommufdFile", "KernelError", "iommufd_fops_ioctl", "open_iommufd"]
