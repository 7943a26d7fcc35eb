"""ioasid: the Linux IOMMUFD uAPI (``/dev/iommu``, born as the ``/dev/ioasid`` proposal) in Python.

* ``ioasid.uapi`` — the kernel ABI as data (structs, ioctl numbers, flags).
* ``ioasid.backends`` — ``sim`` (an embedded, faithful model of Linux 7.3 iommufd, the
  default) and ``linux`` (the real ``/dev/iommu``), both behind one raw ``ioctl`` contract.
* ``ioasid.api`` — the Pythonic layer (``Iommufd``, ``Ioas``, ...).
* ``ioasid.topology`` — PCI topology → IOMMU groups, as Linux forms them.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ioasid.api import (
        Buffer,
        Device,
        FaultQueue,
        HwPagetable,
        HwQueue,
        Ioas,
        Iommufd,
        IommufdError,
        IovaRange,
        IovaRanges,
        Vdevice,
        Veventq,
        Viommu,
        memfd,
    )


def __getattr__(name: str) -> Any:
    # The API pulls in numpy and every object module (~0.3 s); ``ioasid groups`` and the
    # topology users need none of it, so it is imported on first use (PEP 562).
    if name in __all__:
        from ioasid import api

        return getattr(api, name)
    raise AttributeError(f"module 'ioasid' has no attribute {name!r}")


__all__ = [
    "Buffer",
    "Device",
    "FaultQueue",
    "HwPagetable",
    "HwQueue",
    "Ioas",
    "Iommufd",
    "IommufdError",
    "IovaRange",
    "IovaRanges",
    "Vdevice",
    "Veventq",
    "Viommu",
    "memfd",
]
