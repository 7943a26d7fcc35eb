"""The ``ioasid`` command as a shell runs it: ``python -m ioasid``, no command, a reader
that stops early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ioasid.topology import dump
from ioasid.topology.synthetic import synthetic_fabric


def _ioasid(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioasid", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_m_ioasid_is_the_ioasid_command() -> None:
    from ioasid import __version__

    got = _ioasid("--version")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == f"ioasid {__version__}"


def test_no_command_prints_help_and_exits_2() -> None:
    got = _ioasid()
    assert got.returncode == 2
    assert got.stderr.startswith("usage: ioasid")
    assert "groups" in got.stderr and "demo" in got.stderr
    assert "Traceback" not in got.stderr


def test_a_reader_that_stops_early_ends_it_quietly(tmp_path: Path) -> None:
    # far more JSON than a pipe buffers, so writes fail while the command is still running
    topo = tmp_path / "big.json"
    topo.write_text(json.dumps(dump(synthetic_fabric(2000))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ioasid", "groups", "--topology", str(topo), "--json", "--no-p2p"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip() == b"{"
    proc.stdout.close()  # as `head -1` exits
    err = proc.stderr.read().decode()
    status = proc.wait(timeout=120)
    assert err == ""
    assert status == 141
