"""Fuzzing the simulated kernel through its raw ioctl layer.

Struct-aware generation over every ioctl the simulator serves — the ``iommufd.h`` table,
every ``IOMMU_TEST_CMD`` op, the VFIO container on ``/dev/iommu`` and ``/dev/vfio/vfio``,
the VFIO device cdev, ``IOASID_SIM_DEVICE_DMA`` — by the differential harness's generator
in fuzz mode (:class:`ioasid.testing.differential.Generator` with ``fuzz=True``): the same
model-steered sequences, mutated field by field at boundary values, plus calls of every
other kind with fields chosen for their names (ids of every kind, fds of every kind,
pointers next to guard pages, sizes 0/short/long/4 GiB). :mod:`.campaign` checks every
call and every teardown. Run long with::

    python -m ioasid.testing.fuzz --n 100000 [--seed S] [--threads T]
"""

from ioasid.testing.fuzz.campaign import (
    MEMORY_BUDGET,
    TIME_BUDGET,
    Finding,
    FuzzResult,
    accounting,
    run_fuzz,
    run_sequence,
)

__all__ = [
    "MEMORY_BUDGET",
    "TIME_BUDGET",
    "Finding",
    "FuzzResult",
    "accounting",
    "run_fuzz",
    "run_sequence",
]
