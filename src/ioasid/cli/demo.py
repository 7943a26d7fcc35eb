"""``ioasid demo [--topology FILE]``: IOMMU groups, an I/O address space and DMA, step by
step.

Runs on the embedded simulated host (the default backend), or on the host a topology file
describes: its PCI fabric, its IOMMU groups, a device of a non-viable group refused and one
of a viable group handed to user space, device DMA that lands in this process's memory, and
peer-to-peer DMA between two groups where the fabric allows it. Every step the host cannot
show (no vfio-pci device, no non-viable group, no P2P pair) is said to be skipped, and why.
On the simulated host every endpoint has QEMU edu's DMA engine in BAR0
(:mod:`ioasid.hw.devices.edu`), so any vfio-pci endpoint can be made to DMA.
"""

from __future__ import annotations

import argparse
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from ioasid import uapi
from ioasid.api import Buffer, Device, Iommufd, IommufdError
from ioasid.backends import sim
from ioasid.cli.groups import BAD_INPUT, bad_input
from ioasid.kernel.machine import Kernel
from ioasid.testing.edu import EDU_BUF, dma, enable_bus_master
from ioasid.topology import Bdf, default_host, load
from ioasid.topology.audit import Viability, p2p_domains, viability

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

    def skip(self, why: str) -> None:
        self.con.print(f"\n  [bold yellow]skipped:[/] {escape(why)}")

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


@dataclass(frozen=True)
class Cdev:
    """A function bound to vfio-pci on the simulated host, with what the story needs."""

    path: str
    bdf: Bdf
    label: str
    group: int
    viable: Viability


def _cdevs(host: Kernel) -> list[Cdev]:
    topo, grouping = host.topology, host.grouping
    groups = {g.id: g for g in grouping.groups}
    out = []
    for vdev in host.vfio_devices:
        bdf = vdev.function.bdf
        f = topo.functions[bdf]
        gid = grouping.group_of[bdf]
        out.append(Cdev(vdev.path, bdf, f.name or f.id_str, gid, viability(topo, groups[gid])))
    return out


def _pick_user_space(cdevs: list[Cdev]) -> Cdev | None:
    """A device of a viable group; QEMU's edu first, as on the default host."""
    viable = [c for c in cdevs if c.viable.viable]
    edu = [c for c in viable if c.label.startswith("QEMU edu")]
    return (edu or viable)[0] if viable else None


def _p2p_pair(
    host: Kernel, cdevs: list[Cdev]
) -> tuple[Cdev, Cdev, Cdev | None] | tuple[Cdev, Cdev] | None:
    """Two user-space devices of different groups that reach each other peer to peer, and
    a third outside their P2P set (whose request goes to the IOMMU), if any; else a pair
    that reaches each other within one group (one owner: nothing to show across owners)."""
    domain_of: dict[Bdf, int] = {}
    for i, d in enumerate(p2p_domains(host.topology, host.grouping.acs)):
        for bdf in d.devices:
            domain_of[bdf] = i
    usable = [c for c in cdevs if c.viable.viable]
    same_group: tuple[Cdev, Cdev] | None = None
    for a in usable:
        for b in usable:
            if a is b or domain_of.get(a.bdf, -1) != domain_of.get(b.bdf, -2):
                continue
            if a.group == b.group:
                same_group = same_group or (a, b)
                continue
            others = [
                c
                for c in usable
                if c.group not in (a.group, b.group) and domain_of.get(c.bdf) != domain_of[a.bdf]
            ]
            return a, b, (others[0] if others else None)
    return same_group


def run(args: argparse.Namespace) -> int:
    s = Story()
    path = args.topology or os.environ.get(sim.TOPOLOGY_ENV)
    try:
        topo = load(path) if path else default_host()
        host = sim.reset(topo)
    except BAD_INPUT as exc:
        return bad_input("demo", exc)
    grouping = host.grouping
    s.con.print(
        "[bold]ioasid demo[/] — IOMMUFD (/dev/iommu, born /dev/ioasid) on an embedded, "
        f"simulated Linux 7.3 host ({escape(topo.source or 'topology file')}). "
        "No root, no IOMMU, no VM needed."
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
    cdevs = _cdevs(host)
    if not cdevs:
        s.skip(
            "no function of this host is bound to vfio-pci: there is no /dev/vfio/devices/"
            "vfioN to bind, so binding, the I/O address space, DMA and peer-to-peer are "
            "skipped"
        )
    refused = next((c for c in cdevs if not c.viable.viable), None)
    chosen = _pick_user_space(cdevs)
    fd = Iommufd()
    try:
        if refused is not None:
            blockers = ", ".join(f"{b} is bound to {d}" for b, d in refused.viable.blockers)
            s.step(
                f"VFIO_DEVICE_BIND_IOMMUFD of the {escape(refused.label)} ({refused.path})",
                f"Its group {refused.group} is not viable: {escape(blockers)}. That "
                "function could reach this one's memory untranslated, so the kernel refuses.",
            )
            try:
                Device(fd, refused.path).close()
                s.out("[red]bound — the kernel should have refused it[/]")
            except IommufdError as exc:
                s.err(exc)
        elif cdevs:
            s.skip(
                "every group with a vfio-pci device is viable on this host: no bind "
                "to refuse (the kernel answers EPERM when a member of the group is "
                "held by a kernel driver)"
            )
        if chosen is None:
            if cdevs:
                s.skip(
                    "no vfio-pci device is in a viable group: nothing can be handed to "
                    "user space, so the I/O address space, DMA and peer-to-peer are "
                    "skipped"
                )
        else:
            with opened(fd, chosen.path) as dev:
                s.step(
                    f"VFIO_DEVICE_BIND_IOMMUFD of the {escape(chosen.label)} ({chosen.path})",
                    f"Its group {chosen.group} is viable: the bind succeeds and returns a "
                    "device id.",
                )
                s.out(f"{dev}")
                _io_address_space(s, fd, dev)
        if chosen is not None:
            _p2p(s, host, cdevs)
    finally:
        fd.close()
    explain = refused or chosen
    source = f"--topology {path}" if path else "--default-host"
    hint = f" Try `ioasid groups {source} --explain {explain.bdf}`." if explain else ""
    s.con.print(
        "\n[bold green]done[/] — closing the fds unbound the devices and destroyed "
        f"every object.{escape(hint)}"
    )
    return 0


def _dma_engine(dev: Device) -> bool:
    """Whether ``dev`` has the register set the simulated host gives every endpoint (QEMU
    edu's DMA engine in BAR0); a bridge bound to vfio-pci has no BAR to program."""
    try:
        return dev.region(BAR0).size > 0
    except IommufdError:
        return False


def _io_address_space(s: Story, fd: Iommufd, dev: Device) -> None:
    s.chapter(
        "An I/O address space",
        "An IOAS holds the mappings a device's DMA addresses (IOVAs) go through: ranges "
        "of this process's memory. Attaching a device makes the kernel build an IOMMU "
        "page table (a HWPT) from it and keep it in sync.",
    )
    ioas = fd.ioas_alloc()
    hwpt = dev.attach(ioas)
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
        if not _dma_engine(dev):
            s.skip(f"{dev.path} has no BAR0, so no DMA engine to program: DMA skipped")
            ioas.unmap_all()
            return
        enable_bus_master(dev)
        dma(dev, iova, EDU_BUF, N, to_ram=False)
        dma(dev, EDU_BUF, iova + 1024, N, to_ram=True)
        s.out(f"device buffer: {dev.read(BAR0, EDU_BUF, N)!r}")
        s.out(f"guest RAM at +1 KiB, written by the device: {guest[1024 : 1024 + N]!r}")
        dev.detach()
        guest[1024 : 1024 + N] = bytes(N)
        dma(dev, EDU_BUF, iova + 1024, N, to_ram=True)
        s.step(
            "After VFIO_DEVICE_DETACH_IOMMUFD_PT",
            "The device's DMA is blocked: the write is dropped and recorded as a fault.",
        )
        s.out(f"guest RAM at +1 KiB: {_shown(guest[1024 : 1024 + N])}")
        ioas.unmap_all()


def _p2p(s: Story, host: Kernel, cdevs: list[Cdev]) -> None:
    s.chapter(
        "Peer to peer: what groups do and do not capture",
        "A PCIe switch whose downstream ports lack ACS routes a request addressed to a "
        "sibling's BAR straight to it: the IOMMU never sees it. Linux 7.3 still puts "
        "each downstream port (with what is below it) in its own group — so two devices "
        "behind such a switch can be given to two different owners.",
    )
    found = _p2p_pair(host, cdevs)
    if found is None or len(found) == 2:
        within = (
            f" ({found[0].label} and {found[1].label} do, but they share group "
            f"{found[0].group}: one owner, as the kernel requires)"
            if found is not None
            else ""
        )
        s.skip(
            "no two devices of different user-space groups reach each other peer to peer "
            f"on this host{within}: the two-owner DMA is skipped (`ioasid groups` lists "
            "every P2P set)"
        )
        return
    a, b, other = found
    with Iommufd() as owner_a, Iommufd() as owner_b:
        opened_devs: list[Device] = []
        try:
            dev_a = Device(owner_a, a.path)
            opened_devs.append(dev_a)
            dev_b = Device(owner_b, b.path)
            opened_devs.append(dev_b)
            dev_c = Device(owner_a, other.path) if other is not None else None
            if dev_c is not None:
                opened_devs.append(dev_c)
            for d, o in ((dev_a, owner_a), (dev_b, owner_b), (dev_c, owner_a)):
                if d is not None:
                    d.attach(o.ioas_alloc())
            s.step(
                "Two owners, two groups",
                f"{escape(a.label)} ({a.path}, group {a.group}) → iommufd A; "
                f"{escape(b.label)} ({b.path}, group {b.group}) → iommufd B: the kernel "
                "allows it.",
            )
            if not (_dma_engine(dev_a) and _dma_engine(dev_b)):
                s.skip("one of the two has no BAR0 to program or to target: P2P DMA skipped")
                return
            bar_b = int(struct.unpack("<I", dev_b.read(CONFIG, 0x10, 4))[0]) & ~0xF
            note = b"A's device was here"
            dev_a.write(BAR0, EDU_BUF, note)
            enable_bus_master(dev_a)
            dma(dev_a, EDU_BUF, bar_b + EDU_BUF, len(note), to_ram=True)
            s.step(
                f"{escape(a.label)} writes to {escape(b.label)}'s BAR",
                f"Bus address {bar_b + EDU_BUF:#x}: nothing is mapped there in A's IOAS.",
            )
            s.out(
                f"B's device memory now holds: {dev_b.read(BAR0, EDU_BUF, len(note))!r}  "
                "[red](reached without the IOMMU)[/]"
            )
            if dev_c is None or other is None or not _dma_engine(dev_c):
                s.skip(
                    "no third user-space device outside that P2P set: the contrast (a "
                    "request ACS redirects to the IOMMU, which blocks it) is skipped"
                )
                return
            dev_c.write(BAR0, EDU_BUF, note)
            enable_bus_master(dev_c)
            dma(dev_c, EDU_BUF, bar_b + EDU_BUF + 64, len(note), to_ram=True)
            s.step(
                f"{escape(other.label)} ({other.path}, outside that P2P set) tries the same",
                "No bridge routes its request to the peer (ACS redirects it upstream, or "
                "it has no path around the root): the IOMMU translates it, finds no "
                "mapping, and blocks it.",
            )
            s.out(
                f"B's device memory at +64: {_shown(dev_b.read(BAR0, EDU_BUF + 64, len(note)))}"
                "  [green](blocked, fault recorded)[/]"
            )
        finally:
            for d in opened_devs:
                d.close()
    s.step(
        "Group-centric vs device-centric",
        "Device-centric ownership (each device on its own) would also hand out a device "
        "whose group holds a kernel driver that can reach it. Group-centric ownership "
        "(Linux) refuses that — but only where ACS or its absence is visible to the "
        "grouping: the pair above shows a peer path between two groups. `ioasid groups` "
        "lists such paths in its P2P audit.",
    )
