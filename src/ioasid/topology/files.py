"""Topology files (YAML or JSON): a host's PCI fabric written down, one entry per function.

Format (unknown keys are ignored; see ``FIELDS``)::

    devices:                       # or a bare list of devices
      - bdf: "0000:00:01.0"        # required, DDDD:BB:DD.F
        id: "8086:1901"            # required, vendor:device (hex)
        pcie_type: root_port       # required: root_port, upstream_port, downstream_port,
                                   #   endpoint, legacy_endpoint, rc_integrated_endpoint,
                                   #   rc_event_collector, pcie_to_pci_bridge,
                                   #   pci_to_pcie_bridge, none (conventional PCI)
        parent: root_bus           # required: root_bus or the bdf of a bridge
        class: "0604"              # base class + subclass (4 hex digits; 6 also accepted)
        acs: {cap: 0x5f, ctl: 0x00}  # absent/null: no ACS capability. ctl = firmware value;
                                   #   the kernel's pci_enable_acs() is applied on top
        multifunction: true        # default: true when the slot has several functions
        driver: pcieport           # bound driver, null/absent = none
        dma_alias: ["00.1"]        # extra same-bus requester ids (devfn "dd.f" or integer)
        secondary_bus: 0x01        # default: lowest bus number among the children
        pasid: true                # or {exec: true, priv: false, max_width: 20}
        ats: true
        eetlp_prefix: true         # DevCap2 End-End TLP Prefix Supported; default true for PCIe
        virtfn: true               # an SR-IOV VF (may sit on a virtual bus number)
        physfn: "0000:03:00.0"
        subsystem: "9005:02bb"
        revision: 0x21
        iommu: false               # not translated by an IOMMU: no group
        untrusted: true            # external-facing: pci_std_enable_acs also sets TB
        pch_acs_workaround: false  # pci_quirk_enable_intel_pch_acs failed (RCBA disabled)
        kernel_group: 7            # a group number observed on a real kernel (for diffs)
        name: "GPU"
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .model import Acs, Bdf, PcieType, PciFunction, Topology, TopologyError, devfn_str

__all__ = ["FIELDS", "dump", "load", "load_default_host", "parse"]

FIELDS = (
    "bdf",
    "id",
    "class",
    "pcie_type",
    "parent",
    "acs",
    "multifunction",
    "driver",
    "dma_alias",
    "secondary_bus",
    "pasid",
    "ats",
    "eetlp_prefix",
    "virtfn",
    "physfn",
    "subsystem",
    "revision",
    "iommu",
    "untrusted",
    "pch_acs_workaround",
    "kernel_group",
    "name",
)
_REQUIRED = ("bdf", "id", "pcie_type", "parent")


def _err(where: str, msg: str) -> TopologyError:
    return TopologyError(f"{where}: {msg}")


def _int(v: Any, where: str, key: str, hi: int = 0xFFFFFFFF) -> int:
    if isinstance(v, bool):
        raise _err(where, f"{key} must be a number, not {v!r}")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str):
        try:
            n = int(v, 0) if v.strip().lower().startswith("0x") else int(v, 16)
        except ValueError:
            raise _err(where, f"{key} {v!r} is not a number") from None
    else:
        raise _err(where, f"{key} must be a number, not {type(v).__name__}")
    if not 0 <= n <= hi:
        raise _err(where, f"{key} {v!r} is out of range 0..{hi:#x}")
    return n


def _bool(v: Any, where: str, key: str) -> bool:
    if isinstance(v, bool):
        return v
    raise _err(where, f"{key} must be true or false, not {v!r}")


def _id_pair(v: Any, where: str, key: str) -> tuple[int, int]:
    if not isinstance(v, str) or v.count(":") != 1:
        raise _err(where, f'{key} must be "vvvv:dddd" (hex vendor:device), not {v!r}')
    a, b = v.split(":")
    try:
        va, vb = int(a, 16), int(b, 16)
    except ValueError:
        raise _err(where, f"{key} {v!r} is not hex vendor:device") from None
    if not (0 <= va <= 0xFFFF and 0 <= vb <= 0xFFFF):
        raise _err(where, f"{key} {v!r}: vendor and device are 16-bit")
    return va, vb


def _devfn(v: Any, where: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        if not 0 <= v <= 0xFF:
            raise _err(where, f"dma_alias devfn {v} is outside 0..255")
        return v
    if isinstance(v, str) and "." in v:
        s, _, f = v.partition(".")
        try:
            slot, fn = int(s, 16), int(f)
        except ValueError:
            slot, fn = -1, -1
        if 0 <= slot <= 0x1F and 0 <= fn <= 7:
            return (slot << 3) | fn
    raise _err(where, f'dma_alias entry {v!r} is not a devfn ("dd.f" or 0..255)')


def _parse_device(raw: Any, i: int) -> tuple[PciFunction, bool]:
    """One device entry; returns the function and whether ``multifunction`` was given."""
    if not isinstance(raw, Mapping):
        raise TopologyError(f"device #{i + 1}: must be a mapping of fields, not {raw!r}")
    bdf_raw = raw.get("bdf")
    where = f"device #{i + 1}" + (f" ({bdf_raw})" if isinstance(bdf_raw, str) else "")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _err(where, f"missing required key(s): {', '.join(missing)}")
    try:
        bdf = Bdf.parse(str(bdf_raw))
    except ValueError as e:
        raise _err(where, f"bad bdf: {e}") from None
    where = str(bdf)
    vendor, device = _id_pair(raw["id"], where, "id")
    pt_raw = raw["pcie_type"]
    if pt_raw is None:
        pt_raw = "none"
    try:
        pcie_type = PcieType.from_file_name(str(pt_raw))
    except KeyError:
        from .model import PCIE_TYPE_FILE_NAMES

        raise _err(
            where, f"pcie_type {pt_raw!r} is not one of {', '.join(PCIE_TYPE_FILE_NAMES)}"
        ) from None
    par = raw["parent"]
    parent: Bdf | None
    if par in ("root_bus", None):
        parent = None
    else:
        try:
            parent = Bdf.parse(par)
        except ValueError as e:
            raise _err(where, f"bad parent (root_bus or a bridge's bdf): {e}") from None
    cls_raw = raw.get("class")
    if cls_raw is None:
        class_code = 0x0604 if pcie_type is not None and pcie_type.is_bridge else 0x0000
    else:
        s = (
            f"{cls_raw:x}"
            if isinstance(cls_raw, int) and not isinstance(cls_raw, bool)
            else str(cls_raw)
        )
        s = s.lower().removeprefix("0x")
        try:
            n = int(s, 16)
        except ValueError:
            raise _err(where, f'class {cls_raw!r} is not hex (e.g. "0604")') from None
        class_code = n >> 8 if len(s) == 6 else n
        if class_code > 0xFFFF:
            raise _err(where, f"class {cls_raw!r} has more than 4 (or 6) hex digits")
    acs: Acs | None = None
    acs_raw = raw.get("acs")
    if acs_raw is not None:
        if not isinstance(acs_raw, Mapping) or "cap" not in acs_raw:
            raise _err(where, f"acs must be null or {{cap: 0x.., ctl: 0x..}}, not {acs_raw!r}")
        acs = Acs(
            _int(acs_raw["cap"], where, "acs.cap"),
            _int(acs_raw.get("ctl", acs_raw.get("ctrl", 0)), where, "acs.ctl"),
        )
    pasid_raw = raw.get("pasid", False)
    pasid = pexec = ppriv = False
    pwidth = 0
    if isinstance(pasid_raw, Mapping):
        pasid = True
        pexec = _bool(pasid_raw.get("exec", False), where, "pasid.exec")
        ppriv = _bool(pasid_raw.get("priv", False), where, "pasid.priv")
        pwidth = _int(pasid_raw.get("max_width", 20), where, "pasid.max_width", 20)
    elif pasid_raw is not None:
        pasid = _bool(pasid_raw, where, "pasid")
        pwidth = 20 if pasid else 0
    eetlp_raw = raw.get("eetlp_prefix")
    eetlp = (
        (pcie_type is not None) if eetlp_raw is None else _bool(eetlp_raw, where, "eetlp_prefix")
    )
    aliases = raw.get("dma_alias") or []
    if not isinstance(aliases, list):
        aliases = [aliases]
    sub = raw.get("subsystem")
    subsystem = _id_pair(sub, where, "subsystem") if sub is not None else (None, None)
    physfn_raw = raw.get("physfn")
    try:
        physfn = Bdf.parse(physfn_raw) if physfn_raw else None
    except ValueError as e:
        raise _err(where, f"bad physfn: {e}") from None
    drv = raw.get("driver")
    if drv is not None and not isinstance(drv, str):
        raise _err(where, f"driver must be a name or null, not {drv!r}")
    sec = raw.get("secondary_bus")
    kg = raw.get("kernel_group")
    f = PciFunction(
        bdf=bdf,
        vendor=vendor,
        device=device,
        class_code=class_code,
        pcie_type=pcie_type,
        parent=parent,
        acs=acs,
        multifunction=_bool(raw.get("multifunction", False), where, "multifunction"),
        driver=drv or None,
        dma_alias_devfns=frozenset(_devfn(a, where) for a in aliases),
        secondary_bus=None if sec is None else _int(sec, where, "secondary_bus", 0xFF),
        subsystem_vendor=subsystem[0],
        subsystem_device=subsystem[1],
        revision=None
        if raw.get("revision") is None
        else _int(raw["revision"], where, "revision", 0xFF),
        pasid=pasid,
        pasid_exec=pexec,
        pasid_priv=ppriv,
        pasid_max_width=pwidth,
        ats=_bool(raw.get("ats", False), where, "ats"),
        eetlp_prefix=eetlp,
        is_virtfn=_bool(raw.get("virtfn", False), where, "virtfn"),
        physfn=physfn,
        untrusted=_bool(raw.get("untrusted", False), where, "untrusted"),
        iommu=_bool(raw.get("iommu", bdf.domain < 0x10000), where, "iommu"),
        pch_acs_workaround=_bool(raw.get("pch_acs_workaround", True), where, "pch_acs_workaround"),
        kernel_group=None if kg is None else _int(kg, where, "kernel_group"),
        name=None if raw.get("name") is None else str(raw.get("name")),
    )
    return f, "multifunction" in raw


def parse(data: Any, *, source: str = "<data>") -> Topology:
    """Build a ``Topology`` from already-decoded YAML/JSON data."""
    if isinstance(data, Mapping):
        devices = data.get("devices")
        if devices is None:
            raise TopologyError(f"{source}: no 'devices' list at the top level")
    else:
        devices = data
    if not isinstance(devices, list):
        raise TopologyError(f"{source}: 'devices' must be a list of device entries")
    parsed = [_parse_device(d, i) for i, d in enumerate(devices)]
    slots: dict[tuple[int, int, int], int] = {}
    for f, _ in parsed:
        k = (f.bdf.domain, f.bdf.bus, f.bdf.dev)
        if not f.is_virtfn:
            slots[k] = slots.get(k, 0) + 1
    fns: list[PciFunction] = []
    for f, given in parsed:
        if not given and not f.is_virtfn and slots[(f.bdf.domain, f.bdf.bus, f.bdf.dev)] > 1:
            f = f.with_(multifunction=True)
        fns.append(f)
    try:
        topo = Topology(
            fns, source=source, kernel_groups_known=any(f.kernel_group is not None for f in fns)
        )
    except TopologyError as e:
        raise TopologyError(f"{source}: {e}") from None
    return topo


def load(path: str | os.PathLike[str]) -> Topology:
    """Read a topology file (YAML, or JSON by extension or content)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise TopologyError(f"cannot read topology file {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise TopologyError(f"{p}: not a text file (expected YAML or JSON)") from None
    try:
        if p.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise TopologyError(f"{p}: not valid YAML/JSON: {e}") from None
    return parse(data, source=str(p))


def load_default_host() -> Topology:
    """The embedded default host (``default_host.yaml``)."""
    text = resources.files("ioasid.topology").joinpath("default_host.yaml").read_text("utf-8")
    return parse(yaml.safe_load(text), source="default_host.yaml")


def dump(topo: Topology) -> dict[str, Any]:
    """A topology as file data (``yaml.safe_dump(dump(t))`` round-trips through ``parse``)."""
    out: list[dict[str, Any]] = []
    for f in topo:
        d: dict[str, Any] = {
            "bdf": str(f.bdf),
            "id": f.id_str,
            "class": f"{f.class_code:04x}",
            "pcie_type": f.pcie_type.file_name if f.pcie_type is not None else "none",
            "parent": str(f.parent) if f.parent else "root_bus",
            "acs": None if f.acs is None else {"cap": f.acs.cap, "ctl": f.acs.ctrl},
            "multifunction": f.multifunction,
        }
        if f.driver:
            d["driver"] = f.driver
        if f.dma_alias_devfns:
            d["dma_alias"] = [devfn_str(a) for a in sorted(f.dma_alias_devfns)]
        if f.secondary_bus is not None:
            d["secondary_bus"] = f.secondary_bus
        if f.pasid:
            d["pasid"] = {
                "exec": f.pasid_exec,
                "priv": f.pasid_priv,
                "max_width": f.pasid_max_width,
            }
        if f.ats:
            d["ats"] = True
        if f.eetlp_prefix is not None:
            d["eetlp_prefix"] = f.eetlp_prefix
        if f.is_virtfn:
            d["virtfn"] = True
        if f.physfn:
            d["physfn"] = str(f.physfn)
        if f.subsystem_vendor is not None:
            d["subsystem"] = f"{f.subsystem_vendor:04x}:{f.subsystem_device or 0:04x}"
        if f.revision is not None:
            d["revision"] = f.revision
        if not f.iommu:
            d["iommu"] = False
        if f.untrusted:
            d["untrusted"] = True
        if not f.pch_acs_workaround:
            d["pch_acs_workaround"] = False
        if f.kernel_group is not None:
            d["kernel_group"] = f.kernel_group
        if f.name:
            d["name"] = f.name
        out.append(d)
    return {"source": topo.source, "devices": out}
