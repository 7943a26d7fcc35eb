"""A user-space driver for QEMU's ``edu`` device (``hw/misc/edu.c``), in Python.

What a VFIO driver does, step by step: bind the device's cdev to an iommufd, attach it to
an IOAS, find its regions (``VFIO_DEVICE_GET_REGION_INFO``), enable bus mastering in its
config space, talk to its registers through BAR0 (``pread``/``pwrite`` of the region, the
identification, liveness and factorial registers), make it DMA RAM → device → RAM through
the IOMMU, and detach: after which its DMA is blocked. Interrupts are polled (the
simulator does not serve ``VFIO_DEVICE_SET_IRQS``; edu's status register says when the
factorial is done).

Runs on the simulator (default) or, with ``--backend linux``, on the real edu device of a
QEMU guest (``-device edu``). Exit status 0 if every check held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from types import ModuleType

from ioasid import Buffer, Device, Iommufd, IommufdError, backends, uapi
from ioasid.testing.edu import EDU_BUF, cdev_path, dma, enable_bus_master

BAR0 = uapi.VFIO_PCI_BAR0_REGION_INDEX
CONFIG = uapi.VFIO_PCI_CONFIG_REGION_INDEX
IDENT, LIVENESS, FACTORIAL, STATUS = 0x00, 0x04, 0x08, 0x20
STATUS_COMPUTING = 0x01
PATTERN = bytes(range(256)) * 4


class CheckFailed(Exception):
    """A result this program verified was not what it should be."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def reg32(dev: Device, offset: int) -> int:
    return int(struct.unpack("<I", dev.read(BAR0, offset, 4))[0])


def set32(dev: Device, offset: int, value: int) -> None:
    dev.write(BAR0, offset, struct.pack("<I", value))


def factorial(dev: Device, n: int) -> int:
    """Write ``n``, wait until the device is no longer computing, read ``n!``."""
    set32(dev, FACTORIAL, n)
    deadline = time.monotonic() + 5
    while reg32(dev, STATUS) & STATUS_COMPUTING:
        if time.monotonic() > deadline:
            raise CheckFailed("the factorial never finished")
        time.sleep(0.001)
    return reg32(dev, FACTORIAL)


def run(backend: ModuleType) -> None:
    with Iommufd(backend) as fd, Device(fd, cdev_path(backend)) as dev:
        print(f"bound {dev.path}: devid {dev.id}")
        ioas = fd.ioas_alloc()
        hwpt = dev.attach(ioas)
        print(f"attached to IOAS {ioas.id} (HWPT {hwpt.id})")
        for index, name in ((CONFIG, "config"), (BAR0, "BAR0")):
            r = dev.region(index)
            print(f"region {name}: {r.size:#x} bytes at offset {r.offset:#x}")
        vendor, device = struct.unpack("<HH", dev.read(CONFIG, 0, 4))
        print(f"config space: {vendor:04x}:{device:04x}")
        check((vendor, device) == (0x1234, 0x11E8), "not an edu device")
        enable_bus_master(dev)

        ident = reg32(dev, IDENT)
        print(f"identification {ident:#010x}: edu version {ident >> 24}.{ident >> 16 & 0xFF}")
        check(ident & 0xFF == 0xED, "identification register")
        set32(dev, LIVENESS, 0x12345678)
        alive = reg32(dev, LIVENESS)
        print(f"liveness: wrote 0x12345678, read {alive:#010x}")
        check(alive == ~0x12345678 & 0xFFFFFFFF, "liveness register")
        fact = factorial(dev, 10)
        print(f"factorial(10) = {fact}")
        check(fact == 3628800, "factorial")

        with Buffer(4096) as src, Buffer(4096) as dst:
            src[0 : len(PATTERN)] = PATTERN
            src_iova, dst_iova = ioas.map(src, writable=False), ioas.map(dst)
            print(f"mapped src at IOVA {src_iova:#x} (read-only), dst at {dst_iova:#x}")
            # QEMU's edu does not show its DMA buffer through BAR0: check the round trip
            dma(dev, src_iova, EDU_BUF, len(PATTERN), to_ram=False)
            dma(dev, EDU_BUF, dst_iova, len(PATTERN), to_ram=True)
            same = dst[0 : len(PATTERN)] == PATTERN
            print(f"DMA RAM -> device -> RAM: {len(PATTERN)} bytes {'match' if same else 'DIFFER'}")
            check(same, "DMA device -> RAM")

            src[0:4] = b"\0\0\0\0"
            dma(dev, EDU_BUF, src_iova, 4, to_ram=True)  # into a read-only mapping
            check(src[0:4] == b"\0\0\0\0", "a device wrote through a read-only mapping")
            print("DMA into the read-only mapping: blocked (src unchanged)")

            dev.detach()
            dst[0:16] = bytes(16)
            dma(dev, EDU_BUF, dst_iova, 16, to_ram=True)
            check(dst[0:16] == bytes(16), "DMA after detach reached memory")
            print("after detach: DMA blocked (dst untouched)")
            print(f"unmapped {ioas.unmap_all():#x} bytes")


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
