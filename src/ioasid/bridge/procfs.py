"""The files of ``/proc`` and debugfs that say what the simulated kernel did.

* ``/proc/<pid>/status``: the real file with ``VmPin``/``VmLck`` from the simulated mm's
  counters (``mm->pinned_vm``, ``mm->locked_vm``); the host kernel's are not ours to move.
* ``/proc/<pid>/task/<tid>/fail-nth``: :class:`FailNthFile`, the thread's fault-injection
  counter (``fs/proc/base.c``; see :mod:`ioasid.kernel.fail_nth`).
* ``/sys/kernel/debug``: :class:`FakeDebugfs`, a directory of this supervisor holding the
  fault-injection knobs ``iommufd_fail_nth`` writes (``failslab/ignore-gfp-wait``, each
  ``fail*/verbose``, ...). The program opens, lists and writes them natively; the host's
  debugfs is never touched.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable

from ioasid.hw.memory import PAGE_SIZE
from ioasid.kernel.errors import fail
from ioasid.kernel.process import MmStruct

STATUS_PATH = re.compile(r"/proc/(self|thread-self|\d+)(?:/task/(\d+))?/status")
FAIL_NTH_PATH = re.compile(r"/proc/(?:(?:self|\d+)/task/(\d+)|(thread-self))/fail-nth")
DEBUGFS = "/sys/kernel/debug"


def status_text(real: str, mm: MmStruct) -> str:
    """``/proc/<pid>/status`` with the simulated kernel's ``VmLck`` and ``VmPin``."""
    values = {
        "VmLck:": mm.locked_vm * PAGE_SIZE // 1024,
        "VmPin:": mm.pinned_vm * PAGE_SIZE // 1024,
    }
    out = []
    for line in real.splitlines(keepends=True):
        key = line.split(":", 1)[0] + ":"
        if key in values:
            line = f"{key}\t{values[key]:8d} kB\n"
        out.append(line)
    return "".join(out)


KSTRTOX_BUF = 1 + 4 * 8 + 1 + 1
"""``kstrtouint_from_user``'s buffer: ``count`` beyond ``sizeof(buf) - 1`` is cut."""


def kstrtouint(text: bytes) -> int:
    """``kstrtouint(s, 0, &n)``: an optional ``+``; the base from the prefix (``0x`` and a
    hex digit: 16, ``0``: 8, else 10); digits up to the first that is not one; then one
    optional newline and the end. EINVAL otherwise (no digit, anything else after them),
    ERANGE beyond ``unsigned int``."""
    s = text.split(b"\0", 1)[0]
    if s[:1] == b"+":
        s = s[1:]
    base = 10
    if s[:1] == b"0":
        if s[1:2] in (b"x", b"X") and s[2:3] and s[2:3] in _HEX:
            base, s = 16, s[2:]
        else:
            base = 8
    digits = _HEX[: base + (6 if base == 16 else 0)].lower()
    i, n = 0, 0
    while i < len(s) and s[i : i + 1].lower() in digits:
        n = n * base + int(s[i : i + 1], 16)
        i += 1
    if i == 0:
        fail(errno.EINVAL, f"fail-nth: {text!r} has no digits")
    if s[i:] not in (b"", b"\n"):
        fail(errno.EINVAL, f"fail-nth: {s[i:]!r} after the number in {text!r}")
    if n >= 1 << 32:
        fail(errno.ERANGE, f"fail-nth: {text!r} is beyond unsigned int")
    return n


_HEX = b"0123456789abcdefABCDEF"


class FailNthFile:
    """``proc_fail_nth_operations`` of one thread: ``write`` arms, ``read`` gives the counter
    left (``"%u\\n"``). ``counter`` gets and sets the thread's ``fail_nth``; it raises
    ``ESRCH`` once the thread is gone, as ``get_proc_task`` fails."""

    def __init__(self, tid: int, counter: Callable[[int | None], int]) -> None:
        self.tid = tid
        self.counter = counter

    def pread(self, count: int, pos: int) -> bytes:
        """``proc_fail_nth_read`` + ``simple_read_from_buffer`` at ``pos``."""
        text = f"{self.counter(None)}\n".encode()
        if pos < 0:
            fail(errno.EINVAL, f"fail-nth read at offset {pos}")
        return text[pos : pos + count]

    def pwrite(self, data: bytes, pos: int) -> int:
        """``proc_fail_nth_write``: the position plays no part."""
        self.counter(kstrtouint(data[: KSTRTOX_BUF - 1]))
        return len(data)

    def release(self) -> None:
        pass


FAULT_ATTRS = {
    "failslab": ("ignore-gfp-wait", "cache-filter"),
    "fail_page_alloc": ("ignore-gfp-wait", "ignore-gfp-highmem", "min-order"),
    "fail_usercopy": (),
    "fail_iommufd": (),
}
"""The fault attributes the simulated kernel's fault points stand for, and the knobs each
has beyond those of every attribute (``fault_create_debugfs_attr``)."""

COMMON_ATTRS = (
    "probability",
    "interval",
    "times",
    "space",
    "verbose",
    "verbose_ratelimit_interval_ms",
    "verbose_ratelimit_burst",
    "task-filter",
)


class FakeDebugfs:
    """A private directory standing in for ``/sys/kernel/debug`` (fault-injection part)."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="ioasid-debugfs-")
        for attr, extra in FAULT_ATTRS.items():
            os.mkdir(os.path.join(self.root, attr))
            for knob in COMMON_ATTRS + extra:
                with open(os.path.join(self.root, attr, knob), "w") as f:
                    f.write("N\n" if knob.startswith("ignore") else "0\n")

    def path(self, program_path: str) -> str:
        """Where ``program_path`` (under ``/sys/kernel/debug``) is in this directory."""
        rel = os.path.relpath(program_path, DEBUGFS)
        return self.root if rel == "." else os.path.join(self.root, rel)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
