"""ACS quirk families of pci_dev_acs_enabled[] / pci_dev_acs_ops[], the command-line knobs, and
the out-of-tree pcie_acs_override. Each case states the kernel's answer by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topo_helpers import FULL, B, dsp, ep, fn, rp, same, topo, usp

from ioasid.topology import (
    Acs,
    AcsFlag,
    AcsOverride,
    AcsState,
    KernelOptions,
    PcieType,
    PciFunction,
    Topology,
    group,
)
from ioasid.topology.quirks import PCI_DEV_ACS_ENABLED

SV, TB, RR, CR, UF, EC, DT = (
    AcsFlag.SV,
    AcsFlag.TB,
    AcsFlag.RR,
    AcsFlag.CR,
    AcsFlag.UF,
    AcsFlag.EC,
    AcsFlag.DT,
)
REQ = SV | RR | CR | UF


def _port_isolates(f: PciFunction, **opts: object) -> bool:
    """Does a child below ``f`` get its own group?"""
    child = ep("01:00.0", str(f.bdf)[5:])
    t = topo(f, child)
    gr = group(t, options=KernelOptions(**opts))  # type: ignore[arg-type]
    return not same(gr, str(f.bdf)[5:], "01:00.0")


# -- root-port families: ports without ACS capability that isolate anyway --------------------


@pytest.mark.parametrize(
    ("vid", "did", "func"),
    [
        (0x17CB, 0x0400, "pci_quirk_qcom_rp_acs"),
        (0x1DBF, 0x0401, "pci_quirk_qcom_rp_acs"),
        (0x1957, 0x8D81, "pci_quirk_nxp_rp_acs"),
        (0x14E4, 0xD714, "pci_quirk_brcm_acs"),
        (0x0014, 0x7A09, "pci_quirk_loongson_acs"),
        (0x10E8, 0xE004, "pci_quirk_xgene_acs"),
        (0x1DEF, 0xE00C, "pci_quirk_xgene_acs"),
        (0x177D, 0xA123, "pci_quirk_cavium_acs"),
        (0x177D, 0xAF84, "pci_quirk_cavium_acs"),
        (0x1C36, 0x0031, "pci_quirk_al_acs"),
        (0x1D17, 0x0721, "pci_quirk_zhaoxin_pcie_ports_acs"),
    ],
)
def test_isolating_root_port_quirks(vid: int, did: int, func: str) -> None:
    f = rp("00:01.0", None, vid=vid, did=did)
    assert _port_isolates(f)
    assert AcsState(topo(f)).acs_enabled(f.bdf).quirk == func
    # the same device id with another vendor has no quirk
    assert not _port_isolates(rp("00:01.0", None, vid=0x1234, did=did))


def test_cavium_quirk_only_for_root_ports() -> None:
    t = topo(
        rp("00:01.0"),
        usp("01:00.0", "00:01.0"),
        dsp("02:00.0", "01:00.0", None, vid=0x177D, did=0xA123),
        ep("03:00.0", "02:00.0"),
    )
    assert same(group(t), "02:00.0", "03:00.0")


def test_annapurna_quirk_does_not_provide_ec() -> None:
    f = rp("00:01.0", None, vid=0x1C36, did=0x0031)
    acs = AcsState(topo(f))
    assert acs.acs_enabled(f.bdf, REQ).ok
    assert not acs.acs_enabled(f.bdf, REQ | EC).ok


def test_zhaoxin_unlisted_port_is_refused_even_with_full_acs() -> None:
    # pci_quirk_zhaoxin_pcie_ports_acs returns false (not -ENOTTY) for other Zhaoxin ports
    f = rp("00:01.0", FULL, vid=0x1D17, did=0x0799)
    assert not _port_isolates(f)
    # non-port Zhaoxin devices fall through to the standard rules
    t = topo(rp("00:01.0"), ep("01:00.0", "00:01.0", vid=0x1D17, did=0x0799))
    assert AcsState(t).acs_enabled(B("01:00.0")).quirk is None


# -- Intel PCH: the enable quirk decides ------------------------------------------------------


@pytest.mark.parametrize(
    "did", [0x3B42, 0x1C1F, 0x1E10, 0x8C1F, 0x9C1B, 0x9C90, 0x1D10, 0x1D1E, 0x8D1E, 0x8C90, 0x8C9E]
)
def test_intel_pch_root_ports_isolated_only_after_enable_quirk(did: int) -> None:
    f = rp("00:1c.0", None, vid=0x8086, did=did)
    assert _port_isolates(f)
    assert not _port_isolates(f.with_(pch_acs_workaround=False))  # RCBA disabled: quirk failed
    assert not _port_isolates(f, acs_enable=False)  # no IOMMU asked for ACS: flag never set


@pytest.mark.parametrize("did", [0x1D11, 0x8C91, 0x9C1C, 0x8D1F])
def test_intel_pch_id_list_gaps(did: int) -> None:
    # odd Patsburg/9-series ids, and ids past each range, are not in the kernel's list
    assert not _port_isolates(rp("00:1c.0", None, vid=0x8086, did=did))


def test_intel_pch_quirk_wins_over_acs_override() -> None:
    # the PCH quirk answers 0 before the override (appended last) is consulted
    f = rp("00:1c.0", None, vid=0x8086, did=0x1C10, pch_acs_workaround=False)
    t = topo(f, ep("01:00.0", "00:1c.0"))
    assert same(group(t, "downstream"), "00:1c.0", "01:00.0")
    g = rp("00:1c.0", None, vid=0x8086, did=0x1234)
    t2 = topo(g, ep("01:00.0", "00:1c.0"))
    assert not same(group(t2, "downstream"), "00:1c.0", "01:00.0")


@pytest.mark.parametrize("did", [0xA110, 0xA11F, 0xA167, 0xA16A, 0xA290, 0xA2EE, 0x9D10, 0x9D1B])
def test_intel_spt_dword_acs(did: int) -> None:
    # SPT: cap/ctl are dwords, ctl at cap+8; the enable quirk ORs SV|RR|CR|UF into it
    f = rp("00:1c.0", Acs(0x5F, 0), vid=0x8086, did=did)
    acs = AcsState(topo(f))
    assert acs.ctrl(f.bdf) == int(REQ)
    assert acs.acs_enabled(f.bdf).quirk == "pci_quirk_intel_spt_pch_acs"
    assert not _port_isolates(f, acs_enable=False)
    assert _port_isolates(f)


def test_intel_spt_disable_acs_redir_uses_quirk() -> None:
    f = rp("00:1c.0", Acs(0x5F, 0), vid=0x8086, did=0xA110)
    acs = AcsState(topo(f), KernelOptions(disable_acs_redir=("00:1c.0",)))
    assert acs.ctrl(f.bdf) == int(SV | UF)  # enabled value minus RR|CR|EC


# -- multifunction quirks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vid", "did"),
    [
        (0x8086, 0x1521),
        (0x8086, 0x10FB),
        (0x8086, 0x15B7),
        (0x8086, 0x105E),
        (0x1924, 0x0A03),
        (0x19A2, 0x0710),
        (0x10DF, 0x0720),
        (0x177D, 0xA026),
        (0x14E4, 0x1763),
        (0x1D17, 0x9083),
        (0x8088, 0x1001),
        (0x8088, 0x0105),
    ],
)
def test_mf_endpoint_quirks_split_functions(vid: int, did: int) -> None:
    t = topo(
        rp("00:01.0"),
        *(ep(f"01:00.{i}", "00:01.0", vid=vid, did=did, multifunction=True) for i in range(4)),
    )
    gr = group(t)
    assert len({gr.group_of[B(f"01:00.{i}")] for i in range(4)}) == 4


def test_wangxun_unlisted_device_refused_even_with_acs() -> None:
    t = topo(
        rp("00:01.0"),
        *(
            ep(
                f"01:00.{i}",
                "00:01.0",
                vid=0x8088,
                did=0x9999,
                multifunction=True,
                acs=Acs(0x1F, 0x1F),
            )
            for i in range(2)
        ),
    )
    assert same(group(t), "01:00.0", "01:00.1")


def test_intel_nic_without_quirk_merges() -> None:
    t = topo(
        rp("00:01.0"),
        *(
            ep(f"01:00.{i}", "00:01.0", vid=0x8086, did=0x1572, multifunction=True)
            for i in range(2)
        ),
    )
    assert same(group(t), "01:00.0", "01:00.1")


@pytest.mark.parametrize("ivrs", [True, False])
def test_amd_southbridge_quirk(ivrs: bool) -> None:
    fns = [fn(f"00:14.{i}", None, vid=0x1002, did=0x4385, multifunction=True) for i in range(2)]
    gr = group(topo(*fns), options=KernelOptions(amd_ivrs=ivrs))
    assert same(gr, "00:14.0", "00:14.1") is (not ivrs)


def test_amd_southbridge_quirk_only_on_root_bus() -> None:
    t = topo(
        rp("00:01.0"),
        *(
            fn(f"01:00.{i}", None, "00:01.0", vid=0x1022, did=0x780F, multifunction=True)
            for i in range(2)
        ),
    )
    assert same(group(t), "01:00.0", "01:00.1")


def test_idt_broken_sv_is_not_required() -> None:
    # pci_disable_broken_acs_cap clears SV from acs_capabilities: ctl without SV still passes
    def port(vid: int, did: int) -> PciFunction:
        return rp("00:01.0", Acs(0x1D, int(RR | CR | UF)), vid=vid, did=did)

    assert _port_isolates(port(0x111D, 0x80B5), acs_enable=False)
    assert not _port_isolates(port(0x1234, 0x80B5), acs_enable=False)


def test_quirk_table_first_match_order() -> None:
    # Intel mf_endpoint entries come before the Intel ANY_ID entries; table order is the kernel's
    names = [q.function for q in PCI_DEV_ACS_ENABLED]
    assert names.index("pci_quirk_rciep_acs") < names.index("pci_quirk_intel_pch_acs")
    assert names.index("pci_quirk_intel_pch_acs") < names.index("pci_quirk_intel_spt_pch_acs")
    assert names[-1] == "pci_quirk_wangxun_nic_acs"


# -- command line: pci=disable_acs_redir, pci=config_acs --------------------------------------


def test_disable_acs_redir_starts_from_firmware_value() -> None:
    # __pci_config_acs: ctl = (fw_ctrl & ~mask) | (flags & mask): the enabled SV/UF are lost
    t = topo(rp("00:01.0", Acs(0x5F, int(SV))), ep("01:00.0", "00:01.0"))
    acs = AcsState(t, KernelOptions(disable_acs_redir=("0000:00:01.0",)))
    assert acs.ctrl(B("00:01.0")) == int(SV)
    assert same(
        group(t, options=KernelOptions(disable_acs_redir=("00:01.0",))), "00:01.0", "01:00.0"
    )


def test_disable_acs_redir_by_vendor_device() -> None:
    t = topo(rp("00:01.0", vid=0xAAAA, did=0x1), rp("00:02.0", vid=0xBBBB, did=0x1))
    acs = AcsState(t, KernelOptions(disable_acs_redir=("pci:aaaa:0",)))
    assert acs.ctrl(B("00:01.0")) == 0 and acs.ctrl(B("00:02.0")) == int(REQ)


def test_config_acs_flags_string() -> None:
    # "10x" = bit2 (RR) on, bit1 (TB) off, bit0 (SV) kept from firmware
    t = topo(rp("00:01.0", Acs(0x5F, int(SV | TB))))
    acs = AcsState(t, KernelOptions(config_acs=(("10x", "pci:0:0"),)))
    assert acs.ctrl(B("00:01.0")) == int(SV | RR)


# -- pcie_acs_override ------------------------------------------------------------------------


def test_override_parse() -> None:
    o = AcsOverride.parse("downstream,multifunction,id:8086:1901")
    assert o.downstream and o.multifunction and o.ids == {(0x8086, 0x1901)}
    with pytest.raises(ValueError, match="unknown option"):
        AcsOverride.parse("everything")
    with pytest.raises(ValueError, match="id:vvvv:dddd"):
        AcsOverride.parse("id:zz")


def _switch(dsp_acs: Acs | None) -> Topology:
    return topo(
        rp("00:01.0"),
        usp("01:00.0", "00:01.0"),
        dsp("02:00.0", "01:00.0", dsp_acs),
        ep("03:00.0", "02:00.0"),
    )


def test_override_downstream_splits_ports_without_acs_cap() -> None:
    assert same(group(_switch(None)), "02:00.0", "03:00.0")
    assert not same(group(_switch(None), "downstream"), "02:00.0", "03:00.0")
    assert same(group(_switch(None), "multifunction"), "02:00.0", "03:00.0")


def test_override_ignores_devices_with_acs_cap() -> None:
    t = _switch(Acs(0x5F, 0))
    opts = KernelOptions(acs_enable=False, acs_override=AcsOverride(downstream=True))
    assert same(group(t, options=opts), "02:00.0", "03:00.0")


def test_override_multifunction_and_ids_and_conventional() -> None:
    mf = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", multifunction=True),
        ep("01:00.1", "00:01.0", multifunction=True),
        fn("00:1f.0", None, multifunction=True),
        fn("00:1f.3", None, multifunction=True),
    )
    gr = group(mf, "multifunction")
    assert not same(gr, "01:00.0", "01:00.1")
    assert same(gr, "00:1f.0", "00:1f.3")  # conventional PCI is never overridden
    gid = group(_switch(None), "id:1234:0001")  # the DSP's id
    assert not same(gid, "02:00.0", "03:00.0")


def _random_fabric(draw: st.DrawFn) -> Topology:
    fns: list[PciFunction] = []
    bus = [1]

    def acs() -> Acs | None:
        return draw(st.sampled_from([None, FULL, Acs(0x5F, 0x1D), Acs(0, 0)]))

    def below(parent: str, depth: int) -> None:
        b = bus[0]
        bus[0] += 1
        kind = draw(st.sampled_from(["ep", "mf", "switch", "pcibr"] if depth < 3 else ["ep", "mf"]))
        if kind == "ep":
            fns.append(ep(f"{b:02x}:00.0", parent))
        elif kind == "mf":
            for i in range(draw(st.integers(2, 3))):
                fns.append(
                    ep(
                        f"{b:02x}:00.{i}",
                        parent,
                        multifunction=True,
                        acs=draw(st.sampled_from([None, Acs(0, 0)])),
                    )
                )
        elif kind == "pcibr":
            fns.append(fn(f"{b:02x}:00.0", PcieType.PCI_BRIDGE, parent))
            fns.append(fn(f"{bus[0]:02x}:00.0", None, f"{b:02x}:00.0"))
            bus[0] += 1
        else:
            fns.append(usp(f"{b:02x}:00.0", parent))
            sb = bus[0]
            bus[0] += 1
            for d in range(draw(st.integers(1, 3))):
                p = f"{sb:02x}:{d:02x}.0"
                fns.append(dsp(p, f"{b:02x}:00.0", acs()))
                below(p, depth + 1)

    for i in range(draw(st.integers(1, 3))):
        fns.append(rp(f"00:{i + 1:02x}.0", acs()))
        below(f"00:{i + 1:02x}.0", 0)
    return Topology(fns)


@settings(max_examples=60, deadline=None)
@given(
    st.composite(_random_fabric)(),
    st.sampled_from(["downstream", "multifunction", "downstream,multifunction"]),
)
def test_override_only_ever_splits(t: Topology, ov: str) -> None:
    before, after = group(t), group(t, ov)
    for g in after.partition():
        assert any(g <= h for h in before.partition())


@settings(max_examples=60, deadline=None)
@given(st.composite(_random_fabric)())
def test_groups_partition_all_devices_and_follow_non_acs_bridges(t: Topology) -> None:
    gr = group(t)
    assert sorted(b for g in gr.groups for b in g.devices) == sorted(t.functions)
    for f in t:
        if f.parent is not None and not gr.acs.acs_enabled(f.parent).ok:
            # everything below a non-isolated bridge shares the bridge's group
            assert gr.group_of[f.bdf] == gr.group_of[f.parent]
