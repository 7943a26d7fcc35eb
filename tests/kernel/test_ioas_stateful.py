"""A hypothesis state machine over the IOAS ioctls of the simulated kernel.

Random map / map_file / copy / unmap / allow_iovas / iova_ranges / option(HUGE_PAGES) /
alloc / destroy sequences, valid and invalid, through raw ioctls on the ``sim`` backend.
An independent, deliberately simple model (a dict of areas per IOAS) predicts each call's
errno where that is easy and the unmapped byte counts. After every step:

* areas never overlap, each lies in ``[0, ULONG_MAX]`` and matches the model;
* a failed call changed nothing (areas, allowed, reserved, alignment, huge-pages option,
  object ids) — except the kernel's documented partial unmap: a failing UNMAP that cut an
  area removed exactly the fully covered areas below the cut one;
* nothing is pinned without a domain: ``locked_vm`` and ``pinned_vm`` stay 0.
"""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass, field
from typing import Any, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ioasid import uapi
from ioasid.backends import sim

PAGE = 4096
HPAGE = 2 << 20
U64_MAX = ULONG_MAX = (1 << 64) - 1
R, W, FIXED = (
    uapi.IOMMU_IOAS_MAP_READABLE,
    uapi.IOMMU_IOAS_MAP_WRITEABLE,
    uapi.IOMMU_IOAS_MAP_FIXED_IOVA,
)
VA_BASE = 0x7F0000000000
"""User VAs are never touched without a domain: any 2 MiB-aligned base will do."""
WINDOW = 0x100000

iovas = st.integers(0, 63).map(lambda n: WINDOW + n * PAGE)
lengths = st.integers(1, 12).map(lambda n: n * PAGE)
va_offsets = st.one_of(
    st.integers(0, 1023).map(lambda n: n * PAGE), st.sampled_from([0x800, 0x10, HPAGE + 0x1800])
)
map_flags = st.sampled_from([R | W, R | W, R, W])
mostly_valid = st.sampled_from([True, True, True, False])


@dataclass
class MArea:
    last: int
    writable: bool
    va: int


@dataclass
class MIoas:
    areas: dict[int, MArea] = field(default_factory=dict)
    allowed: list[tuple[int, int]] = field(default_factory=list)
    huge: bool = True

    @property
    def alignment(self) -> int:
        return 1 if self.huge else PAGE

    def overlaps(self, first: int, last: int) -> bool:
        return any(i <= last and a.last >= first for i, a in self.areas.items())

    def pieces(self, first: int, last: int) -> list[tuple[int, int, MArea, int]] | None:
        """``(first, last, area, area_iova)`` covering ``[first, last]`` contiguously."""
        out = []
        cur = first
        for i in sorted(self.areas):
            a = self.areas[i]
            if a.last < cur:
                continue
            if i > cur:
                return None
            out.append((cur, min(a.last, last), a, i))
            if a.last >= last:
                return out
            cur = a.last + 1
        return None


def roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def auto_align(va: int, length: int) -> int:
    align = roundup_pow_of_two(length) if not va else min(roundup_pow_of_two(length), va & -va)
    return min(align, HPAGE)


class IoasMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kernel = sim.reset()
        self.handle = sim.open("/dev/iommu")
        self.ictx: Any = cast(Any, self.handle.file).ictx
        self.model: dict[int, MIoas] = {}
        self.dead: set[int] = set()
        self.memfd = _memfd()

    def teardown(self) -> None:
        self.handle.close()
        import os

        os.close(self.memfd)

    # -- the ioctl door and the unchanged-on-failure rule ---------------------------------

    def ioctl(
        self,
        request: int,
        struct: Any,
        *,
        size: int | None = None,
        tail: bytes = b"",
        unmap: tuple[int, int, int] | None = None,
    ) -> tuple[int, Any]:
        """Issue ``request``; ``(errno or 0, the struct as written back)``.

        On failure the IOAS state must be unchanged, or — for ``unmap=(ioas, first, last)``
        failing with ENOENT — changed by exactly the whole areas below the cut one.
        """
        struct.size = ctypes.sizeof(struct) if size is None else size
        buf = struct.to_bytearray() + bytearray(tail)
        before = self.snapshot()
        err = 0
        try:
            self.handle.ioctl(request, buf)
        except OSError as e:
            err = e.errno or -1
        out = type(struct).from_bytes(buf)
        if err:
            after = self.snapshot()
            if unmap is not None and err == errno.ENOENT:
                expected = _after_partial_unmap(before, *unmap)
                assert after == expected, "failed UNMAP removed other than the areas below the cut"
            else:
                name = errno.errorcode[err]
                assert after == before, f"failed ioctl {request:#x} ({name}) changed state"
        return err, out

    def snapshot(self) -> dict[Any, Any]:
        snap: dict[Any, Any] = {"ids": sorted(o.id for o in self.ictx.objects.objects())}
        for obj in self.ictx.objects.objects():
            iopt = obj.iopt
            snap[obj.id] = (
                tuple(
                    (k, a.iova, a.last, a.start_byte, a.iommu_prot, id(a.pages))
                    for k, a in iopt.areas.items()
                ),
                tuple(iopt.allowed.items()),
                tuple((r.first, r.last) for r in iopt.reserved),
                iopt.iova_alignment,
                iopt.disable_large_pages,
            )
        return snap

    # -- picking ------------------------------------------------------------------------

    def some_id(self, data: st.DataObject, valid: bool = True) -> int:
        if valid and self.model:
            return data.draw(st.sampled_from(sorted(self.model)))
        bad = [0, max([*self.model, *self.dead, 0]) + 1, *sorted(self.dead)]
        return data.draw(st.sampled_from(bad))

    # -- rules --------------------------------------------------------------------------

    @initialize(n=st.integers(1, 3))
    def first_ioases(self, n: int) -> None:
        for _ in range(n):
            self.alloc()

    @rule()
    def alloc(self) -> None:
        used = set(self.model)
        expect = next(i for i in range(1, len(used) + 2) if i not in used)
        err, out = self.ioctl(uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc())
        assert err == 0
        assert out.out_ioas_id == expect
        self.model[expect] = MIoas()
        self.dead.discard(expect)

    @rule(data=st.data(), valid=st.booleans())
    def destroy(self, data: st.DataObject, valid: bool) -> None:
        obj = self.some_id(data, valid)
        err, _ = self.ioctl(uapi.IOMMU_DESTROY, uapi.iommu_destroy(id=obj))
        if obj in self.model:
            assert err == 0
            del self.model[obj]
            self.dead.add(obj)
        else:
            assert err == errno.ENOENT

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        fixed=st.booleans(),
        flags=map_flags,
        length=lengths,
        va_off=va_offsets,
        odd=st.sampled_from([0, 0, 0, 0x800]),
    )
    def map(
        self, data: st.DataObject, fixed: bool, flags: int, length: int, va_off: int, odd: int
    ) -> None:
        ioas_id = self.some_id(data)
        m = self.model[ioas_id]
        length += odd
        iova = data.draw(iovas) + data.draw(st.sampled_from([0, 0, 0, 0x800])) if fixed else 0
        va = VA_BASE + va_off
        cmd = uapi.iommu_ioas_map(
            flags=flags | (FIXED if fixed else 0),
            ioas_id=ioas_id,
            user_va=va,
            length=length,
            iova=iova,
        )
        err, out = self.ioctl(uapi.IOMMU_IOAS_MAP, cmd)
        self.check_map(m, err, out.iova, iova if fixed else None, length, va, flags)

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        fixed=st.booleans(),
        flags=map_flags,
        length=lengths,
        start=st.integers(0, 255).map(lambda n: n * PAGE),
    )
    def map_file(
        self, data: st.DataObject, fixed: bool, flags: int, length: int, start: int
    ) -> None:
        ioas_id = self.some_id(data)
        m = self.model[ioas_id]
        iova = data.draw(iovas) if fixed else 0
        cmd = uapi.iommu_ioas_map_file(
            flags=flags | (FIXED if fixed else 0),
            ioas_id=ioas_id,
            fd=self.memfd,
            start=start,
            length=length,
            iova=iova,
        )
        err, out = self.ioctl(uapi.IOMMU_IOAS_MAP_FILE, cmd)
        self.check_map(m, err, out.iova, iova if fixed else None, length, start, flags)

    def check_map(
        self, m: MIoas, err: int, out_iova: int, iova: int | None, length: int, va: int, flags: int
    ) -> None:
        """Predict MAP / MAP_FILE: alignment EINVALs, EEXIST on overlap, else success."""
        align = m.alignment
        if length % align:
            assert err == errno.EINVAL
            return
        if iova is not None:
            if iova % align:
                assert err == errno.EINVAL
                return
            if m.overlaps(iova, iova + length - 1):
                assert err == errno.EEXIST
                return
            if va % PAGE % align:
                assert err == errno.EINVAL
                return
            assert err == 0
            assert out_iova == iova
        else:
            if auto_align(va, length) < align:
                assert err == errno.EINVAL
                return
            if err == errno.ENOSPC:
                assert m.allowed, "ENOSPC without an allowed list in a 2^64 space"
                return
            assert err == 0
            self.check_auto_iova(m, out_iova, length, va)
        m.areas[out_iova] = MArea(out_iova + length - 1, bool(flags & W), va)

    def check_auto_iova(self, m: MIoas, iova: int, length: int, hint: int) -> None:
        last = iova + length - 1
        assert not m.overlaps(iova, last), "kernel-chosen IOVA overlaps an area"
        assert iova >= PAGE and last <= ULONG_MAX - PAGE
        align = auto_align(hint, length)
        if align >= PAGE:
            assert iova % align == hint % PAGE
        if m.allowed:
            assert any(f <= iova and last <= l for f, l in m.allowed), "outside the allowed list"

    @precondition(lambda self: self.model)
    @rule(data=st.data(), fixed=st.booleans(), flags=map_flags, kind=st.integers(0, 4))
    def copy(self, data: st.DataObject, fixed: bool, flags: int, kind: int) -> None:
        src_id, dst_id = self.some_id(data), self.some_id(data)
        src, dst = self.model[src_id], self.model[dst_id]
        items = sorted(src.areas.items())
        if items and kind < 4:
            i = data.draw(st.integers(0, len(items) - 1))
            first, a = items[i]
            if kind == 0:
                last = a.last
            elif kind == 1:
                j = data.draw(st.integers(i, len(items) - 1))
                last = items[j][1].last
            elif kind == 2:
                first = first + (a.last - first) // 2 // PAGE * PAGE
                last = a.last
            else:
                last = a.last + PAGE
        else:
            first = data.draw(iovas)
            last = first + data.draw(lengths) - 1
        length = last - first + 1
        dst_iova = data.draw(iovas) if fixed else 0
        cmd = uapi.iommu_ioas_copy(
            flags=flags | (FIXED if fixed else 0),
            dst_ioas_id=dst_id,
            src_ioas_id=src_id,
            length=length,
            dst_iova=dst_iova,
            src_iova=first,
        )
        err, out = self.ioctl(uapi.IOMMU_IOAS_COPY, cmd)
        pieces = src.pieces(first, last)
        if pieces is None:
            assert err == errno.ENOENT
            return
        if length % dst.alignment or (fixed and dst_iova % dst.alignment):
            assert err == errno.EINVAL
            return
        if fixed and dst.overlaps(dst_iova, dst_iova + length - 1):
            assert err == errno.EEXIST
            return
        hint = pieces[0][2].va + (first - pieces[0][3])
        if not fixed and auto_align(hint, length) < dst.alignment:
            assert err == errno.EINVAL
            return
        if not fixed and err == errno.ENOSPC:
            assert dst.allowed, "ENOSPC without an allowed list in a 2^64 space"
            return
        for pfirst, _, a, a_iova in pieces:  # iopt_insert_area, piece by piece
            if flags & W and not a.writable:
                assert err == errno.EPERM
                return
            if (a.va + pfirst - a_iova) % PAGE % dst.alignment:
                assert err == errno.EINVAL
                return
        assert err == 0, errno.errorcode.get(err)
        if fixed:
            assert out.dst_iova == dst_iova
        else:
            self.check_auto_iova(dst, out.dst_iova, length, hint)
        cur = out.dst_iova
        for pfirst, plast, a, a_iova in pieces:
            dst.areas[cur] = MArea(cur + plast - pfirst, a.writable, a.va + pfirst - a_iova)
            cur += plast - pfirst + 1

    @precondition(lambda self: self.model)
    @rule(data=st.data(), kind=st.sampled_from([0, 1, 1, 2, 2, 2, 2, 3, 4, 5, 6]))
    def unmap(self, data: st.DataObject, kind: int) -> None:
        ioas_id = self.some_id(data)
        m = self.model[ioas_id]
        items = sorted(m.areas.items())
        if kind == 0 or not items:
            first, length = (0, U64_MAX) if data.draw(st.booleans()) else (data.draw(iovas), PAGE)
        else:
            i = data.draw(st.integers(0, len(items) - 1))
            j = min(i + data.draw(st.sampled_from([0, 1, 1, 2, 3])), len(items) - 1)
            first, last = items[i][0], items[j][1].last
            if kind == 2:
                last = items[j][0] + (items[j][1].last - items[j][0]) // 2
            elif kind == 3:
                first += PAGE // 2
            elif kind == 4:
                first, last = max(first - PAGE, 0), last + PAGE
            elif kind == 5:
                first, last = 0, ULONG_MAX - 1
            length = last - first + 1
        wildcard = (first, length) == (0, U64_MAX)
        last = ULONG_MAX if wildcard else first + length - 1
        err, out = self.ioctl(
            uapi.IOMMU_IOAS_UNMAP,
            uapi.iommu_ioas_unmap(ioas_id=ioas_id, iova=first, length=length),
            unmap=(ioas_id, first, last),
        )
        removed, cut = _model_unmap(m, first, last)
        if cut or (not removed and not wildcard):
            assert err == errno.ENOENT
            assert out.length == length, "a failed UNMAP wrote its length back"
        else:
            assert err == 0
            assert out.length == sum(m.areas[i].last - i + 1 for i in removed)
        for i in removed:
            del m.areas[i]

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        ranges=st.lists(st.tuples(st.integers(0, 127), st.integers(0, 64)), max_size=3),
    )
    def allow_iovas(self, data: st.DataObject, ranges: list[tuple[int, int]]) -> None:
        ioas_id = self.some_id(data)
        rs = [(WINDOW + a * PAGE, WINDOW + a * PAGE + n * PAGE - 1 + (n == 0)) for a, n in ranges]
        arr = (uapi.iommu_iova_range * max(len(rs), 1))()
        for k, (f, l) in enumerate(rs):
            arr[k].start, arr[k].last = f, l
        cmd = uapi.iommu_ioas_allow_iovas(
            ioas_id=ioas_id, num_iovas=len(rs), allowed_iovas=ctypes.addressof(arr)
        )
        err, _ = self.ioctl(uapi.IOMMU_IOAS_ALLOW_IOVAS, cmd)
        bad = any(f >= l for f, l in rs) or any(
            a <= d and c <= b for k, (a, b) in enumerate(rs) for c, d in rs[k + 1 :]
        )
        if bad:
            assert err == errno.EINVAL
        else:
            assert err == 0
            self.model[ioas_id].allowed = sorted(rs)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), cap=st.sampled_from([0, 1, 3]), valid=mostly_valid)
    def iova_ranges(self, data: st.DataObject, cap: int, valid: bool) -> None:
        ioas_id = self.some_id(data, valid)
        arr = (uapi.iommu_iova_range * 3)()
        cmd = uapi.iommu_ioas_iova_ranges(
            ioas_id=ioas_id, num_iovas=cap, allowed_iovas=ctypes.addressof(arr) if cap else 0
        )
        err, out = self.ioctl(uapi.IOMMU_IOAS_IOVA_RANGES, cmd)
        if ioas_id not in self.model:
            assert err == errno.ENOENT
            return
        assert err == (errno.EMSGSIZE if cap == 0 else 0)
        assert out.num_iovas == 1
        assert out.out_iova_alignment == self.model[ioas_id].alignment
        if cap:
            assert (arr[0].start, arr[0].last) == (0, ULONG_MAX)

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        op=st.sampled_from([uapi.IOMMU_OPTION_OP_GET, uapi.IOMMU_OPTION_OP_SET]),
        val=st.sampled_from([0, 1, 2]),
        valid=mostly_valid,
    )
    def huge_pages(self, data: st.DataObject, op: int, val: int, valid: bool) -> None:
        ioas_id = self.some_id(data, valid)
        cmd = uapi.iommu_option(
            option_id=uapi.IOMMU_OPTION_HUGE_PAGES, op=op, object_id=ioas_id, val64=val
        )
        err, out = self.ioctl(uapi.IOMMU_OPTION, cmd)
        m = self.model.get(ioas_id)
        if m is None:
            assert err == errno.ENOENT
        elif op == uapi.IOMMU_OPTION_OP_GET:
            assert err == 0 and out.val64 == int(m.huge)
        elif val == 2:
            assert err == errno.EINVAL
        elif val == 1:
            assert err == 0
            m.huge = True
        elif m.huge and any(
            i % PAGE or (a.last + 1) % PAGE or a.va % PAGE for i, a in m.areas.items()
        ):
            assert err == errno.EADDRINUSE
        else:
            assert err == 0
            m.huge = False

    @precondition(lambda self: self.model)
    @rule(data=st.data(), which=st.sampled_from(["flags", "reserved", "small", "tail", "ntty"]))
    def invalid(self, data: st.DataObject, which: str) -> None:
        """Calls that must fail before touching anything."""
        ioas_id = self.some_id(data)
        cmd = uapi.iommu_ioas_map(
            flags=R | W | FIXED,
            ioas_id=ioas_id,
            user_va=VA_BASE,
            length=PAGE,
            iova=data.draw(iovas),
        )
        if which == "flags":
            cmd.flags |= 1 << 5
            err, _ = self.ioctl(uapi.IOMMU_IOAS_MAP, cmd)
            assert err == errno.EOPNOTSUPP
        elif which == "reserved":
            cmd.reserved = 1
            err, _ = self.ioctl(uapi.IOMMU_IOAS_MAP, cmd)
            assert err == errno.EOPNOTSUPP
        elif which == "small":
            err, _ = self.ioctl(uapi.IOMMU_IOAS_MAP, cmd, size=data.draw(st.integers(0, 39)))
            assert err == errno.EINVAL
        elif which == "tail":
            err, _ = self.ioctl(uapi.IOMMU_IOAS_MAP, cmd, size=48, tail=b"\0\0\0\1\0\0\0\0")
            assert err == errno.E2BIG
        else:
            err, _ = self.ioctl(uapi._IO(uapi.IOMMUFD_TYPE, 0x9A), cmd)
            assert err == errno.ENOTTY

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def areas_are_disjoint_and_match_the_model(self) -> None:
        ioases = {o.id: o for o in self.ictx.objects.objects()}
        assert sorted(ioases) == sorted(self.model)
        for ioas_id, obj in ioases.items():
            prev_last = -1
            for key, area in obj.iopt.areas.items():
                assert key == area.iova <= area.last <= ULONG_MAX
                assert area.iova > prev_last, "areas overlap"
                assert area.pages is not None
                prev_last = area.last
            got = {k: a.last for k, a in obj.iopt.areas.items()}
            assert got == {k: a.last for k, a in self.model[ioas_id].areas.items()}
            assert obj.iopt.disable_large_pages == (not self.model[ioas_id].huge)
            assert obj.iopt.iova_alignment == self.model[ioas_id].alignment

    @invariant()
    def nothing_is_pinned(self) -> None:
        procs = self.kernel.processes
        assert all(u.locked_vm == 0 for u in procs.users.values())
        for task in procs.tasks.values():
            assert task.mm.locked_vm == 0 and task.mm.pinned_vm == 0


def _memfd() -> int:
    import os

    fd = os.memfd_create("ioas-stateful", os.MFD_CLOEXEC)
    os.ftruncate(fd, 1 << 20)
    return fd


def _model_unmap(m: MIoas, first: int, last: int) -> tuple[list[int], bool]:
    """The model's UNMAP: whole areas from the lowest up until one is cut."""
    removed: list[int] = []
    for i in sorted(m.areas):
        a = m.areas[i]
        if a.last < first or i > last:
            continue
        if i < first or a.last > last:
            return removed, True
        removed.append(i)
    return removed, False


def _after_partial_unmap(
    before: dict[Any, Any], ioas_id: int, first: int, last: int
) -> dict[Any, Any]:
    """``before`` minus the whole areas below the first area ``[first, last]`` cuts."""
    if ioas_id not in before:
        return before
    areas, *rest = before[ioas_id]
    keep = []
    cut_seen = False
    for entry in areas:
        _, iova, alast = entry[:3]
        inside = alast >= first and iova <= last
        if inside and (iova < first or alast > last):
            cut_seen = True
        if inside and not cut_seen and iova >= first and alast <= last:
            continue
        keep.append(entry)
    after = dict(before)
    after[ioas_id] = (tuple(keep), *rest)
    return after


IoasMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestIoasStateful = IoasMachine.TestCase
