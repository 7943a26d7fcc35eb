"""``selftest.c``: the ``CONFIG_IOMMUFD_TEST`` mock driver behind ``IOMMU_TEST_CMD``.

The mock IOMMU (``mock_ops``): paging domains in the generic-pt AMDv1 "mock" format
(:mod:`ioasid.hw.pagetable.mock`: 2 KiB granule, aperture ``[MOCK_APERTURE_START,
MOCK_APERTURE_LAST]`` or, with ``MOCK_IOMMUPT_HUGE``, the whole table), dirty tracking
unless the device is ``MOCK_FLAGS_DEVICE_NO_DIRTY``, nested domains carrying a 4-entry mock
IOTLB (``iommu_hwpt_selftest``), PASIDs (20 bits) for ``MOCK_FLAGS_DEVICE_PASID`` devices,
a blocking default domain and the mock vIOMMU (``IOMMU_VIOMMU_TYPE_SELFTEST``: nested
domains, per-device cache invalidation, two HW queues, an mmap page, SELFTEST vEVENTs).
Each mock device is its own IOMMU group.

Ops here: ADD_RESERVED, MOCK_DOMAIN(_FLAGS), MOCK_DOMAIN_REPLACE, MD_CHECK_MAP,
MD_CHECK_REFS, MD_CHECK_IOTLB, DEV_CHECK_CACHE, SET_TEMP_MEMORY_LIMIT, DIRTY, TRIGGER_IOPF,
TRIGGER_VEVENT, DMABUF_GET, DMABUF_REVOKE,
PASID_ATTACH / REPLACE / DETACH / CHECK_HWPT. The access-object ops are in
:mod:`ioasid.kernel.mock_access`. Other ops answer ``EOPNOTSUPP`` as the kernel does for an
op it does not know.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from ioasid import uapi
from ioasid.hw.iommu import IommuCaps, IommuUnit
from ioasid.hw.iommu import NestedDomain as HwNestedDomain
from ioasid.hw.memory import PAGE_SIZE, AddressSpace, SelfAddressSpace, Vma
from ioasid.hw.pagetable.nested import MockStage1
from ioasid.kernel import pages
from ioasid.kernel.anon_inode import AnonFile
from ioasid.kernel.device import IOMMU_NO_PASID, Device, IommuDriver
from ioasid.kernel.errors import fail
from ioasid.kernel.eventq import (
    IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
    IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
    report_device_fault,
)
from ioasid.kernel.hw_pagetable import (
    AnyDomain,
    HwPagetable,
    HwptNested,
    HwptPaging,
    IommuDomain,
    NestedDomain,
    UserData,
    UserDataArray,
    copy_struct_from_user,
    copy_struct_from_user_array,
)
from ioasid.kernel.ioas import get_ioas
from ioasid.kernel.mock_access import ACCESS_OPS
from ioasid.kernel.objects import IommufdObject, ObjType
from ioasid.kernel.pages import FILE_PAGE_PINS, ULONG_MAX, DmaBuf
from ioasid.kernel.private import Machine, Ucmd, check_zeroed_user
from ioasid.kernel.viommu import (
    HwQueue,
    Viommu,
    ViommuOps,
    alloc_mmap,
    destroy_mmap,
    object_depend,
    object_undepend,
)

MOCK_OPS = "mock"
MOCK_PAGING_FLAGS = (
    uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
    | uapi.IOMMU_HWPT_ALLOC_NEST_PARENT
    | uapi.IOMMU_HWPT_ALLOC_PASID
)
MOCK_DEV_VALID_FLAGS = uapi.MOCK_FLAGS_DEVICE_NO_DIRTY | uapi.MOCK_FLAGS_DEVICE_PASID
SZ_16M = 16 * 1024 * 1024


MOCK_IOMMU_DEV = "mock_iommu"
"""``mock_iommu.iommu_dev``: the one IOMMU instance behind every mock device."""


class MockNestedDomain(NestedDomain):
    """``struct mock_iommu_domain_nested``: ``iotlb[MOCK_NESTED_DOMAIN_IOTLB_NUM]`` and the
    vIOMMU it was allocated on (``None`` for one on a nesting-parent HWPT). Its stage 1 is
    the identity (:class:`~ioasid.hw.pagetable.nested.MockStage1`): DMA through it walks
    the parent's table, tagged with the nested domain's own IOTLB tag."""

    def __init__(self, parent: IommuDomain, iotlb: int, viommu: Viommu | None = None) -> None:
        super().__init__(parent, MOCK_OPS)
        self.iotlb = [iotlb] * uapi.MOCK_NESTED_DOMAIN_IOTLB_NUM
        self.viommu = viommu
        self.hw = HwNestedDomain(parent.hw, MockStage1(), parent.phys)

    def cache_invalidate_user(self, ucmd: Ucmd, array: UserDataArray) -> None:
        """``mock_domain_cache_invalidate_user``: array type → EINVAL; then per entry:
        copy (EINVAL/EFAULT/E2BIG), unknown flags → EOPNOTSUPP, iotlb_id > 3 → EINVAL;
        FLAG_ALL clears every entry. ``entry_num`` = entries processed."""
        processed = 0
        try:
            if array.type != uapi.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST:
                fail(errno.EINVAL, f"invalidation data type {array.type:#x} is not SELFTEST")
            for i in range(array.entry_num):
                inv = copy_struct_from_user_array(
                    ucmd,
                    uapi.iommu_hwpt_invalidate_selftest,
                    array,
                    uapi.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
                    i,
                    "iotlb_id",
                )
                if inv.flags & ~uapi.IOMMU_TEST_INVALIDATE_FLAG_ALL:
                    fail(errno.EOPNOTSUPP, f"entry {i}: unknown flags {inv.flags:#x}")
                if inv.iotlb_id > uapi.MOCK_NESTED_DOMAIN_IOTLB_ID_MAX:
                    fail(errno.EINVAL, f"entry {i}: iotlb_id {inv.iotlb_id} > 3")
                if inv.flags & uapi.IOMMU_TEST_INVALIDATE_FLAG_ALL:
                    self.iotlb = [0] * uapi.MOCK_NESTED_DOMAIN_IOTLB_NUM
                else:
                    self.iotlb[inv.iotlb_id] = 0
                if self.hw is not None:
                    self.hw.flush_all()
                processed += 1
        finally:
            array.entry_num = processed


class MockDriver(IommuDriver):
    """``mock_ops`` serving one mock device (``struct mock_dev``: ``dev_flags``, the
    per-device ``cache[]`` and the PASID-1024 fake-error latch)."""

    ops = MOCK_OPS
    has_nested = True
    user_pasid_table = True

    def __init__(self, kernel: Machine, dev_flags: int = 0) -> None:
        no_dirty = bool(dev_flags & uapi.MOCK_FLAGS_DEVICE_NO_DIRTY)
        pasid = bool(dev_flags & uapi.MOCK_FLAGS_DEVICE_PASID)
        key = (no_dirty, pasid)
        unit = kernel.mock_units.get(key)
        if unit is None:
            caps = IommuCaps.mock(
                dirty_tracking=not no_dirty, max_pasid_log2=uapi.MOCK_PASID_WIDTH if pasid else 0
            )
            unit = kernel.mock_units[key] = IommuUnit(caps, "mock_iommu")
        kernel.mock_dev_ida += 1
        super().__init__(kernel, unit, kernel.mock_dev_ida)
        self.dev_flags = dev_flags
        self.max_pasids = 1 << uapi.MOCK_PASID_WIDTH if pasid else 0
        self.cache = [uapi.IOMMU_TEST_DEV_CACHE_DEFAULT] * uapi.MOCK_DEV_CACHE_NUM
        self.pasid_1024_fake_error = False
        self.viommu: Viommu | None = None
        self.vdev_id = 0

    @property
    def iommu_dev(self) -> object:
        return MOCK_IOMMU_DEV

    def get_viommu_size(self, viommu_type: int) -> int:
        """``mock_get_viommu_size``: only ``IOMMU_VIOMMU_TYPE_SELFTEST``."""
        return 1 if viommu_type == uapi.IOMMU_VIOMMU_TYPE_SELFTEST else 0

    def viommu_init(
        self, ucmd: Ucmd, viommu: Viommu, parent: IommuDomain, user_data: UserData | None
    ) -> ViommuOps:
        """``mock_viommu_init``: with driver data, copy ``iommu_viommu_selftest`` (type
        other than SELFTEST or shorter than ``out_data`` → EINVAL, E2BIG, EFAULT),
        allocate two zeroed pages with ``in_data`` in the first u32, register them as an
        mmap region and answer ``out_data = in_data`` and the region's offset and length
        (EFAULT unregisters and frees)."""
        ops = MockViommuOps(parent)
        if user_data is not None:
            if user_data.type != uapi.IOMMU_VIOMMU_TYPE_SELFTEST:
                fail(errno.EINVAL, f"vIOMMU data type {user_data.type:#x} is not SELFTEST")
            data: uapi.iommu_viommu_selftest = copy_struct_from_user(
                ucmd,
                uapi.iommu_viommu_selftest,
                user_data.uptr,
                user_data.len,
                uapi.iommu_viommu_selftest.offsetofend("out_data"),
                "iommu_viommu_selftest",
            )
            length = PAGE_SIZE * 2
            memfd = os.memfd_create("mock_viommu", os.MFD_CLOEXEC)
            os.ftruncate(memfd, length)
            os.pwrite(memfd, data.in_data.to_bytes(4, "little"), 0)
            ops.page = memfd
            ops.mmap_offset = alloc_mmap(viommu.ictx, viommu, memfd, length)
            data.out_data = data.in_data
            data.out_mmap_length = length
            data.out_mmap_offset = ops.mmap_offset
            try:
                n = min(user_data.len, ctypes.sizeof(data))
                ucmd.ictx.kernel.copy_to_user(user_data.uptr, bytes(data)[:n])
            except OSError:
                ops.destroy(viommu)
                raise
        return ops

    def attach_dev(self, domain: AnyDomain | None) -> None:
        """``mock_domain_nop_attach``: a nested domain of a vIOMMU needs the device's
        vDEVICE there (ENOENT); the device remembers (vIOMMU, virt id) for
        ``TRIGGER_VEVENT``."""
        new_viommu, vdev_id = None, 0
        if isinstance(domain, MockNestedDomain) and domain.viommu is not None:
            new_viommu = domain.viommu
            vdev_id = new_viommu.get_vdev_id_of(self)
        super().attach_dev(domain)
        self.viommu, self.vdev_id = new_viommu, vdev_id

    def hw_info(self, in_type: int) -> tuple[bytes, int]:
        """``mock_domain_hw_info``."""
        if in_type not in (uapi.IOMMU_HW_INFO_TYPE_DEFAULT, uapi.IOMMU_HW_INFO_TYPE_SELFTEST):
            fail(errno.EOPNOTSUPP, f"mock IOMMU: hw_info type {in_type:#x} is not SELFTEST")
        info = uapi.iommu_test_hw_info(test_reg=uapi.IOMMU_HW_INFO_SELFTEST_REGVAL)
        return bytes(info), uapi.IOMMU_HW_INFO_TYPE_SELFTEST

    def capable(self, cap: str) -> bool:
        """``mock_domain_capable``."""
        if cap == "CACHE_COHERENCY":
            return True
        if cap == "DIRTY_TRACKING":
            return not self.dev_flags & uapi.MOCK_FLAGS_DEVICE_NO_DIRTY
        return False

    def domain_alloc_paging(
        self, ucmd: Ucmd | None, flags: int, user_data: UserData | None
    ) -> IommuDomain:
        """``mock_domain_alloc_paging_flags``: flags outside DIRTY|NEST_PARENT|PASID, or
        DIRTY_TRACKING on a NO_DIRTY device → EOPNOTSUPP; driver data other than SELFTEST →
        EOPNOTSUPP; copy ``iommu_hwpt_selftest`` (EINVAL/EFAULT/E2BIG); an unknown
        ``pagetable_type`` → EOPNOTSUPP."""
        if flags & ~MOCK_PAGING_FLAGS or (
            flags & uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING and not self.capable("DIRTY_TRACKING")
        ):
            fail(errno.EOPNOTSUPP, f"mock IOMMU: paging flags {flags:#x} not supported here")
        pagetable_type = 0
        if user_data is not None:
            if user_data.type not in (uapi.IOMMU_HWPT_DATA_SELFTEST, uapi.IOMMU_HWPT_DATA_NONE):
                fail(errno.EOPNOTSUPP, f"mock IOMMU: data type {user_data.type:#x}")
            assert ucmd is not None
            cfg = self._copy_selftest(ucmd, user_data)
            pagetable_type = cfg.pagetable_type
        hw = self._hw(
            lambda: self.unit.domain_alloc_paging(flags, pagetable_type=pagetable_type),
            errno.EOPNOTSUPP,
        )
        return IommuDomain(hw, self.kernel.phys, MOCK_OPS)

    @staticmethod
    def _copy_selftest(ucmd: Ucmd, user_data: UserData) -> uapi.iommu_hwpt_selftest:
        if user_data.type != uapi.IOMMU_HWPT_DATA_SELFTEST:
            fail(errno.EINVAL, f"driver data type {user_data.type:#x} is not SELFTEST")
        cfg: uapi.iommu_hwpt_selftest = copy_struct_from_user(
            ucmd,
            uapi.iommu_hwpt_selftest,
            user_data.uptr,
            user_data.len,
            uapi.iommu_hwpt_selftest.offsetofend("iotlb"),
            "iommu_hwpt_selftest",
        )
        return cfg

    def domain_alloc_nested(
        self, ucmd: Ucmd, parent: IommuDomain, flags: int, user_data: UserData
    ) -> NestedDomain:
        """``mock_domain_alloc_nested``: flags other than PASID → EOPNOTSUPP; a parent that
        is not a mock paging domain → EINVAL; data type other than SELFTEST → EOPNOTSUPP;
        copy ``iommu_hwpt_selftest`` (EINVAL/EFAULT/E2BIG)."""
        if flags & ~uapi.IOMMU_HWPT_ALLOC_PASID:
            fail(errno.EOPNOTSUPP, f"mock nested domain: flags {flags:#x}")
        if not isinstance(parent, IommuDomain) or parent.owner != MOCK_OPS:
            fail(errno.EINVAL, "mock nested domain: the parent is not a mock paging domain")
        if user_data.type != uapi.IOMMU_HWPT_DATA_SELFTEST:
            fail(errno.EOPNOTSUPP, f"mock nested domain: data type {user_data.type:#x}")
        cfg = self._copy_selftest(ucmd, user_data)
        return MockNestedDomain(parent, cfg.iotlb)

    def set_dev_pasid(self, domain: AnyDomain | None, pasid: int, old: AnyDomain | None) -> None:
        """``mock_domain_set_dev_pasid_nop``: PASID 1024 fails every second attach with
        ENOMEM (the latch is set by one attach, cleared by the failing one or by blocking),
        to exercise the core's rollback."""
        if pasid == uapi.IOMMU_TEST_PASID_RESERVED:
            if domain is None:
                self.pasid_1024_fake_error = False
            elif self.pasid_1024_fake_error:
                self.pasid_1024_fake_error = False
                fail(errno.ENOMEM, "mock IOMMU: the designed failure of PASID 1024")
            else:
                self.pasid_1024_fake_error = True
        super().set_dev_pasid(domain, pasid, old)


class MockViommuOps(ViommuOps):
    """``mock_viommu_ops`` and ``struct mock_viommu``: the parent domain, two HW queue
    slots, the mmap page (a memory file) and its offset."""

    has_alloc_domain_nested = True
    has_cache_invalidate = True
    has_hw_queue = True

    def __init__(self, s2_parent: IommuDomain) -> None:
        self.s2_parent = s2_parent
        self.hw_queue: list[HwQueue | None] = [None] * uapi.IOMMU_TEST_HW_QUEUE_MAX
        self.hw_queue_prev: dict[int, HwQueue] = {}
        self.page = -1
        self.mmap_offset = 0

    def destroy(self, viommu: Viommu) -> None:
        """``mock_viommu_destroy``: unregister the mmap region, free the pages."""
        if self.mmap_offset:
            destroy_mmap(viommu.ictx, viommu, self.mmap_offset)
            self.mmap_offset = 0
        if self.page >= 0:
            os.close(self.page)
            self.page = -1

    def alloc_domain_nested(
        self, ucmd: Ucmd, viommu: Viommu, flags: int, user_data: UserData
    ) -> NestedDomain:
        """``mock_viommu_alloc_domain_nested``: flags other than PASID → EOPNOTSUPP; data
        type other than SELFTEST → EOPNOTSUPP; copy ``iommu_hwpt_selftest``."""
        if flags & ~uapi.IOMMU_HWPT_ALLOC_PASID:
            fail(errno.EOPNOTSUPP, f"mock vIOMMU nested domain: flags {flags:#x}")
        if user_data.type != uapi.IOMMU_HWPT_DATA_SELFTEST:
            fail(errno.EOPNOTSUPP, f"mock vIOMMU nested domain: data type {user_data.type:#x}")
        cfg = MockDriver._copy_selftest(ucmd, user_data)
        return MockNestedDomain(self.s2_parent, cfg.iotlb, viommu)

    def cache_invalidate(self, ucmd: Ucmd, viommu: Viommu, array: UserDataArray) -> None:
        """``mock_viommu_cache_invalidate``: an empty array of type SELFTEST is a probe (0
        done); the whole array is copied first (type → EINVAL, no entries → EINVAL, an
        entry longer than the struct with a non-zero tail → E2BIG, EFAULT; none done); then
        per entry: unknown flags → EOPNOTSUPP, cache_id > 3 → EINVAL, no vDEVICE with
        ``vdev_id`` → EINVAL; FLAG_ALL clears all four of the device's cache entries."""
        if not array.entry_num and array.type == uapi.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST:
            array.entry_num = 0
            return
        done = 0
        try:
            cmds = _copy_full_user_array(
                ucmd,
                uapi.iommu_viommu_invalidate_selftest,
                array,
                uapi.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
            )
            for i, cur in enumerate(cmds):
                if cur.flags & ~uapi.IOMMU_TEST_INVALIDATE_FLAG_ALL:
                    fail(errno.EOPNOTSUPP, f"entry {i}: unknown flags {cur.flags:#x}")
                if cur.cache_id > uapi.MOCK_DEV_CACHE_ID_MAX:
                    fail(errno.EINVAL, f"entry {i}: cache_id {cur.cache_id} > 3")
                idev = viommu.find_dev(cur.vdev_id)
                if idev is None or not isinstance(idev.driver, MockDriver):
                    fail(errno.EINVAL, f"entry {i}: no vDEVICE {cur.vdev_id:#x} in the vIOMMU")
                mdev = idev.driver
                if cur.flags & uapi.IOMMU_TEST_INVALIDATE_FLAG_ALL:
                    mdev.cache = [0] * uapi.MOCK_DEV_CACHE_NUM
                else:
                    mdev.cache[cur.cache_id] = 0
                done += 1
        finally:
            array.entry_num = done

    def get_hw_queue_size(self, viommu: Viommu, queue_type: int) -> int:
        """``mock_viommu_get_hw_queue_size``: only ``IOMMU_HW_QUEUE_TYPE_SELFTEST``."""
        return 1 if queue_type == uapi.IOMMU_HW_QUEUE_TYPE_SELFTEST else 0

    def hw_queue_init_phys(self, hw_queue: HwQueue, index: int, base_pa: int) -> None:
        """``mock_hw_queue_init_phys``: index ≥ 2 → EINVAL; taken → EEXIST; index ≥ 1
        without its predecessor → EIO; ``base_pa`` not the parent's translation of the
        base → EFAULT (a core bug check); then a dependency on the predecessor (so it
        cannot be destroyed first: EBUSY)."""
        if index >= uapi.IOMMU_TEST_HW_QUEUE_MAX:
            fail(errno.EINVAL, f"mock HW queue: index {index} >= {uapi.IOMMU_TEST_HW_QUEUE_MAX}")
        if self.hw_queue[index] is not None:
            fail(errno.EEXIST, f"mock HW queue: index {index} is in use")
        prev = None
        if index:
            prev = self.hw_queue[index - 1]
            if prev is None:
                fail(errno.EIO, f"mock HW queue: index {index} needs index {index - 1} first")
        if base_pa != self.s2_parent.iova_to_phys(hw_queue.base_addr):
            fail(errno.EFAULT, "mock HW queue: the core passed the wrong physical address")
        if prev is not None:
            object_depend(hw_queue, prev)
            self.hw_queue_prev[index] = prev
        self.hw_queue[index] = hw_queue

        def destroy(q: HwQueue) -> None:
            self.hw_queue[index] = None
            dep = self.hw_queue_prev.pop(index, None)
            if dep is not None:
                object_undepend(q, dep)

        hw_queue.destroy_op = destroy


def _copy_full_user_array(
    ucmd: Ucmd, struct: type[Any], array: UserDataArray, data_type: int
) -> list[Any]:
    """``iommu_copy_struct_from_full_user_array``: type → EINVAL; no entries → EINVAL;
    each entry with ``copy_struct_from_user`` (shorter: zero-filled; longer: the tail must
    be zero, else E2BIG; EFAULT)."""
    if array.type != data_type:
        fail(errno.EINVAL, f"invalidation data type {array.type:#x} is not {data_type:#x}")
    if not array.entry_num:
        fail(errno.EINVAL, "invalidation array is empty")
    kernel = ucmd.ictx.kernel
    ksize = ctypes.sizeof(struct)
    usize = array.entry_len
    out = []
    for i in range(array.entry_num):
        uptr = array.uptr + usize * i
        raw = kernel.copy_from_user(uptr, min(usize, ksize))
        if usize > ksize and not check_zeroed_user(kernel, uptr + ksize, usize - ksize):
            fail(errno.E2BIG, f"entry {i}: bytes past the {ksize}-byte struct are not zero")
        out.append(struct.from_buffer_copy(raw.ljust(ksize, b"\0")))
    return out


class SelftestObj(IommufdObject):
    """``struct selftest_obj`` of TYPE_IDEV: owns a mock device and its binding."""

    TYPE = ObjType.SELFTEST

    def __init__(self) -> None:
        super().__init__()
        self.idev: Device | None = None

    def destroy(self) -> None:
        """``iommufd_selftest_destroy``: detach the RID, unbind, destroy the mock device."""
        if self.idev is not None:
            self.idev.detach(IOMMU_NO_PASID)
            self.idev.unbind()
            self.idev = None


def get_selftest_obj(ucmd: Ucmd, obj_id: int) -> SelftestObj:
    """``iommufd_test_get_selftest_obj``: ENOENT for anything but a selftest device."""
    sobj = ucmd.ictx.objects.get(obj_id, SelftestObj, "selftest device")
    assert sobj.idev is not None
    return sobj


def add_reserved(ucmd: Ucmd) -> int:
    """``iommufd_test_add_reserved``: length 0 → EINVAL; overflow → EOVERFLOW; IOAS →
    ENOENT; then ``iopt_reserve_iova`` (EADDRINUSE over areas or allowed ranges)."""
    cmd = ucmd.cmd
    start, length = cmd.add_reserved.start, cmd.add_reserved.length
    if not length:
        fail(errno.EINVAL, "ADD_RESERVED: length is 0")
    if start + length - 1 > ULONG_MAX:
        fail(errno.EOVERFLOW, f"ADD_RESERVED: start {start:#x} + length {length:#x} overflows")
    ioas = get_ioas(ucmd, cmd.id)
    ioas.iopt.reserve_iova(start, start + length - 1, None)
    return 0


def md_check_refs(ucmd: Ucmd) -> int:
    """``iommufd_test_md_check_refs``: unaligned uptr/length or overflow → EINVAL; then
    page by page, in address order: ``get_user_pages_fast`` (EFAULT for a page not
    mapped), and the page must have exactly ``refs`` long-term pins (EIO otherwise) — so a
    page with the wrong count before a hole answers EIO, not EFAULT."""
    cmd = ucmd.cmd
    uptr, length, refs = cmd.check_refs.uptr, cmd.check_refs.length, cmd.check_refs.refs
    if length % PAGE_SIZE or uptr % PAGE_SIZE or uptr + length > ULONG_MAX:
        fail(errno.EINVAL, "MD_CHECK_REFS: uptr and length must be page aligned")
    kernel = ucmd.ictx.kernel
    mm = kernel.processes.current.mm
    end = _first_unpinnable(mm.aspace, uptr, length)
    vmas = mm.aspace.vmas() if isinstance(mm.aspace, SelfAddressSpace) else []
    for page in range(uptr // PAGE_SIZE, end // PAGE_SIZE):
        count = kernel.pin_count(mm, page) + _file_pins(vmas, page * PAGE_SIZE)
        if count != refs:
            fail(
                errno.EIO,
                f"MD_CHECK_REFS: page {page * PAGE_SIZE:#x} has {count} pins, expected {refs}",
            )
    if end < uptr + length:
        fail(errno.EFAULT, f"MD_CHECK_REFS: page {end:#x} is not mapped")
    return 0


def _first_unpinnable(aspace: AddressSpace, uptr: int, length: int) -> int:
    """The first page-aligned address of ``[uptr, uptr+length)`` that
    ``get_user_pages_fast`` (read) cannot pin, or ``uptr + length`` if every page can."""
    try:
        aspace.check_pinnable(uptr, length, False)
        return uptr + length
    except OSError:
        pass
    va = uptr - uptr % PAGE_SIZE
    while va < uptr + length:
        try:
            aspace.check_pinnable(va, PAGE_SIZE, False)
        except OSError:
            return max(va, uptr)
        va += PAGE_SIZE
    return uptr + length


def _file_pins(vmas: list[Vma], va: int) -> int:
    """Pins taken through IOAS_MAP_FILE on the file page mapped shared at ``va``."""
    for vma in vmas:
        if vma.start <= va < vma.end:
            if not (vma.shared and vma.inode):
                return 0
            pins = FILE_PAGE_PINS.get((vma.dev, vma.inode))
            return 0 if pins is None else pins.get((vma.offset + va - vma.start) // PAGE_SIZE)
    return 0


def mock_domain_cmd(ucmd: Ucmd) -> int:
    """``iommufd_test_mock_domain``: the selftest object; the mock device (dev_flags other
    than NO_DIRTY|PASID → EINVAL); ``iommufd_device_bind``; ``iommufd_device_attach`` of the
    RID to ``cmd.id`` (an IOAS: auto domain; or a HWPT); respond; finalize."""
    cmd, ictx = ucmd.cmd, ucmd.ictx
    dev_flags = 0
    if cmd.op == uapi.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
        dev_flags = cmd.mock_domain_flags.dev_flags
    sobj = ictx.objects.alloc(SelftestObj())
    try:
        if dev_flags & ~MOCK_DEV_VALID_FLAGS:
            fail(errno.EINVAL, f"MOCK_DOMAIN_FLAGS: unknown dev_flags {dev_flags:#x}")
        idev = Device.bind(ictx, MockDriver(ictx.kernel, dev_flags))
        try:
            pt_id = idev.attach(cmd.id)
        except OSError:
            idev.unbind()
            raise
        sobj.idev = idev
        cmd.mock_domain.out_hwpt_id = pt_id
        cmd.mock_domain.out_stdev_id = sobj.id
        cmd.mock_domain.out_idev_id = idev.id
        ucmd.respond()
    except OSError:
        ictx.objects.abort(sobj)
        raise
    ictx.objects.finalize(sobj)
    return 0


def mock_domain_replace(ucmd: Ucmd) -> int:
    """``iommufd_test_mock_domain_replace``: selftest object → ENOENT; then
    ``iommufd_device_replace`` of the RID to ``pt_id`` (an IOAS: auto domain; or a HWPT)."""
    cmd = ucmd.cmd
    sobj = get_selftest_obj(ucmd, cmd.id)
    assert sobj.idev is not None
    cmd.mock_domain_replace.pt_id = sobj.idev.replace(cmd.mock_domain_replace.pt_id)
    ucmd.respond()
    return 0


def get_md_pagetable(ucmd: Ucmd, hwpt_id: int) -> HwptPaging:
    """``get_md_pagetable``: a HWPT_PAGING (ENOENT) whose domain is the mock driver's
    (EINVAL)."""
    hwpt = ucmd.ictx.objects.get(hwpt_id, HwptPaging, "HWPT_PAGING")
    if hwpt.domain.owner != MOCK_OPS:
        fail(errno.EINVAL, f"HWPT {hwpt_id} is not a mock IOMMU domain")
    return hwpt


def get_md_pagetable_nested(ucmd: Ucmd, hwpt_id: int) -> MockNestedDomain:
    """``get_md_pagetable_nested``: a HWPT_NESTED (ENOENT) of the mock driver (EINVAL)."""
    hwpt = ucmd.ictx.objects.get(hwpt_id, HwptNested, "HWPT_NESTED")
    if not isinstance(hwpt.domain, MockNestedDomain):
        fail(errno.EINVAL, f"HWPT {hwpt_id} is not a mock nested domain")
    return hwpt.domain


def md_check_map(ucmd: Ucmd) -> int:
    """``iommufd_test_md_check_pa``: a mock HWPT_PAGING (ENOENT / EINVAL);
    iova/length/uptr not multiples of the domain's smallest page, or overflow → EINVAL;
    then domain page by domain page, in order: ``get_user_pages_fast`` of the page at
    ``uptr`` (EFAULT if not mapped), and the domain page must translate to it at the same
    offset (EINVAL otherwise) — a mismatch before a hole answers EINVAL."""
    cmd = ucmd.cmd
    hwpt = get_md_pagetable(ucmd, cmd.id)
    iova, length, uptr = cmd.check_map.iova, cmd.check_map.length, cmd.check_map.uptr
    page_size = hwpt.domain.pgsize_bitmap & -hwpt.domain.pgsize_bitmap
    if iova % page_size or length % page_size or uptr % page_size or uptr + length > ULONG_MAX:
        fail(errno.EINVAL, f"MD_CHECK_MAP: iova/length/uptr not multiples of {page_size:#x}")
    kernel = ucmd.ictx.kernel
    aspace = kernel.processes.current.mm.aspace
    end = _first_unpinnable(aspace, uptr, length)
    assert isinstance(aspace, SelfAddressSpace)
    while length:
        if uptr >= end:
            fail(errno.EFAULT, f"MD_CHECK_MAP: uptr {uptr:#x} is not mapped")
        runs = kernel.phys.pin_user(aspace, uptr, 1)
        expected = runs[0][1] * PAGE_SIZE + uptr % PAGE_SIZE
        io_phys = hwpt.domain.iova_to_phys(iova)
        if io_phys != expected:
            got = "nothing" if io_phys is None else f"{io_phys:#x}"
            fail(
                errno.EINVAL,
                f"MD_CHECK_MAP: iova {iova:#x} translates to {got}, the page at uptr "
                f"{uptr:#x} is {expected:#x}",
            )
        iova, uptr, length = iova + page_size, uptr + page_size, length - page_size
    return 0


def md_check_iotlb(ucmd: Ucmd) -> int:
    """``iommufd_test_md_check_iotlb``: a mock nested HWPT (ENOENT / EINVAL); iotlb_id > 3
    or a different value → EINVAL."""
    cmd = ucmd.cmd
    domain = get_md_pagetable_nested(ucmd, cmd.id)
    iotlb_id, expected = cmd.check_iotlb.id, cmd.check_iotlb.iotlb
    if iotlb_id > uapi.MOCK_NESTED_DOMAIN_IOTLB_ID_MAX or domain.iotlb[iotlb_id] != expected:
        got = (
            f"{domain.iotlb[iotlb_id]:#x}"
            if iotlb_id <= uapi.MOCK_NESTED_DOMAIN_IOTLB_ID_MAX
            else "out of range"
        )
        fail(errno.EINVAL, f"MD_CHECK_IOTLB: iotlb[{iotlb_id}] is {got}, not {expected:#x}")
    return 0


def _mock_driver(ucmd: Ucmd, dev_id: int) -> tuple[Device, MockDriver]:
    idev = ucmd.ictx.objects.get(dev_id, Device, "device")
    if not isinstance(idev.driver, MockDriver):
        fail(errno.EINVAL, f"device {dev_id} is not a mock device")
    return idev, idev.driver


def dev_check_cache(ucmd: Ucmd) -> int:
    """``iommufd_test_dev_check_cache``: the device → ENOENT; cache_id > 3 or a different
    value → EINVAL."""
    cmd = ucmd.cmd
    idev = ucmd.ictx.objects.get(cmd.id, Device, "device")
    driver = idev.driver
    if not isinstance(driver, MockDriver):
        # 7.3 takes container_of() a mock_dev that is not one; the sim refuses instead
        fail(errno.EINVAL, f"DEV_CHECK_CACHE: device {cmd.id} is not a mock device")
    cache_id, expected = cmd.check_dev_cache.id, cmd.check_dev_cache.cache
    if cache_id > uapi.MOCK_DEV_CACHE_ID_MAX or driver.cache[cache_id] != expected:
        fail(errno.EINVAL, f"DEV_CHECK_CACHE: cache[{cache_id}] is not {expected:#x}")
    return 0


def set_temp_memory_limit(ucmd: Ucmd) -> int:
    """SET_TEMP_MEMORY_LIMIT: below ``sizeof(unsigned long) + sizeof(u32)`` → EINVAL."""
    limit = ucmd.cmd.memory_limit.limit
    if limit < 8 + 4:
        fail(errno.EINVAL, f"SET_TEMP_MEMORY_LIMIT: {limit} is below the batch element size 12")
    pages.temp_memory_limit = limit
    return 0


def dirty(ucmd: Ucmd) -> int:
    """``iommufd_test_dirty``: page_size or length 0, iova/length not multiples of
    page_size, or no bitmap → EINVAL; more than 16M * 8 pages → EOVERFLOW; a mock
    HWPT_PAGING (ENOENT / EINVAL) with dirty tracking enabled (EINVAL); the bitmap
    (EFAULT); mark every IOVA whose bit is set dirty in the page table (the generic pt
    ``set_dirty``); ``out_nr_dirty`` = bits set."""
    cmd = ucmd.cmd
    d = cmd.dirty
    iova, length, page_size, uptr = d.iova, d.length, d.page_size, d.uptr
    if not page_size or not length or iova % page_size or length % page_size or not uptr:
        fail(errno.EINVAL, "DIRTY: bad page_size/length/iova/uptr")
    nmax = length // page_size
    if nmax > SZ_16M * 8:
        fail(errno.EOVERFLOW, f"DIRTY: {nmax} pages is more than {SZ_16M * 8}")
    hwpt = get_md_pagetable(ucmd, cmd.id)
    hw = hwpt.domain.hw
    if not hw.dirty_tracking:
        fail(errno.EINVAL, f"DIRTY: dirty tracking is not enabled on HWPT {hwpt.id}")
    bitmap = ucmd.ictx.kernel.copy_from_user(uptr, (nmax + 7) // 8)
    count = hw.pagetable.set_dirty_bitmap(iova, page_size, bitmap, nmax)
    cmd.dirty.out_nr_dirty = count
    ucmd.respond()
    return 0


def trigger_vevent(ucmd: Ucmd) -> int:
    """``iommufd_test_trigger_vevent``: the device → ENOENT; not attached to a nested domain
    of a vIOMMU (no vDEVICE id recorded) → ENOENT; then
    ``iommufd_viommu_report_event(SELFTEST, {virt_id})`` (no vEVENTQ → EOPNOTSUPP)."""
    cmd = ucmd.cmd
    idev = ucmd.ictx.objects.get(cmd.trigger_vevent.dev_id, Device, "device")
    mdev = idev.driver
    if not isinstance(mdev, MockDriver):
        # 7.3 takes container_of() a mock_dev that is not one; the sim refuses instead
        fail(errno.EINVAL, f"TRIGGER_VEVENT: device {idev.id} is not a mock device")
    if mdev.viommu is None or not mdev.vdev_id:
        fail(
            errno.ENOENT,
            f"TRIGGER_VEVENT: device {idev.id} is not attached to a vIOMMU's nested domain",
        )
    event = uapi.iommu_viommu_event_selftest(virt_id=mdev.vdev_id)
    rc = mdev.viommu.report_event(uapi.IOMMU_VEVENTQ_TYPE_SELFTEST, bytes(event))
    if rc:
        fail(-rc, f"TRIGGER_VEVENT: vIOMMU {mdev.viommu.id} has no SELFTEST vEVENTQ")
    return 0


def trigger_iopf(ucmd: Ucmd) -> int:
    """``iommufd_test_trigger_iopf``: the device → ENOENT, not a mock device → EINVAL; a
    one-page (LAST_PAGE) page request, PASID-tagged unless ``pasid`` is 0, reported to the
    iommu core (``iommu_report_device_fault``, whose result is ignored)."""
    cmd = ucmd.cmd
    t = cmd.trigger_iopf
    idev, _ = _mock_driver(ucmd, t.dev_id)
    flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE
    if t.pasid != IOMMU_NO_PASID:
        flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID
    prm = uapi.iommu_hwpt_pgfault(
        flags=flags, pasid=t.pasid, grpid=t.grpid, perm=t.perm, addr=t.addr
    )
    report_device_fault(idev, prm)
    return 0


DMABUF_FILE_NAME = "dmabuf"


class MockDmaBuf:
    """``struct iommufd_test_dma_buf`` behind a dma-buf fd: the exporter's zeroed memory."""

    def __init__(self, length: int) -> None:
        memfd = os.memfd_create("iommufd_test_dma_buf", os.MFD_CLOEXEC)
        os.ftruncate(memfd, length)
        self.dma_buf = DmaBuf(memfd, length)

    def release(self) -> None:
        """``iommufd_test_dma_buf_release``: importers keep their own reference."""
        if self.dma_buf.memfd >= 0:
            os.close(self.dma_buf.memfd)
            self.dma_buf.memfd = -1


def dmabuf_get(ucmd: Ucmd) -> int:
    """``iommufd_test_dmabuf_get``: the length is rounded up to PAGE_SIZE; 0 or more than
    512 pages → EINVAL; a dma-buf of zeroed memory and a new fd for it.

    7.3 installs the fd and then returns 0 instead of it (``dma_buf_fd``'s result is
    dropped), so its own ``dmabuf_*`` selftests map fd 0 and fail. The simulator returns the
    new fd, as intended (the ``dmabuf_*`` ports check 0 when run on the real kernel)."""
    cmd = ucmd.cmd
    length = (cmd.dmabuf_get.length + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
    if not length or length > PAGE_SIZE * 512:
        fail(errno.EINVAL, f"DMABUF_GET: length {cmd.dmabuf_get.length:#x} not in 1..512 pages")
    exporter = MockDmaBuf(length)
    anon = ucmd.ictx.kernel.anon_inodes
    fdno = anon.get_unused_fd(DMABUF_FILE_NAME)
    anon.fd_install(fdno, AnonFile(DMABUF_FILE_NAME, exporter, exporter.release))
    return fdno


def dmabuf_revoke(ucmd: Ucmd) -> int:
    """``iommufd_test_dmabuf_revoke``: ``dma_buf_get`` (not an fd → EBADF, not a dma-buf →
    EINVAL); another exporter's → EOPNOTSUPP; set ``revoked`` and invalidate every
    importer's mapping (they stay revoked after an un-revoke)."""
    cmd = ucmd.cmd
    fd = cmd.dmabuf_revoke.dmabuf_fd
    anon = ucmd.ictx.kernel.anon_inodes.fget(fd)
    if anon is None:
        try:
            os.fstat(fd)
        except OSError:
            fail(errno.EBADF, f"DMABUF_REVOKE: fd {fd} is not open")
        fail(errno.EINVAL, f"DMABUF_REVOKE: fd {fd} is not a dma-buf")
    exporter = anon.private_data
    if not isinstance(exporter, MockDmaBuf):
        fail(errno.EINVAL, f"DMABUF_REVOKE: fd {fd} is not a dma-buf of the mock exporter")
    exporter.dma_buf.revoked = bool(cmd.dmabuf_revoke.revoked)
    exporter.dma_buf.invalidate_mappings()
    return 0


def _get_hwpt(ucmd: Ucmd, hwpt_id: int) -> HwPagetable:
    """``iommufd_get_hwpt``: ENOENT, or EINVAL for an object that is not a HWPT."""
    obj = ucmd.ictx.objects.lookup(hwpt_id)
    if obj is None:
        fail(errno.ENOENT, f"no object with id {hwpt_id}")
    if not isinstance(obj, HwPagetable):
        fail(errno.EINVAL, f"object {hwpt_id} is a {type(obj).__name__}, not a HWPT")
    return obj


def pasid_check_hwpt(ucmd: Ucmd) -> int:
    """``iommufd_test_pasid_check_hwpt``: selftest object → ENOENT; ``hwpt_id`` 0: the
    PASID must have nothing attached (EINVAL); else the HWPT (ENOENT/EINVAL) must be the
    domain attached at the PASID (EINVAL)."""
    cmd = ucmd.cmd
    sobj = get_selftest_obj(ucmd, cmd.id)
    assert sobj.idev is not None
    pasid, hwpt_id = cmd.pasid_check.pasid, cmd.pasid_check.hwpt_id
    handle = sobj.idev.igroup.handles.get(pasid)
    attached = None if handle is None else handle.domain
    if not hwpt_id:
        if attached is not None:
            fail(errno.EINVAL, f"PASID_CHECK_HWPT: PASID {pasid} is attached")
        return 0
    hwpt = _get_hwpt(ucmd, hwpt_id)
    if attached is not hwpt.domain:
        fail(errno.EINVAL, f"PASID_CHECK_HWPT: PASID {pasid} is not attached to HWPT {hwpt_id}")
    return 0


def pasid_attach(ucmd: Ucmd) -> int:
    """``iommufd_test_pasid_attach``: selftest object → ENOENT; ``iommufd_device_attach``
    at the PASID (a detach undoes it when the response cannot be written)."""
    cmd = ucmd.cmd
    sobj = get_selftest_obj(ucmd, cmd.id)
    assert sobj.idev is not None
    pasid = cmd.pasid_attach.pasid
    cmd.pasid_attach.pt_id = sobj.idev.attach(cmd.pasid_attach.pt_id, pasid)
    try:
        ucmd.respond()
    except OSError:
        sobj.idev.detach(pasid)
        raise
    return 0


def pasid_replace(ucmd: Ucmd) -> int:
    """``iommufd_test_pasid_replace``: selftest object → ENOENT; ``iommufd_device_replace``
    at the PASID."""
    cmd = ucmd.cmd
    sobj = get_selftest_obj(ucmd, cmd.id)
    assert sobj.idev is not None
    cmd.pasid_attach.pt_id = sobj.idev.replace(cmd.pasid_attach.pt_id, cmd.pasid_attach.pasid)
    ucmd.respond()
    return 0


def pasid_detach(ucmd: Ucmd) -> int:
    """``iommufd_test_pasid_detach``: selftest object → ENOENT; ``iommufd_device_detach``
    (nothing attached: nothing happens)."""
    cmd = ucmd.cmd
    sobj = get_selftest_obj(ucmd, cmd.id)
    assert sobj.idev is not None
    sobj.idev.detach(cmd.pasid_detach.pasid)
    return 0


def iommufd_test(ucmd: Ucmd) -> int:
    """``IOMMU_TEST_CMD``: dispatch on ``op``; unknown op → EOPNOTSUPP."""
    op = ucmd.cmd.op
    handler = _OPS.get(op)
    if handler is not None:
        return handler(ucmd)
    if op in ACCESS_OPS:
        return ACCESS_OPS[op](ucmd)
    fail(errno.EOPNOTSUPP, f"IOMMU_TEST_CMD: op {op} is not supported by the simulated mock driver")


_OPS = {
    uapi.IOMMU_TEST_OP_ADD_RESERVED: add_reserved,
    uapi.IOMMU_TEST_OP_MOCK_DOMAIN: mock_domain_cmd,
    uapi.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: mock_domain_cmd,
    uapi.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: mock_domain_replace,
    uapi.IOMMU_TEST_OP_MD_CHECK_MAP: md_check_map,
    uapi.IOMMU_TEST_OP_MD_CHECK_REFS: md_check_refs,
    uapi.IOMMU_TEST_OP_MD_CHECK_IOTLB: md_check_iotlb,
    uapi.IOMMU_TEST_OP_DEV_CHECK_CACHE: dev_check_cache,
    uapi.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT: set_temp_memory_limit,
    uapi.IOMMU_TEST_OP_DIRTY: dirty,
    uapi.IOMMU_TEST_OP_TRIGGER_IOPF: trigger_iopf,
    uapi.IOMMU_TEST_OP_TRIGGER_VEVENT: trigger_vevent,
    uapi.IOMMU_TEST_OP_DMABUF_GET: dmabuf_get,
    uapi.IOMMU_TEST_OP_DMABUF_REVOKE: dmabuf_revoke,
    uapi.IOMMU_TEST_OP_PASID_ATTACH: pasid_attach,
    uapi.IOMMU_TEST_OP_PASID_REPLACE: pasid_replace,
    uapi.IOMMU_TEST_OP_PASID_DETACH: pasid_detach,
    uapi.IOMMU_TEST_OP_PASID_CHECK_HWPT: pasid_check_hwpt,
}
