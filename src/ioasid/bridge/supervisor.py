"""``ioasid run``: the launcher and the supervisor loop.

:func:`launch` forks, installs the filter of :mod:`ioasid.bridge.seccomp` in the child (before
``exec``, so nothing of the program runs unsupervised) and hands the listener to the parent;
a refusal (already under a listener, no seccomp) is reported before the program starts.

:class:`Supervisor` serves the notifications, one at a time, each call atomic under the
kernel's lock as every entry of the sim backend is. Every process of the program is its own
simulated task (:class:`ProgramTask`) with its own mm over its memory
(:class:`~ioasid.bridge.memory.ProcessAddressSpace`) and its own descriptor table
(:class:`~ioasid.bridge.files.ProgramFiles`); it appears at its first trapped call (fork and
clone are not trapped). A call the bridge does not serve goes back to the real kernel
(``CONTINUE``). A served call always gets an answer: an ``OSError`` of the simulator is its
errno, any other exception is logged and becomes ``ENOTRECOVERABLE`` (the sim backend's
:class:`~ioasid.kernel.errors.KernelBug`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ioasid.bridge import seccomp as sc
from ioasid.bridge.files import OpenFiles, Placeholder, ProgramFiles
from ioasid.bridge.memory import ProcessAddressSpace
from ioasid.bridge.procfs import (
    DEBUGFS,
    FAIL_NTH_PATH,
    STATUS_PATH,
    FailNthFile,
    FakeDebugfs,
    status_text,
)
from ioasid.hw.memory import PAGE_SIZE, new_syscall
from ioasid.kernel.errors import KernelBug, bug
from ioasid.kernel.private import File
from ioasid.kernel.process import MmStruct, Processes, Task, effective_caps, root_caps

log = logging.getLogger("ioasid.bridge")

AT_FDCWD = -100
DEVICE_PATH = re.compile(r"/dev/iommu|/dev/vfio/vfio|/dev/vfio/devices/vfio\d+")
_SERVED_PREFIXES = ("/dev/", "/proc/", DEBUGFS)
_SENT = object()
"""A handler's answer when it has already replied (``ADDFD`` with ``SEND``)."""


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


class Host(Protocol):
    """What the bridge needs of the simulated host (the sim backend's kernel): its lock,
    its tasks and ``open(2)`` of its device nodes; the rest it reaches through the files."""

    lock: threading.RLock
    processes: Processes

    def open(self, path: str) -> File: ...


@dataclass
class ProgramTask(Task):
    """A process of the program as the simulated kernel's ``current``: capabilities read
    from it with ``capget`` — a root program gets a full root's, minus what it dropped (this
    host's root lacks CAP_SYS_RESOURCE; the guest's root has it) — and ``RLIMIT_MEMLOCK``
    read with ``prlimit``, both at each check as the kernel reads them."""

    root: bool = False

    def capable(self, cap: int) -> bool:
        caps = root_caps(self.pid) if self.root else effective_caps(self.pid)
        return bool(caps >> cap & 1)

    def memlock_limit(self) -> int:
        try:
            return resource.prlimit(self.pid, resource.RLIMIT_MEMLOCK)[0]
        except ProcessLookupError:
            return 0


@dataclass(eq=False)
class _PendingPoll:
    """A ``poll`` of the program waiting for a simulated file (its notification pending)."""

    nid: int
    prog: Program
    tid: int
    addr: int
    fds: list[tuple[int, int]]
    deadline: float | None


@dataclass(eq=False)
class _Mapping:
    """A region of a simulated file mapped by the program: our mapping of it holds the
    kernel's reference (``iommufd_fops_vma_open``) until the program's is gone."""

    key: tuple[int, int]
    offset: int
    region: mmap.mmap


DEFAULT_POLLMASK = select.POLLIN | select.POLLOUT | select.POLLRDNORM | select.POLLWRNORM


@dataclass(eq=False)
class Program:
    """One process of the program."""

    tgid: int
    pidfd: int
    task: ProgramTask
    aspace: ProcessAddressSpace
    files: ProgramFiles
    tids: set[int] = field(default_factory=set)
    fail_nth: dict[int, int] = field(default_factory=dict)
    """``fail_nth`` of each thread but the one being served."""
    mappings: list[_Mapping] = field(default_factory=list)
    """Regions of simulated files the program mapped, while it maps them."""
    exec_auxv: bytes | None = None
    """Set while an ``execve`` may be replacing the mm: the old ``/proc/<pid>/auxv``."""


def _proc_status_fields(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


class Supervisor:
    """Serves one program (all its processes and threads) from one simulated kernel."""

    def __init__(self, kernel: Host, listener: sc.Listener, main_pid: int) -> None:
        self.kernel = kernel
        self.listener = listener
        self.main_pid = main_pid
        self.main_pidfd = sc.pidfd_open(main_pid)
        self.status: int | None = None
        self.files = OpenFiles(self._release)
        self.programs: dict[int, Program] = {}
        self._by_pidfd: dict[int, Program] = {}
        self._tgid_of: dict[int, int] = {}
        self._debugfs: FakeDebugfs | None = None
        self._poller = select.poll()
        self._poller.register(listener.fd, select.POLLIN)
        self._poller.register(self.files.inotify, select.POLLIN)
        self._poller.register(self.main_pidfd, select.POLLIN)
        self._listening = True
        self.handlers: dict[int, Callable[[sc.Notif, Program, int], Any]] = {
            sc.NR_open: self._open,
            sc.NR_openat: self._open,
            sc.NR_openat2: self._open,
            sc.NR_ioctl: self._ioctl,
            sc.NR_mmap: self._mmap,
            sc.NR_read: self._read,
            sc.NR_pread64: self._read,
            sc.NR_write: self._write,
            sc.NR_pwrite64: self._write,
            sc.NR_execve: self._execve,
            sc.NR_execveat: self._execve,
            sc.NR_exit_group: self._exit_group,
            sc.NR_poll: self._poll,
            sc.NR_ppoll: self._poll,
        }
        self._polls: list[_PendingPoll] = []

    # the loop ----------------------------------------------------------------------------

    def serve(self) -> int:
        """Serve until the program's first process is reaped and no process of it is left
        under the filter; its exit status (``128 + signal`` if a signal killed it)."""
        while self._listening or self.status is None:
            ready = dict(self._poller.poll(self._poll_timeout()))
            if self.files.inotify in ready:
                # a close the program made before a call it makes next is already queued
                # when that call is: it is in this poll's answer, released before we serve
                self.files.drain()
            for fd in ready:
                gone = self._by_pidfd.get(fd)
                if gone is not None:
                    self._exited(gone)
            if self.main_pidfd in ready and self.status is None:
                self._reap_main()
            events = ready.get(self.listener.fd, 0)
            if events & select.POLLIN:
                self.serve_one()
            elif events & (select.POLLHUP | select.POLLERR):
                self._poller.unregister(self.listener.fd)
                self._listening = False
            if self._polls:
                self._recheck_polls()
        return self.status

    def _reap_main(self) -> None:
        pid, wstatus = os.waitpid(self.main_pid, os.WNOHANG)
        if pid == self.main_pid:
            code = os.waitstatus_to_exitcode(wstatus)
            self.status = 128 - code if code < 0 else code
            self._poller.unregister(self.main_pidfd)

    def serve_one(self) -> None:
        """Receive one notification and answer it, whatever happens while serving it."""
        n = self.listener.recv()
        if n is None:
            return
        nid, tid, nr = n.id, n.pid, n.data.nr
        try:
            prog = self._program(tid)
            handler = self.handlers.get(nr)
            result = None if handler is None else handler(n, prog, tid)
        except OSError as e:
            if isinstance(e, KernelBug):
                log.error("thread %d, syscall %d %s: %s", tid, nr, list(n.data.args[:3]), e)
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("thread %d, syscall %d %s: %s", tid, nr, list(n.data.args[:3]), e)
            self.listener.fail(nid, e.errno or errno.EIO)
            return
        except Exception as e:
            log.error("syscall %d of thread %d: %s", nr, tid, bug(e))
            self.listener.fail(nid, errno.ENOTRECOVERABLE)
            return
        if result is None:
            self.listener.continue_(nid)
        elif result is not _SENT:
            self.listener.reply(nid, int(result))

    # processes ---------------------------------------------------------------------------

    def _program(self, tid: int) -> Program:
        tgid = self._tgid_of.get(tid)
        if tgid is None:
            try:
                tgid = int(_proc_status_fields(tid)["Tgid"])
            except (OSError, KeyError) as e:
                raise OSError(errno.ESRCH, f"thread {tid} vanished") from e
            self._tgid_of[tid] = tgid
        prog = self.programs.get(tgid)
        if prog is None:
            prog = self._new_program(tgid)
        elif prog.exec_auxv is not None:
            self._check_exec(prog)
        prog.tids.add(tid)
        return prog

    def _new_program(self, tgid: int, pidfd: int | None = None) -> Program:
        fields = _proc_status_fields(tgid)
        uid = int(fields["Uid"].split()[0])
        if pidfd is None:
            pidfd = sc.pidfd_open(tgid)
            self._poller.register(pidfd, select.POLLIN)
        aspace = ProcessAddressSpace(tgid)
        procs = self.kernel.processes
        task = ProgramTask(tgid, MmStruct(aspace), procs.user(uid), root=uid == 0)
        files = ProgramFiles(self.files, self.listener, tgid, pidfd)
        task.files = files
        prog = Program(tgid, pidfd, task, aspace, files)
        self.programs[tgid] = prog
        self._by_pidfd[pidfd] = prog
        procs.tasks[tgid] = task
        return prog

    def _mm_gone(self, prog: Program) -> None:
        """``exit_mm``/``exec_mmap``: the old mm is gone; iommufd keeps what it pinned."""
        with self.kernel.lock:
            if prog.task.mm.alive:
                self.kernel.processes.exit(prog.task)
            prog.aspace.gone()
            for m in prog.mappings:
                m.region.close()
            prog.mappings.clear()

    def _exited(self, prog: Program) -> None:
        self._mm_gone(prog)
        self._poller.unregister(prog.pidfd)
        os.close(prog.pidfd)
        del self._by_pidfd[prog.pidfd]
        if self.programs.get(prog.tgid) is prog:
            del self.programs[prog.tgid]
        if self.kernel.processes.tasks.get(prog.tgid) is prog.task:
            del self.kernel.processes.tasks[prog.tgid]
        for tid in prog.tids:
            self._tgid_of.pop(tid, None)

    def _execve(self, n: sc.Notif, prog: Program, tid: int) -> None:
        """Keep what the mm has pinned in case the exec replaces it (seen at the next call)."""
        with self.kernel.lock:
            prog.aspace.keep_pinned(prog.task.mm.page_pins)
        try:
            with open(f"/proc/{prog.tgid}/auxv", "rb") as f:
                prog.exec_auxv = f.read()
        except OSError:
            prog.exec_auxv = None

    def _check_exec(self, prog: Program) -> None:
        try:
            with open(f"/proc/{prog.tgid}/auxv", "rb") as f:
                auxv = f.read()
        except OSError:
            return
        if auxv == prog.exec_auxv:
            prog.exec_auxv = None  # the exec failed: same mm
            return
        self._mm_gone(prog)
        del self._by_pidfd[prog.pidfd]
        fresh = self._new_program(prog.tgid, prog.pidfd)
        fresh.tids = prog.tids

    def _exit_group(self, n: sc.Notif, prog: Program, tid: int) -> None:
        with self.kernel.lock:
            prog.aspace.keep_pinned(prog.task.mm.page_pins)
        self._mm_gone(prog)

    # calls into the simulated kernel -----------------------------------------------------

    def _enter(self, prog: Program, tid: int, nid: int, call: Callable[[], Any]) -> Any:
        """Run ``call`` in the simulated kernel as thread ``tid`` of ``prog``, as the sim
        backend runs an entry: under the lock, a new system call, ``current`` set."""
        k = self.kernel
        task = prog.task
        with k.lock:
            new_syscall()
            prog.files.tid, prog.files.nid = tid, nid
            task.fail_nth = prog.fail_nth.pop(tid, 0)
            saved, k.processes.current = k.processes.current, task
            try:
                return call()
            except OSError:
                raise
            except Exception as e:
                raise bug(e) from e
            finally:
                k.processes.current = saved
                if task.fail_nth:
                    prog.fail_nth[tid] = task.fail_nth

    def _release(self, ph: Placeholder) -> None:
        """The last reference to a placeholder went: ``fput`` → the file's ``release``."""
        release = getattr(ph.file, "release", None)
        if release is None:
            return
        k = self.kernel
        with k.lock:
            new_syscall()
            try:
                release()
            except Exception as e:
                log.error("release of %s: %s", ph.name, e if isinstance(e, OSError) else bug(e))

    def _install(self, n: sc.Notif, name: str, file: object, cloexec: bool) -> object:
        """Give the caller a new descriptor of ``file`` as the result of its ``open``."""
        local, _ = self.files.create(name, file)
        try:
            self.listener.addfd(n.id, local, cloexec, send=True)
        finally:
            os.close(local)
        return _SENT

    # open --------------------------------------------------------------------------------

    def _read_path(self, prog: Program, addr: int) -> str | None:
        out = b""
        while len(out) < 4096:
            chunk = min(256, PAGE_SIZE - addr % PAGE_SIZE)
            try:
                data = prog.aspace.read(addr, chunk)
            except OSError:
                return None
            i = data.find(b"\0")
            if i >= 0:
                return (out + data[:i]).decode("utf-8", "surrogateescape")
            out += data
            addr += chunk
        return None

    def _open(self, n: sc.Notif, prog: Program, tid: int) -> object:
        a = n.data.args
        nr = n.data.nr
        if nr == sc.NR_open:
            dirfd, path_addr, flags = AT_FDCWD, a[0], a[1]
        else:
            dirfd, path_addr, flags = _s32(a[0]), a[1], a[2]
            if nr == sc.NR_openat2:
                try:
                    flags = int.from_bytes(prog.aspace.read(a[2], 8), "little")
                except OSError:
                    return None
        path = self._read_path(prog, path_addr)
        if not path:
            return None
        if not path.startswith("/"):
            where = "cwd" if dirfd == AT_FDCWD else f"fd/{dirfd}"
            try:
                path = os.readlink(f"/proc/{tid}/{where}") + "/" + path
            except OSError:
                return None
        if not path.startswith(_SERVED_PREFIXES):
            return None
        path = os.path.normpath(re.sub("/+", "/", path))
        cloexec = bool(flags & os.O_CLOEXEC)
        if DEVICE_PATH.fullmatch(path):
            if flags & os.O_DIRECTORY:
                raise OSError(errno.ENOTDIR, path)
            file = self._enter(prog, tid, n.id, lambda: self.kernel.open(path))
            return self._install(n, path, file, cloexec)
        if path == DEBUGFS or path.startswith(DEBUGFS + "/"):
            return self._open_debugfs(n, path, flags)
        m = STATUS_PATH.fullmatch(path)
        if m is not None and flags & os.O_ACCMODE == os.O_RDONLY:
            return self._open_status(n, prog, tid, m)
        m = FAIL_NTH_PATH.fullmatch(path)
        if m is not None:
            target = tid if m.group(2) else int(m.group(1))
            return self._open_fail_nth(n, target, cloexec)
        return None

    def _open_debugfs(self, n: sc.Notif, path: str, flags: int) -> object:
        if self._debugfs is None:
            self._debugfs = FakeDebugfs()
        fd = os.open(self._debugfs.path(path), flags | os.O_CLOEXEC, 0o600)
        try:
            self.listener.addfd(n.id, fd, bool(flags & os.O_CLOEXEC), send=True)
        finally:
            os.close(fd)
        return _SENT

    def _open_status(self, n: sc.Notif, prog: Program, tid: int, m: re.Match[str]) -> object:
        who = m.group(2) or m.group(1)
        pid = {"self": prog.tgid, "thread-self": tid}.get(who) or int(who)
        owner = self.programs.get(self._tgid_of.get(pid, pid))
        if owner is None:
            return None  # not a process of the program: the host's own answer
        with open(f"/proc/{pid}/status") as f:
            real = f.read()
        with self.kernel.lock:
            text = status_text(real, owner.task.mm)
        fd = os.memfd_create("ioasid:status", os.MFD_CLOEXEC)
        try:
            os.write(fd, text.encode())
            os.lseek(fd, 0, os.SEEK_SET)
            self.listener.addfd(n.id, fd, bool(n.data.args[2] & os.O_CLOEXEC), send=True)
        finally:
            os.close(fd)
        return _SENT

    def _fail_nth_counter(self, tid: int) -> Callable[[int | None], int]:
        def counter(value: int | None) -> int:
            prog = self.programs.get(self._tgid_of.get(tid, -1))
            if prog is None or not os.path.exists(f"/proc/{tid}"):
                raise OSError(errno.ESRCH, f"fail-nth: thread {tid} is gone")
            if value is None:
                return prog.fail_nth.get(tid, 0)
            prog.fail_nth[tid] = value
            return value

        return counter

    def _open_fail_nth(self, n: sc.Notif, target: int, cloexec: bool) -> object:
        try:
            self._program(target)
        except OSError:
            return None
        file = FailNthFile(target, self._fail_nth_counter(target))
        return self._install(n, "fail-nth", file, cloexec)

    # file operations ---------------------------------------------------------------------

    def _ioctl(self, n: sc.Notif, prog: Program, tid: int) -> object:
        a = n.data.args
        ph = self.files.lookup(tid, _s32(a[0]))
        if ph is None:
            return None
        ops = ph.ops
        ioctl = getattr(ops, "ioctl", None)
        if ioctl is None:
            raise OSError(errno.ENOTTY, f"{ph.name}: no ioctl")
        cmd, arg = a[1] & 0xFFFFFFFF, a[2]
        if prog.mappings:
            new_syscall()
            self._unmapped(prog)
        return self._enter(prog, tid, n.id, lambda: ioctl(cmd, arg))

    def _file_pos(self, prog: Program, fd: int, advance: int | None = None) -> int:
        """The program's file position of ``fd`` (moved by ``advance``): the placeholder's."""
        local = sc.pidfd_getfd(prog.pidfd, fd)
        try:
            if advance is None:
                return os.lseek(local, 0, os.SEEK_CUR)
            return os.lseek(local, advance, os.SEEK_CUR)
        finally:
            os.close(local)

    def _data_call(
        self, prog: Program, tid: int, nid: int, ph: Placeholder, call: Callable[[], Any]
    ) -> Any:
        if isinstance(ph.file, FailNthFile):
            return call()  # a /proc file of the bridge: not an entry of the iommufd kernel
        return self._enter(prog, tid, nid, call)

    def _read(self, n: sc.Notif, prog: Program, tid: int) -> object:
        a = n.data.args
        fd = _s32(a[0])
        ph = self.files.lookup(tid, fd)
        if ph is None:
            return None
        buf, count, ops = a[1], a[2], ph.ops
        positional = n.data.nr == sc.NR_pread64
        if not positional and hasattr(ops, "read"):
            data = self._data_call(prog, tid, n.id, ph, lambda: ops.read(count))
        elif hasattr(ops, "pread"):
            pos = _s64(a[3]) if positional else self._file_pos(prog, fd)
            data = self._data_call(prog, tid, n.id, ph, lambda: ops.pread(count, pos))
            if not positional:
                self._file_pos(prog, fd, len(data))
        else:
            raise OSError(errno.ESPIPE if positional else errno.EINVAL, f"{ph.name}: no read")
        prog.aspace.write(buf, data)
        return len(data)

    def _write(self, n: sc.Notif, prog: Program, tid: int) -> object:
        a = n.data.args
        fd = _s32(a[0])
        ph = self.files.lookup(tid, fd)
        if ph is None:
            return None
        ops = ph.ops
        data = prog.aspace.read(a[1], a[2])
        positional = n.data.nr == sc.NR_pwrite64
        if not positional and hasattr(ops, "write"):
            return self._data_call(prog, tid, n.id, ph, lambda: ops.write(data))
        if hasattr(ops, "pwrite"):
            pos = _s64(a[3]) if positional else self._file_pos(prog, fd)
            done = int(self._data_call(prog, tid, n.id, ph, lambda: ops.pwrite(data, pos)))
            if not positional:
                self._file_pos(prog, fd, done)
            return done
        raise OSError(errno.ESPIPE if positional else errno.EINVAL, f"{ph.name}: no write")

    def _mmap(self, n: sc.Notif, prog: Program, tid: int) -> object:
        """``mmap`` of a simulated file: its ``mmap(length, prot, flags, offset)`` checks the
        request and maps the region (``iommufd_fops_mmap``: the mapping holds a reference on
        the region's owner); the region's bytes go into the placeholder at that offset and
        the real kernel maps the placeholder. The program sees the bytes as they were at
        ``mmap`` (a copy, not shared pages). A file without ``mmap`` is ``ENODEV``."""
        a = n.data.args
        fd = _s32(a[4])
        ph = self.files.lookup(tid, fd)
        if ph is None:
            return None
        mmap_op = getattr(ph.ops, "mmap", None)
        if mmap_op is None:
            raise OSError(errno.ENODEV, f"{ph.name}: no mmap")
        length, prot, flags, offset = a[1], a[2], a[3], a[5]
        if offset % mmap.PAGESIZE:
            raise OSError(errno.EINVAL, f"mmap: offset {offset:#x} is not page aligned")
        # the file's mmap takes vma->vm_pgoff, the offset in pages
        pgoff = offset // mmap.PAGESIZE
        region = self._enter(prog, tid, n.id, lambda: mmap_op(length, prot, flags, pgoff))
        local = sc.pidfd_getfd(prog.pidfd, fd)
        try:
            os.pwrite(local, region[:], offset)
        finally:
            os.close(local)
        prog.mappings.append(_Mapping(ph.key, offset, region))
        return None

    def _unmapped(self, prog: Program) -> None:
        """Close our side of every region mapping the program no longer has (``munmap``,
        or a failed ``mmap``): the kernel's ``vma_close`` drops the owner's reference at
        the next entry."""
        vmas = {(v.inode, v.offset) for v in prog.aspace.vmas()}
        for m in list(prog.mappings):
            if (m.key[1], m.offset) not in vmas:
                prog.mappings.remove(m)
                m.region.close()

    # poll ---------------------------------------------------------------------------------

    def _revents(self, p: _PendingPoll) -> list[int]:
        """``do_poll`` once over ``p``'s descriptors: a simulated file by its ``poll``
        (``DEFAULT_POLLMASK`` without one), a real one by polling our copy of it."""
        out = [0] * len(p.fds)
        real: dict[int, int] = {}
        try:
            for i, (fd, events) in enumerate(p.fds):
                if fd < 0:
                    continue
                ph = self.files.lookup(p.tid, fd)
                if ph is None:
                    try:
                        real[sc.pidfd_getfd(p.prog.pidfd, fd)] = i
                    except OSError:
                        out[i] = select.POLLNVAL
                    continue
                poll = getattr(ph.ops, "poll", None)
                mask = DEFAULT_POLLMASK if poll is None else self._data_call(
                    p.prog, p.tid, p.nid, ph, poll
                )  # fmt: skip
                out[i] = int(mask) & (events | select.POLLERR | select.POLLHUP)
            if real:
                poller = select.poll()
                for local, i in real.items():
                    poller.register(local, p.fds[i][1])
                for local, ev in poller.poll(0):
                    out[real[local]] = ev
        finally:
            for local in real:
                os.close(local)
        return out

    def _answer_poll(self, p: _PendingPoll, revents: list[int]) -> None:
        raw = b"".join(
            struct.pack("=ihh", fd, ev, rev) for (fd, ev), rev in zip(p.fds, revents, strict=True)
        )
        p.prog.aspace.write(p.addr, raw)
        self.listener.reply(p.nid, sum(1 for r in revents if r))

    def _poll(self, n: sc.Notif, prog: Program, tid: int) -> object:
        """``poll``/``ppoll`` over a simulated file: answered at once when something is
        ready or the timeout is 0; else answered when it becomes ready (after a call of
        another thread or process) or at the timeout. ``ppoll``'s signal mask is not
        applied while we wait. Without a simulated file among the fds: the real kernel."""
        if not self.files.by_key:
            return None
        a = n.data.args
        addr, nfds = a[0], a[1]
        if not 0 < nfds <= 4096:
            return None
        try:
            raw = prog.aspace.read(addr, 8 * nfds)
            if n.data.nr == sc.NR_poll:
                ms = _s32(a[2])
                timeout = None if ms < 0 else ms / 1000
            elif a[2] == 0:
                timeout = None
            else:
                sec, nsec = struct.unpack("=qq", prog.aspace.read(a[2], 16))
                timeout = sec + nsec / 1e9
        except OSError:
            return None  # the real kernel answers the bad pointer
        fds = [(fd, ev & 0xFFFF) for fd, ev, _ in struct.iter_unpack("=ihh", raw)]
        if not any(fd >= 0 and self.files.lookup(tid, fd) for fd, _ in fds):
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        p = _PendingPoll(n.id, prog, tid, addr, fds, deadline)
        revents = self._revents(p)
        if any(revents) or timeout == 0:
            self._answer_poll(p, revents)
        else:
            self._polls.append(p)
        return _SENT

    def _poll_timeout(self) -> int | None:
        if not self._polls:
            return None
        # real descriptors in a waiting poll wake no one here: look again every 10 ms
        now = time.monotonic()
        soonest = min((p.deadline for p in self._polls if p.deadline is not None), default=now + 1)
        return max(0, min(10, int((soonest - now) * 1000) + 1))

    def _recheck_polls(self) -> None:
        now = time.monotonic()
        for p in list(self._polls):
            try:
                if not self.listener.id_valid(p.nid):
                    self._polls.remove(p)
                    continue
                revents = self._revents(p)
                if any(revents) or (p.deadline is not None and now >= p.deadline):
                    self._polls.remove(p)
                    self._answer_poll(p, revents)
            except Exception as e:  # the program must never wait forever on us
                self._polls.remove(p)
                log.error("poll of thread %d: %s", p.tid, e)
                self.listener.fail(
                    p.nid, e.errno if isinstance(e, OSError) and e.errno else errno.EIO
                )

    def close(self) -> None:
        for prog in list(self.programs.values()):
            self._exited(prog)
        self.files.close()
        os.close(self.main_pidfd)
        self.listener.close()
        if self._debugfs is not None:
            self._debugfs.close()


class LaunchError(Exception):
    """The program could not be started under the bridge (nothing of it ran)."""


def launch(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[int, sc.Listener]:
    """Fork; in the child install the filter and ``exec`` ``argv``. The child's pid and
    the listener; :class:`LaunchError` if the program is not found or the filter cannot be
    installed (the child then exits without running anything)."""
    if os.uname().machine != "x86_64":
        raise LaunchError(f"the bridge's filter is for x86_64, not {os.uname().machine}")
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0])
    if program is None or not os.access(program, os.X_OK):
        raise LaunchError(f"{argv[0]}: command not found or not executable")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 126
        try:
            ours.close()
            listener = sc.install_filter(sc.filter_program())
            socket.send_fds(theirs, [b"L"], [listener])
            os.close(listener)
            theirs.close()
            code = 127
            os.execve(program, list(argv), os.environ if env is None else env)
        except OSError as e:
            with contextlib.suppress(OSError):
                theirs.sendall(b"E" + str(e.strerror or e).encode())
        os._exit(code)
    theirs.close()
    try:
        msg, fds, _, _ = socket.recv_fds(ours, 4096, 1)
    finally:
        ours.close()
    if not fds:
        os.waitpid(pid, 0)
        raise LaunchError(msg[1:].decode() or "the launcher died before installing the filter")
    return pid, sc.Listener(fds[0])


def run(argv: Sequence[str], kernel: Host, env: dict[str, str] | None = None) -> int:
    """Run ``argv`` against ``kernel``; its exit status. Terminal signals (``SIGINT``,
    ``SIGQUIT``) reach the program from the terminal and are ignored here; ``SIGTERM`` and
    ``SIGHUP`` sent to the supervisor are passed on to the program."""
    pid, listener = launch(argv, env)
    sup = Supervisor(kernel, listener, pid)

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    sigs = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.getsignal(s) for s in sigs}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        return sup.serve()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sup.close()
