"""pci_device_group() rules: one test per row of the decision table (topology.md §1.7) and per
kernel rule. Expected partitions are written by hand from the kernel's code."""

from __future__ import annotations

import pytest
from topo_helpers import FULL, ZERO, B, dsp, ep, fn, part, rp, same, topo, usp

from ioasid.topology import (
    REQ_ACS_FLAGS,
    Acs,
    AcsFlag,
    AcsState,
    KernelOptions,
    PcieType,
    Topology,
    TopologyError,
    group,
)

SV, TB, RR, CR, UF, EC, DT = (
    AcsFlag.SV,
    AcsFlag.TB,
    AcsFlag.RR,
    AcsFlag.CR,
    AcsFlag.UF,
    AcsFlag.EC,
    AcsFlag.DT,
)


def test_req_acs_flags_is_sv_rr_cr_uf() -> None:
    assert int(REQ_ACS_FLAGS) == 0x0001 | 0x0004 | 0x0008 | 0x0010


# -- ports with and without ACS -------------------------------------------------------------


def test_root_port_with_acs_isolates_children() -> None:
    t = topo(rp("00:01.0"), ep("01:00.0", "00:01.0"), rp("00:02.0"), ep("02:00.0", "00:02.0"))
    assert group(t).partition() == part(["00:01.0"], ["01:00.0"], ["00:02.0"], ["02:00.0"])


def test_pci_enable_acs_turns_on_sv_rr_cr_uf_from_cap() -> None:
    t = topo(rp("00:01.0", Acs(0x7F, 0)))
    acs = AcsState(t)
    assert acs.ctrl(B("00:01.0")) == int(SV | RR | CR | UF)  # never TB, EC or DT


def test_pci_enable_acs_adds_tb_for_untrusted_and_noats() -> None:
    t = topo(rp("00:01.0", Acs(0x7F, 0), untrusted=True), rp("00:02.0", Acs(0x7F, 0)))
    assert AcsState(t).ctrl(B("00:01.0")) == int(SV | RR | CR | UF | TB)
    noats = AcsState(t, KernelOptions(ats_disabled=True))
    assert noats.ctrl(B("00:02.0")) == int(SV | RR | CR | UF | TB)


def test_without_iommu_request_firmware_ctl_stays_and_port_fails() -> None:
    t = topo(rp("00:01.0"), ep("01:00.0", "00:01.0"))
    gr = group(t, options=KernelOptions(acs_enable=False))
    assert same(gr, "00:01.0", "01:00.0")


def test_unimplemented_bits_count_as_hardwired() -> None:
    # AMD GPP bridge style: only SV (and TB) implemented, SV enabled -> passes REQ
    t = topo(rp("00:01.0", Acs(SV | TB, 0)), ep("01:00.0", "00:01.0"))
    assert not same(group(t), "00:01.0", "01:00.0")


def test_ec_must_really_be_implemented_when_asked() -> None:
    t = topo(rp("00:01.0", Acs(0x5F, 0x5F)))
    acs = AcsState(t)
    assert acs.acs_enabled(B("00:01.0"), RR).ok
    v = acs.acs_enabled(B("00:01.0"), RR | EC)
    assert not v.ok and v.missing == EC


@pytest.mark.parametrize("ptype", [PcieType.ROOT_PORT, PcieType.DOWNSTREAM])
def test_port_without_acs_capability_anchors_whole_subtree(ptype: PcieType) -> None:
    top = fn("00:01.0", PcieType.ROOT_PORT, acs=None if ptype is PcieType.ROOT_PORT else FULL)
    if ptype is PcieType.ROOT_PORT:
        fab = [
            top,
            usp("01:00.0", "00:01.0"),
            dsp("02:00.0", "01:00.0"),
            ep("03:00.0", "02:00.0"),
            dsp("02:01.0", "01:00.0"),
            ep("04:00.0", "02:01.0"),
        ]
        t = topo(*fab)
        assert group(t).partition() == part(
            ["00:01.0", "01:00.0", "02:00.0", "03:00.0", "02:01.0", "04:00.0"]
        )
    else:
        t = topo(
            top,
            usp("01:00.0", "00:01.0"),
            dsp("02:00.0", "01:00.0", None),
            usp("03:00.0", "02:00.0"),
            dsp("04:00.0", "03:00.0"),
            ep("05:00.0", "04:00.0"),
        )
        # the nested switch below a non-ACS DSP: everything anchors on 02:00.0
        assert group(t).partition() == part(
            ["00:01.0"], ["01:00.0"], ["02:00.0", "03:00.0", "04:00.0", "05:00.0"]
        )


def test_sibling_downstream_ports_without_acs_are_not_merged() -> None:
    t = topo(
        rp("00:01.0"),
        usp("01:00.0", "00:01.0"),
        dsp("02:00.0", "01:00.0", None),
        dsp("02:01.0", "01:00.0", None),
        ep("03:00.0", "02:00.0"),
        ep("04:00.0", "02:01.0"),
    )
    assert group(t).partition() == part(
        ["00:01.0"], ["01:00.0"], ["02:00.0", "03:00.0"], ["02:01.0", "04:00.0"]
    )


def test_single_function_upstream_port_needs_no_acs() -> None:
    t = topo(
        rp("00:01.0"),
        usp("01:00.0", "00:01.0"),
        dsp("02:00.0", "01:00.0"),
        ep("03:00.0", "02:00.0"),
    )
    assert group(t).partition() == part(["00:01.0"], ["01:00.0"], ["02:00.0"], ["03:00.0"])


def test_multifunction_chipset_with_upstream_port_function_is_one_group() -> None:
    # AMD 400/500 chipset: xHCI, SATA and the switch USP are functions of one slot, no ACS
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", multifunction=True),
        ep("01:00.1", "00:01.0", multifunction=True),
        usp("01:00.2", "00:01.0", multifunction=True),
        dsp("02:00.0", "01:00.2"),
        ep("03:00.0", "02:00.0"),
        dsp("02:01.0", "01:00.2"),
        ep("04:00.0", "02:01.0"),
    )
    assert group(t).partition() == part(
        ["00:01.0"], ["01:00.0", "01:00.1", "01:00.2", "02:00.0", "03:00.0", "02:01.0", "04:00.0"]
    )


def test_multifunction_root_ports_without_acs_merge_with_subtrees() -> None:
    t = topo(
        rp("00:1c.0", None, multifunction=True),
        rp("00:1c.4", None, multifunction=True),
        ep("01:00.0", "00:1c.0"),
        ep("02:00.0", "00:1c.4"),
        rp("00:1d.0", None),
    )
    gr = group(t)
    assert gr.partition() == part(["00:1c.0", "00:1c.4", "01:00.0", "02:00.0"], ["00:1d.0"])


# -- endpoints and functions ----------------------------------------------------------------


def test_single_function_endpoints_get_own_groups() -> None:
    t = topo(rp("00:01.0"), ep("01:00.0", "00:01.0"))
    gr = group(t)
    assert not same(gr, "00:01.0", "01:00.0")
    assert gr.acs.acs_enabled(B("01:00.0")).ok


def test_multifunction_endpoint_without_acs_merges_functions() -> None:
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", multifunction=True),
        ep("01:00.1", "00:01.0", multifunction=True),
    )
    gr = group(t)
    assert gr.partition() == part(["00:01.0"], ["01:00.0", "01:00.1"])
    assert [r.rule for r in gr.decisions[B("01:00.1")].reasons] == ["function_alias"]


def test_multifunction_with_all_zero_acs_cap_is_one_group_per_function() -> None:
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", multifunction=True, acs=ZERO),
        ep("01:00.1", "00:01.0", multifunction=True, acs=ZERO),
    )
    assert group(t).partition() == part(["00:01.0"], ["01:00.0"], ["01:00.1"])


def test_only_non_isolated_functions_merge() -> None:
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", multifunction=True, acs=ZERO),
        ep("01:00.1", "00:01.0", multifunction=True),
        ep("01:00.2", "00:01.0", multifunction=True),
    )
    assert group(t).partition() == part(["00:01.0"], ["01:00.0"], ["01:00.1", "01:00.2"])


def test_multifunction_mf_with_acs_cap_but_ctl_off_and_no_iommu_merges() -> None:
    f0 = ep("01:00.0", "00:01.0", multifunction=True, acs=Acs(RR | CR, 0))
    f1 = ep("01:00.1", "00:01.0", multifunction=True, acs=Acs(RR | CR, 0))
    t = topo(rp("00:01.0"), f0, f1)
    assert same(group(t, options=KernelOptions(acs_enable=False)), "01:00.0", "01:00.1")
    assert not same(group(t), "01:00.0", "01:00.1")  # pci_enable_acs sets RR|CR


def test_rc_integrated_endpoints_same_slot_merge_other_slots_apart() -> None:
    t = topo(
        fn("00:14.0", PcieType.RC_END, multifunction=True, vid=0x1022),
        fn("00:14.3", PcieType.RC_END, multifunction=True, vid=0x1022),
        fn("00:15.0", PcieType.RC_END, vid=0x1022),
    )
    assert group(t).partition() == part(["00:14.0", "00:14.3"], ["00:15.0"])


def test_intel_rciep_quirk_isolates_intel_rc_integrated_endpoints() -> None:
    t = topo(
        fn("00:14.0", PcieType.RC_END, multifunction=True, vid=0x8086, did=0xA1AF),
        fn("00:14.2", PcieType.RC_END, multifunction=True, vid=0x8086, did=0xA1B1),
    )
    gr = group(t)
    assert gr.partition() == part(["00:14.0"], ["00:14.2"])
    assert gr.acs.acs_enabled(B("00:14.0")).quirk == "pci_quirk_rciep_acs"


def test_conventional_pci_on_root_bus_merges_by_slot() -> None:
    t = topo(
        fn("00:1f.0", None, multifunction=True),
        fn("00:1f.3", None, multifunction=True),
        fn("00:1f.4", None, multifunction=True),
        fn("00:1e.0", None),
    )
    assert group(t).partition() == part(["00:1f.0", "00:1f.3", "00:1f.4"], ["00:1e.0"])


def test_pcie_to_pci_bridge_and_everything_behind_is_one_group() -> None:
    t = topo(
        rp("00:01.0"),
        fn("01:00.0", PcieType.PCI_BRIDGE, "00:01.0"),
        fn("02:00.0", None, "01:00.0"),
        fn("02:01.0", None, "01:00.0"),
        fn("02:02.0", None, "01:00.0", class_code=0x0604),
        fn("03:00.0", None, "02:02.0"),
    )
    gr = group(t)
    assert gr.partition() == part(
        ["00:01.0"], ["01:00.0", "02:00.0", "02:01.0", "02:02.0", "03:00.0"]
    )
    # DMA from behind the bridge carries (secondary bus, 00.0)
    aliases = gr.acs.dma_aliases(B("02:01.0"))
    assert [(s.bdf, s.rid) for s in aliases] == [(B("02:01.0"), 0x0208), (B("01:00.0"), 0x0200)]
    # a conventional bridge behind it takes ownership with its own RID
    a3 = gr.acs.dma_aliases(B("03:00.0"))
    assert [(s.bdf, s.rid) for s in a3][1:] == [(B("02:02.0"), 0x0210), (B("01:00.0"), 0x0200)]


def test_aspeed_ast1150_bridge_forwards_requester_ids() -> None:
    t = topo(
        rp("00:01.0"),
        fn("01:00.0", PcieType.PCI_BRIDGE, "00:01.0", vid=0x1A03, did=0x1150),
        fn("02:00.0", None, "01:00.0"),
    )
    gr = group(t)
    assert [s.bdf for s in gr.acs.dma_aliases(B("02:00.0"))] == [B("02:00.0")]
    assert same(gr, "01:00.0", "02:00.0")  # still not ACS-isolated: PCIe-to-PCI bridge


def test_pci_to_pcie_bridge_aliases_to_itself() -> None:
    t = topo(
        fn("00:01.0", None, class_code=0x0604),
        fn("01:00.0", PcieType.PCIE_BRIDGE, "00:01.0"),
        ep("02:00.0", "01:00.0"),
    )
    al = AcsState(t).dma_aliases(B("02:00.0"))
    assert [(s.bdf, s.rid) for s in al] == [
        (B("02:00.0"), 0x0200),
        (B("01:00.0"), 0x0100),
        (B("00:01.0"), 0x0008),
    ]


@pytest.mark.parametrize("did", [0x1080])
def test_asmedia_conventional_bridge_uses_pcie_bridge_alias(did: int) -> None:
    t = topo(
        rp("00:01.0"),
        fn("01:00.0", None, "00:01.0", vid=0x1B21, did=did, class_code=0x0604),
        fn("02:03.0", None, "01:00.0"),
        fn("00:02.0", None, class_code=0x0604, vid=0x1B21, did=did),
        fn("03:00.0", None, "00:02.0"),
    )
    acs = AcsState(t)
    assert [(s.bdf, s.rid) for s in acs.dma_aliases(B("02:03.0"))][1:] == [(B("01:00.0"), 0x0200)]
    # on a root bus the quirk does not apply: the bridge's own RID is used
    assert [(s.bdf, s.rid) for s in acs.dma_aliases(B("03:00.0"))][1:] == [(B("00:02.0"), 0x0010)]


def test_bridge_xlate_root_stops_the_alias_walk() -> None:
    t = topo(
        rp("00:01.0"),
        fn("01:00.0", PcieType.PCI_BRIDGE, "00:01.0", vid=0x14E4, did=0x9000),
        fn("02:00.0", None, "01:00.0"),
    )
    assert [s.bdf for s in AcsState(t).dma_aliases(B("02:00.0"))] == [B("02:00.0")]


# -- SR-IOV -----------------------------------------------------------------------------------


def test_vfs_get_own_groups_and_are_probed_last() -> None:
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0"),
        ep("01:00.1", "00:01.0", is_virtfn=True, physfn=B("01:00.0")),
        ep("02:00.0", "00:01.0", is_virtfn=True, physfn=B("01:00.0")),  # virtual bus 02
        rp("00:02.0"),
        ep("03:00.0", "00:02.0"),
    )
    gr = group(t)
    assert gr.partition() == part(
        ["00:01.0"], ["01:00.0"], ["01:00.1"], ["02:00.0"], ["00:02.0"], ["03:00.0"]
    )
    assert t.bus_of(B("02:00.0")).is_virtual
    assert gr.group_of[B("03:00.0")] < gr.group_of[B("01:00.1")] < gr.group_of[B("02:00.0")]


def test_vfs_below_non_acs_port_join_its_group() -> None:
    t = topo(
        rp("00:01.0", None),
        ep("01:00.0", "00:01.0"),
        ep("01:00.2", "00:01.0", is_virtfn=True, physfn=B("01:00.0")),
        ep("02:00.0", "00:01.0", is_virtfn=True, physfn=B("01:00.0")),
    )
    assert group(t).partition() == part(["00:01.0", "01:00.0", "01:00.2", "02:00.0"])


# -- probe order and numbers ------------------------------------------------------------------


def test_probe_order_is_bus_by_bus_depth_first() -> None:
    t = topo(
        rp("00:01.0"),
        rp("00:02.0", None),
        fn("00:1f.0", None),
        usp("01:00.0", "00:01.0"),
        dsp("02:00.0", "01:00.0"),
        dsp("02:01.0", "01:00.0"),
        ep("03:00.0", "02:00.0"),
        ep("04:00.0", "02:01.0"),
        ep("05:00.0", "00:02.0"),
    )
    expect = [
        "00:01.0",
        "00:02.0",
        "00:1f.0",
        "01:00.0",
        "02:00.0",
        "02:01.0",
        "03:00.0",
        "04:00.0",
        "05:00.0",
    ]
    assert t.order == [B(x) for x in expect]
    gr = group(t)
    # 05:00.0 joins the group 00:02.0 got second; the rest count up in probe order
    nums = {str(b)[5:]: gr.group_of[b] for b in t.order}
    assert nums == {
        "00:01.0": 0,
        "00:02.0": 1,
        "00:1f.0": 2,
        "01:00.0": 3,
        "02:00.0": 4,
        "02:01.0": 5,
        "03:00.0": 6,
        "04:00.0": 7,
        "05:00.0": 1,
    }


# -- DMA alias quirks -------------------------------------------------------------------------


def test_marvell_func1_alias_to_ghost_function() -> None:
    t = topo(rp("00:01.0"), ep("01:00.0", "00:01.0", vid=0x1B4B, did=0x9123))
    acs = AcsState(t)
    assert acs.dq[B("01:00.0")].alias_devfns.keys() == {0x01}
    assert group(t).partition() == part(["00:01.0"], ["01:00.0"])


def test_func1_alias_merges_isolated_functions() -> None:
    # both functions claim ACS isolation (zero cap), but fn0 DMAs as fn1: one group
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", vid=0x1B4B, did=0x9230, multifunction=True, acs=ZERO),
        ep("01:00.1", "00:01.0", vid=0x1B4B, did=0x9230, multifunction=True, acs=ZERO),
    )
    gr = group(t)
    assert same(gr, "01:00.0", "01:00.1")
    # fn1 has no alias of its own (the quirk skips function 1), it is found as alias target
    assert gr.acs.dq[B("01:00.1")].alias_devfns == {}
    assert "alias_group" in [r.rule for r in gr.decisions[B("01:00.1")].reasons]


def test_ricoh_func0_alias() -> None:
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", vid=0x1180, did=0xE822, multifunction=True, acs=ZERO),
        ep("01:00.3", "00:01.0", vid=0x1180, did=0xE832, multifunction=True, acs=ZERO),
    )
    gr = group(t)
    assert gr.acs.dq[B("01:00.3")].alias_devfns.keys() == {0x00}
    assert same(gr, "01:00.0", "01:00.3")


def test_fixed_alias_needs_matching_subsystem() -> None:
    def mk(sub: int) -> Topology:
        return topo(
            rp("00:01.0"),
            fn("01:00.0", PcieType.PCI_BRIDGE, "00:01.0"),
            fn(
                "02:0e.0",
                None,
                "01:00.0",
                vid=0x9005,
                did=0x0285,
                subsystem_vendor=0x9005,
                subsystem_device=sub,
            ),
        )

    assert AcsState(mk(0x02BB)).dq[B("02:0e.0")].alias_devfns.keys() == {0x08}
    assert AcsState(mk(0x02BC)).dq[B("02:0e.0")].alias_devfns.keys() == {0x08}
    assert AcsState(mk(0x0001)).dq[B("02:0e.0")].alias_devfns == {}


def test_fixed_alias_to_another_slot_merges_groups() -> None:
    # the fixed alias (devfn 01.0) on an isolating fabric: 03:01.0 and 03:0e.0 share a group
    t = topo(
        rp("00:01.0", None, multifunction=False),
        rp("00:02.0"),
        ep(
            "03:0e.0",
            "00:02.0",
            vid=0x9005,
            did=0x0285,
            subsystem_vendor=0x9005,
            subsystem_device=0x02BB,
        ),
        ep("03:01.0", "00:02.0"),
    )
    gr = group(t)
    assert same(gr, "03:01.0", "03:0e.0")


@pytest.mark.parametrize(
    ("vid", "did", "devfns"),
    [
        (0x8086, 0x2260, {0x80, 0x88, 0x93}),  # quirk_mic_x200_dma_alias: 10.0 11.0 12.3
        (0x8086, 0x2264, {0x80, 0x88, 0x93}),
        (0x8086, 0x2954, {s << 3 | f for s in range(32) for f in range(5)}),  # quirk_pex_vca_alias
        (0x10B5, 0x87B0, set(range(256))),  # quirk_plx_ntb_dma_alias
    ],
)
def test_alias_quirk_devfn_sets(vid: int, did: int, devfns: set[int]) -> None:
    t = topo(rp("00:01.0"), ep("01:00.0", "00:01.0", vid=vid, did=did))
    assert set(AcsState(t).dq[B("01:00.0")].alias_devfns) == devfns


def test_alias_loop_is_guarded_by_devfn_bitmap() -> None:
    # IVRS-style aliases declared both ways between two multifunction devices
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", multifunction=True, acs=ZERO, dma_alias_devfns=frozenset({8})),
        ep("01:01.0", "00:01.0", multifunction=True, acs=ZERO, dma_alias_devfns=frozenset({0})),
        ep("01:01.1", "00:01.0", multifunction=True),
    )
    gr = group(t)
    assert gr.partition() == part(["00:01.0"], ["01:00.0", "01:01.0"], ["01:01.1"])


def test_alias_then_function_alias_chain() -> None:
    # 01:00.0 aliases 01:01.0; 01:01.0 and 01:01.1 are non-isolated functions: all one group
    t = topo(
        rp("00:01.0"),
        ep("01:01.0", "00:01.0", multifunction=True),
        ep("01:01.1", "00:01.0", multifunction=True),
        ep("01:00.0", "00:01.0", dma_alias_devfns=frozenset({0x09})),
    )
    gr = group(t)
    assert gr.partition() == part(["00:01.0"], ["01:00.0", "01:01.0", "01:01.1"])


# -- validation -------------------------------------------------------------------------------


def test_topology_rejects_contradictions() -> None:
    with pytest.raises(TopologyError, match="not a bridge"):
        topo(ep("00:01.0"), ep("01:00.0", "00:01.0"))
    with pytest.raises(TopologyError, match="duplicate"):
        topo(rp("00:01.0"), rp("00:01.0"))
    with pytest.raises(TopologyError, match="cycle"):
        topo(dsp("01:00.0", "02:00.0"), dsp("02:00.0", "01:00.0"))
    with pytest.raises(TopologyError, match="not in the topology"):
        topo(ep("01:00.0", "00:09.0"))
    with pytest.raises(TopologyError, match="virtfn"):
        topo(rp("00:01.0"), ep("01:00.0", "00:01.0"), ep("05:00.0", "00:01.0"))


def test_functions_above_zero_are_multifunction_whatever_the_header_says() -> None:
    # pci_scan_slot(): "if (fn > 0) dev->multifunction = 1" (QEMU leaves fn 1's bit clear)
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", multifunction=True),
        ep("01:00.1", "00:01.0", multifunction=False),
    )
    assert t[B("01:00.1")].multifunction
    assert same(group(t), "01:00.0", "01:00.1")
    # VFs stay single-function (pci_iov_add_virtfn: virtfn->multifunction = 0)
    t2 = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0"),
        ep("01:00.1", "00:01.0", is_virtfn=True, physfn=B("01:00.0")),
    )
    assert not t2[B("01:00.1")].multifunction
