"""How the simulated kernel fails: ``OSError(errno)`` plus the rule that failed."""

from __future__ import annotations

import errno
import logging
import os
from typing import NoReturn


class KernelError(OSError):
    """An ioctl failure: ``errno`` as the kernel returns it, ``rule`` says why."""

    def __init__(self, err: int, rule: str) -> None:
        super().__init__(err, f"{os.strerror(err)}: {rule}")
        self.rule = rule


def fail(err: int, rule: str) -> NoReturn:
    raise KernelError(err, rule)


class KernelBug(OSError):
    """An exception other than ``OSError`` escaped the simulated kernel: a bug of the
    simulator, never an answer of the kernel. The raw layer still raises only ``OSError``
    (``ENOTRECOVERABLE``), and the original exception is its ``__cause__``."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(
            errno.ENOTRECOVERABLE,
            f"simulator bug: {type(exc).__name__}: {exc} (please report it)",
        )


def bug(exc: Exception) -> KernelBug:
    """Log ``exc`` with its traceback and wrap it as a :class:`KernelBug`."""
    logging.getLogger("ioasid.kernel").error("simulator bug", exc_info=exc)
    return KernelBug(exc)
