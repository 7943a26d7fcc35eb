"""The PCI fabric as the kernel sees it when an IOMMU driver groups devices.

Kernel: ``struct pci_dev`` (vendor, device, devfn, ``multifunction``, ``pcie_flags_reg``
for the PCIe port type, ``acs_cap``/``acs_capabilities``, ``dma_alias_mask``, ``dev_flags``,
``is_virtfn``, ``pasid_cap``, ``eetlp_prefix_max``) and ``struct pci_bus`` (``self`` = the bridge
above it, ``NULL`` on root buses and on the virtual buses SR-IOV creates for VFs).

We add: a ``Topology`` that validates itself (every contradiction raises ``TopologyError``),
derives buses from ``parent`` links, and lists devices in the order the PCI core adds them
(``pci_bus_add_devices``: all devices of a bus, then each bridge's secondary bus, recursively) —
the order the IOMMU core probes them and hands out group numbers.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import gc
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import NamedTuple

__all__ = [
    "ACS_ALL",
    "PCI_ACS_CR",
    "PCI_ACS_DT",
    "PCI_ACS_EC",
    "PCI_ACS_RR",
    "PCI_ACS_SV",
    "PCI_ACS_TB",
    "PCI_ACS_UF",
    "Acs",
    "AcsFlag",
    "Bdf",
    "PciBus",
    "PciFunction",
    "PcieType",
    "Topology",
    "TopologyError",
    "acs_names",
    "gc_paused",
]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: building a 10^4-function fabric allocates
    hundreds of thousands of acyclic objects, and each full collection the allocations
    trigger rescans every one of them (a third of the time of ``group()``)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class TopologyError(ValueError):
    """A topology that cannot exist: the message names the device and the rule it breaks."""


class AcsFlag(enum.IntFlag):
    """ACS capability/control bits (``include/uapi/linux/pci_regs.h``; same bit in both
    registers)."""

    SV = 0x0001  # PCI_ACS_SV  Source Validation
    TB = 0x0002  # PCI_ACS_TB  Translation Blocking
    RR = 0x0004  # PCI_ACS_RR  P2P Request Redirect
    CR = 0x0008  # PCI_ACS_CR  P2P Completion Redirect
    UF = 0x0010  # PCI_ACS_UF  Upstream Forwarding
    EC = 0x0020  # PCI_ACS_EC  P2P Egress Control
    DT = 0x0040  # PCI_ACS_DT  Direct Translated P2P

    def names(self) -> list[str]:
        """Kernel names of the set bits, lowest first (``["PCI_ACS_SV", ...]``)."""
        return list(_acs_names(int(self)))


@functools.lru_cache(maxsize=512)
def _acs_names(v: int) -> tuple[str, ...]:
    return tuple(f"PCI_ACS_{f.name}" for f in AcsFlag if f.value & v and f.name)


def acs_names(v: int) -> list[str]:
    """``AcsFlag(v & 0x7F).names()`` without building the flag (reports list millions)."""
    return list(_acs_names(v & 0x7F))


PCI_ACS_SV = AcsFlag.SV
PCI_ACS_TB = AcsFlag.TB
PCI_ACS_RR = AcsFlag.RR
PCI_ACS_CR = AcsFlag.CR
PCI_ACS_UF = AcsFlag.UF
PCI_ACS_EC = AcsFlag.EC
PCI_ACS_DT = AcsFlag.DT
ACS_ALL = AcsFlag(0x7F)


class PcieType(enum.IntEnum):
    """Device/Port Type field of the PCI Express Capabilities register (``PCI_EXP_TYPE_*``)."""

    ENDPOINT = 0x0  # PCI_EXP_TYPE_ENDPOINT
    LEG_END = 0x1  # PCI_EXP_TYPE_LEG_END
    ROOT_PORT = 0x4  # PCI_EXP_TYPE_ROOT_PORT
    UPSTREAM = 0x5  # PCI_EXP_TYPE_UPSTREAM
    DOWNSTREAM = 0x6  # PCI_EXP_TYPE_DOWNSTREAM
    PCI_BRIDGE = 0x7  # PCI_EXP_TYPE_PCI_BRIDGE: PCIe-to-PCI/PCI-X bridge
    PCIE_BRIDGE = 0x8  # PCI_EXP_TYPE_PCIE_BRIDGE: PCI/PCI-X-to-PCIe bridge
    RC_END = 0x9  # PCI_EXP_TYPE_RC_END: Root Complex Integrated Endpoint
    RC_EC = 0xA  # PCI_EXP_TYPE_RC_EC: Root Complex Event Collector

    @property
    def file_name(self) -> str:
        return _TYPE_FILE_NAMES[self]

    @classmethod
    def from_file_name(cls, name: str) -> PcieType | None:
        """Parse a topology-file ``pcie_type``; ``"none"`` means conventional PCI (``None``)."""
        if name == "none":
            return None
        for t, n in _TYPE_FILE_NAMES.items():
            if n == name:
                return t
        raise KeyError(name)

    @property
    def is_bridge(self) -> bool:
        return self in (
            PcieType.ROOT_PORT,
            PcieType.UPSTREAM,
            PcieType.DOWNSTREAM,
            PcieType.PCI_BRIDGE,
            PcieType.PCIE_BRIDGE,
        )


_TYPE_FILE_NAMES: dict[PcieType, str] = {
    PcieType.ENDPOINT: "endpoint",
    PcieType.LEG_END: "legacy_endpoint",
    PcieType.ROOT_PORT: "root_port",
    PcieType.UPSTREAM: "upstream_port",
    PcieType.DOWNSTREAM: "downstream_port",
    PcieType.PCI_BRIDGE: "pcie_to_pci_bridge",
    PcieType.PCIE_BRIDGE: "pci_to_pcie_bridge",
    PcieType.RC_END: "rc_integrated_endpoint",
    PcieType.RC_EC: "rc_event_collector",
}
PCIE_TYPE_FILE_NAMES: tuple[str, ...] = (*_TYPE_FILE_NAMES.values(), "none")

_BDF_RE = re.compile(r"^(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
_BDF_PARSED: dict[str, Bdf] = {}


def _short_repr(v: object) -> str:
    r = repr(v) if isinstance(v, str | int | float | None) else type(v).__name__
    return r if len(r) <= 60 else r[:57] + "..."


class Bdf(NamedTuple):
    """A PCI address: domain (segment), bus, device (slot), function. A tuple, so it hashes
    and sorts fast (10k-function fabrics look addresses up millions of times)."""

    domain: int
    bus: int
    dev: int
    fn: int

    @classmethod
    def parse(cls, text: str) -> Bdf:
        """Parse ``DDDD:BB:DD.F`` (the sysfs spelling; VMD domains may have up to 8 digits) or
        lspci's short ``BB:DD.F`` (domain 0000, as the kernel's ``pci_dev_str_match`` reads it)."""
        got = _BDF_PARSED.get(text) if isinstance(text, str) else None
        if got is not None:
            return got
        m = _BDF_RE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise ValueError(
                f"{_short_repr(text)} is not a PCI address of the form DDDD:BB:DD.F or BB:DD.F"
            )
        gd, gb, gs, gf = m.groups()
        d, b, s, f = int(gd, 16) if gd else 0, int(gb, 16), int(gs, 16), int(gf)
        if s > 0x1F:
            raise ValueError(f"{text!r}: device number {s:#x} is above 0x1f")
        got = cls(d, b, s, f)
        if len(_BDF_PARSED) >= 1 << 20:
            _BDF_PARSED.clear()
        _BDF_PARSED[text] = got
        return got

    @property
    def devfn(self) -> int:
        """``PCI_DEVFN(slot, func)``."""
        return (self.dev << 3) | self.fn

    @property
    def rid(self) -> int:
        """Requester ID ``PCI_DEVID(bus, devfn)``."""
        return (self.bus << 8) | self.devfn

    def __str__(self) -> str:
        # every reason and report line spells addresses: format each one once
        s = _BDF_STR.get(self)
        if s is None:
            if len(_BDF_STR) >= 1 << 20:
                _BDF_STR.clear()
            s = _BDF_STR[self] = f"{self.domain:04x}:{self.bus:02x}:{self.dev:02x}.{self.fn}"
        return s

    def __repr__(self) -> str:
        return f"Bdf({self})"


_BDF_STR: dict[Bdf, str] = {}


def devfn_str(devfn: int) -> str:
    """``PCI_SLOT``/``PCI_FUNC`` as ``dd.f``."""
    return f"{devfn >> 3:02x}.{devfn & 7}"


@dataclass(frozen=True, slots=True)
class Acs:
    """An ACS extended capability: Capability and Control registers.

    For the Intel Sunrise Point family (``pci_quirk_intel_spt_pch_acs``) the registers are
    dwords with control at cap+8; ``cap``/``ctrl`` hold the values the kernel's quirk reads.
    """

    cap: int
    ctrl: int

    def __str__(self) -> str:
        return f"cap={self.cap:#06x} ctl={self.ctrl:#06x}"


@dataclass(frozen=True, slots=True)
class PciFunction:
    """One PCI function (``struct pci_dev``) with what grouping, PASID and viability need.

    ``parent`` is the bridge whose subtree holds this function (``None``: a root bus).
    ``acs`` is ``None`` when the function has no ACS extended capability. ``acs_known`` is
    false when we could not read it (unprivileged sysfs); ``pcie_known`` likewise for the PCIe
    capability. ``dma_alias_devfns`` are explicit same-bus aliases (e.g. from AMD IVRS);
    quirk aliases are added by ``quirks.dma_alias_devfns``.
    """

    bdf: Bdf
    vendor: int
    device: int
    class_code: int = 0x0000  # base class << 8 | subclass
    pcie_type: PcieType | None = PcieType.ENDPOINT
    parent: Bdf | None = None
    acs: Acs | None = None
    multifunction: bool = False
    header_type: int | None = None  # 0 normal, 1 PCI-PCI bridge, 2 CardBus; None: from type
    driver: str | None = None
    dma_alias_devfns: frozenset[int] = frozenset()
    secondary_bus: int | None = None
    subordinate_bus: int | None = None
    subsystem_vendor: int | None = None
    subsystem_device: int | None = None
    revision: int | None = None
    pasid: bool = False  # has a PASID extended capability (PCI_EXT_CAP_ID_PASID)
    pasid_exec: bool = False
    pasid_priv: bool = False
    pasid_max_width: int = 0
    ats: bool = False
    eetlp_prefix: bool | None = None  # DevCap2 End-End TLP Prefix Supported; None: unknown
    is_virtfn: bool = False
    physfn: Bdf | None = None
    untrusted: bool = False  # external_facing/untrusted port: pci_std_enable_acs adds TB
    iommu: bool = True  # translated by an IOMMU (False: no group, e.g. the AMD IOMMU itself)
    pch_acs_workaround: bool = True  # did pci_quirk_enable_intel_pch_acs succeed (RCBA enabled)
    acs_known: bool = True
    pcie_known: bool = True
    kernel_group: int | None = None  # from sysfs iommu_group (ground truth), if read
    name: str | None = None

    @property
    def is_pcie(self) -> bool:
        """``pci_is_pcie()``: the function has a PCI Express capability."""
        return self.pcie_type is not None

    @property
    def devfn(self) -> int:
        return self.bdf.devfn

    @property
    def slot(self) -> int:
        return self.bdf.dev

    @property
    def id_str(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"

    @property
    def is_bridge(self) -> bool:
        """A PCI-to-PCI bridge (type 1 header): can be a ``parent``."""
        if self.header_type is not None:
            return self.header_type in (1, 2)
        if self.pcie_type is not None and self.pcie_type.is_bridge:
            return True
        return self.class_code in (0x0604, 0x0609)

    @property
    def certain(self) -> bool:
        return self.acs_known and self.pcie_known

    def with_(self, **changes: object) -> PciFunction:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_fields(cls, values: tuple[object, ...]) -> PciFunction:
        """A function from every field's value in declaration order (``FUNCTION_FIELDS``),
        unchecked: what a loader that has already validated each field uses. Four times
        cheaper than the frozen ``__init__`` with 31 keywords (50,000 functions: 1 s)."""
        f = _new(cls)
        for setter, v in zip(_SETTERS, values, strict=True):
            setter(f, v)
        return f


#: ``PciFunction``'s fields in declaration order (the order ``from_fields`` takes).
FUNCTION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PciFunction))
_SETTERS = tuple(getattr(PciFunction, n).__set__ for n in FUNCTION_FIELDS)
_new = object.__new__


@dataclass(slots=True)
class PciBus:
    """``struct pci_bus``: ``self_dev`` is the bridge above (``bus->self``), ``None`` for root
    buses and SR-IOV virtual buses; ``parent`` is ``bus->parent`` (``None`` for a root bus)."""

    domain: int
    number: int
    self_dev: Bdf | None
    parent: tuple[int, int] | None
    devices: list[Bdf] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return (self.domain, self.number)

    @property
    def is_root(self) -> bool:
        """``pci_is_root_bus()``."""
        return self.parent is None

    @property
    def is_virtual(self) -> bool:
        return self.parent is not None and self.self_dev is None


class Topology:
    """A validated PCI fabric.

    As ``pci_scan_slot()`` does, every non-VF function other than 0 is multifunction whatever
    its header type byte says (QEMU leaves the bit clear on function 1, for one). Construction
    checks: unique addresses, ``parent`` exists and is a bridge, no cycles, a bus
    number belongs to one bridge (or is a root bus), ``dma_alias`` devfns in range. Functions
    are kept in probe order (``self.order``).
    """

    def __init__(
        self,
        functions: Iterable[PciFunction],
        *,
        source: str = "<memory>",
        partial: bool = False,
        warnings: Iterable[str] = (),
        acs_ctrl_measured: bool = False,
        kernel_groups_known: bool = False,
    ) -> None:
        self.source = source
        self.partial = partial
        self.warnings: list[str] = list(warnings)
        self.acs_ctrl_measured = acs_ctrl_measured
        self.kernel_groups_known = kernel_groups_known
        self.functions: dict[Bdf, PciFunction] = {}
        for f in functions:
            if f.bdf.fn > 0 and not f.is_virtfn and not f.multifunction:
                # pci_scan_slot(): "if (fn > 0) dev->multifunction = 1", whatever the header
                f = replace(f, multifunction=True)
            if f.bdf in self.functions:
                raise TopologyError(f"{f.bdf}: duplicate PCI address (each bdf may appear once)")
            self.functions[f.bdf] = f
        self._validate_parents()
        self.buses: dict[tuple[int, int], PciBus] = {}
        self.secondary: dict[Bdf, tuple[int, int]] = {}
        self._build_buses()
        self.order: list[Bdf] = self._probe_order()
        self.index: dict[Bdf, int] = {b: i for i, b in enumerate(self.order)}
        self.children: dict[Bdf, list[Bdf]] = {}
        for b in self.order:
            p = self.functions[b].parent
            if p is not None:
                self.children.setdefault(p, []).append(b)

    # -- construction -------------------------------------------------------------------

    def _validate_parents(self) -> None:
        for f in self.functions.values():
            for a in f.dma_alias_devfns:
                if not 0 <= a <= 0xFF:
                    raise TopologyError(f"{f.bdf}: dma_alias devfn {a} is outside 0..255")
            if f.parent is None:
                continue
            p = self.functions.get(f.parent)
            if p is None:
                raise TopologyError(
                    f"{f.bdf}: parent {f.parent} is not in the topology "
                    "(parent must be the bdf of a bridge listed in the file, or root_bus)"
                )
            if not p.is_bridge:
                raise TopologyError(
                    f"{f.bdf}: parent {f.parent} is not a bridge (its pcie_type/class "
                    "says it is an endpoint; only bridges and ports have a secondary bus)"
                )
            if p.bdf.domain != f.bdf.domain:
                raise TopologyError(
                    f"{f.bdf}: parent {f.parent} is in another PCI domain; a bridge's "
                    "secondary bus is always in its own domain"
                )
            if f.parent == f.bdf:
                raise TopologyError(f"{f.bdf}: is its own parent")
        # cycles: follow parents with a colouring walk
        state: dict[Bdf, int] = {}
        for start in self.functions:
            path: list[Bdf] = []
            cur: Bdf | None = start
            while cur is not None and state.get(cur, 0) == 0:
                state[cur] = 1
                path.append(cur)
                cur = self.functions[cur].parent
            if cur is not None and state.get(cur) == 1:
                cyc = [*path[path.index(cur) :], cur]
                raise TopologyError(
                    f"{start}: parent links form a cycle ({' -> '.join(map(str, cyc))})"
                )
            for b in path:
                state[b] = 2

    def _build_buses(self) -> None:
        fns = self.functions
        kids: dict[Bdf, list[PciFunction]] = {}
        for f in fns.values():
            if f.parent is not None:
                kids.setdefault(f.parent, []).append(f)
        root_keys: set[tuple[int, int]] = set()
        for f in fns.values():
            if f.parent is None:
                root_keys.add((f.bdf.domain, f.bdf.bus))
        owner: dict[tuple[int, int], Bdf] = {}
        # secondary bus of each bridge: explicit, else the lowest bus number among its
        # non-VF children (VFs may sit on higher, virtual bus numbers).
        for b, f in fns.items():
            if not f.is_bridge:
                continue
            sec = f.secondary_bus
            if sec is None:
                ch = [c.bdf.bus for c in kids.get(b, []) if not c.is_virtfn]
                if not ch:
                    ch = [c.bdf.bus for c in kids.get(b, [])]
                if not ch:
                    continue
                sec = min(ch)
            key = (b.domain, sec)
            if key in root_keys:
                raise TopologyError(
                    f"{b}: its secondary bus {sec:02x} is also a root bus "
                    "(devices on it have parent root_bus)"
                )
            if key in owner:
                raise TopologyError(
                    f"{b}: secondary bus {sec:02x} is already the secondary bus of {owner[key]}"
                )
            if sec <= b.bus:
                raise TopologyError(
                    f"{b}: secondary bus {sec:02x} must be greater than the bridge's own "
                    f"bus {b.bus:02x} (the PCI core numbers buses depth-first, increasing)"
                )
            owner[key] = b
            self.secondary[b] = key
        for key in sorted(root_keys):
            self.buses[key] = PciBus(key[0], key[1], None, None)
        for key, b in owner.items():
            self.buses[key] = PciBus(key[0], key[1], b, (b.domain, b.bus))
        for f in sorted(fns.values(), key=lambda x: x.bdf):
            key = (f.bdf.domain, f.bdf.bus)
            bus = self.buses.get(key)
            if f.parent is None:
                assert bus is not None
            elif bus is None or bus.self_dev != f.parent:
                if bus is not None and not bus.is_virtual:
                    what = "a root bus" if bus.is_root else f"the secondary bus of {bus.self_dev}"
                    raise TopologyError(
                        f"{f.bdf}: parent is {f.parent} but bus {f.bdf.bus:02x} is {what}"
                    )
                if not f.is_virtfn:
                    psec = self.secondary.get(f.parent)
                    raise TopologyError(
                        f"{f.bdf}: parent {f.parent} has secondary bus "
                        f"{psec[1] if psec else 0:02x}; only SR-IOV VFs (virtfn: true) may sit "
                        "on another bus number below a bridge"
                    )
                if bus is None:
                    # SR-IOV virtual bus: bus->self == NULL, parent = the PF's bus
                    pkey = self.secondary.get(f.parent)
                    if pkey is None:
                        raise TopologyError(f"{f.bdf}: parent {f.parent} has no secondary bus")
                    bus = PciBus(key[0], key[1], None, pkey)
                    self.buses[key] = bus
                elif bus.parent != self.secondary.get(f.parent):
                    raise TopologyError(
                        f"{f.bdf}: virtual bus {f.bdf.bus:02x} is used below two bridges"
                    )
            bus.devices.append(f.bdf)
        for f in fns.values():
            if f.physfn is not None and f.physfn not in fns:
                raise TopologyError(f"{f.bdf}: physfn {f.physfn} is not in the topology")

    def _probe_order(self) -> list[Bdf]:
        """``pci_bus_add_devices()`` order: devices of a bus, then each bridge's secondary bus.

        Root buses go in (domain, bus) order; SR-IOV VFs are created after boot (when
        ``sriov_numvfs`` is written) so they come last, in address order.
        """
        order: list[Bdf] = []
        vfs: list[Bdf] = []
        by_bus: dict[tuple[int, int], list[Bdf]] = {}
        for key, bus in self.buses.items():
            by_bus[key] = sorted(bus.devices)

        roots = sorted(k for k, b in self.buses.items() if b.is_root)
        stack: list[tuple[int, int]] = list(reversed(roots))
        # iterative version of the recursion, preserving its order
        while stack:
            key = stack.pop()
            devs = [d for d in by_bus.get(key, []) if not self.functions[d].is_virtfn]
            vfs.extend(d for d in by_bus.get(key, []) if self.functions[d].is_virtfn)
            order.extend(devs)
            child_keys = [self.secondary[d] for d in devs if d in self.secondary]
            stack.extend(reversed(child_keys))
        for bus in self.buses.values():
            if bus.is_virtual:
                vfs.extend(bus.devices)
        seen = set(order)
        order.extend(sorted({v for v in vfs if v not in seen}))
        if len(order) != len(self.functions):  # pragma: no cover - guarded by validation
            missing = set(self.functions) - set(order)
            raise TopologyError(f"unreachable devices: {', '.join(map(str, sorted(missing)))}")
        return order

    # -- queries --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[PciFunction]:
        return (self.functions[b] for b in self.order)

    def __len__(self) -> int:
        return len(self.functions)

    def __getitem__(self, bdf: Bdf | str) -> PciFunction:
        key = Bdf.parse(bdf) if isinstance(bdf, str) else bdf
        try:
            return self.functions[key]
        except KeyError:
            raise KeyError(f"{key}: no such PCI function in {self.source}") from None

    def __contains__(self, bdf: object) -> bool:
        if isinstance(bdf, str):
            try:
                bdf = Bdf.parse(bdf)
            except ValueError:
                return False
        return bdf in self.functions

    def bus_of(self, bdf: Bdf) -> PciBus:
        return self.buses[(bdf.domain, bdf.bus)]

    def upstream_bridge(self, bdf: Bdf) -> Bdf | None:
        """``pci_upstream_bridge()``: the first real bridge above (skips virtual buses)."""
        bus: PciBus | None = self.bus_of(bdf)
        while bus is not None and not bus.is_root:
            if bus.self_dev is not None:
                return bus.self_dev
            bus = self.buses[bus.parent] if bus.parent else None
        return None

    def subtree(self, bdf: Bdf) -> list[Bdf]:
        """All functions below a bridge (not the bridge), probe order."""
        out: list[Bdf] = []
        stack = list(reversed(self.children.get(bdf, [])))
        while stack:
            b = stack.pop()
            out.append(b)
            stack.extend(reversed(self.children.get(b, [])))
        return out

    def replace(self, changes: Mapping[Bdf, PciFunction]) -> Topology:
        """A copy with some functions replaced (what-ifs)."""
        return Topology(
            (changes.get(b, f) for b, f in self.functions.items()),
            source=self.source,
            partial=self.partial,
            warnings=self.warnings,
            acs_ctrl_measured=self.acs_ctrl_measured,
            kernel_groups_known=self.kernel_groups_known,
        )
