"""ioasid's pytest plugin, as a project that merely installed ioasid gets it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ioasid import Buffer, Device, Ioas, Iommufd, IommufdError
from ioasid.backends import sim
from ioasid.kernel.machine import Kernel
from ioasid.topology import Topology, default_host

USER_TEST = '''
from ioasid import Iommufd


def test_user(iommufd: Iommufd) -> None:
    ioas = iommufd.ioas_alloc()
    assert ioas.id > 0
'''


def _pytest_in(
    tmp_path: Path, *args: str, test: str = USER_TEST
) -> subprocess.CompletedProcess[str]:
    """pytest with this venv's python in an empty directory: no conftest, no config, only
    what installing ioasid registered."""
    (tmp_path / "test_user.py").write_text(test)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_PLUGINS", "PYTEST_ADDOPTS")
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args, "test_user.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_fresh_project_gets_the_iommufd_fixture_without_p(tmp_path: Path) -> None:
    got = _pytest_in(tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "1 passed" in got.stdout


def test_the_entry_point_is_named_ioasid(tmp_path: Path) -> None:
    # the control: without the entry point's plugin the same file cannot find its fixture
    got = _pytest_in(tmp_path, "-p", "no:ioasid")
    assert got.returncode != 0
    assert "fixture 'iommufd' not found" in got.stdout


def test_iommufd_is_open_on_the_chosen_backend(iommufd: Iommufd, backend_name: str) -> None:
    assert backend_name == iommufd.backend.NAME
    assert iommufd.fileno() >= 0


def test_ioas_belongs_to_iommufd(iommufd: Iommufd, ioas: Ioas) -> None:
    assert ioas.fd is iommufd
    iommufd.destroy(ioas.id)
    with pytest.raises(IommufdError):
        iommufd.destroy(ioas.id)


def test_edu_is_bound_and_attached_to_ioas(ioas: Ioas, edu: Device) -> None:
    assert edu.id > 0
    with Buffer(4096) as ram:
        iova = ioas.map(ram)
        edu.dma_write(iova + 8, b"edu")
        assert ram[8:11] == b"edu"


_booted: list[Kernel] = []


def test_sim_host_boots_a_host_for_one_test(
    sim_host: Callable[[str | os.PathLike[str] | Topology], Kernel],
) -> None:
    before = sim.kernel()
    k = sim_host(default_host())
    assert k is not before
    assert sim.kernel() is k
    _booted.append(k)
    with Iommufd(sim) as fd:
        assert fd.ioas_alloc().id > 0


def test_sim_host_restores_a_fresh_default_host_after() -> None:
    # runs after the test above (file order): its host is gone
    assert _booted, "test_sim_host_boots_a_host_for_one_test did not run first"
    assert sim.kernel() is not _booted[-1]
