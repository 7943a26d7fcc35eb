"""Processes, threads, exec and the synthesised files, seen from a program under
``ioasid run``. ``procs.py CASE``; prints what it saw, one fact a line."""

from __future__ import annotations

import ctypes
import os
import sys
import threading

from ioasid import uapi

libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


def ioas_alloc(fd: int) -> int:
    st = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
    if libc.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, ctypes.addressof(st)) < 0:
        return -ctypes.get_errno()
    return int(st.out_ioas_id)


def fork() -> None:
    fd = os.open("/dev/iommu", os.O_RDWR)
    print("parent", ioas_alloc(fd), flush=True)
    pid = os.fork()
    if pid == 0:
        own = os.open("/dev/iommu", os.O_RDWR)
        print("child own", ioas_alloc(own), flush=True)
        print("child inherited", ioas_alloc(fd), flush=True)
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status))
    print("parent after", ioas_alloc(fd))


def threads() -> None:
    fd = os.open("/dev/iommu", os.O_RDWR)
    ids: list[int] = []

    def work() -> None:
        got = [ioas_alloc(fd) for _ in range(25)]
        ids.extend(got)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("ids", len(ids), "distinct", len(set(ids)), "min", min(ids), "max", max(ids))


def exec_() -> None:
    kept = os.open("/dev/iommu", os.O_RDWR)
    gone = os.open("/dev/iommu", os.O_RDWR | os.O_CLOEXEC)
    print("before", ioas_alloc(kept), ioas_alloc(gone), flush=True)
    os.set_inheritable(kept, True)
    os.execv(sys.executable, [sys.executable, __file__, "after_exec", str(kept), str(gone)])


def after_exec() -> None:
    kept, gone = int(sys.argv[2]), int(sys.argv[3])
    print("kept", ioas_alloc(kept))
    print("gone", ioas_alloc(gone))
    new = os.open("/dev/iommu", os.O_RDWR)
    print("new fd is the freed number", new == gone, ioas_alloc(new))


def failnth() -> None:
    tid = threading.get_native_id()
    fd = os.open(f"/proc/self/task/{tid}/fail-nth", os.O_RDWR)
    print("read unarmed", os.pread(fd, 16, 0))
    print("write 5", os.pwrite(fd, b"5", 0))
    print("read", os.pread(fd, 16, 0), os.pread(fd, 16, 1), os.pread(fd, 1, 0))
    for bad in (b"abc", b"-1", b"4294967296"):
        try:
            os.pwrite(fd, bad, 0)
        except OSError as e:
            print("write", bad, "errno", e.errno)
    other = os.open("/proc/thread-self/fail-nth", os.O_RDWR)
    print("thread-self", os.read(other, 16), os.read(other, 16))
    os.write(other, b"0x10\n")
    print("hex", os.pread(fd, 16, 0))
    os.pwrite(fd, b"0", 0)
    print("disarmed", os.pread(fd, 16, 0))


def debugfs() -> None:
    names = os.listdir("/sys/kernel/debug")
    print("fail*", sorted(n for n in names if n.startswith("fail")))
    d = os.open("/sys/kernel/debug/", os.O_RDONLY | os.O_DIRECTORY)
    knob = os.open("failslab/ignore-gfp-wait", os.O_WRONLY, dir_fd=d)
    print("wrote", os.write(knob, b"N"))
    os.close(knob)
    with open("/sys/kernel/debug/failslab/ignore-gfp-wait") as f:
        print("reads back", f.read().strip())


def status() -> None:
    with open("/proc/self/status") as f:
        text = f.read()
    print([line.split()[0] for line in text.splitlines() if line.startswith(("VmPin", "VmLck"))])
    print("Name line kept", any(line.startswith("Name:") for line in text.splitlines()))


def mmap_() -> None:
    import mmap

    fd = os.open("/dev/iommu", os.O_RDWR)
    for what, flags, prot in (
        ("private", mmap.MAP_PRIVATE, mmap.PROT_READ),
        ("exec", mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_EXEC),
        ("no object at 0", mmap.MAP_SHARED, mmap.PROT_READ),
    ):
        try:
            mmap.mmap(fd, mmap.PAGESIZE, flags=flags, prot=prot)
            print(what, "mapped")
        except OSError as e:
            print(what, "errno", e.errno)
    for what, call in (("read", lambda: os.read(fd, 8)), ("write", lambda: os.write(fd, b"x"))):
        try:
            print(what, call())
        except OSError as e:
            print(what, "errno", e.errno)


{
    "mmap": mmap_,
    "fork": fork,
    "threads": threads,
    "exec": exec_,
    "after_exec": after_exec,
    "failnth": failnth,
    "debugfs": debugfs,
    "status": status,
}[sys.argv[1]]()
