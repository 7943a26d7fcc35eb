"""pytest plugin: one test body, either backend.

Installed with ioasid as the ``pytest11`` entry point ``ioasid``, so any project's pytest
loads it (disable with ``-p no:ioasid``).

* ``--backend=sim`` (default): every test runs on the embedded kernel, a fresh one per test.
* ``--backend=linux``: only tests marked ``oracle`` or ``guest`` run, on the real
  ``/dev/iommu`` (inside the oracle guest: ``python -m ioasid.testing.oracle``).

Markers: ``oracle`` — the body is kernel behaviour and must pass on both backends;
``guest`` — needs the real kernel (e.g. reads live sysfs), collected only with
``--backend=linux``.

Fixtures: ``backend_name``, ``backend``, ``iommufd``, ``ioas``, ``edu``, ``sim_host``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from ioasid import backends

if TYPE_CHECKING:
    # the API is imported inside the fixtures: every pytest run of a project that merely
    # installed ioasid loads this module, and should not pay for the kernel model
    from ioasid.api import Device, Ioas, Iommufd
    from ioasid.kernel.machine import Kernel
    from ioasid.topology import Topology


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=backends.NAMES,
        default=backends.DEFAULT,
        help="where ioctls go: the embedded simulator (sim) or the running kernel (linux)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "oracle: kernel behaviour; passes on sim and linux")
    config.addinivalue_line("markers", "guest: needs the real kernel; only with --backend=linux")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    linux = config.getoption("--backend") == "linux"
    keep, drop = [], []
    for item in items:
        marked_oracle = item.get_closest_marker("oracle") is not None
        marked_guest = item.get_closest_marker("guest") is not None
        if (linux and (marked_oracle or marked_guest)) or (not linux and not marked_guest):
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--backend"))


@pytest.fixture
def backend(backend_name: str) -> Iterator[ModuleType]:
    """The backend module (``ioasid.backends.sim`` or ``.linux``).

    The sim boots afresh for every test, its caller holding a full root's capabilities
    (minus any the test drops), as the oracle guest runs tests as root.
    """
    mod = backends.get(backend_name)
    if backend_name == "sim":
        mod.reset().processes.current.as_root = True
    yield mod


@pytest.fixture
def iommufd(backend: ModuleType) -> Iterator[Iommufd]:
    """An open ``/dev/iommu`` on the chosen backend (on ``sim``, of a freshly booted default
    host), closed after the test: closing destroys every object the test made in it."""
    from ioasid.api import Iommufd

    with Iommufd(backend) as fd:
        yield fd


@pytest.fixture
def ioas(iommufd: Iommufd) -> Ioas:
    """``IOMMU_IOAS_ALLOC`` on ``iommufd``: an empty I/O address space."""
    return iommufd.ioas_alloc()


@pytest.fixture
def edu(backend: ModuleType, iommufd: Iommufd, ioas: Ioas) -> Iterator[Device]:
    """The default host's QEMU ``edu`` device, its VFIO cdev bound to ``iommufd`` and
    attached to ``ioas`` (on ``linux`` bound to vfio-pci first, as in the oracle guest)."""
    from ioasid.api import Device
    from ioasid.testing.edu import cdev_path

    with Device(iommufd, cdev_path(backend)) as dev:
        dev.attach(ioas)
        yield dev


@pytest.fixture
def sim_host(
    backend_name: str,
) -> Iterator[Callable[[str | os.PathLike[str] | Topology], Kernel]]:
    """``sim_host(topology)`` boots the simulated host from a topology file or
    :class:`~ioasid.topology.Topology` for this test (``ioasid.backends.sim.reset``) and
    returns its kernel; a fresh default host is booted after the test.

    Handles opened before the call stay on the previous host, so boot first, then open
    (do not combine with ``iommufd``, which opens before the test body runs).
    """
    if backend_name != "sim":
        pytest.skip("sim_host boots the simulator: --backend=sim only")
    from ioasid.backends import sim

    def boot(topology: str | os.PathLike[str] | Topology) -> Kernel:
        k = sim.reset(topology)
        k.processes.current.as_root = True
        return k

    yield boot
    sim.reset()
