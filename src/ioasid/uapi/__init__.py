"""The Linux 7.3 IOMMUFD ABI as data: ``iommufd.h``, the parts of ``vfio.h`` iommufd meets,
and the ``IOMMUFD_TEST`` mock driver's ``iommufd_test.h``; ctypes structs named by their C
tags, constants and ioctl numbers by their C names."""

from . import iommufd, iommufd_test, vfio
from ._abi import _IO, _IOR, _IOW, _IOWR, Struct, Union
from .iommufd import *  # noqa: F403
from .iommufd_test import *  # noqa: F403
from .vfio import *  # noqa: F403

__all__ = ["_IO", "_IOR", "_IOW", "_IOWR", "Struct", "Union"]
__all__ += iommufd.__all__
__all__ += iommufd_test.__all__
__all__ += vfio.__all__
