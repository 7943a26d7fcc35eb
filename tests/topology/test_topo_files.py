"""Topology file format: parsing, defaults, and every error a user can make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from topo_helpers import B

from ioasid.topology import PcieType, TopologyError, default_host, dump, group, load
from ioasid.topology.files import parse


def _dev(bdf: str, t: str, parent: str = "root_bus", **kw: Any) -> dict[str, Any]:
    return {"bdf": bdf, "id": "1234:5678", "pcie_type": t, "parent": parent, **kw}


GOOD = [
    _dev("0000:00:01.0", "root_port", acs={"cap": "0x5f", "ctl": 0}, driver="pcieport"),
    _dev("0000:01:00.0", "endpoint", "0000:00:01.0", **{"class": "0300", "x-unknown": 1}),
    _dev("0000:01:00.1", "endpoint", "0000:00:01.0", **{"class": "040300"}),
]


def test_parse_good_file_and_defaults(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump({"devices": GOOD}))
    t = load(p)
    rp = t["0000:00:01.0"]
    assert rp.acs is not None and rp.acs.cap == 0x5F and rp.driver == "pcieport"
    gpu = t["0000:01:00.0"]
    assert gpu.class_code == 0x0300 and gpu.pcie_type is PcieType.ENDPOINT
    assert t["0000:01:00.1"].class_code == 0x0403  # 6-digit class: base+sub
    # two functions in one slot: multifunction defaults to true
    assert gpu.multifunction and t["0000:01:00.1"].multifunction
    assert group(t).partition() == {
        frozenset({B("00:01.0")}),
        frozenset({B("01:00.0"), B("01:00.1")}),
    }


def test_json_and_bare_list(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    p.write_text(json.dumps(GOOD))
    assert len(load(p)) == 3


def test_dump_round_trips_default_host() -> None:
    h = default_host()
    again = parse(yaml.safe_load(yaml.safe_dump(dump(h))))
    assert group(again).partition() == group(h).partition()
    assert [f for f in again] == [f for f in h]


@pytest.mark.parametrize(
    ("devices", "match"),
    [
        ([{"id": "1234:5678", "pcie_type": "endpoint", "parent": "root_bus"}], "missing required"),
        ([_dev("0000:00:01", "endpoint")], "bad bdf"),
        ([_dev("0000:00:20.0", "endpoint")], "above 0x1f"),
        (
            [_dev("0000:00:01.0", "endpoint"), _dev("0000:01:00.0", "endpoint", "0000:00:01.0")],
            r"0000:01:00\.0.*not a bridge",
        ),
        (
            [
                _dev("0000:01:00.0", "downstream_port", "0000:02:00.0"),
                _dev("0000:02:00.0", "downstream_port", "0000:01:00.0"),
            ],
            "cycle",
        ),
        ([_dev("0000:00:01.0", "root_port"), _dev("0000:00:01.0", "root_port")], "duplicate"),
        ([_dev("0000:00:01.0", "switch")], "pcie_type 'switch' is not one of"),
        ([_dev("0000:00:01.0", "root_port", acs="yes")], "acs must be null"),
        ([_dev("0000:00:01.0", "root_port", acs={"cap": "zz"})], "acs.cap"),
        ([{**_dev("0000:00:01.0", "endpoint"), "id": "8086"}], "vvvv:dddd"),
        ([_dev("0000:00:01.0", "endpoint", dma_alias=["1f.9"])], "dma_alias"),
        ([_dev("0000:00:01.0", "endpoint", multifunction="yes")], "true or false"),
        ([_dev("0000:01:00.0", "endpoint", "0000:00:09.0")], "not in the topology"),
        ({"hosts": []}, "no 'devices'"),
    ],
)
def test_errors_name_device_and_rule(devices: Any, match: str) -> None:
    with pytest.raises(TopologyError, match=match):
        parse(devices)


def test_topology_error_is_value_error() -> None:
    assert issubclass(TopologyError, ValueError)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [ {bdf: ")
    with pytest.raises(TopologyError, match="not valid YAML"):
        load(bad)
    binf = tmp_path / "bin.yaml"
    binf.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TopologyError):
        load(binf)


def test_from_fields_equals_the_constructor() -> None:
    """The loader builds functions with ``PciFunction.from_fields``: it must make exactly what
    the dataclass constructor makes, field for field."""
    from ioasid.topology.model import FUNCTION_FIELDS, PciFunction

    for f in default_host():
        again = PciFunction.from_fields(tuple(getattr(f, n) for n in FUNCTION_FIELDS))
        assert again == f and hash(again) == hash(f)
    with pytest.raises(ValueError):
        PciFunction.from_fields((1, 2))


def test_every_field_lands_in_its_place() -> None:
    from ioasid.topology import Acs, Bdf, PciFunction

    raw = [
        _dev("0000:00:01.0", "root_port", secondary_bus=2),
        _dev("0000:02:00.0", "endpoint", "0000:00:01.0", **{"class": "0300"}),
        {
            **_dev("0000:02:00.1", "endpoint", "0000:00:01.0"),
            "id": "10de:1eb8",
            "class": "030200",
            "acs": {"cap": 0x1F, "ctl": 0x3},
            "multifunction": True,
            "driver": "vfio-pci",
            "dma_alias": ["00.3", 5],
            "pasid": {"exec": True, "priv": False, "max_width": 16},
            "ats": True,
            "eetlp_prefix": None,
            "virtfn": True,
            "physfn": "0000:02:00.0",
            "subsystem": "9005:02bb",
            "revision": "0x21",
            "iommu": False,
            "untrusted": True,
            "pch_acs_workaround": False,
            "kernel_group": 7,
            "name": "GPU",
            "header_type": 0,
            "acs_known": False,
            "pcie_known": False,
        },
    ]
    got = parse(raw)["0000:02:00.1"]
    want = PciFunction(
        bdf=Bdf(0, 2, 0, 1),
        vendor=0x10DE,
        device=0x1EB8,
        class_code=0x0302,
        parent=Bdf(0, 0, 1, 0),
        acs=Acs(0x1F, 0x3),
        multifunction=True,
        header_type=0,
        driver="vfio-pci",
        dma_alias_devfns=frozenset({3, 5}),
        subsystem_vendor=0x9005,
        subsystem_device=0x02BB,
        revision=0x21,
        pasid=True,
        pasid_exec=True,
        pasid_max_width=16,
        ats=True,
        eetlp_prefix=None,
        is_virtfn=True,
        physfn=Bdf(0, 2, 0, 0),
        untrusted=True,
        iommu=False,
        pch_acs_workaround=False,
        acs_known=False,
        pcie_known=False,
        kernel_group=7,
        name="GPU",
    )
    assert got == want
    assert parse(raw)["0000:00:01.0"].secondary_bus == 2
