"""The quirk tables of ``drivers/pci/quirks.c`` (Linux 7.3) that change ACS or DMA aliases.

Kept as data in the kernel's order; each entry names its vendor:device and the kernel function.
Lookups go through the kernel's interface: ``pci_dev_specific_acs_enabled()`` walks
``pci_dev_acs_enabled[]`` and the first quirk answering >= 0 decides (``None`` here stands for
``-ENOTTY``). The out-of-tree ``pcie_acs_override`` quirk, when asked for, is appended last.

Not modelled (they depend on registers read at run time): ``quirk_switchtec_ntb_dma_alias``
(Microsemi 11f8:85xx NTB proxy ids from MMIO) and the AMD-Vi IVRS alias ranges — give those as
``dma_alias`` in the topology file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .model import AcsFlag, PcieType, PciFunction

if TYPE_CHECKING:
    from .model import Topology

__all__ = [
    "ACS_ENABLE_OPS",
    "ANY_ID",
    "DMA_ALIAS_QUIRKS",
    "PCI_DEV_ACS_ENABLED",
    "AcsOverride",
    "AcsQuirk",
    "AliasQuirk",
    "QuirkContext",
    "dev_flags",
]

ANY_ID = 0xFFFF  # PCI_ANY_ID as (u16)

SV, TB, RR, CR, UF, EC, DT = (
    AcsFlag.SV,
    AcsFlag.TB,
    AcsFlag.RR,
    AcsFlag.CR,
    AcsFlag.UF,
    AcsFlag.EC,
    AcsFlag.DT,
)
SV_RR_CR_UF = SV | RR | CR | UF

# vendor ids, include/linux/pci_ids.h
V_ATI, V_AMD, V_INTEL, V_SOLARFLARE = 0x1002, 0x1022, 0x8086, 0x1924
V_QCOM, V_HXT, V_CAVIUM, V_AMCC, V_AMPERE = 0x17CB, 0x1DBF, 0x177D, 0x10E8, 0x1DEF
V_BROADCOM, V_LOONGSON, V_ANNAPURNA, V_ZHAOXIN = 0x14E4, 0x0014, 0x1C36, 0x1D17
V_NXP, V_WANGXUN, V_IDT, V_HUAWEI = 0x1957, 0x8088, 0x111D, 0x19E5
V_RICOH, V_GLENFLY, V_MARVELL_EXT, V_TTI, V_JMICRON = 0x1180, 0x6766, 0x1B4B, 0x1103, 0x197B
V_ADAPTEC2, V_ASMEDIA, V_PLX, V_ASPEED = 0x9005, 0x1B21, 0x10B5, 0x1A03


def acs_ctrl_enabled(req: int, ena: int) -> int:
    """``pci_acs_ctrl_enabled()``: 1 if every requested control is in ``ena``."""
    return 1 if (req & ena) == req else 0


@dataclass(slots=True)
class QuirkContext:
    """What quirk functions read besides the device: the fabric, the ACS control registers as
    the kernel left them, flags set by enable quirks, and platform facts."""

    topo: Topology
    ctrl: dict[object, int]
    acs_enabled_quirk: set[object] = field(default_factory=set)  # PCI_DEV_FLAGS_ACS_ENABLED_QUIRK
    amd_ivrs: bool = True  # an ACPI IVRS table exists (AMD IOMMU present)


QuirkFn = Callable[[PciFunction, int, QuirkContext], "int | None"]


def _is_root_bus(dev: PciFunction, ctx: QuirkContext) -> bool:
    return ctx.topo.bus_of(dev.bdf).is_root


def pci_quirk_amd_sb_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    if not dev.multifunction or not _is_root_bus(dev, ctx):
        return None
    if not ctx.amd_ivrs:
        return None
    flags &= RR | CR | EC | DT
    return acs_ctrl_enabled(flags, RR | CR)


def _cavium_match(dev: PciFunction) -> bool:
    if dev.pcie_type is not PcieType.ROOT_PORT:
        return False
    return 0xA000 <= dev.device <= 0xA7FF or dev.device in (0xAF84, 0xB884)


def pci_quirk_cavium_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    if not _cavium_match(dev):
        return None
    return acs_ctrl_enabled(flags, SV_RR_CR_UF)


def pci_quirk_xgene_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    return acs_ctrl_enabled(flags, SV_RR_CR_UF)


def pci_quirk_zhaoxin_pcie_ports_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    if dev.pcie_type not in (PcieType.ROOT_PORT, PcieType.DOWNSTREAM):
        return None
    d = dev.device
    if 0x0710 <= d <= 0x071E or d == 0x0721 or 0x0723 <= d <= 0x0752:
        return acs_ctrl_enabled(flags, SV_RR_CR_UF)
    return 0  # the kernel returns false: other Zhaoxin ports are *not* isolated


INTEL_PCH_ACS_IDS: frozenset[int] = frozenset(
    [
        *range(0x3B42, 0x3B52),  # Ibexpeak
        *range(0x1C10, 0x1C20),  # Cougarpoint
        *range(0x1E10, 0x1E20),  # Pantherpoint
        *range(0x8C10, 0x8C20),  # Lynxpoint-H
        *range(0x9C10, 0x9C1C),  # Lynxpoint-LP
        *range(0x9C90, 0x9C9C),  # Wildcat
        *range(0x1D10, 0x1D1F, 2),  # Patsburg (X79)
        *range(0x8D10, 0x8D1F),  # Wellsburg (X99)
        *range(0x8C90, 0x8C9F, 2),  # Lynx Point (9 series)
    ]
)


def _intel_pch_match(dev: PciFunction) -> bool:
    """``pci_quirk_intel_pch_acs_match()``."""
    return dev.pcie_type is PcieType.ROOT_PORT and dev.device in INTEL_PCH_ACS_IDS


def pci_quirk_intel_pch_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    if not _intel_pch_match(dev):
        return None
    if dev.bdf in ctx.acs_enabled_quirk:
        return acs_ctrl_enabled(flags, SV_RR_CR_UF)
    return acs_ctrl_enabled(flags, 0)


INTEL_SPT_PCH_ACS_RANGES: tuple[tuple[int, int], ...] = (
    (0xA110, 0xA11F),  # Sunrise Point
    (0xA167, 0xA16A),
    (0xA290, 0xA29F),  # Union Point
    (0xA2E7, 0xA2EE),
    (0x9D10, 0x9D1B),  # 7th & 8th Gen Mobile
)


def _intel_spt_match(dev: PciFunction) -> bool:
    """``pci_quirk_intel_spt_pch_acs_match()``."""
    if dev.pcie_type is not PcieType.ROOT_PORT:
        return False
    return any(lo <= dev.device <= hi for lo, hi in INTEL_SPT_PCH_ACS_RANGES)


def pci_quirk_intel_spt_pch_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    if not _intel_spt_match(dev) or dev.acs is None:
        return None
    flags &= dev.acs.cap | EC
    return acs_ctrl_enabled(flags, ctx.ctrl.get(dev.bdf, dev.acs.ctrl))


def pci_quirk_mf_endpoint_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    return acs_ctrl_enabled(flags, SV | TB | RR | CR | UF | DT)


def pci_quirk_rciep_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    if dev.pcie_type is not PcieType.RC_END:
        return None
    return acs_ctrl_enabled(flags, SV_RR_CR_UF)


def pci_quirk_isolated_rp(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    """Shared body of ``pci_quirk_qcom_rp_acs``, ``pci_quirk_nxp_rp_acs``,
    ``pci_quirk_brcm_acs``, ``pci_quirk_loongson_acs``: SV|RR|CR|UF provided."""
    return acs_ctrl_enabled(flags, SV_RR_CR_UF)


def pci_quirk_al_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    if dev.pcie_type is not PcieType.ROOT_PORT:
        return None
    flags &= ~int(SV_RR_CR_UF)
    return 0 if flags else 1


def pci_quirk_wangxun_nic_acs(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
    d = dev.device
    if 0x0100 <= d <= 0x010F or d in (
        0x1001,
        0x2001,
        0x5010,
        0x5025,
        0x5040,
        0x5110,
        0x5125,
        0x5140,
    ):
        return acs_ctrl_enabled(flags, SV_RR_CR_UF)
    return 0  # the kernel returns false for every other Wangxun device


@dataclass(frozen=True, slots=True)
class AcsQuirk:
    """One ``pci_dev_acs_enabled[]`` entry."""

    vendor: int
    device: int
    function: str
    impl: QuirkFn = field(repr=False, compare=False)

    def matches(self, dev: PciFunction) -> bool:
        return (self.vendor in (dev.vendor, ANY_ID)) and (self.device in (dev.device, ANY_ID))

    @property
    def id_str(self) -> str:
        d = "*" if self.device == ANY_ID else f"{self.device:04x}"
        return f"{self.vendor:04x}:{d}"


def _q(vendor: int, devices: Iterable[int], fn: QuirkFn, name: str) -> list[AcsQuirk]:
    return [AcsQuirk(vendor, d, name, fn) for d in devices]


_MF = pci_quirk_mf_endpoint_acs
_MFN = "pci_quirk_mf_endpoint_acs"

#: ``pci_dev_acs_enabled[]``, Linux 7.3 order.
PCI_DEV_ACS_ENABLED: tuple[AcsQuirk, ...] = tuple(
    _q(
        V_ATI,
        [0x4385, 0x439C, 0x4383, 0x439D, 0x4384, 0x4399],
        pci_quirk_amd_sb_acs,
        "pci_quirk_amd_sb_acs",
    )
    + _q(V_AMD, [0x780F, 0x7809], pci_quirk_amd_sb_acs, "pci_quirk_amd_sb_acs")
    + _q(V_SOLARFLARE, [0x0903, 0x0923, 0x0A03], _MF, _MFN)
    + _q(
        V_INTEL,
        [
            0x10C6,
            0x10DB,
            0x10DD,
            0x10E1,
            0x10F1,
            0x10F7,
            0x10F8,
            0x10F9,
            0x10FA,
            0x10FB,
            0x10FC,
            0x1507,
            0x1514,
            0x151C,
            0x1529,
            0x152A,
            0x154D,
            0x154F,
            0x1551,
            0x1558,  # 82598/82599/X540/X550
            0x1509,
            0x150E,
            0x150F,
            0x1510,
            0x1511,
            0x1516,
            0x1527,  # 82580
            0x10C9,
            0x10E6,
            0x10E7,
            0x10E8,
            0x150A,
            0x150D,
            0x1518,
            0x1526,  # 82576
            0x10A7,
            0x10A9,
            0x10D6,  # 82575
            0x1521,
            0x1522,
            0x1523,
            0x1524,  # I350
            0x105E,
            0x105F,
            0x1060,
            0x10D9,  # 82571 (Quads omitted due to non-ACS switch)
            0x15B7,
            0x15B8,  # I219
        ],
        _MF,
        _MFN,
    )
    + _q(V_INTEL, [ANY_ID], pci_quirk_rciep_acs, "pci_quirk_rciep_acs")
    + _q(
        V_QCOM,
        [0x0400, 0x0401, 0x0115, 0x0111, 0x0120],
        pci_quirk_isolated_rp,
        "pci_quirk_qcom_rp_acs",
    )
    + _q(V_HXT, [0x0401], pci_quirk_isolated_rp, "pci_quirk_qcom_rp_acs")
    + _q(V_INTEL, [ANY_ID], pci_quirk_intel_pch_acs, "pci_quirk_intel_pch_acs")
    + _q(V_INTEL, [ANY_ID], pci_quirk_intel_spt_pch_acs, "pci_quirk_intel_spt_pch_acs")
    + _q(0x19A2, [0x0710], _MF, _MFN)  # Emulex BE3-R
    + _q(0x10DF, [0x0720], _MF, _MFN)  # Emulex Skyhawk-R
    + _q(V_CAVIUM, [ANY_ID], pci_quirk_cavium_acs, "pci_quirk_cavium_acs")
    + _q(V_CAVIUM, [0xA026, 0xA059, 0xA060], _MF, _MFN)  # Octeon 10 CN10K
    + _q(V_AMCC, [0xE004], pci_quirk_xgene_acs, "pci_quirk_xgene_acs")
    + _q(V_AMPERE, range(0xE005, 0xE00D), pci_quirk_xgene_acs, "pci_quirk_xgene_acs")
    + _q(V_BROADCOM, [0x16D7, 0x1750, 0x1751, 0x1752, 0x1760, 0x1761, 0x1762, 0x1763], _MF, _MFN)
    + _q(V_BROADCOM, [0xD714], pci_quirk_isolated_rp, "pci_quirk_brcm_acs")
    + _q(
        V_LOONGSON,
        [0x3C09, 0x3C19, 0x3C29, 0x7A09, 0x7A19, 0x7A29, 0x7A39, 0x7A49, 0x7A59, 0x7A69],
        pci_quirk_isolated_rp,
        "pci_quirk_loongson_acs",
    )
    + _q(V_ANNAPURNA, [0x0031], pci_quirk_al_acs, "pci_quirk_al_acs")
    + _q(V_ZHAOXIN, [0x3038, 0x3104, 0x9083], _MF, _MFN)
    + _q(
        V_NXP,
        [
            0x8D81,
            0x8DA1,
            0x8D83,
            0x8D80,
            0x8DA0,
            0x8D82,
            0x8D90,
            0x8DB0,
            0x8D92,
            0x8D91,
            0x8DB1,
            0x8D93,
            0x8D89,
            0x8DA9,
            0x8D8B,
            0x8D88,
            0x8DA8,
            0x8D8A,
            0x8D98,
            0x8DB8,
            0x8D9A,
            0x8D99,
            0x8DB9,
            0x8D9B,
        ],
        pci_quirk_isolated_rp,
        "pci_quirk_nxp_rp_acs",
    )
    + _q(V_ZHAOXIN, [ANY_ID], pci_quirk_zhaoxin_pcie_ports_acs, "pci_quirk_zhaoxin_pcie_ports_acs")
    + _q(V_WANGXUN, [ANY_ID], pci_quirk_wangxun_nic_acs, "pci_quirk_wangxun_nic_acs")
)


# -- the out-of-tree pcie_acs_override ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcsOverride:
    """``pcie_acs_override=downstream,multifunction,id:vvvv:dddd`` (out-of-tree patch).

    Appended at the end of ``pci_dev_acs_enabled[]`` matching every device; never applies to
    conventional PCI or to devices that have an ACS capability; changes no register.
    """

    downstream: bool = False
    multifunction: bool = False
    ids: frozenset[tuple[int, int]] = frozenset()

    @classmethod
    def parse(cls, text: str) -> AcsOverride:
        """Parse the boot-parameter syntax; unknown words raise ``ValueError``."""
        ds = mf = False
        ids: set[tuple[int, int]] = set()
        for word in (w.strip() for w in text.split(",")):
            if not word:
                continue
            if word == "downstream":
                ds = True
            elif word == "multifunction":
                mf = True
            elif word.startswith("id:"):
                parts = word[3:].split(":")
                try:
                    if len(parts) != 2:
                        raise ValueError
                    ids.add((int(parts[0], 16), int(parts[1], 16)))
                except ValueError:
                    raise ValueError(
                        f"pcie_acs_override: {word!r} is not id:vvvv:dddd (hex vendor:device)"
                    ) from None
            else:
                raise ValueError(
                    f"pcie_acs_override: unknown option {word!r} "
                    "(expected downstream, multifunction or id:vvvv:dddd)"
                )
        if len(ids) > 16:
            raise ValueError("pcie_acs_override: at most 16 id: entries (the patch's limit)")
        return cls(ds, mf, frozenset(ids))

    def __str__(self) -> str:
        words = (["downstream"] if self.downstream else []) + (
            ["multifunction"] if self.multifunction else []
        )
        words += [f"id:{v:04x}:{d:04x}" for v, d in sorted(self.ids)]
        return ",".join(words)

    def __bool__(self) -> bool:
        return self.downstream or self.multifunction or bool(self.ids)

    def quirk(self) -> AcsQuirk:
        def pcie_acs_overrides(dev: PciFunction, flags: int, ctx: QuirkContext) -> int | None:
            if not dev.is_pcie or dev.acs is not None:
                return None
            if (dev.vendor, dev.device) in self.ids:
                return 1
            if dev.pcie_type in (PcieType.DOWNSTREAM, PcieType.ROOT_PORT):
                return 1 if self.downstream else None
            if (
                dev.pcie_type
                in (
                    PcieType.ENDPOINT,
                    PcieType.UPSTREAM,
                    PcieType.LEG_END,
                    PcieType.RC_END,
                )
                and self.multifunction
                and dev.multifunction
            ):
                return 1
            return None

        return AcsQuirk(ANY_ID, ANY_ID, "pcie_acs_overrides (out-of-tree)", pcie_acs_overrides)


# -- ACS enable quirks: pci_dev_acs_ops[] ---------------------------------------------------


def pci_quirk_enable_intel_pch_acs(dev: PciFunction, ctx: QuirkContext) -> int | None:
    """Pokes the PCH's RCBA registers; sets PCI_DEV_FLAGS_ACS_ENABLED_QUIRK on success.
    Whether the LPC's RCBA is enabled is a platform fact: ``pch_acs_workaround``."""
    if not _intel_pch_match(dev):
        return None
    if dev.pch_acs_workaround:
        ctx.acs_enabled_quirk.add(dev.bdf)
    return 0


def pci_quirk_enable_intel_spt_pch_acs(dev: PciFunction, ctx: QuirkContext) -> int | None:
    if not _intel_spt_match(dev) or dev.acs is None:
        return None
    cap = dev.acs.cap
    ctrl = ctx.ctrl.get(dev.bdf, dev.acs.ctrl)
    ctrl |= cap & SV_RR_CR_UF
    if dev.untrusted:
        ctrl |= cap & TB
    ctx.ctrl[dev.bdf] = ctrl
    return 0


def pci_quirk_disable_intel_spt_pch_acs_redir(dev: PciFunction, ctx: QuirkContext) -> int | None:
    if not _intel_spt_match(dev) or dev.acs is None:
        return None
    ctx.ctrl[dev.bdf] = ctx.ctrl.get(dev.bdf, dev.acs.ctrl) & ~int(RR | CR | EC)
    return 0


@dataclass(frozen=True, slots=True)
class AcsOps:
    """One ``pci_dev_acs_ops[]`` entry."""

    vendor: int
    device: int
    enable_acs: str
    enable: Callable[[PciFunction, QuirkContext], int | None] = field(repr=False)
    disable_acs_redir: Callable[[PciFunction, QuirkContext], int | None] | None = field(
        default=None, repr=False
    )

    def matches(self, dev: PciFunction) -> bool:
        return (self.vendor in (dev.vendor, ANY_ID)) and (self.device in (dev.device, ANY_ID))


#: ``pci_dev_acs_ops[]``: they run instead of ``pci_std_enable_acs`` when they match.
ACS_ENABLE_OPS: tuple[AcsOps, ...] = (
    AcsOps(V_INTEL, ANY_ID, "pci_quirk_enable_intel_pch_acs", pci_quirk_enable_intel_pch_acs),
    AcsOps(
        V_INTEL,
        ANY_ID,
        "pci_quirk_enable_intel_spt_pch_acs",
        pci_quirk_enable_intel_spt_pch_acs,
        pci_quirk_disable_intel_spt_pch_acs_redir,
    ),
)


# -- DMA alias and bridge-flag quirks (DECLARE_PCI_FIXUP_HEADER) -----------------------------

PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS = "PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS"
PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT = "PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT"
PCI_DEV_FLAGS_PCI_BRIDGE_NO_ALIAS = "PCI_DEV_FLAGS_PCI_BRIDGE_NO_ALIAS"


@dataclass(frozen=True, slots=True)
class AliasQuirk:
    """A header fixup that adds DMA aliases (``pci_add_dma_alias``) or sets a bridge flag.

    ``kind``: ``func0``/``func1`` (alias to function 0/1 of the own slot unless already that
    function), ``fixed`` (the listed devfns, if subsystem ids match), ``devfns`` (always the
    listed devfns), ``flag`` (sets ``flag`` on the device, see ``dev_flags``).
    """

    vendor: int
    device: int
    function: str
    kind: str
    devfns: tuple[int, ...] = ()
    subsystem: tuple[int, int] | None = None
    flag: str | None = None

    def matches(self, dev: PciFunction) -> bool:
        if not ((self.vendor in (dev.vendor, ANY_ID)) and (self.device in (dev.device, ANY_ID))):
            return False
        if self.subsystem is not None:
            return (dev.subsystem_vendor, dev.subsystem_device) == self.subsystem
        return True


def _devfn(slot: int, fn: int) -> int:
    return (slot << 3) | fn


_F1 = "quirk_dma_func1_alias"
_BR = "quirk_use_pcie_bridge_dma_alias"

#: Alias and bridge-flag fixups of quirks.c, in file order.
DMA_ALIAS_QUIRKS: tuple[AliasQuirk, ...] = (
    AliasQuirk(V_RICOH, 0xE832, "quirk_dma_func0_alias", "func0"),
    AliasQuirk(V_RICOH, 0xE476, "quirk_dma_func0_alias", "func0"),
    AliasQuirk(V_GLENFLY, 0x3D40, "quirk_dma_func0_alias", "func0"),
    AliasQuirk(V_GLENFLY, 0x3D41, "quirk_dma_func0_alias", "func0"),
    *(
        AliasQuirk(V_MARVELL_EXT, d, _F1, "func1")
        for d in (
            0x9120,
            0x9123,
            0x9125,
            0x9128,
            0x9130,
            0x9170,
            0x9172,
            0x917A,
            0x9182,
            0x9183,
            0x91A0,
            0x9215,
            0x9220,
            0x9230,
            0x9235,
        )
    ),
    AliasQuirk(V_TTI, 0x0642, _F1, "func1"),
    AliasQuirk(V_TTI, 0x0645, _F1, "func1"),
    AliasQuirk(V_JMICRON, 0x2392, _F1, "func1"),  # JMB388_ESD
    AliasQuirk(0x1C28, 0x0122, _F1, "func1"),  # Lite-On / Plextor M6E (Marvell 88SS9183)
    AliasQuirk(
        V_ADAPTEC2, 0x0285, "quirk_fixed_dma_alias", "fixed", (_devfn(1, 0),), (V_ADAPTEC2, 0x02BB)
    ),  # Adaptec 3405
    AliasQuirk(
        V_ADAPTEC2, 0x0285, "quirk_fixed_dma_alias", "fixed", (_devfn(1, 0),), (V_ADAPTEC2, 0x02BC)
    ),  # Adaptec 3805
    AliasQuirk(V_ASMEDIA, 0x1080, _BR, "flag", flag=PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS),
    AliasQuirk(0x10E3, 0x8113, _BR, "flag", flag=PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS),  # Tundra
    AliasQuirk(0x1283, 0x8892, _BR, "flag", flag=PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS),  # ITE
    AliasQuirk(0x1283, 0x8893, _BR, "flag", flag=PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS),
    AliasQuirk(V_INTEL, 0x244E, _BR, "flag", flag=PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS),  # 82801
    *(
        AliasQuirk(
            V_INTEL,
            d,
            "quirk_mic_x200_dma_alias",
            "devfns",
            (_devfn(0x10, 0), _devfn(0x11, 0), _devfn(0x12, 3)),
        )
        for d in (0x2260, 0x2264)
    ),
    *(
        AliasQuirk(
            V_INTEL,
            d,
            "quirk_pex_vca_alias",
            "devfns",
            tuple(_devfn(s, f) for s in range(0x20) for f in range(5)),
        )
        for d in (0x2954, 0x2955, 0x2956, 0x2958, 0x2959, 0x295A)
    ),
    AliasQuirk(
        V_BROADCOM,
        0x9000,
        "quirk_bridge_cavm_thrx2_pcie_root",
        "flag",
        flag=PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT,
    ),
    AliasQuirk(
        V_BROADCOM,
        0x9084,
        "quirk_bridge_cavm_thrx2_pcie_root",
        "flag",
        flag=PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT,
    ),
    AliasQuirk(
        V_ASPEED,
        0x1150,
        "quirk_aspeed_pci_bridge_no_alias",
        "flag",
        flag=PCI_DEV_FLAGS_PCI_BRIDGE_NO_ALIAS,
    ),
    AliasQuirk(V_PLX, 0x87B0, "quirk_plx_ntb_dma_alias", "devfns", tuple(range(256))),
    AliasQuirk(V_PLX, 0x87B1, "quirk_plx_ntb_dma_alias", "devfns", tuple(range(256))),
)

_ALIAS_BY_ID: dict[tuple[int, int], list[AliasQuirk]] = {}
for _aq in DMA_ALIAS_QUIRKS:
    _ALIAS_BY_ID.setdefault((_aq.vendor, _aq.device), []).append(_aq)

#: ``pci_disable_broken_acs_cap()``: IDT switches whose ACS SV is broken.
BROKEN_ACS_SV: frozenset[tuple[int, int]] = frozenset({(V_IDT, 0x80B5), (V_IDT, 0x8090)})

#: ``quirk_huawei_pcie_sva``: PASID works without End-End TLP prefixes (rev 0x21/0x30).
PASID_NO_TLP: frozenset[tuple[int, int]] = frozenset(
    {(V_HUAWEI, 0xA250), (V_HUAWEI, 0xA251), (V_HUAWEI, 0xA255)}
)


@dataclass(frozen=True, slots=True)
class DevQuirks:
    """What header fixups did to one device."""

    alias_devfns: dict[int, str]  # devfn -> why (kernel quirk name, or "dma_alias (file)")
    flags: frozenset[str]
    acs_cap_mask: int  # bits pci_disable_broken_acs_cap() cleared from acs_capabilities
    pasid_no_tlp: bool


_NO_QUIRKS = DevQuirks({}, frozenset(), 0, False)
_QUIRKED_IDS = frozenset(_ALIAS_BY_ID) | BROKEN_ACS_SV | PASID_NO_TLP


def dev_flags(dev: PciFunction, topo: Topology) -> DevQuirks:
    """Run the header fixups relevant to grouping on one device."""
    if not dev.dma_alias_devfns and (dev.vendor, dev.device) not in _QUIRKED_IDS:
        return _NO_QUIRKS  # shared: nobody writes a DevQuirks after it is made
    aliases: dict[int, str] = {a: "dma_alias (topology)" for a in sorted(dev.dma_alias_devfns)}
    flags: set[str] = set()
    for q in _ALIAS_BY_ID.get((dev.vendor, dev.device), ()):
        if not q.matches(dev):
            continue
        if q.kind == "func0":
            if dev.bdf.fn != 0:
                aliases.setdefault(_devfn(dev.slot, 0), q.function)
        elif q.kind == "func1":
            if dev.bdf.fn != 1:
                aliases.setdefault(_devfn(dev.slot, 1), q.function)
        elif q.kind in ("fixed", "devfns"):
            for d in q.devfns:
                aliases.setdefault(d, q.function)
        elif q.kind == "flag" and q.flag is not None:
            if q.flag == PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS:
                # only when the bridge really sits below a PCIe (non PCIe-to-PCI) port
                bus = topo.bus_of(dev.bdf)
                up = topo.functions.get(bus.self_dev) if bus.self_dev else None
                if (
                    bus.is_root
                    or not dev.is_bridge
                    or dev.is_pcie
                    or up is None
                    or not up.is_pcie
                    or up.pcie_type is PcieType.PCI_BRIDGE
                ):
                    continue
            flags.add(q.flag)
    mask = int(AcsFlag.SV) if (dev.vendor, dev.device) in BROKEN_ACS_SV else 0
    no_tlp = (dev.vendor, dev.device) in PASID_NO_TLP and dev.revision in (0x21, 0x30)
    return DevQuirks(aliases, frozenset(flags), mask, no_tlp)
