"""Live migration of a VM with a passed-through device: IOMMU dirty tracking.

While the VM runs, its RAM is copied to the destination in rounds; pages written since the
last round are sent again, until what is left is small enough to stop the VM and copy the
rest (stop-and-copy). The vCPUs' writes are KVM's dirty log; the device's DMA writes are the
IOMMU's: a HWPT allocated with ``IOMMU_HWPT_ALLOC_DIRTY_TRACKING``, tracking switched on
with ``IOMMU_HWPT_SET_DIRTY_TRACKING``, and each round's ``IOMMU_HWPT_GET_DIRTY_BITMAP``
read-and-clear. This is what QEMU's ``vfio-iommufd`` migration does.

The device is the kernel's mock device (``CONFIG_IOMMUFD_TEST``: on the simulator, or a
kernel built with it), whose domain supports dirty tracking. A mock device has no DMA
engine, so its writes are made in two halves: the payload lands in RAM and
``IOMMU_TEST_OP_DIRTY`` sets the IOPTE dirty bits the IOMMU would have set. Every round
checks that the bitmap names exactly the pages the device wrote, and at the end that the
destination holds the source's bytes. Exit status 0 if so, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from types import ModuleType

import numpy as np

from ioasid import backends, uapi
from ioasid.api import Buffer, HwPagetable, Iommufd, IommufdError, MockDevice

PAGE = 4096
NPAGES = 256
CONVERGED = 4
"""Send-again pages below which the VM is stopped for the final copy."""
WORKLOAD = [
    [3, 7, 8, 9, 64, 65, 66, 67, 128, 200, 201, 255],
    [7, 8, 64, 200, 201],
    [8, 200],
]
"""Pages the device writes during each round: a working set that shrinks, so it converges."""


class CheckFailed(Exception):
    """A result this program verified was not what it should be."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def device_writes(
    fd: Iommufd, hwpt: HwPagetable, ram: Buffer, iova: int, pages: list[int], stamp: int
) -> None:
    """The mock device DMA-writes ``pages``: the bytes into RAM, the dirty bits into the
    IOMMU's page table (``IOMMU_TEST_OP_DIRTY`` of the pages set in a bitmap)."""
    bits = np.zeros(NPAGES // 8, dtype=np.uint8)
    for page in pages:
        ram[page * PAGE : page * PAGE + 16] = f"page {page:3} v{stamp}".encode().ljust(16)
        bits[page // 8] |= 1 << (page % 8)
    cmd = uapi.iommu_test_cmd(
        size=ctypes.sizeof(uapi.iommu_test_cmd), op=uapi.IOMMU_TEST_OP_DIRTY, id=hwpt.id
    )
    cmd.dirty.iova, cmd.dirty.length = iova, NPAGES * PAGE
    cmd.dirty.page_size, cmd.dirty.uptr = PAGE, bits.ctypes.data
    fd.ioctl(uapi.IOMMU_TEST_CMD, cmd, "IOMMU_TEST_CMD(DIRTY)")


def copy_pages(dst: bytearray, ram: Buffer, pages: list[int]) -> None:
    for page in pages:
        dst[page * PAGE : (page + 1) * PAGE] = ram[page * PAGE : (page + 1) * PAGE]


def run(backend: ModuleType) -> None:
    with Iommufd(backend) as fd, Buffer(NPAGES * PAGE) as ram:
        ioas = fd.ioas_alloc()
        ioas.huge_pages = False  # one IOPTE, and one dirty bit, per 4 KiB page
        dev = MockDevice(fd, ioas)
        hwpt = HwPagetable.alloc(fd, dev, ioas, flags=uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
        dev.replace(hwpt)
        iova = ioas.map(ram, iova=uapi.MOCK_APERTURE_START)
        print(f"{NPAGES} pages of guest RAM at IOVA {iova:#x}, the device on HWPT {hwpt.id}")
        dest = bytearray(NPAGES * PAGE)  # the destination host's copy of guest RAM

        hwpt.set_dirty_tracking(True)  # starts from a clean bitmap
        to_send = list(range(NPAGES))  # round 0 sends everything
        for rnd, written in enumerate(WORKLOAD):
            copy_pages(dest, ram, to_send)
            device_writes(fd, hwpt, ram, iova, written, rnd)  # the VM keeps running
            dirty = hwpt.dirty_bitmap(iova, NPAGES * PAGE)  # read and clear
            to_send = np.flatnonzero(dirty).tolist()
            print(f"round {rnd}: copied, device wrote {len(written)} pages, dirty: {to_send}")
            check(to_send == sorted(written), f"round {rnd}: bitmap {to_send} != {written}")
            if len(to_send) < CONVERGED:
                break
        else:
            raise CheckFailed("did not converge")

        # stop-and-copy: the VM (and its device) stopped, send the last dirty pages
        last = hwpt.dirty_bitmap(iova, NPAGES * PAGE)
        check(not last.any(), "pages dirtied after the VM stopped")
        hwpt.set_dirty_tracking(False)
        copy_pages(dest, ram, to_send)
        same = dest == ram[0 : NPAGES * PAGE]
        print(
            f"stop-and-copy: {len(to_send)} pages; destination "
            f"{'matches' if same else 'DIFFERS FROM'} the source"
        )
        check(same, "the destination's RAM differs")
        dev.replace(ioas)
        ioas.unmap_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=backends.NAMES, default=backends.DEFAULT)
    args = parser.parse_args(argv)
    try:
        run(backends.get(args.backend))
    except (CheckFailed, IommufdError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
