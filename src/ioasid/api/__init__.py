"""The public API: ``Iommufd``, ``Ioas``, ``Buffer``, ``IommufdError``."""

from ioasid.api.device import Device, HwInfo, Region
from ioasid.api.errors import IommufdError
from ioasid.api.eventq import FaultQueue, PageFault, Vevent, Veventq
from ioasid.api.hwpt import HwPagetable, InvalidateError
from ioasid.api.iommufd import Ioas, Iommufd, IovaRange, IovaRanges, memfd
from ioasid.api.memory import Buffer
from ioasid.api.mock import Access, MockDevice
from ioasid.api.viommu import HwQueue, Vdevice, Viommu

__all__ = [
    "Access",
    "Buffer",
    "Device",
    "FaultQueue",
    "HwInfo",
    "HwPagetable",
    "HwQueue",
    "InvalidateError",
    "Ioas",
    "Iommufd",
    "IommufdError",
    "IovaRange",
    "IovaRanges",
    "MockDevice",
    "PageFault",
    "Region",
    "Vdevice",
    "Vevent",
    "Veventq",
    "Viommu",
    "memfd",
]
