"""Differential testing: one random ioctl sequence, two backends, the first divergence.

A seed drives a :class:`Generator` that emits IOAS ioctls — valid and invalid mixed
(``IOMMU_IOAS_ALLOC``, ``IOMMU_DESTROY``, ``MAP``/``MAP_FILE``/``COPY``/``UNMAP`` with fixed
and kernel-chosen IOVAs, ``ALLOW_IOVAS``, ``IOVA_RANGES``, ``IOMMU_OPTION``, wrong struct
sizes, unknown ioctl numbers). Each call goes to both backends, each through its own fresh
``/dev/iommu`` handle and the same user memory (one 2 MiB-aligned anonymous region and one
memfd, so kernel-chosen IOVAs are identical). For every call the harness records the return
value or errno, every byte the kernel wrote back into the struct (decoded field by field),
and the user array for ``IOVA_RANGES``; after every call it probes each IOAS with ioctls only
(``IOVA_RANGES`` and ``IOMMU_OPTION_HUGE_PAGES`` get). At the end it checks every area the
generator believes mapped with a side-effect-free ``IOMMU_IOAS_COPY`` onto itself (``EEXIST``
when the source range is covered, ``ENOENT`` when not) and unmaps everything, comparing the
byte counts.

The generator adapts to what the first backend answered (the IOAS ids it handed out, the
IOVAs it chose), so the sequence is a function of the seed and of backend A's behaviour; the
recorded JSON holds the sequence itself, so :func:`replay` re-runs it anywhere. Pointers and
fds are symbolic in the record (``buf+0x2000``, ``memfd``, ``array``), so a run in the oracle
guest compares with a run of the simulator in another process.

The harness only opens handles and calls ``ioctl``: it works with any backend, and with a
wrapper around one (see ``tests/testing/test_differential.py``).
"""

from ioasid.testing.differential.calls import Call
from ioasid.testing.differential.execution import UserMemory, execute
from ioasid.testing.differential.generation import Generator
from ioasid.testing.differential.model import Model
from ioasid.testing.differential.report import DiffResult, Divergence, Step
from ioasid.testing.differential.run import backend_opener, replay, run_differential

__all__ = [
    "Call",
    "DiffResult",
    "Divergence",
    "Generator",
    "Model",
    "Step",
    "UserMemory",
    "backend_opener",
    "execute",
    "replay",
    "run_differential",
]
