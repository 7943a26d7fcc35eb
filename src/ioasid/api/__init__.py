"""The public API: ``Iommufd``, ``Ioas``, ``Buffer``, ``IommufdError``."""

from ioasid.api.device import Device, HwInfo, HwPagetable, Region
from ioasid.api.errors import IommufdError
from ioasid.api.iommufd import Ioas, Iommufd, IovaRange, IovaRanges, memfd
from ioasid.api.memory import Buffer
from ioasid.api.mock import Access, MockDevice

__all__ = [
    "Access",
    "Buffer",
    "Device",
    "HwInfo",
    "HwPagetable",
    "Ioas",
    "Iommufd",
    "IommufdError",
    "IovaRange",
    "IovaRanges",
    "MockDevice",
    "Region",
    "memfd",
]
