"""A VMM's guest RAM, as QEMU and openvmm set it up for a device they pass through, and a
live update that hands it to a new VMM process.

Guest RAM is one memfd. The VMM maps it in its own address space (its vCPUs' view) and,
slot by slot, into an IOAS with ``IOMMU_IOAS_MAP_FILE`` at guest-physical addresses: low RAM,
a read-only firmware slot at the top of the MMIO hole, RAM above the hole; the rest is left
unmapped, and the MSI window is reserved by the kernel once a device is attached. QEMU's
``edu`` device is bound and attached; its DMA reads and writes guest RAM by GPA.

Then a live update (QEMU's ``cpr-transfer``): a new process, holding the same fds, issues
``IOMMU_IOAS_CHANGE_PROCESS`` and the pinned pages are charged to it instead of the old
one — possible only because every area is file-backed (an anonymous map makes it
``EINVAL``). Here the new process is a forked child; when it is done, the old process takes
the memory back (a rollback). Runs on the simulator (default) or, with ``--backend linux``,
on the real kernel's edu device. Exit status 0 if every check held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import errno
import mmap
import os
import sys
from types import ModuleType

from ioasid import Buffer, Device, Iommufd, IommufdError, backends, memfd
from ioasid.testing.edu import EDU_BUF, cdev_path, dma, enable_bus_master
from ioasid.testing.process import (
    getpid,
    run_in_child,
    vm_pinned_kb,
    without_capability,
)

KiB, MiB = 1 << 10, 1 << 20
GUEST_RAM = 3 * MiB
"""Small enough for the usual 8 MiB ``RLIMIT_MEMLOCK`` twice over: CHANGE_PROCESS charges
the new process before it uncharges the old, and with per-user accounting both are the
same user for that moment (``ENOMEM`` otherwise)."""
HOLE_END = 128 * MiB
"""A small PC's layout, scaled down to fit edu's 28-bit DMA mask (QEMU clamps its DMA
addresses to 256 MiB): RAM, an MMIO hole ending with the firmware, RAM above the hole."""
SLOTS = [  # (name, guest-physical address, offset in the memfd, length, writable)
    ("low RAM", 0x0, 0, 1 * MiB, True),
    ("firmware", HOLE_END - 512 * KiB, 1 * MiB, 512 * KiB, False),
    ("high RAM", HOLE_END, 1536 * KiB, 1536 * KiB, True),
]
MSI_WINDOW = 0xFEE0_0000  # x86's interrupt window: the kernel reserves it in the IOAS


class CheckFailed(Exception):
    """A result this program verified was not what it should be."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


class GuestRam:
    """The memfd and the VMM's mapping of it; GPAs are translated by slot."""

    def __init__(self) -> None:
        self.fd = memfd("guest-ram", GUEST_RAM)
        self.map = mmap.mmap(self.fd, GUEST_RAM)

    def offset(self, gpa: int) -> int:
        for _name, base, off, length, _w in SLOTS:
            if base <= gpa < base + length:
                return off + gpa - base
        raise ValueError(f"GPA {gpa:#x} is in the hole")

    def read(self, gpa: int, n: int) -> bytes:
        off = self.offset(gpa)
        return bytes(self.map[off : off + n])

    def write(self, gpa: int, data: bytes) -> None:
        off = self.offset(gpa)
        self.map[off : off + len(data)] = data


def copy_by_dma(dev: Device, src_gpa: int, dst_gpa: int, n: int) -> None:
    """edu's two DMA commands: guest RAM → device buffer → guest RAM, both by GPA."""
    dma(dev, src_gpa, EDU_BUF, n, to_ram=False)
    dma(dev, EDU_BUF, dst_gpa, n, to_ram=True)


def run(backend: ModuleType) -> None:
    ram = GuestRam()
    with Iommufd(backend) as fd, Device(fd, cdev_path(backend)) as dev:
        ioas = fd.ioas_alloc()
        for name, gpa, off, length, writable in SLOTS:
            ioas.map_file(ram.fd, off, length, iova=gpa, writable=writable)
            rw = "rw" if writable else "ro"
            print(f"slot {name:9} GPA [{gpa:#09x}, {gpa + length:#09x}) {rw} <- memfd +{off:#x}")
        hwpt = dev.attach(ioas)
        print(f"attached {dev.path} (devid {dev.id}) to IOAS {ioas.id}, HWPT {hwpt.id}")
        ranges = ioas.iova_ranges().ranges
        print("usable IOVA: " + ", ".join(str(r) for r in ranges))
        check(not any(r.start <= MSI_WINDOW <= r.last for r in ranges), "MSI window usable")
        try:
            ioas.map_file(ram.fd, 0, 4 * KiB, iova=MSI_WINDOW)
            raise CheckFailed("a map into the reserved MSI window succeeded")
        except IommufdError as exc:
            check(exc.errno == errno.EINVAL, f"MSI window map: {exc}")
            print(f"map at {MSI_WINDOW:#x}: {errno.errorcode[exc.errno or 0]} (reserved)")

        enable_bus_master(dev)
        msg = b"written by vCPU 0 at GPA 0x1000"
        ram.write(0x1000, msg)
        copy_by_dma(dev, 0x1000, HOLE_END + 0x2000, len(msg))
        got = ram.read(HOLE_END + 0x2000, len(msg))
        print(f"DMA low RAM -> high RAM: {got!r}")
        check(got == msg, "DMA into high RAM")
        fw = SLOTS[1][1]
        ram.write(fw, b"BIOS")
        dma(dev, EDU_BUF, fw, len(msg), to_ram=True)  # a write into read-only firmware
        print(f"DMA write to the firmware slot: blocked, firmware still {ram.read(fw, 4)!r}")
        check(ram.read(fw, 4) == b"BIOS", "the IOMMU let a device write read-only memory")

        # CHANGE_PROCESS needs every area file-backed: a stray anonymous buffer stops it
        with Buffer(64 * KiB) as scratch:
            iova = ioas.map(scratch)
            try:
                fd.change_process()
                raise CheckFailed("CHANGE_PROCESS with an anonymous map succeeded")
            except IommufdError as exc:
                check(exc.errno == errno.EINVAL, f"CHANGE_PROCESS: {exc}")
                print(f"CHANGE_PROCESS with an anonymous map: {errno.errorcode[exc.errno or 0]}")
            ioas.unmap(iova, 64 * KiB)

        old = getpid(backend)
        pinned = vm_pinned_kb(backend, old)
        print(f"old VMM (pid {old}) has {pinned} kB pinned")
        check(pinned == GUEST_RAM // KiB, "all guest RAM pinned and charged")

        def new_vmm() -> None:
            me = getpid(backend)
            check(vm_pinned_kb(backend, me) == 0, "the new process starts with nothing")
            fd.change_process()
            moved = (vm_pinned_kb(backend, old), vm_pinned_kb(backend, me))
            print(f"live update: pid {me} took over: VmPin old {moved[0]} kB, new {moved[1]} kB")
            check(moved == (0, GUEST_RAM // KiB), "the accounting moved")
            hello = b"the new VMM's device works"
            ram.write(0x3000, hello)
            copy_by_dma(dev, 0x3000, HOLE_END + 0x4000, len(hello))
            check(ram.read(HOLE_END + 0x4000, len(hello)) == hello, "DMA after the update")
            print("DMA after the live update: ok")
            sys.stdout.flush()  # a forked child leaves with os._exit

        sys.stdout.flush()  # one copy of what is buffered, not one per process
        run_in_child(backend, new_vmm)
        fd.change_process()  # rollback: the old process takes the memory back
        back = vm_pinned_kb(backend, old)
        print(f"rollback: old VMM has {back} kB pinned again")
        check(back == GUEST_RAM // KiB, "rollback")
        dev.detach()
    ram.map.close()
    os.close(ram.fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=backends.NAMES, default=backends.DEFAULT)
    args = parser.parse_args(argv)
    try:
        # an unprivileged VMM: without CAP_IPC_LOCK its pinned pages are charged to it
        with without_capability():
            run(backends.get(args.backend))
    except (CheckFailed, AssertionError, IommufdError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
