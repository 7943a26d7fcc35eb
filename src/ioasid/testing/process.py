"""Processes as a test sees them, on either backend.

A kernel selftest that forks and reads ``/proc/<pid>/status`` cannot run unchanged on the
embedded kernel: ``fork()`` would copy the whole simulator. These helpers keep the test body
the same: on ``linux`` they fork and read ``/proc``; on ``sim`` the "child" is a simulated
task of the same kernel (same user, its own mm) that issues the ioctls inside ``body``, and
``VmPin``/``VmLck`` come from the simulated kernel's counters.
"""

from __future__ import annotations

import ctypes
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

from ioasid.hw.memory import PAGE_SIZE

CAP_IPC_LOCK = 14
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def getpid(backend: ModuleType) -> int:
    """The pid the kernel sees as the caller."""
    if backend.NAME == "sim":
        return int(backend.kernel().processes.current.pid)
    return os.getpid()


def run_in_child(backend: ModuleType, body: Callable[[], None]) -> None:
    """Run ``body`` as a forked child and wait for it; its assertion failures fail the
    caller. On ``sim`` the child's mm is gone once ``body`` returns, as after ``exit()``:
    pages it mapped can no longer be pinned through it (EFAULT)."""
    if backend.NAME == "sim":
        procs = backend.kernel().processes
        child = procs.fork()
        try:
            with procs.running(child):
                body()
        finally:
            procs.exit(child)
        return
    rfd, wfd = os.pipe()
    child = os.fork()
    if not child:
        os.close(rfd)
        status = 0
        try:
            body()
        except BaseException:
            os.write(wfd, traceback.format_exc().encode())
            status = 1
        os._exit(status)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        report = r.read().decode()
    pid, status = os.waitpid(child, 0)
    assert pid == child
    assert os.waitstatus_to_exitcode(status) == 0, f"child failed:\n{report}"


@contextmanager
def child_running(backend: ModuleType, body: Callable[[], None]) -> Iterator[None]:
    """A forked child that runs ``body`` and then stays alive (its mm present) until the
    ``with`` block ends; then it exits and is reaped. ``body``'s failures fail the caller.

    The C selftests do this with an eventfd (child → parent: "done") and a pipe (parent →
    child: "exit now"); on ``linux`` this does the same. On ``sim`` the child is a
    simulated task whose mm dies when the block ends.
    """
    if backend.NAME == "sim":
        procs = backend.kernel().processes
        child = procs.fork()
        try:
            with procs.running(child):
                body()
            yield
        finally:
            procs.exit(child)
        return
    status_r, status_w = os.pipe()
    release_r, release_w = os.pipe()
    pid = os.fork()
    if not pid:
        os.close(status_r)
        os.close(release_w)
        code = 0
        try:
            body()
            os.write(status_w, b"ok")
        except BaseException:
            os.write(status_w, traceback.format_exc().encode())
            code = 1
        os.close(status_w)
        os.read(release_r, 1)
        os._exit(code)
    os.close(status_w)
    os.close(release_r)
    try:
        with os.fdopen(status_r, "rb") as r:
            report = r.read().decode()
        assert report == "ok", f"child failed:\n{report}"
        yield
    finally:
        os.close(release_w)
        os.waitpid(pid, 0)


def _proc_status(pid: int, var: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == var:
                    return int(fields[1])
    except OSError:
        pass
    return -1


def _reap(backend: ModuleType) -> None:
    """Let the simulated kernel see descriptors closed with a plain ``os.close`` (e.g. an
    access fd) before its counters are read."""
    k = backend.kernel()
    with k.lock:
        k.anon_inodes.reap()


def _vm_kb(backend: ModuleType, pid: int, var: str, counter: str) -> int:
    if backend.NAME == "sim":
        _reap(backend)
        mm = backend.kernel().processes.tasks[pid].mm
        return int(getattr(mm, counter)) * PAGE_SIZE // 1024
    return _proc_status(pid, var)


def vm_pinned_kb(backend: ModuleType, pid: int) -> int:
    """``VmPin:`` of ``pid`` in kB (``mm->pinned_vm``)."""
    return _vm_kb(backend, pid, "VmPin:", "pinned_vm")


def vm_locked_kb(backend: ModuleType, pid: int) -> int:
    """``VmLck:`` of ``pid`` in kB (``mm->locked_vm``)."""
    return _vm_kb(backend, pid, "VmLck:", "locked_vm")


def capable(backend: ModuleType, cap: int) -> bool:
    """Whether the kernel would find the caller ``capable(cap)``."""
    if backend.NAME == "sim":
        return bool(backend.kernel().processes.current.capable(cap))
    from ioasid.kernel.process import effective_caps

    return bool(effective_caps() >> cap & 1)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def _capget() -> tuple[_CapHeader, ctypes.Array[_CapData]]:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return header, data


def _capset(header: _CapHeader, data: ctypes.Array[_CapData]) -> None:
    if _libc.capset(ctypes.byref(header), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def drop_capability(cap: int = CAP_IPC_LOCK) -> int:
    """Clear ``cap`` (< 32) from this process's effective set, as libcap's ``cap_set_flag``
    + ``cap_set_proc`` do in the selftests' ``drop_cap_ipc_lock()``; returns the previous
    effective word for :func:`restore_capabilities`. Both backends see it: the simulated
    kernel reads the real process's capabilities at each check."""
    header, data = _capget()
    saved = int(data[0].effective)
    data[0].effective &= ~(1 << cap)
    _capset(header, data)
    return saved


def restore_capabilities(saved: int) -> None:
    """Put back the effective word :func:`drop_capability` returned (the permitted set
    still holds what was dropped)."""
    header, data = _capget()
    data[0].effective = saved
    _capset(header, data)


@contextmanager
def without_capability(cap: int = CAP_IPC_LOCK) -> Iterator[None]:
    """Run the block without ``cap`` in the effective set: e.g. without CAP_IPC_LOCK, so
    that pinned pages are charged (``IOPT_PAGES_ACCOUNT_USER``), as for an unprivileged VMM."""
    saved = drop_capability(cap)
    try:
        yield
    finally:
        restore_capabilities(saved)
