"""``main.c``: the iommufd context, the ioctl entry and its generic checks.

``iommufd_fops_ioctl`` order, reproduced in :meth:`IommufdCtx.ioctl`:

1. ``_IOC_NR(cmd)`` outside ``[0x80, 0x80 + table size)`` → the VFIO compat handler
   (``ENOTTY`` for what it does not know);
2. read the ``u32 size`` at the user pointer → ``EFAULT``;
3. the table entry's full number differs from ``cmd`` (a hole in the table, other size or
   direction bits) → ``ENOTTY``;
4. ``size`` < the entry's minimum → ``EINVAL``;
5. ``copy_struct_from_user``: bytes past the kernel struct must be zero → ``E2BIG``;
6. the handler; a created object is finalized on success, destroyed on failure.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ioasid import uapi
from ioasid.kernel.errors import KernelError, fail
from ioasid.kernel.objects import ObjectTable
from ioasid.kernel.pages import AccountMode
from ioasid.uapi._abi import _IOC_NR

if TYPE_CHECKING:
    from ioasid.kernel.machine import Kernel

U32_MAX = (1 << 32) - 1


@dataclass
class Ucmd:
    """``struct iommufd_ucmd``: the decoded command and where to write the answer."""

    ictx: IommufdCtx
    ubuffer: int
    user_size: int
    cmd: Any

    def respond(self, length: int | None = None) -> None:
        """``iommufd_ucmd_respond``: copy back ``min(user size, struct size)`` bytes."""
        size = ctypes.sizeof(self.cmd) if length is None else length
        data = bytes(memoryview(self.cmd).cast("B"))[: min(self.user_size, size)]
        self.ictx.kernel.copy_to_user(self.ubuffer, data)


Handler = Callable[[Ucmd], int]


class IommufdCtx:
    """``struct iommufd_ctx``: one open of ``/dev/iommu`` (or of ``/dev/vfio/vfio``)."""

    def __init__(self, kernel: Kernel, vfio_container: bool = False) -> None:
        self.kernel = kernel
        self.objects = ObjectTable()
        # iommufd_fops_open(): /dev/vfio/vfio defaults to VFIO's MM accounting
        self.account_mode = AccountMode.MM if vfio_container else AccountMode.NONE
        self.vfio_ioas: Any = None
        self.groups: dict[object, Any] = {}
        """``ictx->groups``: the ``iommufd_group`` of each IOMMU group with a bound device."""
        self.no_iommu_mode = False
        self.closed = False
        self.file_refs = 1
        """References to the ``/dev/iommu`` file: the open itself, plus one per access
        object a driver created (``iommufd_ctx_get``); the last one out releases."""

    def ioctl(self, cmd: int, arg: int) -> int:
        from ioasid.kernel.anon_inode import reap
        from ioasid.kernel.dispatch import TABLE, TABLE_SIZE
        from ioasid.kernel.vfio_compat import vfio_ioctl

        reap(self.kernel)
        nr = _IOC_NR(cmd)
        if nr < uapi.IOMMUFD_CMD_BASE or nr - uapi.IOMMUFD_CMD_BASE >= TABLE_SIZE:
            return vfio_ioctl(self, cmd, arg)
        user_size = int.from_bytes(self.kernel.copy_from_user(arg, 4), "little")
        entry = TABLE.get(nr)
        if entry is None or entry[0].request != cmd:
            fail(errno.ENOTTY, f"ioctl {cmd:#x} is not an iommufd command")
        op, handler = entry
        if user_size < op.min_size:
            fail(
                errno.EINVAL,
                f"{op.name}: size {user_size} is below the minimum {op.min_size} "
                f"(sizeof(struct {op.struct.__name__}) is {ctypes.sizeof(op.struct)})",
            )
        ksize = ctypes.sizeof(op.struct)
        raw = self.kernel.copy_from_user(arg, user_size)
        if user_size > ksize and any(raw[ksize:]):
            fail(
                errno.E2BIG,
                f"{op.name}: bytes {ksize}..{user_size - 1} past struct "
                f"{op.struct.__name__} are not zero",
            )
        ucmd = Ucmd(self, arg, user_size, op.struct.from_bytes(raw))
        return handler(ucmd)

    def get_file(self) -> None:
        """``iommufd_ctx_get``: keep the context alive past the close of its fd."""
        self.file_refs += 1

    def release(self) -> None:
        """``fput`` of the context's file; the last one runs ``iommufd_fops_release``:
        destroy every object, leaf first."""
        if self.closed:
            return
        self.file_refs -= 1
        if self.file_refs > 0:
            return
        self.closed = True
        self.objects.destroy_all()

    def __repr__(self) -> str:
        return f"<IommufdCtx objects={len(self.objects)}>"


def check_reserved(value: int, what: str = "__reserved") -> None:
    if value:
        fail(errno.EOPNOTSUPP, f"{what} must be 0, not {value:#x}")


__all__ = ["U32_MAX", "Handler", "IommufdCtx", "KernelError", "Ucmd", "check_reserved"]
