"""``ioasid groups``: IOMMU groups as Linux forms them, why, and what can go to user space.

Reads a topology file (``--topology``), a sysfs tree (``--sysfs ROOT``, default the live
``/sys``) or the embedded default host (``--default-host``). Prints a tree (rich) or JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ioasid.topology import (
    AcsOverride,
    Bdf,
    KernelOptions,
    Topology,
    TopologyError,
    default_host,
    from_sysfs,
    group,
    load,
)
from ioasid.topology import audit as _audit

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``groups`` on the top-level parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "groups",
        help="IOMMU groups from PCI topology + ACS + quirks, with reasons and viability",
        description=(
            "Compute IOMMU groups exactly as Linux 7.3 pci_device_group() does, say why each "
            "device is where it is, whether each group can go to user space, which devices "
            "can enable PASID, and which can reach each other by peer-to-peer DMA."
        ),
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--topology", metavar="FILE", help="topology file (YAML or JSON)")
    src.add_argument("--sysfs", metavar="ROOT", help="sysfs root to read (default: /sys)")
    src.add_argument(
        "--default-host", action="store_true", help="use the embedded default host topology"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--explain",
        metavar="BDF",
        action="append",
        default=[],
        help="explain one device's group: path, missing ACS bits, quirks, aliases",
    )
    p.add_argument(
        "--acs-override",
        metavar="OPTS",
        help="what-if pcie_acs_override=OPTS (downstream,multifunction,id:vvvv:dddd)",
    )
    p.add_argument(
        "--disable-acs-redir",
        metavar="DEVS",
        help="as pci=disable_acs_redir=DEVS (';'-separated, bdf or pci:vvvv:dddd)",
    )
    p.add_argument("--no-p2p", action="store_true", help="skip the peer-to-peer audit")
    p.add_argument("--no-color", action="store_true", help="plain output")
    p.set_defaults(func=run)
    return p


def _load(args: argparse.Namespace) -> Topology:
    if args.topology:
        return load(args.topology)
    if getattr(args, "default_host", False):
        return default_host()
    return from_sysfs(args.sysfs or "/sys")


def run(args: argparse.Namespace) -> int:
    """Run ``ioasid groups``; returns the exit status (2: bad input)."""
    try:
        topo = _load(args)
        override = AcsOverride.parse(args.acs_override) if args.acs_override else None
        redir = tuple(s for s in (args.disable_acs_redir or "").split(";") if s)
        gr = group(topo, options=KernelOptions(disable_acs_redir=redir))
        explains = []
        for e in args.explain:
            try:
                b = Bdf.parse(e)
            except ValueError as err:
                raise TopologyError(f"--explain: {err}") from None
            if b not in topo.functions:
                raise TopologyError(f"--explain: {b} is not in {topo.source}")
            explains.append(b)
        data = _audit.report(gr, acs_override=override, p2p=not args.no_p2p)
    except (TopologyError, ValueError, OSError) as e:
        print(f"ioasid groups: {e}", file=sys.stderr)
        return 2
    if args.json:
        if explains:
            data["explain"] = {str(b): _audit.explain(gr, b) for b in explains}
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if explains:
        for b in explains:
            print("\n".join(_audit.explain(gr, b)))
        return 0
    _print_tree(data, topo, plain=args.no_color)
    return 0


def _print_tree(data: dict[str, Any], topo: Topology, *, plain: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.tree import Tree

    console = Console(no_color=plain, highlight=False, soft_wrap=False)
    root = Tree(
        f"[bold]IOMMU groups[/] of {escape(str(data['source']))}"
        + (" [yellow](partial data)[/]" if data["partial"] else "")
    )
    for g in data["groups"]:
        mark = "[green]viable[/]" if g["viable"] else "[red]not viable[/]"
        unc = "" if g["certain"] else " [yellow]uncertain[/]"
        kg = ""
        if g.get("kernel_group") is not None and g["kernel_group"] != g["id"]:
            kg = f" (kernel: group {g['kernel_group']})"
        node = root.add(f"[bold]Group {g['id']}[/]{kg}  {mark}{unc}")
        for b in g["devices"]:
            f = topo.functions[Bdf.parse(b)]
            t = f.pcie_type.file_name if f.pcie_type is not None else "PCI"
            drv = f.driver or "-"
            name = f" {escape(f.name)}" if f.name else ""
            node.add(f"{b} [dim]{f.id_str} {f.class_code:04x} {t}[/]{name}  driver: {drv}")
        for r in g["reasons"]:
            if not r.startswith("new group") or len(g["devices"]) == 1:
                node.add(f"[dim]why: {escape(r)}[/]")
        for bl in g["blockers"]:
            node.add(f"[red]blocker:[/] {bl['device']} bound to {escape(bl['driver'])}")
    console.print(root)
    if data["ungrouped"]:
        console.print(
            "[bold]No group:[/] "
            + ", ".join(f"{u['device']} ({escape(u['reason'])})" for u in data["ungrouped"])
        )
    pas = [d["bdf"] for d in data["devices"] if d["pasid"] and d["pasid"]["eligible"]]
    console.print(
        f"[bold]PASID-capable (pci_enable_pasid would succeed):[/] "
        f"{', '.join(pas) if pas else 'none'}"
    )
    for d in data.get("p2p", []):
        cross = " [red]crosses IOMMU groups[/]" if d["crosses_groups"] else ""
        console.print(f"[bold]P2P without IOMMU:[/] {', '.join(d['devices'])}{cross}")
        for r in d["reasons"][:3]:
            console.print(f"    [dim]{escape(r)}[/]")
    kc = data.get("kernel_comparison")
    if kc:
        ok = "[green]matches[/]" if kc["partition_matches"] else "[red]differs from[/]"
        console.print(
            f"[bold]Kernel check:[/] computed partition {ok} the kernel's iommu_group links"
        )
    wi = data.get("what_if")
    if wi:
        console.print(
            f"[bold]What if pcie_acs_override={escape(wi['acs_override'])}:[/] "
            f"{len(wi['groups'])} groups instead of {len(data['groups'])}"
        )
        for s in wi["diff"]["split"]:
            parts = " | ".join(", ".join(p) for p in s["after"])
            console.print(f"    split {', '.join(s['before'])} -> {parts}")
        console.print(f"    [yellow]{escape(wi['warning'])}[/]")
    for w in data["warnings"][:20]:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    if len(data["warnings"]) > 20:
        console.print(f"[yellow]... {len(data['warnings']) - 20} more warnings[/]")


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m ioasid.cli.groups``)."""
    ap = argparse.ArgumentParser(prog="ioasid")
    sub = ap.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
