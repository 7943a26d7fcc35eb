"""``ioasid groups``: IOMMU groups as Linux forms them, why, and what can go to user space.

Reads a topology file (``--topology``), a sysfs tree (``--sysfs ROOT``, default the live
``/sys``) or the embedded default host (``--default-host``). Prints a tree (rich) or JSON,
or saves what it read as a topology file (``--save``). Every user mistake is one line on
stderr naming the option or file, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from ioasid.topology import (
    AcsOverride,
    Bdf,
    KernelOptions,
    Topology,
    TopologyError,
    default_host,
    dump,
    from_sysfs,
    group,
    load,
)
from ioasid.topology import audit as _audit
from ioasid.topology.model import gc_paused
from ioasid.topology.pciids import PciIds, system_pci_ids

__all__ = ["BAD_INPUT", "add_parser", "bad_input", "parse_device_spec", "run", "save"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``groups`` on the top-level parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "groups",
        help="IOMMU groups from PCI topology + ACS + quirks, with reasons and viability",
        description=(
            "Compute IOMMU groups exactly as Linux 7.3 pci_device_group() does, say why each "
            "device is where it is, whether each group can go to user space, which devices "
            "can enable PASID, and which can reach each other by peer-to-peer DMA. "
            "Addresses may be given in full (0000:01:00.0) or as lspci prints them (01:00.0)."
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
        "--indent",
        metavar="N",
        type=_indent,
        default=None,
        help="indent the JSON by N spaces (default: compact, one line)",
    )
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
    p.add_argument(
        "--save",
        metavar="FILE",
        help="capture this host (or the --sysfs/--topology source) as a topology file",
    )
    p.add_argument("--no-p2p", action="store_true", help="skip the peer-to-peer audit")
    p.add_argument("--no-color", action="store_true", help="plain output")
    p.set_defaults(func=run)
    return p


def _indent(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of spaces") from None
    if not 0 <= n <= 16:
        raise argparse.ArgumentTypeError(f"{n} is outside 0..16")
    return n


def parse_device_spec(spec: str, option: str) -> str:
    """Check one ``pci_dev_str_match()`` device: ``pci:vvvv:dddd[:ssvv:ssdd]`` (hex, 0 = any)
    or a PCI address (``[dddd:]bb:dd.f``). Returns it stripped; a ``TopologyError`` naming
    ``option`` otherwise."""
    s = spec.strip()
    if s.startswith("pci:"):
        parts = s[4:].split(":")
        names = ("vendor", "device", "subsystem vendor", "subsystem device")
        if len(parts) not in (2, 4):
            raise TopologyError(
                f"{option}: {spec!r} must be pci:vvvv:dddd or pci:vvvv:dddd:ssvv:ssdd"
            )
        for name, part in zip(names, parts, strict=False):
            try:
                ok = 0 <= int(part, 16) <= 0xFFFF and part.strip() == part and part != ""
            except ValueError:
                ok = False
            if not ok:
                raise TopologyError(f"{option}: {spec!r}: {name} {part!r} is not 4 hex digits")
        return s
    try:
        Bdf.parse(s)
    except ValueError:
        raise TopologyError(
            f"{option}: {spec!r} is not a device (a PCI address such as 0000:01:00.0 or "
            "01:00.0, or pci:vvvv:dddd)"
        ) from None
    return s


def _load(args: argparse.Namespace) -> Topology:
    if args.topology:
        return load(args.topology)
    if getattr(args, "default_host", False):
        return default_host()
    return from_sysfs(args.sysfs or "/sys")


def _options(args: argparse.Namespace) -> tuple[KernelOptions, AcsOverride | None]:
    override = None
    if args.acs_override is not None:
        if not args.acs_override.strip():
            raise TopologyError(
                "--acs-override: empty (give downstream, multifunction, id:vvvv:dddd, "
                "comma-separated)"
            )
        try:
            override = AcsOverride.parse(args.acs_override)
        except ValueError as e:
            raise TopologyError(f"--acs-override: {e}") from None
        if not override:
            raise TopologyError(f"--acs-override: {args.acs_override!r} names no option")
    redir: tuple[str, ...] = ()
    if args.disable_acs_redir is not None:
        entries = [s for s in args.disable_acs_redir.split(";") if s.strip()]
        if not entries:
            raise TopologyError("--disable-acs-redir: empty (give devices, ';'-separated)")
        redir = tuple(parse_device_spec(s, "--disable-acs-redir") for s in entries)
    return KernelOptions(disable_acs_redir=redir), override


def run(args: argparse.Namespace) -> int:
    """Run ``ioasid groups``; returns the exit status (2: bad input)."""
    # One bounded computation whose objects all live to the end: cyclic GC only rescans
    # them (at 50,000 functions, each pass over the heap costs a tenth of a second)
    with gc_paused():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        opts, override = _options(args)
        explains = []
        for e in args.explain:
            try:
                explains.append(Bdf.parse(e))
            except ValueError as err:
                raise TopologyError(f"--explain: {err}") from None
        topo = _load(args)
        for b in explains:
            if b not in topo.functions:
                raise TopologyError(f"--explain: {b} is not in {topo.source}")
        if args.save:
            print(save(topo, args.save), file=sys.stderr)
            return 0
        gr = group(topo, options=opts)
        lines: dict[str, list[str]] = {}
        if explains:
            # --explain answers for the kernel the user asks about: with the override on
            shown = group(topo, override, options=opts) if override else gr
            for b in explains:
                out = _audit.explain(shown, b)
                if override is not None:
                    out.insert(1, f"  (what-if: booted with pcie_acs_override={override})")
                lines[str(b)] = out
        data = _audit.report(gr, acs_override=override, p2p=not args.no_p2p)
    except BAD_INPUT as e:
        return bad_input("groups", e)
    ids = system_pci_ids()
    if args.json:
        for d in data["devices"]:
            d["pci_ids_name"] = _pci_name(ids, d["id"])
        if explains:
            data["explain"] = lines
        if args.indent is None:
            text = json.dumps(data, separators=(",", ":"))
        else:
            text = json.dumps(data, indent=args.indent)
        sys.stdout.write(text + "\n")
        return 0
    if explains:
        for b in explains:
            print("\n".join(lines[str(b)]))
        return 0
    _print_tree(data, topo, ids, plain=args.no_color)
    return 0


BAD_INPUT = (TopologyError, ValueError, OSError)
"""What a user's mistake (an option value, an unreadable or malformed file) raises."""


def bad_input(command: str, e: BaseException) -> int:
    """Report a user's mistake as every ``ioasid`` command does: one line on stderr naming
    the option or the file, and exit status 2."""
    print(f"ioasid {command}: {_one_line(e)}", file=sys.stderr)
    return 2


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split())


def _pci_name(ids: PciIds | None, id_str: str) -> str | None:
    if ids is None:
        return None
    v, d = id_str.split(":")
    return ids.name(int(v, 16), int(d, 16))


# -- --save ----------------------------------------------------------------------------------


def save(topo: Topology, path: str | os.PathLike[str]) -> str:
    """Write ``topo`` as a topology file (YAML; JSON for a ``.json`` name) that loads back to
    the same fabric and groups. Returns the one-line summary the CLI prints."""
    data = dump(topo)
    unknown = sum(1 for f in topo if not f.certain)
    notes = _capture_notes(topo, unknown)
    target = os.fspath(path)
    if target.endswith(".json"):
        text = json.dumps(data, indent=1) + "\n"
    else:
        text = "".join(f"# {n}\n" for n in notes)
        text += yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000)
    try:
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as e:
        raise TopologyError(f"--save: cannot write {target}: {e.strerror or e}") from None
    what = "" if not unknown else f"; {unknown} functions only partly read (run as root)"
    return f"ioasid groups: saved {len(topo)} PCI functions of {topo.source} to {target}{what}"


def _capture_notes(topo: Topology, unknown: int) -> Sequence[str]:
    notes = [f"ioasid topology file: {len(topo)} PCI functions captured from {topo.source}"]
    from_sysfs_tree = os.path.isdir(topo.source)
    if topo.acs_ctrl_measured:
        notes.append(
            "acs_ctl: measured -- ACS control values are what the running kernel wrote "
            "(pci_enable_acs already applied); kernel_group is its iommu_group"
        )
    elif from_sysfs_tree:
        notes.append(
            "no iommu_group links (IOMMU off or absent): ACS control values are the "
            "firmware's; loading applies pci_enable_acs() as a kernel with an IOMMU would"
        )
    if unknown:
        notes.append(
            f"{unknown} functions were read without root: sysfs gives everyone vendor, "
            "device, class, the driver and iommu_group links and the first 64 bytes of config "
            "space; the PCIe port type, ACS, PASID, ATS and DevCap2 (End-End TLP prefixes) "
            "live beyond them (pcie_known/acs_known: false, eetlp_prefix: null). Groups "
            "computed from this file are marked uncertain; capture as root for the full "
            "config space (ACS capability and control registers included)."
        )
    elif from_sysfs_tree:
        notes.append("full config space was readable (root): ACS, PASID, ATS and DevCap2 known")
    notes += [f"warning: {w}" for w in topo.warnings]
    return notes


# -- text output -----------------------------------------------------------------------------


def _print_tree(data: dict[str, Any], topo: Topology, ids: PciIds | None, *, plain: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.tree import Tree

    console = Console(no_color=plain, highlight=False, soft_wrap=False)
    root = Tree(
        f"[bold]IOMMU groups[/] of {escape(str(data['source']))}"
        + (" [yellow](partial data)[/]" if data["partial"] else "")
    )
    reach: dict[int, set[int]] = {}
    for d in data.get("p2p", []):
        for gid in d["groups"]:
            reach.setdefault(gid, set()).update(x for x in d["groups"] if x != gid)
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
            label = f.name or (ids.name(f.vendor, f.device) if ids else None)
            name = f" {escape(label)}" if label else ""
            node.add(f"{b} [dim]{f.id_str} {f.class_code:04x} {t}[/]{name}  driver: {drv}")
        if g["anchor"] not in g["devices"]:
            node.add(f"[dim]anchor: {g['anchor']}[/]")
        for who, text in _why_lines(g["reason_details"]):
            node.add(f"[dim]why ({escape(who)}): {escape(text)}[/]")
        for bl in g["blockers"]:
            node.add(f"[red]blocker:[/] {bl['device']} bound to {escape(bl['driver'])}")
        others = sorted(reach.get(g["id"], ()))
        if others:
            what = "viable, but " if g["viable"] else ""
            node.add(
                f"[red]P2P:[/] {what}peer-to-peer DMA reaches group"
                f"{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} "
                "without passing the IOMMU (see P2P below)"
            )
    console.print(root)
    if data["ungrouped"]:
        console.print(
            "[bold]No group:[/] "
            + ", ".join(f"{u['device']} ({escape(u['reason'])})" for u in data["ungrouped"])
        )
    _print_pasid(console, data, escape)
    for d in data.get("p2p", []):
        cross = " [red]crosses IOMMU groups[/]" if d["crosses_groups"] else ""
        ng = d["groups"]
        gs = f" (group{'s' if len(ng) > 1 else ''} {', '.join(map(str, ng))})" if ng else ""
        console.print(f"[bold]P2P without IOMMU:[/] {', '.join(d['devices'])}{gs}{cross}")
        for r in d["reasons"]:
            console.print(f"    [dim]{escape(r)}[/]")
    kc = data.get("kernel_comparison")
    if kc:
        ok = "[green]matches[/]" if kc["partition_matches"] else "[red]differs from[/]"
        nums = "" if kc["numbers_match"] else " (group numbers differ)"
        console.print(
            f"[bold]Kernel check:[/] computed partition {ok} the kernel's iommu_group links{nums}"
        )
        for s in kc["only_computed"]:
            console.print(f"    only computed: {', '.join(s)}")
        for s in kc["only_kernel"]:
            console.print(f"    only in the kernel: {', '.join(s)}")
    wi = data.get("what_if")
    if wi:
        console.print(
            f"[bold]What if pcie_acs_override={escape(wi['acs_override'])}:[/] "
            f"{len(wi['groups'])} groups instead of {len(data['groups'])}"
        )
        for s in wi["diff"]["split"]:
            parts = " | ".join(", ".join(p) for p in s["after"])
            console.print(f"    split {', '.join(s['before'])} -> {parts}")
        for s in wi["diff"]["merged"]:
            parts = " | ".join(", ".join(p) for p in s["before"])
            console.print(f"    merged {parts} -> {', '.join(s['after'])}")
        console.print(f"    [yellow]{escape(wi['warning'])}[/]")
    for w in data["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}")


def _why_lines(details: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """One line per distinct reason, naming every device it was given for."""
    order: dict[str, list[str]] = {}
    for r in details:
        who = order.setdefault(r["detail"], [])
        if r["device"] not in who:
            who.append(r["device"])
    return [(", ".join(who), text) for text, who in order.items()]


def _print_pasid(console: Any, data: dict[str, Any], escape: Any) -> None:
    eligible = [d["bdf"] for d in data["devices"] if d["pasid"] and d["pasid"]["eligible"]]
    console.print(
        f"[bold]PASID-capable (pci_enable_pasid would succeed):[/] "
        f"{', '.join(eligible) if eligible else 'none'}"
    )
    for d in data["devices"]:
        pv = d["pasid"]
        if pv and not pv["eligible"] and pv["reason"] != "no PASID extended capability":
            unc = " [yellow](uncertain)[/]" if pv["uncertain"] else ""
            console.print(f"    {d['bdf']}: no PASID: {escape(pv['reason'])}{unc}")
    none = sum(
        1
        for d in data["devices"]
        if d["pasid"] and d["pasid"]["reason"] == "no PASID extended capability"
    )
    if none:
        console.print(f"    {none} other functions have no PASID capability")


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m ioasid.cli.groups``)."""
    ap = argparse.ArgumentParser(prog="ioasid")
    sub = ap.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
