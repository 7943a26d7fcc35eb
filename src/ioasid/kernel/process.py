"""Who is calling: the task, its mm and its user, as the kernel's accounting sees them.

The real process is the default ``current`` task. Its capabilities are read from
``/proc/self/status`` and its ``RLIMIT_MEMLOCK`` from ``getrlimit``, so a test that runs as
root sees the same ``capable()`` answers as on the real kernel. The counters (``locked_vm``,
``pinned_vm``) are the simulated kernel's own: the host kernel's ``VmPin`` is not ours to move.
"""

from __future__ import annotations

import ctypes
import os
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from ioasid.hw.memory import AddressSpace, SelfAddressSpace
from ioasid.kernel.rangecount import RangeCount

CAP_IPC_LOCK = 14
CAP_SYS_RAWIO = 17
CAP_SYS_RESOURCE = 24


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_capget = ctypes.CDLL(None, use_errno=True).capget
_capget.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_capget.restype = ctypes.c_int


CAP_LAST_CAP = 40
ALL_CAPS = (1 << (CAP_LAST_CAP + 1)) - 1

_cap_buffers = threading.local()


def _capget_sets(pid: int = 0) -> tuple[int, int]:
    bufs = getattr(_cap_buffers, "bufs", None)
    if bufs is None:
        header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()
        bufs = _cap_buffers.bufs = (header, data, ctypes.addressof(header), ctypes.addressof(data))
    header, data, header_addr, data_addr = bufs
    header.version = 0x20080522  # the kernel writes its preferred version back
    header.pid = pid
    if _capget(header_addr, data_addr) != 0:
        return 0, 0
    lo, hi = data
    return lo.effective | hi.effective << 32, lo.permitted | hi.permitted << 32


def effective_caps(pid: int = 0) -> int:
    """This process's (or ``pid``'s) effective capability set, read live (``capget``) so
    that a test dropping CAP_IPC_LOCK with ``capset`` is seen exactly as the kernel sees it."""
    return _capget_sets(pid)[0]


def root_caps(pid: int = 0) -> int:
    """A full root's capabilities minus those this process (or ``pid``) dropped from its
    effective set: what the kernel selftests (run as root in the oracle guest) have, on any
    host."""
    eff, perm = _capget_sets(pid)
    return ALL_CAPS & ~(perm & ~eff)


class FilesStruct(Protocol):
    """``current->files`` of a task whose descriptors are not this process's own (the
    bridge's programs). ``None`` on a :class:`Task` means this process's real descriptor
    table, which :class:`~ioasid.kernel.anon_inode.AnonInodes` uses directly."""

    def get_unused_fd(self, name: str) -> int:
        """``get_unused_fd_flags(O_CLOEXEC)``: the number the next ``fd_install`` gets."""
        ...

    def put_unused_fd(self, fd: int) -> None: ...

    def fd_install(self, fd: int, file: object) -> None:
        """Make ``fd`` refer to ``file`` (an ``AnonFile``): its last close releases it."""
        ...

    def fget(self, fd: int) -> object | None:
        """The simulated file (``AnonFile`` or device file) ``fd`` refers to, else ``None``."""
        ...

    def is_open(self, fd: int) -> bool: ...

    def fget_raw(self, fd: int) -> int:
        """A descriptor of this process for the caller's open file ``fd`` (the caller of
        ``fget_raw`` closes it), or -1 if ``fd`` is not open."""
        ...


@dataclass
class UserStruct:
    """``struct user_struct``: per-uid ``locked_vm`` (iommufd's USER accounting)."""

    uid: int
    locked_vm: int = 0


@dataclass
class MmStruct:
    """``struct mm_struct``: ``locked_vm`` (VFIO-compatible MM accounting) and ``pinned_vm``."""

    aspace: AddressSpace
    locked_vm: int = 0
    pinned_vm: int = 0
    alive: bool = True
    page_pins: RangeCount = field(default_factory=RangeCount)
    """Long-term pins per virtual page number, as ``page_ref_count`` would show them."""


@dataclass
class Task:
    """A thread group leader with its mm, user, capabilities and memlock limit.

    ``rlimit_memlock`` of ``None`` means: read the real process's limit at each check.
    """

    pid: int
    mm: MmStruct
    user: UserStruct
    caps: int | None = None
    """``None``: the real process's capabilities, read at each check."""
    rlimit_memlock: int | None = None
    as_root: bool = False
    """Capabilities of a full root (see :func:`root_caps`) instead of this host's."""
    files: FilesStruct | None = None
    """``current->files``; ``None``: this process's own descriptors."""
    fail_nth: int = 0
    """``current->fail_nth`` (``/proc/<pid>/task/<tid>/fail-nth``), see
    :mod:`ioasid.kernel.fail_nth`."""

    def capable(self, cap: int) -> bool:
        if self.caps is not None:
            caps = self.caps
        else:
            caps = root_caps() if self.as_root else effective_caps()
        return bool(caps >> cap & 1)

    def memlock_limit(self) -> int:
        if self.rlimit_memlock is not None:
            return self.rlimit_memlock
        return resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]


class Processes:
    """The simulated kernel's view of tasks, mms and users; ``current`` is who calls."""

    def __init__(self) -> None:
        self.users: dict[int, UserStruct] = {}
        self.tasks: dict[int, Task] = {}
        self.current = self.task(os.getpid(), os.getuid(), SelfAddressSpace())

    def fork(self) -> Task:
        """A child of ``current``: same user, its own mm over the same memory (as after
        ``fork()``, before either side writes), accounted separately."""
        parent = self.current
        pid = max(self.tasks) + 1
        child = Task(
            pid, MmStruct(parent.mm.aspace), parent.user, parent.caps, parent.rlimit_memlock
        )
        self.tasks[pid] = child
        return child

    def exit(self, task: Task) -> None:
        """``do_exit`` of ``task``: its mm is gone for everyone who would ``mmget`` it
        (pinning through it fails with EFAULT). What it pinned stays pinned and charged:
        iommufd keeps the ``mm_struct`` itself (``mmgrab``)."""
        task.mm.alive = False

    @contextmanager
    def running(self, task: Task) -> Iterator[Task]:
        """Make ``task`` the caller of every ioctl inside the block."""
        saved, self.current = self.current, task
        try:
            yield task
        finally:
            self.current = saved

    def user(self, uid: int) -> UserStruct:
        return self.users.setdefault(uid, UserStruct(uid))

    def task(self, pid: int, uid: int, aspace: AddressSpace) -> Task:
        if pid not in self.tasks:
            self.tasks[pid] = Task(pid, MmStruct(aspace), self.user(uid))
        return self.tasks[pid]
