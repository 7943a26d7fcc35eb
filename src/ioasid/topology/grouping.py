"""IOMMU groups exactly as Linux 7.3 forms them for PCI devices.

Kernel: ``pci_device_group()`` (``drivers/iommu/iommu.c``) with ``pci_for_each_dma_alias()``
(``drivers/pci/search.c``), ``get_pci_alias_group()``, ``get_pci_function_alias_group()``,
``pci_acs_enabled()``/``pci_acs_path_enabled()`` and ``pci_enable_acs()`` (``drivers/pci/pci.c``),
with the quirk tables of ``quirks.py``. Devices are probed in ``pci_bus_add_devices()`` order
and groups numbered lowest-free from 0, as ``iommu_group_alloc()`` does.

We add: every decision keeps its reasons (which rule, which bridge or function, which ACS bit
is missing, which quirk, which alias), and a decision that consulted data we could not read
(unprivileged sysfs) is marked uncertain.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .model import (
    AcsFlag,
    Bdf,
    PcieType,
    PciFunction,
    Topology,
    TopologyError,
    acs_names,
    devfn_str,
    gc_paused,
)
from .quirks import (
    ACS_ENABLE_OPS,
    PCI_DEV_ACS_ENABLED,
    PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS,
    PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT,
    PCI_DEV_FLAGS_PCI_BRIDGE_NO_ALIAS,
    AcsOverride,
    AcsQuirk,
    DevQuirks,
    QuirkContext,
    _intel_spt_match,
    dev_flags,
)

__all__ = [
    "REQ_ACS_FLAGS",
    "AcsState",
    "AcsVerdict",
    "AliasStep",
    "Decision",
    "Grouping",
    "IommuGroup",
    "KernelOptions",
    "Reason",
    "pci_device_group_all",
]

#: ``REQ_ACS_FLAGS`` of drivers/iommu/iommu.c: what an isolating bridge must provide.
REQ_ACS_FLAGS = AcsFlag.SV | AcsFlag.RR | AcsFlag.CR | AcsFlag.UF

_OPS_VENDORS = frozenset(op.vendor for op in ACS_ENABLE_OPS)
_OPS_VENDORS = frozenset(range(0x10000)) if 0xFFFF in _OPS_VENDORS else _OPS_VENDORS
_REQ = int(REQ_ACS_FLAGS)
_STD_ENABLE = AcsFlag.SV | AcsFlag.RR | AcsFlag.CR | AcsFlag.UF
_REDIR = AcsFlag.RR | AcsFlag.CR | AcsFlag.EC


@functools.lru_cache(maxsize=256)
def _flags(v: int) -> str:
    f = AcsFlag(v & 0x7F)
    return "|".join(f.names()) if f else "none"


# -- kernel command line knobs --------------------------------------------------------------


def _dev_str_match(dev: PciFunction, spec: str) -> bool:
    """``pci_dev_str_match()`` for ``pci:vvvv:dddd[:ssvv:ssdd]`` and ``[dddd:]bb:dd.f``."""
    spec = spec.strip()
    if spec.startswith("pci:"):
        parts = [int(p, 16) for p in spec[4:].split(":")]
        vals = [dev.vendor, dev.device, dev.subsystem_vendor or 0, dev.subsystem_device or 0]
        return all(p == 0 or p == v for p, v in zip(parts, vals, strict=False))
    try:  # a short "bb:dd.f" is domain 0 (sscanf "%x:%x.%x" with seg = 0)
        return Bdf.parse(spec) == dev.bdf
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class KernelOptions:
    """Boot-time facts that change ACS enabling and grouping.

    * ``acs_enable``: an IOMMU driver called ``pci_request_acs()`` (always with an IOMMU).
    * ``enable_acs``: re-run ``pci_enable_acs()`` on the ``ctl`` values (``None``: yes for
      topology files, whose ``ctl`` is the firmware value; no for sysfs, whose value is what
      the kernel already wrote).
    * ``ats_disabled``: ``pci=noats`` (TB is then enabled too).
    * ``disable_acs_redir`` / ``config_acs``: ``pci=disable_acs_redir=`` and
      ``pci=config_acs=`` device lists (``config_acs`` entries are ``(flags, device)``).
    * ``acs_override``: the out-of-tree ``pcie_acs_override=``.
    * ``amd_ivrs``: an AMD IVRS ACPI table exists (``pci_quirk_amd_sb_acs``).
    """

    acs_enable: bool = True
    enable_acs: bool | None = None
    ats_disabled: bool = False
    disable_acs_redir: tuple[str, ...] = ()
    config_acs: tuple[tuple[str, str], ...] = ()
    acs_override: AcsOverride | None = None
    amd_ivrs: bool = True


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcsVerdict:
    """The answer of ``pci_acs_enabled(dev, wanted)`` and why."""

    bdf: Bdf
    ok: bool
    wanted: int
    missing: int
    rule: str
    quirk: str | None = None
    uncertain: bool = False

    def text(self) -> str:
        if self.quirk:
            verb = "passes" if self.ok else "fails"
            return f"{self.bdf} {verb} ACS via quirk {self.quirk}"
        if self.ok:
            return f"{self.bdf} isolates: {self.rule}"
        if self.missing:
            return f"{self.bdf} lacks {_flags(self.missing)}: {self.rule}"
        return f"{self.bdf} is not isolated: {self.rule}"

    def to_json(self) -> dict[str, Any]:
        return {
            "device": str(self.bdf),
            "ok": self.ok,
            "rule": self.rule,
            "missing": acs_names(self.missing),
            "quirk": self.quirk,
            "uncertain": self.uncertain,
        }


class Reason(NamedTuple):
    """Why a device went where it went (a tuple: grouping makes one or two per device).

    ``rule``: ``dma_alias`` (an alias source already had a group), ``acs_path`` (a bridge above
    is not ACS-isolated: the device anchors on it), ``alias_group`` (same-bus DMA alias),
    ``function_alias`` (non-isolated function of the same slot), ``new_group``, ``isolated``
    (the path to the root bus isolates), ``no_iommu`` (not translated: no group).
    """

    rule: str
    device: Bdf
    other: Bdf | None
    detail: str
    missing: int = 0
    quirk: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "device": str(self.device),
            "other": str(self.other) if self.other else None,
            "detail": self.detail,
            "missing_acs": acs_names(self.missing),
            "quirk": self.quirk,
        }

    def __str__(self) -> str:
        return self.detail


class AliasStep(NamedTuple):
    """One call of the ``pci_for_each_dma_alias()`` callback: (device, requester id, why)."""

    bdf: Bdf
    rid: int
    why: str

    def text(self) -> str:
        return f"{self.bdf} as RID {self.rid >> 8:02x}:{devfn_str(self.rid & 0xFF)} ({self.why})"


@dataclass(slots=True)
class Decision:
    """How one device got its group."""

    bdf: Bdf
    group: int | None
    reasons: list[Reason] = field(default_factory=list)
    aliases: list[AliasStep] = field(default_factory=list)
    path: list[AcsVerdict] = field(default_factory=list)
    anchor: Bdf | None = None
    uncertain: bool = False


@dataclass(slots=True)
class IommuGroup:
    id: int
    devices: list[Bdf]
    certain: bool = True

    def __contains__(self, b: object) -> bool:
        return b in self.devices


class AcsState:
    """ACS as the kernel sees it after probe: ``pci_enable_acs()`` applied, quirk tables ready.

    ``acs_enabled()`` is ``pci_acs_enabled()``, ``path_enabled()`` is
    ``pci_acs_path_enabled(dev, NULL, flags)``; both memoised (the fabric does not change).
    """

    def __init__(self, topo: Topology, opts: KernelOptions | None = None) -> None:
        self.topo = topo
        self.opts = opts or KernelOptions()
        self.dq: dict[Bdf, DevQuirks] = {f.bdf: dev_flags(f, topo) for f in topo}
        self.ctx = QuirkContext(topo, {}, set(), self.opts.amd_ivrs)
        self.table: tuple[AcsQuirk, ...] = PCI_DEV_ACS_ENABLED
        if self.opts.acs_override:
            self.table = (*PCI_DEV_ACS_ENABLED, self.opts.acs_override.quirk())
        self.enable_log: dict[Bdf, list[str]] = {}
        self._by_vendor: dict[int, tuple[AcsQuirk, ...]] = {}
        for f in topo:
            self._pci_enable_acs(f)
        self._memo: dict[tuple[Bdf, int], AcsVerdict] = {}
        self._path_memo: dict[tuple[Bdf, int], AcsVerdict | None] = {}
        self._unc_memo: dict[tuple[Bdf, int], bool] = {}
        self._alias_memo: dict[tuple[int, int], tuple[AliasStep, ...]] = {}
        self._unknown_memo: dict[tuple[int, int], bool] = {}
        self._acs_path_text: dict[Bdf, str] = {}

    # pci_enable_acs ---------------------------------------------------------------------

    def _pci_enable_acs(self, dev: PciFunction) -> None:
        opts = self.opts
        log: list[str] = []
        enable_std = False
        measured = self.topo.acs_ctrl_measured if opts.enable_acs is None else not opts.enable_acs
        if opts.acs_enable:
            handled = False
            for op in ACS_ENABLE_OPS if dev.vendor in _OPS_VENDORS else ():
                if not op.matches(dev):
                    continue
                if measured and op.disable_acs_redir is not None:
                    # the measured dword already carries what the SPT quirk wrote
                    r = 0 if _intel_spt_match(dev) and dev.acs is not None else None
                else:
                    r = op.enable(dev, self.ctx)
                if r is not None and r >= 0:
                    handled = True
                    log.append(f"{op.enable_acs} ran instead of pci_std_enable_acs")
                    break
            enable_std = not handled
        if dev.acs is None:
            if log:
                self.enable_log[dev.bdf] = log
            return
        fw = self.ctx.ctrl.get(dev.bdf, dev.acs.ctrl)
        ctrl = fw
        cap = dev.acs.cap & ~self.dq[dev.bdf].acs_cap_mask
        if enable_std and not measured:
            add = cap & _STD_ENABLE
            if opts.ats_disabled or dev.untrusted:
                add |= cap & AcsFlag.TB
            if add & ~ctrl:
                log.append(f"pci_std_enable_acs set {_flags(add & ~ctrl)}")
            ctrl |= add
        if opts.disable_acs_redir and any(_dev_str_match(dev, s) for s in opts.disable_acs_redir):
            done = False
            for op in ACS_ENABLE_OPS:
                if op.disable_acs_redir and op.matches(dev):
                    r = op.disable_acs_redir(dev, self.ctx)
                    if r is not None and r >= 0:
                        done = True
                        log.append(
                            "pci=disable_acs_redir via pci_quirk_disable_intel_spt_pch_acs_redir"
                        )
                        break
            if not done:
                # __pci_config_acs starts from the *firmware* value, not the enabled one
                ctrl = fw & ~int(_REDIR)
                log.append(f"pci=disable_acs_redir: ctl = firmware {fw:#06x} minus RR|CR|EC")
        for flags_s, spec in opts.config_acs:
            if not _dev_str_match(dev, spec):
                continue
            mask = val = 0
            for shift, ch in enumerate(reversed(flags_s)):
                if ch in "01":
                    mask |= 1 << shift
                    if ch == "1":
                        val |= 1 << shift
                elif ch not in "xX":
                    raise TopologyError(f"pci=config_acs: invalid ACS flags {flags_s!r}")
            if mask & ~0x7F:
                raise TopologyError(f"pci=config_acs: {flags_s!r} sets bits above DT")
            ctrl = (fw & ~mask) | (val & mask)
            log.append(f"pci=config_acs={flags_s}: ctl = {ctrl:#06x}")
            break
        if ctrl != fw or dev.bdf not in self.ctx.ctrl:
            self.ctx.ctrl[dev.bdf] = ctrl
        if log:
            self.enable_log[dev.bdf] = log

    def ctrl(self, bdf: Bdf) -> int | None:
        """The ACS Control register after ``pci_enable_acs()`` (``None``: no capability)."""
        f = self.topo.functions[bdf]
        if f.acs is None:
            return None
        return self.ctx.ctrl.get(bdf, f.acs.ctrl)

    # pci_acs_enabled --------------------------------------------------------------------

    def _flags_enabled(self, dev: PciFunction, wanted: int, rule: str) -> AcsVerdict:
        """``pci_acs_flags_enabled()``."""
        unc = not dev.acs_known
        if dev.acs is None:
            return AcsVerdict(
                dev.bdf, False, wanted, wanted, f"{rule}; no ACS capability", None, unc
            )
        cap = dev.acs.cap & ~self.dq[dev.bdf].acs_cap_mask
        need = wanted & (cap | AcsFlag.EC)
        ctrl = self.ctx.ctrl.get(dev.bdf, dev.acs.ctrl)
        missing = need & ~ctrl
        if missing:
            return AcsVerdict(
                dev.bdf,
                False,
                wanted,
                missing,
                f"{rule}; ACS ctl {ctrl:#06x} lacks {_flags(missing)}",
                None,
                unc,
            )
        hard = wanted & ~(cap | AcsFlag.EC)
        note = f" ({_flags(hard)} not implemented: taken as hard-wired)" if hard else ""
        return AcsVerdict(dev.bdf, True, wanted, 0, f"{rule}; ACS ctl {ctrl:#06x}{note}", None, unc)

    def acs_enabled(self, bdf: Bdf, wanted: int = REQ_ACS_FLAGS) -> AcsVerdict:
        key = (bdf, int(wanted))
        v = self._memo.get(key)
        if v is None:
            v = self._acs_enabled(self.topo.functions[bdf], int(wanted))
            self._memo[key] = v
        return v

    def _acs_enabled(self, dev: PciFunction, wanted: int) -> AcsVerdict:
        table = self._by_vendor.get(dev.vendor)
        if table is None:
            table = tuple(q for q in self.table if q.vendor in (dev.vendor, 0xFFFF))
            self._by_vendor[dev.vendor] = table
        if table:
            for q in table:
                if q.device in (dev.device, 0xFFFF):
                    r = q.impl(dev, wanted, self.ctx)
                    if r is not None and r >= 0:
                        unc = not dev.pcie_known or (not dev.acs_known and "spt" in q.function)
                        return AcsVerdict(
                            dev.bdf,
                            r > 0,
                            wanted,
                            0 if r > 0 else wanted,
                            f"quirk {q.function} ({q.id_str})",
                            q.function,
                            unc,
                        )
        unc_type = not dev.pcie_known
        if not dev.is_pcie:
            return AcsVerdict(
                dev.bdf,
                False,
                wanted,
                wanted,
                "conventional PCI (no PCI Express capability): shared bus",
                None,
                unc_type,
            )
        t = dev.pcie_type
        if t is PcieType.PCIE_BRIDGE:
            return AcsVerdict(
                dev.bdf,
                False,
                wanted,
                wanted,
                "PCI/PCI-X-to-PCIe bridge: treated as conventional PCI",
                None,
                unc_type,
            )
        if t is PcieType.PCI_BRIDGE:
            return AcsVerdict(
                dev.bdf,
                False,
                wanted,
                wanted,
                "PCIe-to-PCI/PCI-X bridge: ACS never applies",
                None,
                unc_type,
            )
        if t is PcieType.RC_EC:
            return AcsVerdict(
                dev.bdf, False, wanted, wanted, "root complex event collector", None, unc_type
            )
        if t in (PcieType.DOWNSTREAM, PcieType.ROOT_PORT):
            kind = "root port" if t is PcieType.ROOT_PORT else "downstream port"
            v = self._flags_enabled(dev, wanted, kind)
            if unc_type and not v.uncertain:
                v = AcsVerdict(v.bdf, v.ok, v.wanted, v.missing, v.rule, v.quirk, True)
            return v
        assert t is not None
        if dev.multifunction:
            v = self._flags_enabled(dev, wanted, f"multifunction {t.name.lower()}")
            if unc_type and not v.uncertain:
                v = AcsVerdict(v.bdf, v.ok, v.wanted, v.missing, v.rule, v.quirk, True)
            return v
        return AcsVerdict(
            dev.bdf,
            True,
            wanted,
            0,
            f"single-function {t.name.lower()}: nothing to check",
            None,
            unc_type,
        )

    def path_enabled(self, bdf: Bdf, wanted: int = REQ_ACS_FLAGS) -> AcsVerdict | None:
        """``pci_acs_path_enabled(bdf, NULL, wanted)``: ``None`` if the whole path passes,
        else the first failing verdict (closest to ``bdf``)."""
        key = (bdf, int(wanted))
        if key in self._path_memo:
            return self._path_memo[key]
        chain: list[Bdf] = []
        result: AcsVerdict | None = None
        cur: Bdf | None = bdf
        while cur is not None:
            k = (cur, int(wanted))
            if k in self._path_memo:
                result = self._path_memo[k]
                break
            chain.append(cur)
            v = self.acs_enabled(cur, wanted)
            if not v.ok:
                result = v
                break
            bus = self.topo.bus_of(cur)
            if bus.is_root:
                break
            cur = bus.self_dev
            if cur is None:  # a bridge on a virtual bus: cannot happen in a valid fabric
                break
        # every device before the failing one inherits the same answer
        for c in chain:
            self._path_memo[(c, int(wanted))] = result
        return result

    def path_uncertain(self, bdf: Bdf, wanted: int = REQ_ACS_FLAGS) -> bool:
        """Did any verdict up to the answer of ``path_enabled`` rest on unread data?"""
        key = (bdf, int(wanted))
        got = self._unc_memo.get(key)
        if got is None:
            v = self.acs_enabled(bdf, wanted)
            if v.uncertain:
                got = True
            elif not v.ok:
                got = False
            else:
                bus = self.topo.bus_of(bdf)
                up = None if bus.is_root else bus.self_dev
                got = False if up is None else self.path_uncertain(up, wanted)
            self._unc_memo[key] = got
        return got

    # pci_for_each_dma_alias ------------------------------------------------------------

    def dma_aliases(self, bdf: Bdf) -> list[AliasStep]:
        """Every (device, RID) the callback of ``pci_for_each_dma_alias()`` sees, in order."""
        steps = [AliasStep(bdf, bdf.rid, "own requester ID")]
        own = self.dq[bdf].alias_devfns
        if own:
            for devfn, why in sorted(own.items()):
                steps.append(AliasStep(bdf, (bdf.bus << 8) | devfn, f"dma_alias_mask: {why}"))
        steps.extend(self._bus_aliases((bdf.domain, bdf.bus)))
        return steps

    def _bus_aliases(self, key: tuple[int, int]) -> tuple[AliasStep, ...]:
        """The bridge part of ``pci_for_each_dma_alias()`` for a device on bus ``key``: the
        same for every device of the bus, so computed once per bus."""
        memo = self._alias_memo
        got = memo.get(key)
        if got is not None:
            return got
        topo = self.topo
        bus = topo.buses[key]
        out: tuple[AliasStep, ...] = ()
        if not bus.is_root:
            tmp_b = bus.self_dev
            assert bus.parent is not None
            if tmp_b is None:
                out = self._bus_aliases(bus.parent)
            elif PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT not in self.dq[tmp_b].flags:
                step = self._bridge_alias(tmp_b)
                up = self._bus_aliases(bus.parent)
                out = (step, *up) if step is not None else up
        memo[key] = out
        return out

    def _bridge_alias(self, tmp_b: Bdf) -> AliasStep | None:
        """What bridge ``tmp_b`` adds on the way up (``pci_for_each_dma_alias``'s loop body)."""
        tmp = self.topo.functions[tmp_b]
        flags = self.dq[tmp_b].flags
        sec = self.topo.secondary.get(tmp_b, (0, 0))[1]
        if tmp.is_pcie:
            t = tmp.pcie_type
            if t is PcieType.PCI_BRIDGE:
                if PCI_DEV_FLAGS_PCI_BRIDGE_NO_ALIAS not in flags:
                    return AliasStep(
                        tmp_b, sec << 8, "PCIe-to-PCI bridge: secondary bus, devfn 00.0"
                    )
            elif t is PcieType.PCIE_BRIDGE:
                return AliasStep(tmp_b, tmp_b.rid, "PCI-X-to-PCIe bridge takes ownership")
            return None
        if PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS in flags:
            return AliasStep(
                tmp_b, sec << 8, "quirk_use_pcie_bridge_dma_alias: secondary bus, devfn 00.0"
            )
        return AliasStep(tmp_b, tmp_b.rid, "conventional PCI bridge takes ownership")

    def pcie_unknown_above(self, key: tuple[int, int]) -> bool:
        """Is the PCIe type of some bridge above bus ``key`` unread (the alias walk reads
        each one)? Memoised per bus."""
        memo = self._unknown_memo
        got = memo.get(key)
        if got is None:
            bus = self.topo.buses[key]
            got = False
            if not bus.is_root:
                assert bus.parent is not None
                b = bus.self_dev
                if b is not None and not self.topo.functions[b].pcie_known:
                    got = True
                else:
                    got = self.pcie_unknown_above(bus.parent)
            memo[key] = got
        return got

    def are_dma_aliases(self, a: Bdf, b: Bdf) -> bool:
        """``pci_devs_are_dma_aliases()`` (``pci_real_dma_dev`` is the identity here)."""
        return b.devfn in self.dq[a].alias_devfns or a.devfn in self.dq[b].alias_devfns


class Grouping:
    """The result: groups in allocation order, a ``Decision`` per device."""

    def __init__(self, topo: Topology, acs: AcsState) -> None:
        self.topology = topo
        self.acs = acs
        self.groups: list[IommuGroup] = []
        self.group_of: dict[Bdf, int] = {}
        self.decisions: dict[Bdf, Decision] = {}
        self.ungrouped: dict[Bdf, str] = {}
        self._cur_unc = False

    @property
    def options(self) -> KernelOptions:
        return self.acs.opts

    def group(self, bdf: Bdf | str) -> IommuGroup | None:
        b = Bdf.parse(bdf) if isinstance(bdf, str) else bdf
        g = self.group_of.get(b)
        return None if g is None else self.groups[g]

    def partition(self) -> set[frozenset[Bdf]]:
        """The groups as sets of devices (compare partitions, never numbers)."""
        return {frozenset(g.devices) for g in self.groups}

    def group_reasons(self, g: IommuGroup) -> list[Reason]:
        out: list[Reason] = []
        for b in g.devices:
            out.extend(self.decisions[b].reasons)
        return out


def _new_group(gr: Grouping) -> int:
    gid = len(gr.groups)
    gr.groups.append(IommuGroup(gid, [], True))
    return gid


def pci_device_group_all(
    topo: Topology, opts: KernelOptions | None = None, acs: AcsState | None = None
) -> Grouping:
    """Probe every device in order and run ``pci_device_group()`` on it."""
    with gc_paused():
        return _group_all(topo, acs or AcsState(topo, opts))


def _group_all(topo: Topology, acs: AcsState) -> Grouping:
    gr = Grouping(topo, acs)
    fns = topo.functions
    order = topo.order
    dq = acs.dq
    slot_mates: dict[tuple[int, int, int], list[Bdf]] = {}
    aliased: list[Bdf] = []
    for b in order:
        k = (b.domain, b.bus, b.dev)
        mates = slot_mates.get(k)
        if mates is None:
            slot_mates[k] = [b]
        else:
            mates.append(b)
        if dq[b].alias_devfns:
            aliased.append(b)
    # same-bus alias index: for each device, the devices on its bus it aliases or that alias it
    alias_rel: dict[Bdf, list[Bdf]] = {}
    if aliased:
        by_devfn = {(b.domain, b.bus, b.devfn): b for b in order}
        for b in aliased:
            for devfn in dq[b].alias_devfns:
                t = by_devfn.get((b.domain, b.bus, devfn))
                if t is not None and t != b:
                    alias_rel.setdefault(b, []).append(t)
                    alias_rel.setdefault(t, []).append(b)
        for k2, v in alias_rel.items():
            alias_rel[k2] = sorted(set(v), key=topo.index.__getitem__)

    for b in order:
        f = fns[b]
        if not f.iommu:
            why = (
                "not translated by an IOMMU (e.g. VMD child, or the IOMMU's own function)"
                if f.bdf.domain < 0x10000
                else "VMD child device: VT-d refuses to remap it"
            )
            gr.ungrouped[f.bdf] = why
            gr.decisions[f.bdf] = Decision(
                f.bdf, None, [Reason("no_iommu", f.bdf, None, f"{f.bdf}: {why}")]
            )
            continue
        d = _pci_device_group(gr, f, alias_rel, slot_mates)
        gr.decisions[f.bdf] = d
        assert d.group is not None
        gr.group_of[f.bdf] = d.group
        g = gr.groups[d.group]
        g.devices.append(f.bdf)
        if d.uncertain or not f.certain:
            g.certain = False
    return gr


def _pci_device_group(
    gr: Grouping,
    dev: PciFunction,
    alias_rel: dict[Bdf, list[Bdf]],
    slot_mates: dict[tuple[int, int, int], list[Bdf]],
) -> Decision:
    acs = gr.acs
    topo = gr.topology
    dec = Decision(dev.bdf, None)
    reasons = dec.reasons
    gr._cur_unc = False

    # 1. pci_for_each_dma_alias(pdev, get_pci_alias_or_group): the last alias source wins
    dec.aliases = acs.dma_aliases(dev.bdf)
    pdev = dev.bdf
    if acs.pcie_unknown_above((pdev.domain, pdev.bus)):
        gr._cur_unc = True  # the alias walk reads every bridge's PCIe type above
    for step in dec.aliases:
        pdev = step.bdf
        g = gr.group_of.get(step.bdf)
        if g is not None:
            reasons.append(
                Reason(
                    "dma_alias",
                    dev.bdf,
                    step.bdf,
                    f"{dev.bdf} DMA is seen as {step.text()}, which already has group {g}",
                )
            )
            dec.group = g
            dec.anchor = step.bdf
            return dec
    if pdev != dev.bdf:
        reasons.append(
            Reason(
                "dma_alias",
                dev.bdf,
                pdev,
                f"{dev.bdf} DMA carries the requester ID of {pdev} "
                "(alias above it): grouping starts from there",
            )
        )

    # 2. climb while the bridge above is not ACS-isolated up to the root bus
    acs_path_text = acs._acs_path_text
    bus = topo.buses[(pdev.domain, pdev.bus)]
    while not bus.is_root:
        br = bus.self_dev
        if br is not None:
            fail = acs.path_enabled(br, _REQ)
            if acs.path_uncertain(br, _REQ):
                gr._cur_unc = True
            if fail is None:
                dec.path.append(acs.acs_enabled(br, _REQ))
                break
            dec.path.append(fail)
            pdev = br
            text = acs_path_text.get(br)
            if text is None:  # the same words for every device below br
                where = "" if fail.bdf == br else f" (path fails at {fail.bdf})"
                text = acs_path_text[br] = (
                    f"{br} is not ACS-isolated{where}: {fail.text()}; devices below anchor on {br}"
                )
            reasons.append(Reason("acs_path", dev.bdf, br, text, fail.missing, fail.quirk))
            g = gr.group_of.get(br)
            if g is not None:
                dec.group, dec.anchor, dec.uncertain = g, br, gr._cur_unc
                return dec
        assert bus.parent is not None
        bus = topo.buses[bus.parent]
    dec.anchor = pdev

    # 3./4. get_pci_alias_group() then get_pci_function_alias_group() on the anchor
    if pdev not in alias_rel and not topo.functions[pdev].multifunction:
        found = gr.group_of.get(pdev)  # what the two calls below come to for a plain device
    else:
        devfns: set[int] = set()
        found = _alias_group(gr, pdev, devfns, alias_rel, slot_mates, reasons, dev.bdf)
        if found is None:
            found = _function_alias_group(gr, pdev, devfns, alias_rel, slot_mates, reasons, dev.bdf)
    if found is not None:
        dec.group, dec.uncertain = found, gr._cur_unc
        return dec
    # 5. iommu_group_alloc()
    gid = _new_group(gr)
    if pdev == dev.bdf:
        if bus.is_root and dev.parent is None:
            why = f"{dev.bdf} is on a root bus"
        else:
            why = f"the path above {dev.bdf} is ACS-isolated up to the root bus"
        reasons.append(Reason("new_group", dev.bdf, None, f"new group {gid}: {why}"))
    else:
        reasons.append(Reason("new_group", dev.bdf, pdev, f"new group {gid}, anchored at {pdev}"))
    dec.group, dec.uncertain = gid, gr._cur_unc
    return dec


def _alias_group(
    gr: Grouping,
    pdev: Bdf,
    devfns: set[int],
    alias_rel: dict[Bdf, list[Bdf]],
    slot_mates: dict[tuple[int, int, int], list[Bdf]],
    reasons: list[Reason],
    who: Bdf,
) -> int | None:
    """``get_pci_alias_group()``: the devfn bitmap guards against alias loops."""
    if pdev.devfn in devfns:
        return None
    devfns.add(pdev.devfn)
    g = gr.group_of.get(pdev)
    if g is not None:
        return g
    for tmp in alias_rel.get(pdev, ()):
        g = _alias_group(gr, tmp, devfns, alias_rel, slot_mates, reasons, who)
        if g is None:
            g = _function_alias_group(gr, tmp, devfns, alias_rel, slot_mates, reasons, who)
        if g is not None:
            reasons.append(
                Reason(
                    "alias_group",
                    who,
                    tmp,
                    f"{pdev} and {tmp} are DMA aliases on one bus "
                    f"({_alias_why(gr, pdev, tmp)}): group {g}",
                )
            )
            return g
    return None


def _alias_why(gr: Grouping, a: Bdf, b: Bdf) -> str:
    dq = gr.acs.dq
    if b.devfn in dq[a].alias_devfns:
        return f"{a} uses devfn {devfn_str(b.devfn)}: {dq[a].alias_devfns[b.devfn]}"
    return f"{b} uses devfn {devfn_str(a.devfn)}: {dq[b].alias_devfns.get(a.devfn, '?')}"


def _function_alias_group(
    gr: Grouping,
    pdev: Bdf,
    devfns: set[int],
    alias_rel: dict[Bdf, list[Bdf]],
    slot_mates: dict[tuple[int, int, int], list[Bdf]],
    reasons: list[Reason],
    who: Bdf,
) -> int | None:
    """``get_pci_function_alias_group()``: non-isolated functions of a multifunction slot."""
    acs = gr.acs
    f = gr.topology.functions[pdev]
    if not f.multifunction:
        return None
    mine = acs.acs_enabled(pdev)
    gr._cur_unc |= mine.uncertain
    if mine.ok:
        return None
    for tmp in slot_mates[(pdev.domain, pdev.bus, pdev.dev)]:
        if tmp == pdev:
            continue
        theirs = acs.acs_enabled(tmp)
        gr._cur_unc |= theirs.uncertain
        if theirs.ok:
            continue
        g = _alias_group(gr, tmp, devfns, alias_rel, slot_mates, reasons, who)
        if g is not None:
            reasons.append(
                Reason(
                    "function_alias",
                    who,
                    tmp,
                    f"{pdev} joins group {g} of {tmp}: functions of one multifunction slot, "
                    f"neither ACS-isolated ({pdev}: {mine.rule}; {tmp}: {theirs.rule})",
                    mine.missing,
                    mine.quirk or theirs.quirk,
                )
            )
            return g
    return None


def group(
    topo: Topology,
    acs_override: AcsOverride | str | None = None,
    *,
    options: KernelOptions | None = None,
) -> Grouping:
    """Group ``topo`` as Linux 7.3 would (``options`` for boot-time knobs)."""
    opts = options or KernelOptions()
    if acs_override is not None:
        ov = AcsOverride.parse(acs_override) if isinstance(acs_override, str) else acs_override
        opts = KernelOptions(
            opts.acs_enable,
            opts.enable_acs,
            opts.ats_disabled,
            opts.disable_acs_redir,
            opts.config_acs,
            ov,
            opts.amd_ivrs,
        )
    return pci_device_group_all(topo, opts)


def describe_partition(groups: Iterable[Sequence[Bdf]]) -> str:
    return "; ".join("{" + ", ".join(map(str, g)) + "}" for g in groups)
