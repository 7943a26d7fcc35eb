"""PCI topology + ACS + quirks -> IOMMU groups, exactly as Linux 7.3 forms them.

Public functions:

* ``load(path) -> Topology`` — a topology file (YAML/JSON, format in ``files``).
* ``from_sysfs(root="/sys", *, strict=False) -> Topology`` — a live or captured
  ``/sys/bus/pci/devices`` tree; unreadable parts are marked partial, never guessed as certain.
* ``default_host() -> Topology`` — the embedded default host (``default_host.yaml``).
* ``group(topology, acs_override=None, *, options=None) -> Grouping`` — the kernel's
  ``pci_device_group()`` for every device in probe order, with a reason for every decision.
  ``acs_override`` takes the out-of-tree ``pcie_acs_override=`` syntax
  (``"downstream,multifunction,id:vvvv:dddd"``).
* ``audit`` — ``viability()``, ``pasid_eligibility()``, ``p2p_domains()``, ``diff()``,
  ``explain()``, ``report()`` (the JSON the CLI prints).

Names follow the kernel: ``PCI_ACS_SV``..``PCI_ACS_DT``, ``REQ_ACS_FLAGS``, ``PcieType.ROOT_PORT``
(``PCI_EXP_TYPE_ROOT_PORT``), ``AcsState.acs_enabled`` (``pci_acs_enabled``),
``AcsState.path_enabled`` (``pci_acs_path_enabled``), ``AcsState.dma_aliases``
(``pci_for_each_dma_alias``). Compare partitions (``Grouping.partition()``), not group numbers:
numbers follow probe order here as in the kernel, but are not stable across boots.
"""

from __future__ import annotations

from .files import dump, load, load_default_host
from .grouping import (
    REQ_ACS_FLAGS,
    AcsState,
    AcsVerdict,
    Decision,
    Grouping,
    IommuGroup,
    KernelOptions,
    Reason,
    group,
)
from .model import (
    PCI_ACS_CR,
    PCI_ACS_DT,
    PCI_ACS_EC,
    PCI_ACS_RR,
    PCI_ACS_SV,
    PCI_ACS_TB,
    PCI_ACS_UF,
    Acs,
    AcsFlag,
    Bdf,
    PcieType,
    PciFunction,
    Topology,
    TopologyError,
)
from .quirks import AcsOverride
from .sysfs import from_sysfs

__all__ = [
    "PCI_ACS_CR",
    "PCI_ACS_DT",
    "PCI_ACS_EC",
    "PCI_ACS_RR",
    "PCI_ACS_SV",
    "PCI_ACS_TB",
    "PCI_ACS_UF",
    "REQ_ACS_FLAGS",
    "Acs",
    "AcsFlag",
    "AcsOverride",
    "AcsState",
    "AcsVerdict",
    "Bdf",
    "Decision",
    "Grouping",
    "IommuGroup",
    "KernelOptions",
    "PciFunction",
    "PcieType",
    "Reason",
    "Topology",
    "TopologyError",
    "default_host",
    "dump",
    "from_sysfs",
    "group",
    "load",
]


def default_host() -> Topology:
    """A realistic embedded host topology (see ``default_host.yaml`` for what it contains)."""
    return load_default_host()
