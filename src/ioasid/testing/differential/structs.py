"""Struct-aware generation: a value for every field of every ioctl the simulator serves,
chosen from the field's C name and width — object ids of every kind (live, stale, absent),
fds of every kind, pointers (scratch, just before a guard page, NULL, kernel), IOVAs,
lengths and flags at their boundaries — and mutations of the calls the model-steered
generator makes (one field at a boundary, a short, long or 4 GiB ``size``, the struct next
to a guard page). The differential generator's fuzz mode and :mod:`ioasid.testing.fuzz`
use it; the plain and devices modes never call it, so their sequences stay as they were.
"""

from __future__ import annotations

import ctypes
import random
from collections.abc import Iterator
from typing import Any

from ioasid import uapi
from ioasid.testing.differential.calls import (
    HOLE_OFF,
    KERNEL_VA,
    OTHER_IOCTLS,
    PAGE,
    U64_MAX,
    Call,
    Json,
    struct_of,
)
from ioasid.testing.differential.execution import GUARD_SPAN, TEST_OP_MEMBERS
from ioasid.testing.differential.model import Model
from ioasid.uapi import sim as simapi

U32_MAX = (1 << 32) - 1

FD_KINDS: tuple[str, ...] = (
    "selffd",
    "memfd",
    "fd:null",
    "fd:eventfd",
    "fd:closed",
    "fd:iommufd2",
    "fd:vfio",
    "fd:cdev",
)
"""Fds the fuzzer's executor holds besides the ones the kernel returned (``access3``,
``fault2``, ``veventq1``): this handle, a memfd, ``/dev/null``, an eventfd, a closed
number, another iommufd, the VFIO container, the device cdev."""

ACYCLIC_FDS = ("memfd", "fd:null", "fd:eventfd", "fd:iommufd2", "fd:vfio")
"""The fds an area may hold without holding the handle's context (not ``fd:closed``: its
number is soon an access's or an event queue's)."""

ID_FIELDS = frozenset({"id", "object_id", "pt_id", "dev_id", "fault_id", "viommu_id"})
IOVA_FIELDS = frozenset(
    {"iova", "start", "last", "src_iova", "dst_iova", "addr", "nesting_parent_iova", "base_addr"}
)
PTR_FIELDS = frozenset(
    {"uptr", "user_va", "vaddr", "data_uptr", "allowed_iovas", "token_uuid_ptr", "data"}
)
LEN_FIELDS = frozenset(
    {
        "length",
        "data_len",
        "entry_len",
        "entry_num",
        "num_iovas",
        "page_size",
        "pgsize",
        "limit",
        "veventq_depth",
        "npages",
    }
)
FLAG_FIELDS = frozenset(
    {
        "flags",
        "op",
        "option_id",
        "data_type",
        "type",
        "in_data_type",
        "dev_flags",
        "perm",
        "open_flags",
        "index",
        "cap_offset",
        "refs",
    }
)
ACCESS_OPS = frozenset(
    {
        uapi.IOMMU_TEST_OP_ACCESS_RW,
        uapi.IOMMU_TEST_OP_ACCESS_PAGES,
        uapi.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
        uapi.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS,
    }
)
"""Test ops whose ``id`` is an access fd, not an object id."""

VFIO_COMPAT = (
    "VFIO_GET_API_VERSION",
    "VFIO_CHECK_EXTENSION",
    "VFIO_SET_IOMMU",
    "VFIO_IOMMU_GET_INFO",
    "VFIO_IOMMU_MAP_DMA",
    "VFIO_IOMMU_UNMAP_DMA",
)
CDEV_OPS = (
    ("VFIO_DEVICE_BIND_IOMMUFD", 5),
    ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", 6),
    ("VFIO_DEVICE_DETACH_IOMMUFD_PT", 2),
    ("VFIO_DEVICE_GET_INFO", 1),
    ("VFIO_DEVICE_GET_REGION_INFO", 1),
    ("VFIO_DEVICE_GET_IRQ_INFO", 1),
    ("VFIO_DEVICE_RESET", 1),
    ("IOASID_SIM_DEVICE_DMA", 6),
)


TEST_OP_NAMES: dict[int, str] = {
    getattr(uapi, n): n for n in dir(uapi) if n.startswith("IOMMU_TEST_OP_")
}


def leaf_fields(struct_type: Any, member: str | None) -> Iterator[tuple[str, Any]]:
    """``(dotted name, ctype)`` of every integer field of ``struct_type``; of a union only
    ``member`` (the test command's op member) or, anonymous, its first member. Arrays are
    left to the tail."""
    for entry in struct_type._fields_:
        name, ctype = entry[0], entry[1]
        if isinstance(ctype, type) and issubclass(ctype, ctypes.Union):
            if member is not None:
                sub = dict((f[0], f[1]) for f in ctype._fields_).get(member)
                if sub is not None:
                    for leaf, t in leaf_fields(sub, None):
                        yield f"{member}.{leaf}", t
            elif name in getattr(struct_type, "_anonymous_", ()):
                first, t = ctype._fields_[0][0], ctype._fields_[0][1]
                if issubclass(t, ctypes._SimpleCData):
                    yield first, t
        elif isinstance(ctype, type) and issubclass(ctype, ctypes.Structure):
            for leaf, t in leaf_fields(ctype, None):
                yield f"{name}.{leaf}", t
        elif isinstance(ctype, type) and issubclass(ctype, ctypes._SimpleCData):
            yield name, ctype


def _member(call: Call) -> str | None:
    return TEST_OP_MEMBERS.get(call.fields.get("op", 0)) if call.op.startswith("IOMMU_") else None


class StructAware(Model):
    """The struct-aware half of the generator: needs ``rng`` and ``window`` (set by
    :class:`~.generation.Generator`) and the model's ids."""

    rng: random.Random
    window: int
    n_access: int
    n_eventq: int

    FUZZ_OPS: tuple[tuple[str, int], ...] = (
        ("any_iommufd", 14),
        ("any_test", 10),
        ("vfio_compat", 5),
        ("vfio_steered", 6),
        ("sim_dma", 3),
        ("pasid_steered", 4),
        ("cdev", 10),
        ("random_bytes", 2),
    )
    """Added by the fuzz mode: every ioctl of the table, every test op, the VFIO container
    and the device cdev, fields struct-aware."""

    def init_fuzz(self) -> None:
        self.other_ids: set[int] = set()
        """Ids the kernel returned that the model has no kind for (vIOMMU, vDEVICE, fault
        queue, vEVENTQ, HW queue, nested HWPT, the cdev's device)."""

    # -- values -------------------------------------------------------------------------

    def boundary(self, bits: int) -> int:
        """0, 1, 2, 2^k-1, 2^k, 2^k+1, the maximum and the sign bit of a ``bits``-wide field."""
        top = (1 << bits) - 1
        r = self.rng.random()
        if r < 0.15:
            return self.rng.choice([0, 1, 2])
        if r < 0.6:
            k = self.rng.randrange(1, bits)
            return ((1 << k) + self.rng.choice([-1, 0, 1])) & top
        if r < 0.8:
            return self.rng.choice([top, top - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1])
        return self.rng.getrandbits(bits)

    def any_id(self) -> int:
        """An id of any kind: live objects of every kind, stale, 0, the next, far ones."""
        live = (
            sorted(self.ioas)
            + sorted(self.hwpts)
            + sorted(self.devs)
            + [d.idev for d in self.devs.values()]
            + sorted(self.other_ids)
            + sorted(self.nested)
        )
        r = self.rng.random()
        if live and r < 0.7:
            return self.rng.choice(live)
        stale = sorted(self.dead | self.dead_objs)
        if stale and r < 0.8:
            return self.rng.choice(stale)
        return self.rng.choice([0, self.max_id + 1, self.max_id + 2, U32_MAX, 1 << 31, 1 << 20])

    def fd_ref(self) -> tuple[str | None, int]:
        """A ref to an fd of some kind, or a plain number (-1, 2^31-1, ...)."""
        r = self.rng.random()
        named = sorted(self.accesses) + sorted(self.eventqs) + ["access0"]
        if r < 0.35:
            return self.rng.choice(named), 0
        if r < 0.85:
            return self.rng.choice(FD_KINDS), 0
        return None, self.rng.choice([-1, 0, 1, 2, (1 << 31) - 1, -(1 << 31), 1 << 20])

    def pointer(self, call: Call) -> tuple[str | None, int]:
        """A user pointer: scratch of a random size, N bytes before a guard page, the
        shared region just before its hole (or in it), NULL, a kernel address, the top."""
        r = self.rng.random()
        if r < 0.3:
            call.scratch = self.rng.choice([1, 4, 8, 16, 64, 256, PAGE])
            return "scratch", 0
        if r < 0.6:
            n = self.rng.choice([0, 1, 4, 7, 8, 16, 64, PAGE, GUARD_SPAN])
            return f"guard-{n:#x}", 0
        if r < 0.75:
            # near the hole: a kernel reading as far as a length says meets a fault soon
            off = HOLE_OFF - self.rng.choice([64 << 10, PAGE, 8, 0])
            return f"buf+{off:#x}", 0
        return None, self.rng.choice([0, 1, KERNEL_VA, U64_MAX, U64_MAX - PAGE + 1, 1 << 47])

    def iova(self, bits: int) -> int:
        r = self.rng.random()
        if r < 0.5:
            return self.window + self.rng.randrange(0, 8 << 22, PAGE)
        if r < 0.6:
            return self.window + self.rng.randrange(0, 1 << 22) | 1
        return self.boundary(bits)

    def length(self, bits: int) -> int:
        r = self.rng.random()
        if r < 0.4:
            return self.rng.randint(1, 8) * PAGE
        if r < 0.55:
            return self.rng.choice([0, 1, 7, 8, 16, PAGE - 1, PAGE + 1])
        if r < 0.8:
            big = [U32_MAX, 1 << 31, 1 << 40, 1 << 45, 1 << 63, U64_MAX, U64_MAX - PAGE + 1]
            return self.rng.choice(big) & ((1 << bits) - 1)
        return self.boundary(bits)

    def flags(self, bits: int) -> int:
        r = self.rng.random()
        if r < 0.3:
            return 0
        if r < 0.55:
            return self.rng.randrange(0, 8)
        if r < 0.85:
            return 1 << self.rng.randrange(bits)
        return self.boundary(bits)

    def fill(self, call: Call, name: str, ctype: Any) -> None:
        """Set ``name`` of ``call`` to a value (or ref) chosen for its C name and width."""
        leaf = name.rpartition(".")[2]
        bits = ctypes.sizeof(ctype) * 8
        call.fields.pop(name, None)
        call.refs.pop(name, None)
        if leaf in ("size", "argsz") and "." not in name:
            return
        value: int
        if leaf.startswith("out_") or leaf == "reserved" or leaf == "reserved2" or leaf == "last":
            value = 0 if self.rng.random() < 0.9 else self.boundary(bits)
        elif call.op == "IOMMU_IOAS_MAP_FILE" and leaf == "fd":
            # an area holds its file: one that holds this context back (an access, an
            # event queue, the bound cdev, the iommufd itself) is a reference cycle that
            # 7.3 never frees either, not a finding
            call.refs[name] = self.rng.choice(ACYCLIC_FDS)
            return
        elif leaf in ("fd", "iommufd", "dmabuf_fd") or leaf.endswith("_fd"):
            ref, value = self.fd_ref()
            if ref is not None:
                call.refs[name] = ref
                return
        elif leaf in PTR_FIELDS and bits == 64:
            ref, value = self.pointer(call)
            if ref is not None:
                call.refs[name] = ref
                return
        elif leaf in ID_FIELDS or leaf.endswith("_id"):
            value = self.any_id() if self.rng.random() < 0.9 else self.boundary(bits)
        elif leaf in IOVA_FIELDS:
            value = self.iova(bits)
        elif leaf in LEN_FIELDS or (leaf == "size" and bits == 64):
            value = self.length(bits)
        elif leaf in FLAG_FIELDS:
            value = self.flags(bits)
        elif leaf == "pasid":
            value = self.rng.choice([0, 1, 2, (1 << 20) - 1, 1 << 20, 1024, U32_MAX])
        else:
            value = self.boundary(bits)
        call.fields[name] = value & ((1 << bits) - 1)

    def sized(self, call: Call, struct_type: type[uapi.Struct], min_size: int) -> None:
        """The ``size``/``argsz`` of ``call``: mostly exact; else 0, short, a zero or a
        non-zero tail, or more than there is (the struct next to a guard page, so the
        kernel's honest read of the rest faults)."""
        ksize = ctypes.sizeof(struct_type)
        first = struct_type._fields_[0][0]
        r = self.rng.random()
        size: int | None = None
        if r < 0.6:
            size = None
        elif r < 0.7:
            size = self.rng.choice([0, 4, max(min_size - 1, 0)])
        elif r < 0.8:
            extra = self.rng.choice([4, 8, 64])
            tail = bytearray(extra)
            if self.rng.random() < 0.5:
                tail[self.rng.randrange(extra)] = self.rng.randint(1, 255)
            call.tail, size = tail.hex(), ksize + extra
        else:
            size = self.rng.choice([ksize + 8, ksize + PAGE, U32_MAX, 1 << 31, GUARD_SPAN])
            call.guard = self.rng.choice([0, 0, 8, PAGE])
        if size is None:
            size = ksize
        if first == "size":
            call.size = size
        else:
            call.fields["argsz"] = size
        if call.guard is None and self.rng.random() < 0.2:
            call.guard = 0
        if call.guard is not None and size > ksize + len(call.tail) // 2 and call.tail:
            call.tail = ""

    # -- calls -----------------------------------------------------------------------------

    def _struct_call(
        self, op: str, request: int, struct_type: type[uapi.Struct], **kw: Any
    ) -> Call:
        call = Call(op, request, note="fuzz", **kw)
        member = _member(call)
        for name, ctype in leaf_fields(struct_type, member):
            if name == "op" and "op" in call.fields:
                continue
            self.fill(call, name, ctype)
        return call

    def _gen_any_iommufd(self) -> Call:
        d = self.rng.choice(uapi.IOMMUFD_IOCTLS)
        call = self._struct_call(d.name, d.request, d.struct)
        self.sized(call, d.struct, d.min_size)
        return self._bind_out_fd(call)

    def _gen_any_test(self) -> Call:
        ops = sorted(TEST_OP_MEMBERS)
        r = self.rng.random()
        op = self.rng.choice(ops) if r < 0.95 else self.rng.choice([0, 24, 0xFFFF, U32_MAX])
        name = next(
            (n for n in dir(uapi) if n.startswith("IOMMU_TEST_OP_") and getattr(uapi, n) == op),
            None,
        )
        call = self._struct_call(
            name or "IOMMU_TEST_CMD", uapi.IOMMU_TEST_CMD, uapi.iommu_test_cmd, fields={"op": op}
        )
        if name is None:
            call.op = "IOMMU_TEST_OP_UNKNOWN"
        if op in ACCESS_OPS:
            ref, value = self.fd_ref()
            call.fields.pop("id", None)
            if ref is not None:
                call.refs["id"] = ref
            else:
                call.fields["id"] = value & U32_MAX
        if op == uapi.IOMMU_TEST_OP_CREATE_ACCESS:
            self.n_access += 1
            call.binds = f"access{self.n_access}"
        self.sized(call, uapi.iommu_test_cmd, uapi.IOMMU_TEST_IOCTL.min_size)
        return call

    def _bind_out_fd(self, call: Call) -> Call:
        if call.op in ("IOMMU_FAULT_QUEUE_ALLOC", "IOMMU_VEVENTQ_ALLOC"):
            self.n_eventq += 1
            call.binds = f"{'fault' if 'FAULT' in call.op else 'veventq'}{self.n_eventq}"
        return call

    def _gen_vfio_compat(self) -> Call:
        op = self.rng.choice(VFIO_COMPAT)
        request, struct_type = OTHER_IOCTLS[op]
        file = "vfio" if self.rng.random() < 0.5 else ""
        if struct_type is None:
            value = self.rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xFFFF, U32_MAX, U64_MAX])
            return Call(op, request, file=file, value=value, note="fuzz")
        call = self._struct_call(op, request, struct_type, file=file)
        if op == "VFIO_IOMMU_MAP_DMA" and self.rng.random() < 0.5:
            call.refs["vaddr"] = f"buf+{self.rng.randrange(0, 32 << 20, PAGE):#x}"
            call.fields.pop("vaddr", None)
        if op in ("VFIO_IOMMU_MAP_DMA", "VFIO_IOMMU_UNMAP_DMA") and self.rng.random() < 0.6:
            call.fields["iova"] = self.window + self.rng.randrange(0, 8 << 22, PAGE)
            call.fields["size"] = self.rng.randint(1, 16) * PAGE
        self.sized(call, struct_type, ctypes.sizeof(struct_type))
        return call

    def _gen_vfio_steered(self) -> Call:
        """A VFIO container call that can succeed: the compat IOAS set, TYPE1(v2), a map of
        the shared region, an unmap, the info with its capabilities."""
        file = "vfio" if self.rng.random() < 0.3 else ""
        r = self.rng.random()
        if r < 0.25 or not self.ioas:
            ioas = self.rng.choice(sorted(self.ioas)) if self.ioas else 1
            op = self.rng.choice([uapi.IOMMU_VFIO_IOAS_SET] * 3 + [0, 2])
            fields = {"ioas_id": ioas, "op": op}
            return Call("IOMMU_VFIO_IOAS", uapi.IOMMU_VFIO_IOAS, fields, file=file, note="steered")
        if r < 0.35:
            value = self.rng.choice([uapi.VFIO_TYPE1_IOMMU, uapi.VFIO_TYPE1v2_IOMMU])
            return Call("VFIO_SET_IOMMU", uapi.VFIO_SET_IOMMU, file=file, value=value)
        iova = self.window + self.rng.randrange(0, 8 << 22, PAGE)
        size = self.rng.randint(1, 16) * PAGE
        if r < 0.7:
            st = uapi.vfio_iommu_type1_dma_map
            flags = uapi.VFIO_DMA_MAP_FLAG_READ | uapi.VFIO_DMA_MAP_FLAG_WRITE
            return Call(
                "VFIO_IOMMU_MAP_DMA",
                uapi.VFIO_IOMMU_MAP_DMA,
                {"argsz": ctypes.sizeof(st), "flags": flags, "iova": iova, "size": size},
                {"vaddr": f"buf+{self.rng.randrange(0, 32 << 20, PAGE):#x}"},
                file=file,
                note="steered",
            )
        if r < 0.9:
            st2 = uapi.vfio_iommu_type1_dma_unmap
            fields = {"argsz": ctypes.sizeof(st2), "iova": iova, "size": size}
            if self.rng.random() < 0.2:
                fields = {"argsz": ctypes.sizeof(st2), "flags": uapi.VFIO_DMA_UNMAP_FLAG_ALL}
            return Call(
                "VFIO_IOMMU_UNMAP_DMA", uapi.VFIO_IOMMU_UNMAP_DMA, fields, file=file, note="steered"
            )
        st3 = uapi.vfio_iommu_type1_info
        argsz = self.rng.choice([ctypes.sizeof(st3), 256, 4096])
        call = Call("VFIO_IOMMU_GET_INFO", uapi.VFIO_IOMMU_GET_INFO, {"argsz": argsz}, file=file)
        if argsz > ctypes.sizeof(st3):
            call.tail, call.guard = bytes(argsz - ctypes.sizeof(st3)).hex(), 0
        return call

    def _gen_pasid_steered(self) -> Call:
        """A PASID test op on a PASID-capable mock device, a small PASID and an IOAS or
        HWPT: attach, replace, check, detach."""
        pasid_devs = [i for i, d in self.devs.items() if d.flags & uapi.MOCK_FLAGS_DEVICE_PASID]
        dev = self.rng.choice(sorted(pasid_devs or self.devs) or [0])
        pasid = self.rng.choice([1, 1, 2, 3, uapi.IOMMU_TEST_PASID_RESERVED, 1 << 20])
        pasid_hwpts = [h for h, m in self.hwpts.items() if m.flags & uapi.IOMMU_HWPT_ALLOC_PASID]
        pts = sorted(pasid_hwpts) if pasid_hwpts and self.rng.random() < 0.7 else []
        pts = pts or sorted(self.ioas) + sorted(self.hwpts)
        pt = self.rng.choice(pts) if pts else 0
        op, member, extra = self.rng.choice(
            [
                ("IOMMU_TEST_OP_PASID_ATTACH", "pasid_attach", {"pt_id": pt}),
                ("IOMMU_TEST_OP_PASID_REPLACE", "pasid_replace", {"pt_id": pt}),
                ("IOMMU_TEST_OP_PASID_CHECK_HWPT", "pasid_check", {"hwpt_id": pt}),
                ("IOMMU_TEST_OP_PASID_DETACH", "pasid_detach", {}),
            ]
        )
        fields = {"op": getattr(uapi, op), "id": dev, f"{member}.pasid": pasid}
        fields |= {f"{member}.{k}": v for k, v in extra.items()}
        return Call(op, uapi.IOMMU_TEST_CMD, fields, note="steered")

    def _gen_sim_dma(self) -> Call:
        """A device DMA that can succeed: bound and attached (else it is the fuzz of the
        cdev), at a mapped area of an IOAS, through a scratch buffer."""
        length = self.rng.choice([1, 8, 64, PAGE, 3 * PAGE, 16 * PAGE])
        areas = [iova for m in self.ioas.values() for iova in m.areas]
        iova = self.rng.choice(sorted(areas)) if areas else self.window
        flags = self.rng.choice([0, simapi.IOASID_SIM_DMA_WRITE])
        st = simapi.ioasid_sim_dma
        return Call(
            "IOASID_SIM_DEVICE_DMA",
            simapi.IOASID_SIM_DEVICE_DMA,
            {"argsz": ctypes.sizeof(st), "flags": flags, "iova": iova, "length": length},
            {"uptr": "scratch"},
            scratch=length,
            file="cdev",
            note="steered",
        )

    def _gen_cdev(self) -> Call:
        names, weights = zip(*CDEV_OPS, strict=True)
        op = self.rng.choices(names, weights)[0]
        request, struct_type = OTHER_IOCTLS[op]
        if struct_type is None:
            return Call(op, request, file="cdev", value=0, note="fuzz")
        call = self._struct_call(op, request, struct_type, file="cdev")
        r = self.rng.random()
        if op == "VFIO_DEVICE_BIND_IOMMUFD" and r < 0.7:
            call.refs["iommufd"] = "selffd"
            call.fields = {k: 0 for k in call.fields}
        elif op == "VFIO_DEVICE_ATTACH_IOMMUFD_PT" and r < 0.7:
            call.fields["flags"] = 0
            if self.ioas:
                call.fields["pt_id"] = self.rng.choice(sorted(self.ioas))
        elif op == "IOASID_SIM_DEVICE_DMA" and r < 0.6:
            call.fields["flags"] &= simapi.IOASID_SIM_DMA_WRITE
            call.fields["length"] = self.rng.choice([1, 8, 64, PAGE, 3 * PAGE])
            call.scratch = call.fields["length"]
            call.refs["uptr"] = "scratch"
            areas = [iova for m in self.ioas.values() for iova in m.areas]
            if areas:
                call.fields["iova"] = self.rng.choice(sorted(areas))
        self.sized(call, struct_type, ctypes.sizeof(struct_type))
        return call

    def _gen_random_bytes(self) -> Call:
        d = self.rng.choice((*uapi.IOMMUFD_IOCTLS, uapi.IOMMU_TEST_IOCTL))
        n = self.rng.choice([4, 8, d.min_size, ctypes.sizeof(d.struct), 64])
        raw = bytearray(self.rng.randbytes(n))
        if n >= 4 and self.rng.random() < 0.7:
            raw[:4] = min(n, ctypes.sizeof(d.struct)).to_bytes(4, "little")
        return Call("RANDOM", d.request, raw=raw.hex(), note=f"random bytes for {d.name}")

    # -- mutating a model-steered call ------------------------------------------------------

    def mutate(self, call: Call) -> Call:
        """One struct-aware change to ``call``: a field at a boundary (or another object's
        id, another fd, another pointer), or its size, or its placement."""
        struct_type = struct_of(call.op)
        if struct_type is None or call.value is not None:
            return call
        r = self.rng.random()
        if r < 0.15:
            self.enlarge(call, struct_type)
        elif r < 0.65:
            leaves = list(leaf_fields(struct_type, _member(call)))
            leaves = [(n, t) for n, t in leaves if n not in ("op", "size", "argsz")]
            if leaves:
                name, ctype = self.rng.choice(leaves)
                self.fill(call, name, ctype)
                call.note = f"mutated {name}; {call.note}"
        elif r < 0.9:
            min_size = ctypes.sizeof(struct_type)
            for d in (*uapi.IOMMUFD_IOCTLS, uapi.IOMMU_TEST_IOCTL):
                if d.struct is struct_type:
                    min_size = d.min_size
            self.sized(call, struct_type, min_size)
            call.note = f"mutated size; {call.note}"
        else:
            call.guard = self.rng.choice([0, 8])
        return call

    def enlarge(self, call: Call, struct_type: type[uapi.Struct]) -> None:
        """Every length of ``call`` declared huge, every pointer 64 KiB before the shared
        region's hole (real, non-zero memory, then a fault): a kernel that works or
        allocates in proportion to a declared length rather than to what there is shows."""
        huge = self.rng.choice([1 << 32, 1 << 40, 1 << 45, 1 << 63, U64_MAX & ~(PAGE - 1)])
        for name, ctype in leaf_fields(struct_type, _member(call)):
            leaf = name.rpartition(".")[2]
            bits = ctypes.sizeof(ctype) * 8
            if (leaf in LEN_FIELDS and leaf != "page_size") or (leaf == "size" and bits == 64):
                call.fields[name] = huge & ((1 << bits) - 1)
            elif leaf in PTR_FIELDS and bits == 64 and name in call.refs:
                call.refs[name] = f"buf+{HOLE_OFF - (64 << 10):#x}"
                call.scratch = 0
        call.note = f"huge lengths ({huge:#x}); {call.note}"

    def observe_fuzz(self, call: Call, outcome: Json) -> None:
        """Learn the ids and fds a call the model has no kind for returned."""
        if "ret" not in outcome:
            return
        for name, value in outcome.get("out", {}).items():
            leaf = name.rpartition(".")[2]
            is_id = (leaf.startswith("out_") and leaf.endswith("_id")) or leaf == "out_devid"
            if is_id and isinstance(value, int) and 0 < value < 1 << 24:
                self.other_ids.add(value)
                self.max_id = max(self.max_id, value)
