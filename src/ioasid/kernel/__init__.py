"""The simulated kernel: a model of Linux 7.3 ``drivers/iommu/iommufd``.

One module per kernel file it models. Handlers take the decoded ioctl struct, validate in
the kernel's order (written down next to each handler), act, and fill their outputs; a failure
raises ``OSError`` with the kernel's errno and a message naming the rule and the values.

The modules are layered: each imports only modules before it in :data:`LAYERS` (no import
inside a function, no import cycle). At the bottom the shared types — errors, objects, pages,
and :mod:`~ioasid.kernel.private`, the part ``iommufd_private.h`` plays: the context, the
decoded command and the machine's interface; the object kinds and their handlers above; the
ioctl table, the entry and the machine (the host that boots it all) on top.
"""

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "rangecount", "process", "fail_nth", "objects", "anon_inode", "pages", "private"),
    ("io_pagetable", "ownership", "ioas", "access", "hw_pagetable", "device", "eventq"),
    ("viommu", "hwpt_ioctl", "intel", "mock_access", "mock", "vfio_compat", "vfio_device"),
    ("dispatch", "main", "machine"),
)
"""Bottom to top: shared types; objects and their handlers; drivers, the mock driver and
VFIO; the ioctl table, the entry and the host."""
