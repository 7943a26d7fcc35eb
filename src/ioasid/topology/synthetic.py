"""Synthetic fabrics for scale runs and property tests: deep switch trees, SR-IOV VFs,
multifunction endpoints, PCIe-to-PCI bridges, ports with and without ACS, several domains."""

from __future__ import annotations

import random

from .model import Acs, Bdf, PcieType, PciFunction, Topology

__all__ = ["synthetic_fabric"]

_FULL = Acs(0x5F, 0x00)


class _Gen:
    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self.out: list[PciFunction] = []
        self.domain = 0
        self.next_bus = 1

    def bus(self) -> int | None:
        if self.next_bus > 0xFF:
            return None
        b = self.next_bus
        self.next_bus += 1
        return b

    def add(self, bdf: Bdf, t: PcieType | None, parent: Bdf | None, **kw: object) -> None:
        cls = 0x0604 if (t is not None and t.is_bridge) or kw.get("_bridge") else 0x0200
        kw.pop("_bridge", None)
        fn = PciFunction(
            bdf=bdf,
            vendor=0x1DEA,
            device=0x1000 + (t or 0),
            class_code=cls,
            pcie_type=t,
            parent=parent,
            eetlp_prefix=t is not None,
        )
        self.out.append(fn.with_(**kw) if kw else fn)

    def full(self) -> bool:
        return len(self.out) >= self.n

    def endpoint(self, parent: Bdf) -> None:
        b = self.bus()
        if b is None:
            return
        d = self.domain
        kind = self.rng.random()
        if kind < 0.45:  # SR-IOV PF with VFs on the same bus (ARI-style devfns)
            pf = Bdf(d, b, 0, 0)
            self.add(pf, PcieType.ENDPOINT, parent, pasid=True, ats=True)
            for i in range(1, self.rng.randint(4, 31) + 1):
                if self.full():
                    break
                self.add(
                    Bdf(d, b, i >> 3, i & 7), PcieType.ENDPOINT, parent, is_virtfn=True, physfn=pf
                )
        elif kind < 0.75:  # multifunction endpoint, sometimes with ACS
            acs = Acs(0, 0) if self.rng.random() < 0.5 else None
            for fn in range(self.rng.randint(2, 4)):
                self.add(Bdf(d, b, 0, fn), PcieType.ENDPOINT, parent, multifunction=True, acs=acs)
        elif kind < 0.85:  # PCIe-to-PCI bridge with conventional devices
            br = Bdf(d, b, 0, 0)
            self.add(br, PcieType.PCI_BRIDGE, parent)
            b2 = self.bus()
            if b2 is None:
                return
            for slot in range(self.rng.randint(1, 4)):
                self.add(Bdf(d, b2, slot, 0), None, br)
        else:
            self.add(Bdf(d, b, 0, 0), PcieType.ENDPOINT, parent)

    def switch(self, parent: Bdf, depth: int) -> None:
        b = self.bus()
        if b is None:
            return
        d = self.domain
        up = Bdf(d, b, 0, 0)
        self.add(up, PcieType.UPSTREAM, parent)
        ib = self.bus()
        if ib is None:
            return
        acs = _FULL if self.rng.random() < 0.75 else None
        for slot in range(self.rng.randint(2, 8)):
            if self.full():
                return
            ds = Bdf(d, ib, slot, 0)
            self.add(ds, PcieType.DOWNSTREAM, up, acs=acs)
            if depth < 3 and self.rng.random() < 0.3:
                self.switch(ds, depth + 1)
            else:
                self.endpoint(ds)

    def run(self) -> list[PciFunction]:
        while not self.full():
            slot = 1
            while not self.full() and slot < 0x20 and self.next_bus < 0xF0:
                rp = Bdf(self.domain, 0, slot, 0)
                self.add(
                    rp, PcieType.ROOT_PORT, None, acs=_FULL if self.rng.random() < 0.9 else None
                )
                if self.rng.random() < 0.7:
                    self.switch(rp, 0)
                else:
                    self.endpoint(rp)
                slot += 1
            self.domain += 1
            self.next_bus = 1
        return self.out[: self.n] if self._cut_ok() else self.out

    def _cut_ok(self) -> bool:
        keep = {f.bdf for f in self.out[: self.n]}
        return all(f.parent is None or f.parent in keep for f in self.out[: self.n])


def synthetic_fabric(n_functions: int, seed: int = 0) -> Topology:
    """A random but reproducible fabric of about ``n_functions`` functions."""
    fns = _Gen(n_functions, seed).run()
    return Topology(fns, source=f"synthetic({n_functions}, seed={seed})")
