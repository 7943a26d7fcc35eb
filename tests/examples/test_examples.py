"""``examples/*.py`` run as a user runs them (``python examples/NAME.py``) and say what they
showed; each verifies its own results and exits 1 on a mismatch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "vmm_guest_ram.py": [
        "slot firmware  GPA [0x7f80000, 0x8000000) ro <- memfd +0x100000",
        "usable IOVA: [0x0, 0xfedfffff], [0xfef00000, 0xffffffffffff]",
        "map at 0xfee00000: EINVAL (reserved)",
        "DMA low RAM -> high RAM: b'written by vCPU 0 at GPA 0x1000'",
        "DMA write to the firmware slot: blocked, firmware still b'BIOS'",
        "CHANGE_PROCESS with an anonymous map: EINVAL",
        "has 3072 kB pinned",
        "took over: VmPin old 0 kB, new 3072 kB",
        "DMA after the live update: ok",
        "rollback: old VMM has 3072 kB pinned again",
    ],
    "edu_driver.py": [
        "config space: 1234:11e8",
        "identification 0x010000ed: edu version 1.0",
        "liveness: wrote 0x12345678, read 0xedcba987",
        "factorial(10) = 3628800",
        "DMA RAM -> device -> RAM: 1024 bytes match",
        "DMA into the read-only mapping: blocked (src unchanged)",
        "after detach: DMA blocked (dst untouched)",
    ],
    "dirty_migration.py": [
        "round 0: copied, device wrote 12 pages, dirty: [3, 7, 8, 9, 64, 65, 66, 67, 128, 200, "
        "201, 255]",
        "round 1: copied, device wrote 5 pages, dirty: [7, 8, 64, 200, 201]",
        "round 2: copied, device wrote 2 pages, dirty: [8, 200]",
        "stop-and-copy: 2 pages; destination matches the source",
    ],
}


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parent,
    )


def test_every_python_example_is_run_here() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_verifies_itself(name: str) -> None:
    r = run_example(name)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    for want in EXPECTED[name]:
        assert any(want in line for line in lines), f"{want!r} not in:\n{r.stdout}"
    assert lines[-1] == "ok"
    assert r.stderr == ""


@pytest.mark.guest
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_on_the_real_kernel(name: str) -> None:
    """The same program and the same lines with ``--backend linux`` (the oracle guest: its
    edu device, and the mock driver of ``CONFIG_IOMMUFD_TEST``)."""
    r = run_example(name, "--backend", "linux")
    assert r.returncode == 0, r.stdout + r.stderr
    for want in EXPECTED[name]:
        assert want in r.stdout, f"{want!r} not in:\n{r.stdout}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_says_what_it_shows(name: str) -> None:
    r = run_example(name, "--help")
    assert r.returncode == 0
    assert "--backend {sim,linux}" in r.stdout
