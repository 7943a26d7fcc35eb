"""The generator: random ioctls for a seed, valid and invalid mixed, steered by the
:class:`~.model.Model` of what backend A answered."""

from __future__ import annotations

import ctypes
import random
from collections.abc import Iterator, Sequence
from typing import Any

from ioasid import uapi
from ioasid.testing.differential.calls import (
    FIXED,
    HOLE_LEN,
    HOLE_OFF,
    HPAGE,
    IOVA_WINDOW,
    KERNEL_VA,
    PAGE,
    RW,
    U64_MAX,
    ULONG_MAX,
    Call,
    struct_of,
)
from ioasid.testing.differential.model import ModelArea
from ioasid.testing.differential.structs import StructAware

PGFAULT_SIZE = ctypes.sizeof(uapi.iommu_hwpt_pgfault)

class Generator(StructAware):
    """Random ioctls for ``seed``, steered by the outcomes it is shown (:meth:`observe`).

    The model is only a guide for producing interesting calls (overlaps, cuts, stale ids);
    nothing is asserted against it.
    """

    OPS: tuple[tuple[str, int], ...] = (
        ("alloc", 6),
        ("destroy", 4),
        ("map", 24),
        ("map_file", 7),
        ("copy", 10),
        ("unmap", 18),
        ("allow", 5),
        ("ranges", 4),
        ("option", 6),
        ("bad_size", 4),
        ("unknown", 2),
    )

    DEVICE_OPS: tuple[tuple[str, int], ...] = (
        ("mock_domain", 6),
        ("hwpt_alloc", 7),
        ("replace", 4),
        ("destroy_obj", 4),
        ("hw_info", 2),
        ("check_map", 5),
        ("check_refs", 3),
        ("add_reserved", 2),
        ("dirty", 6),
        ("create_access", 5),
        ("access_pages", 7),
        ("access_rw", 7),
        ("destroy_access_pages", 2),
        ("close_access", 1),
        ("viommu_alloc", 4),
        ("vdevice_alloc", 3),
        ("nested_alloc", 4),
        ("invalidate", 3),
        ("veventq_alloc", 2),
        ("trigger_vevent", 4),
        ("hw_queue_alloc", 2),
        ("fault_alloc", 1),
        ("trigger_iopf", 1),
        ("close_eventq", 1),
        ("read_eventq", 3),
    )
    """Added by the devices mode: the mock driver's ``IOMMU_TEST_CMD`` ops, HWPTs, dirty
    tracking, access objects, the mock vIOMMU (vDEVICEs, nested HWPTs, invalidation,
    vEVENTQs, HW queues) and IOPF fault queues."""

    def __init__(self, seed: int, *, devices: bool = False, fuzz: bool = False) -> None:
        super().__init__(devices=devices)
        self.fuzz = fuzz
        """Fuzz mode (:mod:`ioasid.testing.fuzz`): every ioctl struct-aware, and mutations
        of the model-steered calls (:class:`~.structs.StructAware`)."""
        self.rng = random.Random(seed)
        self.window = uapi.MOCK_APERTURE_START if devices else IOVA_WINDOW
        """Where fixed IOVAs mostly fall: inside the mock domains' aperture in devices mode."""
        self.steps = 0
        self.n_access = 0
        self.n_eventq = 0
        ops = self.OPS + (self.DEVICE_OPS if devices else ()) + (self.FUZZ_OPS if fuzz else ())
        if fuzz:
            self.init_fuzz()
        names, weights = zip(*ops, strict=True)
        self._names: Sequence[str] = names
        self._weights: Sequence[int] = weights

    # -- choosing ---------------------------------------------------------------------------

    def next_call(self) -> Call:
        self.steps += 1
        if not self.ioas and self.rng.random() < 0.7:
            kind = "alloc"
        elif len(self.ioas) >= 4 and self.rng.random() < 0.1:
            kind = "destroy"
        elif self.devices and self.ioas and not self.devs and self.rng.random() < 0.15:
            kind = "mock_domain"
        elif (
            self.devices
            and any(a.items for a in self.accesses.values())
            and self.rng.random() < 0.08
        ):
            kind = "destroy_access_pages"
        else:
            kind = self.rng.choices(self._names, self._weights)[0]
        call: Call = getattr(self, f"_gen_{kind}")()
        if self.fuzz and call.note != "fuzz" and self.rng.random() < 0.3:
            call = self.mutate(call)
        return call

    def _pick_ioas_id(self, valid: float = 0.9) -> int:
        r = self.rng.random()
        if self.ioas and r < valid:
            return self.rng.choice(sorted(self.ioas))
        r = self.rng.random()
        if self.dead and r < 0.4:
            return self.rng.choice(sorted(self.dead))
        if r < 0.6:
            return 0
        if r < 0.8:
            return self.max_id + 1
        return self.rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 20])

    def _pick_area(self, ioas_id: int) -> tuple[int, ModelArea] | None:
        m = self.ioas.get(ioas_id)
        if m is None or not m.areas:
            return None
        return self.rng.choice(m.sorted_areas())

    def _length(self) -> tuple[int, str]:
        r = self.rng.random()
        if r < 0.70:
            return self.rng.randint(1, 8) * PAGE, ""
        if r < 0.76:
            return HPAGE * self.rng.randint(1, 2), "2 MiB multiple"
        if r < 0.81:
            return self.rng.choice([0x800, 0x1800, PAGE + 1]), "unaligned length"
        if r < 0.85:
            return 0, "zero length"
        if r < 0.89:
            return self.rng.choice([ULONG_MAX, ULONG_MAX - 1]), "length >= ULONG_MAX-1"
        if r < 0.93:
            return 1 << self.rng.choice([40, 62, 63]), "huge length"
        return self.rng.randint(1, 64) * PAGE, ""

    def _fixed_iova(self, ioas_id: int, length: int) -> tuple[int, str]:
        r = self.rng.random()
        area = self._pick_area(ioas_id)
        if area is not None and r < 0.25:
            iova, a = area
            choice = self.rng.randrange(4)
            if choice == 0:
                return iova, "overlaps an area (same start)"
            if choice == 1:
                return a.last + 1, "just after an area"
            if choice == 2:
                return max(iova - length + PAGE, 0), "overlaps an area's start"
            return iova + (a.last - iova) // 2 // PAGE * PAGE, "inside an area"
        if r < 0.80:
            return self.window + self.rng.randrange(0, 8 * IOVA_WINDOW, PAGE), ""
        if r < 0.86:
            return self.window + self.rng.randrange(0, IOVA_WINDOW, PAGE) + 0x800, "unaligned iova"
        if r < 0.90:
            return 0, "iova 0"
        if r < 0.94:
            return ULONG_MAX - self.rng.choice([0, 1, PAGE - 1, 2 * PAGE - 1]), "iova at the top"
        if r < 0.97:
            return 0xFEE00000, "the x86 MSI window (reserved only with a device)"
        return self.rng.randrange(0, 1 << 48, PAGE), "far iova"

    def _user_va(self) -> tuple[str | None, int, str]:
        """``(ref, value, note)``: a symbolic pointer into the region, or an absolute one."""
        if self.devices and self.rng.random() < 0.06:
            off = HOLE_OFF + self.rng.choice([-PAGE, 0, PAGE, HOLE_LEN - PAGE])
            return f"buf+{off:#x}", 0, "va at or next to the munmapped hole"
        r = self.rng.random()
        if r < 0.55:
            return f"buf+{self.rng.randrange(0, 32 << 20, PAGE):#x}", 0, ""
        if r < 0.70:
            return (
                f"buf+{self.rng.choice([0, HPAGE, 2 * HPAGE, 5 * HPAGE]):#x}",
                0,
                "2 MiB aligned va",
            )
        if r < 0.80:
            off = self.rng.randrange(0, 8 << 20, PAGE) + self.rng.choice([0x800, 0x10, 0x1, 0xFFF])
            return f"buf+{off:#x}", 0, "sub-page va"
        if r < 0.86:
            return None, 0, "NULL user_va"
        if r < 0.92:
            return None, KERNEL_VA, "kernel address as user_va"
        return None, ULONG_MAX - self.rng.choice([0, PAGE, 0x7FFF]), "user_va near the top"

    def _map_flags(self) -> tuple[int, str]:
        r = self.rng.random()
        if r < 0.6:
            return RW, ""
        if r < 0.75:
            return uapi.IOMMU_IOAS_MAP_READABLE, "read-only"
        if r < 0.85:
            return uapi.IOMMU_IOAS_MAP_WRITEABLE, "write-only"
        if r < 0.92:
            return 0, "neither R nor W"
        return RW | (1 << self.rng.choice([3, 4, 8, 31])), "unknown flag"

    # -- generators per ioctl --------------------------------------------------------------

    def _gen_alloc(self) -> Call:
        flags = 0 if self.rng.random() < 0.93 else self.rng.choice([1, 1 << 31])
        note = "bad flags" if flags else ""
        return Call("IOMMU_IOAS_ALLOC", uapi.IOMMU_IOAS_ALLOC, {"flags": flags}, note=note)

    def _gen_destroy(self) -> Call:
        obj = self._pick_ioas_id(valid=0.7)
        note = "live IOAS" if obj in self.ioas else "stale/absent id"
        return Call("IOMMU_DESTROY", uapi.IOMMU_DESTROY, {"id": obj}, note=note)

    def _gen_map(self) -> Call:
        ioas_id = self._pick_ioas_id()
        flags, fnote = self._map_flags()
        fixed = self.rng.random() < 0.6
        length, lnote = self._length()
        ref, va, vnote = self._user_va()
        fields = {"flags": flags | (FIXED if fixed else 0), "ioas_id": ioas_id, "length": length}
        notes = [fnote, lnote, vnote]
        if fixed:
            iova, inote = self._fixed_iova(ioas_id, length)
            fields["iova"] = iova
            notes.append(inote)
        elif self.rng.random() < 0.2:
            fields["iova"] = self.rng.randrange(0, 1 << 32, PAGE)
            notes.append("iova ignored without FIXED_IOVA")
        if self.rng.random() < 0.04:
            fields["reserved"] = self.rng.choice([1, 0x80000000])
            notes.append("__reserved != 0")
        refs = {}
        if ref is not None:
            refs["user_va"] = ref
        else:
            fields["user_va"] = va
        note = ", ".join(n for n in notes if n)
        return Call("IOMMU_IOAS_MAP", uapi.IOMMU_IOAS_MAP, fields, refs, note=note)

    def _gen_map_file(self) -> Call:
        ioas_id = self._pick_ioas_id()
        flags, fnote = self._map_flags()
        fixed = self.rng.random() < 0.5
        length, lnote = self._length()
        notes = [fnote, lnote]
        r = self.rng.random()
        if r < 0.7:
            start = self.rng.randrange(0, 4 << 20, PAGE)
        elif r < 0.8:
            start = self.rng.randrange(0, 4 << 20, PAGE) + 0x800
            notes.append("sub-page start")
        elif r < 0.9:
            start = 1 << 40
            notes.append("start beyond the file end")
        else:
            start = ULONG_MAX - self.rng.choice([0, PAGE])
            notes.append("start near the top")
        fields = {
            "flags": flags | (FIXED if fixed else 0),
            "ioas_id": ioas_id,
            "start": start,
            "length": length,
        }
        refs: dict[str, str] = {}
        r = self.rng.random()
        if r < 0.8:
            refs["fd"] = "memfd"
        elif r < 0.88:
            refs["fd"] = "selffd"
            notes.append("fd is the iommufd itself")
        else:
            fields["fd"] = self.rng.choice([-1, 999_999])
            notes.append("bad fd")
        if fixed:
            iova, inote = self._fixed_iova(ioas_id, length)
            fields["iova"] = iova
            notes.append(inote)
        note = ", ".join(n for n in notes if n)
        return Call("IOMMU_IOAS_MAP_FILE", uapi.IOMMU_IOAS_MAP_FILE, fields, refs, note=note)

    def _gen_copy(self) -> Call:
        src_id = self._pick_ioas_id()
        notes: list[str] = []
        src = self.ioas.get(src_id)
        r = self.rng.random()
        if src is not None and src.areas and r < 0.8:
            items = src.sorted_areas()
            i = self.rng.randrange(len(items))
            iova, a = items[i]
            kind = self.rng.randrange(5)
            if kind == 0:
                src_iova, length = iova, a.last - iova + 1
                notes.append("whole area")
            elif kind == 1:
                npages = max((a.last - iova + 1) // PAGE, 1)
                off = self.rng.randrange(npages) * PAGE
                src_iova = iova + off
                length = max(min(self.rng.randint(1, npages) * PAGE, a.last - src_iova + 1), 1)
                notes.append("sub-range of an area")
            elif kind == 2:
                j = min(i + self.rng.randint(1, 3), len(items) - 1)
                src_iova, length = iova, items[j][1].last - iova + 1
                notes.append("from one area to the end of a later one")
            elif kind == 3:
                src_iova, length = a.last + 1 - PAGE, 2 * PAGE
                notes.append("runs past the end of an area")
            else:
                src_iova, length = iova, (a.last - iova + 1) // 2 or 1
                notes.append("first half of an area")
        else:
            length, lnote = self._length()
            src_iova = self.window + self.rng.randrange(0, 8 * IOVA_WINDOW, PAGE)
            notes += ["random source range", lnote]
        dst_id = src_id if self.rng.random() < 0.35 else self._pick_ioas_id()
        flags, fnote = self._map_flags()
        notes.append(fnote)
        fields = {
            "src_ioas_id": src_id,
            "dst_ioas_id": dst_id,
            "src_iova": src_iova,
            "length": length,
        }
        if self.rng.random() < 0.5:
            dst_iova, inote = self._fixed_iova(dst_id, length)
            fields["dst_iova"] = dst_iova
            flags |= FIXED
            notes.append(inote)
        if self.rng.random() < 0.05:
            # CONFIG_IOMMUFD_TEST kernels read src_iova as {u32 nth_area; u32 offset}
            flags |= uapi.MOCK_FLAGS_ACCESS_SYZ
            fields["src_iova"] = self.rng.choice([0, PAGE]) << 32 | self.rng.randrange(0, 4)
            notes.append("MOCK_FLAGS_ACCESS_SYZ: source named by area index")
        fields["flags"] = flags
        note = ", ".join(n for n in notes if n)
        return Call("IOMMU_IOAS_COPY", uapi.IOMMU_IOAS_COPY, fields, note=note)

    def _gen_unmap(self) -> Call:
        ioas_id = self._pick_ioas_id()
        m = self.ioas.get(ioas_id)
        r = self.rng.random()
        items = m.sorted_areas() if m is not None else []
        if r < 0.08 or not items:
            if self.rng.random() < 0.5:
                iova, length, note = 0, U64_MAX, "unmap all"
            else:
                length, note = self._length()
                iova = self.window + self.rng.randrange(0, 8 * IOVA_WINDOW, PAGE)
                note = "random range " + note
        else:
            i = self.rng.randrange(len(items))
            iova, a = items[i]
            kind = self.rng.randrange(7)
            if kind == 0:
                length, note = a.last - iova + 1, "exact area"
            elif kind == 1:
                j = min(i + self.rng.randint(1, 4), len(items) - 1)
                length, note = items[j][1].last - iova + 1, "several whole areas"
            elif kind == 2:
                j = min(i + self.rng.randint(1, 4), len(items) - 1)
                jiova, ja = items[j]
                cut = jiova + max((ja.last - jiova + 1) // 2, 1)
                length, note = cut - iova, "whole areas then a cut one (partial removal)"
                if cut - 1 >= ja.last:
                    length, note = ja.last - iova + 1, "several whole areas"
            elif kind == 3:
                iova, length = iova + PAGE, a.last - iova + 1
                note = "starts inside an area"
            elif kind == 4:
                iova = max(iova - 16 * PAGE, 0)
                length = a.last + 16 * PAGE - iova
                note = "area with margin on both sides"
            elif kind == 5:
                iova, length, note = a.last + 1, PAGE, "just after an area"
            else:
                iova, length, note = 0, U64_MAX - 1, "iova 0, length 2^64-2: not the wildcard"
        r = self.rng.random()
        if r < 0.04:
            iova, length, note = 0, 0, "iova 0 length 0 (not the wildcard)"
        elif r < 0.07:
            iova, length, note = ULONG_MAX - PAGE, 2 * PAGE, "overflowing range"
        elif r < 0.09:
            iova, length, note = U64_MAX, PAGE, "iova ULONG_MAX"
        return Call(
            "IOMMU_IOAS_UNMAP",
            uapi.IOMMU_IOAS_UNMAP,
            {"ioas_id": ioas_id, "iova": iova, "length": length},
            note=note,
        )

    def _gen_allow(self) -> Call:
        ioas_id = self._pick_ioas_id()
        n = self.rng.choice([0, 1, 1, 2, 2, 3])
        ranges: list[tuple[int, int]] = []
        note = "valid"
        for _ in range(n):
            start = self.rng.randrange(0, 16 * IOVA_WINDOW, PAGE)
            ranges.append((start, start + self.rng.randint(1, 2048) * PAGE - 1))
        r = self.rng.random()
        if n and r < 0.15:
            s = ranges[0][0]
            ranges[0] = (s, s)
            note = "start == last"
        elif n and r < 0.22:
            ranges[0] = (ranges[0][1], ranges[0][0])
            note = "start > last"
        elif n and r < 0.32:
            ranges.append((ranges[0][0] + PAGE, ranges[0][1] + PAGE))
            note = "overlapping"
        elif r < 0.40:
            ranges = [(0, ULONG_MAX)]
            note = "everything"
        elif r < 0.48:
            ranges = [(self.window, self.window + 4 * PAGE - 1)]
            note = "a tiny window"
        elif not any(self._overlap(ranges)):
            note = "valid" if n else "clear the list"
        else:
            note = "random ranges, may overlap"
        fields = {"ioas_id": ioas_id, "num_iovas": len(ranges)}
        refs = {"allowed_iovas": "array"}
        r = self.rng.random()
        if r < 0.05 and ranges:
            refs = {}
            note += ", NULL array"
        elif r < 0.09:
            fields["reserved"] = 1
            note += ", __reserved != 0"
        return Call(
            "IOMMU_IOAS_ALLOW_IOVAS",
            uapi.IOMMU_IOAS_ALLOW_IOVAS,
            fields,
            refs,
            array=ranges,
            note=note,
        )

    @staticmethod
    def _overlap(ranges: list[tuple[int, int]]) -> Iterator[bool]:
        for i, (a, b) in enumerate(ranges):
            for c, d in ranges[i + 1 :]:
                yield a <= d and c <= b

    def _gen_ranges(self) -> Call:
        ioas_id = self._pick_ioas_id()
        cap = self.rng.choice([0, 0, 1, 2, 4])
        refs = {"allowed_iovas": "array"}
        note = f"capacity {cap}"
        if cap == 0 and self.rng.random() < 0.5:
            refs = {}
            note += ", NULL array"
        fields = {"ioas_id": ioas_id, "num_iovas": cap}
        if self.rng.random() < 0.05:
            fields["reserved"] = 3
            note += ", __reserved != 0"
        return Call(
            "IOMMU_IOAS_IOVA_RANGES",
            uapi.IOMMU_IOAS_IOVA_RANGES,
            fields,
            refs,
            capacity=cap,
            note=note,
        )

    def _gen_option(self) -> Call:
        r = self.rng.random()
        fields: dict[str, int]
        if r < 0.6:
            op = self.rng.choice(
                [
                    uapi.IOMMU_OPTION_OP_GET,
                    uapi.IOMMU_OPTION_OP_SET,
                    uapi.IOMMU_OPTION_OP_SET,
                    uapi.IOMMU_OPTION_OP_SET,
                    2,
                ]
            )
            val = self.rng.choice([0, 0, 1, 1, 2]) if op == uapi.IOMMU_OPTION_OP_SET else 0
            fields = {
                "option_id": uapi.IOMMU_OPTION_HUGE_PAGES,
                "op": op,
                "object_id": self._pick_ioas_id(),
                "val64": val,
            }
            note = "HUGE_PAGES"
        elif r < 0.85:
            op = self.rng.choice([uapi.IOMMU_OPTION_OP_GET, uapi.IOMMU_OPTION_OP_SET])
            val = self.rng.choice([0, 1, 1, 7]) if op == uapi.IOMMU_OPTION_OP_SET else 0
            obj = 0 if self.rng.random() < 0.85 else 1
            fields = {
                "option_id": uapi.IOMMU_OPTION_RLIMIT_MODE,
                "op": op,
                "object_id": obj,
                "val64": val,
            }
            note = "RLIMIT_MODE"
        else:
            fields = {
                "option_id": self.rng.choice([2, 0xFFFF]),
                "op": uapi.IOMMU_OPTION_OP_GET,
                "object_id": 0,
                "val64": 0,
            }
            note = "unknown option"
        if self.rng.random() < 0.05:
            fields["reserved"] = 1
            note += ", __reserved != 0"
        return Call("IOMMU_OPTION", uapi.IOMMU_OPTION, fields, note=note)

    def _gen_bad_size(self) -> Call:
        base = self.rng.choice(
            [
                self._gen_map,
                self._gen_unmap,
                self._gen_alloc,
                self._gen_ranges,
                self._gen_option,
                self._gen_copy,
                self._gen_destroy,
            ]
        )()
        struct_type = struct_of(base.op)
        assert struct_type is not None
        ksize = ctypes.sizeof(struct_type)
        r = self.rng.random()
        if r < 0.35:
            base.size = self.rng.choice([0, 4, ksize - 4, ksize - 1])
            base.note = f"size {base.size} below the minimum; " + base.note
        elif r < 0.7:
            extra = self.rng.choice([4, 8, 64])
            tail = bytearray(extra)
            tail[self.rng.randrange(extra)] = self.rng.randint(1, 255)
            base.tail, base.size = tail.hex(), ksize + extra
            base.note = f"size {base.size} with non-zero bytes past the struct; " + base.note
        else:
            extra = self.rng.choice([8, 64, 200])
            base.tail, base.size = bytes(extra).hex(), ksize + extra
            base.note = f"size {base.size}, zero tail (accepted); " + base.note
        return base

    def _gen_unknown(self) -> Call:
        T = uapi.IOMMUFD_TYPE
        request = self.rng.choice(
            [
                uapi._IO(T, self.rng.randint(0x96, 0x9F)),
                uapi._IO(T, self.rng.choice([0xA1, 0xB0, 0xFF])),
                uapi._IO(T, self.rng.choice([0x00, 0x40, 0x7F])),
                uapi._IOWR(T, 0x81, 12),
                uapi._IO(ord("X"), 0x81),
            ]
        )
        raw = bytearray(16)
        raw[0] = 16
        return Call("UNKNOWN", request, raw=raw.hex(), note=f"unknown ioctl {request:#x}")

    # -- devices mode: the mock driver, HWPTs, dirty tracking, accesses ---------------------

    def _bogus_id(self) -> tuple[int, str]:
        r = self.rng.random()
        stale = sorted(self.dead_objs | self.dead)
        if stale and r < 0.35:
            return self.rng.choice(stale), "stale id"
        if r < 0.55:
            return 0, "id 0"
        if r < 0.8:
            return self.max_id + 1, "next id"
        return 0xFFFFFFFF, "id 0xffffffff"

    def _pick_from(self, ids: Sequence[int], valid: float) -> tuple[int, str]:
        if ids and self.rng.random() < valid:
            return self.rng.choice(sorted(ids)), ""
        return self._bogus_id()

    def _pick_dev(self, valid: float = 0.85) -> tuple[int, str]:
        r = self.rng.random()
        if self.devs and r < valid:
            return self.rng.choice(sorted(self.devs)), ""
        others = [d.idev for d in self.devs.values()] + sorted(self.hwpts) + sorted(self.ioas)
        if others and r < valid + (1 - valid) / 2:
            return self.rng.choice(others), "not a selftest device"
        return self._bogus_id()

    def _pick_idev(self, valid: float = 0.85) -> tuple[int, str]:
        r = self.rng.random()
        if self.devs and r < valid:
            return self.devs[self.rng.choice(sorted(self.devs))].idev, ""
        if self.devs and r < valid + (1 - valid) / 2:
            return self.rng.choice(sorted(self.devs)), "stdev id, not a device"
        return self._bogus_id()

    def _pick_hwpt(
        self, valid: float = 0.85, dirty: bool = False, tracking: bool = False
    ) -> tuple[int, str]:
        pool = [h for h, m in self.hwpts.items() if m.flags & uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING]
        if tracking and any(self.hwpts[h].tracking for h in pool):
            pool = [h for h in pool if self.hwpts[h].tracking]
        if not dirty or not pool or self.rng.random() < 0.2:
            pool = sorted(self.hwpts)
        r = self.rng.random()
        if pool and r < valid:
            return self.rng.choice(sorted(pool)), ""
        if (self.ioas or self.devs) and r < valid + (1 - valid) / 2:
            return self.rng.choice(sorted(self.ioas) + sorted(self.devs)), "not a HWPT"
        return self._bogus_id()

    def _pick_pt(self) -> tuple[int, str]:
        """An attach/alloc target: mostly an IOAS, else a HWPT, else nothing valid."""
        r = self.rng.random()
        if r < 0.72:
            return self._pick_ioas_id(), "IOAS"
        if r < 0.9 and self.hwpts:
            return self.rng.choice(sorted(self.hwpts)), "HWPT"
        i, note = self._bogus_id()
        return i, f"bogus pt ({note})"

    def _ioas_of(self, obj: int) -> int | None:
        if obj in self.ioas:
            return obj
        h = self.hwpts.get(obj)
        return None if h is None else h.ioas

    def _span(self, ioas_id: int | None, max_pages: int = 4) -> tuple[int, int, int | None, str]:
        """``(iova, length, user offset or None, note)``: mostly a piece of an area of
        ``ioas_id``, page aligned within the area."""
        area = self._pick_area(ioas_id) if ioas_id is not None else None
        if area is None or self.rng.random() < 0.12:
            iova = self.window + self.rng.randrange(0, 8 * IOVA_WINDOW, PAGE)
            return iova, self.rng.randint(1, max_pages) * PAGE, None, "random range"
        iova, a = area
        size = a.last - iova + 1
        off = self.rng.randrange(max(size // PAGE, 1)) * PAGE
        length = min(self.rng.randint(1, max_pages) * PAGE, size - off)
        uva = None if a.uva is None else a.uva + off
        note = "in an area"
        if self.rng.random() < 0.1:
            length += PAGE
            note = "runs past the end of an area"
        return iova + off, length, uva, note

    def _test(self, op: str, fields: dict[str, int], **kw: Any) -> Call:
        fields = {"op": getattr(uapi, op), **fields}
        return Call(op, uapi.IOMMU_TEST_CMD, fields, **kw)

    def _gen_mock_domain(self) -> Call:
        pt, note = self._pick_pt()
        if self.rng.random() < 0.6:
            return self._test("IOMMU_TEST_OP_MOCK_DOMAIN", {"id": pt}, note=note)
        flags = self.rng.choice(
            [
                0,
                uapi.MOCK_FLAGS_DEVICE_NO_DIRTY,
                uapi.MOCK_FLAGS_DEVICE_NO_DIRTY,
                uapi.MOCK_FLAGS_DEVICE_PASID,
                1 << 5,
            ]
        )
        return self._test(
            "IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS",
            {"id": pt, "mock_domain_flags.dev_flags": flags},
            note=f"{note}, dev_flags {flags:#x}",
        )

    def _gen_hwpt_alloc(self, flags: int | None = None) -> Call:
        dev, dnote = self._pick_idev()
        notes = [dnote]
        flags = flags if flags is not None else self.rng.choice(
            [
                0,
                0,
                uapi.IOMMU_HWPT_ALLOC_NEST_PARENT,
                uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
                uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
                uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
                uapi.IOMMU_HWPT_ALLOC_NEST_PARENT | uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
                uapi.IOMMU_HWPT_ALLOC_PASID,
                1 << 7,
            ]
        )
        pt, pnote = self._pick_pt()
        notes += [pnote, f"flags {flags:#x}"]
        fields = {"flags": flags, "dev_id": dev, "pt_id": pt}
        refs: dict[str, str] = {}
        kw: dict[str, Any] = {}
        r = self.rng.random()
        if r < 0.15:
            ptype = self.rng.choice([uapi.MOCK_IOMMUPT_DEFAULT, uapi.MOCK_IOMMUPT_HUGE, 7])
            data = uapi.iommu_hwpt_selftest(iotlb=self.rng.randint(0, 0xFFFF), pagetable_type=ptype)
            fields |= {"data_type": uapi.IOMMU_HWPT_DATA_SELFTEST, "data_len": 8}
            refs["data_uptr"] = "scratch"
            kw = {"scratch": 8, "data": bytes(data).hex()}
            notes.append(f"selftest data, pagetable_type {ptype}")
        elif r < 0.2:
            fields["data_type"] = self.rng.choice([1, 0xBAD])
            notes.append("unknown data_type")
        elif r < 0.24:
            fields["fault_id"] = self.rng.randint(1, self.max_id + 1)
            notes.append("fault_id without FAULT_ID_VALID")
        elif r < 0.27:
            fields["reserved"] = 1
            notes.append("__reserved != 0")
        note = ", ".join(n for n in notes if n)
        return Call("IOMMU_HWPT_ALLOC", uapi.IOMMU_HWPT_ALLOC, fields, refs, note=note, **kw)

    def _gen_replace(self) -> Call:
        dev, dnote = self._pick_dev()
        pt, pnote = self._pick_pt()
        if self.nested and self.rng.random() < (0.5 if self.vdevs else 0.2):
            pt, pnote = self.rng.choice(sorted(self.nested)), "nested HWPT"
        return self._test(
            "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE",
            {"id": dev, "mock_domain_replace.pt_id": pt},
            note=", ".join(n for n in (dnote, pnote) if n),
        )

    def _gen_destroy_obj(self) -> Call:
        r = self.rng.random()
        if r < 0.4 and self.devs:
            obj, note = self.rng.choice(sorted(self.devs)), "stdev (detaches)"
        elif r < 0.6 and (self.hwpts or self.nested):
            obj, note = self.rng.choice(sorted(self.hwpts) + sorted(self.nested)), "HWPT"
        elif r < 0.7 and self.devs:
            obj = self.devs[self.rng.choice(sorted(self.devs))].idev
            note = "idev (owned by the selftest object)"
        elif r < 0.85 and self.ioas:
            obj, note = self.rng.choice(sorted(self.ioas)), "IOAS (maybe in use)"
        elif r < 0.95 and (self.viommus or self.vdevs or self.hw_queues or self.eventqs):
            pool = sorted(self.viommus) + sorted(self.vdevs) + sorted(self.hw_queues)
            pool += sorted(self.eventqs.values())
            obj, note = self.rng.choice(pool), "vIOMMU / vDEVICE / HW queue / event queue"
        else:
            obj, note = self._bogus_id()
        return Call("IOMMU_DESTROY", uapi.IOMMU_DESTROY, {"id": obj}, note=note)

    def _gen_hw_info(self) -> Call:
        dev, note = self._pick_idev()
        data_len = self.rng.choice([0, 4, 8, 16, 64])
        fields: dict[str, int] = {"dev_id": dev, "data_len": data_len}
        refs = {"data_uptr": "scratch"} if data_len else {}
        notes = [note, f"data_len {data_len}"]
        r = self.rng.random()
        if r < 0.15:
            fields["flags"] = uapi.IOMMU_HW_INFO_FLAG_INPUT_TYPE
            fields["in_data_type"] = self.rng.choice(
                [uapi.IOMMU_HW_INFO_TYPE_DEFAULT, uapi.IOMMU_HW_INFO_TYPE_SELFTEST, 1]
            )
            notes.append(f"input type {fields['in_data_type']:#x}")
        elif r < 0.2:
            fields["flags"] = 1 << 4
            notes.append("unknown flag")
        return Call(
            "IOMMU_GET_HW_INFO",
            uapi.IOMMU_GET_HW_INFO,
            fields,
            refs,
            scratch=max(data_len, 1) if data_len else 0,
            note=", ".join(n for n in notes if n),
        )

    def _gen_check_map(self) -> Call:
        hwpt, note = self._pick_hwpt()
        iova, length, uva, snote = self._span(self._ioas_of(hwpt))
        notes = [note, snote]
        r = self.rng.random()
        if uva is None or r < 0.15:
            uva = self.rng.randrange(0, 32 << 20, PAGE)
            notes.append("unrelated uptr")
        elif r < 0.25:
            uva += PAGE
            notes.append("uptr one page off")
        elif r < 0.3:
            uva += 0x800
            notes.append("uptr half a page off")
        if self.rng.random() < 0.05:
            length += 0x800
            notes.append("length not a multiple of the page")
        return self._test(
            "IOMMU_TEST_OP_MD_CHECK_MAP",
            {"id": hwpt, "check_map.iova": iova, "check_map.length": length},
            refs={"check_map.uptr": f"buf+{uva:#x}"},
            note=", ".join(n for n in notes if n),
        )

    def _gen_check_refs(self) -> Call:
        r = self.rng.random()
        note = ""
        off = self.rng.randrange(0, 32 << 20, PAGE)
        area = None
        if self.ioas and r < 0.6:
            area = self._pick_area(self.rng.choice(sorted(self.ioas)))
        if area is not None and area[1].uva is not None:
            off = area[1].uva // PAGE * PAGE
            note = "a mapped area's pages"
        elif r < 0.7:
            off = HOLE_OFF - PAGE
            note = "runs into the munmapped hole"
        length = self.rng.randint(1, 4) * PAGE
        if self.rng.random() < 0.05:
            off += 0x10
            note += ", unaligned uptr"
        refs = self.rng.choice([0, 0, 1, 1, 2])
        return self._test(
            "IOMMU_TEST_OP_MD_CHECK_REFS",
            {"check_refs.length": length, "check_refs.refs": refs},
            refs={"check_refs.uptr": f"buf+{off:#x}"},
            note=f"refs {refs} {note}".strip(),
        )

    def _gen_add_reserved(self) -> Call:
        ioas_id = self._pick_ioas_id()
        iova, length, _, note = self._span(ioas_id if self.rng.random() < 0.4 else None, 16)
        if self.rng.random() < 0.1:
            length = self.rng.choice([0, ULONG_MAX])
            note = "zero or overflowing length"
        return self._test(
            "IOMMU_TEST_OP_ADD_RESERVED",
            {"id": ioas_id, "add_reserved.start": iova, "add_reserved.length": length},
            note=note,
        )

    def _gen_dirty(self) -> Call:
        dirty = uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
        capable = sorted(h for h, m in self.hwpts.items() if m.flags & dirty)
        if not capable and self.devs and self.rng.random() < 0.5:
            return self._gen_hwpt_alloc(dirty)
        tracking = any(self.hwpts[h].tracking for h in capable)
        if capable and not tracking and self.rng.random() < 0.5:
            return Call(
                "IOMMU_HWPT_SET_DIRTY_TRACKING",
                uapi.IOMMU_HWPT_SET_DIRTY_TRACKING,
                {"flags": uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, "hwpt_id": capable[0]},
                note="enable, so that marks and reads can succeed",
            )
        r = self.rng.random()
        hwpt, note = self._pick_hwpt(dirty=True, tracking=r >= 0.3)
        if r < 0.3:
            flags = self.rng.choice([0, 1, 1, 2])
            fields = {"flags": flags, "hwpt_id": hwpt}
            if self.rng.random() < 0.04:
                fields["reserved"] = 1
            return Call(
                "IOMMU_HWPT_SET_DIRTY_TRACKING",
                uapi.IOMMU_HWPT_SET_DIRTY_TRACKING,
                fields,
                note=f"{note} flags {flags}".strip(),
            )
        iova, length, _, snote = self._span(self._ioas_of(hwpt), 8)
        page_size = self.rng.choice([PAGE, PAGE, PAGE, uapi.MOCK_PAGE_SIZE, 3 * PAGE, 0])
        nbits = length // page_size if page_size else 64
        nbytes = max((nbits + 63) // 64 * 8, 8)
        notes = [note, snote, f"page_size {page_size:#x}"]
        if r < 0.55:
            bits = self.rng.getrandbits(nbytes * 8).to_bytes(nbytes, "little")
            return self._test(
                "IOMMU_TEST_OP_DIRTY",
                {
                    "id": hwpt,
                    "dirty.iova": iova,
                    "dirty.length": length,
                    "dirty.page_size": page_size,
                },
                refs={"dirty.uptr": "scratch"},
                scratch=nbytes,
                data=bits.hex(),
                note=", ".join(n for n in ["mark dirty", *notes] if n),
            )
        flags = self.rng.choice([0, 0, uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 4])
        if self.rng.random() < 0.1:
            iova += 0x800
            notes.append("unaligned iova")
        return Call(
            "IOMMU_HWPT_GET_DIRTY_BITMAP",
            uapi.IOMMU_HWPT_GET_DIRTY_BITMAP,
            {
                "hwpt_id": hwpt,
                "flags": flags,
                "iova": iova,
                "length": length,
                "page_size": page_size,
            },
            {"data": "scratch"},
            scratch=nbytes,
            data=bytes(nbytes).hex(),
            note=", ".join(n for n in [*notes, f"flags {flags}"] if n),
        )

    def _gen_create_access(self) -> Call:
        ioas_id = self._pick_ioas_id()
        flags = self.rng.choice([0, 1, 1, 1, 2])
        self.n_access += 1
        return self._test(
            "IOMMU_TEST_OP_CREATE_ACCESS",
            {"id": ioas_id, "create_access.flags": flags},
            binds=f"access{self.n_access}",
            note={0: "", 1: "NEEDS_PIN_PAGES", 2: "unknown flag"}[flags],
        )

    def _pick_access(self, pinning: bool = False) -> tuple[str, str]:
        """A live access (for ``pinning``, preferably a NEEDS_PIN_PAGES one over an IOAS
        with areas), a closed one, or an fd that is not an access."""
        r = self.rng.random()
        good = [
            n
            for n, a in sorted(self.accesses.items())
            if a.pin and (m := self.ioas.get(a.ioas)) is not None and m.areas
        ]
        if pinning and good and r < 0.75:
            return self.rng.choice(good), ""
        if self.accesses and r < 0.9:
            return self.rng.choice(sorted(self.accesses)), ""
        if self.closed and r < 0.95:
            return self.rng.choice(self.closed), "closed access"
        return "memfd", "not an access fd"

    def _gen_access_pages(self) -> Call:
        name, note = self._pick_access(pinning=True)
        acc = self.accesses.get(name)
        iova, length, uva, snote = self._span(acc.ioas if acc else None)
        notes = [note, snote]
        flags = self.rng.choice([0, 1, 1, 2])
        refs = {"id": name}
        r = self.rng.random()
        if uva is not None and r < 0.6:
            refs["access_pages.uptr"] = f"buf+{uva:#x}"
        elif r < 0.85:
            notes.append("NULL uptr: no page check")
        else:
            refs["access_pages.uptr"] = f"buf+{self.rng.randrange(0, 32 << 20, PAGE):#x}"
            notes.append("uptr of other pages")
        return self._test(
            "IOMMU_TEST_OP_ACCESS_PAGES",
            {
                "access_pages.flags": flags,
                "access_pages.iova": iova,
                "access_pages.length": length,
            },
            refs=refs,
            note=", ".join(n for n in [*notes, f"flags {flags}"] if n),
        )

    def _gen_access_rw(self) -> Call:
        name, note = self._pick_access()
        acc = self.accesses.get(name)
        iova, length, _, snote = self._span(acc.ioas if acc else None, 2)
        notes = [note, snote]
        r = self.rng.random()
        if r < 0.5:
            start = self.rng.randrange(0, max(length - 1, 1))
            iova, length = iova + start, self.rng.randint(1, min(length - start, 300))
            notes.append("small")
        elif r < 0.6:
            iova, length = iova + PAGE - 7, 14
            notes.append("crosses a page boundary")
        flags = self.rng.choice(
            [0, 0, uapi.MOCK_ACCESS_RW_WRITE, uapi.MOCK_ACCESS_RW_WRITE, 4, 5, 2]
        )
        write = flags & uapi.MOCK_ACCESS_RW_WRITE
        data = self.rng.randbytes(length).hex() if write else ""
        notes.append(
            ("write" if write else "read")
            + (" slow path" if flags & uapi.MOCK_ACCESS_RW_SLOW_PATH else "")
            + (" unknown flag" if flags & 2 else "")
        )
        return self._test(
            "IOMMU_TEST_OP_ACCESS_RW",
            {"access_rw.iova": iova, "access_rw.length": length, "access_rw.flags": flags},
            refs={"id": name, "access_rw.uptr": "scratch"},
            scratch=length,
            data=data,
            note=", ".join(n for n in notes if n),
        )

    def _gen_destroy_access_pages(self) -> Call:
        name, note = self._pick_access()
        with_items = sorted(n for n, a in self.accesses.items() if a.items)
        if with_items and self.rng.random() < 0.7:
            name, note = self.rng.choice(with_items), ""
        acc = self.accesses.get(name)
        if acc is not None and acc.items and self.rng.random() < 0.8:
            item = self.rng.choice(sorted(acc.items))
        else:
            item = self.rng.choice([0, 1, 7, 0xFFFFFFFF])
            note = (note + ", maybe no such item").lstrip(", ")
        return self._test(
            "IOMMU_TEST_OP_DESTROY_ACCESS_PAGES",
            {"destroy_access_pages.access_pages_id": item},
            refs={"id": name},
            note=note,
        )

    def _gen_close_access(self) -> Call:
        if self.accesses and self.rng.random() < 0.9:
            name = self.rng.choice(sorted(self.accesses))
            note = "close the access fd (destroys it)"
        else:
            name = self.rng.choice(self.closed) if self.closed else "access0"
            note = "already closed"
        return Call("CLOSE", 0, refs={"fd": name}, note=note)

    # -- devices mode: the mock vIOMMU and event queues ----------------------------------------

    def _pick_viommu(self, valid: float = 0.85) -> tuple[int, str]:
        if self.viommus and self.rng.random() < valid:
            return self.rng.choice(sorted(self.viommus)), ""
        if self.hwpts and self.rng.random() < 0.5:
            return self.rng.choice(sorted(self.hwpts)), "a HWPT, not a vIOMMU"
        return self._bogus_id()

    def _gen_viommu_alloc(self) -> Call:
        parents = [h for h, m in self.hwpts.items() if m.flags & uapi.IOMMU_HWPT_ALLOC_NEST_PARENT]
        if not parents and self.devs and self.rng.random() < 0.7:
            # a vIOMMU sits on a nest parent: make one first, or the chain below never starts
            return self._gen_hwpt_alloc(uapi.IOMMU_HWPT_ALLOC_NEST_PARENT)
        dev, dnote = self._pick_idev()
        if parents and self.rng.random() < 0.75:
            hwpt, hnote = self.rng.choice(parents), "nest parent"
        else:
            hwpt, hnote = self._pick_hwpt()
            hnote = hnote or "maybe not a nest parent"
        vtype = self.rng.choice([uapi.IOMMU_VIOMMU_TYPE_SELFTEST] * 5 + [0, 0xDEAD])
        fields = {"dev_id": dev, "hwpt_id": hwpt, "type": vtype}
        notes = [dnote, hnote, f"type {vtype:#x}"]
        if self.rng.random() < 0.05:
            fields["flags"] = 1
            notes.append("flags 1")
        kw: dict[str, Any] = {}
        refs: dict[str, str] = {}
        if self.rng.random() < 0.3:
            data = uapi.iommu_viommu_selftest(in_data=self.rng.randint(0, 0xFFFFFFFF))
            length = self.rng.choice([24, 24, 24, 4, 32])
            fields["data_len"] = length
            refs["data_uptr"] = "scratch"
            kw = {"scratch": max(length, 24), "data": bytes(data).hex()}
            notes.append(f"selftest data, {length} bytes")
        note = ", ".join(n for n in notes if n)
        return Call("IOMMU_VIOMMU_ALLOC", uapi.IOMMU_VIOMMU_ALLOC, fields, refs, note=note, **kw)

    def _gen_vdevice_alloc(self) -> Call:
        if not self.viommus and self.rng.random() < 0.6:
            return self._gen_viommu_alloc()
        viommu, vnote = self._pick_viommu()
        dev, dnote = self._pick_idev()
        virt_id = self.rng.choice([0, 1, 0x88, 0x99, 0x99, 0xFFFF, 1 << 40])
        note = ", ".join(n for n in (vnote, dnote, f"virt_id {virt_id:#x}") if n)
        fields = {"viommu_id": viommu, "dev_id": dev, "virt_id": virt_id}
        return Call("IOMMU_VDEVICE_ALLOC", uapi.IOMMU_VDEVICE_ALLOC, fields, note=note)

    def _gen_nested_alloc(self, dev: int | None = None, pt: int | None = None) -> Call:
        dev, dnote = (dev, "") if dev is not None else self._pick_idev()
        r = self.rng.random()
        parents = [h for h, m in self.hwpts.items() if m.flags & uapi.IOMMU_HWPT_ALLOC_NEST_PARENT]
        if pt is not None:
            pnote = "on its vIOMMU"
        elif self.viommus and r < 0.5:
            pt, pnote = self.rng.choice(sorted(self.viommus)), "on a vIOMMU"
        elif parents and r < 0.85:
            pt, pnote = self.rng.choice(parents), "on a nest parent"
        else:
            pt, pnote = self._pick_pt()
        flags = self.rng.choice(
            [0, 0, 0, uapi.IOMMU_HWPT_ALLOC_PASID, uapi.IOMMU_HWPT_ALLOC_NEST_PARENT]
        )
        fields = {"flags": flags, "dev_id": dev, "pt_id": pt}
        notes = [dnote, pnote, f"flags {flags:#x}"]
        if self.eventqs and self.rng.random() < 0.3:
            fault_ids = [i for n, i in self.eventqs.items() if n.startswith("fault")]
            if fault_ids:
                fields["flags"] = flags | uapi.IOMMU_HWPT_FAULT_ID_VALID
                fields["fault_id"] = self.rng.choice(fault_ids)
                notes.append("with a fault queue")
        data = uapi.iommu_hwpt_selftest(iotlb=self.rng.choice([0, uapi.IOMMU_TEST_IOTLB_DEFAULT]))
        length = self.rng.choice([8, 8, 8, 4, 0, 12])
        fields |= {"data_type": uapi.IOMMU_HWPT_DATA_SELFTEST, "data_len": length}
        notes.append(f"selftest data, {length} bytes")
        note = ", ".join(n for n in notes if n)
        return Call(
            "IOMMU_HWPT_ALLOC",
            uapi.IOMMU_HWPT_ALLOC,
            fields,
            {"data_uptr": "scratch"},
            note=note,
            scratch=16,
            data=bytes(data).hex(),
        )

    def _gen_invalidate(self) -> Call:
        r = self.rng.random()
        if self.viommus and r < 0.45:
            target, tnote = self.rng.choice(sorted(self.viommus)), "vIOMMU"
            dtype = uapi.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST
            size = ctypes.sizeof(uapi.iommu_viommu_invalidate_selftest)
        elif self.nested and r < 0.85:
            target, tnote = self.rng.choice(sorted(self.nested)), "nested HWPT"
            dtype = uapi.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST
            size = ctypes.sizeof(uapi.iommu_hwpt_invalidate_selftest)
        else:
            target, tnote = self._pick_hwpt()
            dtype, size = uapi.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8
            tnote = tnote or "a paging HWPT"
        n = self.rng.choice([0, 1, 1, 2, 3])
        entries = bytearray()
        for _ in range(n):
            words = [
                self.rng.choice([0, 0, 0, uapi.IOMMU_TEST_INVALIDATE_FLAG_ALL, 0xFFFFFFFF]),
                self.rng.choice([0, 1, 0x99, 0x88, 3, 4]),
                self.rng.choice([0, 1, 2, 3, 4]),
            ]
            entries += b"".join(w.to_bytes(4, "little") for w in words)[:size].ljust(size, b"\0")
        entry_len = self.rng.choice([size] * 6 + [size + 4, 1, 0])
        if self.rng.random() < 0.1:
            dtype = self.rng.choice([uapi.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID, 0])
        fields = {"hwpt_id": target, "data_type": dtype, "entry_len": entry_len, "entry_num": n}
        note = f"{tnote}, {n} entries of {entry_len} bytes, data_type {dtype:#x}"
        return Call(
            "IOMMU_HWPT_INVALIDATE",
            uapi.IOMMU_HWPT_INVALIDATE,
            fields,
            {"data_uptr": "scratch"} if n else {},
            note=note,
            scratch=max(len(entries) + 16, 16),
            data=bytes(entries).hex(),
        )

    def _gen_veventq_alloc(self) -> Call:
        if not self.viommus and self.rng.random() < 0.6:
            return self._gen_viommu_alloc()
        viommu, note = self._pick_viommu()
        vtype = self.rng.choice([uapi.IOMMU_VEVENTQ_TYPE_SELFTEST] * 4 + [0, 1])
        depth = self.rng.choice([1, 2, 2, 4, 0, (1 << 19) + 1])
        self.n_eventq += 1
        fields = {"viommu_id": viommu, "type": vtype, "veventq_depth": depth}
        return Call(
            "IOMMU_VEVENTQ_ALLOC",
            uapi.IOMMU_VEVENTQ_ALLOC,
            fields,
            binds=f"veventq{self.n_eventq}",
            note=", ".join(n for n in (note, f"type {vtype:#x}, depth {depth}") if n),
        )

    def _gen_fault_alloc(self) -> Call:
        self.n_eventq += 1
        return Call(
            "IOMMU_FAULT_QUEUE_ALLOC",
            uapi.IOMMU_FAULT_QUEUE_ALLOC,
            {"flags": self.rng.choice([0, 0, 0, 1])},
            binds=f"fault{self.n_eventq}",
        )

    def _gen_trigger_vevent(self) -> Call:
        # 7.3 reports an event only for a device attached to a nested HWPT on a vIOMMU where
        # it has a vDEVICE, with a vEVENTQ of that vIOMMU open: build that chain step by step
        step = self._vevent_chain() if self.rng.random() < 0.8 else None
        if isinstance(step, Call):
            return step
        on_nested = [d.idev for d in self.devs.values() if d.hwpt in self.nested]
        if step is not None:
            dev, note = step, "attached to a nested HWPT on its vIOMMU, a vEVENTQ open"
        elif on_nested and self.rng.random() < 0.8:
            dev, note = self.rng.choice(sorted(on_nested)), "attached to a nested HWPT"
        else:
            dev, note = self._pick_idev()
        return self._test("IOMMU_TEST_OP_TRIGGER_VEVENT", {"trigger_vevent.dev_id": dev}, note=note)

    def _vevent_chain(self) -> Call | int | None:
        """The next missing link towards a reportable vEVENT: a device's idev when the
        chain is complete, the call that adds a link, or None when no vDEVICE exists."""
        idev_stdev = {d.idev: stdev for stdev, d in self.devs.items()}
        links = sorted(
            (viommu, idev)
            for viommu, idev in self.vdev_of.values()
            if viommu in self.viommus and idev in idev_stdev
        )
        if not links:
            if self.viommus and self.devs:
                viommu = self.rng.choice(sorted(self.viommus))
                idev = self.devs[self.rng.choice(sorted(self.devs))].idev
                virt_id = self.rng.randrange(1, 1 << 16)
                fields = {"viommu_id": viommu, "dev_id": idev, "virt_id": virt_id}
                note = f"a vDEVICE towards a vEVENT, virt_id {virt_id:#x}"
                return Call("IOMMU_VDEVICE_ALLOC", uapi.IOMMU_VDEVICE_ALLOC, fields, note=note)
            return None
        viommu, idev = self.rng.choice(links)
        dev = self.devs[idev_stdev[idev]]
        if self.nested_on.get(dev.hwpt) != viommu:
            on_it = sorted(h for h, pt in self.nested_on.items() if pt == viommu)
            if not on_it:
                return self._gen_nested_alloc(dev=idev, pt=viommu)
            return self._test(
                "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE",
                {"id": idev_stdev[idev], "mock_domain_replace.pt_id": self.rng.choice(on_it)},
                note="onto a nested HWPT of the vIOMMU where it has a vDEVICE",
            )
        if viommu not in self.veventq_of.values():
            self.n_eventq += 1
            return Call(
                "IOMMU_VEVENTQ_ALLOC",
                uapi.IOMMU_VEVENTQ_ALLOC,
                {
                    "viommu_id": viommu,
                    "type": uapi.IOMMU_VEVENTQ_TYPE_SELFTEST,
                    "veventq_depth": self.rng.choice([1, 2, 4]),
                },
                binds=f"veventq{self.n_eventq}",
                note="for the vIOMMU of an attached vDEVICE",
            )
        return idev

    def _gen_trigger_iopf(self) -> Call:
        dev, note = self._pick_idev()
        fields = {
            "trigger_iopf.dev_id": dev,
            "trigger_iopf.pasid": self.rng.choice([0, 0, 1, 100]),
            "trigger_iopf.grpid": self.rng.randint(0, 8),
            "trigger_iopf.perm": self.rng.choice([1, 2, 3]),
            "trigger_iopf.addr": self.rng.randrange(0, 1 << 32, PAGE),
        }
        return self._test("IOMMU_TEST_OP_TRIGGER_IOPF", fields, note=note)

    def _gen_hw_queue_alloc(self) -> Call:
        if not self.viommus and self.rng.random() < 0.6:
            return self._gen_viommu_alloc()
        viommu, vnote = self._pick_viommu()
        parent = self.viommus.get(viommu)
        iova, length, _, snote = self._span(self._ioas_of(parent) if parent else None, 1)
        if snote == "runs past the end of an area":
            # two pinned pages must be physically contiguous (else EFAULT): that is the
            # host's allocator, not a kernel rule, so only one-page queues are compared
            length, snote = PAGE, "in an area"
        if self.rng.random() < 0.2:
            iova, length = iova + PAGE // 2, PAGE // 2
            snote += ", unaligned"
        qtype = self.rng.choice([uapi.IOMMU_HW_QUEUE_TYPE_SELFTEST] * 4 + [0])
        index = self.rng.choice([0, 0, 1, 1, 2])
        fields = {
            "viommu_id": viommu,
            "type": qtype,
            "index": index,
            "nesting_parent_iova": iova,
            "length": length,
        }
        note = ", ".join(n for n in (vnote, snote, f"index {index}, type {qtype:#x}") if n)
        return Call("IOMMU_HW_QUEUE_ALLOC", uapi.IOMMU_HW_QUEUE_ALLOC, fields, note=note)

    def _gen_read_eventq(self) -> Call:
        names = sorted(self.eventqs)
        vevent = [n for n in names if n.startswith("veventq")]
        if vevent and self.rng.random() < 0.8:
            name = self.rng.choice(vevent)
        elif names:
            name = self.rng.choice(names)
        else:
            name = "veventq0"
        # 8 B is one vEVENT header, 12 B one selftest record, below a header EINVAL; a
        # fault queue reads whole iommu_hwpt_pgfault records only (else ESPIPE)
        n = self.rng.choice([12, 12, 24, 256, 8, 4, 0, PGFAULT_SIZE, 2 * PGFAULT_SIZE])
        return Call("READ", 0, refs={"fd": name}, scratch=n, note=f"read {n} bytes")

    def _gen_close_eventq(self) -> Call:
        if self.eventqs:
            name = self.rng.choice(sorted(self.eventqs))
            return Call("CLOSE", 0, refs={"fd": name}, note="close an event queue fd")
        return Call("CLOSE", 0, refs={"fd": "veventq0"}, note="no such fd")

    # -- probes and the final check ----------------------------------------------------------

    def probe_calls(self) -> list[Call]:
        """IOVA_RANGES and HUGE_PAGES get for every live IOAS, the lowest dead id and the
        next id (a divergence in object ids shows there)."""
        out: list[Call] = []
        ids = set(self.ioas) | {self.max_id + 1}
        if self.dead:
            ids.add(min(self.dead))
        for ioas_id in sorted(ids):
            out.append(
                Call(
                    "IOMMU_IOAS_IOVA_RANGES",
                    uapi.IOMMU_IOAS_IOVA_RANGES,
                    {"ioas_id": ioas_id, "num_iovas": 2},
                    {"allowed_iovas": "array"},
                    capacity=2,
                    note="probe",
                )
            )
            out.append(
                Call(
                    "IOMMU_OPTION",
                    uapi.IOMMU_OPTION,
                    {
                        "option_id": uapi.IOMMU_OPTION_HUGE_PAGES,
                        "op": uapi.IOMMU_OPTION_OP_GET,
                        "object_id": ioas_id,
                    },
                    note="probe",
                )
            )
        return out

    def final_calls(self) -> list[Call]:
        """A side-effect-free coverage check of every area the model holds, then unmap-all
        of every id ever seen (dead ids answer ENOENT). Devices mode first closes every
        access, and ends checking that no page of the region is left pinned."""
        out: list[Call] = []
        if self.devices:
            for hw_queue in sorted(self.hw_queues, reverse=True):
                # a HW queue's internal access pins its pages (the last one first: each
                # later index depends on the one before)
                out.append(
                    Call(
                        "IOMMU_DESTROY",
                        uapi.IOMMU_DESTROY,
                        {"id": hw_queue},
                        note="final: destroy HW queue",
                    )
                )
            for name in sorted(self.accesses):
                out.append(Call("CLOSE", 0, refs={"fd": name}, note="final: close access"))
            for name in sorted(self.eventqs):
                # drain first: what is still queued (records, sequence numbers) must agree
                n = 4096 if name.startswith("veventq") else 85 * PGFAULT_SIZE
                out.append(Call("READ", 0, refs={"fd": name}, scratch=n, note="final: drain"))
                out.append(Call("CLOSE", 0, refs={"fd": name}, note="final: close event queue"))
        for ioas_id, m in sorted(self.ioas.items()):
            for iova, a in m.sorted_areas():
                out.append(
                    Call(
                        "IOMMU_IOAS_COPY",
                        uapi.IOMMU_IOAS_COPY,
                        {
                            "flags": FIXED | uapi.IOMMU_IOAS_MAP_READABLE,
                            "src_ioas_id": ioas_id,
                            "dst_ioas_id": ioas_id,
                            "src_iova": iova,
                            "dst_iova": iova,
                            "length": a.last - iova + 1,
                        },
                        note="final: area present? (EEXIST if covered)",
                    )
                )
        for ioas_id in range(1, self.max_id + 2):
            out.append(
                Call(
                    "IOMMU_IOAS_UNMAP",
                    uapi.IOMMU_IOAS_UNMAP,
                    {"ioas_id": ioas_id, "iova": 0, "length": U64_MAX},
                    note="final: unmap all",
                )
            )
        if self.devices:
            out.append(
                self._test(
                    "IOMMU_TEST_OP_MD_CHECK_REFS",
                    {"check_refs.length": HOLE_OFF, "check_refs.refs": 0},
                    refs={"check_refs.uptr": "buf+0x0"},
                    note="final: no page of the region left pinned",
                )
            )
        return out
