"""Proof that ``ioasid.uapi`` is the C ABI: a generated C program, compiled against the
vendored 7.3 uapi headers in ``include/``, prints the size and layout of every struct we
declare and the value of every constant and ioctl number; all must match ours. The reverse
direction (everything the headers declare that we must have) is checked by parsing them.
"""

from __future__ import annotations

import ctypes
import enum
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ioasid.uapi import Struct, iommufd, iommufd_test, vfio

INCLUDE = Path(__file__).parent / "include"
HEADERS = {
    iommufd: INCLUDE / "linux" / "iommufd.h",
    vfio: INCLUDE / "linux" / "vfio.h",
    iommufd_test: INCLUDE / "iommufd_test.h",
}
MODULES = tuple(HEADERS)

# vfio.h is declared in part (see ioasid.uapi.vfio's docstring); these are the omitted
# structs: POWER-only SPAPR TCE / EEH, the deprecated v1 migration region, gfx and NVLink2.
VFIO_OMITTED_STRUCTS = {
    "vfio_device_gfx_plane_info",
    "vfio_region_gfx_edid",
    "vfio_device_migration_info",
    "vfio_region_info_cap_nvlink2_ssatgt",
    "vfio_region_info_cap_nvlink2_lnkspd",
    "vfio_iommu_spapr_tce_ddw_info",
    "vfio_iommu_spapr_tce_info",
    "vfio_eeh_pe_err",
    "vfio_eeh_pe_op",
    "vfio_iommu_spapr_register_memory",
    "vfio_iommu_spapr_tce_create",
    "vfio_iommu_spapr_tce_remove",
}

# The vfio.h names the brief requires, checked by name on top of the value comparison.
VFIO_REQUIRED = {
    "VFIO_API_VERSION",
    "VFIO_TYPE",
    "VFIO_BASE",
    "VFIO_TYPE1_IOMMU",
    "VFIO_TYPE1v2_IOMMU",
    "VFIO_UNMAP_ALL",
    "VFIO_UPDATE_VADDR",
    "VFIO_NOIOMMU_IOMMU",
    "VFIO_GET_API_VERSION",
    "VFIO_CHECK_EXTENSION",
    "VFIO_SET_IOMMU",
    "VFIO_GROUP_GET_STATUS",
    "VFIO_GROUP_SET_CONTAINER",
    "VFIO_GROUP_UNSET_CONTAINER",
    "VFIO_GROUP_GET_DEVICE_FD",
    "VFIO_GROUP_FLAGS_VIABLE",
    "VFIO_GROUP_FLAGS_CONTAINER_SET",
    "VFIO_DEVICE_GET_INFO",
    "VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP",
    "VFIO_DEVICE_INFO_CAP_ZPCI_BASE",
    "VFIO_DEVICE_BIND_IOMMUFD",
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    "VFIO_DEVICE_ATTACH_PASID",
    "VFIO_DEVICE_DETACH_PASID",
    "VFIO_DEVICE_FEATURE",
    "VFIO_DEVICE_FEATURE_GET",
    "VFIO_DEVICE_FEATURE_SET",
    "VFIO_DEVICE_FEATURE_PROBE",
    "VFIO_DEVICE_FEATURE_MASK",
    "VFIO_IOMMU_GET_INFO",
    "VFIO_IOMMU_INFO_PGSIZES",
    "VFIO_IOMMU_INFO_CAPS",
    "VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE",
    "VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION",
    "VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL",
    "VFIO_IOMMU_MAP_DMA",
    "VFIO_IOMMU_UNMAP_DMA",
    "VFIO_DMA_MAP_FLAG_READ",
    "VFIO_DMA_MAP_FLAG_WRITE",
    "VFIO_DMA_MAP_FLAG_VADDR",
    "VFIO_DMA_UNMAP_FLAG_ALL",
    "VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP",
    "VFIO_DMA_UNMAP_FLAG_VADDR",
    "VFIO_IOMMU_DIRTY_PAGES",
    "vfio_info_cap_header",
    "vfio_group_status",
    "vfio_device_info",
    "vfio_device_info_cap_pci_atomic_comp",
    "vfio_device_bind_iommufd",
    "vfio_device_attach_iommufd_pt",
    "vfio_device_detach_iommufd_pt",
    "vfio_device_feature",
    "vfio_iommu_type1_info",
    "vfio_iommu_type1_info_cap_iova_range",
    "vfio_iova_range",
    "vfio_iommu_type1_info_cap_migration",
    "vfio_iommu_type1_info_dma_avail",
    "vfio_iommu_type1_dma_map",
    "vfio_iommu_type1_dma_unmap",
    "vfio_iommu_type1_dirty_bitmap",
    "vfio_iommu_type1_dirty_bitmap_get",
    "vfio_bitmap",
}

# iommufd_ioctl_ops[] of drivers/iommu/iommufd/main.c (7.3): (ioctl, struct, last field),
# in table order, transcribed independently of ioasid.uapi.iommufd.IOMMUFD_IOCTLS.
KERNEL_IOCTL_OPS = [
    ("IOMMU_DESTROY", "iommu_destroy", "id"),
    ("IOMMU_FAULT_QUEUE_ALLOC", "iommu_fault_alloc", "out_fault_fd"),
    ("IOMMU_GET_HW_INFO", "iommu_hw_info", "__reserved"),
    ("IOMMU_HW_QUEUE_ALLOC", "iommu_hw_queue_alloc", "length"),
    ("IOMMU_HWPT_ALLOC", "iommu_hwpt_alloc", "__reserved"),
    ("IOMMU_HWPT_GET_DIRTY_BITMAP", "iommu_hwpt_get_dirty_bitmap", "data"),
    ("IOMMU_HWPT_INVALIDATE", "iommu_hwpt_invalidate", "__reserved"),
    ("IOMMU_HWPT_SET_DIRTY_TRACKING", "iommu_hwpt_set_dirty_tracking", "__reserved"),
    ("IOMMU_IOAS_ALLOC", "iommu_ioas_alloc", "out_ioas_id"),
    ("IOMMU_IOAS_ALLOW_IOVAS", "iommu_ioas_allow_iovas", "allowed_iovas"),
    ("IOMMU_IOAS_CHANGE_PROCESS", "iommu_ioas_change_process", "__reserved"),
    ("IOMMU_IOAS_COPY", "iommu_ioas_copy", "src_iova"),
    ("IOMMU_IOAS_IOVA_RANGES", "iommu_ioas_iova_ranges", "out_iova_alignment"),
    ("IOMMU_IOAS_MAP", "iommu_ioas_map", "iova"),
    ("IOMMU_IOAS_MAP_FILE", "iommu_ioas_map_file", "iova"),
    ("IOMMU_IOAS_NOIOMMU_GET_PA", "iommu_ioas_noiommu_get_pa", "out_phys"),
    ("IOMMU_IOAS_UNMAP", "iommu_ioas_unmap", "length"),
    ("IOMMU_OPTION", "iommu_option", "val64"),
    ("IOMMU_VDEVICE_ALLOC", "iommu_vdevice_alloc", "virt_id"),
    ("IOMMU_VEVENTQ_ALLOC", "iommu_veventq_alloc", "out_veventq_fd"),
    ("IOMMU_VFIO_IOAS", "iommu_vfio_ioas", "__reserved"),
    ("IOMMU_VIOMMU_ALLOC", "iommu_viommu_alloc", "out_viommu_id"),
    ("IOMMU_TEST_CMD", "iommu_test_cmd", "last"),
]

_CONSTANT_NAME = re.compile(r"^(?:__)?[A-Z][A-Za-z0-9_]*$")


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def _header_text(module: ModuleType) -> str:
    return _strip_comments(HEADERS[module].read_text())


def _c_body(text: str, keyword: str, tag: str) -> str:
    """The text between the braces of ``<keyword> <tag> { ... }``."""
    m = re.search(rf"\b{keyword}\s+{re.escape(tag)}\s*\{{", text)
    assert m, f"{keyword} {tag} not found in the headers"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end() : i - 1]


def _structs(module: ModuleType) -> list[type[Struct]]:
    return [
        obj
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and isinstance(obj, type)
        and issubclass(obj, Struct)
        and obj.__module__ == module.__name__
    ]


def _constants(module: ModuleType) -> dict[str, int | str]:
    return {
        name: value
        for name, value in vars(module).items()
        if _CONSTANT_NAME.match(name) and isinstance(value, int | str) and not callable(value)
    }


def _enums(module: ModuleType) -> list[type[enum.IntEnum] | type[enum.IntFlag]]:
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, enum.IntEnum | enum.IntFlag)
        and obj.__module__ == module.__name__
    ]


@dataclass(frozen=True)
class _Field:
    path: str  # Python path, "add_reserved.start"
    offset: int
    size: int
    flexible: bool
    signed: bool | None  # None for arrays and aggregates


def _fields(cls: Any, prefix: str = "", base: int = 0) -> Iterator[_Field]:
    for entry in cls._fields_:
        name, ftype = entry[0], entry[1]
        descr = getattr(cls, name)
        offset = base + descr.offset
        if name in getattr(cls, "_anonymous_", ()):
            yield from _fields(ftype, prefix, offset)
            continue
        path = prefix + name
        is_array = issubclass(ftype, ctypes.Array)
        is_aggregate = issubclass(ftype, ctypes.Structure | ctypes.Union)
        signed = None if is_array or is_aggregate else ftype._type_ in "bhilq"
        flexible = is_array and ftype._length_ == 0
        yield _Field(path, offset, ctypes.sizeof(ftype), flexible, signed)
        if is_aggregate:
            yield from _fields(ftype, path + ".", offset)


def _c_path(path: str, body: str) -> str:
    """Our field path in C: a component whose C name is ``__name`` gets it back."""
    parts = []
    for part in path.split("."):
        dunder = f"__{part}"
        if re.search(rf"\b{dunder}\b", body) and not re.search(rf"\b{part}\b", body):
            part = dunder
        parts.append(part)
    return ".".join(parts)


@dataclass(frozen=True)
class _Expect:
    key: str
    ours: str
    c_expr: str  # printf argument list producing the C value


def _expectations() -> list[_Expect]:
    out: list[_Expect] = []
    for module in MODULES:
        text = _header_text(module)
        for cls in _structs(module):
            tag = cls.__name__
            body = _c_body(text, "struct", tag)
            c_type = f"struct {tag}"
            out.append(
                _Expect(f"sizeof(struct {tag})", str(ctypes.sizeof(cls)), f"sizeof({c_type})")
            )
            for f in _fields(cls):
                c_path = _c_path(f.path, body)
                member = f"(({c_type} *)0)->{c_path}"
                where = f"struct {tag} field {c_path}"
                out.append(
                    _Expect(f"offsetof {where}", str(f.offset), f"offsetof({c_type}, {c_path})")
                )
                if f.flexible:
                    continue  # sizeof() of a flexible array member is not C
                out.append(_Expect(f"sizeof {where}", str(f.size), f"sizeof({member})"))
                if f.signed is not None:
                    out.append(
                        _Expect(
                            f"signedness {where}",
                            str(int(f.signed)),
                            f"_Generic({member}, signed char: 1, short: 1, int: 1, long: 1, "
                            f"long long: 1, default: 0)",
                        )
                    )
        for name, value in _constants(module).items():
            out.append(_Expect(name, repr(value), name))
    for op_name, tag, last in KERNEL_IOCTL_OPS:
        c_type = f"struct {tag}"
        expr = f"offsetof({c_type}, {last}) + sizeof((({c_type} *)0)->{last})"
        op = {o.name: o for o in iommufd_test.IOMMUFD_IOCTLS_WITH_TEST}.get(op_name)
        ours = "missing" if op is None else str(op.min_size)
        out.append(_Expect(f"min_size {op_name} = offsetofend({tag}, {last})", ours, expr))
    return out


def _c_print(e: _Expect, index: int) -> str:
    if e.ours.startswith(("'", '"')):
        return f'\tprintf("%d %s\\n", {index}, {e.c_expr});'
    # Python holds the mathematical value; print C's as signed if negative, else unsigned,
    # and C's `1 << 31` (int) as the unsigned value the ABI fields hold.
    return (
        f"\t{{ __typeof__({e.c_expr}) v = {e.c_expr};\n"
        f'\t  if (v < 0 && sizeof(v) <= 4 && {int(_is_ushift(e))}) printf("%d %llu\\n", '
        f"{index}, (unsigned long long)(unsigned int)v);\n"
        f'\t  else if (v < 0) printf("%d %lld\\n", {index}, (long long)v);\n'
        f'\t  else printf("%d %llu\\n", {index}, (unsigned long long)v); }}'
    )


def _is_ushift(e: _Expect) -> bool:
    """A constant our module holds as a non-negative value that C spells as a negative int."""
    return not e.ours.startswith("-")


@pytest.fixture(scope="module")
def c_values(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[_Expect], dict[int, str]]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is required for the uapi ABI proof test and was not found on PATH")
    expects = _expectations()
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/iommufd.h>",
        "#include <linux/vfio.h>",
        '#include "iommufd_test.h"',
        "int main(void)",
        "{",
        *(_c_print(e, i) for i, e in enumerate(expects)),
        "\treturn 0;",
        "}",
    ]
    work = tmp_path_factory.mktemp("uapi_abi")
    src = work / "abi.c"
    src.write_text("\n".join(lines) + "\n")
    exe = work / "abi"
    build = subprocess.run(
        [gcc, "-std=gnu11", "-Wno-overflow", "-I", str(INCLUDE), "-o", str(exe), str(src)],
        capture_output=True,
        text=True,
    )
    if build.returncode:
        pytest.fail(f"the generated C program does not compile:\n{build.stderr[-6000:]}")
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    values: dict[int, str] = {}
    for line in run.stdout.splitlines():
        index, _, value = line.partition(" ")
        values[int(index)] = value
    return expects, values


def test_layouts_constants_and_ioctls_match_c(
    c_values: tuple[list[_Expect], dict[int, str]],
) -> None:
    expects, values = c_values
    mismatches = []
    for i, e in enumerate(expects):
        ours = e.ours.strip("'\"") if e.ours[:1] in "'\"" else e.ours
        if values.get(i) != ours:
            mismatches.append(f"{e.key}: ours {ours}, C {values.get(i)}")
    assert not mismatches, f"{len(mismatches)} ABI mismatches:\n" + "\n".join(mismatches)
    assert len(values) == len(expects) > 1000


def _declared(text: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, text, flags=re.M))


def _declared_structs(text: str, prefixes: tuple[str, ...]) -> set[str]:
    return {t for t in _declared(text, r"\bstruct\s+(\w+)\s*\{") if t.startswith(prefixes)}


def _declared_constants(text: str, prefixes: tuple[str, ...]) -> set[str]:
    defines = _declared(text, r"^\s*#define\s+(\w+)\s")
    enumerators = set()
    for body in re.findall(r"\benum\b[^{;]*\{(.*?)\}", text, flags=re.S):
        enumerators |= set(re.findall(r"^\s*(\w+)\s*(?:=|,|$)", body, flags=re.M))
    names = defines | enumerators
    return {n for n in names if n.startswith(prefixes)}


def _our_struct_names() -> set[str]:
    return {cls.__name__ for module in MODULES for cls in _structs(module)}


def test_every_header_struct_is_declared() -> None:
    wanted = _declared_structs(_header_text(iommufd), ("iommu_", "iommufd_")) | _declared_structs(
        _header_text(iommufd_test), ("iommu_",)
    )
    wanted |= _declared_structs(_header_text(vfio), ("vfio_",)) - VFIO_OMITTED_STRUCTS
    missing = sorted(wanted - _our_struct_names())
    assert not missing, f"structs declared in the headers but not in ioasid.uapi: {missing}"
    assert {"vfio_iommu_type1_info", "iommu_test_cmd", "iommu_hwpt_selftest"} <= wanted


def test_every_iommufd_and_mock_constant_is_declared() -> None:
    wanted = _declared_constants(_header_text(iommufd), ("IOMMU_", "IOMMUFD_"))
    wanted |= _declared_constants(_header_text(iommufd_test), ("IOMMU_", "IOMMUFD_", "MOCK_"))
    ours = set(_constants(iommufd)) | set(_constants(iommufd_test))
    missing = sorted(wanted - ours)
    assert not missing, f"constants declared in the headers but not in ioasid.uapi: {missing}"
    assert "IOMMU_IOAS_NOIOMMU_GET_PA" in wanted and "MOCK_APERTURE_START" in wanted


def test_every_vfio_constant_outside_the_omitted_sections_is_declared() -> None:
    raw = HEADERS[vfio].read_text()
    kept = _strip_comments(raw[: raw.index("Additional API for SPAPR TCE")])
    wanted = _declared_constants(kept, ("VFIO_", "__VFIO_")) - {"VFIO_H"}
    # the state bits of the omitted v1 migration region (struct vfio_device_migration_info)
    wanted -= {n for n in wanted if n.startswith("VFIO_DEVICE_STATE_V1_")}
    wanted -= {"VFIO_DEVICE_STATE_MASK"}
    missing = sorted(wanted - set(_constants(vfio)))
    assert not missing, f"vfio.h constants not in ioasid.uapi.vfio: {missing}"
    names = set(vars(vfio))
    assert names >= VFIO_REQUIRED, sorted(VFIO_REQUIRED - names)


def test_enum_classes_mirror_the_tagged_c_enums() -> None:
    for module in MODULES:
        text = _header_text(module)
        tags = set(re.findall(r"\benum\s+(\w+)\s*\{", text))
        classes = {cls.__name__: cls for cls in _enums(module)}
        assert set(classes) == tags, f"{module.__name__}: enum classes != C enum tags"
        for tag, cls in classes.items():
            body = _c_body(text, "enum", tag)
            c_members = set(re.findall(r"^\s*(\w+)\s*(?:=|,|$)", body, flags=re.M))
            assert set(cls.__members__) == c_members, f"enum {tag} members differ"
            for name, member in cls.__members__.items():
                assert member.value == getattr(module, name), f"{tag}.{name}"
                assert type(getattr(module, name)) is int


def test_dispatch_table_is_the_kernel_table() -> None:
    import ioasid.uapi as uapi

    names = [op.name for op in iommufd_test.IOMMUFD_IOCTLS_WITH_TEST]
    assert names == [name for name, _, _ in KERNEL_IOCTL_OPS]
    for op, (_, tag, _) in zip(
        iommufd_test.IOMMUFD_IOCTLS_WITH_TEST, KERNEL_IOCTL_OPS, strict=True
    ):
        assert op.struct.__name__ == tag
        assert op.request == getattr(uapi, op.name)
    assert {op.request: op for op in iommufd.IOMMUFD_IOCTLS} == iommufd.IOCTL_BY_REQUEST
    assert iommufd_test.IOMMU_TEST_IOCTL.request == 0x3BA0


def test_public_names_are_exported() -> None:
    import ioasid.uapi as uapi

    exported = {name for module in MODULES for name in module.__all__}
    for module in MODULES:
        public = {
            name
            for name, obj in vars(module).items()
            if not name.startswith("_") and not isinstance(obj, ModuleType)
        }
        public -= {"annotations", "enum", "dataclass"}
        public -= {name for name in public if name.startswith("c_")}
        public -= {"Struct", "Union"}
        assert public <= exported, sorted(public - exported)
        assert set(module.__all__) <= set(vars(uapi))
    assert issubclass(uapi.Struct, ctypes.Structure)
    assert issubclass(uapi.Union, ctypes.Union)
