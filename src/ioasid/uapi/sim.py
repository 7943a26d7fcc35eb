"""ioasid's own simulator-only commands: not in any kernel, numbered apart from it.

``IOASID_SIM_DEVICE_DMA`` on a simulated VFIO device cdev makes the device DMA as if its
hardware did: ``length`` bytes between the caller's buffer at ``uptr`` and ``iova``
(optionally PASID-tagged), routed by the PCI fabric and translated by the IOMMU. A fault
fails the call with ``EIO`` after writing ``out_fault`` (a ``IOASID_SIM_FAULT_*``) and
``out_done`` (bytes transferred before it). A real kernel answers ``ENOTTY``.
"""

from __future__ import annotations

from ctypes import c_uint32, c_uint64

from ._abi import _IO, Struct

IOASID_SIM_DMA_WRITE = 1 << 0
IOASID_SIM_DMA_PASID = 1 << 1

IOASID_SIM_FAULT_NONE = 0
IOASID_SIM_FAULT_NOT_PRESENT = 1
IOASID_SIM_FAULT_WRITE_PROTECTED = 2
IOASID_SIM_FAULT_READ_PROTECTED = 3
IOASID_SIM_FAULT_ADDRESS_WIDTH = 4
IOASID_SIM_FAULT_RESERVED = 5
IOASID_SIM_FAULT_BLOCKED = 6
IOASID_SIM_FAULT_PASID_RANGE = 7


class ioasid_sim_dma(Struct):
    _fields_ = [
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("pasid", c_uint32),
        ("out_fault", c_uint32),
        ("iova", c_uint64),
        ("length", c_uint64),
        ("uptr", c_uint64),
        ("out_done", c_uint64),
    ]


IOASID_SIM_DEVICE_DMA = _IO(ord(";"), 0xF0)

__all__ = [
    "IOASID_SIM_DEVICE_DMA",
    "IOASID_SIM_DMA_PASID",
    "IOASID_SIM_DMA_WRITE",
    "IOASID_SIM_FAULT_ADDRESS_WIDTH",
    "IOASID_SIM_FAULT_BLOCKED",
    "IOASID_SIM_FAULT_NONE",
    "IOASID_SIM_FAULT_NOT_PRESENT",
    "IOASID_SIM_FAULT_PASID_RANGE",
    "IOASID_SIM_FAULT_READ_PROTECTED",
    "IOASID_SIM_FAULT_RESERVED",
    "IOASID_SIM_FAULT_WRITE_PROTECTED",
    "ioasid_sim_dma",
]
