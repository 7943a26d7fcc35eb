"""What backend A holds, as the generator believes it: IOASes and their areas, mock
devices, HWPTs, access objects, the ids seen. Only a guide for producing interesting calls
(overlaps, cuts, stale ids); nothing is asserted against it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ioasid import uapi
from ioasid.testing.differential.calls import U64_MAX, ULONG_MAX, Call, Json, failed


@dataclass
class ModelArea:
    last: int
    writable: bool
    uva: int | None = None
    """Offset in the user region of the area's first byte, when it maps the region."""


@dataclass
class ModelDev:
    """A mock device (selftest object ``stdev``) and the HWPT its RID is attached to."""

    idev: int
    hwpt: int
    flags: int


@dataclass
class ModelHwpt:
    ioas: int
    flags: int
    auto: bool
    tracking: bool = False


@dataclass
class ModelAccess:
    ioas: int
    pin: bool
    items: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass
class ModelIoas:
    areas: dict[int, ModelArea] = field(default_factory=dict)
    huge: bool = True

    def sorted_areas(self) -> list[tuple[int, ModelArea]]:
        return sorted(self.areas.items())

    def covered(self, first: int, last: int) -> list[tuple[int, int, int, ModelArea]] | None:
        """The contiguous pieces ``(first, last, area iova, area)`` covering
        ``[first, last]``, or None."""
        out: list[tuple[int, int, int, ModelArea]] = []
        cur = first
        for iova, a in self.sorted_areas():
            if a.last < cur:
                continue
            if iova > cur:
                return None
            out.append((cur, min(a.last, last), iova, a))
            if a.last >= last:
                return out
            cur = a.last + 1
        return None


class Model:
    """The objects backend A answered for, learnt call by call (:meth:`observe`)."""

    def __init__(self, *, devices: bool = False) -> None:
        self.devices = devices
        self.fuzz = False
        self.ioas: dict[int, ModelIoas] = {}
        self.dead: set[int] = set()
        self.max_id = 0
        self.devs: dict[int, ModelDev] = {}
        self.hwpts: dict[int, ModelHwpt] = {}
        self.accesses: dict[str, ModelAccess] = {}
        self.closed: list[str] = []
        self.dead_objs: set[int] = set()
        self.nested: set[int] = set()
        self.viommus: dict[int, int] = {}
        """vIOMMU id → its parent HWPT."""
        self.vdevs: set[int] = set()
        self.vdev_of: dict[int, tuple[int, int]] = {}
        """vDEVICE id → (its vIOMMU, its idev)."""
        self.nested_on: dict[int, int] = {}
        """Nested HWPT id → the id it was allocated on (a vIOMMU or a nest parent)."""
        self.veventq_of: dict[str, int] = {}
        """Open vEVENTQ fd name → its vIOMMU."""
        self.hw_queues: set[int] = set()
        self.eventqs: dict[str, int] = {}
        """Open vEVENTQ / fault queue fds by name → the object id."""

    # -- learning from backend A ----------------------------------------------------------

    def observe_fuzz(self, call: Call, outcome: Json) -> None:
        """What the fuzz mode learns besides (:class:`~.structs.StructAware`)."""

    def observe(self, call: Call, outcome: Json) -> None:
        if self.fuzz:
            self.observe_fuzz(call, outcome)
        if self.devices and not failed(outcome):
            self._observe_devices(call, outcome.get("out", {}))
        if failed(outcome):
            if call.op == "IOMMU_IOAS_UNMAP" and outcome.get("errno") == "ENOENT":
                self._unmap_partial(call)
            return
        f = call.fields
        out = outcome.get("out", {})
        if call.op == "IOMMU_IOAS_ALLOC":
            new_id = int(out["out_ioas_id"])
            self.ioas[new_id] = ModelIoas()
            self.dead.discard(new_id)
            self.max_id = max(self.max_id, new_id)
        elif call.op == "IOMMU_DESTROY":
            obj = f.get("id", 0)
            if self.ioas.pop(obj, None) is not None:
                self.dead.add(obj)
        elif call.op in ("IOMMU_IOAS_MAP", "IOMMU_IOAS_MAP_FILE"):
            m = self.ioas.get(f.get("ioas_id", 0))
            if m is not None:
                iova = int(out["iova"])
                writable = bool(f.get("flags", 0) & uapi.IOMMU_IOAS_MAP_WRITEABLE)
                ref = call.refs.get("user_va", "")
                uva = int(ref[4:], 0) if ref.startswith("buf+") else None
                m.areas[iova] = ModelArea(iova + f["length"] - 1, writable, uva)
        elif call.op == "IOMMU_IOAS_COPY":
            src = self.ioas.get(f.get("src_ioas_id", 0))
            dst = self.ioas.get(f.get("dst_ioas_id", 0))
            if src is None or dst is None:
                return
            pieces = src.covered(f["src_iova"], f["src_iova"] + f["length"] - 1) or []
            dst_iova = int(out["dst_iova"])
            for first, last, aiova, a in pieces:
                uva = None if a.uva is None else a.uva + first - aiova
                dst.areas[dst_iova] = ModelArea(dst_iova + last - first, a.writable, uva)
                dst_iova += last - first + 1
        elif call.op == "IOMMU_IOAS_UNMAP":
            m = self.ioas.get(f.get("ioas_id", 0))
            if m is None:
                return
            first, length = f.get("iova", 0), f.get("length", 0)
            last = ULONG_MAX if (first, length) == (0, U64_MAX) else first + length - 1
            for iova in [i for i, a in m.areas.items() if i >= first and a.last <= last]:
                del m.areas[iova]
        elif (
            call.op == "IOMMU_OPTION"
            and f.get("option_id") == uapi.IOMMU_OPTION_HUGE_PAGES
            and f.get("op") == uapi.IOMMU_OPTION_OP_SET
        ):
            m = self.ioas.get(f.get("object_id", 0))
            if m is not None:
                m.huge = bool(f.get("val64"))

    def _unmap_partial(self, call: Call) -> None:
        """A failing UNMAP removed the whole areas below the first area it cut."""
        m = self.ioas.get(call.fields.get("ioas_id", 0))
        first, length = call.fields.get("iova", 0), call.fields.get("length", 0)
        if m is None or not length or first + length - 1 > ULONG_MAX:
            return
        last = first + length - 1
        for iova, a in m.sorted_areas():
            if a.last < first:
                continue
            if iova > last or iova < first or a.last > last:
                return
            del m.areas[iova]

    def _observe_viommu(self, call: Call, out: Json) -> None:
        f, op = call.fields, call.op
        new = 0
        if op == "IOMMU_VIOMMU_ALLOC":
            new = int(out["out_viommu_id"])
            self.viommus[new] = f["hwpt_id"]
        elif op == "IOMMU_VDEVICE_ALLOC":
            new = int(out["out_vdevice_id"])
            self.vdevs.add(new)
            self.vdev_of[new] = (f["viommu_id"], f["dev_id"])
        elif op == "IOMMU_HW_QUEUE_ALLOC":
            new = int(out["out_hw_queue_id"])
            self.hw_queues.add(new)
        elif op == "IOMMU_VEVENTQ_ALLOC":
            new = int(out["out_veventq_id"])
            self.eventqs[call.binds] = new
            self.veventq_of[call.binds] = f["viommu_id"]
        elif op == "IOMMU_FAULT_QUEUE_ALLOC":
            new = int(out["out_fault_id"])
            self.eventqs[call.binds] = new
        elif op == "CLOSE":
            self.eventqs.pop(call.refs.get("fd", ""), None)
            self.veventq_of.pop(call.refs.get("fd", ""), None)
        elif op == "IOMMU_DESTROY":
            obj = f.get("id", 0)
            self.viommus.pop(obj, None)
            self.vdevs.discard(obj)
            self.vdev_of.pop(obj, None)
            self.hw_queues.discard(obj)
        # the internal access of a HW queue takes the next id
        self.max_id = max(self.max_id, new + (op == "IOMMU_HW_QUEUE_ALLOC"))

    def _observe_devices(self, call: Call, out: Json) -> None:
        self._observe_viommu(call, out)
        f = call.fields
        op = call.op
        if op in ("IOMMU_TEST_OP_MOCK_DOMAIN", "IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS"):
            md = "mock_domain_flags." if op.endswith("FLAGS") else "mock_domain."
            stdev, hwpt, idev = (
                int(out[md + k]) for k in ("out_stdev_id", "out_hwpt_id", "out_idev_id")
            )
            self.max_id = max(self.max_id, stdev, hwpt, idev)
            self.devs[stdev] = ModelDev(idev, hwpt, f.get("mock_domain_flags.dev_flags", 0))
            if hwpt not in self.hwpts:
                self.hwpts[hwpt] = ModelHwpt(f["id"], 0, auto=True)
        elif op == "IOMMU_HWPT_ALLOC":
            new = int(out["out_hwpt_id"])
            self.max_id = max(self.max_id, new)
            pt = f.get("pt_id", 0)
            if pt in self.ioas:
                self.hwpts[new] = ModelHwpt(pt, f.get("flags", 0), auto=False)
            else:
                self.nested.add(new)
                self.nested_on[new] = pt
        elif op == "IOMMU_HWPT_SET_DIRTY_TRACKING":
            h = self.hwpts.get(f.get("hwpt_id", 0))
            if h is not None:
                h.tracking = bool(f.get("flags", 0) & uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
        elif op == "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE":
            d = self.devs.get(f.get("id", 0))
            pt = int(out["mock_domain_replace.pt_id"])
            if d is not None:
                d.hwpt = pt
                if pt not in self.hwpts and pt not in self.nested:
                    self.hwpts[pt] = ModelHwpt(f["mock_domain_replace.pt_id"], 0, auto=True)
                    self.max_id = max(self.max_id, pt)
        elif op == "IOMMU_DESTROY":
            obj = f.get("id", 0)
            self.devs.pop(obj, None)
            self.hwpts.pop(obj, None)
            self.nested.discard(obj)
            self.nested_on.pop(obj, None)
            self.dead_objs.add(obj)
        elif op == "IOMMU_TEST_OP_CREATE_ACCESS":
            self.accesses[call.binds] = ModelAccess(f["id"], bool(f["create_access.flags"] & 1))
        elif op == "IOMMU_TEST_OP_ACCESS_PAGES":
            acc = self.accesses.get(call.refs.get("id", ""))
            if acc is not None:
                item = int(out["access_pages.out_access_pages_id"])
                acc.items[item] = (f["access_pages.iova"], f["access_pages.length"])
        elif op == "IOMMU_TEST_OP_DESTROY_ACCESS_PAGES":
            acc = self.accesses.get(call.refs.get("id", ""))
            if acc is not None:
                acc.items.pop(f["destroy_access_pages.access_pages_id"], None)
        elif op == "CLOSE":
            name = call.refs.get("fd", "")
            if self.accesses.pop(name, None) is not None:
                self.closed.append(name)
        elif op == "IOMMU_IOAS_UNMAP":
            first, length = f.get("iova", 0), f.get("length", 0)
            last = ULONG_MAX if (first, length) == (0, U64_MAX) else first + length - 1
            for acc in self.accesses.values():
                if acc.ioas == f.get("ioas_id"):
                    for item, (iova, n) in list(acc.items.items()):
                        if iova <= last and iova + n - 1 >= first:
                            del acc.items[item]
        # auto domains die with their last device
        used = {d.hwpt for d in self.devs.values()}
        for gone in [i for i, m in self.hwpts.items() if m.auto and i not in used]:
            del self.hwpts[gone]
            self.dead_objs.add(gone)
