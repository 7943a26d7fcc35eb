"""The README's first command: ``ioasid demo`` tells the whole story and exits 0."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ioasid.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "EPERM" in text and "snd_hda_intel" in text  # the T4's group is refused
    assert "written by the device: b'guest RAM, written by the CPU'" in text
    assert "NIC's memory now holds: b'NVMe was here'" in text  # peer-to-peer went through
    assert "zero bytes (unchanged)" in text  # detached DMA and ACS-redirected DMA blocked
    assert "Traceback" not in out.stderr


def test_demo_rejects_a_bad_topology_file(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.yaml"
    bad.write_text("devices: [{bdf: nonsense}]\n")
    out = subprocess.run(
        [sys.executable, "-m", "ioasid.cli", "demo", "--topology", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "cannot boot the simulated host" in out.stdout
    assert "Traceback" not in out.stderr
