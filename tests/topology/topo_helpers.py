"""Small builders for hand-made fabrics (expected results are written by hand from the rules)."""

from __future__ import annotations

from typing import Any

from ioasid.topology import Acs, Bdf, PcieType, PciFunction, Topology

FULL = Acs(0x5F, 0x00)  # SV TB RR CR UF DT implemented, firmware left control at 0
ZERO = Acs(0x00, 0x00)  # capability present, nothing implemented: everything "hard-wired"


def B(s: str) -> Bdf:
    return Bdf.parse(s if s.count(":") == 2 else f"0000:{s}")


def fn(
    bdf: str,
    t: PcieType | None,
    parent: str | None = None,
    *,
    vid: int = 0x1234,
    did: int = 0x0001,
    **kw: Any,
) -> PciFunction:
    kw.setdefault("class_code", 0x0604 if t is not None and t.is_bridge else 0x0200)
    return PciFunction(
        bdf=B(bdf), vendor=vid, device=did, pcie_type=t, parent=B(parent) if parent else None, **kw
    )


def rp(bdf: str, acs: Acs | None = FULL, **kw: Any) -> PciFunction:
    return fn(bdf, PcieType.ROOT_PORT, None, acs=acs, **kw)


def usp(bdf: str, parent: str, **kw: Any) -> PciFunction:
    return fn(bdf, PcieType.UPSTREAM, parent, **kw)


def dsp(bdf: str, parent: str, acs: Acs | None = FULL, **kw: Any) -> PciFunction:
    return fn(bdf, PcieType.DOWNSTREAM, parent, acs=acs, **kw)


def ep(bdf: str, parent: str | None = None, **kw: Any) -> PciFunction:
    return fn(bdf, PcieType.ENDPOINT, parent, **kw)


def topo(*fns: PciFunction) -> Topology:
    return Topology(fns)


def part(*groups: tuple[str, ...] | list[str]) -> set[frozenset[Bdf]]:
    return {frozenset(B(b) for b in g) for g in groups}


def same(gr: Any, a: str, b: str) -> bool:
    return bool(gr.group_of[B(a)] == gr.group_of[B(b)])
