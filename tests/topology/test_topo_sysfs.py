"""Synthetic sysfs trees with binary config spaces carrying real capability chains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from topo_helpers import B, Sysfs, config
from topo_helpers import host_tree as _host

from ioasid.topology import PcieType, TopologyError, from_sysfs, group
from ioasid.topology.audit import compare_with_kernel, pasid_eligibility
from ioasid.topology.sysfs import parse_config


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
