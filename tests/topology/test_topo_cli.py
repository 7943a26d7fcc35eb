"""`ioasid groups` through its argparse entry points (add_parser/run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from ioasid.cli import groups as cli


def _run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ioasid")
    sub = ap.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return cli.run(ap.parse_args(["groups", *argv]))


def test_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--default-host", "--json", "--acs-override", "downstream"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data["ungrouped"], list)
    for g in data["groups"]:
        assert isinstance(g["id"], int) and isinstance(g["viable"], bool)
        assert all(isinstance(d, str) and len(d) == 12 for d in g["devices"])
        assert all(isinstance(r, str) for r in g["reasons"])
    assert data["what_if"]["acs_override"] == "downstream"
    assert data["what_if"]["diff"]["split"]


def test_tree_and_explain(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--default-host", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "Group 0" in out and "not viable" in out
    assert _run(["--default-host", "--explain", "0000:07:01.0"]) == 0
    out = capsys.readouterr().out
    assert "0000:06:00.0" in out and "PCIe-to-PCI" in out


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--topology", "/nonexistent.yaml"], "cannot read"),
        (["--default-host", "--acs-override", "bogus"], "unknown option"),
        (["--default-host", "--explain", "0000:99:00.0"], "not in"),
        (["--default-host", "--explain", "zz"], "not a PCI address"),
    ],
)
def test_bad_input_exits_nonzero_with_message(
    argv: list[str], msg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_bad_topology_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "devices": [
                    {
                        "bdf": "0000:00:01.0",
                        "id": "1:2",
                        "pcie_type": "endpoint",
                        "parent": "root_bus",
                    },
                    {
                        "bdf": "0000:01:00.0",
                        "id": "1:2",
                        "pcie_type": "endpoint",
                        "parent": "0000:00:01.0",
                    },
                ]
            }
        )
    )
    assert _run(["--topology", str(p)]) == 2
    assert "not a bridge" in capsys.readouterr().err
