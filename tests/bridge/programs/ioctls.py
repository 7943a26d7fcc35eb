"""Raw iommufd calls with bad input, printing what each returned: run through ``ioasid run``
or on the real kernel (``os.open`` of /dev/iommu, ``ioctl`` on raw pointers), and with
``--inproc`` on the sim backend in this process; the outputs must be equal.

    ioctls.py [--inproc] [/dev/vfio/devices/vfioN (the edu device; default vfio0)]
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from collections.abc import Callable

from ioasid import uapi

INPROC = "--inproc" in sys.argv
PAGE = mmap.PAGESIZE
BASE = uapi.MOCK_APERTURE_START

if INPROC:
    from ioasid.backends import sim
    from ioasid.testing.process import vm_pinned_kb

    sim.kernel().processes.current.as_root = True
    handle = sim.open("/dev/iommu")
    fd = handle.fileno()
    handles = {fd: handle}

    def ioctl(request: int, addr: int, on: int | None = None) -> int:
        return int(handles[fd if on is None else on].ioctl(request, addr))

    def open_dev(path: str) -> int:
        h = sim.open(path)
        handles[h.fileno()] = h
        return h.fileno()

    def vm_pin() -> int:
        return vm_pinned_kb(sim, os.getpid())

else:
    fd = os.open("/dev/iommu", os.O_RDWR)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]

    def ioctl(request: int, addr: int, on: int | None = None) -> int:
        r = int(libc.ioctl(fd if on is None else on, request, addr))
        if r < 0:
            raise OSError(ctypes.get_errno(), "ioctl")
        return r

    def open_dev(path: str) -> int:
        return os.open(path, os.O_RDWR)

    def vm_pin() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmPin:"))


def step(name: str, fn: Callable[[], object]) -> None:
    try:
        print(f"{name}: {fn()}")
    except OSError as e:
        print(f"{name}: errno {e.errno}")


keep: list[object] = []


def call(request: int, st: ctypes.Structure) -> ctypes.Structure:
    ioctl(request, ctypes.addressof(st))
    return st


alloc = call(
    uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
)
ioas = alloc.out_ioas_id
print("ioas:", ioas)
buf = mmap.mmap(-1, 4 * PAGE)
buf[:5] = b"hello"
va = ctypes.addressof(ctypes.c_char.from_buffer(buf))
keep.append(buf)
hole = mmap.mmap(-1, PAGE)
hole_va = ctypes.addressof(ctypes.c_char.from_buffer(hole))
hole.close()


def ioas_map(user_va: int, iova: int, size: int = ctypes.sizeof(uapi.iommu_ioas_map)) -> int:
    flags = (
        uapi.IOMMU_IOAS_MAP_FIXED_IOVA
        | uapi.IOMMU_IOAS_MAP_READABLE
        | uapi.IOMMU_IOAS_MAP_WRITEABLE
    )
    st = uapi.iommu_ioas_map(
        size=size, flags=flags, ioas_id=ioas, user_va=user_va, length=PAGE, iova=iova
    )
    return ioctl(uapi.IOMMU_IOAS_MAP, ctypes.addressof(st))


step("map", lambda: ioas_map(va, BASE))
step("map unmapped va, no domain", lambda: ioas_map(hole_va, BASE + 2 * PAGE))
step("map NULL va, no domain", lambda: ioas_map(0, BASE + 3 * PAGE))
step("map size 4", lambda: ioas_map(va, BASE + 4 * PAGE, size=4))
step("ioctl on unmapped struct", lambda: ioctl(uapi.IOMMU_IOAS_ALLOC, hole_va))
step("ioctl on NULL", lambda: ioctl(uapi.IOMMU_IOAS_ALLOC, 0))
step("unknown ioctl", lambda: ioctl(uapi.IOMMU_IOAS_ALLOC + 0x40, va))

TEST_SIZE = ctypes.sizeof(uapi.iommu_test_cmd)


def test_cmd(op: int, obj_id: int, **fields: object) -> uapi.iommu_test_cmd:
    cmd = uapi.iommu_test_cmd(size=TEST_SIZE, op=op, id=obj_id)
    for path, value in fields.items():
        sub, name = path.split("__")
        setattr(getattr(cmd, sub), name, value)
    keep.append(cmd)
    return call(uapi.IOMMU_TEST_CMD, cmd)  # type: ignore[return-value]


step(
    "mock domain on an IOAS with a hole mapped",
    lambda: test_cmd(uapi.IOMMU_TEST_OP_MOCK_DOMAIN, ioas).mock_domain.out_stdev_id,
)
ioas2 = call(
    uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
).out_ioas_id
ioas = ioas2
step("map into the second IOAS", lambda: ioas_map(va, BASE))
stdev = test_cmd(uapi.IOMMU_TEST_OP_MOCK_DOMAIN, ioas).mock_domain.out_stdev_id
print("mock domain:", stdev)
step("VmPin kB", vm_pin)
step("map unmapped va with a domain", lambda: ioas_map(hole_va, BASE + 2 * PAGE))
access = test_cmd(
    uapi.IOMMU_TEST_OP_CREATE_ACCESS, ioas, create_access__flags=0
).create_access.out_access_fd
probe = os.open("/dev/null", os.O_RDONLY)
print("access fd is below the next free number:", access < probe)
os.close(probe)
out = ctypes.create_string_buffer(5)
step(
    "access read",
    lambda: (
        test_cmd(
            uapi.IOMMU_TEST_OP_ACCESS_RW,
            access,
            access_rw__iova=BASE,
            access_rw__length=5,
            access_rw__uptr=ctypes.addressof(out),
        ),
        out.raw,
    )[1],
)
step(
    "access read into a hole",
    lambda: test_cmd(
        uapi.IOMMU_TEST_OP_ACCESS_RW,
        access,
        access_rw__iova=BASE,
        access_rw__length=5,
        access_rw__uptr=hole_va,
    ),
)
step(
    "access rw on a non-access fd",
    lambda: test_cmd(
        uapi.IOMMU_TEST_OP_ACCESS_RW,
        fd,
        access_rw__iova=BASE,
        access_rw__length=5,
        access_rw__uptr=ctypes.addressof(out),
    ),
)
destroy_stdev = uapi.iommu_destroy(size=ctypes.sizeof(uapi.iommu_destroy), id=stdev)
step("destroy the mock domain", lambda: ioctl(uapi.IOMMU_DESTROY, ctypes.addressof(destroy_stdev)))
destroy = uapi.iommu_destroy(size=ctypes.sizeof(uapi.iommu_destroy), id=ioas)
step(
    "destroy the IOAS with an access", lambda: ioctl(uapi.IOMMU_DESTROY, ctypes.addressof(destroy))
)
dup = os.dup(access)
os.close(access)
step(
    "destroy it while a dup of the access fd lives",
    lambda: ioctl(uapi.IOMMU_DESTROY, ctypes.addressof(destroy)),
)
os.close(dup)
step(
    "destroy it after the last close", lambda: ioctl(uapi.IOMMU_DESTROY, ctypes.addressof(destroy))
)

# descriptors inside structs: resolved in the caller's table, of the right kind or not
ioas3 = call(
    uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
)
test_cmd(uapi.IOMMU_TEST_OP_MOCK_DOMAIN, ioas3.out_ioas_id)
memfd = os.memfd_create("buffer")
os.ftruncate(memfd, PAGE)
dev = open_dev(next((a for a in sys.argv[1:] if a.startswith("/dev/")), "/dev/vfio/devices/vfio0"))
closed = os.open("/dev/null", os.O_RDONLY)
os.close(closed)


def map_file(file_fd: int) -> int:
    st = uapi.iommu_ioas_map_file(
        size=ctypes.sizeof(uapi.iommu_ioas_map_file),
        flags=uapi.IOMMU_IOAS_MAP_FIXED_IOVA | uapi.IOMMU_IOAS_MAP_READABLE,
        ioas_id=ioas3.out_ioas_id,
        fd=file_fd,
        length=PAGE,
        iova=BASE + 8 * PAGE,
    )
    return ioctl(uapi.IOMMU_IOAS_MAP_FILE, ctypes.addressof(st))


step("MAP_FILE of a closed fd", lambda: map_file(closed))
step("MAP_FILE of the iommufd itself", lambda: map_file(fd))
step("MAP_FILE of a memfd", lambda: map_file(memfd))


def bind(iommufd: int) -> int:
    st = uapi.vfio_device_bind_iommufd(
        argsz=ctypes.sizeof(uapi.vfio_device_bind_iommufd), iommufd=iommufd
    )
    ioctl(uapi.VFIO_DEVICE_BIND_IOMMUFD, ctypes.addressof(st), on=dev)
    return int(st.out_devid)


step("BIND_IOMMUFD to a memfd", lambda: bind(memfd))
step("BIND_IOMMUFD to a closed fd", lambda: bind(closed))
step("BIND_IOMMUFD", lambda: bind(fd))
