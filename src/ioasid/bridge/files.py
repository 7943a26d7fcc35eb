"""The programs' descriptors for simulated files, and each program's ``current->files``.

Every file the simulated kernel gives a program (an iommufd, a VFIO cdev, an access, fault
queue or vEVENTQ fd) is a real descriptor in the program: a *placeholder* ``memfd`` named
``ioasid:<name>``, installed with ``SECCOMP_IOCTL_NOTIF_ADDFD`` at the number the kernel
would give. The placeholder's inode says which simulated file a descriptor refers to (one
``stat`` of ``/proc/<tid>/fd/<n>``), so ``dup``, ``fork``, ``SCM_RIGHTS`` and ``mmap``
share it as the kernel shares a ``struct file``. The supervisor keeps no descriptor of it; an
inotify watch on its inode ends (``IN_IGNORED``) when the last descriptor and mapping went
(close, exit, exec with ``O_CLOEXEC``): that is the file's ``release``, run before the
supervisor serves the program's next call. What still tells a placeholder from the real
file is ``fstat`` (a regular file, not a character device or an anonymous inode).
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ioasid.bridge.seccomp import (
    IN_IGNORED,
    Listener,
    inotify_init,
    inotify_watch_fd,
    pidfd_getfd,
)
from ioasid.kernel.anon_inode import AnonFile
from ioasid.kernel.errors import fail

log = logging.getLogger("ioasid.bridge")

_EVENT = struct.Struct("iIII")

PLACEHOLDER_SIZE = 1 << 46
"""A placeholder's (sparse) size: ``fstat`` shows a regular file, and programs that check a
mapping against its size (Python's ``mmap``) must not refuse one the kernel would make,
VFIO region offsets (index << 40) included."""


@dataclass(eq=False)
class Placeholder:
    """A simulated file as the programs hold it."""

    file: object
    """A kernel ``File`` (iommufd, VFIO cdev), an ``AnonFile``, or a bridge file (``fail-nth``)."""
    name: str
    key: tuple[int, int]
    wd: int

    @property
    def ops(self) -> object:
        """What implements the file operations: an anonymous file's ``private_data``."""
        return self.file.private_data if isinstance(self.file, AnonFile) else self.file


class OpenFiles:
    """Every placeholder the programs hold, by inode; releases them on their last close."""

    def __init__(self, release: Callable[[Placeholder], None]) -> None:
        self._release = release
        self.inotify = inotify_init()
        self.by_key: dict[tuple[int, int], Placeholder] = {}
        self._by_wd: dict[int, Placeholder] = {}

    def create(self, name: str, file: object) -> tuple[int, Placeholder]:
        """A new placeholder for ``file``: this process's descriptor of it (close it once
        it is installed in the program) and its record."""
        fd = os.memfd_create(f"ioasid:{name}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, PLACEHOLDER_SIZE)
            st = os.fstat(fd)
            wd = inotify_watch_fd(self.inotify, fd)
        except OSError:
            os.close(fd)
            raise
        ph = Placeholder(file, name, (st.st_dev, st.st_ino), wd)
        self.by_key[ph.key] = ph
        self._by_wd[wd] = ph
        return fd, ph

    def lookup(self, tid: int, fd: int) -> Placeholder | None:
        """The placeholder descriptor ``fd`` of thread ``tid`` refers to, if any (with no
        placeholder at all, none: no ``stat``)."""
        if fd < 0 or not self.by_key:
            return None
        try:
            st = os.stat(f"/proc/{tid}/fd/{fd}")
        except OSError:
            return None
        return self.by_key.get((st.st_dev, st.st_ino))

    def drain(self) -> None:
        """Release every placeholder whose last reference went since the last drain."""
        while True:
            try:
                data = os.read(self.inotify, 64 * _EVENT.size)
            except BlockingIOError:
                return
            for off in range(0, len(data), _EVENT.size):
                wd, mask, _cookie, namelen = _EVENT.unpack_from(data, off)
                if namelen:  # watches on files never carry names
                    continue
                if mask & IN_IGNORED:
                    self._gone(wd)

    def _gone(self, wd: int) -> None:
        ph = self._by_wd.pop(wd, None)
        if ph is None:
            return
        if self.by_key.get(ph.key) is ph:
            del self.by_key[ph.key]
        self._release(ph)

    def close(self) -> None:
        os.close(self.inotify)


class ProgramFiles:
    """``current->files`` of one program process (:class:`ioasid.kernel.process.FilesStruct`).

    Numbers are the program's: the kernel's ``get_unused_fd`` is the lowest number free in
    ``/proc/<tid>/fd`` and ``fd_install`` installs there (``ADDFD`` into the call being
    served, which must still be pending). ``fget_raw`` is ``pidfd_getfd``.
    """

    def __init__(self, files: OpenFiles, listener: Listener, tgid: int, pidfd: int) -> None:
        self.files = files
        self.listener = listener
        self.tgid = tgid
        self.pidfd = pidfd
        self.tid = tgid
        """The calling thread (its table is the one read, for threads without CLONE_FILES)."""
        self.nid = 0
        """The notification being served: where ``fd_install`` adds the descriptor."""
        self._reserved: set[int] = set()

    def get_unused_fd(self, name: str) -> int:
        try:
            used = {int(n) for n in os.listdir(f"/proc/{self.tid}/fd")}
        except OSError as e:
            fail(errno.ESRCH, f"no descriptor table for thread {self.tid}: {e}")
        used |= self._reserved
        fd = 0
        while fd in used:
            fd += 1
        limit = resource.prlimit(self.tgid, resource.RLIMIT_NOFILE)[0]
        if 0 <= limit <= fd:
            fail(errno.EMFILE, f"{name}: no descriptor below RLIMIT_NOFILE {limit}")
        self._reserved.add(fd)
        return fd

    def put_unused_fd(self, fd: int) -> None:
        self._reserved.discard(fd)

    def fd_install(self, fd: int, file: object) -> None:
        self._reserved.discard(fd)
        name = file.name if isinstance(file, AnonFile) else type(file).__name__
        local, _ = self.files.create(name, file)
        try:
            got = self.listener.addfd(self.nid, local, cloexec=True)
        finally:
            os.close(local)
        if got != fd:
            log.warning(
                "%s: installed as fd %d, not %d (another thread of %d took %d meanwhile)",
                name, got, fd, self.tgid, fd,
            )  # fmt: skip

    def fget(self, fd: int) -> object | None:
        ph = self.files.lookup(self.tid, fd)
        return None if ph is None else ph.file

    def is_open(self, fd: int) -> bool:
        try:
            os.lstat(f"/proc/{self.tid}/fd/{fd}")
        except OSError:
            return False
        return True

    def fget_raw(self, fd: int) -> int:
        """``pidfd_getfd``; for a placeholder, an ``eventfd``: like the file the kernel
        would find (an anonymous inode, or a device), it is no memfd to map or pin."""
        if self.files.lookup(self.tid, fd) is not None:
            return os.eventfd(0, os.EFD_CLOEXEC)
        try:
            return pidfd_getfd(self.pidfd, fd)
        except OSError:
            return -1
