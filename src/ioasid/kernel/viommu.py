"""``viommu.c`` and the parts of ``driver.c`` a vIOMMU driver calls: vIOMMU, vDEVICE and HW
queue objects, the iommufd's mmap regions (``iommufd_alloc_mmap``) and event reporting
(``iommufd_viommu_report_event``).

A vIOMMU is the slice of one physical IOMMU instance given to a VM: it holds a reference on
its nesting parent (a HWPT_PAGING allocated with NEST_PARENT), knows the VM's devices by
their virtual id (vDEVICEs, one per device, ids unique per vIOMMU), delivers events to
vEVENTQs (one per type) and may own HW queues whose guest memory it pins through an
internal access. The driver half (``struct iommufd_viommu_ops``) is :class:`ViommuOps`;
the mock driver's is in :mod:`ioasid.kernel.mock`.

References, as in 7.3: a vIOMMU holds one on its parent HWPT; every vDEVICE, nested HWPT,
vEVENTQ and HW queue one on the vIOMMU; a HW queue that depends on another (the mock's
index order) one on that queue; every live ``mmap`` of a region one on the region's owner.
A vDEVICE holds no ``users`` reference on its device: unbinding the device destroys the
vDEVICE and leaves its id a tombstone (``iommufd_device_remove_vdev``).
"""

from __future__ import annotations

import errno
import mmap
import weakref
from typing import Any

from ioasid import uapi
from ioasid.hw.memory import PAGE_SIZE
from ioasid.kernel.access import Access, access_create_internal, access_destroy
from ioasid.kernel.device import Device, get_device
from ioasid.kernel.errors import fail
from ioasid.kernel.eventq import Veventq, vevent_handler, veventq_fd_install, veventq_fd_reserve
from ioasid.kernel.hw_pagetable import (
    HwptNested,
    HwptPaging,
    NestedDomain,
    UserData,
    UserDataArray,
    get_hwpt_paging,
)
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.pages import ULONG_MAX
from ioasid.kernel.private import IommufdCtx, Ucmd


class ViommuOps:
    """``struct iommufd_viommu_ops``: a driver overrides what it supports; a missing op is
    ``EOPNOTSUPP`` where the core calls it."""

    has_alloc_domain_nested = False
    has_cache_invalidate = False
    has_hw_queue = False

    def destroy(self, viommu: Viommu) -> None:
        """``ops->destroy``."""

    def alloc_domain_nested(
        self, ucmd: Ucmd, viommu: Viommu, flags: int, user_data: UserData
    ) -> NestedDomain:
        fail(errno.EOPNOTSUPP, "the vIOMMU driver has no alloc_domain_nested op")

    def cache_invalidate(self, ucmd: Ucmd, viommu: Viommu, array: UserDataArray) -> None:
        array.entry_num = 0
        fail(errno.EOPNOTSUPP, "the vIOMMU driver has no cache_invalidate op")

    def get_hw_queue_size(self, viommu: Viommu, queue_type: int) -> int:
        """``ops->get_hw_queue_size``: 0 for a type the driver does not support."""
        return 0

    def hw_queue_init_phys(self, hw_queue: HwQueue, index: int, base_pa: int) -> None:
        fail(errno.EOPNOTSUPP, "the vIOMMU driver has no hw_queue_init_phys op")

    def vdevice_init(self, vdev: Vdevice) -> None:
        """``ops->vdevice_init`` (none of the modelled drivers has one)."""


class Viommu(IommufdObject):
    """``struct iommufd_viommu``: ``hwpt`` (the nesting parent), ``iommu_dev`` (the physical
    IOMMU instance), ``vdevs`` by virtual id, ``veventqs`` in creation order."""

    TYPE = ObjType.VIOMMU

    def __init__(self, ictx: IommufdCtx, viommu_type: int, hwpt: HwptPaging, iommu_dev: Any):
        super().__init__()
        self.ictx = ictx
        self.type = viommu_type
        self.hwpt = hwpt
        self.iommu_dev = iommu_dev
        self.vdevs: dict[int, Vdevice | None] = {}
        self.veventqs: list[Veventq] = []
        self.ops: ViommuOps | None = None
        self.hwpt_ref = False

    def destroy(self) -> None:
        """``iommufd_viommu_destroy`` (also its abort): the driver's destroy, then the
        parent's reference."""
        if self.ops is not None:
            self.ops.destroy(self)
        if self.hwpt_ref:
            self.hwpt.users -= 1
            self.hwpt_ref = False
        self.vdevs.clear()

    def find_veventq(self, veventq_type: int) -> Veventq | None:
        """``iommufd_viommu_find_veventq``."""
        for veventq in self.veventqs:
            if veventq.type == veventq_type:
                return veventq
        return None

    def find_dev(self, virt_id: int) -> Device | None:
        """``iommufd_viommu_find_dev``: the device of the vDEVICE with ``virt_id``."""
        vdev = self.vdevs.get(virt_id)
        return None if vdev is None else vdev.idev

    def get_vdev_id_of(self, driver: object) -> int:
        """``iommufd_viommu_get_vdev_id``: the virt id of the device ``driver`` serves;
        ENOENT when it has no vDEVICE here."""
        for vdev in self.vdevs.values():
            if vdev is not None and vdev.idev.driver is driver:
                return vdev.virt_id
        fail(errno.ENOENT, f"the device has no vDEVICE in vIOMMU {self.id}")

    def report_event(self, veventq_type: int, data: bytes) -> int:
        """``iommufd_viommu_report_event``: no vEVENTQ of the type → -EOPNOTSUPP; a full
        queue records a lost event instead (the lost-events header moves to the tail)."""
        veventq = self.find_veventq(veventq_type)
        if veventq is None:
            return -errno.EOPNOTSUPP
        if veventq.num_events == veventq.depth:
            vevent_handler(veventq, None)
            return 0
        veventq.num_events += 1
        vevent_handler(veventq, data)
        return 0


def get_viommu(ucmd: Ucmd, viommu_id: int) -> Viommu:
    """``iommufd_get_viommu``: ENOENT for anything but a vIOMMU."""
    return ucmd.ictx.objects.get(viommu_id, Viommu, "vIOMMU")


def viommu_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_VIOMMU_ALLOC`` (``iommufd_viommu_alloc_ioctl``), in 7.3's order:

    1. flags, or type DEFAULT → EOPNOTSUPP;
    2. ``dev_id`` → ENOENT;
    3. the device's driver has no vIOMMU ops, or not this type → EOPNOTSUPP;
    4. ``hwpt_id`` not a HWPT_PAGING → ENOENT; not NEST_PARENT → EINVAL;
    5. the object (a reference on the parent), the driver's ``viommu_init`` (its errors;
       driver data is passed only when ``data_len`` is not 0);
    6. respond → EFAULT. On any failure the object is destroyed (the driver's destroy and
       the parent's reference undone) and its id given back.
    """
    cmd, ictx = ucmd.cmd, ucmd.ictx
    if cmd.flags or cmd.type == uapi.IOMMU_VIOMMU_TYPE_DEFAULT:
        fail(
            errno.EOPNOTSUPP,
            f"IOMMU_VIOMMU_ALLOC: flags {cmd.flags:#x} must be 0 and type {cmd.type:#x} not "
            "DEFAULT",
        )
    idev = get_device(ucmd, cmd.dev_id)
    driver = idev.driver
    if not driver.get_viommu_size(cmd.type):
        fail(
            errno.EOPNOTSUPP,
            f"IOMMU_VIOMMU_ALLOC: the {driver.ops} driver has no vIOMMU of type {cmd.type:#x}",
        )
    hwpt = get_hwpt_paging(ucmd, cmd.hwpt_id)
    if not hwpt.nest_parent:
        fail(
            errno.EINVAL,
            f"IOMMU_VIOMMU_ALLOC: HWPT {hwpt.id} was not allocated with "
            "IOMMU_HWPT_ALLOC_NEST_PARENT",
        )
    viommu = ictx.objects.alloc(Viommu(ictx, cmd.type, hwpt, driver.iommu_dev))
    hwpt.users += 1
    viommu.hwpt_ref = True
    try:
        user_data = UserData(cmd.type, cmd.data_uptr, cmd.data_len) if cmd.data_len else None
        viommu.ops = driver.viommu_init(ucmd, viommu, hwpt.domain, user_data)
        cmd.out_viommu_id = viommu.id
        ucmd.respond()
    except OSError:
        ictx.objects.abort(viommu)
        raise
    ictx.objects.finalize(viommu)
    return 0


class Vdevice(IommufdObject):
    """``struct iommufd_vdevice``: ``idev`` as ``virt_id`` in ``viommu``."""

    TYPE = ObjType.VDEVICE

    def __init__(self, viommu: Viommu, idev: Device, virt_id: int) -> None:
        super().__init__()
        self.viommu = viommu
        self.idev = idev
        self.virt_id = virt_id
        self.linked = False

    def destroy(self) -> None:
        """``iommufd_vdevice_destroy`` / ``_abort``: out of the vIOMMU's table, the vIOMMU's
        reference dropped, the device's pointer cleared."""
        viommu = self.viommu
        if viommu.vdevs.get(self.virt_id, self) is self:
            viommu.vdevs.pop(self.virt_id, None)
        if self.linked:
            self.linked = False
            viommu.users -= 1
        if self.idev.vdev is self:
            self.idev.vdev = None

    def tombstone(self) -> None:
        """``iommufd_device_remove_vdev``: the device is going; destroy the vDEVICE and keep
        its id taken (lookups ENOENT) until the iommufd is closed."""
        objects = self.viommu.ictx.objects
        if objects.lookup(self.id) is self:
            objects.tombstone(self)


def vdevice_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_VDEVICE_ALLOC`` (``iommufd_vdevice_alloc_ioctl``), in 7.3's order:

    1. ``virt_id`` > ULONG_MAX → EINVAL;
    2. ``viommu_id`` → ENOENT; ``dev_id`` → ENOENT;
    3. the device behind another IOMMU instance than the vIOMMU → EINVAL;
    4. the device being unbound → ENOENT; already having a vDEVICE (on any vIOMMU) → EEXIST;
    5. the object (a reference on the vIOMMU), ``virt_id`` reserved in the vIOMMU (taken →
       EEXIST), the driver's ``vdevice_init``;
    6. respond → EFAULT; any failure destroys the object (abort) and frees the id.
    """
    cmd, ictx = ucmd.cmd, ucmd.ictx
    if cmd.virt_id > ULONG_MAX:
        fail(errno.EINVAL, f"IOMMU_VDEVICE_ALLOC: virt_id {cmd.virt_id:#x} > ULONG_MAX")
    viommu = get_viommu(ucmd, cmd.viommu_id)
    idev = get_device(ucmd, cmd.dev_id)
    if viommu.iommu_dev is not idev.driver.iommu_dev:
        fail(
            errno.EINVAL,
            f"IOMMU_VDEVICE_ALLOC: device {idev.id} is behind another IOMMU instance than "
            f"vIOMMU {viommu.id}",
        )
    if idev.vdev is not None:
        fail(
            errno.EEXIST,
            f"IOMMU_VDEVICE_ALLOC: device {idev.id} already has vDEVICE {idev.vdev.id}",
        )
    vdev = ictx.objects.alloc(Vdevice(viommu, idev, cmd.virt_id))
    viommu.users += 1
    vdev.linked = True
    idev.vdev = vdev
    try:
        if cmd.virt_id in viommu.vdevs:
            fail(
                errno.EEXIST,
                f"IOMMU_VDEVICE_ALLOC: virt_id {cmd.virt_id:#x} is already used in vIOMMU "
                f"{viommu.id}",
            )
        viommu.vdevs[cmd.virt_id] = None
        try:
            if viommu.ops is not None:
                viommu.ops.vdevice_init(vdev)
        except OSError:
            del viommu.vdevs[cmd.virt_id]
            raise
        viommu.vdevs[cmd.virt_id] = vdev
        cmd.out_vdevice_id = vdev.id
        ucmd.respond()
    except OSError:
        ictx.objects.abort(vdev)
        raise
    ictx.objects.finalize(vdev)
    return 0


class HwQueue(IommufdObject):
    """``struct iommufd_hw_queue``: guest queue memory at ``base_addr`` (an IOVA of the
    parent's IOAS), pinned and locked against unmap through ``access``."""

    TYPE = ObjType.HW_QUEUE

    def __init__(self) -> None:
        super().__init__()
        self.viommu: Viommu | None = None
        self.access: Access | None = None
        self.type = 0
        self.length = 0
        self.base_addr = 0
        self.destroy_op: Any = None

    def destroy(self) -> None:
        """``iommufd_hw_queue_destroy``: the driver's destroy, the internal access (unpin,
        detach, destroy), the vIOMMU's reference."""
        if self.destroy_op is not None:
            self.destroy_op(self)
            self.destroy_op = None
        if self.access is not None and self.viommu is not None:
            _hw_queue_destroy_access(self.viommu.ictx, self.access, self.base_addr, self.length)
            self.access = None
        if self.viommu is not None:
            self.viommu.users -= 1
            self.viommu = None


def _page_align_down(x: int) -> int:
    return x - x % PAGE_SIZE


def _hw_queue_destroy_access(ictx: IommufdCtx, access: Access, base: int, length: int) -> None:
    aligned = _page_align_down(base)
    offset = base - aligned
    access.unpin_pages(aligned, (length + offset + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE)
    access.detach()
    access_destroy(ictx, access)


def _hw_queue_alloc_phys(cmd: Any, viommu: Viommu) -> tuple[Access, int]:
    """``iommufd_hw_queue_alloc_phys``: an internal access on the parent's IOAS pins the
    queue's pages (not fully mapped → ENOENT, an area without the right → EPERM); they must
    be physically contiguous (EFAULT). Returns the access and the queue's physical base."""
    aligned = _page_align_down(cmd.nesting_parent_iova)
    offset = cmd.nesting_parent_iova - aligned
    length = offset + cmd.length + PAGE_SIZE - 1
    if length > ULONG_MAX:
        fail(errno.ERANGE, "IOMMU_HW_QUEUE_ALLOC: offset + length overflows")
    npages = length // PAGE_SIZE
    length = npages * PAGE_SIZE
    ictx = viommu.ictx
    access = access_create_internal(ictx)
    try:
        access.attach_internal(viommu.hwpt.ioas)
        try:
            pfns = access.pin_pages(aligned, length, 0)
        except OSError:
            access.detach()
            raise
    except OSError:
        access_destroy(ictx, access)
        raise
    for i in range(1, npages):
        if pfns[i] != pfns[i - 1] + 1:
            access.unpin_pages(aligned, length)
            access.detach()
            access_destroy(ictx, access)
            fail(
                errno.EFAULT,
                f"IOMMU_HW_QUEUE_ALLOC: page {i} of the queue is not physically contiguous "
                "with the one before",
            )
    return access, pfns[0] * PAGE_SIZE + offset


def hw_queue_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_HW_QUEUE_ALLOC`` (``iommufd_hw_queue_alloc_ioctl``), in 7.3's order:

    1. flags, or type DEFAULT → EOPNOTSUPP; length 0 → EINVAL; base + length - 1 overflows
       → EOVERFLOW;
    2. ``viommu_id`` → ENOENT; the driver without HW queues, or not this type →
       EOPNOTSUPP;
    3. the object, then :func:`_hw_queue_alloc_phys` (ERANGE, ENOENT, EPERM, EFAULT ...);
    4. a reference on the vIOMMU, the driver's ``hw_queue_init_phys`` (its errors);
    5. respond. Any failure destroys the object (the access unpinned, the reference put).
    """
    cmd, ictx = ucmd.cmd, ucmd.ictx
    if cmd.flags or cmd.type == uapi.IOMMU_HW_QUEUE_TYPE_DEFAULT:
        fail(
            errno.EOPNOTSUPP,
            f"IOMMU_HW_QUEUE_ALLOC: flags {cmd.flags:#x} must be 0 and type {cmd.type:#x} "
            "not DEFAULT",
        )
    if not cmd.length:
        fail(errno.EINVAL, "IOMMU_HW_QUEUE_ALLOC: length is 0")
    if cmd.nesting_parent_iova + cmd.length - 1 >= 1 << 64:
        fail(
            errno.EOVERFLOW,
            f"IOMMU_HW_QUEUE_ALLOC: nesting_parent_iova {cmd.nesting_parent_iova:#x} + length "
            f"{cmd.length:#x} overflows",
        )
    viommu = get_viommu(ucmd, cmd.viommu_id)
    ops = viommu.ops
    if ops is None or not ops.has_hw_queue or not ops.get_hw_queue_size(viommu, cmd.type):
        fail(
            errno.EOPNOTSUPP,
            f"IOMMU_HW_QUEUE_ALLOC: vIOMMU {viommu.id} has no HW queue of type {cmd.type:#x}",
        )
    hw_queue = ictx.objects.alloc(HwQueue())
    try:
        access, base_pa = _hw_queue_alloc_phys(cmd, viommu)
        hw_queue.viommu = viommu
        viommu.users += 1
        hw_queue.access = access
        hw_queue.type = cmd.type
        hw_queue.length = cmd.length
        hw_queue.base_addr = cmd.nesting_parent_iova
        ops.hw_queue_init_phys(hw_queue, cmd.index, base_pa)
        cmd.out_hw_queue_id = hw_queue.id
        ucmd.respond()
    except OSError:
        ictx.objects.abort(hw_queue)
        raise
    ictx.objects.finalize(hw_queue)
    return 0


def object_depend(dependent: IommufdObject, depended: IommufdObject) -> None:
    """``_iommufd_object_depend``: the same object or another type → EINVAL."""
    if dependent is depended or dependent.TYPE != depended.TYPE:
        fail(errno.EINVAL, "an object can only depend on another object of its type")
    depended.users += 1


def object_undepend(dependent: IommufdObject, depended: IommufdObject) -> None:
    """``_iommufd_object_undepend``."""
    depended.users -= 1


def viommu_alloc_hwpt_nested(
    ucmd: Ucmd, viommu: Viommu, idev: Device, flags: int, user_data: UserData
) -> HwptNested:
    """``IOMMU_HWPT_ALLOC`` on a vIOMMU (``iommufd_viommu_alloc_hwpt_nested``): the device
    behind another IOMMU instance → EINVAL; flags other than FAULT_ID_VALID|PASID, no
    driver data, or a vIOMMU without ``alloc_domain_nested`` → EOPNOTSUPP; then the object
    (a reference on the vIOMMU) and the driver's nested domain (its errors abort it). The
    object is returned allocated, not finalized."""
    if viommu.iommu_dev is not idev.driver.iommu_dev:
        fail(
            errno.EINVAL,
            f"IOMMU_HWPT_ALLOC: device {idev.id} is behind another IOMMU instance than "
            f"vIOMMU {viommu.id}",
        )
    allowed = uapi.IOMMU_HWPT_FAULT_ID_VALID | uapi.IOMMU_HWPT_ALLOC_PASID
    if (
        flags & ~allowed
        or not user_data.len
        or viommu.ops is None
        or not (viommu.ops.has_alloc_domain_nested)
    ):
        fail(
            errno.EOPNOTSUPP,
            f"nested HWPT_ALLOC on vIOMMU {viommu.id}: flags {flags:#x} (allowed "
            f"{allowed:#x}), data_len {user_data.len}",
        )
    objects = ucmd.ictx.objects
    hwpt = objects.alloc(HwptNested(viommu.hwpt, flags, viommu))
    try:
        hwpt.domain = viommu.ops.alloc_domain_nested(
            ucmd, viommu, flags & ~uapi.IOMMU_HWPT_FAULT_ID_VALID, user_data
        )
    except OSError:
        objects.abort(hwpt)
        raise
    return hwpt


def viommu_cache_invalidate(ucmd: Ucmd, viommu: Viommu, array: UserDataArray) -> None:
    """``IOMMU_HWPT_INVALIDATE`` on a vIOMMU: without ``cache_invalidate`` → EOPNOTSUPP;
    else the driver's (it sets ``array.entry_num`` to the entries done)."""
    if viommu.ops is None or not viommu.ops.has_cache_invalidate:
        array.entry_num = 0
        fail(errno.EOPNOTSUPP, f"vIOMMU {viommu.id} has no cache_invalidate op")
    viommu.ops.cache_invalidate(ucmd, viommu, array)


# --- mmap regions of the iommufd (driver.c, main.c) -------------------------------------------


class Immap:
    """``struct iommufd_mmap``: a region ``owner`` registered; ``memory`` backs it (a
    shared memory file standing for the MMIO or kernel pages)."""

    def __init__(self, owner: IommufdObject, memory: int, length: int, offset: int) -> None:
        self.owner = owner
        self.memory = memory
        self.length = length
        self.offset = offset


def alloc_mmap(ictx: IommufdCtx, owner: IommufdObject, memory: int, length: int) -> int:
    """``_iommufd_alloc_mmap``: length 0 or not page aligned → EINVAL; the lowest free
    offset range from PAGE_SIZE (the first page is skipped, so 0 is never an offset)."""
    if not length or length % PAGE_SIZE:
        fail(errno.EINVAL, f"mmap region length {length:#x} is not a page multiple")
    start = PAGE_SIZE
    for off in sorted(ictx.mt_mmap):
        if off - start >= length:
            break
        start = max(start, off + ictx.mt_mmap[off].length)
    ictx.mt_mmap[start] = Immap(owner, memory, length, start)
    return start


def destroy_mmap(ictx: IommufdCtx, owner: IommufdObject, offset: int) -> None:
    """``_iommufd_destroy_mmap``."""
    immap = ictx.mt_mmap.pop(offset, None)
    assert immap is not None and immap.owner is owner


class Vma:
    """A user mapping of a region: holds a reference on the owner until ``munmap``
    (the ``mmap.mmap`` closed or collected), noticed at the next entry of the iommufd."""

    def __init__(self, immap: Immap, mapping: mmap.mmap) -> None:
        self.owner = immap.owner
        self.ref = weakref.ref(mapping)

    def gone(self) -> bool:
        mapping = self.ref()
        return mapping is None or mapping.closed


def reap_vmas(ictx: IommufdCtx) -> None:
    """``iommufd_fops_vma_close`` for every mapping the caller has unmapped."""
    if not ictx.vmas:
        return
    for vma in [v for v in ictx.vmas if v.gone()]:
        ictx.vmas.remove(vma)
        vma.owner.users -= 1


def fops_mmap(ictx: IommufdCtx, length: int, prot: int, flags: int, offset: int) -> mmap.mmap:
    """``iommufd_fops_mmap``: length not page aligned → EINVAL; not MAP_SHARED → EINVAL;
    PROT_EXEC → EPERM; no region at exactly ``offset``, a dying owner, or another length →
    ENXIO. The mapping holds a reference on the region's owner. ``length`` is what the
    caller asked ``mmap(2)`` for: the VMA the driver sees is rounded up to pages first."""
    length = (length + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
    if not length:
        fail(errno.EINVAL, "mmap: length is 0")
    if not flags & mmap.MAP_SHARED:
        fail(errno.EINVAL, "mmap: the iommufd maps only MAP_SHARED")
    if prot & mmap.PROT_EXEC:
        fail(errno.EPERM, "mmap: PROT_EXEC is not allowed on an iommufd region")
    reap_vmas(ictx)
    immap = None
    for start, region in ictx.mt_mmap.items():
        if start <= offset < start + region.length:
            immap = region
    if immap is None or not immap.owner.users:
        fail(errno.ENXIO, f"mmap: no region at offset {offset:#x}")
    if offset != immap.offset or length != immap.length:
        fail(
            errno.ENXIO,
            f"mmap: offset {offset:#x} length {length:#x} is not the region at "
            f"{immap.offset:#x} of {immap.length:#x} bytes",
        )
    mapping = mmap.mmap(immap.memory, length, flags=mmap.MAP_SHARED, prot=prot)
    immap.owner.users += 1
    ictx.vmas.append(Vma(immap, mapping))
    return mapping


VEVENTQ_MAX_DEPTH = 1 << 19
"""An arbitrary upper bound for ``veventq_depth`` that fits all existing hardware."""


def veventq_alloc(ucmd: Ucmd) -> int:
    """``IOMMU_VEVENTQ_ALLOC`` (``iommufd_veventq_alloc``), in 7.3's order:

    1. flags, ``__reserved`` or type DEFAULT → EOPNOTSUPP;
    2. depth 0 or above 2^19 → EINVAL;
    3. ``viommu_id`` → ENOENT; a vEVENTQ of this type on the vIOMMU → EEXIST;
    4. the object (a reference on the vIOMMU, on its list), its file (a reference held by
       the file until the last ``close``) and an fd (EMFILE);
    5. respond → EFAULT (fd and object released); finalize, install the fd.
    """
    cmd, ictx = ucmd.cmd, ucmd.ictx
    if cmd.flags or cmd.reserved or cmd.type == uapi.IOMMU_VEVENTQ_TYPE_DEFAULT:
        fail(
            errno.EOPNOTSUPP,
            f"IOMMU_VEVENTQ_ALLOC: flags {cmd.flags:#x} and __reserved must be 0, type "
            f"{cmd.type:#x} not DEFAULT",
        )
    if not cmd.veventq_depth or cmd.veventq_depth > VEVENTQ_MAX_DEPTH:
        fail(
            errno.EINVAL,
            f"IOMMU_VEVENTQ_ALLOC: veventq_depth {cmd.veventq_depth} not in 1..{VEVENTQ_MAX_DEPTH}",
        )
    viommu = get_viommu(ucmd, cmd.viommu_id)
    if viommu.find_veventq(cmd.type) is not None:
        fail(
            errno.EEXIST,
            f"IOMMU_VEVENTQ_ALLOC: vIOMMU {viommu.id} already has a vEVENTQ of type {cmd.type:#x}",
        )
    veventq = ictx.objects.alloc(Veventq(viommu, cmd.type, cmd.veventq_depth))
    viommu.users += 1
    viommu.veventqs.append(veventq)
    fdno = -1
    try:
        fdno = veventq_fd_reserve(ictx)
        cmd.out_veventq_id = veventq.id
        cmd.out_veventq_fd = fdno
        ucmd.respond()
    except OSError:
        if fdno >= 0:
            ictx.kernel.anon_inodes.put_unused_fd(fdno)
        ictx.objects.abort(veventq)
        raise
    ictx.objects.finalize(veventq)
    veventq_fd_install(ictx, veventq, fdno)
    return 0
