"""How the simulated kernel fails: ``OSError(errno)`` plus the rule that failed."""

from __future__ import annotations

import os
from typing import NoReturn


class KernelError(OSError):
    """An ioctl failure: ``errno`` as the kernel returns it, ``rule`` says why."""

    def __init__(self, err: int, rule: str) -> None:
        super().__init__(err, f"{os.strerror(err)}: {rule}")
        self.rule = rule


def fail(err: int, rule: str) -> NoReturn:
    raise KernelError(err, rule)
