"""pytest plugin: one test body, either backend.

* ``--backend=sim`` (default): every test runs on the embedded kernel, a fresh one per test.
* ``--backend=linux``: only tests marked ``oracle`` or ``guest`` run, on the real
  ``/dev/iommu`` (inside the oracle guest: ``python -m ioasid.testing.oracle``).

Markers: ``oracle`` — the body is kernel behaviour and must pass on both backends;
``guest`` — needs the real kernel (e.g. reads live sysfs), collected only with
``--backend=linux``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from ioasid import backends


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
