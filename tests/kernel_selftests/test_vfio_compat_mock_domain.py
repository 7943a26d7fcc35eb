"""``FIXTURE(vfio_compat_mock_domain)`` of ``tools/testing/selftests/iommu/iommufd.c``
(Linux 7.3): every test of both variants (``Ver1v2`` = ``VFIO_TYPE1v2_IOMMU``, ``Ver1v0`` =
``VFIO_TYPE1_IOMMU``). Setup makes what VFIO would call a group (an IOAS with a mock
domain), sets it as the compat IOAS and ``VFIO_SET_IOMMU``s the variant's version.

``huge_map`` needs hugetlb pages (``MAP_HUGETLB | MAP_POPULATE``); without them it skips
(the host cannot run it; the guest has them). ``shuffle_array`` uses a seeded ``random``
in place of ``rand()``.

Tests are ``test_vfio_compat_mock_domain__<variant>__<name>``.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

from ioasid import uapi
from ioasid.testing.libc import MAP_FAILED, MAP_HUGETLB, MAP_POPULATE

from .utils import (
    BUFFER_SIZE,
    HUGEPAGE_SIZE,
    PAGE_SIZE,
    TEST_F,
    Fixture,
    buffer,
    buffer_mem,
    expect_errno,
    libc_mmap,
    libc_munmap,
)

pytestmark = pytest.mark.oracle

MOCK_APERTURE_START = uapi.MOCK_APERTURE_START
MOCK_APERTURE_LAST = uapi.MOCK_APERTURE_LAST


@dataclass(frozen=True)
class Variant:
    version: int


VARIANTS = {
    "Ver1v2": Variant(uapi.VFIO_TYPE1v2_IOMMU),
    "Ver1v0": Variant(uapi.VFIO_TYPE1_IOMMU),
}


class VfioCompatMockDomain(Fixture):
    """``FIXTURE(vfio_compat_mock_domain)``: fd, ioas_id."""

    def __init__(self, backend: ModuleType, variant: Variant) -> None:
        super().__init__(backend)
        self.variant = variant
        # what VFIO would consider a group
        self.ioas_id = self.test_ioctl_ioas_alloc()
        self.test_cmd_mock_domain(self.ioas_id)
        # attach it to the vfio compat
        cmd = uapi.iommu_vfio_ioas(
            size=ctypes.sizeof(uapi.iommu_vfio_ioas),
            op=uapi.IOMMU_VFIO_IOAS_SET,
            ioas_id=self.ioas_id,
        )
        assert self.ioctl(uapi.IOMMU_VFIO_IOAS, cmd) == 0
        assert self.ioctl(uapi.VFIO_SET_IOMMU, variant.version) == 0
        self.huge: tuple[int, int] | None = None


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[VfioCompatMockDomain]:
    fixture = VfioCompatMockDomain(backend, request.function.variant)
    yield fixture
    fixture.teardown()
    if fixture.huge is not None:
        libc_munmap(*fixture.huge)


vfio_compat_mock_domain = TEST_F("vfio_compat_mock_domain", VARIANTS, globals())


@vfio_compat_mock_domain
def simple_close(self: VfioCompatMockDomain) -> None:
    pass


@vfio_compat_mock_domain
def option_huge_pages(self: VfioCompatMockDomain) -> None:
    cmd = uapi.iommu_option(
        size=ctypes.sizeof(uapi.iommu_option),
        option_id=uapi.IOMMU_OPTION_HUGE_PAGES,
        op=uapi.IOMMU_OPTION_OP_GET,
        val64=3,
        object_id=self.ioas_id,
    )
    assert self.ioctl(uapi.IOMMU_OPTION, cmd) == 0
    assert cmd.val64 == (0 if self.variant.version == uapi.VFIO_TYPE1_IOMMU else 1)


def _ioctl_check_buf(self: VfioCompatMockDomain, request: int) -> None:
    """``ioctl_check_buf``: the command sits at ``buffer``; everything past its ``argsz``
    is 0xAA before and must still be after (the kernel never writes past argsz)."""
    cmd_len = int.from_bytes(buffer_mem[:4], "little")
    buffer_mem[cmd_len:BUFFER_SIZE] = b"\xaa" * (BUFFER_SIZE - cmd_len)
    # the whole buffer (larger than fcntl's scratch copy) so the kernel works on `buffer`
    # itself: fcntl.ioctl cannot take an address above INT_MAX as an int
    assert self.ioctl(request, buffer_mem) == 0
    assert bytes(buffer_mem[cmd_len:BUFFER_SIZE]) == b"\xaa" * (BUFFER_SIZE - cmd_len)


def _info() -> uapi.vfio_iommu_type1_info:
    return uapi.vfio_iommu_type1_info.from_buffer_copy(
        buffer_mem[: ctypes.sizeof(uapi.vfio_iommu_type1_info)]
    )


def _set_info(argsz: int) -> None:
    """``*info_cmd = (struct vfio_iommu_type1_info){ .argsz = argsz }``."""
    size = ctypes.sizeof(uapi.vfio_iommu_type1_info)
    buffer_mem[:size] = bytes(uapi.vfio_iommu_type1_info(argsz=argsz))


def _check_vfio_info_cap_chain(info: uapi.vfio_iommu_type1_info) -> None:
    hdr_size = ctypes.sizeof(uapi.vfio_info_cap_header)
    assert info.argsz >= info.cap_offset + hdr_size
    off = info.cap_offset
    while True:
        cap = uapi.vfio_info_cap_header.from_buffer_copy(buffer_mem[off : off + hdr_size])
        cap_size = (cap.next if cap.next else info.argsz) - off
        if cap.id == uapi.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
            n = ctypes.sizeof(uapi.vfio_iommu_type1_info_cap_iova_range)
            data = uapi.vfio_iommu_type1_info_cap_iova_range.from_buffer_copy(
                buffer_mem[off : off + n]
            )
            assert data.header.version == 1
            assert data.nr_iovas == 1
            r = uapi.vfio_iova_range.from_buffer_copy(buffer_mem[off + n : off + n + 16])
            assert r.start == MOCK_APERTURE_START
            assert r.end == MOCK_APERTURE_LAST
        elif cap.id == uapi.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
            assert cap.version == 1
            assert cap_size == ctypes.sizeof(uapi.vfio_iommu_type1_info_dma_avail)
        else:
            raise AssertionError(f"unknown capability id {cap.id}")
        if not cap.next:
            break
        assert info.argsz >= cap.next + hdr_size
        assert cap.next >= off
        off = cap.next


@vfio_compat_mock_domain
def get_info(self: VfioCompatMockDomain) -> None:
    flags = uapi.VFIO_IOMMU_INFO_PGSIZES | uapi.VFIO_IOMMU_INFO_CAPS
    # pre-cap ABI
    _set_info(uapi.vfio_iommu_type1_info.offsetof("cap_offset"))
    _ioctl_check_buf(self, uapi.VFIO_IOMMU_GET_INFO)
    assert _info().iova_pgsizes != 0
    assert _info().flags == flags

    # read the cap chain size
    _set_info(ctypes.sizeof(uapi.vfio_iommu_type1_info))
    _ioctl_check_buf(self, uapi.VFIO_IOMMU_GET_INFO)
    info = _info()
    assert info.iova_pgsizes != 0
    assert info.flags == flags
    assert info.cap_offset == 0
    assert ctypes.sizeof(uapi.vfio_iommu_type1_info) < info.argsz

    # read the caps: the kernel never makes a corrupted chain
    caplen = info.argsz
    for i in range(ctypes.sizeof(uapi.vfio_iommu_type1_info), caplen):
        _set_info(i)
        _ioctl_check_buf(self, uapi.VFIO_IOMMU_GET_INFO)
        info = _info()
        assert info.flags == flags
        if not info.cap_offset:
            continue
        _check_vfio_info_cap_chain(info)


def _shuffle_array(array: list[int]) -> None:
    rng = random.Random(0)
    n = len(array)
    for i in range(n):
        other = rng.randrange(n - i)
        array[i], array[other] = array[other], array[i]


@vfio_compat_mock_domain
def map(self: VfioCompatMockDomain) -> None:
    map_cmd = uapi.vfio_iommu_type1_dma_map(
        argsz=ctypes.sizeof(uapi.vfio_iommu_type1_dma_map),
        flags=uapi.VFIO_DMA_MAP_FLAG_READ | uapi.VFIO_DMA_MAP_FLAG_WRITE,
        vaddr=buffer,
        size=BUFFER_SIZE,
        iova=MOCK_APERTURE_START,
    )
    unmap_cmd = uapi.vfio_iommu_type1_dma_unmap(
        argsz=ctypes.sizeof(uapi.vfio_iommu_type1_dma_unmap),
        size=BUFFER_SIZE,
        iova=MOCK_APERTURE_START,
    )

    # simple map/unmap
    assert self.ioctl(uapi.VFIO_IOMMU_MAP_DMA, map_cmd) == 0
    assert self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd) == 0
    assert unmap_cmd.size == BUFFER_SIZE
    # unmap of empty is success
    assert self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd) == 0

    # UNMAP_FLAG_ALL requires 0 iova/size
    assert self.ioctl(uapi.VFIO_IOMMU_MAP_DMA, map_cmd) == 0
    unmap_cmd.flags = uapi.VFIO_DMA_UNMAP_FLAG_ALL
    with expect_errno(errno.EINVAL):
        self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd)

    unmap_cmd.iova = 0
    unmap_cmd.size = 0
    assert self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd) == 0
    assert unmap_cmd.size == BUFFER_SIZE

    # small pages
    pages_iova = []
    for i in range(BUFFER_SIZE // PAGE_SIZE):
        map_cmd.iova = MOCK_APERTURE_START + i * PAGE_SIZE
        pages_iova.append(map_cmd.iova)
        map_cmd.vaddr = buffer + i * PAGE_SIZE
        map_cmd.size = PAGE_SIZE
        assert self.ioctl(uapi.VFIO_IOMMU_MAP_DMA, map_cmd) == 0
    _shuffle_array(pages_iova)

    unmap_cmd.flags = 0
    unmap_cmd.size = PAGE_SIZE
    for iova in pages_iova:
        unmap_cmd.iova = iova
        assert self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd) == 0


@vfio_compat_mock_domain
def huge_map(self: VfioCompatMockDomain) -> None:
    buf_size = HUGEPAGE_SIZE * 2
    map_cmd = uapi.vfio_iommu_type1_dma_map(
        argsz=ctypes.sizeof(uapi.vfio_iommu_type1_dma_map),
        flags=uapi.VFIO_DMA_MAP_FLAG_READ | uapi.VFIO_DMA_MAP_FLAG_WRITE,
        size=buf_size,
        iova=MOCK_APERTURE_START,
    )
    unmap_cmd = uapi.vfio_iommu_type1_dma_unmap(
        argsz=ctypes.sizeof(uapi.vfio_iommu_type1_dma_unmap)
    )

    # huge pages and splitting
    buf = libc_mmap(
        buf_size,
        mmap.PROT_READ | mmap.PROT_WRITE,
        mmap.MAP_SHARED | mmap.MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE,
    )
    if buf == MAP_FAILED:
        pytest.skip(f"MAP_HUGETLB mmap failed: {os.strerror(ctypes.get_errno())}")
    try:
        map_cmd.vaddr = buf
        assert self.ioctl(uapi.VFIO_IOMMU_MAP_DMA, map_cmd) == 0

        unmap_cmd.size = buf_size // 16
        pages_iova = [MOCK_APERTURE_START + i * unmap_cmd.size for i in range(16)]
        _shuffle_array(pages_iova)

        # type1 mode can cut up larger mappings, type1v2 always fails
        for iova in pages_iova:
            unmap_cmd.iova = iova
            unmap_cmd.size = buf_size // 16
            if self.variant.version == uapi.VFIO_TYPE1_IOMMU:
                assert self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd) == 0
            else:
                with expect_errno(errno.ENOENT):
                    self.ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unmap_cmd)
    finally:
        # the C test leaves the mapping to process exit: unmap it after the teardown
        self.huge = (buf, buf_size)
