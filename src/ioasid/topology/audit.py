"""What a grouping means for passthrough: viability, PASID, peer-to-peer, what-ifs.

* ``viability()`` — Linux 7.3 (DMA ownership, since 5.19): a group can be claimed for user
  space (``iommu_group_claim_dma_owner``; VFIO reports ``VFIO_GROUP_FLAGS_VIABLE``) only while
  no member is bound to a driver that uses the kernel DMA API, i.e. every member is unbound or
  bound to a ``driver_managed_dma`` driver (vfio-pci and its variants, pci-stub, pcieport).
  A bridge bound to another driver (say ``shpchp``) blocks like any device: 7.3 has no
  bridge exemption any more (the pre-5.19 ``vfio_dev_viable`` had one).
* ``pasid_eligibility()`` — ``pci_enable_pasid()``: PASID capability, End-End TLP prefixes up
  the path (or ``pasid_no_tlp``), ``pci_acs_path_enabled(dev, NULL, PCI_ACS_RR | PCI_ACS_UF)``;
  VFs share their PF's PASID.
* ``p2p_domains()`` — which functions can reach each other by DMA without the IOMMU seeing
  it, from the hardware's ACS (an ACS override fools the kernel, not the hardware), reported as
  connected sets (union-find), not as n^2 pairs.
* ``diff()`` — how a partition changes (e.g. under ``pcie_acs_override``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .grouping import AcsState, Grouping, IommuGroup, KernelOptions, group
from .model import AcsFlag, Bdf, PcieType, PciFunction, Topology, gc_paused
from .quirks import AcsOverride

__all__ = [
    "DRIVER_MANAGED_DMA",
    "P2PDomain",
    "PartitionDiff",
    "PasidVerdict",
    "Viability",
    "diff",
    "explain",
    "p2p_domains",
    "pasid_eligibility",
    "report",
    "viability",
]

#: PCI drivers with ``.driver_managed_dma = true`` in Linux 7.3 (sysfs driver names).
DRIVER_MANAGED_DMA: frozenset[str] = frozenset(
    {
        "vfio-pci",
        "pci-stub",
        "pcieport",
        "nvgrace_gpu_vfio_pci",
        "xe-vfio-pci",
        "hisi_acc_vfio_pci",
        "virtio_vfio_pci",
        "pds_vfio_pci",
        "ism_vfio_pci",
        "mlx5_vfio_pci",
        "qat_vfio_pci",
    }
)


@dataclass(frozen=True, slots=True)
class Viability:
    viable: bool
    blockers: tuple[tuple[Bdf, str], ...]  # (device, driver) using the kernel DMA API

    def reasons(self) -> list[str]:
        if self.viable:
            return ["every member is unbound or bound to a driver_managed_dma driver"]
        return [
            f"{b} is bound to {d}, which uses the kernel DMA API (unbind it or bind it to vfio-pci)"
            for b, d in self.blockers
        ]


def viability(topo: Topology, g: IommuGroup) -> Viability:
    """Can ``g`` be handed to user space as it is bound now?"""
    blockers = tuple(
        (b, topo.functions[b].driver or "")
        for b in g.devices
        if topo.functions[b].driver and topo.functions[b].driver not in DRIVER_MANAGED_DMA
    )
    return Viability(not blockers, blockers)


_RR_UF = int(AcsFlag.RR | AcsFlag.UF)
_RR = int(AcsFlag.RR)
_UF_BIT = int(AcsFlag.UF)


@dataclass(frozen=True, slots=True)
class PasidVerdict:
    bdf: Bdf
    eligible: bool
    reason: str
    uncertain: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"eligible": self.eligible, "reason": self.reason, "uncertain": self.uncertain}


def _eetlp_prefix_max(topo: Topology, bdf: Bdf, memo: dict[Bdf, bool | None]) -> bool | None:
    """``pci_configure_eetlp_prefix()``: set for root ports/RCiEPs that support it, else only
    when the upstream bridge has it. ``None``: unknown."""
    if bdf in memo:
        return memo[bdf]
    f = topo.functions[bdf]
    r: bool | None
    if not f.is_pcie:
        r = False if f.pcie_known else None
    elif f.eetlp_prefix is False:
        r = False
    elif f.pcie_type in (PcieType.ROOT_PORT, PcieType.RC_END):
        r = f.eetlp_prefix
    else:
        up = topo.upstream_bridge(bdf)
        upr = _eetlp_prefix_max(topo, up, memo) if up is not None else False
        if upr is False:
            r = False
        elif upr is None or f.eetlp_prefix is None:
            r = None
        else:
            r = True
    memo[bdf] = r
    return r


def pasid_eligibility(
    acs: AcsState,
    bdf: Bdf,
    _memo: dict[Bdf, bool | None] | None = None,
    _verdicts: dict[Bdf, PasidVerdict] | None = None,
) -> PasidVerdict:
    """Would ``pci_enable_pasid()`` succeed (as far as the PCI side decides)? ``_memo`` and
    ``_verdicts`` carry work between calls over one fabric (a PF's verdict serves its VFs)."""
    topo = acs.topo
    f = topo.functions[bdf]
    memo = {} if _memo is None else _memo
    if f.is_virtfn:
        if f.physfn is None or f.physfn not in topo.functions:
            return PasidVerdict(bdf, False, "VF whose PF is unknown: VFs use the PF's PASID")
        pv_got = None if _verdicts is None else _verdicts.get(f.physfn)
        if pv_got is None:
            pv_got = pasid_eligibility(acs, f.physfn, memo)
            if _verdicts is not None:
                _verdicts[f.physfn] = pv_got
        pv = pv_got
        return PasidVerdict(
            bdf,
            pv.eligible,
            f"VF: shares the PF {f.physfn} PASID configuration "
            f"({'PF can enable PASID' if pv.eligible else pv.reason})",
            pv.uncertain,
        )
    if not f.acs_known and not f.pasid:
        return PasidVerdict(bdf, False, "extended capabilities unreadable (need root)", True)
    if not f.pasid:
        return PasidVerdict(bdf, False, "no PASID extended capability")
    no_tlp = acs.dq[bdf].pasid_no_tlp
    ee = _eetlp_prefix_max(topo, bdf, memo)
    if not no_tlp and not ee:
        if ee is None:
            return PasidVerdict(bdf, False, "End-End TLP prefix support on the path unknown", True)
        return PasidVerdict(
            bdf,
            False,
            "no End-End TLP prefix support on the device or a port above it "
            "(eetlp_prefix_max = 0; pci_enable_pasid returns -EINVAL)",
        )
    fail = acs.path_enabled(bdf, _RR_UF)
    unc = acs.path_uncertain(bdf, _RR_UF)
    if fail is not None:
        return PasidVerdict(
            bdf,
            False,
            f"ACS RR|UF path fails: {fail.text()} "
            "(pci_acs_path_enabled(dev, NULL, PCI_ACS_RR | PCI_ACS_UF))",
            unc,
        )
    return PasidVerdict(
        bdf, True, "PASID capability, TLP prefixes and ACS RR|UF up to the root bus", unc
    )


# -- P2P reachability ------------------------------------------------------------------------


class _UF:
    __slots__ = ("p",)

    def __init__(self, n: int) -> None:
        self.p = list(range(n))

    def find(self, a: int) -> int:
        p = self.p
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


@dataclass(slots=True)
class P2PDomain:
    """Functions connected by DMA paths that bypass the IOMMU (connected components of the
    untranslated-reachability graph: every member reaches, or is reached by, another member
    without translation, possibly through a chain)."""

    devices: list[Bdf]
    reasons: list[str] = field(default_factory=list)


def p2p_domains(topo: Topology, acs: AcsState | None = None) -> list[P2PDomain]:
    """P2P audit from the hardware's ACS (vendor quirks count as hardware facts; an ACS
    override does not). Linear in the number of functions."""
    if acs is None or acs.opts.acs_override:
        base = acs.opts if acs is not None else KernelOptions()
        acs = AcsState(
            topo,
            KernelOptions(
                base.acs_enable,
                base.enable_acs,
                base.ats_disabled,
                base.disable_acs_redir,
                base.config_acs,
                None,
                base.amd_ivrs,
            ),
        )
    order = topo.order
    n = len(order)
    idx = topo.index
    uf = _UF(2 * n)  # node i: device, node n+i: "subtree of bridge i"
    collapsed: set[Bdf] = set()
    events: list[tuple[int, str]] = []
    fns = topo.functions
    rr_cr = int(AcsFlag.RR | AcsFlag.CR)

    def tok(b: Bdf) -> int:
        return n + idx[b]

    # ports on each bus, for the "no RR: peers reachable" rule
    ports_by_bus: dict[tuple[int, int], list[Bdf]] = {}
    bridges = [b for b in order if b in topo.secondary]  # the rules below are about them
    ports = (PcieType.DOWNSTREAM, PcieType.ROOT_PORT)
    for b in bridges:
        if fns[b].pcie_type in ports:
            ports_by_bus.setdefault((b.domain, b.bus), []).append(b)
    for b in bridges:
        f = fns[b]
        if f.pcie_type in ports:
            rr = acs.acs_enabled(b, _RR)
            if not rr.ok:
                sibs = [s for s in ports_by_bus[(b.domain, b.bus)] if s != b]
                what = (
                    "switch"
                    if f.pcie_type is PcieType.DOWNSTREAM
                    else "root complex (if it routes peer-to-peer)"
                )
                for s in sibs:
                    collapsed.add(s)
                    uf.union(tok(b), tok(s))
                if sibs:
                    collapsed.add(b)
                    events.append(
                        (
                            tok(b),
                            f"{b} lacks PCI_ACS_RR: requests from below it go "
                            f"straight to sibling ports' devices inside the "
                            f"{what} ({rr.rule})",
                        )
                    )
            uf_v = acs.acs_enabled(b, _UF_BIT)
            if not uf_v.ok:
                collapsed.add(b)
                events.append(
                    (
                        tok(b),
                        f"{b} lacks PCI_ACS_UF: traffic from below is reflected "
                        "back down without reaching the IOMMU",
                    )
                )
        elif not f.is_pcie or f.pcie_type in (PcieType.PCI_BRIDGE, PcieType.PCIE_BRIDGE):
            collapsed.add(b)
            uf.union(idx[b], tok(b))
            events.append(
                (
                    tok(b),
                    f"{b} bridges to a conventional PCI bus: devices behind it "
                    "share the bus and see each other's transactions",
                )
            )
    # multifunction slots whose functions are not isolated from each other
    slots: dict[tuple[int, int, int], list[Bdf]] = {}
    for b in order:
        if fns[b].multifunction:
            slots.setdefault((b.domain, b.bus, b.dev), []).append(b)
    for members in slots.values():
        open_fns = [b for b in members if not acs.acs_enabled(b, rr_cr).ok]
        if len(open_fns) < 2:
            continue
        first = open_fns[0]
        for b in open_fns:
            uf.union(idx[first], idx[b])
            if b in topo.secondary:
                collapsed.add(b)
                uf.union(idx[b], tok(b))
        events.append(
            (
                idx[first],
                f"functions {', '.join(map(str, open_fns))} of one "
                "multifunction device lack ACS RR|CR between them",
            )
        )
    # every device joins the token of its topmost collapsed ancestor
    top: dict[Bdf, Bdf | None] = {}
    for b in order:
        f = fns[b]
        p = f.parent
        t: Bdf | None = None
        if p is not None:
            t = top.get(p)
            if t is None and p in collapsed:
                t = p
        top[b] = t
        if t is not None:
            uf.union(idx[b], tok(t))
        if b in collapsed and t is not None:
            uf.union(tok(b), tok(t))
    comps: dict[int, list[Bdf]] = {}
    find = uf.find
    for i, b in enumerate(order):  # idx[b] == i
        comps.setdefault(find(i), []).append(b)
    why: dict[int, list[str]] = {}
    for node, text in events:
        r = uf.find(node)
        lst = why.setdefault(r, [])
        if len(lst) < 8 and text not in lst:
            lst.append(text)
    return [P2PDomain(devs, why.get(r, [])) for r, devs in comps.items() if len(devs) > 1]


# -- partition diff --------------------------------------------------------------------------


@dataclass(slots=True)
class PartitionDiff:
    """``split``: a group of ``before`` whose members land in several groups of ``after``
    (each such separation is a pair the kernel no longer keeps together); ``merged``: the
    converse."""

    split: list[tuple[list[Bdf], list[list[Bdf]]]] = field(default_factory=list)
    merged: list[tuple[list[list[Bdf]], list[Bdf]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.split or self.merged)

    def to_json(self) -> dict[str, Any]:
        return {
            "split": [
                {"before": [str(b) for b in old], "after": [[str(b) for b in p] for p in parts]}
                for old, parts in self.split
            ],
            "merged": [
                {"before": [[str(b) for b in p] for p in parts], "after": [str(b) for b in new]}
                for parts, new in self.merged
            ],
        }


def _blocks(groups: Iterable[Iterable[Bdf]]) -> dict[Bdf, int]:
    out: dict[Bdf, int] = {}
    for i, g in enumerate(groups):
        for b in g:
            out[b] = i
    return out


def diff(before: Grouping, after: Grouping) -> PartitionDiff:
    """Compare two partitions of the same devices (numbers are ignored)."""
    a_groups = [g.devices for g in before.groups]
    b_groups = [g.devices for g in after.groups]
    a_of, b_of = _blocks(a_groups), _blocks(b_groups)
    d = PartitionDiff()
    for g in a_groups:
        parts: dict[int, list[Bdf]] = {}
        for x in g:
            if x in b_of:
                parts.setdefault(b_of[x], []).append(x)
        if len(parts) > 1:
            d.split.append((list(g), list(parts.values())))
    for g in b_groups:
        parts = {}
        for x in g:
            if x in a_of:
                parts.setdefault(a_of[x], []).append(x)
        if len(parts) > 1:
            d.merged.append((list(parts.values()), list(g)))
    return d


# -- explain and report ----------------------------------------------------------------------


def _fn_label(f: PciFunction) -> str:
    t = f.pcie_type.file_name if f.pcie_type is not None else "conventional PCI"
    extra = f" '{f.name}'" if f.name else ""
    return f"{f.bdf} [{f.id_str}] class {f.class_code:04x} {t}{extra}"


def explain(gr: Grouping, bdf: Bdf | str) -> list[str]:
    """Lines saying why ``bdf`` is where it is: the path, ACS bits, quirks, aliases."""
    topo = gr.topology
    b = Bdf.parse(bdf) if isinstance(bdf, str) else bdf
    f = topo[b]
    acs = gr.acs
    dec = gr.decisions[b]
    out = [_fn_label(f)]
    if dec.group is None:
        out.append(f"  no IOMMU group: {gr.ungrouped.get(b, '')}")
        return out
    g = gr.groups[dec.group]
    others = [str(x) for x in g.devices if x != b]
    out.append(
        f"  IOMMU group {dec.group}"
        + (f" with {', '.join(others)}" if others else " (alone)")
        + ("" if g.certain else "  [UNCERTAIN: computed from partial data]")
    )
    if f.kernel_group is not None:
        out.append(f"  the running kernel put it in group {f.kernel_group}")
    # path to the root
    out.append("  path to the root bus (pci_acs_path_enabled, REQ_ACS_FLAGS = SV|RR|CR|UF):")
    cur: Bdf | None = b
    while cur is not None:
        fv = topo.functions[cur]
        v = acs.acs_enabled(cur)
        ctl = acs.ctrl(cur)
        acs_s = (
            "no ACS capability" if fv.acs is None else f"ACS cap {fv.acs.cap:#06x} ctl {ctl:#06x}"
        )
        if not fv.acs_known:
            acs_s = "ACS unknown (config not readable)"
        mark = "ok " if v.ok else "NO "
        out.append(f"    {mark}{_fn_label(fv)}: {acs_s}; {v.text()}")
        for line in acs.enable_log.get(cur, []):
            out.append(f"        pci_enable_acs: {line}")
        cur = topo.upstream_bridge(cur)
    if len(dec.aliases) > 1:
        out.append("  DMA requester IDs (pci_for_each_dma_alias):")
        for s in dec.aliases:
            out.append(f"    {s.text()}")
    if dec.anchor is not None and dec.anchor != b:
        out.append(f"  anchor: {dec.anchor}")
    out.append("  decision:")
    for r in dec.reasons:
        out.append(f"    [{r.rule}] {r.detail}")
    pv = pasid_eligibility(acs, b)
    out.append(f"  PASID: {'eligible' if pv.eligible else 'not eligible'} — {pv.reason}")
    return out


def report(
    gr: Grouping,
    *,
    acs_override: AcsOverride | str | None = None,
    p2p: bool = True,
) -> dict[str, Any]:
    """The machine-readable audit (the CLI's ``--json``)."""
    with gc_paused():
        return _report(gr, acs_override, p2p)


def _report(gr: Grouping, acs_override: AcsOverride | str | None, p2p: bool) -> dict[str, Any]:
    topo = gr.topology
    acs = gr.acs
    fns = topo.functions
    memo: dict[Bdf, bool | None] = {}
    verdicts: dict[Bdf, PasidVerdict] = {}
    groups_j: list[dict[str, Any]] = []
    for g in gr.groups:
        v = viability(topo, g)
        kgs = {fns[b].kernel_group for b in g.devices}
        reasons = gr.group_reasons(g)
        groups_j.append(
            {
                "id": g.id,
                "devices": [str(b) for b in g.devices],
                "viable": v.viable,
                "blockers": [{"device": str(b), "driver": d} for b, d in v.blockers],
                "certain": g.certain,
                "anchor": str(gr.decisions[g.devices[0]].anchor or g.devices[0]),
                "reasons": [r.detail for r in reasons],
                "reason_details": [r.to_json() for r in reasons],
                "kernel_group": kgs.pop() if len(kgs) == 1 else None,
            }
        )
    devices_j = []
    for b in topo.order:
        f = fns[b]
        pv = pasid_eligibility(acs, b, memo, verdicts) if f.iommu else None
        devices_j.append(
            {
                "bdf": str(f.bdf),
                "id": f.id_str,
                "class": f"{f.class_code:04x}",
                "pcie_type": f.pcie_type.file_name if f.pcie_type is not None else "none",
                "name": f.name,
                "driver": f.driver,
                "group": gr.group_of.get(f.bdf),
                "kernel_group": f.kernel_group,
                "certain": f.certain,
                "pasid": pv.to_json() if pv else None,
            }
        )
    out: dict[str, Any] = {
        "source": topo.source,
        "partial": topo.partial or any(not g.certain for g in gr.groups),
        "warnings": list(topo.warnings),
        "groups": groups_j,
        "ungrouped": [{"device": str(b), "reason": why} for b, why in gr.ungrouped.items()],
        "devices": devices_j,
    }
    if topo.kernel_groups_known:
        out["kernel_comparison"] = compare_with_kernel(gr)
    if p2p:
        out["p2p"] = [
            {
                "devices": [str(b) for b in d.devices],
                "reasons": d.reasons,
                "groups": sorted({gr.group_of[b] for b in d.devices if b in gr.group_of}),
                "crosses_groups": len({gr.group_of.get(b) for b in d.devices}) > 1,
            }
            for d in p2p_domains(topo, acs)
        ]
    if acs_override is not None:
        ov = AcsOverride.parse(acs_override) if isinstance(acs_override, str) else acs_override
        o = acs.opts
        after = group(
            topo,
            options=KernelOptions(
                o.acs_enable,
                o.enable_acs,
                o.ats_disabled,
                o.disable_acs_redir,
                o.config_acs,
                ov,
                o.amd_ivrs,
            ),
        )
        out["what_if"] = {
            "acs_override": str(ov),
            "groups": [
                {
                    "id": g.id,
                    "devices": [str(b) for b in g.devices],
                    "viable": viability(topo, g).viable,
                }
                for g in after.groups
            ],
            "diff": diff(gr, after).to_json(),
            "warning": "pcie_acs_override changes no hardware register: devices it separates "
            "can still reach each other by peer-to-peer DMA (see p2p)",
        }
    return out


def compare_with_kernel(gr: Grouping) -> dict[str, Any]:
    """Our partition against the running kernel's ``iommu_group`` links."""
    topo = gr.topology
    kern: dict[int, list[Bdf]] = {}
    for f in topo:
        if f.kernel_group is not None:
            kern.setdefault(f.kernel_group, []).append(f.bdf)
    ours = {frozenset(g.devices) for g in gr.groups}
    theirs = {frozenset(v) for v in kern.values()}
    only_ours = sorted(sorted(map(str, s)) for s in ours - theirs)
    only_kernel = sorted(sorted(map(str, s)) for s in theirs - ours)
    numbers_match = all(
        topo.functions[b].kernel_group == gr.group_of.get(b)
        for b in topo.order
        if topo.functions[b].kernel_group is not None
    )
    return {
        "partition_matches": not only_ours and not only_kernel,
        "numbers_match": numbers_match,
        "only_computed": only_ours,
        "only_kernel": only_kernel,
    }
