"""`ioasid groups` (issue 12 item 2): the text says what the JSON holds, short BDFs, pci.ids
names, --save, bad option values, --explain with --acs-override, compact JSON."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_topo_hostile_files import _documents
from topo_helpers import Sysfs, config, host_tree

from ioasid.cli import groups as cli
from ioasid.kernel.machine import Kernel
from ioasid.topology import from_sysfs, group, load, pciids
from ioasid.topology.audit import compare_with_kernel


def _run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ioasid")
    sub = ap.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return cli.run(ap.parse_args(["groups", *argv]))


def _out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert _run(argv) == 0
    return capsys.readouterr().out


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    return json.loads(_out(capsys, [*argv, "--json"]))


def _flat(text: str) -> str:
    """The tree's text without box drawing and line wraps (rich wraps at 80 columns)."""
    text = re.sub(r"[│├└─]", " ", text)
    return " ".join(text.split())


@pytest.fixture(autouse=True)
def _no_system_pci_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pciids, "PCI_IDS_PATHS", ())


def test_text_shows_every_p2p_reason(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, ["--default-host"])
    text = _flat(_out(capsys, ["--default-host", "--no-color"]))
    reasons = [r for d in data["p2p"] for r in d["reasons"]]
    assert max(len(d["reasons"]) for d in data["p2p"]) > 3  # the case cut to 3 before
    for r in reasons:
        assert " ".join(r.split()) in text


def test_viable_group_with_p2p_path_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, ["--default-host"])
    text = _out(capsys, ["--default-host", "--no-color"])
    crossing = next(d for d in data["p2p"] if d["crosses_groups"])
    viable = [g for g in data["groups"] if g["id"] in crossing["groups"] and g["viable"]]
    assert viable
    blocks = re.split(r"(?m)^[├└]── (?=Group )", text)
    for g in viable:
        block = next(b for b in blocks if b.startswith(f"Group {g['id']} "))
        line = next(x for x in block.splitlines() if "P2P:" in x)
        others = [str(x) for x in crossing["groups"] if x != g["id"]]
        assert "viable, but" in line and all(o in line for o in others)
    # and a group without such a path has no P2P line
    lonely = next(g for g in data["groups"] if g["id"] not in crossing["groups"])
    block = next(b for b in blocks if b.startswith(f"Group {lonely['id']} "))
    assert "P2P:" not in block


def test_why_lines_name_their_devices(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, ["--default-host"])
    text = _flat(_out(capsys, ["--default-host", "--no-color"]))
    whys = re.findall(r"why \(([^)]*)\):", text)
    assert whys and all(re.fullmatch(r"[0-9a-f:., ]+", w) for w in whys)
    for g in data["groups"]:
        for r in g["reason_details"]:
            assert r["device"] in " ".join(whys)
            assert " ".join(r["detail"].split()) in text  # every reason, none dropped


def test_identical_reasons_collapse_onto_one_line_naming_each_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # two endpoints below one bridge without ACS: the same acs_path reason twice
    devs = [
        {"bdf": "00:01.0", "id": "1234:0001", "pcie_type": "root_port", "parent": "root_bus"},
        {"bdf": "01:00.0", "id": "1234:0002", "pcie_type": "upstream_port", "parent": "00:01.0"},
        {"bdf": "02:00.0", "id": "1234:0003", "pcie_type": "downstream_port", "parent": "01:00.0"},
        {"bdf": "03:00.0", "id": "1234:0004", "pcie_type": "endpoint", "parent": "02:00.0"},
        {"bdf": "03:00.1", "id": "1234:0004", "pcie_type": "endpoint", "parent": "02:00.0"},
    ]
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump({"devices": devs}))
    text = _flat(_out(capsys, ["--topology", str(p), "--no-color"]))
    assert "why (0000:03:00.0, 0000:03:00.1): 0000:02:00.0 is not ACS-isolated" in text


def test_short_bdf_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = _out(capsys, ["--default-host", "--explain", "0000:04:00.0"])
    assert _out(capsys, ["--default-host", "--explain", "04:00.0"]) == full
    # the kernel's pci_dev_str_match reads a short address as domain 0
    short = _json(capsys, ["--default-host", "--disable-acs-redir", "00:01.0"])
    long_ = _json(capsys, ["--default-host", "--disable-acs-redir", "0000:00:01.0"])
    assert short["groups"] == long_["groups"]
    p = tmp_path / "t.yaml"
    p.write_text(
        "devices:\n"
        "- {bdf: 00:01.0, id: 1234:0001, pcie_type: root_port, parent: root_bus}\n"
        "- {bdf: 01:00.0, id: 1234:0002, pcie_type: endpoint, parent: 00:01.0}\n"
        "- bdf: 01:00.1\n  id: 1234:0002\n  pcie_type: endpoint\n  parent: 00:01.0\n"
    )
    t = load(p)
    assert [str(b) for b in t.order] == ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"]


_PCI_IDS = """\
# a few lines of pci.ids
1234  Technical Corp.
\t0001  Root Port Mk I
\t\t1234 0001  a subsystem line, not a device
\t0002  Widget
# comment inside the next vendor
8086  Intel Corporation
\t1533  I210 Gigabit Network Connection
C 02  Network controller
\t00  Ethernet controller
"""


def test_pci_ids_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tmp_path / "pci.ids"
    ids.write_text(_PCI_IDS)
    db = pciids.PciIds(ids)
    assert db.name(0x1234, 0x0002) == "Technical Corp. Widget"
    assert db.name(0x1234, 0x0003) == "Technical Corp. Device 0003"
    assert db.name(0x8086, 0x1533) == "Intel Corporation I210 Gigabit Network Connection"
    assert db.name(0xABCD, 1) is None
    assert set(db._vendors) == {0x1234, 0x8086, 0xABCD}  # only what was asked for
    devs = [
        {"bdf": "00:01.0", "id": "1234:0001", "pcie_type": "root_port", "parent": "root_bus"},
        {"bdf": "01:00.0", "id": "1234:0002", "pcie_type": "endpoint", "parent": "00:01.0"},
        {
            "bdf": "01:00.1",
            "id": "abcd:0002",
            "pcie_type": "endpoint",
            "parent": "00:01.0",
            "name": "my own name",
        },
    ]
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump({"devices": devs}))
    plain = _flat(_out(capsys, ["--topology", str(p), "--no-color"]))
    assert "Widget" not in plain and "1234:0002" in plain  # no pci.ids: ids only
    monkeypatch.setattr(pciids, "PCI_IDS_PATHS", ("/nonexistent/pci.ids", str(ids)))
    named = _flat(_out(capsys, ["--topology", str(p), "--no-color"]))
    assert "Technical Corp. Root Port Mk I" in named and "Technical Corp. Widget" in named
    assert "my own name" in named  # the file's name wins
    data = _json(capsys, ["--topology", str(p)])
    by = {d["bdf"]: d for d in data["devices"]}
    assert by["0000:01:00.0"]["pci_ids_name"] == "Technical Corp. Widget"
    assert by["0000:01:00.1"]["pci_ids_name"] is None


# -- --save --------------------------------------------------------------------------------


def _partition(gr: Any) -> set[frozenset[str]]:
    return {frozenset(map(str, g.devices)) for g in gr.groups}


@pytest.mark.parametrize("root", [True, False], ids=["root", "unprivileged"])
def test_save_captures_sysfs_and_boots_the_same_groups(
    tmp_path: Path, root: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    s = host_tree(tmp_path / "sys")
    if not root:  # what an unprivileged reader gets: the first 64 bytes of config space
        for p in (s.root / "bus/pci/devices").iterdir():
            (p / "config").write_bytes((p / "config").read_bytes()[:64])
    out = tmp_path / "host.yaml"
    assert _run(["--sysfs", str(s.root), "--save", str(out)]) == 0
    msg = capsys.readouterr().err
    assert str(out) in msg and msg.count("\n") == 1
    assert ("partly read" in msg) != root
    text = out.read_text()
    assert "acs_ctl: measured" in text
    assert ("capture as root" in text) != root
    live = group(from_sysfs(s.root))
    saved = load(out)
    again = group(saved)
    assert _partition(again) == _partition(live)
    assert [g.certain for g in again.groups] == [g.certain for g in live.groups]
    assert saved.partial == (not root)
    if root:
        assert compare_with_kernel(again)["partition_matches"]
    # the simulator boots from the file to the same groups
    k = Kernel(saved)
    assert {frozenset(gs.members) for gs in k.groups.values()} == _partition(live)
    # and the saved file reads through the fast path (what --save writes is plain block YAML)
    from ioasid.topology import files

    assert files._fast_block_yaml(text) is not None


def test_save_keeps_measured_acs_control(tmp_path: Path) -> None:
    # a port the kernel left at ctl 0 (pci=disable_acs_redir...): loading the capture back
    # must not re-run pci_enable_acs on it
    s = Sysfs(tmp_path / "sys")
    s.add(["0000:00:01.0"], config(0x1234, 1, 0x060400, ptype="rp", acs=(0x5F, 0), sec=1), group=0)
    s.add(["0000:00:01.0", "0000:01:00.0"], config(0x1234, 2, 0x020000, ptype="ep"), group=0)
    out = tmp_path / "h.yaml"
    assert _run(["--sysfs", str(s.root), "--save", str(out)]) == 0
    gr = group(load(out))
    assert len(gr.groups) == 1 and compare_with_kernel(gr)["partition_matches"]


def test_save_json_and_unwritable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "h.json"
    assert _run(["--default-host", "--save", str(out)]) == 0
    assert _partition(group(load(out))) == _partition(
        group(load(Path(__file__).parents[2] / "src/ioasid/topology/default_host.yaml"))
    )
    capsys.readouterr()
    assert _run(["--default-host", "--save", str(tmp_path / "no/such/dir/h.yaml")]) == 2
    err = capsys.readouterr().err
    assert "--save" in err and "Traceback" not in err and err.count("\n") == 1


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--disable-acs-redir", "garbage"], "--disable-acs-redir"),
        (["--disable-acs-redir", "pci:zz"], "--disable-acs-redir"),
        (["--disable-acs-redir", "pci:zz:0001"], "--disable-acs-redir"),
        (["--disable-acs-redir", "01:00.0;pci:8086"], "--disable-acs-redir"),
        (["--disable-acs-redir", ""], "--disable-acs-redir"),
        (["--acs-override", ""], "--acs-override"),
        (["--acs-override", ","], "--acs-override"),
        (["--acs-override", "id:zz"], "--acs-override"),
        (["--explain", "01:00"], "--explain"),
    ],
)
def test_bad_option_values(argv: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--default-host", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ioasid groups: ") and names in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "content", [b"", b"\n\n", b"{{{{", b"just words", b"\x00\xff binary", b"devices: 3"]
)
def test_empty_or_non_yaml_files(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "t.yaml"
    p.write_bytes(content)
    assert _run(["--topology", str(p)]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and err.count("\n") == 1 and "Traceback" not in err


def test_explain_honours_acs_override(capsys: pytest.CaptureFixture[str]) -> None:
    plain = _out(capsys, ["--default-host", "--explain", "04:00.0"])
    assert "with 0000:03:01.0" in plain
    what_if = _out(
        capsys, ["--default-host", "--explain", "04:00.0", "--acs-override", "downstream"]
    )
    assert "(alone)" in what_if and "pcie_acs_override=downstream" in what_if


def test_json_compact_unless_indent(capsys: pytest.CaptureFixture[str]) -> None:
    compact = _out(capsys, ["--default-host", "--json"])
    assert compact.count("\n") == 1 and ", " not in compact[:200]
    indented = _out(capsys, ["--default-host", "--json", "--indent", "2"])
    assert indented.count("\n") > 100
    assert json.loads(compact) == json.loads(indented)


def test_text_shows_warnings_and_kernel_differences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = host_tree(tmp_path)
    # the kernel put 0000:20:00.0 with the root port: our partition differs, and says where
    os.unlink(s.root / "devices/pci0000:00/0000:00:02.0/0000:20:00.0/iommu_group")
    os.symlink(
        "../../../../kernel/iommu_groups/2",
        s.root / "devices/pci0000:00/0000:00:02.0/0000:20:00.0/iommu_group",
    )
    data = _json(capsys, ["--sysfs", str(s.root)])
    text = _flat(_out(capsys, ["--sysfs", str(s.root), "--no-color"]))
    kc = data["kernel_comparison"]
    assert not kc["partition_matches"]
    for part in kc["only_kernel"] + kc["only_computed"]:
        assert ", ".join(part) in text
    for w in data["warnings"]:
        assert " ".join(w.split()) in text


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=_documents, as_json=st.booleans(), extra=st.sampled_from([[], ["--json"]]))
def test_fuzz_cli_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: Any, as_json: bool, extra: list[str]
) -> None:
    p = tmp_path / ("f.json" if as_json else "f.yaml")
    p.write_text(json.dumps(doc) if as_json else yaml.safe_dump(doc))
    rc = _run(["--topology", str(p), "--no-color", "--acs-override", "downstream", *extra])
    err = capsys.readouterr().err
    assert rc in (0, 2)
    if rc == 2:
        assert err.startswith("ioasid groups: ") and err.count("\n") == 1
