"""Viability (7.3 DMA ownership), PASID eligibility (pci_enable_pasid), P2P audit, diffs."""

from __future__ import annotations

import pytest
from topo_helpers import FULL, B, dsp, ep, fn, part, rp, topo, usp

from ioasid.topology import Acs, AcsState, PcieType, default_host, group
from ioasid.topology.audit import diff, explain, p2p_domains, pasid_eligibility, report, viability


def _one_group(*drivers: str | None) -> bool:
    t = topo(
        rp("00:01.0", None, driver="pcieport"),
        *(
            ep(f"01:00.{i}", "00:01.0", multifunction=len(drivers) > 1, driver=d)
            for i, d in enumerate(drivers)
        ),
    )
    gr = group(t)
    assert len(gr.groups) == 1
    return viability(t, gr.groups[0]).viable


@pytest.mark.parametrize(
    ("drivers", "viable"),
    [
        ((None,), True),
        (("vfio-pci",), True),
        (("pci-stub",), True),
        (("mlx5_vfio_pci",), True),
        (("vfio-pci", None), True),
        (("vfio-pci", "snd_hda_intel"), False),
        (("nvme",), False),
    ],
)
def test_viability(drivers: tuple[str | None, ...], viable: bool) -> None:
    assert _one_group(*drivers) is viable


def test_bridge_with_kernel_dma_driver_blocks() -> None:
    # 7.3 has no bridge exemption: only driver_managed_dma drivers (pcieport) are harmless
    t = topo(rp("00:01.0", None, driver="shpchp"), ep("01:00.0", "00:01.0", driver="vfio-pci"))
    gr = group(t)
    v = viability(t, gr.groups[0])
    assert not v.viable and v.blockers == ((B("00:01.0"), "shpchp"),)


def _pasid_fabric(dsp_acs: Acs | None, rp_eetlp: bool = True) -> AcsState:
    t = topo(
        rp("00:01.0", eetlp_prefix=rp_eetlp),
        usp("01:00.0", "00:01.0", eetlp_prefix=True),
        dsp("02:00.0", "01:00.0", dsp_acs, eetlp_prefix=True),
        ep("03:00.0", "02:00.0", pasid=True, eetlp_prefix=True),
        ep("03:00.1", "02:00.0", is_virtfn=True, physfn=B("03:00.0")),
        ep("04:00.0", "00:01.0", is_virtfn=True, physfn=B("01:00.0")),
    )
    return group(t).acs


def test_pasid_needs_rr_uf_path() -> None:
    assert pasid_eligibility(_pasid_fabric(FULL), B("03:00.0")).eligible
    v = pasid_eligibility(_pasid_fabric(None), B("03:00.0"))
    assert not v.eligible and "02:00.0" in v.reason
    # RR|UF only: a DSP with RR and UF but no SV/CR still passes the PASID check
    rr_uf = Acs(0x14, 0x14)
    assert pasid_eligibility(_pasid_fabric(rr_uf), B("03:00.0")).eligible


def test_pasid_needs_tlp_prefix_from_root_port() -> None:
    v = pasid_eligibility(_pasid_fabric(FULL, rp_eetlp=False), B("03:00.0"))
    assert not v.eligible and "TLP prefix" in v.reason


def test_pasid_vf_follows_pf_and_no_cap_refused() -> None:
    acs = _pasid_fabric(FULL)
    assert pasid_eligibility(acs, B("03:00.1")).eligible
    assert not pasid_eligibility(_pasid_fabric(None), B("03:00.1")).eligible
    assert not pasid_eligibility(acs, B("04:00.0")).eligible  # PF 01:00.0 has no PASID


def test_pasid_fooled_by_override() -> None:
    t = topo(
        rp("00:01.0", eetlp_prefix=True),
        usp("01:00.0", "00:01.0", eetlp_prefix=True),
        dsp("02:00.0", "01:00.0", None, eetlp_prefix=True),
        ep("03:00.0", "02:00.0", pasid=True, eetlp_prefix=True),
    )
    assert not pasid_eligibility(group(t).acs, B("03:00.0")).eligible
    assert pasid_eligibility(group(t, "downstream").acs, B("03:00.0")).eligible


def test_p2p_switch_without_acs_crosses_groups() -> None:
    t = topo(
        rp("00:01.0"),
        usp("01:00.0", "00:01.0"),
        dsp("02:00.0", "01:00.0", None),
        dsp("02:01.0", "01:00.0", None),
        dsp("02:02.0", "01:00.0", FULL),
        ep("03:00.0", "02:00.0"),
        ep("04:00.0", "02:01.0"),
        ep("05:00.0", "02:02.0"),
        rp("00:02.0"),
        ep("06:00.0", "00:02.0"),
    )
    doms = [set(d.devices) for d in p2p_domains(t)]
    # 03 and 04 sit below ports without RR; 05 is reachable from them (its port does not
    # stop requests going down to it): one component. 06 behind another isolated root port.
    assert {B("03:00.0"), B("04:00.0"), B("05:00.0")} in doms
    assert all(B("06:00.0") not in d for d in doms)
    gr = group(t)
    assert len({gr.group_of[B("03:00.0")], gr.group_of[B("04:00.0")]}) == 2


def test_p2p_isolated_fabric_has_no_domains() -> None:
    t = topo(
        rp("00:01.0"),
        usp("01:00.0", "00:01.0"),
        dsp("02:00.0", "01:00.0"),
        dsp("02:01.0", "01:00.0"),
        ep("03:00.0", "02:00.0"),
        ep("04:00.0", "02:01.0"),
    )
    assert p2p_domains(t) == []


def test_p2p_multifunction_and_conventional_bus() -> None:
    t = topo(
        rp("00:01.0"),
        ep("01:00.0", "00:01.0", multifunction=True),
        ep("01:00.1", "00:01.0", multifunction=True),
        ep("01:00.2", "00:01.0", multifunction=True, acs=Acs(0, 0)),
        rp("00:02.0"),
        fn("02:00.0", PcieType.PCI_BRIDGE, "00:02.0"),
        fn("03:00.0", None, "02:00.0"),
        fn("03:01.0", None, "02:00.0"),
    )
    doms = {frozenset(d.devices) for d in p2p_domains(t)}
    assert doms == part(["01:00.0", "01:00.1"], ["02:00.0", "03:00.0", "03:01.0"])


def test_p2p_ignores_override() -> None:
    t = topo(
        rp("00:01.0"),
        usp("01:00.0", "00:01.0"),
        dsp("02:00.0", "01:00.0", None),
        dsp("02:01.0", "01:00.0", None),
        ep("03:00.0", "02:00.0"),
        ep("04:00.0", "02:01.0"),
    )
    assert p2p_domains(t, group(t, "downstream").acs) == p2p_domains(t)


def test_diff_reports_splits() -> None:
    t = topo(rp("00:01.0", None), ep("01:00.0", "00:01.0"))
    d = diff(group(t), group(t, "downstream"))
    assert [(sorted(a), sorted(map(sorted, b))) for a, b in d.split] == [
        ([B("00:01.0"), B("01:00.0")], [[B("00:01.0")], [B("01:00.0")]])
    ]
    assert not d.merged
    assert not diff(group(t), group(t))


def test_report_schema_and_explain_on_default_host() -> None:
    h = default_host()
    gr = group(h)
    r = report(gr, acs_override="downstream,multifunction")
    assert {"groups", "ungrouped", "devices", "p2p", "what_if"} <= r.keys()
    for g in r["groups"]:
        assert {"id", "devices", "viable", "reasons"} <= g.keys()
        assert isinstance(g["id"], int) and isinstance(g["viable"], bool)
    gpu = next(g for g in r["groups"] if "0000:01:00.0" in g["devices"])
    assert gpu["devices"] == ["0000:01:00.0", "0000:01:00.1"] and not gpu["viable"]
    lines = "\n".join(explain(gr, "0000:04:00.0"))
    assert "0000:03:01.0" in lines and "PCI_ACS_RR" in lines
    acc = next(d for d in r["devices"] if d["bdf"] == "0000:08:00.0")
    assert acc["pasid"]["eligible"]


def test_default_host_contains_what_it_promises() -> None:
    h = default_host()
    gr = group(h)
    types = {f.pcie_type for f in h}
    assert {
        PcieType.ROOT_PORT,
        PcieType.UPSTREAM,
        PcieType.DOWNSTREAM,
        PcieType.PCI_BRIDGE,
        None,
    } <= types
    assert any(f.pasid for f in h)
    assert any(v.quirk for v in (gr.acs.acs_enabled(f.bdf) for f in h))
    assert any(len(d.devices) > 1 for d in p2p_domains(h))
