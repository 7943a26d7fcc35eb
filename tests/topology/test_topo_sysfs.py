"""Synthetic sysfs trees with binary config spaces carrying real capability chains."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from topo_helpers import B

from ioasid.topology import PcieType, TopologyError, from_sysfs, group
from ioasid.topology.audit import compare_with_kernel, pasid_eligibility
from ioasid.topology.sysfs import parse_config

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


def _host(tmp_path: Path) -> Sysfs:
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


def test_parse_config_capability_chain() -> None:
    ci = parse_config(
        config(0x8086, 0x2030, 0x060400, ptype="rp", acs=(0x5F, 0x1D), sec=1, pasid=True)
    )
    assert ci.pcie_type is PcieType.ROOT_PORT and ci.pcie_known and ci.acs_known
    assert ci.acs is not None and (ci.acs.cap, ci.acs.ctrl) == (0x5F, 0x1D)
    assert ci.pasid and ci.pasid_priv and not ci.pasid_exec and ci.pasid_max_width == 20
    assert ci.eetlp_prefix and ci.secondary_bus == 1 and ci.header_type == 1


def test_parse_config_spt_dword_layout() -> None:
    ci = parse_config(
        config(0x8086, 0xA110, 0x060400, ptype="rp", acs=(0x5F, 0x1D), sec=1, spt=True)
    )
    assert ci.acs is not None and (ci.acs.cap, ci.acs.ctrl) == (0x5F, 0x1D)


def test_parse_config_partial_reads() -> None:
    full = config(0x8086, 0x2030, 0x060400, ptype="rp", acs=(0x5F, 0x1D), sec=1)
    ci = parse_config(full[:64], 4096)
    assert not ci.pcie_known and not ci.acs_known and ci.secondary_bus == 1
    ci2 = parse_config(full[:256], 4096)
    assert ci2.pcie_known and not ci2.acs_known
    assert not parse_config(b"\x00" * 10).pcie_known


def test_sysfs_tree_matches_kernel_links(tmp_path: Path) -> None:
    t = from_sysfs(_host(tmp_path).root)
    assert t["0000:02:08.0"].parent == B("01:00.0")
    assert t["0000:03:00.0"].multifunction and t["0000:03:00.0"].driver == "vfio-pci"
    assert not t.partial
    gr = group(t)
    cmp = compare_with_kernel(gr)
    assert cmp["partition_matches"] and cmp["numbers_match"], cmp
    assert pasid_eligibility(gr.acs, B("20:00.0")).eligible
    assert not pasid_eligibility(gr.acs, B("03:00.0")).eligible  # DSP without ACS


def test_measured_ctl_is_not_re_enabled(tmp_path: Path) -> None:
    # the kernel's groups exist, so ctl is what the kernel wrote: a port left at 0 (e.g. by
    # pci=disable_acs_redir) must not be "fixed" by us
    s = Sysfs(tmp_path)
    s.add(["0000:00:01.0"], config(0x1234, 1, 0x060400, ptype="rp", acs=(0x5F, 0), sec=1), group=0)
    s.add(["0000:00:01.0", "0000:01:00.0"], config(0x1234, 2, 0x020000, ptype="ep"), group=0)
    gr = group(from_sysfs(s.root))
    assert compare_with_kernel(gr)["partition_matches"]


def test_unprivileged_reads_are_uncertain_not_wrong(tmp_path: Path) -> None:
    s = _host(tmp_path)
    # an unprivileged reader gets the first 64 bytes: the PCIe capability and ACS are unseen
    for p in (s.root / "bus/pci/devices").iterdir():
        cfg = (p / "config").read_bytes()
        (p / "config").write_bytes(cfg[:64])
    t = from_sysfs(s.root)
    gr = group(t)
    assert t.partial
    uncertain = [g for g in gr.groups if not g.certain]
    assert uncertain
    # every group that is reported certain agrees with the kernel
    kern = {}
    for f in t:
        kern.setdefault(f.kernel_group, set()).add(f.bdf)
    for g in gr.groups:
        if g.certain:
            assert set(g.devices) in kern.values()


def test_vanishing_and_unreadable_devices(tmp_path: Path) -> None:
    s = _host(tmp_path)
    # a device whose directory disappeared: dangling symlink
    os.symlink("../../../devices/pci0000:00/0000:00:09.0", s.root / "bus/pci/devices/0000:00:09.0")
    # a config that cannot be read (a directory instead of a file)
    d = s.add(["0000:00:0a.0"], config(0x1234, 9, 0x020000, ptype="ep"))
    (d / "config").unlink()
    (d / "config").mkdir()
    t = from_sysfs(s.root)
    assert any("0000:00:09.0" in w and "vanished" in w for w in t.warnings)
    assert any("0000:00:0a.0" in w for w in t.warnings)
    assert not t["0000:00:0a.0"].certain
    group(t)


def test_no_pci_devices_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="no PCI devices"):
        from_sysfs(tmp_path)


def test_vfs_from_physfn_links(tmp_path: Path) -> None:
    s = Sysfs(tmp_path)
    s.add(
        ["0000:00:01.0"], config(0x1234, 1, 0x060400, ptype="rp", acs=(0x5F, 0x1D), sec=1), group=0
    )
    s.add(["0000:00:01.0", "0000:01:00.0"], config(0x1234, 2, 0x020000, ptype="ep"), group=1)
    s.add(
        ["0000:00:01.0", "0000:01:00.1"],
        config(0x1234, 3, 0x020000, ptype="ep"),
        group=2,
        physfn="0000:01:00.0",
    )
    t = from_sysfs(s.root)
    assert t["0000:01:00.1"].is_virtfn and not t["0000:01:00.1"].multifunction
    assert compare_with_kernel(group(t))["partition_matches"]
