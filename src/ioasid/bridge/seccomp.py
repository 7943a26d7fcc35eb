"""Seccomp user notification (``seccomp_unotify(2)``), x86_64: the filter and the listener.

The filter is classic BPF over ``struct seccomp_data``. It sends to the supervisor only what
the bridge may have to serve and lets everything else run natively:

* ``open``/``openat``/``openat2`` (the path decides: a simulated device node, a synthesised
  ``/proc`` file, the fault-injection knobs; anything else is continued);
* ``ioctl`` whose ``_IOC_TYPE`` is ``';'`` (iommufd's and VFIO's type);
* ``mmap`` of a file (fd not -1), ``read``/``write``/``pread64``/``pwrite64`` on fd ≥ 3,
  ``poll``/``ppoll`` (continued at once unless an fd is one the bridge serves);
* ``execve``/``execveat`` and ``exit_group``: the program's mm is about to go (continued
  after the supervisor took note).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from dataclasses import dataclass, field

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

NR_read, NR_write, NR_open, NR_poll, NR_mmap, NR_ioctl = 0, 1, 2, 7, 9, 16
NR_pread64, NR_pwrite64, NR_execve, NR_exit_group = 17, 18, 59, 231
NR_openat, NR_ppoll, NR_seccomp, NR_execveat = 257, 271, 317, 322
NR_pidfd_open, NR_openat2, NR_pidfd_getfd = 434, 437, 438

IOC_TYPE_IOMMUFD = ord(";")
"""``IOMMUFD_TYPE`` and ``VFIO_TYPE`` are both ``';'``."""

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_ADDFD_FLAG_SETFD = 1
SECCOMP_ADDFD_FLAG_SEND = 2
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1
PR_SET_NO_NEW_PRIVS = 38

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102
SECCOMP_IOCTL_NOTIF_ADDFD = 0x40182103
SECCOMP_IOCTL_NOTIF_SET_FLAGS = 0x40082104

# classic BPF
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K, _AND_K, _RSH_K = 0x20, 0x15, 0x35, 0x06, 0x54, 0x74
_OFF_NR, _OFF_ARCH = 0, 4


def _arg_lo(i: int) -> int:
    """Offset of the low 32 bits of syscall argument ``i`` in ``struct seccomp_data``."""
    return 16 + 8 * i


@dataclass
class _Bpf:
    """A classic-BPF program with forward jumps to named labels."""

    ins: list[tuple[int, int | str, int | str, int]] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def op(self, code: int, k: int = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        self.ins.append((code, jt, jf, k))

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (code, jt, jf, k) in enumerate(self.ins):
            rel = [self.labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf)]
            out += struct.pack("=HBBI", code, rel[0], rel[1], k & 0xFFFFFFFF)
        return bytes(out)


def filter_program() -> bytes:
    """The bridge's filter (see the module docstring for what it traps)."""
    a = _Bpf()
    a.op(_LD_W_ABS, _OFF_ARCH)
    a.op(_JEQ_K, AUDIT_ARCH_X86_64, 0, "allow")
    a.op(_LD_W_ABS, _OFF_NR)
    a.op(_JGE_K, X32_SYSCALL_BIT, "allow", 0)
    for nr in (
        NR_open,
        NR_openat,
        NR_openat2,
        NR_execve,
        NR_execveat,
        NR_exit_group,
        NR_poll,
        NR_ppoll,
    ):
        a.op(_JEQ_K, nr, "notify", 0)
    a.op(_JEQ_K, NR_ioctl, "ioctl", 0)
    a.op(_JEQ_K, NR_mmap, "mmap", 0)
    for nr in (NR_read, NR_write, NR_pread64, NR_pwrite64):
        a.op(_JEQ_K, nr, "rw", 0)
    a.op(_RET_K, SECCOMP_RET_ALLOW)
    a.label("ioctl")
    a.op(_LD_W_ABS, _arg_lo(1))
    a.op(_RSH_K, 8)
    a.op(_AND_K, 0xFF)
    a.op(_JEQ_K, IOC_TYPE_IOMMUFD, "notify", "allow")
    a.label("mmap")
    a.op(_LD_W_ABS, _arg_lo(4))
    a.op(_JEQ_K, 0xFFFFFFFF, "allow", "notify")
    a.label("rw")
    a.op(_LD_W_ABS, _arg_lo(0))
    a.op(_JGE_K, 3, "notify", "allow")
    a.label("notify")
    a.op(_RET_K, SECCOMP_RET_USER_NOTIF)
    a.label("allow")
    a.op(_RET_K, SECCOMP_RET_ALLOW)
    return a.assemble()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter(program: bytes) -> int:
    """``seccomp(SET_MODE_FILTER, NEW_LISTENER | WAIT_KILLABLE_RECV)`` on this thread:
    returns the listener fd. ``no_new_privs`` is set only if the kernel insists (``EACCES``
    without ``CAP_SYS_ADMIN``); ``WAIT_KILLABLE_RECV`` is dropped on kernels before 5.19."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    for _ in range(3):
        r = _syscall(NR_seccomp, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
        if r >= 0:
            return int(r)
        err = ctypes.get_errno()
        if err == 13:  # EACCES: neither CAP_SYS_ADMIN nor no_new_privs
            _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        elif err == 22 and flags & SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV:
            flags &= ~SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        else:
            break
    err = ctypes.get_errno()
    why = {
        16: "the process is already under a seccomp listener (EBUSY): nested "
        "`ioasid run`, or a sandbox that supervises its children the same way",
        13: "seccomp filters need CAP_SYS_ADMIN or no_new_privs (EACCES)",
        22: "this kernel has no seccomp user notification (EINVAL; Linux >= 5.0 needed)",
        38: "this kernel has no seccomp (ENOSYS)",
    }.get(err, os.strerror(err))
    raise OSError(err, f"cannot install the seccomp filter: {why}")


class SeccompData(ctypes.Structure):
    _fields_ = [
        ("nr", ctypes.c_int),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    ]


class Notif(ctypes.Structure):
    """``struct seccomp_notif``: ``pid`` is the calling thread's tid."""

    _fields_ = [
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("data", SeccompData),
    ]


class NotifResp(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("val", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    ]


class NotifAddfd(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("srcfd", ctypes.c_uint32),
        ("newfd", ctypes.c_uint32),
        ("newfd_flags", ctypes.c_uint32),
    ]


class Listener:
    """The supervisor's end: receive a notification, answer it, add an fd to its caller."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.notif = Notif()
        self._notif_addr = ctypes.addressof(self.notif)
        self._notif_size = ctypes.sizeof(Notif)
        self._resp = NotifResp()
        self._resp_addr = ctypes.addressof(self._resp)
        self._addfd = NotifAddfd()
        self._addfd_addr = ctypes.addressof(self._addfd)
        # before 6.6 there is no SYNC_WAKE_UP: the supervisor's wake-up is merely slower
        with contextlib.suppress(OSError):
            self._call(SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)

    def _call(self, request: int, arg: int) -> int:
        r = _ioctl(self.fd, request, arg)
        if r < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"seccomp listener ioctl {request:#x}: {os.strerror(err)}")
        return int(r)

    def recv(self) -> Notif | None:
        """The next notification, or ``None`` if its caller vanished meanwhile."""
        ctypes.memset(self._notif_addr, 0, self._notif_size)
        try:
            self._call(SECCOMP_IOCTL_NOTIF_RECV, self._notif_addr)
        except OSError as e:
            if e.errno in (2, 4, 11):  # ENOENT (caller killed), EINTR, EAGAIN
                return None
            raise
        return self.notif

    def _send(self, nid: int, val: int, error: int, flags: int) -> None:
        r = self._resp
        r.id, r.val, r.error, r.flags = nid, val, error, flags
        try:
            self._call(SECCOMP_IOCTL_NOTIF_SEND, self._resp_addr)
        except OSError as e:
            if e.errno != 2:  # ENOENT: the caller was killed while we served it
                raise

    def reply(self, nid: int, val: int) -> None:
        """The system call returns ``val``."""
        self._send(nid, val, 0, 0)

    def fail(self, nid: int, err: int) -> None:
        """The system call fails with ``err``."""
        self._send(nid, 0, -err, 0)

    def continue_(self, nid: int) -> None:
        """The system call runs in the real kernel, as if never trapped."""
        self._send(nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)

    def addfd(self, nid: int, srcfd: int, cloexec: bool, send: bool = False) -> int:
        """``SECCOMP_IOCTL_NOTIF_ADDFD``: install ``srcfd`` at the caller's lowest free
        number; with ``send`` the system call also returns that number (atomically)."""
        a = self._addfd
        a.id, a.srcfd, a.newfd = nid, srcfd, 0
        a.flags = SECCOMP_ADDFD_FLAG_SEND if send else 0
        a.newfd_flags = os.O_CLOEXEC if cloexec else 0
        return self._call(SECCOMP_IOCTL_NOTIF_ADDFD, self._addfd_addr)

    def id_valid(self, nid: int) -> bool:
        v = ctypes.c_uint64(nid)
        return bool(_ioctl(self.fd, SECCOMP_IOCTL_NOTIF_ID_VALID, ctypes.addressof(v)) == 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def pidfd_open(pid: int) -> int:
    r = _syscall(NR_pidfd_open, pid, 0)
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pidfd_open({pid}): {os.strerror(err)}")
    return int(r)


def pidfd_getfd(pidfd: int, fd: int) -> int:
    """A descriptor of this process for the open file ``fd`` of the process ``pidfd``
    (the same ``struct file``: offsets and flags are shared); ``OSError`` if not open."""
    r = _syscall(NR_pidfd_getfd, pidfd, fd, 0)
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pidfd_getfd(fd {fd}): {os.strerror(err)}")
    return int(r)


_inotify_init1 = _libc.inotify_init1
_inotify_add_watch = _libc.inotify_add_watch
_inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_inotify_rm_watch = _libc.inotify_rm_watch

IN_DELETE_SELF = 0x400
IN_IGNORED = 0x8000


def inotify_init() -> int:
    r = _inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if r < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    return int(r)


def inotify_watch_fd(ino: int, fd: int) -> int:
    """Watch the inode behind this process's ``fd``: an unlinked file's watch ends
    (``IN_IGNORED``) when its dentry dies — when the last open file and mapping of it go."""
    r = _inotify_add_watch(ino, f"/proc/self/fd/{fd}".encode(), IN_DELETE_SELF)
    if r < 0:
        raise OSError(ctypes.get_errno(), "inotify_add_watch")
    return int(r)
