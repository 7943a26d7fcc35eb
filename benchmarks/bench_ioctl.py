"""The cost of the ioctl entry on the ``sim`` backend, against ``fcntl.ioctl`` on a real fd.

    python benchmarks/bench_ioctl.py

* an unknown iommufd command (the kernel reads the ``u32 size``, then answers ENOTTY) next
  to ``fcntl.ioctl`` of the same request on an ``eventfd`` (the real kernel's ENOTTY: the
  floor of any ioctl from Python);
* ``IOMMU_OPTION`` GET (read the size, read the struct, write the answer back) next to the
  same floor;
* ``IOMMU_IOAS_MAP`` + ``IOMMU_IOAS_UNMAP`` of one 4 KiB area (FIXED_IOVA, no domain) next to
  a bare ``SortedDict`` insert + delete (the structure the areas live in).

CPU time per call, best of several rounds; the ratio is what the goals are stated in. Last, what
the kernel lock costs a single thread: its two uncontended acquire/release pairs in one
MAP+UNMAP, against the pair.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import sys
from collections.abc import Callable

from sortedcontainers import SortedDict
from timing import cpu_per_call

from ioasid import uapi
from ioasid.backends import sim


def per_call(fn: Callable[[], object], n: int = 20000, rounds: int = 7) -> float:
    """Best CPU microseconds per call."""
    return cpu_per_call(fn, n, rounds) * 1e6


def main() -> int:
    print(f"python {platform.python_version()} on {platform.machine()}, nproc {os.cpu_count()}")
    print("command: python benchmarks/bench_ioctl.py")
    h = sim.open("/dev/iommu")
    ev = os.eventfd(0)
    hole = (uapi.IOMMU_DESTROY & ~0xFF) | 0x9F  # a number inside the table with no entry
    buf = uapi.iommu_destroy(size=8).to_bytearray()

    def sim_enotty() -> None:
        try:  # noqa: SIM105 (suppress() would add its own cost to both sides)
            h.ioctl(hole, buf)
        except OSError:
            pass

    def real_enotty() -> None:
        try:  # noqa: SIM105 (suppress() would add its own cost to both sides)
            fcntl.ioctl(ev, hole, buf, True)
        except OSError:
            pass

    opt = uapi.iommu_option(
        size=ctypes.sizeof(uapi.iommu_option),
        option_id=uapi.IOMMU_OPTION_RLIMIT_MODE,
        op=uapi.IOMMU_OPTION_OP_GET,
    ).to_bytearray()
    alloc = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc)).to_bytearray()
    h.ioctl(uapi.IOMMU_IOAS_ALLOC, alloc)
    ioas_id = uapi.iommu_ioas_alloc.from_bytes(alloc).out_ioas_id
    flags = (
        uapi.IOMMU_IOAS_MAP_FIXED_IOVA
        | uapi.IOMMU_IOAS_MAP_READABLE
        | uapi.IOMMU_IOAS_MAP_WRITEABLE
    )
    mapcmd = uapi.iommu_ioas_map(
        size=ctypes.sizeof(uapi.iommu_ioas_map),
        flags=flags,
        ioas_id=ioas_id,
        user_va=0x7F0000000000,
        length=4096,
        iova=1 << 32,
    ).to_bytearray()
    unmapcmd = uapi.iommu_ioas_unmap(
        size=ctypes.sizeof(uapi.iommu_ioas_unmap), ioas_id=ioas_id, iova=1 << 32, length=4096
    ).to_bytearray()

    def map_unmap() -> None:
        h.ioctl(uapi.IOMMU_IOAS_MAP, mapcmd)
        h.ioctl(uapi.IOMMU_IOAS_UNMAP, unmapcmd)

    sd: SortedDict = SortedDict((k << 13, (k, 0)) for k in range(1000))

    def sorted_dict() -> None:
        sd[1 << 32] = (1, 2)
        del sd[1 << 32]

    pair = per_call(map_unmap, n=5000)
    sdict = per_call(sorted_dict)
    floor = per_call(real_enotty)
    enotty = per_call(sim_enotty)
    option = per_call(lambda: h.ioctl(uapi.IOMMU_OPTION, opt))
    lock = sim.kernel().lock

    def take_lock() -> None:
        with lock:
            pass

    # a pair enters the kernel twice; a stand-in lock written in Python would cost more
    # than the C RLock it replaces, so the lock is timed on its own
    lock_cost = 2 * (per_call(take_lock) - per_call(lambda: None))
    print(f"fcntl.ioctl ENOTTY on an eventfd      {floor:7.2f} us")
    print(f"unknown iommufd command (ENOTTY)      {enotty:7.2f} us  (x{enotty / floor:5.1f})")
    print(f"IOMMU_OPTION GET                      {option:7.2f} us  (x{option / floor:5.1f})")
    print(f"SortedDict insert+delete              {sdict:7.2f} us")
    print(f"IOMMU_IOAS_MAP+UNMAP 4 KiB, 1 area    {pair:7.2f} us  (x{pair / sdict:5.1f})")
    print(
        f"the kernel lock: {lock_cost:.2f} us of a MAP+UNMAP pair "
        f"({lock_cost / pair * 100:.1f} % of it, single thread)"
    )
    h.close()
    os.close(ev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
