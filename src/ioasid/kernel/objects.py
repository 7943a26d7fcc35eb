"""The per-context object table (``main.c``: ``iommufd_object_alloc``, ``iommufd_object_remove``).

Ids come from an xarray with ``XA_FLAGS_ALLOC1``: the lowest free id from 1, reused after
destruction. An id is reserved while its object is being created (lookups see nothing) and
released if creation fails, so a failed ioctl leaves no gap.
"""

from __future__ import annotations

import errno
import heapq
from collections.abc import Callable
from enum import IntEnum
from typing import TypeVar

from ioasid.kernel.errors import fail

ID_MAX = (1 << 31) - 1


class ObjType(IntEnum):
    """``enum iommufd_object_type`` (kernel-internal, never exposed to user space)."""

    ANY = 0
    DEVICE = 1
    HWPT_PAGING = 2
    HWPT_NESTED = 3
    IOAS = 4
    ACCESS = 5
    FAULT = 6
    VIOMMU = 7
    VDEVICE = 8
    VEVENTQ = 9
    HW_QUEUE = 10
    SELFTEST = 11


class IommufdObject:
    """``struct iommufd_object``: an id, a type and the ``users`` count that blocks destroy."""

    TYPE: ObjType = ObjType.ANY

    def __init__(self) -> None:
        self.id = 0
        self.users = 1

    def destroy(self) -> None:
        """The type's destroy op, run once nothing references the object."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id} users={self.users}>"


_PENDING = object()
_TOMBSTONE = object()

T = TypeVar("T", bound=IommufdObject)


forced_destroys = 0
"""Objects ``iommufd_fops_release`` found still referenced (``WARN_ON(!destroyed)``, where
the kernel leaks them and we destroy them anyway): any is a reference-counting bug."""


def _never(site: str) -> bool:
    return False


XA_CHUNK_SHIFT = 6
"""An xarray node holds 64 slots: storing an id in a 64-id block with no entry yet needs a
new node (``xas_alloc``)."""


class ObjectTable:
    """``ictx->objects``. ``should_fail`` is the context's fault point (``fail_nth``): it
    is asked where 7.3 can fail an allocation (``iommufd_object_alloc``'s ``kzalloc``:
    ENOMEM), the xarray node ``xa_alloc`` may need (tried ``GFP_NOWAIT`` under the lock,
    then ``GFP_KERNEL``: a fault there is recovered) and a lookup
    (``iommufd_get_object``'s ``iommufd_should_fail()``: ENOENT)."""

    def __init__(self, should_fail: Callable[[str], bool] = _never) -> None:
        self.should_fail = should_fail
        self._slots: dict[int, object] = {}
        self._blocks: dict[int, int] = {}
        """Entries (objects, pending ids, tombstones) per 64-id block: its xarray node."""
        self._free: list[int] = []
        self._high = 0

    def __len__(self) -> int:
        return len(self._slots)

    def _alloc_id(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        if self._high >= ID_MAX:
            fail(errno.EBUSY, f"all {ID_MAX} object ids of this iommufd are in use")
        self._high += 1
        return self._high

    def _release_id(self, obj_id: int) -> None:
        del self._slots[obj_id]
        heapq.heappush(self._free, obj_id)
        block = obj_id >> XA_CHUNK_SHIFT
        self._blocks[block] -= 1
        if not self._blocks[block]:
            del self._blocks[block]  # xas_delete_node: an empty node is freed

    def alloc(self, obj: T) -> T:
        """Reserve the lowest free id for ``obj``; invisible until :meth:`finalize`."""
        if self.should_fail("_iommufd_object_alloc"):
            obj.destroy()
            fail(errno.ENOMEM, f"fail-nth: allocating a {type(obj).__name__} failed")
        obj.id = self._alloc_id()
        block = obj.id >> XA_CHUNK_SHIFT
        if block not in self._blocks:
            self.should_fail("xa_alloc")  # recovered: xas_nomem retries with GFP_KERNEL
        self._blocks[block] = self._blocks.get(block, 0) + 1
        self._slots[obj.id] = _PENDING
        return obj

    def finalize(self, obj: IommufdObject) -> None:
        self._slots[obj.id] = obj

    def abort(self, obj: IommufdObject) -> None:
        """``iommufd_object_abort_and_destroy``: creation failed, give the id back."""
        if self._slots.get(obj.id) is _PENDING:
            self._release_id(obj.id)
        obj.destroy()

    def get(self, obj_id: int, obj_type: type[T], what: str = "") -> T:
        """``iommufd_get_object``: a typed lookup; a wrong type is as missing as no object."""
        if self.should_fail("iommufd_get_object"):
            fail(errno.ENOENT, f"fail-nth: the lookup of object {obj_id} failed")
        obj = self._slots.get(obj_id)
        if not isinstance(obj, obj_type):
            name = what or obj_type.__name__
            if obj is None or obj is _PENDING:
                fail(errno.ENOENT, f"no {name} with id {obj_id}")
            fail(errno.ENOENT, f"object {obj_id} is a {type(obj).__name__}, not a {name}")
        return obj

    def lookup(self, obj_id: int) -> IommufdObject | None:
        obj = self._slots.get(obj_id)
        return obj if isinstance(obj, IommufdObject) else None

    def remove(self, obj_id: int) -> IommufdObject:
        """``iommufd_object_remove`` for ``IOMMU_DESTROY``."""
        obj = self._slots.get(obj_id)
        if not isinstance(obj, IommufdObject):
            fail(errno.ENOENT, f"no object with id {obj_id}")
        if obj.users != 1:
            fail(
                errno.EBUSY,
                f"object {obj_id} ({type(obj).__name__}) is still referenced by "
                f"{obj.users - 1} other user(s)",
            )
        self._release_id(obj_id)
        obj.destroy()
        return obj

    def tombstone(self, obj: IommufdObject) -> None:
        """``iommufd_object_tombstone_user``: destroy ``obj`` and keep its id taken — it is
        no object (ENOENT) and never handed out again until the context is released."""
        self._slots[obj.id] = _TOMBSTONE
        obj.destroy()

    def objects(self) -> list[IommufdObject]:
        return [o for o in self._slots.values() if isinstance(o, IommufdObject)]

    def destroy_all(self) -> None:
        """``iommufd_fops_release``: destroy leaf-first until the table is empty."""
        while True:
            progress = False
            for obj in sorted(self.objects(), key=lambda o: o.id):
                if self._slots.get(obj.id) is obj and obj.users == 1:
                    self._release_id(obj.id)
                    obj.destroy()
                    progress = True
            if not progress:
                break
        global forced_destroys
        for obj in self.objects():
            # the kernel's WARN_ON(!destroyed): a reference nobody dropped (a bug)
            forced_destroys += 1
            self._release_id(obj.id)
            obj.destroy()
        for obj_id in [i for i, o in self._slots.items() if o is _TOMBSTONE]:
            self._release_id(obj_id)
