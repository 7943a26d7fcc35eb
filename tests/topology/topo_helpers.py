"""Small builders for hand-made fabrics (expected results are written by hand from the rules)."""

from __future__ import annotations

import os
import struct
from pathlib import Path
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


# -- synthetic sysfs trees with binary config spaces carrying real capability chains --------

TYPES = {"rp": 4, "usp": 5, "dsp": 6, "ep": 0, "pcibr": 7, "rcend": 9}


def config(
    vid: int,
    did: int,
    cls: int,
    *,
    ptype: str | None,
    mf: bool = False,
    acs: tuple[int, int] | None = None,
    pasid: bool = False,
    sec: int | None = None,
    size: int = 4096,
    eetlp: bool = True,
    spt: bool = False,
) -> bytes:
    """A config space: PM cap at 0x40 -> PCIe cap at 0x50; ext: AER 0x100 -> ACS -> PASID."""
    b = bytearray(size)
    struct.pack_into("<HH", b, 0, vid, did)
    b[0x09], b[0x0A], b[0x0B] = cls & 0xFF, (cls >> 8) & 0xFF, (cls >> 16) & 0xFF
    bridge = sec is not None
    b[0x0E] = (1 if bridge else 0) | (0x80 if mf else 0)
    if bridge:
        b[0x18], b[0x19], b[0x1A] = 0, sec, sec + 0x10
    if ptype is None:
        return bytes(b)
    struct.pack_into("<H", b, 0x06, 0x10)  # capability list
    b[0x34] = 0x40
    b[0x40], b[0x41] = 0x01, 0x50  # PM -> PCIe
    b[0x50], b[0x51] = 0x10, 0x00
    struct.pack_into("<H", b, 0x52, 2 | (TYPES[ptype] << 4))
    struct.pack_into("<I", b, 0x50 + 0x24, 0x00200000 if eetlp else 0)
    if size > 256:
        nxt = 0x140 if acs else (0x180 if pasid else 0)
        struct.pack_into("<I", b, 0x100, 0x0001 | (1 << 16) | (nxt << 20))  # AER
        if acs:
            struct.pack_into("<I", b, 0x140, 0x000D | (1 << 16) | ((0x180 if pasid else 0) << 20))
            if spt:
                struct.pack_into("<II", b, 0x144, acs[0], acs[1])
            else:
                struct.pack_into("<HH", b, 0x144, acs[0], acs[1])
        if pasid:
            struct.pack_into("<I", b, 0x180, 0x001B | (1 << 16))
            struct.pack_into("<H", b, 0x184, 0x1404)  # priv, 20 bits
    return bytes(b)


class Sysfs:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "bus/pci/devices").mkdir(parents=True)
        (root / "devices").mkdir()

    def add(
        self,
        path: list[str],
        cfg: bytes,
        *,
        driver: str | None = None,
        group: int | None = None,
        short: int | None = None,
        physfn: str | None = None,
    ) -> Path:
        d = self.root / "devices" / "pci0000:00"
        for p in path:
            d = d / p
        d.mkdir(parents=True)
        (d / "config").write_bytes(cfg)
        vid, did = struct.unpack_from("<HH", cfg, 0)
        (d / "vendor").write_text(f"0x{vid:04x}\n")
        (d / "device").write_text(f"0x{did:04x}\n")
        (d / "class").write_text(f"0x{cfg[0x0B]:02x}{cfg[0x0A]:02x}{cfg[0x09]:02x}\n")
        if driver:
            os.symlink(f"../../../../bus/pci/drivers/{driver}", d / "driver")
        if group is not None:
            os.symlink(f"../../../../kernel/iommu_groups/{group}", d / "iommu_group")
        if physfn:
            os.symlink(f"../{physfn}", d / "physfn")
        link = self.root / "bus/pci/devices" / path[-1]
        os.symlink(os.path.relpath(d, link.parent), link)
        return d


def host_tree(tmp_path: Path) -> Sysfs:
    """Group numbers as Linux hands them out: probe order is all of bus 00, then 01, 02..."""
    s = Sysfs(tmp_path)
    s.add(["0000:00:00.0"], config(0x8086, 0x29C0, 0x060000, ptype=None, size=256), group=0)
    rp = ["0000:00:01.0"]
    s.add(
        rp,
        config(0x8086, 0x2030, 0x060400, ptype="rp", acs=(0x5F, 0x1D), sec=1),
        driver="pcieport",
        group=1,
    )
    s.add(
        [*rp, "0000:01:00.0"],
        config(0x10B5, 0x8747, 0x060400, ptype="usp", sec=2),
        driver="pcieport",
        group=4,
    )
    s.add(
        [*rp, "0000:01:00.0", "0000:02:08.0"],
        config(0x10B5, 0x8747, 0x060400, ptype="dsp", sec=3),
        group=5,
    )
    s.add(
        [*rp, "0000:01:00.0", "0000:02:08.0", "0000:03:00.0"],
        config(0x10DE, 0x1EB8, 0x030200, ptype="ep", mf=True, pasid=True),
        driver="vfio-pci",
        group=5,
    )
    s.add(
        [*rp, "0000:01:00.0", "0000:02:08.0", "0000:03:00.1"],
        config(0x10DE, 0x10F8, 0x040300, ptype="ep", mf=True),
        driver="snd_hda_intel",
        group=5,
    )
    s.add(
        ["0000:00:02.0"],
        config(0x8086, 0x2031, 0x060400, ptype="rp", acs=(0x5F, 0x1D), sec=0x20),
        group=2,
    )
    s.add(
        ["0000:00:02.0", "0000:20:00.0"],
        config(0x8086, 0x0B25, 0x088000, ptype="ep", pasid=True),
        group=6,
    )
    s.add(
        ["0000:00:1f.0"], config(0x8086, 0x2918, 0x060100, ptype=None, mf=True, size=256), group=3
    )
    s.add(
        ["0000:00:1f.3"], config(0x8086, 0x2930, 0x0C0500, ptype=None, mf=True, size=256), group=3
    )
    return s
