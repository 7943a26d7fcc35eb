"""Backends: where an ioctl goes.

Each backend module offers ``open(path, flags=os.O_RDWR) -> Handle``. A :class:`Handle` has
``ioctl(request, arg)`` with the contract of ``fcntl.ioctl(fd, request, arg, True)``: ``arg`` is
a mutable buffer holding the kernel struct (updated in place with the kernel's outputs) or an
``int`` used as a raw user pointer (``0`` is ``NULL``); failures raise ``OSError`` with the
kernel's errno.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ioasid.backends.base import Backend, Handle

NAMES = ("sim", "linux")
DEFAULT = "sim"


def get(name: str = DEFAULT) -> ModuleType:
    """The backend module called ``name`` (``"sim"`` or ``"linux"``)."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(NAMES)}")
    return importlib.import_module(f"ioasid.backends.{name}")


__all__ = ["DEFAULT", "NAMES", "Backend", "Handle", "get"]
