"""The simulated kernel: a model of Linux 7.3 ``drivers/iommu/iommufd``.

One module per kernel file it models. Handlers take the decoded ioctl struct, validate in
the kernel's order (written down next to each handler), act, and fill their outputs; a failure
raises ``OSError`` with the kernel's errno and a message naming the rule and the values.
"""
