"""``anon_inodes.c`` for the simulated kernel: files the kernel hands out as plain fds.

Some kernel objects live exactly as long as a file descriptor the kernel installed for the
caller — the selftest access object (``anon_inode_getfile("[iommufd_test_staccess]")``) is
one: ``close(fd)`` destroys it. On the real kernel the last ``close`` calls the file's
``release``. The simulated kernel cannot see a raw ``os.close``, so each such file is a
real ``memfd`` of this process (a real, unique fd number, never reused while open, and a
unique inode) and the kernel notices the close the next time it is entered:
:meth:`AnonInodes.reap` runs at every ioctl of the simulated ``/dev/iommu`` (and wherever the sim's
state is read from outside, e.g. :mod:`ioasid.testing.process`) and calls ``release`` for
every file no descriptor of this process refers to any more. ``dup``'d descriptors keep the
file open, as they do on Linux. Between the ``close`` and the next entry nothing can observe
the difference.

A task with its own descriptor table (:attr:`ioasid.kernel.process.Task.files`, a program
served by :mod:`ioasid.bridge`) gets and installs its descriptors there instead: every method
below asks ``current->files`` first.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass

from ioasid.kernel.errors import fail
from ioasid.kernel.process import FilesStruct, Processes

FD_LIMIT = 1 << 31
"""Descriptors are C ``int``: a number at or above this is no descriptor (``EBADF``)."""


@dataclass(eq=False)
class AnonFile:
    """``struct file`` of an anonymous inode: ``private_data`` and its ``release``."""

    name: str
    private_data: object
    release: Callable[[], None]
    key: tuple[int, int] = (0, 0)
    fd: int = -1
    """The descriptor last seen referring to the file."""


class AnonInodes:
    """The anonymous-inode files of one simulated kernel, keyed by (st_dev, st_ino)."""

    def __init__(self, processes: Processes | None = None) -> None:
        self.files: dict[tuple[int, int], AnonFile] = {}
        self.processes = processes

    def _foreign(self) -> FilesStruct | None:
        """``current->files`` when it is not this process's descriptor table."""
        return None if self.processes is None else self.processes.current.files

    def get_unused_fd(self, name: str) -> int:
        """``get_unused_fd_flags(O_CLOEXEC)``: reserve a descriptor (not yet a live file)."""
        table = self._foreign()
        if table is not None:
            return table.get_unused_fd(name)
        try:
            return os.memfd_create(name, os.MFD_CLOEXEC)
        except OSError as e:
            fail(errno.ENOMEM, f"no descriptor for {name}: {e}")

    def put_unused_fd(self, fd: int) -> None:
        table = self._foreign()
        if table is not None:
            table.put_unused_fd(fd)
            return
        os.close(fd)

    def fd_install(self, fd: int, file: AnonFile) -> None:
        """``fd_install``: from now on ``close(fd)`` (of every dup) releases ``file``."""
        table = self._foreign()
        if table is not None:
            table.fd_install(fd, file)
            return
        st = os.fstat(fd)
        file.key, file.fd = (st.st_dev, st.st_ino), fd
        self.files[file.key] = file

    def fget(self, fd: int) -> AnonFile | None:
        """``fget``: the anonymous file ``fd`` refers to, or ``None`` (also for a number no
        descriptor can have: the kernel's ``fget`` of an ``int`` beyond the table)."""
        if not 0 <= fd < FD_LIMIT:
            return None
        table = self._foreign()
        if table is not None:
            file = table.fget(fd)
            return file if isinstance(file, AnonFile) else None
        try:
            st = os.fstat(fd)
        except OSError:
            return None
        return self.files.get((st.st_dev, st.st_ino))

    def is_open(self, fd: int) -> bool:
        """Whether the caller has a descriptor ``fd`` (of any file)."""
        if not 0 <= fd < FD_LIMIT:
            return False
        table = self._foreign()
        if table is not None:
            return table.is_open(fd)
        return self._key_of(fd) is not None

    def fget_raw(self, fd: int) -> int:
        """``fget`` of a file the simulator does not serve (a memfd for ``MAP_FILE``): a
        descriptor of this process for it, which the caller closes; -1 if not open."""
        if not 0 <= fd < FD_LIMIT:
            return -1
        table = self._foreign()
        if table is not None:
            return table.fget_raw(fd)
        try:
            return os.dup(fd)
        except OSError:
            return -1

    def reap(self) -> None:
        """Release every file whose last descriptor this process has closed."""
        if not self.files:
            return
        gone = [f for f in self.files.values() if not self._still_open(f)]
        for f in gone:
            del self.files[f.key]
            f.release()

    @staticmethod
    def _key_of(fd: int) -> tuple[int, int] | None:
        if not 0 <= fd < FD_LIMIT:
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _still_open(self, f: AnonFile) -> bool:
        if self._key_of(f.fd) == f.key:
            return True
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            return False
        for name in names:
            if name.isdigit() and self._key_of(int(name)) == f.key:
                f.fd = int(name)
                return True
        return False
