"""Read a live (or captured) ``/sys/bus/pci/devices`` tree into a ``Topology``.

Per device we read ``vendor``, ``device``, ``class``, ``config`` (header type and its
multifunction bit, bridge bus numbers, the capability list for the PCIe port type and DevCap2,
the extended capabilities from 0x100 for ACS ``0x000D``, ATS ``0x000F`` and PASID ``0x001B``),
the ``driver`` link, ``physfn`` (SR-IOV) and the kernel's own ``iommu_group`` link, kept beside
our computation as ground truth. The tree comes from the device path (``/sys/devices/pci0000:00/
0000:00:01.0/0000:01:00.0``), with bridge bus ranges as a fallback.

Unprivileged reads of ``config`` return only the first 64 bytes: the PCIe type and ACS are then
unknown, the device is marked ``pcie_known``/``acs_known`` = False and every decision that rests
on it is reported as uncertain. A device that vanishes or a file we cannot read becomes a
warning, never a traceback.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .model import Acs, Bdf, PcieType, PciFunction, Topology, TopologyError
from .quirks import INTEL_SPT_PCH_ACS_RANGES

__all__ = ["ConfigInfo", "from_sysfs", "parse_config"]

PCI_CAP_ID_EXP = 0x10
PCI_EXT_CAP_ID_ACS = 0x0D
PCI_EXT_CAP_ID_ATS = 0x0F
PCI_EXT_CAP_ID_SRIOV = 0x10
PCI_EXT_CAP_ID_PASID = 0x1B
PCI_EXP_DEVCAP2_EE_PREFIX = 0x00200000

_BDF_NAME = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_ROOT_NAME = re.compile(r"^pci([0-9a-f]{4,8}):([0-9a-f]{2})$")


@dataclass(slots=True)
class ConfigInfo:
    """What ``parse_config`` could tell from the bytes it was given."""

    vendor: int | None = None
    device: int | None = None
    class_code: int | None = None
    revision: int | None = None
    header_type: int | None = None
    multifunction: bool | None = None
    secondary_bus: int | None = None
    subordinate_bus: int | None = None
    subsystem: tuple[int, int] | None = None
    pcie_type: PcieType | None = None
    pcie_known: bool = False
    eetlp_prefix: bool | None = None
    acs: Acs | None = None
    acs_known: bool = False
    pasid: bool = False
    pasid_exec: bool = False
    pasid_priv: bool = False
    pasid_max_width: int = 0
    ats: bool = False
    sriov: bool = False
    notes: list[str] = field(default_factory=list)


def _u8(b: bytes, o: int) -> int:
    return b[o]


def _u16(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<H", b, o)[0])


def _u32(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0])


def _spt(vendor: int | None, device: int | None, t: PcieType | None) -> bool:
    return (
        vendor == 0x8086
        and t is PcieType.ROOT_PORT
        and device is not None
        and any(lo <= device <= hi for lo, hi in INTEL_SPT_PCH_ACS_RANGES)
    )


def parse_config(data: bytes, size: int | None = None) -> ConfigInfo:
    """Parse PCI config space bytes. ``size`` is the size sysfs reports for ``config``
    (256 for conventional/no-ECAM devices, 4096 for PCIe); reads shorter than it are partial."""
    size = len(data) if size is None else size
    ci = ConfigInfo()
    n = len(data)
    if n < 64:
        ci.notes.append(f"config: only {n} bytes readable")
        return ci
    ci.vendor, ci.device = _u16(data, 0), _u16(data, 2)
    ci.revision = data[8]
    ci.class_code = (data[0xB] << 8) | data[0xA]
    ht = data[0xE]
    ci.header_type, ci.multifunction = ht & 0x7F, bool(ht & 0x80)
    if ci.header_type in (1, 2):
        ci.secondary_bus, ci.subordinate_bus = data[0x19], data[0x1A]
    elif ci.header_type == 0:
        ci.subsystem = (_u16(data, 0x2C), _u16(data, 0x2E))
    status = _u16(data, 6)
    # standard capability list
    if not status & 0x10:
        ci.pcie_known = True  # no capability list at all: conventional PCI
        ci.acs_known = True
        return ci
    ptr = data[0x14 if ci.header_type == 2 else 0x34] & 0xFC
    seen = 0
    complete = True
    exp_at: int | None = None
    while ptr:
        if ptr + 2 > n:
            complete = False
            break
        if seen > 48:
            ci.notes.append("config: capability list loops")
            break
        seen += 1
        cid, nxt = data[ptr], data[ptr + 1] & 0xFC
        if cid == PCI_CAP_ID_EXP:
            if ptr + 4 > n:
                complete = False
                break
            exp_at = ptr
            break
        ptr = nxt
    if exp_at is None:
        if not complete:
            ci.notes.append(
                f"config: capability list beyond the {n} readable bytes "
                "(unprivileged read?): PCIe type unknown"
            )
            return ci
        ci.pcie_known = True
        ci.acs_known = True  # conventional PCI has no extended capabilities
        return ci
    flags = _u16(data, exp_at + 2)
    try:
        ci.pcie_type = PcieType((flags >> 4) & 0xF)
    except ValueError:
        ci.notes.append(f"config: unknown PCIe device/port type {(flags >> 4) & 0xF:#x}")
        ci.pcie_type = PcieType.ENDPOINT
    ci.pcie_known = True
    if (flags & 0xF) >= 2 and exp_at + 0x28 <= n:
        ci.eetlp_prefix = bool(_u32(data, exp_at + 0x24) & PCI_EXP_DEVCAP2_EE_PREFIX)
    elif (flags & 0xF) < 2:
        ci.eetlp_prefix = False
    # extended capabilities
    if size <= 0x100:
        ci.acs_known = True  # the kernel cannot see extended capabilities either
        return ci
    if n < size:
        ci.notes.append(
            f"config: {n} of {size} bytes readable: ACS/PASID unknown "
            "(extended capabilities need root)"
        )
        return ci
    pos, seen = 0x100, 0
    while pos and pos + 4 <= n and seen < 512:
        seen += 1
        hdr = _u32(data, pos)
        if hdr in (0, 0xFFFFFFFF):
            break
        cid, nxt = hdr & 0xFFFF, (hdr >> 20) & 0xFFC
        if cid == PCI_EXT_CAP_ID_ACS and pos + 8 <= n:
            if _spt(ci.vendor, ci.device, ci.pcie_type) and pos + 12 <= n:
                ci.acs = Acs(_u32(data, pos + 4), _u32(data, pos + 8))
                ci.notes.append("ACS: Intel SPT dword layout (control at cap+8)")
            else:
                ci.acs = Acs(_u16(data, pos + 4), _u16(data, pos + 6))
        elif cid == PCI_EXT_CAP_ID_PASID and pos + 8 <= n:
            cap = _u16(data, pos + 4)
            ci.pasid = True
            ci.pasid_exec, ci.pasid_priv = bool(cap & 2), bool(cap & 4)
            ci.pasid_max_width = (cap >> 8) & 0x1F
        elif cid == PCI_EXT_CAP_ID_ATS:
            ci.ats = True
        elif cid == PCI_EXT_CAP_ID_SRIOV:
            ci.sriov = True
        if nxt < 0x100:
            break
        pos = nxt
    ci.acs_known = True
    return ci


@dataclass(slots=True)
class _Raw:
    bdf: Bdf
    path: Path
    real: str | None
    attrs: dict[str, str]
    links: dict[str, str | None]
    config: ConfigInfo | None
    config_partial: bool


def _read_text(p: Path, warnings: list[str], bdf: str) -> str | None:
    try:
        return p.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        warnings.append(f"{bdf}: cannot read {p.name}: {e.strerror or e}")
        return None


def _link(p: Path) -> str | None:
    try:
        return os.readlink(p)
    except OSError:
        return None


def _devices_dir(root: Path) -> Path:
    for cand in (root / "bus" / "pci" / "devices", root / "devices", root):
        if cand.is_dir():
            try:
                names = os.listdir(cand)
            except OSError:
                continue
            if any(_BDF_NAME.match(n) for n in names):
                return cand
    raise TopologyError(
        f"{root}: no PCI devices found (expected a sysfs root with bus/pci/devices/"
        "DDDD:BB:DD.F entries)"
    )


def from_sysfs(root: str | os.PathLike[str] = "/sys") -> Topology:
    """Build a ``Topology`` from ``root`` (``/sys`` or a captured copy of it)."""
    rootp = Path(root)
    ddir = _devices_dir(rootp)
    warnings: list[str] = []
    raws: dict[Bdf, _Raw] = {}
    try:
        names = sorted(os.listdir(ddir))
    except OSError as e:
        raise TopologyError(f"{ddir}: cannot list devices: {e.strerror or e}") from None
    for name in names:
        if not _BDF_NAME.match(name):
            continue
        bdf = Bdf.parse(name)
        p = ddir / name
        if not p.exists():
            warnings.append(f"{name}: vanished while reading")
            continue
        attrs: dict[str, str] = {}
        for a in (
            "vendor",
            "device",
            "class",
            "subsystem_vendor",
            "subsystem_device",
            "revision",
            "secondary_bus_number",
            "subordinate_bus_number",
        ):
            v = _read_text(p / a, warnings, name)
            if v is not None:
                attrs[a] = v
        links = {k: _link(p / k) for k in ("driver", "iommu_group", "physfn")}
        cfg: ConfigInfo | None = None
        partial = True
        try:
            size = (p / "config").stat().st_size
            with open(p / "config", "rb") as fh:
                data = fh.read()
            cfg = parse_config(data, size or len(data))
            partial = len(data) < (size or len(data)) or not (cfg.pcie_known and cfg.acs_known)
            for note in cfg.notes:
                warnings.append(f"{name}: {note}")
        except FileNotFoundError:
            if not p.exists():
                warnings.append(f"{name}: vanished while reading")
                continue
            warnings.append(f"{name}: no config file")
        except OSError as e:
            warnings.append(f"{name}: cannot read config: {e.strerror or e}")
        if "vendor" not in attrs and (cfg is None or cfg.vendor is None):
            if not p.exists():
                warnings.append(f"{name}: vanished while reading")
            else:
                warnings.append(f"{name}: neither vendor nor config readable; skipped")
            continue
        try:
            real: str | None = os.path.realpath(p)
        except OSError:
            real = None
        raws[bdf] = _Raw(bdf, p, real, attrs, links, cfg, partial)
    if not raws:
        raise TopologyError(f"{ddir}: no readable PCI devices")
    return _build(raws, warnings, str(rootp))


def _hex(s: str | None) -> int | None:
    if s is None:
        return None
    try:
        return int(s, 16)
    except ValueError:
        return None


def _build(raws: dict[Bdf, _Raw], warnings: list[str], source: str) -> Topology:
    # parents: from the device path, else from bridge bus ranges
    bridges: dict[Bdf, tuple[int, int]] = {}
    for b, r in raws.items():
        sec = r.config.secondary_bus if r.config else None
        sub = r.config.subordinate_bus if r.config else None
        if sec is None and "secondary_bus_number" in r.attrs:
            try:
                sec = int(r.attrs["secondary_bus_number"])
                sub = int(r.attrs.get("subordinate_bus_number", sec))
            except ValueError:
                sec = None
        if sec is not None and sub is not None and sec > b.bus:
            bridges[b] = (sec, sub)
    parent: dict[Bdf, Bdf | None] = {}
    for b, r in raws.items():
        par: Bdf | None = None
        resolved = False
        if r.real is not None:
            up = os.path.basename(os.path.dirname(r.real))
            if _BDF_NAME.match(up):
                cand = Bdf.parse(up)
                if cand in raws and cand != b:
                    par, resolved = cand, True
            elif _ROOT_NAME.match(up):
                par, resolved = None, True
        if not resolved:
            best: tuple[int, Bdf] | None = None
            for br, (sec, sub) in bridges.items():
                if br.domain == b.domain and sec <= b.bus <= sub and br != b:
                    width = sub - sec
                    if best is None or width < best[0]:
                        best = (width, br)
            par = best[1] if best else None
        parent[b] = par
    any_group = any(r.links.get("iommu_group") for r in raws.values())
    fns: list[PciFunction] = []
    slots: dict[tuple[int, int, int], int] = {}
    for b in raws:
        slots[(b.domain, b.bus, b.dev)] = slots.get((b.domain, b.bus, b.dev), 0) + 1
    for b, r in raws.items():
        c = r.config or ConfigInfo()
        vendor = _hex(r.attrs.get("vendor")) if c.vendor is None else c.vendor
        device = _hex(r.attrs.get("device")) if c.device is None else c.device
        cls_full = _hex(r.attrs.get("class"))
        class_code = (cls_full >> 8) if cls_full is not None else (c.class_code or 0)
        physfn_l = r.links.get("physfn")
        physfn = None
        if physfn_l:
            try:
                physfn = Bdf.parse(os.path.basename(physfn_l))
            except ValueError:
                physfn = None
        is_vf = physfn is not None
        mf = c.multifunction
        if mf is None:
            mf = slots[(b.domain, b.bus, b.dev)] > 1 and not is_vf
        pcie_type = c.pcie_type
        is_bridge_cls = class_code in (0x0604, 0x0609) or c.header_type in (1, 2)
        if not c.pcie_known:
            # best effort, flagged uncertain: guess by position
            if is_bridge_cls:
                pcie_type = PcieType.ROOT_PORT if parent[b] is None else PcieType.DOWNSTREAM
            else:
                pcie_type = PcieType.RC_END if parent[b] is None else PcieType.ENDPOINT
        grp_l = r.links.get("iommu_group")
        kgroup: int | None = None
        if grp_l:
            try:
                kgroup = int(os.path.basename(grp_l))
            except ValueError:
                kgroup = None
        drv = r.links.get("driver")
        sub_v, sub_d = _hex(r.attrs.get("subsystem_vendor")), _hex(r.attrs.get("subsystem_device"))
        if sub_v is None and c.subsystem:
            sub_v, sub_d = c.subsystem
        fns.append(
            PciFunction(
                bdf=b,
                vendor=vendor or 0,
                device=device or 0,
                class_code=class_code,
                pcie_type=pcie_type,
                parent=parent[b],
                acs=c.acs,
                multifunction=bool(mf) and not is_vf,
                header_type=c.header_type
                if c.header_type is not None
                else (1 if is_bridge_cls else 0),
                driver=os.path.basename(drv) if drv else None,
                secondary_bus=bridges.get(b, (None, None))[0],
                subordinate_bus=bridges.get(b, (None, None))[1],
                subsystem_vendor=sub_v,
                subsystem_device=sub_d,
                revision=c.revision if c.revision is not None else _hex(r.attrs.get("revision")),
                pasid=c.pasid,
                pasid_exec=c.pasid_exec,
                pasid_priv=c.pasid_priv,
                pasid_max_width=c.pasid_max_width,
                ats=c.ats,
                eetlp_prefix=c.eetlp_prefix,
                is_virtfn=is_vf,
                physfn=physfn,
                iommu=(kgroup is not None) if any_group else b.domain < 0x10000,
                acs_known=c.acs_known,
                pcie_known=c.pcie_known,
                kernel_group=kgroup,
            )
        )
    partial = any(not f.certain for f in fns) or bool(
        [w for w in warnings if "vanished" in w or "cannot read" in w]
    )
    if not any_group:
        warnings.append(
            "no iommu_group links: the IOMMU is off or absent; showing the groups "
            "the kernel would form with one"
        )
    return _topology_or_repair(fns, warnings, source, partial, any_group)


def _topology_or_repair(
    fns: list[PciFunction], warnings: list[str], source: str, partial: bool, measured: bool
) -> Topology:
    """Build the topology; a device whose parent contradicts the tree (a racing hot-unplug,
    a half-copied capture) is re-attached to its root bus with a warning instead of failing."""
    byb = {f.bdf: f for f in fns}
    for _ in range(len(fns) + 1):
        try:
            return Topology(
                byb.values(),
                source=source,
                partial=partial,
                warnings=warnings,
                acs_ctrl_measured=measured,
                kernel_groups_known=measured,
            )
        except TopologyError as e:
            m = re.match(r"^([0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])", str(e))
            if not m:
                raise
            b = Bdf.parse(m.group(1))
            if b not in byb:
                raise
            f = byb.pop(b)
            warnings.append(f"{b}: dropped, inconsistent with the rest of the tree ({e})")
            partial = True
            del f
    raise TopologyError(f"{source}: could not build a consistent PCI tree")
