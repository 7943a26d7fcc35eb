"""Vendor and device names from the PCI ID database (``pci.ids``), as ``lspci`` shows them.

Debian ships it as ``/usr/share/misc/pci.ids`` (pciutils) and ``/usr/share/hwdata/pci.ids``
(hwdata). The file (about 1.4 MB, 40,000 entries) is read the first time a name is asked
for, and only the blocks of the vendors asked about are parsed: a vendor line is found
with one ``str.find``, its device lines are read up to the next vendor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["PCI_IDS_PATHS", "PciIds", "system_pci_ids"]

#: Where the database is looked for, first found wins.
PCI_IDS_PATHS: tuple[str, ...] = (
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/pci.ids",
)


class PciIds:
    """Names from one ``pci.ids`` file; lookups of unknown ids return ``None``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._text: str | None = None
        self._vendors: dict[int, tuple[str, dict[int, str]] | None] = {}

    def _db(self) -> str:
        if self._text is None:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as fh:
                    self._text = "\n" + fh.read()
            except OSError:
                self._text = ""
        return self._text

    def _vendor(self, vendor: int) -> tuple[str, dict[int, str]] | None:
        if vendor in self._vendors:
            return self._vendors[vendor]
        text = self._db()
        at = text.find(f"\n{vendor:04x}  ")
        got: tuple[str, dict[int, str]] | None = None
        if at >= 0:
            eol = text.find("\n", at + 1)
            eol = len(text) if eol < 0 else eol
            name = text[at + 7 : eol].strip()
            devices: dict[int, str] = {}
            pos = eol
            # the block: "\tdddd  name" lines (and "\t\t" subsystem lines) up to a line
            # that starts with neither a tab nor '#'
            while pos < len(text):
                nxt = text.find("\n", pos + 1)
                nxt = len(text) if nxt < 0 else nxt
                line = text[pos + 1 : nxt]
                pos = nxt
                if not line or line[0] == "#":
                    continue
                if line[0] != "\t":
                    break
                if len(line) > 7 and line[1] != "\t" and line[5:7] == "  ":
                    try:
                        devices[int(line[1:5], 16)] = line[7:].strip()
                    except ValueError:
                        continue
            got = (name, devices)
        self._vendors[vendor] = got
        return got

    def vendor_name(self, vendor: int) -> str | None:
        v = self._vendor(vendor)
        return v[0] if v else None

    def device_name(self, vendor: int, device: int) -> str | None:
        v = self._vendor(vendor)
        return v[1].get(device) if v else None

    def name(self, vendor: int, device: int) -> str | None:
        """``"Vendor Device"`` as ``lspci`` prints it, ``"Vendor Device dddd"`` when only the
        vendor is known, ``None`` when neither is."""
        v = self._vendor(vendor)
        if v is None:
            return None
        dev = v[1].get(device)
        return f"{v[0]} {dev}" if dev else f"{v[0]} Device {device:04x}"


def system_pci_ids(paths: Sequence[str] | None = None) -> PciIds | None:
    """The system's ``pci.ids``, or ``None`` when it has none."""
    for p in PCI_IDS_PATHS if paths is None else paths:
        if os.path.isfile(p):
            return PciIds(p)
    return None
