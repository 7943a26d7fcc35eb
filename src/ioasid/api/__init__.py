"""The public API: ``Iommufd``, ``Ioas``, ``Buffer``, ``IommufdError``."""

from ioasid.api.device import Device, HwInfo, HwPagetable, Region
from ioasid.api.errors import IommufdError
from ioasid.api.iommufd import Ioas, Iommufd, IovaRange, IovaRanges, memfd
from ioasid.api.memory import Buffer

__all__ = [
    "Buffer",
    "Device",
    "HwInfo",
    "HwPagetable",
    "Ioas",
    "Iommufd",
    "IommufdError",
    "IovaRange",
    "IovaRanges",
    "Region",
    "memfd",
]
