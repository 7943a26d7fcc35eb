"""``ioasid demo``: the whole story on the default host, and on any topology file the story
its devices allow, every missing step said to be skipped; bad files are one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HOSTS = Path(__file__).parent / "hosts"
WROTE = "written by the device: b'guest RAM, written by the CPU'"
BLOCKED_AFTER_DETACH = "guest RAM at +1 KiB: 29 zero bytes (unchanged)"
P2P_REACHED = "B's device memory now holds: b\"A's device was here\"  (reached without the IOMMU)"
P2P_BLOCKED = "B's device memory at +64: 19 zero bytes (unchanged)  (blocked, fault recorded)"
ALL_VIABLE = "skipped: every group with a vfio-pci device is viable on this host"
NO_P2P = "skipped: no two devices of different user-space groups reach each other"


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioasid.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "1000", "PATH": ""},  # one line per message: nothing wraps
    )


def story(*args: str) -> str:
    out = demo(*args)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


def test_default_host_tells_the_whole_story() -> None:
    text = story()
    assert "VFIO_DEVICE_BIND_IOMMUFD of the Tesla T4 (/dev/vfio/devices/vfio1)" in text
    assert "EPERM" in text and "0000:01:00.1 is bound to snd_hda_intel" in text
    assert "of the QEMU edu (educational DMA device) (/dev/vfio/devices/vfio0)" in text
    assert WROTE in text and BLOCKED_AFTER_DETACH in text
    assert "NVMe SSD 970 EVO (/dev/vfio/devices/vfio2, group 12) → iommufd A" in text
    assert "I210 Gigabit NIC (/dev/vfio/devices/vfio3, group 13) → iommufd B" in text
    assert P2P_REACHED in text and P2P_BLOCKED in text
    assert "skipped" not in text
    assert "ioasid groups --default-host --explain 0000:01:00.0" in text


def test_a_switch_without_acs_and_no_non_viable_group() -> None:
    text = story("--topology", str(HOSTS / "switch_no_acs.yaml"))
    assert ALL_VIABLE in text and "EPERM (Operation not permitted)" not in text
    assert "of the FPGA accelerator A (/dev/vfio/devices/vfio0)" in text
    assert WROTE in text and BLOCKED_AFTER_DETACH in text
    assert "FPGA accelerator A (/dev/vfio/devices/vfio0, group" in text
    assert "FPGA accelerator B (/dev/vfio/devices/vfio1, group" in text
    assert P2P_REACHED in text
    assert "NIC port 0 (/dev/vfio/devices/vfio2, outside that P2P set)" in text
    assert P2P_BLOCKED in text
    assert text.count("skipped") == 1


def test_one_device_host_skips_refusal_and_p2p() -> None:
    text = story("--topology", str(HOSTS / "one_edu.yaml"))
    assert ALL_VIABLE in text and NO_P2P in text
    assert WROTE in text
    assert "iommufd A" not in text


def test_a_p2p_pair_inside_one_group_is_not_a_two_owner_pair() -> None:
    text = story("--topology", str(HOSTS / "pci_bridge_pair.yaml"))
    assert NO_P2P in text
    assert "(PCI card A and PCI card B do, but they share group 1: one owner" in text
    assert WROTE in text


def test_only_a_non_viable_group_is_refused_and_nothing_else_runs() -> None:
    text = story("--topology", str(HOSTS / "non_viable_only.yaml"))
    assert "EPERM" in text and "0000:01:00.1 is bound to snd_hda_intel" in text
    assert "skipped: no vfio-pci device is in a viable group" in text
    assert WROTE not in text and "An I/O address space" not in text
    assert "--explain 0000:01:00.0" in text


def test_a_host_without_vfio_devices_says_everything_is_skipped() -> None:
    text = story("--topology", str(HOSTS / "kernel_drivers_only.yaml"))
    assert "skipped: no function of this host is bound to vfio-pci" in text
    assert "EPERM (" not in text and WROTE not in text
    assert "group  2: 0000:01:00.0 NVMe SSD [nvme]  held by a kernel driver" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read topology file {path}: No such file or directory"),
        ("devices: [\n", "{path}: not valid YAML"),
        ("devices: [{bdf: nonsense}]\n", "{path}: device #1 (nonsense): missing required key"),
        ("", "{path}"),
    ],
)
def test_a_bad_topology_file_is_one_line_naming_it(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "host.yaml"
    if content is not None:
        path.write_text(content)
    out = demo("--topology", str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("ioasid demo: ")
    assert message.format(path=path) in lines[0]


def test_the_environment_variable_boots_the_host_as_for_every_sim_user() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ioasid.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "1000", "PATH": "", "IOASID_SIM_TOPOLOGY": str(HOSTS / "one_edu.yaml")},
    )
    assert out.returncode == 0, out.stderr
    assert "one_edu.yaml)" in out.stdout and NO_P2P in out.stdout
    assert "--topology " + str(HOSTS / "one_edu.yaml") in out.stdout


def test_a_device_without_a_dma_engine_is_bound_and_its_dma_skipped() -> None:
    text = story("--topology", str(HOSTS / "no_dma_engine.yaml"))
    assert "IOMMU_IOAS_MAP of 2 MiB of 'guest memory'" in text
    assert "skipped: /dev/vfio/devices/vfio0 has no BAR0, so no DMA engine to program" in text
    assert WROTE not in text and NO_P2P in text
