"""``ioasid demo``: IOMMU groups, an I/O address space and DMA, step by step.

Runs on the embedded simulated host (the default backend): its PCI fabric, its IOMMU
groups, devices bound to vfio-pci, and device DMA that lands in this process's memory.
"""

from __future__ import annotations

import argparse
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

from ioasid import uapi
from ioasid.api import Buffer, Device, Iommufd, IommufdError
from ioasid.testing.edu import EDU_BUF, dma, enable_bus_master

MiB = 1 << 20
BAR0 = uapi.VFIO_PCI_BAR0_REGION_INDEX
CONFIG = uapi.VFIO_PCI_CONFIG_REGION_INDEX
MSG = b"guest RAM, written by the CPU"
N = len(MSG)


class Story:
    def __init__(self) -> None:
        self.con = Console(highlight=False)
        self.n = 0

    def chapter(self, title: str, text: str) -> None:
        self.n += 1
        self.con.print(f"\n[bold magenta]{self.n}. {title}[/]")
        self.con.print(f"[dim]{text}[/]")

    def step(self, title: str, text: str = "") -> None:
        self.con.print(f"\n  [bold cyan]▶ {title}[/]")
        if text:
            self.con.print(f"    [dim]{text}[/]")

    def out(self, text: str) -> None:
        self.con.print(f"    {text}")

    def err(self, exc: Exception) -> None:
        self.con.print(f"    [yellow]{escape(str(exc))}[/]")


def _shown(data: bytes) -> str:
    return f"{len(data)} zero bytes (unchanged)" if not any(data) else repr(data)


@contextmanager
def opened(fd: Iommufd, path: str) -> Iterator[Device]:
    dev = Device(fd, path)
    try:
        yield dev
    finally:
        dev.close()


def run(args: argparse.Namespace) -> int:
    from ioasid.backends import sim
    from ioasid.topology.audit import viability

    s = Story()
    try:
        host = sim.reset(args.topology) if args.topology else sim.reset()
    except (OSError, ValueError) as exc:
        s.con.print(f"[red]cannot boot the simulated host: {escape(str(exc))}[/]")
        return 2
    topo, grouping = host.topology, host.grouping
    s.con.print(
        "[bold]ioasid demo[/] — IOMMUFD (/dev/iommu, born /dev/ioasid) on an embedded, "
        "simulated Linux 7.3 host. No root, no IOMMU, no VM needed."
    )

    s.chapter(
        "The host and its IOMMU groups",
        "The IOMMU translates every DMA a device makes — but only the DMA that reaches "
        "it. Devices that can reach each other without passing the IOMMU (functions of "
        "a card without ACS, devices behind a PCIe-to-PCI bridge) cannot be told apart, "
        "so Linux puts them in one IOMMU group. The group, not the device, is what can "
        "be given to user space. `ioasid groups` shows this for any host.",
    )
    for g in grouping.groups:
        members = ", ".join(
            f"{b} {topo.functions[b].name or topo.functions[b].id_str}"
            f" [{topo.functions[b].driver or 'no driver'}]"
            for b in g.devices
        )
        v = viability(topo, g)
        mark = "[green]user space may own it[/]" if v.viable else "[red]held by a kernel driver[/]"
        s.out(f"group {g.id:>2}: {escape(members)}  {mark}")

    s.chapter(
        "Handing a device to user space",
        "A device bound to vfio-pci appears as /dev/vfio/devices/vfioN. Binding it to an "
        "iommufd claims DMA ownership of its whole group: every other member must be "
        "free of kernel drivers, and owned by the same iommufd.",
    )
    fd = Iommufd()
    try:
        s.step(
            "VFIO_DEVICE_BIND_IOMMUFD of the Tesla T4 (vfio1)",
            "Its HDMI audio function is in the same group and bound to snd_hda_intel: the "
            "audio could reach the GPU's memory untranslated, so the kernel refuses.",
        )
        try:
            Device(fd, "/dev/vfio/devices/vfio1").close()
        except IommufdError as exc:
            s.err(exc)
        with opened(fd, "/dev/vfio/devices/vfio0") as edu:
            s.step(
                "VFIO_DEVICE_BIND_IOMMUFD of the edu DMA device (vfio0)",
                "Alone in its group: the bind succeeds and returns a device id.",
            )
            s.out(f"{edu}")
            _io_address_space(s, fd, edu)
        _p2p(s)
    finally:
        fd.close()
    s.con.print(
        "\n[bold green]done[/] — closing the fds unbound the devices and destroyed "
        "every object. Try `ioasid groups --default-host --explain 0000:04:00.0`."
    )
    return 0


def _io_address_space(s: Story, fd: Iommufd, edu: Device) -> None:
    s.chapter(
        "An I/O address space",
        "An IOAS holds the mappings a device's DMA addresses (IOVAs) go through: ranges "
        "of this process's memory. Attaching a device makes the kernel build an IOMMU "
        "page table (a HWPT) from it and keep it in sync.",
    )
    ioas = fd.ioas_alloc()
    hwpt = edu.attach(ioas)
    s.step(
        "IOMMU_IOAS_ALLOC + VFIO_DEVICE_ATTACH_IOMMUFD_PT",
        "The kernel made a VT-d page table for the IOAS; the device's reserved MSI window "
        "now carves the usable IOVA space.",
    )
    ranges = ioas.iova_ranges()
    s.out(
        f"IOAS {ioas.id}, HWPT {hwpt.id}; usable: "
        + ", ".join(str(r) for r in ranges.ranges)
        + f"; alignment {ranges.alignment:#x}"
    )
    with Buffer(2 * MiB) as guest:
        guest[0:N] = MSG
        iova = ioas.map(guest)
        s.step(
            "IOMMU_IOAS_MAP of 2 MiB of 'guest memory'",
            "The pages are pinned and written into the IOMMU page table; the kernel chose "
            "the IOVA, aligned like the buffer so a 2 MiB page can map it.",
        )
        s.out(f"user_va {guest.address:#x} → iova {iova:#x}")
        s.step(
            "A rule the kernel enforces",
            "Mappings never overlap: the same IOVA again fails with EEXIST, nothing changed.",
        )
        try:
            ioas.map(guest, iova=iova)
        except IommufdError as exc:
            s.err(exc)

        s.chapter(
            "DMA through the IOMMU",
            "The device reads guest memory at an IOVA into its own buffer, then writes it "
            "back 1 KiB further: each access is translated by the IOMMU's page walk and "
            "lands in this process's buffer.",
        )
        enable_bus_master(edu)
        dma(edu, iova, EDU_BUF, N, to_ram=False)
        dma(edu, EDU_BUF, iova + 1024, N, to_ram=True)
        s.out(f"device buffer: {edu.read(BAR0, EDU_BUF, N)!r}")
        s.out(f"guest RAM at +1 KiB, written by the device: {guest[1024 : 1024 + N]!r}")
        edu.detach()
        guest[1024 : 1024 + N] = bytes(N)
        dma(edu, EDU_BUF, iova + 1024, N, to_ram=True)
        s.step(
            "After VFIO_DEVICE_DETACH_IOMMUFD_PT",
            "The device's DMA is blocked: the write is dropped and recorded as a fault.",
        )
        s.out(f"guest RAM at +1 KiB: {_shown(guest[1024 : 1024 + N])}")
        ioas.unmap_all()


def _p2p(s: Story) -> None:
    s.chapter(
        "Peer to peer: what groups do and do not capture",
        "A PCIe switch whose downstream ports lack ACS routes a request addressed to a "
        "sibling's BAR straight to it: the IOMMU never sees it. Linux 7.3 still puts "
        "each downstream port (with what is below it) in its own group — so the NVMe "
        "and the NIC behind this switch can be given to two different owners.",
    )
    nvme_path, nic_path, acc_path = (
        "/dev/vfio/devices/vfio2",
        "/dev/vfio/devices/vfio3",
        "/dev/vfio/devices/vfio4",
    )
    with Iommufd() as owner_a, Iommufd() as owner_b:
        nvme, nic = Device(owner_a, nvme_path), Device(owner_b, nic_path)
        acc = Device(owner_a, acc_path)
        try:
            for d, o in ((nvme, owner_a), (nic, owner_b), (acc, owner_a)):
                d.attach(o.ioas_alloc())
            s.step(
                "Two owners, two groups",
                "NVMe (vfio2) → iommufd A; NIC (vfio3) → iommufd B: the kernel allows it.",
            )
            nic_bar = int(struct.unpack("<I", nic.read(CONFIG, 0x10, 4))[0]) & ~0xF
            nvme.write(BAR0, EDU_BUF, b"NVMe was here")
            enable_bus_master(nvme)
            dma(nvme, EDU_BUF, nic_bar + EDU_BUF, 13, to_ram=True)
            s.step(
                "The NVMe writes to the NIC's BAR",
                f"Bus address {nic_bar + EDU_BUF:#x}: nothing is mapped there in A's IOAS.",
            )
            s.out(
                f"NIC's memory now holds: {nic.read(BAR0, EDU_BUF, 13)!r}  "
                "[red](reached without the IOMMU)[/]"
            )
            acc.write(BAR0, EDU_BUF, b"accel was here")
            enable_bus_master(acc)
            dma(acc, EDU_BUF, nic_bar + EDU_BUF + 64, 14, to_ram=True)
            s.step(
                "The accelerator (behind a root port with ACS) tries the same",
                "ACS redirects the request upstream: the IOMMU translates it, finds no "
                "mapping, and blocks it.",
            )
            s.out(
                f"NIC's memory at +64: {_shown(nic.read(BAR0, EDU_BUF + 64, 14))}  "
                "[green](blocked, fault recorded)[/]"
            )
        finally:
            for d in (nvme, nic, acc):
                d.close()
    s.step(
        "Group-centric vs device-centric",
        "Device-centric ownership (each device on its own) would also have given the T4 "
        "to user space while the audio function, in the kernel's hands, can reach it. "
        "Group-centric ownership (Linux) refuses that — but only where ACS or its absence "
        "is visible to the grouping: the switch above shows a peer path between two "
        "groups. `ioasid groups` lists such paths in its P2P audit.",
    )
