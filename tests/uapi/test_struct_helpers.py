"""The ``Struct`` base and ioctl-number helpers of ``ioasid.uapi._abi``."""

from __future__ import annotations

import ctypes

import pytest

from ioasid.uapi import (
    _IO,
    _IOR,
    _IOW,
    _IOWR,
    IOCTL_BY_REQUEST,
    IOMMU_IOAS_MAP,
    IOMMUFD_IOCTLS,
    iommu_hw_info,
    iommu_ioas_map,
    iommu_test_cmd,
    iommufd_ioas_map_flags,
    vfio_iommu_type1_info_cap_iova_range,
)


def test_to_bytearray_is_the_struct_memory() -> None:
    m = iommu_ioas_map(size=ctypes.sizeof(iommu_ioas_map), flags=3, iova=0x1000)
    raw = m.to_bytearray()
    assert isinstance(raw, bytearray)
    assert len(raw) == 40
    assert raw[:8] == (40).to_bytes(4, "little") + (3).to_bytes(4, "little")
    assert raw[32:40] == (0x1000).to_bytes(8, "little")
    raw[0] = 0
    assert m.size == 40  # a copy, not a view


def test_from_bytes_copies_pads_and_truncates() -> None:
    src = iommu_ioas_map(size=40, ioas_id=7, length=1 << 20).to_bytearray()
    assert iommu_ioas_map.from_bytes(src).length == 1 << 20
    short = iommu_ioas_map.from_bytes(src[:16])
    assert (short.size, short.ioas_id, short.length, short.iova) == (40, 7, 0, 0)
    long = iommu_ioas_map.from_bytes(bytes(src) + b"\xff" * 8)
    assert long.to_bytearray() == src
    view = iommu_ioas_map.from_bytes(memoryview(src))
    src[12] = 1
    assert view.reserved == 0
    assert iommu_ioas_map.from_bytes(b"").to_bytearray() == bytearray(40)
    assert iommu_ioas_map.from_bytes(iommu_ioas_map(iova=9)).iova == 9


def test_offsetofend_and_offsetof() -> None:
    assert iommu_ioas_map.offsetofend("iova") == 40
    assert iommu_ioas_map.offsetof("user_va") == 16
    assert iommu_hw_info.offsetofend("reserved") == 32
    assert iommu_hw_info.offsetof("out_data_type") == 24
    assert iommu_test_cmd.offsetof("add_reserved") == 16
    assert iommu_test_cmd.offsetofend("check_map.uptr") == 40
    assert iommu_test_cmd.offsetofend("last") == 68
    assert vfio_iommu_type1_info_cap_iova_range.offsetof("iova_ranges") == 16
    assert vfio_iommu_type1_info_cap_iova_range.sizeof_field("header") == 8
    with pytest.raises(AttributeError):
        iommu_ioas_map.offsetofend("nonexistent")
    with pytest.raises(AttributeError):
        iommu_test_cmd.offsetofend("check_map.nonexistent")


def test_anonymous_unions_read_as_in_c() -> None:
    cmd = iommu_test_cmd(size=ctypes.sizeof(iommu_test_cmd), op=1)
    cmd.add_reserved.start = 0x1000
    assert cmd.check_map.iova == 0x1000
    info = iommu_hw_info(in_data_type=2)
    assert info.out_data_type == 2


def test_repr_lists_fields() -> None:
    text = repr(iommu_hw_info(size=32, in_data_type=1))
    assert text.startswith("iommu_hw_info(size=32, ")
    assert "in_data_type=1" in text and "reserved=[0, 0, 0]" in text


def test_ioctl_encoding() -> None:
    assert _IO(ord(";"), 0x85) == 0x3B85 == IOMMU_IOAS_MAP
    assert _IOR(ord("T"), 1, 4) == 0x80045401
    assert _IOW(ord("T"), 1, 4) == 0x40045401
    assert _IOWR(ord("T"), 1, 4) == 0xC0045401


def test_dispatch_lookup_and_enum_flags() -> None:
    op = IOCTL_BY_REQUEST[IOMMU_IOAS_MAP]
    assert (op.name, op.struct, op.min_size, op.nr) == ("IOMMU_IOAS_MAP", iommu_ioas_map, 40, 0x85)
    assert len(IOMMUFD_IOCTLS) == len(IOCTL_BY_REQUEST) == 22
    flags = iommufd_ioas_map_flags(6)
    assert flags == iommufd_ioas_map_flags.IOMMU_IOAS_MAP_WRITEABLE | 4
