"""``IommufdError``: the kernel's errno, plus which rule failed and with which values."""

from __future__ import annotations

import errno as E
import os

_CAUSES: dict[tuple[str, int], str] = {
    ("*", E.ENOTTY): "the ioctl number is not known to this kernel",
    ("*", E.E2BIG): "the struct is larger than the kernel's and its extra bytes are not zero",
    ("*", E.EOPNOTSUPP): "unknown flags, a non-zero __reserved field, or an unsupported option",
    ("*", E.EFAULT): "a user pointer (the struct, an array, or the memory to pin) is not mapped",
    ("*", E.EOVERFLOW): "an address or length is >= ULONG_MAX or start + length overflows",
    ("*", E.ENOMEM): "out of memory, or pinning would exceed RLIMIT_MEMLOCK",
    ("*", E.EPERM): "missing capability, or WRITEABLE requested on read-only memory",
    ("IOMMU_DESTROY", E.ENOENT): "no object with that id",
    ("IOMMU_DESTROY", E.EBUSY): "the object is still referenced (a HWPT on the IOAS, an "
    "attached device, or a device/access held by its driver)",
    ("IOMMU_IOAS_MAP", E.EINVAL): "length 0, neither READABLE nor WRITEABLE, or the IOVA, "
    "length or user_va page offset is not aligned to the IOAS IOVA alignment, or the fixed "
    "IOVA range is reserved",
    ("IOMMU_IOAS_MAP", E.EEXIST): "the fixed IOVA range overlaps an existing area",
    ("IOMMU_IOAS_MAP", E.ENOSPC): "no free IOVA range of that length and alignment",
    ("IOMMU_IOAS_MAP", E.ENOENT): "no IOAS with that id",
    ("IOMMU_IOAS_MAP_FILE", E.EBADF): "fd is not an open file",
    ("IOMMU_IOAS_COPY", E.ENOENT): "an IOAS id is wrong, or the source range is not fully "
    "covered by contiguous mapped areas",
    ("IOMMU_IOAS_UNMAP", E.ENOENT): "no area inside the range, or the range cuts an area "
    "(areas are never split; fully covered areas below it may already be unmapped)",
    ("IOMMU_IOAS_UNMAP", E.EBUSY): "an area in the range is locked or still being created",
    ("IOMMU_IOAS_ALLOW_IOVAS", E.EINVAL): "a range has start >= last, or two ranges overlap",
    ("IOMMU_IOAS_ALLOW_IOVAS", E.EADDRINUSE): "an allowed range intersects a reserved range",
    ("IOMMU_IOAS_IOVA_RANGES", E.EMSGSIZE): "the array is too small; num_iovas now holds "
    "the count needed",
    ("IOMMU_OPTION", E.EBUSY): "RLIMIT_MODE can only change while the iommufd has no objects",
    ("IOMMU_OPTION", E.EADDRINUSE): "an existing area is not aligned to PAGE_SIZE",
    ("IOMMU_IOAS_CHANGE_PROCESS", E.EINVAL): "an area was not mapped with IOMMU_IOAS_MAP_FILE",
}


def explain(op: str, err: int) -> str:
    """What the kernel's ``err`` from ``op`` can mean, for a kernel that cannot say."""
    return _CAUSES.get((op, err)) or _CAUSES.get(("*", err)) or "see the kernel's iommufd.h"


class IommufdError(OSError):
    """An iommufd ioctl failed: ``errno`` is the kernel's; the message names the rule.

    On the ``sim`` backend the rule is the simulated kernel's own; on ``linux`` it is the
    kernel's documented meaning of that errno for that ioctl.
    """

    def __init__(self, err: int, op: str, rule: str, values: str = "") -> None:
        msg = f"{op}: {E.errorcode.get(err, str(err))} ({os.strerror(err)}): {rule}"
        if values:
            msg += f" [{values}]"
        super().__init__(err, msg)
        self.op = op
        self.rule = rule

    def __str__(self) -> str:
        return str(self.strerror)


def from_oserror(exc: OSError, op: str, values: str = "") -> IommufdError:
    rule = getattr(exc, "rule", None)
    if rule is None:
        rule = explain(op, exc.errno or 0)
    return IommufdError(exc.errno or 0, op, rule, values)
