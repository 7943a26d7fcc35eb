"""``ioasid demo``: an I/O address space, step by step, with what each step means."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape

from ioasid.api import Buffer, Iommufd, IommufdError

MiB = 1 << 20


def run(args: argparse.Namespace) -> int:
    con = Console(highlight=False)
    say = con.print

    def step(title: str, text: str) -> None:
        say(f"\n[bold cyan]▶ {title}[/]")
        say(f"  [dim]{text}[/]")

    backend = args.backend
    say(f"[bold]ioasid demo[/] — IOMMUFD on the [bold]{backend}[/] backend")
    try:
        fd = Iommufd(backend)
    except OSError as exc:
        say(f"[red]cannot open /dev/iommu on the {backend} backend: {exc}[/]")
        return 1
    with fd, Buffer(4 * MiB) as guest:
        step(
            "open /dev/iommu",
            "One open = one iommufd context; every object below lives in it "
            "and dies when the fd is closed.",
        )
        say(f"  {fd}")

        ioas = fd.ioas_alloc()
        step(
            "IOMMU_IOAS_ALLOC",
            "An IOAS is an I/O address space: the addresses (IOVAs) a "
            "device will use for DMA, mapped onto memory of this process.",
        )
        say(f"  IOAS id {ioas.id}")

        ranges = ioas.iova_ranges()
        step(
            "IOMMU_IOAS_IOVA_RANGES",
            "Which IOVAs may be used. With no device attached "
            "nothing is reserved: the whole 64-bit space, alignment 1.",
        )
        for r in ranges.ranges:
            say(f"  usable {r}   alignment {ranges.alignment:#x}")

        guest[0:22] = b"hello from guest RAM!\n"
        iova = ioas.map(guest)
        step(
            "IOMMU_IOAS_MAP (kernel-chosen IOVA)",
            "4 MiB of a real buffer of this process "
            "becomes one area. The kernel picks the IOVA aligned like the buffer (2 MiB) so "
            "huge pages stay possible. With no domain attached nothing is pinned yet.",
        )
        say(f"  user_va {guest.address:#x} → iova [{iova:#x}, {iova + len(guest) - 1:#x}]")

        fixed = ioas.map(guest.address + MiB, MiB, iova=0x40000000, writable=False)
        step(
            "IOMMU_IOAS_MAP (FIXED_IOVA, read-only)",
            "The caller chooses the IOVA; a device could only read here.",
        )
        say(f"  user_va {guest.address + MiB:#x} → iova {fixed:#x} (read-only)")

        step(
            "A rule the kernel enforces",
            "Areas never overlap: mapping onto a used IOVA fails with EEXIST and changes nothing.",
        )
        try:
            ioas.map(guest, iova=iova)
        except IommufdError as exc:
            say(f"  [yellow]{escape(str(exc))}[/]")

        second = fd.ioas_alloc()
        copied = second.copy_from(ioas, iova + MiB, 2 * MiB, readable=True, writable=False)
        step(
            "IOMMU_IOAS_COPY",
            "Share already-mapped pages into another IOAS without pinning "
            "them again — e.g. a second device that may only read part of the guest.",
        )
        say(f"  IOAS {ioas.id} iova {iova + MiB:#x} (+2 MiB) → IOAS {second.id} iova {copied:#x}")

        step(
            "Another rule",
            "UNMAP removes whole areas only: a range that cuts an area fails with ENOENT.",
        )
        try:
            ioas.unmap(iova, MiB)
        except IommufdError as exc:
            say(f"  [yellow]{escape(str(exc))}[/]")

        n = ioas.unmap_all()
        m = second.unmap_all()
        step("IOMMU_IOAS_UNMAP (all)", "iova=0, length=2⁶⁴−1 unmaps everything.")
        say(f"  IOAS {ioas.id}: {n:#x} bytes unmapped; IOAS {second.id}: {m:#x} bytes")

    say(
        "\n[bold green]done[/] — closing the fd destroyed every object. "
        "Next: [bold]ioasid groups[/] shows which devices the IOMMU can tell apart."
    )
    return 0
