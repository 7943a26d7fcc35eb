"""Oracle: our grouping of the live /sys/bus/pci/devices must equal the kernel's iommu_group
links exactly (partition and numbers). Runs inside the oracle guest (intel-iommu):

    ORACLE_SCRATCH=/tmp/oracle-topo /work/shared/oracle/run-guest.sh \
        "/work/main/.venv/bin/python -m pytest -q --backend=linux tests/topology"
"""

from __future__ import annotations

import os

import pytest

from ioasid.topology import from_sysfs, group
from ioasid.topology.audit import compare_with_kernel


@pytest.mark.guest
def test_live_sysfs_grouping_matches_kernel() -> None:
    groups_dir = "/sys/kernel/iommu_groups"
    if not os.path.isdir(groups_dir) or not os.listdir(groups_dir):
        pytest.fail(
            "no IOMMU groups on this machine: run this test in the oracle guest "
            "(/work/shared/oracle/run-guest.sh), which has intel-iommu"
        )
    if os.geteuid() != 0:
        pytest.fail("needs root to read full PCI config space (the oracle guest runs as root)")
    topo = from_sysfs("/sys")
    assert not topo.partial, topo.warnings
    gr = group(topo)
    cmp = compare_with_kernel(gr)
    assert cmp["partition_matches"], cmp
    assert cmp["numbers_match"], cmp
    assert all(g.certain for g in gr.groups)
    assert not gr.ungrouped or all(topo.functions[b].kernel_group is None for b in gr.ungrouped)


@pytest.mark.guest
def test_live_sysfs_capture_round_trips(tmp_path: object) -> None:
    """`ioasid groups --save` of the live host (as root) loads back to the kernel's groups and
    boots the simulator to them."""
    from pathlib import Path

    from ioasid.cli.groups import save
    from ioasid.kernel.machine import Kernel
    from ioasid.topology import load

    if os.geteuid() != 0:
        pytest.fail("needs root to read full PCI config space (the oracle guest runs as root)")
    assert isinstance(tmp_path, Path)
    out = tmp_path / "host.yaml"
    save(from_sysfs("/sys"), out)
    saved = load(out)
    assert not saved.partial and saved.acs_ctrl_measured
    cmp = compare_with_kernel(group(saved))
    assert cmp["partition_matches"] and cmp["numbers_match"], cmp
    kern = Kernel(saved)
    assert {frozenset(g.members) for g in kern.groups.values()} == {
        frozenset(map(str, g.devices)) for g in group(from_sysfs("/sys")).groups
    }
