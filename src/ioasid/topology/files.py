"""Topology files (YAML or JSON): a host's PCI fabric written down, one entry per function.

Format (unknown keys are ignored; see ``FIELDS``)::

    devices:                       # or a bare list of devices
      - bdf: "0000:00:01.0"        # required, DDDD:BB:DD.F (or lspci's BB:DD.F: domain 0)
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
        eetlp_prefix: true         # DevCap2 End-End TLP Prefix Supported; default true for PCIe,
                                   #   null: unknown (config space beyond 64 bytes unread)
        virtfn: true               # an SR-IOV VF (may sit on a virtual bus number)
        physfn: "0000:03:00.0"
        subsystem: "9005:02bb"
        revision: 0x21
        iommu: false               # not translated by an IOMMU: no group
        untrusted: true            # external-facing: pci_std_enable_acs also sets TB
        pch_acs_workaround: false  # pci_quirk_enable_intel_pch_acs failed (RCBA disabled)
        kernel_group: 7            # a group number observed on a real kernel (for diffs)
        name: "GPU"
        header_type: 1             # 0 normal, 1 PCI-PCI bridge, 2 CardBus (default: from type)
        acs_known: false           # ACS could not be read (unprivileged capture): decisions
        pcie_known: false          #   resting on it are uncertain; likewise the PCIe type

Top level, besides ``devices``: ``acs_ctl: measured`` says the ``ctl`` values are what the
running kernel already wrote (a sysfs capture, ``ioasid groups --save``): they are used as
they are instead of re-running ``pci_enable_acs()`` on them (``firmware``, the default).

Scalars are read as YAML 1.2 reads them where 1.1 surprises: no base-60 numbers (an unquoted
``00:01.0`` is a string), no octal (``0604`` is a string, read as hex), no timestamps.

Limits, so that no file can make the loader run long or allocate much: at most
``MAX_FILE_BYTES`` are read (``/dev/zero``, a FIFO, a file that grows), nesting at most
``MAX_DEPTH``, YAML aliases expand to at most 2 values per byte of the file, a pipe or
device must deliver within ``READ_TIMEOUT``. Every failure, for whatever bytes, is a
``TopologyError`` that names the file and the rule.
"""

from __future__ import annotations

import errno
import json
import os
import re
import reprlib
import select
import stat
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .model import (
    PCIE_TYPE_FILE_NAMES,
    Acs,
    Bdf,
    PcieType,
    PciFunction,
    Topology,
    TopologyError,
    devfn_str,
    gc_paused,
)

__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "READ_TIMEOUT",
    "decode",
    "dump",
    "load",
    "load_default_host",
    "parse",
]

#: Files larger than this are refused (50,000 functions take about 10 MB of YAML).
MAX_FILE_BYTES = 64 << 20
#: Deepest nesting accepted (a topology file needs 5 levels).
MAX_DEPTH = 32
#: Seconds a pipe or character device may take to deliver its data.
READ_TIMEOUT = 10.0

_ABSENT = object()
_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = 60
_REPR.maxother = 60
_LOADER: type[Any] | None = None

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
    "header_type",
    "acs_known",
    "pcie_known",
)
_REQUIRED = ("bdf", "id", "pcie_type", "parent")


def _err(where: str, msg: str) -> TopologyError:
    return TopologyError(f"{where}: {msg}")


def _int(v: Any, where: str, key: str, hi: int = 0xFFFFFFFF) -> int:
    if isinstance(v, bool):
        raise _err(where, f"{key} must be a number, not {_show(v)}")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str):
        try:
            n = int(v, 0) if v.strip().lower().startswith("0x") else int(v, 16)
        except ValueError:
            raise _err(where, f"{key} {_show(v)} is not a number") from None
    else:
        raise _err(where, f"{key} must be a number, not {type(v).__name__}")
    if not 0 <= n <= hi:
        raise _err(where, f"{key} {_show(v)} is out of range 0..{hi:#x}")
    return n


def _where(i: int, bdf_raw: Any) -> str:
    return f"device #{i + 1}" + (f" ({bdf_raw})" if isinstance(bdf_raw, str) else "")


_ID_MEMO: dict[str, tuple[int, int]] = {}
_CLASS_MEMO: dict[str, int] = {}
_ACS_MEMO: dict[tuple[type, Any, type, Any], Acs] = {}
_PCIE_TYPES: dict[str, PcieType | None] = {
    n: PcieType.from_file_name(n) for n in PCIE_TYPE_FILE_NAMES
}
_NO_ALIAS: frozenset[int] = frozenset()


def _memo(table: dict[Any, Any], key: Any, value: Any) -> Any:
    """Remember a parsed field (files repeat ids, classes and ACS values): bounded."""
    if len(table) >= 1 << 16:
        table.clear()
    table[key] = value
    return value


def _scalar_str(v: Any, where: str, key: str) -> str:
    """A text field: strings as they are, numbers spelled out, anything else refused."""
    if isinstance(v, str):
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise _err(where, f"{key} {_show(v)} is not valid Unicode text") from None
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    raise _err(where, f"{key} must be a string, not {_show(v)}")


def _bool(v: Any, where: str, key: str) -> bool:
    if v is True or v is False:
        return bool(v)
    raise _err(where, f"{key} must be true or false, not {_show(v)}")


def _id_pair(v: Any, where: str, key: str) -> tuple[int, int]:
    got = _ID_MEMO.get(v) if v.__class__ is str else None
    if got is not None:
        return got
    if not isinstance(v, str) or v.count(":") != 1:
        raise _err(where, f'{key} must be "vvvv:dddd" (hex vendor:device), not {_show(v)}')
    a, b = v.split(":")
    try:
        va, vb = int(a, 16), int(b, 16)
    except ValueError:
        raise _err(where, f"{key} {_show(v)} is not hex vendor:device") from None
    if not (0 <= va <= 0xFFFF and 0 <= vb <= 0xFFFF):
        raise _err(where, f"{key} {_show(v)}: vendor and device are 16-bit")
    _memo(_ID_MEMO, v, (va, vb))
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
    raise _err(where, f'dma_alias entry {_show(v)} is not a devfn ("dd.f" or 0..255)')


def _parse_device(raw: Any, i: int) -> tuple[PciFunction, bool]:
    """One device entry; returns the function and whether ``multifunction`` was given."""
    if not isinstance(raw, Mapping):
        raise TopologyError(f"device #{i + 1}: must be a mapping of fields, not {_show(raw)}")
    bdf_raw = raw.get("bdf")
    if "bdf" not in raw or "id" not in raw or "pcie_type" not in raw or "parent" not in raw:
        missing = [k for k in _REQUIRED if k not in raw]
        raise _err(_where(i, bdf_raw), f"missing required key(s): {', '.join(missing)}")
    try:
        bdf = Bdf.parse(
            bdf_raw if bdf_raw.__class__ is str else _scalar_str(bdf_raw, _where(i, bdf_raw), "bdf")
        )
    except ValueError as e:
        raise _err(_where(i, bdf_raw), f"bad bdf: {e}") from None
    where = str(bdf)
    vendor, device = _id_pair(raw["id"], where, "id")
    pt_raw = raw["pcie_type"]
    if pt_raw is None:
        pt_raw = "none"
    if pt_raw.__class__ is not str or pt_raw not in _PCIE_TYPES:
        _scalar_str(pt_raw, where, "pcie_type")
        raise _err(
            where, f"pcie_type {_show(pt_raw)} is not one of {', '.join(PCIE_TYPE_FILE_NAMES)}"
        )
    pcie_type = _PCIE_TYPES[pt_raw]
    par = raw["parent"]
    parent: Bdf | None
    if par in ("root_bus", None):
        parent = None
    else:
        try:
            parent = Bdf.parse(_scalar_str(par, where, "parent"))
        except ValueError as e:
            raise _err(where, f"bad parent (root_bus or a bridge's bdf): {e}") from None
    cls_raw = raw.get("class")
    if cls_raw is None:
        class_code = 0x0604 if pcie_type is not None and pcie_type.is_bridge else 0x0000
    elif cls_raw.__class__ is str and cls_raw in _CLASS_MEMO:
        class_code = _CLASS_MEMO[cls_raw]
    else:
        s = (
            f"{cls_raw:x}"
            if isinstance(cls_raw, int) and not isinstance(cls_raw, bool)
            else _scalar_str(cls_raw, where, "class")
        )
        s = s.lower().removeprefix("0x")
        try:
            n = int(s, 16)
        except ValueError:
            raise _err(where, f'class {_show(cls_raw)} is not hex (e.g. "0604")') from None
        class_code = n >> 8 if len(s) == 6 else n
        if class_code > 0xFFFF:
            raise _err(where, f"class {_show(cls_raw)} has more than 4 (or 6) hex digits")
        if cls_raw.__class__ is str:
            _memo(_CLASS_MEMO, cls_raw, class_code)
    acs: Acs | None = None
    acs_raw = raw.get("acs")
    if acs_raw is not None:
        if not isinstance(acs_raw, Mapping) or "cap" not in acs_raw:
            raise _err(where, f"acs must be null or {{cap: 0x.., ctl: 0x..}}, not {_show(acs_raw)}")
        cap_raw = acs_raw["cap"]
        ctl_raw = acs_raw.get("ctl", acs_raw.get("ctrl", 0))
        key = (cap_raw.__class__, cap_raw, ctl_raw.__class__, ctl_raw)
        acs = _ACS_MEMO.get(key) if key[0] is int and key[2] is int else None
        if acs is None:
            acs = Acs(_int(cap_raw, where, "acs.cap"), _int(ctl_raw, where, "acs.ctl"))
            if key[0] is int and key[2] is int:
                _memo(_ACS_MEMO, key, acs)
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
    eetlp_raw = raw.get("eetlp_prefix", _ABSENT)
    eetlp: bool | None
    if eetlp_raw is _ABSENT:
        eetlp = pcie_type is not None
    elif eetlp_raw is None:
        eetlp = None  # unknown
    else:
        eetlp = _bool(eetlp_raw, where, "eetlp_prefix")
    ht = raw.get("header_type")
    aliases = raw.get("dma_alias") or ()
    if not isinstance(aliases, list | tuple):
        aliases = [aliases]
    sub = raw.get("subsystem")
    subsystem = _id_pair(sub, where, "subsystem") if sub is not None else (None, None)
    physfn_raw = raw.get("physfn")
    try:
        physfn = Bdf.parse(_scalar_str(physfn_raw, where, "physfn")) if physfn_raw else None
    except ValueError as e:
        raise _err(where, f"bad physfn: {e}") from None
    drv = raw.get("driver")
    if drv is not None and not isinstance(drv, str):
        raise _err(where, f"driver must be a name or null, not {_show(drv)}")
    if drv is not None:
        drv = _scalar_str(drv, where, "driver")
    sec = raw.get("secondary_bus")
    kg = raw.get("kernel_group")
    get = raw.get
    rev = get("revision")
    name = get("name")
    f = PciFunction.from_fields(  # every field, in FUNCTION_FIELDS order
        (
            bdf,
            vendor,
            device,
            class_code,
            pcie_type,
            parent,
            acs,
            _bool(get("multifunction", False), where, "multifunction"),
            None if ht is None else _int(ht, where, "header_type", 2),
            drv or None,
            frozenset(_devfn(a, where) for a in aliases) if aliases else _NO_ALIAS,
            None if sec is None else _int(sec, where, "secondary_bus", 0xFF),
            None,  # subordinate_bus
            subsystem[0],
            subsystem[1],
            None if rev is None else _int(rev, where, "revision", 0xFF),
            pasid,
            pexec,
            ppriv,
            pwidth,
            _bool(get("ats", False), where, "ats"),
            eetlp,
            _bool(get("virtfn", False), where, "virtfn"),
            physfn,
            _bool(get("untrusted", False), where, "untrusted"),
            _bool(get("iommu", bdf.domain < 0x10000), where, "iommu"),
            _bool(get("pch_acs_workaround", True), where, "pch_acs_workaround"),
            _bool(get("acs_known", True), where, "acs_known"),
            _bool(get("pcie_known", True), where, "pcie_known"),
            None if kg is None else _int(kg, where, "kernel_group"),
            None if name is None else _scalar_str(name, where, "name"),
        )
    )
    return f, "multifunction" in raw


def parse(data: Any, *, source: str = "<data>") -> Topology:
    """Build a ``Topology`` from already-decoded YAML/JSON data."""
    if data is None:
        raise TopologyError(f"{source}: empty file (expected YAML or JSON with a 'devices' list)")
    if isinstance(data, Mapping):
        devices = data.get("devices")
        if devices is None:
            raise TopologyError(f"{source}: no 'devices' list at the top level")
        if not isinstance(devices, list):
            raise TopologyError(
                f"{source}: 'devices' must be a list of device entries, not {_show(devices)}"
            )
    elif isinstance(data, list):
        devices = data
    else:
        raise TopologyError(
            f"{source}: the top level must be a mapping with a 'devices' list, or a list of "
            f"devices, not {_show(data)}"
        )
    try:
        parsed = [_parse_device(d, i) for i, d in enumerate(devices)]
    except TopologyError as e:
        raise TopologyError(f"{source}: {e}") from None
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
    ctl = data.get("acs_ctl", "firmware") if isinstance(data, Mapping) else "firmware"
    if ctl not in ("firmware", "measured"):
        raise TopologyError(f"{source}: acs_ctl must be firmware or measured, not {_show(ctl)}")
    try:
        topo = Topology(
            fns,
            source=source,
            partial=any(not f.certain for f in fns),
            acs_ctrl_measured=ctl == "measured",
            kernel_groups_known=any(f.kernel_group is not None for f in fns),
        )
    except TopologyError as e:
        raise TopologyError(f"{source}: {e}") from None
    return topo


def _show(v: Any) -> str:
    """A bounded ``repr`` for messages: hostile data (deep, aliased, huge) stays cheap."""
    return _REPR.repr(v)


def _read_capped(p: Path, cap: int) -> bytes:
    """At most ``cap + 1`` bytes of ``p``, whatever ``stat`` says (``/dev/zero``, a FIFO, a
    growing file). ``O_NONBLOCK`` keeps ``open()`` of a FIFO without a writer from blocking
    (its ``read()`` is then EOF); non-regular files are read under ``READ_TIMEOUT``."""
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        regular = stat.S_ISREG(st.st_mode)
        if regular:
            os.set_blocking(fd, True)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + READ_TIMEOUT
        chunks: list[bytes] = []
        total = 0
        while total <= cap:
            try:
                b = os.read(fd, min(1 << 20, cap + 1 - total))
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    raise TopologyError(
                        f"{p}: no data within {READ_TIMEOUT:g} s (a pipe or device that "
                        "never ends its file)"
                    ) from None
                continue
            if not b:
                break
            chunks.append(b)
            total += len(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _yaml_loader() -> type[Any]:
    """libyaml's ``CSafeLoader`` when it is installed and bounds nesting itself (libyaml
    >= 0.2.5 stops at 1000 levels), else the pure-Python loader with our own depth bound.
    Both resolve scalars without YAML 1.1's base-60 numbers, octal and timestamps (an unquoted
    ``00:01.0`` stays a BDF, ``class: 0604`` stays hex, ``2024-02-30`` cannot raise)."""
    global _LOADER
    if _LOADER is None:
        c_loader: type[Any] | None = getattr(yaml, "CSafeLoader", None)
        if c_loader is not None:
            try:
                yaml.load("[" * 1100 + "]" * 1100, Loader=c_loader)
            except yaml.YAMLError:
                pass  # refused: libyaml has its own nesting limit
            else:
                c_loader = None
        if c_loader is not None:
            _LOADER = type("_TopoCLoader", (c_loader,), {"yaml_implicit_resolvers": _RESOLVERS})
        else:
            _LOADER = _BoundedSafeLoader
    return _LOADER


class _BoundedSafeLoader(yaml.SafeLoader):
    """``SafeLoader`` whose composer refuses nesting deeper than ``MAX_DEPTH`` (PyYAML's
    composer recurses: 1000 levels are a ``RecursionError``)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _TooDeep(Exception):
    pass


def _resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    out: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    repl = {
        "tag:yaml.org,2002:float": re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        "tag:yaml.org,2002:int": re.compile(
            r"""^(?:[-+]?0b[0-1_]+
                |[-+]?(?:0|[1-9][0-9_]*)
                |[-+]?0x[0-9a-fA-F_]+)$""",
            re.X,
        ),
    }
    for first, lst in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = [(tag, repl.get(tag, rx)) for tag, rx in lst if tag != "tag:yaml.org,2002:timestamp"]
        if kept:
            out[first] = kept
    return out


_RESOLVERS = _resolvers()
_BoundedSafeLoader.yaml_implicit_resolvers = _RESOLVERS


# -- a fast reader for plain block YAML -------------------------------------------------------
#
# libyaml composes about 400,000 nodes a second here: 50,000 devices take 5 s before any of
# our code runs. The YAML that ``yaml.safe_dump`` (and ``ioasid groups --save``) writes is a
# small subset: block mappings and sequences, one ``key: scalar`` per line, simple quoting.
# ``_fast_block_yaml`` reads exactly that subset, with the same scalar resolution as the
# loaders above, and returns ``None`` for anything else (flow collections, anchors, tags,
# comments after values, multi-line scalars, escapes, tabs...), which then goes to libyaml.
# The tests check that whatever it accepts, ``yaml.load`` reads to the same data.

_IN = r"[A-Za-z0-9_.+/()~=,\[\]{}'\"!&*|>%@?<^$;\\-]"  # ASCII but space, '#' and ':'
_PLAIN = rf"(?:[A-Za-z0-9_.+/()~]|-(?=\S))(?:{_IN}|:(?=\S)| (?={_IN}))*"
_SCALAR = rf"(?:'(?:[^'\n]|'')*'|\"[^\"\\\n]*\"|{_PLAIN}|\[\]|\{{\}})"
_BLOCK_LINE = re.compile(
    rf"( *)(- )?(?:([A-Za-z_][A-Za-z0-9_-]*):(?: +({_SCALAR}))?|({_SCALAR})) *"
)
_BOOL = {"yes": True, "no": False, "true": True, "false": False, "on": True, "off": False}


def _resolve_plain(v: str) -> Any:
    """A plain scalar as ``SafeConstructor`` builds it under ``_RESOLVERS``."""
    tag = "tag:yaml.org,2002:str"
    for t, rx in _RESOLVERS.get(v[0], ()):
        if rx.match(v):
            tag = t
            break
    if tag == "tag:yaml.org,2002:str":
        return v
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return _BOOL[v.lower()]
    if tag == "tag:yaml.org,2002:int":
        w = v.replace("_", "")
        sign = -1 if w[0] == "-" else 1
        if w[0] in "+-":
            w = w[1:]
        if w.startswith("0b"):
            return sign * int(w[2:], 2)
        if w.startswith("0x"):
            return sign * int(w[2:], 16)
        return sign * int(w)
    if tag == "tag:yaml.org,2002:float":
        w = v.replace("_", "").lower()
        sign = -1 if w[0] == "-" else 1
        if w[0] in "+-":
            w = w[1:]
        if w == ".inf":
            return sign * float("inf")
        if w == ".nan":
            return float("nan")
        return sign * float(w)
    raise _NotSimple  # a tag with no constructor here (merge, value): libyaml decides


class _NotSimple(Exception):
    pass


def _scalar(tok: str) -> Any:
    c = tok[0]
    if c == "'":
        return tok[1:-1].replace("''", "'")
    if c == '"':
        return tok[1:-1]
    if tok == "[]":
        return []
    if tok == "{}":
        return {}
    return _resolve_plain(tok)


def _fast_block_yaml(text: str) -> Any:
    """``text`` read as plain block YAML, or ``None`` when it is not (see above)."""
    try:
        return _fast_block(text)
    except _NotSimple:
        return None


_NOVAL = object()  # "key:" with its value on the following lines
_NEW_LIST = object()
_NEW_DICT = object()


def _line_info(m: re.Match[str]) -> tuple[int, bool, Any, Any]:
    ind_s, dash, key, kval, sval = m.groups()
    tok = kval if key is not None else sval
    if tok is None:
        val: Any = _NOVAL
    elif tok == "[]":
        val = _NEW_LIST
    elif tok == "{}":
        val = _NEW_DICT
    else:
        val = _scalar(tok)
    return (len(ind_s), dash is not None, _NOVAL if key is None else _resolve_plain(key), val)


def _fast_block(text: str) -> Any:
    match = _BLOCK_LINE.fullmatch
    seen: dict[str, tuple[int, bool, Any, Any] | None] = {}  # most lines repeat
    root: Any = None
    stack: list[tuple[int, Any]] = []  # (column, dict or list)
    pending: tuple[dict[Any, Any], Any, int] | None = None  # "key:" waiting for its value
    ind: int
    dash: bool
    key: Any
    val: Any
    for line in text.split("\n"):
        if line in seen:
            info = seen[line]
        else:
            m = match(line)
            if m is None:
                s = line.lstrip(" ")
                if s and s[0] != "#":
                    return None
                info = None  # blank or comment line
            else:
                info = _line_info(m)
            seen[line] = info
        if info is None:
            continue
        ind, dash, key, val = info
        if val is _NEW_LIST or val is _NEW_DICT:
            val = [] if val is _NEW_LIST else {}
            new = True
        else:
            new = False
        if pending is not None:
            pd, pk, pind = pending
            pending = None
            if ind > pind or (dash and ind == pind):
                child: Any = [] if dash else {}
                pd[pk] = child
                stack.append((ind, child))
                if len(stack) > MAX_DEPTH:
                    raise _TooDeep
            else:
                pd[pk] = None
        if root is None:
            if ind:
                return None
            root = [] if dash else {}
            stack.append((0, root))
        while stack[-1][0] > ind or (
            not dash and stack[-1][0] == ind and stack[-1][1].__class__ is list and len(stack) > 1
        ):
            stack.pop()
            if not stack:
                return None
        col, cont = stack[-1]
        if col != ind:
            return None
        if dash:
            if cont.__class__ is not list:
                return None
            if key is _NOVAL:
                if new and len(stack) >= MAX_DEPTH:
                    raise _TooDeep  # an empty collection one level below cont
                cont.append(val)
                continue
            d: dict[Any, Any] = {}
            cont.append(d)
            ind += 2
            stack.append((ind, d))
            if len(stack) > MAX_DEPTH:
                raise _TooDeep
            cont = d
        elif cont.__class__ is not dict or key is _NOVAL:
            return None
        if val is _NOVAL:
            pending = (cont, key, ind)
        else:
            if new and len(stack) >= MAX_DEPTH:
                raise _TooDeep
            cont[key] = val
    if pending is not None:
        pending[0][pending[1]] = None
    return root


def _check_shape(data: Any, where: str, max_values: int) -> None:
    """Nesting at most ``MAX_DEPTH``, no alias cycle, and at most ``max_values`` values once
    every alias is expanded (a billion-laughs file composes to a few shared nodes; anything
    that walked it would expand them). Walks each shared node once."""
    if data.__class__ is not dict and data.__class__ is not list:
        return
    memo: dict[int, tuple[int, int]] = {}  # id -> (height, expanded values)
    frames: list[list[Any]] = []
    on_path: set[int] = set()

    def push(obj: Any) -> None:
        vals = obj.values() if obj.__class__ is dict else obj
        kids = [c for c in vals if c.__class__ is dict or c.__class__ is list]
        frames.append([obj, iter(kids), 0, 1 + len(obj) - len(kids)])
        on_path.add(id(obj))

    push(data)
    while frames:
        fr = frames[-1]
        for kid in fr[1]:
            m = memo.get(id(kid))
            if m is None:
                if id(kid) in on_path:
                    raise TopologyError(f"{where}: a YAML alias refers to itself (recursive data)")
                if len(frames) >= MAX_DEPTH:
                    raise TopologyError(f"{where}: nested deeper than {MAX_DEPTH} levels")
                push(kid)
                break
            fr[2] = max(fr[2], m[0])
            fr[3] += m[1]
            if fr[3] > max_values:
                raise TopologyError(
                    f"{where}: YAML aliases expand to more than {max_values} values "
                    "(at most 2 per byte of the file): refused"
                )
        else:
            frames.pop()
            on_path.discard(id(fr[0]))
            memo[id(fr[0])] = (fr[2] + 1, fr[3])
            if frames:
                parent = frames[-1]
                parent[2] = max(parent[2], fr[2] + 1)
                parent[3] += fr[3]
                if parent[3] > max_values:
                    raise TopologyError(
                        f"{where}: YAML aliases expand to more than {max_values} values "
                        "(at most 2 per byte of the file): refused"
                    )


def decode(raw: bytes, *, source: str, json_hint: bool = False) -> Any:
    """Bytes of a topology file to data: UTF-8, then JSON (by ``json_hint`` or a leading
    ``{``/``[``) or YAML, bounded as ``load`` documents. Every failure is a ``TopologyError``."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TopologyError(
            f"{source}: not UTF-8 text (byte {e.start} is {raw[e.start]:#04x}); "
            "a topology file is YAML or JSON"
        ) from None
    if not text.strip():
        raise TopologyError(f"{source}: empty file (expected YAML or JSON with a 'devices' list)")
    as_json = json_hint or text.lstrip().startswith(("{", "["))
    checked = False
    try:
        if as_json:
            data = json.loads(text)
        else:
            data = _fast_block_yaml(text)
            if data is None:
                data = yaml.load(text, Loader=_yaml_loader())
                checked = False
            else:
                checked = True  # no aliases, and it counts its depth itself
    except _TooDeep:
        raise TopologyError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    except RecursionError:
        raise TopologyError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as e:
        if "nesting depth" in str(e):
            raise TopologyError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
        why = _one_line(e).replace(' in "<unicode string>",', " at")
        raise TopologyError(f"{source}: not valid YAML: {why}") from None
    except ValueError as e:  # JSONDecodeError, int digit limits
        kind = "JSON" if as_json else "YAML"
        raise TopologyError(f"{source}: not valid {kind}: {_one_line(e)}") from None
    if not checked:
        _check_shape(data, source, 2 * len(raw) + 1024)
    return data


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def load(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> Topology:
    """Read a topology file (YAML, or JSON by extension or content).

    Bounded for any input: at most ``max_bytes`` (default ``MAX_FILE_BYTES``) are read,
    whatever the file claims; nesting is limited to ``MAX_DEPTH``; YAML aliases may not
    expand the data beyond 2 values per byte. Every failure is a ``TopologyError`` naming
    the file and the rule.
    """
    p = Path(path)
    cap = MAX_FILE_BYTES if max_bytes is None else max_bytes
    try:
        raw = _read_capped(p, cap)
    except OSError as e:
        raise TopologyError(f"cannot read topology file {p}: {e.strerror or e}") from None
    if len(raw) > cap:
        raise TopologyError(
            f"{p}: larger than {cap} bytes, the topology file size limit "
            "(no topology file is that large)"
        )
    with gc_paused():
        data = decode(raw, source=str(p), json_hint=p.suffix.lower() == ".json")
        return parse(data, source=str(p))


def load_default_host() -> Topology:
    """The embedded default host (``default_host.yaml``)."""
    text = resources.files("ioasid.topology").joinpath("default_host.yaml").read_text("utf-8")
    return parse(decode(text.encode(), source="default_host.yaml"), source="default_host.yaml")


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
        if f.eetlp_prefix is not None or f.pcie_type is not None:
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
        if f.header_type is not None:
            d["header_type"] = f.header_type
        if not f.acs_known:
            d["acs_known"] = False
        if not f.pcie_known:
            d["pcie_known"] = False
        out.append(d)
    top: dict[str, Any] = {"source": topo.source}
    if topo.acs_ctrl_measured:
        top["acs_ctl"] = "measured"
    top["devices"] = out
    return top
